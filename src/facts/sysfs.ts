/**
 * CPU count and accelerator detection from sysfs/devfs under `--root`.
 */
import { readFile, readdir } from "node:fs/promises";
import os from "node:os";
import { pathExists, readTextIfPresent } from "../host/read.ts";
import type { HostRoot } from "../host/root.ts";
import { fail, ok, type Result } from "../util/result.ts";
import { NVIDIA_RUNTIME_PATH } from "../util/node-layout.ts";

const CPU_ONLINE_PATH = "/sys/devices/system/cpu/online";
const CPU_DIR = "/sys/devices/system/cpu";

/**
 * Parse a kernel CPU list (`0-3,8,10-11`, as in `cpu/online`) into the sorted
 * set of CPU ids; undefined when malformed. Ranges may overlap; an empty list
 * (a lone newline) is the empty set.
 */
export function parseCpuList(text: string): number[] | undefined {
  const s = text.trim();
  if (s === "") return [];
  const ids = new Set<number>();
  for (const part of s.split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) return undefined;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo || hi - lo > 1 << 16) return undefined;
    for (let i = lo; i <= hi; i++) ids.add(i);
  }
  return [...ids].sort((a, b) => a - b);
}

export interface CpuCount {
  cpus: number;
  /** Where the number came from, for `berth facts` and logs. */
  source: string;
}

/**
 * Online CPUs: `<root>/sys/devices/system/cpu/online`; else the `cpuN`
 * directories beside it; else, only when the root is the host itself, what
 * the process may run on (os.availableParallelism).
 */
export async function onlineCpus(root: HostRoot): Promise<Result<CpuCount>> {
  const file = root.path(CPU_ONLINE_PATH);
  const text = await readTextIfPresent(file);
  if (text !== undefined) {
    const ids = parseCpuList(text);
    if (ids && ids.length > 0) return ok({ cpus: ids.length, source: file });
    return fail({
      code: "facts.cpu-online",
      message: `cannot read a CPU list from ${JSON.stringify(text.trim())}`,
      where: { source: file, line: 1, column: 1 },
      hint: "the file must hold a kernel CPU list such as 0-3,8,10-11",
    });
  }
  try {
    const n = (await readdir(root.path(CPU_DIR))).filter((d) => /^cpu\d+$/.test(d)).length;
    if (n > 0) return ok({ cpus: n, source: `${root.path(CPU_DIR)}/cpu*` });
  } catch {
    // fall through
  }
  if (root.isHost) return ok({ cpus: os.availableParallelism(), source: "os.availableParallelism()" });
  return fail({
    code: "facts.cpu-online",
    message: `no CPU information under ${root.dir}`,
    where: { source: file },
    hint: `create ${file} with the online CPU list (e.g. 0-1), or run without --root`,
  });
}

/** nodeadm renders the nvidia runtime exactly when this binary exists. */
export function hasNvidiaRuntime(root: HostRoot): Promise<boolean> {
  return pathExists(root.path(NVIDIA_RUNTIME_PATH));
}

/**
 * PCI device ids of AWS Neuron accelerators (vendor 0x1d0f, Amazon), from
 * aws-neuron-driver's neuron_device.h: Inferentia 1 (0x7064–0x7067),
 * Trainium 1 (0x7164), Inferentia 2 (0x7264), Trainium 2 (0x7364).
 */
const NEURON_VENDOR = "0x1d0f";
const NEURON_DEVICE_IDS = new Set(["0x7064", "0x7065", "0x7066", "0x7067", "0x7164", "0x7264", "0x7364"]);

/**
 * Neuron devices present. nodeadm itself does not detect Neuron (its
 * containerd runtime mixins only know NVIDIA; the AL2023 Neuron AMI's setup
 * script matches PCI vendor 1d0f + the device ids above), so berth checks
 * the same PCI ids in `/sys/bus/pci/devices/<dev>/{vendor,device}` and, when
 * the driver is loaded, `/dev/neuron<N>` device nodes.
 */
export async function hasNeuronDevices(root: HostRoot): Promise<boolean> {
  try {
    if ((await readdir(root.path("/dev"))).some((d) => /^neuron\d+$/.test(d))) return true;
  } catch {
    // no /dev under this root
  }
  const pci = root.path("/sys/bus/pci/devices");
  let devs: string[];
  try {
    devs = await readdir(pci);
  } catch {
    return false;
  }
  for (const d of devs.sort()) {
    try {
      const vendor = (await readFile(`${pci}/${d}/vendor`, "utf8")).trim().toLowerCase();
      if (vendor !== NEURON_VENDOR) continue;
      const device = (await readFile(`${pci}/${d}/device`, "utf8")).trim().toLowerCase();
      if (NEURON_DEVICE_IDS.has(device)) return true;
    } catch {
      // a device without readable ids is not ours
    }
  }
  return false;
}
