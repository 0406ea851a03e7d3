/**
 * Merged config → nodeadm's Go JSON shape (config cache) and → YAML (`berth config dump`).
 *
 * Go's encoding/json never omits a struct-typed field, even with omitempty,
 * so cluster, containerd, instance.localStorage, instance.network and kubelet
 * are always present (possibly `{}`), while empty strings, nil pointers and
 * empty slices/maps are dropped. Struct fields come out in declaration order
 * and map keys sorted, as Go writes them.
 */
import { Document, isScalar, visit } from "yaml";
import {
  BERTH_API_VERSION,
  BERTH_KIND,
  NODECONFIG_API_VERSION,
  NODECONFIG_KIND,
  type AgentSettings,
  type BerthSpec,
  type RunSettings,
  type JsonObject,
  type JsonValue,
  type MergedConfig,
  type NodeConfigSpec,
} from "./types.ts";
import { sortKeys } from "../util/json.ts";

/** Recursively sort object keys (Go marshals maps sorted); `__proto__` keys stay data. */
export function sortJson(v: JsonValue): JsonValue {
  return sortKeys(v);
}

const nonEmptyList = <T>(v: T[] | undefined): v is T[] => v !== undefined && v.length > 0;
const nonEmptyMap = (v: object | undefined): v is object => v !== undefined && Object.keys(v).length > 0;

/** Set `o[k] = v` when v is non-empty in Go's omitempty sense. */
function put(o: JsonObject, k: string, v: JsonValue | undefined): void {
  if (v === undefined || v === "") return;
  if (Array.isArray(v) && v.length === 0) return;
  if (v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 0) return;
  o[k] = v;
}

interface Shape {
  /** Keep empty struct-typed fields as `{}` (Go JSON) or drop them (human-facing YAML). */
  keepEmptyStructs: boolean;
}

function specShape(spec: NodeConfigSpec, shape: Shape): JsonObject {
  const struct = (o: JsonObject, k: string, v: JsonObject) => {
    if (shape.keepEmptyStructs || Object.keys(v).length > 0) o[k] = v;
  };
  const c = spec.cluster ?? {};
  const cluster: JsonObject = {};
  put(cluster, "name", c.name);
  put(cluster, "apiServerEndpoint", c.apiServerEndpoint);
  // Go round-trips []byte through base64: line breaks in the input vanish.
  put(cluster, "certificateAuthority", c.certificateAuthority?.replace(/[\r\n]/g, ""));
  put(cluster, "cidr", c.cidr);
  if (c.enableOutpost !== undefined) cluster["enableOutpost"] = c.enableOutpost;
  put(cluster, "id", c.id);

  const ct = spec.containerd ?? {};
  const containerd: JsonObject = {};
  put(containerd, "config", ct.config);
  if (nonEmptyMap(ct.baseRuntimeSpec)) containerd["baseRuntimeSpec"] = sortJson(ct.baseRuntimeSpec);

  const inst = spec.instance ?? {};
  const ls = inst.localStorage ?? {};
  const localStorage: JsonObject = {};
  put(localStorage, "strategy", ls.strategy);
  put(localStorage, "mountPath", ls.mountPath);
  if (nonEmptyList(ls.disabledMounts)) localStorage["disabledMounts"] = [...ls.disabledMounts];
  const net = inst.network ?? {};
  const network: JsonObject = {};
  if (nonEmptyList(net.nameservers)) network["nameservers"] = [...net.nameservers];
  if (nonEmptyList(net.domains)) network["domains"] = [...net.domains];
  const instance: JsonObject = {};
  struct(instance, "localStorage", localStorage);
  if (nonEmptyMap(inst.environment)) {
    // Inner maps are not omitempty-filtered by Go (they are map values), only sorted.
    instance["environment"] = sortJson(inst.environment);
  }
  struct(instance, "network", network);

  const k = spec.kubelet ?? {};
  const kubelet: JsonObject = {};
  if (nonEmptyMap(k.config)) kubelet["config"] = sortJson(k.config);
  if (nonEmptyList(k.flags)) kubelet["flags"] = [...k.flags];
  put(kubelet, "maxPodsExpression", k.maxPodsExpression);

  const out: JsonObject = {};
  struct(out, "cluster", cluster);
  struct(out, "containerd", containerd);
  struct(out, "instance", instance);
  struct(out, "kubelet", kubelet);
  if (nonEmptyMap(spec.featureGates)) out["featureGates"] = sortJson(spec.featureGates);
  return out;
}

