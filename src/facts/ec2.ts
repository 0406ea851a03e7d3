/**
 * EC2 DescribeInstances (the private DNS name, waited for) and
 * DescribeInstanceTypes over the EC2 Query API: SigV4 (sigv4.ts), a form
 * POST, two XML shapes (xml.ts), the SDKs' endpoint, proxy, CA bundle and
 * credential rules, retries through util/retry.ts. Never @aws-sdk/client-ec2
 * (why: docs/nodeadm-compatibility.md, "EC2 and IMDS clients"). Loads in a
 * couple of ms; gatherFacts still imports it lazily.
 */
import type { Ec2Client, ImdsClient } from "./types.ts";
import { errorMessage } from "../util/errors.ts";
import { BerthFailure, type BerthError } from "../util/result.ts";
import { retry, RetryExhausted, type Backoff } from "../util/retry.ts";
import { readFileSync } from "node:fs";
import { awsFlag } from "./aws-env.ts";
import { httpRequest, proxyFor, retryableStatus, TlsCertificateError, TransportError } from "./http.ts";
import { awsUriEncode, signRequest } from "./sigv4.ts";
import { defaultCredentialChain, type CredentialProvider } from "./credentials.ts";
import { child, children, parseXml, textOf, type XmlNode } from "./xml.ts";

const EC2_API_VERSION = "2016-11-15";

export interface Ec2ClientOptions {
  /** Signing region and regional endpoint; AWS_REGION / AWS_DEFAULT_REGION override it, as in the SDKs. */
  region: string;
  env?: NodeJS.ProcessEnv;
  /** Endpoint URL; overrides AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL. */
  endpoint?: string;
  /** Default: env → shared credentials file → instance role via `imds`. */
  credentials?: CredentialProvider;
  imds?: ImdsClient;
  /** Deadline of one HTTP exchange, ms (default 10 s). */
  timeoutMs?: number;
  /** Deadline of one API call including retries, ms (default 120 s). */
  callDeadlineMs?: number;
  /** Attempts per API call (default AWS_MAX_ATTEMPTS, else bounded by the deadline only). */
  maxAttempts?: number;
  /** How long to wait for a non-empty private DNS name, ms (default 5 min; nodeadm waits up to 10). */
  dnsWaitMs?: number;
  /** Backoff between attempts of one call (default 100 ms doubling to 5 s, full jitter). */
  backoff?: Backoff;
  /** Backoff between DescribeInstances polls while the DNS name is empty (default 500 ms doubling to 15 s). */
  waiterBackoff?: Backoff;
  onRetry?: (info: { action: string; attempt: number; delayMs: number; cause: unknown }) => void;
  /** Clock for signatures (tests). */
  now?: () => Date;
}

/** An error answer from the EC2 API. */
export class Ec2ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId?: string,
  ) {
    super(`EC2 ${code} (HTTP ${status}): ${message}`);
    this.name = "Ec2ApiError";
  }
}

/** Still waiting: DescribeInstances answered, but without a private DNS name yet. */
class DnsNotYet extends Error {}

const RETRYABLE_CODES = new Set([
  "RequestLimitExceeded",
  "Throttling",
  "ThrottlingException",
  "RequestThrottled",
  "RequestThrottledException",
  "TooManyRequestsException",
  "EC2ThrottledException",
  "InternalError",
  "InternalFailure",
  "ServiceUnavailable",
  "Unavailable",
  "RequestTimeout",
  "RequestTimeoutException",
  "PriorRequestNotComplete",
  "IDPCommunicationError",
]);

function dnsSuffix(region: string): string {
  if (region.startsWith("cn-")) return "amazonaws.com.cn";
  if (region.startsWith("us-isob-")) return "sc2s.sgov.gov";
  if (region.startsWith("us-isof-")) return "csp.hci.ic.gov";
  if (region.startsWith("us-iso-")) return "c2s.ic.gov";
  if (region.startsWith("eu-isoe-")) return "cloud.adc-e.uk";
  return "amazonaws.com";
}

