/**
 * zod v4 schemas for NodeConfig and BerthConfig: the single source of truth for
 * strict decoding (decode.ts) and for the shipped JSON Schema (json-schema.ts).
 *
 * Field-level rules live here; rules that need the merged config live in
 * validate.ts. Refinements report custom issues whose `params` carry a stable
 * `code` (and, for TOML, the position inside the TOML text) so decode.ts can
 * turn them into BerthErrors with precise locations.
 */
import { isIP, isIPv4, isIPv6 } from "node:net";
import * as z from "zod";
import { parse as parseToml } from "smol-toml";
import {
  BERTH_API_VERSION,
  BERTH_KIND,
  NODECONFIG_API_VERSION,
  NODECONFIG_KIND,
  type BerthSpec,
  type JsonObject,
  type NodeConfigSpec,
  type Task,
} from "./types.ts";

export const FEATURES = ["InstanceIdNodeName", "FastImagePull"] as const;
export const LOCAL_STORAGE_STRATEGIES = ["RAID0", "RAID10", "Mount"] as const;
export const DISABLED_MOUNTS = ["Containerd", "PodLogs", "SOCI"] as const;

/** The `params` of a custom issue raised by a refinement here. */
export interface CustomIssueParams {
  code: string;
  hint?: string;
  /** 1-based position inside an embedded TOML text (containerd.config). */
  tomlLine?: number;
  tomlColumn?: number;
}

// ---------------------------------------------------------------- validators
// Compiled once at import; each call only runs them.
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const DNS_LABEL_RE = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;
const PORT_RE = /^\d{1,5}$/;

export function isCidr(s: string): boolean {
  const slash = s.indexOf("/");
  if (slash < 0 || slash !== s.lastIndexOf("/")) return false;
  const ip = s.slice(0, slash);
  const bits = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bits)) return false;
  const n = Number(bits);
  if (isIPv4(ip)) return n <= 32;
  if (isIPv6(ip) && !ip.includes("%")) return n <= 128;
  return false;
}

export function isHttpUrl(s: string): boolean {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return false;
  }
  return (u.protocol === "https:" || u.protocol === "http:") && u.hostname !== "";
}

/** Go's encoding/base64 StdEncoding as used for []byte in JSON: padded; CR/LF are ignored. */
export function isStdBase64(s: string): boolean {
  const t = s.replace(/[\r\n]/g, "");
  return t.length > 0 && BASE64_RE.test(t);
}

/** `host:port` or `[v6]:port`; an empty host means every address. */
export function isHostPort(s: string): boolean {
  let host: string;
  let port: string;
  if (s.startsWith("[")) {
    const end = s.indexOf("]");
    if (end < 0 || s[end + 1] !== ":") return false;
    host = s.slice(1, end);
    port = s.slice(end + 2);
    if (!isIPv6(host)) return false;
  } else {
    const colon = s.lastIndexOf(":");
    if (colon < 0) return false;
    host = s.slice(0, colon);
    port = s.slice(colon + 1);
    if (host.includes(":")) return false;
    if (host !== "" && !isIPv4(host) && !/^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$/.test(host)) return false;
  }
  return PORT_RE.test(port) && Number(port) <= 65535;
}

const custom = (params: CustomIssueParams, message: string, input: unknown, path?: PropertyKey[]) => ({
  code: "custom" as const,
  message,
  input,
  params,
  ...(path ? { path } : {}),
});

const quote = (v: unknown): string => (typeof v === "string" ? JSON.stringify(v) : String(v));

// ---------------------------------------------------------------- NodeConfig
const jsonObject = z.record(z.string(), z.json());

const cidr = z.string().superRefine((v, ctx) => {
  if (!isCidr(v))
    ctx.addIssue(
      custom(
        { code: "config.invalid-cidr", hint: "write the service CIDR in address/prefix form, e.g. 10.100.0.0/16 or fd00::/108" },
        `${quote(v)} is not a valid IPv4 or IPv6 CIDR`,
        v,
      ),
    );
});

const httpUrl = (what: string, example: string) =>
  z.string().superRefine((v, ctx) => {
    if (!isHttpUrl(v))
      ctx.addIssue(
        custom({ code: "config.invalid-url", hint: `use an absolute http(s) URL, e.g. ${example}` }, `${quote(v)} is not a valid http(s) URL for ${what}`, v),
      );
  });

