/**
 * PCI devices under `--root`: which vendors' devices are attached.
 */
import { readFile, readdir } from "node:fs/promises";
import type { HostRoot } from "../host/root.ts";

const PCI_DEVICES_DIR = "/sys/bus/pci/devices";
/** PCI vendor id of NVIDIA Corporation, as sysfs prints it. */
const NVIDIA_PCI_VENDOR = "0x10de";

/**
 * True when some `<root>/sys/bus/pci/devices/<dev>/vendor` holds `vendorId`.
 * A missing PCI directory or an unreadable vendor file counts as "not this
 * vendor": the answer only adds a label, and nodeadm treats those the same
 * way (it skips unreadable files and adds no label when it cannot list).
 */
export async function pciVendorAttached(root: HostRoot, vendorId: string): Promise<boolean> {
  const dir = root.path(PCI_DEVICES_DIR);
  let devices: string[];
  try {
    devices = await readdir(dir);
  } catch {
    return false;
  }
  const want = vendorId.toLowerCase();
  // Sorted so the reads happen in the same order every run (easier to trace with strace).
  for (const d of devices.sort()) {
    let vendor: string;
    try {
      vendor = await readFile(`${dir}/${d}/vendor`, "utf8");
    } catch {
      continue;
    }
    if (vendor.trim().toLowerCase() === want) return true;
  }
  return false;
}

/** An NVIDIA GPU (any PCI function with vendor 0x10de) is attached. */
export function hasNvidiaGpu(root: HostRoot): Promise<boolean> {
  return pciVendorAttached(root, NVIDIA_PCI_VENDOR);
}
