/**
 * A recording fake of the `Systemd` interface (src/host/systemd.ts) for the
 * run phase's and the agent's unit tests: it records every call in order,
 * keeps a small model of unit state (start → active with a fresh MainPID and
 * ActiveEnterTimestamp, stop → inactive, ...), notifies subscribers like the
 * real one (baseline first, then every change), and can be told to fail the
 * next call of a method once (or a job to end with a given result).
 *
 *   const sd = new FakeSystemd({ units: { "containerd.service": { activeState: "active" } } });
 *   sd.failOnce("restartUnit", sd.noSuchUnit("containerd.service"));
 *   sd.jobResultOnce("startUnit", "failed");
 *   sd.crash("containerd.service");            // as if kill -9: failed, MainPID 0
 *   assert.deepEqual(sd.callNames(), ["daemonReload", "restartUnit"]);
 */
import {
  SystemdError,
  type JobOptions,
  type JobResult,
  type Systemd,
  type UnitState,
  type EnableChange,
  type JobMode,
} from "../../src/host/systemd.ts";

export type FakeMethod =
  | "daemonReload"
  | "startUnit"
  | "enqueueStartUnit"
  | "resetFailedUnit"
  | "restartUnit"
  | "stopUnit"
  | "enableUnits"
  | "unitState"
  | "subscribe";

export interface FakeCall {
  method: FakeMethod;
  /** Unit name(s), when the call has one. */
  unit?: string;
  units?: string[];
  opts?: JobOptions | { runtime?: boolean; force?: boolean };
  /** Fake clock (ms) when the call was made. */
  at: number;
}

export function defaultUnitState(over: Partial<UnitState> = {}): UnitState {
  return {
    loadState: "loaded",
    activeState: "inactive",
    subState: "dead",
    mainPid: 0,
    activeEnterTimestampUs: 0,
    activeExitTimestampUs: 0,
    inactiveEnterTimestampUs: 0,
    nRestarts: 0,
    result: "success",
    ...over,
  };
}

export interface FakeSystemdOptions {
  /** Initial units; names not listed read as `loadState: "not-found"`. */
  units?: Record<string, Partial<UnitState>>;
  /** Clock for timestamps (ms). Default: a counter starting at 1_700_000_000_000 and advancing 1 s per job. */
  now?: () => number;
}

export class FakeSystemd implements Systemd {
  readonly calls: FakeCall[] = [];
  readonly units = new Map<string, UnitState>();
  closed = false;
  private failures = new Map<FakeMethod, Error[]>();
  private jobResults = new Map<FakeMethod, JobResult[]>();
  private subscribers = new Set<{ units: Set<string>; onChange: (u: string, s: UnitState) => void }>();
  private nextPid = 1000;
  private clock = 1_700_000_000_000;
  private readonly now: () => number;

  constructor(opts: FakeSystemdOptions = {}) {
    this.now = opts.now ?? (() => (this.clock += 1000));
    for (const [name, s] of Object.entries(opts.units ?? {})) {
      const st = defaultUnitState(s);
      if (st.activeState === "active" && st.mainPid === 0 && name.endsWith(".service")) st.mainPid = this.nextPid++;
      this.units.set(name, st);
    }
  }

  // ---- controls -------------------------------------------------------------

  /** The next call of `method` rejects with `err` (queue several to fail several times). */
  failOnce(method: FakeMethod, err: Error = new SystemdError({ code: "systemd.call-failed", message: `fake: ${method} failed` })): this {
    const q = this.failures.get(method) ?? [];
    q.push(err);
    this.failures.set(method, q);
    return this;
  }

  /** The next job of `method` ends with `result` instead of `done` (the unit then reads as failed). */
  jobResultOnce(method: "startUnit" | "restartUnit" | "stopUnit", result: JobResult): this {
    const q = this.jobResults.get(method) ?? [];
    q.push(result);
    this.jobResults.set(method, q);
    return this;
  }

  /** A SystemdError like the real one for an unknown unit. */
  noSuchUnit(unit: string): SystemdError {
    return new SystemdError(
      { code: "systemd.no-such-unit", message: `fake: Unit ${unit} not found.`, where: { path: unit } },
      unit,
      "org.freedesktop.systemd1.NoSuchUnit",
    );
  }

  /** Replace parts of a unit's state and notify subscribers (as PropertiesChanged would). */
  setState(unit: string, patch: Partial<UnitState>): void {
    const cur = this.units.get(unit) ?? defaultUnitState();
    this.units.set(unit, { ...cur, ...patch });
    this.emit(unit);
  }

  /** The main process died by a signal (e.g. kill -9) and systemd has not restarted it. */
  crash(unit: string): void {
    this.setState(unit, {
      activeState: "failed",
      subState: "failed",
      mainPid: 0,
      result: "signal",
      activeExitTimestampUs: this.nowUs(),
      inactiveEnterTimestampUs: this.nowUs(),
    });
  }

  /** systemd's own `Restart=` brought the unit back (NRestarts+1, new MainPID and ActiveEnterTimestamp). */
  autoRestart(unit: string): void {
    const cur = this.units.get(unit) ?? defaultUnitState();
    this.setState(unit, {
      activeState: "active",
      subState: "running",
      mainPid: this.nextPid++,
      activeEnterTimestampUs: this.nowUs(),
      nRestarts: cur.nRestarts + 1,
      result: "success",
    });
  }

  /** Method names in call order. */
  callNames(): FakeMethod[] {
    return this.calls.map((c) => c.method);
  }

  /** Calls of one method (optionally for one unit). */
  callsOf(method: FakeMethod, unit?: string): FakeCall[] {
    return this.calls.filter((c) => c.method === method && (unit === undefined || c.unit === unit));
  }

