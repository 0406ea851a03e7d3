/**
 * Which containerd config schema (version 2 for containerd 1.x, 3 for 2.x) a
 * user's `spec.containerd.config` TOML is written for, read from its parsed
 * structure. Validation (validate.ts) rejects a config that mixes the two;
 * the containerd renderer (src/render/containerd.ts) uses the same answer to
 * merge it. Pure; never imports a renderer.
 */
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import { isTomlTable, type TomlTable, type TomlValue } from "../util/toml.ts";

/** containerd's config schema version. */
export type ContainerdSchema = 2 | 3;

/** The CRI plugin of schema 2, and the server half it keeps in schema 3. */
export const CRI_V2 = "io.containerd.grpc.v1.cri";
/** Schema 3's CRI image plugin. */
export const CRI_IMAGES = "io.containerd.cri.v1.images";
/** Schema 3's CRI runtime plugin. */
export const CRI_RUNTIME = "io.containerd.cri.v1.runtime";
/** Where the user's containerd TOML lives in a NodeConfig. */
export const CONTAINERD_CONFIG_FIELD = "spec.containerd.config";

/** Keys that stay in `io.containerd.grpc.v1.cri` in schema 3 (the CRI gRPC server). */
export const V3_SERVER_KEYS = new Set([
  "disable_tcp_service",
  "stream_server_address",
  "stream_server_port",
  "stream_idle_timeout",
  "enable_tls_streaming",
  "x509_key_pair_streaming",
]);

/** A TOML value as a message shows it. */
export function tomlValueText(v: TomlValue | undefined): string {
  // TOML integers are bigints, also inside arrays and tables, which JSON.stringify refuses.
  return typeof v === "bigint"
    ? v.toString()
    : (JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? Number(x) : x)) ?? "nothing");
}

/** An error about the user's containerd config. */
export function containerdConfigError(message: string, hint: string, code = "containerd.config-schema"): BerthError {
  return { code, message, where: { path: CONTAINERD_CONFIG_FIELD }, hint };
}

export interface UserSchema {
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
      containerdConfigError(
        `${CONTAINERD_CONFIG_FIELD} declares version = ${tomlValueText(declared)}; berth merges only containerd config versions 2 and 3`,
        "write the settings as `version = 2` (containerd 1.x) or `version = 3` (containerd 2.x)",
      ),
    );
  }
  const plugins = isTomlTable(user.plugins) ? user.plugins : {};
  const v3Ids = [CRI_IMAGES, CRI_RUNTIME].filter((id) => id in plugins);
  const cri = plugins[CRI_V2];
  const v2Keys = isTomlTable(cri) ? Object.keys(cri).filter((k) => !V3_SERVER_KEYS.has(k)) : [];
  const v3Evidence = [...(declared === 3n ? ["version = 3"] : []), ...v3Ids.map((id) => `plugin "${id}"`)];
  const v2Evidence = [...(declared === 2n ? ["version = 2"] : []), ...v2Keys.map((k) => `plugins."${CRI_V2}".${k}`)];
  if (v3Ids.length > 0 && (declared === 2n || v2Keys.length > 0)) {
    return fail(
      containerdConfigError(
        `${CONTAINERD_CONFIG_FIELD} mixes containerd config schemas: ${[...v3Evidence, ...v2Evidence].join(", ")}`,
        `use one schema: version 2 keeps CRI settings under plugins."${CRI_V2}"; version 3 splits them into ` +
          `plugins."${CRI_IMAGES}" and plugins."${CRI_RUNTIME}"`,
      ),
    );
  }
  if (v3Evidence.length > 0) return ok({ schema: 3, evidence: v3Evidence });
  if (v2Evidence.length > 0) return ok({ schema: 2, evidence: v2Evidence });
  return ok({ evidence: [] });
}
