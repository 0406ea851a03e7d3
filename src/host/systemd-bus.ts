/**
 * The D-Bus connection under src/host/systemd.ts: connect with a deadline,
 * method calls to systemd with a deadline each, D-Bus errors turned into
 * `SystemdError`s with a hint, and a lost connection failing every pending
 * call at once. It knows nothing of units or jobs; it never retries or
 * reconnects (src/agent/systemd-reconnect.ts does).
 *
 * dbus-next's (the @particle/dbus-next fork) low-level message API, not its
 * proxy objects: a proxy introspects every object it touches (a round trip
 * and a large XML parse per unit) and has no call deadlines.
 */
import dbus from "@particle/dbus-next";
import { errorMessage } from "../util/errors.ts";
import { BerthFailure, type BerthError } from "../util/result.ts";

export const SYSTEMD = "org.freedesktop.systemd1";
export const MANAGER_PATH = "/org/freedesktop/systemd1";
export const MANAGER = "org.freedesktop.systemd1.Manager";
export const PROPS = "org.freedesktop.DBus.Properties";
const DBUS = "org.freedesktop.DBus";
const DBUS_PATH = "/org/freedesktop/DBus";

export type Msg = InstanceType<typeof dbus.Message>;
type Bus = ReturnType<typeof dbus.sessionBus>;

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

export interface CallArgs {
  path?: string;
  iface?: string;
  signature?: string;
  body?: unknown[];
  /** The unit the call is about, for errors. */
  unit?: string;
  destination?: string;
  timeoutMs?: number;
}

/** A connection to the bus systemd is on. */
export interface SystemdBus {
  readonly address: string;
  /** Neither closed nor lost. */
  readonly open: boolean;
  /** One method call (default: systemd's Manager), bound by the call deadline; rejects with a SystemdError. */
  call(member: string, args?: CallArgs): Promise<Msg>;
  /** Have the bus daemon route signals matching `rule` to this connection. */
  addMatch(rule: string): Promise<void>;
  removeMatch(rule: string): Promise<void>;
  onSignal(fn: (m: Msg) => void): void;
  /** Told when the connection is lost or closed, before pending calls fail. */
  onLost(fn: () => void): void;
  close(): void;
}

interface DBusErrorLike {
  type: string;
  text: string;
}
function isDBusError(e: unknown): e is DBusErrorLike {
  return (
    typeof e === "object" &&
    e !== null &&
    typeof (e as { type?: unknown }).type === "string" &&
    (e as { name?: unknown }).name === "DBusError"
  );
}

function hintFor(dbusName: string | undefined, unit: string | undefined): string {
  if (
    dbusName === "org.freedesktop.DBus.Error.AccessDenied" ||
    dbusName === "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
  ) {
    return "berth must run as root to manage units";
  }
  if (dbusName === "org.freedesktop.systemd1.NoSuchUnit" || dbusName === "org.freedesktop.DBus.Error.FileNotFound") {
    return unit
      ? `is the unit file for ${unit} installed? run \`berth init\` (config phase) or check \`systemctl cat ${unit}\``
      : "check the unit name";
  }
  return unit ? `check \`systemctl status ${unit}\` and \`journalctl -u ${unit}\`` : "check `journalctl -u systemd` (PID 1)";
}

/** Connect (Hello) with a deadline; dbus-next emits 'connect' or 'error'. */
function hello(bus: Bus, address: string, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => {
      cleanup();
      bus.disconnect();
      const message = `no answer from the D-Bus bus at ${address} within ${timeoutMs} ms`;
      reject(
        new SystemdError({
          code: "systemd.connect",
          message,
          where: { source: address },
          hint: "is dbus running (`systemctl status dbus`)? is this the right bus address?",
        }),
      );
    }, timeoutMs);
    const onConnect = () => {
      cleanup();
      resolve();
    };
    const onError = (err: unknown) => {
      cleanup();
      bus.disconnect();
      const message = `cannot connect to the D-Bus bus at ${address}: ${errorMessage(err)}`;
      const hint = "is dbus running and is berth root? set --bus-address / DBUS_SYSTEM_BUS_ADDRESS for a non-default bus";
      reject(new SystemdError({ code: "systemd.connect", message, where: { source: address }, hint, cause: err }));
    };
    const cleanup = () => {
      clearTimeout(t);
      bus.removeListener("connect", onConnect);
      bus.removeListener("error", onError);
    };
    bus.on("connect", onConnect);
    bus.on("error", onError);
  });
}

