import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import fc from "fast-check";
import { decodeDocuments } from "../../src/api/decode.ts";
import { DECODE_LIMITS } from "../../src/api/yaml-limits.ts";
import { configLocator, locateErrors, parsePath } from "../../src/api/locate.ts";
import { suggest, editDistance } from "../../src/api/suggest.ts";
import type { BerthError } from "../../src/util/result.ts";

const CASES = "/work/shared/conformance/nodeadm-e2e/cases";
const SRC = "file:///etc/eks/nodeadm.d/test.yaml";

function configFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...configFiles(p));
    else if (/^config.*\.yaml$/.test(name)) out.push(p);
  }
  return out;
}

/** The NodeConfig parts of a MIME multipart user-data file (MIME itself is another module's job). */
function mimeParts(text: string): string[] {
  const m = /boundary="([^"]+)"/.exec(text);
  assert.ok(m, "MIME boundary");
  return text
    .split(`--${m[1]}`)
    .slice(1)
    .filter((p) => /Content-Type: application\/node\.eks\.aws/.test(p))
    .map((p) => p.slice(p.indexOf("\n\n") + 2));
}

function errorsOf(text: string): BerthError[] {
  const r = decodeDocuments(text, SRC);
  assert.equal(r.ok, false, "expected a decoding failure");
  return r.ok ? [] : r.errors;
}

function only(text: string): BerthError {
  const e = errorsOf(text);
  assert.equal(e.length, 1, JSON.stringify(e, null, 1));
  return e[0]!;
}

const HEAD = "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n";

test("every conformance config decodes, except config-bad.yaml", () => {
  const files = configFiles(CASES);
  assert.ok(files.length >= 30, `found ${files.length} config files`);
  for (const f of files) {
    const text = readFileSync(f, "utf8");
    const name = relative(CASES, f);
    const texts = text.startsWith("MIME-Version:") ? mimeParts(text) : [text];
    for (const t of texts) {
      const r = decodeDocuments(t, `file://${f}`);
      if (name === "config-check/config-bad.yaml") {
        assert.equal(r.ok, false, name);
        continue;
      }
      assert.ok(r.ok, `${name}: ${r.ok ? "" : JSON.stringify(r.errors, null, 1)}`);
      assert.ok(r.value.length >= 1, name);
      for (const d of r.value) assert.equal(d.kind, "NodeConfig");
    }
  }
});

test("config-bad.yaml: misspelled key is an unknown field with a suggestion", () => {
  const f = join(CASES, "config-check/config-bad.yaml");
  const r = decodeDocuments(readFileSync(f, "utf8"), "file://config-bad.yaml");
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.deepEqual(
    r.errors.map((e) => [e.code, e.message, e.where]),
    [
      [
        "config.unknown-field",
        "unknown field `name-not-real`; did you mean `name`?",
        { source: "file://config-bad.yaml", line: 6, column: 5, path: "spec.cluster.name-not-real" },
      ],
    ],
  );
  assert.match(r.errors[0]!.hint ?? "", /fields allowed in spec\.cluster: name, apiServerEndpoint/);
});

test("JSON-style kubelet.config decodes to a free-form object", () => {
  const r = decodeDocuments(readFileSync(join(CASES, "kubelet-config-dir/config.kubelet-config-json.yaml"), "utf8"), SRC);
  assert.ok(r.ok);
  const d = r.value[0]!;
  assert.equal(d.kind, "NodeConfig");
  if (d.kind === "NodeConfig") assert.deepEqual(d.spec.kubelet?.config, { logging: { verbosity: 5 }, clusterDNS: ["0.0.0.0", "1.1.1.1"] });
});

test("plain JSON documents (with tabs) decode", () => {
  const r = decodeDocuments(
    '{\n\t"apiVersion": "node.eks.aws/v1alpha1",\n\t"kind": "NodeConfig",\n\t"spec": {"cluster": {"name": "c"}}\n}\n',
    SRC,
  );
  assert.ok(r.ok, JSON.stringify(r));
  assert.deepEqual(r.value, [{ kind: "NodeConfig", source: SRC, spec: { cluster: { name: "c" } } }]);
});

