/**
 * STAND-IN for the EC2 Query API, for tests. Not EC2: it answers
 * DescribeInstances and DescribeInstanceTypes for one instance on 127.0.0.1
 * with an OS-chosen port, in EC2's wire format:
 *
 * - POST, `application/x-www-form-urlencoded` body `Action=…&Version=2016-11-15&…`
 *   (`InstanceId.N`, `InstanceType.N`); a request without an
 *   `Authorization: AWS4-HMAC-SHA256 …` header gets EC2's AuthFailure (the
 *   signature itself is not verified).
 * - XML answers in EC2's shape and namespace (requestId, reservationSet/item/
 *   instancesSet/item/privateDnsName; instanceTypeSet/item/networkInfo/…).
 * - Errors as EC2 sends them: HTTP 400 (500 for InternalError) with
 *   `<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>`;
 *   unknown types → InvalidInstanceType, unknown ids → InvalidInstanceID.NotFound.
 *
 * Instance types default to berth's embedded table (like moto, which knows
 * every real type), plus `instanceTypes`.
 *
 * HTTPS only, as the real EC2 API: the certificate is signed by a CA made
 * once per test process (openssl, in a temp dir removed at exit) for
 * 127.0.0.1 and localhost (plus `hostnames`). Nothing trusts that CA unless
 * told to: berth gets it through AWS_CA_BUNDLE, as the AWS SDKs do; `env()`
 * gives the endpoint, the CA bundle, a region and static test credentials.
 */
import https from "node:https";
import type { AddressInfo } from "node:net";
import type { RequestListener } from "node:http";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createTestCa, type TestCa } from "./test-pki.ts";

export const TABLE_PATH = new URL("../../data/instance-types.json", import.meta.url);

export interface Ec2StandInOptions {
  privateDnsName?: string;
  instanceId?: string;
  instanceTypes?: Record<string, { defaultEnis: number; ipv4PerEni: number }>;
  /** Serve only `instanceTypes`, not the embedded table. */
  onlyGivenTypes?: boolean;
  /** The first N requests are answered 500 InternalError (or 503 RequestLimitExceeded when `throttle`). */
  failFirst?: number;
  throttle?: boolean;
  /** The first N DescribeInstances answers carry an empty privateDnsName (a fresh instance). */
  emptyDnsFirst?: number;
  /** DNS names the certificate is also valid for (besides 127.0.0.1 and localhost), e.g. a name reached through a proxy. */
  hostnames?: string[];
  /** Actions the caller is not allowed: answered 403 UnauthorizedOperation, as EC2 answers an IAM deny. */
  deny?: string[];
}

export interface Ec2StandIn {
  /** `https://127.0.0.1:<port>`. */
  url: string;
  /** PEM file of the per-process test CA that signed the stand-in's certificate (for AWS_CA_BUNDLE). */
  caFile: string;
  /** What a client needs to reach the stand-in: AWS_ENDPOINT_URL_EC2, AWS_CA_BUNDLE, AWS_REGION and static test credentials. */
  env(): NodeJS.ProcessEnv;
  close(): Promise<void>;
  calls: { action: string; params: Record<string, string> }[];
  /** Authorization headers seen, in order. */
  authorizations: string[];
}

const NS = "http://ec2.amazonaws.com/doc/2016-11-15/";
const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

