/**
 * The run phase's status file, read by the agent (is bootstrap done?) and by
 * `berth status` (which steps are done) when the agent is not answering.
 *
 * Written by src/phases/run.ts (`RunStatus` there):
 *   { "apiVersion": "berth.dev/v1alpha1", "kind": "RunStatus",
 *     "result": "running" | "succeeded" | "failed", "startedAt": ISO, "finishedAt"?: ISO,
 *     "steps": [ { "step": "containerd", "action": "start", "cause"?: "...", "durationMs": 55 }, ... ],
 *     "error"?: { "code", "message", "hint"? } }
 * Read leniently (the agent must not break when that file grows fields):
 * `bootstrapDone: true` / `done: true` and a `phases` list or map are understood too.
 *
 * Bootstrap counts as done once the run phase is no longer running, failed
 * included: a node whose run phase failed is exactly where repairs may help,
 * and the budget still bounds them.
 */
import { readFile } from "node:fs/promises";

import { RUN_STATUS_PATH } from "../util/node-layout.ts";
export { RUN_STATUS_PATH };

export interface RunPhase {
  name: string;
  done: boolean;
  /** What the step did (`start`, `restart`, `none`, ...). */
  action?: string;
  at?: string;
  durationMs?: number;
  error?: string;
}

export interface RunStatus {
  bootstrapDone: boolean;
  /** `running`, `succeeded`, `failed` when the file says so. */
  result?: string;
  error?: string;
  phases: RunPhase[];
  updatedAt?: string;
  /** The raw document, for --json. */
  raw: unknown;
}

function asPhase(name: string, v: unknown): RunPhase {
  if (typeof v !== "object" || v === null) return { name, done: v === true || v === "done" };
  const o = v as Record<string, unknown>;
  const done = o.done === true || o.status === "done" || o.state === "done" || o.ok === true;
  const p: RunPhase = { name: typeof o.name === "string" ? o.name : typeof o.step === "string" ? o.step : name, done };
  if (typeof o.action === "string") p.action = o.action;
  const at = o.at ?? o.finishedAt ?? o.doneAt;
  if (typeof at === "string") p.at = at;
  if (typeof o.durationMs === "number") p.durationMs = o.durationMs;
  const err = o.error ?? o.cause;
  if (typeof err === "string") p.error = err;
  return p;
}

/** Interpret a parsed status document. */
export function parseRunStatus(doc: unknown): RunStatus | undefined {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) return undefined;
  const o = doc as Record<string, unknown>;
  let phases: RunPhase[] = [];
  const ph = o.phases;
  // run.ts lists only the steps it finished.
  if (Array.isArray(o.steps)) phases = o.steps.map((v, i) => (typeof v === "string" ? { name: v, done: true } : asPhase(`step ${i + 1}`, { done: true, ...(v as object) })));
  else if (Array.isArray(ph)) phases = ph.map((v, i) => (typeof v === "string" ? { name: v, done: true } : asPhase(`phase ${i + 1}`, v)));
  else if (typeof ph === "object" && ph !== null) phases = Object.entries(ph as Record<string, unknown>).map(([k, v]) => asPhase(k, v));
  const result = typeof o.result === "string" ? o.result : undefined;
  const bootstrapDone = result === "succeeded" || result === "failed" || o.bootstrapDone === true || o.done === true || o.state === "done" || o.phase === "done";
  const s: RunStatus = { bootstrapDone, phases, raw: doc };
  if (result) s.result = result;
  const err = o.error;
  if (typeof err === "string") s.error = err;
  else if (typeof err === "object" && err !== null && typeof (err as { message?: unknown }).message === "string") s.error = (err as { message: string }).message;
  if (typeof o.updatedAt === "string") s.updatedAt = o.updatedAt;
  return s;
}

/** `undefined` when the file does not exist or cannot be parsed. */
export async function readRunStatus(path: string): Promise<RunStatus | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    return undefined;
  }
  try {
    return parseRunStatus(JSON.parse(text));
  } catch {
    return undefined;
  }
}