test("empty documents are skipped; several documents keep their order", () => {
  const r = decodeDocuments(
    `---\n# only a comment\n---\n${HEAD}  cluster: {name: a}\n---\n---\napiVersion: berth.dev/v1alpha1\nkind: BerthConfig\nspec:\n  rebootAfterBootstrap: true\n`,
    SRC,
  );
  assert.ok(r.ok);
  assert.deepEqual(
    r.value.map((d) => d.kind),
    ["NodeConfig", "BerthConfig"],
  );
  const e = decodeDocuments("", SRC);
  assert.deepEqual(e, { ok: true, value: [] });
});

test("metadata and a missing spec are allowed", () => {
  const r = decodeDocuments(
    "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nmetadata:\n  name: x\n  labels: {a: b}\n  extra: 1\n",
    SRC,
  );
  assert.ok(r.ok);
  assert.deepEqual(r.value, [{ kind: "NodeConfig", source: SRC, spec: {} }]);
});

test("null fields count as absent, as in Kubernetes; free-form nulls are kept", () => {
  const r = decodeDocuments(
    `${HEAD}  cluster:\n    name: ~\n  kubelet:\n  containerd:\n    baseRuntimeSpec: {a: null}\n  instance:\n    environment:\n      default:\n        FOO:\n`,
    SRC,
  );
  assert.ok(r.ok, JSON.stringify(r));
  assert.deepEqual(r.value[0]!.spec, {
    cluster: {},
    containerd: { baseRuntimeSpec: { a: null } },
    instance: { environment: { default: { FOO: "" } } },
  });
});

test("YAML 1.1 semantics as Kubernetes' YAML reader sees them", () => {
  const r = decodeDocuments(
    `${HEAD}  featureGates:\n    InstanceIdNodeName: yes\n    FastImagePull: off\n  cluster:\n    enableOutpost: on\n  instance:\n    environment:\n      on:\n        A: "1"\n  kubelet:\n    config:\n      maxPods: 010\n      date: 2024-01-02\n`,
    SRC,
  );
  assert.ok(r.ok, JSON.stringify(r));
  const d = r.value[0]!;
  assert.ok(d.kind === "NodeConfig");
  assert.deepEqual(d.spec.featureGates, { InstanceIdNodeName: true, FastImagePull: false });
  assert.equal(d.spec.cluster?.enableOutpost, true);
  assert.deepEqual(d.spec.instance?.environment, { true: { A: "1" } });
  // octal, as go-yaml v2 reads it; timestamps stay strings.
  assert.deepEqual(d.spec.kubelet?.config, { maxPods: 8, date: "2024-01-02" });
});

// ---------------------------------------------------------------- exact error messages

test("unknown field with a suggestion", () => {
  const e = only(`${HEAD}  cluster:\n    nmae: my-cluster\n`);
  assert.equal(e.code, "config.unknown-field");
  assert.equal(e.message, "unknown field `nmae`; did you mean `name`?");
  assert.deepEqual(e.where, { source: SRC, line: 5, column: 5, path: "spec.cluster.nmae" });
  assert.equal(e.hint, "fields allowed in spec.cluster: name, apiServerEndpoint, certificateAuthority, cidr, enableOutpost, id");
});

test("unknown field without a near miss", () => {
  const e = only(`${HEAD}  wibble: 1\n`);
  assert.equal(e.message, "unknown field `wibble`");
  assert.deepEqual(e.where, { source: SRC, line: 4, column: 3, path: "spec.wibble" });
});

test("unknown top-level field", () => {
  const e = only(`${HEAD}  cluster: {}\nspce: {}\n`);
  assert.equal(e.message, "unknown field `spce`; did you mean `spec`?");
  assert.deepEqual(e.where, { source: SRC, line: 5, column: 1, path: "spce" });
});

test("wrong type, with the YAML 1.1 quoting hint", () => {
  const e = only(`${HEAD}  cluster:\n    name: yes\n`);
  assert.equal(e.code, "config.wrong-type");
  assert.equal(e.message, "wrong type: expected a string, got the boolean true");
  assert.deepEqual(e.where, { source: SRC, line: 5, column: 11, path: "spec.cluster.name" });
  assert.match(e.hint ?? "", /^quote the value \("yes"\): YAML 1\.1 reads/);
  const e2 = only(`${HEAD}  kubelet:\n    flags: --v=2\n`);
  assert.equal(e2.message, 'wrong type: expected a list, got the string "--v=2"');
  assert.deepEqual(e2.where, { source: SRC, line: 5, column: 12, path: "spec.kubelet.flags" });
});

