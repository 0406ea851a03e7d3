/**
 * The berth lock (src/host/lock.ts): taken and released, waited for (and said
 * so), given up at the deadline naming the holder, taken over from a killed
 * holder, a reused pid or an earlier boot, and exclusive across processes.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { acquireLock, lockTimeoutFromEnv, DEFAULT_LOCK_TIMEOUT_MS } from "../../src/host/lock.ts";
import { holderAlive, type LockHolder } from "../../src/host/lock-holder.ts";
import { LOCK_PATH } from "../../src/util/node-layout.ts";
import { HostRoot } from "../../src/host/root.ts";

const dirs: string[] = [];
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) c.kill("SIGKILL");
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function scratch(): HostRoot {
  const d = mkdtempSync(path.join(tmpdir(), "berth-lock-"));
  dirs.push(d);
  return new HostRoot(d);
}

const BOOT_ID = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
const PID_NS = readlinkSync("/proc/self/ns/pid");
const startTimeOf = (pid: number): string => {
  const s = readFileSync(`/proc/${pid}/stat`, "utf8");
  return s.slice(s.lastIndexOf(")") + 2).split(" ")[19]!;
};

/** A live process that is not this one. */
function sleeper(): ChildProcess & { pid: number } {
  const c = spawn("sleep", ["600"], { stdio: "ignore" });
  children.push(c);
  return c as ChildProcess & { pid: number };
}

/** Plant a lock held by `h` (as another process would have taken it). */
function plant(root: HostRoot, h: Partial<LockHolder> & { pid: number }): string {
  const holder: LockHolder = {
    nonce: "feedc0de00000001",
    command: "berth init",
    since: "2026-01-02T03:04:05.000Z",
    bootId: BOOT_ID,
    pidNs: PID_NS,
    ...h,
  };
  const dir = root.path(LOCK_PATH);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, `${holder.nonce}.json`), JSON.stringify(holder));
  return dir;
}

const fast = { backoff: { initialMs: 5, maxMs: 20 } };

test("taken and released; the directories it made go again (a scratch root stays empty)", async () => {
  const root = scratch();
  const l = await acquireLock(root, { command: "berth init" });
  assert.ok(l.ok, JSON.stringify(!l.ok && l.errors));
  assert.equal(l.value.path, root.path(LOCK_PATH));
  const files = readdirSync(l.value.path);
  assert.deepEqual(files, [`${l.value.holder.nonce}.json`]);
  const h = JSON.parse(readFileSync(path.join(l.value.path, files[0]!), "utf8")) as LockHolder;
  assert.equal(h.pid, process.pid);
  assert.equal(h.bootId, BOOT_ID);
  assert.equal(h.startTime, startTimeOf(process.pid));
  assert.equal(h.command, "berth init");
  l.value.release();
  l.value.release();
  assert.deepEqual(readdirSync(root.dir), []);
});

test("held by a live process: waits, says so once, and gives up at the deadline naming the holder", async () => {
  const root = scratch();
  const s = sleeper();
  const dir = plant(root, { pid: s.pid, startTime: startTimeOf(s.pid) });
  const lines: string[] = [];
  const l = await acquireLock(root, { command: "berth init", timeoutMs: 150, log: (x) => lines.push(x), ...fast });
  assert.ok(!l.ok);
  assert.equal(l.errors[0]!.code, "lock.timeout");
  assert.match(l.errors[0]!.message, new RegExp(`pid ${s.pid} \\(berth init\\) since 2026-01-02T03:04:05.000Z`));
  assert.ok(l.errors[0]!.message.includes(dir), l.errors[0]!.message);
  assert.match(l.errors[0]!.hint ?? "", /BERTH_LOCK_TIMEOUT_MS/);
  assert.equal(lines.length, 1, lines.join("\n"));
  assert.match(
    lines[0]!,
    new RegExp(`^waiting for the berth lock held by pid ${s.pid} \\(berth init\\) since 2026-01-02T03:04:05.000Z; giving up at `),
  );
  // The holder's lock is untouched, and nothing of the waiter is left.
  assert.deepEqual(readdirSync(dir), ["feedc0de00000001.json"]);
  assert.deepEqual(readdirSync(path.dirname(dir)), ["lock"]);
});

test("the waiter proceeds as soon as the holder goes away (killed: no release)", async () => {
  const root = scratch();
  const s = sleeper();
  plant(root, { pid: s.pid, startTime: startTimeOf(s.pid) });
  const l = await acquireLock(root, {
    command: "berth init",
    timeoutMs: 60_000,
    ...fast,
    log: () => void s.kill("SIGKILL"),
  });
  assert.ok(l.ok, JSON.stringify(!l.ok && l.errors));
  assert.deepEqual(readdirSync(l.value.path), [`${l.value.holder.nonce}.json`]);
  l.value.release();
});

test("stale at once: a dead pid, a reused pid (other start time), an earlier boot, an unreadable record", async () => {
  const s = sleeper();
  const dead = spawn("true");
  await new Promise((r) => dead.on("exit", r));
  const cases: [string, Partial<LockHolder> & { pid: number }][] = [
    ["dead pid", { pid: dead.pid! }],
    ["reused pid", { pid: s.pid, startTime: "1" }],
    ["earlier boot", { pid: s.pid, startTime: startTimeOf(s.pid), bootId: "00000000-0000-0000-0000-000000000000" }],
    // pid 1 at every boot of a container, say: our own pid on a lock this process never took.
    ["our own pid, not our lock", { pid: process.pid }],
  ];
  for (const [what, h] of cases) {
    const root = scratch();
    plant(root, h);
    const lines: string[] = [];
    const l = await acquireLock(root, { command: "t", timeoutMs: 0, log: (x) => lines.push(x), ...fast });
    assert.ok(l.ok, `${what}: ${JSON.stringify(!l.ok && l.errors)}`);
    assert.deepEqual(lines, [], what);
    l.value.release();
  }
  const root = scratch();
  const dir = plant(root, { pid: s.pid });
  writeFileSync(path.join(dir, "feedc0de00000001.json"), "");
  const l = await acquireLock(root, { command: "t", timeoutMs: 0, ...fast });
  assert.ok(l.ok, JSON.stringify(!l.ok && l.errors));
  l.value.release();
});

