// The agent's shell against the recording systemd fake and scripted probes:
// signals trigger decisions at once, restarts go through RestartUnit only,
// kubelet is left alone while containerd is down, metrics and /status are
// served, and stop() leaves no timer or socket behind.
import { describe, it, afterEach } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { FakeSystemd } from "../fakes/systemd-fake.ts";
import { createAgent, Ring, type Agent } from "../../src/agent/controller.ts";
import { createMetrics, serveStatus } from "../../src/agent/metrics.ts";
import { startAgent } from "../../src/agent/agent.ts";
import { AGENT_DEFAULTS, resolveAgentSettings, type ResolvedAgentSettings } from "../../src/api/agent-settings.ts";
import type { AgentEvent, ProbeOutcome } from "../../src/agent/decide.ts";
import type { Probe } from "../../src/agent/probes.ts";
import { formatStatus } from "../../src/cli/status.ts";
import { parseRunStatus } from "../../src/host/run-status.ts";
import { summarizeRun } from "../../src/cli/status.ts";

/** A run status document as `berth status` would show it, or undefined when it is not one. */
const runView = (doc: unknown) => {
  const s = parseRunStatus(doc);
  return s && summarizeRun(s);
};
const DOC = { apiVersion: "berth.dev/v1alpha1", kind: "RunStatus", startedAt: "2026-01-01T00:00:00.000Z" } as const;
const stepRec = (step: string, outcome: string, more: Record<string, unknown> = {}) => ({
  step,
  outcome,
  startMs: 1,
  endMs: 61,
  durationMs: 60,
  ...more,
});

const FAST: ResolvedAgentSettings = {
  ...AGENT_DEFAULTS,
  intervalMs: 40,
  fastIntervalMs: 10,
  probeTimeoutMs: 30,
  failureThreshold: 2,
  failureWindowMs: 20,
  minUptimeMs: 100,
  restartBudget: 2,
  budgetWindowMs: 60_000,
  backoffInitialMs: 30,
  backoffMaxMs: 60,
  listenAddress: "127.0.0.1:0",
};

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}
async function until(what: string, fn: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await sleep(5);
  }
}

/** A probe whose answer the test sets. */
function scripted(initial = true): Probe & { ok: boolean; calls: number } {
  const fn = async (): Promise<ProbeOutcome> => {
    p.calls++;
    return p.ok ? { ok: true, latencyMs: 1 } : { ok: false, cause: "scripted failure", latencyMs: 1 };
  };
  const p = Object.assign(fn, { ok: initial, calls: 0 });
  return p;
}

function fakeNode() {
  // Real time in the fake so uptime (ActiveEnterTimestamp) means something.
  return new FakeSystemd({
    now: Date.now,
    units: {
      "containerd.service": { activeState: "active", subState: "running", activeEnterTimestampUs: (Date.now() - 60_000) * 1000 },
      "kubelet.service": { activeState: "active", subState: "running", activeEnterTimestampUs: (Date.now() - 60_000) * 1000 },
    },
  });
}

let agents: Agent[] = [];
afterEach(async () => {
  for (const a of agents) await a.stop();
  agents = [];
});

function make(sd: FakeSystemd, c: Probe, k: Probe, over: { bootstrapDone?: boolean; settings?: ResolvedAgentSettings } = {}) {
  const events: AgentEvent[] = [];
  const agent = createAgent({
    settings: over.settings ?? FAST,
    systemd: sd,
    components: [
      { name: "containerd", unit: "containerd.service", probe: c },
      { name: "kubelet", unit: "kubelet.service", probe: k, dependsOn: "containerd" },
    ],
    bootstrapDone: () => over.bootstrapDone ?? true,
    onEvent: (e) => events.push(e),
  });
  agents.push(agent);
  return { agent, events };
}

