/**
 * "Ensure this unit runs its current config": one step, used for containerd
 * and for the kubelet. It starts the unit when it is down, restarts it only
 * when a file it reads changed since it started, and then checks what
 * "ready" means for that unit. Every decision comes from facts read now (unit
 * state, what this process wrote, file mtimes), never from a memory of an
 * earlier run. The decision itself (`decideUnitAction`) is pure.
 */
import { promises as fsp } from "node:fs";
import type { HostRoot } from "../../host/root.ts";
import type { UnitRecord } from "../../host/run-status.ts";
import type { JobResult, Systemd, UnitState } from "../../host/systemd.ts";
import { errorMessage, toBerthError } from "../../util/errors.ts";
import type { Logger } from "../../util/log.ts";
import type { BerthError } from "../../util/result.ts";
import type { RunStep } from "./context.ts";
import type { StepOutcome } from "./step.ts";

export type UnitAction = UnitRecord["action"];

export interface UnitDecision {
  action: UnitAction;
  cause: string;
}

/**
 * What to do with a unit. Pure: the caller gathers the unit's state, the
 * paths this process wrote for it, and the newest mtime (ms) of its config.
 * "Config changed" = this process wrote one of its files, OR one of them is
 * not older than the moment the unit's main process started (the
 * two-process boot: the unit may have started from the distribution's config
 * before berth-config wrote the real one). Not the moment it became active:
 * a Type=notify unit (containerd) reads its config at exec and becomes
 * active later, so a config written in between was never read, yet is
 * older than ActiveEnterTimestamp (issue 7: a lab node's containerd ran
 * with Debian's config and berth-run called it unchanged).
 */
export function decideUnitAction(
  unit: string,
  state: UnitState,
  input: { written: string[]; newestConfigMtimeMs?: number; newestConfigPath?: string },
): UnitDecision {
  if (state.activeState === "activating" || state.activeState === "reloading") {
    // A start job (from boot, or systemd's Restart=) is already running: join it rather than kill it.
    return { action: "start", cause: `${unit} is ${state.activeState} (${state.subState}); waiting for its start job` };
  }
  if (state.activeState !== "active") {
    const why = state.activeState === "failed" ? `failed (${state.result || "unknown result"})` : state.activeState || "unknown";
    return { action: state.activeState === "inactive" ? "start" : "restart", cause: `${unit} is ${why}` };
  }
  if (input.written.length > 0) {
    return { action: "restart", cause: `config changed: ${input.written.join(", ")}` };
  }
  // The unit's main process started then (ActiveEnterTimestamp where systemd does not say).
  const startedMs = (state.execMainStartTimestampUs || state.activeEnterTimestampUs) / 1000;
  if (input.newestConfigMtimeMs !== undefined && startedMs > 0 && input.newestConfigMtimeMs >= startedMs) {
    const newer = `${new Date(input.newestConfigMtimeMs).toISOString()} ≥ ${new Date(startedMs).toISOString()}`;
    return {
      action: "restart",
      cause: `config changed after ${unit} started: ${input.newestConfigPath ?? "a config file"} is newer (${newer})`,
    };
  }
  return { action: "none", cause: `${unit} is active and its config is unchanged` };
}

const under = (p: string, dir: string): boolean => p === dir || p.startsWith(`${dir}/`);

/** Newest mtime (ms) of the files at/under the given host paths. */
async function newestMtime(
  root: HostRoot,
  hostPaths: readonly string[],
  skip: (hostPath: string) => boolean,
): Promise<{ mtimeMs: number; path: string } | undefined> {
  let best: { mtimeMs: number; path: string } | undefined;
  const visit = async (hp: string, depth: number): Promise<void> => {
    if (skip(hp) || depth > 6) return;
    let st;
    try {
      st = await fsp.lstat(root.entryPath(hp));
    } catch {
      return;
    }
    if (st.isDirectory()) {
      let names: string[];
      try {
        names = await fsp.readdir(root.path(hp));
      } catch {
        return;
      }
      for (const n of names) await visit(`${hp}/${n}`, depth + 1);
    } else if (!best || st.mtimeMs > best.mtimeMs) best = { mtimeMs: st.mtimeMs, path: hp };
  };
  for (const p of hostPaths) await visit(p, 0);
  return best;
}

/** What a readiness check is told once the start/restart job (if any) is over. */
export interface ReadinessInput {
  sd: Systemd;
  log: Logger;
  name: string;
  unit: string;
  decision: UnitDecision;
  jobResult?: JobResult;
  elapsedMs: () => number;
}

/** ok, with the main PID when it was read, and `quiet` when the check logged its own line. */
export type Readiness = (i: ReadinessInput) => Promise<{ ok: true; mainPid?: number; quiet?: boolean } | { ok: false; error: BerthError }>;

/**
 * Ready = the job is done, or it failed but systemd will bring the unit back
 * (Restart=always: activating or auto-restart), leaving the judgement to a
 * later step with its own deadline (containerd: the CRI wait).
 */
