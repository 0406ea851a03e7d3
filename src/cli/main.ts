/**
 * berth's entry point. Deliberately tiny: it only picks the command and
 * lazy-imports that command's module, so `--help`, `--version` and the config
 * phase never load code (AWS clients, CEL, gRPC, D-Bus) they do not need.
 * Startup time is a requirement (bench/config-phase.ts).
 */
import { VERSION, versionLine } from "./version.ts";
import { exitWhenFlushed, guardOutput } from "./output.ts";
import { formatError } from "../util/result.ts";

const TOP_HELP = `berth ${VERSION} — turns a machine into a Kubernetes worker node (nodeadm-compatible NodeConfig)

Usage:
  berth init [-c|--config-source URL]... [-s|--skip config|run]... [--config-cache PATH] [--root DIR] [--dry-run]
  berth config check [-c URL]...
  berth config dump [-c URL]... [--config-cache PATH] [-o|--config-output FILE] [--format json|yaml]
  berth install [--root DIR] [--berth-path PATH] [--dry-run]
  berth task pull-images IMAGE... | berth task status
  berth demo [--root DIR] [--dry-run]
  berth agent [options]
  berth status [--json]
  berth doctor [-c URL]... [--config-cache PATH] [-o table|json] [--root DIR]
  berth timeline [-o text|json] [--svg FILE] [--root DIR]
  berth --version | --help

Commands:
  init          bootstrap this node: config phase (write kubelet/containerd/systemd files), then run phase
  config check  decode, merge and validate the configuration; writes nothing
  config dump   print the merged NodeConfig (JSON like nodeadm, or --format yaml)
  install       write berth's boot units only (for baking into an image); the config phase runs at first boot
  task          post-bootstrap tasks (what the berth-task-*.service units run)
  demo          config phase of the example NodeConfig into a scratch root, against an embedded instance profile
  agent         the long-running health agent: probe and repair containerd and kubelet
  status        the node's state: phases done, component health, last repairs
  doctor        what stands between this node and Ready, and what to do about it (each check with a deadline; <= 10 s)
  timeline      where the boot's time went: systemd's timestamps and the run phase's steps from boot, critical path, berth's share

Config sources (repeatable, later wins): imds://user-data (default), file:///path/to/file.yaml, file:///dir/
Run 'berth COMMAND --help' for a command's options.
`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
      process.stderr.write(TOP_HELP);
      return 2;
    case "-h":
    case "--help":
    case "help":
      process.stdout.write(TOP_HELP);
      return 0;
    case "-V":
    case "--version":
    case "version":
      process.stdout.write(versionLine());
      return 0;
    case "init":
      return (await import("./init.ts")).initCommand(rest);
    case "config": {
      const [sub, ...subRest] = rest;
      if (sub === "check") return (await import("./config.ts")).checkCommand(subRest);
      if (sub === "dump") return (await import("./config.ts")).dumpCommand(subRest);
      if (sub === "-h" || sub === "--help") {
        process.stdout.write((await import("./config.ts")).CONFIG_HELP);
        return 0;
      }
      // Through formatError: the user's word is escaped, so it cannot forge lines of its own.
      const what = `${sub === undefined ? "missing" : "unknown"} config subcommand${sub ? ` '${sub}'` : ""}`;
      process.stderr.write(
        formatError({ code: "cli.usage", message: what, hint: "use 'berth config check' or 'berth config dump'" }) + "\n",
      );
      return 2;
    }
    case "demo":
      return (await import("./demo.ts")).demoCommand(rest);
    case "install":
      return (await import("./install.ts")).installCommand(rest);
    case "task":
      return (await import("./task.ts")).taskCommand(rest);
    case "agent":
      return (await import("./agent.ts")).agentCommand(rest);
    case "status":
      return (await import("./status.ts")).statusCommand(rest);
    case "doctor":
      return (await import("./doctor.ts")).doctorCommand(rest);
    case "timeline":
      return (await import("./timeline.ts")).timelineCommand(rest);
    default:
      process.stderr.write(
        formatError({ code: "cli.usage", message: `unknown command '${cmd}'`, hint: "run 'berth --help' for the list of commands" }) + "\n",
      );
      return 2;
  }
}

guardOutput();
main(process.argv.slice(2)).then(
  (code) => exitWhenFlushed(code),
  (e: unknown) => {
    // Only a bug in berth gets here; user errors are Results printed by the commands.
    process.stderr.write(
      `berth: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n  hint: this is a ` +
        `bug in berth; please report it with the command you ran\n`,
    );
    return exitWhenFlushed(1);
  },
);
