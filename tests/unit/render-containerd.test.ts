import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";

import type { NodeConfigSpec } from "../../src/api/types.ts";
import type { NodeFacts } from "../../src/facts/types.ts";
import { renderContainerd, renderContainerdConfig, translateV2ToV3 } from "../../src/render/containerd.ts";
import { defaultBaseRuntimeSpec, renderBaseRuntimeSpec } from "../../src/render/base-runtime-spec.ts";
import { isTomlTable, parseToml, stringifyToml } from "../../src/util/toml.ts";
import type { TomlTable } from "../../src/util/toml.ts";
import { conformanceFacts } from "../fixtures/node.ts";
import { BASE_RUNTIME_SPEC_PATH } from "../../src/util/node-layout.ts";

const CASES = join(import.meta.dirname, "../../../shared/conformance/nodeadm-e2e/cases");
const caseFile = (c: string, f: string): string => readFileSync(join(CASES, c, f), "utf8");

function specOf(c: string, f: string): NodeConfigSpec {
  const doc = parseYaml(caseFile(c, f)) as { spec: NodeConfigSpec };
  return doc.spec;
}

/** The conformance node (README): m4.xlarge in us-west-2f, 2 CPUs, kubelet 1.32.0. */
function facts(over: Partial<NodeFacts>): NodeFacts {
  return conformanceFacts({ kubeletVersion: "1.32.0", ...over });
}

function tomlOf(text: string): TomlTable {
  const r = parseToml(text);
  if (!r.ok) throw new Error(`bad TOML: ${r.message}`);
  return r.value;
}

function configText(spec: NodeConfigSpec, f: NodeFacts): string {
  const r = renderContainerdConfig(spec, f);
  if (!r.ok) throw new Error(r.errors.map((e) => e.message).join("; "));
  assert.equal(r.value.path, "/etc/containerd/config.toml");
  assert.equal(r.value.mode, 0o644);
  return r.value.content as string;
}

// [case, config, expected, facts] — `toml` steps of cases.yaml.
const TOML_STEPS: [string, string, string, Partial<NodeFacts>][] = [
  ["containerdv1-config", "configv2.yaml", "expected-containerd-config-pre-1.32.toml", { kubeletVersion: "1.31.0" }],
  ["containerdv1-config", "configv2.yaml", "expected-containerd-config.toml", { kubeletVersion: "1.32.0" }],
  [
    "containerdv1-runtime-config-nvidia",
    "configv2.yaml",
    "expected-containerd-config.toml",
    { kubeletVersion: "1.27.0", nvidiaRuntime: true },
  ],
  [
    "containerdv1-runtime-config-neuron",
    "configv2.yaml",
    "expected-containerd-config.toml",
    { kubeletVersion: "1.27.0", neuronDevices: true },
  ],
  ["containerdv2-config", "configv3.yaml", "expected-containerd-configv3.toml", { containerdVersion: "2.0.5" }],
  [
    "containerdv2-runtime-config-nvidia",
    "configv3.yaml",
    "expected-containerd-configv3.toml",
    { containerdVersion: "2.0.5", nvidiaRuntime: true },
  ],
  [
    "containerdv2-runtime-config-neuron",
    "configv3.yaml",
    "expected-containerd-configv3.toml",
    { containerdVersion: "2.0.5", neuronDevices: true },
  ],
];

for (const [c, cfg, expected, f] of TOML_STEPS) {
  test(`${c}: ${cfg} renders ${expected} (parsed trees and bytes)`, () => {
    const got = configText(specOf(c, cfg), facts(f));
    const want = caseFile(c, expected);
    assert.deepEqual(tomlOf(got), tomlOf(want));
    // Bonus over the semantic bar: the writer reproduces go-toml's bytes.
    assert.equal(got, want);
  });
}

// `expect: fail` steps: a version-3 config on containerd 1.x.
for (const c of ["containerdv1-config", "containerdv1-runtime-config-nvidia", "containerdv1-runtime-config-neuron"]) {
  test(`${c}: configv3.yaml on containerd 1.7 is an error that says what and what to do`, () => {
    const r = renderContainerd(specOf(c, "configv3.yaml"), facts({ containerdVersion: "1.7.27", nvidiaRuntime: c.includes("nvidia") }));
    assert.equal(r.ok, false);
    if (r.ok) return;
    const e = r.errors[0]!;
    assert.equal(e.where?.path, "spec.containerd.config");
    assert.match(e.message, /version 3/);
    assert.match(e.message, /io\.containerd\.cri\.v1\.images/);
    assert.match(e.message, /version = 3/);
    assert.match(e.message, /1\.7\.27/);
    assert.match(e.hint ?? "", /version = 2/);
  });
}

