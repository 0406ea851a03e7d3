/**
 * Field path → source location, for errors found after decoding: merge-level
 * validation and rendering know the field path (`spec.kubelet.flags[1]`) but
 * not the file and line. decode.ts attaches a locator to every document it
 * returns; configLocator() asks the documents a config was merged from.
 *
 * The locators live in a WeakMap beside the documents rather than on them,
 * so documents stay plain data (compared, serialized) and a locator (which
 * holds the parsed YAML) is freed with its document.
 */
import type { BerthError, Location } from "../util/result.ts";
import type { ConfigDocument } from "./types.ts";

export type FieldLocator = (path: readonly (string | number)[]) => Location | undefined;

const locators = new WeakMap<ConfigDocument, FieldLocator>();

export function attachLocator(doc: ConfigDocument, locate: FieldLocator): void {
  locators.set(doc, locate);
}

/** A path as formatPath() writes it (`spec.a.b[0]["x.y"]`) back into segments; undefined when it is not one. */
export function parsePath(path: string): Array<string | number> | undefined {
  const out: Array<string | number> = [];
  const re = /\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/y;
  let i = 0;
  while (i < path.length) {
    re.lastIndex = i;
    const m = re.exec(path);
    if (!m || (m[1] !== undefined && i === 0 && path[0] === ".")) return undefined;
    if (m[1] !== undefined) out.push(m[1]);
    else if (m[2] !== undefined) out.push(Number(m[2]));
    else {
      try {
        out.push(JSON.parse(m[3]!) as string);
      } catch {
        return undefined;
      }
    }
    i = re.lastIndex;
  }
  return out;
}

/** Lists that merge by appending (merge.ts): an index into the merged list is an index into one document's. */
const APPENDED = "spec.kubelet.flags";

/**
 * Where a field of the merged config was set: the last document that sets it
 * (later sources win), else the nearest enclosing field some document sets.
 * `berth.…` paths (as the renderers name BerthConfig fields) are looked up as
 * the BerthConfig documents' `spec.…`.
 */
export function configLocator(docs: readonly ConfigDocument[]): (path: string) => Location | undefined {
  return (text) => {
    let path = parsePath(text);
    if (!path || path.length === 0) return undefined;
    let kind: ConfigDocument["kind"] | undefined;
    if (path[0] === "berth") {
      path = ["spec", ...path.slice(1)];
      kind = "BerthConfig";
    }
    const candidates = docs.filter((d) => locators.has(d) && (kind === undefined || d.kind === kind));
    const appended = APPENDED.split(".");
    if (path.length > appended.length && appended.every((s, i) => path[i] === s) && typeof path[appended.length] === "number") {
      // kubelet.flags[i] of the merged list: count through each document's own flags, in order.
      let i = path[appended.length] as number;
      for (const d of candidates) {
        const n = d.kind === "NodeConfig" ? (d.spec.kubelet?.flags?.length ?? 0) : 0;
        if (i < n) return locators.get(d)!([...appended, i, ...path.slice(appended.length + 1)]);
        i -= n;
      }
    }
    for (let len = path.length; len > 0; len--) {
      const prefix = path.slice(0, len);
      for (let j = candidates.length - 1; j >= 0; j--) {
        const loc = locators.get(candidates[j]!)!(prefix);
        if (loc) return loc;
      }
    }
    return undefined;
  };
}

/**
 * The errors, each with the source location of its field where it names a
 * field path but no line; the error's own path is kept.
 */
export function locateErrors(errors: BerthError[], locate: ((path: string) => Location | undefined) | undefined): BerthError[] {
  if (!locate) return errors;
  return errors.map((e) => {
    const path = e.where?.path;
    if (path === undefined || e.where?.line !== undefined) return e;
    const loc = locate(path);
    return loc ? { ...e, where: { ...loc, path } } : e;
  });
}
