/**
 * Text → typed config documents, strictly, with every error located.
 *
 * YAML is read in 1.1 mode because that is what Kubernetes tooling
 * (sigs.k8s.io/yaml over go-yaml v2) sees: `yes`/`no`/`on`/`off`/`y`/`n` are
 * booleans, `010` is octal, `<<` merges. Like Kubernetes' YAML→JSON step,
 * nothing is coerced back to a string for string fields: `name: yes` is a
 * type error (with a hint to quote it). Differences from go-yaml v2 on purpose:
 * timestamps stay strings (go-yaml v2 also keeps them as strings when decoding
 * into untyped values), and duplicate keys are an error.
 *
 * JSON is a subset of YAML's flow style, so one parser serves both.
 */
import type { SchemaOptions } from "yaml";
import type * as z from "zod";
import { ok, type BerthError, type Result } from "../util/result.ts";
import { errorMessage } from "../util/errors.ts";
import { berthConfigDocumentSchema } from "./berth-schema.ts";
import { nodeConfigDocumentSchema } from "./schema.ts";
import { ACCEPTED, describeValue, issueToErrors } from "./issues.ts";
import { isDroppable } from "./validation-mode.ts";
import { attachLocator } from "./locate.ts";
import { at, locate, nodeOffset, type DocContext, type Segment } from "./yaml-doc.ts";
import { checkStructure, checkValues, DECODE_LIMITS, parseStream, type DecodeLimits } from "./yaml-limits.ts";
import { BERTH_API_VERSION, BERTH_KIND, NODECONFIG_API_VERSION, NODECONFIG_KIND, type ConfigDocument } from "./types.ts";

function yamlErrors(ctx: DocContext): BerthError[] {
  return ctx.doc.errors.map((e) => ({
    code: "config.yaml-syntax",
    message: `YAML syntax error: ${e.message.split("\n")[0]}`,
    where: at(ctx, e.pos[0]),
    hint: "fix the YAML (or JSON) syntax at this position",
  }));
}

