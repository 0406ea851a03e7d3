/**
 * Node facts for the pure core: gathered from IMDS, EC2, sysfs and version
 * probes (every independent lookup in parallel), or taken from a static
 * profile (the embedded demo node needs no IMDS at all).
 */
import type { NodeConfigSpec } from "../api/types.ts";
import type { HostRoot } from "../host/root.ts";
import { errorMessage, toBerthErrors } from "../util/errors.ts";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import type { Ec2Client, ImdsClient, InstanceFacts, InstanceTypeFacts, NodeFacts } from "./types.ts";
import { lookupInstanceType } from "./instance-types.ts";
import { hasNeuronDevices, hasNvidiaRuntime, onlineCpus } from "./sysfs.ts";
import { containerdVersion, kubeletVersion, runCommand, type CommandRunner } from "./versions.ts";
import { hasNvidiaGpu } from "./devices.ts";
import { nodeMemory } from "./memory.ts";
import { instanceStoreDisks } from "./disks.ts";
import { outpostFacts } from "./dns.ts";

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

export interface IdentityDocument {
  instanceId: string;
  instanceType: string;
  region: string;
  availabilityZone: string;
  architecture?: string;
}

export const IDENTITY_PATH = "dynamic/instance-identity/document";

export function parseIdentity(text: string | undefined): Result<IdentityDocument> {
  const where = { source: `imds://${IDENTITY_PATH}` };
  if (text === undefined)
    return fail({
      code: "facts.imds-identity",
      message: "IMDS has no instance identity document",
      where,
      hint: "IMDS must serve /latest/dynamic/instance-identity/document; check the metadata endpoint",
    });
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    const message = `the instance identity document is not JSON: ${errorMessage(e)}`;
    return fail({
      code: "facts.imds-identity",
      message,
      where,
      hint: "check AWS_EC2_METADATA_SERVICE_ENDPOINT points at an instance metadata service",
      cause: e,
    });
  }
  const o = (doc && typeof doc === "object" ? doc : {}) as Record<string, unknown>;
  const missing = ["instanceId", "instanceType", "region", "availabilityZone"].filter((k) => typeof o[k] !== "string" || o[k] === "");
  if (missing.length)
    return fail({
      code: "facts.imds-identity",
      message: `the instance identity document lacks ${missing.join(", ")}`,
      where: { ...where, path: missing[0] },
      hint: "check AWS_EC2_METADATA_SERVICE_ENDPOINT points at an instance metadata service",
    });
  return ok({
    instanceId: o.instanceId as string,
    instanceType: o.instanceType as string,
    region: o.region as string,
    availabilityZone: o.availabilityZone as string,
    ...(typeof o.architecture === "string" ? { architecture: o.architecture } : {}),
  });
}

/** A thrown error from a shell call as BerthErrors. */
function errorsOf(e: unknown, code: string, what: string): BerthError[] {
  return toBerthErrors(e, code, what, "see the cause in the log");
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
  const { imds } = deps;
  // Outposts only: the API server's DNS lookup runs beside the IMDS reads (never rejects).
  const outpostP = outpostFacts(spec, deps.root);
  const warn = deps.onWarning ?? (() => {});
  const identityP = imds
    .get(IDENTITY_PATH)
    .then(parseIdentity, (e: unknown) => fail<IdentityDocument>(...errorsOf(e, "facts.imds-unreachable", "reading the identity document")));
  const macP = settle(imds.get("meta-data/mac"), "facts.imds-unreachable", "reading meta-data/mac");
  const ec2 = ec2Getter(spec, deps);
  const localIpv4P = settle(imds.get("meta-data/local-ipv4"), "facts.imds-unreachable", "reading meta-data/local-ipv4");
  const ipv6P = primaryIpv6(imds, macP, (spec.cluster?.cidr ?? "").includes(":"), warn);
  const dnsP = identityP.then(async (id): Promise<Result<string | undefined>> => {
    if (!id.ok || spec.featureGates?.InstanceIdNodeName === true) return ok(undefined);
    const name = ec2(id.value.region).then((c) => c.privateDnsName(id.value.instanceId));
    return settle(name, "facts.ec2-unreachable", "looking up the private DNS name");
  });
  const typeP = identityP.then((id) => (id.ok ? instanceTypeOf(id.value, ec2, warn) : ok(undefined)));
  const [identity, mac, localIpv4, ipv6, dns, itype, local] = await Promise.all([
    identityP,
    macP,
    localIpv4P,
    ipv6P,
    dnsP,
    typeP,
    localFacts(deps.root, deps.run ?? runCommand),
  ]);
  const { cpus, kubelet, containerd, memory } = local;
  // Memory only gates FastImagePull; unknown memory keeps it off (as in nodeadm), worth a warning only when it was asked for.
  if (!memory.ok && spec.featureGates?.FastImagePull === true) {
    memory.errors.forEach((e) => warn({ ...e, hint: `${e.hint ?? ""}; FastImagePull stays off until the node's memory is known` }));
  }

  const errors: BerthError[] = [];
  for (const r of [identity, mac, localIpv4, ipv6, dns, itype, cpus, kubelet, containerd]) if (!r.ok) errors.push(...r.errors);
  if (mac.ok && !trimOrUndef(mac.value)) {
    const where = { source: "imds://meta-data/mac" };
    errors.push({
      code: "facts.imds-mac",
      message: "IMDS has no MAC address for the primary interface",
      where,
      hint: "check the instance's metadata service",
    });
  }
  if (
    errors.length ||
    !identity.ok ||
    !mac.ok ||
    !localIpv4.ok ||
    !ipv6.ok ||
    !dns.ok ||
    !itype.ok ||
    !cpus.ok ||
    !kubelet.ok ||
    !containerd.ok
  ) {
    return fail(...oneImdsFailure(errors));
  }
  const outpost = await outpostP;
  return ok({
    instance: instanceOf(identity.value, mac.value!, localIpv4.value, ipv6.value, dns.value),
    instanceType: itype.value ?? { origin: "unknown" },
    cpus: cpus.value.cpus,
    kubeletVersion: kubelet.value,
    containerdVersion: containerd.value,
    nvidiaRuntime: local.nvidia,
    neuronDevices: local.neuron,
    nvidiaGpu: local.gpu,
    memoryBytes: memory.ok ? memory.value.bytes : 0,
    ...(local.disks.length > 0 ? { instanceStoreDisks: local.disks } : {}),
    ...(outpost ? { outpost } : {}),
  });
}