/** The EC2 endpoint per the SDKs' rules: service-specific URL, global URL, else regional. */
export function resolveEc2Endpoint(env: NodeJS.ProcessEnv, region: string, explicit?: string): string {
  if (explicit) return explicit;
  if (!awsFlag(env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS)) {
    const configured = env.AWS_ENDPOINT_URL_EC2 || env.AWS_ENDPOINT_URL;
    if (configured) return configured;
  }
  const fips = awsFlag(env.AWS_USE_FIPS_ENDPOINT);
  if (awsFlag(env.AWS_USE_DUALSTACK_ENDPOINT) && dnsSuffix(region) === "amazonaws.com")
    return `https://ec2${fips ? "-fips" : ""}.${region}.api.aws`;
  return `https://ec2${fips ? "-fips" : ""}.${region}.${dnsSuffix(region)}`;
}

export function resolveRegion(env: NodeJS.ProcessEnv, fallback: string): string {
  return env.AWS_REGION || env.AWS_DEFAULT_REGION || fallback;
}

function ec2Hint(code: string, action: string): string {
  if (
    code === "AuthFailure" ||
    code === "UnauthorizedOperation" ||
    code.startsWith("InvalidClientTokenId") ||
    code === "SignatureDoesNotMatch"
  ) {
    const orSkip = ", or set featureGates.InstanceIdNodeName: true to name the node by instance id and skip this call";
    return `give the instance role ec2:${action} (and check the clock and credentials)${action === "DescribeInstances" ? orSkip : ""}`;
  }
  if (code === "OptInRequired") return "the account is not subscribed to EC2 in this region";
  return "check AWS_REGION / AWS_ENDPOINT_URL_EC2 and the EC2 API's health";
}

interface Settings {
  env: NodeJS.ProcessEnv;
  region: string;
  endpoint: string;
  credentials: CredentialProvider;
  timeoutMs: number;
  callDeadlineMs: number;
  maxAttempts: number | undefined;
  backoff: Backoff;
  waiterBackoff: Backoff;
  dnsWaitMs: number;
  now: () => Date;
  onRetry: Ec2ClientOptions["onRetry"];
}

/** Where and how the calls go, settled on first use (so the CA bundle is read once, before any call). */
interface Transport {
  url: URL;
  proxy: URL | undefined;
  ca: Buffer | undefined;
}

interface Client extends Settings {
  transport?: Transport;
}

function settingsOf(opts: Ec2ClientOptions): Settings {
  const env = opts.env ?? process.env;
  const region = resolveRegion(env, opts.region);
  const envAttempts = Number(env.AWS_MAX_ATTEMPTS);
  return {
    env,
    region,
    endpoint: resolveEc2Endpoint(env, region, opts.endpoint),
    credentials: opts.credentials ?? defaultCredentialChain({ env, ...(opts.imds ? { imds: opts.imds } : {}) }),
    timeoutMs: opts.timeoutMs ?? 10_000,
    callDeadlineMs: opts.callDeadlineMs ?? 120_000,
    maxAttempts: opts.maxAttempts ?? (Number.isInteger(envAttempts) && envAttempts > 0 ? envAttempts : undefined),
    backoff: opts.backoff ?? { initialMs: 100, maxMs: 5000 },
    waiterBackoff: opts.waiterBackoff ?? { initialMs: 500, maxMs: 15_000 },
    dnsWaitMs: opts.dnsWaitMs ?? 5 * 60_000,
    now: opts.now ?? (() => new Date()),
    onRetry: opts.onRetry,
  };
}

export function createEc2Client(opts: Ec2ClientOptions): Ec2Client {
  const c: Client = settingsOf(opts);
  return {
    privateDnsName: (instanceId) => privateDnsName(c, instanceId),
    instanceTypeInfo: (type) => instanceTypeInfo(c, type),
  };
}

/** The CA bundle first: a transport that exists means the bundle was read, so no call can go out without it. */
function transportOf(c: Client): Transport {
  if (c.transport) return c.transport;
  const { env, endpoint } = c;
  let ca: Buffer | undefined;
  if (env.AWS_CA_BUNDLE) {
    try {
      ca = readFileSync(env.AWS_CA_BUNDLE);
    } catch (e) {
      const message = `cannot read AWS_CA_BUNDLE ${env.AWS_CA_BUNDLE}: ${errorMessage(e)}`;
      const hint = "point AWS_CA_BUNDLE at a readable PEM file or unset it";
      throw new BerthFailure({ code: "facts.aws-ca-bundle", message, where: { source: "env AWS_CA_BUNDLE" }, hint, cause: e });
    }
  }
  const url = new URL(endpoint.endsWith("/") ? endpoint : endpoint + "/");
  return (c.transport = { url, proxy: proxyFor(url, env), ca });
}