const base64 = z.string().superRefine((v, ctx) => {
  if (!isStdBase64(v)) {
    const pem = v.includes("-----BEGIN");
    ctx.addIssue(
      custom(
        {
          code: "config.invalid-base64",
          hint: pem
            ? "this looks like a raw PEM; base64-encode the whole PEM bundle (e.g. `base64 -w0 ca.crt`)"
            : "give the cluster CA bundle as standard padded base64 (e.g. the output of `base64 -w0 ca.crt`)",
        },
        "certificateAuthority is not valid base64",
        v,
      ),
    );
  }
});

const ipAddress = (what: string) =>
  z.string().superRefine((v, ctx) => {
    if (isIP(v) === 0)
      ctx.addIssue(custom({ code: "config.invalid-ip", hint: `give ${what} as a plain IPv4 or IPv6 address` }, `${quote(v)} is not an IP address`, v));
  });

const kubeletFlag = z.string().superRefine((v, ctx) => {
  if (!v.startsWith("--"))
    ctx.addIssue(
      custom(
        { code: "config.invalid-flag", hint: "write each kubelet flag in long form, e.g. --node-labels=foo=bar" },
        `kubelet flag ${quote(v)} must start with "--"`,
        v,
      ),
    );
});

const containerdToml = z.string().superRefine((v, ctx) => {
  try {
    parseToml(v);
  } catch (e) {
    const te = e as { line?: unknown; column?: unknown; message?: unknown };
    const line = typeof te.line === "number" ? te.line : undefined;
    const column = typeof te.column === "number" ? te.column : undefined;
    // smol-toml's message carries a code frame after the first line; keep the sentence only.
    const first = String(te.message ?? e).split("\n")[0]!.replace(/^Invalid TOML document:\s*/, "");
    ctx.addIssue(
      custom(
        {
          code: "config.invalid-toml",
          hint: "containerd.config must be a valid TOML document (containerd config.toml syntax)",
          ...(line !== undefined ? { tomlLine: line } : {}),
          ...(column !== undefined ? { tomlColumn: column } : {}),
        },
        `containerd.config is not valid TOML${line !== undefined ? ` (TOML line ${line}, column ${column ?? 1})` : ""}: ${first}`,
        v,
      ),
    );
  }
});

/** Free-form KubeletConfiguration fragment; the few fields berth itself reads are type-checked. */
const kubeletConfig = jsonObject.superRefine((v, ctx) => {
  const maxPods = v["maxPods"];
  if (maxPods !== undefined && !(typeof maxPods === "number" && Number.isInteger(maxPods) && maxPods >= 1))
    ctx.addIssue(
      custom({ code: "config.invalid-value", hint: "set maxPods to a whole number of at least 1" }, `maxPods must be an integer >= 1, got ${quote(maxPods)}`, maxPods, ["maxPods"]),
    );
  const dns = v["clusterDNS"];
  if (dns !== undefined) {
    if (!Array.isArray(dns))
      ctx.addIssue(custom({ code: "config.wrong-type", hint: "write clusterDNS as a list, e.g. [10.100.0.10]" }, "clusterDNS must be a list of IP addresses", dns, ["clusterDNS"]));
    else
      dns.forEach((ip, i) => {
        if (typeof ip !== "string" || isIP(ip) === 0)
          ctx.addIssue(
            custom({ code: "config.invalid-ip", hint: "give each cluster DNS server as a plain IPv4 or IPv6 address" }, `${quote(ip)} is not an IP address`, ip, ["clusterDNS", i]),
          );
      });
  }
});

export const clusterDetailsSchema = z
  .strictObject({
    name: z.string().describe("Name of the EKS cluster.").optional(),
    apiServerEndpoint: httpUrl("apiServerEndpoint", "https://ABCD.gr7.us-west-2.eks.amazonaws.com").describe("URL of the cluster's Kubernetes API server.").optional(),
    certificateAuthority: base64.describe("Base64 of the cluster CA PEM bundle.").optional(),
    cidr: cidr.describe("The cluster's service CIDR (IPv4 or IPv6).").optional(),
    enableOutpost: z.boolean().describe("The cluster is a local cluster on AWS Outposts.").optional(),
    id: z.string().describe("Cluster ID; required for Outposts local clusters.").optional(),
  })
  .describe("Details of the cluster this node joins.");

export const kubeletOptionsSchema = z
  .strictObject({
    config: kubeletConfig.describe("Inline KubeletConfiguration fragment, deep-merged over the rendered config (lists replace).").optional(),
    flags: z.array(kubeletFlag).describe("Extra kubelet command-line flags; appended across sources.").optional(),
    maxPodsExpression: z.string().describe("CEL expression computing maxPods.").optional(),
  })
  .describe("kubelet options.");

