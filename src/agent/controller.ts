/**
 * The agent's imperative shell: one controller per component, each with its
 * own probe timer, fed also by systemd's unit signals so a crash is decided
 * on at once rather than at the next tick. All decisions are made by the pure
 * `decide()`; this file only runs probes, reads systemd, executes restarts,
 * records metrics and writes one log line per event.
 *
 * Bounded: per component one probe in flight at most, one timer, a fixed-size
 * repair history (decide.ts) and one shared ring buffer of recent events.
 * `stop()` clears every timer, waits for in-flight probes (each bounded by its
 * deadline), unsubscribes and leaves nothing running.
 */
import type { Systemd, UnitState } from "../host/systemd.ts";
import {
  budgetLeft,
  decide,
  initialState,
  probeIntervalMs,
  type Action,
  type AgentEvent,
  type AgentInput,
  type ComponentName,
  type ComponentState,
  type Health,
} from "./decide.ts";
import type { AgentMetrics } from "./metrics.ts";
import type { Probe } from "./probes.ts";
import type { ResolvedAgentSettings } from "./settings.ts";

export interface ComponentSpec {
  name: ComponentName;
  unit: string;
  probe: Probe;
  /** Never repaired while this component is not healthy (kubelet → containerd). */
  dependsOn?: ComponentName;
}

/** Where events go: a pino logger fits (`logger.info(obj, msg)`). */
export interface EventSink {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface AgentOptions {
  settings: ResolvedAgentSettings;
  systemd: Systemd;
  components: ComponentSpec[];
  /** Has the run phase finished? Asked before each probe until it says yes (then never again). */
  bootstrapDone?: () => Promise<boolean> | boolean;
  log?: EventSink;
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
  const now = opts.now ?? Date.now;
  const random = opts.random ?? Math.random;
  const settings = opts.settings;
  const ring = new Ring<AgentEvent>(opts.eventHistory ?? 100);
  const startedAt = now();
  const slots = new Map<ComponentName, Slot>();
  for (const spec of opts.components) slots.set(spec.name, { spec, state: initialState(spec.name, spec.unit, startedAt), timer: undefined, inFlight: undefined, again: false });
  let bootstrapDone = false;
  let running = false;
  let unsubscribe: (() => void) | undefined;
  const restarts = new Set<Promise<void>>();

  const emit = (e: AgentEvent) => {
    ring.push(e);
    const { level, event, component, cause, from, to, fields } = e;
    const obj = { event: `agent.${event}`, component, ...(from ? { from } : {}), ...(to ? { to } : {}), cause, ...(fields ?? {}) };
    const msg = to ? `${component}: ${from} → ${to}: ${cause}` : `${component}: ${cause}`;
    opts.log?.[level](obj, msg);
    opts.onEvent?.(e);
  };

  const refreshGauges = (slot: Slot) => {
    opts.metrics?.state(slot.spec.name, slot.state.health);
    opts.metrics?.budget(slot.spec.name, budgetLeft(slot.state, now(), settings));
  };

  const apply = (slot: Slot, input: AgentInput) => {
    if (!running) return;
    const dep = slot.spec.dependsOn ? slots.get(slot.spec.dependsOn) : undefined;
    const d = decide(slot.state, input, {
      settings,
      bootstrapDone,
      random: random(),
      ...(dep ? { dependency: { name: dep.spec.name, healthy: dep.state.health === "healthy" } } : {}),
    });
    const before = slot.state.health;
    slot.state = d.state;
    for (const a of d.actions) execute(slot, a);
    refreshGauges(slot);
    if (before !== slot.state.health) {
      // A faster or slower cadence applies from now on.
      schedule(slot, probeIntervalMs(slot.state, { settings, bootstrapDone }));
      // Dependents decide on the news (kubelet learns containerd is back).
      for (const other of slots.values()) if (other.spec.dependsOn === slot.spec.name && slot.state.health === "healthy" && other.state.health !== "healthy") schedule(other, 0);
    }
  };

  const execute = (slot: Slot, a: Action) => {
    if (a.kind === "log") {
      emit(a.event);
      return;
    }
    const p = (async () => {
      let result: string;
      let cause: string | undefined;
      try {
        // A unit systemd gave up on (start-limit-hit) refuses RestartUnit;
        // berth's own budget and backoff bound restarts from here on.
        if (slot.state.unitState?.activeState === "failed") await opts.systemd.resetFailedUnit(a.unit);
        result = await opts.systemd.restartUnit(a.unit, { timeoutMs: opts.restartJobTimeoutMs ?? 90_000 });
      } catch (e) {
        result = "error";
        cause = e instanceof Error ? e.message : String(e);
      }
      opts.metrics?.restart(slot.spec.name, result);
      apply(slot, { type: "repair-done", atMs: now(), result, ...(cause ? { cause } : {}) });
      if (running) schedule(slot, 0);
    })();
    restarts.add(p);
    void p.finally(() => restarts.delete(p));
  };

  const schedule = (slot: Slot, delayMs: number) => {
    if (!running) return;
    if (slot.inFlight) {
      if (delayMs === 0) slot.again = true;
      return;
    }
    clearTimeout(slot.timer);
    slot.timer = setTimeout(() => runProbe(slot), delayMs);
  };

