import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decide,
  initialState,
  probeIntervalMs,
  repairBackoffMs,
  unitVerdict,
  budgetLeft,
  REPAIR_HISTORY,
  type AgentEvent,
  type AgentInput,
  type ComponentState,
  type DecideContext,
  type UnitSnapshot,
} from "../../src/agent/decide.ts";
import type { ResolvedAgentSettings } from "../../src/api/agent-settings.ts";
import { S, T0, ctx, unit, probeOk, probeFail } from "../fixtures/agent.ts";

const failed = (result = "signal"): UnitSnapshot => unit({ activeState: "failed", subState: "failed", result, mainPid: 0 });
const stoppedUnit = (): UnitSnapshot => unit({ activeState: "inactive", subState: "dead", result: "success", mainPid: 0 });
const autoRestart = (): UnitSnapshot =>
  unit({ activeState: "activating", subState: "auto-restart", result: "signal", mainPid: 0, nRestarts: 1 });

const unitEv = (atMs: number, u: UnitSnapshot): AgentInput => ({ type: "unit", atMs, unit: u });

/** Run inputs through decide; collect every action. */
function run(inputs: AgentInput[], c: DecideContext = ctx(), start?: ComponentState) {
  let st = start ?? initialState("containerd", "containerd.service", T0);
  const restarts: number[] = [];
  const events: AgentEvent[] = [];
  for (const i of inputs) {
    const d = decide(st, i, c);
    st = d.state;
    for (const a of d.actions) {
      if (a.kind === "restart") restarts.push(i.atMs);
      else events.push(a.event);
    }
  }
  return { state: st, restarts, events };
}

/** A healthy containerd at T0 (its unit has been up for a minute). */
function healthy(): ComponentState {
  return run([unitEv(T0, unit()), probeOk(T0)]).state;
}

/** Failed probes every `every` ms from `from`, `n` of them. */
function fails(from: number, n: number, every = 500): AgentInput[] {
  return Array.from({ length: n }, (_, i) => probeFail(from + i * every));
}

describe("agent decide: honest state", () => {
  it("is unknown until the first probe completes, even when the unit is active", () => {
    const r = run([unitEv(T0, unit())]);
    assert.equal(r.state.health, "unknown");
    assert.deepEqual(r.events, []);
  });

  it("becomes healthy on the first passing probe and says so once", () => {
    const r = run([unitEv(T0, unit()), probeOk(T0 + 10), probeOk(T0 + 2010), probeOk(T0 + 4010)]);
    assert.equal(r.state.health, "healthy");
    assert.equal(r.events.length, 1);
    assert.equal(r.events[0]?.from, "unknown");
    assert.equal(r.events[0]?.to, "healthy");
    assert.equal(r.events[0]?.cause, "first probe passed");
  });

  it("logs one event per state change, not one per failed poll", () => {
    const r = run([...fails(T0 + 1000, 2)], ctx({ bootstrapDone: false }), healthy());
    const more = run(fails(T0 + 2000, 20), ctx({ bootstrapDone: false }), r.state);
    assert.equal(r.events.length, 1);
    assert.equal(r.events[0]?.to, "failing");
    assert.equal(r.events[0]?.cause, "connection refused");
    assert.equal(more.events.length, 0);
  });
});

describe("agent decide: failure window", () => {
  it("repairs only after failureThreshold consecutive failures AND failureWindowMs of failing", () => {
    const st = healthy();
    // 3 failures within 1 s: threshold met, window (3 s) not.
    let r = run(fails(T0 + 1000, 3), ctx(), st);
    assert.deepEqual(r.restarts, []);
    assert.equal(r.state.health, "failing");
    // Window met at +3 s since first failure.
    r = run([probeFail(T0 + 4000)], ctx(), r.state);
    assert.deepEqual(r.restarts, [T0 + 4000]);
    assert.equal(r.state.health, "repairing");
    const repair = r.events.find((e) => e.event === "repair");
    assert.ok(repair, "a repair event");
    assert.equal(repair.fields?.budgetLeft, 2);
  });

  it("does not repair when failures are not consecutive", () => {
    const st = healthy();
    const r = run(
      [probeFail(T0 + 1000), probeFail(T0 + 2000), probeOk(T0 + 3000), probeFail(T0 + 4000), probeFail(T0 + 5000), probeOk(T0 + 6000)],
      ctx(),
      st,
    );
    assert.deepEqual(r.restarts, []);
    assert.equal(r.state.health, "healthy");
  });

  it("never repairs while bootstrapping, but still reports the failure", () => {
    const r = run(fails(T0 + 1000, 30), ctx({ bootstrapDone: false }), healthy());
    assert.deepEqual(r.restarts, []);
    assert.equal(r.state.health, "failing");
  });

  it("repairs once bootstrap is done", () => {
    const a = run(fails(T0 + 1000, 10), ctx({ bootstrapDone: false }), healthy());
    const b = run([probeFail(T0 + 6000)], ctx({ bootstrapDone: true }), a.state);
    assert.deepEqual(b.restarts, [T0 + 6000]);
  });
});

