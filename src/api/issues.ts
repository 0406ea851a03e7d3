/**
 * zod's validation issues as berth's errors: each located at its key or
 * value in the YAML source (inside an embedded TOML text where the issue
 * says so), with a hint and, for a misspelt key or value, a suggestion.
 * Pure; never decides what is valid (the schemas do).
 */
import { isScalar, type Scalar } from "yaml";
import type * as z from "zod";
import type { BerthError, Location } from "../util/result.ts";
import type { CustomIssueParams } from "./schema-parts.ts";
import { suggest } from "./suggest.ts";
import { BERTH_API_VERSION, BERTH_KIND, NODECONFIG_API_VERSION, NODECONFIG_KIND } from "./types.ts";
import { at, formatPath, locate, nodeOffset, position, sourceText, type DocContext, type Found, type Segment } from "./yaml-doc.ts";

/** The document kinds berth reads, for messages. */
export const ACCEPTED = `${NODECONFIG_API_VERSION} ${NODECONFIG_KIND} or ${BERTH_API_VERSION} ${BERTH_KIND}`;

/** A value as an error message names it ("the string \"x\"", "a map"). */
export function describeValue(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "string") return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  if (typeof v === "boolean") return `the boolean ${v}`;
  if (typeof v === "number") return Number.isNaN(v) ? "NaN" : `the number ${v}`;
  if (v instanceof Date) return "a timestamp";
  if (v instanceof Uint8Array) return "binary data";
  if (typeof v === "object") return "a map";
  return typeof v;
}

const EXPECTED: Record<string, string> = {
  string: "a string",
  number: "a number",
  int: "an integer",
  boolean: "a boolean (true or false)",
  array: "a list",
  object: "a map",
  record: "a map",
  null: "null",
};

function knownKeys(schemaAt: z.ZodType | undefined): string[] {
  const def = (schemaAt as { _zod?: { def?: { type?: string; shape?: Record<string, unknown>; keyType?: unknown } } } | undefined)?._zod
    ?.def;
  if (!def) return [];
  if (def.shape) return Object.keys(def.shape);
  const keyType = def.keyType as { options?: unknown[] } | undefined;
  if (keyType?.options) return keyType.options.map(String);
  return [];
}

/** Walk the zod schema along a data path, looking through optional/pipe/refinement wrappers. */
function schemaAt(root: z.ZodType, path: readonly PropertyKey[]): z.ZodType | undefined {
  const unwrap = (s: unknown): unknown => {
    for (let i = 0; i < 10; i++) {
      const def = (s as { _zod?: { def?: { type?: string; innerType?: unknown; in?: unknown } } })?._zod?.def;
      if (def?.type === "optional" || def?.type === "default" || def?.type === "nullable") s = def.innerType;
      else if (def?.type === "pipe") s = def.in;
      else break;
    }
    return s;
  };
  let s: unknown = unwrap(root);
  for (const seg of path) {
    const def = (s as { _zod?: { def?: { type?: string; shape?: Record<string, unknown>; element?: unknown; valueType?: unknown } } })?._zod
      ?.def;
    if (def?.type === "object" && def.shape) s = def.shape[String(seg)];
    else if (def?.type === "array") s = def.element;
    else if (def?.type === "record") s = def.valueType;
    else return undefined;
    s = unwrap(s);
  }
  return s as z.ZodType | undefined;
}

/**
 * Map a position inside embedded TOML to the YAML source. Exact for literal
 * block scalars (`config: |`), which is how containerd.config is written in
 * practice; otherwise the error points at the start of the string.
 */
function tomlLocation(ctx: DocContext, found: Found, path: readonly PropertyKey[], tomlLine: number, tomlColumn: number): Location {
  const node = found.node as Scalar | undefined;
  const fallback = at(ctx, nodeOffset(node), path);
  if (!node || !isScalar(node) || node.type !== "BLOCK_LITERAL" || !node.range) return fallback;
  const header = position(ctx, node.range[0]);
  const lineNo = header.line + tomlLine;
  const lineStart = ctx.lc.lineStarts[lineNo - 1];
  if (lineStart === undefined || lineStart >= node.range[1]) return fallback;
  // Block content is indented uniformly; the first non-blank content line sets the indent.
  const body = ctx.text.slice(ctx.lc.lineStarts[header.line] ?? lineStart, node.range[1]);
  const firstLine = body.split("\n").find((l) => l.trim() !== "") ?? "";
  const indent = firstLine.length - firstLine.trimStart().length;
  return { source: ctx.source, line: lineNo, column: indent + tomlColumn, path: formatPath(path) };
}

function unknownKeyErrors(
  ctx: DocContext,
  schema: z.ZodType,
  issue: z.core.$ZodIssueUnrecognizedKeys,
  path: Segment[],
  found: Found,
): BerthError[] {
  const candidates = knownKeys(schemaAt(schema, path));
  const isGates = path.length === 2 && path[1] === "featureGates";
  const what = isGates ? "feature gate" : "field";
  const objName = path.length ? formatPath(path) : "the document";
  const allowed = candidates.length
    ? `${isGates ? "known feature gates" : `fields allowed in ${objName}`}: ${candidates.join(", ")}`
    : undefined;
  return issue.keys.map((k) => {
    const keyFound = locate(ctx, [...path, k]);
    const keyNode = keyFound.key ?? found.node;
    const s = suggest(k, candidates);
    return {
      code: isGates ? "config.unknown-feature-gate" : "config.unknown-field",
      message: `unknown ${what} \`${k}\`${s ? `; did you mean \`${s}\`?` : ""}`,
      where: at(ctx, nodeOffset(keyNode), [...path, k]),
      hint: allowed ?? `remove \`${k}\``,
    };
  });
}