describe("agent controller", () => {
  it("starts unknown, probes, and reports healthy only after a probe", async () => {
    const sd = fakeNode();
    const { agent, events } = make(sd, scripted(), scripted());
    assert.equal(agent.status().components[0]?.health, "unknown");
    await agent.start();
    await until("both healthy", () => agent.status().components.every((c) => c.health === "healthy"));
    assert.deepEqual(
      sd.callsOf("subscribe").map((c) => c.units),
      [["containerd.service", "kubelet.service"]],
    );
    assert.deepEqual(events.map((e) => `${e.component}:${e.from}->${e.to}`).sort(), [
      "containerd:unknown->healthy",
      "kubelet:unknown->healthy",
    ]);
  });

  it("a crash signalled by systemd is decided on at once and repaired with RestartUnit; kubelet is left alone", async () => {
    const sd = fakeNode();
    const c = scripted();
    const k = scripted();
    const { agent, events } = make(sd, c, k, { settings: { ...FAST, intervalMs: 10_000, probeTimeoutMs: 30 } });
    await agent.start();
    await until("healthy", () => agent.state("containerd")?.health === "healthy" && agent.state("kubelet")?.health === "healthy");
    const t0 = Date.now();
    c.ok = false;
    k.ok = false; // kubelet's healthz fails too while containerd is down
    sd.crash("containerd.service");
    // The signal, not the 10 s interval, brings the decision.
    await until("failing", () => events.some((e) => e.component === "containerd" && e.to === "failing"));
    assert.ok(Date.now() - t0 < 1000);
    await until("restart", () => sd.callsOf("restartUnit").length >= 1);
    c.ok = true;
    k.ok = true;
    await until("healthy again", () => agent.state("containerd")?.health === "healthy" && agent.state("kubelet")?.health === "healthy");
    assert.deepEqual(
      sd.callsOf("restartUnit").map((x) => x.unit),
      ["containerd.service"],
    );
    assert.equal(sd.callsOf("restartUnit", "kubelet.service").length, 0, "kubelet never restarted for a containerd fault");
    assert.ok(!sd.callNames().includes("stopUnit"), "never stops or kills");
    const repair = agent.status().components[0]?.repairs[0];
    assert.equal(repair?.result, "done");
    assert.ok(repair?.recoveredAfterMs !== undefined);
  });

  it("stops at the budget: no storm, then degraded, said once", async () => {
    const sd = fakeNode();
    const c = scripted(false);
    const { agent, events } = make(sd, c, scripted());
    await agent.start();
    await until("degraded", () => agent.state("containerd")?.health === "degraded");
    await sleep(300); // more probes, no more restarts
    assert.equal(sd.callsOf("restartUnit", "containerd.service").length, FAST.restartBudget);
    assert.equal(events.filter((e) => e.event === "budget-exhausted").length, 1);
    assert.equal(agent.status().components[0]?.budgetLeft, 0);
  });

  it("an operator's stop is not a failure and is not repaired", async () => {
    const sd = fakeNode();
    const c = scripted();
    const { agent, events } = make(sd, c, scripted());
    await agent.start();
    await until("healthy", () => agent.state("containerd")?.health === "healthy");
    await sd.stopUnit("containerd.service");
    c.ok = false;
    await until("stopped", () => agent.state("containerd")?.health === "stopped");
    await sleep(200);
    assert.equal(sd.callsOf("restartUnit").length, 0);
    assert.equal(events.filter((e) => e.component === "containerd" && e.to === "failing").length, 0);
  });

  it("does not repair while the node is bootstrapping", async () => {
    const sd = fakeNode();
    const { agent } = make(sd, scripted(false), scripted(false), { bootstrapDone: false });
    await agent.start();
    await until("failing", () => agent.state("containerd")?.health === "failing");
    await sleep(200);
    assert.equal(sd.callsOf("restartUnit").length, 0);
    assert.equal(agent.status().bootstrapDone, false);
  });

  it("a restart that fails is recorded with its result and counted", async () => {
    const sd = fakeNode();
    sd.jobResultOnce("restartUnit", "failed");
    const c = scripted(false);
    const { agent, events } = make(sd, c, scripted());
    await agent.start();
    await until("first repair result", () => events.some((e) => e.event === "repair-result"));
    const r = events.find((e) => e.event === "repair-result");
    assert.equal(r?.fields?.result, "failed");
    c.ok = true;
    await until("healthy", () => agent.state("containerd")?.health === "healthy");
  });

  it("a unit systemd gave up on (start-limit-hit) is reset before it is restarted", async () => {
    const sd = fakeNode();
    sd.setState("containerd.service", { activeState: "failed", subState: "failed", result: "start-limit-hit", mainPid: 0 });
    const c = scripted(false);
    const { agent } = make(sd, c, scripted());
    await agent.start();
    await until("a restart", () => sd.callsOf("restartUnit", "containerd.service").length > 0);
    const order = sd.calls
      .filter((x) => x.unit === "containerd.service" && (x.method === "resetFailedUnit" || x.method === "restartUnit"))
      .map((x) => x.method);
    assert.deepEqual(order.slice(0, 2), ["resetFailedUnit", "restartUnit"]);
    c.ok = true;
    await until("healthy", () => agent.state("containerd")?.health === "healthy");
  });

  it("stop() clears every timer: nothing keeps the process alive", async () => {
    const before = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const sd = fakeNode();
    const { agent } = make(sd, scripted(false), scripted());
    await agent.start();
    await sleep(100);
    await agent.stop();
    await sleep(10);
    const after = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    assert.ok(after <= before, `timers before ${before}, after ${after}`);
  });
});

