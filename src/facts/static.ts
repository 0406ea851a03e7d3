/**
 * Node facts from a static profile (the shape of NodeFacts, e.g.
 * data/demo-instance.json): berth renders with no IMDS at all.
 *
 * Kept out of src/facts/index.ts on purpose: that module gathers facts and
 * imports the IMDS client (node:http) and the version probes
 * (node:child_process); `berth demo` needs none of them, and startup time is
 * a requirement (bench/config-phase.ts).
 */
import { BerthFailure, fail, ok, type BerthError, type Result } from "../util/result.ts";
import type { InstanceFacts, InstanceTypeFacts, NodeFacts } from "./types.ts";

/**
 * Validate a facts profile (the shape of NodeFacts, e.g. data/demo-instance.json
 * or a file given with `--facts`) so berth can render with no IMDS at all.
 */
export function staticFacts(profile: unknown, source = "static facts"): Result<NodeFacts> {
  const errs: BerthError[] = [];
  const bad = (path: string, want: string) =>
    errs.push({
      code: "facts.static",
      message: `${path} must be ${want}`,
      where: { source, path },
      hint: "see data/demo-instance.json for a complete profile",
    });
  const obj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
  if (!obj(profile)) {
    bad("(root)", "an object");
    return fail(...errs);
  }
  const inst = profile.instance;
  if (!obj(inst)) bad("instance", "an object");
  else {
    for (const k of ["id", "type", "region", "availabilityZone", "mac"])
      if (typeof inst[k] !== "string" || inst[k] === "") bad(`instance.${k}`, "a non-empty string");
    for (const k of ["localIpv4", "ipv6", "privateDnsName", "architecture"])
      if (inst[k] !== undefined && typeof inst[k] !== "string") bad(`instance.${k}`, "a string when present");
  }
  const it = profile.instanceType;
  if (!obj(it)) bad("instanceType", "an object");
  else {
    if (it.origin !== "table" && it.origin !== "ec2" && it.origin !== "unknown") bad("instanceType.origin", `"table", "ec2" or "unknown"`);
    for (const k of ["defaultEnis", "ipv4PerEni"])
      if (it[k] !== undefined && !(Number.isInteger(it[k]) && (it[k] as number) >= 0))
        bad(`instanceType.${k}`, "a non-negative integer when present");
  }
  if (!(Number.isInteger(profile.cpus) && (profile.cpus as number) > 0)) bad("cpus", "a positive integer");
  for (const k of ["kubeletVersion", "containerdVersion"])
    if (typeof profile[k] !== "string" || !/^\d+\.\d+/.test(profile[k])) bad(k, "a version like 1.33.0 (no leading v)");
  for (const k of ["nvidiaRuntime", "neuronDevices", "nvidiaGpu"]) if (typeof profile[k] !== "boolean") bad(k, "true or false");
  if (!(Number.isSafeInteger(profile.memoryBytes) && (profile.memoryBytes as number) >= 0))
    bad("memoryBytes", "a whole number of bytes (0 when unknown)");
  if (errs.length) return fail(...errs);
  const p = profile as unknown as NodeFacts;
  // Copy field by field: unknown keys in a profile are dropped, output stays deterministic.
  const instance: InstanceFacts = {
    id: p.instance.id,
    type: p.instance.type,
    region: p.instance.region,
    availabilityZone: p.instance.availabilityZone,
    mac: p.instance.mac,
  };
  for (const k of ["localIpv4", "ipv6", "privateDnsName", "architecture"] as const)
    if (p.instance[k] !== undefined) instance[k] = p.instance[k];
  const instanceType: InstanceTypeFacts = { origin: p.instanceType.origin };
  if (p.instanceType.defaultEnis !== undefined) instanceType.defaultEnis = p.instanceType.defaultEnis;
  if (p.instanceType.ipv4PerEni !== undefined) instanceType.ipv4PerEni = p.instanceType.ipv4PerEni;
  return ok({
    instance,
    instanceType,
    cpus: p.cpus,
    kubeletVersion: p.kubeletVersion,
    containerdVersion: p.containerdVersion,
    nvidiaRuntime: p.nvidiaRuntime,
    neuronDevices: p.neuronDevices,
    nvidiaGpu: p.nvidiaGpu,
    memoryBytes: p.memoryBytes,
  });
}

/**
 * The conformance node (m4.xlarge, 2 CPUs, MemTotal 16106628 kB, no GPU,
 * kubelet 1.33.0, containerd 1.7.27): berth's demo runs on it without IMDS.
 */
export async function demoFacts(): Promise<NodeFacts> {
  const m = await import("../../data/demo-instance.json", { with: { type: "json" } });
  const r = staticFacts(m.default, "data/demo-instance.json");
  if (!r.ok) throw new BerthFailure(r.errors);
  return r.value;
}
