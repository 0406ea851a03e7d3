/**
 * Merge config documents in source order with nodeadm's per-field rules
 * (the table in docs/config.md, "Merging"): later non-empty scalars win,
 * kubelet flags append, JSON and TOML deep-merge, BerthConfig tasks upsert
 * by name. Pure; never validates (validate.ts runs on the result).
 */
import type {
  AgentSettings,
  BerthSpec,
  ClusterDetails,
  ConfigDocument,
  ContainerdOptions,
  EnvironmentOptions,
  InstanceOptions,
  JsonObject,
  KubeletOptions,
  LocalStorageOptions,
  MergedConfig,
  NetworkOptions,
  NodeConfigSpec,
  RunSettings,
  Task,
} from "./types.ts";
import { canonicalTomlText, mergeTomlText } from "../util/toml.ts";
import { deepMerge, hasOwn, setOwn, type PlainObject } from "../util/json.ts";

/** JSON deep merge: objects merge recursively, everything else (arrays and null included) is replaced by `b`. */
export function mergeJson(a: JsonObject, b: JsonObject): JsonObject {
  return deepMerge(a, b);
}

// Later non-empty scalar wins. Strings: "" never overrides; other scalars override when defined.
function pick<T>(a: T | undefined, b: T | undefined): T | undefined {
  if (b === undefined || (b as unknown) === "") return a;
  return b;
}

function list<T>(a: T[] | undefined, b: T[] | undefined): T[] | undefined {
  return b !== undefined && b.length > 0 ? [...b] : a ? [...a] : undefined;
}

/** Assign only defined values, so merged objects carry no `undefined` keys. */
function compact<T extends object>(o: T): T {
  const out: PlainObject = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out as T;
}

function mergeCluster(a: ClusterDetails = {}, b: ClusterDetails = {}): ClusterDetails {
  return compact({
    name: pick(a.name, b.name),
    apiServerEndpoint: pick(a.apiServerEndpoint, b.apiServerEndpoint),
    certificateAuthority: pick(a.certificateAuthority, b.certificateAuthority),
    cidr: pick(a.cidr, b.cidr),
    enableOutpost: pick(a.enableOutpost, b.enableOutpost),
    id: pick(a.id, b.id),
  });
}

function mergeObj(a: JsonObject | undefined, b: JsonObject | undefined): JsonObject | undefined {
  return a || b ? mergeJson(a ?? {}, b ?? {}) : undefined;
}

function mergeKubelet(a: KubeletOptions = {}, b: KubeletOptions = {}): KubeletOptions {
  const flags = a.flags || b.flags ? [...(a.flags ?? []), ...(b.flags ?? [])] : undefined;
  return compact({ config: mergeObj(a.config, b.config), flags, maxPodsExpression: pick(a.maxPodsExpression, b.maxPodsExpression) });
}

function mergeContainerd(a: ContainerdOptions = {}, b: ContainerdOptions = {}): ContainerdOptions {
  let config: string | undefined;
  if (a.config && b.config) config = mergeTomlText(a.config, b.config);
  else if (a.config || b.config) config = canonicalTomlText((a.config || b.config)!);
  else config = pick(a.config, b.config);
  return compact({ config, baseRuntimeSpec: mergeObj(a.baseRuntimeSpec, b.baseRuntimeSpec) });
}

function mergeEnvironment(a: EnvironmentOptions | undefined, b: EnvironmentOptions | undefined): EnvironmentOptions | undefined {
  if (!a && !b) return undefined;
  const out: EnvironmentOptions = {};
  for (const src of [a ?? {}, b ?? {}])
    for (const [svc, vars] of Object.entries(src)) {
      const prev = hasOwn(out, svc) ? out[svc] : undefined;
      setOwn(out, svc, { ...(prev ?? {}), ...vars });
    }
  return out;
}

function mergeInstance(a: InstanceOptions = {}, b: InstanceOptions = {}): InstanceOptions {
  const ls = (x: LocalStorageOptions = {}, y: LocalStorageOptions = {}): LocalStorageOptions =>
    compact({
      strategy: pick(x.strategy, y.strategy),
      mountPath: pick(x.mountPath, y.mountPath),
      disabledMounts: list(x.disabledMounts, y.disabledMounts),
    });
  const net = (x: NetworkOptions = {}, y: NetworkOptions = {}): NetworkOptions =>
    compact({ nameservers: list(x.nameservers, y.nameservers), domains: list(x.domains, y.domains) });
  return compact({
    localStorage: a.localStorage || b.localStorage ? ls(a.localStorage, b.localStorage) : undefined,
    environment: mergeEnvironment(a.environment, b.environment),
    network: a.network || b.network ? net(a.network, b.network) : undefined,
  });
}

/** Merge two NodeConfig specs, `b` later. Pure; inputs are not mutated. */
export function mergeNodeConfigSpecs(a: NodeConfigSpec, b: NodeConfigSpec): NodeConfigSpec {
  return compact({
    cluster: a.cluster || b.cluster ? mergeCluster(a.cluster, b.cluster) : undefined,
    containerd: a.containerd || b.containerd ? mergeContainerd(a.containerd, b.containerd) : undefined,
    instance: a.instance || b.instance ? mergeInstance(a.instance, b.instance) : undefined,
    kubelet: a.kubelet || b.kubelet ? mergeKubelet(a.kubelet, b.kubelet) : undefined,
    featureGates: a.featureGates || b.featureGates ? { ...(a.featureGates ?? {}), ...(b.featureGates ?? {}) } : undefined,
  });
}

function mergeTasks(a: Task[] | undefined, b: Task[] | undefined): Task[] | undefined {
  if (!a && !b) return undefined;
  const out: Task[] = [...(a ?? [])];
  // Index by name (the first of each, as findIndex would find it): linear however many tasks there are.
  const at = new Map<string, number>();
  out.forEach((t, i) => {
    if (!at.has(t.name)) at.set(t.name, i);
  });
  for (const t of b ?? []) {
    const i = at.get(t.name);
    if (i !== undefined) out[i] = t;
    else {
      at.set(t.name, out.length);
      out.push(t);
    }
  }
  return out;
}

/** Merge two BerthConfig specs, `b` later. */
export function mergeBerthSpecs(a: BerthSpec, b: BerthSpec): BerthSpec {
  const run = a.run || b.run ? compact<RunSettings>({ ...(a.run ?? {}), ...(b.run ?? {}) }) : undefined;
  const agent = a.agent || b.agent ? compact<AgentSettings>({ ...(a.agent ?? {}), ...(b.agent ?? {}) }) : undefined;
  if (run && b.run?.sandboxImageArchive === "" && a.run?.sandboxImageArchive) run.sandboxImageArchive = a.run.sandboxImageArchive;
  return compact({
    run,
    tasks: mergeTasks(a.tasks, b.tasks),
    rebootAfterBootstrap: pick(a.rebootAfterBootstrap, b.rebootAfterBootstrap),
    agent,
    validation: pick(a.validation, b.validation),
  });
}

/** Merge every document in order (later wins); NodeConfig and BerthConfig merge separately. */
export function mergeConfigs(docs: ConfigDocument[]): MergedConfig {
  let nodeConfig: NodeConfigSpec = {};
  let berth: BerthSpec = {};
  const sources: string[] = [];
  for (const d of docs) {
    if (d.kind === "NodeConfig") nodeConfig = mergeNodeConfigSpecs(nodeConfig, d.spec);
    else berth = mergeBerthSpecs(berth, d.spec);
    if (!sources.includes(d.source)) sources.push(d.source);
  }
  return { nodeConfig, berth, sources };
}
