/**
 * The in-memory shape of nodeadm's `node.eks.aws/v1alpha1` NodeConfig spec
 * (field names exactly as on the wire) and of berth's own extension document.
 *
 * These are the contracts between modules. `src/api/schema.ts` (zod) is the
 * source of truth for validation and the JSON Schema; it must produce values
 * assignable to these types (checked at compile time there).
 */

export type JsonPrimitive = string | number | boolean | null;
export type JsonValue = JsonPrimitive | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export const NODECONFIG_API_VERSION = "node.eks.aws/v1alpha1";
export const NODECONFIG_KIND = "NodeConfig";
/** berth's own API group, for what nodeadm has no field for (tasks, reboot, run and agent settings). */
export const BERTH_API_VERSION = "berth.dev/v1alpha1";
export const BERTH_KIND = "BerthConfig";

export type Feature = "InstanceIdNodeName" | "FastImagePull";
export type LocalStorageStrategy = "RAID0" | "RAID10" | "Mount";
export type DisabledMount = "Containerd" | "PodLogs" | "SOCI";
/** How unknown fields are treated (src/api/validation-mode.ts): rejected, or dropped with a warning as nodeadm drops them. */
export type ValidationMode = "strict" | "warn";

export interface ClusterDetails {
  name?: string;
  apiServerEndpoint?: string;
  /** Base64 of the PEM bundle, exactly as written in the NodeConfig (Go []byte). */
  certificateAuthority?: string;
  cidr?: string;
  enableOutpost?: boolean;
  id?: string;
}

export interface KubeletOptions {
  /** Inline KubeletConfiguration fragment; deep-merged, arrays replace. */
  config?: JsonObject;
  /** Extra kubelet flags; lists from several sources append. */
  flags?: string[];
  maxPodsExpression?: string;
}

export interface ContainerdOptions {
  /** TOML text merged over berth's rendered config.toml. */
  config?: string;
  /** OCI runtime spec fragment merged over the default base runtime spec. */
  baseRuntimeSpec?: JsonObject;
}

export interface LocalStorageOptions {
  strategy?: LocalStorageStrategy;
  mountPath?: string;
  disabledMounts?: DisabledMount[];
}

/** `default` → systemd Manager DefaultEnvironment; any other key → that service's drop-in. */
export type EnvironmentOptions = Record<string, Record<string, string>>;

export interface NetworkOptions {
  nameservers?: string[];
  domains?: string[];
}

export interface InstanceOptions {
  localStorage?: LocalStorageOptions;
  environment?: EnvironmentOptions;
  network?: NetworkOptions;
}

export interface NodeConfigSpec {
  cluster?: ClusterDetails;
  containerd?: ContainerdOptions;
  instance?: InstanceOptions;
  kubelet?: KubeletOptions;
  featureGates?: Partial<Record<Feature, boolean>>;
}

/** A post-bootstrap task, rendered as an ordered oneshot unit. */
export type Task = { name: string; pullImages: string[]; script?: undefined } | { name: string; script: string; pullImages?: undefined };

export interface AgentSettings {
  /** Probe interval while healthy, ms. */
  intervalMs?: number;
  /** Probe interval while bootstrapping or failing, ms. */
  fastIntervalMs?: number;
  /** Deadline of one probe, ms. */
  probeTimeoutMs?: number;
  /** Consecutive failed probes before a repair. */
  failureThreshold?: number;
  /** A component must be failing for at least this long before a repair, ms. */
  failureWindowMs?: number;
  /** A unit that (re)started less than this long ago is left alone, ms. */
  minUptimeMs?: number;
  /** Restarts allowed per component per budget window. */
  restartBudget?: number;
  budgetWindowMs?: number;
  /** Backoff between repairs of the same unit. */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  kubeletHealthzUrl?: string;
  /** host:port for /metrics and /status. */
  listenAddress?: string;
}

export interface RunSettings {
  /** Overall deadline for containerd's CRI to become ready, ms. */
  criReadyTimeoutMs?: number;
  /** Load the sandbox image from this OCI/docker archive when it is absent instead of pulling. */
  sandboxImageArchive?: string;
  /** Deadline for systemd jobs (start/restart), ms. */
  unitJobTimeoutMs?: number;
}

export interface BerthSpec {
  run?: RunSettings;
  tasks?: Task[];
  /** Reboot once after the first successful bootstrap. */
  rebootAfterBootstrap?: boolean;
  agent?: AgentSettings;
  /** `warn`: unknown fields are dropped with a warning instead of rejected (a `--validate` flag wins). */
  validation?: ValidationMode;
}

/** One decoded document with where it came from, in source order. */
export type ConfigDocument =
  { kind: "NodeConfig"; source: string; spec: NodeConfigSpec } | { kind: "BerthConfig"; source: string; spec: BerthSpec };

/** The merged result of every source. */
export interface MergedConfig {
  nodeConfig: NodeConfigSpec;
  berth: BerthSpec;
  /** Sources that contributed, in order. */
  sources: string[];
}