test("holderAlive: boot id, PID namespace, start time, zombies", () => {
  const me: LockHolder = { pid: 10, bootId: "b", pidNs: "pid:[1]", startTime: "100", nonce: "n", command: "c", since: "" };
  const alive = (pid: number | "self") => (pid === 20 ? { state: "S", startTime: "200" } : undefined);
  const h = (o: Partial<LockHolder>): LockHolder => ({ ...me, pid: 20, startTime: "200", ...o });
  assert.equal(holderAlive(h({}), me, alive), true);
  assert.equal(holderAlive(h({ startTime: "201" }), me, alive), false, "pid reused");
  assert.equal(holderAlive(h({ pid: 21 }), me, alive), false, "gone");
  assert.equal(holderAlive(h({ bootId: "a" }), me, alive), false, "earlier boot");
  assert.equal(holderAlive(h({ pid: 21, pidNs: "pid:[2]" }), me, alive), true, "another PID namespace: cannot tell, so wait");
  assert.equal(
    holderAlive(h({}), me, () => ({ state: "Z", startTime: "200" })),
    false,
    "zombie",
  );
  assert.equal(holderAlive(h({ procPid: 20, pid: 1 }), me, alive), true, "/proc's numbering is used when recorded");
});

test("a waiter killed while waiting leaves a temp dir the next holder removes; a live waiter's stays", async () => {
  const root = scratch();
  const s = sleeper();
  const parent = path.dirname(root.path(LOCK_PATH));
  mkdirSync(parent, { recursive: true });
  const killed: LockHolder = { pid: 999_999_999, nonce: "aaaa", command: "t", since: "", bootId: BOOT_ID, pidNs: PID_NS };
  const live: LockHolder = {
    pid: s.pid,
    startTime: startTimeOf(s.pid),
    nonce: "bbbb",
    command: "t",
    since: "",
    bootId: BOOT_ID,
    pidNs: PID_NS,
  };
  for (const w of [killed, live]) {
    mkdirSync(path.join(parent, `.lock.${w.nonce}.tmp`));
    writeFileSync(path.join(parent, `.lock.${w.nonce}.tmp`, `${w.nonce}.json`), JSON.stringify(w));
  }
  const l = await acquireLock(root, { command: "t" });
  assert.ok(l.ok);
  assert.deepEqual(readdirSync(parent).sort(), [".lock.bbbb.tmp", "lock"]);
  l.value.release();
});

test("the same process taking it twice is a bug, reported at once", async () => {
  const root = scratch();
  const a = await acquireLock(root, { command: "t" });
  assert.ok(a.ok);
  const b = await acquireLock(root, { command: "t", timeoutMs: 60_000 });
  assert.ok(!b.ok);
  assert.equal(b.errors[0]!.code, "lock.reentrant");
  a.value.release();
});

test("exclusive across processes: critical sections never overlap", async () => {
  const root = scratch();
  const log = path.join(root.dir, "log");
  writeFileSync(log, "");
  const script = `
    import { appendFileSync } from "node:fs";
    import { acquireLock } from ${JSON.stringify(path.resolve(import.meta.dirname, "../../src/host/lock.ts"))};
    import { HostRoot } from ${JSON.stringify(path.resolve(import.meta.dirname, "../../src/host/root.ts"))};
    const root = new HostRoot(${JSON.stringify(root.dir)});
    for (let i = 0; i < 5; i++) {
      const l = await acquireLock(root, { command: "t", timeoutMs: 60000, backoff: { initialMs: 1, maxMs: 10 } });
      if (!l.ok) { console.error(JSON.stringify(l.errors)); process.exit(1); }
      appendFileSync(${JSON.stringify(log)}, "in " + process.pid + "\\n");
      await new Promise((r) => setTimeout(r, 2));
      appendFileSync(${JSON.stringify(log)}, "out " + process.pid + "\\n");
      l.value.release();
    }`;
  const runs = Array.from({ length: 3 }, () => {
    const c = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    c.stderr.on("data", (d: Buffer) => (err += d.toString()));
    return new Promise<void>((resolve, reject) => c.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(err)))));
  });
  await Promise.all(runs);
  const lines = readFileSync(log, "utf8").trim().split("\n");
  assert.equal(lines.length, 30);
  for (let i = 0; i < lines.length; i += 2) {
    const [a, b] = [lines[i]!.split(" "), lines[i + 1]!.split(" ")];
    assert.deepEqual([a[0], b[0], a[1]], ["in", "out", b[1]], `overlap at line ${i + 1}:\n${lines.join("\n")}`);
  }
  assert.ok(!existsSync(root.path(LOCK_PATH)));
});

test("BERTH_LOCK_TIMEOUT_MS: default, a number, or a clear error", () => {
  assert.deepEqual(lockTimeoutFromEnv({}), { ok: true, value: DEFAULT_LOCK_TIMEOUT_MS });
  assert.deepEqual(lockTimeoutFromEnv({ BERTH_LOCK_TIMEOUT_MS: "2500" }), { ok: true, value: 2500 });
  const bad = lockTimeoutFromEnv({ BERTH_LOCK_TIMEOUT_MS: "soon" });
  assert.ok(!bad.ok);
  assert.equal(bad.errors[0]!.code, "lock.timeout-invalid");
});