test("bad CIDR", () => {
  const e = only(`${HEAD}  cluster:\n    cidr: 10.100.0.0/33\n`);
  assert.equal(e.code, "config.invalid-cidr");
  assert.equal(e.message, '"10.100.0.0/33" is not a valid IPv4 or IPv6 CIDR');
  assert.deepEqual(e.where, { source: SRC, line: 5, column: 11, path: "spec.cluster.cidr" });
  assert.ok(decodeDocuments(`${HEAD}  cluster:\n    cidr: fd00:10::/108\n`, SRC).ok);
});

test("bad URL", () => {
  const e = only(`${HEAD}  cluster:\n    apiServerEndpoint: example.com\n`);
  assert.equal(e.code, "config.invalid-url");
  assert.equal(e.message, '"example.com" is not a valid http(s) URL for apiServerEndpoint');
  assert.deepEqual(e.where, { source: SRC, line: 5, column: 24, path: "spec.cluster.apiServerEndpoint" });
});

test("bad base64, and a raw PEM gets a specific hint", () => {
  const e = only(`${HEAD}  cluster:\n    certificateAuthority: not*base64\n`);
  assert.equal(e.code, "config.invalid-base64");
  assert.equal(e.message, "certificateAuthority is not valid base64");
  assert.deepEqual(e.where, { source: SRC, line: 5, column: 27, path: "spec.cluster.certificateAuthority" });
  const pem = only(`${HEAD}  cluster:\n    certificateAuthority: |\n      -----BEGIN CERTIFICATE-----\n      MIIB\n`);
  assert.match(pem.hint ?? "", /raw PEM/);
});

test("bad enum value, with the allowed values and a suggestion", () => {
  const e = only(`${HEAD}  instance:\n    localStorage:\n      strategy: raid0\n`);
  assert.equal(e.code, "config.invalid-enum");
  assert.equal(e.message, 'invalid value "raid0"; allowed values: RAID0, RAID10, Mount; did you mean `RAID0`?');
  assert.deepEqual(e.where, { source: SRC, line: 6, column: 17, path: "spec.instance.localStorage.strategy" });
  const d = only(`${HEAD}  instance:\n    localStorage:\n      disabledMounts: [Containerd, Logs]\n`);
  assert.equal(d.message, 'invalid value "Logs"; allowed values: Containerd, PodLogs, SOCI; did you mean `PodLogs`?');
  assert.equal(d.where?.path, "spec.instance.localStorage.disabledMounts[1]");
  const g = only(`${HEAD}  featureGates:\n    FastImagePul: true\n`);
  assert.equal(g.code, "config.unknown-feature-gate");
  assert.equal(g.message, "unknown feature gate `FastImagePul`; did you mean `FastImagePull`?");
  assert.equal(g.hint, "known feature gates: InstanceIdNodeName, FastImagePull");
});

test("bad TOML: the TOML error is mapped to the YAML line", () => {
  const e = only(`${HEAD}  containerd:\n    config: |\n      version = 2\n      [grpc\n      address = "x"\n`);
  assert.equal(e.code, "config.invalid-toml");
  assert.equal(e.message, "containerd.config is not valid TOML (TOML line 2, column 6): illegal character in key");
  assert.deepEqual(e.where, { source: SRC, line: 7, column: 12, path: "spec.containerd.config" });
  const blank = only(`${HEAD}  containerd:\n    config: |\n\n        version = 2\n        x = \n`);
  assert.deepEqual(blank.where, { source: SRC, line: 8, column: 13, path: "spec.containerd.config" });
  // A quoted string cannot be mapped line by line: point at the string.
  const q = only(`${HEAD}  containerd:\n    config: "a = = 1"\n`);
  assert.deepEqual(q.where, { source: SRC, line: 5, column: 13, path: "spec.containerd.config" });
});

