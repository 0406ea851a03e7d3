import { test, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { createImdsClient, resolveImdsEndpoint, IMDS_IPV6_ENDPOINT, IMDS_IPV4_ENDPOINT } from "../../src/facts/imds.ts";
import { BerthFailure } from "../../src/util/result.ts";
import { startImdsStandIn, type ImdsStandIn } from "../standins/imds-server.ts";

const fast = { initialMs: 1, maxMs: 5 };
const standIns: ImdsStandIn[] = [];
const start = async (o?: Parameters<typeof startImdsStandIn>[0]) => {
  const s = await startImdsStandIn(o);
  standIns.push(s);
  return s;
};
after(async () => {
  await Promise.all(standIns.map((s) => s.close()));
});

const client = (s: ImdsStandIn, extra: Parameters<typeof createImdsClient>[0] = {}) =>
  createImdsClient({ endpoint: s.url, env: {}, backoff: fast, deadlineMs: 5000, ...extra });

test("stand-in: GET without a token is 401, token PUT needs a TTL", async () => {
  const s = await start();
  const get = await fetch(`${s.url}/latest/meta-data/instance-id`);
  assert.equal(get.status, 401);
  const put = await fetch(`${s.url}/latest/api/token`, { method: "PUT" });
  assert.equal(put.status, 400);
  const put2 = await fetch(`${s.url}/latest/api/token`, { method: "PUT", headers: { "X-aws-ec2-metadata-token-ttl-seconds": "60" } });
  assert.equal(put2.status, 200);
  assert.equal(put2.headers.get("x-aws-ec2-metadata-token-ttl-seconds"), "60");
});

test("token flow: one PUT, then GETs reuse the token", async () => {
  const s = await start();
  const c = client(s);
  assert.equal(await c.get("meta-data/instance-id"), "i-1234567890abcdef0");
  assert.equal(await c.get("meta-data/local-ipv4"), "172.16.34.43");
  assert.deepEqual(s.requests, ["PUT /latest/api/token", "GET /latest/meta-data/instance-id", "GET /latest/meta-data/local-ipv4"]);
  c.close();
});

test("concurrent GETs share one token request", async () => {
  const s = await start();
  const c = client(s);
  const got = await Promise.all(["meta-data/mac", "meta-data/instance-type", "meta-data/hostname"].map((p) => c.get(p)));
  assert.deepEqual(got, ["0e:49:61:0f:c3:11", "m4.xlarge", "ip-172-16-34-43.ec2.internal"]);
  assert.equal(s.requests.filter((r) => r.startsWith("PUT")).length, 1);
  c.close();
});

test("401 on a stale token: fetch a fresh token and retry", async () => {
  const s = await start();
  const c = client(s);
  await c.get("meta-data/instance-id");
  s.expireTokens();
  assert.equal(await c.get("meta-data/mac"), "0e:49:61:0f:c3:11");
  assert.deepEqual(s.requests, [
    "PUT /latest/api/token",
    "GET /latest/meta-data/instance-id",
    "GET /latest/meta-data/mac",
    "PUT /latest/api/token",
    "GET /latest/meta-data/mac",
  ]);
  c.close();
});

test("404 resolves undefined, without retries", async () => {
  const s = await start();
  const c = client(s);
  assert.equal(await c.get("meta-data/no-such-thing"), undefined);
  assert.equal(await c.getBytes("meta-data/iam/security-credentials/"), undefined);
  assert.equal(s.requests.filter((r) => r.includes("no-such-thing")).length, 1);
  c.close();
});

test("identity document, directory listings, IPv6 list and decoded user data as aemm serves them", async () => {
  const s = await start();
  const c = client(s);
  const doc = JSON.parse((await c.get("dynamic/instance-identity/document"))!) as Record<string, string>;
  assert.equal(doc.region, "us-west-2");
  assert.equal(doc.availabilityZone, "us-west-2f");
  assert.equal(doc.instanceType, "m4.xlarge");
  const listing = (await c.get("meta-data/"))!.split("\n");
  assert.ok(listing.includes("instance-id") && listing.includes("network/"), listing.join(","));
  assert.equal(await c.get("meta-data/network/interfaces/macs/"), "0e:49:61:0f:c3:11/");
  assert.equal(await c.get("meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/ipv6s"), "2001:db8:8:4::2");
  // The conformance file's path override for the network card index.
  assert.equal(await c.get("meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/network-card"), "0");
  const ud = Buffer.from((await c.getBytes("user-data"))!).toString("utf8");
  assert.match(ud, /^---\napiVersion: node\.eks\.aws\/v1alpha1\nkind: NodeConfig\n/);
  s.setUserData(new Uint8Array([0x1f, 0x8b, 0]));
  assert.deepEqual([...(await c.getBytes("user-data"))!], [0x1f, 0x8b, 0]);
  s.setUserData(undefined);
  assert.equal(await c.get("user-data"), undefined);
  c.close();
});

test("instanceType overrides the metadata and the identity document", async () => {
  const s = await start({ instanceType: "mock-type.large" });
  const c = client(s);
  assert.equal(await c.get("meta-data/instance-type"), "mock-type.large");
  assert.equal(
    (JSON.parse((await c.get("dynamic/instance-identity/document"))!) as { instanceType: string }).instanceType,
    "mock-type.large",
  );
  c.close();
});

test("5xx answers are retried with backoff", async () => {
  const s = await start({ failFirst: 3 });
  const retries: number[] = [];
  const c = client(s, { onRetry: (i) => retries.push(i.attempt) });
  assert.equal(await c.get("meta-data/instance-id"), "i-1234567890abcdef0");
  assert.deepEqual(retries, [1, 2, 3]);
  assert.equal(s.requests.length, 5); // three 500s, then PUT + GET
  c.close();
});

test("deadline hit: an error value with where and a hint", async () => {
  const s = await start({ failFirst: 1_000_000 });
  const c = client(s, { deadlineMs: 150 });
  await assert.rejects(c.get("meta-data/instance-id"), (e: unknown) => {
    assert.ok(e instanceof BerthFailure);
    const err = e.errors[0]!;
    assert.equal(err.code, "facts.imds-unreachable");
    assert.match(err.message, /gave up after \d+ attempt/);
    assert.match(err.where?.source ?? "", /^http:\/\/127\.0\.0\.1:\d+\/latest\/meta-data\/instance-id$/);
    assert.match(err.hint ?? "", /AWS_EC2_METADATA_SERVICE_ENDPOINT/);
    return true;
  });
  c.close();
});

test("connection refused is retried until the deadline", async () => {
  const srv = http.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  let retries = 0;
  const c = createImdsClient({ endpoint: `http://127.0.0.1:${port}`, env: {}, backoff: fast, deadlineMs: 100, onRetry: () => retries++ });
  await assert.rejects(c.get("meta-data/mac"), (e: unknown) => e instanceof BerthFailure && e.errors[0]!.code === "facts.imds-unreachable");
  assert.ok(retries >= 1);
  c.close();
});

test("IMDSv1 fallback when the token service is absent (404), unless v1 is disabled", async () => {
  const srv = http.createServer((req, res) => {
    if (req.url === "/latest/api/token") return void res.writeHead(404).end();
    res.writeHead(200).end(req.url === "/latest/meta-data/mac" ? "aa:bb" : "x");
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
  try {
    const c = createImdsClient({ endpoint: url, env: {}, backoff: fast });
    assert.equal(await c.get("meta-data/mac"), "aa:bb");
    c.close();
    const strict = createImdsClient({ endpoint: url, env: { AWS_EC2_METADATA_V1_DISABLED: "true" }, backoff: fast, deadlineMs: 500 });
    await assert.rejects(
      strict.get("meta-data/mac"),
      (e: unknown) => e instanceof BerthFailure && e.errors[0]!.code === "facts.imds-status",
    );
    strict.close();
  } finally {
    srv.closeAllConnections();
    await new Promise<void>((r) => srv.close(() => r()));
  }
});

test("environment: endpoint, endpoint mode, disabled", async () => {
  assert.deepEqual(resolveImdsEndpoint({}), { endpoint: IMDS_IPV4_ENDPOINT });
  assert.deepEqual(resolveImdsEndpoint({ AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE: "IPv6" }), { endpoint: IMDS_IPV6_ENDPOINT });
  assert.deepEqual(
    resolveImdsEndpoint({ AWS_EC2_METADATA_SERVICE_ENDPOINT: "http://127.0.0.1:1338/", AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE: "IPv6" }),
    { endpoint: "http://127.0.0.1:1338" },
  );
  const badMode = resolveImdsEndpoint({ AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE: "IPv5" });
  assert.ok("error" in badMode && badMode.error.hint?.includes("IPv4 or IPv6"));
  assert.ok("error" in resolveImdsEndpoint({ AWS_EC2_METADATA_SERVICE_ENDPOINT: "not a url" }));

  const s = await start();
  const viaEnv = createImdsClient({ env: { AWS_EC2_METADATA_SERVICE_ENDPOINT: s.url }, backoff: fast });
  assert.equal(viaEnv.endpoint, s.url);
  assert.equal(await viaEnv.get("meta-data/instance-id"), "i-1234567890abcdef0");
  viaEnv.close();

  const off = createImdsClient({ env: { AWS_EC2_METADATA_DISABLED: "TRUE", AWS_EC2_METADATA_SERVICE_ENDPOINT: s.url } });
  await assert.rejects(
    off.get("meta-data/instance-id"),
    (e: unknown) => e instanceof BerthFailure && e.errors[0]!.code === "facts.imds-disabled" && !!e.errors[0]!.hint,
  );
  off.close();
});
