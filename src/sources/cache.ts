/**
 * nodeadm's `--config-cache PATH`: read, compare with what the sources yield,
 * and write (atomically) the validated config. A broken cache is a warning,
 * a broken source an error even with a cache. Every rule and the file's
 * shape: docs/config.md ("Config cache").
 */
import { readFile } from "node:fs/promises";
import { writeFileAtomic } from "../host/fs.ts";
import type { BerthLock } from "../host/lock.ts";
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
  type ValidationMode,
} from "../api/types.ts";
import { canonicalJson, sortKeys } from "../util/json.ts";
import { BerthFailure, fail, ok, type BerthError, type Location, type Result } from "../util/result.ts";
import { errorMessage } from "../util/errors.ts";
import { configLocator, locateErrors } from "../api/locate.ts";
import { loadMaxPodsEvaluator } from "../render/max-pods.ts";
import {
  defaultDecode,
  defaultEncode,
  defaultMerge,
  defaultValidate,
  readConfigDocuments,
  type EncodeFn,
  type SourceDeps,
  type SourcesReport,
  type ValidateFn,
} from "./index.ts";

export interface CacheDeps extends SourceDeps {
  validate?: ValidateFn;
  encode?: EncodeFn;
  /** `--validate`: wins over the sources' BerthConfig `spec.validation`; strict when neither is set. */
  validation?: ValidationMode;
  /**
   * Called once the sources are read, before the merged config is validated
   * (so also when it then fails): the texts read, the validation mode and the
   * unknown fields warn mode dropped. Without it those warnings are added to
   * ResolvedConfig.warnings.
   */
  onSources?: (report: SourcesReport) => void;
}

export type CacheState = "none" | "unchanged" | "changed" | "from-cache";

export interface ResolvedConfig {
  config: MergedConfig;
  origin: "sources" | "cache";
  cacheState: CacheState;
  /** Problems that did not stop resolution (e.g. an unreadable cache that was ignored). */
  warnings: BerthError[];
  /** Where a field path of `config` was set in the sources, for errors found later (rendering); absent for the cache. */
  locate?: (path: string) => Location | undefined;
}

function isEmptyObject(v: object): boolean {
  return Object.values(v).every((x) => x === undefined);
}

/** The cache file's JSON value for a config. */
function cacheDocument(config: MergedConfig, encode: EncodeFn): JsonObject {
  const doc: JsonObject = { apiVersion: NODECONFIG_API_VERSION, kind: NODECONFIG_KIND, spec: encode(config.nodeConfig) };
  if (!isEmptyObject(config.berth)) {
    doc.berth = { apiVersion: BERTH_API_VERSION, kind: BERTH_KIND, spec: sortKeys(config.berth) as JsonValue };
  }
  return doc;
}

/** Two configs are the same for the cache when their nodeadm spec JSON and berth spec are equal (nodeadm: DeepEqual of specs). */
function sameConfig(a: MergedConfig, b: MergedConfig, encode: EncodeFn): boolean {
  return canonicalJson(encode(a.nodeConfig)) === canonicalJson(encode(b.nodeConfig)) && canonicalJson(a.berth) === canonicalJson(b.berth);
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
  let real = cachePath;
  let text: string;
  try {
    real = deps.root.path(cachePath);
    text = await readFile(real, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return ok(undefined);
    return fail({
      code: "cache.unreadable",
      message: `cannot read the config cache ${deps.root.describe(cachePath, real)}: ${errorMessage(e)}`,
      where: { source },
      hint: "check its permissions, or delete it",
      cause: e,
    });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    return fail({
      code: "cache.corrupt",
      message: `the config cache is not valid JSON: ${errorMessage(e)}`,
      where: { source },
      hint: `delete ${real}; the next init with a config source rewrites it`,
      cause: e,
    });
  }
  const obj = parsed as { spec?: unknown; berth?: unknown } | null;
  if (obj === null || typeof obj !== "object" || Array.isArray(obj) || typeof obj.spec !== "object" || obj.spec === null) {
    return fail({
      code: "cache.corrupt",
      message: "the config cache has no `spec` object",
      where: { source },
      hint: `delete ${real}; the next init with a config source rewrites it`,
    });
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
  const { docs, report } = await readConfigDocuments(urls, deps, deps.validation);
  if (deps.onSources) deps.onSources(report);
  else for (const w of report.warnings) warnings.push(w);
  if (!docs.ok) return docs;
  const validate = deps.validate ?? (await defaultValidate());

  if (docs.value.length === 0) {
    if (cached === undefined) {
      return fail({
        code: "config.none",
        message:
          `no config: none of the sources (${urls.join(", ") || "none given"}) holds a ` +
          `NodeConfig${cachePath ? `, and there is no usable config cache at ${cachePath}` : ""}`,
        hint: "give a NodeConfig in user data (MIME part of type application/node.eks.aws) or with --config-source file:///path",
      });
    }
    const v = validate(cached);
    if (!v.ok) {
      return {
        ok: false,
        errors: v.errors.map((e) => ({
          ...e,
          hint: `${e.hint ? `${e.hint}; ` : ""}this came from the config cache ${cachePath}: delete it or give a config source`,
        })),
      };
    }
    return ok({ config: v.value, origin: "cache", cacheState: "from-cache", warnings });
  }

  const merge = deps.merge ?? (await defaultMerge());
  const merged = merge(docs.value);
  // The one validation `config check` and `init` share; the CEL evaluator only when an expression needs it.
  const v = validate(merged, merged.nodeConfig.kubelet?.maxPodsExpression ? { maxPodsEvaluator: await loadMaxPodsEvaluator() } : {});
  const locate = configLocator(docs.value);
  if (!v.ok) return { ok: false, errors: locateErrors(v.errors, locate) };
  if (cached === undefined) return ok({ config: v.value, origin: "sources", cacheState: "none", warnings, locate });
  const encode = deps.encode ?? (await defaultEncode());
  const same = sameConfig(v.value, cached, encode);
  return ok({ config: v.value, origin: "sources", cacheState: same ? "unchanged" : "changed", warnings, locate });
}

/**
 * Writes the cache through the one atomic write (src/host/fs.ts): under
 * --root its parents are resolved in the root, new parent directories are
 * 0755 whatever the umask (nodeadm's tools read /run/eks/nodeadm), the file
 * is 0600, fsynced, renamed into place. Throws a BerthFailure on I/O
 * errors; nodeadm treats a failed cache write as non-fatal, the caller
 * decides. `lock`: the berth lock, when the caller holds it.
 */
export async function writeCache(
  cachePath: string,
  config: MergedConfig,
  root: HostRoot,
  encode?: EncodeFn,
  lock?: BerthLock,
): Promise<void> {
  const enc = encode ?? (await defaultEncode());
  const body = canonicalJson(cacheDocument(config, enc), 2) + "\n";
  const r = await writeFileAtomic(root, cachePath, body, { mode: 0o600, component: "config cache", ...(lock ? { lock } : {}) });
  if (!r.ok) throw new BerthFailure(r.errors);
}
