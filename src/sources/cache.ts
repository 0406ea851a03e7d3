/**
 * nodeadm's `--config-cache PATH` semantics.
 *
 * - A cache that cannot be read or decoded is ignored with a warning (nodeadm
 *   only logs it).
 * - Sources yield a config → it is validated, then compared with the cache by
 *   spec: equal → `unchanged` (the caller may skip re-configuring), different
 *   → `changed` (the caller must re-run the config phase even when told to
 *   skip it, and rewrite the cache), no cache → `none`.
 * - No source yields any document → the cache is used (`from-cache`); with no
 *   cache either it is an error.
 * - A source error (unreadable file, bad YAML, a partial config failing
 *   validation) is fatal even when a cache exists.
 *
 * The file is JSON: `{apiVersion, kind, spec}` like nodeadm's, so
 * `jq .spec` gives nodeadm's spec JSON, plus `berth` (the BerthConfig
 * document) when berth settings are present, which nodeadm ignores.
 */
import { chmod, mkdir, open, readFile, rename, stat, unlink } from "node:fs/promises";
import path from "node:path";
import type { HostRoot } from "../host/root.ts";
import {
  BERTH_API_VERSION,
  BERTH_KIND,
  NODECONFIG_API_VERSION,
  NODECONFIG_KIND,
  type ConfigDocument,
  type JsonObject,
  type JsonValue,
  type MergedConfig,
} from "../api/types.ts";
import { canonicalJson, sortKeys } from "../util/json.ts";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import {
  defaultDecode,
  defaultEncode,
  defaultMerge,
  defaultValidate,
  readSources,
  type EncodeFn,
  type SourceDeps,
  type ValidateFn,
} from "./index.ts";

export interface CacheDeps extends SourceDeps {
  validate?: ValidateFn;
  encode?: EncodeFn;
}

export type CacheState = "none" | "unchanged" | "changed" | "from-cache";

export interface ResolvedConfig {
  config: MergedConfig;
  origin: "sources" | "cache";
  cacheState: CacheState;
  /** Problems that did not stop resolution (e.g. an unreadable cache that was ignored). */
  warnings: BerthError[];
}

/** Stable JSON: keys sorted at every level, undefined dropped (shared with the renderers; kept exported here for callers). */
export { canonicalJson };

function isEmptyObject(v: object): boolean {
  return Object.values(v).every((x) => x === undefined);
}

/** The cache file's JSON value for a config. */
export function cacheDocument(config: MergedConfig, encode: EncodeFn): JsonObject {
  const doc: JsonObject = { apiVersion: NODECONFIG_API_VERSION, kind: NODECONFIG_KIND, spec: encode(config.nodeConfig) };
  if (!isEmptyObject(config.berth)) {
    doc.berth = { apiVersion: BERTH_API_VERSION, kind: BERTH_KIND, spec: sortKeys(config.berth) as JsonValue };
  }
  return doc;
}

/** Two configs are the same for the cache when their nodeadm spec JSON and berth spec are equal (nodeadm: DeepEqual of specs). */
export function sameConfig(a: MergedConfig, b: MergedConfig, encode: EncodeFn): boolean {
  return (
    canonicalJson(encode(a.nodeConfig)) === canonicalJson(encode(b.nodeConfig)) &&
    canonicalJson(a.berth) === canonicalJson(b.berth)
  );
}

function cacheSource(cachePath: string): string {
  return `${cachePath} (config cache)`;
}

/**
 * Reads the cache: `ok(undefined)` when there is none; an error when it exists
 * but cannot be used (the caller decides whether that is fatal).
 */