describe("agent metrics and status server", () => {
  it("serves /metrics (own registry) and /status, closes cleanly", async () => {
    const sd = fakeNode();
    const running = await startAgent({
      settings: FAST,
      systemd: sd,
      bootstrapDone: true,
      probes: { containerd: scripted(), kubelet: scripted() },
    });
    try {
      await until("healthy", () => running.agent.state("kubelet")?.health === "healthy");
      const get = (path: string) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          http
            .get(`http://${running.address}${path}`, { agent: false }, (res) => {
              let body = "";
              res.on("data", (c) => (body += c));
              res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
            })
            .on("error", reject);
        });
      const m = await get("/metrics");
      assert.equal(m.status, 200);
      assert.match(m.body, /berth_agent_probes_total\{component="containerd",result="ok"\} \d+/);
      assert.match(m.body, /berth_agent_component_state\{component="kubelet",state="healthy"\} 1/);
      assert.match(m.body, /berth_agent_restart_budget_remaining\{component="containerd"\} 2/);
      assert.match(m.body, /berth_agent_probe_duration_seconds_bucket/);
      assert.match(m.body, /berth_agent_process_resident_memory_bytes/);
      const s = await get("/status");
      const st = JSON.parse(s.body) as { kind: string; components: { name: string; health: string }[] };
      assert.equal(st.kind, "berth-agent-status");
      assert.deepEqual(
        st.components.map((c: { name: string; health: string }) => [c.name, c.health]),
        [
          ["containerd", "healthy"],
          ["kubelet", "healthy"],
        ],
      );
      assert.equal((await get("/nope")).status, 404);
    } finally {
      await running.stop();
    }
    assert.equal(sd.closed, true);
  });

  it("two agents in one process do not share a registry", () => {
    const a = createMetrics({ processMetrics: false });
    const b = createMetrics({ processMetrics: false });
    a.probe("containerd", true, 1);
    assert.notEqual(a.registry, b.registry);
  });

  it("a busy listen address is an error at start", async () => {
    const m = createMetrics({ processMetrics: false });
    const first = await serveStatus("127.0.0.1", 0, m.registry, () => ({}));
    const port = Number(first.address.split(":").pop());
    await assert.rejects(
      serveStatus("127.0.0.1", port, m.registry, () => ({})),
      /EADDRINUSE/,
    );
    await first.close();
  });
});

describe("agent settings", () => {
  it("fills defaults and checks combinations against them", () => {
    const r = resolveAgentSettings({ restartBudget: 5 });
    assert.ok(r.ok);
    assert.equal(r.value.restartBudget, 5);
    assert.equal(r.value.intervalMs, AGENT_DEFAULTS.intervalMs);
    const bad = resolveAgentSettings({ probeTimeoutMs: 5000 });
    assert.ok(!bad.ok);
    assert.equal(bad.errors[0]?.where?.path, "spec.agent.probeTimeoutMs");
    assert.match(bad.errors[0]?.hint ?? "", /at most intervalMs/);
    const b2 = resolveAgentSettings({ backoffInitialMs: 600_000 });
    assert.ok(!b2.ok);
    const b3 = resolveAgentSettings({ listenAddress: "nope" });
    assert.ok(!b3.ok && b3.errors[0]?.code === "config.invalid-address");
  });
});

describe("ring buffer", () => {
  it("keeps the last N, oldest first", () => {
    const r = new Ring<number>(3);
    for (let i = 1; i <= 5; i++) r.push(i);
    assert.deepEqual(r.toArray(), [3, 4, 5]);
    assert.equal(r.length, 3);
  });
});

