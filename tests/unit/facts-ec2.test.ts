import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import https from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { readFileSync } from "node:fs";
import { createEc2Client, resolveEc2Endpoint, resolveRegion, type Ec2ClientOptions } from "../../src/facts/ec2.ts";
import { signRequest, awsUriEncode } from "../../src/facts/sigv4.ts";
import { parseIni } from "../../src/facts/credentials.ts";
import { parseXml, child, textOf } from "../../src/facts/xml.ts";
import { createImdsClient } from "../../src/facts/imds.ts";
import { BerthFailure } from "../../src/util/result.ts";
import { startEc2StandIn, type Ec2StandIn } from "../standins/ec2-server.ts";
import { startImdsStandIn, type ImdsStandIn } from "../standins/imds-server.ts";

const fast = { initialMs: 1, maxMs: 5 };
const open: (Ec2StandIn | ImdsStandIn)[] = [];
after(async () => {
  await Promise.all(open.map((s) => s.close()));
});
const ec2StandIn = async (o?: Parameters<typeof startEc2StandIn>[0]) => {
  const s = await startEc2StandIn(o);
  open.push(s);
  return s;
};
/** The stand-in's endpoint, CA bundle and static test credentials; IMDS off so nothing can reach for an instance role. */
const envFor = (s: Ec2StandIn, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
  ...s.env(),
  AWS_ACCESS_KEY_ID: "AKIDTEST",
  AWS_EC2_METADATA_DISABLED: "true",
  ...extra,
});
/** A raw POST to the stand-in (trusting its CA), for checks of the stand-in itself. */
function post(s: Ec2StandIn, body: string, headers: Record<string, string>): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const r = https.request(
      s.url,
      { method: "POST", ca: readFileSync(s.caFile), headers: { "content-type": "application/x-www-form-urlencoded", ...headers } },
      (res) => {
        let text = "";
        res.on("data", (d: Buffer) => (text += d.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    r.on("error", reject);
    r.end(body);
  });
}
const client = (s: Ec2StandIn, o: Partial<Ec2ClientOptions> = {}) =>
  createEc2Client({ region: "us-west-2", env: envFor(s), backoff: fast, waiterBackoff: fast, ...o });

test("DescribeInstances: private DNS name, signed POST in the Query format", async () => {
  const s = await ec2StandIn();
  assert.equal(await client(s).privateDnsName("i-1234567890abcdef0"), "ip-172-16-34-43.ec2.internal");
  assert.deepEqual(s.calls, [{ action: "DescribeInstances", params: { "InstanceId.1": "i-1234567890abcdef0" } }]);
  assert.match(
    s.authorizations[0]!,
    /^AWS4-HMAC-SHA256 Credential=AKIDTEST\/\d{8}\/us-west-2\/ec2\/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=[0-9a-f]{64}$/,
  );
});

test("DescribeInstanceTypes: default card ENIs and IPv4 per ENI; unknown type → undefined", async () => {
  const s = await ec2StandIn({ instanceTypes: { "x9.huge": { defaultEnis: 7, ipv4PerEni: 21 } } });
  const c = client(s);
  assert.deepEqual(await c.instanceTypeInfo("m4.xlarge"), { defaultEnis: 4, ipv4PerEni: 15 });
  assert.deepEqual(await c.instanceTypeInfo("x9.huge"), { defaultEnis: 7, ipv4PerEni: 21 });
  assert.equal(await c.instanceTypeInfo("mock-type.large"), undefined);
  assert.deepEqual(
    s.calls.map((x) => x.params["InstanceType.1"]),
    ["m4.xlarge", "x9.huge", "mock-type.large"],
  );
});

test("stand-in: unknown type is EC2's InvalidInstanceType with HTTP 400; unsigned requests are refused", async () => {
  const s = await ec2StandIn();
  const body = "Action=DescribeInstanceTypes&Version=2016-11-15&InstanceType.1=mock-type.large";
  const r = await post(s, body, { authorization: "AWS4-HMAC-SHA256 Credential=x/y" });
  assert.equal(r.status, 400);
  const doc = parseXml(r.text);
  assert.equal(textOf(child(doc, "Response", "Errors", "Error", "Code")), "InvalidInstanceType");
  const unsigned = await post(s, body, {});
  assert.equal(unsigned.status, 401);
});

test("5xx and throttling are retried", async () => {
  const s = await ec2StandIn({ failFirst: 2 });
  const retries: string[] = [];
  assert.equal(
    await client(s, { onRetry: (i) => retries.push(i.action) }).privateDnsName("i-1234567890abcdef0"),
    "ip-172-16-34-43.ec2.internal",
  );
  assert.equal(s.calls.length, 3);
  assert.deepEqual(retries, ["DescribeInstances", "DescribeInstances"]);
  const t = await ec2StandIn({ failFirst: 2, throttle: true });
  assert.deepEqual(await client(t).instanceTypeInfo("m4.xlarge"), { defaultEnis: 4, ipv4PerEni: 15 });
  assert.equal(t.calls.length, 3);
});

test("https: AWS_CA_BUNDLE is trusted for every call (retries and DescribeInstanceTypes too)", async () => {
  const s = await ec2StandIn({ failFirst: 2 });
  const c = client(s);
  assert.equal(await c.privateDnsName("i-1234567890abcdef0"), "ip-172-16-34-43.ec2.internal");
  assert.deepEqual(await c.instanceTypeInfo("m4.xlarge"), { defaultEnis: 4, ipv4PerEni: 15 });
  // Two failed attempts, then one answer each: all four over TLS verified against the bundle.
  assert.deepEqual(
    s.calls.map((x) => x.action),
    ["DescribeInstances", "DescribeInstances", "DescribeInstances", "DescribeInstanceTypes"],
  );
});

test("https: an untrusted certificate is refused at once (not retried), naming the endpoint and AWS_CA_BUNDLE", async () => {
  const s = await ec2StandIn();
  const retries: string[] = [];
  const { AWS_CA_BUNDLE: _, ...noBundle } = envFor(s);
  const c = createEc2Client({ region: "us-west-2", env: noBundle, backoff: fast, onRetry: (i) => retries.push(i.action) });
  for (const call of [() => c.privateDnsName("i-1234567890abcdef0"), () => c.instanceTypeInfo("m4.xlarge")]) {
    await assert.rejects(call(), (e: unknown) => {
      assert.ok(e instanceof BerthFailure);
      const err = e.errors[0]!;
      assert.equal(err.code, "facts.ec2-tls");
      assert.ok(err.message.includes(s.url), err.message);
      assert.match(err.message, /TLS certificate is not trusted: .+ \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)$/);
      assert.equal(err.where?.source, s.url);
      assert.match(err.hint ?? "", /point AWS_CA_BUNDLE at that CA's certificate/);
      return true;
    });
  }
  assert.deepEqual(retries, []);
  assert.equal(s.calls.length, 0);

  // A bundle without the signing CA: the hint names the bundle.
  const other = await ec2StandIn();
  const { createTestCa } = await import("../standins/test-pki.ts");
  const { rmSync } = await import("node:fs");
  const otherCa = await createTestCa("some other CA");
  const dir = otherCa.dir;
  try {
    const wrong = createEc2Client({ region: "us-west-2", env: envFor(other, { AWS_CA_BUNDLE: `${dir}/ca.pem` }), backoff: fast });
    await assert.rejects(
      wrong.instanceTypeInfo("m4.xlarge"),
      (e: unknown) =>
        e instanceof BerthFailure &&
        e.errors[0]!.code === "facts.ec2-tls" &&
        e.errors[0]!.hint!.includes(`AWS_CA_BUNDLE (${dir}/ca.pem) must hold`),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(other.calls.length, 0);
});

test("AWS_CA_BUNDLE that cannot be read fails every call, never falls back to the system CAs", async () => {
  const s = await ec2StandIn();
  const c = client(s, { env: envFor(s, { AWS_CA_BUNDLE: "/nonexistent/ca.pem" }) });
  for (const call of [
    () => c.privateDnsName("i-1234567890abcdef0"),
    () => c.instanceTypeInfo("m4.xlarge"),
    () => c.instanceTypeInfo("m4.xlarge"),
  ]) {
    await assert.rejects(
      call(),
      (e: unknown) =>
        e instanceof BerthFailure && e.errors[0]!.code === "facts.aws-ca-bundle" && /\/nonexistent\/ca\.pem/.test(e.errors[0]!.message),
    );
  }
  assert.equal(s.calls.length, 0);
});

test("AWS_MAX_ATTEMPTS bounds the attempts; the error says what and what to do", async () => {
  const s = await ec2StandIn({ failFirst: 10 });
  const c = createEc2Client({ region: "us-west-2", env: envFor(s, { AWS_MAX_ATTEMPTS: "2" }), backoff: fast });
  await assert.rejects(c.instanceTypeInfo("x9.huge"), (e: unknown) => {
    assert.ok(e instanceof BerthFailure);
    assert.equal(e.errors[0]!.code, "facts.ec2-api");
    assert.match(e.errors[0]!.message, /InternalError.*gave up after 2 attempt/);
    assert.ok(e.errors[0]!.hint);
    return true;
  });
  assert.equal(s.calls.length, 2);
});

test("waiter: DescribeInstances is repeated until the private DNS name is non-empty", async () => {
  const s = await ec2StandIn({ emptyDnsFirst: 2 });
  assert.equal(await client(s).privateDnsName("i-1234567890abcdef0"), "ip-172-16-34-43.ec2.internal");
  assert.equal(s.calls.length, 3);
});

test("waiter has a deadline: a name that never appears is an error with a hint", async () => {
  const s = await ec2StandIn({ emptyDnsFirst: 1_000_000 });
  await assert.rejects(client(s, { dnsWaitMs: 100 }).privateDnsName("i-1234567890abcdef0"), (e: unknown) => {
    assert.ok(e instanceof BerthFailure);
    assert.equal(e.errors[0]!.code, "facts.ec2-no-private-dns");
    assert.match(e.errors[0]!.hint ?? "", /InstanceIdNodeName/);
    return true;
  });
  const u = await ec2StandIn();
  await assert.rejects(
    client(u, { dnsWaitMs: 60 }).privateDnsName("i-00000000000000000"),
    (e: unknown) => e instanceof BerthFailure && /InvalidInstanceID\.NotFound/.test(e.errors[0]!.message),
  );
});

test("credentials: none → error naming the fix; instance role from IMDS", async () => {
  const s = await ec2StandIn();
  const none = createEc2Client({
    region: "us-west-2",
    env: { AWS_ENDPOINT_URL_EC2: s.url, AWS_CA_BUNDLE: s.caFile, AWS_SHARED_CREDENTIALS_FILE: "/nonexistent/credentials" },
    backoff: fast,
  });
  await assert.rejects(
    none.instanceTypeInfo("m4.xlarge"),
    (e: unknown) =>
      e instanceof BerthFailure && e.errors[0]!.code === "facts.aws-credentials" && /instance profile/.test(e.errors[0]!.hint ?? ""),
  );
  assert.equal(s.calls.length, 0);

  const imdsS = await startImdsStandIn();
  open.push(imdsS);
  imdsS.setPath(
    "meta-data/iam/security-credentials/node-role",
    JSON.stringify({ Code: "Success", AccessKeyId: "ASIAROLE", SecretAccessKey: "rs", Token: "tok", Expiration: "2999-01-01T00:00:00Z" }),
  );
  const imds = createImdsClient({ endpoint: imdsS.url, env: {} });
  const viaRole = createEc2Client({
    region: "us-west-2",
    env: { AWS_ENDPOINT_URL_EC2: s.url, AWS_CA_BUNDLE: s.caFile, AWS_SHARED_CREDENTIALS_FILE: "/nonexistent/credentials" },
    imds,
    backoff: fast,
  });
  assert.deepEqual(await viaRole.instanceTypeInfo("m4.xlarge"), { defaultEnis: 4, ipv4PerEni: 15 });
  assert.match(s.authorizations.at(-1)!, /Credential=ASIAROLE\/.*SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,/);
  imds.close();
});

test("endpoint and region resolution follow the SDK variables", () => {
  assert.equal(resolveEc2Endpoint({}, "us-west-2"), "https://ec2.us-west-2.amazonaws.com");
  assert.equal(resolveEc2Endpoint({}, "cn-north-1"), "https://ec2.cn-north-1.amazonaws.com.cn");
  assert.equal(resolveEc2Endpoint({ AWS_USE_FIPS_ENDPOINT: "true" }, "us-east-1"), "https://ec2-fips.us-east-1.amazonaws.com");
  assert.equal(resolveEc2Endpoint({ AWS_ENDPOINT_URL: "http://127.0.0.1:1" }, "us-west-2"), "http://127.0.0.1:1");
  assert.equal(
    resolveEc2Endpoint({ AWS_ENDPOINT_URL: "http://127.0.0.1:1", AWS_ENDPOINT_URL_EC2: "http://127.0.0.1:2" }, "us-west-2"),
    "http://127.0.0.1:2",
  );
  assert.equal(
    resolveEc2Endpoint({ AWS_ENDPOINT_URL_EC2: "http://127.0.0.1:2", AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: "true" }, "us-west-2"),
    "https://ec2.us-west-2.amazonaws.com",
  );
  assert.equal(resolveRegion({}, "us-west-2"), "us-west-2");
  assert.equal(resolveRegion({ AWS_DEFAULT_REGION: "eu-west-1" }, "us-west-2"), "eu-west-1");
  assert.equal(resolveRegion({ AWS_REGION: "ap-south-1", AWS_DEFAULT_REGION: "eu-west-1" }, "us-west-2"), "ap-south-1");
});

test("SigV4 matches the AWS SDK's signer (known answer from @smithy/signature-v4 5.7.5)", () => {
  const body = "Action=DescribeInstances&InstanceId.1=i-1234567890abcdef0&Version=2016-11-15";
  const h = signRequest({
    method: "POST",
    url: new URL("https://ec2.us-west-2.amazonaws.com/"),
    headers: {
      "content-type": "application/x-www-form-urlencoded; charset=utf-8",
      "x-amz-content-sha256": createHash("sha256").update(body).digest("hex"),
    },
    body,
    region: "us-west-2",
    service: "ec2",
    credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", sessionToken: "tok/en+=" },
    now: new Date("2026-11-22T00:30:00Z"),
  });
  assert.equal(
    h.authorization,
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261122/us-west-2/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature=b80f3fcdb7910d2ba5fe445384fad5cc6dec1f3e5cd7c704ce0a7bf659a8a52c",
  );
  assert.equal(awsUriEncode("a b*!'()~"), "a%20b%2A%21%27%28%29~");
});

test("small parsers: INI profiles, XML entities and namespaces", () => {
  const ini = parseIni("# c\n[default]\naws_access_key_id = A\naws_secret_access_key=B\n\n[other]\naws_access_key_id=C\n");
  assert.equal(ini.get("default")?.get("aws_secret_access_key"), "B");
  assert.equal(ini.get("other")?.get("aws_access_key_id"), "C");
  const x = parseXml('<?xml version="1.0"?><a:R xmlns:a="ns"><b x="1">t &amp; &#65;&#x42;</b><c/></a:R>');
  assert.equal(textOf(child(x, "R", "b")), "t & AB");
  assert.ok(child(x, "R", "c"));
  assert.throws(() => parseXml("<a><b></a>"));
});

test("proxyFor: HTTPS_PROXY/HTTP_PROXY, NO_PROXY suffixes and ports, loopback never proxied", async () => {
  const { proxyFor } = await import("../../src/facts/http.ts");
  const u = (s: string) => new URL(s);
  assert.equal(proxyFor(u("https://ec2.us-west-2.amazonaws.com/"), {})?.href, undefined);
  assert.equal(proxyFor(u("https://ec2.us-west-2.amazonaws.com/"), { HTTPS_PROXY: "http://p:3128" })?.href, "http://p:3128/");
  assert.equal(proxyFor(u("https://ec2.us-west-2.amazonaws.com/"), { https_proxy: "p:3128" })?.href, "http://p:3128/");
  assert.equal(proxyFor(u("http://ec2.example/"), { HTTPS_PROXY: "http://p:3128" }), undefined);
  assert.equal(
    proxyFor(u("https://ec2.us-west-2.amazonaws.com/"), { HTTPS_PROXY: "http://p:3128", NO_PROXY: "localhost,.amazonaws.com" }),
    undefined,
  );
  assert.equal(
    proxyFor(u("https://ec2.us-west-2.amazonaws.com/"), { HTTPS_PROXY: "http://p:3128", no_proxy: "amazonaws.com:80" })?.host,
    "p:3128",
  );
  assert.equal(proxyFor(u("https://ec2.us-west-2.amazonaws.com/"), { HTTPS_PROXY: "http://p:3128", NO_PROXY: "*" }), undefined);
  assert.equal(proxyFor(u("http://127.0.0.1:5000/"), { HTTP_PROXY: "http://p:3128" }), undefined);
  assert.equal(proxyFor(u("http://[::1]:5000/"), { HTTP_PROXY: "http://p:3128" }), undefined);
});

test("through an HTTPS_PROXY (CONNECT, AWS_CA_BUNDLE) and an HTTP_PROXY (absolute URI)", async () => {
  const http = await import("node:http");
  const net = await import("node:net");
  // The stand-in's certificate is also valid for a name that only exists inside this test.
  const tlsEc2 = await ec2StandIn({ hostnames: ["ec2.test.invalid"] });
  const seen: string[] = [];
  // A loopback test proxy: every tunnel and request goes to the stand-in, whatever host was asked for.
  const proxy = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const up = https.request(
      {
        host: "127.0.0.1",
        port: new URL(tlsEc2.url).port,
        ca: readFileSync(tlsEc2.caFile),
        method: req.method,
        path: new URL(req.url!).pathname,
        headers: req.headers,
      },
      (r) => {
        res.writeHead(r.statusCode!, r.headers);
        r.pipe(res);
      },
    );
    req.pipe(up);
  });
  const sockets = new Set<Socket>();
  proxy.on("connect", (req, client: Socket) => {
    seen.push(`CONNECT ${req.url}`);
    const up = net.connect(Number(new URL(tlsEc2.url).port), "127.0.0.1", () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      up.pipe(client);
      client.pipe(up);
    });
    sockets.add(client).add(up);
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
  const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  try {
    const creds = { AWS_ACCESS_KEY_ID: "AKIDTEST", AWS_SECRET_ACCESS_KEY: "secret", AWS_EC2_METADATA_DISABLED: "true" };
    const viaConnect = createEc2Client({
      region: "us-west-2",
      env: { ...creds, AWS_ENDPOINT_URL_EC2: "https://ec2.test.invalid", HTTPS_PROXY: proxyUrl, AWS_CA_BUNDLE: tlsEc2.caFile },
      backoff: fast,
      maxAttempts: 1,
    });
    assert.equal(await viaConnect.privateDnsName("i-1234567890abcdef0"), "ip-172-16-34-43.ec2.internal");
    assert.equal(tlsEc2.calls.length, 1);
    const viaHttp = createEc2Client({
      region: "us-west-2",
      env: { ...creds, AWS_ENDPOINT_URL_EC2: "http://ec2.test.invalid:8080", HTTP_PROXY: proxyUrl },
      backoff: fast,
      maxAttempts: 1,
    });
    assert.deepEqual(await viaHttp.instanceTypeInfo("m4.xlarge"), { defaultEnis: 4, ipv4PerEni: 15 });
    assert.deepEqual(seen, ["CONNECT ec2.test.invalid:443", "POST http://ec2.test.invalid:8080/"]);
    // Without the CA bundle the stand-in's certificate is refused, through the tunnel too.
    const untrusted = createEc2Client({
      region: "us-west-2",
      env: { ...creds, AWS_ENDPOINT_URL_EC2: "https://ec2.test.invalid", HTTPS_PROXY: proxyUrl },
      backoff: fast,
    });
    await assert.rejects(
      untrusted.privateDnsName("i-1234567890abcdef0"),
      (e: unknown) => e instanceof BerthFailure && e.errors[0]!.code === "facts.ec2-tls",
    );
    assert.equal(tlsEc2.calls.length, 2);
  } finally {
    for (const s of sockets) s.destroy();
    proxy.closeAllConnections();
    await new Promise<void>((r) => proxy.close(() => r()));
  }
});
