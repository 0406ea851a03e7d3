/**
 * `instance.localStorage` → systemd mount units (Mount, or one md array with
 * the state directories bound onto it). Pure: (config, the node's
 * instance-store disks) → a layout and its unit files; never formats, builds
 * an array or copies (src/phases/steps/local-storage.ts does, from the same
 * layout). Details: docs/internals.md ("Instance-store disks").
 */
import type { LocalStorageOptions, LocalStorageStrategy, NodeConfigSpec } from "../api/types.ts";
import type { InstanceStoreDisk } from "../facts/disks.ts";
import type { PlannedFile } from "../plan/types.ts";
import {
  DEFAULT_LOCAL_STORAGE_PATH,
  LOCAL_STORAGE_WANTS,
  RAID_DEVICE,
  RAID_NAME,
  SOCI_ROOT,
  SOCI_UNIT,
  UNIT_DIR,
  UNITS,
  CONTAINERD_ROOT,
  KUBELET_ROOT,
  POD_LOG_DIR,
} from "../util/node-layout.ts";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import { unit, type Section } from "./units.ts";

const STORAGE_FIELD = "spec.instance.localStorage";

/** The state directories bound onto the array, the `disabledMounts` value that turns each off, and the units that use it. */
const BIND_DIRS: readonly { path: string; users: string[]; disabledBy?: string }[] = [
  { path: KUBELET_ROOT, users: [UNITS.kubelet] },
  { path: CONTAINERD_ROOT, users: [UNITS.containerd], disabledBy: "Containerd" },
  { path: SOCI_ROOT, users: [SOCI_UNIT], disabledBy: "SOCI" },
  { path: POD_LOG_DIR, users: [UNITS.kubelet], disabledBy: "PodLogs" },
];

export interface LocalMount {
  /** The mount unit's name, e.g. `mnt-k8s\x2ddisks-1.mount`. */
  unit: string;
  what: string;
  where: string;
  kind: "disk" | "array" | "bind";
  /** disk, array: the device that must carry xfs (formatted when it has no filesystem at all). */
  device?: string;
  /** bind: the units that use `where`, stopped while its contents move onto the array. */
  users?: string[];
}

export interface LocalStorageLayout {
  strategy: LocalStorageStrategy;
  /** Without a trailing slash. */
  mountPath: string;
  disks: InstanceStoreDisk[];
  array?: { device: string; name: string; level: 0 | 10 };
  /** In start order: the array's mount before the bind mounts from it. */
  mounts: LocalMount[];
}

/**
 * `systemd-escape --path`: the path without its outer slashes (and without
 * empty or `.` components), `/` → `-`, and every byte other than ASCII
 * letters, digits, `:`, `_` and a `.` that is not the first character as
 * `\xNN`. The root is `-`.
 */
export function systemdEscapePath(p: string): string {
  const trimmed = p
    .split("/")
    .filter((c) => c !== "" && c !== ".")
    .join("/");
  if (trimmed === "") return "-";
  let out = "";
  new TextEncoder().encode(trimmed).forEach((b, i) => {
    const c = String.fromCharCode(b);
    if (c === "/") out += "-";
    else if (/^[A-Za-z0-9:_]$/.test(c) || (c === "." && i > 0)) out += c;
    else out += `\\x${b.toString(16).padStart(2, "0")}`;
  });
  return out;
}

export function mountUnitName(where: string): string {
  return `${systemdEscapePath(where)}.mount`;
}

/** `mountPath` (default /mnt/k8s-disks), checked: a unit name and its Where= must say the same path. */
function mountPathOf(ls: LocalStorageOptions): Result<string> {
  const raw = ls.mountPath ?? "";
  if (raw === "") return ok(DEFAULT_LOCAL_STORAGE_PATH);
  const p = raw.replace(/\/+$/, "");
  const bad = (why: string): Result<string> =>
    fail({
      code: "config.local-storage-mount-path",
      message: `mountPath ${JSON.stringify(raw)} ${why}`,
      where: { path: `${STORAGE_FIELD}.mountPath` },
      hint: `use an absolute, normalized directory made of letters, digits and . _ - : + @ (the default is ${DEFAULT_LOCAL_STORAGE_PATH})`,
    });
  if (!raw.startsWith("/")) return bad("is not an absolute path");
  if (p === "") return bad("is the root directory");
  if (
    p
      .split("/")
      .slice(1)
      .some((c) => c === "" || c === "." || c === "..")
  )
    return bad("is not normalized (no //, . or .. components)");
  if (!/^[A-Za-z0-9/._:+@-]+$/.test(p)) return bad("holds characters that a mount unit's path cannot carry as they are");
  return ok(p);
}

