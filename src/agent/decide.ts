/**
 * When the agent restarts a unit: a PURE state machine per component (states
 * and rules: docs/agent.md; each rule has a test in agent-decide.test.ts).
 * The controller feeds it events with the time and a random number for
 * jitter, and executes the actions it returns. Never a clock, randomness or
 * I/O here, and never a repair other than RestartUnit.
 */
import type { UnitState } from "../host/systemd.ts";
import type { LogLevel } from "../util/log.ts";
import { backoffDelay } from "../util/retry.ts";
import type { ResolvedAgentSettings } from "../api/agent-settings.ts";

export type Health = "unknown" | "healthy" | "failing" | "repairing" | "degraded" | "stopped";
export const HEALTH_STATES: readonly Health[] = ["unknown", "healthy", "failing", "repairing", "degraded", "stopped"];

export type ComponentName = "containerd" | "kubelet";

/** The part of systemd's unit state the decision uses. */
export type UnitSnapshot = Pick<
  UnitState,
  "loadState" | "activeState" | "subState" | "result" | "activeEnterTimestampUs" | "nRestarts" | "mainPid"
>;

export interface ProbeOutcome {
  ok: boolean;
  /** Why it failed, one line (absent when ok). */
  cause?: string;
  latencyMs: number;
}

export type AgentInput =
  | { type: "probe"; atMs: number; result: ProbeOutcome }
  | { type: "unit"; atMs: number; unit: UnitSnapshot }
  | { type: "repair-done"; atMs: number; result: string; cause?: string };

export interface DecideContext {
  settings: ResolvedAgentSettings;
  /** The run phase has finished: repairs are allowed. */
  bootstrapDone: boolean;
  /** For kubelet: is containerd healthy (and since when)? Absent = no dependency. */
  dependency?: { name: string; healthy: boolean };
  /** A number in [0, 1) for the backoff jitter. */
  random: number;
}

export interface RepairRecord {
  atMs: number;
  cause: string;
  /** Job result (`done`, `failed`, ...) once known. */
  result?: string;
  /** ms from the restart to the next passing probe. */
  recoveredAfterMs?: number;
}

export interface ComponentState {
  name: ComponentName;
  unit: string;
  health: Health;
  /** Why the component is in this state, one line. */
  cause: string;
  /** When `health` last changed. */
  sinceMs: number;
  consecutiveFailures: number;
  /** Start of the current failure window (reset by a repair and while held by a dependency). */
  failingSinceMs?: number;
  /** Time of the last transition into `healthy`. */
  healthySinceMs?: number;
  /** When it last left `healthy` (or `unknown`) for a bad state: outage start. */
  unhealthySinceMs?: number;
  lastProbe?: ProbeOutcome & { atMs: number };
  unitState?: UnitSnapshot;
  /** Restart times inside the budget window, oldest first; never longer than the budget. */
  restarts: number[];
  /** Repairs since the component was last healthy for a while: the backoff exponent. */
  backoffAttempt: number;
  /** No repair before this time. */
  nextRepairAtMs: number;
  /** A RestartUnit job is in flight. */
  jobInFlight: boolean;
  /** Last few repairs, newest last (bounded by REPAIR_HISTORY). */
  repairs: RepairRecord[];
}

export const REPAIR_HISTORY = 10;

/** The agent logs events at these levels (never debug). */
export type EventLevel = Exclude<LogLevel, "debug">;

export interface AgentEvent {
  atMs: number;
  level: EventLevel;
  component: ComponentName;
  /** `state` (a transition), `repair` (restart issued), `repair-result`, `budget-exhausted`. */
  event: "state" | "repair" | "repair-result" | "budget-exhausted";
  from?: Health;
  to?: Health;
  cause: string;
  /** Extra fields for the log line (durations in ms, counts). */
  fields?: Record<string, string | number | boolean>;
}

export type Action = { kind: "restart"; unit: string; cause: string } | { kind: "log"; event: AgentEvent };

