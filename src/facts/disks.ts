/**
 * The node's EC2 instance-store disks (a node fact, read under `--root`):
 * the links in `/dev/disk/by-id/` whose name holds `NVMe_Instance_Storage_`
 * (udev names them after the NVMe model, "Amazon EC2 NVMe Instance Storage"),
 * each resolved to its device, de-duplicated (one disk has several such
 * links). Links to partitions (`…-part1`) name no whole disk and are left
 * out; so are links that lead nowhere. Sorted by link name, so the order is
 * the same at every boot. No directory, no disks: an empty list, never an
 * error.
 */
import { readdir, realpath, stat } from "node:fs/promises";
import path from "node:path";
import type { HostRoot } from "../host/root.ts";
import { DISK_BY_ID_DIR } from "../util/node-layout.ts";

/** What every instance-store link name contains (nodeadm's setup-local-disks matches the same). */
export const INSTANCE_STORE_MARKER = "NVMe_Instance_Storage_";

export interface InstanceStoreDisk {
  /** The device the links lead to, e.g. `/dev/nvme1n1`: what is formatted or put in the array. */
  device: string;
  /**
   * One by-id link of it (the first by name), e.g.
   * `/dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_AWS1A2B…`: names the
   * same disk after a reboot, where `/dev/nvmeXn1` numbers may change.
   */
  link: string;
}

/** The device a host path leads to (links followed inside the root), or undefined when it leads nowhere. */
async function deviceOf(root: HostRoot, hostPath: string): Promise<string | undefined> {
  try {
    if (root.isHost) return await realpath(hostPath);
    const real = root.path(hostPath);
    await stat(real);
    return `/${path.relative(root.dir, real)}`;
  } catch {
    return undefined;
  }
}

export async function instanceStoreDisks(root: HostRoot): Promise<InstanceStoreDisk[]> {
  let names: string[];
  try {
    names = await readdir(root.path(DISK_BY_ID_DIR));
  } catch {
    return [];
  }
  const byDevice = new Map<string, string>();
  for (const name of names.filter((n) => n.includes(INSTANCE_STORE_MARKER) && !/-part\d+$/.test(n)).sort()) {
    const link = `${DISK_BY_ID_DIR}/${name}`;
    const device = await deviceOf(root, link);
    if (device !== undefined && !byDevice.has(device)) byDevice.set(device, link);
  }
  // By link, not by device: a link names the disk by its serial, so disk N stays disk N across reboots.
  return [...byDevice.entries()]
    .map(([device, link]) => ({ device, link }))
    .sort((a, b) => (a.link < b.link ? -1 : a.link > b.link ? 1 : 0));
}
