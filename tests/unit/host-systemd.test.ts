// The D-Bus protocol side of src/host/systemd.ts against a REAL dbus-daemon
// (private, under a temp dir) with a scripted stand-in for org.freedesktop.systemd1
// on it. It cannot be real systemd (not PID 1 here); what it can do that real
// systemd cannot be made to do on demand is exactly what these tests need:
// send JobRemoved before the method reply, never finish a job, never answer.
// Real systemd behaviour is tested in tests/lab/host-systemd.test.ts.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import dbus from "@particle/dbus-next";
import { connectSystemd, SystemdError, type UnitState } from "../../src/host/systemd.ts";

type Msg = InstanceType<typeof dbus.Message>;
type Bus = ReturnType<typeof dbus.sessionBus>;

let dir: string;
let daemon: ChildProcess;
let address: string;
let server: Bus;
let fake: FakeManager;

/** Scripted systemd1: per-unit behaviour for jobs, unit properties, and a log of calls. */
class FakeManager {
  calls: string[] = [];
  /** unit → how a job on it ends: a result sent after `delayMs`, `early` (before the reply), or never. */
  jobs = new Map<string, { result: string; delayMs?: number; early?: boolean } | "never">();
  props = new Map<string, { unit: Record<string, [string, unknown]>; service: Record<string, [string, unknown]> }>();
  hang = new Set<string>();
  private jobId = 0;

  constructor(private bus: Bus) {}

  unitPath(name: string): string {
    return `/org/freedesktop/systemd1/unit/${name.replace(/[^A-Za-z0-9]/g, (c) => `_${c.charCodeAt(0).toString(16).padStart(2, "0")}`)}`;
  }

  handle = (msg: Msg): boolean => {
    if (msg.type !== dbus.MessageType.METHOD_CALL || msg.destination !== "org.freedesktop.systemd1") return false;
    this.calls.push(`${msg.member}${msg.body.length && typeof msg.body[0] === "string" ? ` ${msg.body[0]}` : ""}`);
    if (this.hang.has(msg.member)) return true; // never answer
    const reply = (sig: string, body: unknown[]) => this.bus.send(dbus.Message.newMethodReturn(msg, sig, body));
    // dbus-next's typings declare newError(string, ...); at run time it takes the call Message.
    const error = (name: string, text: string) => this.bus.send(dbus.Message.newError(msg as unknown as string, name, text));
    switch (msg.member) {
      case "Subscribe":
      case "Reload":
        reply("", []);
        return true;
      case "LoadUnit":
        // Like systemd, refuse a name that is not a unit name.
        if (!String(msg.body[0]).includes(".")) {
          error("org.freedesktop.DBus.Error.InvalidArgs", `Unit name ${String(msg.body[0])} is not valid.`);
          return true;
        }
        reply("o", [this.unitPath(String(msg.body[0]))]);
        return true;
      case "StartUnit":
      case "RestartUnit":
      case "StopUnit": {
        const unit = String(msg.body[0]);
        const how = this.jobs.get(unit);
        if (!how) {
          error("org.freedesktop.systemd1.NoSuchUnit", `Unit ${unit} not found.`);
          return true;
        }
        const job = `/org/freedesktop/systemd1/job/${++this.jobId}`;
        const removed = (result: string) =>
          this.bus.send(
            dbus.Message.newSignal("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "JobRemoved", "uoss", [
              this.jobId,
              job,
              unit,
              result,
            ]),
          );
        // Another unit's job finishing in between must not confuse the waiter.
        this.bus.send(
          dbus.Message.newSignal("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "JobRemoved", "uoss", [
            999,
            "/org/freedesktop/systemd1/job/999",
            "other.service",
            "failed",
          ]),
        );
        if (how !== "never" && how.early) removed(how.result);
        reply("o", [job]);
        if (how !== "never" && !how.early) setTimeout(() => removed(how.result), how.delayMs ?? 5);
        return true;
      }
      case "GetAll": {
        const unit = [...this.props.keys()].find((u) => this.unitPath(u) === msg.path);
        const p = unit ? this.props.get(unit) : undefined;
        const which = String(msg.body[0]).endsWith(".Service") ? p?.service : p?.unit;
        const out: Record<string, InstanceType<typeof dbus.Variant>> = {};
        for (const [k, [sig, v]] of Object.entries(which ?? {})) out[k] = new dbus.Variant(sig, v);
        reply("a{sv}", [out]);
        return true;
      }
      default:
        error("org.freedesktop.DBus.Error.UnknownMethod", `no ${msg.member}`);
        return true;
    }
  };

  setProps(unit: string, activeState: string, mainPid: number, enterUs: bigint): void {
    this.props.set(unit, {
      unit: {
        LoadState: ["s", "loaded"],
        ActiveState: ["s", activeState],
        SubState: ["s", activeState === "active" ? "running" : "dead"],
        ActiveEnterTimestamp: ["t", enterUs],
        ActiveExitTimestamp: ["t", 0n],
        InactiveEnterTimestamp: ["t", 5n],
        UnitFileState: ["s", "enabled"],
      },
      service: { MainPID: ["u", mainPid], NRestarts: ["u", 2], Result: ["s", "success"] },
    });
  }

  propertiesChanged(unit: string): void {
    this.bus.send(
      dbus.Message.newSignal(this.unitPath(unit), "org.freedesktop.DBus.Properties", "PropertiesChanged", "sa{sv}as", [
        "org.freedesktop.systemd1.Unit",
        {},
        ["ActiveState"],
      ]),
    );
  }
}

