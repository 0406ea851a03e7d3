// grpc-lite against a hand-driven HTTP/2 server on a unix socket in a temp
// dir: the server misbehaves in ways a real containerd can (a graceful
// shutdown's GOAWAY between the probe's two calls, a malformed grpc-message).
// The probe must fail cleanly: no exception escaping an event listener (that
// would kill the agent) and no socket left open.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import http2 from "node:http2";
import os from "node:os";
import path from "node:path";
import { GrpcLiteError, unaryCalls } from "../../src/agent/grpc-lite.ts";

type Behaviour = "goaway-then-answer" | "bad-grpc-message";

function grpcFrame(msg: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h.writeUInt32BE(msg.length, 1);
  return Buffer.concat([h, msg]);
}

describe("grpc-lite against a misbehaving server", () => {
  let dir: string;
  let sock: string;
  let server: http2.Http2Server;
  let behaviour: Behaviour = "goaway-then-answer";
  const serverSessions = new Set<http2.ServerHttp2Session>();

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "berth-grpc-lite-"));
    sock = path.join(dir, "grpc.sock");
    server = http2.createServer();
    server.on("session", (s) => {
      serverSessions.add(s);
      s.on("close", () => serverSessions.delete(s));
    });
    server.on("stream", (stream) => {
      if (behaviour === "bad-grpc-message") {
        // Trailers-only answer whose message is not valid percent-encoding.
        stream.respond(
          { ":status": 200, "content-type": "application/grpc", "grpc-status": "14", "grpc-message": "down 100%zz" },
          { endStream: true },
        );
        return;
      }
      // containerd shutting down gracefully: GOAWAY first, then the stream in flight still completes.
      stream.session?.goaway(http2.constants.NGHTTP2_NO_ERROR, stream.id ?? 1);
      stream.on("data", () => {});
      stream.on("end", () => {
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        stream.end(grpcFrame(Buffer.from([0x0a, 0x03, 0x31, 0x2e, 0x37])));
      });
    });
    await new Promise<void>((resolve) => server.listen(sock, resolve));
  });

  after(async () => {
    for (const s of serverSessions) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const calls = [
    { path: "/containerd.services.version.v1.Version/Version", request: new Uint8Array(0) },
    { path: "/runtime.v1.RuntimeService/Status", request: new Uint8Array(0) },
  ];

  it("fails the call after a GOAWAY instead of throwing from a listener, and releases the socket", { timeout: 10_000 }, async (t) => {
    behaviour = "goaway-then-answer";
    // Record the client's socket: the server's side of a GOAWAY'd connection
    // never reports the close, so the client socket itself is the witness.
    const opened: net.Socket[] = [];
    const connect = net.connect;
    t.mock.method(net, "connect", (...args: Parameters<typeof net.connect>) => {
      const s = connect(...args);
      opened.push(s);
      return s;
    });
    await assert.rejects(unaryCalls(sock, calls, 2000), (e: unknown) => {
      assert.ok(e instanceof GrpcLiteError);
      assert.equal(e.kind, "unavailable");
      assert.match(e.message, /RuntimeService\/Status/);
      return true;
    });
    assert.equal(opened.length, 1);
    assert.equal(opened[0]?.destroyed, true, "the connection's socket is released");
  });

  it("keeps a malformed grpc-message as it is instead of throwing", { timeout: 10_000 }, async () => {
    behaviour = "bad-grpc-message";
    await assert.rejects(unaryCalls(sock, calls, 2000), (e: unknown) => {
      assert.ok(e instanceof GrpcLiteError);
      assert.equal(e.kind, "14");
      assert.match(e.message, /down 100%zz/);
      return true;
    });
  });
});
