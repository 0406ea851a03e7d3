/**
 * `/etc/kubernetes/kubelet/config.json` and its drop-in `config.json.d/40-nodeadm.conf`.
 *
 * Values, defaults and version thresholds are nodeadm's
 * (nodeadm/internal/kubelet/config.go at HEAD, plus the pre-1.29 behaviour
 * from the revision before commit 41298160 "cleanup unneeded logic for EOL
 * versions", kept so older kubelets still get a working config).
 */

import { isIPv4, isIPv6 } from "node:net";
import type { JsonObject, JsonValue, NodeConfigSpec } from "../api/types.ts";
import type { NodeFacts } from "../facts/types.ts";
import { canonicalJson, deepMerge } from "../util/json.ts";
import { fail, ok, type Result } from "../util/result.ts";
import { versionAtLeast } from "../util/version.ts";
import { CA_CERT_PATH, CONTAINERD_SOCKET_ENDPOINT, SOCI_IMAGE_SERVICE_ENDPOINT } from "../util/node-layout.ts";

const KUBELET_KIND = "KubeletConfiguration";
const KUBELET_API_VERSION = "kubelet.config.k8s.io/v1beta1";

/**
 * Version thresholds (kubelet version, major.minor.patch; vendor suffixes
 * such as `-eks-5e0fdde` are ignored, as nodeadm strips them before comparing).
 */
export const KUBELET_THRESHOLDS = {
  /** < 1.26: in-tree `--cloud-provider=aws`, no providerID / hostname-override. (pre-41298160 config.go withCloudProvider) */
  externalCloudProvider: "1.26.0",
  /** < 1.27: runtime endpoint as flags, kubeAPIQPS 10 / kubeAPIBurst 20. (pre-41298160 config.go withVersionToggles) */
  runtimeEndpointInConfig: "1.27.0",
  /** < 1.28: featureGates.KubeletCredentialProviders. (pre-41298160 config.go withVersionToggles) */
  credentialProvidersGa: "1.28.0",
  /** >= 1.29: user config as a drop-in; below, merged into config.json. (pre-41298160 config.go writeKubeletConfig) */
  configDropIn: "1.29.0",
  /** < 1.30: the drop-in dir needs KUBELET_CONFIG_DROPIN_DIR_ALPHA=on. (config.go writeKubeletConfig) */
  configDropInGa: "1.30.0",
  /** >= 1.33: featureGates.DynamicResourceAllocation. (config.go withVersionToggles) */
  dynamicResourceAllocation: "1.33.0",
  /** >= 1.34: featureGates.MutableCSINodeAllocatableCount and graceful shutdown 2m30s/30s. (config.go withVersionToggles) */
  mutableCsiAndShutdown: "1.34.0",
  /** >= 1.35: node label nvidia.com/gpu.present=true when an NVIDIA PCI device is attached. (config.go generateKubeletConfig) */
  nvidiaGpuLabel: "1.35.0",
} as const;

export type IpFamily = "ipv4" | "ipv6";

const CIDR_PATH = "spec.cluster.cidr";

function cidrError(cidr: string | undefined, why: string) {
  return fail({
    code: "config.invalid-cidr",
    message: cidr === undefined ? "the cluster's service CIDR is not set" : `${JSON.stringify(cidr)} is not a valid CIDR: ${why}`,
    where: { path: CIDR_PATH },
    hint:
      "set spec.cluster.cidr to the cluster's service IPv4 or IPv6 CIDR, e.g. 10.100.0.0/16 or fd00:10:96::/108 (aws eks " +
      "describe-cluster: kubernetesNetworkConfig)",
  });
}

/** The address family of a CIDR; an error naming `spec.cluster.cidr` when it is not one. */
export function cidrFamily(cidr: string | undefined): Result<IpFamily> {
  if (cidr === undefined || cidr === "") return cidrError(undefined, "missing");
  const slash = cidr.indexOf("/");
  if (slash < 0) return cidrError(cidr, "no prefix length");
  const addr = cidr.slice(0, slash);
  const bitsText = cidr.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bitsText)) return cidrError(cidr, "bad prefix length");
  const bits = Number(bitsText);
  if (isIPv4(addr)) return bits <= 32 ? ok("ipv4") : cidrError(cidr, "prefix longer than 32");
  if (isIPv6(addr)) return bits <= 128 ? ok("ipv6") : cidrError(cidr, "prefix longer than 128");
  return cidrError(cidr, "not an IPv4 or IPv6 address");
}

/**
 * The cluster DNS address by EKS convention: the `.10` of the IPv4 service
 * CIDR, `…::a` for IPv6. Textual like nodeadm's rule (last IPv4 octet
 * replaced, `a` appended to the IPv6 prefix) so both agree on every input.
 */
export function clusterDnsFromCidr(cidr: string | undefined): Result<string> {
  const family = cidrFamily(cidr);
  if (!family.ok) return family;
  const addr = (cidr as string).split("/")[0] as string;
  if (family.value === "ipv4") return ok(`${addr.slice(0, addr.lastIndexOf("."))}.10`);
  return ok(`${addr}a`);
}

function providerId(availabilityZone: string, instanceId: string): string {
  return `aws:///${availabilityZone}/${instanceId}`;
}