  // ---- Systemd ----------------------------------------------------------------

  async daemonReload(): Promise<void> {
    this.record({ method: "daemonReload" });
  }

  async startUnit(name: string, opts?: JobOptions): Promise<JobResult> {
    this.record({ method: "startUnit", unit: name, ...(opts ? { opts } : {}) });
    const r = this.jobResult("startUnit");
    if (r !== "done") return this.jobFailed(name, r);
    const cur = this.mustExist(name);
    if (cur.activeState !== "active") this.activate(name, cur);
    return "done";
  }

  async resetFailedUnit(name: string): Promise<void> {
    this.record({ method: "resetFailedUnit", unit: name });
    const cur = this.mustExist(name);
    if (cur.activeState === "failed") this.setState(name, { activeState: "inactive", subState: "dead", result: "success" });
  }

  /** Queues nothing real: records the call and, like systemd finishing the job later, activates the unit. */
  async enqueueStartUnit(name: string, opts?: { mode?: JobMode }): Promise<string> {
    this.record({ method: "enqueueStartUnit", unit: name, ...(opts ? { opts } : {}) });
    const cur = this.mustExist(name);
    if (cur.activeState !== "active") this.activate(name, cur);
    return `/org/freedesktop/systemd1/job/${this.calls.length}`;
  }

  async restartUnit(name: string, opts?: JobOptions): Promise<JobResult> {
    this.record({ method: "restartUnit", unit: name, ...(opts ? { opts } : {}) });
    const r = this.jobResult("restartUnit");
    if (r !== "done") return this.jobFailed(name, r);
    const cur = this.mustExist(name);
    // A job-started unit resets NRestarts, as systemd does.
    this.activate(name, {
      ...cur,
      nRestarts: 0,
      activeExitTimestampUs: cur.activeState === "active" ? this.nowUs() : cur.activeExitTimestampUs,
    });
    return "done";
  }

  async stopUnit(name: string, opts?: JobOptions): Promise<JobResult> {
    this.record({ method: "stopUnit", unit: name, ...(opts ? { opts } : {}) });
    const r = this.jobResult("stopUnit");
    if (r !== "done") return this.jobFailed(name, r);
    const cur = this.mustExist(name);
    const t = this.nowUs();
    this.units.set(name, {
      ...cur,
      activeState: "inactive",
      subState: "dead",
      mainPid: 0,
      activeExitTimestampUs: cur.activeState === "active" ? t : cur.activeExitTimestampUs,
      inactiveEnterTimestampUs: t,
    });
    this.emit(name);
    return "done";
  }

  async enableUnits(names: string[], opts?: { runtime?: boolean; force?: boolean }): Promise<EnableChange[]> {
    this.record({ method: "enableUnits", units: [...names], ...(opts ? { opts } : {}) });
    const out: EnableChange[] = [];
    for (const n of names) {
      const cur = this.units.get(n);
      if (cur && cur.unitFileState !== "enabled") {
        this.units.set(n, { ...cur, unitFileState: "enabled" });
        out.push({ type: "symlink", file: `/etc/systemd/system/multi-user.target.wants/${n}`, destination: `/etc/systemd/system/${n}` });
      }
    }
    return out;
  }

  async unitState(name: string): Promise<UnitState> {
    this.record({ method: "unitState", unit: name });
    return { ...(this.units.get(name) ?? defaultUnitState({ loadState: "not-found", result: "" })) };
  }

  async subscribe(onChange: (unit: string, state: UnitState) => void, units: string[]): Promise<() => void> {
    this.record({ method: "subscribe", units: [...units] });
    const sub = { units: new Set(units), onChange };
    this.subscribers.add(sub);
    for (const u of [...sub.units].sort())
      onChange(u, { ...(this.units.get(u) ?? defaultUnitState({ loadState: "not-found", result: "" })) });
    return () => {
      this.subscribers.delete(sub);
    };
  }

  close(): void {
    this.closed = true;
    this.subscribers.clear();
  }

  // ---- internals --------------------------------------------------------------

  private nowUs(): number {
    return this.now() * 1000;
  }

  private record(c: Omit<FakeCall, "at">): void {
    if (this.closed) throw new SystemdError({ code: "systemd.disconnected", message: `fake: ${c.method} after close()` });
    this.calls.push({ ...c, at: this.now() });
    const q = this.failures.get(c.method);
    const err = q?.shift();
    if (err) throw err;
  }

  private jobResult(m: FakeMethod): JobResult {
    return this.jobResults.get(m)?.shift() ?? "done";
  }

  private mustExist(name: string): UnitState {
    const cur = this.units.get(name);
    if (!cur || cur.loadState === "not-found") throw this.noSuchUnit(name);
    return cur;
  }

  private activate(name: string, cur: UnitState): void {
    this.units.set(name, {
      ...cur,
      activeState: "active",
      subState: "running",
      mainPid: name.endsWith(".service") ? this.nextPid++ : 0,
      activeEnterTimestampUs: this.nowUs(),
      result: "success",
    });
    this.emit(name);
  }

  private jobFailed(name: string, r: JobResult): JobResult {
    const cur = this.units.get(name);
    if (cur && (r === "failed" || r === "timeout")) {
      this.units.set(name, {
        ...cur,
        activeState: "failed",
        subState: "failed",
        mainPid: 0,
        result: r === "timeout" ? "timeout" : "exit-code",
        inactiveEnterTimestampUs: this.nowUs(),
      });
      this.emit(name);
    }
    return r;
  }

  private emit(unit: string): void {
    const s = this.units.get(unit);
    if (!s) return;
    for (const sub of this.subscribers) if (sub.units.has(unit)) sub.onChange(unit, { ...s });
  }
}
