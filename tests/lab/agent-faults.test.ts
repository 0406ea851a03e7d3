// Fault tests of the health agent in the node lab: a real node (systemd as
// PID 1, containerd, the kubelet stand-in), the agent running on the host
// against the node's bus and containerd socket with short intervals. For
// each fault the test asserts what berth did (detected it, restarted the
// right unit or deliberately did not, stopped at the budget) and in which
// order, and that kubelet was not restarted for a containerd fault (its
// MainPID unchanged). Durations are printed, never asserted (bench/ measures
// speed); the only time assertions are lower bounds the agent must respect
// (backoff between repairs).
//
// Needs root and the lab's packages: it FAILS (not skips) otherwise.
import { describe, it, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { bootNode, containerdLabFiles, freePort, labContainerdConfig, REPO_ROOT, type LabNode } from "./lab.ts";
import { startAgent, type RunningAgent } from "../../src/agent/agent.ts";
import { AGENT_DEFAULTS, type ResolvedAgentSettings } from "../../src/agent/settings.ts";
import type { AgentEvent, ComponentName } from "../../src/agent/decide.ts";

const SETTINGS = (port: number): ResolvedAgentSettings => ({
  ...AGENT_DEFAULTS,
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
  kubeletHealthzUrl: `http://127.0.0.1:${port}/healthz`,
  listenAddress: "127.0.0.1:0",
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("berth agent in the node lab", { timeout: 600_000 }, () => {
  let node: LabNode;
  let port = 0;
  let goodConfig = "";
  let agent: RunningAgent | undefined;
  let events: AgentEvent[] = [];
  let logLines: string[] = [];

  const mainPid = async (unit: string): Promise<number> => Number((await node.exec(["systemctl", "show", "-p", "MainPID", "--value", unit], { check: true })).stdout.trim());
  const sh = async (cmd: string) => {
    const r = await node.exec(["sh", "-c", cmd]);
    assert.equal(r.code, 0, `${cmd}: ${r.stderr}`);
    return r.stdout;
  };
  const kubeletMode = (mode: "ok" | "fail" | "hang") => node.writeFile("/var/lib/kubelet-standin/healthz-mode", `${mode}\n`);

  const waitFor = async (what: string, pred: () => boolean, timeoutMs = 30_000): Promise<void> => {
    const end = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\nevents:\n${events.map((e) => `  ${new Date(e.atMs).toISOString()} ${e.component} ${e.event} ${e.from ?? ""}→${e.to ?? ""} ${e.cause}`).join("\n")}\nagent log:\n${logLines.slice(-40).join("\n")}`);
      await sleep(10);
    }
  };
  const eventAfter = (t0: number, component: ComponentName, pred: (e: AgentEvent) => boolean) => events.find((e) => e.atMs >= t0 && e.component === component && pred(e));
  const health = (c: ComponentName) => agent?.agent.state(c)?.health;
  const repairsOf = (c: ComponentName, since = 0) => events.filter((e) => e.component === c && e.event === "repair" && e.atMs >= since);

  async function startTheAgent(): Promise<void> {
    // A test that failed half-way must not take the next one down with it.
    await node.exec(["sh", "-c", "systemctl start containerd kubelet"]);
    events = [];
    logLines = [];
    const sink = (level: string) => (obj: object, msg: string) => void logLines.push(`${level} ${msg} ${JSON.stringify(obj)}`);
    agent = await startAgent({
      settings: SETTINGS(port),
      busAddress: node.busAddress,
      containerdSocket: node.hostPath("/run/containerd/containerd.sock"),
      bootstrapDone: true,
      log: { info: sink("info"), warn: sink("warn"), error: sink("error") },
      onEvent: (e) => events.push(e),
      restartJobTimeoutMs: 30_000,
    });
    await waitFor("containerd and kubelet healthy at start", () => health("containerd") === "healthy" && health("kubelet") === "healthy");
  }

  before(async () => {
    port = await freePort();
    goodConfig = labContainerdConfig();
    node = await bootNode({
      name: "agent",
      files: {
        ...containerdLabFiles(),
        "/etc/containerd/config.toml": goodConfig,
        "/etc/systemd/system/kubelet.service": [
          "[Unit]",
          "Description=kubelet stand-in (agent fault tests)",
          "[Service]",
          `Environment=KUBELET_STANDIN_HEALTHZ_PORT=${port}`,
          "ExecStart=/usr/bin/kubelet --config /etc/kubernetes/kubelet/config.json",
          // As berth renders kubelet.service.
          "Restart=always",
          "RestartSec=5",
          "",
        ].join("\n"),
      },
    });
    await node.systemctl("start", "containerd");
    await node.waitForState("containerd", "active", 30_000);
    const r = await node.systemctl("start", "kubelet");
    assert.equal(r.code, 0, r.stderr);
    await node.waitForState("kubelet", "active", 15_000);
    await kubeletMode("ok");
  });

  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
  });

  after(async () => {
    await agent?.stop();
    await node?.shutdown();
  });

  it("containerd kill -9: seen at once from the unit signal; systemd's own Restart= is left to work; kubelet untouched", async () => {
    await startTheAgent();
    const kubeletPid = await mainPid("kubelet");
    const oldPid = await mainPid("containerd");
    const t0 = Date.now();
    await sh(`kill -9 ${oldPid}`);
    await waitFor("containerd failing", () => eventAfter(t0, "containerd", (e) => e.to === "failing") !== undefined);
    const detected = eventAfter(t0, "containerd", (e) => e.to === "failing") as AgentEvent;
    // kubelet's healthz fails too while its runtime is gone (the worst case for the rule).
    await kubeletMode("fail");
    assert.match(detected.cause, /left active/, "detected from systemd's signal, not a poll");
    await waitFor("containerd healthy again", () => eventAfter(t0, "containerd", (e) => e.to === "healthy") !== undefined, 30_000);
    await kubeletMode("ok");
    const healed = eventAfter(t0, "containerd", (e) => e.to === "healthy") as AgentEvent;
    await waitFor("kubelet healthy", () => health("kubelet") === "healthy");
    assert.equal(repairsOf("containerd").length, 0, "systemd restarted it (Restart=always); berth did not fight it");
    assert.equal(repairsOf("kubelet").length, 0, "kubelet not restarted for a containerd fault");
    assert.equal(await mainPid("kubelet"), kubeletPid, "kubelet's MainPID unchanged");
    assert.notEqual(await mainPid("containerd"), oldPid);
    process.stdout.write(`# kill -9: detected after ${detected.atMs - t0} ms, healthy after ${healed.atMs - t0} ms (systemd RestartSec=5)\n`);
  });

  it("containerd hung (SIGSTOP): caught by the probe deadline, restarted once with RestartUnit; kubelet untouched", async () => {
    await startTheAgent();
    const kubeletPid = await mainPid("kubelet");
    const oldPid = await mainPid("containerd");
    const t0 = Date.now();
    await sh(`kill -STOP ${oldPid}`);
    try {
      await waitFor("containerd failing", () => eventAfter(t0, "containerd", (e) => e.to === "failing") !== undefined);
      await kubeletMode("fail");
      const detected = eventAfter(t0, "containerd", (e) => e.to === "failing") as AgentEvent;
      assert.match(detected.cause, /within 500 ms|deadline/i, "caught by the deadline");
      await waitFor("containerd restarted and healthy", () => eventAfter(t0, "containerd", (e) => e.to === "healthy") !== undefined);
      await kubeletMode("ok");
      const healed = eventAfter(t0, "containerd", (e) => e.to === "healthy") as AgentEvent;
      const repairs = repairsOf("containerd", t0);
      assert.equal(repairs.length, 1, "one restart");
      assert.ok((repairs[0]?.fields?.consecutiveFailures as number) >= 3, "only after the failure threshold");
      assert.ok((repairs[0]?.fields?.failingForMs as number) >= 1_000, "only after the failure window");
      const result = eventAfter(t0, "containerd", (e) => e.event === "repair-result");
      assert.equal(result?.fields?.result, "done");
      assert.notEqual(await mainPid("containerd"), oldPid);
      await waitFor("kubelet healthy", () => health("kubelet") === "healthy");
      assert.equal(repairsOf("kubelet").length, 0);
      assert.equal(await mainPid("kubelet"), kubeletPid, "kubelet's MainPID unchanged");
      process.stdout.write(`# SIGSTOP: detected after ${detected.atMs - t0} ms, restart at ${(repairs[0]?.atMs ?? 0) - t0} ms, healthy after ${healed.atMs - t0} ms\n`);
    } finally {
      await node.exec(["sh", "-c", `kill -CONT ${oldPid} 2>/dev/null; true`]);
    }
  });

  it("containerd's socket deleted: a fresh connection fails, berth restarts containerd, the socket is back", async () => {
    await startTheAgent();
    const kubeletPid = await mainPid("kubelet");
    const t0 = Date.now();
    await sh("rm -f /run/containerd/containerd.sock");
    await waitFor("containerd failing", () => eventAfter(t0, "containerd", (e) => e.to === "failing") !== undefined);
    const detected = eventAfter(t0, "containerd", (e) => e.to === "failing") as AgentEvent;
    assert.match(detected.cause, /does not exist/);
    await waitFor("healthy again", () => eventAfter(t0, "containerd", (e) => e.to === "healthy") !== undefined);
    const healed = eventAfter(t0, "containerd", (e) => e.to === "healthy") as AgentEvent;
    assert.equal(repairsOf("containerd", t0).length, 1);
    assert.equal((await node.exec(["test", "-S", "/run/containerd/containerd.sock"])).code, 0, "socket recreated");
    assert.equal(repairsOf("kubelet").length, 0);
    assert.equal(await mainPid("kubelet"), kubeletPid);
    process.stdout.write(`# socket deleted: detected after ${detected.atMs - t0} ms, healthy after ${healed.atMs - t0} ms\n`);
  });

  for (const mode of ["fail", "hang"] as const) {
    it(`kubelet healthz ${mode === "fail" ? "answering 500" : "hanging"}: kubelet restarted with RestartUnit, containerd untouched`, async () => {
      await startTheAgent();
      const containerdPid = await mainPid("containerd");
      const oldKubelet = await mainPid("kubelet");
      const t0 = Date.now();
      await kubeletMode(mode);
      try {
        await waitFor("kubelet failing", () => eventAfter(t0, "kubelet", (e) => e.to === "failing") !== undefined);
        const detected = eventAfter(t0, "kubelet", (e) => e.to === "failing") as AgentEvent;
        assert.match(detected.cause, mode === "fail" ? /answered 500/ : /no answer within 500 ms/);
        await waitFor("kubelet repair", () => repairsOf("kubelet", t0).length >= 1);
        await kubeletMode("ok");
        await waitFor("kubelet healthy", () => eventAfter(t0, "kubelet", (e) => e.to === "healthy") !== undefined);
        const healed = eventAfter(t0, "kubelet", (e) => e.to === "healthy") as AgentEvent;
        assert.notEqual(await mainPid("kubelet"), oldKubelet, "kubelet was restarted");
        assert.equal(repairsOf("containerd").length, 0);
        assert.equal(await mainPid("containerd"), containerdPid);
        process.stdout.write(`# kubelet ${mode}: detected after ${detected.atMs - t0} ms, restart at ${(repairsOf("kubelet", t0)[0]?.atMs ?? 0) - t0} ms, healthy after ${healed.atMs - t0} ms\n`);
      } finally {
        await kubeletMode("ok");
      }
    });
  }

  it("an operator's systemctl stop is not a failure: no restart, then healthy when started again", async () => {
    await startTheAgent();
    const t0 = Date.now();
    try {
      assert.equal((await node.systemctl("stop", "kubelet")).code, 0);
      await waitFor("kubelet stopped", () => health("kubelet") === "stopped");
      await sleep(2_000); // ≥ failure window + several probes
      assert.equal(repairsOf("kubelet", t0).length, 0);
      assert.equal(eventAfter(t0, "kubelet", (e) => e.to === "failing"), undefined, "never reported failing");
    } finally {
      assert.equal((await node.systemctl("start", "kubelet")).code, 0);
    }
    await waitFor("kubelet healthy", () => health("kubelet") === "healthy");
  });

  it("`berth agent` as a process: serves /status that `berth status` reads, exits 0 on SIGTERM", async () => {
    const listen = `127.0.0.1:${await freePort()}`;
    const args = ["--bus-address", node.busAddress, "--containerd-socket", node.hostPath("/run/containerd/containerd.sock"), "--kubelet-healthz", `http://127.0.0.1:${port}/healthz`, "--listen", listen, "--assume-bootstrapped"];
    const child = spawn(process.execPath, ["--import", "tsx", "-e", `import(${JSON.stringify(join(REPO_ROOT, "src/cli/agent.ts"))}).then((m) => m.agentCommand(${JSON.stringify(args)})).then((c) => { process.exitCode = c; });`], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
    try {
      const status = () =>
        new Promise<{ code: number; out: string }>((resolve) => {
          const c = spawn(process.execPath, ["--import", "tsx", "-e", `import(${JSON.stringify(join(REPO_ROOT, "src/cli/status.ts"))}).then((m) => m.statusCommand(["--json", "--address", ${JSON.stringify(listen)}, "--run-status", "/nonexistent"])).then((c) => { process.exitCode = c; });`], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "ignore"] });
          let o = "";
          c.stdout.on("data", (d: Buffer) => (o += d.toString()));
          c.once("exit", (code) => resolve({ code: code ?? -1, out: o }));
        });
      const end = Date.now() + 60_000;
      let last: { code: number; out: string } = { code: -1, out: "" };
      while (Date.now() < end) {
        last = await status();
        if (last.code === 0) break;
        await sleep(300);
      }
      assert.equal(last.code, 0, `berth status: ${last.out}\nagent stdout:\n${out}\nagent stderr:\n${err}`);
      const doc = JSON.parse(last.out) as { healthy: boolean; agent: { components: { name: string; health: string }[] } };
      assert.equal(doc.healthy, true);
      assert.deepEqual(doc.agent.components.map((c) => `${c.name}:${c.health}`), ["containerd:healthy", "kubelet:healthy"]);
      const lines = out.trim().split("\n").map((l) => JSON.parse(l) as { event?: string; level?: string });
      assert.ok(lines.some((l) => l.event === "agent.start"), "pino JSON lines on stdout");
      assert.ok(lines.every((l) => typeof l.level === "string"), "levels as labels");
    } finally {
      child.kill("SIGTERM");
    }
    assert.equal(await Promise.race([exited, sleep(10_000).then(() => "hung")]), 0, `clean exit on SIGTERM (no leaked timers or sockets)\n${err}`);
    assert.match(out, /"event":"agent.stop"/);
  });

  it("containerd config broken so restarts fail: berth backs off and stops at the budget (no storm); kubelet untouched", async () => {
    // Without systemd's own Restart=, the agent is the only one restarting it.
    await node.writeFile("/etc/systemd/system/containerd.service.d/20-agent-test.conf", "[Service]\nRestart=no\n");
    await sh("systemctl daemon-reload");
    await startTheAgent();
    const kubeletPid = await mainPid("kubelet");
    const s = SETTINGS(port);
    try {
      await node.writeFile("/etc/containerd/config.toml", "version = 2\n[plugins\nthis is not toml\n");
      const t0 = Date.now();
      await sh(`kill -9 $(systemctl show -p MainPID --value containerd)`);
      await waitFor("degraded", () => health("containerd") === "degraded", 60_000);
      const degradedAt = Date.now();
      // Long enough for several more repairs if there were no budget.
      await sleep(2 * s.backoffMaxMs);
      const repairs = repairsOf("containerd", t0);
      assert.equal(repairs.length, s.restartBudget, "exactly the budget, then no more");
      const results = events.filter((e) => e.component === "containerd" && e.event === "repair-result" && e.atMs >= t0).map((e) => e.fields?.result);
      assert.ok(results.length === s.restartBudget && results.every((r) => r !== "done"), `every restart failed: ${results.join(", ")}`);
      // Backoff: repair n+1 no sooner than half (the jitter) of initial·2^(n-1) after repair n.
      for (let i = 1; i < repairs.length; i++) {
        const gap = (repairs[i]?.atMs ?? 0) - (repairs[i - 1]?.atMs ?? 0);
        const floor = Math.max((Math.min(s.backoffMaxMs, s.backoffInitialMs * 2 ** (i - 1))) / 2, s.failureWindowMs);
        assert.ok(gap >= floor, `gap ${i} was ${gap} ms, backoff floor ${floor} ms`);
      }
      assert.equal(events.filter((e) => e.event === "budget-exhausted" && e.component === "containerd").length, 1, "said loudly, once");
      assert.ok(logLines.some((l) => l.startsWith("error") && l.includes("restart budget spent")), "an error-level log line");
      assert.equal(repairsOf("kubelet").length, 0);
      assert.equal(await mainPid("kubelet"), kubeletPid, "kubelet's MainPID unchanged");
      process.stdout.write(`# broken config: repairs at ${repairs.map((r) => r.atMs - t0).join(", ")} ms, degraded at ${degradedAt - t0} ms\n`);
    } finally {
      await node.writeFile("/etc/containerd/config.toml", goodConfig);
      await node.exec(["rm", "-f", "/etc/systemd/system/containerd.service.d/20-agent-test.conf"]);
      await node.exec(["sh", "-c", "systemctl daemon-reload; systemctl reset-failed containerd; systemctl start containerd"]);
    }
    await waitFor("containerd healthy after the operator's fix", () => health("containerd") === "healthy");
  });
});
