/** Unit and property tests of the kubelet formulas, version compare and error paths. */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import type { JsonObject } from "../../src/api/types.ts";
import type { NodeFacts } from "../../src/facts/types.ts";
import type { PlannedFile } from "../../src/plan/types.ts";
import { parseVersion, versionAtLeast } from "../../src/util/version.ts";
import { computeMaxPods, DEFAULT_MAX_PODS, loadMaxPodsEvaluator, maxPodsFromEnis, standardMaxPods } from "../../src/render/max-pods.ts";
import { cpuMillicoresToReserve, kubeReserved, memoryMebibytesToReserve } from "../../src/render/reserved.ts";
import { cidrFamily, clusterDnsFromCidr, mergeKubeletConfig, stableJson } from "../../src/render/kubelet-config.ts";
import { decodeCertificateAuthority, kubeconfigYaml } from "../../src/render/kubeconfig.ts";
import { renderKubelet, renderKubeletAsync } from "../../src/render/kubelet.ts";
import { parse as parseYaml } from "yaml";
import { clusterSpec, conformanceFacts, CONFORMANCE_INSTANCE } from "../fixtures/node.ts";

/** The conformance node with an IPv6 address too, kubelet 1.35.0. */
const facts = (over: Partial<NodeFacts> = {}): NodeFacts =>
  conformanceFacts({ instance: { ...CONFORMANCE_INSTANCE, ipv6: "2600:1f14:abcd::1" }, kubeletVersion: "1.35.0", ...over });
const spec = clusterSpec;
const fileText = (files: PlannedFile[], p: string): string => {
  const f = files.find((x) => x.path === p);
  assert.ok(f, `no ${p}`);
  return typeof f.content === "string" ? f.content : Buffer.from(f.content).toString();
};
const configOf = (files: PlannedFile[]) => JSON.parse(fileText(files, "/etc/kubernetes/kubelet/config.json")) as JsonObject;
const envOf = (files: PlannedFile[]) => fileText(files, "/etc/eks/kubelet/environment");

// ---- version ----

test("parseVersion handles kubelet and containerd version strings", () => {
  assert.deepEqual(parseVersion("1.35.0-eks-5e0fdde"), { major: 1, minor: 35, patch: 0, pre: "eks-5e0fdde" });
  assert.deepEqual(parseVersion("v1.29.3"), { major: 1, minor: 29, patch: 3 });
  assert.deepEqual(parseVersion("1.7"), { major: 1, minor: 7, patch: 0 });
  assert.deepEqual(parseVersion("2.0.5"), { major: 2, minor: 0, patch: 5 });
  assert.equal(parseVersion("garbage"), undefined);
  assert.equal(parseVersion(""), undefined);
});

test("versionAtLeast ignores vendor suffixes and compares numerically", () => {
  assert.ok(versionAtLeast("1.35.0-eks-5e0fdde", "1.35.0"));
  assert.ok(versionAtLeast("1.10.0", "1.9.0"));
  assert.ok(!versionAtLeast("1.33.9", "1.34.0"));
  assert.ok(versionAtLeast("2.0.0", "1.99.99"));
  assert.ok(!versionAtLeast("nonsense", "0.0.0"));
});

test("versionAtLeast is a total preorder consistent with the numeric triple (property)", () => {
  const triple = fc.tuple(fc.nat(50), fc.nat(50), fc.nat(50));
  fc.assert(
    fc.property(triple, triple, fc.constantFrom("", "-eks-5e0fdde", "+build.1"), ([a, b, c], [x, y, z], suffix) => {
      const va = `${a}.${b}.${c}${suffix}`;
      const vb = `${x}.${y}.${z}`;
      const expected = a !== x ? a > x : b !== y ? b > y : c >= z;
      assert.equal(versionAtLeast(va, vb), expected);
      assert.ok(versionAtLeast(va, va));
    }),
  );
});

// ---- maxPods ----

test("maxPodsFromEnis: m4.xlarge 4 x 15 → 58; unknown type → 110", () => {
  assert.equal(maxPodsFromEnis(4, 15), 58);
  assert.equal(standardMaxPods({ defaultEnis: 4, ipv4PerEni: 15, origin: "table" }), 58);
  assert.equal(standardMaxPods({ origin: "unknown" }), DEFAULT_MAX_PODS);
});

