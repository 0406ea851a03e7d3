/**
 * kubeReserved: what the kubelet sets aside for the node's own daemons.
 * Tiers and constants are nodeadm's (internal/kubelet/config.go), which follow
 * the long-standing EKS AMI bootstrap.sh values.
 */

/** [tier start, tier end) in millicores and the share reserved inside it, in hundredths of a percent. */
const CPU_TIERS: ReadonlyArray<readonly [number, number, number]> = [
  [0, 1000, 600], // 6% of the first core
  [1000, 2000, 100], // 1% of the second
  [2000, 4000, 50], // 0.5% of cores 3 and 4
  [4000, Number.POSITIVE_INFINITY, 25], // 0.25% of everything above
];

/** Millicores to reserve for `cpus` online CPUs: 1 → 60m, 2 → 70m, 4 → 80m, 8 → 90m. */
export function cpuMillicoresToReserve(cpus: number): number {
  const total = Math.max(0, Math.floor(cpus)) * 1000;
  let reserved = 0;
  for (const [start, end, share] of CPU_TIERS) {
    if (total <= start) break;
    // Integer division per tier, as nodeadm does, so the sums match to the millicore.
    reserved += Math.floor(((Math.min(total, end) - start) * share) / 10000);
  }
  return reserved;
}

/** MiB to reserve for a node that runs up to `maxPods` pods: 11 MiB per pod plus 255 MiB. */
export function memoryMebibytesToReserve(maxPods: number): number {
  return 11 * maxPods + 255;
}

/**
 * The kubeReserved map.
 *
 * `maxPods` here must be the EFFECTIVE maxPods, i.e. the user's
 * `kubelet.config.maxPods` when they set one. This is a deliberate departure
 * from nodeadm, which always reserves memory for the maxPods it computed
 * itself (e.g. 60) even when the user's drop-in caps the kubelet at 1 pod: the
 * node then holds back ~650 MiB for pods it can never run. Reserving for the
 * pods the kubelet will actually admit gives that memory back to workloads.
 * config.json's own `maxPods` still carries berth's computed value; the user's
 * value wins through the drop-in, as in nodeadm.
 */
export function kubeReserved(cpus: number, effectiveMaxPods: number): Record<string, string> {
  return {
    cpu: `${cpuMillicoresToReserve(cpus)}m`,
    "ephemeral-storage": "1Gi",
    memory: `${memoryMebibytesToReserve(effectiveMaxPods)}Mi`,
  };
}
