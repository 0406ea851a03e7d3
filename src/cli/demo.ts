/**
 * `berth demo`: berth's main job on embedded defaults, safe on any machine —
 * the config phase of data/example-nodeconfig.yaml into a fresh scratch root
 * under the OS temp dir, against the embedded demo instance profile (no
 * network, no IMDS), printing what it wrote and where.
 */
import { existsSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { HostRoot } from "../host/root.ts";
import { EXIT_OK, parseCommand, printErrors, usageError } from "./args.ts";
import { printApplyReport } from "./output.ts";

export const DEMO_HELP = `Usage: berth demo [options]

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

/** Exported for the startup snapshot's warm-up (src/cli/snapshot.ts). */
export const DEMO_OPTIONS = {
  "config-source": { type: "string", short: "c", multiple: true },
  root: { type: "string" },
  "dry-run": { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

const EXAMPLE_NAME = "example-nodeconfig.yaml";

/**
 * The repository's data/: under BERTH_HOME (exported by bin/berth), else found
 * upwards from this module (src/cli/, dist/, dist/chunks/ or dist/snapshot/).
 */
function findExample(): string | undefined {
  const home = process.env.BERTH_HOME;
  if (home && existsSync(path.join(home, "data", EXAMPLE_NAME))) return path.join(home, "data", EXAMPLE_NAME);
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const p = path.join(dir, "data", EXAMPLE_NAME);
    if (existsSync(p)) return p;
    dir = path.dirname(dir);
  }
  return undefined;
}

export async function demoCommand(args: string[]): Promise<number> {
  const p = parseCommand(args, DEMO_OPTIONS, "demo", DEMO_HELP);
  if (typeof p === "number") return p;
  const userSources = p.values["config-source"] ?? [];
  if (userSources.some((s) => !s.startsWith("file://"))) return usageError("the demo reads file:// sources only (it never talks to IMDS)", "demo");

  const rootDir = p.values.root ?? (await mkdtemp(path.join(tmpdir(), "berth-demo-")));
  const root = new HostRoot(rootDir);
  let sources = userSources;
  if (sources.length === 0) {
    const example = findExample();
    if (!example) {
      return printErrors([{ code: "demo.no-example", message: `${EXAMPLE_NAME} is not beside this berth build`, hint: "run berth from its repository (bin/berth), or pass -c file:///path/to/nodeconfig.yaml" }]);
    }
    // A relative file:// source is read as it is (not re-rooted), so the scratch root holds only what berth writes.
    sources = [`file://${path.relative(process.cwd(), example)}`];
  }

  const [{ runConfigPhase }, { demoFacts }] = await Promise.all([import("../phases/config.ts"), import("../facts/static.ts")]);
  let facts: { ok: true; value: Awaited<ReturnType<typeof demoFacts>> };
  try {
    facts = { ok: true, value: await demoFacts() };
  } catch (e) {
    const errs = (e as { errors?: unknown }).errors;
    return printErrors(Array.isArray(errs) ? errs : [{ code: "demo.facts", message: `the embedded demo profile is unusable: ${e instanceof Error ? e.message : String(e)}`, hint: "this is a bug in berth's build; please report it" }]);
  }
  const dryRun = p.values["dry-run"] ?? false;
  process.stdout.write(`berth demo: config phase of ${sources.join(", ")}\n  instance: ${facts.value.instance.type} ${facts.value.instance.id} (${facts.value.instance.region}), ${facts.value.cpus} CPUs, kubelet ${facts.value.kubeletVersion}, containerd ${facts.value.containerdVersion} (embedded demo profile)\n  root: ${root.dir}\n`);
  const r = await runConfigPhase({
    sources,
    root,
    dryRun,
    facts: facts.value,
    // The demo must never reach for a metadata service.
    imds: {
      get: () => Promise.reject(new Error("the demo does not use IMDS")),
      getBytes: () => Promise.reject(new Error("the demo does not use IMDS")),
    },
    log: (l) => process.stderr.write(l + "\n"),
  });
  if (!r.ok) return printErrors(r.errors);
  if (r.value.apply) printApplyReport(r.value.apply, root, dryRun);
  if (!dryRun) process.stdout.write(`look around: ls -R ${root.dir}   (remove with: rm -r ${root.dir})\n`);
  return EXIT_OK;
}
