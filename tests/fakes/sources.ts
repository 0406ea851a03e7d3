/**
 * Small stand-ins for tests of src/sources: an in-memory IMDS and minimal
 * decode/merge/validate/encode functions with the src/api signatures. They
 * are deliberately simple (not the real schema) so source tests do not
 * depend on src/api.
 */
import { parseAllDocuments } from "yaml";
import type { ImdsClient } from "../../src/facts/types.ts";
import type { ConfigDocument, JsonObject, JsonValue, MergedConfig, NodeConfigSpec } from "../../src/api/types.ts";
import { fail, ok, type BerthError, type Result } from "../../src/util/result.ts";
import { deepMerge } from "../../src/util/json.ts";

export class MemoryImds implements ImdsClient {
  constructor(
    public readonly data: Map<string, Uint8Array> = new Map(),
    public readonly failWith?: Error,
  ) {}
  static withUserData(bytes: Uint8Array | string | undefined): MemoryImds {
    const m = new MemoryImds();
    if (bytes !== undefined) m.data.set("user-data", typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes);
    return m;
  }
  async get(p: string): Promise<string | undefined> {
    const b = await this.getBytes(p);
    return b === undefined ? undefined : new TextDecoder().decode(b);
  }
  async getBytes(p: string): Promise<Uint8Array | undefined> {
    if (this.failWith) throw this.failWith;
    return this.data.get(p);
  }
}

export function fakeDecode(text: string, source: string): Result<ConfigDocument[]> {
  const out: ConfigDocument[] = [];
  const errors: BerthError[] = [];
  for (const doc of parseAllDocuments(text, { prettyErrors: true })) {
    if (doc.errors.length) {
      for (const e of doc.errors)
        errors.push({
          code: "config.yaml",
          message: e.message,
          where: { source, line: e.linePos?.[0].line ?? 1, column: e.linePos?.[0].col ?? 1 },
        });
      continue;
    }
    const v = doc.toJS() as unknown;
    if (v === null || v === undefined) continue;
    const o = v as { apiVersion?: unknown; kind?: unknown; spec?: unknown };
    if (o.kind === "NodeConfig" && o.apiVersion === "node.eks.aws/v1alpha1") out.push({ kind: "NodeConfig", source, spec: o.spec ?? {} });
    else if (o.kind === "BerthConfig" && o.apiVersion === "berth.dev/v1alpha1")
      out.push({ kind: "BerthConfig", source, spec: o.spec ?? {} });
    else
      errors.push({
        code: "config.kind",
        message: `unknown document ${String(o.apiVersion)}/${String(o.kind)}`,
        where: { source, line: 1, column: 1 },
      });
  }
  return errors.length ? fail(...errors) : ok(out);
}

export function fakeMerge(docs: ConfigDocument[]): MergedConfig {
  let nodeConfig: NodeConfigSpec = {};
  let berth = {};
  const sources: string[] = [];
  for (const d of docs) {
    if (d.kind === "NodeConfig") nodeConfig = deepMerge<NodeConfigSpec>(nodeConfig, d.spec);
    else berth = deepMerge<object>(berth, d.spec);
    if (!sources.includes(d.source)) sources.push(d.source);
  }
  return { nodeConfig, berth, sources };
}

export function fakeValidate(m: MergedConfig): Result<MergedConfig> {
  const c = m.nodeConfig.cluster ?? {};
  const missing = (["name", "apiServerEndpoint", "certificateAuthority", "cidr"] as const).filter((k) => !c[k]);
  if (missing.length)
    return fail(
      ...missing.map((k) => ({ code: "config.required", message: `spec.cluster.${k} is required`, where: { path: `spec.cluster.${k}` } })),
    );
  return ok(m);
}

/** nodeadm's Go-struct JSON shape, roughly: empty structs present, empty strings omitted. */
export function fakeEncode(spec: NodeConfigSpec): JsonObject {
  return {
    cluster: { ...(spec.cluster as JsonObject | undefined) },
    containerd: { ...(spec.containerd as JsonObject | undefined) },
    instance: {
      localStorage: { ...(spec.instance?.localStorage as JsonObject | undefined) },
      network: { ...(spec.instance?.network as JsonObject | undefined) },
      ...(spec.instance?.environment ? { environment: spec.instance.environment as JsonValue } : {}),
    },
    kubelet: { ...(spec.kubelet as JsonObject | undefined) },
    ...(spec.featureGates ? { featureGates: spec.featureGates } : {}),
  };
}

export const fakeApi = { decode: fakeDecode, merge: fakeMerge, validate: fakeValidate, encode: fakeEncode };