export interface Decision {
  state: ComponentState;
  actions: Action[];
}

export function initialState(name: ComponentName, unit: string, nowMs: number): ComponentState {
  return {
    name,
    unit,
    health: "unknown",
    cause: "not checked yet",
    sinceMs: nowMs,
    consecutiveFailures: 0,
    restarts: [],
    backoffAttempt: 0,
    nextRepairAtMs: 0,
    jobInFlight: false,
    repairs: [],
  };
}

/** How the unit's systemd state bears on a repair. */
export type UnitVerdict =
  | { kind: "unknown" }
  | { kind: "missing" }
  | { kind: "stopped" }
  | { kind: "transition" }
  | { kind: "failed"; result: string }
  | { kind: "young"; uptimeMs: number }
  | { kind: "running"; uptimeMs: number };

export function unitVerdict(u: UnitSnapshot | undefined, nowMs: number, minUptimeMs: number): UnitVerdict {
  if (!u) return { kind: "unknown" };
  if (u.loadState === "not-found" || u.loadState === "masked" || u.loadState === "error") return { kind: "missing" };
  switch (u.activeState) {
    case "active":
    case "reloading": {
      const uptimeMs = u.activeEnterTimestampUs > 0 ? Math.max(0, nowMs - u.activeEnterTimestampUs / 1000) : Number.POSITIVE_INFINITY;
      return uptimeMs < minUptimeMs ? { kind: "young", uptimeMs } : { kind: "running", uptimeMs };
    }
    case "activating":
    case "deactivating":
      return { kind: "transition" };
    case "failed":
      return { kind: "failed", result: u.result || "unknown" };
    case "inactive":
      // Inactive with success is a clean stop (systemctl stop, or exit 0 under Restart=on-failure).
      return u.result === "success" || u.result === "" ? { kind: "stopped" } : { kind: "failed", result: u.result };
    default:
      return { kind: "unknown" };
  }
}

/** systemd's own `Restart=` at work after the main process died (not an operator's restart job). */
function isCrashRestart(u: UnitSnapshot): boolean {
  return u.activeState === "activating" && (u.subState === "auto-restart" || (u.result !== "success" && u.result !== ""));
}

function describeUnit(u: UnitSnapshot): string {
  return `${u.activeState}/${u.subState}${u.result && u.result !== "success" ? ` (result ${u.result})` : ""}`;
}

/** Restarts still inside the window ending at `nowMs`. */
function inWindow(restarts: number[], nowMs: number, windowMs: number): number[] {
  return restarts.filter((t) => nowMs - t < windowMs);
}

export function budgetLeft(s: ComponentState, nowMs: number, settings: ResolvedAgentSettings): number {
  return Math.max(0, settings.restartBudget - inWindow(s.restarts, nowMs, settings.budgetWindowMs).length);
}

/**
 * The wait after repair number `attempt` (1-based): src/util/retry.ts's
 * backoff with half jitter, d·(1 − ½·random), d = min(max, initial·2^(attempt−1)):
 * repairs of many nodes spread apart without ever going near zero.
 */
export function repairBackoffMs(attempt: number, settings: ResolvedAgentSettings, random: number): number {
  const backoff = { initialMs: settings.backoffInitialMs, maxMs: settings.backoffMaxMs, factor: 2, jitter: 0.5 };
  return backoffDelay(backoff, attempt, () => Math.min(1, Math.max(0, random)));
}

/** How long until the next probe of this component. */
export function probeIntervalMs(s: ComponentState, ctx: Pick<DecideContext, "settings" | "bootstrapDone">): number {
  if (!ctx.bootstrapDone) return ctx.settings.fastIntervalMs;
  return s.health === "healthy" || s.health === "stopped" ? ctx.settings.intervalMs : ctx.settings.fastIntervalMs;
}

/**
 * One step: the state after `input`, and what to do. The same (state, input,
 * context) always gives the same decision.
 */
