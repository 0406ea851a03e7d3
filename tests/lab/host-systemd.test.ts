// src/host/systemd.ts against REAL systemd: PID 1 of a lab node (nspawn),
// reached over the node's system bus from the host.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { bootNode, containerdLabFiles, containerdLabToml, type LabNode } from "./lab.ts";
import { createCriClient, waitForCriReady } from "../../src/host/cri.ts";
import { CONTAINERD_SOCKET as DEFAULT_CONTAINERD_SOCKET } from "../../src/util/node-layout.ts";
import { connectSystemd, SystemdError, type Systemd, type UnitState } from "../../src/host/systemd.ts";

let node: LabNode;
let sd: Systemd;

const unit = (body: string, install = "") =>
  `[Unit]\nDescription=berth host-systemd test\n\n[Service]\n${body}\n${install ? `\n[Install]\n${install}\n` : ""}`;

before(async () => {
  node = await bootNode({
    name: "hostsd",
    files: {
      "/etc/systemd/system/t-sleep.service": unit("ExecStart=/bin/sleep infinity\nRestart=no"),
      "/etc/systemd/system/t-always.service": unit("ExecStart=/bin/sleep infinity\nRestart=always\nRestartSec=200ms"),
      "/etc/systemd/system/t-false.service": unit("Type=oneshot\nExecStart=/bin/false"),
      "/etc/systemd/system/t-slow.service": unit("Type=oneshot\nExecStart=/bin/sleep 30"),
      "/etc/systemd/system/t-limit.service":
        "[Unit]\nDescription=berth host-systemd test\nStartLimitIntervalSec=600\nStartLimitBurst=2\n\n[Service]\nExecStart=/bin/false\nRestart=always\nRestartSec=50ms\n",
      "/etc/systemd/system/t-queued.service": unit("Type=oneshot\nExecStart=/bin/sleep 2"),
      "/etc/systemd/system/t-enable.service": unit("ExecStart=/bin/sleep infinity", "WantedBy=multi-user.target"),
      "/etc/containerd/config.toml": containerdLabToml(),
      ...containerdLabFiles(),
    },
  });
  sd = await connectSystemd({ busAddress: node.busAddress, timeoutMs: 5000 });
});

after(async () => {
  sd?.close();
  await node?.shutdown();
});

async function show(u: string, prop: string): Promise<string> {
  return (await node.systemctl("show", "-p", prop, "--value", u)).stdout.trim();
}

/** A timestamp property as systemctl prints it (`--timestamp=us+utc`), in µs since the epoch. */
async function showTimestampUs(u: string, prop: string): Promise<number> {
  const out = (await node.systemctl("show", "--timestamp=us+utc", "-p", prop, "--value", u)).stdout.trim();
  const m = /(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6}) UTC/.exec(out);
  assert.ok(m, `unexpected timestamp from systemctl: "${out}"`);
  const [, y, mo, d, h, mi, sec, us] = m.map<number>(Number);
  return Date.UTC(y!, mo! - 1, d, h, mi, sec) * 1000 + us!;
}

/** Resolves with the first state `pred` accepts (from a subscription set up before). */
function waitFor(states: Array<[string, UnitState]>, pred: (u: string, s: UnitState) => boolean, timeoutMs: number): Promise<UnitState> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      const hit = states.find(([u, s]) => pred(u, s));
      if (hit) return resolve(hit[1]);
      if (Date.now() - t0 > timeoutMs) return reject(new Error(`no matching state within ${timeoutMs} ms; saw ${JSON.stringify(states)}`));
      setTimeout(tick, 2);
    };
    tick();
  });
}

test("startUnit waits for the job; unitState has MainPID and timestamps as systemctl shows them", async () => {
  const before = Date.now() * 1000;
  assert.equal(await sd.startUnit("t-sleep.service"), "done");
  const s = await sd.unitState("t-sleep.service");
  assert.equal(s.loadState, "loaded");
  assert.equal(s.activeState, "active");
  assert.equal(s.subState, "running");
  assert.ok(s.mainPid > 0);
  assert.equal(String(s.mainPid), await show("t-sleep.service", "MainPID"));
  assert.equal(s.activeEnterTimestampUs, await showTimestampUs("t-sleep.service", "ActiveEnterTimestamp"));
  // When the main process was exec'd: what the run phase compares config mtimes with.
  assert.equal(s.execMainStartTimestampUs, await showTimestampUs("t-sleep.service", "ExecMainStartTimestamp"));
  assert.ok((s.execMainStartTimestampUs ?? 0) > 0 && (s.execMainStartTimestampUs ?? 0) <= s.activeEnterTimestampUs);
  // Realtime µs, taken after this test started (host and node share the clock).
  assert.ok(s.activeEnterTimestampUs >= before - 1_000_000, `${s.activeEnterTimestampUs} vs ${before}`);
  assert.equal(s.result, "success");
  // Starting an active unit is a no-op job that still completes.
  assert.equal(await sd.startUnit("t-sleep.service"), "done");
  assert.equal((await sd.unitState("t-sleep.service")).mainPid, s.mainPid);
});