function wrongTypeError(ctx: DocContext, issue: z.core.$ZodIssueInvalidType, path: Segment[], where: Location): BerthError {
  const expected = EXPECTED[issue.expected] ?? issue.expected;
  const input = issue.input;
  if (input === undefined) {
    return {
      code: "config.missing-field",
      message: `missing required field \`${String(path[path.length - 1])}\``,
      where,
      hint: `add \`${String(path[path.length - 1])}\``,
    };
  }
  const raw = sourceText(ctx, path);
  let hint = `write ${formatPath(path)} as ${expected}`;
  if (issue.expected === "string" && (typeof input === "boolean" || typeof input === "number" || input === null))
    hint =
      `quote the value${raw ? ` ("${raw.replace(/"/g, '\\"')}")` : ""}: YAML 1.1 reads yes/no/on/off/y/n/true/false as ` +
      `booleans and unquoted digits as numbers`;
  return { code: "config.wrong-type", message: `wrong type: expected ${expected}, got ${describeValue(input)}`, where, hint };
}

function invalidValueError(issue: z.core.$ZodIssueInvalidValue, path: Segment[], where: Location): BerthError {
  const allowed = issue.values.map(String);
  const got = issue.input;
  const s = typeof got === "string" ? suggest(got, allowed) : undefined;
  const last = path[path.length - 1];
  if (last === "apiVersion" || last === "kind")
    return {
      code: "config.unknown-kind",
      message: `${String(last)} must be ${allowed.map((a) => JSON.stringify(a)).join(" or ")}, got ${describeValue(got)}`,
      where,
      hint: `berth accepts ${ACCEPTED}`,
    };
  return {
    code: "config.invalid-enum",
    message:
      `invalid value ${typeof got === "string" ? JSON.stringify(got) : describeValue(got)}; allowed values: ` +
      `${allowed.join(", ")}${s ? `; did you mean \`${s}\`?` : ""}`,
    where,
    hint: `use one of: ${allowed.join(", ")}`,
  };
}

function outOfRangeError(issue: z.core.$ZodIssueTooSmall | z.core.$ZodIssueTooBig, path: Segment[], where: Location): BerthError {
  const bound = Number(issue.code === "too_small" ? issue.minimum : issue.maximum);
  const cmp = issue.code === "too_small" ? (issue.inclusive === false ? ">" : ">=") : issue.inclusive === false ? "<" : "<=";
  if (issue.origin === "array" || issue.origin === "string") {
    const unit = issue.origin === "array" ? "item" : "character";
    const word = issue.code === "too_small" ? "at least" : "at most";
    return {
      code: "config.out-of-range",
      message: `must have ${word} ${bound} ${unit}${bound === 1 ? "" : "s"}`,
      where,
      hint: `give ${formatPath(path)} ${word} ${bound} ${unit}${bound === 1 ? "" : "s"}`,
    };
  }
  return {
    code: "config.out-of-range",
    message: `value ${String(issue.input)} is out of range: must be ${cmp} ${bound}`,
    where,
    hint: `set ${formatPath(path)} to a value ${cmp} ${bound}`,
  };
}

/** One zod issue as BerthErrors located in the YAML source (an unknown-keys issue names several keys). */
export function issueToErrors(ctx: DocContext, schema: z.ZodType, issue: z.core.$ZodIssue): BerthError[] {
  const path = issue.path as Segment[];
  const found = locate(ctx, path);
  const where = at(ctx, nodeOffset(found.node), path);
  switch (issue.code) {
    case "unrecognized_keys":
      return unknownKeyErrors(ctx, schema, issue, path, found);
    case "invalid_type":
      return [wrongTypeError(ctx, issue, path, where)];
    case "invalid_value":
      return [invalidValueError(issue, path, where)];
    case "too_small":
    case "too_big":
      return [outOfRangeError(issue, path, where)];
    case "invalid_union":
      return [
        {
          code: "config.wrong-type",
          message: `wrong type: expected a JSON value (string, number, boolean, null, list or map), got ${describeValue(issue.input)}`,
          where,
          hint: "use only plain JSON-compatible values here (no timestamps, binary or NaN)",
        },
      ];
    case "custom": {
      const params = (issue.params ?? {}) as Partial<CustomIssueParams>;
      let w = where;
      if (params.tomlLine !== undefined) w = tomlLocation(ctx, found, path, params.tomlLine, params.tomlColumn ?? 1);
      return [
        { code: params.code ?? "config.invalid-value", message: issue.message, where: w, ...(params.hint ? { hint: params.hint } : {}) },
      ];
    }
    default:
      return [{ code: "config.invalid-value", message: issue.message, where, hint: `fix ${formatPath(path) || "the document"}` }];
  }
}
