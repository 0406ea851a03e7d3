/**
 * containerd's base OCI runtime spec (`/etc/containerd/base-runtime-spec.json`),
 * the template every container's spec starts from.
 *
 * Bytes follow nodeadm so files compare equal across the two tools:
 * - no user fragment: the default spec as nodeadm ships it (2-space indent,
 *   key order as written below, trailing newline);
 * - with `spec.containerd.baseRuntimeSpec`: default and fragment merged
 *   (objects merge key by key, arrays and scalars replace), printed the way
 *   Go's `json.MarshalIndent` prints a map: keys sorted, 4-space indent, no
 *   trailing newline, `<`, `>`, `&` escaped.
 * berth's one addition: a `null` in the fragment removes that key from the
 *   default (nodeadm cannot remove a default at all).
 */

import type { JsonObject, JsonValue, NodeConfigSpec } from "../api/types.ts";
import type { PlannedFile } from "../plan/types.ts";
import { compareKeys, deepMerge } from "../util/json.ts";
import { BASE_RUNTIME_SPEC_PATH } from "../util/node-layout.ts";

const CAPS = [
  "CAP_AUDIT_WRITE",
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_KILL",
  "CAP_MKNOD",
  "CAP_NET_BIND_SERVICE",
  "CAP_NET_RAW",
  "CAP_SETFCAP",
  "CAP_SETGID",
  "CAP_SETPCAP",
  "CAP_SETUID",
  "CAP_SYS_CHROOT",
];

/** The default spec (values from nodeadm's embedded default; key order is part of the default file's bytes). */
export function defaultBaseRuntimeSpec(): JsonObject {
  return {
    linux: {
      maskedPaths: [
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/sys/firmware",
      ],
      namespaces: [{ type: "ipc" }, { type: "mount" }, { type: "network" }, { type: "pid" }, { type: "uts" }],
      readonlyPaths: ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
      resources: { devices: [{ access: "rwm", allow: false }] },
    },
    mounts: [
      { destination: "/dev", options: ["nosuid", "strictatime", "mode=755", "size=65536k"], source: "tmpfs", type: "tmpfs" },
      { destination: "/dev/mqueue", options: ["nosuid", "noexec", "nodev"], source: "mqueue", type: "mqueue" },
      {
        destination: "/dev/pts",
        options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        source: "devpts",
        type: "devpts",
      },
      { destination: "/proc", options: ["nosuid", "noexec", "nodev"], source: "proc", type: "proc" },
      { destination: "/sys", options: ["nosuid", "noexec", "nodev", "ro"], source: "sysfs", type: "sysfs" },
    ],
    ociVersion: "1.1.0",
    process: {
      capabilities: { bounding: [...CAPS], effective: [...CAPS], permitted: [...CAPS] },
      cwd: "/",
      noNewPrivileges: true,
      rlimits: [{ type: "RLIMIT_NOFILE", soft: 65536, hard: 1048576 }],
      user: { gid: 0, uid: 0 },
    },
    root: { path: "rootfs" },
  };
}

/** Objects merge recursively; arrays and scalars from `over` replace; `null` in `over` deletes the key. */
function overlayRuntimeSpec(base: JsonObject, over: JsonObject): JsonObject {
  return deepMerge(base, over, { nullDeletes: true });
}

function goJsonString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 0;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    // Go escapes HTML-significant characters and the JS line separators by default.
    else if (c < 0x20 || ch === "<" || ch === ">" || ch === "&" || c === 0x2028 || c === 0x2029)
      out += `\\u${c.toString(16).padStart(4, "0")}`;
    else out += ch;
  }
  return out + '"';
}

/**
 * `json.MarshalIndent(map, "", indent)` as Go prints it: sorted keys, empty
 * containers as `{}`/`[]`. Hand-written because JSON.stringify keeps
 * insertion order and does not escape `<>&`.
 */
function goJsonIndent(v: JsonValue, indent: string, level = 0): string {
  if (v === null) return "null";
  if (typeof v === "string") return goJsonString(v);
  if (typeof v === "number") return Number.isFinite(v) ? JSON.stringify(v) : "null";
  if (typeof v === "boolean") return v ? "true" : "false";
  const pad = indent.repeat(level + 1);
  const end = indent.repeat(level);
  if (Array.isArray(v)) {
    if (v.length === 0) return "[]";
    return `[\n${v.map((e) => pad + goJsonIndent(e, indent, level + 1)).join(",\n")}\n${end}]`;
  }
  const keys = Object.keys(v).sort(compareKeys);
  if (keys.length === 0) return "{}";
  return `{\n${keys.map((k) => `${pad}${goJsonString(k)}: ${goJsonIndent(v[k] as JsonValue, indent, level + 1)}`).join(",\n")}\n${end}}`;
}

/** Render `/etc/containerd/base-runtime-spec.json`. */
export function renderBaseRuntimeSpec(spec: NodeConfigSpec): PlannedFile {
  const fragment = spec.containerd?.baseRuntimeSpec;
  const content =
    fragment && Object.keys(fragment).length > 0
      ? goJsonIndent(overlayRuntimeSpec(defaultBaseRuntimeSpec(), fragment), "    ")
      : `${JSON.stringify(defaultBaseRuntimeSpec(), null, 2)}\n`;
  return { path: BASE_RUNTIME_SPEC_PATH, content, mode: 0o644, component: "containerd" };
}
