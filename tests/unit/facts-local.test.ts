import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, writeFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import fc from "fast-check";
import { HostRoot } from "../../src/host/root.ts";
import { parseCpuList, onlineCpus, hasNvidiaRuntime, hasNeuronDevices } from "../../src/facts/sysfs.ts";
import {
  parseKubeletVersion,
  parseContainerdVersion,
  kubeletVersion,
  containerdVersion,
  type CommandRunner,
} from "../../src/facts/versions.ts";
import { tableLookup, lookupInstanceType, tableTypes } from "../../src/facts/instance-types.ts";

const dirs: string[] = [];
after(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});
async function rootWith(files: Record<string, string>): Promise<HostRoot> {
  const d = await mkdtemp(path.join(os.tmpdir(), "berth-facts-"));
  dirs.push(d);
  for (const [p, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(d, p)), { recursive: true });
    await writeFile(path.join(d, p), content);
  }
  return new HostRoot(d);
}
const noCommands: CommandRunner = async (cmd) => {
  throw new Error(`${cmd}: not found`);
};

test("parseCpuList: examples", () => {
  assert.deepEqual(parseCpuList("0-3,8,10-11\n"), [0, 1, 2, 3, 8, 10, 11]);
  assert.deepEqual(parseCpuList("0"), [0]);
  assert.deepEqual(parseCpuList("0-1"), [0, 1]);
  assert.deepEqual(parseCpuList("\n"), []);
  assert.deepEqual(parseCpuList("2-3,0-2"), [0, 1, 2, 3]);
  for (const bad of ["3-1", "a", "0-", "-1", "1,,2", "0-3;4"]) assert.equal(parseCpuList(bad), undefined, bad);
});

test("parseCpuList: property — any set rendered as a kernel range list parses back to itself", () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.integer({ min: 0, max: 4095 }), { maxLength: 64 }),
      fc.array(fc.boolean(), { maxLength: 64 }),
      (ids, splits) => {
        const sorted = [...ids].sort((a, b) => a - b);
        // Render consecutive runs as ranges, sometimes splitting a run (also valid kernel syntax).
        const parts: string[] = [];
        let i = 0;
        while (i < sorted.length) {
          let j = i;
          while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1 && !splits[j % Math.max(1, splits.length)]) j++;
          parts.push(i === j ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
          i = j + 1;
        }
        assert.deepEqual(parseCpuList(parts.join(",") + "\n"), sorted);
      },
    ),
  );
});

test("onlineCpus: from sysfs under --root, cpuN fallback, error with hint", async () => {
  const two = await rootWith({ "sys/devices/system/cpu/online": "0-1\n" });
  assert.deepEqual(await onlineCpus(two), { ok: true, value: { cpus: 2, source: two.path("/sys/devices/system/cpu/online") } });
  const r = await onlineCpus(await rootWith({ "sys/devices/system/cpu/online": "0-3,8,10-11\n" }));
  assert.ok(r.ok && r.value.cpus === 7);
  const dirsOnly = await onlineCpus(
    await rootWith({ "sys/devices/system/cpu/cpu0/x": "", "sys/devices/system/cpu/cpu1/x": "", "sys/devices/system/cpu/cpufreq/x": "" }),
  );
  assert.ok(dirsOnly.ok && dirsOnly.value.cpus === 2);
  const bad = await onlineCpus(await rootWith({ "sys/devices/system/cpu/online": "zero\n" }));
  assert.ok(!bad.ok && bad.errors[0]!.where?.line === 1 && !!bad.errors[0]!.hint);
  const none = await onlineCpus(await rootWith({}));
  assert.ok(!none.ok && /online CPU list/.test(none.errors[0]!.hint ?? ""));
});

test("version parsing: kubelet keeps EKS suffixes, containerd keeps the core", () => {
  assert.equal(parseKubeletVersion("v1.33.0\n"), "1.33.0");
  assert.equal(parseKubeletVersion("Kubernetes v1.33.0\n"), "1.33.0");
  assert.equal(parseKubeletVersion("Kubernetes v1.35.0-eks-5e0fdde"), "1.35.0-eks-5e0fdde");
  assert.equal(parseKubeletVersion("1.29.0"), "1.29.0");
  assert.equal(parseKubeletVersion("Kubernetes"), undefined);
  assert.equal(parseContainerdVersion("1.7.27\n"), "1.7.27");
  assert.equal(parseContainerdVersion("containerd containerd.io 1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da\n"), "1.7.27");
  assert.equal(parseContainerdVersion("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1\n"), "1.6.20");
  assert.equal(
    parseContainerdVersion("containerd github.com/containerd/containerd/v2 v2.0.5 fb4c30d4ede3531652d86197bf3fc9515e5276d9\n"),
    "2.0.5",
  );
  assert.equal(parseContainerdVersion("1.7.27-1.amzn2023.0.1"), "1.7.27");
  assert.equal(parseContainerdVersion("containerd"), undefined);
});

