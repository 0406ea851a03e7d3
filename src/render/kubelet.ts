/**
 * Entry point of the kubelet renderers: every file nodeadm's kubelet daemon
 * writes in its config phase, as a pure function of (spec, facts).
 *
 * Files: config.json, config.json.d/40-nodeadm.conf (when the user gave a
 * kubelet config and the kubelet reads drop-ins), the flags environment file,
 * the kubeconfig (bootstrap kubeconfig on Outposts), the cluster CA and the
 * image credential provider config.
 *
 * Not here (impure, belongs to the shell): nodeadm's Outposts /etc/hosts
 * entries for the API server (a DNS lookup at config time), and checking that
 * the ecr-credential-provider binary exists.
 */

import type { JsonObject, NodeConfigSpec } from "../api/types.ts";
import type { NodeFacts } from "../facts/types.ts";
import type { PlannedFile } from "../plan/types.ts";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import { versionAtLeast } from "../util/version.ts";
import { credentialProviderBinDir, credentialProviderConfigJson } from "./credential-provider.ts";
import { decodeCertificateAuthority, isOutpost, renderKubeconfig } from "./kubeconfig.ts";
import {
  cidrFamily,
  mergeKubeletConfig,
  generatedKubeletConfig,
  KUBELET_THRESHOLDS,
  stableJson,
  supportsConfigDropIn,
  userKubeletDropIn,
} from "./kubelet-config.ts";
import { checkUserFlags, KUBELET_ARGS_VARIABLE, kubeletArgs, kubeletEnvironmentFile } from "./kubelet-env.ts";
import { computeMaxPods, loadMaxPodsEvaluator } from "./max-pods.ts";
import { MAX_INT32, type MaxPodsEvaluator } from "../api/rules.ts";
import { kubeReserved } from "./reserved.ts";
import { fastImagePullEnabled } from "./fast-image-pull.ts";
import {
  BOOTSTRAP_KUBECONFIG_PATH,
  CA_CERT_PATH,
  CONTAINERD_SOCKET_ENDPOINT,
  ECR_CREDENTIAL_PROVIDER_BIN,
  IMAGE_CREDENTIAL_PROVIDER_CONFIG_PATH,
  KUBECONFIG_PATH,
  KUBELET_CONFIG_DIR,
  KUBELET_CONFIG_PATH,
  KUBELET_DROPIN_PATH,
  KUBELET_ENVIRONMENT_PATH,
} from "../util/node-layout.ts";

const KUBELET_COMPONENT = "kubelet";

/** Inputs beyond (spec, facts); all optional. */
export interface RenderKubeletOptions {
  /** Needed only when `spec.kubelet.maxPodsExpression` is set; see loadMaxPodsEvaluator(). */
  maxPodsEvaluator?: MaxPodsEvaluator;
  /**
   * Override of `facts.nvidiaGpu` (an NVIDIA PCI device is attached; adds
   * nvidia.com/gpu.present=true on kubelet >= 1.35). Leave unset: the facts decide.
   */
  nvidiaGpuPresent?: boolean;
  /**
   * Override of fastImagePullEnabled(spec, facts) (containerd pulls through the
   * SOCI snapshotter, so the kubelet's image service is SOCI's socket). Leave
   * unset: overriding it makes the kubelet and containerd disagree.
   */
  sociImageService?: boolean;
  /** Override of the provider binary (nodeadm: $ECR_CREDENTIAL_PROVIDER_BIN_PATH). */
  credentialProviderBinPath?: string;
}

/** The maxPods the kubelet will really enforce: the user's `kubelet.config.maxPods` if set, else berth's. */
export function effectiveMaxPods(userConfig: JsonObject | undefined, computed: number): Result<number> {
  const v = userConfig?.maxPods;
  if (v === undefined) return ok(computed);
  if (typeof v === "number" && Number.isInteger(v) && v > 0 && v <= MAX_INT32) return ok(v);
  return fail({
    code: "config.invalid-value",
    message: `kubelet config maxPods ${JSON.stringify(v)} is not a positive integer`,
    where: { path: "spec.kubelet.config.maxPods" },
    hint: "set maxPods to a whole number of pods, e.g. 58, or remove it to use the instance type's ENI limit",
  });
}

