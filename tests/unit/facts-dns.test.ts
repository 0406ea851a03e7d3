/**
 * Outposts facts (src/facts/dns.ts): the API server's addresses (DNS first,
 * then the system resolver) and /etc/hosts under the root. The last tests use
 * this machine's real resolver: `localhost` resolves everywhere, `*.invalid`
 * nowhere (RFC 6761).
 */
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { HostRoot } from "../../src/host/root.ts";
import { lookupApiServer, orderAddresses, outpostFacts, systemResolvers, type Resolvers } from "../../src/facts/dns.ts";
import type { NodeConfigSpec } from "../../src/api/types.ts";

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "berth-facts-dns-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const notFound = (): Promise<string[]> => Promise.reject(Object.assign(new Error("queryA ENOTFOUND"), { code: "ENOTFOUND" }));
const fake = (over: Partial<Resolvers>): Resolvers & { calls: string[] } => {
  const calls: string[] = [];
  return {
    calls,
    dns4: (h) => (calls.push(`A ${h}`), over.dns4 ? over.dns4(h) : notFound()),
    dns6: (h) => (calls.push(`AAAA ${h}`), over.dns6 ? over.dns6(h) : notFound()),
    system: (h) => (calls.push(`system ${h}`), over.system ? over.system(h) : notFound()),
  };
};

const spec = (endpoint: string, enableOutpost = true): NodeConfigSpec => ({
  cluster: { enableOutpost, id: "x", apiServerEndpoint: endpoint },
});

test("addresses: IPv4 in numeric order, then IPv6, each once, nothing that is not an address", () => {
  assert.deepEqual(orderAddresses(["fd00::2", "10.0.0.10", "10.0.0.9", "fd00::1", "10.0.0.9", "not-an-ip"]), [
    "10.0.0.9",
    "10.0.0.10",
    "fd00::1",
    "fd00::2",
  ]);
});

test("DNS answers first (both families); the system resolver is not asked then", async () => {
  const r = fake({ dns4: async () => ["10.0.2.10", "10.0.1.10"], dns6: async () => ["fd00::10"], system: async () => ["10.9.9.9"] });
  assert.deepEqual(await lookupApiServer("api.example", r), { addresses: ["10.0.1.10", "10.0.2.10", "fd00::10"] });
  assert.deepEqual(r.calls.sort(), ["A api.example", "AAAA api.example"]);
  const v4only = fake({ dns4: async () => ["10.0.1.10"] });
  assert.deepEqual(await lookupApiServer("api.example", v4only), { addresses: ["10.0.1.10"] });
});

test("no DNS answer: the system resolver (/etc/hosts, as on a disconnected Outpost); none: every resolver's error", async () => {
  assert.deepEqual(await lookupApiServer("api.example", fake({ system: async () => ["10.0.1.10", "::1"] })), {
    addresses: ["10.0.1.10", "::1"],
  });
  const none = await lookupApiServer(
    "api.example",
    fake({ dns6: async () => [], system: () => Promise.reject(new Error("no answer within 5000 ms")) }),
  );
  assert.deepEqual(none, { addresses: [], lookupError: "DNS A: ENOTFOUND, AAAA: no address; system resolver: no answer within 5000 ms" });
});

test("an IP address endpoint is not looked up", async () => {
  const r = fake({});
  assert.deepEqual(await lookupApiServer("10.0.1.10", r), { addresses: [] });
  const f = await outpostFacts(spec("https://[fd00::10]:443"), new HostRoot(dir), r);
  assert.equal(f?.host, "fd00::10");
  assert.deepEqual(r.calls, []);
});

test("outpostFacts: only with enableOutpost; the endpoint's host name without port; /etc/hosts under the root with its mode", async () => {
  const root = path.join(dir, "node");
  await mkdir(path.join(root, "etc"), { recursive: true });
  await writeFile(path.join(root, "etc/hosts"), "127.0.0.1 localhost\n", { mode: 0o640 });
  const r = fake({ dns4: async () => ["10.0.1.10"] });
  assert.equal(await outpostFacts(spec("https://api.example", false), new HostRoot(root), r), undefined);
  assert.deepEqual(r.calls, []);
  const f = await outpostFacts(spec("https://API.Example:8443/path"), new HostRoot(root), r);
  assert.deepEqual(f, { host: "api.example", addresses: ["10.0.1.10"], hostsFile: { text: "127.0.0.1 localhost\n", mode: 0o640 } });
  // No /etc/hosts: nothing to keep.
  assert.deepEqual(await outpostFacts(spec("https://api.example"), new HostRoot(path.join(dir, "bare")), r), {
    host: "api.example",
    addresses: ["10.0.1.10"],
  });
});

test("outpostFacts: an /etc/hosts that cannot be read is a fact for the renderer to report", async () => {
  const root = path.join(dir, "dir-hosts");
  await mkdir(path.join(root, "etc/hosts"), { recursive: true });
  const f = await outpostFacts(spec("https://api.example"), new HostRoot(root), fake({ dns4: async () => ["10.0.1.10"] }));
  assert.match(f?.hostsFileError ?? "", /^cannot read \/etc\/hosts .*EISDIR/);
});

test("this machine's resolver: localhost resolves (to 127.0.0.1 at least), a .invalid name does not", async () => {
  const r = systemResolvers();
  const local = await lookupApiServer("localhost", r);
  assert.ok(local.addresses.includes("127.0.0.1"), JSON.stringify(local));
  const bad = await lookupApiServer("berth-test.invalid", r);
  assert.deepEqual(bad.addresses, []);
  assert.match(bad.lookupError ?? "", /^DNS A: \S+, AAAA: \S+; system resolver: E[A-Z_]+$/);
});
