// The probes against a real containerd (started by hand, Debian's 1.6) and a
// local HTTP server: healthy, killed, hung (SIGSTOP: caught by the deadline),
// socket deleted (caught although an old connection would still work), and
// kubelet's healthz answering 200, 500, hanging or refusing.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { startContainerd, type ContainerdHandle } from "../helpers/containerd.ts";
import { containerdProbe, kubeletProbe } from "../../src/agent/probes.ts";

describe("containerd probe (real containerd)", () => {
  let ctrd: ContainerdHandle;
  before(async () => {
    ctrd = await startContainerd();
  });
  after(async () => {
    try {
      process.kill(ctrd.pid, "SIGCONT");
    } catch {
      /* already gone */
    }
    await ctrd.cleanup();
  });

  it("passes when Version and CRI Status answer", async () => {
    const r = await containerdProbe(ctrd.socket)(2000);
    assert.equal(r.ok, true, r.cause);
    assert.ok(r.latencyMs >= 0);
  });

  it("fails within the deadline when containerd is hung (SIGSTOP)", async () => {
    process.kill(ctrd.pid, "SIGSTOP");
    try {
      const t0 = Date.now();
      const r = await containerdProbe(ctrd.socket)(300);
      assert.equal(r.ok, false);
      assert.match(r.cause ?? "", /within 300 ms|DEADLINE|deadline/i);
      assert.ok(Date.now() - t0 < 3000, "bounded by the deadline");
    } finally {
      process.kill(ctrd.pid, "SIGCONT");
    }
    const again = await containerdProbe(ctrd.socket)(2000);
    assert.equal(again.ok, true, again.cause);
  });

  it("fails when the socket file is gone, although containerd still runs", async () => {
    const moved = `${ctrd.socket}.moved`;
    fs.renameSync(ctrd.socket, moved);
    try {
      const r = await containerdProbe(ctrd.socket)(500);
      assert.equal(r.ok, false);
      assert.match(r.cause ?? "", /does not exist/);
    } finally {
      fs.renameSync(moved, ctrd.socket);
    }
  });

  it("fails fast when containerd is killed", async () => {
    await ctrd.kill9();
    // containerd leaves its socket file behind: the connect is refused.
    const r = await containerdProbe(ctrd.socket)(1000);
    assert.equal(r.ok, false);
    assert.ok(r.cause && r.cause.length > 0);
    await ctrd.restart();
    const again = await containerdProbe(ctrd.socket)(2000);
    assert.equal(again.ok, true, again.cause);
  });
});

describe("kubelet probe", () => {
  let mode = "ok";
  let server: http.Server;
  let url = "";
  before(async () => {
    server = http.createServer((_req, res) => {
      if (mode === "hang") return;
      if (mode === "fail") return void res.writeHead(500).end("[-]ping failed\nhealthz check failed\n");
      res.writeHead(200).end("ok");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/healthz`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it("passes on 200", async () => {
    mode = "ok";
    assert.deepEqual((await kubeletProbe(url)(1000)).ok, true);
  });
  it("fails on 500 with the body in the cause", async () => {
    mode = "fail";
    const r = await kubeletProbe(url)(1000);
    assert.equal(r.ok, false);
    assert.match(r.cause ?? "", /answered 500: \[-\]ping failed healthz check failed/);
  });
  it("fails at the deadline when kubelet hangs", async () => {
    mode = "hang";
    const r = await kubeletProbe(url)(150);
    assert.equal(r.ok, false);
    assert.match(r.cause ?? "", /no answer within 150 ms/);
    server.closeAllConnections();
  });
  it("fails when nothing listens", async () => {
    const s = http.createServer();
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
    const port = (s.address() as AddressInfo).port;
    await new Promise((r) => s.close(r));
    const r = await kubeletProbe(`http://127.0.0.1:${port}/healthz`)(500);
    assert.equal(r.ok, false);
    assert.match(r.cause ?? "", /connection refused/);
  });
});

describe("grpc-lite protobuf decoding", () => {
  /** Minimal protobuf writer for the test's fixtures (tag, varint, bytes). */
  const varint = (n: number) => {
    const out: number[] = [];
    do {
      let b = n & 0x7f;
      n >>>= 7;
      if (n) b |= 0x80;
      out.push(b);
    } while (n);
    return out;
  };
  const field = (num: number, v: Buffer | boolean): Buffer =>
    typeof v === "boolean"
      ? Buffer.from([...varint((num << 3) | 0), v ? 1 : 0])
      : Buffer.concat([Buffer.from([...varint((num << 3) | 2), ...varint(v.length)]), v]);
  const s = (x: string) => Buffer.from(x, "utf8");

  it("decodes VersionResponse and the conditions of a StatusResponse", async () => {
    const { decodeVersion, decodeStatusConditions } = await import("../../src/agent/grpc-lite.ts");
    assert.deepEqual(decodeVersion(Buffer.concat([field(1, s("1.6.20")), field(2, s("abc"))])), { version: "1.6.20", revision: "abc" });
    const cond = (type: string, status: boolean, reason = "", message = "") =>
      Buffer.concat([field(1, s(type)), field(2, status), field(3, s(reason)), field(4, s(message))]);
    const runtimeStatus = Buffer.concat([
      field(1, cond("RuntimeReady", true)),
      field(1, cond("NetworkReady", false, "NetworkPluginNotReady", "cni config uninitialized")),
    ]);
    // info map entry (field 2) must be skipped.
    const resp = Buffer.concat([field(1, runtimeStatus), field(2, Buffer.concat([field(1, s("k")), field(2, s("v"))]))]);
    assert.deepEqual(decodeStatusConditions(resp), [
      { type: "RuntimeReady", status: true, reason: "", message: "" },
      { type: "NetworkReady", status: false, reason: "NetworkPluginNotReady", message: "cni config uninitialized" },
    ]);
    assert.deepEqual(decodeStatusConditions(Buffer.alloc(0)), []);
    assert.throws(() => decodeVersion(Buffer.from([0x0a, 0x05, 0x61])), /truncated/);
  });
});

describe("containerd probe through an injected CRI client (fakes)", () => {
  it("maps down, hung and not-ready to failures with causes", async () => {
    const { FakeCri } = await import("../fakes/cri-fake.ts");
    const cri = new FakeCri();
    // The probe closes its client after each use, as it must; the factory hands the same fake out again.
    const probe = containerdProbe("/fake.sock", { client: () => Object.assign(cri, { closed: false }), skipSocketCheck: true });
    assert.equal((await probe(100)).ok, true);
    cri.down = true;
    assert.match((await probe(100)).cause ?? "", /containerd Version: fake: containerd is not answering/);
    cri.down = false;
    cri.hung = true;
    assert.equal((await probe(100)).ok, false);
    cri.hung = false;
    cri.runtimeReady = false;
    assert.match((await probe(100)).cause ?? "", /RuntimeReady/);
  });
});
