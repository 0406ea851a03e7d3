/**
 * The zod v4 schema of nodeadm's NodeConfig (BerthConfig's is
 * berth-schema.ts): the single source of truth for strict decoding
 * (decode.ts) and for the shipped JSON Schema (json-schema.ts).
 *
 * Field-level rules live here; rules that need the merged config live in
 * validate.ts. Refinements report custom issues whose `params` carry a stable
 * `code` (and, for TOML, the position inside the TOML text) so decode.ts can
 * turn them into BerthErrors with precise locations.
 */
import { isIP } from "node:net";
import * as z from "zod";
import { parseToml } from "../util/toml.ts";
import {
  flagHasControlCharacter,
  isCidr,
  isEnvironmentName,
  isEnvironmentService,
  isNetworkEntry,
  isStdBase64,
  MAX_INT32,
} from "./rules.ts";
import { custom, httpUrl, jsonObject, metadataSchema, quote, type Assert, type Extends } from "./schema-parts.ts";
import { NODECONFIG_API_VERSION, NODECONFIG_KIND, type JsonObject, type NodeConfigSpec } from "./types.ts";

const FEATURES = ["InstanceIdNodeName", "FastImagePull"] as const;
const LOCAL_STORAGE_STRATEGIES = ["RAID0", "RAID10", "Mount"] as const;
const DISABLED_MOUNTS = ["Containerd", "PodLogs", "SOCI"] as const;

// ---------------------------------------------------------------- NodeConfig

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
      ctx.addIssue(
        custom({ code: "config.invalid-ip", hint: `give ${what} as a plain IPv4 or IPv6 address` }, `${quote(v)} is not an IP address`, v),
      );
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
      ctx.addIssue(
        custom(
          { code: "config.wrong-type", hint: "write clusterDNS as a list, e.g. [10.100.0.10]" },
          "clusterDNS must be a list of IP addresses",
          dns,
          ["clusterDNS"],
        ),
      );
    else
      dns.forEach((ip, i) => {
        if (typeof ip !== "string" || isIP(ip) === 0)
          ctx.addIssue(
            custom(
              { code: "config.invalid-ip", hint: "give each cluster DNS server as a plain IPv4 or IPv6 address" },
              `${quote(ip)} is not an IP address`,
              ip,
              ["clusterDNS", i],
            ),
          );
      });
  }
});

const clusterDetailsSchema = z
  .strictObject({
    name: z.string().describe("Name of the EKS cluster.").optional(),
    apiServerEndpoint: httpUrl("apiServerEndpoint", "https://ABCD.gr7.us-west-2.eks.amazonaws.com")
      .describe("URL of the cluster's Kubernetes API server.")
      .optional(),
    certificateAuthority: base64.describe("Base64 of the cluster CA PEM bundle.").optional(),
    cidr: cidr.describe("The cluster's service CIDR (IPv4 or IPv6).").optional(),
    enableOutpost: z.boolean().describe("The cluster is a local cluster on AWS Outposts.").optional(),
    id: z.string().describe("Cluster ID; required for Outposts local clusters.").optional(),
  })
  .describe("Details of the cluster this node joins.");

const kubeletOptionsSchema = z
  .strictObject({
    config: kubeletConfig
      .describe("Inline KubeletConfiguration fragment, deep-merged over the rendered config (lists replace).")
      .optional(),
    flags: z.array(kubeletFlag).describe("Extra kubelet command-line flags; appended across sources.").optional(),
    maxPodsExpression: z.string().describe("CEL expression computing maxPods.").optional(),
  })
  .describe("kubelet options.");

const containerdOptionsSchema = z
  .strictObject({
    config: containerdToml.describe("TOML merged over the rendered containerd config.toml.").optional(),
    baseRuntimeSpec: jsonObject.describe("OCI runtime spec fragment merged over the default base runtime spec.").optional(),
  })
  .describe("containerd options.");

const localStorageOptionsSchema = z
  .strictObject({
    strategy: z.enum(LOCAL_STORAGE_STRATEGIES).describe("How to use local instance-store disks.").optional(),
    mountPath: z.string().describe("Where the local storage is mounted.").optional(),
    disabledMounts: z.array(z.enum(DISABLED_MOUNTS)).describe("Directories not to bind onto local storage.").optional(),
  })
  .describe("Instance-store configuration.");

const instanceOptionsSchema = z
  .strictObject({
    localStorage: localStorageOptionsSchema.optional(),
    environment: z
      .record(z.string(), z.record(z.string(), z.string()))
      .superRefine((env, ctx) => {
        for (const [service, vars] of Object.entries(env)) {
          if (!isEnvironmentService(service))
            ctx.addIssue(
              custom(
                {
                  code: "config.environment-service",
                  hint: 'use "default" for every service, or a service name without ".service" made of letters, digits and ":-_.\\"',
                },
                `${quote(service)} is not a systemd service name`,
                service,
                [service],
              ),
            );
          for (const name of Object.keys(vars))
            if (!isEnvironmentName(name))
              ctx.addIssue(
                custom(
                  {
                    code: "config.environment-name",
                    hint: "use letters, digits and underscores, not starting with a digit (systemd ignores other names)",
                  },
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
                  custom(
                    { code: "config.network-entry", hint: "give one search domain per list item" },
                    `${quote(v)} cannot be a search domain: it is empty or contains whitespace`,
                    v,
                  ),
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

const nodeConfigSpecSchema = z
  .strictObject({
    cluster: clusterDetailsSchema.optional(),
    containerd: containerdOptionsSchema.optional(),
    instance: instanceOptionsSchema.optional(),
    kubelet: kubeletOptionsSchema.optional(),
    featureGates: z.partialRecord(z.enum(FEATURES), z.boolean()).describe("Feature gates of the node agent.").optional(),
  })
  .describe("NodeConfig spec.");

export const nodeConfigDocumentSchema = z
  .strictObject({
    apiVersion: z.literal(NODECONFIG_API_VERSION).describe("API version of the document."),
    kind: z.literal(NODECONFIG_KIND).describe("Document kind."),
    metadata: metadataSchema.optional(),
    spec: nodeConfigSpecSchema.optional(),
  })
  .describe("nodeadm-compatible node configuration (node.eks.aws/v1alpha1 NodeConfig).");

// ---------------------------------------------------------------- compile-time checks
// The schema must produce values assignable to the hand-written contracts in types.ts.
type InferredNodeSpec = z.infer<typeof nodeConfigSpecSchema>;
export type _NodeSpecCheck = Assert<Extends<InferredNodeSpec, NodeConfigSpec>>;
export type _JsonCheck = Assert<Extends<z.infer<typeof jsonObject>, JsonObject>>;
