/**
 * Issue 11 (1), "Done when", in the node lab (root): `instance.localStorage`
 * on real block devices. Each test makes two sparse files, attaches them as
 * loop devices, passes them into a fresh node (`--bind=/dev/loopN`,
 * `--property=DeviceAllow=/dev/loopN rwm`) and gives each the by-id link an
 * EC2 instance-store disk has (`nvme-Amazon_EC2_NVMe_Instance_Storage_AWS…`,
 * made inside the node). One node at a time; node, loop devices and files go
 * away after each test, failed or not (lab/cleanup.sh detaches what a crash
 * left).
 *
 *   - `strategy: Mount` → both disks xfs, mounted at /mnt/k8s-disks/1 and /2
 *     by active mount units that multi-user.target wants, kubelet active; a
 *     second `berth init` formats nothing (the filesystem UUIDs stay).
 *   - `strategy: RAID0` → this kernel has no md driver (LAB-FACTS.md). What
 *     needs md, and so is not run here: the array itself (`mdadm --create`),
 *     its xfs, its mount at /mnt/k8s-disks/0 and the move of the state
 *     directories onto it. What runs here: the config phase renders the
 *     array's and the four bind mounts' units and systemd loads them as
 *     planned (names, Where=, ordering); the run phase probes the blank disks,
 *     runs mdadm, and `berth init` fails naming mdadm and md, with containerd
 *     and kubelet never started.
 *
 * Run: node --import tsx --test tests/lab/local-storage.test.ts  (after npm run package)
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { LAB_TMP_PREFIX, run } from "./lab.ts";
import { bootRunNode, type RunNode } from "./run-node.ts";
import type { RunStatus } from "../../src/host/run-status.ts";

const SERIALS = ["AWSLAB0000000001", "AWSLAB0000000002"];
const BY_ID = "/dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_";
/** Above mkfs.xfs's 300 MB minimum; sparse, so it costs only what xfs writes. */
const DISK_SIZE = "512M";

interface LoopDisks {
  devices: string[];
  release(): Promise<void>;
}

/** Two sparse files as loop devices, in a dir lab/cleanup.sh knows (owner file: this process). */
async function loopDisks(): Promise<LoopDisks> {
  const dir = await mkdtemp(`${LAB_TMP_PREFIX}disks-`);
  await writeFile(join(dir, "owner"), `${process.pid}\n`);
  const devices: string[] = [];
  const release = async (): Promise<void> => {
    for (const d of devices) await run("losetup", ["-d", d]);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < SERIALS.length; i++) {
      const file = join(dir, `disk${i + 1}.img`);
      await run("truncate", ["-s", DISK_SIZE, file], { check: true });
      devices.push((await run("losetup", ["-f", "--show", file], { check: true })).stdout.trim());
    }
  } catch (e) {
    await release();
    throw e;
  }
  return { devices, release };
}

const strategyFile = (strategy: string): string =>
  `apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  instance:\n    localStorage:\n      strategy: ${strategy}\n`;

/** A run node with the disks passed in and linked as instance-store disks; `fn` runs, then everything is torn down. */
async function withDiskNode(name: string, strategy: string, fn: (rn: RunNode, devices: string[]) => Promise<void>): Promise<void> {
  const disks = await loopDisks();
  let rn: RunNode | undefined;
  try {
    rn = await bootRunNode({
      name,
      nspawnArgs: disks.devices.flatMap((d) => [`--bind=${d}`, `--property=DeviceAllow=${d} rwm`]),
      files: { "/etc/berth-lab/local-storage.yaml": strategyFile(strategy) },
    });
    for (const [i, d] of disks.devices.entries()) {
      const link = await rn.node.exec([
        "sh",
        "-c",
        `test -b ${d} && mkdir -p /dev/disk/by-id && ln -sfn ../../${d.slice(5)} ${BY_ID}${SERIALS[i]}`,
      ]);
      assert.equal(link.code, 0, `${d} is not a block device in the node: ${link.stderr}`);
    }
    await fn(rn, disks.devices);
  } finally {
    await rn?.cleanup();
    await disks.release();
  }
}

const INIT = ["init", "-c", "imds://user-data", "-c", "file:///etc/berth-lab/local-storage.yaml"];

async function status(rn: RunNode): Promise<RunStatus> {
  return JSON.parse((await rn.node.exec(["cat", "/run/berth/status.json"], { check: true })).stdout) as RunStatus;
}

async function blkid(rn: RunNode, device: string, tag: string): Promise<string> {
  return (await rn.node.exec(["blkid", "-p", "-o", "value", "-s", tag, device])).stdout.trim();
}

