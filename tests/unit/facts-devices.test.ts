import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, writeFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { HostRoot } from "../../src/host/root.ts";
import { hasNvidiaGpu, pciVendorAttached } from "../../src/facts/devices.ts";
import { nodeMemory, onlineSysfsMemory, parseBlockSize, parseMemTotal } from "../../src/facts/memory.ts";
import { staticFacts, demoFacts, gatherFacts } from "../../src/facts/index.ts";
import type { Ec2Client, ImdsClient } from "../../src/facts/types.ts";
import type { NodeConfigSpec } from "../../src/api/types.ts";
import type { BerthError } from "../../src/util/result.ts";
import demo from "../../data/demo-instance.json" with { type: "json" };

const dirs: string[] = [];
after(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});
async function rootWith(files: Record<string, string>, dirsOnly: string[] = []): Promise<HostRoot> {
  const d = await mkdtemp(path.join(os.tmpdir(), "berth-devices-"));
  dirs.push(d);
  for (const [p, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(d, p)), { recursive: true });
    await writeFile(path.join(d, p), content);
  }
  for (const p of dirsOnly) await mkdir(path.join(d, p), { recursive: true });
  return new HostRoot(d);
}
const GiB = 1024 ** 3;

// ---- PCI devices ----

test("NVIDIA GPU: a PCI function with vendor 0x10de under --root", async () => {
  const gpu = await rootWith({
    "sys/bus/pci/devices/0000:00:00.0/vendor": "0x8086\n",
    "sys/bus/pci/devices/0000:00:1e.0/vendor": "0x10de\n",
    "sys/bus/pci/devices/0000:00:1e.0/device": "0x1eb8\n",
  });
  assert.equal(await hasNvidiaGpu(gpu), true);
  // Upper-case hex is the same vendor.
  assert.equal(await hasNvidiaGpu(await rootWith({ "sys/bus/pci/devices/0000:00:1e.0/vendor": "0x10DE\n" })), true);
});

test("NVIDIA GPU: other vendors, Neuron devices, no PCI directory, unreadable vendor files → false", async () => {
  const others = await rootWith({
    "sys/bus/pci/devices/0000:00:00.0/vendor": "0x8086\n",
    "sys/bus/pci/devices/0000:00:1f.0/vendor": "0x1d0f\n",
    "sys/bus/pci/devices/0000:00:1f.0/device": "0x7264\n",
    // A vendor that merely contains the id is not it.
    "sys/bus/pci/devices/0000:00:1d.0/vendor": "0x10de0\n",
  });
  assert.equal(await hasNvidiaGpu(others), false);
  assert.equal(await hasNvidiaGpu(await rootWith({})), false);
  // `vendor` is a directory here, so reading it fails; the device is skipped, the next one still counts.
  const odd = await rootWith({ "sys/bus/pci/devices/0000:00:1f.0/vendor": "0x10de\n" }, ["sys/bus/pci/devices/0000:00:00.0/vendor"]);
  assert.equal(await hasNvidiaGpu(odd), true);
  const onlyOdd = await rootWith({}, ["sys/bus/pci/devices/0000:00:00.0/vendor", "sys/bus/pci/devices/0000:00:01.0"]);
  assert.equal(await hasNvidiaGpu(onlyOdd), false);
  assert.equal(await pciVendorAttached(others, "0x1d0f"), true);
});

// ---- memory ----

test("parseBlockSize / parseMemTotal: examples", () => {
  assert.equal(parseBlockSize("8000000\n"), 128 * 1024 * 1024);
  assert.equal(parseBlockSize("80000000"), 2 * GiB);
  assert.equal(parseBlockSize("0x8000000"), 128 * 1024 * 1024);
  for (const bad of ["", "0", "zz", "-8000000", "12345678901234567"]) assert.equal(parseBlockSize(bad), undefined, bad);
  assert.equal(parseMemTotal("MemTotal:       16106628 kB\nMemFree:  1 kB\n"), 16106628 * 1024);
  assert.equal(parseMemTotal("MemFree: 1 kB\nMemTotal: 2048 kB"), 2048 * 1024);
  for (const bad of ["", "MemFree: 1 kB\n", "MemTotal: lots kB\n", "MemTotal: 0 kB\n", "MemTotal: 12 MB\n"])
    assert.equal(parseMemTotal(bad), undefined, bad);
});

function sysfsMemory(blockHex: string, online: string[]): Record<string, string> {
  const files: Record<string, string> = { "sys/devices/system/memory/block_size_bytes": `${blockHex}\n` };
  online.forEach((s, i) => (files[`sys/devices/system/memory/memory${i}/online`] = `${s}\n`));
  return files;
}

test("memory: online sysfs blocks first (as nodeadm counts), offline blocks left out", async () => {
  // 2 GiB blocks, 4 of 5 online → 8 GiB, even though meminfo says less.
  const root = await rootWith({
    ...sysfsMemory("80000000", ["1", "1", "0", "1", "1"]),
    "sys/devices/system/memory/auto_online_blocks": "online\n",
    "proc/meminfo": "MemTotal: 7800000 kB\n",
  });
  const r = await nodeMemory(root);
  assert.ok(r.ok);
  assert.equal(r.value.bytes, 8 * GiB);
  assert.match(r.value.source, /memory\*\/online$/);
});

