/**
 * The node's memory size, for the FastImagePull threshold.
 *
 * nodeadm measures memory as online sysfs memory blocks
 * (`block_size_bytes` × the number of `memoryN/online` files reading 1), which
 * is close to the instance type's nominal size; `/proc/meminfo` MemTotal is a
 * little smaller (the kernel's own reservations are left out). berth reads the
 * sysfs blocks first so the 7 GiB bar falls where nodeadm's does, and falls
 * back to MemTotal where sysfs has no memory directory (containers, some
 * --root trees), then to os.totalmem() only when the root is the host.
 */
import { readdir } from "node:fs/promises";
import os from "node:os";
import { readTextIfPresent } from "../host/read.ts";
import type { HostRoot } from "../host/root.ts";
import { fail, ok, type Result } from "../util/result.ts";

const MEMORY_SYSFS_DIR = "/sys/devices/system/memory";
const MEMINFO_PATH = "/proc/meminfo";

export interface MemorySize {
  bytes: number;
  /** Where the number came from, for `berth facts` and logs. */
  source: string;
}

/** Bytes per sysfs memory block from `block_size_bytes` (hex, e.g. `8000000`); undefined when malformed. */
export function parseBlockSize(text: string): number | undefined {
  const m = /^(?:0x)?([0-9a-f]{1,13})$/i.exec(text.trim());
  if (!m) return undefined;
  const n = Number.parseInt(m[1]!, 16);
  return n > 0 ? n : undefined;
}

/** MemTotal from `/proc/meminfo` text, in bytes; undefined when absent or malformed. */
export function parseMemTotal(text: string): number | undefined {
  const m = /^MemTotal:\s*(\d+)\s*kB\s*$/m.exec(text);
  if (!m) return undefined;
  const bytes = Number(m[1]) * 1024;
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : undefined;
}

/** Online memory from sysfs blocks; undefined when sysfs cannot tell (no directory, unreadable files, no block online). */
export async function onlineSysfsMemory(root: HostRoot): Promise<MemorySize | undefined> {
  const dir = root.path(MEMORY_SYSFS_DIR);
  const sizeText = await readTextIfPresent(`${dir}/block_size_bytes`);
  const blockSize = sizeText === undefined ? undefined : parseBlockSize(sizeText);
  if (blockSize === undefined) return undefined;
  let entries: string[];
  try {
    entries = (await readdir(dir)).filter((e) => /^memory\d+$/.test(e));
  } catch {
    return undefined;
  }
  const states = await Promise.all(entries.map((e) => readTextIfPresent(`${dir}/${e}/online`)));
  // One unreadable block makes the total a guess; let the next source answer instead.
  if (states.some((s) => s === undefined)) return undefined;
  const online = states.filter((s) => s!.trim() === "1").length;
  if (online === 0) return undefined;
  return { bytes: blockSize * online, source: `${dir}/memory*/online` };
}

/**
 * The node's memory: sysfs online blocks, else `<root>/proc/meminfo`
 * MemTotal, else os.totalmem() when the root is the host. An error when none
 * answers; callers treat that as "unknown" (FastImagePull then stays off).
 */
export async function nodeMemory(root: HostRoot): Promise<Result<MemorySize>> {
  const sysfs = await onlineSysfsMemory(root);
  if (sysfs) return ok(sysfs);
  const meminfoPath = root.path(MEMINFO_PATH);
  const meminfo = await readTextIfPresent(meminfoPath);
  const total = meminfo === undefined ? undefined : parseMemTotal(meminfo);
  if (total !== undefined) return ok({ bytes: total, source: `${meminfoPath} MemTotal` });
  if (root.isHost) return ok({ bytes: os.totalmem(), source: "os.totalmem()" });
  return fail({
    code: "facts.memory",
    message: meminfo === undefined ? `no memory information under ${root.dir}` : `${meminfoPath} has no "MemTotal: <n> kB" line`,
    where: { source: meminfo === undefined ? root.path(MEMORY_SYSFS_DIR) : meminfoPath },
    hint:
      `create ${meminfoPath} with a line like "MemTotal: 16106628 kB" ` +
      `(or ${root.path(MEMORY_SYSFS_DIR)}/block_size_bytes and memoryN/online), or run without --root`,
  });
}
