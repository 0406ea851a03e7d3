/**
 * A plan is everything the config phase wants on disk, computed purely from
 * (config, facts). Applying it lives in `src/host/fs.ts`.
 */

export interface PlannedFile {
  /** Absolute host path, e.g. `/etc/kubernetes/kubelet/config.json` (re-rooted under `--root` on apply). */
  path: string;
  content: string | Uint8Array;
  /** File mode, e.g. 0o644; secrets and kubeconfigs 0o600. */
  mode: number;
  /** Which renderer produced it, for dry-run output and logs. */
  component: string;
  /** Owner and group; absent means root:root (uid/gid 0) when berth runs as root (src/host/fs.ts). */
  owner?: FileOwner;
}

/** Numeric owner and group of a file. */
export interface FileOwner {
  uid: number;
  gid: number;
}

export interface Plan {
  files: PlannedFile[];
  /** Paths that must not exist after apply (e.g. an environment drop-in whose section was removed). */
  absent: string[];
}

export function isUnitPath(path: string): boolean {
  return path.startsWith("/etc/systemd/system/") || path.startsWith("/etc/systemd/system.conf.d/") || path.startsWith("/run/systemd/");
}