test("maxPodsFromEnis: grows by ipsPerEni-1 per ENI and is ≥ 2 (property)", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 100 }), (enis, ips) => {
      const n = maxPodsFromEnis(enis, ips);
      assert.ok(Number.isInteger(n) && n >= 2);
      assert.equal(maxPodsFromEnis(enis + 1, ips) - n, ips - 1);
    }),
  );
});

test("maxPodsExpression: nodeadm's variables; custom networking → 44, max_pods + 2 → 60", async () => {
  const ev = await loadMaxPodsEvaluator();
  const t = facts().instanceType;
  const run = (e: string) => computeMaxPods({ kubelet: { maxPodsExpression: e } }, t, ev);
  assert.deepEqual(run("((default_enis -1) * (ips_per_eni - 1)) + 2"), { ok: true, value: 44 });
  assert.deepEqual(run("max_pods + 2"), { ok: true, value: 60 });
  assert.deepEqual(run("max_pods > 50 ? 50 : max_pods"), { ok: true, value: 50 });
  assert.deepEqual(run("double(max_pods) * 1.5"), { ok: true, value: 87 }); // doubles truncate, as CEL int() does
});

test("maxPodsExpression agrees with the formula for every ENI shape (property)", async () => {
  const ev = await loadMaxPodsEvaluator();
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 50 }), fc.integer({ min: 2, max: 50 }), (enis, ips) => {
      const r = computeMaxPods(
        { kubelet: { maxPodsExpression: "default_enis * (ips_per_eni - 1) + 2" } },
        { defaultEnis: enis, ipv4PerEni: ips, origin: "ec2" },
        ev,
      );
      assert.deepEqual(r, { ok: true, value: maxPodsFromEnis(enis, ips) });
    }),
    { numRuns: 50 },
  );
});

test("a bad maxPodsExpression is an error naming the field, with the CEL message and a hint", async () => {
  const ev = await loadMaxPodsEvaluator();
  const t = facts().instanceType;
  for (const [expr, fragment] of [
    ["max_pods +", "expecting"],
    ["foo + 1", "unknown variable"],
    ["max_pods - 100", "not a positive integer"],
    ["'x'", "not an integer"],
    ["max_pods / 0", "divide by zero"],
  ] as const) {
    const r = computeMaxPods({ kubelet: { maxPodsExpression: expr } }, t, ev);
    assert.equal(r.ok, false, expr);
    if (r.ok) continue;
    const e = r.errors[0];
    assert.equal(e?.where?.path, "spec.kubelet.maxPodsExpression");
    assert.match(e?.message ?? "", new RegExp(fragment), expr);
    assert.ok(e?.hint);
  }
  // Through the entry point too.
  const r = await renderKubeletAsync(spec({ kubelet: { maxPodsExpression: "max_pods +" } }), facts());
  assert.equal(r.ok, false);
});

test("unknown instance type: 110 even with an expression, which is still syntax-checked", async () => {
  const ev = await loadMaxPodsEvaluator();
  assert.deepEqual(computeMaxPods({ kubelet: { maxPodsExpression: "max_pods + 2" } }, { origin: "unknown" }, ev), { ok: true, value: 110 });
  assert.equal(computeMaxPods({ kubelet: { maxPodsExpression: "max_pods +" } }, { origin: "unknown" }, ev).ok, false);
});

test("renderKubelet without a loaded evaluator says how to load one", () => {
  const r = renderKubelet(spec({ kubelet: { maxPodsExpression: "max_pods" } }), facts());
  assert.equal(r.ok, false);
  if (!r.ok) assert.match(r.errors[0]?.hint ?? "", /renderKubeletAsync/);
});

// ---- reserved ----

test("cpu reservation tiers: 1→60m 2→70m 4→80m 8→90m 96→310m", () => {
  assert.deepEqual([1, 2, 3, 4, 8, 96].map(cpuMillicoresToReserve), [60, 70, 75, 80, 90, 310]);
  assert.equal(cpuMillicoresToReserve(0), 0);
});

test("cpu reservation is monotonic and below 6% of the node (property)", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 448 }), (cpus) => {
      const r = cpuMillicoresToReserve(cpus);
      assert.ok(r >= cpuMillicoresToReserve(cpus - 1));
      assert.ok(r <= cpus * 60);
    }),
  );
});

