/**
 * systemd over D-Bus (org.freedesktop.systemd1), never through `systemctl`:
 * jobs are awaited through `JobRemoved` with a deadline (systemd-jobs.ts),
 * unit state is read as typed properties and watched through
 * `PropertiesChanged` (systemd-units.ts), on one connection with a deadline
 * per call (systemd-bus.ts). The run phase and the agent depend only on the
 * `Systemd` interface here; tests/fakes/systemd-fake.ts is its recording fake.
 */
import type { HostRoot } from "./root.ts";
import { openSystemdBus, MANAGER, MANAGER_PATH, SYSTEMD } from "./systemd-bus.ts";
import { jobRunner } from "./systemd-jobs.ts";
import { loadUnit, readUnitState, unitWatcher } from "./systemd-units.ts";

export { SystemdError, type SystemdErrorCode } from "./systemd-bus.ts";

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
  /**
   * When the current (or last) main process was started (services only;
   * absent or 0 when unknown). A service reads its config after this, not
   * at ActiveEnterTimestamp, which for Type=notify comes much later.
   */
  execMainStartTimestampUs?: number;
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

export interface ConnectOptions {
  /** D-Bus address, e.g. `unix:path=/tmp/x/system_bus_socket`. Default: `systemBusAddress(env)`. */
  busAddress?: string;
  /** Where the default address is read from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Deadline for each D-Bus method call (and for connecting), ms. Default 10 000. */
  timeoutMs?: number;
}

const SYSTEM_BUS_SOCKET = "/run/dbus/system_bus_socket";

/**
 * The one answer to "which bus is systemd on": BERTH_BUS_ADDRESS (a lab
 * node's bus, for berth alone), else DBUS_SYSTEM_BUS_ADDRESS, else the
 * system bus socket (under `root`, when given: berth doctor --root).
 */
export function systemBusAddress(env: NodeJS.ProcessEnv = process.env, root?: HostRoot): string {
  return env.BERTH_BUS_ADDRESS || env.DBUS_SYSTEM_BUS_ADDRESS || `unix:path=${root ? root.path(SYSTEM_BUS_SOCKET) : SYSTEM_BUS_SOCKET}`;
}

/** Connect to systemd (PID 1 of the host, or of a lab node via `busAddress`). */
export async function connectSystemd(opts: ConnectOptions = {}): Promise<Systemd> {
  const callTimeout = opts.timeoutMs ?? 10_000;
  const bus = await openSystemdBus(opts.busAddress ?? systemBusAddress(opts.env), callTimeout);
  const jobs = jobRunner(bus);
  const watcher = unitWatcher(bus);
  try {
    await bus.addMatch(`type='signal',sender='${SYSTEMD}',path='${MANAGER_PATH}',interface='${MANAGER}',member='JobRemoved'`);
    // Without Subscribe, systemd sends no unit/job signals when no one else asked.
    await bus.call("Subscribe");
  } catch (e) {
    // The caller gets no handle to close: an open socket here would keep the
    // process alive (berth init would hang instead of exiting with the error).
    bus.close();
    throw e;
  }
  return {
    async daemonReload() {
      // Reload replies when the reload is complete; big unit sets can take a while.
      await bus.call("Reload", { timeoutMs: Math.max(callTimeout, 30_000) });
    },
    startUnit: (name, o) => jobs.run("StartUnit", name, o),
    async resetFailedUnit(name) {
      await bus.call("ResetFailedUnit", { signature: "s", body: [name], unit: name });
    },
    async enqueueStartUnit(name, o) {
      const reply = await bus.call("StartUnit", { signature: "ss", body: [name, o?.mode ?? "replace"], unit: name });
      return String(reply.body[0]);
    },
    restartUnit: (name, o) => jobs.run("RestartUnit", name, o),
    stopUnit: (name, o) => jobs.run("StopUnit", name, o),
    async enableUnits(names, o) {
      const r = await bus.call("EnableUnitFiles", {
        signature: "asbb",
        body: [names, o?.runtime ?? false, o?.force ?? false],
        unit: names.join(" "),
      });
      const changes = (r.body[1] ?? []) as Array<[string, string, string]>;
      return changes.map(([type, file, destination]) => ({ type, file, destination }));
    },
    async unitState(name) {
      return readUnitState(bus, name, await loadUnit(bus, name));
    },
    subscribe: (onChange, units) => watcher.subscribe(onChange, units),
    close() {
      watcher.clear();
      bus.close();
    },
  };
}