/** nodeadm's fixed defaults, before any node- or version-dependent value. */
function defaultKubeletConfig(): JsonObject {
  return {
    kind: KUBELET_KIND,
    apiVersion: KUBELET_API_VERSION,
    address: "0.0.0.0",
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: true, cacheTTL: "2m0s" },
      x509: { clientCAFile: CA_CERT_PATH },
    },
    authorization: {
      mode: "Webhook",
      webhook: { cacheAuthorizedTTL: "5m0s", cacheUnauthorizedTTL: "30s" },
    },
    cgroupDriver: "systemd",
    cgroupRoot: "/",
    clusterDomain: "cluster.local",
    containerRuntimeEndpoint: CONTAINERD_SOCKET_ENDPOINT,
    evictionHard: {
      "memory.available": "100Mi",
      "nodefs.available": "10%",
      "nodefs.inodesFree": "5%",
    },
    featureGates: { RotateKubeletServerCertificate: true },
    hairpinMode: "hairpin-veth",
    protectKernelDefaults: true,
    readOnlyPort: 0,
    logging: { verbosity: 2 },
    serializeImagePulls: false,
    serverTLSBootstrap: true,
    tlsCipherSuites: [
      "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
      "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
      "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
      "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
      "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
      "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
      "TLS_RSA_WITH_AES_128_GCM_SHA256",
      "TLS_RSA_WITH_AES_256_GCM_SHA384",
    ],
  };
}

export interface GeneratedKubeletConfigInput {
  spec: NodeConfigSpec;
  facts: NodeFacts;
  /** berth's computed maxPods (ENI formula or expression). */
  maxPods: number;
  /** kubeReserved, already computed from the effective maxPods. */
  kubeReserved: Record<string, string>;
  /** Point the kubelet's image service at the SOCI snapshotter (FastImagePull on a big enough node). */
  sociImageService?: boolean;
}

/** berth's own config.json content, without the user's config (the drop-in carries that). */
export function generatedKubeletConfig(input: GeneratedKubeletConfigInput): Result<JsonObject> {
  const { spec, facts } = input;
  const dns = clusterDnsFromCidr(spec.cluster?.cidr);
  if (!dns.ok) return dns;
  const v = facts.kubeletVersion;
  const cfg = defaultKubeletConfig();
  const gates = cfg.featureGates as JsonObject;
  cfg.clusterDNS = [dns.value];

  if (!versionAtLeast(v, KUBELET_THRESHOLDS.runtimeEndpointInConfig)) {
    cfg.kubeAPIQPS = 10;
    cfg.kubeAPIBurst = 20;
  }
  if (!versionAtLeast(v, KUBELET_THRESHOLDS.credentialProvidersGa)) gates.KubeletCredentialProviders = true;
  if (versionAtLeast(v, KUBELET_THRESHOLDS.dynamicResourceAllocation)) gates.DynamicResourceAllocation = true;
  if (versionAtLeast(v, KUBELET_THRESHOLDS.mutableCsiAndShutdown)) {
    gates.MutableCSINodeAllocatableCount = true;
    cfg.shutdownGracePeriod = "2m30s";
    cfg.shutdownGracePeriodCriticalPods = "30s";
  }
  if (versionAtLeast(v, KUBELET_THRESHOLDS.externalCloudProvider)) {
    cfg.providerID = providerId(facts.instance.availabilityZone, facts.instance.id);
  }
  cfg.systemReservedCgroup = "/system";
  cfg.kubeReservedCgroup = "/runtime";
  cfg.maxPods = input.maxPods;
  cfg.kubeReserved = { ...input.kubeReserved };
  if (input.sociImageService) cfg.imageServiceEndpoint = SOCI_IMAGE_SERVICE_ENDPOINT;
  return ok(cfg);
}

/**
 * Deep merge, `over` wins: objects merge key by key, everything else
 * (arrays included) replaces. This is the NodeConfig merge rule; unlike
 * nodeadm's mergo call, an explicit empty value ("" or 0) in `over` does
 * replace, so `kubeReservedCgroup: ""` means the same merged as in a drop-in.
 * Values taken from `over` (the user's config) are cloned, so the merged
 * config shares no object with the spec: whoever edits the result cannot
 * reach into the user's config.
 */
export function mergeKubeletConfig(base: JsonObject, over: JsonObject): JsonObject {
  return deepMerge(base, over, { cloneOver: true });
}

/** The drop-in: the user's config with `kind`/`apiVersion` filled in when absent. */
export function userKubeletDropIn(userConfig: JsonObject): JsonObject {
  return { kind: KUBELET_KIND, apiVersion: KUBELET_API_VERSION, ...userConfig };
}

/** Whether this kubelet reads `--config-dir` drop-ins (else the user's config is merged into config.json). */
export function supportsConfigDropIn(kubeletVersion: string): boolean {
  return versionAtLeast(kubeletVersion, KUBELET_THRESHOLDS.configDropIn);
}

/**
 * Deterministic JSON: `kind` and `apiVersion` first at the top (as people
 * expect to read them), every other key sorted at every level, 4-space indent
 * like nodeadm, no trailing newline (nodeadm writes none either).
 */
export function stableJson(value: JsonValue, indent = 4): string {
  return canonicalJson(value, indent, { first: ["kind", "apiVersion"] });
}