test("memory reservation = 11 × maxPods + 255 MiB (property)", () => {
  assert.equal(memoryMebibytesToReserve(58), 893);
  assert.equal(memoryMebibytesToReserve(110), 1465);
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 10000 }), (p) => {
      assert.equal(memoryMebibytesToReserve(p + 1) - memoryMebibytesToReserve(p), 11);
      assert.equal(kubeReserved(2, p).memory, `${11 * p + 255}Mi`);
    }),
  );
});

test("deliberate departure: memory reserved for the user's maxPods; config.json keeps berth's", () => {
  const r = renderKubelet(spec({ kubelet: { config: { maxPods: 1 } } }), facts());
  assert.ok(r.ok);
  const cfg = configOf(r.value);
  assert.equal(cfg.maxPods, 58);
  assert.deepEqual(cfg.kubeReserved, { cpu: "70m", "ephemeral-storage": "1Gi", memory: "266Mi" });
  const bad = renderKubelet(spec({ kubelet: { config: { maxPods: "many" } } }), facts());
  assert.equal(bad.ok, false);
  if (!bad.ok) assert.equal(bad.errors[0]?.where?.path, "spec.kubelet.config.maxPods");
});

// ---- networking ----

test("clusterDNS from the service CIDR, IPv4 and IPv6", () => {
  assert.deepEqual(clusterDnsFromCidr("10.100.0.0/16"), { ok: true, value: "10.100.0.10" });
  assert.deepEqual(clusterDnsFromCidr("172.20.0.0/16"), { ok: true, value: "172.20.0.10" });
  assert.deepEqual(clusterDnsFromCidr("fd00:10:96::/108"), { ok: true, value: "fd00:10:96::a" });
  for (const bad of [undefined, "", "10.100.0.0", "10.100.0.0/33", "300.1.1.1/8", "fd00::/129", "hello/8"]) {
    const r = cidrFamily(bad);
    assert.equal(r.ok, false, String(bad));
    if (!r.ok) assert.equal(r.errors[0]?.where?.path, "spec.cluster.cidr");
  }
});

test("clusterDNS of any IPv4 CIDR is that network's .10 (property)", () => {
  fc.assert(
    fc.property(fc.ipV4(), fc.integer({ min: 0, max: 32 }), (ip, bits) => {
      const r = clusterDnsFromCidr(`${ip}/${bits}`);
      assert.ok(r.ok);
      assert.equal(r.value, `${ip.split(".").slice(0, 3).join(".")}.10`);
    }),
  );
});

test("node IP follows the cluster's family; IPv6 cluster uses the interface's IPv6", () => {
  const v4 = renderKubelet(spec(), facts());
  assert.ok(v4.ok);
  assert.match(envOf(v4.value), / --node-ip=172\.16\.34\.43 /);
  const v6 = renderKubelet(spec({ cluster: { cidr: "fd00:10:96::/108" } }), facts());
  assert.ok(v6.ok);
  assert.match(envOf(v6.value), / --node-ip=2600:1f14:abcd::1 /);
  assert.deepEqual(configOf(v6.value).clusterDNS, ["fd00:10:96::a"]);
  const noV6 = renderKubelet(
    spec({ cluster: { cidr: "fd00:10:96::/108" } }),
    facts({ instance: { ...facts().instance, ipv6: undefined } }),
  );
  assert.equal(noV6.ok, false);
});

// ---- flags and environment ----