  const runProbe = (slot: Slot) => {
    slot.timer = undefined;
    if (!running || slot.inFlight) return;
    slot.inFlight = (async () => {
      if (!bootstrapDone && opts.bootstrapDone) {
        try {
          bootstrapDone = await opts.bootstrapDone();
        } catch {
          bootstrapDone = false;
        }
      } else if (!opts.bootstrapDone) bootstrapDone = true;
      let result;
      try {
        result = await slot.spec.probe(settings.probeTimeoutMs);
      } catch (e) {
        result = { ok: false, cause: `probe error: ${e instanceof Error ? e.message : String(e)}`, latencyMs: 0 };
      }
      if (!running) return;
      opts.metrics?.probe(slot.spec.name, result.ok, result.latencyMs);
      if (!result.ok && !slot.state.jobInFlight) {
        // Decide on fresh unit state (uptime, transitions): signals are coalesced and may lag.
        try {
          const u = await opts.systemd.unitState(slot.spec.unit);
          if (running) apply(slot, { type: "unit", atMs: now(), unit: u });
        } catch {
          /* systemd unreachable: decide on what we last saw */
        }
      }
      apply(slot, { type: "probe", atMs: now(), result });
    })().finally(() => {
      slot.inFlight = undefined;
      if (!running) return;
      const again = slot.again;
      slot.again = false;
      schedule(slot, again ? 0 : probeIntervalMs(slot.state, { settings, bootstrapDone }));
    });
  };

  const onUnit = (unit: string, u: UnitState) => {
    for (const slot of slots.values()) {
      if (slot.spec.unit !== unit) continue;
      const prev = slot.state.unitState;
      apply(slot, { type: "unit", atMs: now(), unit: u });
      // A crash or (re)start: probe at once instead of at the next tick.
      if (!prev || prev.activeState !== u.activeState || prev.mainPid !== u.mainPid) schedule(slot, 0);
    }
  };

  return {
    async start() {
      if (running) return;
      running = true;
      const names = [...slots.values()].map((s) => s.spec.name).join(", ");
      opts.log?.info({ event: "agent.start", components: names, settings }, `berth agent watching ${names}`);
      try {
        unsubscribe = await opts.systemd.subscribe(onUnit, [...slots.values()].map((s) => s.spec.unit));
      } catch (e) {
        // Still useful without signals: the probes catch everything, only later.
        opts.log?.warn({ event: "agent.subscribe-failed", cause: e instanceof Error ? e.message : String(e) }, "cannot subscribe to systemd unit signals; relying on probes alone");
      }
      for (const slot of slots.values()) {
        refreshGauges(slot);
        schedule(slot, 0);
      }
    },
    async stop() {
      if (!running) return;
      running = false;
      for (const slot of slots.values()) {
        clearTimeout(slot.timer);
        slot.timer = undefined;
      }
      unsubscribe?.();
      unsubscribe = undefined;
      await Promise.allSettled([...slots.values()].map((s) => s.inFlight).filter((p): p is Promise<void> => p !== undefined));
      opts.log?.info({ event: "agent.stop", pendingRestarts: restarts.size }, "berth agent stopped");
    },
    status() {
      const t = now();
      return {
        kind: "berth-agent-status",
        version: 1,
        startedAt: iso(startedAt),
        now: iso(t),
        bootstrapDone,
        components: [...slots.values()].map(({ state: s }) => {
          const c: ComponentStatus = {
            name: s.name,
            unit: s.unit,
            health: s.health,
            cause: s.cause,
            since: iso(s.sinceMs),
            consecutiveFailures: s.consecutiveFailures,
            restartsInWindow: s.restarts.filter((r) => t - r < settings.budgetWindowMs).length,
            budgetLeft: budgetLeft(s, t, settings),
            repairs: s.repairs.map((r) => ({ at: iso(r.atMs), cause: r.cause, ...(r.result !== undefined ? { result: r.result } : {}), ...(r.recoveredAfterMs !== undefined ? { recoveredAfterMs: r.recoveredAfterMs } : {}) })),
          };
          if (s.lastProbe) c.lastProbe = { ok: s.lastProbe.ok, latencyMs: s.lastProbe.latencyMs, at: iso(s.lastProbe.atMs), ...(s.lastProbe.cause ? { cause: s.lastProbe.cause } : {}) };
          if (s.unitState) {
            const u = s.unitState;
            c.unitState = { activeState: u.activeState, subState: u.subState, result: u.result, mainPid: u.mainPid, nRestarts: u.nRestarts, ...(u.activeEnterTimestampUs > 0 ? { activeEnter: iso(u.activeEnterTimestampUs / 1000) } : {}) };
          }
          if (s.nextRepairAtMs > t) c.nextRepairNotBefore = iso(s.nextRepairAtMs);
          return c;
        }),
        recentEvents: ring.toArray().slice(-20).map((e) => ({ ...e, at: iso(e.atMs) })),
      };
    },
    events: () => ring.toArray(),
    state: (name) => slots.get(name)?.state,
    probeNow(name) {
      const slot = slots.get(name);
      if (slot) schedule(slot, 0);
    },
  };
}
