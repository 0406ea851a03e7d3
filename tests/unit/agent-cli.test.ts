// `berth agent` and `berth status` as commands, through the release executable:
// flags, exit codes, and `berth status` against a live in-process agent
// (recording systemd fake, scripted probes).
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { startAgent } from "../../src/agent/agent.ts";
import { AGENT_DEFAULTS } from "../../src/api/agent-settings.ts";
import { FakeSystemd } from "../fakes/systemd-fake.ts";
import { ensureRelease, runBerth } from "../fixtures/cli.ts";

before(ensureRelease);

/** `berth <command> args…` through the release executable, as a child process (what ships, as users run it). */
async function command(file: "agent" | "status", args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await runBerth([file, ...args]);
  if (r.code === null) throw new Error(`berth ${file} ${args.join(" ")} was killed by a signal\n${r.stderr}`);
  return { code: r.code, out: r.stdout, err: r.stderr };
}

describe("berth agent (command)", () => {
  it("prints its help", async () => {
    const r = await command("agent", ["--help"]);
    assert.equal(r.code, 0);
    assert.match(r.out, /Usage: berth agent/);
  });
  it("usage errors exit 2 with a hint", async () => {
    const r = await command("agent", ["--log-level", "loud"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /unknown log level 'loud'[\s\S]*hint: run 'berth agent --help'/);
    assert.equal((await command("agent", ["extra"])).code, 2);
  });
  it("a bad setting exits 1 with where and what to do", async () => {
    const r = await command("agent", ["--listen", "not-an-address"]);
    assert.equal(r.code, 1);
    assert.match(r.err, /spec\.agent\.listenAddress: "not-an-address" is not a valid host:port[\s\S]*hint:/);
  });
});

describe("berth status (command)", () => {
  it("reads a live agent: exit 0 when healthy, --json for tools", async () => {
    const now = Date.now();
    const sd = new FakeSystemd({
      now: Date.now,
      units: {
        "containerd.service": { activeState: "active", activeEnterTimestampUs: (now - 60_000) * 1000 },
        "kubelet.service": { activeState: "active", activeEnterTimestampUs: (now - 60_000) * 1000 },
      },
    });
    const ok = async () => ({ ok: true, latencyMs: 1 });
    const running = await startAgent({
      settings: { ...AGENT_DEFAULTS, intervalMs: 50, fastIntervalMs: 10, probeTimeoutMs: 20, listenAddress: "127.0.0.1:0" },
      systemd: sd,
      bootstrapDone: true,
      probes: { containerd: ok, kubelet: ok },
      runStatusPath: "/nonexistent/status.json",
    });
    try {
      const end = Date.now() + 5000;
      while (running.agent.state("kubelet")?.health !== "healthy" && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
      const human = await command("status", ["--address", running.address as string, "--run-status", "/nonexistent/status.json"]);
      assert.equal(human.code, 0, human.err);
      assert.match(human.out, /containerd\s+ok/);
      assert.match(human.out, /last repairs: none/);
      const json = await command("status", ["--json", "--address", running.address as string, "--run-status", "/nonexistent/status.json"]);
      const doc = JSON.parse(json.out) as { healthy: boolean; agent: { components: { health: string }[] } };
      assert.equal(doc.healthy, true);
      assert.deepEqual(
        doc.agent.components.map((c: { health: string }) => c.health),
        ["healthy", "healthy"],
      );
    } finally {
      await running.stop();
    }
  });

  it("no agent: exit 1 and says so", async () => {
    const r = await command("status", ["--address", "127.0.0.1:1", "--timeout", "500", "--run-status", "/nonexistent/status.json"]);
    assert.equal(r.code, 1);
    assert.match(r.out, /not answering/);
    assert.match(r.out, /bootstrap: unknown \(no status file\)/);
  });
});