test("memory: /proc/meminfo MemTotal when sysfs cannot tell", async () => {
  const meminfo = { "proc/meminfo": "MemTotal:       16106628 kB\n" };
  for (const sysfs of [
    {},
    sysfsMemory("zz", ["1"]),
    sysfsMemory("8000000", ["0", "0"]),
    // No memory blocks at all.
    { "sys/devices/system/memory/block_size_bytes": "8000000\n" },
  ]) {
    const r = await nodeMemory(await rootWith({ ...sysfs, ...meminfo }));
    assert.ok(r.ok, JSON.stringify(sysfs));
    assert.equal(r.value.bytes, 16106628 * 1024);
    assert.match(r.value.source, /meminfo MemTotal$/);
  }
  // A block whose `online` cannot be read makes the sysfs total a guess.
  const partial = await rootWith({ ...sysfsMemory("8000000", ["1"]), ...meminfo }, ["sys/devices/system/memory/memory1"]);
  assert.equal(await onlineSysfsMemory(partial), undefined);
  const r = await nodeMemory(partial);
  assert.ok(r.ok && r.value.bytes === 16106628 * 1024);
});

test("memory: nothing under --root is an error value with where and a hint; the host always answers", async () => {
  const none = await nodeMemory(await rootWith({}));
  assert.ok(!none.ok);
  assert.equal(none.errors[0]!.code, "facts.memory");
  assert.match(none.errors[0]!.hint ?? "", /MemTotal/);
  const garbled = await nodeMemory(await rootWith({ "proc/meminfo": "MemFree: 1 kB\n" }));
  assert.ok(!garbled.ok && garbled.errors[0]!.where?.source?.endsWith("/proc/meminfo"));
  const host = await nodeMemory(new HostRoot("/"));
  assert.ok(host.ok && Number.isSafeInteger(host.value.bytes) && host.value.bytes > 0);
});

// ---- static profiles ----

test("staticFacts: nvidiaGpu and memoryBytes are required and checked; copied through", async () => {
  const bad = staticFacts({ ...demo, nvidiaGpu: "yes", memoryBytes: -1 }, "facts.json");
  assert.ok(!bad.ok);
  assert.deepEqual(bad.errors.map((e) => e.where?.path).sort(), ["memoryBytes", "nvidiaGpu"]);
  const { nvidiaGpu: _g, memoryBytes: _m, ...old } = demo;
  const missing = staticFacts(old, "old.json");
  assert.ok(!missing.ok);
  assert.deepEqual(missing.errors.map((e) => e.where?.path).sort(), ["memoryBytes", "nvidiaGpu"]);
  for (const m of [1.5, 2 ** 60, "16"]) assert.ok(!staticFacts({ ...demo, memoryBytes: m }).ok, String(m));
  const good = staticFacts({ ...demo, nvidiaGpu: true, memoryBytes: 0 });
  assert.ok(good.ok && good.value.nvidiaGpu === true && good.value.memoryBytes === 0);
  const d = await demoFacts();
  assert.equal(d.nvidiaGpu, false);
  assert.equal(d.memoryBytes, 16106628 * 1024);
});

// ---- gatherFacts ----

test("gatherFacts: GPU and memory from --root; unknown memory warns only when FastImagePull is asked for", async () => {
  const identity = JSON.stringify({
    instanceId: "i-1",
    instanceType: "m4.xlarge",
    region: "us-west-2",
    availabilityZone: "us-west-2f",
    architecture: "x86_64",
  });
  const answers: Record<string, string> = {
    "dynamic/instance-identity/document": identity,
    "meta-data/mac": "0e:49:61:0f:c3:11",
    "meta-data/local-ipv4": "10.0.0.1",
  };
  const imds: ImdsClient = { get: async (p) => answers[p], getBytes: async () => undefined };
  const ec2: Ec2Client = { privateDnsName: async () => "ip-10-0-0-1.ec2.internal", instanceTypeInfo: async () => undefined };
  const base = {
    "sys/devices/system/cpu/online": "0-7\n",
    "etc/eks/kubelet-version.txt": "v1.35.0\n",
    "etc/eks/containerd-version.txt": "2.0.5\n",
    "sys/bus/pci/devices/0000:00:1e.0/vendor": "0x10de\n",
  };
  const gather = async (root: HostRoot, s: NodeConfigSpec) => {
    const warnings: BerthError[] = [];
    const r = await gatherFacts(s, {
      root,
      imds,
      ec2: async () => ec2,
      run: async (cmd) => {
        throw new Error(`${cmd}: not found`);
      },
      onWarning: (w) => warnings.push(w),
    });
    assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
    return { facts: r.value, warnings };
  };
  const gate = { featureGates: { FastImagePull: true } };
  const known = await gather(await rootWith({ ...base, ...sysfsMemory("80000000", ["1", "1", "1", "1"]) }), gate);
  assert.equal(known.facts.nvidiaGpu, true);
  assert.equal(known.facts.memoryBytes, 8 * GiB);
  assert.deepEqual(known.warnings, []);
  const unknownRoot = await rootWith(base);
  const quiet = await gather(unknownRoot, {});
  assert.equal(quiet.facts.memoryBytes, 0);
  assert.deepEqual(quiet.warnings, []);
  const loud = await gather(unknownRoot, gate);
  assert.equal(loud.facts.memoryBytes, 0);
  assert.deepEqual(
    loud.warnings.map((w) => w.code),
    ["facts.memory"],
  );
  assert.match(loud.warnings[0]!.hint ?? "", /FastImagePull stays off/);
});
