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
import { awsFlag } from "./aws-env.ts";
import { errorMessage } from "../util/errors.ts";

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
  constructor(
    readonly status: number,
    path: string,
  ) {
    super(`IMDS answered HTTP ${status} for ${path}`);
  }
}

/** Where IMDS is, per the SDK environment variables. Exported for tests and `berth facts`. */
export function resolveImdsEndpoint(env: NodeJS.ProcessEnv, explicit?: string): { endpoint: string } | { error: BerthError } {
  const raw = explicit ?? env.AWS_EC2_METADATA_SERVICE_ENDPOINT;
  if (raw !== undefined && raw !== "") {
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      return {
        error: {
          code: "facts.imds-endpoint",
          message: `IMDS endpoint ${JSON.stringify(raw)} is not a URL`,
          where: { source: explicit ? "option endpoint" : "env AWS_EC2_METADATA_SERVICE_ENDPOINT" },
          hint: "use a URL like http://169.254.169.254 or http://[fd00:ec2::254]",
        },
      };
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      return {
        error: {
          code: "facts.imds-endpoint",
          message: `IMDS endpoint ${raw} must be http(s)`,
          where: { source: "env AWS_EC2_METADATA_SERVICE_ENDPOINT" },
          hint: "use a URL like http://169.254.169.254",
        },
      };
    }
    return { endpoint: u.origin + u.pathname.replace(/\/+$/, "") };
  }
  const mode = (env.AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE ?? "IPv4").trim();
  if (mode.toLowerCase() === "ipv4") return { endpoint: IMDS_IPV4_ENDPOINT };
  if (mode.toLowerCase() === "ipv6") return { endpoint: IMDS_IPV6_ENDPOINT };
  return {
    error: {
      code: "facts.imds-endpoint",
      message: `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE is ${JSON.stringify(mode)}`,
      where: { source: "env AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE" },
      hint: "set it to IPv4 or IPv6 (or unset it)",
    },
  };
}

/** One client's settings and its token state. */
interface Session {
  endpoint: string;
  resolved: ReturnType<typeof resolveImdsEndpoint>;
  disabled: boolean;
  v1Disabled: boolean;
  timeoutMs: number;
  deadlineMs: number;
  ttl: number;
  backoff: Backoff;
  onRetry: ImdsClientOptions["onRetry"];
  agent: http.Agent;
  token: { value: string; expiresAt: number } | undefined;
  tokenInFlight: Promise<string | undefined> | undefined;
  /** The token PUT was refused: IMDSv1 (no token) from now on. */
  useV1: boolean;
}

export function createImdsClient(opts: ImdsClientOptions = {}): ImdsHttpClient {
  const env = opts.env ?? process.env;
  const resolved = resolveImdsEndpoint(env, opts.endpoint);
  const s: Session = {
    endpoint: "endpoint" in resolved ? resolved.endpoint : "",
    resolved,
    disabled: awsFlag(env.AWS_EC2_METADATA_DISABLED),
    v1Disabled: awsFlag(env.AWS_EC2_METADATA_V1_DISABLED),
    timeoutMs: opts.timeoutMs ?? 2000,
    deadlineMs: opts.deadlineMs ?? 60_000,
    ttl: Math.min(21600, Math.max(1, Math.floor(opts.tokenTtlSeconds ?? 21600))),
    backoff: opts.backoff ?? { initialMs: 50, maxMs: 1000 },
    onRetry: opts.onRetry,
    // keepAlive: one TCP connection serves the token PUT and every GET. Node
    // unrefs idle pooled sockets, so this never holds the process open.
    agent: new http.Agent({ keepAlive: true, maxSockets: 8 }),
    token: undefined,
    tokenInFlight: undefined,
    useV1: false,
  };
  return {
    endpoint: s.endpoint,
    async get(path) {
      const res = await getResponse(s, path);
      return res?.body.toString("utf8");
    },
    async getBytes(path) {
      const res = await getResponse(s, path);
      return res ? new Uint8Array(res.body.buffer, res.body.byteOffset, res.body.byteLength) : undefined;
    },
    close() {
      s.agent.destroy();
    },
  };
}

const urlOf = (s: Session, p: string) => new URL(s.endpoint + p);