/** One signed POST; throws Ec2ApiError / TransportError. */
async function signedPost(c: Client, action: string, params: Record<string, string>, remainingMs: number): Promise<XmlNode> {
  const { url, proxy, ca } = transportOf(c);
  const all: Record<string, string> = { Action: action, Version: EC2_API_VERSION, ...params };
  const body = Object.keys(all)
    .map((k) => `${awsUriEncode(k)}=${awsUriEncode(all[k]!)}`)
    .join("&");
  const credentials = await c.credentials();
  const contentType = { "content-type": "application/x-www-form-urlencoded; charset=utf-8" };
  const headers = signRequest({
    method: "POST",
    url,
    headers: contentType,
    body,
    region: c.region,
    service: "ec2",
    credentials,
    now: c.now(),
  });
  const timeoutMs = Math.max(1, Math.min(c.timeoutMs, remainingMs));
  const res = await httpRequest({ method: "POST", url, headers, body, timeoutMs, ...(proxy ? { proxy } : {}), ...(ca ? { ca } : {}) });
  const text = res.body.toString("utf8");
  let doc: XmlNode | undefined;
  try {
    doc = parseXml(text);
  } catch {
    doc = undefined;
  }
  if (res.status >= 200 && res.status < 300 && doc) return doc;
  const err = child(doc, "Response", "Errors", "Error");
  const code = textOf(child(err, "Code")) ?? `HTTP${res.status}`;
  const message = textOf(child(err, "Message")) ?? (text.slice(0, 200) || "empty response");
  throw new Ec2ApiError(res.status, code, message, textOf(child(doc, "Response", "RequestID")));
}

const retryableCall = (e: unknown) =>
  e instanceof TransportError || (e instanceof Ec2ApiError && (retryableStatus(e.status) || RETRYABLE_CODES.has(e.code)));

/** One API call, retried under its deadline. */
function callApi(c: Client, action: string, params: Record<string, string>): Promise<XmlNode> {
  return retry((_a, remaining) => signedPost(c, action, params, remaining), {
    ...c.backoff,
    timeoutMs: c.callDeadlineMs,
    ...(c.maxAttempts !== undefined ? { maxAttempts: c.maxAttempts } : {}),
    retryable: retryableCall,
    onRetry: (i) => c.onRetry?.({ action, attempt: i.attempt, delayMs: i.delayMs, cause: i.cause }),
  });
}

const NO_DNS_HINT = "enable DNS hostnames on the VPC, or set featureGates.InstanceIdNodeName: true to name the node by instance id";
const EC2_UNREACHABLE_HINT =
  "check network access to the EC2 API (VPC endpoint or NAT, proxy settings), AWS_REGION and AWS_ENDPOINT_URL_EC2";

function tlsHint(env: NodeJS.ProcessEnv): string {
  return env.AWS_CA_BUNDLE
    ? `AWS_CA_BUNDLE (${env.AWS_CA_BUNDLE}) must hold the certificate (PEM) of the CA that signed the endpoint's certificate, ` +
        "and AWS_ENDPOINT_URL_EC2 must name a host that certificate is for"
    : "if the endpoint (or a proxy in between) uses a private CA, point AWS_CA_BUNDLE at that CA's certificate (PEM), " +
        "as for the AWS CLI; otherwise check AWS_ENDPOINT_URL_EC2 and the clock";
}

