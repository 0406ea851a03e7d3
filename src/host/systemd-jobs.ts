/**
 * systemd jobs awaited to their end: a StartUnit/RestartUnit/StopUnit call
 * returns a job path at once, and the job's result arrives later in a
 * `JobRemoved` signal, sometimes before the call's reply. Each wait has a
 * deadline; a lost connection ends every wait at once. Never polls.
 */
import { MANAGER, SystemdError, type SystemdBus } from "./systemd-bus.ts";
import type { JobOptions, JobResult } from "./systemd.ts";

export type JobMember = "StartUnit" | "RestartUnit" | "StopUnit";

const JOB_RESULTS: ReadonlySet<string> = new Set<JobResult>(["done", "failed", "timeout", "canceled", "dependency", "skipped"]);

interface JobWaiter {
  unit: string;
  /** Known once the StartUnit/... reply arrives. */
  jobPath?: string;
  /** JobRemoved signals for this unit seen before the reply (the signal can race the reply). */
  early: Array<{ jobPath: string; result: string }>;
  settle?: (result: string) => void;
}

export interface JobRunner {
  /** Queue the job and wait for its result (default deadline 90 s, systemd's own start timeout). */
  run(member: JobMember, unit: string, o: JobOptions | undefined): Promise<JobResult>;
}

/** Route JobRemoved signals on `bus` to the jobs waiting for them. The caller subscribes the bus to JobRemoved. */
export function jobRunner(bus: SystemdBus): JobRunner {
  const waiters = new Set<JobWaiter>();
  bus.onSignal((m) => {
    if (m.interface !== MANAGER || m.member !== "JobRemoved") return;
    const [, jobPath, unit, result] = m.body as [unknown, string, string, string];
    for (const w of waiters) {
      if (w.unit !== unit) continue;
      if (w.jobPath === undefined) w.early.push({ jobPath, result });
      else if (w.jobPath === jobPath) w.settle?.(result);
    }
  });
  bus.onLost(() => {
    for (const w of waiters) w.settle?.("__disconnected");
  });
  return { run: (member, unit, o) => runJob(bus, waiters, member, unit, o) };
}

async function runJob(
  bus: SystemdBus,
  waiters: Set<JobWaiter>,
  member: JobMember,
  name: string,
  o: JobOptions | undefined,
): Promise<JobResult> {
  const timeoutMs = o?.timeoutMs ?? 90_000;
  const w: JobWaiter = { unit: name, early: [] };
  // Registered BEFORE the call: JobRemoved can arrive before we know the job path.
  waiters.add(w);
  let timer: NodeJS.Timeout | undefined;
  try {
    const done = new Promise<string>((resolve) => {
      w.settle = resolve;
    });
    const reply = await bus.call(member, { signature: "ss", body: [name, o?.mode ?? "replace"], unit: name });
    w.jobPath = String(reply.body[0]);
    const early = w.early.find((e) => e.jobPath === w.jobPath);
    const deadline = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve("__deadline"), timeoutMs);
    });
    const result = early ? early.result : await Promise.race([done, deadline]);
    return jobResult(result, member, name, w.jobPath, timeoutMs, bus.address);
  } finally {
    clearTimeout(timer);
    waiters.delete(w);
  }
}

/** The job's result, or the SystemdError for a job that did not end with one. */
function jobResult(result: string, member: JobMember, name: string, jobPath: string, timeoutMs: number, address: string): JobResult {
  const where = { source: address, path: name };
  if (result === "__deadline") {
    const message = `${member} of ${name}: job ${jobPath} did not finish within ${timeoutMs} ms (it is still queued in systemd)`;
    const hint = `check \`systemctl list-jobs\`, \`systemctl status ${name}\` and \`journalctl -u ${name}\``;
    throw new SystemdError({ code: "systemd.job-deadline", message, where, hint }, name);
  }
  if (result === "__disconnected") {
    const message = `${member} of ${name}: the D-Bus connection was lost while waiting for job ${jobPath}`;
    throw new SystemdError({ code: "systemd.disconnected", message, where, hint: "reconnect and check the unit's state" }, name);
  }
  if (!JOB_RESULTS.has(result)) {
    throw new SystemdError({ code: "systemd.call-failed", message: `${member} of ${name}: unknown job result "${result}"`, where }, name);
  }
  return result as JobResult;
}
