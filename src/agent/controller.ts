/**
 * The agent's loop: per component a probe timer, fed also by systemd's unit
 * signals so a crash is decided on at once; every decision is the pure
 * `decide()`'s, this only runs probes, reads systemd, restarts units,
 * records metrics and logs one line per event. Bounded: one probe in flight
 * and one timer per component, a fixed-size event ring; `stop()` leaves
 * nothing running.
 */
import type { Systemd, UnitState } from "../host/systemd.ts";
import {
  budgetLeft,
  decide,
  initialState,
  probeIntervalMs,
  type AgentEvent,
  type AgentInput,
  type ComponentName,
  type ComponentState,
  type Health,
  type ProbeOutcome,
} from "./decide.ts";
import type { AgentMetrics } from "./metrics.ts";
import { errorMessage } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import type { Probe } from "./probes.ts";
import type { ResolvedAgentSettings } from "../api/agent-settings.ts";

export interface ComponentSpec {
  name: ComponentName;
  unit: string;
  probe: Probe;
  /** Never repaired while this component is not healthy (kubelet → containerd). */
  dependsOn?: ComponentName;
}

/** Where the agent's events go (src/util/log.ts; the agent logs no debug lines). */
export type AgentLog = Pick<Logger, "info" | "warn" | "error">;

export interface AgentOptions {
  settings: ResolvedAgentSettings;
  systemd: Systemd;
  components: ComponentSpec[];
  /** Has the run phase finished? Asked before each probe until it says yes (then never again). */
  bootstrapDone?: () => Promise<boolean> | boolean;
  log?: AgentLog;
  metrics?: AgentMetrics;
  /** Also called for every event (tests and bench read events here). */
  onEvent?: (e: AgentEvent) => void;
  /** Deadline of a RestartUnit job (default 90 s, systemd's start timeout). */
  restartJobTimeoutMs?: number;
  /** Size of the recent-events ring (default 100). */
  eventHistory?: number;
  now?: () => number;
  random?: () => number;
}

export interface ComponentStatus {
  name: ComponentName;
  unit: string;
  health: Health;
  cause: string;
  since: string;
  consecutiveFailures: number;
  lastProbe?: { ok: boolean; cause?: string; latencyMs: number; at: string };
  unitState?: { activeState: string; subState: string; result: string; mainPid: number; nRestarts: number; activeEnter?: string };
  restartsInWindow: number;
  budgetLeft: number;
  nextRepairNotBefore?: string;
  repairs: Array<{ at: string; cause: string; result?: string; recoveredAfterMs?: number }>;
}

export interface AgentStatus {
  kind: "berth-agent-status";
  version: 1;
  startedAt: string;
  now: string;
  bootstrapDone: boolean;
  components: ComponentStatus[];
  recentEvents: Array<AgentEvent & { at: string }>;
}

export interface Agent {
  start(): Promise<void>;
  stop(): Promise<void>;
  status(): AgentStatus;
  /** Recent events, oldest first (a copy of the ring). */
  events(): AgentEvent[];
  state(name: ComponentName): ComponentState | undefined;
  /** Probe a component now (coalesced with one in flight). */
  probeNow(name: ComponentName): void;
}

/** Fixed-capacity ring buffer: memory stays flat however long the agent runs. */
export class Ring<T> {
  private buf: (T | undefined)[];
  private next = 0;
  private size = 0;
  constructor(readonly capacity: number) {
    this.buf = new Array<T | undefined>(capacity);
  }
  push(v: T): void {
    this.buf[this.next] = v;
    this.next = (this.next + 1) % this.capacity;
    if (this.size < this.capacity) this.size++;
  }
  toArray(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.size; i++) out.push(this.buf[(this.next - this.size + i + this.capacity) % this.capacity] as T);
    return out;
  }
  get length(): number {
    return this.size;
  }
}

interface Slot {
  spec: ComponentSpec;
  state: ComponentState;
  timer: NodeJS.Timeout | undefined;
  inFlight: Promise<void> | undefined;
  /** Another probe was asked for while one was running. */
  again: boolean;
}

const iso = (ms: number) => new Date(ms).toISOString();

export function createAgent(opts: AgentOptions): Agent {
  return new Controller(opts);
}

