/**
 * `berth install`: bake berth's boot units into an image, without a NodeConfig.
 *
 * It writes exactly what the config phase's unit renderer produces for a
 * config with no berth settings (no tasks, no reboot-once): the same bytes,
 * so at first boot berth-config.service runs the config phase, which
 * re-renders these files, finds them unchanged and leaves them alone (no
 * rewrite, no daemon-reload for them). A config that adds tasks or
 * rebootAfterBootstrap changes berth-tasks.target / berth.target then, as any
 * config change would.
 */
import { existsSync } from "node:fs";
import { HostRoot } from "../host/root.ts";
import { BERTH_PATH_DROPIN, DEFAULT_BERTH_PATH } from "../util/node-layout.ts";
import { berthExecutable } from "./self.ts";
import { EXIT_OK, parseCommand, printErrors, refuseNonRoot, usageError } from "./args.ts";
import { printApplyReport } from "./output.ts";

const INSTALL_HELP = `Usage: berth install [options]

Write berth's own boot units (berth-config.service, berth-run.service,
berth-agent.service, berth.target, berth-tasks.target, kubelet.service,
runtime.slice, the containerd and multi-user.target drop-ins) and nothing
else: no NodeConfig is read, no kubelet or containerd configuration is
written. Meant for image builds (Packer, a Dockerfile, a chroot via --root).

First boot: multi-user.target wants berth-config.service, which runs
'berth init --skip run' (user data from imds://user-data): it writes the
kubelet and containerd configuration, re-renders these units (unchanged
bytes are not rewritten) and then berth.target starts berth-run.service
(containerd, CRI, sandbox image, kubelet) and berth-agent.service.

Options:
      --root DIR          treat DIR as the node's / (e.g. the image's mounted root)
      --berth-path PATH   absolute path of berth on the node, used in ExecStart=
                          (default: $BERTH_PATH, else this executable's own
                          path); it must exist (under --root); a path other
                          than /usr/bin/berth is also recorded as BERTH_PATH
                          for berth-config.service, so the first-boot config
                          phase renders the same units
      --remove            delete what install writes (the packages' removal
                          scripts run this); configuration and data stay
      --dry-run           print a unified diff of what would change; write nothing
  -h, --help              this help
`;

const INSTALL_OPTIONS = {
  root: { type: "string" },
  remove: { type: "boolean" },
  "berth-path": { type: "string" },
  "dry-run": { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export async function installCommand(args: string[]): Promise<number> {
  const p = parseCommand(args, INSTALL_OPTIONS, "install", INSTALL_HELP);
  if (typeof p === "number") return p;
  const v = p.values;
  const [{ renderUnits, UNIT_HEADER, execArg }, { applyPlan }] = await Promise.all([import("../render/units.ts"), import("../host/fs.ts")]);
  // The executable running now (or $BERTH_PATH), as `berth init` renders it, so first boot renders the same ExecStart= lines.
  const berthPath = v["berth-path"] ?? berthExecutable();
  if (!berthPath.startsWith("/"))
    return usageError(`--berth-path must be absolute (systemd needs it in ExecStart=), not '${berthPath}'`, "install");
  if (/[\s"'\\$%]/.test(berthPath))
    return usageError(`--berth-path '${berthPath}' has whitespace, quotes or systemd specials; use a plain path`, "install");
  const root = new HostRoot(v.root ?? "/");
  const dryRun = v["dry-run"] ?? false;
  const remove = v.remove ?? false;
  const what = remove
    ? "berth install --remove deletes systemd units under /etc/systemd/system"
    : "berth install writes systemd units under /etc/systemd/system";
  const notRoot = refuseNonRoot(root.isHost && !dryRun, what, "write into an image's root");
  if (notRoot !== undefined) return notRoot;
  // A unit must never name an executable that is not there (systemd would fail it with status=203/EXEC).
  if (!remove && !existsSync(root.path(berthPath))) {
    return printErrors([
      {
        code: "install.no-executable",
        message: `the units would run ${berthPath}, which does not exist${root.isHost ? "" : ` under --root ${root.dir}`}`,
        where: { path: root.path(berthPath) },
        hint: root.isHost
          ? "install berth there first, or pass --berth-path with the path berth has on this node"
          : `copy berth into the image first (e.g. to ${root.path(DEFAULT_BERTH_PATH)}) and pass --berth-path ${DEFAULT_BERTH_PATH}`,
      },
    ]);
  }

  const units = renderUnits({}, { berthPath });
  if (!units.ok) return printErrors(units.errors);
  const files = [...units.value];
  const absent: string[] = [];
  if (berthPath !== DEFAULT_BERTH_PATH) {
    // berth-config.service's first-boot config phase must render the units with this same path.
    files.push({
      path: BERTH_PATH_DROPIN,
      content: `${UNIT_HEADER}\n[Service]\nEnvironment=${execArg(`BERTH_PATH=${berthPath}`)}\n`,
      mode: 0o644,
      component: "install",
    });
  } else {
    // Installing again with the default path: a drop-in from an earlier --berth-path would now lie.
    absent.push(BERTH_PATH_DROPIN);
  }
  // --remove: every file install writes goes (the packages' removal scripts run this); config and data stay.
  const plan = remove ? { files: [], absent: [...absent, ...files.map((f) => f.path)] } : { files, absent };
  plan.files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  // Under the berth lock (src/host/lock.ts), like the config phase: one writing run at a time.
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  const r = dryRun
    ? await applyPlan(plan, root, { dryRun })
    : await (await import("../host/lock.ts")).withLock(root, { command: "berth install", log }, (lock) => applyPlan(plan, root, { lock }));
  if (!r.ok) return printErrors(r.errors);
  printApplyReport(r.value, root, dryRun);
  return EXIT_OK;
}