function decodeOne(ctx: DocContext, index: number, limits: DecodeLimits): { errors: BerthError[]; doc?: ConfigDocument } {
  const syntax = [...yamlErrors(ctx), ...checkStructure(ctx, limits)];
  if (syntax.length) return { errors: syntax };
  let data: unknown;
  try {
    data = ctx.doc.toJS({ maxAliasCount: limits.aliases });
  } catch (e) {
    return {
      errors: [
        {
          code: "config.too-many-aliases",
          message: `cannot expand the aliases of YAML document ${index + 1}: ${errorMessage(e)}`,
          where: at(ctx, nodeOffset(ctx.doc.contents ?? undefined)),
          hint: "write the repeated values out, or reuse fewer of them (*name); berth refuses this to stay safe from alias bombs",
          cause: e,
        },
      ],
    };
  }
  const shape = checkValues(ctx, data, limits);
  if (shape) return { errors: [shape] };
  if (data === null || data === undefined) return { errors: [] }; // empty document
  const start = nodeOffset(ctx.doc.contents ?? undefined);
  if (typeof data !== "object" || Array.isArray(data) || data instanceof Date || data instanceof Uint8Array)
    return {
      errors: [
        {
          code: "config.not-a-map",
          message: `document ${index + 1} must be a map with apiVersion, kind and spec, got ${describeValue(data)}`,
          where: at(ctx, start),
          hint: `start the document with apiVersion and kind (${ACCEPTED})`,
        },
      ],
    };
  const obj = data as Record<string, unknown>;
  const apiVersion = obj["apiVersion"];
  const kind = obj["kind"];
  const missing = [apiVersion === undefined ? "apiVersion" : "", kind === undefined ? "kind" : ""].filter(Boolean);
  if (missing.length)
    return {
      errors: [
        {
          code: "config.missing-kind",
          message: `document ${index + 1} has no ${missing.join(" or ")}`,
          where: at(ctx, start),
          hint: `add apiVersion and kind: ${ACCEPTED}`,
        },
      ],
    };
  let schema: z.ZodType;
  let docKind: "NodeConfig" | "BerthConfig";
  if (apiVersion === NODECONFIG_API_VERSION && kind === NODECONFIG_KIND) {
    schema = nodeConfigDocumentSchema;
    docKind = "NodeConfig";
  } else if (apiVersion === BERTH_API_VERSION && kind === BERTH_KIND) {
    schema = berthConfigDocumentSchema;
    docKind = "BerthConfig";
  } else {
    const field = apiVersion === NODECONFIG_API_VERSION || apiVersion === BERTH_API_VERSION ? "kind" : "apiVersion";
    const f = locate(ctx, [field]);
    return {
      errors: [
        {
          code: "config.unknown-kind",
          message:
            `unsupported document type apiVersion ${describeValue(apiVersion).replace(/^the string /, "")}, kind ` +
            `${describeValue(kind).replace(/^the string /, "")}`,
          where: at(ctx, nodeOffset(f.node), [field]),
          hint: `berth accepts ${ACCEPTED}`,
        },
      ],
    };
  }
  // A `__proto__` key would be turned into an object's prototype by plain
  // assignment in the validator; nothing legitimate uses it, so refuse it.
  const proto = findProtoKey(obj, []);
  if (proto)
    return {
      errors: [
        {
          code: "config.reserved-key",
          message: "the key `__proto__` is not allowed",
          where: at(ctx, nodeOffset(locate(ctx, proto).key), proto),
          hint: "rename or remove the `__proto__` key",
        },
      ],
    };
  const input = dropNullFields(obj, []);
  let parsed = schema.safeParse(input, { reportInput: true });
  if (parsed.success) return { errors: [], doc: toDocument(ctx, docKind, parsed.data) };
  const errors = parsed.error.issues.flatMap((i) => issueToErrors(ctx, schema, i));
  if (!errors.every(isDroppable)) return { errors };
  // Unknown fields only: the document as nodeadm reads it, without them, for `--validate=warn`.
  // Dropping keys cannot reveal new problems, but a second failure is reported rather than trusted.
  dropUnknownKeys(input, parsed.error.issues);
  parsed = schema.safeParse(input, { reportInput: true });
  if (!parsed.success) return { errors: [...errors, ...parsed.error.issues.flatMap((i) => issueToErrors(ctx, schema, i))] };
  return { errors, doc: toDocument(ctx, docKind, parsed.data) };
}

function toDocument(ctx: DocContext, docKind: ConfigDocument["kind"], data: unknown): ConfigDocument {
  const spec = (data as { spec?: unknown }).spec ?? {};
  const doc: ConfigDocument =
    docKind === "NodeConfig"
      ? { kind: "NodeConfig", source: ctx.source, spec: spec }
      : // tasks: the schema's refinement guarantees exactly one of pullImages/script, i.e. the Task union.
        { kind: "BerthConfig", source: ctx.source, spec: spec };
  // Later steps (merge, render) report errors by field path; this lets them add the source line.
  attachLocator(doc, (path) => {
    const f = locate(ctx, path);
    return f.complete ? at(ctx, nodeOffset(f.node), path) : undefined;
  });
  return doc;
}

/** Delete the keys that `unrecognized_keys` issues name, in place (`data` is this decode's own copy). */
function dropUnknownKeys(data: unknown, issues: readonly z.core.$ZodIssue[]): void {
  for (const issue of issues) {
    if (issue.code !== "unrecognized_keys") continue;
    let target: unknown = data;
    for (const seg of issue.path)
      target = target !== null && typeof target === "object" ? (target as Record<PropertyKey, unknown>)[seg] : undefined;
    if (target === null || typeof target !== "object") continue;
    for (const k of issue.keys) delete (target as Record<string, unknown>)[k];
  }
}

/** Paths whose contents are free-form: null there is data, not "absent". */
const FREE_FORM = new Set(["metadata", "spec.kubelet.config", "spec.containerd.baseRuntimeSpec"]);