test("restartUnit gives a new MainPID and a later ActiveEnterTimestamp", async () => {
  const a = await sd.unitState("t-sleep.service");
  assert.equal(await sd.restartUnit("t-sleep.service"), "done");
  const b = await sd.unitState("t-sleep.service");
  assert.equal(b.activeState, "active");
  assert.notEqual(b.mainPid, a.mainPid);
  assert.ok(b.activeEnterTimestampUs > a.activeEnterTimestampUs);
  assert.ok(b.activeExitTimestampUs >= a.activeEnterTimestampUs);
});

test("a failing start reports the job result `failed` and the unit's Result", async () => {
  assert.equal(await sd.startUnit("t-false.service"), "failed");
  const s = await sd.unitState("t-false.service");
  assert.equal(s.activeState, "failed");
  assert.equal(s.result, "exit-code");
});

test("subscribe sees a kill -9 of the main process at once (Restart=no → failed/signal)", async () => {
  await sd.startUnit("t-sleep.service");
  const pid = (await sd.unitState("t-sleep.service")).mainPid;
  const states: Array<[string, UnitState]> = [];
  const unsubscribe = await sd.subscribe((u, s) => states.push([u, s]), ["t-sleep.service"]);
  try {
    assert.equal(states[0]?.[1].mainPid, pid, "baseline first");
    const t0 = Date.now();
    await node.exec(["kill", "-9", String(pid)], { check: true });
    const s = await waitFor(states, (_u, x) => x.activeState === "failed", 10_000);
    // Informational, not asserted (timings are benchmarked, not tested).
    console.log(`# kill -9 → PropertiesChanged seen in ${Date.now() - t0} ms (including nsenter)`);
    assert.equal(s.result, "signal");
    assert.equal(s.mainPid, 0);
  } finally {
    unsubscribe();
  }
});

test("subscribe follows systemd's own Restart= (NRestarts, new MainPID)", async () => {
  assert.equal(await sd.startUnit("t-always.service"), "done");
  const first = await sd.unitState("t-always.service");
  const states: Array<[string, UnitState]> = [];
  const unsubscribe = await sd.subscribe((u, s) => states.push([u, s]), ["t-always.service", "t-sleep.service"]);
  try {
    await node.exec(["kill", "-9", String(first.mainPid)], { check: true });
    const back = await waitFor(
      states,
      (u, x) => u === "t-always.service" && x.activeState === "active" && x.mainPid !== first.mainPid && x.mainPid > 0,
      10_000,
    );
    assert.equal(back.nRestarts, first.nRestarts + 1);
    assert.ok(back.activeEnterTimestampUs > first.activeEnterTimestampUs);
    assert.ok(
      states.some(([u, x]) => u === "t-always.service" && x.activeState !== "active"),
      "the down phase is seen too",
    );
  } finally {
    unsubscribe();
  }
});

test("unknown units: LoadUnit gives not-found state; jobs fail with NoSuchUnit", async () => {
  const s = await sd.unitState("does-not-exist.service");
  assert.equal(s.loadState, "not-found");
  assert.equal(s.activeState, "inactive");
  await assert.rejects(sd.startUnit("does-not-exist.service"), (e: unknown) => {
    assert.ok(e instanceof SystemdError);
    assert.equal(e.code, "systemd.no-such-unit");
    assert.equal(e.dbusName, "org.freedesktop.systemd1.NoSuchUnit");
    assert.equal(e.unit, "does-not-exist.service");
    assert.match(e.errors[0]?.hint ?? "", /systemctl cat does-not-exist\.service/);
    return true;
  });
});