test("duplicate key", () => {
  const e = only(`${HEAD}  cluster:\n    name: a\n    name: b\n`);
  assert.equal(e.code, "config.duplicate-key");
  assert.equal(e.message, "duplicate key `name` in the same map");
  assert.deepEqual(e.where, { source: SRC, line: 6, column: 5, path: "spec.cluster.name" });
  assert.equal(only(`${HEAD}  cluster:\n    name: a\n    "name": b\n`).message, "duplicate key `name` in the same map");
});

test("wrong apiVersion or kind", () => {
  const e = only("apiVersion: node.eks.aws/v1\nkind: NodeConfig\n");
  assert.equal(e.code, "config.unknown-kind");
  assert.equal(e.message, 'unsupported document type apiVersion "node.eks.aws/v1", kind "NodeConfig"');
  assert.deepEqual(e.where, { source: SRC, line: 1, column: 13, path: "apiVersion" });
  assert.equal(e.hint, "berth accepts node.eks.aws/v1alpha1 NodeConfig or berth.dev/v1alpha1 BerthConfig");
  const k = only("apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfg\n");
  assert.deepEqual(k.where, { source: SRC, line: 2, column: 7, path: "kind" });
  const m = only("spec: {}\n");
  assert.equal(m.code, "config.missing-kind");
  assert.equal(m.message, "document 1 has no apiVersion or kind");
  const s = only("- a\n- b\n");
  assert.equal(s.code, "config.not-a-map");
});

test("YAML syntax error", () => {
  const e = only(`${HEAD}  cluster:\n\tname: a\n`);
  assert.equal(e.code, "config.yaml-syntax");
  assert.equal(e.message, "YAML syntax error: Tabs are not allowed as indentation");
  assert.deepEqual(e.where, { source: SRC, line: 5, column: 1 });
  // An unclosed flow list is noticed where the input ends.
  const u = only(`${HEAD}  cluster:\n    name: [a, b\n`);
  assert.equal(u.message, "YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ]");
  assert.deepEqual(u.where, { source: SRC, line: 6, column: 1 });
});

test("kubelet flags, nameservers, well-known kubelet config fields", () => {
  const errs = errorsOf(
    `${HEAD}  kubelet:\n    flags: [--v=2, node-labels=a]\n    config:\n      maxPods: 0\n      clusterDNS: [10.100.0.10, dns]\n  instance:\n    network:\n      nameservers: [1.1.1.1, resolver]\n`,
  );
  assert.deepEqual(
    errs.map((e) => [e.where?.line, e.where?.column, e.where?.path, e.message]),
    [
      [5, 20, "spec.kubelet.flags[1]", 'kubelet flag "node-labels=a" must start with "--"'],
      [7, 16, "spec.kubelet.config.maxPods", "maxPods must be an integer from 1 to 2147483647, got 0"],
      [8, 33, "spec.kubelet.config.clusterDNS[1]", '"dns" is not an IP address'],
      [11, 30, "spec.instance.network.nameservers[1]", '"resolver" is not an IP address'],
    ],
  );
});

test("all errors in a document are collected, in source order", () => {
  const errs = errorsOf(`${HEAD}  cluster:\n    nmae: a\n    cidr: x\n    apiServerEndpoint: y\n  kubelet:\n    flags: [a]\n`);
  assert.deepEqual(
    errs.map((e) => e.where?.line),
    [5, 6, 7, 9],
  );
});

