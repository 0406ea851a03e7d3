/**
 * berth's input limits, and the YAML parse that enforces them before any
 * value is built: hostile input (a huge file, 1000 levels of nesting, an
 * alias inside its own anchor, an alias bomb, 100,000 keys) gets one clear
 * error instead of exhausting memory, time or the stack.
 *
 * In order, each step bounding the cost of the next: the byte size; the
 * number of keys and values (counted by the lexer alone); nesting (walked on
 * the concrete syntax tree, whose parser keeps its own stack, before the
 * composer, which recurses once per level, sees it); then, per document,
 * duplicate keys and aliases (one linear pass) and the values once aliases
 * are expanded (what validation will walk).
 */
import {
  Composer,
  Lexer,
  LineCounter,
  Parser,
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  type CST,
  type Document,
  type Node,
  type SchemaOptions,
} from "yaml";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import { at, locate, nodeOffset, type DocContext, type Segment } from "./yaml-doc.ts";

/**
 * What berth reads from one configuration source at most. Real NodeConfigs
 * are a few KiB, nest fewer than 10 levels and rarely use aliases; every
 * limit is orders of magnitude above that.
 */
export interface DecodeLimits {
  /** UTF-8 bytes of one source text (a file, or one part of the user data). */
  bytes: number;
  /** Nesting depth of maps and lists (the document's top map is level 1). */
  depth: number;
  /** Alias nodes (`*name`) in one document. */
  aliases: number;
  /**
   * Keys and values (scalars) in one source, counted before parsing, and
   * values in one document once aliases are expanded (what validation walks).
   * The parser needs ~2 KB of memory per value, so this, more than the byte
   * size, bounds the memory and time one source can cost.
   */
  values: number;
}

/**
 * bytes: 1 MiB, Kubernetes' own cap on a ConfigMap (EC2 user data is at most
 * 16 KiB before compression), room for large strings (scripts, CA bundles).
 * values: 50,000 keys and values, ~200 MB and ~0.5 s at worst; a NodeConfig
 * has dozens, a 20,000-variable environment map still fits.
 */
export const DECODE_LIMITS: Readonly<DecodeLimits> = { bytes: 1024 * 1024, depth: 100, aliases: 1000, values: 50_000 };

export const count = (n: number): string => n.toLocaleString("en-US");

/** Keys and values in a YAML text, counted by the lexer alone (no tree is built). */
function countScalars(text: string, stopAfter: number): number {
  let n = 0;
  for (const tok of new Lexer().lex(text)) {
    // A plain or block scalar follows the lexer's SCALAR marker; quoted scalars and aliases are one token.
    const c = tok[0];
    if (tok === "\x1f" || c === '"' || c === "'" || c === "*") if (++n > stopAfter) break;
  }
  return n;
}

/** Offset of the first map or list nested deeper than `max` in a parsed (CST) document, walked without recursion. */
function tooDeep(doc: CST.Document, max: number): number | undefined {
  const stack: Array<[CST.Token, number]> = doc.value ? [[doc.value, 1]] : [];
  while (stack.length) {
    const [tok, depth] = stack.pop()!;
    if (tok.type !== "block-map" && tok.type !== "block-seq" && tok.type !== "flow-collection") continue;
    if (depth > max) return tok.offset;
    for (const it of tok.items as Array<{ key?: CST.Token | null; value?: CST.Token }>) {
      if (it.key) stack.push([it.key, depth + 1]);
      if (it.value) stack.push([it.value, depth + 1]);
    }
  }
  return undefined;
}

type CustomTags = SchemaOptions["customTags"];

/**
 * Parse a YAML stream within `limits`: the documents (each may still carry
 * syntax errors in `doc.errors`) and the line counter of the text, or the one
 * error of the first limit exceeded.
 */
