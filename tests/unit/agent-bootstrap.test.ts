import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, writeFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bootstrapFinished } from "../../src/agent/agent.ts";
import { UNITS } from "../../src/util/node-layout.ts";

const RUN_UNIT = UNITS.run;
import { FakeSystemd } from "../fakes/systemd-fake.ts";

async function statusFile(doc: unknown): Promise<{ path: string; done: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "berth-agent-boot-"));
  const path = join(dir, "status.json");
  if (doc !== undefined) await writeFile(path, JSON.stringify(doc));
  return { path, done: () => rm(dir, { recursive: true, force: true }) };
}

/** A run status document (src/host/run-status.ts) with the given result. */
const runStatus = (result: "running" | "succeeded" | "failed") => ({
  apiVersion: "berth.dev/v1alpha1",
  kind: "RunStatus",
  result,
  startedAt: "2026-01-01T00:00:00.000Z",
  steps: [],
});

function sink(): { warns: object[]; info(): void; warn(o: object): void; error(): void } {
  const warns: object[] = [];
  return { warns, info() {}, warn: (o: object) => void warns.push(o), error() {} };
}

test("bootstrap is over when the run status says so, without asking systemd", async () => {
  const f = await statusFile(runStatus("succeeded"));
  const sd = new FakeSystemd({ units: { [RUN_UNIT]: { activeState: "activating" } } });
  try {
    assert.equal(await bootstrapFinished(f.path, sd), true);
    assert.deepEqual(sd.callNames(), []);
  } finally {
    await f.done();
  }
});

test("a run phase still activating holds repairs back", async () => {
  const f = await statusFile(runStatus("running"));
  const sd = new FakeSystemd({ units: { [RUN_UNIT]: { activeState: "activating" } } });
  try {
    assert.equal(await bootstrapFinished(f.path, sd), false);
  } finally {
    await f.done();
  }
});

test("a stale `running` (run phase killed) or a missing file does not block repairs forever", async () => {
  for (const [doc, unit] of [
    [runStatus("running"), { activeState: "failed", result: "signal" }],
    [undefined, { activeState: "inactive" }],
    [undefined, undefined], // berth-run.service not installed at all
  ] as const) {
    const f = await statusFile(doc);
    const sd = new FakeSystemd({ units: unit ? { [RUN_UNIT]: unit } : {} });
    const log = sink();
    try {
      assert.equal(await bootstrapFinished(f.path, sd, log), true);
      assert.equal(log.warns.length, 1, "says once why it assumes bootstrap is over");
      assert.match(JSON.stringify(log.warns[0]), /agent\.bootstrap-assumed-over/);
    } finally {
      await f.done();
    }
  }
});
