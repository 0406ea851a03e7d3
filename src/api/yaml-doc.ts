/**
 * One parsed YAML document and the way back into its text: source
 * positions, field paths (`spec.kubelet.flags[1]`), and the node at a path,
 * so every error decode.ts reports can say file, line and column.
 */
import { isAlias, isMap, isPair, isScalar, isSeq, type Document, type LineCounter, type Node, type Pair, type YAMLMap } from "yaml";
import type { Location } from "../util/result.ts";

export type Segment = string | number;

/** Dotted path; list indices as `[i]`, awkward keys as `["k"]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else {
      const s = String(seg);
      if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(s)) out += out === "" ? s : `.${s}`;
      else out += `[${JSON.stringify(s)}]`;
    }
  }
  return out;
}

/** One parsed YAML document plus what is needed to point into the source text. */
export interface DocContext {
  doc: Document.Parsed;
  source: string;
  text: string;
  lc: LineCounter;
  /** Each alias node's anchored node, found once by checkStructure(). */
  aliases: Map<Node, Node>;
  /** Per map, its pairs by key text (the first of each), built on first use: locate() stays O(depth). */
  index: WeakMap<YAMLMap, Map<string, Pair>>;
}

export function position(ctx: DocContext, offset: number): { line: number; column: number } {
  const p = ctx.lc.linePos(Math.max(0, Math.min(offset, ctx.text.length)));
  return { line: p.line, column: p.col };
}

export function at(ctx: DocContext, offset: number, path?: readonly PropertyKey[]): Location {
  const loc: Location = { source: ctx.source, ...position(ctx, offset) };
  if (path && path.length) loc.path = formatPath(path);
  return loc;
}

function resolveAlias(ctx: DocContext, node: unknown): unknown {
  // An alias points at its anchor (found by checkStructure, which also refused cycles).
  return isAlias(node) ? ctx.aliases.get(node) : node;
}

function pairsByKey(ctx: DocContext, map: YAMLMap): Map<string, Pair> {
  let m = ctx.index.get(map);
  if (!m) {
    m = new Map();
    for (const p of map.items) {
      const k = isPair(p) ? keyString(p.key) : undefined;
      if (k !== undefined && !m.has(k)) m.set(k, p);
    }
    ctx.index.set(map, m);
  }
  return m;
}

function keyString(key: unknown): string | undefined {
  if (isScalar(key)) return String(key.value);
  return undefined;
}

export interface Found {
  /** Deepest node reached along the path. */
  node: Node | undefined;
  /** The key node of the last pair traversed, if the last step was a map key. */
  key: Node | undefined;
  complete: boolean;
}

export function locate(ctx: DocContext, path: readonly PropertyKey[]): Found {
  let node: Node | undefined = ctx.doc.contents ?? undefined;
  let key: Node | undefined;
  for (const seg of path) {
    const cur = resolveAlias(ctx, node);
    if (isMap(cur)) {
      const pair = pairsByKey(ctx, cur).get(String(seg));
      if (!pair) return { node, key, complete: false };
      key = (pair.key ?? undefined) as Node | undefined;
      const v = (pair.value ?? undefined) as Node | undefined;
      if (!v) return { node: key ?? node, key, complete: false };
      node = v;
    } else if (isSeq(cur) && typeof seg === "number") {
      const item = cur.items[seg] as Node | undefined;
      if (!item) return { node, key, complete: false };
      node = item;
      key = undefined;
    } else return { node, key, complete: false };
  }
  return { node, key, complete: true };
}

export function nodeOffset(node: Node | undefined): number {
  return node?.range?.[0] ?? 0;
}

/** The source text of the node at `path`, to quote the user's own spelling in messages. */
export function sourceText(ctx: DocContext, path: readonly PropertyKey[]): string | undefined {
  const f = locate(ctx, path);
  if (!f.complete || !f.node?.range) return undefined;
  const s = ctx.text.slice(f.node.range[0], f.node.range[1]).trim();
  return s.length > 0 && s.length <= 60 && !s.includes("\n") ? s : undefined;
}
