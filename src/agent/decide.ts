/**
 * The repair decision: a PURE state machine per component. No clock, no
 * randomness, no I/O: the controller feeds it events (probe results, unit
 * state from systemd, the end of a restart job) with the time and a random
 * number for jitter, and executes the actions it returns.
 *
 * States:
 *   unknown    no probe has completed yet: never reported healthy unchecked
 *   healthy    the last probe passed
 *   failing    probes fail or the unit left `active`; counting towards a repair
 *   repairing  a RestartUnit was issued; waiting for a passing probe
 *   degraded   failing, and the restart budget is spent: no more restarts
 *              until it refills (said loudly, once)
 *   stopped    inactive with Result=success: someone ran `systemctl stop`;
 *              not failed, not repaired
 *
 * Rules (each has a test in tests/unit/agent-decide.test.ts):
 *   - repair only after `failureThreshold` consecutive failed probes AND
 *     `failureWindowMs` of failing, and never while bootstrapping
 *   - exponential backoff with jitter between repairs of the same unit
 *   - at most `restartBudget` restarts per sliding `budgetWindowMs`
 *   - never restart a component whose dependency (kubelet → containerd) is
 *     not healthy: kubelet reconnects to containerd by itself
 *   - never fight systemd: a unit in `activating`/`deactivating` (its own
 *     `Restart=` at work, or a job in flight) is left alone
 *   - uptime is systemd's ActiveEnterTimestamp: a unit (re)started less than
 *     `minUptimeMs` ago by anyone is left alone
 *   - the only repair is RestartUnit
 */
import type { UnitState } from "../host/systemd.ts";
import type { ResolvedAgentSettings } from "./settings.ts";

export type Health = "unknown" | "healthy" | "failing" | "repairing" | "degraded" | "stopped";
export const HEALTH_STATES: readonly Health[] = ["unknown", "healthy", "failing", "repairing", "degraded", "stopped"];

export type ComponentName = "containerd" | "kubelet";

/** The part of systemd's unit state the decision uses. */
export type UnitSnapshot = Pick<UnitState, "loadState" | "activeState" | "subState" | "result" | "activeEnterTimestampUs" | "nRestarts" | "mainPid">;

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

export type LogLevel = "info" | "warn" | "error";