test("Mount: two instance-store disks become xfs at /mnt/k8s-disks/1 and /2 by active mount units; a second init formats nothing", async () => {
  await withDiskNode("ls-mount", "Mount", async (rn, devices) => {
    const first = await rn.berth(INIT);
    assert.equal(first.code, 0, `berth init failed:\n${first.stdout}\n${first.stderr}`);
    const uuids: string[] = [];
    for (const [i, d] of devices.entries()) {
      const unit = `mnt-k8s\\x2ddisks-${i + 1}.mount`;
      const u = await rn.show(unit, ["ActiveState", "What", "Where", "WantedBy", "Before"]);
      assert.equal(u.ActiveState, "active", `${unit}: ${JSON.stringify(u)}\n${await rn.node.journal(unit, { lines: 20 })}`);
      // An active mount shows its source as mounted (the device); the unit file names the disk by its by-id link.
      assert.equal(u.What, d);
      const file = (await rn.node.exec(["cat", `/etc/systemd/system/${unit}`], { check: true })).stdout;
      assert.match(file, new RegExp(`^What=${BY_ID}${SERIALS[i]}$`, "m"));
      assert.equal(u.Where, `/mnt/k8s-disks/${i + 1}`);
      // "Enabled" berth's way: multi-user.target wants it (the drop-in), and it comes before containerd and kubelet.
      assert.match(u.WantedBy ?? "", /multi-user\.target/);
      assert.match(u.Before ?? "", /containerd\.service/);
      assert.match(u.Before ?? "", /kubelet\.service/);
      const mnt = (await rn.node.exec(["findmnt", "-n", "-o", "SOURCE,FSTYPE", `/mnt/k8s-disks/${i + 1}`])).stdout.trim().split(/\s+/);
      assert.deepEqual(mnt, [d, "xfs"]);
      assert.equal(await blkid(rn, d, "TYPE"), "xfs");
      uuids.push(await blkid(rn, d, "UUID"));
    }
    assert.equal((await rn.show("kubelet.service", ["ActiveState"])).ActiveState, "active");
    const s1 = await status(rn);
    assert.equal(s1.result, "succeeded");
    assert.deepEqual(
      s1.steps.slice(0, 3).map((s) => s.step),
      ["reload", "local-storage", "containerd"],
    );
    const step1 = s1.steps.find((s) => s.step === "local-storage");
    assert.equal(step1?.outcome, "changed");
    assert.match(step1?.cause ?? "", /formatted .*; mounted \/mnt\/k8s-disks\/1; .*mounted \/mnt\/k8s-disks\/2/);

    const second = await rn.berth(INIT);
    assert.equal(second.code, 0, `second berth init failed:\n${second.stdout}\n${second.stderr}`);
    assert.match(second.stdout, /^0 written, 0 removed, \d+ unchanged/m);
    for (const [i, d] of devices.entries()) assert.equal(await blkid(rn, d, "UUID"), uuids[i], `${d} was formatted again`);
    const step2 = (await status(rn)).steps.find((s) => s.step === "local-storage");
    assert.deepEqual([step2?.outcome, step2?.action], ["ok", "none"]);
  });
});

test("RAID0 on this md-less kernel: the units are planned and loaded, and berth init fails naming mdadm and md", async (t) => {
  await withDiskNode("ls-raid0", "RAID0", async (rn, devices) => {
    const r = await rn.berth(INIT);
    assert.equal(r.code, 1, `berth init should fail without md:\n${r.stdout}\n${r.stderr}`);
    t.diagnostic(`berth init's error without md: ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`);
    assert.match(r.stderr, /mdadm --create \/dev\/md\/kubernetes --run --force --verbose --level=0 --name=kubernetes --raid-devices=2/);
    for (const d of devices) assert.ok(r.stderr.includes(d), `the error names ${d}:\n${r.stderr}`);
    assert.match(r.stderr, /no md \(software RAID\) driver: \/proc\/mdstat is missing/);

    // The unit plan, as systemd loaded it: the array's mount and the four bind mounts from it.
    const array = await rn.show("mnt-k8s\\x2ddisks-0.mount", ["LoadState", "What", "Where", "WantedBy", "ActiveState"]);
    assert.deepEqual(array, {
      LoadState: "loaded",
      What: "/dev/md/kubernetes",
      Where: "/mnt/k8s-disks/0",
      WantedBy: "multi-user.target",
      ActiveState: "inactive",
    });
    for (const [unit, where, from] of [
      ["var-lib-kubelet.mount", "/var/lib/kubelet", "kubelet"],
      ["var-lib-containerd.mount", "/var/lib/containerd", "containerd"],
      ["var-lib-soci\\x2dsnapshotter\\x2dgrpc.mount", "/var/lib/soci-snapshotter-grpc", "soci-snapshotter-grpc"],
      ["var-log-pods.mount", "/var/log/pods", "pods"],
    ] as const) {
      const b = await rn.show(unit, ["LoadState", "FragmentPath", "After", "ActiveState"]);
      assert.equal(b.LoadState, "loaded", unit);
      assert.equal(b.FragmentPath, `/etc/systemd/system/${unit}`, unit);
      const file = (await rn.node.exec(["cat", `/etc/systemd/system/${unit}`], { check: true })).stdout;
      assert.match(file, new RegExp(`^What=/mnt/k8s-disks/0/${from}\\nWhere=${where}\\nType=none\\nOptions=bind$`, "m"), unit);
      // systemctl show quotes a name with a backslash: "mnt-k8s\\x2ddisks-0.mount".
      assert.ok((b.After ?? "").includes('"mnt-k8s\\\\x2ddisks-0.mount"'), `${unit} is not ordered after the array's mount: ${b.After}`);
      // The lab itself bind-mounts /var/lib/containerd (an overlay root cannot hold it), which systemd shows as that unit, active.
      if (where !== "/var/lib/containerd") assert.equal(b.ActiveState, "inactive", unit);
    }
    const verify = await rn.node.exec([
      "systemd-analyze",
      "verify",
      "/etc/systemd/system/mnt-k8s\\x2ddisks-0.mount",
      "/etc/systemd/system/var-lib-kubelet.mount",
    ]);
    assert.doesNotMatch(verify.stderr, /mount|Where=/i, `systemd-analyze verify: ${verify.stderr}`);

    const s = await status(rn);
    assert.equal(s.result, "failed");
    assert.deepEqual(
      s.steps.slice(0, 3).map((x) => [x.step, x.outcome]),
      [
        ["reload", "changed"],
        ["local-storage", "failed"],
        ["containerd", "skipped"],
      ],
    );
    for (const u of ["containerd.service", "kubelet.service"]) assert.equal((await rn.show(u, ["ActiveState"])).ActiveState, "inactive", u);
    // Nothing was formatted: the disks are as blank as they came.
    for (const d of devices) assert.equal(await blkid(rn, d, "TYPE"), "");
  });
});