export function decide(prev: ComponentState, input: AgentInput, ctx: DecideContext): Decision {
  const now = input.atMs;
  const st: ComponentState = { ...prev, restarts: inWindow(prev.restarts, now, ctx.settings.budgetWindowMs), repairs: [...prev.repairs] };
  const draft = newDraft(prev, st, ctx, now);
  if (input.type === "repair-done") onRepairDone(draft, input);
  else if (input.type === "unit") onUnitState(draft, input.unit);
  else onProbe(draft, input.result);
  return { state: st, actions: draft.actions };
}

/** One decision in the making: the state being changed, the actions so far, and how to change health. */
interface Draft {
  st: ComponentState;
  ctx: DecideContext;
  now: number;
  actions: Action[];
  log: (level: EventLevel, event: AgentEvent["event"], cause: string, fields?: AgentEvent["fields"], from?: Health, to?: Health) => void;
  /** Move to `to` (logging the transition), or only update the cause when already there. */
  go: (to: Health, cause: string, level?: EventLevel, fields?: AgentEvent["fields"]) => void;
  /** Open the failure window (once), and forgive the backoff of a unit that stayed healthy for a full cycle. */
  startFailing: () => void;
}

function defaultLevel(to: Health): EventLevel {
  return to === "healthy" || to === "stopped" ? "info" : to === "degraded" ? "error" : "warn";
}

function newDraft(prev: ComponentState, st: ComponentState, ctx: DecideContext, now: number): Draft {
  const actions: Action[] = [];
  const log: Draft["log"] = (level, event, cause, fields, from, to) => {
    const transition = { ...(from ? { from } : {}), ...(to ? { to } : {}) };
    actions.push({
      kind: "log",
      event: { atMs: now, level, component: st.name, event, cause, ...transition, ...(fields ? { fields } : {}) },
    });
  };
  const go: Draft["go"] = (to, cause, level = defaultLevel(to), fields) => {
    if (to === st.health) {
      st.cause = cause;
      return;
    }
    const from = st.health;
    log(level, "state", cause, fields, from, to);
    st.health = to;
    st.cause = cause;
    st.sinceMs = now;
    if (to === "healthy") st.healthySinceMs = now;
    if ((from === "healthy" || from === "unknown") && (to === "failing" || to === "repairing" || to === "degraded"))
      st.unhealthySinceMs = now;
  };
  const startFailing = () => {
    if (st.failingSinceMs === undefined) st.failingSinceMs = now;
    if (st.healthySinceMs !== undefined && prev.health === "healthy" && now - st.healthySinceMs >= ctx.settings.backoffMaxMs)
      st.backoffAttempt = 0;
  };
  return { st, ctx, now, actions, log, go, startFailing };
}

/** Our RestartUnit job ended. */
function onRepairDone({ st, now, log, go }: Draft, input: { result: string; cause?: string }): void {
  if (!st.jobInFlight) return; // not ours (or already settled)
  st.jobInFlight = false;
  const last = st.repairs[st.repairs.length - 1];
  if (last && last.result === undefined) st.repairs[st.repairs.length - 1] = { ...last, result: input.result };
  // A fresh window after every restart: the restarted unit gets its own chances.
  st.consecutiveFailures = 0;
  // Already healthy (a probe passed while the job was in flight): no window is
  // open, and a stale start here would let the next blip skip failureWindowMs.
  st.failingSinceMs = st.health === "healthy" ? undefined : now;
  if (input.result === "done") {
    log("info", "repair-result", `RestartUnit ${st.unit} finished (done); waiting for a passing probe`, { result: input.result });
    return;
  }
  const why = `${input.result}${input.cause ? `: ${input.cause}` : ""}`;
  log("warn", "repair-result", `RestartUnit ${st.unit} did not succeed: ${why}`, { result: input.result });
  if (st.health === "repairing") go("failing", `restart of ${st.unit} ended with ${why}`);
}