export function parseStream(
  text: string,
  source: string,
  limits: DecodeLimits,
  customTags: CustomTags,
): Result<{ docs: Document.Parsed[]; lc: LineCounter }> {
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > limits.bytes)
    return fail({
      code: "config.too-large",
      message: `the configuration is ${count(bytes)} bytes; berth reads at most ${count(limits.bytes)} bytes from one source`,
      where: { source },
      hint:
        "check that this is the intended file or user data: a NodeConfig is a few KiB (its largest field, the base64 CA " +
        "bundle, is a few KiB too)",
    });
  if (countScalars(text, limits.values) > limits.values)
    return fail({
      code: "config.too-many-values",
      message: `the configuration has more than ${count(limits.values)} keys and values; berth reads at most that many from one source`,
      where: { source },
      hint: "check that this is the intended file or user data: a NodeConfig has dozens of keys and values",
    });
  const lc = new LineCounter();
  const tokens = Array.from(new Parser(lc.addNewLine).parse(text));
  for (const t of tokens) {
    const deep = t.type === "document" ? tooDeep(t, limits.depth) : undefined;
    if (deep !== undefined) {
      const p = lc.linePos(deep);
      return fail({
        code: "config.too-deep",
        message: `maps and lists are nested more than ${limits.depth} levels deep here`,
        where: { source, line: p.line, column: p.col },
        hint: "a NodeConfig needs fewer than 10 levels; look for a run of unclosed [ or { (or ever deeper indentation)",
      });
    }
  }
  // Duplicate keys are checked by checkStructure (linear), not by the library (quadratic per map).
  // logLevel "error": the library would print its warnings (e.g. a map used as a key) on stderr, outside berth's error format.
  const composer = new Composer({ version: "1.1", uniqueKeys: false, customTags, logLevel: "error" });
  const docs = Array.from(composer.compose(tokens));
  tokens.length = 0; // the syntax tree is not needed any more; free it before validation
  return ok({ docs, lc });
}

// ---------------------------------------------------------------- one pass over a parsed document

/**
 * A node on checkStructure's stack: entered (anchor recorded, children
 * pushed), later left. Its path is a link to its parent's entry, built only
 * for a message.
 */
interface Entry {
  node: Node;
  parent: Entry | undefined;
  seg: Segment | undefined;
  leaving: boolean;
}

function pathOf(e: Entry | undefined, last?: Segment): Segment[] {
  const out: Segment[] = last === undefined ? [] : [last];
  for (let x = e; x; x = x.parent) if (x.seg !== undefined) out.push(x.seg);
  return out.reverse();
}

interface Walk {
  ctx: DocContext;
  limits: DecodeLimits;
  errors: BerthError[];
  /** The latest node carrying each anchor so far, in document order. */
  anchors: Map<string, Node>;
  /** Collections entered and not yet left: an alias to one of them is inside its own anchor. */
  open: Set<Node>;
  aliasCount: number;
}

/** Resolve one alias to its anchored node (recorded in ctx.aliases), or report why it cannot be. False: stop, too many aliases. */
function visitAlias(w: Walk, entry: Entry, name: string): boolean {
  const where = at(w.ctx, nodeOffset(entry.node), pathOf(entry));
  if (++w.aliasCount > w.limits.aliases) {
    w.errors.push({
      code: "config.too-many-aliases",
      message: `the document uses more than ${count(w.limits.aliases)} aliases (*name)`,
      where,
      hint: "write the repeated values out, or reuse fewer of them; berth refuses more aliases to stay safe from alias bombs",
    });
    return false;
  }
  const target = w.anchors.get(name);
  if (!target)
    w.errors.push({
      code: "config.unknown-alias",
      message: `alias *${name} has no anchor &${name} before it`,
      where,
      hint: `put the anchor (&${name}) on a value before the alias, or write the value out`,
    });
  else if (w.open.has(target))
    w.errors.push({
      code: "config.alias-cycle",
      message: `alias *${name} is inside the value anchored as &${name}, so that value would contain itself without end`,
      where,
      hint: `point the alias at a value outside &${name}, or write the value out`,
    });
  else w.ctx.aliases.set(entry.node, target);
  return true;
}

/** A map's keys: duplicates (by value, as YAML compares scalars) and maps or lists used as keys. Returns its children in order. */
function visitMapKeys(w: Walk, entry: Entry, items: ReadonlyArray<{ key: unknown; value: unknown }>): Entry[] {
  const children: Entry[] = [];
  const seen = new Set<unknown>();
  for (const p of items) {
    const key = (p.key ?? undefined) as Node | undefined;
    let name = "";
    if (isScalar(key)) {
      const k = key.value;
      name = String(k);
      // Scalars compare by value (YAML 1.1: `010` and `8` are the same key); NaN never equals itself.
      if ((k === null || typeof k !== "object") && !(typeof k === "number" && Number.isNaN(k))) {
        if (seen.has(k))
          w.errors.push({
            code: "config.duplicate-key",
            message: `duplicate key \`${name}\` in the same map`,
            where: at(w.ctx, nodeOffset(key), pathOf(entry, name)),
            hint: "remove one of the two entries; a YAML map cannot repeat a key",
          });
        else seen.add(k);
      }
    } else if (key?.range) {
      name = w.ctx.text.slice(key.range[0], Math.min(key.range[1], key.range[0] + 60));
      // As in Kubernetes' YAML-to-JSON step: JSON keys are strings, a map or list cannot be one.
      if (isMap(key) || isSeq(key))
        w.errors.push({
          code: "config.complex-key",
          message: `a ${isMap(key) ? "map" : "list"} cannot be a key`,
          where: at(w.ctx, nodeOffset(key), pathOf(entry)),
          hint: "write the key as a plain string",
        });
    }
    if (key) children.push({ node: key, parent: entry, seg: undefined, leaving: false });
    if (p.value) children.push({ node: p.value as Node, parent: entry, seg: name, leaving: false });
  }
  return children;
}

