/**
 * The one retry/backoff helper: exponential backoff with full jitter, a cap,
 * an overall deadline and an attempt limit, and every wait reported with its
 * cause. Everything in berth that retries uses this (nodeadm grew three
 * different helpers; one is enough). `backoffDelay` is the one backoff
 * formula, also for loops that cannot use `retry` itself (the agent's repair
 * backoff, the D-Bus reconnect).
 */
import { errorMessage } from "./errors.ts";

export interface Backoff {
  /** First delay, ms. */
  initialMs: number;
  /** Largest single delay, ms. */
  maxMs: number;
  /** Growth per attempt (default 2). */
  factor?: number;
  /** 0..1: fraction of each delay that is randomised (default 1 = full jitter over [d*(1-j), d]). */
  jitter?: number;
}

export interface RetryOptions extends Backoff {
  /** Absolute deadline as `Date.now()` ms, or a duration via `timeoutMs`. */
  deadline?: number;
  timeoutMs?: number;
  /** Maximum attempts (including the first). Unbounded when absent, but then a deadline is required. */
  maxAttempts?: number;
  /** Called before each wait with the attempt number (1-based), the delay and the error that caused it. */
  onRetry?: (info: { attempt: number; delayMs: number; cause: unknown; elapsedMs: number }) => void;
  /** Return false to stop retrying on this error at once. */
  retryable?: (err: unknown) => boolean;
  signal?: AbortSignal;
  /** Injected for tests. */
  random?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  now?: () => number;
}

export class RetryExhausted extends Error {
  readonly attempts: number;
  readonly elapsedMs: number;
  readonly lastError: unknown;
  readonly reason: "deadline" | "attempts" | "not-retryable" | "aborted";
  constructor(reason: RetryExhausted["reason"], attempts: number, elapsedMs: number, lastError: unknown) {
    super(`gave up after ${attempts} attempt(s) in ${elapsedMs} ms (${reason}): ${errorMessage(lastError)}`);
    this.name = "RetryExhausted";
    this.reason = reason;
    this.attempts = attempts;
    this.elapsedMs = elapsedMs;
    this.lastError = lastError;
  }
}

/** The delay before retry number `attempt` (1-based), jittered. Pure given `random`. */
export function backoffDelay(b: Backoff, attempt: number, random: () => number = Math.random): number {
  const factor = b.factor ?? 2;
  const jitter = b.jitter ?? 1;
  const base = Math.min(b.maxMs, b.initialMs * Math.pow(factor, Math.max(0, attempt - 1)));
  return Math.round(base * (1 - jitter * random()));
}

/** Why `signal` was aborted, as an Error (its reason when that is one). */
export function abortError(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  return reason instanceof Error ? reason : new Error("aborted");
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(abortError(signal));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Run `fn` until it resolves, retrying failures with backoff until the
 * deadline or the attempt limit. `fn` receives the attempt number and the
 * time left before the deadline (so it can bound its own call).
 */
export async function retry<T>(fn: (attempt: number, remainingMs: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  const now = opts.now ?? Date.now;
  const start = now();
  const deadline = opts.deadline ?? (opts.timeoutMs !== undefined ? start + opts.timeoutMs : undefined);
  if (deadline === undefined && opts.maxAttempts === undefined) {
    throw new Error("retry needs a deadline or maxAttempts: every loop has a way out");
  }
  const doSleep = opts.sleep ?? sleep;
  let attempt = 0;
  for (;;) {
    attempt++;
    const remaining = deadline === undefined ? Number.POSITIVE_INFINITY : deadline - now();
    try {
      return await fn(attempt, remaining);
    } catch (err) {
      const elapsed = now() - start;
      if (opts.signal?.aborted) throw new RetryExhausted("aborted", attempt, elapsed, err);
      if (opts.retryable && !opts.retryable(err)) throw new RetryExhausted("not-retryable", attempt, elapsed, err);
      if (opts.maxAttempts !== undefined && attempt >= opts.maxAttempts) throw new RetryExhausted("attempts", attempt, elapsed, err);
      let delay = backoffDelay(opts, attempt, opts.random);
      if (deadline !== undefined) {
        const left = deadline - now();
        if (left <= 0) throw new RetryExhausted("deadline", attempt, elapsed, err);
        delay = Math.min(delay, left);
      }
      opts.onRetry?.({ attempt, delayMs: delay, cause: err, elapsedMs: elapsed });
      try {
        await doSleep(delay, opts.signal);
      } catch {
        throw new RetryExhausted("aborted", attempt, now() - start, err);
      }
    }
  }
}
