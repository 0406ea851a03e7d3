/**
 * The validation mode through the sources and the config cache
 * (src/sources/index.ts readConfigDocuments, src/sources/cache.ts
 * resolveConfig), with the real src/api functions.
 */
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { HostRoot } from "../../src/host/root.ts";
import { resolveConfig, writeCache } from "../../src/sources/cache.ts";
import type { SourcesReport } from "../../src/sources/index.ts";
import { MemoryImds } from "../fakes/sources.ts";
import { CLUSTER_NODECONFIG_YAML } from "../fixtures/node.ts";

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "berth-sources-validation-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const NODE = "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n";
const TYPO = `${NODE}  kubelet:\n    flag:\n      - --node-labels=a=b\n`;
const WARN_SETTING = "apiVersion: berth.dev/v1alpha1\nkind: BerthConfig\nspec:\n  validation: warn\n";
const DIR = "file:///etc/eks/nodeadm.d/";

async function rootWith(name: string, files: Record<string, string>): Promise<HostRoot> {
  const root = path.join(dir, name);
  await mkdir(path.join(root, "etc/eks/nodeadm.d"), { recursive: true });
  for (const [f, text] of Object.entries(files)) await writeFile(path.join(root, "etc/eks/nodeadm.d", f), text);
  return new HostRoot(root);
}

const deps = (root: HostRoot, reports: SourcesReport[]) => ({
  root,
  imds: new MemoryImds(),
  onSources: (r: SourcesReport) => void reports.push(r),
});

test("strict by default: a misspelled field fails, and the report still names the files read", async () => {
  const root = await rootWith("strict", { "10-cluster.yaml": CLUSTER_NODECONFIG_YAML, "20-typo.yaml": TYPO });
  const reports: SourcesReport[] = [];
  const r = await resolveConfig([DIR], undefined, deps(root, reports));
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.deepEqual(
    r.errors.map((e) => [e.code, e.where?.source, e.where?.line, e.where?.column]),
    [["config.unknown-field", `${DIR}20-typo.yaml`, 5, 5]],
  );
  assert.equal(reports.length, 1);
  assert.deepEqual(reports[0]!.texts, [`${DIR}10-cluster.yaml`, `${DIR}20-typo.yaml`]);
  assert.deepEqual(reports[0]!.mode, { mode: "strict", from: "default" });
  assert.deepEqual(reports[0]!.warnings, []);
});

test("--validate=warn: the field is dropped from the config, reported once, not an error", async () => {
  const root = await rootWith("warn", { "10-cluster.yaml": CLUSTER_NODECONFIG_YAML, "20-typo.yaml": TYPO });
  const reports: SourcesReport[] = [];
  const r = await resolveConfig([DIR], undefined, { ...deps(root, reports), validation: "warn" });
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(r.value.config.nodeConfig.kubelet?.flags, undefined);
  assert.deepEqual(r.value.config.nodeConfig.kubelet, {});
  assert.deepEqual(r.value.warnings, [], "reported through onSources, not twice");
  assert.equal(reports.length, 1);
  assert.deepEqual(reports[0]!.mode, { mode: "warn", from: "flag" });
  assert.deepEqual(
    reports[0]!.warnings.map((w) => [w.where?.source, w.where?.line, w.message]),
    [[`${DIR}20-typo.yaml`, 5, "unknown field `flag`; did you mean `flags`?"]],
  );
});

test("the BerthConfig setting turns warn on for every source; --validate=strict wins over it", async () => {
  const root = await rootWith("setting", {
    "10-cluster.yaml": CLUSTER_NODECONFIG_YAML,
    "20-typo.yaml": TYPO,
    "30-berth.yaml": WARN_SETTING,
  });
  const reports: SourcesReport[] = [];
  const r = await resolveConfig([DIR], undefined, deps(root, reports));
  assert.ok(r.ok, JSON.stringify(r));
  assert.deepEqual(reports[0]!.mode, { mode: "warn", from: "setting" });
  assert.equal(reports[0]!.warnings.length, 1);
  assert.equal(r.value.config.berth.validation, "warn");

  const strict = await resolveConfig([DIR], undefined, { ...deps(root, reports), validation: "strict" });
  assert.equal(strict.ok, false);
  assert.deepEqual(reports[1]!.mode, { mode: "strict", from: "flag" });
});

test("without onSources the warnings are the resolved config's warnings", async () => {
  const root = await rootWith("no-callback", { "10-cluster.yaml": CLUSTER_NODECONFIG_YAML, "20-typo.yaml": TYPO });
  const r = await resolveConfig([DIR], undefined, { root, imds: new MemoryImds(), validation: "warn" });
  assert.ok(r.ok);
  assert.deepEqual(
    r.value.warnings.map((w) => w.code),
    ["config.unknown-field"],
  );
});

test("warn mode: the warnings come before a failure of the merged config, which stays an error", async () => {
  // `clustr` is dropped, so the merged config has no cluster: nodeadm's "missing" errors follow.
  const root = await rootWith("then-fail", { "10-typo.yaml": `${NODE}  clustr:\n    name: c\n` });
  const reports: SourcesReport[] = [];
  const r = await resolveConfig([DIR], undefined, { ...deps(root, reports), validation: "warn" });
  assert.equal(r.ok, false);
  assert.equal(reports[0]!.warnings.length, 1);
  assert.match(reports[0]!.warnings[0]!.message, /unknown field `clustr`; did you mean `cluster`\?/);
  assert.ok(!r.ok && r.errors.every((e) => e.code === "config.missing-field"));
});

test("the config cache holds the config without the dropped field and decodes strictly", async () => {
  const root = await rootWith("cache", { "10-cluster.yaml": CLUSTER_NODECONFIG_YAML, "20-typo.yaml": TYPO, "30-berth.yaml": WARN_SETTING });
  const cache = "/run/eks/nodeadm/config.json";
  const first = await resolveConfig([DIR], cache, deps(root, []));
  assert.ok(first.ok);
  assert.equal(first.value.cacheState, "none");
  await writeCache(cache, first.value.config, root);
  const text = await readFile(root.path(cache), "utf8");
  assert.doesNotMatch(text, /"flag"/);
  assert.match(text, /"validation": "warn"/);
  const again = await resolveConfig([DIR], cache, deps(root, []));
  assert.ok(again.ok, JSON.stringify(again));
  assert.equal(again.value.cacheState, "unchanged");
  assert.deepEqual(again.value.warnings, [], "the cache itself is read cleanly");
});