/**
 * One pass over the parsed document, in document order, without recursion:
 * duplicate keys (a hash per map, where the YAML library compares each key
 * with every earlier one), and every alias resolved to its anchor — refusing
 * an alias inside its own anchored node (an infinite value), an alias with no
 * anchor before it, and more aliases than the limit.
 */
export function checkStructure(ctx: DocContext, limits: DecodeLimits): BerthError[] {
  const w: Walk = { ctx, limits, errors: [], anchors: new Map(), open: new Set(), aliasCount: 0 };
  const stack: Entry[] = ctx.doc.contents ? [{ node: ctx.doc.contents, parent: undefined, seg: undefined, leaving: false }] : [];
  while (stack.length) {
    const entry = stack.pop()!;
    const node = entry.node;
    if (entry.leaving) w.open.delete(node);
    else if (isAlias(node)) {
      if (!visitAlias(w, entry, node.source)) break;
    } else {
      if (node.anchor) w.anchors.set(node.anchor, node);
      if (!isMap(node) && !isSeq(node)) continue;
      w.open.add(node);
      stack.push({ ...entry, leaving: true });
      const children: Entry[] = isMap(node)
        ? visitMapKeys(w, entry, node.items)
        : node.items.flatMap((item, i): Entry[] =>
            (isPair(item) ? [item.key, item.value] : [item])
              .filter((n) => n != null)
              .map((n) => ({ node: n as Node, parent: entry, seg: i, leaving: false })),
          );
      for (let i = children.length - 1; i >= 0; i--) stack.push(children[i]!);
    }
  }
  return w.errors;
}

/**
 * The values as validation will walk them (aliases expanded), without
 * recursion: more than `limits.values` of them, or nesting deeper than
 * `limits.depth` (a chain of aliases can nest deeper than the text does).
 */
export function checkValues(ctx: DocContext, data: unknown, limits: DecodeLimits): BerthError | undefined {
  let seen = 0;
  const stack: Array<[unknown, number, Segment[] | undefined]> = [[data, 1, []]];
  while (stack.length) {
    const [v, depth, path] = stack.pop()!;
    if (++seen > limits.values)
      return {
        code: "config.too-many-values",
        message: `the document has more than ${count(limits.values)} keys and values once its aliases are expanded`,
        where: at(ctx, nodeOffset(ctx.doc.contents ?? undefined)),
        hint: "use fewer aliases (*name) to repeat large values; berth refuses more to stay safe from alias bombs",
      };
    if (v === null || typeof v !== "object" || v instanceof Date || v instanceof Uint8Array) continue;
    if (depth > limits.depth) {
      const p = path ?? [];
      return {
        code: "config.too-deep",
        message: `maps and lists are nested more than ${limits.depth} levels deep once aliases are expanded`,
        where: at(ctx, nodeOffset(locate(ctx, p).node), p),
        hint: "a NodeConfig needs fewer than 10 levels; flatten the value or use fewer nested aliases",
      };
    }
    // Paths only while short: they are for the message, and building them for every value would cost memory.
    const sub = (k: Segment): Segment[] | undefined => (path && path.length < 12 ? [...path, k] : undefined);
    if (Array.isArray(v)) for (let i = 0; i < v.length; i++) stack.push([v[i], depth + 1, sub(i)]);
    else if (v instanceof Map) for (const [k, x] of v) stack.push([x, depth + 1, sub(String(k))]);
    else if (v instanceof Set) for (const x of v) stack.push([x, depth + 1, undefined]);
    else for (const k of Object.keys(v)) stack.push([(v as Record<string, unknown>)[k], depth + 1, sub(k)]);
  }
  return undefined;
}