export async function readCache(cachePath: string, deps: CacheDeps): Promise<Result<MergedConfig | undefined>> {
  const source = cacheSource(cachePath);
  const real = deps.root.path(cachePath);
  let text: string;
  try {
    text = await readFile(real, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return ok(undefined);
    return fail({ code: "cache.unreadable", message: `cannot read the config cache ${real}: ${(e as Error).message}`, where: { source }, hint: "check its permissions, or delete it", cause: e });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    return fail({ code: "cache.corrupt", message: `the config cache is not valid JSON: ${(e as Error).message}`, where: { source }, hint: `delete ${real}; the next init with a config source rewrites it`, cause: e });
  }
  const obj = parsed as { spec?: unknown; berth?: unknown } | null;
  if (obj === null || typeof obj !== "object" || Array.isArray(obj) || typeof obj.spec !== "object" || obj.spec === null) {
    return fail({ code: "cache.corrupt", message: "the config cache has no `spec` object", where: { source }, hint: `delete ${real}; the next init with a config source rewrites it` });
  }
  const decode = deps.decode ?? (await defaultDecode());
  const docs: ConfigDocument[] = [];
  const errors: BerthError[] = [];
  // Re-decode through the normal decoder so a cache is held to the same schema as any source.
  const nodeDoc = JSON.stringify({ apiVersion: NODECONFIG_API_VERSION, kind: NODECONFIG_KIND, spec: obj.spec });
  const n = decode(nodeDoc, source);
  if (n.ok) docs.push(...n.value);
  else errors.push(...n.errors);
  if (obj.berth !== undefined) {
    const b = decode(JSON.stringify(obj.berth), `${source} .berth`);
    if (b.ok) docs.push(...b.value);
    else errors.push(...b.errors);
  }
  if (errors.length) return { ok: false, errors };
  const merge = deps.merge ?? (await defaultMerge());
  const merged = merge(docs);
  return ok({ ...merged, sources: [source] });
}

/**
 * Resolves the config from `urls`, using and comparing with the cache at
 * `cachePath` (a host path, re-rooted) when given. The returned config is
 * validated.
 */
export async function resolveConfig(
  urls: readonly string[],
  cachePath: string | undefined,
  deps: CacheDeps,
): Promise<Result<ResolvedConfig>> {
  const warnings: BerthError[] = [];
  let cached: MergedConfig | undefined;
  if (cachePath !== undefined && cachePath !== "") {
    const c = await readCache(cachePath, deps);
    if (c.ok) cached = c.value;
    else warnings.push(...c.errors.map((e) => ({ ...e, message: `ignoring the config cache: ${e.message}` })));
  }
  const docs = await readSources(urls, deps);
  if (!docs.ok) return docs;
  const validate = deps.validate ?? (await defaultValidate());

  if (docs.value.length === 0) {
    if (cached === undefined) {
      return fail({
        code: "config.none",
        message: `no config: none of the sources (${urls.join(", ") || "none given"}) holds a NodeConfig${cachePath ? `, and there is no usable config cache at ${cachePath}` : ""}`,
        hint: "give a NodeConfig in user data (MIME part of type application/node.eks.aws) or with --config-source file:///path",
      });
    }
    const v = validate(cached);
    if (!v.ok) {
      return {
        ok: false,
        errors: v.errors.map((e) => ({ ...e, hint: `${e.hint ? `${e.hint}; ` : ""}this came from the config cache ${cachePath}: delete it or give a config source` })),
      };
    }
    return ok({ config: v.value, origin: "cache", cacheState: "from-cache", warnings });
  }

  const merge = deps.merge ?? (await defaultMerge());
  const v = validate(merge(docs.value));
  if (!v.ok) return v;
  if (cached === undefined) return ok({ config: v.value, origin: "sources", cacheState: "none", warnings });
  const encode = deps.encode ?? (await defaultEncode());
  const same = sameConfig(v.value, cached, encode);
  return ok({ config: v.value, origin: "sources", cacheState: same ? "unchanged" : "changed", warnings });
}

/**
 * mkdir -p whose new directories are 0755 whatever the umask: `mkdir`'s mode
 * is filtered by the umask (a 077 umask would leave /run/eks/nodeadm 0700,
 * unreadable for tools that read nodeadm's cache), so each directory it
 * creates is chmod-ed; existing ones are left alone.
 */
async function mkdirAll(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let d = dir; ; d = path.dirname(d)) {
    try {
      await stat(d);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      missing.push(d);
      if (path.dirname(d) === d) break;
    }
  }
  for (const d of missing.reverse()) {
    try {
      await mkdir(d, { mode: 0o755 });
    } catch (e) {
      // Created concurrently by someone else: fine, it is not ours to chmod.
      if ((e as NodeJS.ErrnoException).code === "EEXIST") continue;
      throw e;
    }
    await chmod(d, 0o755);
  }
}

/**
 * Writes the cache atomically: a temp file in the same directory (mode 0600),
 * fsync, rename over the target, fsync of the directory. Parent directories
 * are created (0755). Throws on I/O errors; nodeadm treats a failed cache
 * write as non-fatal, the caller decides.
 */
export async function writeCache(cachePath: string, config: MergedConfig, root: HostRoot, encode?: EncodeFn): Promise<void> {
  const enc = encode ?? (await defaultEncode());
  const real = root.path(cachePath);
  const dir = path.dirname(real);
  await mkdirAll(dir);
  const body = canonicalJson(cacheDocument(config, enc), 2) + "\n";
  const tmp = path.join(dir, `.${path.basename(real)}.${process.pid}.${Date.now()}.tmp`);
  const fh = await open(tmp, "wx", 0o600);
  try {
    await fh.writeFile(body, "utf8");
    await fh.chmod(0o600); // the umask may have narrowed or the mode may differ; be exact
    await fh.sync();
  } catch (e) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fh.close();
  try {
    await rename(tmp, real);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  const dh = await open(dir, "r");
  try {
    await dh.sync();
  } catch {
    // Some filesystems refuse fsync on directories; the rename is still atomic.
  } finally {
    await dh.close();
  }
}