export const containerdOptionsSchema = z
  .strictObject({
    config: containerdToml.describe("TOML merged over the rendered containerd config.toml.").optional(),
    baseRuntimeSpec: jsonObject.describe("OCI runtime spec fragment merged over the default base runtime spec.").optional(),
  })
  .describe("containerd options.");

export const localStorageOptionsSchema = z
  .strictObject({
    strategy: z.enum(LOCAL_STORAGE_STRATEGIES).describe("How to use local instance-store disks.").optional(),
    mountPath: z.string().describe("Where the local storage is mounted.").optional(),
    disabledMounts: z.array(z.enum(DISABLED_MOUNTS)).describe("Directories not to bind onto local storage.").optional(),
  })
  .describe("Instance-store configuration.");

export const instanceOptionsSchema = z
  .strictObject({
    localStorage: localStorageOptionsSchema.optional(),
    environment: z
      .record(z.string(), z.record(z.string(), z.string()))
      .describe("Environment variables: `default` for every systemd unit, otherwise per service name.")
      .optional(),
    network: z
      .strictObject({
        nameservers: z.array(ipAddress("each nameserver")).describe("DNS servers for the node's resolver.").optional(),
        domains: z.array(z.string()).describe("DNS search domains.").optional(),
      })
      .describe("Node network options.")
      .optional(),
  })
  .describe("Instance options.");

export const nodeConfigSpecSchema = z
  .strictObject({
    cluster: clusterDetailsSchema.optional(),
    containerd: containerdOptionsSchema.optional(),
    instance: instanceOptionsSchema.optional(),
    kubelet: kubeletOptionsSchema.optional(),
    featureGates: z.partialRecord(z.enum(FEATURES), z.boolean()).describe("Feature gates of the node agent.").optional(),
  })
  .describe("NodeConfig spec.");

const metadataSchema = z
  .looseObject({
    name: z.string().optional(),
    namespace: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  })
  .describe("Object metadata (ignored by berth).");

export const nodeConfigDocumentSchema = z
  .strictObject({
    apiVersion: z.literal(NODECONFIG_API_VERSION).describe("API version of the document."),
    kind: z.literal(NODECONFIG_KIND).describe("Document kind."),
    metadata: metadataSchema.optional(),
    spec: nodeConfigSpecSchema.optional(),
  })
  .describe("nodeadm-compatible node configuration (node.eks.aws/v1alpha1 NodeConfig).");

// ---------------------------------------------------------------- BerthConfig
const ms = (min: number, max: number, description: string) =>
  z.int().min(min).max(max).describe(`${description} Milliseconds, ${min}..${max}.`);
const HOUR = 3_600_000;

export const taskSchema = z
  .strictObject({
    name: z
      .string()
      .regex(DNS_LABEL_RE, { error: "task name must be a DNS label: lower-case letters, digits and '-', 1..63 characters, starting and ending alphanumeric" })
      .describe("Unique task name (DNS label); becomes part of the unit name."),
    pullImages: z.array(z.string().min(1)).min(1).describe("Container images to pull.").optional(),
    script: z.string().min(1).describe("Shell script to run.").optional(),
  })
  .superRefine((t, ctx) => {
    const n = (t.pullImages !== undefined ? 1 : 0) + (t.script !== undefined ? 1 : 0);
    if (n !== 1)
      ctx.addIssue(
        custom(
          { code: "config.invalid-task", hint: "give each task exactly one of `pullImages` or `script`" },
          n === 0 ? `task ${quote(t.name)} has neither pullImages nor script` : `task ${quote(t.name)} has both pullImages and script`,
          t,
        ),
      );
  })
  .describe("A post-bootstrap task: exactly one of pullImages or script.");

export const tasksSchema = z.array(taskSchema).superRefine((tasks, ctx) => {
  const seen = new Map<string, number>();
  tasks.forEach((t, i) => {
    const prev = seen.get(t.name);
    if (prev !== undefined)
      ctx.addIssue(
        custom({ code: "config.duplicate-task", hint: "give every task a unique name" }, `task name ${quote(t.name)} is already used by tasks[${prev}]`, t.name, [i, "name"]),
      );
    else seen.set(t.name, i);
  });
});

