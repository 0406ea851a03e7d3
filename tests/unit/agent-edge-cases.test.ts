// Regression tests for decide() found in review: rules of docs/agent.md that
// held in the common order of events but not in a race the controller allows.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { decide, initialState, type AgentInput, type ComponentState, type DecideContext } from "../../src/agent/decide.ts";
import { T0, ctx as fixtureCtx, unit, probeOk, probeFail } from "../fixtures/agent.ts";
import { reconnectingSystemd } from "../../src/agent/systemd-reconnect.ts";
import { SystemdError } from "../../src/host/systemd.ts";
import { FakeSystemd } from "../fakes/systemd-fake.ts";

const ctx: DecideContext = fixtureCtx();

function run(inputs: AgentInput[], start: ComponentState) {
  let st = start;
  const restarts: number[] = [];
  for (const i of inputs) {
    const d = decide(st, i, ctx);
    st = d.state;
    for (const a of d.actions) if (a.kind === "restart") restarts.push(i.atMs);
  }
  return { state: st, restarts };
}

describe("agent decide: the failure window after a repair that recovered before its job ended", () => {
  it("a passing probe while RestartUnit is still in flight leaves no stale failure window behind", () => {
    const healthy = run(
      [{ type: "unit", atMs: T0, unit: unit() }, probeOk(T0)],
      initialState("containerd", "containerd.service", T0),
    ).state;
    // Fails long enough: repaired at +4 s.
    const a = run([probeFail(T0 + 1000), probeFail(T0 + 1500), probeFail(T0 + 2000), probeFail(T0 + 4000)], healthy);
    assert.deepEqual(a.restarts, [T0 + 4000]);
    // The restarted unit answers before systemd reports the job done (the controller
    // keeps probing while the job is in flight), then the job ends.
    const b = run(
      [
        { type: "unit", atMs: T0 + 4400, unit: unit({ activeEnterTimestampUs: (T0 + 4400) * 1000, mainPid: 101 }) },
        probeOk(T0 + 4500),
        { type: "repair-done", atMs: T0 + 5000, result: "done" },
      ],
      a.state,
    );
    assert.equal(b.state.health, "healthy");
    // Much later it fails again: three quick failures are not yet failureWindowMs (3 s) of failing.
    const c = run([probeFail(T0 + 30_000), probeFail(T0 + 30_500), probeFail(T0 + 31_000)], b.state);
    assert.deepEqual(c.restarts, [], "no repair before the component has been failing for failureWindowMs");
    const d = run([probeFail(T0 + 33_000)], c.state);
    assert.deepEqual(d.restarts, [T0 + 33_000], "repaired once the window is met");
  });
});

describe("systemd reconnect: RestartUnit is not idempotent", () => {
  const node = () =>
    new FakeSystemd({
      now: Date.now,
      units: { "containerd.service": { activeState: "active", subState: "running", activeEnterTimestampUs: (Date.now() - 60_000) * 1000 } },
    });

  it("does not issue a second RestartUnit when the connection went while systemd was running the first job", async () => {
    const first = node();
    const second = node();
    first.failOnce(
      "restartUnit",
      new SystemdError(
        {
          code: "systemd.disconnected",
          message:
            "RestartUnit of containerd.service: the D-Bus connection was lost while waiting for job /org/freedesktop/systemd1/job/42",
        },
        "containerd.service",
      ),
    );
    const sd = reconnectingSystemd(first, {
      connect: async () => {
        // The first job went through while dbus was away: the unit has just come up again.
        second.setState("containerd.service", { activeEnterTimestampUs: Date.now() * 1000 + 1000, mainPid: 4242 });
        return second;
      },
    });
    await assert.rejects(sd.restartUnit("containerd.service"), /while waiting for job/);
    assert.equal(second.callsOf("restartUnit").length, 0, "the unit was restarted once, not twice");
    sd.close();
  });

  it("still retries once when the first RestartUnit never reached systemd", async () => {
    const first = node();
    const second = node();
    const sd = reconnectingSystemd(first, { connect: async () => second });
    first.close();
    assert.equal(await sd.restartUnit("containerd.service"), "done");
    assert.equal(second.callsOf("restartUnit").length, 1);
    sd.close();
  });
});