test("daemonReload picks up a unit file written after boot", async () => {
  assert.equal((await sd.unitState("t-new.service")).loadState, "not-found");
  await node.writeFile("/etc/systemd/system/t-new.service", unit("ExecStart=/bin/sleep infinity"));
  await sd.daemonReload();
  assert.equal((await sd.unitState("t-new.service")).loadState, "loaded");
  assert.equal(await sd.startUnit("t-new.service"), "done");
  assert.equal(await sd.stopUnit("t-new.service"), "done");
  const s = await sd.unitState("t-new.service");
  assert.equal(s.activeState, "inactive");
  assert.ok(s.inactiveEnterTimestampUs >= s.activeEnterTimestampUs);
});

test("a job slower than its deadline fails with systemd.job-deadline; the job is left to systemd", async () => {
  await assert.rejects(sd.startUnit("t-slow.service", { timeoutMs: 300 }), (e: unknown) => {
    assert.ok(e instanceof SystemdError);
    assert.equal(e.code, "systemd.job-deadline");
    assert.equal(e.unit, "t-slow.service");
    return true;
  });
  assert.equal((await sd.unitState("t-slow.service")).activeState, "activating");
  // Stopping cancels the start job; the stop job itself completes.
  assert.equal(await sd.stopUnit("t-slow.service", { timeoutMs: 10_000 }), "done");
});

test("resetFailedUnit lets a unit systemd gave up on (start limit) be started again", async () => {
  // A crash-looping unit: systemd's own Restart= runs into its start limit
  // and gives up ("Start request repeated too quickly"; systemd 252 keeps
  // Result=exit-code rather than start-limit-hit).
  await sd.startUnit("t-limit.service");
  await node.waitForState("t-limit.service", "failed", 10_000);
  assert.equal(await sd.startUnit("t-limit.service"), "failed", "a start within the limit interval is refused");
  await sd.resetFailedUnit("t-limit.service");
  const reset = await sd.unitState("t-limit.service");
  assert.equal(reset.activeState, "inactive");
  assert.equal(reset.result, "success");
  assert.equal(await sd.startUnit("t-limit.service"), "done", "startable again after reset-failed");
});

test("enqueueStartUnit returns once the job is queued, without waiting for it", async () => {
  const job = await sd.enqueueStartUnit("t-queued.service");
  assert.match(job, /^\/org\/freedesktop\/systemd1\/job\/\d+$/);
  assert.equal((await sd.unitState("t-queued.service")).activeState, "activating", "the 2 s oneshot is still running");
  await node.waitForState("t-queued.service", "inactive", 10_000);
});

test("enableUnits enables a unit file (symlink reported, UnitFileState enabled)", async () => {
  assert.ok(sd.enableUnits);
  const changes = await sd.enableUnits(["t-enable.service"]);
  assert.ok(
    changes.some((c) => c.type === "symlink" && c.file.endsWith("multi-user.target.wants/t-enable.service")),
    JSON.stringify(changes),
  );
  assert.equal((await sd.unitState("t-enable.service")).unitFileState, "enabled");
  assert.deepEqual(await sd.enableUnits(["t-enable.service"]), [], "idempotent");
});

test("RestartUnit of containerd: the job waits, and a long-lived CRI client reconnects by itself", async () => {
  // Reached from the host through the node's root: /proc/<leader>/root/run/...
  const socket = node.hostPath(DEFAULT_CONTAINERD_SOCKET);
  assert.equal(await sd.startUnit("containerd.service", { timeoutMs: 60_000 }), "done");
  await waitForCriReady(socket, { deadlineMs: 60_000 });
  const cri = createCriClient(socket);
  try {
    assert.equal((await cri.status()).runtimeReady, true);
    const before = await sd.unitState("containerd.service");
    const t0 = Date.now();
    assert.equal(await sd.restartUnit("containerd.service", { timeoutMs: 60_000 }), "done");
    const tJob = Date.now();
    const after = await sd.unitState("containerd.service");
    assert.notEqual(after.mainPid, before.mainPid);
    let calls = 0;
    for (;;) {
      calls++;
      try {
        if ((await cri.status({ timeoutMs: 1000 })).runtimeReady) break;
      } catch {
        /* reconnecting */
      }
      assert.ok(Date.now() - tJob < 30_000, "the CRI client did not come back within 30 s");
      await new Promise((r) => setTimeout(r, 1));
    }
    console.log(
      `# RestartUnit containerd: job ${tJob - t0} ms; same CRI client ready again ${Date.now() - tJob} ms after the job (${calls} calls)`,
    );
  } finally {
    cri.close();
  }
});
