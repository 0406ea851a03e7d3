/**
 * The gRPC client for containerd: the CRI `runtime.v1` RuntimeService and
 * ImageService and containerd's own `containerd.services.version.v1.Version`,
 * on one channel to containerd's unix socket, every call with a deadline and
 * every failure a `CriError` saying what to check. Never `ctr`/`crictl`: a
 * subprocess per call is slow, and its text output is not an API.
 *
 * Protos: a field-number-exact subset of cri-api's api.proto plus containerd's
 * version.proto (data/protos/), embedded as a protobufjs JSON descriptor
 * (src/host/cri-protos.gen.ts, regenerate with `node data/protos/generate.mjs`).
 * Loading the subset costs ~15 ms against ~50 ms for the full api.proto, and
 * the bundle needs no .proto files on disk.
 */
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { fromJSON } from "@grpc/proto-loader";
import { criProtoJson } from "./cri-protos.gen.ts";
import { errorMessage } from "../util/errors.ts";
import { BerthFailure, type BerthError } from "../util/result.ts";

export interface CriVersion {
  /** The CRI API version the runtime speaks, e.g. `0.1.0`. */
  version: string;
  runtimeName: string;
  runtimeVersion: string;
  runtimeApiVersion: string;
}

export interface RuntimeCondition {
  type: string;
  status: boolean;
  reason: string;
  message: string;
}

export interface CriStatus {
  /** Condition `RuntimeReady` is present and true. */
  runtimeReady: boolean;
  /** Condition `NetworkReady` is present and true (false until a CNI config exists). */
  networkReady: boolean;
  conditions: RuntimeCondition[];
}

export interface CriImage {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  /** Bytes. */
  size: number;
  pinned: boolean;
}

export interface ContainerdVersion {
  version: string;
  revision: string;
}

export interface RegistryAuth {
  username?: string;
  password?: string;
  auth?: string;
  serverAddress?: string;
  identityToken?: string;
  registryToken?: string;
}

export interface CallOptions {
  /** Deadline for this call, ms. Default: the client's `callTimeoutMs`. */
  timeoutMs?: number;
}

export interface CriClientOptions {
  /** Default per-call deadline, ms (default 5000). Pulls default to 5 min. */
  callTimeoutMs?: number;
  /**
   * The channel's own reconnect backoff. grpc-js waits ~1 s after a failed
   * connect before it tries again; lowered here so a containerd that comes
   * back is reached within tens of ms, not a second later.
   */
  reconnect?: { initialMs: number; maxMs: number };
}

/** The narrow CRI interface the run phase and the agent depend on (fakes implement this). */
export interface CriClient {
  readonly socketPath: string;
  version(opts?: CallOptions): Promise<CriVersion>;
  status(opts?: CallOptions): Promise<CriStatus>;
  /** The image, or `undefined` when the runtime does not have it. */
  imageStatus(ref: string, opts?: CallOptions): Promise<CriImage | undefined>;
  listImages(opts?: CallOptions): Promise<CriImage[]>;
  /** Pulls `ref` and returns the image reference (id) the runtime reports. */
  pullImage(ref: string, opts?: CallOptions & { auth?: RegistryAuth }): Promise<string>;
  /** containerd's own Version API (same socket). */
  containerdVersion(opts?: CallOptions): Promise<ContainerdVersion>;
  close(): void;
}

export type CriErrorCode = "cri.unavailable" | "cri.deadline" | "cri.call-failed" | "cri.not-ready";

/** A failed CRI/containerd call: which call, on which socket, the gRPC status, and what to do. */
export class CriError extends BerthFailure {
  readonly code: CriErrorCode;
  readonly socketPath: string;
  readonly method: string;
  /** grpc status code name (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, ...) when the call reached gRPC. */
  readonly grpcStatus: string | undefined;
  constructor(e: BerthError & { code: CriErrorCode }, socketPath: string, method: string, grpcStatus?: string) {
    super(e);
    this.name = "CriError";
    this.code = e.code;
    this.socketPath = socketPath;
    this.method = method;
    this.grpcStatus = grpcStatus;
  }
}