/** Every leaf of `sub` is in `full` with the same value. */
function assertSubset(sub: TomlTable, full: TomlTable, path: string[] = []): void {
  for (const [k, v] of Object.entries(sub)) {
    const here = [...path, k];
    const other = full[k];
    if (isTomlTable(v)) {
      assert.ok(isTomlTable(other), `${here.join(".")} is a table in the migrated file`);
      assertSubset(v, other, here);
    } else {
      assert.deepEqual(other, v, here.join("."));
    }
  }
}

// nodeadm pipes configv2.yaml through `containerd config migrate`; berth translates the
// v2 keys itself. Everything berth writes must equal what migrate wrote.
for (const [c, nvidia] of [
  ["containerdv2-config", false],
  ["containerdv2-runtime-config-neuron", false],
] as const) {
  test(`${c}: a version 2 config on containerd 2.0.5 is translated; every value equals containerd's migrated file`, () => {
    const got = tomlOf(configText(specOf(c, "configv2.yaml"), facts({ containerdVersion: "2.0.5", nvidiaRuntime: nvidia })));
    const migrated = tomlOf(caseFile(c, "expected-containerd-configv2.toml"));
    assert.equal(got.version, 3n);
    assertSubset(got, migrated);
    const images = (got.plugins as TomlTable)["io.containerd.cri.v1.images"] as TomlTable;
    assert.deepEqual(images.pinned_images, { sandbox: "registry.k8s.io/pause:3.10" });
    assert.equal(images.discard_unpacked_layers, false);
    assert.equal((got.plugins as TomlTable)["io.containerd.grpc.v1.cri"], undefined, "no v2 CRI table left behind");
  });
}

test("translateV2ToV3 moves server, image, runtime and runtime-entry keys and rejects what has no home", () => {
  const v2 = tomlOf(`version = 2
[plugins."io.containerd.grpc.v1.cri"]
stream_server_port = "10010"
max_concurrent_downloads = 5
restrict_oom_score_adj = true
[plugins."io.containerd.grpc.v1.cri".containerd]
snapshotter = "overlayfs"
default_runtime_name = "crun"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun]
runtime_type = "io.containerd.runc.v2"
sandbox_mode = "podsandbox"
[plugins."io.containerd.grpc.v1.cri".registry]
config_path = "/x"
[plugins."io.containerd.gc.v1.scheduler"]
pause_threshold = 0.02
`);
  const r = translateV2ToV3(v2);
  assert.ok(r.ok);
  if (!r.ok) return;
  assert.deepEqual(r.value, {
    version: 3n,
    plugins: {
      "io.containerd.grpc.v1.cri": { stream_server_port: "10010" },
      "io.containerd.cri.v1.images": { max_concurrent_downloads: 5n, snapshotter: "overlayfs", registry: { config_path: "/x" } },
      "io.containerd.cri.v1.runtime": {
        restrict_oom_score_adj: true,
        containerd: {
          default_runtime_name: "crun",
          runtimes: { crun: { runtime_type: "io.containerd.runc.v2", sandboxer: "podsandbox" } },
        },
      },
      "io.containerd.gc.v1.scheduler": { pause_threshold: 0.02 },
    },
  });

  const bad = translateV2ToV3(tomlOf(`version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nsystemd_cgroup = true\n`));
  assert.equal(bad.ok, false);
  if (!bad.ok) {
    assert.match(bad.errors[0]!.message, /systemd_cgroup/);
    assert.equal(bad.errors[0]!.where?.path, "spec.containerd.config");
    assert.match(bad.errors[0]!.hint ?? "", /version = 3/);
  }
});

test("a user config that mixes schemas is rejected on either containerd", () => {
  const spec: NodeConfigSpec = {
    containerd: { config: `version = 2\n[plugins.'io.containerd.cri.v1.images']\ndiscard_unpacked_layers = false\n` },
  };
  for (const containerdVersion of ["1.7.27", "2.0.5"]) {
    const r = renderContainerdConfig(spec, facts({ containerdVersion }));
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.errors[0]!.message, /mixes/);
  }
});

test("invalid TOML is an error with its line and column inside spec.containerd.config", () => {
  const r = renderContainerdConfig({ containerd: { config: "version = 2\n[grpc\naddress = 1\n" } }, facts({}));
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.equal(r.errors[0]!.code, "containerd.config-invalid-toml");
  assert.match(r.errors[0]!.message, /line 2/);
});

