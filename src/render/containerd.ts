/**
 * containerd's `/etc/containerd/config.toml` (and, via base-runtime-spec.ts,
 * the base OCI spec), purely from config + facts.
 *
 * Facts taken from nodeadm (not its code):
 * - containerd 1.x reads config schema `version = 2` (CRI plugin
 *   `io.containerd.grpc.v1.cri`); 2.x reads `version = 3` (CRI split into
 *   `io.containerd.cri.v1.images` and `io.containerd.cri.v1.runtime`).
 * - `enable_cdi` is on from kubelet 1.32.0.
 * - default runtime `runc` at `/usr/sbin/runc`; `nvidia` at
 *   `/usr/bin/nvidia-container-runtime` when that binary exists. nodeadm has
 *   no neuron-specific runtime: neuron nodes get the default runtime.
 * - sandbox image `localhost/kubernetes/pause:latest` unless the user sets one.
 * - the user's TOML is deep-merged over the rendered one (tables merge, later
 *   wins, arrays replace), not containerd's section-replacing `imports`.
 *
 * Where berth differs, on purpose:
 * - The user config's schema is read from its parsed structure (`version`
 *   and which CRI plugin tables it has), not by searching the text for a
 *   plugin id (a comment mentioning one would fool nodeadm).
 * - A version-2 user config on containerd 2.x: nodeadm writes a v2 file and
 *   shells out to `containerd config migrate`, leaving containerd's full
 *   dump of defaults on disk. berth stays pure: it moves every known v2 CRI
 *   key to its v3 home (the same moves `containerd config migrate` makes) and
 *   merges the result over its v3 config; a key it cannot place is an error
 *   naming the key, so nothing is silently dropped. The values berth writes
 *   equal those in nodeadm's migrated file; containerd's own defaults are
 *   not spelled out.
 * - A user config that mixes schemas (declares `version = 2` but uses v3
 *   plugin ids, or puts v2 CRI keys beside v3 ones) is an error.
 *
 * FastImagePull (decided once, in fast-image-pull.ts, for this renderer and
 * the kubelet's): when it applies, nodeadm
 * - sets the CRI image snapshotter to `soci` with snapshot annotations on
 *   (`snapshotter`, `disable_snapshot_annotations = false` under
 *   `plugins."io.containerd.grpc.v1.cri".containerd` for 1.x, under
 *   `plugins."io.containerd.cri.v1.images"` for 2.x),
 * - registers `[proxy_plugins.soci]` (a snapshot proxy on the SOCI socket,
 *   exporting its root `/var/lib/soci-snapshotter-grpc`),
 * - writes `/etc/soci-snapshotter-grpc/config.toml` (parallel pull/unpack
 *   settings, unpigz for gzip layers, the CRI keychain on containerd's socket),
 * - and a `containerd.service` drop-in that Requires/After
 *   `soci-snapshotter.service`, so containerd starts only once SOCI serves.
 * berth renders all four as files. Not here (impure, run phase): nodeadm
 * then imports `/etc/eks/pause.tar` into the soci snapshotter with `ctr`
 * after containerd starts, since the cached pause image's layers live in
 * the overlayfs snapshotter only.
 */

import type { NodeConfigSpec } from "../api/types.ts";
import type { NodeFacts } from "../facts/types.ts";
import type { PlannedFile } from "../plan/types.ts";
import { fail, ok } from "../util/result.ts";
import type { BerthError, Result } from "../util/result.ts";
import { parseVersion, versionAtLeast } from "../util/version.ts";
import { renderBaseRuntimeSpec } from "./base-runtime-spec.ts";
import { fastImagePullEnabled } from "./fast-image-pull.ts";
import { isTomlTable, mergeToml, parseToml, stringifyToml } from "./toml.ts";
import type { TomlTable, TomlValue } from "./toml.ts";