export const agentSettingsSchema = z
  .strictObject({
    intervalMs: ms(100, HOUR, "Probe interval while healthy.").optional(),
    fastIntervalMs: ms(100, HOUR, "Probe interval while bootstrapping or failing.").optional(),
    probeTimeoutMs: ms(1, 10 * 60_000, "Deadline of one probe.").optional(),
    failureThreshold: z.int().min(1).max(1000).describe("Consecutive failed probes before a repair.").optional(),
    failureWindowMs: ms(0, HOUR, "Minimum time a component must be failing before a repair.").optional(),
    minUptimeMs: ms(0, HOUR, "Units that (re)started more recently than this are left alone.").optional(),
    restartBudget: z.int().min(1).max(1000).describe("Restarts allowed per component per budget window.").optional(),
    budgetWindowMs: ms(1000, 24 * HOUR, "Restart budget window.").optional(),
    backoffInitialMs: ms(1, HOUR, "First backoff between repairs of the same unit.").optional(),
    backoffMaxMs: ms(1, 24 * HOUR, "Maximum backoff between repairs of the same unit.").optional(),
    kubeletHealthzUrl: httpUrl("kubeletHealthzUrl", "http://127.0.0.1:10248/healthz").describe("kubelet health endpoint.").optional(),
    listenAddress: z
      .string()
      .superRefine((v, ctx) => {
        if (!isHostPort(v))
          ctx.addIssue(
            custom({ code: "config.invalid-address", hint: "write host:port, e.g. 127.0.0.1:9100 or [::1]:9100" }, `${quote(v)} is not a valid host:port listen address`, v),
          );
      })
      .describe("host:port for /metrics and /status.")
      .optional(),
  })
  .superRefine((a, ctx) => {
    if (a.backoffInitialMs !== undefined && a.backoffMaxMs !== undefined && a.backoffInitialMs > a.backoffMaxMs)
      ctx.addIssue(
        custom({ code: "config.invalid-value", hint: "make backoffMaxMs at least backoffInitialMs" }, `backoffInitialMs (${a.backoffInitialMs}) is greater than backoffMaxMs (${a.backoffMaxMs})`, a, ["backoffInitialMs"]),
      );
    if (a.probeTimeoutMs !== undefined && a.intervalMs !== undefined && a.probeTimeoutMs > a.intervalMs)
      ctx.addIssue(
        custom({ code: "config.invalid-value", hint: "make probeTimeoutMs at most intervalMs" }, `probeTimeoutMs (${a.probeTimeoutMs}) is greater than intervalMs (${a.intervalMs})`, a, ["probeTimeoutMs"]),
      );
  })
  .describe("Health agent settings.");

export const runSettingsSchema = z
  .strictObject({
    criReadyTimeoutMs: ms(1000, HOUR, "Deadline for containerd's CRI to become ready.").optional(),
    sandboxImageArchive: z
      .string()
      .startsWith("/", { error: "sandboxImageArchive must be an absolute path" })
      .describe("Load the sandbox image from this OCI/docker archive when absent instead of pulling.")
      .optional(),
    unitJobTimeoutMs: ms(1000, HOUR, "Deadline for systemd start/restart jobs.").optional(),
  })
  .describe("Settings of `berth init`'s run phase.");

export const berthSpecSchema = z
  .strictObject({
    run: runSettingsSchema.optional(),
    tasks: tasksSchema.describe("Ordered post-bootstrap tasks.").optional(),
    rebootAfterBootstrap: z.boolean().describe("Reboot once after the first successful bootstrap.").optional(),
    agent: agentSettingsSchema.optional(),
  })
  .describe("BerthConfig spec.");

export const berthConfigDocumentSchema = z
  .strictObject({
    apiVersion: z.literal(BERTH_API_VERSION).describe("API version of the document."),
    kind: z.literal(BERTH_KIND).describe("Document kind."),
    metadata: metadataSchema.optional(),
    spec: berthSpecSchema.optional(),
  })
  .describe("berth's own settings (berth.dev/v1alpha1 BerthConfig): tasks, run and agent settings.");

// ---------------------------------------------------------------- compile-time checks
// The schemas must produce values assignable to the hand-written contracts in types.ts.
type Assert<T extends true> = T;
type Extends<A, B> = [A] extends [B] ? true : false;
type InferredNodeSpec = z.infer<typeof nodeConfigSpecSchema>;
type InferredBerthSpec = z.infer<typeof berthSpecSchema>;
/** Task is a union in types.ts; the schema enforces "exactly one" with a refinement instead. */
type WideTask = { name: string; pullImages?: string[]; script?: string };
export type _NodeSpecCheck = Assert<Extends<InferredNodeSpec, NodeConfigSpec>>;
export type _BerthSpecCheck = Assert<Extends<Omit<InferredBerthSpec, "tasks">, Omit<BerthSpec, "tasks">>>;
export type _TaskCheck = Assert<Extends<z.infer<typeof taskSchema>, WideTask>>;
export type _TaskBackCheck = Assert<Extends<Task, WideTask>>;
export type _JsonCheck = Assert<Extends<z.infer<typeof jsonObject>, JsonObject>>;