/**
 * Kubernetes' JSON decoding treats `field: null` (e.g. an empty `kubelet:`
 * section) as "not set", so berth does too; an environment variable written
 * as `FOO:` becomes "" as Go would decode it into map[string]string.
 */
function dropNullFields(v: Record<string, unknown>, path: string[]): Record<string, unknown> {
  const here = path.join(".");
  if (FREE_FORM.has(here)) return v;
  const isEnvVars = path.length === 4 && here.startsWith("spec.instance.environment.");
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    if (x === null) {
      if (isEnvVars) out[k] = "";
      continue;
    }
    out[k] =
      x !== null && typeof x === "object" && !Array.isArray(x) && Object.getPrototypeOf(x) === Object.prototype
        ? dropNullFields(x as Record<string, unknown>, [...path, k])
        : x;
  }
  return out;
}

function findProtoKey(v: unknown, path: Segment[]): Segment[] | undefined {
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const p = findProtoKey(v[i], [...path, i]);
      if (p) return p;
    }
  } else if (v !== null && typeof v === "object") {
    for (const k of Object.keys(v)) {
      if (k === "__proto__") return [...path, k];
      const p = findProtoKey((v as Record<string, unknown>)[k], [...path, k]);
      if (p) return p;
    }
  }
  return undefined;
}

function byPosition(a: BerthError, b: BerthError): number {
  return (
    (a.where?.line ?? 0) - (b.where?.line ?? 0) || (a.where?.column ?? 0) - (b.where?.column ?? 0) || a.message.localeCompare(b.message)
  );
}

/** One source text decoded: what both validation modes need (validation-mode.ts). */
export interface DecodedSource {
  /**
   * Every document that has no problem other than unknown fields, with those
   * fields dropped (what nodeadm reads), in order.
   */
  docs: ConfigDocument[];
  /** Every problem, each document's ordered by position: what strict decoding reports. */
  problems: BerthError[];
}

/**
 * Decode a YAML/JSON stream of NodeConfig and BerthConfig documents for
 * either validation mode. Empty documents are skipped. Input beyond `limits`
 * is refused with one problem before it is parsed or expanded. Never throws.
 */
export function decodeSource(text: string, source: string, limits: DecodeLimits = DECODE_LIMITS): DecodedSource {
  try {
    const parsed = parseStream(text, source, limits, dropTimestamp);
    if (!parsed.ok) return { docs: [], problems: parsed.errors };
    const { docs: list, lc } = parsed.value;
    const docs: ConfigDocument[] = [];
    const problems: BerthError[] = [];
    list.forEach((doc, i) => {
      const r = decodeOne({ doc, source, text, lc, aliases: new Map(), index: new WeakMap() }, i, limits);
      // One by one: spreading 100,000 errors into push() would overflow the stack.
      for (const e of r.errors.sort(byPosition)) problems.push(e);
      if (r.doc) docs.push(r.doc);
    });
    return { docs, problems };
  } catch (e) {
    const error: BerthError = {
      code: "config.internal",
      message: `could not decode the configuration: ${errorMessage(e)}`,
      where: { source },
      hint: "this is a bug in berth; please report it with the input",
      cause: e,
    };
    return { docs: [], problems: [error] };
  }
}

/**
 * Decode strictly: every problem in every document is an error (unknown
 * fields included), ordered by position within each document. Never throws.
 */
export function decodeDocuments(text: string, source: string, limits: DecodeLimits = DECODE_LIMITS): Result<ConfigDocument[]> {
  const d = decodeSource(text, source, limits);
  // Not fail(...problems): that spreads every error into one call's arguments.
  return d.problems.length ? { ok: false, errors: d.problems } : ok(d.docs);
}

type Tags = Exclude<NonNullable<SchemaOptions["customTags"]>, (tags: never) => unknown>;
function dropTimestamp(tags: Tags): Tags {
  return tags.filter((t) => typeof t === "string" || t.tag !== "tag:yaml.org,2002:timestamp");
}
