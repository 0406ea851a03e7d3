import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, rm, writeFile, copyFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { HostRoot } from "../../src/host/root.ts";
import { readFileSource, compareNames } from "../../src/sources/files.ts";
import { readSources, loadConfig } from "../../src/sources/index.ts";
import { MemoryImds, fakeDecode, fakeMerge } from "../fakes/sources.ts";

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "berth-sources-files-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const nc = (name: string) => `apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: ${name}\n`;
const deps = (root: HostRoot, imds = new MemoryImds()) => ({ root, imds, decode: fakeDecode, merge: fakeMerge, cwd: dir });

test("directory: config entries in lexical order, others and sub-directories ignored", async () => {
  const root = new HostRoot(path.join(dir, "r1"));
  const d = root.path("/etc/eks/nodeadm.d");
  await mkdir(path.join(d, "sub.yaml"), { recursive: true });
  await writeFile(path.join(d, "b.yml"), nc("b"));
  await writeFile(path.join(d, "a.yaml"), nc("a"));
  await writeFile(
    path.join(d, "C.JSON"),
    JSON.stringify({ apiVersion: "node.eks.aws/v1alpha1", kind: "NodeConfig", spec: { cluster: { name: "c" } } }),
  );
  await writeFile(path.join(d, "README.md"), "not config: {");
  await writeFile(path.join(d, "z.yaml.bak"), "not config: {");
  const r = await readFileSource("file:///etc/eks/nodeadm.d", { root });
  assert.ok(r.ok, JSON.stringify(r));
  assert.deepEqual(
    r.value.map((t) => t.source),
    ["file:///etc/eks/nodeadm.d/C.JSON", "file:///etc/eks/nodeadm.d/a.yaml", "file:///etc/eks/nodeadm.d/b.yml"],
  );
  const m = await loadConfig(["file:///etc/eks/nodeadm.d/"], deps(root));
  assert.ok(m.ok && m.value);
  assert.equal(m.value.nodeConfig.cluster?.name, "b");
});

test("empty directory yields no documents; loadConfig gives undefined", async () => {
  const root = new HostRoot(path.join(dir, "r2"));
  await mkdir(root.path("/etc/eks/nodeadm.d"), { recursive: true });
  const r = await readSources(["file:///etc/eks/nodeadm.d"], deps(root));
  assert.deepEqual(r, { ok: true, value: [] });
  assert.deepEqual(await loadConfig(["file:///etc/eks/nodeadm.d"], deps(root)), { ok: true, value: undefined });
});

test("missing path: error names the host path and the re-rooted path", async () => {
  const root = new HostRoot(path.join(dir, "r3"));
  const r = await readFileSource("file:///etc/nope.yaml", { root });
  assert.ok(!r.ok);
  assert.equal(r.errors[0]!.code, "source.not-found");
  assert.match(r.errors[0]!.message, /\/etc\/nope\.yaml \(.*r3\/etc\/nope\.yaml under --root .*r3\)/);
  const host = await readFileSource("file:///nonexistent-berth-path/x.yaml", { root: new HostRoot("/") });
  assert.ok(!host.ok);
  assert.match(host.errors[0]!.message, /^config path \/nonexistent-berth-path\/x\.yaml does not exist$/);
});

test("relative file:// paths resolve against cwd; a MIME file is split like user data", async () => {
  await copyFile("/work/shared/conformance/nodeadm-e2e/cases/mime-userdata-merge/config.yaml", path.join(dir, "config.yaml"));
  const r = await readSources(["file://config.yaml"], deps(new HostRoot("/")));
  assert.ok(r.ok, JSON.stringify(r));
  assert.deepEqual(
    r.value.map((d) => d.source),
    ["file://config.yaml (MIME part 1 of 3)", "file://config.yaml (MIME part 2 of 3)"],
  );
});

test("all sources in order, all errors collected, unknown schemes listed", async () => {
  const root = new HostRoot(path.join(dir, "r4"));
  await mkdir(root.path("/etc"), { recursive: true });
  await writeFile(root.path("/etc/x.yaml"), nc("x"));
  const ok1 = await readSources(["imds://user-data", "file:///etc/x.yaml"], deps(root, MemoryImds.withUserData(nc("u"))));
  assert.ok(ok1.ok);
  assert.deepEqual(
    ok1.value.map((d) => d.source),
    ["imds://user-data", "file:///etc/x.yaml"],
  );
  const bad = await readSources(["s3://bucket/x", "file:///etc/missing", "imds://meta-data"], deps(root));
  assert.ok(!bad.ok);
  assert.equal(bad.errors.length, 3);
  assert.match(bad.errors[0]!.hint ?? "", /imds:\/\/user-data, file:\/\//);
  assert.match(bad.errors[2]!.message, /only imds:\/\/user-data/);
  const imdsDown = await readSources(["imds://user-data"], deps(root, new MemoryImds(new Map(), new Error("connect ECONNREFUSED"))));
  assert.ok(!imdsDown.ok);
  assert.match(imdsDown.errors[0]!.message, /ECONNREFUSED/);
  // 404 on user-data: no documents
  assert.deepEqual(await readSources(["imds://user-data"], deps(root)), { ok: true, value: [] });
});

test("property: directory order is byte-lexical regardless of creation order", async () => {
  let n = 0;
  await fc.assert(
    fc.asyncProperty(fc.uniqueArray(fc.stringMatching(/^[A-Za-z0-9_.-]{1,8}$/), { minLength: 1, maxLength: 6 }), async (stems) => {
      const root = new HostRoot(path.join(dir, `p${n++}`));
      const d = root.path("/d");
      await mkdir(d, { recursive: true });
      const names = stems.map((s) => `${s}.yaml`);
      for (const name of [...names].reverse()) await writeFile(path.join(d, name), nc("n"));
      const r = await readFileSource("file:///d", { root });
      assert.ok(r.ok);
      assert.deepEqual(
        r.value.map((t) => t.source),
        [...names].sort(compareNames).map((x) => `file:///d/${x}`),
      );
    }),
    { numRuns: 15 },
  );
});