/** A call's failure as a SystemdError naming the member, the unit and (for D-Bus errors) the error name. */
function callError(err: unknown, member: string, unit: string | undefined, address: string): SystemdError {
  if (err instanceof SystemdError) {
    if (err.code === "systemd.disconnected" && err.unit === undefined && unit !== undefined) {
      const hint = err.errors[0]?.hint;
      return new SystemdError(
        {
          code: "systemd.disconnected",
          message: `${member} of ${unit}: ${err.message}`,
          where: { source: address, path: unit },
          ...(hint ? { hint } : {}),
        },
        unit,
      );
    }
    return err;
  }
  const of = unit ? ` of ${unit}` : "";
  if (isDBusError(err)) {
    const code: SystemdErrorCode = err.type === "org.freedesktop.systemd1.NoSuchUnit" ? "systemd.no-such-unit" : "systemd.call-failed";
    const where = { source: address, ...(unit ? { path: unit } : {}) };
    return new SystemdError(
      { code, message: `${member}${of} failed: ${err.type}: ${err.text}`, where, hint: hintFor(err.type, unit), cause: err },
      unit,
      err.type,
    );
  }
  const message = `${member}${of} failed: ${errorMessage(err)}`;
  return new SystemdError(
    { code: "systemd.call-failed", message, where: { source: address }, hint: hintFor(undefined, unit), cause: err },
    unit,
  );
}

interface Connection {
  bus: Bus;
  address: string;
  callTimeoutMs: number;
  closed: boolean;
  lost: Error | undefined;
  /** Rejecters of method calls still waiting for a reply. */
  pending: Set<(e: Error) => void>;
}

async function call(c: Connection, member: string, args: CallArgs): Promise<Msg> {
  const unit = args.unit;
  if (c.closed || c.lost) {
    const message = `${member}${unit ? ` (${unit})` : ""}: the D-Bus connection is ${c.closed ? "closed" : `lost: ${c.lost?.message}`}`;
    throw new SystemdError(
      { code: "systemd.disconnected", message, where: { source: c.address }, hint: "reconnect (connectSystemd) and retry" },
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
  const ms = args.timeoutMs ?? c.callTimeoutMs;
  let timer: NodeJS.Timeout | undefined;
  let rejectOnLoss: ((e: Error) => void) | undefined;
  const deadline = new Promise<never>((_, reject) => {
    rejectOnLoss = reject;
    c.pending.add(reject);
    timer = setTimeout(() => {
      // Drop dbus-next's reply handler so a late reply is not kept forever.
      const handlers = (c.bus as unknown as { _methodReturnHandlers?: Record<string, unknown> })._methodReturnHandlers;
      if (handlers && msg.serial !== null) delete handlers[String(msg.serial)];
      const message = `${member}${unit ? ` of ${unit}` : ""}: systemd did not answer within ${ms} ms`;
      const hint = "systemd (PID 1) may be busy or hung: check `systemctl status` and the journal";
      reject(
        new SystemdError(
          { code: "systemd.call-deadline", message, where: { source: c.address, ...(unit ? { path: unit } : {}) }, hint },
          unit,
        ),
      );
    }, ms);
  });
  try {
    const reply = await Promise.race([c.bus.call(msg), deadline]);
    if (!reply) throw new Error(`${member}: no reply`);
    return reply;
  } catch (err) {
    throw callError(err, member, unit, c.address);
  } finally {
    clearTimeout(timer);
    if (rejectOnLoss) c.pending.delete(rejectOnLoss);
  }
}

/** Connect to the bus at `address`; each call's deadline is `callTimeoutMs` unless it sets its own. */
export async function openSystemdBus(address: string, callTimeoutMs: number): Promise<SystemdBus> {
  const bus: Bus = dbus.sessionBus({ busAddress: address });
  await hello(bus, address, callTimeoutMs);
  const c: Connection = { bus, address, callTimeoutMs, closed: false, lost: undefined, pending: new Set() };
  const lostListeners: Array<() => void> = [];
  const failAll = () => {
    for (const fn of lostListeners) fn();
    const message = `the D-Bus connection to ${address} was lost${c.lost ? `: ${c.lost.message}` : ""}`;
    const err = new SystemdError({
      code: "systemd.disconnected",
      message,
      where: { source: address },
      hint: "reconnect (connectSystemd) and retry",
    });
    for (const reject of [...c.pending]) reject(err);
  };
  bus.on("error", (err: unknown) => {
    c.lost = err instanceof Error ? err : new Error(String(err));
    failAll();
  });
  // dbus-next does not forward the stream's end to the bus; watch it here so
  // a dead bus fails pending calls and jobs at once instead of at their deadline.
  const conn = (bus as unknown as { _connection?: { on?: (ev: string, cb: () => void) => void } })._connection;
  conn?.on?.("end", () => {
    c.lost ??= new Error("the D-Bus connection was closed by the other end");
    failAll();
  });
  const match = (member: "AddMatch" | "RemoveMatch", rule: string) =>
    call(c, member, { destination: DBUS, path: DBUS_PATH, iface: DBUS, signature: "s", body: [rule] }).then(() => undefined);
  return {
    address,
    get open() {
      return !c.closed && !c.lost;
    },
    call: (member, args = {}) => call(c, member, args),
    addMatch: (rule) => match("AddMatch", rule),
    removeMatch: (rule) => match("RemoveMatch", rule),
    onSignal(fn) {
      bus.on("message", (m: Msg) => {
        if (m.type === dbus.MessageType.SIGNAL) fn(m);
      });
    },
    onLost(fn) {
      lostListeners.push(fn);
    },
    close() {
      if (c.closed) return;
      c.closed = true;
      failAll();
      bus.disconnect();
    },
  };
}
