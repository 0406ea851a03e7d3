/**
 * Post-bootstrap tasks at run time. The config phase renders each task as a
 * oneshot unit (src/render/units.ts); this module is what those units and
 * the operator call:
 *
 *   berth task pull-images IMG...   pull images through CRI, with retries
 *   berth task status               each task unit's state, also recorded
 *                                   into berth's status file (tasks section)
 *
 * A task never blocks the kubelet: the run phase only enqueues
 * berth-tasks.target. Failures show up as a failed unit in `systemctl` and
 * as `state: "failed"` in `berth task status` / the status file.
 */
import { promises as fsp } from "node:fs";
import type { BerthSpec } from "../api/types.ts";
import type { CriClient } from "../host/cri.ts";
import { readTextIfPresent } from "../host/read.ts";
import { HostRoot } from "../host/root.ts";
import { CONTAINERD_CONFIG_PATH } from "../render/containerd.ts";
import type { Systemd, UnitState } from "../host/systemd.ts";
import { fail, formatError, ok, type Result } from "../util/result.ts";
import { errorMessage, toBerthError, toBerthErrors } from "../util/errors.ts";
import { retry, RetryExhausted, type Backoff } from "../util/retry.ts";
import { readRunStatus, writeRunStatus, type TaskRecord } from "../host/run-status.ts";
import { createLogger, type Logger } from "../util/log.ts";
import { RUN_STATUS_PATH } from "../util/node-layout.ts";
import { containerdRuntimeSettings } from "./steps/containerd-settings.ts";

