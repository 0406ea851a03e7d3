// CRI + containerd API client against a REAL containerd (Debian's, started by
// hand under a temp dir by tests/helpers/containerd.ts). Nothing here is mocked
// except the "hung server", which containerd cannot be made to be on demand.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { startContainerd, type ContainerdHandle } from "../helpers/containerd.ts";
import { createCriClient, runningContainerdVersion, waitForCriReady, CriError, type CriWaitInfo } from "../../src/host/cri.ts";
import { retry } from "../../src/util/retry.ts";
import { startRegistry, pushPauseImage, registryHostsToml, PAUSE_IMAGE } from "../lab/lab.ts";

let ctrd: ContainerdHandle;
let scratch: string;

before(async () => {
  ctrd = await startContainerd();
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), "berth-cri-test-"));
});

after(async () => {
  await ctrd?.cleanup();
  fs.rmSync(scratch, { recursive: true, force: true });
});

test("Version and Status from a running containerd", async () => {
  const c = createCriClient(ctrd.socket);
  try {
    const v = await c.version();
    assert.equal(v.runtimeName, "containerd");
    assert.match(v.runtimeApiVersion, /^v1/);
    assert.ok(v.runtimeVersion.length > 0);
    const s = await c.status();
    assert.equal(s.runtimeReady, true);
    // No CNI config in the temp dir: the network is (correctly) not ready.
    assert.equal(s.networkReady, false);
    assert.ok(s.conditions.some((x) => x.type === "NetworkReady" && x.reason.length > 0));
  } finally {
    c.close();
  }
});

test("ImageStatus of an absent image is undefined, not an error; ListImages is empty", async () => {
  const c = createCriClient(ctrd.socket);
  try {
    assert.equal(await c.imageStatus("registry.k8s.io/pause:3.9"), undefined);
    assert.deepEqual(await c.listImages(), []);
  } finally {
    c.close();
  }
});

test("containerd's own Version API matches `containerd --version`", async () => {
  const cli = execFileSync("containerd", ["--version"], { encoding: "utf8" }).trim().split(/\s+/);
  const v = await runningContainerdVersion(ctrd.socket);
  assert.equal(v.version, cli[2]);
  assert.equal(v.revision, cli[3]);
  const c = createCriClient(ctrd.socket);
  try {
    assert.deepEqual(await c.containerdVersion(), v);
  } finally {
    c.close();
  }
});

test("waitForCriReady notices a containerd started after the wait began", async () => {
  await ctrd.stop();
  const waits: CriWaitInfo[] = [];
  let sawWait!: () => void;
  const firstWait = new Promise<void>((r) => (sawWait = r));
  const ready = waitForCriReady(ctrd.socket, {
    deadlineMs: 30_000,
    onWait: (i) => {
      waits.push(i);
      sawWait();
    },
  });
  await firstWait;
  await ctrd.restart({ noWait: true });
  const r = await ready;
  assert.equal(r.status.runtimeReady, true);
  assert.equal(r.version.runtimeName, "containerd");
  assert.ok(r.timeline.socketMs <= r.timeline.versionMs && r.timeline.versionMs <= r.timeline.readyMs);
  const first = waits[0];
  assert.ok(first);
  assert.equal(first.phase, "socket");
  assert.match(first.cause, new RegExp(`${ctrd.socket.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} does not exist`));
  // Backoff starts small and never exceeds its cap.
  assert.ok(waits.every((w) => w.delayMs <= 500));
});

test("a long-lived client reconnects by itself after containerd is killed and restarted", async () => {
  const c = createCriClient(ctrd.socket);
  try {
    assert.equal((await c.status()).runtimeReady, true);
    await ctrd.kill9();
    await assert.rejects(c.version({ timeoutMs: 2000 }), (e: unknown) => {
      assert.ok(e instanceof CriError);
      assert.equal(e.code, "cri.unavailable");
      assert.equal(e.grpcStatus, "UNAVAILABLE");
      assert.ok(e.message.includes(ctrd.socket));
      assert.match(e.errors[0]?.hint ?? "", /systemctl status containerd/);
      return true;
    });
    await ctrd.restart();
    // Same client object, no re-creation: the channel must come back on its own.
    const v = await retry(() => c.version({ timeoutMs: 1000 }), { initialMs: 10, maxMs: 100, timeoutMs: 15_000 });
    assert.equal(v.runtimeName, "containerd");
    assert.equal((await c.status()).runtimeReady, true);
  } finally {
    c.close();
  }
});

