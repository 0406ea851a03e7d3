import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { parse as parseToml } from "smol-toml";
import { mergeBerthSpecs, mergeConfigs, mergeJson, mergeNodeConfigSpecs } from "../../src/api/merge.ts";
import { canonicalTomlText as canonicalToml, mergeTomlText as mergeToml } from "../../src/util/toml.ts";
import type { ConfigDocument, NodeConfigSpec } from "../../src/api/types.ts";
import { berthSpec, jsonObject, nodeSpec, tomlText } from "./api-arbitraries.ts";

const nc = (source: string, spec: NodeConfigSpec): ConfigDocument => ({ kind: "NodeConfig", source, spec });

test("scalars: later non-empty wins; empty string does not override; false does", () => {
  const m = mergeConfigs([
    nc("a", { cluster: { name: "one", cidr: "10.0.0.0/16", enableOutpost: true, id: "x" } }),
    nc("b", { cluster: { name: "two", cidr: "", enableOutpost: false } }),
  ]);
  assert.deepEqual(m.nodeConfig.cluster, { name: "two", cidr: "10.0.0.0/16", enableOutpost: false, id: "x" });
  assert.deepEqual(m.sources, ["a", "b"]);
});

test("kubelet.flags append in source order", () => {
  const m = mergeConfigs([
    nc("a", { kubelet: { flags: ["--v=2", "--node-labels=a=b"] } }),
    nc("b", {}),
    nc("c", { kubelet: { flags: ["--node-labels=c=d"] } }),
  ]);
  assert.deepEqual(m.nodeConfig.kubelet?.flags, ["--v=2", "--node-labels=a=b", "--node-labels=c=d"]);
});

test("kubelet.config / baseRuntimeSpec: deep merge, arrays replace, empty values kept", () => {
  const m = mergeConfigs([
    nc("a", { kubelet: { config: { maxPods: 58, clusterDNS: ["1.1.1.1"], logging: { verbosity: 2, format: "text" } } } }),
    nc("b", {
      kubelet: { config: { clusterDNS: ["8.8.8.8", "8.8.4.4"], logging: { verbosity: 5 }, kubeReservedCgroup: "" } },
      containerd: { baseRuntimeSpec: { process: { rlimits: [{ type: "RLIMIT_NOFILE" }] } } },
    }),
    nc("c", { containerd: { baseRuntimeSpec: { process: { rlimits: [] } } } }),
  ]);
  assert.deepEqual(m.nodeConfig.kubelet?.config, {
    maxPods: 58,
    clusterDNS: ["8.8.8.8", "8.8.4.4"],
    logging: { verbosity: 5, format: "text" },
    kubeReservedCgroup: "",
  });
  assert.deepEqual(m.nodeConfig.containerd?.baseRuntimeSpec, { process: { rlimits: [] } });
});

test("mime-userdata-merge: systemReserved from the second part merges into the first part's kubelet config", () => {
  const m = mergeConfigs([
    nc("p1", { cluster: { name: "my-cluster" }, kubelet: { config: { maxPods: 58, clusterDNS: ["1.1.1.1"] } } }),
    nc("p2", { kubelet: { config: { systemReserved: { cpu: "150m" } } } }),
  ]);
  assert.deepEqual(m.nodeConfig.kubelet?.config, { maxPods: 58, clusterDNS: ["1.1.1.1"], systemReserved: { cpu: "150m" } });
});

test("containerd.config: TOML deep merge, canonical output even from one source", () => {
  const dropIn =
    'version = 2\n[grpc]\naddress = "/run/foo/foo.sock"\n[plugins."io.containerd.grpc.v1.cri".containerd]\ndiscard_unpacked_layers = false\n';
  const one = mergeConfigs([nc("a", { cluster: { name: "x" } }), nc("b", { containerd: { config: dropIn } })]);
  assert.equal(
    one.nodeConfig.containerd?.config,
    'version = 2\n\n[grpc]\naddress = "/run/foo/foo.sock"\n\n[plugins."io.containerd.grpc.v1.cri".containerd]\ndiscard_unpacked_layers = false\n',
  );
  const two = mergeConfigs([
    nc("a", { containerd: { config: "version = 2\n[grpc]\naddress = 'a'\nuid = 1\n[x]\nlist = [1, 2]\n" } }),
    nc("b", { containerd: { config: "[grpc]\naddress = 'b'\n[x]\nlist = [3]\n" } }),
  ]);
  assert.equal(two.nodeConfig.containerd?.config, 'version = 2\n\n[grpc]\naddress = "b"\nuid = 1\n\n[x]\nlist = [ 3 ]\n');
});

