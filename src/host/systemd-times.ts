/**
 * systemd's own timestamps for the boot timeline (src/timeline/): the
 * manager's (kernel, initrd, userspace start, startup finished) and each
 * unit's state transitions, read over D-Bus as systemd keeps them: every
 * transition as a pair of CLOCK_REALTIME and CLOCK_MONOTONIC µs taken at the
 * same instant (0 = never since this boot). Read only; nothing is started.
 */
import { MANAGER, MANAGER_PATH, openSystemdBus, PROPS, type SystemdBus } from "./systemd-bus.ts";
import { asNumber, asString, loadUnit, unvariant } from "./systemd-units.ts";

/** One instant on both clocks, µs; both 0 when it never happened. */
export interface DualTimestamp {
  realtimeUs: number;
  monotonicUs: number;
}

/** The manager's boot milestones (systemd-analyze's figures come from these). */
export interface ManagerTimes {
  /** The kernel's start: monotonic 0 by definition; realtime 0 in a container (no kernel boot of its own). */
  kernel: DualTimestamp;
  initrd: DualTimestamp;
  /** systemd (PID 1) started. */
  userspace: DualTimestamp;
  /** The boot's initial jobs were all done ("Startup finished"); 0 while the boot runs. */
  finish: DualTimestamp;
}

export interface UnitTimes {
  name: string;
  loadState: string;
  activeState: string;
  subState: string;
  /** Left inactive: the start (of the last start, after a restart). */
  inactiveExit: DualTimestamp;
  /** Became active (a oneshot: its ExecStart= ended). */
  activeEnter: DualTimestamp;
  activeExit: DualTimestamp;
  inactiveEnter: DualTimestamp;
}

export interface BootTimes {
  manager: ManagerTimes;
  units: UnitTimes[];
  /** This process's clocks when it read the above (for a unit still starting, and as a clock pair). */
  now: DualTimestamp;
}

const UNIT_IFACE = "org.freedesktop.systemd1.Unit";

function dual(props: Record<string, unknown>, name: string): DualTimestamp {
  return { realtimeUs: asNumber(props[`${name}Timestamp`]), monotonicUs: asNumber(props[`${name}TimestampMonotonic`]) };
}

/** Both clocks now, µs (Node's hrtime is CLOCK_MONOTONIC, as systemd's monotonic timestamps). */
export function clocksNow(): DualTimestamp {
  return { realtimeUs: Date.now() * 1000, monotonicUs: Number(process.hrtime.bigint() / 1000n) };
}

async function getAll(bus: SystemdBus, path: string, iface: string, unit?: string): Promise<Record<string, unknown>> {
  const r = await bus.call("GetAll", { path, iface: PROPS, signature: "s", body: [iface], ...(unit ? { unit } : {}) });
  return unvariant(r.body[0]);
}

async function unitTimes(bus: SystemdBus, name: string): Promise<UnitTimes> {
  const p = await getAll(bus, await loadUnit(bus, name), UNIT_IFACE, name);
  return {
    name,
    loadState: asString(p.LoadState),
    activeState: asString(p.ActiveState),
    subState: asString(p.SubState),
    inactiveExit: dual(p, "InactiveExit"),
    activeEnter: dual(p, "ActiveEnter"),
    activeExit: dual(p, "ActiveExit"),
    inactiveEnter: dual(p, "InactiveEnter"),
  };
}

/**
 * The manager's timestamps and those of `units` (a unit systemd does not
 * know reads as `loadState: "not-found"` with zero times). Throws a
 * SystemdError when the bus cannot be reached or a call fails.
 */
export async function readBootTimes(opts: { busAddress: string; units: readonly string[]; timeoutMs?: number }): Promise<BootTimes> {
  const bus = await openSystemdBus(opts.busAddress, opts.timeoutMs ?? 3000);
  try {
    const m = await getAll(bus, MANAGER_PATH, MANAGER);
    const manager: ManagerTimes = {
      kernel: dual(m, "Kernel"),
      initrd: dual(m, "InitRD"),
      userspace: dual(m, "Userspace"),
      finish: dual(m, "Finish"),
    };
    const units = await Promise.all(opts.units.map((u) => unitTimes(bus, u)));
    return { manager, units, now: clocksNow() };
  } finally {
    bus.close();
  }
}
