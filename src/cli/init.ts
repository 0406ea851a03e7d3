/** `berth init`: the config phase, then the run phase (nodeadm's words and flags). */
import type { BerthLock } from "../host/lock.ts";
import { HostRoot } from "../host/root.ts";
import {
  CONFIG_SOURCE_OPTION,
  DEFAULT_CONFIG_SOURCE,
  EXIT_OK,
  parseCommand,
  printErrors,
  printWarnings,
  refuseNonRoot,
  usageError,
  VALIDATE_OPTION,
  validationFlag,
} from "./args.ts";
import { printApplyReport } from "./output.ts";
import { berthExecutable } from "./self.ts";

const INIT_HELP = `Usage: berth init [options]

Bootstrap this node: the config phase writes kubelet, containerd and systemd
files from the NodeConfig and the node's facts; the run phase starts
containerd and kubelet.

Options:
  -c, --config-source URL  config source, repeatable, later wins
                           (imds://user-data [default], file:///path.yaml, file:///dir/)
  -s, --skip PHASE         skip a phase: config | run (repeatable)
      --config-cache PATH  cache the resolved config at PATH; reused when the
                           spec is unchanged, used when no source yields a config
      --root DIR           treat DIR as the node's / for every path read or written
      --dry-run            print a unified diff of what would change; write nothing
      --validate MODE      strict (default): unknown fields are errors; warn: they
                           are dropped with a warning, as nodeadm drops them (wins
                           over the BerthConfig's spec.validation)
  -d, --daemon NAME        nodeadm's testing switch (containerd | kubelet) to
                           handle one daemon only; berth always configures and
                           runs both, so only naming both is accepted
  -h, --help               this help

Environment:
  BERTH_LOCK_TIMEOUT_MS    how long to wait while another berth run holds the
                           lock on the root (default 600000, 10 minutes)
`;

const INIT_OPTIONS = {
  ...CONFIG_SOURCE_OPTION,
  skip: { type: "string", short: "s", multiple: true },
  "config-cache": { type: "string" },
  root: { type: "string" },
  "dry-run": { type: "boolean" },
  ...VALIDATE_OPTION,
  daemon: { type: "string", short: "d", multiple: true },
  help: { type: "boolean", short: "h" },
} as const;

const DAEMONS = new Set(["containerd", "kubelet"]);

const PHASES = new Set(["config", "run"]);

/** `--skip` and `--daemon`: the phases to skip, or the exit status of a usage error (printed). */
function skippedPhases(skipArgs: string[], daemonArgs: string[]): Set<string> | number {
  const skip = new Set<string>();
  for (const s of skipArgs) {
    for (const phase of s.split(",")) {
      if (!PHASES.has(phase)) return usageError(`unknown phase '${phase}' for --skip (expected config or run)`, "init");
      skip.add(phase);
    }
  }
  // nodeadm's -d limits configure/run to some daemons "for testing". berth's plan
  // and run phase are one unit (the kubelet's files name containerd's socket and
  // cgroup driver), so a subset is refused rather than half-done.
  const daemons = new Set<string>();
  for (const d of daemonArgs) {
    for (const name of d.split(",")) {
      if (!DAEMONS.has(name)) return usageError(`unknown daemon '${name}' for --daemon (nodeadm's names: containerd, kubelet)`, "init");
      daemons.add(name);
    }
  }
  if (daemons.size > 0 && daemons.size < DAEMONS.size) {
    return printErrors([
      {
        code: "cli.daemon-unsupported",
        message:
          `--daemon ${[...daemons].join(",")}: berth does not configure or run one daemon alone (nodeadm offers this ` +
          `for testing only)`,
        hint:
          "drop --daemon: berth init always configures and starts both containerd and kubelet; berth-agent.service keeps " +
          "them healthy afterwards",
      },
    ]);
  }
  return skip;
}

export async function initCommand(args: string[]): Promise<number> {
  const p = parseCommand(args, INIT_OPTIONS, "init", INIT_HELP);
  if (typeof p === "number") return p;
  const v = p.values;
  const skip = skippedPhases(v.skip ?? [], v.daemon ?? []);
  if (typeof skip === "number") return skip;
  if (v["config-cache"] !== undefined && !v["config-cache"].startsWith("/")) {
    return usageError(
      `--config-cache must be an absolute path on the node (like /run/eks/nodeadm/config.json), not '${v["config-cache"]}'`,
      "init",
    );
  }
  const validation = validationFlag(v.validate, "init");
  if (typeof validation === "number") return validation;
  const root = new HostRoot(v.root ?? "/");
  const sources = v["config-source"]?.length ? v["config-source"] : [DEFAULT_CONFIG_SOURCE];
  const dryRun = v["dry-run"] ?? false;

  const notRoot = refuseNonRoot(
    root.isHost && !dryRun,
    "berth init writes system files under / and manages systemd units",
    "write into a scratch root",
  );
  if (notRoot !== undefined) return notRoot;

  // A dry run changes nothing, so there is nothing for the run phase to start.
  const wantRun = !skip.has("run") && !dryRun;

  // One writing run at a time: the berth lock (src/host/lock.ts), held from the config phase
  // through the run phase, so a second init waits (and says so) instead of mixing its files in.
  let lock: BerthLock | undefined;
  if (!dryRun) {
    const { acquireLock, lockTimeoutFromEnv } = await import("../host/lock.ts");
    const timeout = lockTimeoutFromEnv(process.env);
    if (!timeout.ok) return printErrors(timeout.errors);
    const l = await acquireLock(root, {
      command: "berth init",
      timeoutMs: timeout.value,
      log: (line) => process.stderr.write(line + "\n"),
    });
    if (!l.ok) return printErrors(l.errors);
    lock = l.value;
  }
  try {
    const { runConfigPhase } = await import("../phases/config.ts");
    const r = await runConfigPhase({
      sources,
      root,
      dryRun,
      skipConfig: skip.has("config"),
      ...(v["config-cache"] !== undefined ? { cachePath: v["config-cache"] } : {}),
      env: process.env,
      berthPath: berthExecutable(),
      log: (l) => process.stderr.write(l + "\n"),
      ...(lock ? { lock } : {}),
      ...(validation ? { validation } : {}),
      // Before anything else is reported, so also ahead of the errors of a config that then fails.
      onSources: (report) => printWarnings(report.warnings),
    });
    if (!r.ok) return printErrors(r.errors);
    if (r.value.skipped) process.stderr.write("config phase skipped (--skip config)\n");
    else if (r.value.apply) printApplyReport(r.value.apply, root, dryRun);
    if (r.value.cacheWritten) process.stderr.write(`config cached at ${root.path(v["config-cache"]!)}\n`);

    if (wantRun) {
      const { runPhase } = await import("../phases/run.ts");
      const rr = await runPhase({
        root,
        config: r.value.config,
        ...(r.value.facts ? { facts: r.value.facts } : {}),
        ...(r.value.apply
          ? { applied: { written: [...r.value.apply.written, ...r.value.apply.removed], unitsChanged: r.value.apply.unitsChanged } }
          : {}),
        env: process.env,
        ...(lock ? { lock } : {}),
      });
      if (!rr.ok) return printErrors(rr.errors);
    } else if (dryRun && !skip.has("run")) process.stderr.write("dry run: run phase not started\n");
    return EXIT_OK;
  } finally {
    lock?.release();
  }
}
