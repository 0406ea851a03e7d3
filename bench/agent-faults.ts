/**
 * The health agent's reaction times and idle cost, as it ships: a lab node
 * (no Node.js) installs berth's .deb with dpkg and boots with it, and
 * berth-agent.service runs the installed /usr/bin/berth (the single
 * executable) with berth's DEFAULT settings (docs/agent.md) and the unit's
 * own NODE_OPTIONS=--jitless. Gardener's node agent defaults (30 s check
 * interval, restart after 60 s unhealthy) are printed as reference.
 *
 * The agent's pino lines in the node's journal are the clock (their `time`,
 * the host's clock: the node shares it): detection = fault → the first line
 * of containerd leaving healthy; healed = fault → the line of it being
 * healthy again. Each run restarts berth-agent.service (a fresh budget).
 *
 *   crash (Restart=always)  kill -9 of containerd; systemd's own Restart= (RestartSec=5) brings it back, berth must not fight it
 *   crash (Restart=no)      kill -9 of containerd, unit without Restart=: berth repairs it
 *   hang                    SIGSTOP of containerd: the probe deadline catches it, berth restarts it
 *   idle                    IDLE_S seconds with everything healthy: the agent's CPU and RSS as the
 *                           unit runs it (NODE_OPTIONS=--jitless), and with NODE_OPTIONS cleared by a drop-in
 *
 * Usage: node --import tsx bench/agent-faults.ts [--runs N] [--idle-seconds S] [--idle-only]
 *   (npm run package first: the node installs dist/release/berth_<version>_<arch>.deb)
 * Targets (issues 4 and 7): crash detected < 1 s, hang repaired (healthy again) < 10 s, idle RSS < 60 MB.
 */
import { parseArgs } from "node:util";
import { bootRunNode } from "../tests/lab/run-node.ts";
import { AGENT_UNIT, AgentJournal, type AgentLogLine } from "../tests/lab/agent-log.ts";
import { lastBootTimings } from "../tests/lab/lab.ts";
import { AGENT_DEFAULTS } from "../src/api/agent-settings.ts";

const { values } = parseArgs({
  options: { runs: { type: "string" }, "idle-seconds": { type: "string" }, "idle-only": { type: "boolean" } },
  strict: false,
});
const RUNS = Math.max(1, Math.min(5, Number(values.runs ?? 3)));
const IDLE_S = Number(values["idle-seconds"] ?? 60);
const IDLE_ONLY = values["idle-only"] === true;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[Math.floor((s.length - 1) / 2)] as number) : NaN;
};
const DROPIN = "/etc/systemd/system/berth-agent.service.d/60-bench.conf";

