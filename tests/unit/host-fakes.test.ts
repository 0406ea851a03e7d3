// The recording fakes other units' tests build on must behave like the real
// clients in the ways those tests rely on.
import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeSystemd } from "../fakes/systemd-fake.ts";
import { FakeCri } from "../fakes/cri-fake.ts";
import { SystemdError, type UnitState } from "../../src/host/systemd.ts";
import { CriError } from "../../src/host/cri.ts";

test("FakeSystemd records calls, models start/restart/stop, and fails once when told", async () => {
  const sd = new FakeSystemd({ units: { "containerd.service": { activeState: "active", subState: "running" }, "kubelet.service": {} } });
  const c0 = await sd.unitState("containerd.service");
  assert.ok(c0.mainPid > 0);
  sd.failOnce("restartUnit", sd.noSuchUnit("containerd.service"));
  await assert.rejects(
    sd.restartUnit("containerd.service"),
    (e: unknown) => e instanceof SystemdError && e.code === "systemd.no-such-unit",
  );
  assert.equal(await sd.restartUnit("containerd.service"), "done");
  const c1 = await sd.unitState("containerd.service");
  assert.notEqual(c1.mainPid, c0.mainPid);
  assert.ok(c1.activeEnterTimestampUs > c0.activeEnterTimestampUs);
  sd.jobResultOnce("startUnit", "failed");
  assert.equal(await sd.startUnit("kubelet.service"), "failed");
  assert.equal((await sd.unitState("kubelet.service")).activeState, "failed");
  assert.equal(await sd.startUnit("kubelet.service"), "done");
  assert.equal(await sd.stopUnit("kubelet.service"), "done");
  assert.equal((await sd.unitState("nope.service")).loadState, "not-found");
  await assert.rejects(sd.startUnit("nope.service"), SystemdError);
  assert.deepEqual(sd.callNames(), [
    "unitState",
    "restartUnit",
    "restartUnit",
    "unitState",
    "startUnit",
    "unitState",
    "startUnit",
    "stopUnit",
    "unitState",
    "startUnit",
  ]);
  assert.equal(sd.callsOf("restartUnit", "containerd.service").length, 2);
});

test("FakeSystemd subscribers get the baseline, then crash and systemd's own restart", async () => {
  const sd = new FakeSystemd({ units: { "containerd.service": { activeState: "active" } } });
  const seen: UnitState[] = [];
  const unsubscribe = await sd.subscribe((_u, s) => seen.push(s), ["containerd.service"]);
  sd.crash("containerd.service");
  sd.autoRestart("containerd.service");
  unsubscribe();
  sd.crash("containerd.service");
  assert.deepEqual(
    seen.map((s) => [s.activeState, s.result, s.nRestarts]),
    [
      ["active", "success", 0],
      ["failed", "signal", 0],
      ["active", "success", 1],
    ],
  );
});

test("FakeCri: down/hung/not-ready/pull and fail-once behave like the real client's errors", async () => {
  const cri = new FakeCri();
  cri.down = true;
  await assert.rejects(cri.version(), (e: unknown) => e instanceof CriError && e.code === "cri.unavailable");
  cri.down = false;
  cri.hung = true;
  await assert.rejects(cri.status({ timeoutMs: 100 }), (e: unknown) => e instanceof CriError && e.code === "cri.deadline");
  cri.hung = false;
  cri.runtimeReady = false;
  assert.equal((await cri.status()).runtimeReady, false);
  assert.equal(await cri.imageStatus("localhost/pause:1"), undefined);
  cri.addRegistryImage("localhost/pause:1");
  cri.failOnce("pullImage");
  await assert.rejects(cri.pullImage("localhost/pause:1"), CriError);
  const id = await cri.pullImage("localhost/pause:1");
  assert.equal((await cri.imageStatus("localhost/pause:1"))?.id, id);
  assert.deepEqual(cri.callNames(), ["version", "status", "status", "imageStatus", "pullImage", "pullImage", "imageStatus"]);
  assert.equal(cri.calls[1]?.timeoutMs, 100);
});
