/**
 * Config phase, end to end (process start to exit), against a bare Node
 * start in the same run:
 *
 *   node -e 0                                        baseline
 *   bin/berth demo --root <fresh>                    what users run: example NodeConfig, embedded
 *                                                    instance profile, from the startup snapshot
 *   node dist/berth.mjs demo --root <fresh>          the same from the plain ESM bundle
 *   bin/berth init --skip run ...                    same config, facts from the IMDS + EC2 stand-ins
 *
 * Runs are interleaved (a, b, c, a, b, c, ...) so machine noise hits every
 * variant alike; medians are printed with the ratio to the baseline.
 * Goal: the demo config phase within 2x of `node -e 0`.
 *
 * Usage: node --import tsx bench/config-phase.ts [--runs N] [--single] [--breakdown] [--profile] [--baseline DIR]
 *   --single     also measure the single-file bundle (BERTH_SINGLE=1 build, dist/single/)
 *                against the code-split one that ships
 *   --breakdown  print where the demo's time goes (BERTH_TIMING marks, medians)
 *   --profile    also writes a --cpu-prof of one demo run to bench/profiles/
 *   --baseline DIR  also time DIR/bin/berth (another built checkout, e.g. `git archive` of the
 *                previous commit) in the same interleaved runs: before/after figures from one
 *                run, which is the only fair comparison on a noisy shared machine
 */
