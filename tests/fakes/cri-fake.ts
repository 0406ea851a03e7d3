/**
 * A recording fake of `CriClient` (src/host/cri.ts) for the run phase's and
 * the agent's unit tests. It records every call, holds a set of images, can
 * be "down" (calls reject with cri.unavailable like the real client does when
 * containerd is not answering), "hung" (cri.deadline), not ready yet, and can
 * be told to fail the next call of a method once.
 */
import {
  CriError,
  type CriClient,
  type CriImage,
  type CriStatus,
  type CriVersion,
  type ContainerdVersion,
  type CallOptions,
  type RegistryAuth,
} from "../../src/host/cri.ts";

export type CriFakeMethod = "version" | "status" | "imageStatus" | "listImages" | "pullImage" | "containerdVersion";

export interface CriFakeCall {
  method: CriFakeMethod;
  ref?: string;
  timeoutMs?: number;
  auth?: RegistryAuth;
}

export class FakeCri implements CriClient {
  readonly socketPath: string;
  readonly calls: CriFakeCall[] = [];
  readonly images = new Map<string, CriImage>();
  /** containerd not answering: every call rejects with `cri.unavailable`. */
  down = false;
  /** containerd hung: every call rejects with `cri.deadline`. */
  hung = false;
  runtimeReady = true;
  networkReady = false;
  closed = false;
  /** Images `pullImage` can fetch (ref → image); others fail with NOT_FOUND-like cri.call-failed. */
  readonly registry = new Map<string, CriImage>();
  private failures = new Map<CriFakeMethod, Error[]>();

  constructor(socketPath = "/run/containerd/containerd.sock") {
    this.socketPath = socketPath;
  }

  failOnce(method: CriFakeMethod, err?: Error): this {
    const q = this.failures.get(method) ?? [];
    q.push(err ?? this.error("cri.call-failed", method, `fake: ${method} failed`));
    this.failures.set(method, q);
    return this;
  }

  /** An image the fake registry serves, by ref. */
  addRegistryImage(ref: string, id = `sha256:${"0".repeat(63)}${this.registry.size}`): this {
    this.registry.set(ref, { id, repoTags: [ref], repoDigests: [], size: 1024, pinned: false });
    return this;
  }

  callNames(): CriFakeMethod[] {
    return this.calls.map((c) => c.method);
  }

  error(code: "cri.unavailable" | "cri.deadline" | "cri.call-failed", method: string, message: string): CriError {
    const grpc = code === "cri.unavailable" ? "UNAVAILABLE" : code === "cri.deadline" ? "DEADLINE_EXCEEDED" : "UNKNOWN";
    return new CriError({ code, message, where: { source: `unix://${this.socketPath}`, path: method } }, this.socketPath, method, grpc);
  }

  private enter(c: CriFakeCall): void {
    this.calls.push(c);
    if (this.closed) throw this.error("cri.call-failed", c.method, "fake: client is closed");
    if (this.down) throw this.error("cri.unavailable", c.method, `fake: containerd is not answering on ${this.socketPath}`);
    if (this.hung) throw this.error("cri.deadline", c.method, `fake: no answer within ${c.timeoutMs ?? 5000} ms`);
    const err = this.failures.get(c.method)?.shift();
    if (err) throw err;
  }

  private t(o?: CallOptions): { timeoutMs?: number } {
    return o?.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {};
  }

  async version(o?: CallOptions): Promise<CriVersion> {
    this.enter({ method: "version", ...this.t(o) });
    return { version: "0.1.0", runtimeName: "containerd", runtimeVersion: "1.6.20", runtimeApiVersion: "v1" };
  }

  async status(o?: CallOptions): Promise<CriStatus> {
    this.enter({ method: "status", ...this.t(o) });
    return {
      runtimeReady: this.runtimeReady,
      networkReady: this.networkReady,
      conditions: [
        { type: "RuntimeReady", status: this.runtimeReady, reason: this.runtimeReady ? "" : "FakeNotReady", message: "" },
        { type: "NetworkReady", status: this.networkReady, reason: this.networkReady ? "" : "NetworkPluginNotReady", message: "" },
      ],
    };
  }

  async imageStatus(ref: string, o?: CallOptions): Promise<CriImage | undefined> {
    this.enter({ method: "imageStatus", ref, ...this.t(o) });
    const i = this.images.get(ref);
    return i ? { ...i } : undefined;
  }

  async listImages(o?: CallOptions): Promise<CriImage[]> {
    this.enter({ method: "listImages", ...this.t(o) });
    return [...this.images.values()].map((i) => ({ ...i }));
  }

  async pullImage(ref: string, o?: CallOptions & { auth?: RegistryAuth }): Promise<string> {
    this.enter({ method: "pullImage", ref, ...this.t(o), ...(o?.auth ? { auth: o.auth } : {}) });
    const img = this.registry.get(ref);
    if (!img) throw this.error("cri.call-failed", "pullImage", `fake: ${ref}: not found`);
    this.images.set(ref, { ...img });
    return img.id;
  }

  async containerdVersion(o?: CallOptions): Promise<ContainerdVersion> {
    this.enter({ method: "containerdVersion", ...this.t(o) });
    return { version: "1.6.20", revision: "fake" };
  }

  close(): void {
    this.closed = true;
  }
}
