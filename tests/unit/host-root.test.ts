import { test } from "node:test";
import assert from "node:assert/strict";
import { HostRoot } from "../../src/host/root.ts";

test("--root: host paths land under DIR; `..` is clamped at the root like a chroot", () => {
  const r = new HostRoot("/tmp/node");
  assert.equal(r.path("/etc/containerd/config.toml"), "/tmp/node/etc/containerd/config.toml");
  assert.equal(r.path("/../../etc/passwd"), "/tmp/node/etc/passwd");
  assert.equal(r.path("/run/berth/../../../x"), "/tmp/node/x");
  assert.equal(new HostRoot("/").path("/etc/../run/x"), "/run/x");
  assert.throws(() => r.path("etc/x"), /must be absolute/);
});