export const CONTAINERD_CONFIG_PATH = "/etc/containerd/config.toml";
export const DEFAULT_SANDBOX_IMAGE = "localhost/kubernetes/pause:latest";
import { CONTAINERD_SOCKET } from "../util/node-layout.ts";
export { CONTAINERD_SOCKET };
export const SOCI_SOCKET = "/run/soci-snapshotter-grpc/soci-snapshotter-grpc.sock";
export const SOCI_ROOT = "/var/lib/soci-snapshotter-grpc";
export const SOCI_CONFIG_PATH = "/etc/soci-snapshotter-grpc/config.toml";
export const SOCI_CONTAINERD_DROPIN_PATH = "/etc/systemd/system/containerd.service.d/10-soci-snapshotter.conf";

/** containerd's config schema version. */
export type ContainerdSchema = 2 | 3;

const CRI_V2 = "io.containerd.grpc.v1.cri";
const CRI_IMAGES = "io.containerd.cri.v1.images";
const CRI_RUNTIME = "io.containerd.cri.v1.runtime";
const FIELD = "spec.containerd.config";

/** Keys that stay in `io.containerd.grpc.v1.cri` in schema 3 (the CRI gRPC server). */
const V3_SERVER_KEYS = new Set([
  "disable_tcp_service",
  "stream_server_address",
  "stream_server_port",
  "stream_idle_timeout",
  "enable_tls_streaming",
  "x509_key_pair_streaming",
]);
/** v2 CRI-level keys that move to `io.containerd.cri.v1.images` unchanged. */
const V2_TO_IMAGES = new Set([
  "max_concurrent_downloads",
  "image_pull_progress_timeout",
  "image_pull_with_sync_fs",
  "stats_collect_period",
  "registry",
  "image_decryption",
]);
/** v2 CRI-level keys that move to `io.containerd.cri.v1.runtime` unchanged. */
const V2_TO_RUNTIME = new Set([
  "cni",
  "enable_selinux",
  "selinux_category_range",
  "max_container_log_line_size",
  "disable_apparmor",
  "restrict_oom_score_adj",
  "disable_proc_mount",
  "unset_seccomp_profile",
  "tolerate_missing_hugetlb_controller",
  "disable_hugetlb_controller",
  "device_ownership_from_security_context",
  "ignore_image_defined_volumes",
  "netns_mounts_under_state_dir",
  "enable_unprivileged_ports",
  "enable_unprivileged_icmp",
  "enable_cdi",
  "cdi_spec_dirs",
  "drain_exec_sync_io_timeout",
  "ignore_deprecation_warnings",
]);
/** Keys of v2 `[...cri.containerd]` that move to the images plugin. */
const V2_CONTAINERD_TO_IMAGES = new Set(["snapshotter", "disable_snapshot_annotations", "discard_unpacked_layers"]);
/** Keys of v2 `[...cri.containerd]` that stay under `[...runtime.containerd]`. */
const V2_CONTAINERD_TO_RUNTIME = new Set([
  "default_runtime_name",
  "runtimes",
  "ignore_blockio_not_enabled_errors",
  "ignore_rdt_not_enabled_errors",
]);

/** Which schema a containerd version reads. */
export function containerdSchemaFor(containerdVersion: string): Result<ContainerdSchema> {
  const v = parseVersion(containerdVersion);
  if (!v) {
    return fail({
      code: "facts.containerd-version",
      message: `cannot tell the containerd config schema: containerd version "${containerdVersion}" is not a version number`,
      hint: "check `containerd --version` on the node (or /etc/eks/containerd-version.txt)",
    });
  }
  return ok(v.major >= 2 ? 3 : 2);
}

interface RuntimeChoice {
  name: string;
  binary: string;
}

function runtimeFor(facts: NodeFacts): RuntimeChoice {
  return facts.nvidiaRuntime
    ? { name: "nvidia", binary: "/usr/bin/nvidia-container-runtime" }
    : { name: "runc", binary: "/usr/sbin/runc" };
}

