/**
 * IMDSv2 client: PUT a session token, then GET with it.
 *
 * Hand-written on node:http rather than @aws-sdk/credential-provider-imds or
 * the EC2 client's IMDS: it is ~150 lines, loads in well under a millisecond,
 * and berth needs only `get`; the SDK pulls in hundreds of ms of modules.
 * Behaviour follows the AWS SDKs: endpoint from
 * AWS_EC2_METADATA_SERVICE_ENDPOINT, else the IPv4/IPv6 default chosen by
 * AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE; AWS_EC2_METADATA_DISABLED=true turns
 * it off; a token PUT answered 403/404/405 falls back to IMDSv1 unless
 * AWS_EC2_METADATA_V1_DISABLED=true.
 */
import http from "node:http";
import type { ImdsClient } from "./types.ts";
import { BerthFailure, type BerthError } from "../util/result.ts";
import { retry, RetryExhausted, type Backoff } from "../util/retry.ts";
import { httpRequest, retryableStatus, TransportError, type HttpResponse } from "./http.ts";

export const IMDS_IPV4_ENDPOINT = "http://169.254.169.254";
export const IMDS_IPV6_ENDPOINT = "http://[fd00:ec2::254]";
const TOKEN_PATH = "/latest/api/token";
const TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER = "x-aws-ec2-metadata-token";

export interface ImdsClientOptions {
  /** Base URL, e.g. `http://127.0.0.1:1338`; overrides the environment. */
  endpoint?: string;
  /** Environment to read the AWS_EC2_METADATA_* settings from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Deadline of one HTTP exchange, ms (default 2000). */
  timeoutMs?: number;
  /**
   * Deadline of one `get` including every retry, ms. Default 60 s: nodeadm
   * allows ~60 attempts 1 s apart, so a node whose IMDS comes up late still boots.
   */
  deadlineMs?: number;
  /** Requested token lifetime, seconds (1..21600, default 21600). */
  tokenTtlSeconds?: number;
  /** Backoff between attempts (default 50 ms doubling to 1 s, full jitter). */
  backoff?: Backoff;
  /** Told about every retry, for structured logs. */
  onRetry?: (info: { path: string; attempt: number; delayMs: number; cause: unknown }) => void;
}

/** The client plus what the shell needs to manage it. */
export interface ImdsHttpClient extends ImdsClient {
  readonly endpoint: string;
  /** Free pooled sockets. */
  close(): void;
}

/** An HTTP answer IMDS gave that is not worth retrying. */
class ImdsStatusError extends Error {
  constructor(
    readonly status: number,
    readonly path: string,
  ) {
    super(`IMDS answered HTTP ${status} for ${path}`);
  }
}
class RetryableStatus extends Error {
  constructor(readonly status: number, path: string) {
    super(`IMDS answered HTTP ${status} for ${path}`);
  }
}

const isTrue = (v: string | undefined) => v !== undefined && v.trim().toLowerCase() === "true";

/** Where IMDS is, per the SDK environment variables. Exported for tests and `berth facts`. */
export function resolveImdsEndpoint(env: NodeJS.ProcessEnv, explicit?: string): { endpoint: string } | { error: BerthError } {
  const raw = explicit ?? env.AWS_EC2_METADATA_SERVICE_ENDPOINT;
  if (raw !== undefined && raw !== "") {
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      return { error: { code: "facts.imds-endpoint", message: `IMDS endpoint ${JSON.stringify(raw)} is not a URL`, where: { source: explicit ? "option endpoint" : "env AWS_EC2_METADATA_SERVICE_ENDPOINT" }, hint: "use a URL like http://169.254.169.254 or http://[fd00:ec2::254]" } };
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      return { error: { code: "facts.imds-endpoint", message: `IMDS endpoint ${raw} must be http(s)`, where: { source: "env AWS_EC2_METADATA_SERVICE_ENDPOINT" }, hint: "use a URL like http://169.254.169.254" } };
    }
    return { endpoint: u.origin + u.pathname.replace(/\/+$/, "") };
  }
  const mode = (env.AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE ?? "IPv4").trim();
  if (mode.toLowerCase() === "ipv4") return { endpoint: IMDS_IPV4_ENDPOINT };
  if (mode.toLowerCase() === "ipv6") return { endpoint: IMDS_IPV6_ENDPOINT };
  return { error: { code: "facts.imds-endpoint", message: `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE is ${JSON.stringify(mode)}`, where: { source: "env AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE" }, hint: "set it to IPv4 or IPv6 (or unset it)" } };
}