export interface PullImagesOptions {
  root: HostRoot;
  /** Overall deadline for every image (CRI readiness included), ms. Default 15 min. */
  timeoutMs?: number;
  backoff?: Backoff;
  log: Logger;
  /** Test seams. */
  cri?: CriClient;
  waitForCri?: typeof import("../host/cri.ts").waitForCriReady;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface PulledImage {
  image: string;
  action: "present" | "pulled";
  attempts: number;
  durationMs: number;
}

const DEFAULT_PULL_TIMEOUT_MS = 15 * 60_000;
const DEFAULT_PULL_BACKOFF: Backoff = { initialMs: 1000, maxMs: 30_000, factor: 2, jitter: 0.5 };

/**
 * Pull each image through CRI (so it lands where the kubelet looks), in
 * order, skipping those already present. Waits for CRI first: a task can
 * start while containerd is being restarted.
 */
export async function pullImages(images: string[], opts: PullImagesOptions): Promise<Result<PulledImage[]>> {
  const start = Date.now();
  const deadline = start + (opts.timeoutMs ?? DEFAULT_PULL_TIMEOUT_MS);
  const toml = await readTextIfPresent(opts.root.path(CONTAINERD_CONFIG_PATH));
  const socket = opts.root.path(containerdRuntimeSettings(toml).socket);
  const cri = await import("../host/cri.ts");
  const client = opts.cri ?? cri.createCriClient(socket);
  const out: PulledImage[] = [];
  try {
    try {
      await (opts.waitForCri ?? cri.waitForCriReady)(socket, {
        deadlineMs: Math.max(1, deadline - Date.now()),
        client,
        onWait: (i) => opts.log.debug({ event: "cri.waiting", component: "task", phase: i.phase, cause: i.cause, attempt: i.attempt }),
      });
    } catch (e) {
      return fail(toBerthError(e, "task.cri-not-ready", "containerd's CRI is not ready", "check `systemctl status containerd`"));
    }
    for (const image of images) {
      const t = Date.now();
      const have = await client.imageStatus(image).catch(() => undefined);
      if (have) {
        out.push({ image, action: "present", attempts: 0, durationMs: Date.now() - t });
        opts.log.info({ event: "image.present", component: "task", cause: "already in containerd", image });
        continue;
      }
      let attempts = 0;
      try {
        await retry(
          async (a, remaining) => {
            attempts = a;
            return client.pullImage(image, { timeoutMs: Math.max(1, remaining) });
          },
          {
            ...(opts.backoff ?? DEFAULT_PULL_BACKOFF),
            deadline,
            ...(opts.sleep ? { sleep: opts.sleep } : {}),
            onRetry: (i) => opts.log.warn({ event: "image.pull-retry", component: "task", cause: errorMessage(i.cause), attempt: i.attempt, delayMs: i.delayMs, image }),
          },
        );
      } catch (e) {
        return fail({
          code: "task.pull-failed",
          message: `cannot pull ${image}: ${errorMessage(e)}`,
          where: { source: image },
          hint: "check the image name and that its registry is reachable from the node (containerd's hosts.toml under /etc/containerd/certs.d)",
          cause: e instanceof RetryExhausted ? e.lastError : e,
        });
      }
      out.push({ image, action: "pulled", attempts, durationMs: Date.now() - t });
      opts.log.info({ event: "image.pulled", component: "task", cause: `pulled in ${attempts} attempt(s)`, image, durationMs: Date.now() - t });
    }
    return ok(out);
  } finally {
    if (!opts.cri) client.close();
  }
}

// ---------------------------------------------------------------- status

export type TaskState = "pending" | "running" | "succeeded" | "failed" | "unknown";

export interface TaskStatus {
  name: string;
  unit: string;
  state: TaskState;
  /** systemd's ActiveState/SubState/Result, for the operator. */
  activeState: string;
  subState: string;
  result: string;
}

/** Pure: a task unit's systemd state → berth's task state. */
export function taskStateOf(s: UnitState): TaskState {
  if (s.loadState === "not-found") return "unknown";
  if (s.activeState === "failed") return "failed";
  if (s.activeState === "active") return "succeeded"; // oneshot + RemainAfterExit
  if (s.activeState === "activating") return "running";
  if (s.activeState === "inactive") return s.result && s.result !== "success" ? "failed" : "pending";
  return "unknown";
}

export async function taskStatuses(sd: Systemd, berth: BerthSpec | undefined, recorded?: TaskRecord[]): Promise<TaskStatus[]> {
  const names = berth?.tasks?.map((t) => t.name) ?? recorded?.map((t) => t.name) ?? [];
  const out: TaskStatus[] = [];
  for (const name of names) {
    const unit = `berth-task-${name}.service`;
    const s = await sd.unitState(unit);
    out.push({ name, unit, state: taskStateOf(s), activeState: s.activeState, subState: s.subState, result: s.result });
  }
  return out;
}

// ---------------------------------------------------------------- CLI

export const TASK_HELP = `Usage: berth task COMMAND [options]

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


/** `berth task ...`; returns the exit status. */
export async function taskCommand(args: string[]): Promise<number> {
  const { parseArgs } = process.getBuiltinModule("node:util");
  let parsed;
  try {
    parsed = parseArgs({ args, allowPositionals: true, strict: true, options: { root: { type: "string" }, timeout: { type: "string" }, help: { type: "boolean", short: "h" } } });
  } catch (e) {
    process.stderr.write(`error: ${errorMessage(e)}\n  hint: run 'berth task --help' for usage\n`);
    return 2;
  }
  const [sub, ...rest] = parsed.positionals;
  if (parsed.values.help || sub === undefined) {
    (parsed.values.help ? process.stdout : process.stderr).write(TASK_HELP);
    return parsed.values.help ? 0 : 2;
  }
  const root = new HostRoot(parsed.values.root ?? "/");
  const log = await createLogger({ app: "berth-task" });
  if (sub === "pull-images") {
    if (rest.length === 0) {
      process.stderr.write("error: pull-images needs at least one image\n  hint: berth task pull-images registry/repo:tag ...\n");
      return 2;
    }
    const timeoutMs = parsed.values.timeout !== undefined ? Number(parsed.values.timeout) : undefined;
    if (timeoutMs !== undefined && !(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
      process.stderr.write(`error: --timeout ${parsed.values.timeout} is not a positive number of milliseconds\n`);
      return 2;
    }
    const r = await pullImages(rest, { root, log, ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
    if (!r.ok) {
      for (const e of r.errors) process.stderr.write(`${formatError(e)}\n`);
      return 1;
    }
    return 0;
  }
  if (sub === "status") {
    const { connectSystemd } = await import("../host/systemd.ts");
    const prev = await readRunStatus(root.path(RUN_STATUS_PATH));
    let sd: Systemd | undefined;
    try {
      sd = await connectSystemd();
      const st = await taskStatuses(sd, undefined, prev?.tasks);
      process.stdout.write(`${JSON.stringify(st, null, 2)}\n`);
      if (prev) await writeRunStatus(root, { ...prev, tasks: st.map((t) => ({ name: t.name, unit: t.unit, state: t.state, result: t.result })) });
      return st.some((t) => t.state === "failed") ? 1 : 0;
    } catch (e) {
      const errs = toBerthErrors(e, "task.status", "cannot read the state of berth's tasks from systemd");
      for (const er of errs) process.stderr.write(`${formatError(er)}\n`);
      return 1;
    } finally {
      sd?.close();
    }
  }
  process.stderr.write(`error: unknown task command '${sub}'\n  hint: run 'berth task --help'\n`);
  return 2;
}