function connected(bus: Bus): Promise<void> {
  return new Promise((resolve, reject) => {
    bus.once("connect", () => resolve());
    bus.once("error", reject);
  });
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "berth-dbus-test-"));
  const sock = path.join(dir, "bus");
  address = `unix:path=${sock}`;
  daemon = spawn("dbus-daemon", ["--session", "--nofork", "--nopidfile", `--address=${address}`], { stdio: "ignore" });
  const deadline = Date.now() + 10_000;
  while (!fs.existsSync(sock)) {
    if (Date.now() > deadline || daemon.exitCode !== null) throw new Error("dbus-daemon did not start");
    await new Promise((r) => setTimeout(r, 5));
  }
  server = dbus.sessionBus({ busAddress: address });
  await connected(server);
  await server.requestName("org.freedesktop.systemd1", 0);
  fake = new FakeManager(server);
  server.addMethodHandler(fake.handle);
});

after(async () => {
  server?.disconnect();
  if (daemon && daemon.exitCode === null) {
    daemon.kill("SIGTERM");
    await new Promise((r) => daemon.once("exit", r));
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test("startUnit waits for JobRemoved and returns its result, ignoring other units' jobs", async () => {
  fake.jobs.set("a.service", { result: "done", delayMs: 20 });
  fake.jobs.set("b.service", { result: "failed" });
  const sd = await connectSystemd({ busAddress: address });
  try {
    assert.equal(await sd.startUnit("a.service"), "done");
    assert.equal(await sd.restartUnit("b.service"), "failed");
    assert.equal(await sd.stopUnit("a.service"), "done");
    assert.ok(fake.calls.includes("Subscribe"), "Subscribe is called so systemd emits signals");
  } finally {
    sd.close();
  }
});

test("a JobRemoved that arrives before the StartUnit reply is not missed", async () => {
  fake.jobs.set("early.service", { result: "done", early: true });
  const sd = await connectSystemd({ busAddress: address });
  try {
    assert.equal(await sd.startUnit("early.service", { timeoutMs: 2000 }), "done");
  } finally {
    sd.close();
  }
});

test("a job that never finishes fails at its deadline with the unit and job named", async () => {
  fake.jobs.set("stuck.service", "never");
  const sd = await connectSystemd({ busAddress: address });
  try {
    await assert.rejects(sd.startUnit("stuck.service", { timeoutMs: 100 }), (e: unknown) => {
      assert.ok(e instanceof SystemdError);
      assert.equal(e.code, "systemd.job-deadline");
      assert.equal(e.unit, "stuck.service");
      assert.match(e.message, /job \/org\/freedesktop\/systemd1\/job\/\d+ did not finish within 100 ms/);
      assert.match(e.errors[0]?.hint ?? "", /systemctl list-jobs/);
      return true;
    });
  } finally {
    sd.close();
  }
});

test("NoSuchUnit is a typed error with the unit and the D-Bus error name", async () => {
  const sd = await connectSystemd({ busAddress: address });
  try {
    await assert.rejects(sd.startUnit("nope.service"), (e: unknown) => {
      assert.ok(e instanceof SystemdError);
      assert.equal(e.code, "systemd.no-such-unit");
      assert.equal(e.unit, "nope.service");
      assert.equal(e.dbusName, "org.freedesktop.systemd1.NoSuchUnit");
      assert.match(e.message, /StartUnit of nope\.service failed: org\.freedesktop\.systemd1\.NoSuchUnit/);
      return true;
    });
  } finally {
    sd.close();
  }
});

test("a method systemd never answers fails at the call deadline", async () => {
  fake.hang.add("Reload");
  const sd = await connectSystemd({ busAddress: address, timeoutMs: 100 });
  try {
    // daemonReload allows itself at least 30 s; use a unit call for the short deadline.
    fake.hang.add("LoadUnit");
    await assert.rejects(
      sd.unitState("x.service"),
      (e: unknown) =>
        e instanceof SystemdError &&
        e.code === "systemd.call-deadline" &&
        /LoadUnit of x\.service: systemd did not answer within 100 ms/.test(e.message),
    );
  } finally {
    fake.hang.delete("Reload");
    fake.hang.delete("LoadUnit");
    sd.close();
  }
});

test("unitState maps properties (64-bit timestamps, MainPID, NRestarts)", async () => {
  fake.setProps("c.service", "active", 4242, 1_700_000_000_123_456n);
  const sd = await connectSystemd({ busAddress: address });
  try {
    const s = await sd.unitState("c.service");
    assert.deepEqual(s, {
      loadState: "loaded",
      activeState: "active",
      subState: "running",
      mainPid: 4242,
      activeEnterTimestampUs: 1_700_000_000_123_456,
      activeExitTimestampUs: 0,
      inactiveEnterTimestampUs: 5,
      nRestarts: 2,
      result: "success",
      unitFileState: "enabled",
    });
  } finally {
    sd.close();
  }
});

test("subscribe: baseline at once, then each PropertiesChanged, no duplicates, nothing after unsubscribe", async () => {
  fake.setProps("w.service", "active", 100, 10n);
  const sd = await connectSystemd({ busAddress: address });
  const seen: Array<[string, UnitState]> = [];
  let notify: (() => void) | undefined;
  const next = () => new Promise<void>((r) => (notify = r));
  try {
    const unsubscribe = await sd.subscribe(
      (u, s) => {
        seen.push([u, s]);
        notify?.();
      },
      ["w.service"],
    );
    assert.equal(seen.length, 1);
    assert.equal(seen[0]?.[1].mainPid, 100);

    const changed = next();
    fake.setProps("w.service", "failed", 0, 10n);
    fake.propertiesChanged("w.service");
    await changed;
    assert.equal(seen.length, 2);
    assert.equal(seen[1]?.[1].activeState, "failed");
    assert.equal(seen[1]?.[1].mainPid, 0);

    // A signal without a real change is not reported twice; a later real change is.
    fake.propertiesChanged("w.service");
    const again = next();
    fake.setProps("w.service", "active", 101, 20n);
    fake.propertiesChanged("w.service");
    await again;
    assert.deepEqual(
      seen.map(([, s]) => s.mainPid),
      [100, 0, 101],
    );

    unsubscribe();
    await new Promise((r) => setTimeout(r, 20)); // let RemoveMatch go out
    fake.setProps("w.service", "failed", 0, 20n);
    fake.propertiesChanged("w.service");
    // A round trip through the bus: anything already sent has been delivered by now.
    await sd.unitState("w.service");
    assert.equal(seen.length, 3);
  } finally {
    sd.close();
  }
});

test("connecting to a bus that is not there fails with the address and a hint", async () => {
  const bad = `unix:path=${path.join(dir, "no-such-bus")}`;
  await assert.rejects(connectSystemd({ busAddress: bad, timeoutMs: 1000 }), (e: unknown) => {
    assert.ok(e instanceof SystemdError);
    assert.equal(e.code, "systemd.connect");
    assert.ok(e.message.includes(bad));
    return true;
  });
});

test("subscribe that fails on a later unit undoes the earlier ones: no onChange after the rejection", async () => {
  fake.setProps("v.service", "active", 100, 10n);
  const sd = await connectSystemd({ busAddress: address });
  const seen: string[] = [];
  try {
    // Sorted, so v.service is watched before the bad name fails.
    await assert.rejects(
      sd.subscribe((u) => void seen.push(u), ["v.service", "zz-not-a-unit"]),
      (e: unknown) => e instanceof SystemdError && /zz-not-a-unit/.test(e.message),
    );
    fake.setProps("v.service", "failed", 0, 10n);
    fake.propertiesChanged("v.service");
    // A round trip through the bus: anything already sent has been delivered (and refreshed) by now.
    await sd.unitState("v.service");
    assert.deepEqual(seen, []);
  } finally {
    sd.close();
  }
});

/** Unique (":1.N") connection names on the test bus. */
async function connections(): Promise<number> {
  const r = await server.call(
    new dbus.Message({
      destination: "org.freedesktop.DBus",
      path: "/org/freedesktop/DBus",
      interface: "org.freedesktop.DBus",
      member: "ListNames",
    }),
  );
  return (r?.body[0] as string[]).filter((n) => n.startsWith(":")).length;
}

test("a connect whose Subscribe fails closes its bus connection (nothing left to keep the process alive)", async () => {
  const before = await connections();
  fake.hang.add("Subscribe");
  try {
    await assert.rejects(
      connectSystemd({ busAddress: address, timeoutMs: 100 }),
      (e: unknown) => e instanceof SystemdError && e.code === "systemd.call-deadline" && /Subscribe/.test(e.message),
    );
  } finally {
    fake.hang.delete("Subscribe");
  }
  // The daemon drops the name once it sees the socket close; bounded wait, not a timing assertion.
  const until = Date.now() + 5000;
  let now = await connections();
  while (now !== before && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 10));
    now = await connections();
  }
  assert.equal(now, before, "the failed connection is still on the bus");
});

test("calls after close() fail with systemd.disconnected", async () => {
  const sd = await connectSystemd({ busAddress: address });
  sd.close();
  await assert.rejects(sd.unitState("a.service"), (e: unknown) => e instanceof SystemdError && e.code === "systemd.disconnected");
});

// Last: it kills the bus.
test("a bus that goes away fails a pending job wait at once, not at its deadline", async () => {
  fake.jobs.set("long.service", "never");
  const sd = await connectSystemd({ busAddress: address, timeoutMs: 30_000 });
  try {
    const pending = sd.startUnit("long.service", { timeoutMs: 60_000 });
    await new Promise((r) => setTimeout(r, 50));
    // A method call still waiting for its reply must fail too, not wait out its deadline.
    fake.hang.add("LoadUnit");
    const pendingCall = sd.unitState("hanging.service");
    await new Promise((r) => setTimeout(r, 20));
    daemon.kill("SIGKILL");
    await assert.rejects(
      pending,
      (e: unknown) => e instanceof SystemdError && e.code === "systemd.disconnected" && e.unit === "long.service",
    );
    await assert.rejects(
      pendingCall,
      (e: unknown) => e instanceof SystemdError && e.code === "systemd.disconnected" && e.unit === "hanging.service",
    );
    await assert.rejects(sd.unitState("long.service"), (e: unknown) => e instanceof SystemdError && e.code === "systemd.disconnected");
  } finally {
    sd.close();
  }
});
