/**
 * The one run-status module (src/host/run-status.ts): what it writes it reads
 * back, and a document in any other shape reads as absent.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { HostRoot } from "../../src/host/root.ts";
import { isBootstrapDone, parseRunStatus, readRunStatus, writeRunStatus, type RunStatus } from "../../src/host/run-status.ts";
import { RUN_STATUS_PATH } from "../../src/util/node-layout.ts";

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const DOC: RunStatus = {
  apiVersion: "berth.dev/v1alpha1",
  kind: "RunStatus",
  result: "succeeded",
  startedAt: "2026-01-01T00:00:00.000Z",
  steps: [
    {
      step: "containerd",
      outcome: "changed",
      action: "start",
      cause: "containerd.service is inactive",
      startMs: 5,
      endMs: 65,
      durationMs: 60,
    },
  ],
  containerd: { action: "start", cause: "containerd.service is inactive", jobResult: "done" },
  tasks: [{ name: "t", unit: "berth-task-t.service", state: "succeeded" }],
};

test("what writeRunStatus writes, readRunStatus reads back", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "berth-run-status-"));
  dirs.push(dir);
  const root = new HostRoot(dir);
  assert.equal(await readRunStatus(root.path(RUN_STATUS_PATH)), undefined, "no file yet");
  await writeRunStatus(root, DOC);
  assert.deepEqual(await readRunStatus(root.path(RUN_STATUS_PATH)), DOC);
  await writeFile(root.path(RUN_STATUS_PATH), "{ not json");
  assert.equal(await readRunStatus(root.path(RUN_STATUS_PATH)), undefined);
});

test("only the schema is read: other shapes, and fields of the wrong type, read as absent", () => {
  assert.deepEqual(parseRunStatus(JSON.parse(JSON.stringify(DOC))), DOC);
  for (const doc of [
    "nope",
    [],
    { bootstrapDone: true, phases: [{ name: "containerd", done: true }] },
    { done: true },
    { ...DOC, kind: "Other" },
    { ...DOC, result: "done" },
    { ...DOC, steps: [{ step: "containerd", action: "start", durationMs: 60 }] },
    { ...DOC, steps: [{ ...DOC.steps[0], outcome: "done" }] },
    { ...DOC, error: "CRI not ready" },
    { ...DOC, tasks: [{ unit: "x" }] },
  ]) {
    assert.equal(parseRunStatus(doc), undefined, JSON.stringify(doc));
  }
});

test("bootstrap is done once the run phase no longer runs, failed included", () => {
  assert.equal(isBootstrapDone({ ...DOC, result: "running" }), false);
  assert.equal(isBootstrapDone({ ...DOC, result: "succeeded" }), true);
  assert.equal(isBootstrapDone({ ...DOC, result: "failed" }), true);
});
