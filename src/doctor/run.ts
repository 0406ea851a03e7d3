/**
 * The doctor's runner: pure scheduling, no I/O of its own. Each check starts
 * as soon as the checks it needs (and those it runs after) have finished, so
 * independent checks overlap; each runs under its own deadline, clipped to the
 * run's overall budget; a check whose prerequisite failed (or was skipped) is
 * reported `skip` and never started. A check still running at its deadline is
 * reported as a failure naming the step it was on (CheckContext.step): a
 * black-holed endpoint costs its deadline, never a hang.
 */
import { escapeControl } from "../util/result.ts";
import type { CheckContext, CheckId, CheckOutcome, CheckResult, CheckSpec } from "./types.ts";

export interface RunnerOptions {
  /** The whole run's budget, ms: no check runs past `start + totalMs`. */
  totalMs: number;
  /** Clock (ms); injected in tests. */
  now?: () => number;
}

/**
 * Checks in an order where every check comes after what it needs and runs
 * after; throws on a cycle or a needed id not in the run (a bug). An `after`
 * id not in the run is ignored: the check runs without it, as it must anyway.
 */
export function dependencyOrder(checks: readonly CheckSpec[]): CheckSpec[] {
  const byId = new Map(checks.map((c) => [c.id, c]));
  const out: CheckSpec[] = [];
  const state = new Map<CheckId, "visiting" | "done">();
  const visit = (c: CheckSpec, path: CheckId[]): void => {
    const s = state.get(c.id);
    if (s === "done") return;
    if (s === "visiting") throw new Error(`doctor checks depend on each other in a cycle: ${[...path, c.id].join(" → ")}`);
    state.set(c.id, "visiting");
    for (const dep of c.needs) {
      const d = byId.get(dep);
      if (!d) throw new Error(`doctor check ${c.id} depends on ${dep}, which is not in the run`);
      visit(d, [...path, c.id]);
    }
    for (const dep of c.after ?? []) {
      const d = byId.get(dep);
      if (d) visit(d, [...path, c.id]);
    }
    state.set(c.id, "done");
    out.push(c);
  };
  for (const c of checks) visit(c, []);
  return out;
}

/** The skip result for `c` when something it needs did not pass or warn; undefined when it may run. */
export function skipFor(c: CheckSpec, results: ReadonlyMap<CheckId, CheckResult>): CheckResult | undefined {
  const blocked = c.needs.filter((id) => {
    const s = results.get(id)?.status;
    return s === "fail" || s === "skip";
  });
  if (blocked.length === 0) return undefined;
  const what = blocked.map((id) => `${id} (${results.get(id)?.status === "skip" ? "skipped" : "failed"})`).join(", ");
  return {
    id: c.id,
    status: "skip",
    finding: `not run: it needs ${what}`,
    hint: `fix ${blocked[0]} first, then run berth doctor again`,
    durationMs: 0,
  };
}

/** Run one check under its deadline; never rejects. */
async function runOne(c: CheckSpec, deadline: number, now: () => number, results: ReadonlyMap<CheckId, CheckResult>): Promise<CheckResult> {
  const start = now();
  const ms = Math.max(0, Math.round(deadline - start));
  // Findings quote what the node holds (log lines, file names, server answers): escaped, each stays one line.
  const finish = (o: CheckOutcome): CheckResult => ({
    id: c.id,
    status: o.status,
    finding: escapeControl(o.finding),
    hint: escapeControl(o.hint),
    durationMs: Math.max(0, Math.round(now() - start)),
    ...(o.detail && o.detail.length ? { detail: o.detail.map(escapeControl) } : {}),
  });
  if (ms <= 0) {
    return finish({
      status: "fail",
      finding: "not run: the doctor's overall time budget was spent by the checks before it",
      hint: "run berth doctor again; the checks before it are slow",
    });
  }
  const ac = new AbortController();
  let current: { label: string; hint?: string } = { label: "the check" };
  const ctx: CheckContext = {
    deadline,
    remaining: () => Math.max(1, Math.round(deadline - now())),
    signal: ac.signal,
    step(label, timeoutHint) {
      current = { label, ...(timeoutHint !== undefined ? { hint: timeoutHint } : {}) };
    },
    result: (id) => results.get(id),
  };
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<CheckOutcome>((resolve) => {
    timer = setTimeout(() => {
      const e = new Error(`${c.id}: deadline of ${ms} ms passed`);
      e.name = "TimeoutError";
      ac.abort(e);
      resolve({
        status: "fail",
        finding: `${current.label}: no answer within ${ms} ms`,
        hint: current.hint ?? "something this check waits for is not answering; the finding names it",
      });
    }, ms);
  });
  try {
    return finish(await Promise.race([c.run(ctx), timedOut]));
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    return finish({
      status: "fail",
      finding: `internal error in the ${c.id} check: ${msg}`,
      hint: "this is a bug in berth; please report it with the output of `berth doctor -o json`",
    });
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Run every check (dependency order, overlapping where independent) and
 * return their results in the order `checks` lists them.
 */
export async function runChecks(checks: readonly CheckSpec[], opts: RunnerOptions): Promise<CheckResult[]> {
  const now = opts.now ?? Date.now;
  const runEnd = now() + opts.totalMs;
  const results = new Map<CheckId, CheckResult>();
  const done = new Map<CheckId, Promise<CheckResult>>();
  for (const c of dependencyOrder(checks)) {
    const waitFor = [...c.needs, ...(c.after ?? [])].flatMap((id) => done.get(id) ?? []);
    const p = Promise.all(waitFor).then(async () => {
      const r = skipFor(c, results) ?? (await runOne(c, Math.min(now() + c.deadlineMs, runEnd), now, results));
      results.set(c.id, r);
      return r;
    });
    done.set(c.id, p);
  }
  await Promise.all(done.values());
  return checks.map((c) => results.get(c.id) as CheckResult);
}

/** 0 when nothing failed, 1 otherwise (warnings and skips alone do not fail the run; a skip only follows a failure). */
export function doctorExitStatus(results: readonly CheckResult[]): 0 | 1 {
  return results.some((r) => r.status === "fail") ? 1 : 0;
}
