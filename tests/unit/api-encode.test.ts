import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { decodeDocuments } from "../../src/api/decode.ts";
import { encodeNodeConfigYaml, sortJson, toNodeadmJson } from "../../src/api/encode.ts";
import { mergeConfigs } from "../../src/api/merge.ts";
import type { ConfigDocument, JsonValue } from "../../src/api/types.ts";
import { berthSpec, nodeSpec } from "./api-arbitraries.ts";
import { CONFIG_CACHE_DROP_IN, CONFORMANCE_DIR, CONFORMANCE_USER_DATA } from "../fixtures/node.ts";

const CASE = join(CONFORMANCE_DIR, "cases/config-cache");
const userData = (): string => CONFORMANCE_USER_DATA;
const DROP_IN = CONFIG_CACHE_DROP_IN;

function docs(text: string, source: string): ConfigDocument[] {
  const r = decodeDocuments(text, source);
  assert.ok(r.ok, JSON.stringify(r));
  return r.value;
}

const sorted = (v: JsonValue): string => JSON.stringify(sortJson(v), null, 2);

test("config cache 1: user data only", () => {
  const merged = mergeConfigs(docs(userData(), "imds://user-data"));
  const want = JSON.parse(readFileSync(join(CASE, "cached-config-1.json"), "utf8")) as JsonValue;
  assert.equal(sorted(toNodeadmJson(merged.nodeConfig)), sorted(want));
});

test("config cache 2: user data + drop-in with containerd TOML", () => {
  const merged = mergeConfigs([...docs(userData(), "imds://user-data"), ...docs(DROP_IN, "file:///etc/eks/nodeadm.d/test.yaml")]);
  const want = JSON.parse(readFileSync(join(CASE, "cached-config-2.json"), "utf8")) as JsonValue;
  assert.equal(sorted(toNodeadmJson(merged.nodeConfig)), sorted(want));
});

test("toNodeadmJson: empty structs stay, empty scalars/lists/maps go, Go field order", () => {
  assert.deepEqual(toNodeadmJson({}), { cluster: {}, containerd: {}, instance: { localStorage: {}, network: {} }, kubelet: {} });
  const j = toNodeadmJson({
    cluster: { name: "", enableOutpost: false, certificateAuthority: "YWJj\nZA==" },
    kubelet: { flags: [], config: {}, maxPodsExpression: "" },
    instance: { environment: {}, network: { nameservers: [] } },
    featureGates: { InstanceIdNodeName: true },
  });
  assert.deepEqual(j, {
    cluster: { certificateAuthority: "YWJjZA==", enableOutpost: false },
    containerd: {},
    instance: { localStorage: {}, network: {} },
    kubelet: {},
    featureGates: { InstanceIdNodeName: true },
  });
  const order = toNodeadmJson({ kubelet: { maxPodsExpression: "x", flags: ["--a"], config: { b: 1, a: 2 } } });
  assert.deepEqual(Object.keys(order), ["cluster", "containerd", "instance", "kubelet"]);
  assert.deepEqual(Object.keys(order["kubelet"] as object), ["config", "flags", "maxPodsExpression"]);
  assert.deepEqual(Object.keys((order["kubelet"] as { config: object }).config), ["a", "b"]);
});

test("encodeNodeConfigYaml: deterministic dump with a BerthConfig document when present", () => {
  const merged = mergeConfigs([
    ...docs(userData(), "imds://user-data"),
    ...docs(DROP_IN, "file:///etc/eks/nodeadm.d/test.yaml"),
    { kind: "BerthConfig", source: "b", spec: { tasks: [{ name: "warm", pullImages: ["a:1"] }] } },
    { kind: "NodeConfig", source: "c", spec: { instance: { environment: { default: { FLAG: "yes" } } } } },
  ]);
  const text = encodeNodeConfigYaml(merged);
  assert.equal(
    text,
    `---
apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  cluster:
    name: my-cluster
    apiServerEndpoint: https://example.com
    certificateAuthority: Y2VydGlmaWNhdGVBdXRob3JpdHk=
    cidr: 10.100.0.0/16
  containerd:
    config: |
      version = 2

      [grpc]
      address = "/run/foo/foo.sock"

      [plugins."io.containerd.grpc.v1.cri".containerd]
      discard_unpacked_layers = false
  instance:
    environment:
      default:
        FLAG: "yes"
---
apiVersion: berth.dev/v1alpha1
kind: BerthConfig
spec:
  tasks:
    - name: warm
      pullImages:
        - a:1
`,
  );
  assert.equal(encodeNodeConfigYaml(mergeConfigs([])), "---\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec: {}\n");
});

test("property: dump → decode → merge round-trips", () => {
  fc.assert(
    fc.property(nodeSpec, berthSpec, (n, b) => {
      const merged = mergeConfigs([
        { kind: "NodeConfig", source: "x", spec: n },
        { kind: "BerthConfig", source: "x", spec: b },
      ]);
      const text = encodeNodeConfigYaml(merged);
      const r = decodeDocuments(text, "dump");
      assert.ok(r.ok, `${text}\n${JSON.stringify(r)}`);
      const again = mergeConfigs(r.value);
      assert.deepEqual(toNodeadmJson(again.nodeConfig), toNodeadmJson(merged.nodeConfig));
      assert.equal(encodeNodeConfigYaml(again), text);
    }),
    { numRuns: 200 },
  );
});

test("property: nodeadm JSON (the config cache) decodes back to the same spec", () => {
  fc.assert(
    fc.property(nodeSpec, (n) => {
      const spec = mergeConfigs([{ kind: "NodeConfig", source: "x", spec: n }]).nodeConfig;
      const json = JSON.stringify({ apiVersion: "node.eks.aws/v1alpha1", kind: "NodeConfig", spec: toNodeadmJson(spec) });
      const r = decodeDocuments(json, "cache");
      assert.ok(r.ok, `${json}\n${JSON.stringify(r)}`);
      assert.deepEqual(toNodeadmJson(mergeConfigs(r.value).nodeConfig), toNodeadmJson(spec));
    }),
    { numRuns: 200 },
  );
});

test("a key named << is dumped tagged as a string, so it reads back as a key, not a YAML 1.1 merge key", async () => {
  const { encodeNodeConfigYaml } = await import("../../src/api/encode.ts");
  const { parseDocument } = await import("yaml");
  const yaml = encodeNodeConfigYaml({
    nodeConfig: { containerd: { baseRuntimeSpec: { "<<": {}, b: 1 } } },
    berth: {},
    sources: [],
  });
  assert.match(yaml, /!!str "<<": \{\}/);
  const back = parseDocument(yaml, { version: "1.1" }).toJS() as { spec: { containerd: { baseRuntimeSpec: Record<string, unknown> } } };
  assert.deepEqual(back.spec.containerd.baseRuntimeSpec, { "<<": {}, b: 1 });
  // And berth's own decoder, the dump → decode → merge round trip of the property above.
  const r = decodeDocuments(yaml, "dump");
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(encodeNodeConfigYaml(mergeConfigs(r.value)), yaml);
});