/** berth's own config before the user's is merged in; `soci` when FastImagePull applies. */
export function baseContainerdConfig(schema: ContainerdSchema, facts: NodeFacts, soci = false): TomlTable {
  const rt = runtimeFor(facts);
  const enableCdi = versionAtLeast(facts.kubeletVersion, "1.32.0");
  const runtimes: TomlTable = {
    [rt.name]: {
      runtime_type: "io.containerd.runc.v2",
      base_runtime_spec: "/etc/containerd/base-runtime-spec.json",
      options: { BinaryName: rt.binary, SystemdCgroup: true },
    },
  };
  const registry: TomlTable = { config_path: "/etc/containerd/certs.d:/etc/docker/certs.d" };
  const cni: TomlTable = { bin_dir: "/opt/cni/bin", conf_dir: "/etc/cni/net.d" };
  const top: TomlTable = {
    version: BigInt(schema),
    root: "/var/lib/containerd",
    state: "/run/containerd",
    grpc: { address: CONTAINERD_SOCKET },
  };
  // The snapshotter keys sit where each schema keeps the image pull settings.
  const snapshotter: TomlTable = soci ? { snapshotter: "soci", disable_snapshot_annotations: false } : {};
  if (schema === 2) {
    top.plugins = {
      [CRI_V2]: {
        sandbox_image: DEFAULT_SANDBOX_IMAGE,
        enable_cdi: enableCdi,
        containerd: { default_runtime_name: rt.name, discard_unpacked_layers: true, ...snapshotter, runtimes },
        registry,
        cni,
      },
    };
  } else {
    top.plugins = {
      [CRI_IMAGES]: { discard_unpacked_layers: true, ...snapshotter, pinned_images: { sandbox: DEFAULT_SANDBOX_IMAGE }, registry },
      [CRI_RUNTIME]: { enable_cdi: enableCdi, containerd: { default_runtime_name: rt.name, runtimes }, cni },
    };
  }
  if (soci) top.proxy_plugins = { soci: { type: "snapshot", address: SOCI_SOCKET, exports: { root: SOCI_ROOT } } };
  return top;
}

function describe(v: TomlValue | undefined): string {
  // TOML integers are bigints, also inside arrays and tables, which JSON.stringify refuses.
  return typeof v === "bigint" ? v.toString() : (JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? Number(x) : x)) ?? "nothing");
}

function err(message: string, hint: string, code = "containerd.config-schema"): BerthError {
  return { code, message, where: { path: FIELD }, hint };
}

interface UserSchema {
  /** 2 or 3 when the user config says so (explicitly or by its plugin tables); undefined when it is neutral. */
  schema?: ContainerdSchema;
  /** What gave it away, for messages. */
  evidence: string[];
}

/** Read which schema the user's config is written for. */
export function userConfigSchema(user: TomlTable): Result<UserSchema> {
  const declared = user.version;
  if (declared !== undefined && declared !== 2n && declared !== 3n) {
    return fail(
      err(
        `${FIELD} declares version = ${describe(declared)}; berth merges only containerd config versions 2 and 3`,
        "write the settings as `version = 2` (containerd 1.x) or `version = 3` (containerd 2.x)",
      ),
    );
  }
  const plugins = isTomlTable(user.plugins) ? user.plugins : {};
  const v3Ids = [CRI_IMAGES, CRI_RUNTIME].filter((id) => id in plugins);
  const cri = plugins[CRI_V2];
  const v2Keys = isTomlTable(cri) ? Object.keys(cri).filter((k) => !V3_SERVER_KEYS.has(k)) : [];
  const v3Evidence = [...(declared === 3n ? ["version = 3"] : []), ...v3Ids.map((id) => `plugin "${id}"`)];
  const v2Evidence = [
    ...(declared === 2n ? ["version = 2"] : []),
    ...v2Keys.map((k) => `plugins."${CRI_V2}".${k}`),
  ];
  if (v3Ids.length > 0 && (declared === 2n || v2Keys.length > 0)) {
    return fail(
      err(
        `${FIELD} mixes containerd config schemas: ${[...v3Evidence, ...v2Evidence].join(", ")}`,
        `use one schema: version 2 keeps CRI settings under plugins."${CRI_V2}"; version 3 splits them into plugins."${CRI_IMAGES}" and plugins."${CRI_RUNTIME}"`,
      ),
    );
  }
  if (v3Evidence.length > 0) return ok({ schema: 3, evidence: v3Evidence });
  if (v2Evidence.length > 0) return ok({ schema: 2, evidence: v2Evidence });
  return ok({ evidence: [] });
}