import { spawn, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { startImdsStandIn } from "../tests/standins/imds-server.ts";
import { startEc2StandIn } from "../tests/standins/ec2-server.ts";
import { seedNodeRoot } from "../tests/fixtures/node.ts";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const BUNDLE = path.join(REPO, "dist/berth.mjs");

const { values } = parseArgs({ options: { runs: { type: "string" }, profile: { type: "boolean" }, single: { type: "boolean" }, breakdown: { type: "boolean" }, baseline: { type: "string" } }, strict: false });
const RUNS = Number(values.runs ?? process.env.BENCH_RUNS ?? 15);

const BIN = path.join(REPO, "bin/berth");

const BASELINE_BIN = typeof values.baseline === "string" ? path.resolve(values.baseline, "bin/berth") : undefined;

/** Time one process, start to exit; `args[0]` being bin/berth (this one or the baseline's) runs it itself, anything else is node's arguments. */
function run(args: string[], env: NodeJS.ProcessEnv, onStderr?: (s: string) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const [cmd, rest] = args[0] === BIN || (BASELINE_BIN !== undefined && args[0] === BASELINE_BIN) ? [args[0], args.slice(1)] : [process.execPath, args];
    const child = spawn(cmd, rest, { env, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code !== 0) reject(new Error(`node ${args.join(" ")} exited ${code}\n${err}`));
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

async function main(): Promise<void> {
  if (!existsSync(BUNDLE)) execFileSync(process.execPath, [path.join(REPO, "scripts/build.mjs")], { cwd: REPO, stdio: "inherit" });
  const imds = await startImdsStandIn();
  const ec2 = await startEc2StandIn();
  const baseEnv: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: tmpdir() };
  if (!existsSync(path.join(REPO, "dist/snapshot/berth.blob"))) console.log("note: no startup snapshot in dist/snapshot (see scripts/build.mjs); bin/berth runs the ESM bundle");
  const awsEnv: NodeJS.ProcessEnv = {
    ...baseEnv,
    AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url,
    AWS_ENDPOINT_URL_EC2: ec2.url,
    AWS_REGION: "us-west-2",
    AWS_ACCESS_KEY_ID: "AKIDBERTHBENCH",
    AWS_SECRET_ACCESS_KEY: "berth-bench-secret",
  };
  const roots: string[] = [];
  const variants: { name: string; prepare: () => Promise<{ args: string[]; env: NodeJS.ProcessEnv }> }[] = [
    { name: "node -e 0", prepare: async () => ({ args: ["-e", "0"], env: baseEnv }) },
    {
      name: "bin/berth demo (startup snapshot)",
      prepare: async () => {
        const r = await mkdtemp(path.join(tmpdir(), "berth-bench-demo-"));
        roots.push(r);
        return { args: [BIN, "demo", "--root", r], env: baseEnv };
      },
    },
    {
      name: "node dist/berth.mjs demo (ESM bundle)",
      prepare: async () => {
        const r = await mkdtemp(path.join(tmpdir(), "berth-bench-demo-"));
        roots.push(r);
        return { args: [BUNDLE, "demo", "--root", r], env: baseEnv };
      },
    },
    {
      name: "bin/berth init --skip run (IMDS+EC2 stand-ins)",
      prepare: async () => {
        const r = await nodeRoot();
        roots.push(r);
        return { args: [BIN, "init", "--skip", "run", "--root", r, "-c", "file:///etc/eks/nodeadm.d/example.yaml"], env: awsEnv };
      },
    },
  ];
  if (BASELINE_BIN !== undefined) {
    if (!existsSync(BASELINE_BIN)) throw new Error(`--baseline: no ${BASELINE_BIN}`);
    const bin = BASELINE_BIN;
    variants.push(
      {
        name: "baseline bin/berth demo",
        prepare: async () => {
          const r = await mkdtemp(path.join(tmpdir(), "berth-bench-demo-"));
          roots.push(r);
          return { args: [bin, "demo", "--root", r], env: baseEnv };
        },
      },
      {
        name: "baseline bin/berth init --skip run",
        prepare: async () => {
          const r = await nodeRoot();
          roots.push(r);
          return { args: [bin, "init", "--skip", "run", "--root", r, "-c", "file:///etc/eks/nodeadm.d/example.yaml"], env: awsEnv };
        },
      },
    );
  }
  if (values.single) {
    execFileSync(process.execPath, [path.join(REPO, "scripts/build.mjs")], { cwd: REPO, stdio: "inherit", env: { ...process.env, BERTH_SINGLE: "1" } });
    variants.splice(3, 0, {
      name: "berth demo (single-file bundle)",
      prepare: async () => {
        const r = await mkdtemp(path.join(tmpdir(), "berth-bench-demo-"));
        roots.push(r);
        return { args: [path.join(REPO, "dist/single/berth.mjs"), "demo", "--root", r], env: baseEnv };
      },
    });
  }
  const times = variants.map(() => [] as number[]);
  try {
    // One untimed warm-up round (page cache, stand-ins' first connections).
    for (const v of variants) {
      const { args, env } = await v.prepare();
      await run(args, env);
    }
    for (let i = 0; i < RUNS; i++) {
      for (const [j, v] of variants.entries()) {
        const { args, env } = await v.prepare();
        times[j]!.push(await run(args, env));
      }
    }
    if (values.breakdown) {
      // BERTH_TIMING marks are ms since process start; steps are the differences.
      const marks = new Map<string, number[]>();
      for (let i = 0; i < RUNS; i++) {
        const r = await mkdtemp(path.join(tmpdir(), "berth-bench-demo-"));
        roots.push(r);
        await run([BIN, "demo", "--root", r], { ...baseEnv, BERTH_TIMING: "1" }, (err) => {
          for (const m of err.matchAll(/^timing: (.+) at ([\d.]+) ms$/gm)) marks.set(m[1]!, [...(marks.get(m[1]!) ?? []), Number(m[2])]);
        });
      }
      console.log("bin/berth demo breakdown (median ms since process start, BERTH_TIMING=1):");
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
      const r = await mkdtemp(path.join(tmpdir(), "berth-bench-prof-"));
      roots.push(r);
      await run(["--cpu-prof", "--cpu-prof-dir", dir, BUNDLE, "demo", "--root", r], baseEnv);
      const r2 = await mkdtemp(path.join(tmpdir(), "berth-bench-prof-"));
      roots.push(r2);
      if (existsSync(path.join(REPO, "dist/snapshot/berth.blob"))) await run(["--cpu-prof", "--cpu-prof-dir", dir, "--snapshot-blob", path.join(REPO, "dist/snapshot/berth.blob"), "demo", "--root", r2], baseEnv);
      console.log(`cpu profile written to ${dir}`);
    }
  } finally {
    await imds.close();
    await ec2.close();
    for (const r of roots) await rm(r, { recursive: true, force: true });
  }
  const base = median(times[0]!);
  console.log(`config phase, end to end (process start to exit), ${RUNS} interleaved runs each, node ${process.version}`);
  for (const [j, v] of variants.entries()) {
    const m = median(times[j]!);
    const t = times[j]!;
    console.log(`  ${v.name.padEnd(44)} median ${m.toFixed(1).padStart(7)} ms  min ${Math.min(...t).toFixed(1).padStart(7)} ms  ratio ${(m / base).toFixed(2)}x`);
  }
  const demo = median(times[1]!) / base;
  const bundle = median(times[2]!) / base;
  console.log("  (wall time on a shared 2-core machine: compare ratios from the same run, not absolute figures across runs)");
  console.log(`bin/berth demo / node -e 0 = ${demo.toFixed(2)}x (goal <= 2.00x): ${demo <= 2 ? "met" : "NOT met"}; plain ESM bundle ${bundle.toFixed(2)}x`);
}

await main();