test("environment: berth flags sorted, user flags last in order, no pod-infra-container-image", () => {
  const flags = ["--v=5", "--node-labels=foo=bar,foo2=baz", "--register-with-taints=foo=bar:NoSchedule"];
  const r = renderKubelet(spec({ kubelet: { flags } }), facts());
  assert.ok(r.ok);
  const env = envOf(r.value);
  assert.equal(
    env,
    "NODEADM_KUBELET_ARGS=--cloud-provider=external --config=/etc/kubernetes/kubelet/config.json " +
      "--hostname-override=ip-172-16-34-43.ec2.internal --image-credential-provider-bin-dir=/etc/eks/image-credential-provider " +
      "--image-credential-provider-config=/etc/eks/image-credential-provider/config.json --kubeconfig=/var/lib/kubelet/kubeconfig " +
      "--node-ip=172.16.34.43 --runtime-cgroups=/runtime.slice/containerd.service " +
      flags.join(" "),
  );
  assert.doesNotMatch(env, /pod-infra-container-image/);
  const withId = renderKubelet(
    spec({ featureGates: { InstanceIdNodeName: true } }),
    facts({ instance: { ...facts().instance, privateDnsName: undefined } }),
  );
  assert.ok(withId.ok);
  assert.match(envOf(withId.value), /--hostname-override=i-1234567890abcdef0 /);
  const noName = renderKubelet(spec(), facts({ instance: { ...facts().instance, privateDnsName: undefined } }));
  assert.equal(noName.ok, false);
  const nl = renderKubelet(spec({ kubelet: { flags: ["--v=2\nEVIL=1"] } }), facts());
  assert.equal(nl.ok, false);
  if (!nl.ok) assert.equal(nl.errors[0]?.where?.path, "spec.kubelet.flags[0]");
});

test("GPU label from 1.35, SOCI image service when asked", () => {
  const r = renderKubelet(spec(), facts(), { nvidiaGpuPresent: true, sociImageService: true });
  assert.ok(r.ok);
  assert.match(envOf(r.value), /--node-labels=nvidia\.com\/gpu\.present=true /);
  assert.equal(configOf(r.value).imageServiceEndpoint, "unix:///run/soci-snapshotter-grpc/soci-snapshotter-grpc.sock");
  const old = renderKubelet(spec(), facts({ kubeletVersion: "1.34.2" }), { nvidiaGpuPresent: true });
  assert.ok(old.ok);
  assert.doesNotMatch(envOf(old.value), /node-labels/);
});

// ---- version toggles ----

test("version toggles: QPS < 1.27, drop-in ≥ 1.29 (alpha env < 1.30), DRA ≥ 1.33, shutdown ≥ 1.34", () => {
  const user = spec({ kubelet: { config: { logging: { verbosity: 5 } } } });
  const at = (v: string) => {
    const r = renderKubelet(user, facts({ kubeletVersion: v }));
    assert.ok(r.ok, v);
    return r.value;
  };
  const v126 = at("1.26.4");
  assert.equal(configOf(v126).kubeAPIQPS, 10);
  assert.equal((configOf(v126).logging as JsonObject).verbosity, 5, "merged below 1.29");
  assert.ok(!v126.some((f) => f.path.endsWith("40-nodeadm.conf")));
  assert.match(envOf(v126), /--container-runtime-endpoint=unix:\/\/\/run\/containerd\/containerd\.sock/);
  const v129 = at("1.29.0");
  assert.equal(configOf(v129).kubeAPIQPS, undefined);
  assert.equal((configOf(v129).logging as JsonObject).verbosity, 2);
  assert.match(envOf(v129), /^KUBELET_CONFIG_DROPIN_DIR_ALPHA=on\nNODEADM_KUBELET_ARGS=.*--config-dir=/);
  assert.doesNotMatch(envOf(at("1.30.0")), /ALPHA/);
  assert.equal((configOf(at("1.32.9")).featureGates as JsonObject).DynamicResourceAllocation, undefined);
  assert.equal((configOf(at("1.33.0")).featureGates as JsonObject).DynamicResourceAllocation, true);
  assert.equal(configOf(at("1.33.0")).shutdownGracePeriod, undefined);
  assert.equal(configOf(at("1.34.0-eks-abc")).shutdownGracePeriod, "2m30s");
  // No user config: no drop-in and no --config-dir.
  const none = renderKubelet(spec(), facts());
  assert.ok(none.ok);
  assert.ok(!none.value.some((f) => f.path.endsWith("40-nodeadm.conf")));
  assert.doesNotMatch(envOf(none.value), /config-dir/);
});

// ---- kubeconfig, CA, outposts ----

