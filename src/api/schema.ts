/**
 * zod v4 schemas for NodeConfig and BerthConfig: the single source of truth for
 * strict decoding (decode.ts) and for the shipped JSON Schema (json-schema.ts).
 *
 * Field-level rules live here; rules that need the merged config live in
 * validate.ts. Refinements report custom issues whose `params` carry a stable
 * `code` (and, for TOML, the position inside the TOML text) so decode.ts can
 * turn them into BerthErrors with precise locations.
 */
import { isIP } from "node:net";
import * as z from "zod";
import { parseToml } from "../render/toml.ts";
import { MAX_INT32 } from "../render/max-pods.ts";
import {
  flagHasControlCharacter,
  isCidr,
  isEnvironmentName,
  isEnvironmentService,
  isHostPort,
  isHttpUrl,
  isImageReference,
  isNetworkEntry,
  isStdBase64,
  TASK_NAME,
} from "./rules.ts";
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
export const VALIDATION_MODES = ["strict", "warn"] as const;

/** The `params` of a custom issue raised by a refinement here. */
export interface CustomIssueParams {
  code: string;
  hint?: string;
  /** 1-based position inside an embedded TOML text (containerd.config). */
  tomlLine?: number;
  tomlColumn?: number;
}

// ---------------------------------------------------------------- validators
// The field rules themselves live in rules.ts (renderers rely on some of them too).
export { isCidr, isHostPort, isHttpUrl, isStdBase64 };

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
  else if (flagHasControlCharacter(v))
    ctx.addIssue(
      custom(
        { code: "config.invalid-flag", hint: "write each flag on one line as --name=value" },
        `kubelet flag ${quote(v)} contains a control character (newline, NUL, ...)`,
        v,
      ),
    );
});

// The renderer's own TOML reader (integers as bigint, `__proto__`-style keys refused), so what passes here renders.
const containerdToml = z.string().superRefine((v, ctx) => {
  const r = parseToml(v);
  if (!r.ok) {
    const { line, column } = r;
    const first = r.message;
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
  // An int32 in KubeletConfiguration.
  if (maxPods !== undefined && !(typeof maxPods === "number" && Number.isInteger(maxPods) && maxPods >= 1 && maxPods <= MAX_INT32))
    ctx.addIssue(
      custom(
        { code: "config.invalid-value", hint: `set maxPods to a whole number from 1 to ${MAX_INT32}` },
        `maxPods must be an integer from 1 to ${MAX_INT32}, got ${typeof maxPods === "object" ? JSON.stringify(maxPods) : quote(maxPods)}`,
        maxPods,
        ["maxPods"],
      ),
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
      .superRefine((env, ctx) => {
        for (const [service, vars] of Object.entries(env)) {
          if (!isEnvironmentService(service))
            ctx.addIssue(
              custom(
                { code: "config.environment-service", hint: 'use "default" for every service, or a service name without ".service" made of letters, digits and ":-_.\\"' },
                `${quote(service)} is not a systemd service name`,
                service,
                [service],
              ),
            );
          for (const name of Object.keys(vars))
            if (!isEnvironmentName(name))
              ctx.addIssue(
                custom(
                  { code: "config.environment-name", hint: "use letters, digits and underscores, not starting with a digit (systemd ignores other names)" },
                  `${quote(name)} is not a valid environment variable name`,
                  name,
                  [service, name],
                ),
              );
        }
      })
      .describe("Environment variables: `default` for every systemd unit, otherwise per service name.")
      .optional(),
    network: z
      .strictObject({
        nameservers: z.array(ipAddress("each nameserver")).describe("DNS servers for the node's resolver.").optional(),
        domains: z
          .array(
            z.string().superRefine((v, ctx) => {
              if (!isNetworkEntry(v))
                ctx.addIssue(
                  custom({ code: "config.network-entry", hint: "give one search domain per list item" }, `${quote(v)} cannot be a search domain: it is empty or contains whitespace`, v),
                );
            }),
          )
          .describe("DNS search domains.")
          .optional(),
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
      .regex(TASK_NAME, { error: "task name must be a DNS label: lower-case letters, digits and '-', 1..63 characters, starting and ending alphanumeric" })
      .describe("Unique task name (DNS label); becomes part of the unit name."),
    pullImages: z
      .array(
        z.string().min(1).superRefine((v, ctx) => {
          if (v !== "" && !isImageReference(v))
            ctx.addIssue(
              custom({ code: "config.task-image", hint: "write it as registry/repository:tag or registry/repository@sha256:digest" }, `${quote(v)} is not an image reference`, v),
            );
        }),
      )
      .min(1)
      .describe("Container images to pull.")
      .optional(),
    script: z
      .string()
      .min(1)
      .superRefine((v, ctx) => {
        if (v !== "" && v.trim() === "")
          ctx.addIssue(custom({ code: "config.task-empty", hint: "write the shell script to run, or remove the task" }, "the task's script is empty", v));
      })
      .describe("Shell script to run.")
      .optional(),
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
    validation: z
      .enum(VALIDATION_MODES)
      .describe("`warn`: unknown fields in any source are dropped with a warning, as nodeadm drops them; `--validate` wins.")
      .optional(),
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
