/**
 * Node facts for the pure core: gathered from IMDS, EC2, sysfs and version
 * probes (every independent lookup in parallel), or taken from a static
 * profile (the embedded demo node needs no IMDS at all).
 */
import type { NodeConfigSpec } from "../api/types.ts";
import type { HostRoot } from "../host/root.ts";
import { BerthFailure, fail, ok, type BerthError, type Result } from "../util/result.ts";
import type { Ec2Client, ImdsClient, InstanceFacts, InstanceTypeFacts, NodeFacts } from "./types.ts";
import { lookupInstanceType } from "./instance-types.ts";
import { hasNeuronDevices, hasNvidiaRuntime, onlineCpus } from "./sysfs.ts";
import { containerdVersion, kubeletVersion, runCommand, type CommandRunner } from "./versions.ts";
import { hasNvidiaGpu } from "./devices.ts";
import { nodeMemory } from "./memory.ts";

export type { Ec2Client, ImdsClient, NodeFacts } from "./types.ts";
export { createImdsClient } from "./imds.ts";
// Static profiles live apart so the demo loads no IMDS/EC2 client, node:http or node:child_process.
export { staticFacts, demoFacts } from "./static.ts";

export interface GatherDeps {
  root: HostRoot;
  imds: ImdsClient;
  /**
   * Makes the EC2 client on first need (called at most once). Default: load
   * src/facts/ec2.ts lazily and use the instance's region and IMDS for
   * credentials.
   */
  ec2?: () => Promise<Ec2Client>;
  env?: NodeJS.ProcessEnv;
  /** Runs `kubelet --version` / `containerd --version` (tests inject one). */
  run?: CommandRunner;
  /** Non-fatal problems (an EC2 instance-type lookup that failed, an unreadable IPv6 list). */
  onWarning?: (w: BerthError) => void;
}

interface IdentityDocument {
  instanceId: string;
  instanceType: string;
  region: string;
  availabilityZone: string;
  architecture?: string;
}

const IDENTITY_PATH = "dynamic/instance-identity/document";

function parseIdentity(text: string | undefined): Result<IdentityDocument> {
  const where = { source: `imds://${IDENTITY_PATH}` };
  if (text === undefined) return fail({ code: "facts.imds-identity", message: "IMDS has no instance identity document", where, hint: "IMDS must serve /latest/dynamic/instance-identity/document; check the metadata endpoint" });
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return fail({ code: "facts.imds-identity", message: `the instance identity document is not JSON: ${e instanceof Error ? e.message : String(e)}`, where, hint: "check AWS_EC2_METADATA_SERVICE_ENDPOINT points at an instance metadata service", cause: e });
  }
  const o = (doc && typeof doc === "object" ? doc : {}) as Record<string, unknown>;
  const missing = ["instanceId", "instanceType", "region", "availabilityZone"].filter((k) => typeof o[k] !== "string" || o[k] === "");
  if (missing.length) return fail({ code: "facts.imds-identity", message: `the instance identity document lacks ${missing.join(", ")}`, where: { ...where, path: missing[0] }, hint: "check AWS_EC2_METADATA_SERVICE_ENDPOINT points at an instance metadata service" });
  return ok({
    instanceId: o.instanceId as string,
    instanceType: o.instanceType as string,
    region: o.region as string,
    availabilityZone: o.availabilityZone as string,
    ...(typeof o.architecture === "string" ? { architecture: o.architecture } : {}),
  });
}

/** Turn a thrown error from a shell call into BerthErrors. */
function errorsOf(e: unknown, code: string, what: string): BerthError[] {
  if (e instanceof BerthFailure) return e.errors;
  return [{ code, message: `${what}: ${e instanceof Error ? e.message : String(e)}`, hint: "see the cause in the log", cause: e }];
}

async function settle<T>(p: Promise<T>, code: string, what: string): Promise<Result<T>> {
  try {
    return ok(await p);
  } catch (e) {
    return fail(...errorsOf(e, code, what));
  }
}

const trimOrUndef = (s: string | undefined) => {
  const t = s?.trim();
  return t ? t : undefined;
};

