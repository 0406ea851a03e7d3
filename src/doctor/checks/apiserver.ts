/**
 * `apiserver`: can this node reach the cluster's API server the way kubelet
 * will? Step by step, each a different finding: the endpoint's name resolves
 * (DNS), its port accepts TCP (a dropped port is a connect timeout; a name that
 * resolves to a private address and times out is a private endpoint reached
 * from outside its VPC), the TLS certificate verifies against the cluster CA
 * from the NodeConfig (chain, validity, host name), and /readyz (else
 * /version) answers — 401/403 to an anonymous request still proves the
 * server is there.
 */
import { X509Certificate } from "node:crypto";
import { decodeCertificateAuthority } from "../../render/kubeconfig.ts";
import type { DoctorState } from "../deps.ts";
import { httpsGet, isPrivateAddress, resolveHost, tcpConnect, tlsHandshake, type HandshakeResult } from "../net.ts";
import { excerpt, failed, fromErrors, passed, warned } from "../outcome.ts";
import type { CheckContext, CheckOutcome, CheckSpec } from "../types.ts";

const ENDPOINT_HINT =
  "spec.cluster.apiServerEndpoint must be the cluster's endpoint as `aws eks describe-cluster --query cluster.endpoint` prints it";
const CA_HINT =
  "set spec.cluster.certificateAuthority to the cluster's CA (aws eks describe-cluster --query cluster.certificateAuthority.data), " +
  "then berth init; a TLS-inspecting proxy in between also causes this";
const HANDSHAKE_HINT =
  "something accepts TCP on that port but does not complete TLS: a proxy, firewall or load balancer in between, or a hung server; " +
  "check the endpoint and the route to it";

/** Why a TCP connect failed, as the apiserver finding. Pure. */
export function connectFailure(code: string, host: string, address: string, port: number, ms: number): CheckOutcome {
  const at = `${host}:${port}${address !== host ? ` (${address})` : ""}`;
  if (code === "ECONNREFUSED") return failed(`nothing listens on ${at}: connection refused`, `${ENDPOINT_HINT}; check the port`);
  if (code === "EHOSTUNREACH" || code === "ENETUNREACH")
    return failed(
      `no route to ${at} (${code})`,
      "check the node's routes and its subnet's route table (NAT or internet gateway for a public endpoint)",
    );
  if (code === "ETIMEOUT" && isPrivateAddress(address)) {
    return failed(
      `TCP connect to ${at} got no answer within ${ms} ms; ${address} is a private address: ` +
        "a private cluster endpoint is reachable only from its VPC",
      "run the node in the cluster's VPC (or a peered/VPN-connected one), or enable the endpoint's public access; also check that the " +
        "cluster security group allows 443 from the node",
    );
  }
  if (code === "ETIMEOUT") {
    return failed(
      `TCP connect to ${at} got no answer within ${ms} ms: packets to port ${port} are dropped`,
      "a security group, network ACL or firewall drops them: the cluster security group must allow 443 from the node; for a public " +
        "endpoint check the route out (NAT) and the cluster's publicAccessCidrs",
    );
  }
  return failed(`TCP connect to ${at} failed: ${code}`, "check the node's network and the endpoint");
}

const WRONG_CA = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_GET_ISSUER_CERT",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
]);

/** What is wrong with the server's certificate, judged against the cluster CA (`caSubject`), or undefined. Pure. */
export function certificateProblem(h: HandshakeResult, host: string, caSubject: string): CheckOutcome | undefined {
  const err = h.authorizationError;
  if (!h.authorized && err && WRONG_CA.has(err)) {
    return failed(
      `wrong CA: the API server's certificate (issuer ${h.cert.issuer}) does not verify against ` +
        `the cluster CA in the NodeConfig (${caSubject}) (${err})`,
      CA_HINT,
    );
  }
  if (!h.authorized && err === "CERT_HAS_EXPIRED") {
    return failed(
      `the API server's certificate expired (${h.cert.validTo}) — or this node's clock is ahead`,
      "see the clock check (timedatectl); if the clock is right, the endpoint is not the cluster's",
    );
  }
  if (!h.authorized && err === "CERT_NOT_YET_VALID") {
    return failed(
      `the API server's certificate is not valid before ${h.cert.validFrom}: this node's clock is behind`,
      "see the clock check (timedatectl): start time sync (chronyd/timesyncd)",
    );
  }
  if (h.hostError || err === "ERR_TLS_CERT_ALTNAME_INVALID" || err === "HOSTNAME_MISMATCH") {
    return failed(
      `the API server's certificate is not for ${host}: ${excerpt(h.hostError ?? `it is for ${h.cert.subjectAltName || h.cert.subject}`)}`,
      ENDPOINT_HINT,
    );
  }
  if (!h.authorized) return failed(`the API server's certificate is refused: ${err ?? "not trusted"}`, CA_HINT);
  return undefined;
}

