/**
 * EC2 DescribeInstances / DescribeInstanceTypes over the EC2 Query API.
 *
 * Why not @aws-sdk/client-ec2 (evaluated: v3.1169.0, 25 packages, 43 MB on
 * disk): `await import("@aws-sdk/client-ec2")` alone measured 440–475 ms and
 * +95 MB RSS on this machine (node -e 0: 60–80 ms, 40 MB), and on Node 20 it
 * prints a NodeVersionSupportWarning to stderr on every run. Lazy loading
 * would keep it off the start-up path, but every real first boot needs
 * DescribeInstances (the node name), so the whole config phase would pay it.
 * What berth uses of it is small and stable: SigV4 (sigv4.ts, checked
 * against the SDK's signer in tests), a form POST, two XML shapes (xml.ts),
 * endpoint resolution (AWS_ENDPOINT_URL_EC2 > AWS_ENDPOINT_URL > the regional
 * endpoint, FIPS/dual-stack flags), HTTPS_PROXY/NO_PROXY and AWS_CA_BUNDLE
 * (nodes in private subnets use them), the node-relevant credential chain
 * (credentials.ts) and retries (util/retry.ts, like everything else).
 * This module loads in a couple of ms; gatherFacts still imports it lazily.
 */
import type { Ec2Client, ImdsClient } from "./types.ts";
import { BerthFailure, type BerthError } from "../util/result.ts";
import { retry, RetryExhausted, type Backoff } from "../util/retry.ts";
import { readFileSync } from "node:fs";
import { httpRequest, proxyFor, retryableStatus, TransportError } from "./http.ts";
import { awsUriEncode, signRequest } from "./sigv4.ts";
import { defaultCredentialChain, type CredentialProvider } from "./credentials.ts";
import { child, children, parseXml, textOf, type XmlNode } from "./xml.ts";

export const EC2_API_VERSION = "2016-11-15";

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
  "RequestLimitExceeded", "Throttling", "ThrottlingException", "RequestThrottled", "RequestThrottledException",
  "TooManyRequestsException", "EC2ThrottledException", "InternalError", "InternalFailure", "ServiceUnavailable",
  "Unavailable", "RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete", "IDPCommunicationError",
]);

const isTrue = (v: string | undefined) => v !== undefined && v.trim().toLowerCase() === "true";

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
  if (!isTrue(env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS)) {
    const configured = env.AWS_ENDPOINT_URL_EC2 || env.AWS_ENDPOINT_URL;
    if (configured) return configured;
  }
  const fips = isTrue(env.AWS_USE_FIPS_ENDPOINT);
  if (isTrue(env.AWS_USE_DUALSTACK_ENDPOINT) && dnsSuffix(region) === "amazonaws.com") return `https://ec2${fips ? "-fips" : ""}.${region}.api.aws`;
  return `https://ec2${fips ? "-fips" : ""}.${region}.${dnsSuffix(region)}`;
}

export function resolveRegion(env: NodeJS.ProcessEnv, fallback: string): string {
  return env.AWS_REGION || env.AWS_DEFAULT_REGION || fallback;
}

function ec2Hint(code: string, action: string): string {
  if (code === "AuthFailure" || code === "UnauthorizedOperation" || code.startsWith("InvalidClientTokenId") || code === "SignatureDoesNotMatch") {
    return `give the instance role ec2:${action} (and check the clock and credentials)${action === "DescribeInstances" ? ", or set featureGates.InstanceIdNodeName: true to name the node by instance id and skip this call" : ""}`;
  }
  if (code === "OptInRequired") return "the account is not subscribed to EC2 in this region";
  return "check AWS_REGION / AWS_ENDPOINT_URL_EC2 and the EC2 API's health";
}