export interface AgentEvent {
  atMs: number;
  level: LogLevel;
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

/** Jittered exponential backoff after repair number `attempt` (1-based): d·(1 − ½·random), d = min(max, initial·2^(attempt−1)). */
export function repairBackoffMs(attempt: number, settings: ResolvedAgentSettings, random: number): number {
  const base = Math.min(settings.backoffMaxMs, settings.backoffInitialMs * Math.pow(2, Math.max(0, attempt - 1)));
  // Half jitter: spread repairs of many nodes apart without ever going near zero.
  return Math.round(base * (1 - 0.5 * Math.min(1, Math.max(0, random))));
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
  const actions: Action[] = [];
  const log = (level: LogLevel, event: AgentEvent["event"], cause: string, fields?: AgentEvent["fields"], from?: Health, to?: Health) => {
    actions.push({ kind: "log", event: { atMs: now, level, component: st.name, event, cause, ...(from ? { from } : {}), ...(to ? { to } : {}), ...(fields ? { fields } : {}) } });
  };
  const go = (to: Health, cause: string, level: LogLevel = to === "healthy" || to === "stopped" ? "info" : to === "degraded" ? "error" : "warn", fields?: AgentEvent["fields"]) => {
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
    if ((from === "healthy" || from === "unknown") && (to === "failing" || to === "repairing" || to === "degraded")) st.unhealthySinceMs = now;
  };
  const startFailing = () => {
    if (st.failingSinceMs === undefined) st.failingSinceMs = now;
    // The backoff forgives a unit that stayed healthy for a full backoff cycle.
    if (st.healthySinceMs !== undefined && prev.health === "healthy" && now - st.healthySinceMs >= ctx.settings.backoffMaxMs) st.backoffAttempt = 0;
  };

  switch (input.type) {
    case "repair-done": {
      if (!st.jobInFlight) break; // not ours (or already settled)
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
      } else {
        log("warn", "repair-result", `RestartUnit ${st.unit} did not succeed: ${input.result}${input.cause ? `: ${input.cause}` : ""}`, { result: input.result });
        if (st.health === "repairing") go("failing", `restart of ${st.unit} ended with ${input.result}${input.cause ? `: ${input.cause}` : ""}`);
      }
      break;
    }

    case "unit": {
      const before = st.unitState;
      st.unitState = input.unit;
      if (st.jobInFlight) break; // our own restart job moves the unit through stop/start
      const v = unitVerdict(input.unit, now, ctx.settings.minUptimeMs);
      if (v.kind === "stopped") {
        st.consecutiveFailures = 0;
        st.failingSinceMs = undefined;
        go("stopped", `${st.unit} is ${describeUnit(input.unit)}: stopped on purpose (systemctl stop or a clean exit); not repairing`);
      } else if (st.health === "stopped") {
        // Started again by someone: unknown until a probe says otherwise.
        if (v.kind === "young" || v.kind === "running" || v.kind === "transition") go("unknown", `${st.unit} is ${describeUnit(input.unit)} again; checking`, "info");
        else if (v.kind === "failed") {
          startFailing();
          go("failing", `${st.unit} is ${describeUnit(input.unit)}`);
        }
      } else if (v.kind === "failed" || isCrashRestart(input.unit)) {
        // A crash is seen here at once, not at the next probe.
        startFailing();
        const systemdRestarting = v.kind === "transition";
        const cause = `${st.unit} left active: ${describeUnit(input.unit)}${systemdRestarting ? `; systemd is restarting it (NRestarts=${input.unit.nRestarts})` : ""}`;
        if (st.health === "healthy" || st.health === "unknown") go("failing", cause);
        else st.cause = cause;
      } else if (v.kind === "young" && before && before.activeEnterTimestampUs !== input.unit.activeEnterTimestampUs && st.health !== "healthy" && st.health !== "unknown") {
        // Restarted by systemd or an operator: a fresh window for it.
        st.consecutiveFailures = 0;
        st.failingSinceMs = now;
      }
      maybeRepair(st, ctx, now, actions, log, go);
      break;
    }

    case "probe": {
      st.lastProbe = { ...input.result, atMs: now };
      if (input.result.ok) {
        st.consecutiveFailures = 0;
        st.failingSinceMs = undefined;
        if (st.health !== "healthy") {
          const last = st.repairs[st.repairs.length - 1];
          const afterRepair = st.health === "repairing" && last !== undefined && last.recoveredAfterMs === undefined;
          if (afterRepair) st.repairs[st.repairs.length - 1] = { ...last, recoveredAfterMs: now - last.atMs };
          const fields: AgentEvent["fields"] = { latencyMs: input.result.latencyMs };
          if (afterRepair) fields.recoveredAfterMs = now - last.atMs;
          if (st.health !== "unknown" && st.health !== "stopped" && st.unhealthySinceMs !== undefined) fields.unhealthyForMs = now - st.unhealthySinceMs;
          go("healthy", afterRepair ? `probe passed ${now - last.atMs} ms after the restart` : st.health === "unknown" ? "first probe passed" : "probe passed again", "info", fields);
        }
        break;
      }
      const cause = input.result.cause ?? "probe failed";
      if (st.health === "stopped") {
        // A stopped unit does not answer; that is expected, not a failure.
        break;
      }
      const v = unitVerdict(st.unitState, now, ctx.settings.minUptimeMs);
      if (ctx.dependency && !ctx.dependency.healthy) {
        // Failures of kubelet while containerd is down are containerd's; they do not count.
        st.consecutiveFailures = 0;
        st.failingSinceMs = undefined;
        const held = `${cause} (held: ${ctx.dependency.name} is not healthy; ${st.name} reconnects by itself)`;
        if (st.health === "healthy" || st.health === "unknown") go("failing", held);
        else st.cause = held;
        break;
      }
      if (v.kind === "transition" && st.unitState && !isCrashRestart(st.unitState) && (st.health === "healthy" || st.health === "unknown")) {
        // A stop or start job in flight (an operator's systemctl): not answering is
        // expected; its outcome (active, stopped or failed) decides.
        st.cause = `${st.unit} is ${describeUnit(st.unitState)}; waiting for systemd's job`;
        break;
      }
      st.consecutiveFailures += 1;
      startFailing();
      const unitNote = st.unitState && v.kind !== "running" && v.kind !== "unknown" ? ` [unit ${describeUnit(st.unitState)}]` : "";
      if (st.health === "healthy" || st.health === "unknown") go("failing", `${cause}${unitNote}`, "warn", { latencyMs: input.result.latencyMs });
      else if (st.health === "repairing" && !st.jobInFlight && v.kind !== "young" && v.kind !== "transition") {
        // The restarted unit had its minimum uptime and still fails.
        go("failing", `still failing after the restart: ${cause}${unitNote}`);
      } else if (st.health === "degraded") st.cause = `restart budget spent; last failure: ${cause}${unitNote}`;
      else st.cause = `${cause}${unitNote}`;
      maybeRepair(st, ctx, now, actions, log, go);
      break;
    }
  }
  return { state: st, actions };
}

type LogFn = (level: LogLevel, event: AgentEvent["event"], cause: string, fields?: AgentEvent["fields"], from?: Health, to?: Health) => void;
type GoFn = (to: Health, cause: string, level?: LogLevel, fields?: AgentEvent["fields"]) => void;

/** Issue a restart when every rule allows it; move to degraded when only the budget is in the way. */
function maybeRepair(st: ComponentState, ctx: DecideContext, now: number, actions: Action[], log: LogFn, go: GoFn): void {
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
    if (st.health !== "degraded") {
      const oldest = st.restarts[0] ?? now;
      const refillInMs = Math.max(0, oldest + s.budgetWindowMs - now);
      go(
        "degraded",
        `restart budget spent (${used} restarts of ${st.unit} in ${Math.round(s.budgetWindowMs / 1000)} s); NOT restarting it again for ${Math.round(refillInMs / 1000)} s: ${st.cause}. Look at \`journalctl -u ${st.unit}\``,
        "error",
        { restartsInWindow: used, budget: s.restartBudget, refillInMs },
      );
      log("error", "budget-exhausted", `giving up on ${st.unit} until the budget refills`, { restartsInWindow: used, budget: s.restartBudget, refillInMs });
    }
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
  log("warn", "repair", `RestartUnit ${st.unit} (attempt ${st.backoffAttempt}, ${s.restartBudget - st.restarts.length} restarts left in the budget, next repair no sooner than ${backoff} ms)`, {
    attempt: st.backoffAttempt,
    budgetLeft: s.restartBudget - st.restarts.length,
    backoffMs: backoff,
    consecutiveFailures: st.consecutiveFailures,
    failingForMs,
  });
}
