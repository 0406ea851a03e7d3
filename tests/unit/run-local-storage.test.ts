/**
 * The run phase's local-storage step against the recording fakes of systemd
 * (tests/fakes/systemd-fake.ts) and of the disk commands
 * (tests/fakes/disk-commands-fake.ts), on a temp root that holds the units the
 * config phase would have written: Mount formats only blank disks and starts
 * their mounts; a second run changes nothing; RAID0 without md fails with the
 * command and its error and containerd is never started; RAID0 with md
 * builds, keeps, formats, mounts and moves the state directories with their
 * units stopped around the move; no disks: nothing, said once.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { once } from "node:events";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { HostRoot } from "../../src/host/root.ts";
import type { LocalStorageOptions } from "../../src/api/types.ts";
import type { InstanceStoreDisk } from "../../src/facts/disks.ts";
import type { RunStatus } from "../../src/host/run-status.ts";
import { localStorageFiles, localStorageLayout } from "../../src/render/local-storage.ts";
import { localStorageStep } from "../../src/phases/steps/local-storage.ts";
import type { RunStepContext } from "../../src/phases/steps/context.ts";
import type { StepOutcome } from "../../src/phases/steps/step.ts";
import { runPhase } from "../../src/phases/run.ts";
import type { Logger } from "../../src/util/log.ts";
import { FakeSystemd } from "../fakes/systemd-fake.ts";
import { FakeDiskCommands } from "../fakes/disk-commands-fake.ts";
import { FakeCri } from "../fakes/cri-fake.ts";
import { MDADM_CONFIG_FILES } from "../../src/util/node-layout.ts";

const dirs: string[] = [];
const servers: Server[] = [];
after(async () => {
  for (const s of servers) s.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const LINK = "/dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_AWS";
const DISKS: InstanceStoreDisk[] = [
  { device: "/dev/nvme1n1", link: `${LINK}1111` },
  { device: "/dev/nvme2n1", link: `${LINK}2222` },
];
const M1 = "mnt-k8s\\x2ddisks-1.mount";
const M2 = "mnt-k8s\\x2ddisks-2.mount";
const ARRAY = "mnt-k8s\\x2ddisks-0.mount";
const BINDS = ["var-lib-kubelet.mount", "var-lib-containerd.mount", "var-lib-soci\\x2dsnapshotter\\x2dgrpc.mount", "var-log-pods.mount"];

function recorder(): Logger & { events(): string[] } {
  const lines: { level: string; obj: Record<string, unknown> }[] = [];
  const at = (level: string) => (obj: Record<string, unknown>) => void lines.push({ level, obj });
  return {
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    debug: at("debug"),
    events: () => lines.map((l) => String(l.obj.event)),
  };
}

/** A temp root holding the units the config phase renders for `ls` on `disks`. */
async function nodeRoot(ls: LocalStorageOptions, disks: InstanceStoreDisk[] = DISKS): Promise<HostRoot> {
  const dir = await mkdtemp(path.join(tmpdir(), "berth-local-storage-"));
  dirs.push(dir);
  const root = new HostRoot(dir);
  const layout = localStorageLayout(ls, disks);
  assert.ok(layout.ok);
  for (const f of layout.value ? localStorageFiles(layout.value) : []) {
    await mkdir(path.dirname(root.path(f.path)), { recursive: true });
    await writeFile(root.path(f.path), f.content);
  }
  return root;
}

function stepCtx(root: HostRoot, sd: FakeSystemd): RunStepContext & { log: ReturnType<typeof recorder> } {
  const status: RunStatus = {
    apiVersion: "berth.dev/v1alpha1",
    kind: "RunStatus",
    result: "running",
    startedAt: new Date(0).toISOString(),
    steps: [],
  };
  return {
    root,
    sd,
    log: recorder(),
    now: () => 0,
    written: [],
    status,
    socketPath: root.path("/run/containerd/containerd.sock"),
    cri: () => Promise.reject(new Error("no CRI in these tests")),
    enqueued: [],
  };
}

function runStep(
  ctx: RunStepContext,
  ls: LocalStorageOptions,
  disks: FakeDiskCommands,
  found: InstanceStoreDisk[] = DISKS,
): Promise<StepOutcome> {
  return localStorageStep({ needs: [], localStorage: ls, disks: () => Promise.resolve(found), run: disks.run, jobTimeoutMs: 1000 }).run(
    ctx,
  );
}

const inactive = (names: string[]) => Object.fromEntries(names.map((n) => [n, { activeState: "inactive" }]));

