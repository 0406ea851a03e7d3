/**
 * One bounded HTTP exchange for the facts clients (IMDS, EC2).
 *
 * node:http rather than fetch: undici's first use costs tens of ms of module
 * loading on Node 20, and IMDS is on the config phase's hot path. node:https
 * is only loaded when an https endpoint is actually used (the real EC2 API).
 */
import http from "node:http";
import type https from "node:https";
import type { Duplex } from "node:stream";

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface HttpRequest {
  method: "GET" | "PUT" | "POST";
  url: URL;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Deadline for the whole exchange (connect, send, read), ms. */
  timeoutMs: number;
  agent?: http.Agent;
  /** Send through this HTTP proxy: CONNECT tunnel for https, absolute-URI requests for http. */
  proxy?: URL;
  /** Extra trusted CA certificates (PEM) for https, e.g. from AWS_CA_BUNDLE. */
  ca?: string | Buffer;
}

/** A transport-level failure (connection refused/reset, timeout): always worth retrying. */
export class TransportError extends Error {
  readonly url: string;
  constructor(message: string, url: string, cause?: unknown) {
    super(message, { cause });
    this.name = "TransportError";
    this.url = url;
  }
}

/**
 * The server's TLS certificate was refused (unknown issuer, wrong name,
 * expired): the same answer on every attempt, so never retried.
 */
export class TlsCertificateError extends Error {
  readonly url: string;
  /** Why, with OpenSSL's / Node's code: `unable to verify the first certificate (UNABLE_TO_VERIFY_LEAF_SIGNATURE)`. */
  readonly detail: string;
  constructor(method: string, url: string, detail: string, cause?: unknown) {
    super(`${method} ${url}: TLS certificate refused: ${detail}`, { cause });
    this.name = "TlsCertificateError";
    this.url = url;
    this.detail = detail;
  }
}

/** Certificate verification failures (Node passes OpenSSL's X509 verify codes through as `code`). */
const CERT_REFUSED =
  /^(?:ERR_TLS_CERT_ALTNAME_INVALID|HOSTNAME_MISMATCH|INVALID_CA|INVALID_PURPOSE|PATH_LENGTH_EXCEEDED|UNABLE_TO_\w+|\w*CERT\w*)$/;

function requestError(req: HttpRequest, e: Error): Error {
  const code = (e as NodeJS.ErrnoException).code;
  if (req.url.protocol === "https:" && code !== undefined && CERT_REFUSED.test(code)) {
    // Newer Node versions (the shipped one) append advice about their own flags ("try running Node.js with
    // --use-system-ca"), which means nothing to a berth user.
    const why = e.message.replace(/;[^;]*\bNode\.js\b[^;]*$/, "");
    return new TlsCertificateError(req.method, req.url.href, `${why} (${code})`, e);
  }
  return new TransportError(`${req.method} ${req.url.href}: ${e.message}`, req.url.href, e);
}

/** Basic auth for the proxy from its URL's user and password, if it has any. */
function proxyAuthorization(proxy: URL): Record<string, string> {
  if (!proxy.username) return {};
  const credentials = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
  return { "proxy-authorization": `Basic ${Buffer.from(credentials).toString("base64")}` };
}

/** Open a CONNECT tunnel to host:port through an HTTP proxy. */
function connectTunnel(proxy: URL, host: string, port: string, timeoutMs: number): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const auth = proxyAuthorization(proxy);
    const target = `${host.includes(":") ? `[${host}]` : host}:${port}`;
    const r = http.request({
      host: proxy.hostname.replace(/^\[|\]$/g, ""),
      port: proxy.port || 80,
      method: "CONNECT",
      path: target,
      headers: { host: target, ...auth },
    });
    const timer = setTimeout(() => {
      r.destroy();
      reject(new TransportError(`CONNECT ${target} via proxy ${proxy.host}: no answer within ${timeoutMs} ms`, proxy.href));
    }, timeoutMs);
    r.on("connect", (res, socket) => {
      clearTimeout(timer);
      if (res.statusCode === 200) resolve(socket);
      else {
        socket.destroy();
        reject(new TransportError(`CONNECT ${target} via proxy ${proxy.host}: HTTP ${res.statusCode}`, proxy.href));
      }
    });
    r.on("error", (e) => {
      clearTimeout(timer);
      reject(new TransportError(`CONNECT ${target} via proxy ${proxy.host}: ${e.message}`, proxy.href, e));
    });
    r.end();
  });
}