test("waitForCriReady on a socket nobody created: deadline error names the socket and what to do", async () => {
  const sock = path.join(scratch, "nothing-here.sock");
  const waits: CriWaitInfo[] = [];
  await assert.rejects(waitForCriReady(sock, { deadlineMs: 150, onWait: (w) => waits.push(w) }), (e: unknown) => {
    assert.ok(e instanceof CriError);
    assert.equal(e.code, "cri.not-ready");
    assert.equal(e.method, "socket");
    assert.ok(e.message.includes(sock), e.message);
    assert.match(e.message, /stuck at socket/);
    const be = e.errors[0];
    assert.equal(be?.where?.source, `unix://${sock}`);
    assert.match(be?.hint ?? "", /systemctl status containerd/);
    return true;
  });
  assert.ok(waits.length >= 2, "each wait is reported");
});

test("waitForCriReady on a stale socket (containerd killed): stuck at version with ECONNREFUSED", async () => {
  const d = await startContainerd();
  try {
    await d.kill9();
    assert.ok(fs.statSync(d.socket).isSocket(), "SIGKILL leaves the socket file behind");
    await assert.rejects(waitForCriReady(d.socket, { deadlineMs: 300 }), (e: unknown) => {
      assert.ok(e instanceof CriError);
      assert.equal(e.method, "version");
      assert.match(e.message, /ECONNREFUSED|not answering/);
      return true;
    });
  } finally {
    await d.cleanup();
  }
});

test("a hung server (accepts, never answers) hits the per-call deadline", async () => {
  const sock = path.join(scratch, "hung.sock");
  const held: net.Socket[] = [];
  const server = net.createServer((s) => held.push(s));
  await new Promise<void>((r) => server.listen(sock, r));
  const c = createCriClient(sock);
  try {
    await assert.rejects(c.status({ timeoutMs: 150 }), (e: unknown) => {
      assert.ok(e instanceof CriError);
      assert.equal(e.code, "cri.deadline");
      assert.match(e.message, /within 150 ms/);
      return true;
    });
  } finally {
    c.close();
    for (const s of held) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test("waitForCriReady can be cancelled", async () => {
  const ac = new AbortController();
  const p = waitForCriReady(path.join(scratch, "never.sock"), { deadlineMs: 60_000, signal: ac.signal, onWait: () => ac.abort() });
  await assert.rejects(p, (e: unknown) => e instanceof CriError && /cancelled/.test(e.message));
});

test("calls on a closed client fail with a CriError, not a crash", async () => {
  const c = createCriClient(ctrd.socket);
  c.close();
  await assert.rejects(c.version(), CriError);
});

test("PullImage from the lab registry (loopback, offline pause image), then ImageStatus/ListImages see it", async () => {
  const registry = await startRegistry();
  const certs = path.join(scratch, "certs.d");
  fs.mkdirSync(path.join(certs, "localhost"), { recursive: true });
  fs.writeFileSync(path.join(certs, "localhost", "hosts.toml"), registryHostsToml(registry));
  const d = await startContainerd({
    extraConfig: `[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = ${JSON.stringify(certs)}\n`,
  });
  const c = createCriClient(d.socket);
  try {
    const digest = await pushPauseImage(registry);
    assert.equal(await c.imageStatus(PAUSE_IMAGE), undefined);
    const ref = await c.pullImage(PAUSE_IMAGE, { timeoutMs: 60_000 });
    assert.match(ref, /^sha256:[0-9a-f]{64}$/);
    const img = await c.imageStatus(PAUSE_IMAGE);
    assert.ok(img, "present after the pull");
    assert.equal(img.id, ref);
    assert.ok(img.repoTags.includes(PAUSE_IMAGE), JSON.stringify(img));
    assert.ok(
      img.repoDigests.some((x) => x.endsWith(digest)),
      JSON.stringify(img),
    );
    assert.ok(img.size > 0);
    assert.deepEqual(
      (await c.listImages()).map((i) => i.id),
      [ref],
    );
    // A tag the registry does not have: a CriError that says which call failed.
    await assert.rejects(c.pullImage("localhost/kubernetes/pause:no-such-tag", { timeoutMs: 30_000 }), (e: unknown) => {
      assert.ok(e instanceof CriError);
      assert.equal(e.code, "cri.call-failed");
      assert.equal(e.method, "runtime.v1.ImageService/PullImage");
      assert.match(e.message, /no-such-tag/);
      return true;
    });
  } finally {
    c.close();
    await d.cleanup();
    await registry.stop();
  }
});