/** The loop: probe timers and unit signals in, `decide()`, restarts and events out. */
class Controller implements Agent {
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly settings: ResolvedAgentSettings;
  private readonly ring: Ring<AgentEvent>;
  private readonly startedAt: number;
  private readonly slots = new Map<ComponentName, Slot>();
  private readonly restarts = new Set<Promise<void>>();
  private bootstrapDone = false;
  private running = false;
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly opts: AgentOptions) {
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.settings = opts.settings;
    this.ring = new Ring<AgentEvent>(opts.eventHistory ?? 100);
    this.startedAt = this.now();
    for (const spec of opts.components) {
      this.slots.set(spec.name, {
        spec,
        state: initialState(spec.name, spec.unit, this.startedAt),
        timer: undefined,
        inFlight: undefined,
        again: false,
      });
    }
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    const slots = [...this.slots.values()];
    const names = slots.map((s) => s.spec.name).join(", ");
    this.opts.log?.info(
      { event: "agent.start", component: "agent", components: names, settings: this.settings },
      `berth agent watching ${names}`,
    );
    try {
      this.unsubscribe = await this.opts.systemd.subscribe(
        this.onUnit,
        slots.map((s) => s.spec.unit),
      );
    } catch (e) {
      // Still useful without signals: the probes catch everything, only later.
      this.opts.log?.warn(
        { event: "agent.subscribe-failed", component: "agent", cause: errorMessage(e) },
        "cannot subscribe to systemd unit signals; relying on probes alone",
      );
    }
    for (const slot of slots) {
      this.refreshGauges(slot);
      this.schedule(slot, 0);
    }
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const slot of this.slots.values()) {
      clearTimeout(slot.timer);
      slot.timer = undefined;
    }
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    await Promise.allSettled([...this.slots.values()].map((s) => s.inFlight).filter((p): p is Promise<void> => p !== undefined));
    this.opts.log?.info({ event: "agent.stop", component: "agent", pendingRestarts: this.restarts.size }, "berth agent stopped");
  }

  status(): AgentStatus {
    const t = this.now();
    return {
      kind: "berth-agent-status",
      version: 1,
      startedAt: iso(this.startedAt),
      now: iso(t),
      bootstrapDone: this.bootstrapDone,
      components: [...this.slots.values()].map(({ state }) => componentStatus(state, t, this.settings)),
      recentEvents: this.ring
        .toArray()
        .slice(-20)
        .map((e) => ({ ...e, at: iso(e.atMs) })),
    };
  }

  events(): AgentEvent[] {
    return this.ring.toArray();
  }

  state(name: ComponentName): ComponentState | undefined {
    return this.slots.get(name)?.state;
  }

  probeNow(name: ComponentName): void {
    const slot = this.slots.get(name);
    if (slot) this.schedule(slot, 0);
  }

  /** One event: into the ring, one log line, and to `onEvent`. */
  private emit(e: AgentEvent): void {
    this.ring.push(e);
    const { level, event, component, cause, from, to, fields } = e;
    const obj = { event: `agent.${event}`, component, ...(from ? { from } : {}), ...(to ? { to } : {}), cause, ...(fields ?? {}) };
    this.opts.log?.[level](obj, to ? `${component}: ${from} → ${to}: ${cause}` : `${component}: ${cause}`);
    this.opts.onEvent?.(e);
  }

  private refreshGauges(slot: Slot): void {
    this.opts.metrics?.state(slot.spec.name, slot.state.health);
    this.opts.metrics?.budget(slot.spec.name, budgetLeft(slot.state, this.now(), this.settings));
  }

  /** Feed `input` to decide() and carry out what it says. */
  private apply(slot: Slot, input: AgentInput): void {
    if (!this.running) return;
    const dep = slot.spec.dependsOn ? this.slots.get(slot.spec.dependsOn) : undefined;
    const d = decide(slot.state, input, {
      settings: this.settings,
      bootstrapDone: this.bootstrapDone,
      random: this.random(),
      ...(dep ? { dependency: { name: dep.spec.name, healthy: dep.state.health === "healthy" } } : {}),
    });
    const before = slot.state.health;
    slot.state = d.state;
    for (const a of d.actions) {
      if (a.kind === "log") this.emit(a.event);
      else this.track(this.restart(slot, a.unit));
    }
    this.refreshGauges(slot);
    if (before === slot.state.health) return;
    // A faster or slower cadence applies from now on.
    this.schedule(slot, probeIntervalMs(slot.state, { settings: this.settings, bootstrapDone: this.bootstrapDone }));
    // Dependents decide on the news (kubelet learns containerd is back).
    if (slot.state.health !== "healthy") return;
    for (const other of this.slots.values()) {
      if (other.spec.dependsOn === slot.spec.name && other.state.health !== "healthy") this.schedule(other, 0);
    }
  }

  private track(p: Promise<void>): void {
    this.restarts.add(p);
    void p.finally(() => this.restarts.delete(p));
  }

  /** RestartUnit over D-Bus; its result goes back to decide(), then a probe at once. */
  private async restart(slot: Slot, unit: string): Promise<void> {
    let result: string;
    let cause: string | undefined;
    try {
      // A unit systemd gave up on (start-limit-hit) refuses RestartUnit;
      // berth's own budget and backoff bound restarts from here on.
      if (slot.state.unitState?.activeState === "failed") await this.opts.systemd.resetFailedUnit(unit);
      result = await this.opts.systemd.restartUnit(unit, { timeoutMs: this.opts.restartJobTimeoutMs ?? 90_000 });
    } catch (e) {
      result = "error";
      cause = errorMessage(e);
    }
    this.opts.metrics?.restart(slot.spec.name, result);
    this.apply(slot, { type: "repair-done", atMs: this.now(), result, ...(cause ? { cause } : {}) });
    if (this.running) this.schedule(slot, 0);
  }

  private schedule(slot: Slot, delayMs: number): void {
    if (!this.running) return;
    if (slot.inFlight) {
      if (delayMs === 0) slot.again = true;
      return;
    }
    clearTimeout(slot.timer);
    slot.timer = setTimeout(() => this.runProbe(slot), delayMs);
  }

  /** At most one probe per component in flight; the next one is scheduled when it ends. */
  private runProbe(slot: Slot): void {
    slot.timer = undefined;
    if (!this.running || slot.inFlight) return;
    slot.inFlight = this.probeOnce(slot).finally(() => {
      slot.inFlight = undefined;
      if (!this.running) return;
      const again = slot.again;
      slot.again = false;
      this.schedule(slot, again ? 0 : probeIntervalMs(slot.state, { settings: this.settings, bootstrapDone: this.bootstrapDone }));
    });
  }

  private async probeOnce(slot: Slot): Promise<void> {
    await this.checkBootstrap();
    let result: ProbeOutcome;
    try {
      result = await slot.spec.probe(this.settings.probeTimeoutMs);
    } catch (e) {
      result = { ok: false, cause: `probe error: ${errorMessage(e)}`, latencyMs: 0 };
    }
    if (!this.running) return;
    this.opts.metrics?.probe(slot.spec.name, result.ok, result.latencyMs);
    if (!result.ok && !slot.state.jobInFlight) {
      // Decide on fresh unit state (uptime, transitions): signals are coalesced and may lag.
      try {
        const u = await this.opts.systemd.unitState(slot.spec.unit);
        if (this.running) this.apply(slot, { type: "unit", atMs: this.now(), unit: u });
      } catch {
        /* systemd unreachable: decide on what we last saw */
      }
    }
    this.apply(slot, { type: "probe", atMs: this.now(), result });
  }

  /** Asks `bootstrapDone` until it says yes (then never again). */
  private async checkBootstrap(): Promise<void> {
    if (!this.opts.bootstrapDone) {
      this.bootstrapDone = true;
      return;
    }
    if (this.bootstrapDone) return;
    try {
      this.bootstrapDone = await this.opts.bootstrapDone();
    } catch {
      this.bootstrapDone = false;
    }
  }

  private readonly onUnit = (unit: string, u: UnitState): void => {
    for (const slot of this.slots.values()) {
      if (slot.spec.unit !== unit) continue;
      const prev = slot.state.unitState;
      this.apply(slot, { type: "unit", atMs: this.now(), unit: u });
      // A crash or (re)start: probe at once instead of at the next tick.
      if (!prev || prev.activeState !== u.activeState || prev.mainPid !== u.mainPid) this.schedule(slot, 0);
    }
  };
}

