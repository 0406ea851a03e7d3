/**
 * `host`: what the kubelet needs of the machine itself. Swap off (kubelet's
 * failSwapOn refuses to start otherwise), the unified cgroup hierarchy
 * (cgroup v2), net.ipv4.ip_forward=1 (pod traffic is routed through the
 * node), and free space and inodes where containerd, kubelet and the logs
 * live, against kubelet's default hard eviction thresholds. Reading is the
 * shell's part (gatherHost); judging is pure (judgeHost).
 */
import { statfs } from "node:fs/promises";
import path from "node:path";
import { readTextIfPresent, pathExists } from "../../host/read.ts";
import type { HostRoot } from "../../host/root.ts";
import { CONTAINERD_ROOT, KUBELET_ROOT, LOG_DIR } from "../../util/node-layout.ts";
import type { DoctorDeps, DoctorState } from "../deps.ts";
import type { CheckOutcome, CheckSpec } from "../types.ts";

/** kubelet's default hard eviction thresholds on Linux, percent free (kubelet docs: nodefs.available<10%, …). */
export const EVICTION_THRESHOLDS = {
  "nodefs.available": 10,
  "nodefs.inodesFree": 5,
  "imagefs.available": 15,
  "imagefs.inodesFree": 5,
} as const;

/** Percentage points above a threshold that are reported as a warning: close to eviction. */
export const WARN_MARGIN = 5;

/** Where kubelet's two filesystems are: containerd's images (imagefs), kubelet's pods and the logs (nodefs). */
export const DISK_PATHS = [
  { hostPath: CONTAINERD_ROOT, fs: "imagefs" },
  { hostPath: KUBELET_ROOT, fs: "nodefs" },
  { hostPath: LOG_DIR, fs: "nodefs" },
] as const;

export interface DiskUsage {
  hostPath: string;
  fs: "nodefs" | "imagefs";
  /** Percent of blocks available to unprivileged users. */
  availablePct: number;
  /** Percent of inodes free; undefined on filesystems without a fixed inode count (btrfs). */
  inodesFreePct?: number;
}

export interface HostFacts {
  /** /proc/swaps, or undefined when unreadable. */
  swaps?: string;
  /** /sys/fs/cgroup/cgroup.controllers exists (the unified hierarchy is mounted there). */
  cgroupV2: boolean;
  /** /proc/sys/net/ipv4/ip_forward, or undefined when unreadable. */
  ipForward?: string;
  disks: DiskUsage[];
  /** Host paths whose filesystem could not be measured, with why. */
  diskErrors: string[];
  /** The NodeConfig's kubelet config sets failSwapOn: false. */
  swapAllowed: boolean;
}

interface Problem {
  status: "warn" | "fail";
  what: string;
  hint: string;
}

const pct = (n: number): string => `${n < 10 ? n.toFixed(1) : Math.round(n)}%`;

function diskProblems(d: DiskUsage): Problem[] {
  const out: Problem[] = [];
  const checks: Array<[string, number | undefined, number]> = [
    [`${d.fs}.available`, d.availablePct, EVICTION_THRESHOLDS[`${d.fs}.available`]],
    [`${d.fs}.inodesFree`, d.inodesFreePct, EVICTION_THRESHOLDS[`${d.fs}.inodesFree`]],
  ];
  for (const [signal, value, threshold] of checks) {
    if (value === undefined) continue;
    const what = signal.endsWith("available") ? "space" : "inodes";
    if (value < threshold) {
      out.push({
        status: "fail",
        what: `${d.hostPath}: ${pct(value)} ${what} free, under kubelet's eviction threshold ${signal}<${threshold}%`,
        hint: `free ${what} on the filesystem of ${d.hostPath} (old images: crictl rmi --prune; journalctl --vacuum-size), or grow it`,
      });
    } else if (value < threshold + WARN_MARGIN) {
      out.push({
        status: "warn",
        what: `${d.hostPath}: ${pct(value)} ${what} free, close to kubelet's eviction threshold ${signal}<${threshold}%`,
        hint: `free ${what} on the filesystem of ${d.hostPath} before kubelet starts evicting pods`,
      });
    }
  }
  return out;
}