test("other lists replace; environment and featureGates merge per key", () => {
  const m = mergeConfigs([
    nc("a", {
      instance: {
        network: { nameservers: ["1.1.1.1"], domains: ["a"] },
        environment: { default: { A: "1", B: "2" }, kubelet: { K: "k" } },
        localStorage: { strategy: "RAID0", disabledMounts: ["SOCI"] },
      },
      featureGates: { InstanceIdNodeName: true },
    }),
    nc("b", {
      instance: {
        network: { nameservers: ["8.8.8.8"] },
        environment: { default: { B: "3" } },
        localStorage: { disabledMounts: ["PodLogs", "Containerd"] },
      },
      featureGates: { FastImagePull: true },
    }),
  ]);
  assert.deepEqual(m.nodeConfig.instance, {
    network: { nameservers: ["8.8.8.8"], domains: ["a"] },
    environment: { default: { A: "1", B: "3" }, kubelet: { K: "k" } },
    localStorage: { strategy: "RAID0", disabledMounts: ["PodLogs", "Containerd"] },
  });
  assert.deepEqual(m.nodeConfig.featureGates, { InstanceIdNodeName: true, FastImagePull: true });
});

test("BerthConfig: scalars later-wins, tasks upsert by name", () => {
  const m = mergeConfigs([
    {
      kind: "BerthConfig",
      source: "a",
      spec: {
        tasks: [
          { name: "a", script: "1" },
          { name: "b", pullImages: ["x"] },
        ],
        agent: { intervalMs: 1000, restartBudget: 3 },
      },
    },
    nc("n", { cluster: { name: "c" } }),
    {
      kind: "BerthConfig",
      source: "b",
      spec: {
        tasks: [
          { name: "c", script: "3" },
          { name: "a", script: "1'" },
        ],
        agent: { restartBudget: 5 },
        rebootAfterBootstrap: true,
      },
    },
  ]);
  assert.deepEqual(m.berth, {
    tasks: [
      { name: "a", script: "1'" },
      { name: "b", pullImages: ["x"] },
      { name: "c", script: "3" },
    ],
    agent: { intervalMs: 1000, restartBudget: 5 },
    rebootAfterBootstrap: true,
  });
  assert.deepEqual(m.nodeConfig, { cluster: { name: "c" } });
  assert.deepEqual(m.sources, ["a", "n", "b"]);
});

test("inputs are not mutated, and __proto__ keys stay data", () => {
  const a: NodeConfigSpec = { kubelet: { config: { x: { y: 1 } }, flags: ["--a"] } };
  const b = JSON.parse('{"kubelet":{"config":{"__proto__":{"polluted":1},"x":{"z":2}},"flags":["--b"]}}') as NodeConfigSpec;
  const snapshot = JSON.stringify([a, b]);
  const m = mergeNodeConfigSpecs(a, b);
  assert.equal(JSON.stringify([a, b]), snapshot);
  assert.equal(({} as Record<string, unknown>)["polluted"], undefined);
  assert.deepEqual(Object.keys(m.kubelet?.config ?? {}), ["x", "__proto__"]);
});

test("empty input merges to empty config", () => {
  assert.deepEqual(mergeConfigs([]), { nodeConfig: {}, berth: {}, sources: [] });
});

// ---------------------------------------------------------------- properties

/**
 * Deep merge with "objects merge, everything else replaces" is associative
 * only while no path holds an object in one source and a non-object in
 * another ({k:{x}} + {k:[]} + {k:{}} gives {} or {x} depending on grouping).
 * Real configs do not flip types; the property excludes inputs that do.
 */
