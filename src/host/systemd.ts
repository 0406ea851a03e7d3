/**
 * systemd over D-Bus (org.freedesktop.systemd1), never through `systemctl`:
 * jobs are awaited through the `JobRemoved` signal with a deadline, unit state
 * is read as typed properties, and unit changes arrive as `PropertiesChanged`
 * signals so a crash is seen at once rather than at the next poll.
 *
 * Built on dbus-next's (the maintained @particle/dbus-next fork) low-level message API rather than its proxy objects:
 * a proxy introspects every object it touches (one extra round trip and a
 * large XML parse per unit) and has no call deadlines; raw messages give both
 * for free. The run phase and the agent depend only on the `Systemd`
 * interface; tests/fakes/systemd-fake.ts is its recording fake.
 */
import dbus from "@particle/dbus-next";
import { BerthFailure, type BerthError } from "../util/result.ts";

export type JobResult = "done" | "failed" | "timeout" | "canceled" | "dependency" | "skipped";
export type JobMode = "replace" | "fail" | "isolate" | "ignore-dependencies" | "ignore-requirements";

/** A unit as systemd reports it. Timestamps are µs since the epoch (CLOCK_REALTIME), 0 = never. */
export interface UnitState {
  loadState: string;
  activeState: string;
  subState: string;
  /** 0 when there is no main process (or the unit is not a service). */
  mainPid: number;
  activeEnterTimestampUs: number;
  activeExitTimestampUs: number;
  inactiveEnterTimestampUs: number;
  /** Restarts done by systemd's own `Restart=` since the unit was last started by a job (services only). */
  nRestarts: number;
  /** Service `Result` (`success`, `exit-code`, `signal`, `timeout`, ...); `""` for non-services. */
  result: string;
  unitFileState?: string;
}

export interface JobOptions {
  /** How long to wait for the job to finish, ms (default 90 000, systemd's own default start timeout). */
  timeoutMs?: number;
  /** Job mode (default `replace`). */
  mode?: JobMode;
}

export interface EnableChange {
  /** `symlink` or `unlink`. */
  type: string;
  file: string;
  destination: string;
}

/** The narrow systemd interface the run phase and the agent depend on. */
export interface Systemd {
  daemonReload(): Promise<void>;
  startUnit(name: string, opts?: JobOptions): Promise<JobResult>;
  /**
   * Queue a start job and return its object path as soon as systemd has
   * accepted it, without waiting for it to finish: for units ordered after
   * the caller's own unit (awaiting those would deadlock).
   */
  enqueueStartUnit(name: string, opts?: { mode?: JobMode }): Promise<string>;
  /**
   * Clear a unit's `failed` state and its start-rate counter
   * (`systemctl reset-failed`), so a unit systemd gave up on
   * (`start-limit-hit`) can be started again.
   */
  resetFailedUnit(name: string): Promise<void>;
  restartUnit(name: string, opts?: JobOptions): Promise<JobResult>;
  stopUnit(name: string, opts?: JobOptions): Promise<JobResult>;
  /** `systemctl enable` (runtime=false) for unit files already on disk; does not start them. */
  enableUnits?(names: string[], opts?: { runtime?: boolean; force?: boolean }): Promise<EnableChange[]>;
  /** Current state; a unit systemd does not know reads as `loadState: "not-found"`, not an error. */
  unitState(name: string): Promise<UnitState>;
  /**
   * Watch units: `onChange` gets each unit's state once at subscription (the
   * baseline) and again on every change systemd signals. Resolves with an
   * unsubscribe function.
   */
  subscribe(onChange: (unit: string, state: UnitState) => void, units: string[]): Promise<() => void>;
  close(): void;
}

export type SystemdErrorCode =
  | "systemd.connect"
  | "systemd.no-such-unit"
  | "systemd.call-failed"
  | "systemd.call-deadline"
  | "systemd.job-deadline"
  | "systemd.disconnected";

/** A failed systemd operation: the unit, the D-Bus error name (when there is one), and what to do. */
export class SystemdError extends BerthFailure {
  readonly code: SystemdErrorCode;
  readonly unit: string | undefined;
  /** e.g. `org.freedesktop.systemd1.NoSuchUnit`, `org.freedesktop.DBus.Error.AccessDenied`. */
  readonly dbusName: string | undefined;
  constructor(e: BerthError & { code: SystemdErrorCode }, unit?: string, dbusName?: string) {
    super(e);
    this.name = "SystemdError";
    this.code = e.code;
    this.unit = unit;
    this.dbusName = dbusName;
  }
}