function table(parent: TomlTable, key: string): TomlTable {
  const cur = parent[key];
  if (isTomlTable(cur)) return cur;
  const t: TomlTable = {};
  parent[key] = t;
  return t;
}

function translateRuntime(name: string, rt: TomlValue): Result<TomlValue> {
  if (!isTomlTable(rt)) return ok(rt);
  const out: TomlTable = {};
  for (const [k, v] of Object.entries(rt)) {
    if (k === "sandbox_mode") out.sandboxer = v;
    else if (k === "runtime_engine" || k === "runtime_root") {
      return fail(
        err(
          `${FIELD}: plugins."${CRI_V2}".containerd.runtimes.${name}.${k} was removed in containerd 2.x and has no version 3 equivalent`,
          `remove it (use options.BinaryName / options.Root of the runtime instead)`,
        ),
      );
    } else out[k] = v;
  }
  return ok(out);
}

/**
 * Move a version-2 config's CRI settings to their version-3 homes
 * (images / runtime / server), as `containerd config migrate` does.
 */
export function translateV2ToV3(user: TomlTable): Result<TomlTable> {
  const out: TomlTable = {};
  for (const [k, v] of Object.entries(user)) if (k !== "plugins" && k !== "version") out[k] = v;
  out.version = 3n;
  if (!isTomlTable(user.plugins)) return ok(out);
  const plugins: TomlTable = {};
  for (const [k, v] of Object.entries(user.plugins)) if (k !== CRI_V2) plugins[k] = v;
  out.plugins = plugins;
  const cri = user.plugins[CRI_V2];
  if (cri === undefined) return ok(out);
  if (!isTomlTable(cri)) return fail(err(`${FIELD}: plugins."${CRI_V2}" must be a table, found ${describe(cri)}`, "write it as a [table]"));
  const unknown: string[] = [];
  for (const [k, v] of Object.entries(cri)) {
    if (V3_SERVER_KEYS.has(k)) table(plugins, CRI_V2)[k] = v;
    else if (V2_TO_IMAGES.has(k)) table(plugins, CRI_IMAGES)[k] = v;
    else if (V2_TO_RUNTIME.has(k)) table(plugins, CRI_RUNTIME)[k] = v;
    else if (k === "sandbox_image") table(table(plugins, CRI_IMAGES), "pinned_images").sandbox = v;
    else if (k === "containerd" && isTomlTable(v)) {
      for (const [ck, cv] of Object.entries(v)) {
        if (V2_CONTAINERD_TO_IMAGES.has(ck)) table(plugins, CRI_IMAGES)[ck] = cv;
        else if (ck === "runtimes" && isTomlTable(cv)) {
          const runtimes = table(table(table(plugins, CRI_RUNTIME), "containerd"), "runtimes");
          for (const [name, rt] of Object.entries(cv)) {
            const r = translateRuntime(name, rt);
            if (!r.ok) return r;
            runtimes[name] = r.value;
          }
        } else if (V2_CONTAINERD_TO_RUNTIME.has(ck)) table(table(plugins, CRI_RUNTIME), "containerd")[ck] = cv;
        else unknown.push(`plugins."${CRI_V2}".containerd.${ck}`);
      }
    } else unknown.push(`plugins."${CRI_V2}".${k}`);
  }
  if (unknown.length > 0) {
    return fail(
      err(
        `${FIELD} is a version 2 config for containerd 2.x and berth does not know where version 3 keeps ${unknown.join(", ")}`,
        `write the config as version = 3 (CRI settings under plugins."${CRI_IMAGES}" and plugins."${CRI_RUNTIME}"; \`containerd config migrate\` shows the new layout), or remove the key`,
        "containerd.config-migrate",
      ),
    );
  }
  return ok(out);
}