const SOCKET_HINT = (socketPath: string) =>
  "check that containerd is running (`systemctl status containerd`, `journalctl -u containerd`) " +
  `and that its [grpc] address is ${socketPath}`;

function isServiceError(e: unknown): e is grpc.ServiceError {
  return typeof e === "object" && e !== null && "code" in e && typeof e.code === "number" && "details" in e;
}

function toCriError(err: unknown, socketPath: string, method: string, timeoutMs: number): CriError {
  if (err instanceof CriError) return err;
  const where = { source: `unix://${socketPath}`, path: method };
  if (!isServiceError(err)) {
    return new CriError(
      { code: "cri.call-failed", message: `${method} failed: ${errorMessage(err)}`, where, cause: err },
      socketPath,
      method,
    );
  }
  const status = grpc.status[err.code] ?? String(err.code);
  const make = (code: CriErrorCode, message: string, hint: string) =>
    new CriError({ code, message, where, hint, cause: err }, socketPath, method, status);
  if (err.code === grpc.status.UNAVAILABLE) {
    return make("cri.unavailable", `${method}: containerd is not answering on ${socketPath}: ${err.details}`, SOCKET_HINT(socketPath));
  }
  if (err.code === grpc.status.DEADLINE_EXCEEDED) {
    const message = `${method}: no answer from ${socketPath} within ${timeoutMs} ms (containerd hung or overloaded?)`;
    return make("cri.deadline", message, SOCKET_HINT(socketPath));
  }
  return make(
    "cri.call-failed",
    `${method} failed with ${status}: ${err.details}`,
    "see containerd's log (`journalctl -u containerd`) for the cause",
  );
}

// --- proto loading (once per process) ---------------------------------------

type UnaryFn = (
  req: object,
  meta: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res?: unknown) => void,
) => grpc.ClientUnaryCall;
type ServiceCtor = new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ClientOptions) => grpc.Client;

interface Services {
  runtime: ServiceCtor;
  image: ServiceCtor;
  version: ServiceCtor;
}

