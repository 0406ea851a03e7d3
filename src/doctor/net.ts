/**
 * The network steps of reaching an https endpoint, one at a time and each
 * under its own deadline, so the doctor can say which one failed: resolve the
 * name, open TCP, shake hands (TLS, trusting exactly the given CA, as
 * client-go trusts exactly the kubeconfig's), then GET. Results are values,
 * never exceptions; sockets are always closed.
 *
 * Not src/facts/http.ts: that client trusts the system roots plus a bundle
 * and has no client certificates; kubelet trusts only the cluster CA and may
 * authenticate with a certificate, and the doctor must see the handshake
 * itself (the peer certificate, why it was refused).
 */
import dns from "node:dns";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import { errorMessage } from "../util/errors.ts";

export type Step<T> = ({ ok: true } & T) | { ok: false; code: string; message: string };

function timeoutError(what: string, ms: number): { ok: false; code: "ETIMEOUT"; message: string } {
  return { ok: false, code: "ETIMEOUT", message: `${what}: no answer within ${ms} ms` };
}

/** The host's addresses (getaddrinfo, as the kubelet's resolver would use /etc/hosts and DNS); an IP literal is its own. */
export function resolveHost(host: string, timeoutMs: number): Promise<Step<{ addresses: string[] }>> {
  if (net.isIP(host)) return Promise.resolve({ ok: true, addresses: [host] });
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(timeoutError(`resolving ${host}`, timeoutMs)), timeoutMs);
    dns.lookup(host, { all: true }, (err, addrs) => {
      clearTimeout(timer);
      if (err) resolve({ ok: false, code: err.code ?? "EDNS", message: `resolving ${host}: ${err.code ?? err.message}` });
      else resolve({ ok: true, addresses: addrs.map((a) => a.address) });
    });
  });
}

/** A TCP connection to address:port, or why not (`ETIMEOUT` when nothing answered: packets dropped). */
export function tcpConnect(address: string, port: number, timeoutMs: number): Promise<Step<{ socket: net.Socket }>> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: address, port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(timeoutError(`TCP connect to ${address}:${port}`, timeoutMs));
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      socket.on("error", () => undefined);
      resolve({ ok: true, socket });
    });
    socket.once("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ ok: false, code: e.code ?? "ECONNECT", message: `TCP connect to ${address}:${port}: ${e.message}` });
    });
  });
}

export interface PeerCertificateInfo {
  subject: string;
  issuer: string;
  validFrom: string;
  validTo: string;
  /** `DNS:a, IP Address:1.2.3.4`, as Node gives it. */
  subjectAltName: string;
}

export interface HandshakeResult {
  /** The chain verifies against the given CA. */
  authorized: boolean;
  /** OpenSSL's reason code when not authorized, e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE. */
  authorizationError?: string;
  /** Why the certificate is not for the host name, when it is not. */
  hostError?: string;
  cert: PeerCertificateInfo;
}

const dn = (o: Record<string, unknown> | undefined): string =>
  Object.entries(o ?? {})
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("+") : String(v)}`)
    .join(", ");

/**
 * A TLS handshake over `socket` that trusts only `ca`, without refusing the
 * peer: the doctor wants to see a wrong certificate, not just an error. The
 * socket is closed afterwards.
 */
export function tlsHandshake(socket: net.Socket, opts: { host: string; ca: string; timeoutMs: number }): Promise<Step<HandshakeResult>> {
  return new Promise((resolve) => {
    const s = tls.connect({ socket, ca: opts.ca, rejectUnauthorized: false, ...(net.isIP(opts.host) ? {} : { servername: opts.host }) });
    const end = (r: Step<HandshakeResult>) => {
      clearTimeout(timer);
      s.destroy();
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => end(timeoutError("TLS handshake", opts.timeoutMs)), opts.timeoutMs);
    s.once("secureConnect", () => {
      const peer = s.getPeerCertificate();
      if (!peer || Object.keys(peer).length === 0) return end({ ok: false, code: "ENOCERT", message: "the server sent no certificate" });
      const cert = {
        subject: dn(peer.subject),
        issuer: dn(peer.issuer),
        validFrom: peer.valid_from,
        validTo: peer.valid_to,
        subjectAltName: peer.subjectaltname ?? "",
      };
      // Node gives OpenSSL's reason as an Error with `code`, or (older versions) as the code string itself.
      const authErr = s.authorizationError as unknown;
      const code = typeof authErr === "object" && authErr !== null ? (authErr as { code?: unknown }).code : authErr;
      const authorizationError = typeof code === "string" ? code : authErr instanceof Error ? authErr.message : undefined;
      const hostError = tls.checkServerIdentity(opts.host, peer)?.message;
      end({
        ok: true,
        authorized: s.authorized,
        ...(authorizationError ? { authorizationError } : {}),
        ...(hostError ? { hostError } : {}),
        cert,
      });
    });
    s.once("error", (e: NodeJS.ErrnoException) => end({ ok: false, code: e.code ?? "ETLS", message: `TLS handshake: ${e.message}` }));
  });
}

export interface HttpsAnswer {
  status: number;
  body: string;
}

/** GET over https trusting only `ca` (when given), with an optional bearer token or client certificate. */
export function httpsGet(
  url: URL,
  opts: { ca?: string; token?: string; cert?: string; key?: string; timeoutMs: number; accept?: string },
): Promise<Step<HttpsAnswer>> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (r: Step<HttpsAnswer>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(r);
    };
    const headers: Record<string, string> = { accept: opts.accept ?? "application/json", "user-agent": "berth-doctor" };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    const req = https.request(
      url,
      {
        method: "GET",
        agent: false,
        headers,
        ...(opts.ca ? { ca: opts.ca } : {}),
        ...(opts.cert ? { cert: opts.cert } : {}),
        ...(opts.key ? { key: opts.key } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          if (size < 1 << 20) chunks.push(c);
          size += c.length;
        });
        res.on("end", () => finish({ ok: true, status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", (e) => finish({ ok: false, code: "ERESPONSE", message: `GET ${url.href}: ${e.message}` }));
      },
    );
    const timer = setTimeout(() => finish(timeoutError(`GET ${url.href}`, opts.timeoutMs)), opts.timeoutMs);
    req.on("error", (e: NodeJS.ErrnoException) =>
      finish({ ok: false, code: e.code ?? "EREQUEST", message: `GET ${url.href}: ${errorMessage(e)}` }),
    );
    req.end();
  });
}

const PRIVATE = new net.BlockList();
for (const [a, bits] of [
  ["10.0.0.0", 8],
  ["172.16.0.0", 12],
  ["192.168.0.0", 16],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
] as const)
  PRIVATE.addSubnet(a, bits, "ipv4");
for (const [a, bits] of [
  ["fc00::", 7],
  ["fe80::", 10],
  ["::1", 128],
] as const)
  PRIVATE.addSubnet(a, bits, "ipv6");

/** An address only reachable from inside a private network (RFC 1918, CGNAT, ULA, link-local, loopback). */
export function isPrivateAddress(ip: string): boolean {
  const family = net.isIP(ip);
  if (family === 0) return false;
  return PRIVATE.check(ip, family === 6 ? "ipv6" : "ipv4");
}
