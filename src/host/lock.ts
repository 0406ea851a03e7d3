/**
 * The berth lock: at most one writing berth run per root. `berth init` holds
 * it from before the config phase reads the cache until the run phase is
 * done (berth-config.service and berth-run.service each take it in turn), and
 * `berth install` for its apply; a second run waits for it, says so on
 * stderr, and gives up at a deadline with an error naming the holder.
 *
 * Node has no flock(2), so the lock is built from what the kernel does
 * atomically, and a holder that was killed (SIGKILL, a power cut) is
 * recognised as gone rather than waited for:
 *
 * - The lock is the directory `<root>/run/berth/lock` holding one file,
 *   `<nonce>.json`, that names the holder: pid, the kernel's boot id, the
 *   process's start time (field 22 of /proc/PID/stat), its PID namespace, a
 *   random nonce, the command and when it took the lock.
 * - Taking it: make `.lock.<nonce>.tmp/` with the holder file inside, then
 *   rename(2) it to `lock`. rename replaces a missing or *empty* directory
 *   and fails (ENOTEMPTY/EEXIST) on a non-empty one, so the lock appears
 *   complete, at once, for exactly one taker.
 * - Releasing: unlink our holder file, rmdir the directory.
 * - A holder is stale when the boot id differs (a reboot), or the process is
 *   gone, a zombie, or a different process with the same pid (its start time
 *   differs). A PID namespace we cannot see into counts as alive: waiting is
 *   the safe answer there, and the deadline's error says how to clear it.
 * - Breaking a stale lock unlinks that holder's own file, by its nonce: if
 *   two waiters judge the same holder stale, one unlink succeeds and the
 *   other finds nothing, and a lock taken in between by a third run (a
 *   different file) is never touched. The emptied directory is then taken
 *   by the next rename, again by exactly one run.
 *
 * The wait uses the one retry helper (src/util/retry.ts).
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmdirSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { LOCK_PATH } from "../util/node-layout.ts";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import { retry, RetryExhausted, type Backoff, type RetryOptions } from "../util/retry.ts";
import type { HostRoot } from "./root.ts";

export { LOCK_PATH };

/** How long a run waits for the lock by default; BERTH_LOCK_TIMEOUT_MS overrides it. */
export const DEFAULT_LOCK_TIMEOUT_MS = 10 * 60_000;

const WAIT_BACKOFF: Backoff = { initialMs: 50, maxMs: 1000, factor: 2, jitter: 0.5 };

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

export interface BerthLock {
  /** The lock directory (real path). */
  readonly path: string;
  readonly holder: LockHolder;
  /** Idempotent; also done at process exit. */
  release(): void;
}

export interface LockOptions {
  /** Recorded in the holder file and shown to whoever waits, e.g. `berth init`. */
  command: string;
  /** How long to wait for another holder (default DEFAULT_LOCK_TIMEOUT_MS). */
  timeoutMs?: number;
  /** Where "waiting for the berth lock …" goes (once per holder); stderr in the CLI. */
  log?: (line: string) => void;
  /** Test seams, handed to retry(). */
  backoff?: Backoff;
  sleep?: RetryOptions["sleep"];
  now?: () => number;
}

/** BERTH_LOCK_TIMEOUT_MS from the environment: milliseconds, a non-negative integer. */
export function lockTimeoutFromEnv(env: NodeJS.ProcessEnv): Result<number> {
  const raw = env.BERTH_LOCK_TIMEOUT_MS;
  if (raw === undefined || raw === "") return ok(DEFAULT_LOCK_TIMEOUT_MS);
  if (!/^\d{1,10}$/.test(raw.trim())) {
    return fail({
      code: "lock.timeout-invalid",
      message: `BERTH_LOCK_TIMEOUT_MS=${JSON.stringify(raw)} is not a number of milliseconds`,
      where: { source: "environment variable BERTH_LOCK_TIMEOUT_MS" },
      hint: `give a whole number of milliseconds (the default is ${DEFAULT_LOCK_TIMEOUT_MS}), or unset it`,
    });
  }
  return ok(Number(raw.trim()));
}

// ---------------------------------------------------------------- who is who

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

