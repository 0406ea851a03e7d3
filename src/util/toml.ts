/**
 * TOML for containerd's config.toml: parse (smol-toml, integers as bigint),
 * deep-merge, a deterministic writer in go-toml v2's layout (byte-equal to
 * nodeadm's files), and the canonical text the config merge and cache carry.
 * Pure. Why a hand-written writer: docs/internals.md ("TOML").
 */

import { parse, stringify, TomlDate, TomlError } from "smol-toml";
import type { TomlTable, TomlValue } from "smol-toml";
import { compareKeys, deepMerge, hasOwn, isPlainObject, sortKeys } from "../util/json.ts";
import { errorMessage } from "../util/errors.ts";

export type { TomlTable, TomlValue };

export type TomlParseResult = { ok: true; value: TomlTable } | { ok: false; message: string; line?: number; column?: number };

/** smol-toml builds null-prototype tables; berth's own are plain objects. One kind keeps deep equality simple. */
function plainTable(t: TomlTable): TomlTable {
  const out: TomlTable = {};
  for (const [k, v] of Object.entries(t)) out[k] = plainValue(v);
  return out;
}

function plainValue(v: TomlValue): TomlValue {
  if (Array.isArray(v)) return v.map(plainValue);
  return isTomlTable(v) ? plainTable(v) : v;
}

/** Parse TOML text; integers become bigint, `__proto__`-style keys are rejected. */
export function parseToml(text: string): TomlParseResult {
  try {
    return { ok: true, value: plainTable(parse(text, { integersAsBigInt: true, unsafeKeyBehaviour: "throw" })) };
  } catch (e) {
    if (e instanceof TomlError) {
      // smol-toml's message embeds a code block after the first line; the first line is the reason.
      const reason = (e.message.split("\n")[0] ?? e.message).replace(/^Invalid TOML document: /, "");
      return { ok: false, message: reason, line: e.line, column: e.column };
    }
    return { ok: false, message: errorMessage(e) };
  }
}

/** A table (plain or null-prototype object); dates (TomlDate) and any other class instance are values. */
export function isTomlTable(v: TomlValue | undefined): v is TomlTable {
  return isPlainObject(v);
}

/**
 * The value at `keys` under `t` (`tomlAt(t, "plugins", "io.containerd.grpc.v1.cri")`);
 * undefined where a step is missing or not a table.
 */
export function tomlAt(t: TomlTable, ...keys: string[]): TomlValue | undefined {
  let cur: TomlValue | undefined = t;
  for (const k of keys) {
    if (!isTomlTable(cur) || !hasOwn(cur, k)) return undefined;
    cur = cur[k];
  }
  return cur;
}

/**
 * Deep merge: tables merge key by key, anything else (scalars, arrays, arrays
 * of tables) from `over` replaces what `base` had. Neither input is mutated.
 */
export function mergeToml(base: TomlTable, over: TomlTable): TomlTable {
  return deepMerge(base, over);
}

/**
 * Parse and re-serialise with smol-toml, keys sorted at every level (go-toml
 * sorts map keys; a fixed order keeps merging associative), so equal trees
 * give equal bytes. Unparseable text is returned as is.
 */
export function canonicalTomlText(text: string): string {
  try {
    return stringify(sortKeys(parse(text)));
  } catch {
    return text;
  }
}

/** `mergeToml` of two TOML texts, in `canonicalTomlText`'s form. If either side does not parse, `b` wins. */
export function mergeTomlText(a: string, b: string): string {
  try {
    return stringify(sortKeys(mergeToml(parse(a), parse(b))));
  } catch {
    return b;
  }
}

const BARE_KEY = /^[A-Za-z0-9_-]+$/;
// Characters that force a basic ("...") string: the quote itself, newlines, and
// control characters other than tab (TOML literal strings cannot hold them).
// eslint-disable-next-line no-control-regex
const NEEDS_BASIC = /['\r\n\u0000-\u0008\u000a-\u001f\u007f]/;

function quoteBasic(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 0;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (c < 0x20 || c === 0x7f) out += `\\u${c.toString(16).padStart(4, "0")}`;
    else out += ch;
  }
  return out + '"';
}

function quoteString(s: string): string {
  return NEEDS_BASIC.test(s) ? quoteBasic(s) : `'${s}'`;
}

function formatKey(k: string): string {
  return BARE_KEY.test(k) ? k : quoteString(k);
}

function formatFloat(f: number): string {
  if (Number.isNaN(f)) return "nan";
  if (f === Infinity) return "inf";
  if (f === -Infinity) return "-inf";
  if (Number.isInteger(f)) {
    // Keep it a float on re-read; large magnitudes print without exponent like go-toml.
    return Math.abs(f) < 1e21 ? f.toFixed(1) : `${BigInt(f).toString()}.0`;
  }
  // JS's shortest round-trip form is valid TOML (`1e-7`, `0.02`).
  return String(f);
}

function formatInline(v: TomlValue): string {
  if (typeof v === "string") return quoteString(v);
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "number") return formatFloat(v);
  if (typeof v === "boolean") return v ? "true" : "false";
  if (v instanceof TomlDate) return v.toISOString();
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return `[${v.map(formatInline).join(", ")}]`;
  if (isTomlTable(v)) {
    const keys = Object.keys(v).sort(compareKeys);
    return `{${keys.map((k) => `${formatKey(k)} = ${formatInline(v[k] as TomlValue)}`).join(", ")}}`;
  }
  // Temporal objects (never produced with our parse options) print as their TOML text.
  return String(v);
}

function isArrayOfTables(v: TomlValue | undefined): v is TomlTable[] {
  return Array.isArray(v) && v.length > 0 && v.every((e) => isTomlTable(e));
}

function writeTable(lines: string[], table: TomlTable, path: string[]): void {
  const keys = Object.keys(table).sort(compareKeys);
  const kvs = keys.filter((k) => !isTomlTable(table[k]) && !isArrayOfTables(table[k]));
  const subs = keys.filter((k) => isTomlTable(table[k]) || isArrayOfTables(table[k]));
  for (const k of kvs) lines.push(`${formatKey(k)} = ${formatInline(table[k] as TomlValue)}`);
  let first = true;
  for (const k of subs) {
    // A blank line separates tables, except right after a header that had no values.
    if (!first || kvs.length > 0) lines.push("");
    first = false;
    const sub = table[k] as TomlValue;
    const subPath = [...path, formatKey(k)];
    if (isTomlTable(sub)) {
      lines.push(`[${subPath.join(".")}]`);
      writeTable(lines, sub, subPath);
    } else if (isArrayOfTables(sub)) {
      sub.forEach((el, i) => {
        if (i > 0) lines.push("");
        lines.push(`[[${subPath.join(".")}]]`);
        writeTable(lines, el, subPath);
      });
    }
  }
}

/** Serialise a table deterministically in go-toml v2's layout (see the file comment). */
export function stringifyToml(table: TomlTable): string {
  const lines: string[] = [];
  writeTable(lines, table, []);
  return lines.length ? `${lines.join("\n")}\n` : "";
}