describe("agent decide: systemd comes first", () => {
  it("sees a crash from the unit signal at once (before any probe)", () => {
    const r = run([unitEv(T0 + 1000, failed("signal"))], ctx(), healthy());
    assert.equal(r.state.health, "failing");
    assert.match(r.events[0]?.cause ?? "", /left active: failed\/failed \(result signal\)/);
  });

  it("leaves a unit alone while systemd's own Restart= is at work (activating/auto-restart)", () => {
    const st = run([unitEv(T0 + 1000, autoRestart())], ctx(), healthy()).state;
    assert.equal(st.health, "failing");
    assert.match(st.cause, /systemd is restarting it/);
    const r = run(fails(T0 + 1100, 30), ctx(), st);
    assert.deepEqual(r.restarts, []);
  });

  it("does not restart a unit that (re)started less than minUptimeMs ago (ActiveEnterTimestamp)", () => {
    const st = healthy();
    // systemd brought it back at T0+1000 (new ActiveEnterTimestamp).
    const fresh = unit({ activeEnterTimestampUs: (T0 + 1000) * 1000, mainPid: 101, nRestarts: 1 });
    const r = run([unitEv(T0 + 500, failed()), unitEv(T0 + 1000, fresh), ...fails(T0 + 1100, 8)], ctx(), st);
    assert.deepEqual(r.restarts, [], "uptime < 5 s: no restart");
    // Once it has been up for minUptime and still fails for the whole window: restart.
    const later = run(fails(T0 + 6100, 8), ctx(), r.state);
    assert.equal(later.restarts.length, 1);
    assert.ok((later.restarts[0] as number) >= T0 + 6000);
  });

  it("treats inactive with Result=success as stopped on purpose: no repair, no failure noise", () => {
    const r = run([unitEv(T0 + 1000, stoppedUnit()), ...fails(T0 + 1100, 50)], ctx(), healthy());
    assert.equal(r.state.health, "stopped");
    assert.deepEqual(r.restarts, []);
    assert.equal(r.events.length, 1);
    assert.equal(r.events[0]?.to, "stopped");
  });

  it("an operator's stop in progress (deactivating) is not a failure, even when a probe lands in it", () => {
    const deactivating = unit({ activeState: "deactivating", subState: "stop-sigterm" });
    const r = run(
      [
        unitEv(T0 + 1000, deactivating),
        probeFail(T0 + 1010),
        probeFail(T0 + 1200),
        unitEv(T0 + 1300, stoppedUnit()),
        ...fails(T0 + 1400, 10),
      ],
      ctx(),
      healthy(),
    );
    assert.deepEqual(
      r.events.map((e) => e.to),
      ["stopped"],
    );
    assert.deepEqual(r.restarts, []);
  });

  it("a stopped unit started again is unknown until probed, then healthy", () => {
    const s = run([unitEv(T0 + 1000, stoppedUnit())], ctx(), healthy()).state;
    const r = run([unitEv(T0 + 5000, unit({ activeEnterTimestampUs: (T0 + 5000) * 1000 })), probeOk(T0 + 5100)], ctx(), s);
    assert.deepEqual(
      r.events.map((e) => e.to),
      ["unknown", "healthy"],
    );
  });

  it("does not repair a unit systemd does not know", () => {
    const r = run([unitEv(T0 + 10, unit({ loadState: "not-found", activeState: "inactive", result: "" })), ...fails(T0 + 100, 30)]);
    assert.deepEqual(r.restarts, []);
  });

  it("an inactive unit with a failure result is failed, not stopped", () => {
    assert.deepEqual(unitVerdict(unit({ activeState: "inactive", result: "exit-code" }), T0, 0), { kind: "failed", result: "exit-code" });
    assert.deepEqual(unitVerdict(stoppedUnit(), T0, 0), { kind: "stopped" });
    assert.deepEqual(unitVerdict(autoRestart(), T0, 0), { kind: "transition" });
    assert.equal(unitVerdict(undefined, T0, 0).kind, "unknown");
  });
});