export async function gatherFacts(spec: NodeConfigSpec, deps: GatherDeps): Promise<Result<NodeFacts>> {
  const { root, imds } = deps;
  const env = deps.env ?? process.env;
  const run = deps.run ?? runCommand;
  const warn = deps.onWarning ?? (() => {});
  const ipv6Cluster = (spec.cluster?.cidr ?? "").includes(":");

  const identityP = imds.get(IDENTITY_PATH).then(parseIdentity, (e: unknown) => fail<IdentityDocument>(...errorsOf(e, "facts.imds-unreachable", "reading the identity document")));
  const macP = settle(imds.get("meta-data/mac"), "facts.imds-unreachable", "reading meta-data/mac");

  // The private DNS name needs EC2 unless InstanceIdNodeName: load its client (SigV4, XML,
  // credentials) while the IMDS round trips run rather than after the identity arrives.
  const ec2Module = deps.ec2 || spec.featureGates?.InstanceIdNodeName === true ? undefined : import("./ec2.ts");
  ec2Module?.catch(() => undefined);
  let ec2Client: Promise<Ec2Client> | undefined;
  const ec2 = (region: string) =>
    (ec2Client ??= deps.ec2
      ? deps.ec2()
      : (ec2Module ?? import("./ec2.ts")).then((m) => m.createEc2Client({ region, env, imds })));

  const localIpv4P = settle(imds.get("meta-data/local-ipv4"), "facts.imds-unreachable", "reading meta-data/local-ipv4");
  const ipv6P = macP.then(async (mac): Promise<Result<string | undefined>> => {
    const m = mac.ok ? trimOrUndef(mac.value) : undefined;
    if (!m) return ok(undefined);
    const r = await settle(imds.get(`meta-data/network/interfaces/macs/${m}/ipv6s`), "facts.imds-unreachable", "reading the primary interface's IPv6 addresses");
    if (r.ok) return ok(r.value?.split("\n").map((s) => s.trim()).find((s) => s !== ""));
    if (ipv6Cluster) return r;
    r.errors.forEach(warn);
    return ok(undefined);
  });
  const dnsP = identityP.then(async (id): Promise<Result<string | undefined>> => {
    if (!id.ok || spec.featureGates?.InstanceIdNodeName === true) return ok(undefined);
    return settle(
      ec2(id.value.region).then((c) => c.privateDnsName(id.value.instanceId)),
      "facts.ec2-unreachable",
      "looking up the private DNS name",
    );
  });
  const typeP = identityP.then(async (id): Promise<Result<InstanceTypeFacts | undefined>> => {
    if (!id.ok) return ok(undefined);
    return ok(
      await lookupInstanceType(id.value.instanceType, () => ec2(id.value.region), (e) =>
        errorsOf(e, "facts.ec2-unreachable", `looking up instance type ${id.value.instanceType}`).forEach((w) => warn({ ...w, hint: `${w.hint ?? ""}${w.hint ? "; " : ""}maxPods falls back to 110 unless set` })),
      ),
    );
  });
  const cpusP = onlineCpus(root);
  const kubeletP = kubeletVersion(root, run);
  const containerdP = containerdVersion(root, run);
  const nvidiaP = hasNvidiaRuntime(root);
  const neuronP = hasNeuronDevices(root);
  const gpuP = hasNvidiaGpu(root);
  const memoryP = nodeMemory(root);

  const [identity, mac, localIpv4, ipv6, dns, itype, cpus, kubelet, containerd, nvidia, neuron, gpu, memory] = await Promise.all([identityP, macP, localIpv4P, ipv6P, dnsP, typeP, cpusP, kubeletP, containerdP, nvidiaP, neuronP, gpuP, memoryP]);
  // Memory only gates FastImagePull; unknown memory keeps it off (as in nodeadm), worth a warning only when it was asked for.
  if (!memory.ok && spec.featureGates?.FastImagePull === true) {
    memory.errors.forEach((e) => warn({ ...e, hint: `${e.hint ?? ""}; FastImagePull stays off until the node's memory is known` }));
  }

  const errors: BerthError[] = [];
  for (const r of [identity, mac, localIpv4, ipv6, dns, itype, cpus, kubelet, containerd]) if (!r.ok) errors.push(...r.errors);
  if (mac.ok && !trimOrUndef(mac.value)) errors.push({ code: "facts.imds-mac", message: "IMDS has no MAC address for the primary interface", where: { source: "imds://meta-data/mac" }, hint: "check the instance's metadata service" });
  if (errors.length || !identity.ok || !mac.ok || !localIpv4.ok || !ipv6.ok || !dns.ok || !itype.ok || !cpus.ok || !kubelet.ok || !containerd.ok) {
    return fail(...dedupe(errors));
  }
  const instance: InstanceFacts = {
    id: identity.value.instanceId,
    type: identity.value.instanceType,
    region: identity.value.region,
    availabilityZone: identity.value.availabilityZone,
    mac: mac.value!.trim(),
  };
  const ip4 = trimOrUndef(localIpv4.value);
  if (ip4) instance.localIpv4 = ip4;
  if (ipv6.value) instance.ipv6 = ipv6.value;
  if (dns.value) instance.privateDnsName = dns.value;
  if (identity.value.architecture) instance.architecture = identity.value.architecture;
  return ok({
    instance,
    instanceType: itype.value ?? { origin: "unknown" },
    cpus: cpus.value.cpus,
    kubeletVersion: kubelet.value,
    containerdVersion: containerd.value,
    nvidiaRuntime: nvidia,
    neuronDevices: neuron,
    nvidiaGpu: gpu,
    memoryBytes: memory.ok ? memory.value.bytes : 0,
  });
}

/** The same IMDS failure reported by several parallel reads is one error. */
function dedupe(errors: BerthError[]): BerthError[] {
  const seen = new Set<string>();
  return errors.filter((e) => {
    const k = `${e.code}\u0000${e.where?.source?.replace(/\/latest\/.*$/, "") ?? ""}`;
    if (e.code === "facts.imds-unreachable" || e.code === "facts.imds-disabled") {
      if (seen.has(k)) return false;
      seen.add(k);
    }
    return true;
  });
}