/** systemd reported the unit's state. */
function onUnitState(draft: Draft, unit: UnitSnapshot): void {
  const { st, now, ctx, go, startFailing } = draft;
  const before = st.unitState;
  st.unitState = unit;
  if (st.jobInFlight) return; // our own restart job moves the unit through stop/start
  const v = unitVerdict(unit, now, ctx.settings.minUptimeMs);
  if (v.kind === "stopped") {
    st.consecutiveFailures = 0;
    st.failingSinceMs = undefined;
    go("stopped", `${st.unit} is ${describeUnit(unit)}: stopped on purpose (systemctl stop or a clean exit); not repairing`);
  } else if (st.health === "stopped") {
    // Started again by someone: unknown until a probe says otherwise.
    if (v.kind === "young" || v.kind === "running" || v.kind === "transition")
      go("unknown", `${st.unit} is ${describeUnit(unit)} again; checking`, "info");
    else if (v.kind === "failed") {
      startFailing();
      go("failing", `${st.unit} is ${describeUnit(unit)}`);
    }
  } else if (v.kind === "failed" || isCrashRestart(unit)) {
    // A crash is seen here at once, not at the next probe.
    startFailing();
    const restarting = v.kind === "transition" ? `; systemd is restarting it (NRestarts=${unit.nRestarts})` : "";
    const cause = `${st.unit} left active: ${describeUnit(unit)}${restarting}`;
    if (st.health === "healthy" || st.health === "unknown") go("failing", cause);
    else st.cause = cause;
  } else if (
    v.kind === "young" &&
    before &&
    before.activeEnterTimestampUs !== unit.activeEnterTimestampUs &&
    st.health !== "healthy" &&
    st.health !== "unknown"
  ) {
    // Restarted by systemd or an operator: a fresh window for it.
    st.consecutiveFailures = 0;
    st.failingSinceMs = now;
  }
  maybeRepair(draft);
}

/** A probe answered. */
function onProbe(draft: Draft, result: ProbeOutcome): void {
  const { st, now, ctx, go } = draft;
  st.lastProbe = { ...result, atMs: now };
  if (result.ok) return onProbePassed(draft, result);
  const cause = result.cause ?? "probe failed";
  // A stopped unit does not answer; that is expected, not a failure.
  if (st.health === "stopped") return;
  const v = unitVerdict(st.unitState, now, ctx.settings.minUptimeMs);
  if (ctx.dependency && !ctx.dependency.healthy) {
    // Failures of kubelet while containerd is down are containerd's; they do not count.
    st.consecutiveFailures = 0;
    st.failingSinceMs = undefined;
    const held = `${cause} (held: ${ctx.dependency.name} is not healthy; ${st.name} reconnects by itself)`;
    if (st.health === "healthy" || st.health === "unknown") go("failing", held);
    else st.cause = held;
    return;
  }
  if (v.kind === "transition" && st.unitState && !isCrashRestart(st.unitState) && (st.health === "healthy" || st.health === "unknown")) {
    // A stop or start job in flight (an operator's systemctl): not answering is
    // expected; its outcome (active, stopped or failed) decides.
    st.cause = `${st.unit} is ${describeUnit(st.unitState)}; waiting for systemd's job`;
    return;
  }
  st.consecutiveFailures += 1;
  draft.startFailing();
  const unitNote = st.unitState && v.kind !== "running" && v.kind !== "unknown" ? ` [unit ${describeUnit(st.unitState)}]` : "";
  if (st.health === "healthy" || st.health === "unknown") go("failing", `${cause}${unitNote}`, "warn", { latencyMs: result.latencyMs });
  else if (st.health === "repairing" && !st.jobInFlight && v.kind !== "young" && v.kind !== "transition") {
    // The restarted unit had its minimum uptime and still fails.
    go("failing", `still failing after the restart: ${cause}${unitNote}`);
  } else if (st.health === "degraded") st.cause = `restart budget spent; last failure: ${cause}${unitNote}`;
  else st.cause = `${cause}${unitNote}`;
  maybeRepair(draft);
}