test("Mount: only the disk without a filesystem is formatted; both mounts started; a second run does nothing", async () => {
  const root = await nodeRoot({ strategy: "Mount" });
  const sd = new FakeSystemd({ units: inactive([M1, M2]) });
  const disks = new FakeDiskCommands({ fs: { [root.path("/dev/nvme2n1")]: "xfs" } });
  const ctx = stepCtx(root, sd);
  const out = await runStep(ctx, { strategy: "Mount" }, disks);
  assert.equal(out.outcome, "changed", JSON.stringify(out));
  assert.deepEqual(disks.lines(), [
    `blkid -p -o value -s TYPE ${root.path("/dev/nvme1n1")}`,
    `mkfs.xfs -l su=8b ${root.path("/dev/nvme1n1")}`,
    `blkid -p -o value -s TYPE ${root.path("/dev/nvme2n1")}`,
  ]);
  assert.deepEqual(
    sd.callsOf("startUnit").map((c) => c.unit),
    [M1, M2],
  );
  assert.ok(
    out.outcome === "changed" && /formatted \/dev\/nvme1n1; mounted \/mnt\/k8s-disks\/1; mounted \/mnt\/k8s-disks\/2/.test(out.cause),
    JSON.stringify(out),
  );
  assert.deepEqual(ctx.log.events(), ["local-storage.formatted", "local-storage.mounted", "local-storage.mounted"]);

  const again = new FakeDiskCommands({ fs: Object.fromEntries(disks.fs) });
  const second = await runStep(stepCtx(root, sd), { strategy: "Mount" }, again);
  assert.equal(second.outcome, "ok");
  assert.deepEqual(again.lines(), [], "nothing probed or formatted when the mounts are active");
  assert.equal(sd.callsOf("startUnit").length, 2);
});

test("Mount: a disk holding another filesystem is never formatted; the step fails and says how to wipe it", async () => {
  const root = await nodeRoot({ strategy: "Mount" });
  const sd = new FakeSystemd({ units: inactive([M1, M2]) });
  const disks = new FakeDiskCommands({ fs: { [root.path("/dev/nvme1n1")]: "ext4" } });
  const out = await runStep(stepCtx(root, sd), { strategy: "Mount" }, disks);
  assert.ok(out.outcome === "failed");
  assert.equal(out.error.code, "run.local-storage-signature");
  assert.match(out.error.message, /\/dev\/nvme1n1 holds ext4, not xfs/);
  assert.match(out.error.hint ?? "", /wipefs -a \/dev\/nvme1n1/);
  assert.ok(!disks.lines().some((l) => l.startsWith("mkfs")));
  assert.equal(sd.callsOf("startUnit").length, 0);
});

test("a failed mkfs.xfs names the command and its error; a missing mkfs.xfs names the package", async () => {
  const root = await nodeRoot({ strategy: "Mount" });
  const disks = new FakeDiskCommands().failOnce("mkfs.xfs", { stderr: "mkfs.xfs: cannot open /dev/nvme1n1: Device or resource busy\n" });
  const out = await runStep(stepCtx(root, new FakeSystemd({ units: inactive([M1, M2]) })), { strategy: "Mount" }, disks);
  assert.ok(out.outcome === "failed");
  assert.equal(out.error.code, "run.local-storage-command");
  assert.equal(
    out.error.message,
    `\`mkfs.xfs -l su=8b ${root.path("/dev/nvme1n1")}\` failed (exit 1): mkfs.xfs: cannot open /dev/nvme1n1: Device or resource busy`,
  );

  const none = await runStep(
    stepCtx(root, new FakeSystemd({ units: inactive([M1, M2]) })),
    { strategy: "Mount" },
    new FakeDiskCommands({ missing: ["mkfs.xfs"] }),
  );
  assert.ok(none.outcome === "failed");
  assert.equal(none.error.code, "run.local-storage-tool");
  assert.match(none.error.message, /^mkfs\.xfs is not installed/);
  assert.match(none.error.hint ?? "", /xfsprogs/);
});

