import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import type { JsonObject, NodeConfigSpec } from "../../src/api/types.ts";
import type { NodeFacts } from "../../src/facts/types.ts";
import type { PlannedFile } from "../../src/plan/types.ts";
import { fastImagePullEnabled, FAST_IMAGE_PULL_MIN } from "../../src/render/fast-image-pull.ts";
import { renderContainerd } from "../../src/render/containerd.ts";
import { renderKubelet } from "../../src/render/kubelet.ts";
import { parseToml, tomlAt, type TomlTable } from "../../src/util/toml.ts";
import { clusterSpec, conformanceFacts } from "../fixtures/node.ts";
import { SOCI_CONFIG_PATH, SOCI_CONTAINERD_DROPIN_PATH } from "../../src/util/node-layout.ts";

const GiB = 1024 ** 3;
const SOCI_SOCK = "unix:///run/soci-snapshotter-grpc/soci-snapshotter-grpc.sock";
/** What nodeadm writes as the SOCI snapshotter's config, as a TOML tree (stated here, not taken from src). */
const NODEADM_SOCI_CONFIG = `debug = false
content_store = { type = "containerd" }
cri_keychain = { enable_keychain = true, image_service_path = "/run/containerd/containerd.sock" }

[pull_modes.parallel_pull_unpack]
enable = true
concurrent_download_chunk_size = "16mb"
discard_unpacked_layers = true
max_concurrent_downloads = -1
max_concurrent_downloads_per_image = 20
max_concurrent_unpacks = -1
max_concurrent_unpacks_per_image = 12
decompress_streams.gzip = { path = "/usr/bin/unpigz", args = ["-d", "-c"] }
`;

/** A node big enough for FastImagePull (c6a.2xlarge-like: 8 CPUs, 16 GiB). */
const facts = (over: Partial<NodeFacts> = {}): NodeFacts =>
  conformanceFacts({ cpus: 8, kubeletVersion: "1.35.0", memoryBytes: 16 * GiB, ...over });
const spec = clusterSpec;
const fast = (over: NodeConfigSpec = {}) => spec({ ...over, featureGates: { FastImagePull: true, ...over.featureGates } });

const text = (f: PlannedFile) => (typeof f.content === "string" ? f.content : Buffer.from(f.content).toString());
const file = (files: PlannedFile[], p: string) => files.find((f) => f.path === p);
const toml = (s: string): TomlTable => {
  const r = parseToml(s);
  assert.ok(r.ok, s);
  return r.value;
};
const at = tomlAt;
function containerdFiles(s: NodeConfigSpec, f: NodeFacts): PlannedFile[] {
  const r = renderContainerd(s, f);
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  return r.value;
}
const configToml = (files: PlannedFile[]) => toml(text(file(files, "/etc/containerd/config.toml")!));
function kubeletConfig(s: NodeConfigSpec, f: NodeFacts, opts = {}): { config: JsonObject; env: string } {
  const r = renderKubelet(s, f, opts);
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  return {
    config: JSON.parse(text(file(r.value, "/etc/kubernetes/kubelet/config.json")!)) as JsonObject,
    env: text(file(r.value, "/etc/eks/kubelet/environment")!),
  };
}

// ---- the decision ----

test("fastImagePullEnabled: gate off by default; on needs >= 4 CPUs and >= 7 GiB", () => {
  assert.deepEqual(FAST_IMAGE_PULL_MIN, { cpus: 4, memoryBytes: 7 * GiB });
  assert.equal(fastImagePullEnabled(spec(), facts()), false);
  assert.equal(fastImagePullEnabled(spec({ featureGates: { FastImagePull: false } }), facts()), false);
  assert.equal(fastImagePullEnabled(spec({ featureGates: { InstanceIdNodeName: true } }), facts()), false);
  assert.equal(fastImagePullEnabled(fast(), facts()), true);
  assert.equal(fastImagePullEnabled(fast(), facts({ cpus: 4, memoryBytes: 7 * GiB })), true);
  assert.equal(fastImagePullEnabled(fast(), facts({ cpus: 3, memoryBytes: 64 * GiB })), false);
  assert.equal(fastImagePullEnabled(fast(), facts({ cpus: 64, memoryBytes: 7 * GiB - 1 })), false);
  // Unknown memory (0) keeps it off.
  assert.equal(fastImagePullEnabled(fast(), facts({ memoryBytes: 0 })), false);
});