function errorXml(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${esc(code)}</Code><Message>${esc(message)}</Message></Error></Errors><RequestID>${randomUUID()}</RequestID></Response>`;
}

function instanceXml(id: string, dns: string): string {
  const ip = /^ip-(\d+)-(\d+)-(\d+)-(\d+)/.exec(dns)?.slice(1).join(".") ?? "172.16.34.43";
  return `<item>
                    <instanceId>${esc(id)}</instanceId>
                    <imageId>ami-0a887e401f7654935</imageId>
                    <instanceState>
                        <code>16</code>
                        <name>running</name>
                    </instanceState>
                    <privateDnsName>${esc(dns)}</privateDnsName>
                    <dnsName/>
                    <reason/>
                    <amiLaunchIndex>0</amiLaunchIndex>
                    <productCodes/>
                    <instanceType>m4.xlarge</instanceType>
                    <placement>
                        <availabilityZone>us-west-2f</availabilityZone>
                        <groupName/>
                        <tenancy>default</tenancy>
                    </placement>
                    <privateIpAddress>${ip}</privateIpAddress>
                    <architecture>x86_64</architecture>
                    <rootDeviceType>ebs</rootDeviceType>
                    <rootDeviceName>/dev/xvda</rootDeviceName>
                    <privateDnsNameOptions>
                        <hostnameType>ip-name</hostnameType>
                        <enableResourceNameDnsARecord>false</enableResourceNameDnsARecord>
                        <enableResourceNameDnsAAAARecord>false</enableResourceNameDnsAAAARecord>
                    </privateDnsNameOptions>
                </item>`;
}

function instanceTypeXml(type: string, t: { defaultEnis: number; ipv4PerEni: number }): string {
  return `<item>
            <instanceType>${esc(type)}</instanceType>
            <currentGeneration>true</currentGeneration>
            <networkInfo>
                <networkPerformance>High</networkPerformance>
                <maximumNetworkInterfaces>${t.defaultEnis}</maximumNetworkInterfaces>
                <maximumNetworkCards>1</maximumNetworkCards>
                <defaultNetworkCardIndex>0</defaultNetworkCardIndex>
                <networkCards>
                    <item>
                        <networkCardIndex>0</networkCardIndex>
                        <networkPerformance>High</networkPerformance>
                        <maximumNetworkInterfaces>${t.defaultEnis}</maximumNetworkInterfaces>
                    </item>
                </networkCards>
                <ipv4AddressesPerInterface>${t.ipv4PerEni}</ipv4AddressesPerInterface>
                <ipv6AddressesPerInterface>${t.ipv4PerEni}</ipv6AddressesPerInterface>
                <ipv6Supported>true</ipv6Supported>
                <enaSupport>supported</enaSupport>
                <efaSupported>false</efaSupported>
                <encryptionInTransitSupported>false</encryptionInTransitSupported>
                <enaSrdSupported>false</enaSrdSupported>
            </networkInfo>
        </item>`;
}

export async function startEc2StandIn(opts: Ec2StandInOptions = {}): Promise<Ec2StandIn> {
  const dns = opts.privateDnsName ?? "ip-172-16-34-43.ec2.internal";
  const instanceId = opts.instanceId ?? "i-1234567890abcdef0";
  const types = new Map<string, { defaultEnis: number; ipv4PerEni: number }>();
  if (!opts.onlyGivenTypes) {
    const table = JSON.parse(readFileSync(TABLE_PATH, "utf8")) as { types: Record<string, [number, number]> };
    for (const [k, [e, i]] of Object.entries(table.types)) types.set(k, { defaultEnis: e, ipv4PerEni: i });
  }
  for (const [k, v] of Object.entries(opts.instanceTypes ?? {})) types.set(k, v);
  const calls: Ec2StandIn["calls"] = [];
  const authorizations: string[] = [];
  let failuresLeft = opts.failFirst ?? 0;
  let emptyDnsLeft = opts.emptyDnsFirst ?? 0;

  const handler: RequestListener = (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const send = (status: number, xml: string) => {
        res.writeHead(status, { "content-type": "text/xml;charset=UTF-8" });
        res.end(xml);
      };
      const form = new URLSearchParams(
        req.method === "POST" ? Buffer.concat(chunks).toString("utf8") : (req.url ?? "").replace(/^[^?]*\??/, ""),
      );
      const params: Record<string, string> = {};
      for (const [k, v] of form) if (k !== "Action" && k !== "Version") params[k] = v;
      const action = form.get("Action") ?? "";
      calls.push({ action, params });
      const auth = req.headers.authorization ?? "";
      authorizations.push(auth);
      if (failuresLeft > 0) {
        failuresLeft--;
        return opts.throttle
          ? send(503, errorXml("RequestLimitExceeded", "Request limit exceeded."))
          : send(500, errorXml("InternalError", "An internal error has occurred"));
      }
      if (!auth.startsWith("AWS4-HMAC-SHA256 Credential=")) {
        return send(401, errorXml("AuthFailure", "AWS was not able to validate the provided access credentials"));
      }
      if (form.get("Version") !== "2016-11-15")
        return send(400, errorXml("InvalidParameterValue", `Invalid API version: ${form.get("Version") ?? ""}`));
      if (opts.deny?.includes(action)) {
        const who = "arn:aws:sts::123456789012:assumed-role/berth-standin-node-role/i-1234567890abcdef0";
        const why = `User: ${who} is not authorized to perform: ec2:${action} because no identity-based policy allows the ec2:${action} action`;
        return send(403, errorXml("UnauthorizedOperation", `You are not authorized to perform this operation. ${why}`));
      }
      const list = (prefix: string) =>
        [...form.keys()]
          .filter((k) => k.startsWith(prefix + "."))
          .sort()
          .map((k) => form.get(k)!);
      const requestId = randomUUID();
      if (action === "DescribeInstances") {
        const ids = list("InstanceId");
        const unknown = ids.filter((i) => i !== instanceId);
        if (unknown.length)
          return send(400, errorXml("InvalidInstanceID.NotFound", `The instance ID '${unknown.join(", ")}' does not exist`));
        let name = dns;
        if (emptyDnsLeft > 0) {
          emptyDnsLeft--;
          name = "";
        }
        return send(
          200,
          `<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="${NS}">
    <requestId>${requestId}</requestId>
    <reservationSet>
        <item>
            <reservationId>r-046cb3eca3e201d2f</reservationId>
            <ownerId>123456789012</ownerId>
            <groupSet/>
            <instancesSet>
                ${instanceXml(instanceId, name)}
            </instancesSet>
        </item>
    </reservationSet>
</DescribeInstancesResponse>`,
        );
      }
      if (action === "DescribeInstanceTypes") {
        const wanted = list("InstanceType");
        const unknown = wanted.filter((t) => !types.has(t));
        if (unknown.length)
          return send(400, errorXml("InvalidInstanceType", `The following supplied instance types do not exist: [${unknown.join(", ")}]`));
        const items = (wanted.length ? wanted : [...types.keys()].sort().slice(0, 100)).map((t) => instanceTypeXml(t, types.get(t)!));
        return send(
          200,
          `<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstanceTypesResponse xmlns="${NS}">
    <requestId>${requestId}</requestId>
    <instanceTypeSet>
        ${items.join("\n        ")}
    </instanceTypeSet>
</DescribeInstanceTypesResponse>`,
        );
      }
      return send(400, errorXml("InvalidAction", `The action ${action} is not valid for this web service.`));
    });
  };
  const pki = await testPki(opts.hostnames ?? []);
  const server = https.createServer({ key: pki.key, cert: pki.cert }, handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address() as AddressInfo;
  const url = `https://127.0.0.1:${addr.port}`;
  return {
    url,
    caFile: pki.caFile,
    env: () => ({
      AWS_ENDPOINT_URL_EC2: url,
      AWS_CA_BUNDLE: pki.caFile,
      AWS_REGION: "us-west-2",
      AWS_ACCESS_KEY_ID: "AKIDBERTHSTANDIN",
      AWS_SECRET_ACCESS_KEY: "berth-standin-secret",
    }),
    calls,
    authorizations,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------- the test CA

/** One CA for this process (tests/standins/test-pki.ts; made on first use, removed at exit). */
let ca: Promise<TestCa> | undefined;
const leaves = new Map<string, Promise<{ key: string; cert: string; caFile: string }>>();

/** A server key and certificate signed by the test CA, for 127.0.0.1, localhost and `hostnames`. */
function testPki(hostnames: string[]): Promise<{ key: string; cert: string; caFile: string }> {
  const names = ["localhost", ...hostnames.filter((h) => h !== "localhost")];
  const id = names.join(",");
  let leaf = leaves.get(id);
  if (!leaf) {
    leaf = (async () => {
      const c = await (ca ??= createTestCa("berth test CA"));
      const { cert, key } = await c.issue(names, { cn: "127.0.0.1" });
      return { key, cert, caFile: c.caFile };
    })();
    leaves.set(id, leaf);
  }
  return leaf;
}