/** What to mount where, or undefined when there is nothing to do (no strategy, or no disks). */
export function localStorageLayout(
  ls: LocalStorageOptions | undefined,
  disks: readonly InstanceStoreDisk[],
): Result<LocalStorageLayout | undefined> {
  if (!ls?.strategy) return ok(undefined);
  const mp = mountPathOf(ls);
  if (!mp.ok) return mp;
  if (disks.length === 0) return ok(undefined);
  const { strategy } = ls;
  const mountPath = mp.value;
  if (strategy === "Mount") {
    const mounts = disks.map((d, i): LocalMount => {
      const where = `${mountPath}/${i + 1}`;
      return { unit: mountUnitName(where), what: d.link, where, kind: "disk", device: d.device };
    });
    return ok({ strategy, mountPath, disks: [...disks], mounts });
  }
  const level = strategy === "RAID10" ? 10 : 0;
  if (level === 10 && disks.length < 4) return fail(raid10Error(disks));
  const arrayAt = `${mountPath}/0`;
  const disabled = new Set<string>(ls.disabledMounts ?? []);
  const binds = BIND_DIRS.filter((b) => b.disabledBy === undefined || !disabled.has(b.disabledBy)).map((b): LocalMount => ({
    unit: mountUnitName(b.path),
    what: `${arrayAt}/${b.path.slice(b.path.lastIndexOf("/") + 1)}`,
    where: b.path,
    kind: "bind",
    users: b.users,
  }));
  const array: LocalMount = { unit: mountUnitName(arrayAt), what: RAID_DEVICE, where: arrayAt, kind: "array", device: RAID_DEVICE };
  return ok({ strategy, mountPath, disks: [...disks], array: { device: RAID_DEVICE, name: RAID_NAME, level }, mounts: [array, ...binds] });
}

function raid10Error(disks: readonly InstanceStoreDisk[]): BerthError {
  const list = disks.map((d) => d.device).join(", ");
  return {
    code: "config.local-storage-raid10",
    message: `strategy RAID10 needs at least 4 instance-store disks; this node has ${disks.length} (${list})`,
    where: { path: `${STORAGE_FIELD}.strategy` },
    hint: "use RAID0 or Mount on this instance type, or an instance type with 4 or more instance-store disks",
  };
}

/** systemd expands `%` specifiers in these settings. */
const literal = (s: string): string => s.replace(/%/g, "%%");

function mountUnit(layout: LocalStorageLayout, m: LocalMount): string {
  const before = [UNITS.containerd, UNITS.kubelet, ...(m.users ?? [])].filter((u, i, all) => all.indexOf(u) === i);
  let description: string;
  let extra: string[] = [];
  if (m.kind === "disk") {
    const n = layout.mounts.indexOf(m) + 1;
    description = `berth local storage: EC2 instance-store disk ${n} (${m.what.slice(m.what.lastIndexOf("/") + 1)})`;
  } else if (m.kind === "array") {
    const level = layout.array?.level ?? 0;
    description = `berth local storage: EC2 instance-store RAID${level} array ${RAID_NAME} of ${layout.disks.length} disks`;
  } else {
    description = `berth local storage: ${m.where} on the instance-store array`;
    extra = [`RequiresMountsFor=${literal(m.what.slice(0, m.what.lastIndexOf("/")))}`];
  }
  const mount = [`What=${literal(m.what)}`, `Where=${literal(m.where)}`];
  if (m.kind === "bind") mount.push("Type=none", "Options=bind");
  else mount.push("Type=xfs", "Options=defaults,noatime");
  const sections: Section[] = [
    ["Unit", [`Description=${literal(description)}`, ...extra, `Before=${before.join(" ")}`]],
    ["Mount", mount],
  ];
  return unit(sections);
}

/** The unit files of a layout and the drop-in that wants them, sorted by path. */
export function localStorageFiles(layout: LocalStorageLayout): PlannedFile[] {
  const file = (path: string, content: string): PlannedFile => ({ path, content, mode: 0o644, component: "local-storage" });
  const files = layout.mounts.map((m) => file(`${UNIT_DIR}/${m.unit}`, mountUnit(layout, m)));
  files.push(file(LOCAL_STORAGE_WANTS, unit([["Unit", [`Wants=${layout.mounts.map((m) => m.unit).join(" ")}`]]])));
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** The plan's part: the mount units for this node's disks (none without a strategy or without disks). */
export function renderLocalStorage(spec: NodeConfigSpec, disks: readonly InstanceStoreDisk[]): Result<PlannedFile[]> {
  const layout = localStorageLayout(spec.instance?.localStorage, disks);
  if (!layout.ok) return layout;
  return ok(layout.value ? localStorageFiles(layout.value) : []);
}
