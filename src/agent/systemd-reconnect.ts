/**
 * A `Systemd` that survives its D-Bus connection: the agent runs for months,
 * and dbus can be restarted under it (package upgrade). When a call fails
 * because the connection is gone, this reconnects (single flight, jittered
 * backoff 200 ms → 10 s), re-establishes every subscription (the baseline it
 * sends brings the agent up to date) and retries the call once.
 */
import { SystemdError, type JobMode, type JobOptions, type JobResult, type Systemd, type UnitState } from "../host/systemd.ts";
import { errorMessage } from "../util/errors.ts";
import { backoffDelay, sleep, type Backoff } from "../util/retry.ts";

const RECONNECT_BACKOFF: Backoff = { initialMs: 200, maxMs: 10_000, jitter: 0.5 };

export interface ReconnectOptions {
  connect: () => Promise<Systemd>;
  /** Told about each reconnect (for the log). */
  onReconnect?: (info: { attempt: number; ok: boolean; cause?: string }) => void;
  /** Give up on one call after this long without a connection, ms (default 10 000). */
  waitMs?: number;
}

function isDisconnect(e: unknown): boolean {
  return e instanceof SystemdError && (e.code === "systemd.disconnected" || e.code === "systemd.connect");
}

export function reconnectingSystemd(first: Systemd, o: ReconnectOptions): Systemd {
  let inner = first;
  let closed = false;
  let pending: Promise<Systemd> | undefined;
  const subs: Array<{ onChange: (u: string, s: UnitState) => void; units: string[]; unsubscribe?: () => void; active: boolean }> = [];

  const reconnect = (): Promise<Systemd> => {
    pending ??= (async () => {
      const end = Date.now() + (o.waitMs ?? 10_000);
      for (let attempt = 1; ; attempt++) {
        if (closed) throw new SystemdError({ code: "systemd.disconnected", message: "closed" });
        try {
          const next = await o.connect();
          try {
            inner.close();
          } catch {
            /* already gone */
          }
          inner = next;
          for (const s of subs) if (s.active) s.unsubscribe = await next.subscribe(s.onChange, s.units);
          o.onReconnect?.({ attempt, ok: true });
          return next;
        } catch (e) {
          o.onReconnect?.({ attempt, ok: false, cause: errorMessage(e) });
          const delay = backoffDelay(RECONNECT_BACKOFF, attempt);
          if (Date.now() + delay > end) throw e;
          await sleep(delay);
        }
      }
    })().finally(() => {
      pending = undefined;
    });
    return pending;
  };

  const call = async <T>(fn: (s: Systemd) => Promise<T>): Promise<T> => {
    const s = inner;
    try {
      return await fn(s);
    } catch (e) {
      if (!isDisconnect(e) || closed) throw e;
      return fn(await reconnect());
    }
  };

  return {
    daemonReload: () => call((s) => s.daemonReload()),
    startUnit: (n: string, opts?: JobOptions): Promise<JobResult> => call((s) => s.startUnit(n, opts)),
    enqueueStartUnit: (n: string, opts?: { mode?: JobMode }): Promise<string> => call((s) => s.enqueueStartUnit(n, opts)),
    resetFailedUnit: (n: string): Promise<void> => call((s) => s.resetFailedUnit(n)),
    async restartUnit(n: string, opts?: JobOptions): Promise<JobResult> {
      // Not idempotent: the connection can go after systemd queued the job (while
      // waiting for JobRemoved), and a blind retry would restart the unit twice on
      // one budget slot, the second time just after it came up. Retry only when
      // systemd shows no sign of the first one (not (re)started since, no job running).
      const sentAt = Date.now();
      const s = inner;
      try {
        return await s.restartUnit(n, opts);
      } catch (e) {
        if (!isDisconnect(e) || closed) throw e;
        const next = await reconnect();
        const u = await next.unitState(n);
        if (u.activeState === "activating" || u.activeState === "deactivating" || u.activeEnterTimestampUs / 1000 >= sentAt) throw e;
        return next.restartUnit(n, opts);
      }
    },
    stopUnit: (n: string, opts?: JobOptions): Promise<JobResult> => call((s) => s.stopUnit(n, opts)),
    unitState: (n: string) => call((s) => s.unitState(n)),
    async subscribe(onChange, units) {
      const sub: (typeof subs)[number] = { onChange, units: [...units], active: true };
      subs.push(sub);
      sub.unsubscribe = await call((s) => s.subscribe(onChange, units));
      return () => {
        sub.active = false;
        sub.unsubscribe?.();
        subs.splice(subs.indexOf(sub), 1);
      };
    },
    close() {
      closed = true;
      inner.close();
    },
  };
}