export function doneOrRestartingReadiness(hint: string): Readiness {
  return async ({ sd, log, name, unit, decision, jobResult, elapsedMs }) => {
    if (jobResult === undefined || jobResult === "done") return { ok: true };
    const after = await sd.unitState(unit).catch(() => undefined);
    const pending = after && (after.activeState === "activating" || after.subState === "auto-restart" || after.activeState === "active");
    const states = { activeState: after?.activeState, subState: after?.subState };
    log.warn({
      event: `${name}.job-failed`,
      component: name,
      cause: `job result ${jobResult}`,
      ...states,
      willRetry: Boolean(pending),
      durationMs: elapsedMs(),
    });
    if (pending) return { ok: true, quiet: true };
    const now = `${after?.activeState ?? "unknown"}/${after?.subState ?? "unknown"}`;
    const message = `${decision.action} of ${unit} ended with "${jobResult}" and systemd will not restart it (${now})`;
    return { ok: false, error: { code: `run.${name}-failed`, message, where: { path: unit }, hint } };
  };
}

/** Ready = the unit is active after the job (or after the check, when nothing was done). */
export function activeReadiness(hint: string): Readiness {
  return async ({ sd, name, unit, decision, jobResult }) => {
    const after = await sd.unitState(unit).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
    if (!(after instanceof Error) && after.activeState === "active") return { ok: true, mainPid: after.mainPid };
    const state = after instanceof Error ? errorMessage(after) : `${after.activeState}/${after.subState}, result ${after.result}`;
    const what = decision.action === "none" ? "the check" : decision.action;
    const message = `${unit} is not active after ${what} (${state}${jobResult ? `, job ${jobResult}` : ""})`;
    return { ok: false, error: { code: `run.${name}-not-active`, message, where: { path: unit }, hint } };
  };
}

export interface EnsureUnitSpec {
  /** The step's name, its log component and its section in the status file. */
  name: "containerd" | "kubelet";
  unit: string;
  needs: readonly string[];
  /** Host paths whose change requires a restart (a directory covers everything under it). */
  restartOn: readonly string[];
  /** Paths under `restartOn` the unit re-reads by itself (no restart needed). */
  notRestartOn?: readonly string[];
  /** Paths whose mtime says nothing about a config change (the unit writes them itself). */
  ignoreMtimeOf?: (hostPath: string) => boolean;
  jobTimeoutMs: number;
  /** systemd does not know the unit: what that means and what to do. */
  missing: { message: string; hint: string };
  ready: Readiness;
}

/** Whether a change at `hostPath` requires restarting the unit of `spec`. */
export function restartsFor(spec: Pick<EnsureUnitSpec, "restartOn" | "notRestartOn">, hostPath: string): boolean {
  return spec.restartOn.some((w) => under(hostPath, w)) && !(spec.notRestartOn ?? []).some((w) => under(hostPath, w));
}

const stepFailed = (error: BerthError): StepOutcome => ({ outcome: "failed", error });

export function ensureUnitStep(spec: EnsureUnitSpec): RunStep {
  const { name, unit } = spec;
  const ignored = (p: string): boolean => (spec.notRestartOn ?? []).some((w) => under(p, w)) || (spec.ignoreMtimeOf?.(p) ?? false);
  return {
    name,
    needs: spec.needs,
    async run(ctx) {
      const startedMs = ctx.now();
      let state: UnitState;
      try {
        state = await ctx.sd.unitState(unit);
      } catch (e) {
        return stepFailed(toBerthError(e, `run.${name}-state`, `cannot read the state of ${unit}`, `check \`systemctl status ${name}\``));
      }
      if (state.loadState === "not-found") return stepFailed({ code: `run.${name}-missing`, ...spec.missing, where: { path: unit } });
      const newest = await newestMtime(ctx.root, spec.restartOn, ignored);
      const d = decideUnitAction(unit, state, {
        written: ctx.written.filter((p) => restartsFor(spec, p)),
        ...(newest ? { newestConfigMtimeMs: newest.mtimeMs, newestConfigPath: newest.path } : {}),
      });
      const report: UnitRecord = { ...d };
      ctx.status[name] = report;
      if (d.action !== "none") {
        ctx.log.info({ event: `${name}.${d.action}`, component: name, cause: d.cause, activeState: state.activeState });
        const job = { timeoutMs: spec.jobTimeoutMs };
        try {
          report.jobResult = d.action === "restart" ? await ctx.sd.restartUnit(unit, job) : await ctx.sd.startUnit(unit, job);
        } catch (e) {
          const hint = `check \`systemctl status ${name}\` and \`journalctl -u ${name}\``;
          return stepFailed(toBerthError(e, `run.${name}-job`, `${d.action} of ${unit} failed`, hint));
        }
      }
      const ready = await spec.ready({
        sd: ctx.sd,
        log: ctx.log,
        name,
        unit,
        decision: d,
        ...(report.jobResult ? { jobResult: report.jobResult } : {}),
        elapsedMs: () => ctx.now() - startedMs,
      });
      if (!ready.ok) return stepFailed(ready.error);
      if (ready.mainPid !== undefined) report.mainPid = ready.mainPid;
      const event = ready.quiet ? undefined : `${name}.${d.action === "none" ? "unchanged" : "active"}`;
      const fields = report.mainPid !== undefined ? { fields: { mainPid: report.mainPid } } : {};
      return { outcome: d.action === "none" ? "ok" : "changed", action: d.action, cause: d.cause, ...(event ? { event } : {}), ...fields };
    },
  };
}