let services: Services | undefined;
function loadServices(): Services {
  if (services) return services;
  const def = fromJSON(criProtoJson, {
    keepCase: false,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    runtime: { v1: { RuntimeService: ServiceCtor; ImageService: ServiceCtor } };
    containerd: { services: { version: { v1: { Version: ServiceCtor } } } };
  };
  services = {
    runtime: pkg.runtime.v1.RuntimeService,
    image: pkg.runtime.v1.ImageService,
    version: pkg.containerd.services.version.v1.Version,
  };
  return services;
}

// --- wire shapes (what proto-loader hands back with the options above) -------

interface WireImage {
  id?: string;
  repoTags?: string[];
  repoDigests?: string[];
  size?: number | string;
  pinned?: boolean;
}

function toImage(w: WireImage): CriImage {
  return {
    id: w.id ?? "",
    repoTags: [...(w.repoTags ?? [])],
    repoDigests: [...(w.repoDigests ?? [])],
    size: Number(w.size ?? 0),
    pinned: w.pinned ?? false,
  };
}

function toStatus(res: { status?: { conditions?: Partial<RuntimeCondition>[] } | null }): CriStatus {
  const conditions: RuntimeCondition[] = (res.status?.conditions ?? []).map((c) => ({
    type: c.type ?? "",
    status: c.status ?? false,
    reason: c.reason ?? "",
    message: c.message ?? "",
  }));
  const cond = (t: string) => conditions.some((c) => c.type === t && c.status);
  return { runtimeReady: cond("RuntimeReady"), networkReady: cond("NetworkReady"), conditions };
}

/** `unix:` target for grpc-js from an absolute socket path. */
export function socketTarget(socketPath: string): string {
  return `unix:${path.resolve(socketPath)}`;
}

function channelOptions(o: CriClientOptions): grpc.ChannelOptions {
  const r = o.reconnect ?? { initialMs: 20, maxMs: 500 };
  return {
    "grpc.initial_reconnect_backoff_ms": r.initialMs,
    "grpc.max_reconnect_backoff_ms": r.maxMs,
    // Large CRI responses (ListImages on a busy node) exceed nothing near the
    // 4 MiB default; kept default. No keepalive: a local socket, and the
    // agent's deadline-bound probes find a hung containerd.
  };
}

/**
 * A CRI + containerd client on one channel. Creating it does not connect;
 * the first call does. The channel reconnects by itself after containerd
 * restarts (a call made while it is down fails fast with `cri.unavailable`).
 */
export function createCriClient(socketPath: string, opts: CriClientOptions = {}): CriClient {
  const s = loadServices();
  const target = socketTarget(socketPath);
  const creds = grpc.credentials.createInsecure();
  const runtime = new s.runtime(target, creds, channelOptions(opts));
  // One channel for all three services: same socket, one connection.
  const channelOverride = runtime.getChannel();
  const image = new s.image(target, creds, { channelOverride });
  const version = new s.version(target, creds, { channelOverride });
  const defaultTimeout = opts.callTimeoutMs ?? 5000;
  let closed = false;

  function unary<T>(client: grpc.Client, service: string, method: string, req: object, timeoutMs: number | undefined): Promise<T> {
    const ms = timeoutMs ?? defaultTimeout;
    const name = `${service}/${method}`;
    if (closed) return Promise.reject(toCriError(new Error("client is closed"), socketPath, name, ms));
    const fn = (client as unknown as Record<string, UnaryFn>)[method];
    if (typeof fn !== "function") return Promise.reject(new Error(`internal: no method ${name} in the loaded protos`));
    return new Promise<T>((resolve, reject) => {
      fn.call(client, req, new grpc.Metadata(), { deadline: Date.now() + ms }, (err, res) => {
        if (err) reject(toCriError(err, socketPath, name, ms));
        else resolve(res as T);
      });
    });
  }

  return {
    socketPath,
    async version(o) {
      const r = await unary<{ version: string; runtimeName: string; runtimeVersion: string; runtimeApiVersion: string }>(
        runtime,
        "runtime.v1.RuntimeService",
        "Version",
        { version: "v1" },
        o?.timeoutMs,
      );
      return { version: r.version, runtimeName: r.runtimeName, runtimeVersion: r.runtimeVersion, runtimeApiVersion: r.runtimeApiVersion };
    },
    async status(o) {
      const r = await unary<{ status?: { conditions?: Partial<RuntimeCondition>[] } | null }>(
        runtime,
        "runtime.v1.RuntimeService",
        "Status",
        { verbose: false },
        o?.timeoutMs,
      );
      return toStatus(r);
    },
    async imageStatus(ref, o) {
      const r = await unary<{ image?: WireImage | null }>(
        image,
        "runtime.v1.ImageService",
        "ImageStatus",
        { image: { image: ref }, verbose: false },
        o?.timeoutMs,
      );
      // CRI answers "absent" with an empty image, not an error.
      return r.image && r.image.id ? toImage(r.image) : undefined;
    },
    async listImages(o) {
      const r = await unary<{ images?: WireImage[] }>(image, "runtime.v1.ImageService", "ListImages", {}, o?.timeoutMs);
      return (r.images ?? []).map(toImage);
    },
    async pullImage(ref, o) {
      const req: { image: { image: string }; auth?: RegistryAuth } = { image: { image: ref } };
      if (o?.auth) req.auth = o.auth;
      const r = await unary<{ imageRef: string }>(
        image,
        "runtime.v1.ImageService",
        "PullImage",
        req,
        o?.timeoutMs ?? Math.max(defaultTimeout, 300_000),
      );
      return r.imageRef;
    },
    async containerdVersion(o) {
      const r = await unary<{ version: string; revision: string }>(
        version,
        "containerd.services.version.v1.Version",
        "Version",
        {},
        o?.timeoutMs,
      );
      return { version: r.version, revision: r.revision };
    },
    close() {
      if (closed) return;
      closed = true;
      // All three share runtime's channel; closing it closes the connection.
      runtime.close();
    },
  };
}

/** The running containerd's own Version API, on a fresh channel that is closed afterwards. */
export async function runningContainerdVersion(socketPath: string, opts: CallOptions = {}): Promise<ContainerdVersion> {
  const c = createCriClient(socketPath, { callTimeoutMs: opts.timeoutMs ?? 5000 });
  try {
    return await c.containerdVersion();
  } finally {
    c.close();
  }
}