export function createEc2Client(opts: Ec2ClientOptions): Ec2Client {
  const env = opts.env ?? process.env;
  const region = resolveRegion(env, opts.region);
  const endpoint = resolveEc2Endpoint(env, region, opts.endpoint);
  const credentials = opts.credentials ?? defaultCredentialChain({ env, ...(opts.imds ? { imds: opts.imds } : {}) });
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const callDeadlineMs = opts.callDeadlineMs ?? 120_000;
  const envAttempts = Number(env.AWS_MAX_ATTEMPTS);
  const maxAttempts = opts.maxAttempts ?? (Number.isInteger(envAttempts) && envAttempts > 0 ? envAttempts : undefined);
  const backoff = opts.backoff ?? { initialMs: 100, maxMs: 5000 };
  const waiterBackoff = opts.waiterBackoff ?? { initialMs: 500, maxMs: 15_000 };
  const dnsWaitMs = opts.dnsWaitMs ?? 5 * 60_000;
  const now = opts.now ?? (() => new Date());
  let url: URL | undefined;
  let proxy: URL | undefined;
  let ca: Buffer | undefined;

  /** One signed POST; throws Ec2ApiError / TransportError. */
  async function once(action: string, params: Record<string, string>, remainingMs: number): Promise<XmlNode> {
    if (!url) {
      url = new URL(endpoint.endsWith("/") ? endpoint : endpoint + "/");
      proxy = proxyFor(url, env);
      if (env.AWS_CA_BUNDLE) {
        try {
          ca = readFileSync(env.AWS_CA_BUNDLE);
        } catch (e) {
          throw new BerthFailure({ code: "facts.aws-ca-bundle", message: `cannot read AWS_CA_BUNDLE ${env.AWS_CA_BUNDLE}: ${e instanceof Error ? e.message : String(e)}`, where: { source: "env AWS_CA_BUNDLE" }, hint: "point AWS_CA_BUNDLE at a readable PEM file or unset it", cause: e });
        }
      }
    }
    const all: Record<string, string> = { Action: action, Version: EC2_API_VERSION, ...params };
    const body = Object.keys(all)
      .map((k) => `${awsUriEncode(k)}=${awsUriEncode(all[k]!)}`)
      .join("&");
    const creds = await credentials();
    const headers = signRequest({ method: "POST", url, headers: { "content-type": "application/x-www-form-urlencoded; charset=utf-8" }, body, region, service: "ec2", credentials: creds, now: now() });
    const res = await httpRequest({ method: "POST", url, headers, body, timeoutMs: Math.max(1, Math.min(timeoutMs, remainingMs)), ...(proxy ? { proxy } : {}), ...(ca ? { ca } : {}) });
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

  const retryableCall = (e: unknown) => e instanceof TransportError || (e instanceof Ec2ApiError && (retryableStatus(e.status) || RETRYABLE_CODES.has(e.code)));

  function toFailure(action: string, e: unknown): BerthFailure {
    if (e instanceof BerthFailure) return e;
    const last = e instanceof RetryExhausted ? e.lastError : e;
    if (last instanceof BerthFailure) return last;
    const after = e instanceof RetryExhausted ? ` (gave up after ${e.attempts} attempt(s) in ${e.elapsedMs} ms)` : "";
    let err: BerthError;
    if (last instanceof Ec2ApiError) {
      err = { code: "facts.ec2-api", message: `EC2 ${action} failed: ${last.code}: ${last.message}${after}`, where: { source: endpoint }, hint: ec2Hint(last.code, action), cause: e };
    } else if (last instanceof DnsNotYet) {
      err = { code: "facts.ec2-no-private-dns", message: `EC2 reported no private DNS name for this instance${after}`, where: { source: `${endpoint} DescribeInstances` }, hint: "enable DNS hostnames on the VPC, or set featureGates.InstanceIdNodeName: true to name the node by instance id", cause: e };
    } else {
      err = { code: "facts.ec2-unreachable", message: `EC2 ${action} at ${endpoint} failed: ${last instanceof Error ? last.message : String(last)}${after}`, where: { source: endpoint }, hint: "check network access to the EC2 API (VPC endpoint or NAT, proxy settings), AWS_REGION and AWS_ENDPOINT_URL_EC2", cause: e };
    }
    return new BerthFailure(err);
  }

  function describe(action: string, params: Record<string, string>): Promise<XmlNode> {
    return retry((_a, remaining) => once(action, params, remaining), {
      ...backoff,
      timeoutMs: callDeadlineMs,
      ...(maxAttempts !== undefined ? { maxAttempts } : {}),
      retryable: retryableCall,
      onRetry: (i) => opts.onRetry?.({ action, attempt: i.attempt, delayMs: i.delayMs, cause: i.cause }),
    });
  }

  return {
    async privateDnsName(instanceId) {
      const action = "DescribeInstances";
      // The waiter: poll until EC2 has a name (or the instance becomes visible:
      // a fresh instance can briefly be InvalidInstanceID.NotFound).
      try {
        return await retry(
          async () => {
            let doc: XmlNode;
            try {
              doc = await describe(action, { "InstanceId.1": instanceId });
            } catch (e) {
              const last = e instanceof RetryExhausted ? e.lastError : e;
              if (last instanceof Ec2ApiError && last.code === "InvalidInstanceID.NotFound") throw last;
              throw toFailure(action, e);
            }
            const instances = children(child(doc, "DescribeInstancesResponse", "reservationSet"), "item").flatMap((r) => children(child(r, "instancesSet"), "item"));
            const mine = instances.find((i) => textOf(child(i, "instanceId")) === instanceId) ?? instances[0];
            const name = textOf(child(mine, "privateDnsName"));
            if (!name) throw new DnsNotYet("private DNS name is empty");
            return name;
          },
          {
            ...waiterBackoff,
            timeoutMs: dnsWaitMs,
            retryable: (e) => e instanceof DnsNotYet || (e instanceof Ec2ApiError && e.code === "InvalidInstanceID.NotFound"),
            onRetry: (i) => opts.onRetry?.({ action: "DescribeInstances(wait for private DNS name)", attempt: i.attempt, delayMs: i.delayMs, cause: i.cause }),
          },
        );
      } catch (e) {
        throw toFailure(action, e);
      }
    },

    async instanceTypeInfo(type) {
      const action = "DescribeInstanceTypes";
      let doc: XmlNode;
      try {
        doc = await describe(action, { "InstanceType.1": type });
      } catch (e) {
        const last = e instanceof RetryExhausted ? e.lastError : e;
        if (last instanceof Ec2ApiError && last.code === "InvalidInstanceType") return undefined;
        throw toFailure(action, e);
      }
      const item = children(child(doc, "DescribeInstanceTypesResponse", "instanceTypeSet"), "item").find((i) => textOf(child(i, "instanceType")) === type);
      const ni = child(item, "networkInfo");
      if (!ni) return undefined;
      const defaultCard = Number(textOf(child(ni, "defaultNetworkCardIndex")) ?? "0");
      const card = children(child(ni, "networkCards"), "item").find((c) => Number(textOf(child(c, "networkCardIndex")) ?? "0") === defaultCard);
      const enis = Number(textOf(child(card, "maximumNetworkInterfaces")) ?? textOf(child(ni, "maximumNetworkInterfaces")));
      const ips = Number(textOf(child(ni, "ipv4AddressesPerInterface")));
      if (!Number.isInteger(enis) || enis <= 0 || !Number.isInteger(ips) || ips < 0) {
        throw new BerthFailure({ code: "facts.ec2-api", message: `EC2 DescribeInstanceTypes gave no usable ENI/IPv4 limits for ${type}`, where: { source: endpoint, path: "networkInfo" }, hint: "set kubelet.config.maxPods (or kubelet.maxPodsExpression) explicitly" });
      }
      return { defaultEnis: enis, ipv4PerEni: ips };
    },
  };
}
