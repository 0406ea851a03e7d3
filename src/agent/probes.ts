/**
 * The health probes: containerd (socket, Version, CRI Status on a fresh
 * connection through grpc-lite.ts) and kubelet (GET healthz with node:http,
 * no keep-alive). Each is bound by a deadline, so a hung process reads as a
 * failure within `timeoutMs`; a probe never throws. Why fresh connections and
 * no fetch(): docs/agent.md, "Probes".
 */
import fs from "node:fs/promises";
import http from "node:http";
import type { CriClient } from "../host/cri.ts";
import { CRI_STATUS_PATH, VERSION_PATH, decodeStatusConditions, decodeVersion, unaryCalls, type CriCondition } from "./grpc-lite.ts";
import type { ProbeOutcome } from "./decide.ts";
import { errorMessage } from "../util/errors.ts";

export type Probe = (timeoutMs: number) => Promise<ProbeOutcome>;

export interface ContainerdProbeOptions {
  /** Probe through this client instead (tests inject src/host/cri.ts fakes). Default: grpc-lite on a fresh connection. */
  client?: (socketPath: string, timeoutMs: number) => CriClient;
  /** Skip the socket stat (fakes have no socket). */
  skipSocketCheck?: boolean;
}

export function containerdProbe(socketPath: string, opts: ContainerdProbeOptions = {}): Probe {
  return async (timeoutMs) => {
    const t0 = performance.now();
    const done = (ok: boolean, cause?: string): ProbeOutcome => ({
      ok,
      latencyMs: Math.round((performance.now() - t0) * 10) / 10,
      ...(cause !== undefined ? { cause } : {}),
    });
    if (!opts.skipSocketCheck) {
      try {
        const st = await fs.stat(socketPath);
        if (!st.isSocket()) return done(false, `${socketPath} is not a socket`);
      } catch {
        return done(false, `containerd's socket ${socketPath} does not exist`);
      }
    }
    let conditions: CriCondition[];
    if (opts.client) {
      const client = opts.client(socketPath, timeoutMs);
      try {
        const [ver, status] = await Promise.allSettled([client.containerdVersion({ timeoutMs }), client.status({ timeoutMs })]);
        if (ver.status === "rejected") return done(false, `containerd Version: ${errorMessage(ver.reason)}`);
        if (status.status === "rejected") return done(false, `CRI Status: ${errorMessage(status.reason)}`);
        conditions = status.value.conditions;
      } finally {
        client.close();
      }
    } else {
      try {
        // Both calls on one fresh connection, under one deadline.
        const [ver, status] = await unaryCalls(
          socketPath,
          [
            { path: VERSION_PATH, request: new Uint8Array(0) },
            { path: CRI_STATUS_PATH, request: new Uint8Array(0) },
          ],
          timeoutMs,
        );
        if (!decodeVersion(ver as Buffer).version) return done(false, "containerd Version answered without a version");
        conditions = decodeStatusConditions(status as Buffer);
      } catch (e) {
        return done(false, `containerd ${errorMessage(e)}`);
      }
    }
    const ready = conditions.find((x) => x.type === "RuntimeReady");
    if (!ready) return done(false, "CRI Status has no RuntimeReady condition");
    if (!ready.status)
      return done(false, `CRI RuntimeReady is false: ${ready.reason || "no reason"}${ready.message ? `: ${ready.message}` : ""}`);
    return done(true);
  };
}

export function kubeletProbe(url: string): Probe {
  const u = new URL(url);
  return (timeoutMs) =>
    new Promise<ProbeOutcome>((resolve) => {
      const t0 = performance.now();
      let settled = false;
      const finish = (ok: boolean, cause?: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.destroy();
        resolve({ ok, latencyMs: Math.round((performance.now() - t0) * 10) / 10, ...(cause !== undefined ? { cause } : {}) });
      };
      const req = http.get(u, { agent: false, headers: { connection: "close" } }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          // Only the start of the body goes into the cause.
          if (size < 512) chunks.push(c);
          size += c.length;
        });
        res.on("end", () => {
          if (res.statusCode === 200) finish(true);
          else {
            const body = Buffer.concat(chunks).toString("utf8").replace(/\s+/g, " ").trim().slice(0, 200);
            finish(false, `${url} answered ${res.statusCode}${body ? `: ${body}` : ""}`);
          }
        });
        res.on("error", (e) => finish(false, `${url}: ${errorMessage(e)}`));
      });
      const timer = setTimeout(() => finish(false, `${url}: no answer within ${timeoutMs} ms (kubelet hung or overloaded?)`), timeoutMs);
      req.on("error", (e: NodeJS.ErrnoException) =>
        finish(false, e.code === "ECONNREFUSED" ? `${url}: connection refused (kubelet not listening)` : `${url}: ${errorMessage(e)}`),
      );
    });
}
