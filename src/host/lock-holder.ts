/**
 * Who holds the berth lock (src/host/lock.ts) and whether that process may
 * still run: the holder record, what the lock directory holds, and the
 * liveness test (boot id, PID namespace, pid and its start time). Reads
 * only; never takes, breaks or releases a lock.
 */
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import path from "node:path";

/** Who holds (or held) the lock: the content of its holder file. */
export interface LockHolder {
  pid: number;
  /** The pid as the mounted /proc numbers it, when that differs (a PID namespace without its own /proc). */
  procPid?: number;
  bootId?: string;
  /** Field 22 of /proc/PID/stat: with the pid and boot id, names one process for good. */
  startTime?: string;
  pidNs?: string;
  nonce: string;
  command: string;
  /** When the lock was taken, ISO 8601. */
  since: string;
}

function readTrimmed(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

/** State (field 3) and start time (field 22) of /proc/PID/stat; undefined when there is no such process (or no /proc). */
export type ProcStat = (pid: number | "self") => { state: string; startTime: string } | undefined;

const procStat: ProcStat = (pid) => {
  const text = readTrimmed(`/proc/${pid}/stat`);
  if (text === undefined) return undefined;
  // The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const state = rest[0];
  const startTime = rest[19];
  return state !== undefined && startTime !== undefined ? { state, startTime } : undefined;
};

export function selfIdentity(command: string): LockHolder {
  const me: LockHolder = { pid: process.pid, nonce: randomBytes(8).toString("hex"), command, since: new Date().toISOString() };
  const bootId = readTrimmed("/proc/sys/kernel/random/boot_id");
  if (bootId) me.bootId = bootId;
  const st = procStat("self");
  if (st) me.startTime = st.startTime;
  try {
    me.pidNs = readlinkSync("/proc/self/ns/pid");
  } catch {
    // no /proc: liveness falls back to kill(pid, 0)
  }
  try {
    const procPid = Number(readlinkSync("/proc/self"));
    if (Number.isInteger(procPid) && procPid !== process.pid) me.procPid = procPid;
  } catch {
    // as above
  }
  return me;
}

/** The nonces of the locks this process holds: a lock of ours is never judged stale, nor waited for. */
export const heldHere = new Set<string>();

/** Whether the process that wrote `h` may still be running, as seen by `me`. */
export function holderAlive(h: LockHolder, me: LockHolder, stat: ProcStat = procStat): boolean {
  if (h.bootId && me.bootId && h.bootId !== me.bootId) return false;
  // Another PID namespace's pid means nothing here: assume it runs (the deadline's error says what to do).
  if (h.pidNs && me.pidNs && h.pidNs !== me.pidNs) return true;
  // Our own pid on a lock this process does not hold: an earlier process that had it (even without /proc to tell).
  if (h.pid === me.pid && !heldHere.has(h.nonce)) return false;
  const pid = h.procPid ?? h.pid;
  if (me.startTime !== undefined) {
    // /proc works here: the process must exist, not be a zombie, and be the same one (pids are reused).
    const st = stat(pid);
    if (st === undefined || st.state === "Z" || st.state === "X") return false;
    return h.startTime === undefined || st.startTime === h.startTime;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function parseHolder(text: string): LockHolder | undefined {
  try {
    const v = JSON.parse(text) as Partial<LockHolder> | null;
    if (v && typeof v === "object" && Number.isInteger(v.pid) && typeof v.nonce === "string") return v as LockHolder;
  } catch {
    // fall through
  }
  return undefined;
}

export type Seen =
  | { kind: "free" }
  /** Entries, but no holder file: something planted there, not by berth. */
  | { kind: "unreadable" }
  /**
   * A holder file that does not parse. A live holder's is always complete (it
   * is written before the rename that takes the lock), so this is a power cut
   * while it was written: stale.
   */
  | { kind: "corrupt"; file: string }
  | { kind: "held"; holder: LockHolder; file: string };

export function inspect(lockDir: string): Seen {
  let names: string[];
  try {
    names = readdirSync(lockDir);
  } catch {
    return { kind: "free" };
  }
  const file = names.find((n) => n.endsWith(".json"));
  if (file === undefined) return names.length === 0 ? { kind: "free" } : { kind: "unreadable" };
  let text: string;
  try {
    text = readFileSync(path.join(lockDir, file), "utf8");
  } catch {
    return { kind: "free" }; // released meanwhile
  }
  const holder = parseHolder(text);
  return holder ? { kind: "held", holder, file } : { kind: "corrupt", file };
}

/** The holder as a waiting run's messages name it. */
export function holderText(h: LockHolder): string {
  return `pid ${h.pid} (${h.command}) since ${h.since}`;
}
