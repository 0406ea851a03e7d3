/**
 * Issue 3 benchmark (a): how long after containerd's CRI becomes ready does
 * berth notice? Target: under 50 ms.
 *
 * In a lab node (root): containerd is stopped; berth's `waitForCriReady`
 * (the run phase's code path and backoff) starts waiting first; an
 * independent poller in its own process (1 ms stat loop until the socket
 * exists, then back-to-back Status calls on one channel whose reconnect
 * backoff is 1-2 ms) records the first moment Status reports
 * RuntimeReady; then containerd is started. Latency = berth's notice time −
 * the poller's first success, both on CLOCK_MONOTONIC (shared by every process
 * on the host and by systemd in the node). A second reference is systemd's
 * ActiveEnterTimestampMonotonic of containerd (Type=notify: its READY=1).
 * Negative figures mean berth saw readiness before the poller did (the
 * poller competes for the same two cores); READY=1 precedes the first
 * answerable CRI call by a connect and a round trip, so that reference is
 * pessimistic.
 *
 * Usage: node --import tsx bench/cri-notice.ts [--runs N]   (npm run package first: lab nodes install its .deb)
 */
import { parseArgs } from "node:util";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { bootRunNode } from "../tests/lab/run-node.ts";
import { createCriClient, waitForCriReady } from "../src/host/cri.ts";
import { DEFAULTS } from "../src/phases/run.ts";

const { values } = parseArgs({ options: { runs: { type: "string" } }, strict: false });
const RUNS = Number(values.runs ?? process.env.BENCH_RUNS ?? 10);
// CLOCK_MONOTONIC in ms: the same clock in every process on the host and in systemd inside the node.
const mono = (): number => Number(process.hrtime.bigint()) / 1e6;

const POLLER = `
import fs from "node:fs";
import { createCriClient } from ${JSON.stringify(path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../src/host/cri.ts"))};
// node -e puts the arguments after "--" from argv[1] on.
const sock = process.argv[process.argv.length - 1];
const mono = () => Number(process.hrtime.bigint()) / 1e6;
process.stdout.write("ready\\n");
for (;;) {
  let isSock = false;
  try { isSock = fs.statSync(sock).isSocket(); } catch {}
  if (!isSock) { await new Promise((r) => setTimeout(r, 1)); continue; }
  break;
}
// One channel with a 1 ms reconnect backoff: no connect cost per attempt, no reconnect lag.
const c = createCriClient(sock, { callTimeoutMs: 500, reconnect: { initialMs: 1, maxMs: 2 } });
for (;;) {
  try {
    const s = await c.status();
    if (s.runtimeReady) { process.stdout.write(String(mono()) + "\\n"); c.close(); process.exit(0); }
  } catch {}
}
`;

function startPoller(socket: string): Promise<{ firstReady: Promise<number> }> {
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", POLLER, "--", socket], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let buf = "";
  return new Promise((resolveStarted, reject) => {
    let started = false;
    let resolveReady: (n: number) => void = () => undefined;
    const firstReady = new Promise<number>((r) => (resolveReady = r));
    child.stdout.on("data", (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split("\n");
      buf = lines.pop() ?? "";
      for (const l of lines) {
        if (l === "ready" && !started) {
          started = true;
          resolveStarted({ firstReady });
        } else if (l) resolveReady(Number(l));
      }
    });
    child.on("error", reject);
    setTimeout(() => child.kill("SIGKILL"), 120_000).unref();
  });
}

process.stderr.write("booting a lab node...\n");
const rn = await bootRunNode({ name: "crinotice", rebootAfterInstall: true });
try {
  if ((await rn.waitSettled("berth-run.service", 180_000)) !== "active") throw new Error("berth-run did not finish on the bench node");
  const socket = rn.node.hostPath("/run/containerd/containerd.sock");
  const lat: number[] = [];
  const vsNotify: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    if (process.env.BENCH_DEBUG) process.stderr.write(`run ${i}: stopping containerd\n`);
    await rn.node.systemctl("stop", "containerd.service");
    if (process.env.BENCH_DEBUG) process.stderr.write(`run ${i}: starting poller\n`);
    const poller = await startPoller(socket);
    // Exactly the run phase's wait (src/phases/run.ts step 3).
    const client = createCriClient(socket, { callTimeoutMs: 2000, reconnect: { ...DEFAULTS.criReconnect } });
    const berthNotice = waitForCriReady(socket, { deadlineMs: 60_000, backoff: { ...DEFAULTS.criWaitBackoff }, client })
      .then(() => mono())
      .finally(() => client.close());
    if (process.env.BENCH_DEBUG) process.stderr.write(`run ${i}: poller up\n`);
    await new Promise((r) => setTimeout(r, 200)); // both are waiting before containerd starts
    await rn.node.systemctl("start", "--no-block", "containerd.service");
    const [b, p] = await Promise.race([
      Promise.all([berthNotice, poller.firstReady]),
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error("containerd's CRI was not seen ready within 60 s")), 60_000).unref(),
      ),
    ]);
    lat.push(b - p);
    // A second, independent reference: systemd's READY=1 moment (containerd is Type=notify).
    const readyMono = Number((await rn.show("containerd.service", ["ActiveEnterTimestampMonotonic"])).ActiveEnterTimestampMonotonic) / 1000;
    vsNotify.push(b - readyMono);
    process.stderr.write(
      `  run ${i + 1}/${RUNS}: ${(b - p).toFixed(1)} ms after the poller, ${(b - readyMono).toFixed(1)} ms after containerd's READY=1\n`,
    );
  }
  const summary = (xs: number[]): string => {
    const sorted = [...xs].sort((a, b) => a - b);
    const q = (f: number) => sorted[Math.min(sorted.length - 1, Math.floor(f * sorted.length))] ?? NaN;
    return `median ${q(0.5).toFixed(1)} ms, p90 ${q(0.9).toFixed(1)} ms, max ${sorted[sorted.length - 1]?.toFixed(1)} ms  [${xs.map((x) => x.toFixed(1)).join(" ")}]`;
  };
  console.log(
    `CRI ready → berth notices (lab node, containerd started by systemd, ${RUNS} runs; target < 50 ms; negative = berth saw it first):`,
  );
  console.log(`  vs independent tight poller:      ${summary(lat)}`);
  console.log(`  vs containerd's READY=1 (systemd): ${summary(vsNotify)}`);
} finally {
  await rn.cleanup();
}