function nodeIp(spec: NodeConfigSpec, facts: NodeFacts): Result<string> {
  const family = cidrFamily(spec.cluster?.cidr);
  if (!family.ok) return family;
  const ip = family.value === "ipv4" ? facts.instance.localIpv4 : facts.instance.ipv6;
  if (ip) return ok(ip);
  return fail({
    code: "facts.missing-node-ip",
    message:
      `the cluster is ${family.value === "ipv4" ? "IPv4" : "IPv6"} (spec.cluster.cidr ${spec.cluster?.cidr}) but the ` +
      `instance has no ${family.value === "ipv4" ? "local IPv4" : "IPv6"} address`,
    where: { path: "spec.cluster.cidr" },
    hint:
      family.value === "ipv4"
        ? "check IMDS meta-data/local-ipv4 on this instance, or set spec.cluster.cidr to the cluster's IPv6 service CIDR"
        : `assign an IPv6 address to the primary interface (IMDS meta-data/network/interfaces/macs/${facts.instance.mac}/ipv6s)`,
  });
}

function nodeName(spec: NodeConfigSpec, facts: NodeFacts): Result<string> {
  if (spec.featureGates?.InstanceIdNodeName === true) return ok(facts.instance.id);
  if (facts.instance.privateDnsName) return ok(facts.instance.privateDnsName);
  return fail({
    code: "facts.missing-private-dns-name",
    message: "the instance's private DNS name is unknown, and it names the Node",
    where: { path: "spec.featureGates.InstanceIdNodeName" },
    hint:
      "allow ec2:DescribeInstances for the node role, or set spec.featureGates.InstanceIdNodeName: true to name the Node " +
      "by instance id",
  });
}

