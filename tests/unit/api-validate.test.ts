import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeDocuments } from "../../src/api/decode.ts";
import { mergeConfigs } from "../../src/api/merge.ts";
import { validateConfig } from "../../src/api/validate.ts";
import type { ConfigDocument } from "../../src/api/types.ts";
import { CONFIG_CACHE_DROP_IN, CONFORMANCE_USER_DATA } from "../fixtures/node.ts";

const DROP_IN = CONFIG_CACHE_DROP_IN;
const USER_DATA = CONFORMANCE_USER_DATA;

/** A complete cluster block, short values. */
const base = { name: "c", apiServerEndpoint: "https://x", certificateAuthority: "YQ==", cidr: "10.0.0.0/16" };

function docs(text: string, source: string): ConfigDocument[] {
  const r = decodeDocuments(text, source);
  assert.ok(r.ok, JSON.stringify(r));
  return r.value;
}

test("config-cache step 3: a partial drop-in alone fails, naming every missing field", () => {
  const r = validateConfig(mergeConfigs(docs(DROP_IN, "file:///etc/eks/nodeadm.d/test.yaml")));
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.deepEqual(
    r.errors.map((e) => [e.code, e.where?.path, e.message]),
    [
      [
        "config.missing-field",
        "spec.cluster.name",
        "the cluster name (spec.cluster.name) is missing after merging the one source file:///etc/eks/nodeadm.d/test.yaml",
      ],
      [
        "config.missing-field",
        "spec.cluster.apiServerEndpoint",
        "the API server endpoint (spec.cluster.apiServerEndpoint) is missing after merging the one source file:///etc/eks/nodeadm.d/test.yaml",
      ],
      [
        "config.missing-field",
        "spec.cluster.certificateAuthority",
        "the cluster CA (base64) (spec.cluster.certificateAuthority) is missing after merging the one source file:///etc/eks/nodeadm.d/test.yaml",
      ],
      [
        "config.missing-field",
        "spec.cluster.cidr",
        "the service CIDR (spec.cluster.cidr) is missing after merging the one source file:///etc/eks/nodeadm.d/test.yaml",
      ],
    ],
  );
  assert.equal(r.errors[0]!.where?.source, "file:///etc/eks/nodeadm.d/test.yaml");
  assert.equal(r.errors[0]!.hint, "set it under spec.cluster in one of the sources, e.g. `name: my-cluster` (check for misspelled keys)");
});

test("config-cache step 4: user data + drop-in is valid", () => {
  const merged = mergeConfigs([...docs(USER_DATA, "imds://user-data"), ...docs(DROP_IN, "file:///etc/eks/nodeadm.d/test.yaml")]);
  const r = validateConfig(merged);
  assert.ok(r.ok);
  assert.equal(r.value, merged);
});

test("several sources are named in the message", () => {
  const r = validateConfig(
    mergeConfigs([
      {
        kind: "NodeConfig",
        source: "a",
        spec: { cluster: { apiServerEndpoint: "https://x", certificateAuthority: "YQ==", cidr: "10.0.0.0/16" } },
      },
      { kind: "NodeConfig", source: "b", spec: {} },
    ]),
  );
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.deepEqual(
    r.errors.map((e) => [e.message, e.where]),
    [["the cluster name (spec.cluster.name) is missing after merging the 2 merged sources a, b", { path: "spec.cluster.name" }]],
  );
});

test("outposts need a cluster id", () => {
  const bad = validateConfig(mergeConfigs([{ kind: "NodeConfig", source: "s", spec: { cluster: { ...base, enableOutpost: true } } }]));
  assert.equal(bad.ok, false);
  if (!bad.ok) assert.equal(bad.errors[0]!.where?.path, "spec.cluster.id");
  assert.ok(
    validateConfig(mergeConfigs([{ kind: "NodeConfig", source: "s", spec: { cluster: { ...base, enableOutpost: true, id: "abc" } } }])).ok,
  );
  assert.ok(validateConfig(mergeConfigs([{ kind: "NodeConfig", source: "s", spec: { cluster: { ...base, enableOutpost: false } } }])).ok);
});