export interface ConnectOptions {
  /** D-Bus address, e.g. `unix:path=/tmp/x/system_bus_socket`. Default: the system bus. */
  busAddress?: string;
  /** Deadline for each D-Bus method call (and for connecting), ms. Default 10 000. */
  timeoutMs?: number;
}

const SYSTEMD = "org.freedesktop.systemd1";
const MANAGER_PATH = "/org/freedesktop/systemd1";
const MANAGER = "org.freedesktop.systemd1.Manager";
const UNIT = "org.freedesktop.systemd1.Unit";
const SERVICE = "org.freedesktop.systemd1.Service";
const PROPS = "org.freedesktop.DBus.Properties";
const DBUS = "org.freedesktop.DBus";
const SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket";

const JOB_RESULTS: ReadonlySet<string> = new Set<JobResult>(["done", "failed", "timeout", "canceled", "dependency", "skipped"]);

type Msg = InstanceType<typeof dbus.Message>;
type Bus = ReturnType<typeof dbus.sessionBus>;

interface DBusErrorLike {
  type: string;
  text: string;
}
function isDBusError(e: unknown): e is DBusErrorLike {
  return typeof e === "object" && e !== null && typeof (e as { type?: unknown }).type === "string" && (e as { name?: unknown }).name === "DBusError";
}

function hintFor(dbusName: string | undefined, unit: string | undefined): string {
  if (dbusName === "org.freedesktop.DBus.Error.AccessDenied" || dbusName === "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired") {
    return "berth must run as root to manage units";
  }
  if (dbusName === "org.freedesktop.systemd1.NoSuchUnit" || dbusName === "org.freedesktop.DBus.Error.FileNotFound") {
    return unit ? `is the unit file for ${unit} installed? run \`berth init\` (config phase) or check \`systemctl cat ${unit}\`` : "check the unit name";
  }
  return unit ? `check \`systemctl status ${unit}\` and \`journalctl -u ${unit}\`` : "check `journalctl -u systemd` (PID 1)";
}

function num(v: unknown): number {
  if (typeof v === "bigint") return Number(v);
  if (typeof v === "number") return v;
  return 0;
}
function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

/** `a{sv}` from GetAll → plain values. */
function unvariant(body: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (typeof body !== "object" || body === null) return out;
  for (const [k, v] of Object.entries(body as Record<string, unknown>)) {
    out[k] = typeof v === "object" && v !== null && "value" in v ? (v as { value: unknown }).value : v;
  }
  return out;
}

function toUnitState(unit: Record<string, unknown>, service: Record<string, unknown> | undefined): UnitState {
  const s: UnitState = {
    loadState: str(unit.LoadState),
    activeState: str(unit.ActiveState),
    subState: str(unit.SubState),
    mainPid: num(service?.MainPID),
    activeEnterTimestampUs: num(unit.ActiveEnterTimestamp),
    activeExitTimestampUs: num(unit.ActiveExitTimestamp),
    inactiveEnterTimestampUs: num(unit.InactiveEnterTimestamp),
    nRestarts: num(service?.NRestarts),
    result: str(service?.Result),
  };
  if (typeof unit.UnitFileState === "string" && unit.UnitFileState !== "") s.unitFileState = unit.UnitFileState;
  return s;
}

function sameState(a: UnitState | undefined, b: UnitState): boolean {
  if (!a) return false;
  return (
    a.loadState === b.loadState &&
    a.activeState === b.activeState &&
    a.subState === b.subState &&
    a.mainPid === b.mainPid &&
    a.activeEnterTimestampUs === b.activeEnterTimestampUs &&
    a.activeExitTimestampUs === b.activeExitTimestampUs &&
    a.inactiveEnterTimestampUs === b.inactiveEnterTimestampUs &&
    a.nRestarts === b.nRestarts &&
    a.result === b.result &&
    a.unitFileState === b.unitFileState
  );
}

interface JobWaiter {
  unit: string;
  /** Known once the StartUnit/... reply arrives. */
  jobPath?: string;
  /** JobRemoved signals for this unit seen before the reply (the signal can race the reply). */
  early: Array<{ jobPath: string; result: string }>;
  settle?: (result: string) => void;
}