describe("agent decide: backoff and budget", () => {
  /** Drive a permanently failing component whose restarts always "work" but never help. */
  function storm(until: number, c: DecideContext = ctx()) {
    let st = healthy();
    const restarts: number[] = [];
    const events: AgentEvent[] = [];
    for (let t = T0 + 1000; t <= until; t += 500) {
      const d = decide(st, probeFail(t), c);
      st = d.state;
      for (const a of d.actions) {
        if (a.kind === "restart") {
          restarts.push(t);
          // The job ends at once; the unit keeps running (probes still fail).
          const done = decide(st, { type: "repair-done", atMs: t, result: "done" }, c);
          st = done.state;
          for (const b of done.actions) if (b.kind === "log") events.push(b.event);
        } else events.push(a.event);
      }
    }
    return { st, restarts, events };
  }

  it("backs off exponentially between repairs of the same unit", () => {
    const r = storm(T0 + 59_000);
    assert.equal(r.restarts.length, 3);
    const gaps = r.restarts.slice(1).map((t, i) => t - (r.restarts[i] as number));
    // random = 0: backoff 2 s, 4 s; but the window (3 s) also applies after each restart.
    assert.ok((gaps[0] as number) >= 3_000, `gap ${gaps[0]}`);
    assert.ok((gaps[1] as number) >= 4_000, `gap ${gaps[1]}`);
  });

  it("stops at the budget, says so loudly once, and resumes when the budget refills", () => {
    const r = storm(T0 + 59_000);
    assert.equal(r.st.health, "degraded");
    const loud = r.events.filter((e) => e.event === "budget-exhausted");
    assert.equal(loud.length, 1);
    assert.equal(loud[0]?.level, "error");
    const deg = r.events.find((e) => e.to === "degraded");
    assert.match(deg?.cause ?? "", /restart budget spent \(3 restarts of containerd.service/);
    assert.equal(budgetLeft(r.st, T0 + 59_000, S), 0);
    // Long enough for the first restart to leave the 60 s window.
    const r2 = storm(T0 + 120_000);
    assert.ok(r2.restarts.length > 3, "resumed after the window");
    for (let i = 0; i < r2.restarts.length; i++) {
      const inWin = r2.restarts.filter((t) => t <= (r2.restarts[i] as number) && (r2.restarts[i] as number) - t < S.budgetWindowMs);
      assert.ok(inWin.length <= S.restartBudget);
    }
  });

  it("a failed restart job moves repairing back to failing with the cause", () => {
    const st = run(fails(T0 + 1000, 8), ctx(), healthy()).state;
    assert.equal(st.health, "repairing");
    const r = run([{ type: "repair-done", atMs: T0 + 5000, result: "failed", cause: "job failed" }], ctx(), st);
    assert.equal(r.state.health, "failing");
    assert.match(r.state.cause, /ended with failed/);
    assert.equal(r.state.repairs.at(-1)?.result, "failed");
  });

  it("records how long the restart took to heal", () => {
    const st = run(fails(T0 + 1000, 8), ctx(), healthy()).state;
    const at = st.repairs.at(-1)?.atMs as number;
    const r = run(
      [
        { type: "repair-done", atMs: at + 60, result: "done" },
        unitEv(at + 60, unit({ activeEnterTimestampUs: (at + 60) * 1000 })),
        probeOk(at + 150),
      ],
      ctx(),
      st,
    );
    assert.equal(r.state.health, "healthy");
    assert.equal(r.state.repairs.at(-1)?.recoveredAfterMs, 150);
    assert.equal(r.events.at(-1)?.fields?.recoveredAfterMs, 150);
    assert.equal(r.events.at(-1)?.fields?.unhealthyForMs, at + 150 - (T0 + 1000), "the whole outage, from the first failure");
  });

  it("does not re-restart while its own job is in flight", () => {
    const st = run(fails(T0 + 1000, 8), ctx(), healthy()).state;
    assert.equal(st.jobInFlight, true);
    const r = run(fails(T0 + 60_000, 30), ctx(), st);
    assert.deepEqual(r.restarts, []);
  });

  it("backoff delay is jittered within [d/2, d] and capped", () => {
    assert.equal(repairBackoffMs(1, S, 0), 2_000);
    assert.equal(repairBackoffMs(1, S, 0.999999), 1_000);
    assert.equal(repairBackoffMs(3, S, 0), 8_000);
    assert.equal(repairBackoffMs(10, S, 0), 16_000);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 50 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (n, r) => {
        const d = repairBackoffMs(n, S, r);
        return d >= S.backoffInitialMs / 2 && d <= S.backoffMaxMs;
      }),
    );
  });
});

