/**
 * Unit state over D-Bus: read as typed properties (`GetAll` on the Unit and,
 * for services, the Service interface), and watched through systemd's
 * `PropertiesChanged` signals so a crash is seen at once rather than at the
 * next poll. A watcher's callback never throws and never sees the same
 * state twice in a row.
 */
import { PROPS, SYSTEMD, type SystemdBus } from "./systemd-bus.ts";
import type { UnitState } from "./systemd.ts";

const UNIT = "org.freedesktop.systemd1.Unit";
const SERVICE = "org.freedesktop.systemd1.Service";

export function asNumber(v: unknown): number {
  if (typeof v === "bigint") return Number(v);
  if (typeof v === "number") return v;
  return 0;
}
export function asString(v: unknown): string {
  return typeof v === "string" ? v : "";
}

/** `a{sv}` from GetAll → plain values. */
export function unvariant(body: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (typeof body !== "object" || body === null) return out;
  for (const [k, v] of Object.entries(body)) {
    out[k] = typeof v === "object" && v !== null && "value" in v ? (v as { value: unknown }).value : v;
  }
  return out;
}

function toUnitState(unit: Record<string, unknown>, service: Record<string, unknown> | undefined): UnitState {
  const s: UnitState = {
    loadState: asString(unit.LoadState),
    activeState: asString(unit.ActiveState),
    subState: asString(unit.SubState),
    mainPid: asNumber(service?.MainPID),
    activeEnterTimestampUs: asNumber(unit.ActiveEnterTimestamp),
    activeExitTimestampUs: asNumber(unit.ActiveExitTimestamp),
    inactiveEnterTimestampUs: asNumber(unit.InactiveEnterTimestamp),
    nRestarts: asNumber(service?.NRestarts),
    result: asString(service?.Result),
  };
  if (typeof unit.UnitFileState === "string" && unit.UnitFileState !== "") s.unitFileState = unit.UnitFileState;
  const execMainStart = asNumber(service?.ExecMainStartTimestamp);
  if (execMainStart > 0) s.execMainStartTimestampUs = execMainStart;
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

/** The unit's object path (`LoadUnit` loads it if needed; an unknown unit loads as `not-found`). */
export async function loadUnit(bus: SystemdBus, name: string): Promise<string> {
  const r = await bus.call("LoadUnit", { signature: "s", body: [name], unit: name });
  return String(r.body[0]);
}

/** The state of the unit at object path `path`. */
export async function readUnitState(bus: SystemdBus, name: string, path: string): Promise<UnitState> {
  const getAll = (iface: string) => bus.call("GetAll", { path, iface: PROPS, signature: "s", body: [iface], unit: name });
  const [u, s] = await Promise.all([getAll(UNIT), name.endsWith(".service") ? getAll(SERVICE) : Promise.resolve(undefined)]);
  return toUnitState(unvariant(u.body[0]), s ? unvariant(s.body[0]) : undefined);
}

interface Watched {
  name: string;
  path: string;
  rule: string;
  last?: UnitState;
  /** A GetAll is running; `dirty`: another signal came meanwhile. */
  busy: boolean;
  dirty: boolean;
  handler: () => void;
}

export interface UnitWatcher {
  /** See `Systemd.subscribe`. */
  subscribe(onChange: (unit: string, state: UnitState) => void, units: string[]): Promise<() => void>;
  /** Drop every watch (the connection is closing). */
  clear(): void;
}

/** Route PropertiesChanged signals on `bus` to the units' watchers. */
export function unitWatcher(bus: SystemdBus): UnitWatcher {
  /** object path → handlers for PropertiesChanged on it. */
  const byPath = new Map<string, Set<() => void>>();
  bus.onSignal((m) => {
    if (m.interface !== PROPS || m.member !== "PropertiesChanged") return;
    const set = byPath.get(m.path);
    if (set) for (const fn of [...set]) fn();
  });
  return {
    subscribe: (onChange, units) => subscribe(bus, byPath, onChange, units),
    clear: () => byPath.clear(),
  };
}

async function subscribe(
  bus: SystemdBus,
  byPath: Map<string, Set<() => void>>,
  onChange: (unit: string, state: UnitState) => void,
  units: string[],
): Promise<() => void> {
  const entries: Watched[] = [];
  const sub = { active: true };
  const unsubscribe = async () => {
    if (!sub.active) return;
    sub.active = false;
    for (const e of entries) {
      byPath.get(e.path)?.delete(e.handler);
      if (byPath.get(e.path)?.size === 0) byPath.delete(e.path);
      if (bus.open) await bus.removeMatch(e.rule).catch(() => undefined);
    }
  };
  try {
    for (const name of [...new Set(units)].sort()) {
      const path = await loadUnit(bus, name);
      const rule = `type='signal',sender='${SYSTEMD}',path='${path}',interface='${PROPS}',member='PropertiesChanged'`;
      const e: Watched = { name, path, busy: false, dirty: false, rule, handler: () => void refresh(bus, e, sub, onChange) };
      entries.push(e);
      await bus.addMatch(rule);
      let set = byPath.get(path);
      if (!set) byPath.set(path, (set = new Set()));
      set.add(e.handler);
    }
  } catch (err) {
    // The caller gets no unsubscribe: undo the units already watched, or
    // onChange would keep firing for a subscription that "failed".
    await unsubscribe();
    throw err;
  }
  for (const e of entries) await refresh(bus, e, sub, onChange);
  return () => void unsubscribe();
}

/** Read the unit's state and report it if it changed; bursts of signals coalesce into one GetAll at a time. */
async function refresh(
  bus: SystemdBus,
  e: Watched,
  sub: { active: boolean },
  onChange: (unit: string, state: UnitState) => void,
): Promise<void> {
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
        s = await readUnitState(bus, e.name, e.path);
      } catch {
        // The connection is gone or systemd is busy; the next signal or
        // the caller's own probe catches up. Never throw from a signal.
        return;
      }
      if (sub.active && !sameState(e.last, s)) {
        e.last = s;
        onChange(e.name, s);
      }
    } while (e.dirty && sub.active);
  } finally {
    e.busy = false;
  }
}