test("kubeconfig: nodeadm's template bytes; odd values are quoted safely", () => {
  const y = kubeconfigYaml({ clusterName: 'we"ird: #name', region: "us-west-2", apiServerEndpoint: "https://x.example.com:443/a b" });
  const parsed = parseYaml(y) as { users: { user: { exec: { args: string[] } } }[]; clusters: { cluster: { server: string } }[] };
  assert.equal(parsed.users[0]?.user.exec.args[3], 'we"ird: #name');
  assert.equal(parsed.clusters[0]?.cluster.server, "https://x.example.com:443/a b");
  for (const server of ["https://x:", "true", "https://x #y", "https://a.b:443/%20"]) {
    const p = parseYaml(kubeconfigYaml({ clusterName: "c", region: "r", apiServerEndpoint: server })) as typeof parsed;
    assert.equal(p.clusters[0]?.cluster.server, server);
  }
});

test("outposts: bootstrap kubeconfig named by cluster id, plus the flag; id required", () => {
  const r = renderKubelet(spec({ cluster: { enableOutpost: true, id: "abcd-1234" } }), facts());
  assert.ok(r.ok);
  const kc = fileText(r.value, "/var/lib/kubelet/bootstrap-kubeconfig");
  assert.match(kc, /- "abcd-1234"/);
  assert.equal(r.value.find((f) => f.path === "/var/lib/kubelet/bootstrap-kubeconfig")?.mode, 0o600);
  assert.match(
    envOf(r.value),
    /--bootstrap-kubeconfig=\/var\/lib\/kubelet\/bootstrap-kubeconfig .*--kubeconfig=\/var\/lib\/kubelet\/kubeconfig/,
  );
  const noId = renderKubelet(spec({ cluster: { enableOutpost: true } }), facts());
  assert.equal(noId.ok, false);
  if (!noId.ok) assert.equal(noId.errors[0]?.where?.path, "spec.cluster.id");
});

test("CA: strict base64; every missing cluster field is reported at once", () => {
  assert.deepEqual(decodeCertificateAuthority("Y2E="), { ok: true, value: new Uint8Array(Buffer.from("ca")) });
  assert.equal(decodeCertificateAuthority("not base64!").ok, false);
  const r = renderKubelet({ cluster: {} }, facts());
  assert.equal(r.ok, false);
  if (!r.ok) {
    const paths = r.errors.map((e) => e.where?.path).sort();
    assert.deepEqual(paths, [
      "spec.cluster.apiServerEndpoint",
      "spec.cluster.certificateAuthority",
      "spec.cluster.cidr",
      "spec.cluster.name",
    ]);
    for (const e of r.errors) assert.ok(e.hint, e.message);
  }
});

// ---- merge and determinism ----

const jsonObj = fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 6 }) as fc.Arbitrary<JsonObject>;

test("deepMerge: over wins at leaves, base keys survive, idempotent (property)", () => {
  fc.assert(
    fc.property(jsonObj, jsonObj, (a, b) => {
      const m = mergeKubeletConfig(a, b);
      for (const k of Object.keys(a)) assert.ok(k in m);
      assert.deepEqual(mergeKubeletConfig(m, b), m);
      for (const [k, v] of Object.entries(b)) if (typeof v !== "object" || v === null || Array.isArray(v)) assert.deepEqual(m[k], v);
    }),
  );
});

test("stableJson is insensitive to key order (property)", () => {
  fc.assert(
    fc.property(jsonObj, (o) => {
      const reversed: JsonObject = Object.fromEntries(Object.entries(o).reverse());
      assert.equal(stableJson(o), stableJson(reversed));
      assert.deepEqual(JSON.parse(stableJson(o)), JSON.parse(JSON.stringify(o)));
    }),
  );
});

test("renderKubelet is deterministic for arbitrary user flags and config (property)", () => {
  fc.assert(
    fc.property(
      fc.array(
        // eslint-disable-next-line no-control-regex
        fc.string({ unit: "grapheme-ascii" }).filter((s) => !/[\x00-\x1f\x7f]/.test(s)),
        { maxLength: 4 },
      ),
      jsonObj,
      (flags, config) => {
        const s = spec({ kubelet: { flags, config } });
        const a = renderKubelet(s, facts());
        const b = renderKubelet(structuredClone(s), facts());
        assert.deepEqual(a, b);
        if (a.ok) assert.ok(envOf(a.value).endsWith(flags.length ? ` ${flags.join(" ")}` : "/runtime.slice/containerd.service"));
      },
    ),
    { numRuns: 50 },
  );
});