test("cross-source agent settings are checked after merging", () => {
  const r = validateConfig(
    mergeConfigs([
      { kind: "NodeConfig", source: "a", spec: { cluster: base } },
      { kind: "BerthConfig", source: "a", spec: { agent: { backoffInitialMs: 5000, intervalMs: 1000 } } },
      { kind: "BerthConfig", source: "b", spec: { agent: { backoffMaxMs: 1000, probeTimeoutMs: 2000 } } },
    ]),
  );
  assert.equal(r.ok, false);
  if (!r.ok)
    assert.deepEqual(
      r.errors.map((e) => e.where?.path),
      ["spec.agent.backoffInitialMs", "spec.agent.probeTimeoutMs"],
    );
});

test("agent settings are checked against the agent's defaults too, as `berth agent` will", () => {
  // intervalMs 1000 alone is below the default probe deadline (2000 ms) and fast interval is fine.
  const r = validateConfig(
    mergeConfigs([
      { kind: "NodeConfig", source: "a", spec: { cluster: base } },
      { kind: "BerthConfig", source: "a", spec: { agent: { intervalMs: 1000, fastIntervalMs: 3000 } } },
    ]),
  );
  assert.equal(r.ok, false);
  if (!r.ok) {
    assert.deepEqual(
      r.errors.map((e) => e.where?.path),
      ["spec.agent.intervalMs", "spec.agent.fastIntervalMs"],
    );
    assert.match(r.errors[1]!.message, /^fastIntervalMs \(3000\) is greater than intervalMs \(1000\) after merging/);
  }
});

test("no sources at all", () => {
  const r = validateConfig(mergeConfigs([]));
  assert.equal(r.ok, false);
  if (!r.ok) assert.equal(r.errors[0]!.code, "config.no-config");
});

test("containerd.config: sources that mix config schema versions are refused after the merge", () => {
  const r = validateConfig(
    mergeConfigs([
      { kind: "NodeConfig", source: "a", spec: { cluster: base, containerd: { config: "version = 2\n" } } },
      { kind: "NodeConfig", source: "b", spec: { containerd: { config: '[plugins."io.containerd.cri.v1.images"]\nx = 1\n' } } },
    ]),
  );
  assert.equal(r.ok, false);
  if (!r.ok) {
    assert.deepEqual(
      r.errors.map((e) => [e.code, e.where?.path]),
      [["containerd.config-schema", "spec.containerd.config"]],
    );
    assert.match(r.errors[0]!.message, /mixes containerd config schemas/);
  }
});

test("maxPodsExpression: with the CEL evaluator, what fails whatever the node is refused; range is left to the node", async () => {
  const { loadMaxPodsEvaluator } = await import("../../src/render/max-pods.ts");
  const maxPodsEvaluator = await loadMaxPodsEvaluator();
  const check = (expr: string) =>
    validateConfig(mergeConfigs([{ kind: "NodeConfig", source: "a", spec: { cluster: base, kubelet: { maxPodsExpression: expr } } }]), {
      maxPodsEvaluator,
    });
  for (const [expr, msg] of [
    ["((", /found end of input but expecting/],
    ["foo + 1", /unknown variable/],
    ["true", /the result true is not an integer/],
    ['max_pods + "a"', /no matching overload/],
  ] as const) {
    const r = check(expr);
    assert.equal(r.ok, false, expr);
    if (!r.ok) {
      assert.equal(r.errors[0]!.code, "config.max-pods-expression", expr);
      assert.match(r.errors[0]!.message, msg, expr);
      assert.equal(r.errors[0]!.where?.path, "spec.kubelet.maxPodsExpression");
    }
  }
  // Depends on the instance (negative on small ones, a division by zero on some): for the node to decide.
  for (const expr of ["max_pods - 100", "max_pods / (default_enis - 3)", "max_pods + 2"]) assert.equal(check(expr).ok, true, expr);
  // Without the evaluator, the expression waits for rendering, as before.
  assert.equal(
    validateConfig(mergeConfigs([{ kind: "NodeConfig", source: "a", spec: { cluster: base, kubelet: { maxPodsExpression: "((" } } }])).ok,
    true,
  );
});