describe("agent decide: kubelet and containerd", () => {
  const kubelet = () => run([unitEv(T0, unit()), probeOk(T0)], ctx(), initialState("kubelet", "kubelet.service", T0)).state;

  it("never restarts kubelet because containerd is down, and says why", () => {
    const c = ctx({ dependency: { name: "containerd", healthy: false } });
    const r = run(fails(T0 + 1000, 100), c, kubelet());
    assert.deepEqual(r.restarts, []);
    assert.equal(r.state.health, "failing");
    assert.match(r.state.cause, /held: containerd is not healthy/);
  });

  it("counts kubelet's failures only from when containerd is healthy again", () => {
    const held = run(fails(T0 + 1000, 20), ctx({ dependency: { name: "containerd", healthy: false } }), kubelet()).state;
    const c = ctx({ dependency: { name: "containerd", healthy: true } });
    // Two failures right after containerd is back: not enough.
    const a = run(fails(T0 + 11_000, 2), c, held);
    assert.deepEqual(a.restarts, []);
    const b = run(fails(T0 + 12_000, 8), c, a.state);
    assert.equal(b.restarts.length, 1);
  });

  it("kubelet recovering by itself while containerd was down is just healthy", () => {
    const held = run(fails(T0 + 1000, 5), ctx({ dependency: { name: "containerd", healthy: false } }), kubelet()).state;
    const r = run([probeOk(T0 + 5000)], ctx({ dependency: { name: "containerd", healthy: true } }), held);
    assert.equal(r.state.health, "healthy");
  });
});

describe("agent decide: probe cadence", () => {
  it("probes fast while bootstrapping or unhealthy, at the normal interval when healthy", () => {
    const st = healthy();
    assert.equal(probeIntervalMs(st, { settings: S, bootstrapDone: true }), S.intervalMs);
    assert.equal(probeIntervalMs(st, { settings: S, bootstrapDone: false }), S.fastIntervalMs);
    const f = run([probeFail(T0 + 1)], ctx(), st).state;
    assert.equal(probeIntervalMs(f, { settings: S, bootstrapDone: true }), S.fastIntervalMs);
  });
});

// ---------------------------------------------------------------- properties

/** A unit state as a function of the time it is observed (its age is what matters). */
type UnitAt = (nowMs: number) => UnitSnapshot;
const unitArb: fc.Arbitrary<UnitAt> = fc.oneof(
  {
    arbitrary: fc.integer({ min: 0, max: 600_000 }).map(
      (age): UnitAt =>
        (now) =>
          unit({ activeEnterTimestampUs: (now - age) * 1000 }),
    ),
    weight: 5,
  },
  {
    arbitrary: fc.constantFrom("signal", "exit-code", "timeout", "core-dump").map(
      (r): UnitAt =>
        () =>
          failed(r),
    ),
    weight: 3,
  },
  { arbitrary: fc.constant((): UnitSnapshot => stoppedUnit()), weight: 1 },
  { arbitrary: fc.constant((): UnitSnapshot => autoRestart()), weight: 1 },
  { arbitrary: fc.constant((): UnitSnapshot => unit({ activeState: "deactivating", subState: "stop-sigterm" })), weight: 1 },
  { arbitrary: fc.constant((): UnitSnapshot => unit({ activeState: "activating", subState: "start", result: "success" })), weight: 1 },
);

type Step = {
  dt: number;
  input: "ok" | "fail" | "unit" | "done" | "jobfail";
  unit: UnitAt;
  depHealthy: boolean;
  boot: boolean;
  random: number;
};
const stepArb: fc.Arbitrary<Step> = fc.record({
  // Mostly probe-paced steps, sometimes a long gap (the budget window slides).
  dt: fc.oneof(
    { arbitrary: fc.integer({ min: 0, max: 2_000 }), weight: 40 },
    { arbitrary: fc.integer({ min: 0, max: 400_000 }), weight: 1 },
  ),
  // Biased towards failing probes and a finished bootstrap, so restarts (and the budget) are reached often.
  input: fc.constantFrom("ok", "fail", "fail", "fail", "fail", "fail", "fail", "fail", "unit", "done", "done", "jobfail"),
  unit: unitArb,
  depHealthy: fc.integer({ min: 0, max: 9 }).map((n) => n < 7),
  boot: fc.integer({ min: 0, max: 9 }).map((n) => n < 8),
  random: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
});