test("a mount unit that does not become active fails the step with the unit and where to look", async () => {
  const root = await nodeRoot({ strategy: "Mount" });
  const sd = new FakeSystemd({ units: inactive([M1, M2]) }).jobResultOnce("startUnit", "failed");
  const out = await runStep(stepCtx(root, sd), { strategy: "Mount" }, new FakeDiskCommands());
  assert.ok(out.outcome === "failed");
  assert.equal(out.error.code, "run.local-storage-mount");
  assert.match(
    out.error.message,
    /mnt-k8s\\x2ddisks-1\.mount \(.+AWS1111 on \/mnt\/k8s-disks\/1\) is not active after its start \(job failed/,
  );
  assert.match(out.error.hint ?? "", /journalctl -u 'mnt-k8s\\x2ddisks-1\.mount'/);
});

test("no instance-store disks: nothing done, said once", async () => {
  const root = await nodeRoot({ strategy: "RAID0" }, []);
  const sd = new FakeSystemd();
  const disks = new FakeDiskCommands();
  const out = await runStep(stepCtx(root, sd), { strategy: "RAID0" }, disks, []);
  assert.equal(out.outcome, "ok");
  assert.equal(out.event, "local-storage.no-disks");
  assert.match(
    out.outcome === "ok" ? out.cause : "",
    /no EC2 instance-store NVMe disks \(\/dev\/disk\/by-id\/\*NVMe_Instance_Storage_\*\)/,
  );
  assert.deepEqual(disks.lines(), []);
  assert.deepEqual(sd.calls, []);
});

test("units on disk rendered from other disks: the step fails rather than mount the wrong thing", async () => {
  const root = await nodeRoot({ strategy: "Mount" }, [DISKS[0]!]);
  const out = await runStep(stepCtx(root, new FakeSystemd({ units: inactive([M1, M2]) })), { strategy: "Mount" }, new FakeDiskCommands());
  assert.ok(out.outcome === "failed");
  assert.equal(out.error.code, "run.local-storage-units");
  assert.match(out.error.message, /mnt-k8s\\x2ddisks-2\.mount is missing/);
});

/** A root for runPhase: containerd's config and a listening CRI socket file, plus the local-storage units. */
async function runRoot(ls: LocalStorageOptions): Promise<HostRoot> {
  const root = await nodeRoot(ls);
  await mkdir(root.path("/etc/containerd"), { recursive: true });
  await writeFile(
    root.path("/etc/containerd/config.toml"),
    'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = "localhost/kubernetes/pause:latest"\n',
  );
  await mkdir(root.path("/run/containerd"), { recursive: true });
  const srv = createServer();
  srv.listen(root.path("/run/containerd/containerd.sock"));
  await once(srv, "listening");
  servers.push(srv);
  return root;
}

test("RAID0 on a kernel without md: the run phase fails with mdadm's command and error, names md, never starts containerd", async () => {
  const ls: LocalStorageOptions = { strategy: "RAID0" };
  const root = await runRoot(ls);
  const sd = new FakeSystemd({
    units: {
      ...inactive([ARRAY, ...BINDS]),
      "containerd.service": { activeState: "inactive" },
      "kubelet.service": { activeState: "inactive" },
    },
  });
  const disks = new FakeDiskCommands({ md: false });
  const r = await runPhase({
    root,
    config: { nodeConfig: { instance: { localStorage: ls } }, berth: {}, sources: ["test"] },
    systemd: sd,
    log: recorder(),
    env: {},
    deps: {
      cri: new FakeCri(root.path("/run/containerd/containerd.sock")),
      diskCommands: disks.run,
      instanceStoreDisks: () => Promise.resolve(DISKS),
    },
  });
  assert.ok(!r.ok);
  const e = r.errors[0]!;
  assert.equal(e.code, "run.local-storage-command");
  const members = `${root.path("/dev/nvme1n1")} ${root.path("/dev/nvme2n1")}`;
  assert.equal(
    e.message,
    `\`mdadm --create ${root.path("/dev/md/kubernetes")} --run --force --verbose --level=0 --name=kubernetes --raid-devices=2 ${members}\`` +
      " failed (exit 1): mdadm: unexpected failure opening /dev/md127",
  );
  assert.match(e.hint ?? "", /no md \(software RAID\) driver: \/proc\/mdstat is missing/);
  assert.deepEqual(sd.callsOf("startUnit"), [], "neither the array's mount nor containerd was started");
  const status = JSON.parse(readFileSync(root.path("/run/berth/status.json"), "utf8")) as RunStatus;
  assert.equal(status.result, "failed");
  assert.deepEqual(
    status.steps.map((s) => [s.step, s.outcome]),
    [
      ["reload", "changed"],
      ["local-storage", "failed"],
      ["containerd", "skipped"],
      ["cri", "skipped"],
      ["sandbox-image", "skipped"],
      ["kubelet", "skipped"],
    ],
  );
});

test("RAID0 with md: array created from blank disks and kept in mdadm's config, xfs -K, mounted, state directories moved with kubelet stopped around it", async () => {
  const ls: LocalStorageOptions = { strategy: "RAID0", disabledMounts: ["SOCI"] };
  const root = await nodeRoot(ls);
  await mkdir(root.path("/proc"), { recursive: true });
  await writeFile(root.path("/proc/mdstat"), "Personalities : [raid0]\n");
  await mkdir(root.path("/var/lib/kubelet/pki"), { recursive: true });
  await writeFile(root.path("/var/lib/kubelet/pki/kubelet.crt"), "cert\n");
  const binds = BINDS.filter((b) => !b.includes("soci"));
  const sd = new FakeSystemd({
    units: {
      ...inactive([ARRAY, ...binds]),
      "kubelet.service": { activeState: "active" },
      "containerd.service": { activeState: "inactive" },
    },
  });
  const disks = new FakeDiskCommands();
  const out = await runStep(stepCtx(root, sd), ls, disks);
  assert.equal(out.outcome, "changed", JSON.stringify(out));
  const md = root.path("/dev/md/kubernetes");
  const lines = disks.lines();
  assert.deepEqual(lines.slice(0, 6), [
    `blkid -p -o value -s TYPE ${root.path("/dev/nvme1n1")}`,
    `blkid -p -o value -s TYPE ${root.path("/dev/nvme2n1")}`,
    `mdadm --create ${md} --run --force --verbose --level=0 --name=kubernetes --raid-devices=2 ${root.path("/dev/nvme1n1")} ${root.path("/dev/nvme2n1")}`,
    `mdadm --detail --brief ${md}`,
    `blkid -p -o value -s TYPE ${md}`,
    `mkfs.xfs -K -l su=8b ${md}`,
  ]);
  assert.deepEqual(
    lines.slice(6),
    ["kubelet", "containerd", "pods"].map((d) => {
      const where = d === "pods" ? "/var/log/pods" : `/var/lib/${d}`;
      return `cp -a ${root.path(where)}/. ${root.path(`/mnt/k8s-disks/0/${d}`)}/`;
    }),
  );
  for (const f of MDADM_CONFIG_FILES)
    assert.match(readFileSync(root.path(f), "utf8"), /^ARRAY .+\/dev\/md\/kubernetes metadata=1\.2 name=node:kubernetes UUID=/m);
  assert.equal(readFileSync(root.path("/mnt/k8s-disks/0/kubelet/pki/kubelet.crt"), "utf8"), "cert\n");
  // The kubelet (which uses /var/lib/kubelet and /var/log/pods) is stopped before the move and started after; containerd was down and stays down.
  const jobs = sd.calls.filter((c) => c.method === "startUnit" || c.method === "stopUnit").map((c) => `${c.method} ${c.unit}`);
  assert.deepEqual(jobs, [
    `startUnit ${ARRAY}`,
    "stopUnit kubelet.service",
    ...binds.map((b) => `startUnit ${b}`),
    "startUnit kubelet.service",
  ]);

  const again = new FakeDiskCommands({ fs: Object.fromEntries(disks.fs) });
  const second = await runStep(stepCtx(root, sd), ls, again);
  assert.equal(second.outcome, "ok", JSON.stringify(second));
  assert.deepEqual(again.lines(), [`mdadm --detail --brief ${md}`], "a re-run only re-reads the array's config line");
});

test("RAID0: members carrying the array's superblock are assembled, not created; a member with a filesystem is refused", async () => {
  const ls: LocalStorageOptions = { strategy: "RAID0", disabledMounts: ["Containerd", "PodLogs", "SOCI"] };
  const root = await nodeRoot(ls);
  const member = { [root.path("/dev/nvme1n1")]: "linux_raid_member", [root.path("/dev/nvme2n1")]: "linux_raid_member" };
  const disks = new FakeDiskCommands({ fs: { ...member, [root.path("/dev/md/kubernetes")]: "xfs" } });
  const units = { ...inactive([ARRAY, "var-lib-kubelet.mount"]), "kubelet.service": { activeState: "inactive" } };
  const out = await runStep(stepCtx(root, new FakeSystemd({ units })), ls, disks);
  assert.equal(out.outcome, "changed", JSON.stringify(out));
  assert.ok(disks.lines().some((l) => l.startsWith(`mdadm --assemble ${root.path("/dev/md/kubernetes")} `)));
  assert.ok(!disks.lines().some((l) => l.startsWith("mdadm --create") || l.startsWith("mkfs")));
  assert.ok(existsSync(root.path("/dev/md/kubernetes")));

  const root2 = await nodeRoot(ls);
  const xfs = new FakeDiskCommands({ fs: { [root2.path("/dev/nvme2n1")]: "xfs" } });
  const refused = await runStep(stepCtx(root2, new FakeSystemd({ units })), ls, xfs);
  assert.ok(refused.outcome === "failed");
  assert.equal(refused.error.code, "run.local-storage-signature");
  assert.match(refused.error.message, /\/dev\/nvme2n1 holds xfs; berth builds the RAID0 array only from disks without a filesystem/);
  assert.ok(!xfs.lines().some((l) => l.startsWith("mdadm")));
});
