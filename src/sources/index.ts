/**
 * Config sources → documents → merged config.
 *
 * The API functions (decode, merge, validate, encode) are dependencies with
 * defaults from src/api, loaded lazily so this module (and its tests, which
 * inject small fakes) does not depend on their load order.
 */
import type { HostRoot } from "../host/root.ts";
import type { ImdsClient } from "../facts/types.ts";
import type { ConfigDocument, JsonObject, MergedConfig, NodeConfigSpec } from "../api/types.ts";
import type { ValidateOptions } from "../api/validate.ts";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import { errorMessage } from "../util/errors.ts";
import { readFileSource } from "./files.ts";
import { decodeUserData, USERDATA_SOURCE, type SourceText } from "./userdata.ts";

export type DecodeFn = (text: string, source: string) => Result<ConfigDocument[]>;
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

export const SUPPORTED_SOURCES = ["imds://user-data", "file:///path/to/file-or-directory"] as const;
/** nodeadm's default when no --config-source is given. */
export const DEFAULT_SOURCES = ["imds://user-data"] as const;

export async function defaultDecode(): Promise<DecodeFn> {
  return (await import("../api/decode.ts")).decodeDocuments;
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
export async function readSourceTexts(url: string, deps: Pick<SourceDeps, "root" | "imds" | "cwd">): Promise<Result<SourceText[]>> {
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
    e.where?.source === t.source && e.where.line !== undefined
      ? { ...e, hint: e.hint ? `${e.hint} (${t.lineNote})` : `${t.lineNote}` }
      : e,
  );
}

/**
 * Reads every source in the given order and decodes its documents. All
 * errors of all sources are collected; documents keep source order.
 */
export async function readSources(urls: readonly string[], deps: SourceDeps): Promise<Result<ConfigDocument[]>> {
  const decode = deps.decode ?? (await defaultDecode());
  const docs: ConfigDocument[] = [];
  const errors: BerthError[] = [];
  for (const url of urls) {
    const texts = await readSourceTexts(url, deps);
    if (!texts.ok) {
      errors.push(...texts.errors);
      continue;
    }
    for (const t of texts.value) {
      let r: Result<ConfigDocument[]>;
      try {
        r = decode(t.text, t.source);
      } catch (e) {
        r = fail({ code: "config.decode", message: `could not decode: ${errorMessage(e)}`, where: { source: t.source }, cause: e });
      }
      if (r.ok) docs.push(...r.value);
      else errors.push(...withNote(r.errors, t));
    }
  }
  return errors.length ? { ok: false, errors } : ok(docs);
}

/** Reads and merges; `undefined` when no source yielded any document. Not validated (see cache.ts resolveConfig). */
export async function loadConfig(urls: readonly string[], deps: SourceDeps): Promise<Result<MergedConfig | undefined>> {
  const docs = await readSources(urls, deps);
  if (!docs.ok) return docs;
  if (docs.value.length === 0) return ok(undefined);
  const merge = deps.merge ?? (await defaultMerge());
  return ok(merge(docs.value));
}

export type { SourceText } from "./userdata.ts";
export { decodeUserData } from "./userdata.ts";