test("an unparsable containerd version is an error, not a guess", () => {
  const r = renderContainerdConfig({}, facts({ containerdVersion: "unknown" }));
  assert.equal(r.ok, false);
});

test("defaults: no user config, sandbox image default, schema by containerd major version", () => {
  const v2 = tomlOf(configText({}, facts({ containerdVersion: "1.7.27", kubeletVersion: "1.35.0-eks-5e0fdde" })));
  const cri = (v2.plugins as TomlTable)["io.containerd.grpc.v1.cri"] as TomlTable;
  assert.equal(v2.version, 2n);
  assert.equal(cri.sandbox_image, "localhost/kubernetes/pause:latest");
  assert.equal(cri.enable_cdi, true);
  assert.equal((v2.grpc as TomlTable).address, "/run/containerd/containerd.sock");
  const v3 = tomlOf(configText({}, facts({ containerdVersion: "2.1.0" })));
  assert.equal(v3.version, 3n);
  const images = (v3.plugins as TomlTable)["io.containerd.cri.v1.images"] as TomlTable;
  assert.deepEqual(images.pinned_images, { sandbox: "localhost/kubernetes/pause:latest" });
});

test("user values win, tables merge, arrays replace; output is deterministic", () => {
  const spec: NodeConfigSpec = {
    containerd: {
      config: `[plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "registry.k8s.io/pause:3.10"
restrict_oom_score_adj = true
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
NoNewKeyring = true
`,
    },
  };
  const a = configText(spec, facts({}));
  assert.equal(a, configText(structuredClone(spec), facts({})));
  const t = tomlOf(a);
  const cri = (t.plugins as TomlTable)["io.containerd.grpc.v1.cri"] as TomlTable;
  assert.equal(cri.sandbox_image, "registry.k8s.io/pause:3.10");
  assert.equal(cri.restrict_oom_score_adj, true);
  const opts = (((cri.containerd as TomlTable).runtimes as TomlTable).runc as TomlTable).options as TomlTable;
  assert.deepEqual(opts, { BinaryName: "/usr/sbin/runc", NoNewKeyring: true, SystemdCgroup: true });
});

test("TOML writer round-trips floats, big integers, arrays of tables and odd keys", () => {
  const src = tomlOf(`f = 1.0\ng = 0.02\nbig = 9007199254740993\ns = "it's"\n"a b" = 1\n[[t]]\nq = 1\n[[t]]\nq = 2\n`);
  const out = stringifyToml(src);
  assert.deepEqual(tomlOf(out), src);
  assert.match(out, /^f = 1\.0$/m);
  assert.match(out, /^s = "it's"$/m);
  assert.match(out, /^'a b' = 1$/m);
});

test("containerd-base-runtime-spec: exact bytes of the merged spec", () => {
  const file = renderBaseRuntimeSpec(specOf("containerd-base-runtime-spec", "config.yaml"));
  assert.equal(file.path, BASE_RUNTIME_SPEC_PATH);
  assert.equal(file.content, caseFile("containerd-base-runtime-spec", "expected-base-runtime-spec.json"));
});

test("base runtime spec: default without a fragment; null removes a default key", () => {
  const plain = renderBaseRuntimeSpec({});
  assert.deepEqual(JSON.parse(plain.content as string), defaultBaseRuntimeSpec());
  assert.ok((plain.content as string).startsWith('{\n  "linux": {'));
  // The expected merged file is the default plus the case's fragment.
  const expected = JSON.parse(caseFile("containerd-base-runtime-spec", "expected-base-runtime-spec.json")) as Record<string, unknown>;
  const def = defaultBaseRuntimeSpec() as Record<string, Record<string, unknown>>;
  assert.deepEqual(expected.linux, def.linux);
  assert.deepEqual(expected.mounts, def.mounts);
  const removed = JSON.parse(
    renderBaseRuntimeSpec({ containerd: { baseRuntimeSpec: { process: { rlimits: null } } } }).content as string,
  ) as {
    process: Record<string, unknown>;
  };
  assert.equal(removed.process.rlimits, undefined);
  assert.equal(removed.process.cwd, "/");
});

test("renderContainerd returns config.toml then base-runtime-spec.json", () => {
  const r = renderContainerd({}, facts({}));
  assert.ok(r.ok);
  if (r.ok)
    assert.deepEqual(
      r.value.map((f) => f.path),
      ["/etc/containerd/config.toml", "/etc/containerd/base-runtime-spec.json"],
    );
});