test("BerthConfig: tasks and agent settings are strict", () => {
  const errs = errorsOf(
    "apiVersion: berth.dev/v1alpha1\nkind: BerthConfig\nspec:\n  tasks:\n  - name: warm\n    pullImages: [public.ecr.aws/a:1]\n  - name: warm\n    script: echo\n  - name: Bad_Name\n    script: x\n    pullImages: [busybox]\n  agent:\n    intervalMs: 10\n    listenAddress: nowhere\n    kubeletHealthzUrl: localhost:10248\n    restartBudget: 1.5\n  run:\n    sandboxImageArchive: pause.tar\n    criReadyTimout: 5\n",
  );
  assert.deepEqual(
    errs.map((e) => [e.where?.line, e.where?.path, e.message]),
    [
      [7, "spec.tasks[1].name", 'task name "warm" is already used by tasks[0]'],
      [9, "spec.tasks[2]", 'task "Bad_Name" has both pullImages and script'],
      [
        9,
        "spec.tasks[2].name",
        "task name must be a DNS label: lower-case letters, digits and '-', 1..63 characters, starting and ending alphanumeric",
      ],
      [13, "spec.agent.intervalMs", "value 10 is out of range: must be >= 100"],
      [14, "spec.agent.listenAddress", '"nowhere" is not a valid host:port listen address'],
      [15, "spec.agent.kubeletHealthzUrl", '"localhost:10248" is not a valid http(s) URL for kubeletHealthzUrl'],
      [16, "spec.agent.restartBudget", "wrong type: expected an integer, got the number 1.5"],
      [18, "spec.run.sandboxImageArchive", "sandboxImageArchive must be an absolute path"],
      [19, "spec.run.criReadyTimout", "unknown field `criReadyTimout`; did you mean `criReadyTimeoutMs`?"],
    ],
  );
  const good = decodeDocuments(
    "apiVersion: berth.dev/v1alpha1\nkind: BerthConfig\nspec:\n  tasks:\n  - name: warm\n    pullImages: [a]\n  agent:\n    listenAddress: '[::1]:9100'\n    kubeletHealthzUrl: http://127.0.0.1:10248/healthz\n",
    SRC,
  );
  assert.ok(good.ok, JSON.stringify(good));
});

test("__proto__ keys are refused", () => {
  const e = only(`${HEAD}  kubelet:\n    config:\n      __proto__: {a: 1}\n`);
  assert.equal(e.code, "config.reserved-key");
  assert.deepEqual(e.where, { source: SRC, line: 6, column: 7, path: "spec.kubelet.config.__proto__" });
});

// ---------------------------------------------------------------- suggest

test("suggest: near misses, prefixes, case/separator folding, no wild guesses", () => {
  const fields = ["name", "apiServerEndpoint", "certificateAuthority", "cidr", "enableOutpost", "id"];
  assert.equal(suggest("nmae", fields), "name");
  assert.equal(suggest("name-not-real", fields), "name");
  assert.equal(suggest("api_server_endpoint", fields), "apiServerEndpoint");
  assert.equal(suggest("certificateAuthorty", fields), "certificateAuthority");
  assert.equal(suggest("wibble", fields), undefined);
  assert.equal(suggest("x", fields), undefined);
  assert.equal(editDistance("ab", "ba"), 1);
  assert.equal(editDistance("kitten", "sitting"), 3);
});

// ---------------------------------------------------------------- never throws

test("decodeDocuments never throws (arbitrary text)", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 200 }), (s) => {
      const r = decodeDocuments(s, SRC);
      assert.equal(typeof r.ok, "boolean");
    }),
    { numRuns: 300 },
  );
});

test("decodeDocuments never throws (arbitrary values under a valid header)", async () => {
  const { stringify } = await import("yaml");
  fc.assert(
    fc.property(
      fc.jsonValue({ maxDepth: 4 }),
      fc.constantFrom("cluster", "kubelet", "containerd", "instance", "featureGates", "x"),
      (v, key) => {
        const text = stringify({ apiVersion: "node.eks.aws/v1alpha1", kind: "NodeConfig", spec: { [key]: v } });
        const r = decodeDocuments(text, SRC);
        if (!r.ok) for (const e of r.errors) assert.ok(e.message.length > 0 && e.where?.source === SRC);
      },
    ),
    { numRuns: 300 },
  );
});

test("decodeDocuments never throws (mutated conformance files)", () => {
  const base = readFileSync(join(CASES, "kubelet-config-dir/config.kubelet-config-json.yaml"), "utf8");
  fc.assert(
    fc.property(fc.nat(base.length), fc.nat(20), fc.string({ maxLength: 5 }), (at, del, ins) => {
      const r = decodeDocuments(base.slice(0, at) + ins + base.slice(at + del), SRC);
      assert.equal(typeof r.ok, "boolean");
    }),
    { numRuns: 300 },
  );
});

// ---------------------------------------------------------------- limits (issue 8)
const CLUSTER_OK = `${HEAD}  cluster:\n    name: c\n`;

