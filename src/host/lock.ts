/**
 * The berth lock: at most one writing berth run per root (`berth init` from
 * the config cache's read to the run phase's end, `berth install` for its
 * apply). A second run waits with backoff, says so, and gives up at a
 * deadline naming the holder; a holder that was killed is taken over, never
 * waited for. Never touches another run's holder file except a stale one's,
 * by its nonce. How it works: docs/internals.md ("The berth lock").
 */
import { mkdirSync, readdirSync, renameSync, rmdirSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { LOCK_PATH } from "../util/node-layout.ts";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import { retry, RetryExhausted, type Backoff, type RetryOptions } from "../util/retry.ts";
import { heldHere, holderAlive, holderText, inspect, selfIdentity, type LockHolder, type Seen } from "./lock-holder.ts";
import type { HostRoot } from "./root.ts";

/** How long a run waits for the lock by default; BERTH_LOCK_TIMEOUT_MS overrides it. */
export const DEFAULT_LOCK_TIMEOUT_MS = 10 * 60_000;

const WAIT_BACKOFF: Backoff = { initialMs: 50, maxMs: 1000, factor: 2, jitter: 0.5 };

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

/** One run taking the lock: where, who, and what it staged and created on the way. */
interface Taking {
  root: HostRoot;
  me: LockHolder;
  lockDir: string;
  /** `.lock.<nonce>.tmp/` beside the lock: the holder file is written here, then the directory is renamed to the lock. */
  tmp: string;
  created: string[];
  staged: boolean;
}

function stageHolder(t: Taking): void {
  mkdirs(path.dirname(t.lockDir), t.created);
  try {
    mkdirSync(t.tmp, { mode: 0o755 });
  } catch (e) {
    if (errno(e) !== "EEXIST") throw e;
  }
  writeFileSync(path.join(t.tmp, `${t.me.nonce}.json`), `${JSON.stringify(t.me)}\n`, { mode: 0o644 });
  t.staged = true;
}

/** One attempt: take the lock, or throw LockBusy (a live holder: wait) or LockFatal (give up). */
function takeOnce(t: Taking): void {
  const { root, me, lockDir } = t;
  // A few immediate rounds: a lock released or broken between two calls needs no backoff.
  for (let round = 0; round < 8; round++) {
    try {
      if (!t.staged) stageHolder(t);
      renameSync(t.tmp, lockDir);
      return;
    } catch (e) {
      const code = errno(e);
      if (code === "ENOENT") {
        // Our temp dir or its parent went away (a releasing holder removed an empty /run/berth): stage again.
        t.staged = false;
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
    // Stale: remove that holder's file only (see docs/internals.md), then try again.
    try {
      unlinkSync(path.join(lockDir, seen.file));
    } catch (e) {
      if (errno(e) !== "ENOENT") throw new LockFatal(ioFailure(root, e, lockDir));
    }
  }
  throw new LockBusy({ kind: "free" });
}

/** The lock as taken: released once, by `release()` or at process exit. */
function heldLock(t: Taking): BerthLock {
  const { me, lockDir } = t;
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
    removeCreated(t.created);
  };
  process.on("exit", release);
  removeStaleWaiters(path.dirname(lockDir), me);
  return { path: lockDir, holder: me, release };
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
  const t: Taking = { root, me, lockDir, tmp: path.join(path.dirname(lockDir), `.lock.${me.nonce}.tmp`), created: [], staged: false };
  const timeoutMs = opts.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  const announced = new Set<string>();
  const deadline = (opts.now ?? Date.now)() + timeoutMs;
  try {
    await retry(async () => takeOnce(t), {
      ...(opts.backoff ?? WAIT_BACKOFF),
      deadline,
      retryable: (e) => e instanceof LockBusy,
      onRetry: ({ cause }) => {
        const seen = (cause as LockBusy).seen;
        const key = seen.kind === "held" ? seen.holder.nonce : seen.kind;
        if (seen.kind === "free" || announced.has(key)) return;
        announced.add(key);
        const who = seen.kind === "held" ? `held by ${holderText(seen.holder)}` : `at ${lockDir}, whose holder record is unreadable`;
        opts.log?.(
          `waiting for the berth lock ${who}; giving up at ${new Date(deadline).toISOString()} (BERTH_LOCK_TIMEOUT_MS=${timeoutMs})`,
        );
      },
      ...(opts.sleep ? { sleep: opts.sleep } : {}),
      ...(opts.now ? { now: opts.now } : {}),
    });
  } catch (e) {
    cleanupStaged(t.tmp, me, t.staged);
    removeCreated(t.created);
    const last = e instanceof RetryExhausted ? e.lastError : e;
    if (last instanceof LockFatal) return fail(last.error);
    if (last instanceof LockBusy) return fail(timeoutFailure(root, lockDir, last.seen, timeoutMs, me));
    return fail(ioFailure(root, last, lockDir));
  }
  return ok(heldLock(t));
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
  const code = err.code && !String(err.message).startsWith(err.code) ? `${err.code} ` : "";
  // Node's message ends with the path it worked on (the lock's own temp directory, often): the lock path is named already.
  const why = `${code}${err.message ?? String(e)}`.replace(/, [a-z_]+ '[^]*$/, "");
  return {
    code: "lock.io",
    message: `could not take the berth lock ${root.describe(LOCK_PATH, real)}: ${why}`,
    where: { source: real ?? LOCK_PATH },
    hint:
      `berth needs a writable ${path.posix.dirname(LOCK_PATH)} under the root to keep two runs from mixing their files; ` +
      `nothing was written`,
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
      hint:
        `let that run finish and run berth again (at boot: systemctl status berth-config.service berth-run.service); if no ` +
        `berth process is running, remove ${lockDir}; BERTH_LOCK_TIMEOUT_MS sets how long to wait`,
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