/** Property runs use a long budget window so that random runs reach the budget often. */
const PS: ResolvedAgentSettings = { ...S, budgetWindowMs: 300_000 };

function simulate(
  steps: Step[],
  withDependency: boolean,
  observe: (info: { step: Step; before: ComponentState; after: ComponentState; restarted: boolean; atMs: number }) => void,
) {
  let st = initialState(withDependency ? "kubelet" : "containerd", withDependency ? "kubelet.service" : "containerd.service", T0);
  let t = T0;
  for (const step of steps) {
    t += step.dt;
    const input: AgentInput =
      step.input === "ok"
        ? probeOk(t)
        : step.input === "fail"
          ? probeFail(t)
          : step.input === "unit"
            ? unitEv(t, step.unit(t))
            : { type: "repair-done", atMs: t, result: step.input === "done" ? "done" : "failed" };
    const c = ctx({
      settings: PS,
      bootstrapDone: step.boot,
      random: step.random,
      ...(withDependency ? { dependency: { name: "containerd", healthy: step.depHealthy } } : {}),
    });
    const before = st;
    const d = decide(st, input, c);
    st = d.state;
    observe({ step, before, after: st, restarted: d.actions.some((a) => a.kind === "restart"), atMs: t });
  }
}

describe("agent decide: properties", () => {
  it("never more restarts than the budget in any window", () => {
    let runsAtBudget = 0;
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 20, maxLength: 300, size: "max" }), fc.boolean(), (steps, dep) => {
        const times: number[] = [];
        simulate(steps, dep, ({ restarted, atMs }) => {
          if (restarted) times.push(atMs);
        });
        if (times.some((t) => times.filter((x) => x <= t && t - x < PS.budgetWindowMs).length === PS.restartBudget)) runsAtBudget++;
        for (const t of times) {
          const inWin = times.filter((x) => x <= t && t - x < PS.budgetWindowMs).length;
          if (inWin > PS.restartBudget) return false;
        }
        return true;
      }),
      { numRuns: 300 },
    );
    // The property means nothing if the generator never reaches the budget.
    assert.ok(runsAtBudget > 10, `only ${runsAtBudget} of 300 runs reached the budget`);
  });

  it("never restarts kubelet while containerd is not healthy", () => {
    let kubeletRestarts = 0;
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 20, maxLength: 300, size: "max" }), (steps) => {
        let bad = false;
        simulate(steps, true, ({ step, restarted }) => {
          if (restarted && !step.depHealthy) bad = true;
          if (restarted) kubeletRestarts++;
        });
        return !bad;
      }),
      { numRuns: 300 },
    );
    assert.ok(kubeletRestarts > 50, `only ${kubeletRestarts} kubelet restarts generated`);
  });

  it("never restarts a stopped unit, a unit systemd is restarting, or while bootstrapping", () => {
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 20, maxLength: 300, size: "max" }), fc.boolean(), (steps, dep) => {
        let bad = "";
        simulate(steps, dep, ({ step, after, restarted, atMs }) => {
          if (!restarted) return;
          const v = unitVerdict(after.unitState, atMs, PS.minUptimeMs);
          if (v.kind === "stopped" || v.kind === "transition" || v.kind === "young") bad = `restart of a ${v.kind} unit`;
          if (!step.boot) bad = "restart while bootstrapping";
          if (after.consecutiveFailures < PS.failureThreshold) bad = "restart before the threshold";
        });
        assert.equal(bad, "");
        return true;
      }),
      { numRuns: 300 },
    );
  });

  it("is never healthy before a probe passed, and history stays bounded", () => {
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 20, maxLength: 400, size: "max" }), fc.boolean(), (steps, dep) => {
        let sawOk = false;
        let ok = true;
        simulate(steps, dep, ({ step, after }) => {
          if (step.input === "ok") sawOk = true;
          if (after.health === "healthy" && !sawOk) ok = false;
          if (after.repairs.length > REPAIR_HISTORY || after.restarts.length > PS.restartBudget) ok = false;
        });
        return ok;
      }),
      { numRuns: 300 },
    );
  });

  it("is deterministic: the same inputs give the same decisions", () => {
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 20, maxLength: 100, size: "max" }), (steps) => {
        const a: unknown[] = [];
        const b: unknown[] = [];
        simulate(steps, false, ({ after }) => a.push(after));
        simulate(steps, false, ({ after }) => b.push(after));
        assert.deepEqual(a, b);
        return true;
      }),
      { numRuns: 50 },
    );
  });
});