/** The CIDR is read by two renderers; report each problem once. */
function dedupe(errors: BerthError[]): BerthError[] {
  const seen = new Set<string>();
  return errors.filter((e) => {
    const key = `${e.code}\0${e.where?.path ?? ""}\0${e.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function collect<T>(r: Result<T>, errors: BerthError[]): T | undefined {
  if (r.ok) return r.value;
  errors.push(...r.errors);
  return undefined;
}

/**
 * Render every kubelet file. Synchronous; when `spec.kubelet.maxPodsExpression`
 * is set, pass `opts.maxPodsEvaluator` or use renderKubeletAsync().
 * Files come back sorted by path.
 */
export function renderKubelet(spec: NodeConfigSpec, facts: NodeFacts, opts: RenderKubeletOptions = {}): Result<PlannedFile[]> {
  const errors: BerthError[] = [];
  const v = facts.kubeletVersion;
  const userConfig = spec.kubelet?.config;
  const hasUserConfig = userConfig !== undefined && Object.keys(userConfig).length > 0;
  const dropIn = hasUserConfig && supportsConfigDropIn(v);
  const userFlags = spec.kubelet?.flags ?? [];

  const maxPods = collect(computeMaxPods(spec, facts.instanceType, opts.maxPodsEvaluator), errors);
  const effective = maxPods === undefined ? undefined : collect(effectiveMaxPods(userConfig, maxPods), errors);
  const ip = collect(nodeIp(spec, facts), errors);
  const external = versionAtLeast(v, KUBELET_THRESHOLDS.externalCloudProvider);
  const name = external ? collect(nodeName(spec, facts), errors) : undefined;
  const kubeconfig = collect(renderKubeconfig(spec.cluster, facts.instance.region), errors);
  const ca = collect(decodeCertificateAuthority(spec.cluster?.certificateAuthority), errors);
  collect(checkUserFlags(userFlags), errors);

  let config: JsonObject | undefined;
  if (maxPods !== undefined && effective !== undefined) {
    config = collect(
      generatedKubeletConfig({
        spec,
        facts,
        maxPods,
        kubeReserved: kubeReserved(facts.cpus, effective),
        sociImageService: opts.sociImageService ?? fastImagePullEnabled(spec, facts),
      }),
      errors,
    );
  }
  if (errors.length > 0 || !config || !kubeconfig || !ca || ip === undefined) return fail(...dedupe(errors));

  // Below the drop-in threshold the kubelet has no --config-dir: merge the user's config in instead.
  if (hasUserConfig && !dropIn) config = mergeKubeletConfig(config, userConfig);

  const binPath = opts.credentialProviderBinPath ?? ECR_CREDENTIAL_PROVIDER_BIN;
  const flags: Record<string, string> = {
    config: KUBELET_CONFIG_PATH,
    kubeconfig: KUBECONFIG_PATH,
    "image-credential-provider-bin-dir": credentialProviderBinDir(binPath),
    "image-credential-provider-config": IMAGE_CREDENTIAL_PROVIDER_CONFIG_PATH,
    "node-ip": ip,
    // cadvisor attributes container usage to containerd only with this (amazon-eks-ami#1667).
    "runtime-cgroups": "/runtime.slice/containerd.service",
  };
  if (external) {
    flags["cloud-provider"] = "external";
    flags["hostname-override"] = name as string;
  } else {
    flags["cloud-provider"] = "aws";
  }
  if (!versionAtLeast(v, KUBELET_THRESHOLDS.runtimeEndpointInConfig)) {
    flags["container-runtime"] = "remote";
    flags["container-runtime-endpoint"] = CONTAINERD_SOCKET_ENDPOINT;
  }
  if (isOutpost(spec.cluster)) flags["bootstrap-kubeconfig"] = BOOTSTRAP_KUBECONFIG_PATH;
  if (dropIn) flags["config-dir"] = KUBELET_CONFIG_DIR;
  if ((opts.nvidiaGpuPresent ?? facts.nvidiaGpu) && versionAtLeast(v, KUBELET_THRESHOLDS.nvidiaGpuLabel)) {
    flags["node-labels"] = "nvidia.com/gpu.present=true";
  }

  const environment: Record<string, string> = { [KUBELET_ARGS_VARIABLE]: kubeletArgs(flags, userFlags) };
  if (dropIn && !versionAtLeast(v, KUBELET_THRESHOLDS.configDropInGa)) environment.KUBELET_CONFIG_DROPIN_DIR_ALPHA = "on";

  const file = (path: string, content: string | Uint8Array, mode: number): PlannedFile => ({
    path,
    content,
    mode,
    component: KUBELET_COMPONENT,
  });
  const files: PlannedFile[] = [
    file(KUBELET_CONFIG_PATH, stableJson(config), 0o644),
    file(KUBELET_ENVIRONMENT_PATH, kubeletEnvironmentFile(environment), 0o644),
    file(kubeconfig.path, kubeconfig.content, 0o600),
    file(CA_CERT_PATH, ca, 0o644),
    file(IMAGE_CREDENTIAL_PROVIDER_CONFIG_PATH, credentialProviderConfigJson(v, binPath), 0o644),
  ];
  if (dropIn) files.push(file(KUBELET_DROPIN_PATH, stableJson(userKubeletDropIn(userConfig)), 0o644));
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return ok(files);
}

/** renderKubelet, loading the CEL evaluator first only if an expression is set. */
export async function renderKubeletAsync(
  spec: NodeConfigSpec,
  facts: NodeFacts,
  opts: RenderKubeletOptions = {},
): Promise<Result<PlannedFile[]>> {
  if (spec.kubelet?.maxPodsExpression && !opts.maxPodsEvaluator) {
    return renderKubelet(spec, facts, { ...opts, maxPodsEvaluator: await loadMaxPodsEvaluator() });
  }
  return renderKubelet(spec, facts, opts);
}
