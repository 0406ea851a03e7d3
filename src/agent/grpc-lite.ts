/**
 * Unary gRPC calls with constant requests over node:http2 on a unix socket,
 * and the few protobuf fields the containerd probe reads: what the resident
 * agent needs without loading grpc-js and protobufjs (~5 MB of RSS; why:
 * docs/agent.md, "Probes"). Never for the run phase, which uses the full
 * client in src/host/cri.ts.
 */
import http2 from "node:http2";
import net from "node:net";
import { errorMessage } from "../util/errors.ts";

export class GrpcLiteError extends Error {
  constructor(
    message: string,
    /** `deadline`, `unavailable`, or the grpc-status number as a string. */
    readonly kind: string,
  ) {
    super(message);
    this.name = "GrpcLiteError";
  }
}

/** One length-prefixed, uncompressed gRPC message. */
function frame(msg: Uint8Array): Buffer {
  const b = Buffer.alloc(5 + msg.length);
  b.writeUInt8(0, 0);
  b.writeUInt32BE(msg.length, 1);
  Buffer.from(msg).copy(b, 5);
  return b;
}

/**
 * Open one HTTP/2 connection to `socketPath`, make each call in turn, close.
 * Everything (connect, every call) is bound by one deadline of `timeoutMs`.
 */
export async function unaryCalls(
  socketPath: string,
  calls: Array<{ path: string; request: Uint8Array }>,
  timeoutMs: number,
): Promise<Buffer[]> {
  return new Promise<Buffer[]>((resolve, reject) => {
    let done = false;
    let socket: net.Socket | undefined;
    const session = http2.connect("http://localhost", { createConnection: () => (socket = net.connect(socketPath)) });
    const finish = (err: Error | undefined, value?: Buffer[]) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      session.destroy();
      // A session closed by the server's GOAWAY only half-closes its socket on
      // destroy() and can keep it open indefinitely: release the fd ourselves.
      socket?.destroy();
      if (err) reject(err);
      else resolve(value ?? []);
    };
    const timer = setTimeout(
      () => finish(new GrpcLiteError(`no answer within ${timeoutMs} ms (containerd hung or overloaded?)`, "deadline")),
      timeoutMs,
    );
    session.on("error", (e: NodeJS.ErrnoException) =>
      finish(
        new GrpcLiteError(
          e.code === "ENOENT" || e.code === "ECONNREFUSED"
            ? `cannot connect to ${socketPath}: ${e.code}`
            : `connection to ${socketPath} failed: ${e.message}`,
          "unavailable",
        ),
      ),
    );
    const out: Buffer[] = [];
    const next = (i: number) => {
      if (done) return;
      const c = calls[i];
      if (!c) return finish(undefined, out);
      let stream: http2.ClientHttp2Stream;
      try {
        stream = session.request({ ":method": "POST", ":path": c.path, "content-type": "application/grpc", te: "trailers" });
      } catch (e) {
        // request() throws synchronously once the server sent GOAWAY (containerd
        // shutting down gracefully between the two calls) or the session is gone;
        // inside a stream's 'end' listener that would be an uncaught exception.
        return finish(new GrpcLiteError(`${c.path}: ${errorMessage(e)}`, "unavailable"));
      }
      const chunks: Buffer[] = [];
      let status: string | undefined;
      let message = "";
      const takeStatus = (h: http2.IncomingHttpHeaders) => {
        const s = h["grpc-status"];
        if (s !== undefined) {
          status = String(s);
          const raw = String(h["grpc-message"] ?? "");
          // A malformed percent-encoding must not throw inside an event listener.
          try {
            message = decodeURIComponent(raw);
          } catch {
            message = raw;
          }
        }
      };
      stream.on("response", takeStatus);
      stream.on("trailers", takeStatus);
      stream.on("data", (d: Buffer) => chunks.push(d));
      stream.on("error", (e) => finish(new GrpcLiteError(`${c.path}: ${errorMessage(e)}`, "unavailable")));
      stream.on("end", () => {
        if (status === undefined) return finish(new GrpcLiteError(`${c.path}: the answer had no grpc-status`, "unknown"));
        if (status !== "0")
          return finish(new GrpcLiteError(`${c.path} failed with gRPC status ${status}${message ? `: ${message}` : ""}`, status));
        const body = Buffer.concat(chunks);
        if (body.length < 5) return finish(new GrpcLiteError(`${c.path}: empty answer`, "unknown"));
        const len = body.readUInt32BE(1);
        if (body.readUInt8(0) !== 0 || body.length < 5 + len)
          return finish(new GrpcLiteError(`${c.path}: unexpected framing (compressed or truncated)`, "unknown"));
        out.push(body.subarray(5, 5 + len));
        next(i + 1);
      });
      stream.end(frame(c.request));
    };
    next(0);
  });
}

// ---------------------------------------------------------------- protobuf

export type PbField = { num: number; wire: number; value: bigint | Buffer };

/** The top-level fields of one protobuf message (varint and length-delimited kept; fixed skipped). */
function pbFields(buf: Buffer): PbField[] {
  const fields: PbField[] = [];
  let i = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (i >= buf.length) throw new Error("truncated varint");
      const b = buf[i++] as number;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 63n) throw new Error("varint too long");
    }
  };
  while (i < buf.length) {
    const key = Number(varint());
    const num = key >>> 3;
    const wire = key & 7;
    if (wire === 0) fields.push({ num, wire, value: varint() });
    else if (wire === 2) {
      const len = Number(varint());
      if (i + len > buf.length) throw new Error("truncated field");
      fields.push({ num, wire, value: buf.subarray(i, i + len) });
      i += len;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
  return fields;
}

const pbString = (f: PbField | undefined) => (f && Buffer.isBuffer(f.value) ? f.value.toString("utf8") : "");

/** containerd.services.version.v1.VersionResponse */
export function decodeVersion(buf: Buffer): { version: string; revision: string } {
  const f = pbFields(buf);
  return { version: pbString(f.find((x) => x.num === 1)), revision: pbString(f.find((x) => x.num === 2)) };
}

export interface CriCondition {
  type: string;
  status: boolean;
  reason: string;
  message: string;
}

/** runtime.v1.StatusResponse → status.conditions */
export function decodeStatusConditions(buf: Buffer): CriCondition[] {
  const status = pbFields(buf).find((x) => x.num === 1 && Buffer.isBuffer(x.value));
  if (!status) return [];
  return pbFields(status.value as Buffer)
    .filter((x) => x.num === 1 && Buffer.isBuffer(x.value))
    .map((c) => {
      const f = pbFields(c.value as Buffer);
      const st = f.find((x) => x.num === 2);
      return {
        type: pbString(f.find((x) => x.num === 1)),
        status: st !== undefined && st.value === 1n,
        reason: pbString(f.find((x) => x.num === 3)),
        message: pbString(f.find((x) => x.num === 4)),
      };
    });
}

export const VERSION_PATH = "/containerd.services.version.v1.Version/Version";
export const CRI_STATUS_PATH = "/runtime.v1.RuntimeService/Status";