async function fetchToken(s: Session, remainingMs: number): Promise<string | undefined> {
  const headers = { [TTL_HEADER]: String(s.ttl) };
  const res = await httpRequest({
    method: "PUT",
    url: urlOf(s, TOKEN_PATH),
    headers,
    timeoutMs: Math.min(s.timeoutMs, remainingMs),
    agent: s.agent,
  });
  if (res.status === 200) {
    const value = res.body.toString("utf8").trim();
    const granted = Number(res.headers[TTL_HEADER] ?? s.ttl);
    s.token = { value, expiresAt: Date.now() + (Number.isFinite(granted) && granted > 0 ? granted : s.ttl) * 1000 };
    return value;
  }
  if ((res.status === 403 || res.status === 404 || res.status === 405) && !s.v1Disabled) {
    // No token service (IMDSv1-only stand-ins, old Outposts): fall back as the SDKs do.
    s.useV1 = true;
    return undefined;
  }
  if (retryableStatus(res.status)) throw new RetryableStatus(res.status, TOKEN_PATH);
  throw new ImdsStatusError(res.status, TOKEN_PATH);
}

/** A valid token, shared by concurrent callers; refreshed a minute (or a tenth of its life) before expiry. */
async function currentToken(s: Session, remainingMs: number): Promise<string | undefined> {
  if (s.useV1) return undefined;
  const margin = Math.min(60_000, (s.ttl * 1000) / 10);
  if (s.token && s.token.expiresAt - margin > Date.now()) return s.token.value;
  s.tokenInFlight ??= fetchToken(s, remainingMs).finally(() => {
    s.tokenInFlight = undefined;
  });
  return s.tokenInFlight;
}

async function getOnce(s: Session, path: string, remainingMs: number): Promise<HttpResponse | undefined> {
  const p = "/latest/" + path.replace(/^\/+/, "");
  for (let authTries = 0; ; authTries++) {
    const t = await currentToken(s, remainingMs);
    const headers: Record<string, string> = t ? { [TOKEN_HEADER]: t } : {};
    const res = await httpRequest({
      method: "GET",
      url: urlOf(s, p),
      headers,
      timeoutMs: Math.min(s.timeoutMs, remainingMs),
      agent: s.agent,
    });
    if (res.status === 200) return res;
    if (res.status === 404) return undefined;
    if (res.status === 401 && authTries === 0) {
      // Expired or revoked (IMDS restarted): one fresh token, then a normal retry.
      if (s.token?.value === t) s.token = undefined;
      s.useV1 = false;
      continue;
    }
    if (retryableStatus(res.status) || res.status === 401) throw new RetryableStatus(res.status, p);
    throw new ImdsStatusError(res.status, p);
  }
}

async function getResponse(s: Session, path: string): Promise<HttpResponse | undefined> {
  if (s.disabled) {
    const message = `IMDS is disabled, so ${path} cannot be read`;
    const hint = "unset AWS_EC2_METADATA_DISABLED, or run berth with --facts FILE / the demo profile";
    throw new BerthFailure({ code: "facts.imds-disabled", message, where: { source: "env AWS_EC2_METADATA_DISABLED" }, hint });
  }
  if ("error" in s.resolved) throw new BerthFailure(s.resolved.error);
  try {
    return await retry((_attempt, remaining) => getOnce(s, path, remaining), {
      ...s.backoff,
      timeoutMs: s.deadlineMs,
      retryable: (e) => e instanceof TransportError || e instanceof RetryableStatus,
      onRetry: (i) => s.onRetry?.({ path, attempt: i.attempt, delayMs: i.delayMs, cause: i.cause }),
    });
  } catch (e) {
    throw getFailure(e, path, s.endpoint);
  }
}

const FORBIDDEN_HINT =
  "IMDS refused the request: check the instance's metadata options (http-endpoint enabled, hop limit ≥ 2 inside containers)";
const IMDS_UNREACHABLE_HINT =
  "check that IMDS is enabled for this instance (HttpEndpoint=enabled, HttpPutResponseHopLimit ≥ 2 in containers), " +
  "or point AWS_EC2_METADATA_SERVICE_ENDPOINT at a reachable endpoint";

function getFailure(e: unknown, path: string, endpoint: string): BerthFailure {
  const last = e instanceof RetryExhausted ? e.lastError : e;
  if (last instanceof ImdsStatusError) {
    const hint = last.status === 403 ? FORBIDDEN_HINT : "check the instance's metadata options and that the path exists";
    const message = `IMDS answered HTTP ${last.status} for ${last.path}`;
    return new BerthFailure({ code: "facts.imds-status", message, where: { source: `${endpoint}${last.path}` }, hint, cause: e });
  }
  const detail =
    e instanceof RetryExhausted ? `gave up after ${e.attempts} attempt(s) in ${e.elapsedMs} ms: ${errorMessage(last)}` : errorMessage(e);
  const message = `could not read ${path} from IMDS at ${endpoint}: ${detail}`;
  return new BerthFailure({
    code: "facts.imds-unreachable",
    message,
    where: { source: `${endpoint}/latest/${path}` },
    hint: IMDS_UNREACHABLE_HINT,
    cause: e,
  });
}
