import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { HostRoot } from "../../src/host/root.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function scratch(): string {
  const d = mkdtempSync(path.join(tmpdir(), "berth-root-"));
  dirs.push(d);
  return d;
}

test("--root: host paths land under DIR; `..` is clamped at the root like a chroot", () => {
  const r = new HostRoot("/tmp/node");
  assert.equal(r.path("/etc/containerd/config.toml"), "/tmp/node/etc/containerd/config.toml");
  assert.equal(r.path("/../../etc/passwd"), "/tmp/node/etc/passwd");
  assert.equal(r.path("/run/berth/../../../x"), "/tmp/node/x");
  assert.equal(new HostRoot("/").path("/etc/../run/x"), "/run/x");
  assert.throws(() => r.path("etc/x"), /must be absolute/);
});

test("--root: symbolic links inside the root resolve inside it, absolute and relative, chained", () => {
  const d = scratch();
  const r = new HostRoot(d);
  mkdirSync(path.join(d, "etc"), { recursive: true });
  mkdirSync(path.join(d, "var/lib"), { recursive: true });
  // The two cases: an absolute link out, and a relative one climbing past the root.
  symlinkSync("/elsewhere", path.join(d, "etc/kubernetes"));
  symlinkSync("../../../x", path.join(d, "var/lib/kubelet"));
  assert.equal(r.path("/etc/kubernetes/kubelet/config.json"), path.join(d, "elsewhere/kubelet/config.json"));
  assert.equal(r.entryPath("/etc/kubernetes/pki/ca.crt"), path.join(d, "elsewhere/pki/ca.crt"));
  assert.equal(r.path("/var/lib/kubelet/kubeconfig"), path.join(d, "x/kubeconfig"));
  // A chain: /var/run -> /run (as in Debian images), /run/containerd -> ../srv/ctr.
  mkdirSync(path.join(d, "run"));
  symlinkSync("/run", path.join(d, "var/run"));
  symlinkSync("../srv/ctr", path.join(d, "run/containerd"));
  assert.equal(r.path("/var/run/containerd/containerd.sock"), path.join(d, "srv/ctr/containerd.sock"));
  // `..` inside a link target climbs from the link's directory, and stops at the root.
  symlinkSync("../../../../../etc/../opt", path.join(d, "var/lib/up"));
  assert.equal(r.path("/var/lib/up/f"), path.join(d, "opt/f"));
});

test("--root: path() follows a link at the last component (a read), entryPath() does not (a write replaces it)", () => {
  const d = scratch();
  const r = new HostRoot(d);
  mkdirSync(path.join(d, "etc/eks"), { recursive: true });
  symlinkSync("/etc/shadow", path.join(d, "etc/eks/a.yaml"));
  assert.equal(r.path("/etc/eks/a.yaml"), path.join(d, "etc/shadow"));
  assert.equal(r.entryPath("/etc/eks/a.yaml"), path.join(d, "etc/eks/a.yaml"));
  // A file where a directory is expected, or a missing component: the rest is kept as written.
  writeFileSync(path.join(d, "etc/file"), "x");
  assert.equal(r.path("/etc/file/below"), path.join(d, "etc/file/below"));
  assert.equal(r.path("/no/such/dir/f"), path.join(d, "no/such/dir/f"));
  assert.equal(r.path("/"), d);
});

test("--root: a link loop is ELOOP, with the host path and the root in the message", () => {
  const d = scratch();
  const r = new HostRoot(d);
  symlinkSync("/b", path.join(d, "a"));
  symlinkSync("/a", path.join(d, "b"));
  assert.throws(
    () => r.path("/a/x"),
    (e: NodeJS.ErrnoException) => e.code === "ELOOP" && e.message.includes("/a/x") && e.message.includes(d),
  );
});

test("--root: describe() names the node path, and the real path under another root", () => {
  const d = scratch();
  symlinkSync("/srv", path.join(d, "etc"));
  assert.equal(new HostRoot(d).describe("/etc/x"), `/etc/x (${path.join(d, "srv/x")} under --root ${d})`);
  assert.equal(new HostRoot("/").describe("/etc/x"), "/etc/x");
});