/** A component's state as /status shows it. */
function componentStatus(s: ComponentState, t: number, settings: ResolvedAgentSettings): ComponentStatus {
  const c: ComponentStatus = {
    name: s.name,
    unit: s.unit,
    health: s.health,
    cause: s.cause,
    since: iso(s.sinceMs),
    consecutiveFailures: s.consecutiveFailures,
    restartsInWindow: s.restarts.filter((r) => t - r < settings.budgetWindowMs).length,
    budgetLeft: budgetLeft(s, t, settings),
    repairs: s.repairs.map((r) => ({
      at: iso(r.atMs),
      cause: r.cause,
      ...(r.result !== undefined ? { result: r.result } : {}),
      ...(r.recoveredAfterMs !== undefined ? { recoveredAfterMs: r.recoveredAfterMs } : {}),
    })),
  };
  const p = s.lastProbe;
  if (p) c.lastProbe = { ok: p.ok, latencyMs: p.latencyMs, at: iso(p.atMs), ...(p.cause ? { cause: p.cause } : {}) };
  const u = s.unitState;
  if (u) {
    const activeEnter = u.activeEnterTimestampUs > 0 ? { activeEnter: iso(u.activeEnterTimestampUs / 1000) } : {};
    c.unitState = {
      activeState: u.activeState,
      subState: u.subState,
      result: u.result,
      mainPid: u.mainPid,
      nRestarts: u.nRestarts,
      ...activeEnter,
    };
  }
  if (s.nextRepairAtMs > t) c.nextRepairNotBefore = iso(s.nextRepairAtMs);
  return c;
}