test("limits: a source larger than the byte limit is refused before it is parsed", () => {
  const e = only(`${CLUSTER_OK}    id: ${"x".repeat(200)}\n`.padEnd(DECODE_LIMITS.bytes + 1, "#"));
  assert.equal(e.code, "config.too-large");
  assert.equal(
    e.message,
    `the configuration is ${(DECODE_LIMITS.bytes + 1).toLocaleString("en-US")} bytes; berth reads at most 1,048,576 bytes from one source`,
  );
  assert.deepEqual(e.where, { source: SRC });
  assert.ok(e.hint);
  // Multi-byte characters count as the bytes they are.
  assert.equal(decodeDocuments(`${CLUSTER_OK}    id: ${"é".repeat(10)}\n`, SRC, { ...DECODE_LIMITS, bytes: 60 }).ok, false);
});

test("limits: more keys and values than the limit is refused up front, counted without parsing", () => {
  const e = only(`${HEAD}  kubelet:\n    config:\n      a: [${Array(DECODE_LIMITS.values).fill("1").join(",")}]\n`);
  assert.equal(e.code, "config.too-many-values");
  assert.match(e.message, /more than 50,000 keys and values/);
  const small = { ...DECODE_LIMITS, values: 10 };
  assert.equal(decodeDocuments(`${CLUSTER_OK}    id: "a"\n`, SRC, small).ok, true);
  assert.equal(decodeDocuments(`${HEAD}  kubelet:\n    flags: ["--a", '--b', --c, *x, "--d", "--e"]\n`, SRC, small).ok, false);
});

test("limits: nesting deeper than the limit is an error at the first level too deep, in flow and block style", () => {
  const flow = only(`${HEAD}  kubelet:\n    config:\n      a: ${"[".repeat(5000)}${"]".repeat(5000)}\n`);
  assert.equal(flow.code, "config.too-deep");
  assert.equal(flow.message, "maps and lists are nested more than 100 levels deep here");
  assert.deepEqual(flow.where, { source: SRC, line: 6, column: 106 });
  const block = only(`${HEAD}  kubelet:\n    config:\n${Array.from({ length: 200 }, (_, i) => `${" ".repeat(6 + i)}k:\n`).join("")}`);
  assert.equal(block.code, "config.too-deep");
  assert.equal(block.where?.line, 103);
  // 100 levels are fine.
  assert.equal(decodeDocuments(`${HEAD}  kubelet:\n    config:\n      a: ${"[".repeat(96)}${"]".repeat(96)}\n`, SRC).ok, true);
});

test("limits: aliases — a cycle, a missing anchor, a bomb, too many, and nesting through alias chains", () => {
  const cycle = only(`${HEAD}  kubelet:\n    config: &r {self: *r}\n`);
  assert.deepEqual(
    [cycle.code, cycle.where],
    ["config.alias-cycle", { source: SRC, line: 5, column: 23, path: "spec.kubelet.config.self" }],
  );
  assert.equal(only(`${HEAD}  kubelet:\n    config: {a: *nope, b: &nope 1}\n`).code, "config.unknown-alias");
  let bomb = `${HEAD}  kubelet:\n    config:\n      l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n`;
  for (let i = 1; i < 9; i++)
    bomb += `      l${i}: &l${i} [${Array(10)
      .fill(`*l${i - 1}`)
      .join(", ")}]\n`;
  assert.equal(only(bomb).code, "config.too-many-aliases");
  const many = `${HEAD}  kubelet:\n    config:\n      a: &a 1\n      b: [${Array(DECODE_LIMITS.aliases + 1)
    .fill("*a")
    .join(", ")}]\n`;
  assert.equal(only(many).code, "config.too-many-aliases");
  // Each anchored value is shallow (the text nests 6 levels), but every link of the chain nests the previous one a level deeper.
  let chain = `${HEAD}  kubelet:\n    config:\n      c0: &c0 [x]\n`;
  for (let i = 1; i <= 5; i++) chain += `      c${i}: &c${i} [*c${i - 1}]\n`;
  const shallow = { ...DECODE_LIMITS, depth: 8 };
  const deep = decodeDocuments(chain, SRC, shallow);
  assert.ok(!deep.ok);
  if (!deep.ok) {
    assert.equal(deep.errors[0]!.code, "config.too-deep");
    assert.match(deep.errors[0]!.message, /more than 8 levels deep once aliases are expanded/);
    assert.equal(deep.errors[0]!.where?.path, "spec.kubelet.config.c5[0][0][0][0]");
  }
  assert.equal(decodeDocuments(chain.split("      c3")[0]!, SRC, shallow).ok, true);
  // Ordinary anchors and merge keys still work.
  const r = decodeDocuments(
    `${HEAD}  kubelet:\n    config:\n      base: &b {x: 1}\n      more:\n        <<: *b\n        z: 2\n      again: *b\n`,
    SRC,
  );
  assert.ok(r.ok, JSON.stringify(r));
  if (r.ok && r.value[0]!.kind === "NodeConfig")
    assert.deepEqual(r.value[0]!.spec.kubelet?.config, { base: { x: 1 }, more: { x: 1, z: 2 }, again: { x: 1 } });
});