export function createImdsClient(opts: ImdsClientOptions = {}): ImdsHttpClient {
  const env = opts.env ?? process.env;
  const timeoutMs = opts.timeoutMs ?? 2000;
  const deadlineMs = opts.deadlineMs ?? 60_000;
  const ttl = Math.min(21600, Math.max(1, Math.floor(opts.tokenTtlSeconds ?? 21600)));
  const backoff = opts.backoff ?? { initialMs: 50, maxMs: 1000 };
  const disabled = isTrue(env.AWS_EC2_METADATA_DISABLED);
  const v1Disabled = isTrue(env.AWS_EC2_METADATA_V1_DISABLED);
  const resolved = resolveImdsEndpoint(env, opts.endpoint);
  const endpoint = "endpoint" in resolved ? resolved.endpoint : "";
  // keepAlive: one TCP connection serves the token PUT and every GET. Node
  // unrefs idle pooled sockets, so this never holds the process open.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

  let token: { value: string; expiresAt: number } | undefined;
  let tokenInFlight: Promise<string | undefined> | undefined;
  let useV1 = false;

  const url = (p: string) => new URL(endpoint + p);

  async function fetchToken(remainingMs: number): Promise<string | undefined> {
    const res = await httpRequest({ method: "PUT", url: url(TOKEN_PATH), headers: { [TTL_HEADER]: String(ttl) }, timeoutMs: Math.min(timeoutMs, remainingMs), agent });
    if (res.status === 200) {
      const value = res.body.toString("utf8").trim();
      const granted = Number(res.headers[TTL_HEADER] ?? ttl);
      token = { value, expiresAt: Date.now() + (Number.isFinite(granted) && granted > 0 ? granted : ttl) * 1000 };
      return value;
    }
    if ((res.status === 403 || res.status === 404 || res.status === 405) && !v1Disabled) {
      // No token service (IMDSv1-only stand-ins, old Outposts): fall back as the SDKs do.
      useV1 = true;
      return undefined;
    }
    if (retryableStatus(res.status)) throw new RetryableStatus(res.status, TOKEN_PATH);
    throw new ImdsStatusError(res.status, TOKEN_PATH);
  }

  /** A valid token, shared by concurrent callers; refreshed a minute (or a tenth of its life) before expiry. */
  async function currentToken(remainingMs: number): Promise<string | undefined> {
    if (useV1) return undefined;
    const margin = Math.min(60_000, (ttl * 1000) / 10);
    if (token && token.expiresAt - margin > Date.now()) return token.value;
    tokenInFlight ??= fetchToken(remainingMs).finally(() => {
      tokenInFlight = undefined;
    });
    return tokenInFlight;
  }

  async function once(path: string, remainingMs: number): Promise<HttpResponse | undefined> {
    const p = "/latest/" + path.replace(/^\/+/, "");
    for (let authTries = 0; ; authTries++) {
      const t = await currentToken(remainingMs);
      const res = await httpRequest({ method: "GET", url: url(p), headers: t ? { [TOKEN_HEADER]: t } : {}, timeoutMs: Math.min(timeoutMs, remainingMs), agent });
      if (res.status === 200) return res;
      if (res.status === 404) return undefined;
      if (res.status === 401 && authTries === 0) {
        // Expired or revoked (IMDS restarted): one fresh token, then a normal retry.
        if (token?.value === t) token = undefined;
        useV1 = false;
        continue;
      }
      if (retryableStatus(res.status) || res.status === 401) throw new RetryableStatus(res.status, p);
      throw new ImdsStatusError(res.status, p);
    }
  }

  async function getResponse(path: string): Promise<HttpResponse | undefined> {
    if (disabled) {
      throw new BerthFailure({ code: "facts.imds-disabled", message: `IMDS is disabled, so ${path} cannot be read`, where: { source: "env AWS_EC2_METADATA_DISABLED" }, hint: "unset AWS_EC2_METADATA_DISABLED, or run berth with --facts FILE / the demo profile" });
    }
    if ("error" in resolved) throw new BerthFailure(resolved.error);
    try {
      return await retry((_attempt, remaining) => once(path, remaining), {
        ...backoff,
        timeoutMs: deadlineMs,
        retryable: (e) => e instanceof TransportError || e instanceof RetryableStatus,
        onRetry: (i) => opts.onRetry?.({ path, attempt: i.attempt, delayMs: i.delayMs, cause: i.cause }),
      });
    } catch (e) {
      const last = e instanceof RetryExhausted ? e.lastError : e;
      if (last instanceof ImdsStatusError) {
        throw new BerthFailure({ code: "facts.imds-status", message: `IMDS answered HTTP ${last.status} for ${last.path}`, where: { source: `${endpoint}${last.path}` }, hint: last.status === 403 ? "IMDS refused the request: check the instance's metadata options (http-endpoint enabled, hop limit ≥ 2 inside containers)" : "check the instance's metadata options and that the path exists", cause: e });
      }
      const detail = e instanceof RetryExhausted ? `gave up after ${e.attempts} attempt(s) in ${e.elapsedMs} ms: ${last instanceof Error ? last.message : String(last)}` : e instanceof Error ? e.message : String(e);
      throw new BerthFailure({ code: "facts.imds-unreachable", message: `could not read ${path} from IMDS at ${endpoint}: ${detail}`, where: { source: `${endpoint}/latest/${path}` }, hint: "check that IMDS is enabled for this instance (HttpEndpoint=enabled, HttpPutResponseHopLimit ≥ 2 in containers), or point AWS_EC2_METADATA_SERVICE_ENDPOINT at a reachable endpoint", cause: e });
    }
  }

  return {
    endpoint,
    async get(path) {
      const res = await getResponse(path);
      return res?.body.toString("utf8");
    },
    async getBytes(path) {
      const res = await getResponse(path);
      return res ? new Uint8Array(res.body.buffer, res.body.byteOffset, res.body.byteLength) : undefined;
    },
    close() {
      agent.destroy();
    },
  };
}