function selfIdentity(command: string): LockHolder {
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
const heldHere = new Set<string>();

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

type Seen =
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

function inspect(lockDir: string): Seen {
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

// ---------------------------------------------------------------- taking and releasing

class LockBusy extends Error {
  constructor(readonly seen: Seen) {
    super(seen.kind === "held" ? `held by pid ${seen.holder.pid}` : "busy");
  }
}

class LockFatal extends Error {
  constructor(readonly error: BerthError) {
    super(error.message);
  }
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

function holderText(h: LockHolder): string {
  return `pid ${h.pid} (${h.command}) since ${h.since}`;
}

/** mkdir -p of `dir`, recording what it created (release removes those again when empty). */
function mkdirs(dir: string, created: string[]): void {
  const missing: string[] = [];
  for (let d = dir; ; d = path.dirname(d)) {
    try {
      statSync(d);
      break;
    } catch (e) {
      if (errno(e) !== "ENOENT") throw e;
      missing.push(d);
      if (path.dirname(d) === d) break;
    }
  }
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d, { mode: 0o755 });
      created.push(d);
    } catch (e) {
      if (errno(e) !== "EEXIST") throw e;
    }
  }
}

/** Remove what runs killed while they waited left: `.lock.<nonce>.tmp/` of holders that are gone. */
function removeStaleWaiters(parent: string, me: LockHolder): void {
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return;
  }
  for (const n of names) {
    if (!/^\.lock\.[0-9a-f]+\.tmp$/.test(n) || n === `.lock.${me.nonce}.tmp`) continue;
    const dir = path.join(parent, n);
    const seen = inspect(dir);
    if (seen.kind === "held" && holderAlive(seen.holder, me)) continue;
    if (seen.kind === "unreadable") continue; // not berth's
    // Free (empty) or unreadable: a waiter between its mkdir and its write finds ENOENT and starts over.
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Take the berth lock of `root`, waiting (with backoff, up to the timeout)
 * while another live run holds it, and taking over a stale one at once.
 */
export async function acquireLock(root: HostRoot, opts: LockOptions): Promise<Result<BerthLock>> {
  const me = selfIdentity(opts.command);
  let lockDir: string;
  try {
    lockDir = root.path(LOCK_PATH);
  } catch (e) {
    return fail(ioFailure(root, e));
  }
  const parent = path.dirname(lockDir);
  const tmp = path.join(parent, `.lock.${me.nonce}.tmp`);
  const created: string[] = [];
  const timeoutMs = opts.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  const announced = new Set<string>();
  let staged = false;

  const stage = (): void => {
    mkdirs(parent, created);
    try {
      mkdirSync(tmp, { mode: 0o755 });
    } catch (e) {
      if (errno(e) !== "EEXIST") throw e;
    }
    writeFileSync(path.join(tmp, `${me.nonce}.json`), `${JSON.stringify(me)}\n`, { mode: 0o644 });
    staged = true;
  };

  const attempt = async (): Promise<void> => {
    // A few immediate rounds: a lock released or broken between two calls needs no backoff.
    for (let round = 0; round < 8; round++) {
      try {
        if (!staged) stage();
        renameSync(tmp, lockDir);
        return;
      } catch (e) {
        const code = errno(e);
        if (code === "ENOENT") {
          // Our temp dir or its parent went away (a releasing holder removed an empty /run/berth): stage again.
          staged = false;
          continue;
        }
        if (code !== "ENOTEMPTY" && code !== "EEXIST") throw new LockFatal(ioFailure(root, e, lockDir));
      }
      const seen = inspect(lockDir);
      if (seen.kind === "free") continue;
      if (seen.kind === "unreadable") throw new LockBusy(seen);
      const h = seen.kind === "held" ? seen.holder : undefined;
      if (h && heldHere.has(h.nonce)) {
        throw new LockFatal({
          code: "lock.reentrant",
          message: `this berth process (pid ${me.pid}) already holds the berth lock ${root.describe(LOCK_PATH, lockDir)}`,
          hint: "this is a bug in berth; please report it",
        });
      }
      if (h && holderAlive(h, me)) throw new LockBusy(seen);
      // Stale: remove that holder's file only (see the module comment), then try again.
      try {
        unlinkSync(path.join(lockDir, seen.file));
      } catch (e) {
        if (errno(e) !== "ENOENT") throw new LockFatal(ioFailure(root, e, lockDir));
      }
    }
    throw new LockBusy({ kind: "free" });
  };

  const deadline = (opts.now ?? Date.now)() + timeoutMs;
  try {
    await retry(attempt, {
      ...(opts.backoff ?? WAIT_BACKOFF),
      deadline,
      retryable: (e) => e instanceof LockBusy,
      onRetry: ({ cause }) => {
        const seen = (cause as LockBusy).seen;
        const key = seen.kind === "held" ? seen.holder.nonce : seen.kind;
        if (seen.kind === "free" || announced.has(key)) return;
        announced.add(key);
        const who = seen.kind === "held" ? `held by ${holderText(seen.holder)}` : `at ${lockDir}, whose holder record is unreadable`;
        opts.log?.(`waiting for the berth lock ${who}; giving up at ${new Date(deadline).toISOString()} (BERTH_LOCK_TIMEOUT_MS=${timeoutMs})`);
      },
      ...(opts.sleep ? { sleep: opts.sleep } : {}),
      ...(opts.now ? { now: opts.now } : {}),
    });
  } catch (e) {
    cleanupStaged(tmp, me, staged);
    removeCreated(created);
    const last = e instanceof RetryExhausted ? e.lastError : e;
    if (last instanceof LockFatal) return fail(last.error);
    if (last instanceof LockBusy) return fail(timeoutFailure(root, lockDir, last.seen, timeoutMs, me));
    return fail(ioFailure(root, last, lockDir));
  }

  heldHere.add(me.nonce);
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    heldHere.delete(me.nonce);
    process.removeListener("exit", release);
    try {
      unlinkSync(path.join(lockDir, `${me.nonce}.json`));
    } catch {
      // gone already (someone judged us stale: only possible if we were not running)
    }
    try {
      rmdirSync(lockDir);
    } catch {
      // taken again at once, or gone
    }
    removeCreated(created);
  };
  process.on("exit", release);
  removeStaleWaiters(parent, me);
  return ok({ path: lockDir, holder: me, release });
}