test("limits: 20,000 unknown keys give 20,000 located errors (linear: no key is compared with every other)", () => {
  const lines = [`${HEAD}  kubelet:\n`];
  for (let i = 0; i < 20_000; i++) lines.push(`    k${i}: 1\n`);
  const e = errorsOf(lines.join(""));
  assert.equal(e.length, 20_000);
  assert.deepEqual(e[19_999]!.where, { source: SRC, line: 20_004, column: 5, path: "spec.kubelet.k19999" });
  // Duplicates among thousands of keys, found by the one pass too.
  const dups = errorsOf(`${HEAD}  featureGates:\n${Array.from({ length: 3000 }, (_, i) => `    g${i % 1500}: true\n`).join("")}`).filter(
    (x) => x.code === "config.duplicate-key",
  );
  assert.equal(dups.length, 1500);
});

test("errors found after decoding (merge, render) are located by field path in the documents they came from", () => {
  const a = decodeDocuments(`${HEAD}  kubelet:\n    flags:\n      - --a=1\n      - --b=2\n`, "file:///a.yaml");
  const b = decodeDocuments(`${HEAD}  kubelet:\n    flags: [--c=3]\n  cluster:\n    cidr: 10.0.0.0/16\n`, "file:///b.yaml");
  assert.ok(a.ok && b.ok);
  const locate = configLocator([...a.value, ...b.value]);
  // kubelet.flags append across sources: merged index 2 is b's first flag.
  assert.deepEqual(locate("spec.kubelet.flags[1]"), { source: "file:///a.yaml", line: 7, column: 9, path: "spec.kubelet.flags[1]" });
  assert.deepEqual(locate("spec.kubelet.flags[2]"), { source: "file:///b.yaml", line: 5, column: 13, path: "spec.kubelet.flags[0]" });
  assert.deepEqual(locate("spec.cluster.cidr"), { source: "file:///b.yaml", line: 7, column: 11, path: "spec.cluster.cidr" });
  // A field no source sets: the nearest enclosing one that is set (the later source wins).
  assert.equal(locate("spec.kubelet.config.maxPods")?.source, "file:///b.yaml");
  assert.equal(locate("spec.wibble")?.path, "spec");
  assert.equal(locate("status.x"), undefined);
  assert.deepEqual(parsePath('spec.a-b[3]["x.y"].z'), ["spec", "a-b", 3, "x.y", "z"]);
  assert.equal(parsePath("spec..a"), undefined);
  const [located] = locateErrors([{ code: "x.y", message: "m", where: { path: "spec.cluster.cidr" } }], locate);
  assert.deepEqual(located!.where, { source: "file:///b.yaml", line: 7, column: 11, path: "spec.cluster.cidr" });
});

test("a map or list as a key is an error, as in Kubernetes' YAML-to-JSON step (not a silently stringified key)", () => {
  const e = only(`${HEAD}  kubelet:\n    config:\n      ? {a: 1}\n      : x\n`);
  assert.deepEqual(
    [e.code, e.message, e.where],
    ["config.complex-key", "a map cannot be a key", { source: SRC, line: 6, column: 9, path: "spec.kubelet.config" }],
  );
});