export async function httpRequest(req: HttpRequest): Promise<HttpResponse> {
  const isHttps = req.url.protocol === "https:";
  if (!isHttps && req.url.protocol !== "http:") throw new TransportError(`unsupported URL scheme ${req.url.protocol}`, req.url.href);
  const started = Date.now();
  let mod: typeof http | typeof https = http;
  let target: string | URL = req.url;
  const extra: http.RequestOptions & { ca?: string[] } = {};
  const hostname = req.url.hostname.replace(/^\[|\]$/g, "");
  if (isHttps && req.proxy) {
    const tunnel = await connectTunnel(req.proxy, hostname, req.url.port || "443", req.timeoutMs);
    const tls = process.getBuiltinModule("node:tls");
    const secure = tls.connect({
      socket: tunnel,
      servername: hostname,
      ...(req.ca ? { ca: [...tls.rootCertificates, req.ca.toString()] } : {}),
    });
    // A plain http.request over the already-encrypted socket: no agent, no second TLS layer.
    extra.createConnection = () => secure;
    target = new URL(`http://${req.url.host}${req.url.pathname}${req.url.search}`);
  } else if (req.proxy) {
    target = new URL(req.proxy.origin);
    extra.path = req.url.href;
    if (req.proxy.username) extra.headers = proxyAuthorization(req.proxy);
  } else if (isHttps) {
    mod = process.getBuiltinModule("node:https");
    if (req.ca) {
      const tls = process.getBuiltinModule("node:tls");
      extra.ca = [...tls.rootCertificates, req.ca.toString()];
    }
  } else if (req.agent) extra.agent = req.agent;
  const timeoutMs = Math.max(1, req.timeoutMs - (Date.now() - started));
  const body = req.body === undefined ? undefined : Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body, "utf8");
  return new Promise<HttpResponse>((resolve, reject) => {
    let settled = false;
    const done = (f: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      f();
    };
    const headers: Record<string, string> = {
      ...(extra.headers as Record<string, string> | undefined),
      ...req.headers,
      host: req.url.host,
    };
    if (body) headers["content-length"] = String(body.length);
    const r = mod.request(target, { ...extra, method: req.method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => done(() => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) })));
      res.on("error", (e) => done(() => reject(new TransportError(`${req.method} ${req.url.href}: ${e.message}`, req.url.href, e))));
    });
    const timer = setTimeout(() => {
      done(() => reject(new TransportError(`${req.method} ${req.url.href}: no answer within ${req.timeoutMs} ms`, req.url.href)));
      r.destroy();
    }, timeoutMs);
    r.on("error", (e) => done(() => reject(requestError(req, e))));
    r.end(body);
  });
}

/**
 * The proxy for `url` per HTTPS_PROXY/HTTP_PROXY/NO_PROXY (either case), as
 * Go's ProxyFromEnvironment reads them (nodeadm's behaviour): loopback is
 * never proxied, NO_PROXY entries match a host or its subdomains
 * (`example.com`, `.example.com`), optionally with `:port`, and `*` matches all.
 * node:http has no proxy support of its own; IMDS never goes through one.
 */
export function proxyFor(url: URL, env: NodeJS.ProcessEnv): URL | undefined {
  const raw = url.protocol === "https:" ? env.HTTPS_PROXY || env.https_proxy : env.HTTP_PROXY || env.http_proxy;
  if (!raw) return undefined;
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (host === "localhost" || host === "::1" || /^127\./.test(host)) return undefined;
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  for (const entry of (env.NO_PROXY || env.no_proxy || "")
    .split(",")
    .map((e) => e.trim().toLowerCase())
    .filter(Boolean)) {
    if (entry === "*") return undefined;
    const m = /^(.*?)(?::(\d+))?$/.exec(entry.replace(/^\[(.*)\](:\d+)?$/, "$1$2"))!;
    const h = m[1]!.replace(/^\*?\./, "");
    if (m[2] && m[2] !== port) continue;
    if (host === h || host.endsWith("." + h)) return undefined;
  }
  try {
    return new URL(raw.includes("://") ? raw : `http://${raw}`);
  } catch {
    return undefined;
  }
}

/** An HTTP status worth retrying: server errors and throttling. */
export function retryableStatus(status: number): boolean {
  return status >= 500 || status === 429;
}
