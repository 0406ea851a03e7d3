/**
 * `berth doctor` on a node where every endpoint is black-holed (accepts,
 * never answers: IMDS, EC2, the API server, kubelet's /healthz, containerd's
 * socket, the system bus): how long the whole run takes against the 10 s
 * bound of issue 10, and which check costs most. The test suite checks that
 * such a run ends by itself and names each deadline; the time is measured
 * here, never asserted there.
 *
 * Usage: node --import tsx bench/doctor.ts [--runs N]
 */
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { EXE, ensureRelease } from "../tests/fixtures/cli.ts";
import { startBlackHole, type BlackHole } from "../tests/standins/black-hole.ts";
import { createTestCa } from "../tests/standins/test-pki.ts";

const { values } = parseArgs({ options: { runs: { type: "string" } }, strict: false });
const RUNS = Number(values.runs ?? process.env.BENCH_RUNS ?? 3);

type Report = { checks: { id: string; status: string; durationMs: number }[] };

function doctor(args: string[], env: NodeJS.ProcessEnv): Promise<{ ms: number; report: Report }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(EXE, ["doctor", "-o", "json", ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("close", () => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      try {
        resolve({ ms, report: JSON.parse(out) as Report });
      } catch (e) {
        reject(new Error(`berth doctor printed no JSON: ${String(e)}`));
      }
    });
  });
}

async function main(): Promise<void> {
  ensureRelease();
  const root = await mkdtemp(path.join(tmpdir(), "berth-bench-doctor-"));
  const holes: BlackHole[] = [];
  const ca = await createTestCa("berth bench CA");
  try {
    const hole = await startBlackHole();
    holes.push(hole);
    for (const dir of ["run/containerd", "run/dbus"]) await mkdir(path.join(root, dir), { recursive: true });
    holes.push(await startBlackHole({ unixPath: path.join(root, "run/containerd/containerd.sock") }));
    holes.push(await startBlackHole({ unixPath: path.join(root, "run/dbus/system_bus_socket") }));
    await writeFile(
      path.join(root, "node.yaml"),
      `apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: bench\n    apiServerEndpoint: https://${hole.address}\n` +
        `    certificateAuthority: ${ca.base64}\n    cidr: 10.100.0.0/16\n`,
    );
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: tmpdir(),
      AWS_EC2_METADATA_SERVICE_ENDPOINT: `http://${hole.address}`,
      AWS_ENDPOINT_URL_EC2: `https://${hole.address}`,
      AWS_REGION: "us-west-2",
      AWS_ACCESS_KEY_ID: "AKIDBERTHBENCH",
      AWS_SECRET_ACCESS_KEY: "berth-bench-secret",
    };
    const args = ["--root", root, "-c", "file:///node.yaml", "--kubelet-healthz", `http://${hole.address}/healthz`];
    const times: number[] = [];
    let slowest: Report["checks"] = [];
    for (let i = 0; i < RUNS; i++) {
      const r = await doctor(args, env);
      times.push(r.ms);
      slowest = [...r.report.checks].sort((a, b) => b.durationMs - a.durationMs).slice(0, 3);
    }
    const max = Math.max(...times);
    console.log(
      `berth doctor, every endpoint black-holed, ${RUNS} runs: max ${max.toFixed(0)} ms, min ${Math.min(...times).toFixed(0)} ms (bound 10000 ms: ${max <= 10_000 ? "met" : "NOT met"})`,
    );
    console.log(`  slowest checks (last run): ${slowest.map((c) => `${c.id} ${c.status} ${c.durationMs} ms`).join(", ")}`);
  } finally {
    for (const h of holes) await h.close();
    await rm(root, { recursive: true, force: true });
    await rm(ca.dir, { recursive: true, force: true });
  }
}

await main();
