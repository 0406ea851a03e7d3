import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, readFile, stat, writeFile, mkdir, readdir, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { applyPlan } from "../../src/host/fs.ts";
import { HostRoot } from "../../src/host/root.ts";
import type { Plan } from "../../src/plan/types.ts";

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function scratch(): Promise<HostRoot> {
  const d = await mkdtemp(path.join(tmpdir(), "berth-apply-"));
  dirs.push(d);
  return new HostRoot(d);
}

/** Every file under dir, relative, sorted (directories end with /). */
async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(d: string, rel: string): Promise<void> {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        out.push(r + "/");
        await walk(path.join(d, e.name), r);
      } else out.push(r);
    }
  }
  await walk(dir, "");
  return out.sort();
}

const plan = (): Plan => ({
  files: [
    { path: "/var/lib/kubelet/kubeconfig", content: "apiVersion: v1\nkind: Config\n", mode: 0o600, component: "kubelet" },
    { path: "/etc/kubernetes/pki/ca.crt", content: "-----BEGIN CERTIFICATE-----\n", mode: 0o644, component: "kubelet" },
    { path: "/etc/systemd/system/kubelet.service.d/environment.conf", content: "[Service]\n", mode: 0o644, component: "environment" },
    { path: "/etc/eks/bin.dat", content: new Uint8Array([0, 1, 2, 255]), mode: 0o644, component: "test" },
  ],
  absent: ["/etc/systemd/system.conf.d/environment.conf"],
});

test("first apply writes every file with its mode; report is sorted", async () => {
  const root = await scratch();
  const r = await applyPlan(plan(), root);
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  assert.deepEqual(r.value.written, [
    "/etc/eks/bin.dat",
    "/etc/kubernetes/pki/ca.crt",
    "/etc/systemd/system/kubelet.service.d/environment.conf",
    "/var/lib/kubelet/kubeconfig",
  ]);
  assert.deepEqual(r.value.unchanged, []);
  assert.deepEqual(r.value.removed, []);
  assert.equal(r.value.unitsChanged, true);
  assert.equal((await stat(root.path("/var/lib/kubelet/kubeconfig"))).mode & 0o777, 0o600);
  assert.equal((await stat(root.path("/etc/kubernetes/pki/ca.crt"))).mode & 0o777, 0o644);
  assert.deepEqual([...(await readFile(root.path("/etc/eks/bin.dat")))], [0, 1, 2, 255]);
  // no temp files left behind
  assert.ok(!(await tree(root.dir)).some((f) => f.includes(".tmp")));
});

test("second apply leaves unchanged files untouched (inode and mtime kept)", async () => {
  const root = await scratch();
  assert.ok((await applyPlan(plan(), root)).ok);
  const p = root.path("/var/lib/kubelet/kubeconfig");
  const old = new Date("2020-01-01T00:00:00Z");
  await utimes(p, old, old);
  const before = await stat(p);
  const r = await applyPlan(plan(), root);
  assert.ok(r.ok);
  assert.deepEqual(r.value.written, []);
  assert.equal(r.value.unchanged.length, 4);
  assert.equal(r.value.unitsChanged, false);
  const afterSt = await stat(p);
  assert.equal(afterSt.ino, before.ino);
  assert.equal(afterSt.mtimeMs, before.mtimeMs);
});

test("a changed mode alone is rewritten; a changed file replaced atomically (new inode)", async () => {
  const root = await scratch();
  assert.ok((await applyPlan(plan(), root)).ok);
  const p = plan();
  p.files[1]!.mode = 0o600;
  p.files[0]!.content = "apiVersion: v1\nkind: Config\nclusters: []\n";
  const inoBefore = (await stat(root.path("/var/lib/kubelet/kubeconfig"))).ino;
  const r = await applyPlan(p, root);
  assert.ok(r.ok);
  assert.deepEqual(r.value.written, ["/etc/kubernetes/pki/ca.crt", "/var/lib/kubelet/kubeconfig"]);
  assert.equal(r.value.unitsChanged, false);
  assert.equal((await stat(root.path("/etc/kubernetes/pki/ca.crt"))).mode & 0o777, 0o600);
  assert.notEqual((await stat(root.path("/var/lib/kubelet/kubeconfig"))).ino, inoBefore);
  assert.match(await readFile(root.path("/var/lib/kubelet/kubeconfig"), "utf8"), /clusters: \[\]/);
});

test("absent paths are removed and reported; a missing absent path is not", async () => {
  const root = await scratch();
  await mkdir(path.dirname(root.path("/etc/systemd/system.conf.d/environment.conf")), { recursive: true });
  await writeFile(root.path("/etc/systemd/system.conf.d/environment.conf"), "[Manager]\n");
  const r = await applyPlan(plan(), root);
  assert.ok(r.ok);
  assert.deepEqual(r.value.removed, ["/etc/systemd/system.conf.d/environment.conf"]);
  await assert.rejects(stat(root.path("/etc/systemd/system.conf.d/environment.conf")), { code: "ENOENT" });
  const again = await applyPlan(plan(), root);
  assert.ok(again.ok);
  assert.deepEqual(again.value.removed, []);
});