test("versions: file first, then `--version` of the root's binary, else an error with a hint", async () => {
  const fromFiles = await rootWith({ "etc/eks/kubelet-version.txt": "v1.33.0\n", "etc/eks/containerd-version.txt": "1.7.27\n" });
  assert.deepEqual(await kubeletVersion(fromFiles, noCommands), { ok: true, value: "1.33.0" });
  assert.deepEqual(await containerdVersion(fromFiles, noCommands), { ok: true, value: "1.7.27" });

  const withBins = await rootWith({ "usr/bin/kubelet": "", "usr/local/bin/containerd": "" });
  const seen: string[] = [];
  const run: CommandRunner = async (cmd, args) => {
    seen.push(`${path.relative(withBins.dir, cmd)} ${args.join(" ")}`);
    return cmd.endsWith("kubelet") ? "Kubernetes v1.32.0\n" : "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1\n";
  };
  assert.deepEqual(await kubeletVersion(withBins, run), { ok: true, value: "1.32.0" });
  assert.deepEqual(await containerdVersion(withBins, run), { ok: true, value: "1.6.20" });
  assert.deepEqual(seen, ["usr/bin/kubelet --version", "usr/local/bin/containerd --version"]);

  const empty = await rootWith({});
  const k = await kubeletVersion(empty, noCommands);
  assert.ok(!k.ok);
  assert.equal(k.errors[0]!.code, "facts.kubelet-version");
  assert.match(k.errors[0]!.hint ?? "", /kubelet-version\.txt/);
  const bad = await containerdVersion(await rootWith({ "etc/eks/containerd-version.txt": "latest\n" }), noCommands);
  assert.ok(!bad.ok && bad.errors[0]!.where?.line === 1);
});

test("runtimes: nvidia-container-runtime binary; neuron by /dev/neuronN or PCI ids", async () => {
  assert.equal(await hasNvidiaRuntime(await rootWith({ "usr/bin/nvidia-container-runtime": "" })), true);
  assert.equal(await hasNvidiaRuntime(await rootWith({})), false);
  assert.equal(await hasNeuronDevices(await rootWith({ "dev/neuron0": "" })), true);
  assert.equal(
    await hasNeuronDevices(
      await rootWith({ "sys/bus/pci/devices/0000:00:1e.0/vendor": "0x1d0f\n", "sys/bus/pci/devices/0000:00:1e.0/device": "0x7264\n" }),
    ),
    true,
  );
  // An Amazon ENA/NVMe device (same vendor, other ids) is not a Neuron device.
  assert.equal(
    await hasNeuronDevices(
      await rootWith({ "sys/bus/pci/devices/0000:00:05.0/vendor": "0x1d0f\n", "sys/bus/pci/devices/0000:00:05.0/device": "0xec20\n" }),
    ),
    false,
  );
  assert.equal(await hasNeuronDevices(await rootWith({})), false);
});

test("instance type table: m4.xlarge is 4 ENIs × 15 IPv4; lookup order table → EC2 → unknown", async () => {
  assert.deepEqual(await tableLookup("m4.xlarge"), { defaultEnis: 4, ipv4PerEni: 15 });
  assert.equal(await tableLookup("toString"), undefined);
  const types = await tableTypes();
  assert.ok(types.length > 1000 && types.includes("m5.large"));
  let ec2Calls = 0;
  const ec2 = async () => ({
    privateDnsName: async () => "x",
    instanceTypeInfo: async (t: string) => {
      ec2Calls++;
      if (t === "boom.large") throw new Error("EC2 down");
      return t === "x9.huge" ? { defaultEnis: 7, ipv4PerEni: 21 } : undefined;
    },
  });
  assert.deepEqual(await lookupInstanceType("m4.xlarge", ec2), { defaultEnis: 4, ipv4PerEni: 15, origin: "table" });
  assert.equal(ec2Calls, 0);
  assert.deepEqual(await lookupInstanceType("x9.huge", ec2), { defaultEnis: 7, ipv4PerEni: 21, origin: "ec2" });
  assert.deepEqual(await lookupInstanceType("mock-type.large", ec2), { origin: "unknown" });
  const errs: unknown[] = [];
  assert.deepEqual(await lookupInstanceType("boom.large", ec2, (e) => errs.push(e)), { origin: "unknown" });
  assert.equal(errs.length, 1);
  assert.deepEqual(await lookupInstanceType("mock-type.large"), { origin: "unknown" });
});
