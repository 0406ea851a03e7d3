/**
 * The step shape (`PhaseStep`) and the one runner. A phase is a list of
 * steps, each with a name, the earlier steps it needs and `run(ctx)` returning
 * an outcome; the runner times each step, skips those whose needs did not
 * succeed, and turns every outcome into one status record and at most one log
 * line. It never acts on the node itself and never retries: each step carries
 * its own deadlines.
 */
import type { StepOutcomeKind, StepRecord } from "../../host/run-status.ts";
import type { Logger } from "../../util/log.ts";
import type { BerthError } from "../../util/result.ts";

/** The log line an outcome asks for: its event name and extra fields (cause and durationMs are added). */
interface OutcomeLog {
  event?: string;
  fields?: Record<string, unknown>;
}

/** What `run` reports. `cause` (or the error's message) goes to the status file and to the log line alike. */
export type StepOutcome =
  | ({ outcome: "ok" | "changed"; action: string; cause: string } & OutcomeLog)
  | ({ outcome: "skipped"; cause: string } & OutcomeLog)
  | ({ outcome: "failed"; error: BerthError } & OutcomeLog);

export interface PhaseStep<C> {
  name: string;
  /** Earlier steps that must end ok or changed for this one to run; otherwise it is skipped. */
  needs: readonly string[];
  /** `component` on its log lines (default: the name). */
  component?: string;
  /** Its failure is recorded and logged but does not fail the phase. */
  optional?: boolean;
  run(ctx: C): Promise<StepOutcome>;
}

export interface RunStepsOptions {
  now: () => number;
  log: Logger;
  /** The error of a step whose `run` threw. */
  thrown: (e: unknown, step: string) => BerthError;
  /** Each record as soon as its step ends. */
  onRecord?: (record: StepRecord) => void;
}

export interface StepsResult {
  records: StepRecord[];
  /** The first failure of a step that is not optional. */
  error?: BerthError;
}

/** A need must name an earlier step: the list's order is the order things happen in. */
function checkNeeds<C>(steps: readonly PhaseStep<C>[]): void {
  const seen = new Set<string>();
  for (const s of steps) {
    if (seen.has(s.name)) throw new Error(`step ${s.name} is listed twice`);
    for (const n of s.needs) if (!seen.has(n)) throw new Error(`step ${s.name} needs ${n}, which is not an earlier step`);
    seen.add(s.name);
  }
}

function toRecord(step: string, out: StepOutcome, startMs: number, endMs: number): StepRecord {
  const times = { startMs, endMs, durationMs: endMs - startMs };
  if (out.outcome === "failed") return { step, outcome: out.outcome, cause: out.error.message, code: out.error.code, ...times };
  if (out.outcome === "skipped") return { step, outcome: out.outcome, cause: out.cause, ...times };
  return { step, outcome: out.outcome, action: out.action, cause: out.cause, ...times };
}

function logOutcome(log: Logger, component: string, out: StepOutcome, r: StepRecord): void {
  if (!out.event) return;
  const line = { event: out.event, component, outcome: r.outcome, cause: r.cause, durationMs: r.durationMs, ...out.fields };
  if (out.outcome === "ok" || out.outcome === "changed") log.info(line);
  else log.warn(line);
}

/** Run the steps in order. Throws only for a malformed list (a bug in the phase, not on the node). */
export async function runSteps<C>(steps: readonly PhaseStep<C>[], ctx: C, opts: RunStepsOptions): Promise<StepsResult> {
  checkNeeds(steps);
  const ended = new Map<string, StepOutcomeKind>();
  const records: StepRecord[] = [];
  let error: BerthError | undefined;
  for (const step of steps) {
    const component = step.component ?? step.name;
    const startMs = opts.now();
    const blocked = step.needs.find((n) => ended.get(n) !== "ok" && ended.get(n) !== "changed");
    let out: StepOutcome;
    if (blocked !== undefined) {
      const how = ended.get(blocked) === "failed" ? "failed" : "was skipped";
      out = { outcome: "skipped", cause: `needs ${blocked}, which ${how}`, event: `${component}.skipped` };
    } else {
      try {
        out = await step.run(ctx);
      } catch (e) {
        out = { outcome: "failed", error: opts.thrown(e, step.name) };
      }
    }
    const record = toRecord(step.name, out, startMs, opts.now());
    ended.set(step.name, out.outcome);
    records.push(record);
    opts.onRecord?.(record);
    logOutcome(opts.log, component, out, record);
    if (out.outcome === "failed" && !step.optional && !error) error = out.error;
  }
  return { records, ...(error ? { error } : {}) };
}
