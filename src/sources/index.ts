/**
 * Config sources → documents → merged config.
 *
 * The API functions (decode, merge, validate, encode) are dependencies with
 * defaults from src/api, loaded lazily so this module (and its tests, which
 * inject small fakes) does not depend on their load order.
 */
import type { HostRoot } from "../host/root.ts";
import type { ImdsClient } from "../facts/types.ts";
import type { ConfigDocument, JsonObject, MergedConfig, NodeConfigSpec, ValidationMode } from "../api/types.ts";
import type { ValidateOptions } from "../api/validate.ts";
import type { DecodedSource } from "../api/decode.ts";
import { applyValidationMode, effectiveMode, type EffectiveMode } from "../api/validation-mode.ts";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import { errorMessage } from "../util/errors.ts";
import { readFileSource } from "./files.ts";
import { decodeUserData, USERDATA_SOURCE, type SourceText } from "./userdata.ts";

export type DecodeFn = (text: string, source: string) => Result<ConfigDocument[]>;
type DecodeSourceFn = (text: string, source: string) => DecodedSource;
export type MergeFn = (docs: ConfigDocument[]) => MergedConfig;
export type ValidateFn = (merged: MergedConfig, opts?: ValidateOptions) => Result<MergedConfig>;
export type EncodeFn = (spec: NodeConfigSpec) => JsonObject;

export interface SourceDeps {
  root: HostRoot;
  imds: ImdsClient;
  decode?: DecodeFn;
  merge?: MergeFn;
  /** Base of relative `file://` paths; default process.cwd(). */
  cwd?: string;
}

const SUPPORTED_SOURCES = ["imds://user-data", "file:///path/to/file-or-directory"] as const;

export async function defaultDecode(): Promise<DecodeFn> {
  return (await import("../api/decode.ts")).decodeDocuments;
}
async function defaultDecodeSource(): Promise<DecodeSourceFn> {
  return (await import("../api/decode.ts")).decodeSource;
}
export async function defaultMerge(): Promise<MergeFn> {
  return (await import("../api/merge.ts")).mergeConfigs;
}
export async function defaultValidate(): Promise<ValidateFn> {
  return (await import("../api/validate.ts")).validateConfig;
}
export async function defaultEncode(): Promise<EncodeFn> {
  return (await import("../api/encode.ts")).toNodeadmJson;
}

/** Reads one source URL into the texts it holds (no decoding of documents yet). */
async function readSourceTexts(url: string, deps: Pick<SourceDeps, "root" | "imds" | "cwd">): Promise<Result<SourceText[]>> {
  if (url === USERDATA_SOURCE || url === "imds://userdata") {
    let bytes: Uint8Array | undefined;
    try {
      bytes = await deps.imds.getBytes("user-data");
    } catch (e) {
      return fail({
        code: "source.imds",
        message: `could not read user data from IMDS: ${errorMessage(e)}`,
        where: { source: url },
        hint: "check that the instance metadata service is reachable (hop limit, IMDSv2 token), or use a file:// source",
        cause: e,
      });
    }
    // 404: the instance has no user data, which is no config rather than an error.
    if (bytes === undefined) return ok([]);
    return decodeUserData(bytes, USERDATA_SOURCE);
  }
  if (url.startsWith("file://")) return readFileSource(url, { root: deps.root, ...(deps.cwd !== undefined ? { cwd: deps.cwd } : {}) });
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1];
  return fail({
    code: "source.unsupported",
    message: scheme
      ? `config source "${url}" has the unsupported scheme "${scheme}"${scheme === "imds" ? " (only imds://user-data is readable)" : ""}`
      : `config source "${url}" is not a URL`,
    where: { source: url },
    hint: `supported sources: ${SUPPORTED_SOURCES.join(", ")}`,
  });
}

function withNote(errors: BerthError[], t: SourceText): BerthError[] {
  if (t.lineNote === undefined) return errors;
  return errors.map((e) =>
    e.where?.source === t.source && e.where.line !== undefined ? { ...e, hint: e.hint ? `${e.hint} (${t.lineNote})` : `${t.lineNote}` } : e,
  );
}

/** Every source read and decoded for either validation mode (src/api/validation-mode.ts). */
interface DecodedSources {
  /** Each text read (a file, a user-data part), in order. */
  texts: string[];
  /** Documents with unknown fields dropped (see DecodedSource in src/api/decode.ts). */
  docs: ConfigDocument[];
  /** Every problem of every source, in order: what strict validation reports. */
  problems: BerthError[];
}

async function decodeSources(urls: readonly string[], deps: SourceDeps): Promise<DecodedSources> {
  // An injected decoder (tests) is strict: its errors are problems, its documents those of a clean text.
  const injected = deps.decode;
  const decode: DecodeSourceFn = injected
    ? (text, source) => {
        const r = injected(text, source);
        return r.ok ? { docs: r.value, problems: [] } : { docs: [], problems: r.errors };
      }
    : await defaultDecodeSource();
  const out: DecodedSources = { texts: [], docs: [], problems: [] };
  for (const url of urls) {
    const texts = await readSourceTexts(url, deps);
    if (!texts.ok) {
      out.problems.push(...texts.errors);
      continue;
    }
    for (const t of texts.value) {
      out.texts.push(t.source);
      let r: DecodedSource;
      try {
        r = decode(t.text, t.source);
      } catch (e) {
        const problem = { code: "config.decode", message: `could not decode: ${errorMessage(e)}`, where: { source: t.source }, cause: e };
        r = { docs: [], problems: [problem] };
      }
      out.docs.push(...r.docs);
      for (const p of withNote(r.problems, t)) out.problems.push(p);
    }
  }
  return out;
}

/**
 * Reads every source in the given order and decodes its documents strictly.
 * All errors of all sources are collected; documents keep source order.
 */
export async function readSources(urls: readonly string[], deps: SourceDeps): Promise<Result<ConfigDocument[]>> {
  const d = await decodeSources(urls, deps);
  return d.problems.length ? { ok: false, errors: d.problems } : ok(d.docs);
}

/** What reading the sources found besides their documents (for `config check`'s summary and warnings). */
export interface SourcesReport {
  /** Each text read (a file, a user-data part), in order. */
  texts: string[];
  /** The validation mode in effect and where it came from. */
  mode: EffectiveMode;
  /** Unknown fields dropped in warn mode, each once, in order. */
  warnings: BerthError[];
}

/**
 * Reads and decodes every source in the validation mode `flag` asks for,
 * else the one the sources' BerthConfig sets (`spec.validation`), else
 * strict: in warn mode unknown fields are dropped and reported as warnings.
 */
export async function readConfigDocuments(
  urls: readonly string[],
  deps: SourceDeps,
  flag?: ValidationMode,
): Promise<{ docs: Result<ConfigDocument[]>; report: SourcesReport }> {
  const d = await decodeSources(urls, deps);
  const mode = effectiveMode(flag, d.docs);
  const { errors, warnings } = applyValidationMode(d.problems, mode.mode);
  const report: SourcesReport = { texts: d.texts, mode, warnings };
  return { docs: errors.length ? { ok: false, errors } : ok(d.docs), report };
}

/** Reads and merges; `undefined` when no source yielded any document. Not validated (see cache.ts resolveConfig). */
export async function loadConfig(urls: readonly string[], deps: SourceDeps): Promise<Result<MergedConfig | undefined>> {
  const docs = await readSources(urls, deps);
  if (!docs.ok) return docs;
  if (docs.value.length === 0) return ok(undefined);
  const merge = deps.merge ?? (await defaultMerge());
  return ok(merge(docs.value));
}