test("dry run writes nothing and returns a unified diff per change", async () => {
  const root = await scratch();
  await mkdir(root.path("/var/lib/kubelet"), { recursive: true });
  await writeFile(root.path("/var/lib/kubelet/kubeconfig"), "apiVersion: v1\nkind: Old\n", { mode: 0o644 });
  await mkdir(root.path("/etc/systemd/system.conf.d"), { recursive: true });
  await writeFile(root.path("/etc/systemd/system.conf.d/environment.conf"), "[Manager]\n");
  const before = await tree(root.dir);
  const r = await applyPlan(plan(), root, { dryRun: true });
  assert.ok(r.ok);
  assert.deepEqual(await tree(root.dir), before);
  assert.equal(await readFile(root.path("/var/lib/kubelet/kubeconfig"), "utf8"), "apiVersion: v1\nkind: Old\n");
  const diffs = r.value.diffs ?? [];
  assert.deepEqual(diffs.map((d) => [d.path, d.kind]), [
    ["/etc/eks/bin.dat", "create"],
    ["/etc/kubernetes/pki/ca.crt", "create"],
    ["/etc/systemd/system.conf.d/environment.conf", "remove"],
    ["/etc/systemd/system/kubelet.service.d/environment.conf", "create"],
    ["/var/lib/kubelet/kubeconfig", "update"],
  ]);
  const kc = diffs.find((d) => d.path === "/var/lib/kubelet/kubeconfig")!.text;
  assert.equal(
    kc,
    "old mode 100644\nnew mode 100600\n--- a/var/lib/kubelet/kubeconfig\n+++ b/var/lib/kubelet/kubeconfig\n@@ -1,2 +1,2 @@\n apiVersion: v1\n-kind: Old\n+kind: Config\n",
  );
  assert.match(diffs[0]!.text, /^new file mode 100644\nBinary files \/dev\/null and b\/etc\/eks\/bin.dat differ\n$/);
  assert.match(diffs[2]!.text, /^deleted file mode 100644\n--- a\/etc\/systemd\/system.conf.d\/environment.conf\n\+\+\+ \/dev\/null\n@@ -1,1 \+0,0 @@\n-\[Manager\]\n$/);
});

test("an injected failure mid-plan leaves no partial files, temps or new directories", async () => {
  const root = await scratch();
  await mkdir(root.path("/etc/kubernetes/pki"), { recursive: true });
  await writeFile(root.path("/etc/kubernetes/pki/ca.crt"), "old\n", { mode: 0o644 });
  const before = await tree(root.dir);
  let n = 0;
  const r = await applyPlan(plan(), root, {
    beforeStage: (p) => {
      if (++n === 3) throw Object.assign(new Error("no space left on device"), { code: "ENOSPC" });
      void p;
    },
  });
  assert.ok(!r.ok);
  // Every file went through staging (the others were written to temps, then removed).
  assert.equal(n, 4);
  assert.equal(r.errors[0]!.code, "apply.io");
  assert.match(r.errors[0]!.message, /ENOSPC/);
  assert.match(r.errors[0]!.hint ?? "", /nothing was written/);
  assert.deepEqual(await tree(root.dir), before);
  assert.equal(await readFile(root.path("/etc/kubernetes/pki/ca.crt"), "utf8"), "old\n");
});

test("a real filesystem failure (parent is a file) writes nothing", async () => {
  const root = await scratch();
  await mkdir(root.path("/var/lib"), { recursive: true });
  await writeFile(root.path("/var/lib/kubelet"), "I am a file\n");
  const before = await tree(root.dir);
  const r = await applyPlan(plan(), root);
  assert.ok(!r.ok);
  assert.match(r.errors[0]!.message, /kubeconfig/);
  assert.deepEqual(await tree(root.dir), before);
});

test("a directory where a file is planned is an error before anything is written", async () => {
  const root = await scratch();
  await mkdir(root.path("/etc/kubernetes/pki/ca.crt"), { recursive: true });
  const before = await tree(root.dir);
  const r = await applyPlan(plan(), root);
  assert.ok(!r.ok);
  assert.equal(r.errors[0]!.code, "apply.not-a-file");
  assert.deepEqual(await tree(root.dir), before);
});

test("modes are exact whatever the umask", async () => {
  const root = await scratch();
  const old = process.umask(0o077);
  try {
    const r = await applyPlan(plan(), root);
    assert.ok(r.ok);
  } finally {
    process.umask(old);
  }
  assert.equal((await stat(root.path("/etc/kubernetes/pki/ca.crt"))).mode & 0o777, 0o644);
  assert.equal((await stat(root.path("/var/lib/kubelet/kubeconfig"))).mode & 0o777, 0o600);
  assert.equal((await stat(root.path("/etc/kubernetes/pki"))).mode & 0o777, 0o755, "new directories are 0755 too");
});
