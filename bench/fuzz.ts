/**
 * The long fuzz run of issue 8, and the figures of berth's input limits.
 *
 * 1. Fuzz: the property of tests/unit/config-fuzz.test.ts (hostile YAML and
 *    user-data shapes through `config check` and the config phase, in-process;
 *    tests/fixtures/config-fuzz.ts) for --seconds (default 60) from --seed
 *    (default: random, printed): runs, per-run time, and every violation found.
 * 2. Limits: `berth config check` through the release executable (or bin/berth
 *    when the release is older than the bundle) on inputs at and beyond src/api/decode.ts's
 *    DECODE_LIMITS — 20,000 and 200,000 unknown keys, the densest input just
 *    under the limits, 1000 levels of nesting, an alias bomb — with wall time
 *    and peak RSS (/usr/bin/time when present) and how many lines it printed.
 *
 * Usage: node --import tsx bench/fuzz.ts [--seconds N] [--seed N] [--runs N (ignored; bench/run.sh passes it)]
 *        BENCH=fuzz bash bench/run.sh
 */
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { DECODE_LIMITS } from "../src/api/yaml-limits.ts";
import { demoFacts } from "../src/facts/static.ts";
import { fuzzInput, hostileSeeds, runPipeline, violations, wrap } from "../tests/fixtures/config-fuzz.ts";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const EXE = path.join(REPO, `dist/release/berth-linux-${process.arch === "arm64" ? "arm64" : "x64"}`);
const BIN = path.join(REPO, "bin/berth");

const { values } = parseArgs({
  options: { seconds: { type: "string" }, seed: { type: "string" }, runs: { type: "string" } },
  strict: true,
});
const seconds = Number(values.seconds ?? 60);
const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);

async function fuzz(): Promise<void> {
  const facts = await demoFacts();
  const root = path.join(tmpdir(), "berth-fuzz-root-does-not-exist");
  const times: number[] = [];
  const found = new Map<string, string>();
  const run = async (bytes: Uint8Array, label: string): Promise<void> => {
    const t0 = performance.now();
    const v = violations(await runPipeline(bytes, facts, root));
    times.push(performance.now() - t0);
    for (const x of v) if (!found.has(x)) found.set(x, label);
  };
  for (const [name, text] of Object.entries(hostileSeeds())) await run(wrap(text, "plain"), `seed: ${name}`);
  await fc.assert(
    fc.asyncProperty(fuzzInput, async (input) => {
      await run(wrap(input.text, input.how), `${input.how}: ${JSON.stringify(input.text.slice(0, 200))}`);
    }),
    { seed, numRuns: Number.MAX_SAFE_INTEGER, interruptAfterTimeLimit: seconds * 1000 },
  );
  times.sort((a, b) => a - b);
  const q = (p: number): string => (times[Math.min(times.length - 1, Math.floor(p * times.length))] ?? 0).toFixed(1);
  console.log(
    `fuzz: ${times.length} inputs in ${seconds} s (seed ${seed}); per input median ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${q(1)} ms`,
  );
  console.log(`fuzz: ${found.size} distinct violation(s)`);
  for (const [v, label] of found) console.log(`  ${v}\n    input: ${label}`);
  if (found.size) process.exitCode = 1;
}

/** `config check` on one file through the shipped CLI: wall time, peak RSS, exit status, lines printed. */
function measure(cli: string[], file: string): string {
  const time = existsSync("/usr/bin/time");
  const args = [...cli, "config", "check", "-c", `file://${file}`];
  const t0 = performance.now();
  const r = time
    ? spawnSync("/usr/bin/time", ["-f", "%e s %M KB", ...args], { encoding: "utf8", maxBuffer: 1 << 28 })
    : spawnSync(args[0]!, args.slice(1), { encoding: "utf8", maxBuffer: 1 << 28 });
  const wall = ((performance.now() - t0) / 1000).toFixed(2);
  const err = r.stderr.split("\n").filter((l) => l !== "" && !l.startsWith("Command exited with"));
  const timeLine = time ? err.filter((l) => /^\d+\.\d+ s \d+ KB$/.test(l)).pop() : undefined;
  const lines = err.filter((l) => l !== timeLine);
  const errors = lines.filter((l) => l.startsWith("error: ")).length;
  const last = lines.length
    ? lines[lines.length - 2 >= 0 && lines[lines.length - 1]!.startsWith("  hint:") ? lines.length - 2 : lines.length - 1]
    : "";
  return `${timeLine ?? `${wall} s`}, exit ${r.status}, ${errors} error line(s) (${lines.length} lines); last: ${last?.slice(0, 110)}`;
}

async function limits(): Promise<void> {
  // The release executable when it embeds the current bundle (bench/run.sh rebuilds only the bundle), else bin/berth.
  const bundle = path.join(REPO, "dist/berth.cjs");
  const cli = existsSync(EXE) && (!existsSync(bundle) || statSync(EXE).mtimeMs >= statSync(bundle).mtimeMs) ? [EXE] : [BIN];
  console.log(`limits (${path.relative(REPO, cli[0]!)} config check): ${JSON.stringify(DECODE_LIMITS)}`);
  const dir = await mkdtemp(path.join(tmpdir(), "berth-fuzz-"));
  try {
    const head =
      "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: c\n    apiServerEndpoint: https://x.example.com\n    certificateAuthority: YWJj\n    cidr: 10.100.0.0/16\n";
    const unknown = (n: number): string => {
      const parts = [head, "  kubelet:\n"];
      for (let i = 0; i < n; i++) parts.push(`    k${i}: 1\n`);
      return parts.join("");
    };
    // The most keys and values that still pass the limits, the densest way (a flow list of one-digit numbers).
    const densest = `${head}  kubelet:\n    config:\n      a: [${Array(DECODE_LIMITS.values - 20)
      .fill("1")
      .join(",")}]\n`;
    let env = `${head}  instance:\n    environment:\n      default:\n`;
    for (let i = 0; env.length < DECODE_LIMITS.bytes - 100 && i < DECODE_LIMITS.values / 2 - 20; i++)
      env += `        V${i}: "${"x".repeat(40)}"\n`;
    const bigString = `${head}  kubelet:\n    maxPodsExpression: "${" ".repeat(DECODE_LIMITS.bytes - head.length - 60)}1"\n`;
    const cases: Array<[string, string]> = [
      ["20,000 unknown keys", unknown(20_000)],
      ["200,000 unknown keys", unknown(200_000)],
      [`${DECODE_LIMITS.values - 20} values in one list (densest accepted)`, densest],
      [`a valid ${(env.length / 1024).toFixed(0)} KiB environment map`, env],
      [`a valid ${(bigString.length / 1024).toFixed(0)} KiB config (one long string)`, bigString],
      ...Object.entries(hostileSeeds()).filter(([k]) => /nesting|alias|CA/.test(k)),
    ];
    for (const [name, text] of cases) {
      const file = path.join(dir, "config.yaml");
      await writeFile(file, text);
      console.log(`  ${name} (${(Buffer.byteLength(text) / 1024).toFixed(0)} KiB): ${measure(cli, file)}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await limits();
await fuzz();
