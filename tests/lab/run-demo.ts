/**
 * `make demo`: boot a lab node (Debian, systemd, containerd; the lab
 * registry, IMDS and EC2 stand-ins on loopback), run a full `berth init`
 * inside it (config phase, then run phase), and print the timeline: the
 * lab's own steps, then every structured event berth logged, then the
 * resulting state (units, kubelet argv, sandbox image, status file).
 * Needs root. Usage: node --import tsx tests/lab/run-demo.ts [--keep]
 *   --keep   leave the node running and print how to enter it (Ctrl-C ends it)
 */
import { bootRunNode, TASK_IMAGE } from "./run-node.ts";
import { lastBootTimings } from "./lab.ts";

const keep = process.argv.includes("--keep");

/** The stand-in writes its record just after systemd marks it active; wait for it. */
async function kubeletRecord(): Promise<{ argv: string[] }> {
  for (let i = 0; i < 100; i++) {
    const r = await rn.node.exec(["cat", "/var/lib/kubelet-standin/last-run.json"]);
    if (r.code === 0 && r.stdout.trim()) return JSON.parse(r.stdout) as { argv: string[] };
    await new Promise((res) => setTimeout(res, 100));
  }
  return { argv: ["(the kubelet stand-in wrote no record)"] };
}
const t0 = performance.now();
const at = (): string => `+${(performance.now() - t0).toFixed(0).padStart(6)} ms`;
const say = (s: string): void => void process.stdout.write(`${s}\n`);

say(`${at()}  lab: starting registry, IMDS/EC2 stand-ins, booting a node`);
const rn = await bootRunNode({
  name: "demo",
  berth: {
    tasks: [
      { name: "warm-images", pullImages: [TASK_IMAGE] },
      { name: "hello", script: "echo hello from a berth task\n" },
    ],
  },
});
let code: number;
try {
  say(
    `${at()}  lab: node ${rn.node.name} running (systemd boot ${lastBootTimings?.bootMs.toFixed(0)} ms), registry ${rn.registry.address}, IMDS ${rn.imds.url}`,
  );
  say(`${at()}  lab: running \`berth init\` inside the node (config source: imds://user-data)`);
  const tInit = performance.now();
  const r = await rn.berth(["init"]);
  const initMs = performance.now() - tInit;
  code = r.code;
  say(`${at()}  lab: berth init exited ${r.code} after ${initMs.toFixed(0)} ms`);
  say("");
  say("berth init, config phase (files):");
  for (const l of r.stdout.trim().split("\n")) say(`    ${l}`);
  say("");
  say("berth init, timeline (one line per state change, from berth's structured log):");
  let first: number | undefined;
  for (const line of r.stderr.split("\n")) {
    if (!line.startsWith("{")) {
      if (line.trim()) say(`    ${line}`);
      continue;
    }
    const e = JSON.parse(line) as { time: string; event: string; component: string; cause?: string; durationMs?: number };
    const ms = Date.parse(e.time);
    first ??= ms;
    say(
      `    +${String(ms - first).padStart(5)} ms  ${e.event.padEnd(24)} ${e.cause ?? ""}${e.durationMs !== undefined ? `  (${e.durationMs} ms)` : ""}`,
    );
  }
  say("");
  // Tasks run after berth-run, never awaited by it: give them a moment before showing the result.
  for (const t of ["warm-images", "hello"]) await rn.waitSettled(`berth-task-${t}.service`, 60_000);
  say(`result (${at().trim()}):`);
  const units = await rn.node.exec([
    "systemctl",
    "--no-pager",
    "--no-legend",
    "list-units",
    "--all",
    "containerd.service",
    "kubelet.service",
    "berth-task-*.service",
  ]);
  for (const l of units.stdout.trim().split("\n")) say(`    ${l.trim()}`);
  const argv = await kubeletRecord();
  say(`    kubelet (stand-in) argv: ${argv.argv.join(" ")}`);
  const images = await rn.node.exec(["ctr", "-n", "k8s.io", "images", "ls", "-q"]);
  say(
    `    images: ${images.stdout
      .trim()
      .split("\n")
      .filter((l) => !l.startsWith("sha256:"))
      .join(", ")}`,
  );
  const st = JSON.parse((await rn.node.exec(["cat", "/run/berth/status.json"])).stdout) as {
    result: string;
    durationMs: number;
    steps: { step: string; action: string; durationMs: number }[];
  };
  say(
    `    /run/berth/status.json: ${st.result} in ${st.durationMs} ms: ${st.steps.map((s) => `${s.step}=${s.action} ${s.durationMs}ms`).join(", ")}`,
  );
  if (keep) {
    say("");
    say(`node kept: sudo nsenter -t ${rn.node.leaderPid} -a bash   (Ctrl-C here tears it down)`);
    await new Promise<void>((resolve) => process.once("SIGINT", () => resolve()));
  }
} finally {
  await rn.cleanup();
  say(`${at()}  lab: node shut down, registry and stand-ins stopped`);
}
process.exit(code);
