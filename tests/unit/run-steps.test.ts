/**
 * The Step runner (src/phases/steps/step.ts) with steps that act on the
 * recording systemd fake and a fake clock: outcomes become records and log
 * lines, steps run in list order, a failure skips the steps that need it (and
 * only those), an optional step's failure does not fail the phase, and every
 * record carries the step's start and end.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { runSteps, type PhaseStep, type StepOutcome } from "../../src/phases/steps/step.ts";
import type { Logger } from "../../src/util/log.ts";
import type { BerthError } from "../../src/util/result.ts";
import { FakeSystemd } from "../fakes/systemd-fake.ts";

interface Ctx {
  sd: FakeSystemd;
  /** The fake clock (ms); a step advances it by the time it "takes". */
  clock: { ms: number };
}

function recorder(): Logger & { lines: { level: string; fields: Record<string, unknown> }[] } {
  const lines: { level: string; fields: Record<string, unknown> }[] = [];
  const at = (level: string) => (fields: Record<string, unknown>) => void lines.push({ level, fields });
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

/** A step that starts `unit` (taking `ms`) and reports changed, or ok when it is already active. */
function startStep(name: string, unit: string, needs: string[] = [], ms = 10): PhaseStep<Ctx> {
  return {
    name,
    needs,
    async run(ctx) {
      ctx.clock.ms += ms;
      if ((await ctx.sd.unitState(unit)).activeState === "active") return { outcome: "ok", action: "none", cause: `${unit} is active` };
      const r = await ctx.sd.startUnit(unit);
      if (r !== "done") return { outcome: "failed", error: { code: `test.${name}`, message: `start of ${unit}: ${r}` } };
      return { outcome: "changed", action: "start", cause: `${unit} was inactive`, event: `${name}.active`, fields: { unit } };
    },
  };
}

function setup(units: Record<string, { activeState: string }>) {
  const ctx: Ctx = { sd: new FakeSystemd({ units }), clock: { ms: 1_000 } };
  const log = recorder();
  const thrown = (e: unknown, step: string): BerthError => ({ code: "test.thrown", message: `${step} threw: ${String(e)}` });
  return { ctx, log, opts: { now: () => ctx.clock.ms, log, thrown } };
}

test("steps run in list order; each outcome becomes one record and at most one log line", async () => {
  const { ctx, log, opts } = setup({
    "a.service": { activeState: "inactive" },
    "b.service": { activeState: "active" },
    "c.service": { activeState: "inactive" },
  });
  const seen: string[] = [];
  const r = await runSteps([startStep("a", "a.service"), startStep("b", "b.service", ["a"]), startStep("c", "c.service", ["b"])], ctx, {
    ...opts,
    onRecord: (rec) => seen.push(rec.step),
  });
  assert.equal(r.error, undefined);
  assert.deepEqual(
    ctx.sd.callsOf("startUnit").map((c) => c.unit),
    ["a.service", "c.service"],
  );
  assert.deepEqual(
    r.records.map((x) => [x.step, x.outcome, x.action, x.cause]),
    [
      ["a", "changed", "start", "a.service was inactive"],
      ["b", "ok", "none", "b.service is active"],
      ["c", "changed", "start", "c.service was inactive"],
    ],
  );
  assert.deepEqual(seen, ["a", "b", "c"], "each record is handed on as its step ends");
  // b asked for no log line; the others' lines carry the outcome's cause and the step's duration.
  assert.deepEqual(
    log.lines.map((l) => [
      l.level,
      l.fields.event,
      l.fields.component,
      l.fields.outcome,
      l.fields.cause,
      l.fields.durationMs,
      l.fields.unit,
    ]),
    [
      ["info", "a.active", "a", "changed", "a.service was inactive", 10, "a.service"],
      ["info", "c.active", "c", "changed", "c.service was inactive", 10, "c.service"],
    ],
  );
});

test("each record carries its step's start and end on the phase's clock", async () => {
  const { ctx, opts } = setup({ "a.service": { activeState: "inactive" }, "b.service": { activeState: "inactive" } });
  const idle: PhaseStep<Ctx> = {
    name: "idle",
    needs: [],
    run: async (c) => ((c.clock.ms += 5), { outcome: "ok", action: "none", cause: "nothing" }),
  };
  const r = await runSteps([startStep("a", "a.service", [], 30), idle, startStep("b", "b.service", ["a"], 200)], ctx, opts);
  assert.deepEqual(
    r.records.map((x) => [x.step, x.startMs, x.endMs, x.durationMs]),
    [
      ["a", 1_000, 1_030, 30],
      ["idle", 1_030, 1_035, 5],
      ["b", 1_035, 1_235, 200],
    ],
  );
});

test("a failed step skips the steps that need it, directly or not; the others still run", async () => {
  const { ctx, log, opts } = setup({
    "a.service": { activeState: "inactive" },
    "b.service": { activeState: "inactive" },
    "c.service": { activeState: "inactive" },
  });
  ctx.sd.jobResultOnce("startUnit", "failed");
  const steps = [
    startStep("a", "a.service"),
    startStep("needs-a", "b.service", ["a"]),
    startStep("needs-needs-a", "b.service", ["needs-a"]),
    startStep("independent", "c.service"),
  ];
  const r = await runSteps(steps, ctx, opts);
  assert.equal(r.error?.code, "test.a");
  assert.deepEqual(
    ctx.sd.callsOf("startUnit").map((c) => c.unit),
    ["a.service", "c.service"],
    "b.service is never started",
  );
  assert.deepEqual(
    r.records.map((x) => [x.step, x.outcome, x.cause]),
    [
      ["a", "failed", "start of a.service: failed"],
      ["needs-a", "skipped", "needs a, which failed"],
      ["needs-needs-a", "skipped", "needs needs-a, which was skipped"],
      ["independent", "changed", "c.service was inactive"],
    ],
  );
  assert.equal(r.records[0]?.code, "test.a");
  const skipped = r.records.filter((x) => x.outcome === "skipped");
  assert.ok(
    skipped.every((x) => x.startMs === x.endMs && x.durationMs === 0),
    "a skipped step takes no time",
  );
  assert.deepEqual(
    log.lines.filter((l) => l.level === "warn").map((l) => l.fields.event),
    ["needs-a.skipped", "needs-needs-a.skipped"],
  );
});

test("an optional step's failure is recorded and logged but does not fail the phase", async () => {
  const { ctx, log, opts } = setup({});
  const handOff: PhaseStep<Ctx> = {
    name: "hand-off",
    needs: [],
    optional: true,
    run: async () => ({ outcome: "failed", error: { code: "test.enqueue", message: "no such unit" }, event: "hand-off.enqueue-failed" }),
  };
  const after: PhaseStep<Ctx> = { name: "after", needs: ["hand-off"], run: async () => ({ outcome: "ok", action: "none", cause: "ran" }) };
  const r = await runSteps([handOff, after], ctx, opts);
  assert.equal(r.error, undefined);
  assert.deepEqual(
    r.records.map((x) => [x.step, x.outcome]),
    [
      ["hand-off", "failed"],
      ["after", "skipped"],
    ],
  );
  assert.deepEqual(log.lines[0], {
    level: "warn",
    fields: { event: "hand-off.enqueue-failed", component: "hand-off", outcome: "failed", cause: "no such unit", durationMs: 0 },
  });
});

test("a step that throws fails with the phase's error for it; the first failure is the phase's error", async () => {
  const { ctx, opts } = setup({});
  const boom: PhaseStep<Ctx> = { name: "boom", needs: [], run: async () => Promise.reject(new Error("kaput")) };
  const second: PhaseStep<Ctx> = {
    name: "second",
    needs: [],
    run: async (): Promise<StepOutcome> => ({ outcome: "failed", error: { code: "test.second", message: "also" } }),
  };
  const r = await runSteps([boom, second], ctx, opts);
  assert.deepEqual(r.error, { code: "test.thrown", message: "boom threw: Error: kaput" });
  assert.deepEqual(
    r.records.map((x) => [x.step, x.outcome, x.code]),
    [
      ["boom", "failed", "test.thrown"],
      ["second", "failed", "test.second"],
    ],
  );
});

test("a need that is not an earlier step is a bug in the list, caught before anything runs", async () => {
  const { ctx, opts } = setup({ "a.service": { activeState: "inactive" } });
  await assert.rejects(
    runSteps([startStep("a", "a.service", ["later"]), startStep("later", "a.service")], ctx, opts),
    /a needs later, which is not an earlier step/,
  );
  await assert.rejects(runSteps([startStep("a", "a.service"), startStep("a", "a.service")], ctx, opts), /listed twice/);
  assert.deepEqual(ctx.sd.calls, []);
});