/** Connect to systemd (PID 1 of the host, or of a lab node via `busAddress`). */
export async function connectSystemd(opts: ConnectOptions = {}): Promise<Systemd> {
  const address = opts.busAddress ?? process.env.DBUS_SYSTEM_BUS_ADDRESS ?? SYSTEM_BUS;
  const callTimeout = opts.timeoutMs ?? 10_000;
  const bus: Bus = dbus.sessionBus({ busAddress: address });
  let closed = false;
  let disconnectError: Error | undefined;
  const waiters = new Set<JobWaiter>();
  /** object path → handlers for PropertiesChanged on it. */
  const propWatchers = new Map<string, Set<() => void>>();

  /** Rejecters of method calls still waiting for a reply. */
  const pendingCalls = new Set<(e: Error) => void>();
  const failAllWaiters = () => {
    for (const w of waiters) w.settle?.("__disconnected");
    const err = new SystemdError({ code: "systemd.disconnected", message: `the D-Bus connection to ${address} was lost${disconnectError ? `: ${disconnectError.message}` : ""}`, where: { source: address }, hint: "reconnect (connectSystemd) and retry" });
    for (const reject of [...pendingCalls]) reject(err);
  };

  // Connect (Hello) with a deadline; dbus-next emits 'connect' or 'error'.
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => {
      cleanup();
      bus.disconnect();
      reject(new SystemdError({ code: "systemd.connect", message: `no answer from the D-Bus bus at ${address} within ${callTimeout} ms`, where: { source: address }, hint: "is dbus running (`systemctl status dbus`)? is this the right bus address?" }));
    }, callTimeout);
    const onConnect = () => {
      cleanup();
      resolve();
    };
    const onError = (err: unknown) => {
      cleanup();
      bus.disconnect();
      const m = err instanceof Error ? err.message : String(err);
      reject(new SystemdError({ code: "systemd.connect", message: `cannot connect to the D-Bus bus at ${address}: ${m}`, where: { source: address }, hint: "is dbus running and is berth root? set --bus-address / DBUS_SYSTEM_BUS_ADDRESS for a non-default bus", cause: err }));
    };
    const cleanup = () => {
      clearTimeout(t);
      bus.removeListener("connect", onConnect);
      bus.removeListener("error", onError);
    };
    bus.on("connect", onConnect);
    bus.on("error", onError);
  });

  bus.on("error", (err: unknown) => {
    disconnectError = err instanceof Error ? err : new Error(String(err));
    failAllWaiters();
  });
  // dbus-next does not forward the stream's end to the bus; watch it here so
  // a dead bus fails pending jobs at once instead of at their deadline.
  const conn = (bus as unknown as { _connection?: { on?: (ev: string, cb: () => void) => void } })._connection;
  conn?.on?.("end", () => {
    disconnectError ??= new Error("the D-Bus connection was closed by the other end");
    failAllWaiters();
  });

  async function call(member: string, args: { path?: string; iface?: string; signature?: string; body?: unknown[]; unit?: string; destination?: string; timeoutMs?: number }): Promise<Msg> {
    const unit = args.unit;
    if (closed || disconnectError) {
      throw new SystemdError(
        { code: "systemd.disconnected", message: `${member}${unit ? ` (${unit})` : ""}: the D-Bus connection is ${closed ? "closed" : `lost: ${disconnectError?.message}`}`, where: { source: address }, hint: "reconnect (connectSystemd) and retry" },
        unit,
      );
    }
    const msg = new dbus.Message({
      destination: args.destination ?? SYSTEMD,
      path: args.path ?? MANAGER_PATH,
      interface: args.iface ?? MANAGER,
      member,
      signature: args.signature ?? "",
      body: args.body ?? [],
    });
    const ms = args.timeoutMs ?? callTimeout;
    let timer: NodeJS.Timeout | undefined;
    let rejectOnDisconnect: ((e: Error) => void) | undefined;
    try {
      const reply = await Promise.race([
        bus.call(msg),
        new Promise<never>((_, reject) => {
          rejectOnDisconnect = reject;
          pendingCalls.add(reject);
          timer = setTimeout(() => {
            // Drop dbus-next's reply handler so a late reply is not kept forever.
            const handlers = (bus as unknown as { _methodReturnHandlers?: Record<string, unknown> })._methodReturnHandlers;
            if (handlers && msg.serial !== null) delete handlers[String(msg.serial)];
            reject(new SystemdError({ code: "systemd.call-deadline", message: `${member}${unit ? ` of ${unit}` : ""}: systemd did not answer within ${ms} ms`, where: { source: address, ...(unit ? { path: unit } : {}) }, hint: "systemd (PID 1) may be busy or hung: check `systemctl status` and the journal" }, unit));
          }, ms);
        }),
      ]);
      if (!reply) throw new Error(`${member}: no reply`);
      return reply;
    } catch (err) {
      if (err instanceof SystemdError) {
        if (err.code === "systemd.disconnected" && err.unit === undefined && unit !== undefined) {
          const e0 = err.errors[0];
          throw new SystemdError({ code: "systemd.disconnected", message: `${member} of ${unit}: ${err.message}`, where: { source: address, path: unit }, ...(e0?.hint ? { hint: e0.hint } : {}) }, unit);
        }
        throw err;
      }
      if (isDBusError(err)) {
        const code: SystemdErrorCode = err.type === "org.freedesktop.systemd1.NoSuchUnit" ? "systemd.no-such-unit" : "systemd.call-failed";
        throw new SystemdError(
          { code, message: `${member}${unit ? ` of ${unit}` : ""} failed: ${err.type}: ${err.text}`, where: { source: address, ...(unit ? { path: unit } : {}) }, hint: hintFor(err.type, unit), cause: err },
          unit,
          err.type,
        );
      }
      const m = err instanceof Error ? err.message : String(err);
      throw new SystemdError({ code: "systemd.call-failed", message: `${member}${unit ? ` of ${unit}` : ""} failed: ${m}`, where: { source: address }, hint: hintFor(undefined, unit), cause: err }, unit);
    } finally {
      clearTimeout(timer);
      if (rejectOnDisconnect) pendingCalls.delete(rejectOnDisconnect);
    }
  }

  // Signals: route JobRemoved to job waiters, PropertiesChanged to unit watchers.
  bus.on("message", (m: Msg) => {
    if (m.type !== dbus.MessageType.SIGNAL) return;
    if (m.interface === MANAGER && m.member === "JobRemoved") {
      const [, jobPath, unit, result] = m.body as [unknown, string, string, string];
      for (const w of waiters) {
        if (w.unit !== unit) continue;
        if (w.jobPath === undefined) w.early.push({ jobPath, result });
        else if (w.jobPath === jobPath) w.settle?.(result);
      }
    } else if (m.interface === PROPS && m.member === "PropertiesChanged") {
      const set = propWatchers.get(m.path);
      if (set) for (const fn of [...set]) fn();
    }
  });

  try {
    await call("AddMatch", { destination: DBUS, path: "/org/freedesktop/DBus", iface: DBUS, signature: "s", body: [`type='signal',sender='${SYSTEMD}',path='${MANAGER_PATH}',interface='${MANAGER}',member='JobRemoved'`] });
    // Without Subscribe, systemd sends no unit/job signals when no one else asked.
    await call("Subscribe", {});
  } catch (e) {
    // The caller gets no handle to close: an open socket here would keep the
    // process alive (berth init would hang instead of exiting with the error).
    closed = true;
    bus.disconnect();
    throw e;
  }

  async function loadUnit(name: string): Promise<string> {
    const r = await call("LoadUnit", { signature: "s", body: [name], unit: name });
    return String(r.body[0]);
  }

  async function stateAt(name: string, path: string): Promise<UnitState> {
    const isService = name.endsWith(".service");
    const [u, s] = await Promise.all([
      call("GetAll", { path, iface: PROPS, signature: "s", body: [UNIT], unit: name }),
      isService ? call("GetAll", { path, iface: PROPS, signature: "s", body: [SERVICE], unit: name }) : Promise.resolve(undefined),
    ]);
    return toUnitState(unvariant(u.body[0]), s ? unvariant(s.body[0]) : undefined);
  }

  async function runJob(member: "StartUnit" | "RestartUnit" | "StopUnit", name: string, o: JobOptions | undefined): Promise<JobResult> {
    const timeoutMs = o?.timeoutMs ?? 90_000;
    const w: JobWaiter = { unit: name, early: [] };
    // Registered BEFORE the call: JobRemoved can arrive before we know the job path.
    waiters.add(w);
    let timer: NodeJS.Timeout | undefined;
    try {
      const done = new Promise<string>((resolve) => {
        w.settle = resolve;
      });
      const reply = await call(member, { signature: "ss", body: [name, o?.mode ?? "replace"], unit: name });
      w.jobPath = String(reply.body[0]);
      const early = w.early.find((e) => e.jobPath === w.jobPath);
      const result = early
        ? early.result
        : await Promise.race([
            done,
            new Promise<string>((resolve) => {
              timer = setTimeout(() => resolve("__deadline"), timeoutMs);
            }),
          ]);
      if (result === "__deadline") {
        throw new SystemdError(
          { code: "systemd.job-deadline", message: `${member} of ${name}: job ${w.jobPath} did not finish within ${timeoutMs} ms (it is still queued in systemd)`, where: { source: address, path: name }, hint: `check \`systemctl list-jobs\`, \`systemctl status ${name}\` and \`journalctl -u ${name}\`` },
          name,
        );
      }
      if (result === "__disconnected") {
        throw new SystemdError({ code: "systemd.disconnected", message: `${member} of ${name}: the D-Bus connection was lost while waiting for job ${w.jobPath}`, where: { source: address, path: name }, hint: "reconnect and check the unit's state" }, name);
      }
      if (!JOB_RESULTS.has(result)) {
        throw new SystemdError({ code: "systemd.call-failed", message: `${member} of ${name}: unknown job result "${result}"`, where: { source: address, path: name } }, name);
      }
      return result as JobResult;
    } finally {
      clearTimeout(timer);
      waiters.delete(w);
    }
  }

  return {
    async daemonReload() {
      // Reload replies when the reload is complete; big unit sets can take a while.
      await call("Reload", { timeoutMs: Math.max(callTimeout, 30_000) });
    },
    startUnit: (name, o) => runJob("StartUnit", name, o),
    async resetFailedUnit(name) {
      await call("ResetFailedUnit", { signature: "s", body: [name], unit: name });
    },
    async enqueueStartUnit(name, o) {
      const reply = await call("StartUnit", { signature: "ss", body: [name, o?.mode ?? "replace"], unit: name });
      return String(reply.body[0]);
    },
    restartUnit: (name, o) => runJob("RestartUnit", name, o),
    stopUnit: (name, o) => runJob("StopUnit", name, o),
    async enableUnits(names, o) {
      const r = await call("EnableUnitFiles", { signature: "asbb", body: [names, o?.runtime ?? false, o?.force ?? false], unit: names.join(" ") });
      const changes = (r.body[1] ?? []) as Array<[string, string, string]>;
      return changes.map(([type, file, destination]) => ({ type, file, destination }));
    },
    async unitState(name) {
      return stateAt(name, await loadUnit(name));
    },
    async subscribe(onChange, units) {
      const entries: Array<{ name: string; path: string; last?: UnitState; busy: boolean; dirty: boolean; handler: () => void; rule: string }> = [];
      let active = true;
      const refresh = async (e: (typeof entries)[number]) => {
        // Coalesce bursts of PropertiesChanged into one GetAll at a time.
        if (e.busy) {
          e.dirty = true;
          return;
        }
        e.busy = true;
        try {
          do {
            e.dirty = false;
            let s: UnitState;
            try {
              s = await stateAt(e.name, e.path);
            } catch {
              // The connection is gone or systemd is busy; the next signal or
              // the caller's own probe catches up. Never throw from a signal.
              return;
            }
            if (active && !sameState(e.last, s)) {
              e.last = s;
              onChange(e.name, s);
            }
          } while (e.dirty && active);
        } finally {
          e.busy = false;
        }
      };
      const unsubscribe = async () => {
        if (!active) return;
        active = false;
        for (const e of entries) {
          propWatchers.get(e.path)?.delete(e.handler);
          if (propWatchers.get(e.path)?.size === 0) propWatchers.delete(e.path);
          if (!closed && !disconnectError) {
            await call("RemoveMatch", { destination: DBUS, path: "/org/freedesktop/DBus", iface: DBUS, signature: "s", body: [e.rule] }).catch(() => undefined);
          }
        }
      };
      try {
        for (const name of [...new Set(units)].sort()) {
          const path = await loadUnit(name);
          const rule = `type='signal',sender='${SYSTEMD}',path='${path}',interface='${PROPS}',member='PropertiesChanged'`;
          const e = { name, path, busy: false, dirty: false, rule, handler: () => void refresh(e) };
          entries.push(e);
          await call("AddMatch", { destination: DBUS, path: "/org/freedesktop/DBus", iface: DBUS, signature: "s", body: [rule] });
          let set = propWatchers.get(path);
          if (!set) propWatchers.set(path, (set = new Set()));
          set.add(e.handler);
        }
      } catch (err) {
        // The caller gets no unsubscribe: undo the units already watched, or
        // onChange would keep firing for a subscription that "failed".
        await unsubscribe();
        throw err;
      }
      for (const e of entries) await refresh(e);
      return () => void unsubscribe();
    },
    close() {
      if (closed) return;
      closed = true;
      propWatchers.clear();
      failAllWaiters();
      bus.disconnect();
    },
  };
}