/** A failed call as what the user sees: the action, the endpoint, the attempts, and what to check. */
function toFailure(c: Client, action: string, e: unknown): BerthFailure {
  if (e instanceof BerthFailure) return e;
  const last = e instanceof RetryExhausted ? e.lastError : e;
  if (last instanceof BerthFailure) return last;
  const { endpoint } = c;
  const where = { source: endpoint };
  const after = e instanceof RetryExhausted ? ` (gave up after ${e.attempts} attempt(s) in ${e.elapsedMs} ms)` : "";
  let err: BerthError;
  if (last instanceof Ec2ApiError) {
    const message = `EC2 ${action} failed: ${last.code}: ${last.message}${after}`;
    err = { code: "facts.ec2-api", message, where, hint: ec2Hint(last.code, action), cause: e };
  } else if (last instanceof TlsCertificateError) {
    const message = `EC2 ${action} at ${endpoint} failed: its TLS certificate is not trusted: ${last.detail}`;
    err = { code: "facts.ec2-tls", message, where, hint: tlsHint(c.env), cause: e };
  } else if (last instanceof DnsNotYet) {
    const message = `EC2 reported no private DNS name for this instance${after}`;
    err = { code: "facts.ec2-no-private-dns", message, where: { source: `${endpoint} DescribeInstances` }, hint: NO_DNS_HINT, cause: e };
  } else {
    const message = `EC2 ${action} at ${endpoint} failed: ${errorMessage(last)}${after}`;
    err = { code: "facts.ec2-unreachable", message, where, hint: EC2_UNREACHABLE_HINT, cause: e };
  }
  return new BerthFailure(err);
}

/**
 * The waiter: poll DescribeInstances until EC2 has a name (or the instance
 * becomes visible: a fresh instance can briefly be InvalidInstanceID.NotFound).
 */
async function privateDnsName(c: Client, instanceId: string): Promise<string> {
  const action = "DescribeInstances";
  const poll = async () => {
    let doc: XmlNode;
    try {
      doc = await callApi(c, action, { "InstanceId.1": instanceId });
    } catch (e) {
      const last = e instanceof RetryExhausted ? e.lastError : e;
      if (last instanceof Ec2ApiError && last.code === "InvalidInstanceID.NotFound") throw last;
      throw toFailure(c, action, e);
    }
    const reservations = children(child(doc, "DescribeInstancesResponse", "reservationSet"), "item");
    const instances = reservations.flatMap((r) => children(child(r, "instancesSet"), "item"));
    const mine = instances.find((i) => textOf(child(i, "instanceId")) === instanceId) ?? instances[0];
    const name = textOf(child(mine, "privateDnsName"));
    if (!name) throw new DnsNotYet("private DNS name is empty");
    return name;
  };
  try {
    return await retry(poll, {
      ...c.waiterBackoff,
      timeoutMs: c.dnsWaitMs,
      retryable: (e) => e instanceof DnsNotYet || (e instanceof Ec2ApiError && e.code === "InvalidInstanceID.NotFound"),
      onRetry: (i) =>
        c.onRetry?.({ action: "DescribeInstances(wait for private DNS name)", attempt: i.attempt, delayMs: i.delayMs, cause: i.cause }),
    });
  } catch (e) {
    throw toFailure(c, action, e);
  }
}

async function instanceTypeInfo(c: Client, type: string): Promise<{ defaultEnis: number; ipv4PerEni: number } | undefined> {
  const action = "DescribeInstanceTypes";
  let doc: XmlNode;
  try {
    doc = await callApi(c, action, { "InstanceType.1": type });
  } catch (e) {
    const last = e instanceof RetryExhausted ? e.lastError : e;
    if (last instanceof Ec2ApiError && last.code === "InvalidInstanceType") return undefined;
    throw toFailure(c, action, e);
  }
  const items = children(child(doc, "DescribeInstanceTypesResponse", "instanceTypeSet"), "item");
  const ni = child(
    items.find((i) => textOf(child(i, "instanceType")) === type),
    "networkInfo",
  );
  if (!ni) return undefined;
  const defaultCard = Number(textOf(child(ni, "defaultNetworkCardIndex")) ?? "0");
  const card = children(child(ni, "networkCards"), "item").find((x) => Number(textOf(child(x, "networkCardIndex")) ?? "0") === defaultCard);
  const enis = Number(textOf(child(card, "maximumNetworkInterfaces")) ?? textOf(child(ni, "maximumNetworkInterfaces")));
  const ips = Number(textOf(child(ni, "ipv4AddressesPerInterface")));
  if (!Number.isInteger(enis) || enis <= 0 || !Number.isInteger(ips) || ips < 0) {
    const message = `EC2 DescribeInstanceTypes gave no usable ENI/IPv4 limits for ${type}`;
    const hint = "set kubelet.config.maxPods (or kubelet.maxPodsExpression) explicitly";
    throw new BerthFailure({ code: "facts.ec2-api", message, where: { source: c.endpoint, path: "networkInfo" }, hint });
  }
  return { defaultEnis: enis, ipv4PerEni: ips };
}
