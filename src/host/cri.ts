/**
 * containerd's CRI as the run phase and the agent use it: the client
 * (cri-client.ts, re-exported here) and waiting until containerd is ready
 * (socket → Version → Status RuntimeReady) under one deadline, noticing a
 * new socket through inotify rather than at the next backoff tick.
 */
import fs from "node:fs";
import path from "node:path";
import { createCriClient, CriError, type CriClient, type CriStatus, type CriVersion } from "./cri-client.ts";
import { errorMessage } from "../util/errors.ts";
import { abortError, retry, RetryExhausted, type Backoff } from "../util/retry.ts";

export {
  createCriClient,
  runningContainerdVersion,
  socketTarget,
  CriError,
  type CallOptions,
  type ContainerdVersion,
  type CriClient,
  type CriClientOptions,
  type CriErrorCode,
  type CriImage,
  type CriStatus,
  type CriVersion,
  type RegistryAuth,
  type RuntimeCondition,
} from "./cri-client.ts";

// --- waiting for readiness ---------------------------------------------------

export type CriWaitPhase = "socket" | "version" | "status";

export interface CriWaitInfo {
  phase: CriWaitPhase;
  attempt: number;
  delayMs: number;
  elapsedMs: number;
  /** Why we are waiting, one line (e.g. `socket /run/containerd/containerd.sock does not exist`). */
  cause: string;
}

export interface WaitForCriReadyOptions {
  /** Overall deadline as a duration, ms (default 300 000: generous, a first boot can be slow). */
  deadlineMs?: number;
  /** Backoff between attempts; reset to `initialMs` when a phase is passed. Default 10 ms → 500 ms, full jitter. */
  backoff?: Backoff;
  /** Called before each wait with its cause: log it. */
  onWait?: (info: CriWaitInfo) => void;
  /** Per-call deadline for Version/Status, ms (default 2000, capped by the time left). */
  callTimeoutMs?: number;
  signal?: AbortSignal;
  /** Use this client instead of making (and closing) one. */
  client?: CriClient;
}

export interface CriReady {
  version: CriVersion;
  status: CriStatus;
  /** ms from the start of the wait to each phase passed. */
  timeline: { socketMs: number; versionMs: number; readyMs: number };
  attempts: number;
}

/** `dir`, or its nearest ancestor that exists (/run/containerd may not exist yet early in boot). */
function nearestExisting(dir: string): string {
  let d = dir;
  while (!fs.existsSync(d)) {
    const up = path.dirname(d);
    if (up === d) break;
    d = up;
  }
  return d;
}

/**
 * Sleep that ends early when something changes in the socket's directory (or
 * its nearest existing ancestor) through fs.watch (inotify), so a socket that
 * appears is seen at once instead of at the next backoff tick. If nothing can
 * be watched it is a plain sleep; the backoff still bounds the wait.
 */
function watchingSleep(socketDir: string): (ms: number, signal?: AbortSignal) => Promise<void> {
  return (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      let watcher: fs.FSWatcher | undefined;
      const done = (err?: Error) => {
        clearTimeout(timer);
        watcher?.close();
        signal?.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else resolve();
      };
      const onAbort = () => done(abortError(signal));
      const timer = setTimeout(() => done(), ms);
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        watcher = fs.watch(nearestExisting(socketDir), { persistent: false }, () => done());
        watcher.on("error", () => {
          /* keep the timer: the plain sleep still bounds the wait */
        });
      } catch {
        watcher = undefined;
      }
    });
}

/**
 * Wait until containerd's CRI is ready: the socket file exists, then
 * `RuntimeService/Version` answers, then `Status` reports RuntimeReady=true.
 * Jittered exponential backoff under one overall deadline; every wait is
 * reported through `onWait` with its cause. Rejects with a `CriError`
 * (`cri.not-ready`) naming the socket, the phase reached and the last cause.
 */
