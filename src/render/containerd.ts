/**
 * containerd's `/etc/containerd/config.toml` (schema 2 or 3 by containerd's
 * version, the user's TOML merged over it, a v2 user config moved to v3) and
 * FastImagePull's SOCI files, purely from config + facts. Never runs
 * containerd or `ctr` (the run phase does). nodeadm's facts and where berth
 * differs: docs/internals.md ("containerd's config").
 */

import type { NodeConfigSpec } from "../api/types.ts";
import type { NodeFacts } from "../facts/types.ts";
import type { PlannedFile } from "../plan/types.ts";
import { fail, ok } from "../util/result.ts";
import type { Result } from "../util/result.ts";
import { parseVersion, versionAtLeast } from "../util/version.ts";
import { renderBaseRuntimeSpec } from "./base-runtime-spec.ts";
import { fastImagePullEnabled } from "./fast-image-pull.ts";
import { isTomlTable, mergeToml, parseToml, stringifyToml } from "../util/toml.ts";
import type { TomlTable, TomlValue } from "../util/toml.ts";
import {
  containerdConfigError,
  CONTAINERD_CONFIG_FIELD,
  CRI_IMAGES,
  CRI_RUNTIME,
  CRI_V2,
  tomlValueText,
  userConfigSchema,
  V3_SERVER_KEYS,
  type ContainerdSchema,
} from "../api/containerd-config.ts";
import {
  BASE_RUNTIME_SPEC_PATH,
  CONTAINERD_CONFIG_PATH,
  CONTAINERD_ROOT,
  CONTAINERD_SOCKET,
  NVIDIA_RUNTIME_PATH,
  SOCI_CONFIG_PATH,
  SOCI_CONTAINERD_DROPIN_PATH,
  SOCI_ROOT,
  SOCI_SOCKET,
} from "../util/node-layout.ts";

export const DEFAULT_SANDBOX_IMAGE = "localhost/kubernetes/pause:latest";

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
function containerdSchemaFor(containerdVersion: string): Result<ContainerdSchema> {
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
  return facts.nvidiaRuntime ? { name: "nvidia", binary: NVIDIA_RUNTIME_PATH } : { name: "runc", binary: "/usr/sbin/runc" };
}

/** berth's own config before the user's is merged in; `soci` when FastImagePull applies. */
function baseContainerdConfig(schema: ContainerdSchema, facts: NodeFacts, soci = false): TomlTable {
  const rt = runtimeFor(facts);
  const enableCdi = versionAtLeast(facts.kubeletVersion, "1.32.0");
  const runtimes: TomlTable = {
    [rt.name]: {
      runtime_type: "io.containerd.runc.v2",
      base_runtime_spec: BASE_RUNTIME_SPEC_PATH,
      options: { BinaryName: rt.binary, SystemdCgroup: true },
    },
  };
  const registry: TomlTable = { config_path: "/etc/containerd/certs.d:/etc/docker/certs.d" };
  const cni: TomlTable = { bin_dir: "/opt/cni/bin", conf_dir: "/etc/cni/net.d" };
  const top: TomlTable = {
    version: BigInt(schema),
    root: CONTAINERD_ROOT,
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
        containerdConfigError(
          `${CONTAINERD_CONFIG_FIELD}: plugins."${CRI_V2}".containerd.runtimes.${name}.${k} was removed in containerd 2.x and ` +
            `has no version 3 equivalent`,
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
  if (!isTomlTable(cri))
    return fail(
      containerdConfigError(
        `${CONTAINERD_CONFIG_FIELD}: plugins."${CRI_V2}" must be a table, found ${tomlValueText(cri)}`,
        "write it as a [table]",
      ),
    );
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
      containerdConfigError(
        `${CONTAINERD_CONFIG_FIELD} is a version 2 config for containerd 2.x and berth does not know where version 3 keeps ` +
          `${unknown.join(", ")}`,
        `write the config as version = 3 (CRI settings under plugins."${CRI_IMAGES}" and plugins."${CRI_RUNTIME}"; ` +
          `\`containerd config migrate\` shows the new layout), or remove the key`,
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
        message: `${CONTAINERD_CONFIG_FIELD} is not valid TOML${at}: ${parsed.message}`,
        where: { path: CONTAINERD_CONFIG_FIELD },
        hint: "fix the TOML syntax (check quoting and [table] headers); the text is used as containerd's config.toml fragment",
      });
    }
    let user = parsed.value;
    const us = userConfigSchema(user);
    if (!us.ok) return us;
    if (schema === 2 && us.value.schema === 3) {
      return fail(
        containerdConfigError(
          `${CONTAINERD_CONFIG_FIELD} is a containerd config version 3 (found ${us.value.evidence.join(", ")}), but this node ` +
            `runs containerd ${facts.containerdVersion}, which reads only version 2`,
          `write it as version = 2 with CRI settings under plugins."${CRI_V2}" (e.g. ` +
            `plugins."${CRI_V2}".containerd.discard_unpacked_layers), or use an image with containerd 2.x`,
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
function sociSnapshotterConfig(): TomlTable {
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
const SOCI_CONTAINERD_DROPIN = "[Unit]\nRequires=soci-snapshotter.service\nAfter=soci-snapshotter.service\n";

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
