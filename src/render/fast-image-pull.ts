/**
 * The one decision behind the `FastImagePull` feature gate, shared by the
 * containerd renderer (SOCI snapshotter, its config and systemd drop-in) and
 * the kubelet renderer (imageServiceEndpoint). Both must agree, or the kubelet
 * would talk to a socket nobody serves.
 *
 * Facts taken from nodeadm (not its code): the gate defaults to off; when on,
 * it applies only to nodes with at least 4 CPUs (4000 millicores) and at
 * least 7 GiB of memory. The memory bar sits below 8 GiB on purpose, because
 * the kernel reports a little less than an instance type's nominal memory.
 */
import type { NodeConfigSpec } from "../api/types.ts";
import type { NodeFacts } from "../facts/types.ts";

const GIBIBYTE = 1024 * 1024 * 1024;

/** Smallest node the SOCI parallel pull is turned on for. */
export const FAST_IMAGE_PULL_MIN = { cpus: 4, memoryBytes: 7 * GIBIBYTE } as const;

/**
 * True when containerd should pull through the SOCI snapshotter: the user set
 * `spec.featureGates.FastImagePull: true` and the node is big enough. A node
 * below the bar silently keeps the default pull, as nodeadm does.
 */
export function fastImagePullEnabled(spec: NodeConfigSpec, facts: Pick<NodeFacts, "cpus" | "memoryBytes">): boolean {
  if (spec.featureGates?.FastImagePull !== true) return false;
  return facts.cpus >= FAST_IMAGE_PULL_MIN.cpus && facts.memoryBytes >= FAST_IMAGE_PULL_MIN.memoryBytes;
}