test("fastImagePullEnabled: property — exactly gate && cpus >= 4 && memory >= 7 GiB", () => {
  fc.assert(
    fc.property(
      fc.option(fc.boolean(), { nil: undefined }),
      fc.integer({ min: 1, max: 256 }),
      fc.integer({ min: 0, max: 2 ** 42 }),
      (gate, cpus, memoryBytes) => {
        const s = spec(gate === undefined ? {} : { featureGates: { FastImagePull: gate } });
        assert.equal(fastImagePullEnabled(s, { cpus, memoryBytes }), gate === true && cpus >= 4 && memoryBytes >= 7 * GiB);
      },
    ),
  );
});

// ---- containerd ----

test("containerd 1.x (schema 2): soci snapshotter in the CRI plugin, proxy plugin, SOCI config and drop-in", () => {
  const files = containerdFiles(fast(), facts());
  assert.deepEqual(
    files.map((f) => f.path),
    ["/etc/containerd/config.toml", "/etc/containerd/base-runtime-spec.json", SOCI_CONFIG_PATH, SOCI_CONTAINERD_DROPIN_PATH],
  );
  for (const f of files) assert.equal(f.mode, 0o644);
  const cfg = configToml(files);
  assert.equal(cfg.version, 2n);
  const cri = at(cfg, "plugins", "io.containerd.grpc.v1.cri", "containerd") as TomlTable;
  assert.equal(cri.snapshotter, "soci");
  assert.equal(cri.disable_snapshot_annotations, false);
  assert.equal(cri.discard_unpacked_layers, true);
  assert.deepEqual(cfg.proxy_plugins, {
    soci: {
      type: "snapshot",
      address: "/run/soci-snapshotter-grpc/soci-snapshotter-grpc.sock",
      exports: { root: "/var/lib/soci-snapshotter-grpc" },
    },
  });

  // The same tree as nodeadm's internal/containerd/snapshotter/soci-snapshotter.config.toml.
  assert.deepEqual(toml(text(file(files, SOCI_CONFIG_PATH)!)), toml(NODEADM_SOCI_CONFIG));
  assert.equal(
    text(file(files, SOCI_CONTAINERD_DROPIN_PATH)!),
    "[Unit]\nRequires=soci-snapshotter.service\nAfter=soci-snapshotter.service\n",
  );
});