/** Render `/etc/containerd/config.toml`. */
export function renderContainerdConfig(spec: NodeConfigSpec, facts: NodeFacts): Result<PlannedFile> {
  const schemaR = containerdSchemaFor(facts.containerdVersion);
  if (!schemaR.ok) return schemaR;
  const schema = schemaR.value;
  let merged = baseContainerdConfig(schema, facts, fastImagePullEnabled(spec, facts));
  const text = spec.containerd?.config;
  if (text !== undefined && text.trim() !== "") {
    const parsed = parseToml(text);
    if (!parsed.ok) {
      const at = parsed.line !== undefined ? ` at line ${parsed.line}, column ${parsed.column ?? 1}` : "";
      return fail({
        code: "containerd.config-invalid-toml",
        message: `${FIELD} is not valid TOML${at}: ${parsed.message}`,
        where: { path: FIELD },
        hint: "fix the TOML syntax (check quoting and [table] headers); the text is used as containerd's config.toml fragment",
      });
    }
    let user = parsed.value;
    const us = userConfigSchema(user);
    if (!us.ok) return us;
    if (schema === 2 && us.value.schema === 3) {
      return fail(
        err(
          `${FIELD} is a containerd config version 3 (found ${us.value.evidence.join(", ")}), but this node runs containerd ${facts.containerdVersion}, which reads only version 2`,
          `write it as version = 2 with CRI settings under plugins."${CRI_V2}" (e.g. plugins."${CRI_V2}".containerd.discard_unpacked_layers), or use an image with containerd 2.x`,
        ),
      );
    }
    if (schema === 3 && us.value.schema === 2) {
      const t = translateV2ToV3(user);
      if (!t.ok) return t;
      user = t.value;
    }
    merged = mergeToml(merged, user);
  }
  return ok({ path: CONTAINERD_CONFIG_PATH, content: stringifyToml(merged), mode: 0o644, component: "containerd" });
}

/**
 * The SOCI snapshotter's own config: pull and unpack layers in parallel
 * (unbounded in total, 20 downloads / 12 unpacks per image, 16 MB chunks),
 * decompress gzip with unpigz, drop unpacked layer blobs, and resolve
 * registry credentials through the CRI keychain on containerd's socket.
 */
export function sociSnapshotterConfig(): TomlTable {
  return {
    debug: false,
    content_store: { type: "containerd" },
    cri_keychain: { enable_keychain: true, image_service_path: CONTAINERD_SOCKET },
    pull_modes: {
      parallel_pull_unpack: {
        enable: true,
        concurrent_download_chunk_size: "16mb",
        discard_unpacked_layers: true,
        max_concurrent_downloads: -1n,
        max_concurrent_downloads_per_image: 20n,
        max_concurrent_unpacks: -1n,
        max_concurrent_unpacks_per_image: 12n,
        decompress_streams: { gzip: { path: "/usr/bin/unpigz", args: ["-d", "-c"] } },
      },
    },
  };
}

/** containerd waits for the SOCI snapshotter: it is a hard dependency once containerd's images go through it. */
export const SOCI_CONTAINERD_DROPIN = "[Unit]\nRequires=soci-snapshotter.service\nAfter=soci-snapshotter.service\n";

/**
 * `/etc/containerd/config.toml` and `/etc/containerd/base-runtime-spec.json`;
 * with FastImagePull also the SOCI snapshotter config and containerd's
 * drop-in on soci-snapshotter.service, in that order.
 */
export function renderContainerd(spec: NodeConfigSpec, facts: NodeFacts): Result<PlannedFile[]> {
  const config = renderContainerdConfig(spec, facts);
  if (!config.ok) return config;
  const files: PlannedFile[] = [config.value, renderBaseRuntimeSpec(spec)];
  if (fastImagePullEnabled(spec, facts)) {
    files.push(
      { path: SOCI_CONFIG_PATH, content: stringifyToml(sociSnapshotterConfig()), mode: 0o644, component: "containerd" },
      { path: SOCI_CONTAINERD_DROPIN_PATH, content: SOCI_CONTAINERD_DROPIN, mode: 0o644, component: "containerd" },
    );
  }
  return ok(files);
}