function onProbePassed({ st, now, go }: Draft, result: ProbeOutcome): void {
  st.consecutiveFailures = 0;
  st.failingSinceMs = undefined;
  if (st.health === "healthy") return;
  const last = st.repairs[st.repairs.length - 1];
  const afterRepair = st.health === "repairing" && last !== undefined && last.recoveredAfterMs === undefined;
  if (afterRepair) st.repairs[st.repairs.length - 1] = { ...last, recoveredAfterMs: now - last.atMs };
  const fields: AgentEvent["fields"] = { latencyMs: result.latencyMs };
  if (afterRepair) fields.recoveredAfterMs = now - last.atMs;
  if (st.health !== "unknown" && st.health !== "stopped" && st.unhealthySinceMs !== undefined)
    fields.unhealthyForMs = now - st.unhealthySinceMs;
  const cause = afterRepair
    ? `probe passed ${now - last.atMs} ms after the restart`
    : st.health === "unknown"
      ? "first probe passed"
      : "probe passed again";
  go("healthy", cause, "info", fields);
}

/** Issue a restart when every rule allows it; move to degraded when only the budget is in the way. */
function maybeRepair({ st, ctx, now, actions, log, go }: Draft): void {
  const s = ctx.settings;
  if (st.health !== "failing" && st.health !== "repairing" && st.health !== "degraded") return;
  if (st.jobInFlight || !ctx.bootstrapDone) return;
  if (ctx.dependency && !ctx.dependency.healthy) return;
  const v = unitVerdict(st.unitState, now, s.minUptimeMs);
  if (v.kind === "stopped" || v.kind === "missing" || v.kind === "transition" || v.kind === "young") return;
  if (st.consecutiveFailures < s.failureThreshold) return;
  if (st.failingSinceMs === undefined || now - st.failingSinceMs < s.failureWindowMs) return;
  const used = st.restarts.length;
  if (used >= s.restartBudget) {
    if (st.health === "degraded") return;
    const refillInMs = Math.max(0, (st.restarts[0] ?? now) + s.budgetWindowMs - now);
    const fields = { restartsInWindow: used, budget: s.restartBudget, refillInMs };
    const window = `${used} restarts of ${st.unit} in ${Math.round(s.budgetWindowMs / 1000)} s`;
    const notFor = `NOT restarting it again for ${Math.round(refillInMs / 1000)} s`;
    go("degraded", `restart budget spent (${window}); ${notFor}: ${st.cause}. Look at \`journalctl -u ${st.unit}\``, "error", fields);
    log("error", "budget-exhausted", `giving up on ${st.unit} until the budget refills`, fields);
    return;
  }
  if (now < st.nextRepairAtMs) return;
  const cause = st.cause;
  st.backoffAttempt += 1;
  const backoff = repairBackoffMs(st.backoffAttempt, s, ctx.random);
  st.nextRepairAtMs = now + backoff;
  st.restarts = [...st.restarts, now];
  st.jobInFlight = true;
  st.repairs = [...st.repairs, { atMs: now, cause }].slice(-REPAIR_HISTORY);
  const failingForMs = now - st.failingSinceMs;
  go("repairing", `restarting ${st.unit}: ${cause}`, "warn", { attempt: st.backoffAttempt, failingForMs });
  actions.push({ kind: "restart", unit: st.unit, cause });
  const left = s.restartBudget - st.restarts.length;
  log(
    "warn",
    "repair",
    `RestartUnit ${st.unit} (attempt ${st.backoffAttempt}, ${left} restarts left in the budget, next repair no sooner than ${backoff} ms)`,
    {
      attempt: st.backoffAttempt,
      budgetLeft: left,
      backoffMs: backoff,
      consecutiveFailures: st.consecutiveFailures,
      failingForMs,
    },
  );
}
