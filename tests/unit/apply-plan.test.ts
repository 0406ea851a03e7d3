/** buildPlan / combinePlan: every renderer's errors, no path claimed twice, deterministic order. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { buildPlan, combinePlan } from "../../src/plan/plan.ts";
import type { MergedConfig } from "../../src/api/types.ts";
import type { NodeFacts } from "../../src/facts/types.ts";
import type { PlannedFile } from "../../src/plan/types.ts";
import { clusterSpec, conformanceFacts } from "../fixtures/node.ts";

const f = (path: string, component: string): PlannedFile => ({ path, content: path, mode: 0o644, component });

const FACTS: NodeFacts = conformanceFacts({ memoryBytes: 16 * 1024 ** 3 });
const CONFIG: MergedConfig = {
  nodeConfig: clusterSpec(),
  berth: {},
  sources: ["test"],
};

test("combinePlan sorts files and absent paths", () => {
  const r = combinePlan([{ files: [f("/b", "x"), f("/a", "x")], absent: ["/z", "/y", "/z"] }, { files: [f("/c", "y")] }]);
  assert.ok(r.ok);
  assert.deepEqual(
    r.value.files.map((x) => x.path),
    ["/a", "/b", "/c"],
  );
  assert.deepEqual(r.value.absent, ["/y", "/z"]);
});

test("combinePlan collects the errors of every part", () => {
  const e = (code: string) => ({ code, message: code });
  const r = combinePlan([{ errors: [e("one")] }, { files: [f("/a", "x")] }, { errors: [e("two"), e("three")] }]);
  assert.ok(!r.ok);
  assert.deepEqual(
    r.errors.map((x) => x.code),
    ["one", "two", "three"],
  );
});

test("combinePlan rejects a path rendered twice, and a path both planned and absent", () => {
  const r = combinePlan([{ files: [f("/etc/x", "kubelet")] }, { files: [f("/etc/x", "containerd")], absent: [] }, { absent: ["/etc/x"] }]);
  assert.ok(!r.ok);
  assert.deepEqual(
    r.errors.map((x) => x.code),
    ["plan.duplicate-path", "plan.absent-conflict"],
  );
  assert.equal(r.errors[0]!.message, "/etc/x is rendered by both kubelet and containerd");
});

test("buildPlan renders the node's files, sorted, deterministic", () => {
  const a = buildPlan(CONFIG, FACTS);
  const b = buildPlan(structuredClone(CONFIG), structuredClone(FACTS));
  assert.ok(a.ok, JSON.stringify(!a.ok && a.errors));
  assert.ok(b.ok);
  const paths = a.value.files.map((x) => x.path);
  assert.deepEqual(paths, [...paths].sort());
  for (const p of [
    "/etc/kubernetes/kubelet/config.json",
    "/etc/containerd/config.toml",
    "/var/lib/kubelet/kubeconfig",
    "/etc/eks/kubelet/environment",
  ])
    assert.ok(paths.includes(p), p);
  assert.equal(
    (a.value.files.find((x) => x.path === "/var/lib/kubelet/kubeconfig")!.mode & 0o077) === 0,
    true,
    "kubeconfig not group/world readable",
  );
  assert.deepEqual(a.value, b.value);
});

test("buildPlan reports the errors of several renderers at once (kubelet and containerd)", () => {
  const bad: MergedConfig = {
    ...CONFIG,
    nodeConfig: {
      ...CONFIG.nodeConfig,
      // containerd 1.7 reads only config version 2
      containerd: { config: 'version = 3\n[plugins."io.containerd.cri.v1.images"]\n' },
      // an expression without the CEL evaluator passed in PlanOptions.kubelet
      kubelet: { maxPodsExpression: "default_enis * 2" },
    },
  };
  const r = buildPlan(bad, FACTS);
  assert.ok(!r.ok);
  assert.deepEqual(r.errors.map((x) => x.code).sort(), ["containerd.config-schema", "internal.cel-not-loaded"]);
});