function cleanupStaged(tmp: string, me: LockHolder, staged: boolean): void {
  if (!staged) return;
  try {
    unlinkSync(path.join(tmp, `${me.nonce}.json`));
    rmdirSync(tmp);
  } catch {
    // best effort
  }
}

/** Remove the directories this run created for the lock, deepest first, if empty (a scratch root stays as it was). */
function removeCreated(created: string[]): void {
  for (const d of [...created].reverse()) {
    try {
      rmdirSync(d);
    } catch {
      // not empty (status.json, another run's lock) or gone: leave it
    }
  }
}

function ioFailure(root: HostRoot, e: unknown, real?: string): BerthError {
  const err = e as NodeJS.ErrnoException;
  return {
    code: "lock.io",
    // Node's message ends with the path it worked on (the lock's own temp directory, often): the lock path is named already.
    message: `could not take the berth lock ${root.describe(LOCK_PATH, real)}: ${`${err.code && !String(err.message).startsWith(err.code) ? `${err.code} ` : ""}${err.message ?? String(e)}`.replace(/, [a-z_]+ '[^]*$/, "")}`,
    where: { source: real ?? LOCK_PATH },
    hint: `berth needs a writable ${path.posix.dirname(LOCK_PATH)} under the root to keep two runs from mixing their files; nothing was written`,
    cause: e,
  };
}

function timeoutFailure(root: HostRoot, lockDir: string, seen: Seen, timeoutMs: number, me: LockHolder): BerthError {
  const where = root.describe(LOCK_PATH, lockDir);
  const seconds = Math.round(timeoutMs / 100) / 10;
  if (seen.kind === "held") {
    const h = seen.holder;
    const otherNs = h.pidNs && me.pidNs && h.pidNs !== me.pidNs ? ` in another PID namespace (${h.pidNs})` : "";
    return {
      code: "lock.timeout",
      message: `another berth run still holds the berth lock ${where}: ${holderText(h)}${otherNs}; gave up waiting after ${seconds} s`,
      where: { source: path.join(lockDir, seen.file) },
      hint: `let that run finish and run berth again (at boot: systemctl status berth-config.service berth-run.service); if no berth process is running, remove ${lockDir}; BERTH_LOCK_TIMEOUT_MS sets how long to wait`,
    };
  }
  return {
    code: "lock.timeout",
    message: `the berth lock ${where} stayed taken for ${seconds} s and names no holder that berth can read`,
    where: { source: lockDir },
    hint: `if no berth process is running, remove ${lockDir} and run berth again`,
  };
}

/**
 * Run `fn` under the berth lock of `root` (BERTH_LOCK_TIMEOUT_MS from `env`,
 * "waiting …" lines to `log`), released afterwards whatever happens. A
 * failure to take the lock is returned as `fn`'s result would be.
 */
export async function withLock<T>(
  root: HostRoot,
  opts: { command: string; env?: NodeJS.ProcessEnv; log?: (line: string) => void },
  fn: (lock: BerthLock) => Promise<Result<T>>,
): Promise<Result<T>> {
  const timeout = lockTimeoutFromEnv(opts.env ?? process.env);
  if (!timeout.ok) return timeout;
  const lock = await acquireLock(root, { command: opts.command, timeoutMs: timeout.value, ...(opts.log ? { log: opts.log } : {}) });
  if (!lock.ok) return lock;
  try {
    return await fn(lock.value);
  } finally {
    lock.value.release();
  }
}
