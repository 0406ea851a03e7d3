/**
 * Post-bootstrap tasks at run time. The config phase renders each task as a
 * oneshot unit (src/render/units.ts); `berth task` (src/cli/task.ts) calls
 * this module from those units and for the operator: pull images through
 * CRI with retries, and read (and record) each task unit's state.
 *
 * A task never blocks the kubelet: the run phase only enqueues
 * berth-tasks.target. Failures show up as a failed unit in `systemctl` and
 * as `state: "failed"` in `berth task status` / the status file.
 */
import type { BerthSpec } from "../api/types.ts";
import type { CriClient, waitForCriReady } from "../host/cri.ts";
import { readTextIfPresent } from "../host/read.ts";
import type { HostRoot } from "../host/root.ts";
import type { Systemd, UnitState } from "../host/systemd.ts";
import { fail, ok, type Result } from "../util/result.ts";
import { errorMessage, toBerthError } from "../util/errors.ts";
import { retry, RetryExhausted, type Backoff } from "../util/retry.ts";
import { readRunStatus, writeRunStatus, type TaskRecord } from "../host/run-status.ts";
import type { Logger } from "../util/log.ts";
import { CONTAINERD_CONFIG_PATH, RUN_STATUS_PATH } from "../util/node-layout.ts";
import { containerdRuntimeSettings } from "./steps/containerd-settings.ts";

export interface PullImagesOptions {
  root: HostRoot;
  /** Overall deadline for every image (CRI readiness included), ms. Default 15 min. */
  timeoutMs?: number;
  backoff?: Backoff;
  log: Logger;
  /** Test seams. */
  cri?: CriClient;
  waitForCri?: typeof waitForCriReady;
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
            onRetry: (i) =>
              opts.log.warn({
                event: "image.pull-retry",
                component: "task",
                cause: errorMessage(i.cause),
                attempt: i.attempt,
                delayMs: i.delayMs,
                image,
              }),
          },
        );
      } catch (e) {
        return fail({
          code: "task.pull-failed",
          message: `cannot pull ${image}: ${errorMessage(e)}`,
          where: { source: image },
          hint:
            "check the image name and that its registry is reachable from the node (containerd's hosts.toml under " +
            "/etc/containerd/certs.d)",
          cause: e instanceof RetryExhausted ? e.lastError : e,
        });
      }
      out.push({ image, action: "pulled", attempts, durationMs: Date.now() - t });
      opts.log.info({
        event: "image.pulled",
        component: "task",
        cause: `pulled in ${attempts} attempt(s)`,
        image,
        durationMs: Date.now() - t,
      });
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

async function taskStatuses(sd: Systemd, berth: BerthSpec | undefined, recorded?: TaskRecord[]): Promise<TaskStatus[]> {
  const names = berth?.tasks?.map((t) => t.name) ?? recorded?.map((t) => t.name) ?? [];
  const out: TaskStatus[] = [];
  for (const name of names) {
    const unit = `berth-task-${name}.service`;
    const s = await sd.unitState(unit);
    out.push({ name, unit, state: taskStateOf(s), activeState: s.activeState, subState: s.subState, result: s.result });
  }
  return out;
}

/**
 * Each task unit's state from systemd, recorded into the run status file's
 * tasks section when that file exists (`berth task status`). Throws when
 * systemd cannot be asked.
 */
export async function recordTaskStatuses(root: HostRoot): Promise<TaskStatus[]> {
  const { connectSystemd } = await import("../host/systemd.ts");
  const prev = await readRunStatus(root.path(RUN_STATUS_PATH));
  const sd = await connectSystemd();
  try {
    const statuses = await taskStatuses(sd, undefined, prev?.tasks);
    if (prev)
      await writeRunStatus(root, {
        ...prev,
        tasks: statuses.map((t) => ({ name: t.name, unit: t.unit, state: t.state, result: t.result })),
      });
    return statuses;
  } finally {
    sd.close();
  }
}