async function main(): Promise<void> {
  process.stderr.write("booting a lab node with berth's package...\n");
  const rn = await bootRunNode({ name: "agentbench", rebootAfterInstall: true, agent: true });
  const n = rn.node;
  const log = new AgentJournal(n);
  try {
    if ((await rn.waitSettled("berth-run.service", 180_000)) !== "active")
      throw new Error(`berth-run did not finish on the bench node:\n${await n.journal("berth-run.service", { lines: 30 })}`);
    const sh = (cmd: string) => n.exec(["sh", "-c", cmd], { check: true });
    const pidOf = async (u: string) =>
      Number((await n.exec(["systemctl", "show", "-p", "MainPID", "--value", u], { check: true })).stdout.trim());
    const procStat = async (pid: number) => {
      const r = await n.exec(["sh", "-c", `cat /proc/${pid}/stat; grep -E '^(VmRSS|RssAnon|RssFile):' /proc/${pid}/status`], {
        check: true,
      });
      const [stat = "", ...status] = r.stdout.trim().split("\n");
      const f = stat.split(") ")[1]?.split(" ") ?? [];
      const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`).exec(status.find((l) => l.startsWith(k)) ?? "")?.[1] ?? NaN);
      // After "comm) ": utime is field 14, stime 15 overall → index 11, 12 here; clock ticks (100 Hz).
      return { cpuMs: ((Number(f[11]) + Number(f[12])) * 1000) / 100, rss: kb("VmRSS"), anon: kb("RssAnon"), file: kb("RssFile") };
    };

    /** A fresh agent (restart of the unit), both components healthy; how long that took. */
    const freshAgent = async (): Promise<number> => {
      const t0 = Date.now();
      await n.exec(["systemctl", "restart", AGENT_UNIT], { check: true });
      await log.until(
        "containerd and kubelet healthy",
        () => log.health("containerd", t0) === "healthy" && log.health("kubelet", t0) === "healthy",
        t0,
        60_000,
      );
      return Date.now() - t0;
    };

    const idle = async (label: string) => {
      const startupMs = await freshAgent();
      const pid = await pidOf(AGENT_UNIT);
      const env =
        (await n.exec(["sh", "-c", `tr '\\0' '\\n' < /proc/${pid}/environ | grep '^NODE_OPTIONS=' || true`])).stdout.trim() ||
        "NODE_OPTIONS unset";
      const jit = Number((await n.exec(["sh", "-c", `grep -c ' rwxp ' /proc/${pid}/maps || true`])).stdout.trim()) > 0;
      const s0 = await procStat(pid);
      const t0 = Date.now();
      const rss: number[] = [];
      let last = s0;
      while (Date.now() - t0 < IDLE_S * 1000) {
        await sleep(1000);
        last = await procStat(pid);
        rss.push(last.rss);
      }
      const cpuPct = ((last.cpuMs - s0.cpuMs) / (Date.now() - t0)) * 100;
      const mem = (await rn.show(AGENT_UNIT, ["MemoryCurrent"])).MemoryCurrent ?? "";
      return {
        label,
        env,
        jit,
        startupMs,
        cpuPct,
        rssMedianMb: median(rss) / 1024,
        rssMaxMb: Math.max(...rss) / 1024,
        anonMb: last.anon / 1024,
        fileMb: last.file / 1024,
        cgroupMb: Number(mem) / 1024 / 1024,
      };
    };

    // As the unit runs it (NODE_OPTIONS=--jitless), then with NODE_OPTIONS cleared.
    const idleUnit = await idle("berth-agent.service as shipped");
    await n.writeFile(DROPIN, "[Service]\nEnvironment=NODE_OPTIONS=\n");
    await sh("systemctl daemon-reload");
    const idleJit = await idle("same, NODE_OPTIONS cleared (JIT on)");
    await n.exec(["rm", "-f", DROPIN]);
    await sh("systemctl daemon-reload");

    const results: Record<string, { detect: number[]; healed: number[] }> = {};
    let restartsSeen = 0;
    let kubeletRestarts = 0;
    const fault = async (name: string, inject: () => Promise<void>, cleanup?: () => Promise<void>) => {
      for (let i = 0; i < RUNS; i++) {
        await freshAgent();
        // containerd must be older than minUptime (the previous run restarted it).
        await sleep(AGENT_DEFAULTS.minUptimeMs + 500);
        const t0 = Date.now();
        await inject();
        try {
          const det = await log.waitFor(
            `${name} detection`,
            (l) => l.component === "containerd" && l.event === "agent.state" && l.from === "healthy",
            t0,
            120_000,
          );
          const ok = await log.waitFor(
            `${name} healthy`,
            (l) => l.component === "containerd" && l.event === "agent.state" && l.to === "healthy",
            t0,
            120_000,
          );
          (results[name] ??= { detect: [], healed: [] }).detect.push(det.atMs - t0);
          results[name].healed.push(ok.atMs - t0);
        } finally {
          await cleanup?.();
        }
        const repairs = log.since(t0).filter((l: AgentLogLine) => l.event === "agent.repair");
        restartsSeen += repairs.length;
        kubeletRestarts += repairs.filter((l) => l.component === "kubelet").length;
      }
    };

    if (!IDLE_ONLY) {
      await fault("crash, systemd Restart=always", async () => void (await sh(`kill -9 ${await pidOf("containerd")}`)));
      await n.writeFile("/etc/systemd/system/containerd.service.d/20-bench.conf", "[Service]\nRestart=no\n");
      await sh("systemctl daemon-reload");
      await fault("crash, unit without Restart= (berth repairs)", async () => void (await sh(`kill -9 ${await pidOf("containerd")}`)));
      await n.exec(["rm", "-f", "/etc/systemd/system/containerd.service.d/20-bench.conf"]);
      await sh("systemctl daemon-reload");
      let stopped = 0;
      await fault(
        "hang (SIGSTOP)",
        async () => {
          stopped = await pidOf("containerd");
          await sh(`kill -STOP ${stopped}`);
        },
        async () => void (await n.exec(["sh", "-c", `kill -CONT ${stopped} 2>/dev/null; true`])),
      );
    }
    const after = await procStat(await pidOf(AGENT_UNIT));

    const fmt = (ms: number) => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`);
    const out: string[] = [];
    out.push(
      `berth agent from the package (berth-agent.service → /usr/bin/berth, no Node.js in the node; node boot ${lastBootTimings?.bootMs.toFixed(0)} ms, dpkg -i ${lastBootTimings?.installMs.toFixed(0)} ms, reboot ${lastBootTimings?.rebootMs?.toFixed(0)} ms)`,
    );
    out.push(
      `default settings (interval ${AGENT_DEFAULTS.intervalMs} ms, deadline ${AGENT_DEFAULTS.probeTimeoutMs} ms, ${AGENT_DEFAULTS.failureThreshold} failures and ${AGENT_DEFAULTS.failureWindowMs} ms window, minUptime ${AGENT_DEFAULTS.minUptimeMs} ms), ${RUNS} run(s) each, medians [min–max]`,
    );
    out.push(`${"fault".padEnd(46)} ${"detected".padEnd(22)} ${"healthy again".padEnd(22)}`);
    for (const [k, r] of Object.entries(results)) {
      const span = (xs: number[]) => `${fmt(median(xs))} [${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))}]`;
      out.push(`${k.padEnd(46)} ${span(r.detect).padEnd(22)} ${span(r.healed).padEnd(22)}`);
    }
    out.push(
      `${"Gardener node agent defaults (reference)".padEnd(46)} ${"≤ 30 s (check interval)".padEnd(22)} ${"≥ 60 s (restart after 60 s unhealthy)".padEnd(22)}`,
    );
    if (!IDLE_ONLY) out.push(`agent restarts issued during the faults: ${restartsSeen} (kubelet: ${kubeletRestarts})`);
    for (const r of [idleUnit, idleJit]) {
      out.push(
        `idle ${IDLE_S} s, ${r.label} (${r.env}; JIT code range ${r.jit ? "mapped" : "absent"}): restart → both healthy ${r.startupMs} ms; CPU ${r.cpuPct.toFixed(2)} % of one core; RSS median ${r.rssMedianMb.toFixed(1)} MB, max ${r.rssMaxMb.toFixed(1)} MB (anon ${r.anonMb.toFixed(1)}, file ${r.fileMb.toFixed(1)}); unit MemoryCurrent ${r.cgroupMb.toFixed(1)} MB`,
      );
    }
    if (!IDLE_ONLY)
      out.push(
        `the agent after the faults: RSS ${(after.rss / 1024).toFixed(1)} MB (anon ${(after.anon / 1024).toFixed(1)}, file ${(after.file / 1024).toFixed(1)})`,
      );
    const crash = results["crash, systemd Restart=always"];
    const hang = results["hang (SIGSTOP)"];
    if (!IDLE_ONLY) {
      out.push(
        `targets: crash detected < 1 s: ${crash && Math.max(...crash.detect) < 1000 ? "met" : "MISSED"}; hang repaired < 10 s: ${hang && Math.max(...hang.healed) < 10_000 ? "met" : "MISSED"}; idle RSS < 60 MB (median, as shipped): ${idleUnit.rssMedianMb < 60 ? "met" : "MISSED"}`,
      );
    }
    process.stdout.write(`${out.join("\n")}\n`);
  } finally {
    await log.stop();
    await rn.cleanup();
  }
}

await main().catch((e: unknown) => {
  process.stderr.write(`bench/agent-faults.ts failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
