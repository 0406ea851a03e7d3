/**
 * `berth demo`: berth's main job on embedded defaults, safe on any machine —
 * the config phase of data/example-nodeconfig.yaml into a fresh scratch root
 * under the OS temp dir, against the embedded demo instance profile (no
 * network, no IMDS), printing what it wrote and where.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { HostRoot } from "../host/root.ts";
import { EXIT_OK, parseCommand, printErrors, printWarnings, usageError } from "./args.ts";
import { printApplyReport } from "./output.ts";
import { berthExecutable } from "./self.ts";
import { toBerthErrors } from "../util/errors.ts";

const DEMO_HELP = `Usage: berth demo [options]

Runs the config phase of the example NodeConfig (data/example-nodeconfig.yaml)
into a fresh scratch root under the OS temp directory, against berth's
embedded demo instance profile. No network, nothing outside the scratch root
is touched.

Options:
  -c, --config-source URL  use this NodeConfig instead of the example (file:// only)
      --root DIR           write into DIR instead of a fresh temp directory
      --dry-run            print the diff of what would be written; write nothing
  -h, --help               this help
`;

const DEMO_OPTIONS = {
  "config-source": { type: "string", short: "c", multiple: true },
  root: { type: "string" },
  "dry-run": { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

const EXAMPLE_NAME = "example-nodeconfig.yaml";

/** data/example-nodeconfig.yaml, embedded by scripts/build.mjs (esbuild `define`). */
declare const __BERTH_EXAMPLE_NODECONFIG__: string | undefined;

/** The example NodeConfig: embedded in a build, read from the repository when running from source. */
async function exampleText(): Promise<string> {
  if (typeof __BERTH_EXAMPLE_NODECONFIG__ === "string") return __BERTH_EXAMPLE_NODECONFIG__;
  return readFile(fileURLToPath(new URL(`../../data/${EXAMPLE_NAME}`, import.meta.url)), "utf8");
}

export async function demoCommand(args: string[]): Promise<number> {
  const p = parseCommand(args, DEMO_OPTIONS, "demo", DEMO_HELP);
  if (typeof p === "number") return p;
  const userSources = p.values["config-source"] ?? [];
  if (userSources.some((s) => !s.startsWith("file://")))
    return usageError("the demo reads file:// sources only (it never talks to IMDS)", "demo");

  const rootDir = p.values.root ?? (await mkdtemp(path.join(tmpdir(), "berth-demo-")));
  const root = new HostRoot(rootDir);
  let sources = userSources;
  // The embedded example goes to a temp file of its own, outside the root, so the root holds only what berth writes.
  let exampleDir: string | undefined;
  if (sources.length === 0) {
    exampleDir = await mkdtemp(path.join(tmpdir(), "berth-demo-config-"));
    const file = path.join(exampleDir, EXAMPLE_NAME);
    await writeFile(file, await exampleText());
    // Relative: a relative file:// source is read as it is, an absolute one would be re-rooted under --root.
    sources = [`file://${path.relative(process.cwd(), file)}`];
  }
  try {
    return await demoRun(
      sources,
      exampleDir ? `the embedded example (${EXAMPLE_NAME})` : sources.join(", "),
      root,
      p.values["dry-run"] ?? false,
    );
  } finally {
    if (exampleDir) await rm(exampleDir, { recursive: true, force: true });
  }
}

async function demoRun(sources: string[], label: string, root: HostRoot, dryRun: boolean): Promise<number> {
  const [{ runConfigPhase }, { demoFacts }] = await Promise.all([import("../phases/config.ts"), import("../facts/static.ts")]);
  let facts: { ok: true; value: Awaited<ReturnType<typeof demoFacts>> };
  try {
    facts = { ok: true, value: await demoFacts() };
  } catch (e) {
    return printErrors(
      toBerthErrors(e, "demo.facts", "the embedded demo profile is unusable", "this is a bug in berth's build; please report it"),
    );
  }
  const f = facts.value;
  process.stdout.write(
    `berth demo: config phase of ${label}\n` +
      `  instance: ${f.instance.type} ${f.instance.id} (${f.instance.region}), ${f.cpus} CPUs, ` +
      `kubelet ${f.kubeletVersion}, containerd ${f.containerdVersion} (embedded demo profile)\n` +
      `  root: ${root.dir}\n`,
  );
  const r = await runConfigPhase({
    sources,
    root,
    dryRun,
    facts: facts.value,
    berthPath: berthExecutable(),
    // The demo must never reach for a metadata service.
    imds: {
      get: () => Promise.reject(new Error("the demo does not use IMDS")),
      getBytes: () => Promise.reject(new Error("the demo does not use IMDS")),
    },
    log: (l) => process.stderr.write(l + "\n"),
    // A BerthConfig `validation: warn` in the demo's sources: its warnings as `berth init` prints them.
    onSources: (report) => printWarnings(report.warnings),
  });
  if (!r.ok) return printErrors(r.errors);
  if (r.value.apply) printApplyReport(r.value.apply, root, dryRun);
  if (!dryRun) process.stdout.write(`look around: ls -R ${root.dir}   (remove with: rm -r ${root.dir})\n`);
  return EXIT_OK;
}
