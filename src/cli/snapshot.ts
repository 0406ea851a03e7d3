/**
 * Entry of berth's startup snapshot (dist/snapshot/berth.blob), the fast path
 * of the config-phase commands: `demo`, `config check|dump` and `init`
 * without the run phase.
 *
 * Why: on Node 20, loading and first-running the config phase's modules (zod
 * schemas, YAML, renderers) costs 3-4x a bare `node -e 0` however the bundle
 * is cut (bench/config-phase.ts). A V8 startup snapshot taken after those
 * modules are evaluated, and after one warm-up dry run, starts with all of
 * that already in the heap. Built by scripts/build.mjs with
 * `node --snapshot-blob ... --build-snapshot` (an esbuild CommonJS bundle of
 * this file); bin/berth uses it when it exists and matches the running node.
 *
 * Everything else (agent, status, the run phase with its gRPC/D-Bus clients,
 * --help/--version) runs from the ordinary bundle, dist/berth.mjs: a snapshot
 * cannot import ES modules, so those invocations are handed over to it.
 */
import * as v8 from "node:v8";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { tmpdir } from "node:os";
import { initCommand, initWantsRunPhase } from "./init.ts";
import { checkCommand, dumpCommand } from "./config.ts";
import { DEMO_HELP, DEMO_OPTIONS, demoCommand } from "./demo.ts";
import { parseCommand } from "./args.ts";
// Evaluated at build time so the snapshot holds them (the commands import them lazily).
import { runConfigPhase } from "../phases/config.ts";
import { demoFacts } from "../facts/static.ts";
import { HostRoot } from "../host/root.ts";
import "../sources/cache.ts";
// Gathering facts (init: IMDS, the EC2 client with SigV4 and node:crypto) is not part of the
// warm-up, which uses the demo profile; evaluate those modules anyway so init starts with them.
import "../facts/index.ts";
import "../facts/ec2.ts";
import "../api/decode.ts";
import "../api/merge.ts";
import "../api/validate.ts";
import "../api/encode.ts";
import "../plan/diff.ts";

/**
 * dist/berth.mjs. __dirname is baked in when the snapshot is built, so prefer
 * BERTH_HOME (the repository, exported by bin/berth) in case it moved since.
 */
const esmEntry = (): string => path.join(process.env.BERTH_HOME ? path.join(process.env.BERTH_HOME, "dist") : path.join(__dirname, ".."), "berth.mjs");
const EXAMPLE = path.join(__dirname, "..", "..", "data", "example-nodeconfig.yaml");

/** Run the invocation with the full bundle, as a child that inherits stdio; mirror its exit. */
function handOver(args: string[]): never {
  const entry = esmEntry();
  const r = spawnSync(process.execPath, [entry, ...args], { stdio: "inherit" });
  if (r.error) {
    process.stderr.write(`error: could not start ${entry}: ${r.error.message}\n  hint: rebuild with 'node scripts/build.mjs'\n`);
    process.exit(1);
  }
  if (r.signal) process.kill(process.pid, r.signal);
  process.exit(r.status ?? 1);
}

async function snapshotMain(args: string[]): Promise<number> {
  const [cmd, ...rest] = args;
  if (cmd === "demo") return demoCommand(rest);
  if (cmd === "config" && rest[0] === "check") return checkCommand(rest.slice(1));
  if (cmd === "config" && rest[0] === "dump") return dumpCommand(rest.slice(1));
  if (cmd === "init" && !initWantsRunPhase(rest)) return initCommand(rest);
  return handOver(args);
}

/**
 * Build-time warm-up: one dry-run config phase of the example (demo facts, a
 * root that does not exist, nothing written) so the functions on the hot
 * path are compiled and zod has generated its parsers before the snapshot.
 */
async function warmUp(): Promise<void> {
  // Argument parsing too: node:util's parseArgs loads its implementation on first use, and with
  // berth's own parseCommand that was ~2 ms of every `berth demo` before this (BERTH_TIMING marks).
  // No --help and no positionals, so it prints nothing (stdout must not be opened at build time).
  const warmArgs = parseCommand(["--root", path.join(tmpdir(), "berth-snapshot-warmup-does-not-exist"), "--dry-run", "-c", "file:///warm-up.yaml"], DEMO_OPTIONS, "demo", DEMO_HELP);
  if (typeof warmArgs === "number") throw new Error("snapshot warm-up: the demo's arguments did not parse");
  const facts = await demoFacts();
  const noImds = () => Promise.reject(new Error("no IMDS at build time"));
  const r = await runConfigPhase({
    // Relative file:// sources are read as they are; absolute ones would be re-rooted.
    sources: [`file://${path.relative(process.cwd(), EXAMPLE)}`],
    root: new HostRoot(path.join(tmpdir(), "berth-snapshot-warmup-does-not-exist")),
    dryRun: true,
    facts,
    imds: { get: noImds, getBytes: noImds },
  });
  if (!r.ok) throw new Error(`snapshot warm-up failed: ${r.errors.map((e) => e.message).join("; ")}`);
}

if (process.env.BERTH_SNAPSHOT_WARMUP !== "0") {
  warmUp().catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  });
}

v8.startupSnapshot.setDeserializeMainFunction(() => {
  // Running from a snapshot, argv is [node, ...user arguments].
  // BERTH_TIMING=1: the snapshot is deserialized and node is ready; the rest is berth's.
  const timing = process.env.BERTH_TIMING === "1";
  if (timing) process.stderr.write(`timing: snapshot main at ${performance.now().toFixed(1)} ms\n`);
  snapshotMain(process.argv.slice(1)).then(
    (code) => {
      // Exit now rather than let node tear down the deserialized heap politely (~10-20 ms);
      // stdout and stderr are synchronous on Linux for files, pipes and terminals.
      // BERTH_TIMING=1 (bench/config-phase.ts --breakdown): what is left after this is node's and the kernel's teardown.
      if (timing) process.stderr.write(`timing: exit at ${performance.now().toFixed(1)} ms\n`);
      process.exit(code);
    },
    (e: unknown) => {
      process.stderr.write(`berth: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n  hint: this is a bug in berth; please report it with the command you ran\n`);
      process.exitCode = 1;
    },
  );
});