export async function waitForCriReady(socketPath: string, opts: WaitForCriReadyOptions = {}): Promise<CriReady> {
  const start = Date.now();
  const deadline = start + (opts.deadlineMs ?? 300_000);
  const backoff: Backoff = opts.backoff ?? { initialMs: 10, maxMs: 500, factor: 2, jitter: 0.5 };
  const callTimeout = opts.callTimeoutMs ?? 2000;
  let attempts = 0;
  let phase: CriWaitPhase = "socket";
  const report = (p: CriWaitPhase) => (i: { attempt: number; delayMs: number; cause: unknown; elapsedMs: number }) =>
    opts.onWait?.({ phase: p, attempt: i.attempt, delayMs: i.delayMs, elapsedMs: Date.now() - start, cause: errorMessage(i.cause) });
  const base = { ...backoff, deadline, ...(opts.signal ? { signal: opts.signal } : {}) };
  const callOpts = (remaining: number) => ({ timeoutMs: Math.max(1, Math.min(callTimeout, remaining)) });

  // The last attempt before the deadline runs with whatever time is left, so
  // its "no answer within 1 ms" says nothing; report the cause before it.
  let informative: unknown;
  const noteCause = async <T>(remaining: number, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      if (!(e instanceof CriError && e.code === "cri.deadline" && remaining < callTimeout)) informative = e;
      throw e;
    }
  };
  // A client made here uses an even shorter channel backoff: while waiting,
  // our own retry paces the attempts and the channel must not lag behind it.
  const reconnect = { initialMs: 5, maxMs: Math.min(backoff.maxMs, 100) };
  const client = opts.client ?? createCriClient(socketPath, { callTimeoutMs: callTimeout, reconnect });
  try {
    const socketAttempt = () => {
      attempts++;
      return isSocket(socketPath);
    };
    await retry(socketAttempt, { ...base, onRetry: report("socket"), sleep: watchingSleep(path.dirname(socketPath)) });
    const socketMs = Date.now() - start;

    phase = "version";
    const versionAttempt = (_a: number, remaining: number) => {
      attempts++;
      return noteCause(remaining, () => client.version(callOpts(remaining)));
    };
    const version = await retry(versionAttempt, { ...base, onRetry: report("version") });
    const versionMs = Date.now() - start;

    phase = "status";
    informative = undefined;
    const statusAttempt = async (_a: number, remaining: number) => {
      attempts++;
      const s = await noteCause(remaining, () => client.status(callOpts(remaining)));
      if (!s.runtimeReady) throw (informative = notReadyYet(s));
      return s;
    };
    const status = await retry(statusAttempt, { ...base, onRetry: report("status") });
    return { version, status, attempts, timeline: { socketMs, versionMs, readyMs: Date.now() - start } };
  } catch (err) {
    const last = phase !== "socket" && informative !== undefined ? informative : err instanceof RetryExhausted ? err.lastError : err;
    const why =
      err instanceof RetryExhausted && err.reason === "aborted" ? "the wait was cancelled" : `not ready after ${Date.now() - start} ms`;
    throw new CriError(
      {
        code: "cri.not-ready",
        message: `containerd's CRI on ${socketPath} is ${why} (stuck at ${phase}: ${errorMessage(last)})`,
        where: { source: `unix://${socketPath}`, path: phase },
        hint: NOT_READY_HINT[phase](socketPath),
        cause: last,
      },
      socketPath,
      phase,
    );
  } finally {
    if (!opts.client) client.close();
  }
}

/** Resolves when `socketPath` is a socket; throws why not. */
async function isSocket(socketPath: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(socketPath);
  } catch {
    throw new Error(`socket ${socketPath} does not exist yet`);
  }
  if (!st.isSocket()) throw new Error(`${socketPath} exists but is not a socket`);
}

/** Why a Status answer is not ready yet. */
function notReadyYet(s: CriStatus): Error {
  const c = s.conditions.find((x) => x.type === "RuntimeReady");
  return new Error(
    c
      ? `RuntimeReady is false: ${c.reason || "no reason"}${c.message ? `: ${c.message}` : ""}`
      : "Status has no RuntimeReady condition yet",
  );
}

const NOT_READY_HINT: Record<CriWaitPhase, (socketPath: string) => string> = {
  socket: (socketPath) =>
    "containerd has not created its socket: check `systemctl status containerd` and `journalctl -u containerd`, " +
    `and that [grpc] address in /etc/containerd/config.toml is ${socketPath}`,
  version: () =>
    "the socket exists but containerd does not answer: check `journalctl -u containerd` (is the CRI plugin disabled in disabled_plugins?)",
  status: () => "containerd answers but the CRI runtime is not ready: check `journalctl -u containerd` for CRI plugin errors",
};
