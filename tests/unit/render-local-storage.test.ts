/**
 * instance.localStorage, the pure half: the disk fact (src/facts/disks.ts,
 * on a temp root), the layout and its mount units (src/render/local-storage.ts):
 * names as `systemd-escape --path --suffix=mount` gives them, contents,
 * disabledMounts, mountPath checks, RAID10's minimum, and the plan.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { HostRoot } from "../../src/host/root.ts";
import { instanceStoreDisks, type InstanceStoreDisk } from "../../src/facts/disks.ts";
import { localStorageLayout, mountUnitName, renderLocalStorage, systemdEscapePath } from "../../src/render/local-storage.ts";
import { buildPlan } from "../../src/plan/plan.ts";
import { demoFacts } from "../../src/facts/index.ts";
import type { LocalStorageOptions, NodeConfigSpec } from "../../src/api/types.ts";
import { LOCAL_STORAGE_WANTS } from "../../src/util/node-layout.ts";

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const LINK = "/dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_AWS";
const DISKS: InstanceStoreDisk[] = [
  { device: "/dev/nvme1n1", link: `${LINK}1111` },
  { device: "/dev/nvme2n1", link: `${LINK}2222` },
];
const FOUR: InstanceStoreDisk[] = [1, 2, 3, 4].map((i) => ({ device: `/dev/nvme${i}n1`, link: `${LINK}${i}${i}${i}${i}` }));

function files(ls: LocalStorageOptions, disks: InstanceStoreDisk[] = DISKS): Map<string, string> {
  const r = renderLocalStorage({ instance: { localStorage: ls } }, disks);
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  return new Map(r.value.map((f) => [f.path, f.content as string]));
}

test("unit names are systemd-escape --path --suffix=mount of the mount point", () => {
  // Expected values from systemd-escape 252 (Debian 12).
  const cases: Record<string, string> = {
    "/mnt/k8s-disks/1": "mnt-k8s\\x2ddisks-1.mount",
    "/var/lib/soci-snapshotter-grpc": "var-lib-soci\\x2dsnapshotter\\x2dgrpc.mount",
    "/var/log/pods": "var-log-pods.mount",
    "/data/.hidden/a.b": "data-.hidden-a.b.mount",
    "/mnt/x+y@z:1": "mnt-x\\x2by\\x40z:1.mount",
    "/a b/ü": "a\\x20b-\\xc3\\xbc.mount",
    "/.x": "\\x2ex.mount",
    "/": "-.mount",
  };
  for (const [p, want] of Object.entries(cases)) assert.equal(mountUnitName(p), want, p);
  assert.equal(systemdEscapePath("//mnt//disks/./1/"), "mnt-disks-1");
});

test("Mount: one xfs mount unit per disk at <mountPath>/1, /2, by its by-id link, and a drop-in that wants them", () => {
  const f = files({ strategy: "Mount" });
  assert.deepEqual(
    [...f.keys()],
    ["/etc/systemd/system/mnt-k8s\\x2ddisks-1.mount", "/etc/systemd/system/mnt-k8s\\x2ddisks-2.mount", LOCAL_STORAGE_WANTS],
  );
  assert.equal(
    f.get("/etc/systemd/system/mnt-k8s\\x2ddisks-1.mount"),
    [
      "# Written by berth; changes are overwritten.",
      "[Unit]",
      "Description=berth local storage: EC2 instance-store disk 1 (nvme-Amazon_EC2_NVMe_Instance_Storage_AWS1111)",
      "Before=containerd.service kubelet.service",
      "",
      "[Mount]",
      `What=${LINK}1111`,
      "Where=/mnt/k8s-disks/1",
      "Type=xfs",
      "Options=defaults,noatime",
      "",
    ].join("\n"),
  );
  assert.match(f.get("/etc/systemd/system/mnt-k8s\\x2ddisks-2.mount")!, /^What=.+AWS2222\nWhere=\/mnt\/k8s-disks\/2$/m);
  assert.equal(
    f.get(LOCAL_STORAGE_WANTS),
    "# Written by berth; changes are overwritten.\n[Unit]\nWants=mnt-k8s\\x2ddisks-1.mount mnt-k8s\\x2ddisks-2.mount\n",
  );
});

test("RAID0: the array at <mountPath>/0 and the four state directories bound from it", () => {
  const f = files({ strategy: "RAID0", mountPath: "/data/disks/" });
  const units = [...f.keys()].map((p) => path.basename(p));
  assert.deepEqual(units, [
    "data-disks-0.mount",
    "20-berth-local-storage.conf",
    "var-lib-containerd.mount",
    "var-lib-kubelet.mount",
    "var-lib-soci\\x2dsnapshotter\\x2dgrpc.mount",
    "var-log-pods.mount",
  ]);
  const array = f.get("/etc/systemd/system/data-disks-0.mount")!;
  assert.match(array, /^Description=berth local storage: EC2 instance-store RAID0 array kubernetes of 2 disks$/m);
  assert.match(array, /^What=\/dev\/md\/kubernetes\nWhere=\/data\/disks\/0\nType=xfs\nOptions=defaults,noatime$/m);
  const kubelet = f.get("/etc/systemd/system/var-lib-kubelet.mount")!;
  assert.match(kubelet, /^RequiresMountsFor=\/data\/disks\/0$/m);
  assert.match(kubelet, /^Before=containerd.service kubelet.service$/m);
  assert.match(kubelet, /^What=\/data\/disks\/0\/kubelet\nWhere=\/var\/lib\/kubelet\nType=none\nOptions=bind$/m);
  assert.match(
    f.get("/etc/systemd/system/var-lib-soci\\x2dsnapshotter\\x2dgrpc.mount")!,
    /^Before=containerd.service kubelet.service soci-snapshotter.service$/m,
  );
  assert.match(f.get("/etc/systemd/system/var-log-pods.mount")!, /^What=\/data\/disks\/0\/pods$/m);
  // The array first, so a boot (and the step) mounts it before the bind mounts from it.
  assert.match(f.get(LOCAL_STORAGE_WANTS)!, /^Wants=data-disks-0.mount var-lib-kubelet.mount var-lib-containerd.mount /m);
});

test("disabledMounts leaves those directories on the root volume; the kubelet's is always bound (nodeadm has no switch)", () => {
  const f = files({ strategy: "RAID0", disabledMounts: ["Containerd", "PodLogs", "SOCI"] });
  assert.deepEqual(
    [...f.keys()].map((p) => path.basename(p)),
    ["mnt-k8s\\x2ddisks-0.mount", "20-berth-local-storage.conf", "var-lib-kubelet.mount"],
  );
  const g = files({ strategy: "RAID0", disabledMounts: ["PodLogs"] });
  assert.ok(g.has("/etc/systemd/system/var-lib-containerd.mount"));
  assert.ok(!g.has("/etc/systemd/system/var-log-pods.mount"));
});

test("RAID10 needs four disks: fewer is a config error naming the field; four give a RAID10 array", () => {
  const r = renderLocalStorage({ instance: { localStorage: { strategy: "RAID10" } } }, DISKS);
  assert.ok(!r.ok);
  assert.equal(r.errors[0]?.code, "config.local-storage-raid10");
  assert.equal(r.errors[0]?.where?.path, "spec.instance.localStorage.strategy");
  assert.match(r.errors[0].message, /at least 4 .* has 2 \(\/dev\/nvme1n1, \/dev\/nvme2n1\)/);
  const l = localStorageLayout({ strategy: "RAID10" }, FOUR);
  assert.ok(l.ok && l.value);
  assert.deepEqual(l.value.array, { device: "/dev/md/kubernetes", name: "kubernetes", level: 10 });
});

test("no strategy, or no disks: no files; a bad mountPath is an error even without disks", () => {
  assert.deepEqual(files({}), new Map());
  assert.deepEqual(files({ strategy: "Mount" }, []), new Map());
  for (const [mountPath, why] of [
    ["mnt/disks", /not an absolute path/],
    ["/", /root directory/],
    ["/mnt/../etc", /not normalized/],
    ["/mnt//x", /not normalized/],
    ["/mnt/my disks", /characters/],
    ["/mnt/%h", /characters/],
  ] as const) {
    const r = renderLocalStorage({ instance: { localStorage: { strategy: "Mount", mountPath } } }, []);
    assert.ok(!r.ok, mountPath);
    assert.equal(r.errors[0]?.code, "config.local-storage-mount-path");
    assert.equal(r.errors[0]?.where?.path, "spec.instance.localStorage.mountPath");
    assert.match(r.errors[0].message, why, mountPath);
  }
});

test("the plan carries the units (component local-storage) when the facts list disks", async () => {
  const spec: NodeConfigSpec = {
    cluster: { name: "c", apiServerEndpoint: "https://example.com", certificateAuthority: "Y2E=", cidr: "10.100.0.0/16" },
    instance: { localStorage: { strategy: "Mount" } },
  };
  const config = { nodeConfig: spec, berth: {}, sources: ["test"] };
  const facts = await demoFacts();
  const without = buildPlan(config, facts);
  assert.ok(without.ok);
  assert.ok(!without.value.files.some((f) => f.component === "local-storage"));
  const withDisks = buildPlan(config, { ...facts, instanceStoreDisks: DISKS });
  assert.ok(withDisks.ok);
  assert.deepEqual(
    withDisks.value.files.filter((f) => f.component === "local-storage").map((f) => [f.path, f.mode]),
    [
      ["/etc/systemd/system/mnt-k8s\\x2ddisks-1.mount", 0o644],
      ["/etc/systemd/system/mnt-k8s\\x2ddisks-2.mount", 0o644],
      [LOCAL_STORAGE_WANTS, 0o644],
    ],
  );
});

test("disk fact: by-id instance-store links, resolved in the root, de-duplicated, no partitions, sorted by link", async () => {
  const d = await mkdtemp(path.join(tmpdir(), "berth-disks-"));
  dirs.push(d);
  const root = new HostRoot(d);
  assert.deepEqual(await instanceStoreDisks(root), [], "no /dev/disk/by-id: no disks");
  await mkdir(path.join(d, "dev/disk/by-id"), { recursive: true });
  for (const dev of ["nvme0n1", "nvme1n1", "nvme2n1", "nvme1n1p1"]) await writeFile(path.join(d, "dev", dev), "");
  const byId = (name: string, target: string) => symlink(target, path.join(d, "dev/disk/by-id", name));
  await byId("nvme-Amazon_Elastic_Block_Store_vol0123", "../../nvme0n1");
  await byId("nvme-Amazon_EC2_NVMe_Instance_Storage_AWSBBBB", "../../nvme1n1");
  // A second name for the same disk (newer udev adds the namespace), and an absolute target: resolved inside the root.
  await byId("nvme-Amazon_EC2_NVMe_Instance_Storage_AWSBBBB_1", "/dev/nvme1n1");
  await byId("nvme-Amazon_EC2_NVMe_Instance_Storage_AWSAAAA", "../../nvme2n1");
  await byId("nvme-Amazon_EC2_NVMe_Instance_Storage_AWSBBBB-part1", "../../nvme1n1p1");
  await byId("nvme-Amazon_EC2_NVMe_Instance_Storage_AWSGONE", "../../nvme9n1");
  assert.deepEqual(await instanceStoreDisks(root), [
    { device: "/dev/nvme2n1", link: "/dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_AWSAAAA" },
    { device: "/dev/nvme1n1", link: "/dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_AWSBBBB" },
  ]);
});
