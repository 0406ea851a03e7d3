// Fault tests of the health agent in the node lab, the agent as it ships: a
// node without Node.js installs berth's .deb with dpkg and boots with it, so
// berth-config → berth-run bootstrap the node (containerd, the kubelet
// stand-in) and berth-agent.service runs the installed /usr/bin/berth with
// the unit's own NODE_OPTIONS=--jitless. Its settings (short intervals) come
// from the BerthConfig in the IMDS user data, like every other setting.
//
// Every test restarts berth-agent (a fresh budget), injects a fault and reads
// what the agent did from its JSON log lines in the journal: detected it,
// restarted the right unit or deliberately did not, stopped at the budget,
// in which order; and that kubelet was not restarted for a containerd fault
// (its MainPID unchanged). Durations are printed, never asserted (bench/
// measures speed); the only time assertions are lower bounds the agent must
// respect (backoff between repairs).
//
// Needs root and the lab's packages: it FAILS (not skips) otherwise.
import { describe, it, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { bootRunNode, type RunNode } from "./run-node.ts";
import { AGENT_UNIT, AgentJournal, type AgentLogLine } from "./agent-log.ts";
import type { AgentSettings } from "../../src/api/types.ts";

const SETTINGS = {
  intervalMs: 500,
  fastIntervalMs: 200,
  probeTimeoutMs: 500,
  failureThreshold: 3,
  failureWindowMs: 1_000,
  minUptimeMs: 2_000,
  restartBudget: 3,
  budgetWindowMs: 120_000,
  backoffInitialMs: 1_000,
  backoffMaxMs: 4_000,
} satisfies AgentSettings;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("berth agent from the package, in the node lab", { timeout: 600_000 }, () => {
  let rn: RunNode;
  let log: AgentJournal;
  let goodConfig = "";
  /** When the current test's agent was (re)started: its log lines are those at or after this. */
  let since = 0;

  const node = () => rn.node;
  const mainPid = async (unit: string): Promise<number> =>
    Number((await node().exec(["systemctl", "show", "-p", "MainPID", "--value", unit], { check: true })).stdout.trim());
  const sh = async (cmd: string) => {
    const r = await node().exec(["sh", "-c", cmd]);
    assert.equal(r.code, 0, `${cmd}: ${r.stderr}`);
    return r.stdout;
  };
  const kubeletMode = (mode: "ok" | "fail" | "hang") => node().writeFile("/var/lib/kubelet-standin/healthz-mode", `${mode}\n`);
  const health = (c: string) => log.health(c, since);
  const eventAfter = (t0: number, component: string, pred: (e: AgentLogLine) => boolean) =>
    log.find(t0, (e) => e.component === component && pred(e));
  const stateAfter = (t0: number, component: string, pred: (e: AgentLogLine) => boolean) =>
    eventAfter(t0, component, (e) => e.event === "agent.state" && pred(e));
  const repairsOf = (c: string, t0 = since) => log.since(t0).filter((e) => e.component === c && e.event === "agent.repair");
  const waitFor = (what: string, cond: () => boolean, timeoutMs = 30_000) => log.until(what, cond, since, timeoutMs);

  /** A fresh agent (fresh budget): restart berth-agent.service and wait until it says both components are healthy. */
  async function restartTheAgent(): Promise<void> {
    // A test that failed half-way must not take the next one down with it.
    await node().exec(["sh", "-c", "systemctl start containerd kubelet"]);
    since = Date.now();
    const r = await node().systemctl("restart", AGENT_UNIT);
    assert.equal(r.code, 0, `${r.stderr}\n${await node().journal(AGENT_UNIT, { lines: 20 })}`);
    await log.waitFor("agent.start", (l) => l.event === "agent.start", since, 30_000);
    await waitFor("containerd and kubelet healthy at start", () => health("containerd") === "healthy" && health("kubelet") === "healthy");
  }

  before(async () => {
    rn = await bootRunNode({ name: "agent", rebootAfterInstall: true, agent: true, berth: { agent: SETTINGS } });
    const s = await rn.waitSettled("berth-run.service", 180_000);
    if (s !== "active")
      throw new Error(`berth-run.service is ${s} after boot:\n${await rn.node.journal("berth-run.service", { lines: 40 })}`);
    goodConfig = (await rn.node.exec(["cat", "/etc/containerd/config.toml"], { check: true })).stdout;
    log = new AgentJournal(rn.node);
    await kubeletMode("ok");
  });

  afterEach(async () => {
    await kubeletMode("ok").catch(() => undefined);
  });

  after(async () => {
    await log?.stop();
    await rn?.cleanup();
  });

  it("the booted node: bootstrapped by berth-config → berth-run, berth-agent running the installed executable, jitless", async () => {
    for (const u of ["berth-config.service", "berth-run.service", "containerd.service", "kubelet.service", AGENT_UNIT]) {
      assert.equal((await rn.show(u, ["ActiveState"])).ActiveState, "active", `${u}:\n${await node().journal(u, { lines: 30 })}`);
    }
    assert.notEqual((await node().exec(["sh", "-c", "command -v node"])).code, 0, "no Node.js in the node");
    const pid = await mainPid(AGENT_UNIT);
    const exe = await node().exec(["readlink", `/proc/${pid}/exe`]);
    assert.equal(exe.stdout.trim(), "/usr/bin/berth");
    assert.equal((await node().exec(["dpkg", "-S", "/usr/bin/berth"])).stdout.trim(), "berth: /usr/bin/berth");
    const environ = await node().exec(["sh", "-c", `tr '\\0' '\\n' < /proc/${pid}/environ`]);
    assert.ok(environ.stdout.split("\n").includes("NODE_OPTIONS=--jitless"), "berth-agent.service sets NODE_OPTIONS=--jitless");
    // The single executable honours NODE_OPTIONS: without --jitless V8 maps a
    // read-write-execute code range for its JIT; with it, there is none.
    const maps = await node().exec(["cat", `/proc/${pid}/maps`]);
    assert.equal(maps.stdout.split("\n").filter((l) => / rwxp /.test(l)).length, 0, "no JIT code range: --jitless is in effect");
  });

  it("containerd kill -9: seen at once from the unit signal; systemd's own Restart= is left to work; kubelet untouched", async () => {
    await restartTheAgent();
    const kubeletPid = await mainPid("kubelet");
    const oldPid = await mainPid("containerd");
    const t0 = Date.now();
    await sh(`kill -9 ${oldPid}`);
    await waitFor("containerd failing", () => stateAfter(t0, "containerd", (e) => e.to === "failing") !== undefined);
    const detected = stateAfter(t0, "containerd", (e) => e.to === "failing") as AgentLogLine;
    // kubelet's healthz fails too while its runtime is gone (the worst case for the rule).
    await kubeletMode("fail");
    assert.match(detected.cause ?? "", /left active/, "detected from systemd's signal, not a poll");
    await waitFor("containerd healthy again", () => stateAfter(t0, "containerd", (e) => e.to === "healthy") !== undefined);
    await kubeletMode("ok");
    const healed = stateAfter(t0, "containerd", (e) => e.to === "healthy") as AgentLogLine;
    await waitFor("kubelet healthy", () => health("kubelet") === "healthy");
    assert.equal(repairsOf("containerd").length, 0, "systemd restarted it (Restart=always); berth did not fight it");
    assert.equal(repairsOf("kubelet").length, 0, "kubelet not restarted for a containerd fault");
    assert.equal(await mainPid("kubelet"), kubeletPid, "kubelet's MainPID unchanged");
    assert.notEqual(await mainPid("containerd"), oldPid);
    process.stdout.write(
      `# kill -9: detected after ${detected.atMs - t0} ms, healthy after ${healed.atMs - t0} ms (systemd RestartSec=5)\n`,
    );
  });

  it("containerd hung (SIGSTOP): caught by the probe deadline, restarted once with RestartUnit; kubelet untouched", async () => {
    await restartTheAgent();
    const kubeletPid = await mainPid("kubelet");
    const oldPid = await mainPid("containerd");
    // containerd must be older than minUptime (an earlier test restarted it).
    await sleep(SETTINGS.minUptimeMs);
    const t0 = Date.now();
    await sh(`kill -STOP ${oldPid}`);
    try {
      await waitFor("containerd failing", () => stateAfter(t0, "containerd", (e) => e.to === "failing") !== undefined);
      await kubeletMode("fail");
      const detected = stateAfter(t0, "containerd", (e) => e.to === "failing") as AgentLogLine;
      assert.match(detected.cause ?? "", /within 500 ms|deadline/i, "caught by the deadline");
      await waitFor("containerd restarted and healthy", () => stateAfter(t0, "containerd", (e) => e.to === "healthy") !== undefined);
      await kubeletMode("ok");
      const healed = stateAfter(t0, "containerd", (e) => e.to === "healthy") as AgentLogLine;
      const repairs = repairsOf("containerd", t0);
      assert.equal(repairs.length, 1, "one restart");
      assert.ok((repairs[0]?.fields.consecutiveFailures as number) >= SETTINGS.failureThreshold, "only after the failure threshold");
      assert.ok((repairs[0]?.fields.failingForMs as number) >= SETTINGS.failureWindowMs, "only after the failure window");
      const result = eventAfter(t0, "containerd", (e) => e.event === "agent.repair-result");
      assert.equal(result?.fields.result, "done");
      assert.notEqual(await mainPid("containerd"), oldPid);
      await waitFor("kubelet healthy", () => health("kubelet") === "healthy");
      assert.equal(repairsOf("kubelet").length, 0);
      assert.equal(await mainPid("kubelet"), kubeletPid, "kubelet's MainPID unchanged");
      process.stdout.write(
        `# SIGSTOP: detected after ${detected.atMs - t0} ms, restart at ${(repairs[0]?.atMs ?? 0) - t0} ms, healthy after ${healed.atMs - t0} ms\n`,
      );
    } finally {
      await node().exec(["sh", "-c", `kill -CONT ${oldPid} 2>/dev/null; true`]);
    }
  });

  it("containerd's socket deleted: a fresh connection fails, berth restarts containerd, the socket is back", async () => {
    await restartTheAgent();
    const kubeletPid = await mainPid("kubelet");
    await sleep(SETTINGS.minUptimeMs);
    const t0 = Date.now();
    await sh("rm -f /run/containerd/containerd.sock");
    await waitFor("containerd failing", () => stateAfter(t0, "containerd", (e) => e.to === "failing") !== undefined);
    const detected = stateAfter(t0, "containerd", (e) => e.to === "failing") as AgentLogLine;
    assert.match(detected.cause ?? "", /does not exist/);
    await waitFor("healthy again", () => stateAfter(t0, "containerd", (e) => e.to === "healthy") !== undefined);
    const healed = stateAfter(t0, "containerd", (e) => e.to === "healthy") as AgentLogLine;
    assert.equal(repairsOf("containerd", t0).length, 1);
    assert.equal((await node().exec(["test", "-S", "/run/containerd/containerd.sock"])).code, 0, "socket recreated");
    assert.equal(repairsOf("kubelet").length, 0);
    assert.equal(await mainPid("kubelet"), kubeletPid);
    process.stdout.write(`# socket deleted: detected after ${detected.atMs - t0} ms, healthy after ${healed.atMs - t0} ms\n`);
  });

  for (const mode of ["fail", "hang"] as const) {
    it(`kubelet healthz ${mode === "fail" ? "answering 500" : "hanging"}: kubelet restarted with RestartUnit, containerd untouched`, async () => {
      await restartTheAgent();
      const containerdPid = await mainPid("containerd");
      const oldKubelet = await mainPid("kubelet");
      await sleep(SETTINGS.minUptimeMs);
      const t0 = Date.now();
      await kubeletMode(mode);
      await waitFor("kubelet failing", () => stateAfter(t0, "kubelet", (e) => e.to === "failing") !== undefined);
      const detected = stateAfter(t0, "kubelet", (e) => e.to === "failing") as AgentLogLine;
      assert.match(detected.cause ?? "", mode === "fail" ? /answered 500/ : /no answer within 500 ms/);
      await waitFor("kubelet repair", () => repairsOf("kubelet", t0).length >= 1);
      await kubeletMode("ok");
      await waitFor("kubelet healthy", () => stateAfter(t0, "kubelet", (e) => e.to === "healthy") !== undefined);
      const healed = stateAfter(t0, "kubelet", (e) => e.to === "healthy") as AgentLogLine;
      assert.notEqual(await mainPid("kubelet"), oldKubelet, "kubelet was restarted");
      assert.equal(repairsOf("containerd").length, 0);
      assert.equal(await mainPid("containerd"), containerdPid);
      process.stdout.write(
        `# kubelet ${mode}: detected after ${detected.atMs - t0} ms, restart at ${(repairsOf("kubelet", t0)[0]?.atMs ?? 0) - t0} ms, healthy after ${healed.atMs - t0} ms\n`,
      );
    });
  }

  it("an operator's systemctl stop is not a failure: no restart, then healthy when started again", async () => {
    await restartTheAgent();
    const t0 = Date.now();
    try {
      assert.equal((await node().systemctl("stop", "kubelet")).code, 0);
      await waitFor("kubelet stopped", () => health("kubelet") === "stopped");
      await sleep(2_000); // ≥ failure window + several probes
      assert.equal(repairsOf("kubelet", t0).length, 0);
      assert.equal(
        stateAfter(t0, "kubelet", (e) => e.to === "failing"),
        undefined,
        "never reported failing",
      );
    } finally {
      assert.equal((await node().systemctl("start", "kubelet")).code, 0);
    }
    await waitFor("kubelet healthy", () => health("kubelet") === "healthy");
  });

  it("berth-agent.service serves /status that `berth status` reads; JSON lines with level labels; exits 0 on SIGTERM", async () => {
    await restartTheAgent();
    const st = await rn.berth(["status", "--json", "--address", rn.agentListen], 30_000);
    assert.equal(st.code, 0, `berth status: ${st.stdout}\n${st.stderr}\n${log.describe(since)}`);
    const doc = JSON.parse(st.stdout) as { healthy: boolean; agent: { components: { name: string; health: string }[] } };
    assert.equal(doc.healthy, true);
    assert.deepEqual(
      doc.agent.components.map((c) => `${c.name}:${c.health}`),
      ["containerd:healthy", "kubelet:healthy"],
    );
    const lines = log.since(since);
    assert.ok(
      lines.some((l) => l.event === "agent.start"),
      "pino JSON lines on stdout, in the journal",
    );
    assert.ok(
      lines.every((l) => ["debug", "info", "warn", "error"].includes(l.level)),
      "levels as labels",
    );
    assert.deepEqual(log.other, [], "nothing but berth's JSON lines from the agent (no runtime warnings)");

    const pid = await mainPid(AGENT_UNIT);
    const t0 = Date.now();
    assert.equal((await node().systemctl("stop", AGENT_UNIT)).code, 0);
    const ended = await rn.show(AGENT_UNIT, ["ActiveState", "Result", "ExecMainCode", "ExecMainStatus", "ExecMainPID"]);
    assert.equal(ended.ExecMainPID, String(pid));
    // CLD_EXITED (1) with status 0: it exited by itself, cleanly, not killed by the signal.
    assert.deepEqual(
      [ended.ActiveState, ended.Result, ended.ExecMainCode, ended.ExecMainStatus],
      ["inactive", "success", "1", "0"],
      `${await node().journal(AGENT_UNIT, { lines: 20 })}`,
    );
    await log.waitFor("agent.stop", (l) => l.event === "agent.stop", t0, 10_000);
    assert.equal((await node().systemctl("start", AGENT_UNIT)).code, 0);
  });

  it("containerd config broken so restarts fail: berth backs off and stops at the budget (no storm); kubelet untouched", async () => {
    // Without systemd's own Restart=, the agent is the only one restarting it.
    await node().writeFile("/etc/systemd/system/containerd.service.d/20-agent-test.conf", "[Service]\nRestart=no\n");
    await sh("systemctl daemon-reload");
    await restartTheAgent();
    const kubeletPid = await mainPid("kubelet");
    await sleep(SETTINGS.minUptimeMs);
    try {
      await node().writeFile("/etc/containerd/config.toml", "version = 2\n[plugins\nthis is not toml\n");
      const t0 = Date.now();
      await sh(`kill -9 $(systemctl show -p MainPID --value containerd)`);
      await waitFor("degraded", () => health("containerd") === "degraded", 60_000);
      const degradedAt = Date.now();
      // Long enough for several more repairs if there were no budget.
      await sleep(2 * SETTINGS.backoffMaxMs);
      const repairs = repairsOf("containerd", t0);
      assert.equal(repairs.length, SETTINGS.restartBudget, "exactly the budget, then no more");
      const results = log
        .since(t0)
        .filter((e) => e.component === "containerd" && e.event === "agent.repair-result")
        .map((e) => e.fields.result);
      assert.ok(
        results.length === SETTINGS.restartBudget && results.every((r) => r !== "done"),
        `every restart failed: ${results.join(", ")}`,
      );
      // Backoff: repair n+1 no sooner than half (the jitter) of initial·2^(n-1) after repair n.
      for (let i = 1; i < repairs.length; i++) {
        const gap = (repairs[i]?.atMs ?? 0) - (repairs[i - 1]?.atMs ?? 0);
        const floor = Math.max(Math.min(SETTINGS.backoffMaxMs, SETTINGS.backoffInitialMs * 2 ** (i - 1)) / 2, SETTINGS.failureWindowMs);
        assert.ok(gap >= floor, `gap ${i} was ${gap} ms, backoff floor ${floor} ms`);
      }
      assert.equal(
        log.since(t0).filter((e) => e.event === "agent.budget-exhausted" && e.component === "containerd").length,
        1,
        "said loudly, once",
      );
      assert.ok(
        log.since(t0).some((l) => l.level === "error" && (l.msg ?? "").includes("restart budget spent")),
        "an error-level log line",
      );
      assert.equal(repairsOf("kubelet").length, 0);
      assert.equal(await mainPid("kubelet"), kubeletPid, "kubelet's MainPID unchanged");
      process.stdout.write(
        `# broken config: repairs at ${repairs.map((r) => r.atMs - t0).join(", ")} ms, degraded at ${degradedAt - t0} ms\n`,
      );
    } finally {
      await node().writeFile("/etc/containerd/config.toml", goodConfig);
      await node().exec(["rm", "-f", "/etc/systemd/system/containerd.service.d/20-agent-test.conf"]);
      await node().exec(["sh", "-c", "systemctl daemon-reload; systemctl reset-failed containerd; systemctl start containerd"]);
    }
    await waitFor("containerd healthy after the operator's fix", () => health("containerd") === "healthy");
  });
});