function shapesAgree(trees: unknown[]): boolean {
  const kinds = new Map<string, boolean>();
  const walk = (v: unknown, path: string): boolean => {
    const isObj = v !== null && typeof v === "object" && !Array.isArray(v);
    const prev = kinds.get(path);
    if (prev !== undefined && prev !== isObj) return false;
    kinds.set(path, isObj);
    return !isObj || Object.entries(v).every(([k, x]) => walk(x, `${path}/${JSON.stringify(k)}`));
  };
  return trees.every((t) => walk(t, ""));
}

function jsonTreesAgree(specs: NodeConfigSpec[]): boolean {
  return (
    shapesAgree(specs.map((s) => s.kubelet?.config ?? {})) &&
    shapesAgree(specs.map((s) => s.containerd?.baseRuntimeSpec ?? {})) &&
    shapesAgree(specs.map((s) => (s.containerd?.config ? parseToml(s.containerd.config) : {})))
  );
}

test("property: NodeConfig merge is associative (when no field changes between table and non-table)", () => {
  fc.assert(
    fc.property(nodeSpec, nodeSpec, nodeSpec, (a, b, c) => {
      fc.pre(jsonTreesAgree([a, b, c]));
      assert.deepEqual(mergeNodeConfigSpecs(mergeNodeConfigSpecs(a, b), c), mergeNodeConfigSpecs(a, mergeNodeConfigSpecs(b, c)));
    }),
    { numRuns: 150 },
  );
});

test("property: BerthConfig merge is associative", () => {
  fc.assert(
    fc.property(berthSpec, berthSpec, berthSpec, (a, b, c) => {
      assert.deepEqual(mergeBerthSpecs(mergeBerthSpecs(a, b), c), mergeBerthSpecs(a, mergeBerthSpecs(b, c)));
    }),
    { numRuns: 150 },
  );
});

test("property: merging an empty spec changes nothing beyond normalisation", () => {
  fc.assert(
    fc.property(nodeSpec, (a) => {
      const n = mergeNodeConfigSpecs({}, a);
      assert.deepEqual(mergeNodeConfigSpecs(n, {}), n);
      assert.deepEqual(mergeNodeConfigSpecs({}, n), n);
    }),
    { numRuns: 100 },
  );
});

test("property: flags append, later scalars win, arrays replace", () => {
  fc.assert(
    fc.property(nodeSpec, nodeSpec, (a, b) => {
      const m = mergeNodeConfigSpecs(a, b);
      const fa = a.kubelet?.flags;
      const fb = b.kubelet?.flags;
      assert.deepEqual(m.kubelet?.flags, fa || fb ? [...(fa ?? []), ...(fb ?? [])] : undefined);
      if (b.cluster?.name) assert.equal(m.cluster?.name, b.cluster.name);
      if (b.cluster?.enableOutpost !== undefined) assert.equal(m.cluster?.enableOutpost, b.cluster.enableOutpost);
      if (b.instance?.network?.nameservers?.length) assert.deepEqual(m.instance?.network?.nameservers, b.instance.network.nameservers);
      for (const [k, v] of Object.entries(b.kubelet?.config ?? {})) if (Array.isArray(v)) assert.deepEqual(m.kubelet?.config?.[k], v);
    }),
    { numRuns: 150 },
  );
});

test("property: mergeJson leaves every leaf of the later object in place", () => {
  fc.assert(
    fc.property(jsonObject, jsonObject, (a, b) => {
      const m = mergeJson(a, b);
      for (const [k, v] of Object.entries(b)) if (v === null || typeof v !== "object" || Array.isArray(v)) assert.deepEqual(m[k], v);
    }),
  );
});

test("property: TOML merge is canonical and idempotent", () => {
  fc.assert(
    fc.property(tomlText, tomlText, (a, b) => {
      const m = mergeToml(a, b);
      assert.equal(canonicalToml(m), m);
      assert.equal(mergeToml(m, m), m);
      assert.equal(mergeToml(m, b), m);
    }),
  );
});
