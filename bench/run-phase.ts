/**
 * Issue 3 benchmark (b): the whole run phase on a warm lab node.
 *
 * One lab node installs berth's .deb (dpkg -i) and boots with it
 * (berth-config → berth-run at boot), then, inside the node, repeatedly:
 *   - noop:      `berth init --skip config` on a healthy node (nothing to
 *                start; CRI check, sandbox image present, kubelet active);
 *   - cold-svc:  the same after `systemctl stop kubelet containerd` (warm
 *                caches and image store, services down: start containerd,
 *                wait for CRI, start kubelet);
 *   - full-noop: `berth init` (config phase + run phase) on a healthy node.
 * Figures: wall time of the command as seen from the host (process start to
 * exit, including the startup of the installed executable) and the run phase's own
 * durationMs from /run/berth/status.json.
 *
 * Usage: node --import tsx bench/run-phase.ts [--runs N]   (npm run package first: lab nodes install its .deb)
 */
import { parseArgs } from "node:util";
import { bootRunNode } from "../tests/lab/run-node.ts";
import { lastBootTimings } from "../tests/lab/lab.ts";

const { values } = parseArgs({ options: { runs: { type: "string" } }, strict: false });
const RUNS = Number(values.runs ?? process.env.BENCH_RUNS ?? 8);

function summary(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  const q = (f: number) => s[Math.min(s.length - 1, Math.floor(f * s.length))] ?? NaN;
  return `median ${q(0.5).toFixed(0).padStart(5)} ms  p90 ${q(0.9).toFixed(0).padStart(5)} ms  min ${s[0]?.toFixed(0).padStart(5)} ms`;
}

process.stderr.write("booting a lab node...\n");
const t0 = performance.now();
const rn = await bootRunNode({ name: "runbench", rebootAfterInstall: true });
try {
  if ((await rn.waitSettled("berth-run.service", 180_000)) !== "active") throw new Error("berth-run did not finish on the bench node");
  const bootToRun = performance.now() - t0;
  const bootStatus = JSON.parse((await rn.node.exec(["cat", "/run/berth/status.json"])).stdout) as {
    durationMs: number;
    steps: { step: string; durationMs: number }[];
  };
  const modes = {
    noop: { args: ["init", "--skip", "config"], prep: async () => undefined },
    "cold-svc": {
      args: ["init", "--skip", "config"],
      prep: async () => void (await rn.node.systemctl("stop", "kubelet.service", "containerd.service")),
    },
    "full-noop": { args: ["init"], prep: async () => undefined },
  } as const;
  const wallMs: Record<string, number[]> = {};
  const phaseMs: Record<string, number[]> = {};
  for (let i = 0; i < RUNS; i++) {
    // Interleaved, so drift on the shared machine hits every mode alike.
    for (const [name, m] of Object.entries(modes)) {
      await m.prep();
      const t = performance.now();
      const r = await rn.berth([...m.args]);
      const w = performance.now() - t;
      if (r.code !== 0) throw new Error(`berth ${m.args.join(" ")} failed:\n${r.stderr.slice(-3000)}`);
      const st = JSON.parse((await rn.node.exec(["cat", "/run/berth/status.json"])).stdout) as { durationMs: number };
      (wallMs[name] ??= []).push(w);
      (phaseMs[name] ??= []).push(st.durationMs);
    }
  }
  console.log(
    `run phase on a warm lab node, berth from its package (${RUNS} interleaved runs each; node boot ${lastBootTimings?.bootMs.toFixed(0)} ms, dpkg -i ${lastBootTimings?.installMs.toFixed(0)} ms, reboot with berth ${lastBootTimings?.rebootMs?.toFixed(0)} ms):`,
  );
  console.log(
    `  boot with berth: node start (incl. first boot, dpkg -i, reboot) → berth-run active ${bootToRun.toFixed(0)} ms; run phase ${bootStatus.durationMs} ms (${bootStatus.steps.map((s) => `${s.step} ${s.durationMs}`).join(", ")})`,
  );
  for (const name of Object.keys(modes)) {
    console.log(`  ${name.padEnd(9)} command wall: ${summary(wallMs[name] ?? [])}   run phase itself: ${summary(phaseMs[name] ?? [])}`);
  }
} finally {
  await rn.cleanup();
}