describe("berth status rendering", () => {
  it("prints phases, components and repairs for a person", () => {
    const run = runView({
      ...DOC,
      result: "succeeded",
      steps: [stepRec("containerd", "changed", { action: "start" }), stepRec("kubelet", "changed", { action: "start" })],
    });
    const text = formatStatus(
      {
        kind: "berth-agent-status",
        version: 1,
        startedAt: "2026-01-01T00:00:00.000Z",
        now: "2026-01-01T00:05:00.000Z",
        bootstrapDone: true,
        components: [
          {
            name: "containerd",
            unit: "containerd.service",
            health: "healthy",
            cause: "first probe passed",
            since: "2026-01-01T00:04:00.000Z",
            consecutiveFailures: 0,
            restartsInWindow: 1,
            budgetLeft: 2,
            repairs: [{ at: "2026-01-01T00:03:59.000Z", cause: "CRI Status: deadline", result: "done", recoveredAfterMs: 812 }],
          },
          {
            name: "kubelet",
            unit: "kubelet.service",
            health: "degraded",
            cause: "restart budget spent",
            since: "2026-01-01T00:04:30.000Z",
            consecutiveFailures: 9,
            restartsInWindow: 3,
            budgetLeft: 0,
            repairs: [],
          },
        ],
        recentEvents: [],
      },
      run,
      { address: "127.0.0.1:10260" },
    );
    assert.match(text, /bootstrap: done/);
    assert.match(text, /\[x\] containerd/);
    assert.match(text, /containerd\s+ok\s+since/);
    assert.match(text, /kubelet\s+DEGRADED/);
    assert.match(text, /cause: restart budget spent/);
    assert.match(text, /restart containerd.service: healthy 812 ms later; cause: CRI Status: deadline/);
  });

  it("reads the run phase's own RunStatus (src/phases/run.ts)", () => {
    const running = runView({ ...DOC, result: "running", steps: [stepRec("containerd", "changed", { action: "start" })] });
    assert.equal(running?.bootstrapDone, false);
    const ok = runView({
      ...DOC,
      result: "succeeded",
      steps: [stepRec("containerd", "changed", { action: "start" }), stepRec("kubelet", "changed", { action: "start" })],
    });
    assert.equal(ok?.bootstrapDone, true);
    assert.deepEqual(
      ok?.phases.map((p) => [p.name, p.action, p.done]),
      [
        ["containerd", "start", true],
        ["kubelet", "start", true],
      ],
    );
    const failed = runView({ ...DOC, result: "failed", steps: [], error: { code: "run.cri", message: "CRI not ready" } });
    assert.equal(failed?.bootstrapDone, true, "a finished (failed) run phase lets repairs happen");
    assert.match(
      formatStatus(undefined, failed, { address: "a:1" }),
      /bootstrap: done \(run phase failed\)[\s\S]*run phase error: CRI not ready/,
    );
    assert.equal(runView("nope"), undefined);
  });

  it("falls back to the run status file when the agent does not answer", () => {
    const run = runView({
      ...DOC,
      result: "running",
      steps: [stepRec("reload", "ok", { action: "none" }), stepRec("containerd", "failed", { cause: "CRI not ready" })],
    });
    const text = formatStatus(undefined, run, { address: "127.0.0.1:1", agentError: "ECONNREFUSED" });
    assert.match(text, /not answering \(ECONNREFUSED\)/);
    assert.match(text, /bootstrap: in progress/);
    assert.match(text, /\[ \] containerd {2}error: CRI not ready/);
  });
});

describe("systemd reconnect", () => {
  it("reconnects when the bus connection is gone, re-subscribes and retries the call once", async () => {
    const { reconnectingSystemd } = await import("../../src/agent/systemd-reconnect.ts");
    const first = fakeNode();
    const second = fakeNode();
    const seen: string[] = [];
    const reconnects: boolean[] = [];
    const sd = reconnectingSystemd(first, { connect: async () => second, onReconnect: (i) => reconnects.push(i.ok) });
    const unsub = await sd.subscribe((u) => seen.push(u), ["containerd.service"]);
    assert.deepEqual(seen, ["containerd.service"]);
    first.close(); // as if dbus went away: every call now throws systemd.disconnected
    assert.equal(await sd.restartUnit("containerd.service"), "done");
    assert.deepEqual(reconnects, [true]);
    assert.equal(second.callsOf("restartUnit").length, 1);
    assert.deepEqual(
      second.callsOf("subscribe").map((c) => c.units),
      [["containerd.service"]],
      "subscription re-established",
    );
    second.crash("containerd.service");
    assert.ok(seen.length >= 3, "signals from the new connection reach the old subscriber");
    unsub();
    sd.close();
    assert.equal(second.closed, true);
  });

  it("gives up on a call when it cannot reconnect in time", async () => {
    const { reconnectingSystemd } = await import("../../src/agent/systemd-reconnect.ts");
    const first = fakeNode();
    const { SystemdError } = await import("../../src/host/systemd.ts");
    const sd = reconnectingSystemd(first, {
      connect: async () => {
        throw new SystemdError({ code: "systemd.connect", message: "no bus" });
      },
      waitMs: 300,
    });
    first.close();
    await assert.rejects(sd.unitState("containerd.service"), /no bus/);
    sd.close();
  });
});
