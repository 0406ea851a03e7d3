/**
 * The run status file (RUN_STATUS_PATH, in /run so a reboot forgets it): its
 * schema, the one reader and the one writer. The run phase and `berth task
 * status` write it; the agent and `berth status` read it. Never a second
 * shape: a document that does not match the schema reads as absent.
 */
import type { JobResult } from "./systemd.ts";
import type { BerthLock } from "./lock.ts";
import type { HostRoot } from "./root.ts";
import { readTextIfPresent } from "./read.ts";
import { BerthFailure } from "../util/result.ts";
import { RUN_STATUS_PATH } from "../util/node-layout.ts";

/** ok: nothing needed doing; changed: it acted; skipped: it did not run; failed: see `cause` and `code`. */
export type StepOutcomeKind = "ok" | "changed" | "skipped" | "failed";

const OUTCOMES: readonly string[] = ["ok", "changed", "skipped", "failed"] satisfies StepOutcomeKind[];
const RESULTS: readonly string[] = ["running", "succeeded", "failed"] satisfies RunStatus["result"][];

/** One step of the run phase, as the status file records it (src/phases/steps/step.ts makes these). */
export interface StepRecord {
  step: string;
  outcome: StepOutcomeKind;
  /** ok and changed: what the step did (`start`, `restart`, `none`, `reloaded`, `pulled`, ...). */
  action?: string;
  cause?: string;
  /** failed: the error's code. */
  code?: string;
  /** Start and end, ms since the epoch (the timeline draws these), and their difference. */
  startMs: number;
  endMs: number;
  durationMs: number;
}

/** What the ensure-unit step found and did for containerd or the kubelet. */
export interface UnitRecord {
  action: "none" | "start" | "restart";
  cause: string;
  jobResult?: JobResult;
  /** The kubelet's main PID once it is confirmed active. */
  mainPid?: number;
}

export interface CriRecord {
  readyMs: number;
  attempts: number;
  runtimeName: string;
  runtimeVersion: string;
}

export interface SandboxImageRecord {
  image: string;
  action: "present" | "pulled" | "imported";
  attempts: number;
}

/** A task unit; `state` and `result` are filled in by `berth task status` (tasks run after the run phase). */
export interface TaskRecord {
  name: string;
  unit: string;
  state?: string;
  result?: string;
}

/** The document at RUN_STATUS_PATH. */
export interface RunStatus {
  apiVersion: "berth.dev/v1alpha1";
  kind: "RunStatus";
  result: "running" | "succeeded" | "failed";
  startedAt: string;
  finishedAt?: string;
  durationMs?: number;
  /** Every step of the run phase, in order, with its outcome and times. */
  steps: StepRecord[];
  containerd?: UnitRecord;
  cri?: CriRecord;
  sandboxImage?: SandboxImageRecord;
  kubelet?: UnitRecord;
  tasks?: TaskRecord[];
  rebootAfterBootstrap?: boolean;
  error?: { code: string; message: string; hint?: string };
  /** Fingerprint of the unit directories at the last daemon-reload (src/phases/steps/daemon-reload.ts). */
  unitsFingerprint?: string;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const optional = (v: unknown, type: "string" | "number" | "boolean"): boolean => v === undefined || typeof v === type;

function isStepRecord(v: unknown): v is StepRecord {
  return (
    isObject(v) &&
    typeof v.step === "string" &&
    OUTCOMES.includes(v.outcome as string) &&
    typeof v.startMs === "number" &&
    typeof v.endMs === "number" &&
    typeof v.durationMs === "number" &&
    optional(v.action, "string") &&
    optional(v.cause, "string") &&
    optional(v.code, "string")
  );
}

/** The schema check: the document, or undefined when it is not a RunStatus. */
export function parseRunStatus(doc: unknown): RunStatus | undefined {
  if (!isObject(doc) || doc.apiVersion !== "berth.dev/v1alpha1" || doc.kind !== "RunStatus") return undefined;
  if (!RESULTS.includes(doc.result as string) || typeof doc.startedAt !== "string") return undefined;
  if (!Array.isArray(doc.steps) || !doc.steps.every(isStepRecord)) return undefined;
  if (!optional(doc.finishedAt, "string") || !optional(doc.durationMs, "number") || !optional(doc.unitsFingerprint, "string"))
    return undefined;
  if (!optional(doc.rebootAfterBootstrap, "boolean")) return undefined;
  for (const k of ["containerd", "cri", "sandboxImage", "kubelet"]) if (doc[k] !== undefined && !isObject(doc[k])) return undefined;
  if (doc.tasks !== undefined && !(Array.isArray(doc.tasks) && doc.tasks.every((t) => isObject(t) && typeof t.name === "string")))
    return undefined;
  const err = doc.error;
  if (err !== undefined && !(isObject(err) && typeof err.code === "string" && typeof err.message === "string")) return undefined;
  return doc as unknown as RunStatus;
}

/** Bootstrap is over once the run phase no longer runs, failed included: repairs may help exactly there. */
export function isBootstrapDone(status: RunStatus): boolean {
  return status.result !== "running";
}

/** `file` is a real path (already under any --root); undefined when absent, unreadable or not a RunStatus. */
export async function readRunStatus(file: string): Promise<RunStatus | undefined> {
  let text: string | undefined;
  try {
    text = await readTextIfPresent(file);
  } catch {
    return undefined;
  }
  if (text === undefined) return undefined;
  try {
    return parseRunStatus(JSON.parse(text));
  } catch {
    return undefined;
  }
}

/**
 * Through the one atomic write (src/host/fs.ts, loaded only here so readers
 * stay light); throws a BerthFailure. `lock`: the berth lock, when the caller
 * holds it (stale temp files are then swept).
 */
export async function writeRunStatus(root: HostRoot, status: RunStatus, lock?: BerthLock): Promise<void> {
  const { writeFileAtomic } = await import("./fs.ts");
  const r = await writeFileAtomic(root, RUN_STATUS_PATH, `${JSON.stringify(status, null, 2)}\n`, {
    mode: 0o644,
    ...(lock ? { lock } : {}),
  });
  if (!r.ok) throw new BerthFailure(r.errors);
}