test("containerd 2.x (schema 3): the snapshotter keys live in the images plugin", () => {
  const cfg = configToml(containerdFiles(fast(), facts({ containerdVersion: "2.1.4" })));
  assert.equal(cfg.version, 3n);
  const images = at(cfg, "plugins", "io.containerd.cri.v1.images") as TomlTable;
  assert.equal(images.snapshotter, "soci");
  assert.equal(images.disable_snapshot_annotations, false);
  assert.equal(at(cfg, "plugins", "io.containerd.cri.v1.runtime", "containerd", "snapshotter"), undefined);
  assert.equal(at(cfg, "plugins", "io.containerd.grpc.v1.cri"), undefined);
  assert.equal(at(cfg, "proxy_plugins", "soci", "type"), "snapshot");
  // A version-2 user config on containerd 2.x is translated and merged over the SOCI settings.
  const v2User = containerdFiles(
    fast({ containerd: { config: 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\ndiscard_unpacked_layers = false\n' } }),
    facts({ containerdVersion: "2.0.5" }),
  );
  const merged = at(configToml(v2User), "plugins", "io.containerd.cri.v1.images") as TomlTable;
  assert.equal(merged.snapshotter, "soci");
  assert.equal(merged.discard_unpacked_layers, false);
});

test("containerd: the user's TOML still wins over the SOCI defaults", () => {
  const files = containerdFiles(
    fast({ containerd: { config: 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\nsnapshotter = "overlayfs"\n' } }),
    facts(),
  );
  assert.equal(at(configToml(files), "plugins", "io.containerd.grpc.v1.cri", "containerd", "snapshotter"), "overlayfs");
});

test("containerd: no SOCI anything when the gate is off or the node is small", () => {
  for (const [s, f] of [
    [spec(), facts()],
    [fast(), facts({ cpus: 2 })],
    [fast(), facts({ memoryBytes: 4 * GiB })],
    [fast(), facts({ containerdVersion: "2.0.5", cpus: 3 })],
  ] as const) {
    const files = containerdFiles(s, f);
    assert.deepEqual(
      files.map((x) => x.path),
      ["/etc/containerd/config.toml", "/etc/containerd/base-runtime-spec.json"],
    );
    const t = text(files[0]!);
    assert.doesNotMatch(t, /soci/);
    assert.doesNotMatch(t, /snapshotter|disable_snapshot_annotations|proxy_plugins/);
  }
});

// ---- kubelet ----

test("kubelet: imageServiceEndpoint from the same decision, with no options", () => {
  assert.equal(kubeletConfig(fast(), facts()).config.imageServiceEndpoint, SOCI_SOCK);
  assert.equal(kubeletConfig(spec(), facts()).config.imageServiceEndpoint, undefined);
  assert.equal(kubeletConfig(fast(), facts({ memoryBytes: 6 * GiB })).config.imageServiceEndpoint, undefined);
  // An explicit option still overrides (kept for callers that decided themselves).
  assert.equal(kubeletConfig(spec(), facts(), { sociImageService: true }).config.imageServiceEndpoint, SOCI_SOCK);
  assert.equal(kubeletConfig(fast(), facts(), { sociImageService: false }).config.imageServiceEndpoint, undefined);
});

test("kubelet: nvidia.com/gpu.present=true from facts.nvidiaGpu on kubelet >= 1.35 only", () => {
  assert.match(kubeletConfig(spec(), facts({ nvidiaGpu: true })).env, /--node-labels=nvidia\.com\/gpu\.present=true( |")/);
  assert.match(kubeletConfig(spec(), facts({ nvidiaGpu: true, kubeletVersion: "1.35.0-eks-5e0fdde" })).env, /gpu\.present=true/);
  assert.doesNotMatch(kubeletConfig(spec(), facts({ nvidiaGpu: true, kubeletVersion: "1.34.2" })).env, /node-labels/);
  assert.doesNotMatch(kubeletConfig(spec(), facts({ nvidiaGpu: false })).env, /node-labels/);
  // The runtime binary alone is not a GPU.
  assert.doesNotMatch(kubeletConfig(spec(), facts({ nvidiaRuntime: true })).env, /node-labels/);
  assert.doesNotMatch(kubeletConfig(spec(), facts({ nvidiaGpu: true }), { nvidiaGpuPresent: false }).env, /node-labels/);
});

test("property: containerd pulls through SOCI exactly when the kubelet points at SOCI", () => {
  fc.assert(
    fc.property(
      fc.boolean(),
      fc.integer({ min: 1, max: 16 }),
      fc.constantFrom(0, 4 * GiB, 7 * GiB - 1, 7 * GiB, 16 * GiB),
      fc.constantFrom("1.7.27", "2.0.5"),
      (gate, cpus, memoryBytes, containerdVersion) => {
        const s = spec({ featureGates: { FastImagePull: gate } });
        const f = facts({ cpus, memoryBytes, containerdVersion });
        const files = containerdFiles(s, f);
        const sociContainerd = file(files, SOCI_CONFIG_PATH) !== undefined && /"?soci"?/.test(text(files[0]!));
        const sociKubelet = kubeletConfig(s, f).config.imageServiceEndpoint === SOCI_SOCK;
        assert.equal(sociContainerd, sociKubelet);
        assert.equal(sociKubelet, fastImagePullEnabled(s, f));
      },
    ),
    { numRuns: 60 },
  );
});

test("deterministic: the same input renders the same bytes", () => {
  const a = containerdFiles(fast(), facts({ containerdVersion: "2.0.5" }));
  const b = containerdFiles(fast(), facts({ containerdVersion: "2.0.5" }));
  assert.deepEqual(a.map(text), b.map(text));
});
