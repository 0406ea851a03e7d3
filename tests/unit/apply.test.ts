import { test, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { chown, lstat, mkdtemp, rm, readFile, readlink, stat, symlink, writeFile, mkdir, readdir, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { applyPlan, writeFileAtomic } from "../../src/host/fs.ts";
import { errnoText } from "../../src/host/temp-files.ts";
import { acquireLock } from "../../src/host/lock.ts";
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
  assert.deepEqual(
    diffs.map((d) => [d.path, d.kind]),
    [
      ["/etc/eks/bin.dat", "create"],
      ["/etc/kubernetes/pki/ca.crt", "create"],
      ["/etc/systemd/system.conf.d/environment.conf", "remove"],
      ["/etc/systemd/system/kubelet.service.d/environment.conf", "create"],
      ["/var/lib/kubelet/kubeconfig", "update"],
    ],
  );
  const kc = diffs.find((d) => d.path === "/var/lib/kubelet/kubeconfig")!.text;
  assert.equal(
    kc,
    "old mode 100644\nnew mode 100600\n--- a/var/lib/kubelet/kubeconfig\n+++ b/var/lib/kubelet/kubeconfig\n@@ -1,2 +1,2 @@\n apiVersion: v1\n-kind: Old\n+kind: Config\n",
  );
  assert.match(diffs[0]!.text, /^new file mode 100644\nBinary files \/dev\/null and b\/etc\/eks\/bin.dat differ\n$/);
  assert.match(
    diffs[2]!.text,
    /^deleted file mode 100644\n--- a\/etc\/systemd\/system.conf.d\/environment.conf\n\+\+\+ \/dev\/null\n@@ -1,1 \+0,0 @@\n-\[Manager\]\n$/,
  );
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

// ------------------------------------------------------------------ hardening (issue 8)

const asRoot = process.getuid?.() === 0;

test("a symlinked parent under --root is resolved inside the root: nothing is written outside it", async () => {
  const root = await scratch();
  const outside = await mkdtemp(path.join(tmpdir(), "berth-outside-"));
  dirs.push(outside);
  // The two shapes: an absolute link to a real directory outside, and a relative one climbing past the root.
  await mkdir(root.path("/etc"), { recursive: true });
  await mkdir(root.path("/var/lib"), { recursive: true });
  await symlink(outside, root.path("/etc/kubernetes"));
  await symlink("../../../x", root.path("/var/lib/kubelet"));
  const r = await applyPlan(plan(), root);
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  assert.deepEqual(await readdir(outside), [], "nothing outside the root");
  // chroot semantics: the absolute link names ROOT/<outside>, the relative one ROOT/x.
  assert.equal(await readFile(path.join(root.dir, outside, "pki/ca.crt"), "utf8"), "-----BEGIN CERTIFICATE-----\n");
  assert.equal(await readFile(path.join(root.dir, "x/kubeconfig"), "utf8"), "apiVersion: v1\nkind: Config\n");
  // The links themselves are left as they are, and a second apply finds everything unchanged.
  assert.equal(await readlink(root.entryPath("/etc/kubernetes")), outside);
  const again = await applyPlan(plan(), root);
  assert.ok(again.ok);
  assert.deepEqual(again.value.written, []);
});

test("a link at the target itself is replaced, never written through", async () => {
  const root = await scratch();
  const outside = await mkdtemp(path.join(tmpdir(), "berth-outside-"));
  dirs.push(outside);
  await writeFile(path.join(outside, "passwd"), "precious\n");
  await mkdir(root.path("/var/lib/kubelet"), { recursive: true });
  await symlink(path.join(outside, "passwd"), root.entryPath("/var/lib/kubelet/kubeconfig"));
  const r = await writeFileAtomic(root, "/var/lib/kubelet/kubeconfig", "new\n", { mode: 0o600 });
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  assert.equal(await readFile(path.join(outside, "passwd"), "utf8"), "precious\n");
  assert.ok((await lstat(root.entryPath("/var/lib/kubelet/kubeconfig"))).isFile());
});

test("temp names cannot collide with a leftover; stale temps go only under the lock", async () => {
  const root = await scratch();
  assert.ok((await applyPlan(plan(), root)).ok);
  // What a berth-config killed at boot leaves (pid 1, sequence 1), and older status/cache temp names.
  const planted = [
    "/etc/kubernetes/pki/.ca.crt.berth-1-1.tmp",
    "/var/lib/kubelet/.kubeconfig.berth-1-1.tmp",
    "/var/lib/kubelet/.kubeconfig.berth-77-3f9a0c1d2e4b.tmp",
    "/var/lib/kubelet/kubeconfig.123.tmp",
    "/var/lib/kubelet/.kubeconfig.123.1700000000000.tmp",
  ];
  const keep = ["/var/lib/kubelet/notes.tmp", "/var/lib/kubelet/.other.123.tmp"];
  for (const p of [...planted, ...keep]) await writeFile(root.path(p), "left over\n");
  const p = plan();
  p.files[0]!.content = "apiVersion: v1\nkind: Config\nclusters: []\n";
  p.files[1]!.content = "-----BEGIN CERTIFICATE-----\nchanged\n";
  // Without the lock another run might own them: written fine (no EEXIST), leftovers untouched.
  const r = await applyPlan(p, root);
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  assert.deepEqual(r.value.written, ["/etc/kubernetes/pki/ca.crt", "/var/lib/kubelet/kubeconfig"]);
  assert.equal(r.value.staleTemps, undefined);
  for (const f of planted) assert.ok(existsSync(root.path(f)), f);
  // Under the lock, with nothing to write: the leftovers beside planned files go, other files stay.
  const lock = await acquireLock(root, { command: "test" });
  assert.ok(lock.ok);
  try {
    const again = await applyPlan(p, root, { lock: lock.value });
    assert.ok(again.ok, JSON.stringify(!again.ok && again.errors));
    assert.deepEqual(again.value.written, []);
    assert.deepEqual(again.value.staleTemps, planted.map((f) => root.path(f)).sort());
  } finally {
    lock.value.release();
  }
  for (const f of planted) assert.ok(!existsSync(root.path(f)), f);
  for (const f of keep) assert.ok(existsSync(root.path(f)), f);
  // This run's own temp names carry a random part.
  const names: string[] = [];
  await applyPlan({ files: [{ ...p.files[0]!, content: "x" }], absent: [] }, root, {
    beforeStage: () => names.push(...readdirSync(root.path("/var/lib/kubelet"))),
  });
  assert.deepEqual(
    names.filter((n) => n.includes(".berth-")),
    [],
  );
});

test("an error names the file the user knows and its real path, never berth's temp file", async () => {
  const root = await scratch();
  const tmpName = root.path("/etc/kubernetes/pki/.ca.crt.berth-4242-0123456789ab.tmp");
  const r = await applyPlan(plan(), root, {
    beforeStage: (p) => {
      if (p === "/etc/kubernetes/pki/ca.crt") {
        throw Object.assign(new Error(`EROFS: read-only file system, open '${tmpName}'`), {
          code: "EROFS",
          errno: -30,
          syscall: "open",
          path: tmpName,
        });
      }
    },
  });
  assert.ok(!r.ok);
  const e = r.errors[0]!;
  assert.equal(
    e.message,
    `could not write /etc/kubernetes/pki/ca.crt (${root.path("/etc/kubernetes/pki/ca.crt")} under --root ${root.dir}): EROFS: read-only file system`,
  );
  assert.equal(e.where, undefined, "the message names the file; no temp file as the location");
  assert.doesNotMatch(JSON.stringify({ m: e.message, w: e.where, h: e.hint }), /berth-4242/);
  // Other paths in a system error stay: they say which directory was the problem.
  assert.equal(
    errnoText(Object.assign(new Error("EACCES: permission denied, mkdir '/r/etc/x'"), { code: "EACCES", path: "/r/etc/x" })),
    "EACCES: permission denied, mkdir '/r/etc/x'",
  );
});

test("ownership is part of 'as planned': dry run shows owner lines (no root needed)", async () => {
  const root = await scratch();
  assert.ok((await applyPlan(plan(), root, { owner: false })).ok);
  const st = await stat(root.path("/var/lib/kubelet/kubeconfig"));
  const other = { uid: st.uid + 1, gid: st.gid + 1 };
  const same = await applyPlan(plan(), root, { dryRun: true, owner: { uid: st.uid, gid: st.gid } });
  assert.ok(same.ok);
  assert.deepEqual(same.value.written, []);
  const r = await applyPlan(plan(), root, { dryRun: true, owner: other });
  assert.ok(r.ok);
  assert.equal(r.value.written.length, 4);
  const kc = r.value.diffs!.find((d) => d.path === "/var/lib/kubelet/kubeconfig")!.text;
  assert.equal(kc, `old owner ${st.uid}:${st.gid}\nnew owner ${other.uid}:${other.gid}\n`);
});

test(
  "ownership drift is repaired and reported as written (root:root, or the plan's owner)",
  { skip: !asRoot && "needs root to chown" },
  async () => {
    const root = await scratch();
    assert.ok((await applyPlan(plan(), root)).ok);
    const kc = root.path("/var/lib/kubelet/kubeconfig");
    await chown(kc, 1000, 1000);
    const r = await applyPlan(plan(), root);
    assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
    assert.deepEqual(r.value.written, ["/var/lib/kubelet/kubeconfig"]);
    const st = await stat(kc);
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [0, 0, 0o600]);
    // A file whose plan names an owner gets that one.
    const p = plan();
    p.files[1]!.owner = { uid: 1234, gid: 5678 };
    const o = await applyPlan(p, root);
    assert.ok(o.ok);
    assert.deepEqual(o.value.written, ["/etc/kubernetes/pki/ca.crt"]);
    const ca = await stat(root.path("/etc/kubernetes/pki/ca.crt"));
    assert.deepEqual([ca.uid, ca.gid, ca.mode & 0o7777], [1234, 5678, 0o644]);
    const again = await applyPlan(p, root);
    assert.ok(again.ok);
    assert.deepEqual(again.value.written, []);
  },
);