/** The host finding from what was read. Pure. */
export function judgeHost(h: HostFacts): CheckOutcome {
  const problems: Problem[] = [];
  const ok: string[] = [];
  const swapLines = h.swaps
    ?.split("\n")
    .slice(1)
    .filter((l) => l.trim() !== "");
  if (swapLines === undefined)
    problems.push({
      status: "warn",
      what: "cannot read /proc/swaps",
      hint: "check swap by hand (swapon --show); kubelet refuses to start with swap on unless failSwapOn is false",
    });
  else if (swapLines.length === 0) ok.push("swap off");
  else {
    const devs = swapLines.map((l) => l.split(/\s+/)[0]).join(", ");
    problems.push(
      h.swapAllowed
        ? {
            status: "warn",
            what: `swap is on (${devs}); the kubelet config allows it (failSwapOn: false)`,
            hint: "make sure memorySwap.swapBehavior is what you want",
          }
        : {
            status: "fail",
            what: `swap is on (${devs}): kubelet refuses to start (failSwapOn)`,
            hint: "turn it off (swapoff -a, and remove it from /etc/fstab), or set spec.kubelet.config.failSwapOn: false",
          },
    );
  }
  if (h.cgroupV2) ok.push("cgroup v2");
  else
    problems.push({
      status: "warn",
      what: "no cgroup v2 (/sys/fs/cgroup/cgroup.controllers is missing: cgroup v1 or hybrid)",
      hint: "boot with the unified hierarchy (systemd.unified_cgroup_hierarchy=1); Kubernetes has deprecated cgroup v1",
    });
  const fwd = h.ipForward?.trim();
  if (fwd === "1") ok.push("net.ipv4.ip_forward=1");
  else if (fwd === undefined)
    problems.push({
      status: "warn",
      what: "cannot read /proc/sys/net/ipv4/ip_forward",
      hint: "check it by hand: sysctl net.ipv4.ip_forward (pods need 1)",
    });
  else
    problems.push({
      status: "warn",
      what: `net.ipv4.ip_forward=${fwd}: the node will not route pod traffic`,
      hint: "sysctl -w net.ipv4.ip_forward=1, and set it in /etc/sysctl.d/ so it survives a reboot",
    });
  for (const e of h.diskErrors) problems.push({ status: "warn", what: e, hint: "check the filesystem by hand (df -h, df -i)" });
  for (const d of h.disks) problems.push(...diskProblems(d));
  const free = h.disks.map(
    (d) => `${d.hostPath} ${pct(d.availablePct)}${d.inodesFreePct !== undefined ? `/${pct(d.inodesFreePct)} inodes` : ""}`,
  );
  if (free.length) ok.push(`free: ${free.join(", ")}`);
  const worst = problems.find((p) => p.status === "fail") ?? problems[0];
  if (!worst) return { status: "pass", finding: ok.join("; "), hint: "nothing to do" };
  const ordered = [...problems.filter((p) => p.status === "fail"), ...problems.filter((p) => p.status === "warn")];
  return { status: worst.status, finding: ordered.map((p) => p.what).join("; "), hint: worst.hint };
}

/** The nearest existing ancestor of `p` (a directory not made yet is measured where it would be made). */
async function existingAncestor(p: string, stop: string): Promise<string> {
  let d = p;
  while (d !== stop && d !== path.dirname(d) && !(await pathExists(d))) d = path.dirname(d);
  return d;
}

async function measure(root: HostRoot, hostPath: string, fs: "nodefs" | "imagefs"): Promise<DiskUsage> {
  const where = await existingAncestor(root.path(hostPath), root.dir);
  const s = await statfs(where);
  if (s.blocks <= 0) throw new Error(`statfs of ${where} reports no blocks`);
  return {
    hostPath,
    fs,
    availablePct: (100 * s.bavail) / s.blocks,
    ...(s.files > 0 ? { inodesFreePct: (100 * s.ffree) / s.files } : {}),
  };
}

export async function gatherHost(root: HostRoot, swapAllowed: boolean): Promise<HostFacts> {
  const [swaps, cgroupV2, ipForward] = await Promise.all([
    readTextIfPresent(root.path("/proc/swaps")),
    pathExists(root.path("/sys/fs/cgroup/cgroup.controllers")),
    readTextIfPresent(root.path("/proc/sys/net/ipv4/ip_forward")),
  ]);
  const disks: DiskUsage[] = [];
  const diskErrors: string[] = [];
  for (const d of DISK_PATHS) {
    try {
      disks.push(await measure(root, d.hostPath, d.fs));
    } catch (e) {
      diskErrors.push(`cannot measure ${d.hostPath}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return {
    ...(swaps !== undefined ? { swaps } : {}),
    cgroupV2,
    ...(ipForward !== undefined ? { ipForward } : {}),
    disks,
    diskErrors,
    swapAllowed,
  };
}

export function hostCheck(deps: DoctorDeps, state: DoctorState, deadlineMs: number): CheckSpec {
  return {
    id: "host",
    needs: [],
    after: ["config"],
    deadlineMs,
    async run(ctx) {
      ctx.step(
        "reading /proc, /sys and the filesystems under /var",
        "a filesystem is not answering (a hung network mount?): check df by hand",
      );
      const swapAllowed = state.config?.nodeConfig.kubelet?.config?.["failSwapOn"] === false;
      return judgeHost(await gatherHost(deps.root, swapAllowed));
    },
  };
}
