/**
 * `berth task ...`: what the rendered berth-task-*.service units run
 * (`berth task pull-images IMAGE...`) and `berth task status`. Arguments,
 * help and exit statuses (0 ok, 1 failure, 2 usage) only; the work is
 * src/phases/tasks.ts, loaded once a subcommand actually runs (CRI, D-Bus,
 * pino stay out of `--help` and usage errors).
 */
import { HostRoot } from "../host/root.ts";
import { toBerthErrors } from "../util/errors.ts";
import { EXIT_FAIL, EXIT_OK, EXIT_USAGE, parse, printErrors, usageError } from "./args.ts";

const TASK_HELP = `Usage: berth task COMMAND [options]

Post-bootstrap tasks (run by the berth-task-*.service units).

Commands:
  pull-images IMAGE...   pull images through containerd's CRI, with retries
  status                 print each task unit's state as JSON and record it
                         in berth's status file (/run/berth/status.json)

Options:
      --root DIR         treat DIR as the node's /
      --timeout MS       pull-images: overall deadline (default 900000)
  -h, --help             this help
`;

const TASK_OPTIONS = {
  root: { type: "string" },
  timeout: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** `berth task ...`; returns the exit status. */
export async function taskCommand(args: string[]): Promise<number> {
  const parsed = parse(args, TASK_OPTIONS, "task");
  if (!parsed) return EXIT_USAGE;
  const [sub, ...rest] = parsed.positionals;
  if (parsed.values.help || sub === undefined) {
    (parsed.values.help ? process.stdout : process.stderr).write(TASK_HELP);
    return parsed.values.help ? EXIT_OK : EXIT_USAGE;
  }
  const root = new HostRoot(parsed.values.root ?? "/");
  if (sub === "pull-images") {
    if (rest.length === 0) return usageError("pull-images needs at least one image: berth task pull-images registry/repo:tag ...", "task");
    const timeout = parsed.values.timeout;
    const timeoutMs = timeout !== undefined ? Number(timeout) : undefined;
    if (timeoutMs !== undefined && !(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
      return usageError(`--timeout ${timeout} is not a positive number of milliseconds`, "task");
    }
    const [{ pullImages }, { createLogger }] = await Promise.all([import("../phases/tasks.ts"), import("../util/log.ts")]);
    const log = await createLogger({ app: "berth-task" });
    const r = await pullImages(rest, { root, log, ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
    return r.ok ? EXIT_OK : printErrors(r.errors);
  }
  if (sub === "status") {
    const { recordTaskStatuses } = await import("../phases/tasks.ts");
    try {
      const statuses = await recordTaskStatuses(root);
      process.stdout.write(`${JSON.stringify(statuses, null, 2)}\n`);
      return statuses.some((t) => t.state === "failed") ? EXIT_FAIL : EXIT_OK;
    } catch (e) {
      return printErrors(toBerthErrors(e, "task.status", "cannot read the state of berth's tasks from systemd"));
    }
  }
  return usageError(`unknown task command '${sub}'`, "task");
}