/** The spec as nodeadm serialises it into its config cache (`/run/eks/nodeadm/config.json`). */
export function toNodeadmJson(spec: NodeConfigSpec): JsonObject {
  return specShape(spec, { keepEmptyStructs: true });
}

// Field order of the dump: declaration order in types.ts, whatever order the sources used.
const RUN_ORDER: ReadonlyArray<keyof RunSettings> = ["criReadyTimeoutMs", "sandboxImageArchive", "unitJobTimeoutMs"];
const AGENT_ORDER: ReadonlyArray<keyof AgentSettings> = [
  "intervalMs",
  "fastIntervalMs",
  "probeTimeoutMs",
  "failureThreshold",
  "failureWindowMs",
  "minUptimeMs",
  "restartBudget",
  "budgetWindowMs",
  "backoffInitialMs",
  "backoffMaxMs",
  "kubeletHealthzUrl",
  "listenAddress",
];

function ordered<T extends object>(o: T, keys: ReadonlyArray<keyof T>): JsonObject {
  const out: JsonObject = {};
  for (const k of keys) if (o[k] !== undefined) out[k as string] = o[k] as JsonValue;
  return out;
}

function berthShape(b: BerthSpec): JsonObject {
  const out: JsonObject = {};
  if (b.run) out["run"] = ordered(b.run, RUN_ORDER);
  if (b.tasks)
    out["tasks"] = b.tasks.map((t): JsonObject =>
      t.script !== undefined ? { name: t.name, script: t.script } : { name: t.name, pullImages: [...t.pullImages] },
    );
  if (b.rebootAfterBootstrap !== undefined) out["rebootAfterBootstrap"] = b.rebootAfterBootstrap;
  if (b.agent) out["agent"] = ordered(b.agent, AGENT_ORDER);
  if (b.validation !== undefined) out["validation"] = b.validation;
  return out;
}

function yamlDoc(value: JsonObject): string {
  // Written as YAML 1.1 so strings like "yes" or "010" get quoted and read back as strings.
  const doc = new Document(value, { version: "1.1" });
  // A key "<<" written plainly would read back as a YAML 1.1 merge key: tag it a string so it stays a
  // key (the yaml library writes a "<<" key plainly whatever its quoting style, unless it is tagged).
  visit(doc, {
    Pair(_, pair) {
      if (isScalar(pair.key) && pair.key.value === "<<") pair.key.tag = "tag:yaml.org,2002:str";
    },
  });
  return doc.toString({ lineWidth: 0 });
}

/**
 * The merged config as YAML documents for `berth config dump`: one NodeConfig,
 * then a BerthConfig when any berth setting is present. Deterministic; decodes
 * back to the same merged config.
 */
export function encodeNodeConfigYaml(merged: MergedConfig): string {
  const parts = [
    yamlDoc({ apiVersion: NODECONFIG_API_VERSION, kind: NODECONFIG_KIND, spec: specShape(merged.nodeConfig, { keepEmptyStructs: false }) }),
  ];
  const berth = berthShape(merged.berth);
  if (Object.keys(berth).length > 0) parts.push(yamlDoc({ apiVersion: BERTH_API_VERSION, kind: BERTH_KIND, spec: berth }));
  return parts.map((p) => `---\n${p}`).join("");
}
