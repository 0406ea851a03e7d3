import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, rm, writeFile, readFile, stat, readdir } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { HostRoot } from "../../src/host/root.ts";
import { resolveConfig, writeCache, readCache, type CacheDeps } from "../../src/sources/cache.ts";
import { canonicalJson } from "../../src/util/json.ts";
import { MemoryImds, fakeApi } from "../fakes/sources.ts";
import { containerdDropIn, CONFORMANCE_DIR, CONFORMANCE_USER_DATA_B64 } from "../fixtures/node.ts";

const CASES = CONFORMANCE_DIR;
const USER_DATA = CONFORMANCE_USER_DATA_B64; // base64 NodeConfig, as the suite's IMDS serves it
const CACHE = "/run/eks/nodeadm/config.json";

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "berth-sources-cache-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function specOfCache(root: HostRoot): Promise<unknown> {
  return (JSON.parse(await readFile(root.path(CACHE), "utf8")) as { spec: unknown }).spec;
}
const expected = (n: number) =>
  JSON.parse(readFileSync(`${CASES}/cases/config-cache/cached-config-${n}.json`, "utf8")) as { containerd: { config: string } };
// The config-cache drop-in with its TOML already in the cache's canonical form: the fake API keeps TOML text as written.
const DROPIN = containerdDropIn(expected(2).containerd.config);

// Once with the small fakes, once with the real src/api functions (the lazily loaded defaults).
const variants: [string, Partial<typeof fakeApi>][] = [
  ["fake-api", fakeApi],
  ["src-api", {}],
];
for (const [label, API] of variants) {
  test(`${label}: config-cache case: the 5 steps of cases.yaml`, async () => {
    const root = new HostRoot(path.join(dir, `${label}-node`));
    const deps: CacheDeps = { root, imds: MemoryImds.withUserData(USER_DATA), ...API };

    // 1: init (config phase runs) from user data → cache written
    const s1 = await resolveConfig(["imds://user-data"], CACHE, deps);
    assert.ok(s1.ok, JSON.stringify(s1));
    assert.equal(s1.value.origin, "sources");
    assert.equal(s1.value.cacheState, "none");
    await writeCache(CACHE, s1.value.config, root, API.encode);
    assert.equal(canonicalJson(await specOfCache(root)), canonicalJson(expected(1)));
    assert.equal((await stat(root.path(CACHE))).mode & 0o777, 0o600);

    // 2: --skip config with the same source → unchanged, cache untouched
    const s2 = await resolveConfig(["imds://user-data"], CACHE, deps);
    assert.ok(s2.ok);
    assert.equal(s2.value.cacheState, "unchanged");
    assert.equal(canonicalJson(await specOfCache(root)), canonicalJson(expected(1)));

    // 3: a partial drop-in alone must fail validation even with a cache
    await mkdir(root.path("/etc/eks/nodeadm.d"), { recursive: true });
    await writeFile(root.path("/etc/eks/nodeadm.d/test.yaml"), DROPIN);
    const s3 = await resolveConfig(["file:///etc/eks/nodeadm.d"], CACHE, deps);
    assert.ok(!s3.ok);
    assert.match(s3.errors[0]!.message, /cluster\.name/);

    // 4: user data + drop-in → changed; the caller re-configures and rewrites the cache
    const s4 = await resolveConfig(["imds://user-data", "file:///etc/eks/nodeadm.d"], CACHE, deps);
    assert.ok(s4.ok);
    assert.equal(s4.value.cacheState, "changed");
    await writeCache(CACHE, s4.value.config, root, API.encode);
    assert.equal(canonicalJson(await specOfCache(root)), canonicalJson(expected(2)));

    // 5: empty directory → falls back to the cache
    await rm(root.path("/etc/eks/nodeadm.d/test.yaml"));
    const s5 = await resolveConfig(["file:///etc/eks/nodeadm.d"], CACHE, deps);
    assert.ok(s5.ok, JSON.stringify(s5));
    assert.equal(s5.value.origin, "cache");
    assert.equal(s5.value.cacheState, "from-cache");
    assert.equal(s5.value.config.nodeConfig.containerd?.config, expected(2).containerd.config);
    // no temp files left behind
    assert.deepEqual(await readdir(root.path("/run/eks/nodeadm")), ["config.json"]);
  });

  test(`${label}: no source and no cache is an error; a corrupt cache is ignored with a warning`, async () => {
    const root = new HostRoot(path.join(dir, `${label}-node2`));
    await mkdir(root.path("/etc/eks/nodeadm.d"), { recursive: true });
    const deps: CacheDeps = { root, imds: new MemoryImds(), ...API };
    const none = await resolveConfig(["file:///etc/eks/nodeadm.d", "imds://user-data"], CACHE, deps);
    assert.ok(!none.ok);
    assert.equal(none.errors[0]!.code, "config.none");
    assert.match(none.errors[0]!.message, /no usable config cache at \/run\/eks\/nodeadm\/config.json/);

    await mkdir(root.path("/run/eks/nodeadm"), { recursive: true });
    await writeFile(root.path(CACHE), "{not json");
    const withUd: CacheDeps = { ...deps, imds: MemoryImds.withUserData(USER_DATA) };
    const r = await resolveConfig(["imds://user-data"], CACHE, withUd);
    assert.ok(r.ok);
    assert.equal(r.value.cacheState, "none");
    assert.equal(r.value.warnings[0]!.code, "cache.corrupt");
    assert.match(r.value.warnings[0]!.message, /^ignoring the config cache/);
  });

  test(`${label}: without --config-cache: cacheState none; berth settings survive a cache round trip`, async () => {
    const root = new HostRoot(path.join(dir, `${label}-node3`));
    const ud = `${Buffer.from(USER_DATA, "base64").toString()}---\napiVersion: berth.dev/v1alpha1\nkind: BerthConfig\nspec:\n  rebootAfterBootstrap: true\n`;
    const deps: CacheDeps = { root, imds: MemoryImds.withUserData(ud), ...API };
    const r = await resolveConfig(["imds://user-data"], undefined, deps);
    assert.ok(r.ok);
    assert.equal(r.value.cacheState, "none");
    await writeCache(CACHE, r.value.config, root, API.encode);
    const first = await readFile(root.path(CACHE), "utf8");
    await writeCache(CACHE, r.value.config, root, API.encode);
    assert.equal(await readFile(root.path(CACHE), "utf8"), first, "deterministic bytes");
    const c = await readCache(CACHE, deps);
    assert.ok(c.ok && c.value);
    assert.deepEqual(c.value.berth, { rebootAfterBootstrap: true });
    const again = await resolveConfig(["imds://user-data"], CACHE, deps);
    assert.ok(again.ok);
    assert.equal(again.value.cacheState, "unchanged");
  });
}