/** The outcome once the certificate is good: what GET /readyz (then /version) answered. Pure. */
export function answerOutcome(
  base: string,
  readyz: { status: number; body: string },
  version?: { status: number; body: string },
): CheckOutcome {
  if (readyz.status === 200) return passed(`${base}; /readyz: ok`);
  if (readyz.status >= 500) {
    return failed(
      `${base}, but it is not ready: /readyz answered ${readyz.status}: ${excerpt(readyz.body, 120)}`,
      "the control plane is unhealthy or still starting: check the cluster (aws eks describe-cluster --query cluster.status)",
    );
  }
  if (version?.status === 200) {
    const v = /"gitVersion"\s*:\s*"([^"]+)"/.exec(version.body)?.[1];
    return passed(`${base}; /version: ${v ?? "ok"} (/readyz answered ${readyz.status})`);
  }
  const status = version?.status ?? readyz.status;
  if (status === 401 || status === 403) return passed(`${base}; anonymous requests get ${status}, which proves it is there`);
  return warned(
    `${base}, but /readyz answered ${readyz.status}${version ? ` and /version ${version.status}` : ""}`,
    `${ENDPOINT_HINT}; is something else listening there?`,
  );
}

/** The cluster CA from the NodeConfig as PEM, with its first certificate's subject. */
function clusterCa(b64: string | undefined): { pem: string; subject: string } | CheckOutcome {
  const ca = decodeCertificateAuthority(b64);
  if (!ca.ok) return fromErrors("fail", ca.errors, CA_HINT);
  const pem = Buffer.from(ca.value).toString("utf8");
  try {
    return { pem, subject: new X509Certificate(pem).subject.replace(/\n/g, ", ") };
  } catch {
    return failed("spec.cluster.certificateAuthority is base64, but not of a PEM certificate", CA_HINT);
  }
}

async function probe(ctx: CheckContext, endpoint: string, ca: { pem: string; subject: string }): Promise<CheckOutcome> {
  const url = new URL(endpoint);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const port = Number(url.port || 443);
  const budget = () => Math.max(1, ctx.remaining() - 100);
  ctx.step(`resolving ${host}`, "the node's DNS resolver is not answering: check /etc/resolv.conf and the VPC resolver");
  const r = await resolveHost(host, budget());
  if (!r.ok) {
    if (r.code === "ETIMEOUT" || r.code === "EAI_AGAIN")
      return failed(
        `DNS gave no answer for ${host} (${r.code})`,
        "check the node's resolver (/etc/resolv.conf; in a VPC, enableDnsSupport and the resolver at the VPC base +2)",
      );
    return failed(
      `the API server name ${host} does not resolve (${r.code})`,
      `${ENDPOINT_HINT}; a private endpoint's name resolves through the VPC's resolver (enableDnsHostnames and enableDnsSupport)`,
    );
  }
  const address = r.addresses[0] as string;
  ctx.step(`TCP connect to ${host}:${port} (${address})`, connectFailure("ETIMEOUT", host, address, port, 0).hint);
  const ms = budget();
  const c = await tcpConnect(address, port, ms);
  if (!c.ok) return connectFailure(c.code, host, address, port, ms);
  const at = `${host}:${port}${address !== host ? ` (${address})` : ""}`;
  ctx.step(`TLS handshake with ${host}:${port}`, HANDSHAKE_HINT);
  const hms = budget();
  const h = await tlsHandshake(c.socket, { host, ca: ca.pem, timeoutMs: hms });
  if (!h.ok) {
    if (h.code === "ETIMEOUT") return failed(`TCP to ${at} connects, but the TLS handshake got no answer within ${hms} ms`, HANDSHAKE_HINT);
    return failed(`the TLS handshake with ${host}:${port} failed: ${excerpt(h.message, 160)}`, HANDSHAKE_HINT);
  }
  const bad = certificateProblem(h, host, ca.subject);
  if (bad) return bad;
  const base = `${at} speaks TLS verified against the cluster CA (certificate valid until ${h.cert.validTo})`;
  ctx.step(`GET ${url.origin}/readyz`, "the API server accepted TLS but does not answer HTTP: it may be overloaded");
  const readyz = await httpsGet(new URL("/readyz", url), { ca: ca.pem, timeoutMs: budget(), accept: "text/plain" });
  if (!readyz.ok)
    return failed(
      `${base}, but GET /readyz failed: ${excerpt(readyz.message, 160)}`,
      "the API server is overloaded or something in between cuts HTTP: retry; check the cluster's health",
    );
  if (readyz.status === 200 || readyz.status >= 500) return answerOutcome(base, readyz);
  const version = await httpsGet(new URL("/version", url), { ca: ca.pem, timeoutMs: budget() });
  return answerOutcome(base, readyz, version.ok ? version : undefined);
}

export function apiserverCheck(state: DoctorState, deadlineMs: number): CheckSpec {
  return {
    id: "apiserver",
    needs: ["config"],
    deadlineMs,
    async run(ctx) {
      const cluster = state.config?.nodeConfig.cluster;
      const endpoint = cluster?.apiServerEndpoint;
      if (!endpoint) return failed("the NodeConfig names no API server (spec.cluster.apiServerEndpoint)", ENDPOINT_HINT);
      const ca = clusterCa(cluster.certificateAuthority);
      if ("status" in ca) return ca;
      return probe(ctx, endpoint, ca);
    },
  };
}
