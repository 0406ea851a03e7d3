/**
 * Where things live on a node: the host paths and unit names that the
 * renderers write and the run phase, the agent and `berth status` read or
 * manage. Constants only, no imports, so the agent can use them without
 * loading the renderers or gRPC.
 */

/** Where the packages install berth; the units' ExecStart= when nothing else is known (src/cli/self.ts). */
export const DEFAULT_BERTH_PATH = "/usr/bin/berth";

/** containerd's gRPC socket (CRI and its own API). */
export const CONTAINERD_SOCKET = "/run/containerd/containerd.sock";

/** The run phase's status file, read by the agent and `berth status`. */
export const RUN_STATUS_PATH = "/run/berth/status.json";

/** The lock every writing berth run holds (a directory; src/host/lock.ts). */
export const LOCK_PATH = "/run/berth/lock";

export const UNITS = {
  config: "berth-config.service",
  run: "berth-run.service",
  agent: "berth-agent.service",
  target: "berth.target",
  tasks: "berth-tasks.target",
  rebootOnce: "berth-reboot-once.service",
  kubelet: "kubelet.service",
  containerd: "containerd.service",
  runtimeSlice: "runtime.slice",
} as const;