/**
 * The EC2 client, made on first need. The private DNS name needs EC2 unless
 * InstanceIdNodeName: its module (SigV4, XML, credentials) starts loading now,
 * while the IMDS round trips run, rather than after the identity arrives.
 */
function ec2Getter(spec: NodeConfigSpec, deps: GatherDeps): (region: string) => Promise<Ec2Client> {
  const ec2Module = deps.ec2 || spec.featureGates?.InstanceIdNodeName === true ? undefined : import("./ec2.ts");
  ec2Module?.catch(() => undefined);
  const env = deps.env ?? process.env;
  let client: Promise<Ec2Client> | undefined;
  return (region) =>
    (client ??= deps.ec2 ? deps.ec2() : (ec2Module ?? import("./ec2.ts")).then((m) => m.createEc2Client({ region, env, imds: deps.imds })));
}

/** The primary interface's first IPv6 address; a failed read is an error only in an IPv6 cluster. */
async function primaryIpv6(
  imds: ImdsClient,
  macP: Promise<Result<string | undefined>>,
  ipv6Cluster: boolean,
  warn: (w: BerthError) => void,
): Promise<Result<string | undefined>> {
  const mac = await macP;
  const m = mac.ok ? trimOrUndef(mac.value) : undefined;
  if (!m) return ok(undefined);
  const what = "reading the primary interface's IPv6 addresses";
  const r = await settle(imds.get(`meta-data/network/interfaces/macs/${m}/ipv6s`), "facts.imds-unreachable", what);
  if (r.ok)
    return ok(
      r.value
        ?.split("\n")
        .map((s) => s.trim())
        .find((s) => s !== ""),
    );
  if (ipv6Cluster) return r;
  r.errors.forEach(warn);
  return ok(undefined);
}

/** The instance type's limits; a failed EC2 lookup is a warning (maxPods falls back). */
async function instanceTypeOf(
  id: IdentityDocument,
  ec2: (region: string) => Promise<Ec2Client>,
  warn: (w: BerthError) => void,
): Promise<Result<InstanceTypeFacts | undefined>> {
  const onError = (e: unknown) =>
    errorsOf(e, "facts.ec2-unreachable", `looking up instance type ${id.instanceType}`).forEach((w) =>
      warn({ ...w, hint: `${w.hint ?? ""}${w.hint ? "; " : ""}maxPods falls back to 110 unless set` }),
    );
  return ok(await lookupInstanceType(id.instanceType, () => ec2(id.region), onError));
}

/** What the node itself says: CPUs, versions, devices, memory. */
async function localFacts(root: HostRoot, run: CommandRunner) {
  const [cpus, kubelet, containerd, nvidia, neuron, gpu, memory, disks] = await Promise.all([
    onlineCpus(root),
    kubeletVersion(root, run),
    containerdVersion(root, run),
    hasNvidiaRuntime(root),
    hasNeuronDevices(root),
    hasNvidiaGpu(root),
    nodeMemory(root),
    instanceStoreDisks(root),
  ]);
  return { cpus, kubelet, containerd, nvidia, neuron, gpu, memory, disks };
}

function instanceOf(
  id: IdentityDocument,
  mac: string,
  localIpv4: string | undefined,
  ipv6: string | undefined,
  dns: string | undefined,
): InstanceFacts {
  const instance: InstanceFacts = {
    id: id.instanceId,
    type: id.instanceType,
    region: id.region,
    availabilityZone: id.availabilityZone,
    mac: mac.trim(),
  };
  const ip4 = trimOrUndef(localIpv4);
  if (ip4) instance.localIpv4 = ip4;
  if (ipv6) instance.ipv6 = ipv6;
  if (dns) instance.privateDnsName = dns;
  if (id.architecture) instance.architecture = id.architecture;
  return instance;
}

/** The same IMDS failure reported by several parallel reads is one error. */
function oneImdsFailure(errors: BerthError[]): BerthError[] {
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
