// The lab's kubelet stand-in (lab/kubelet-standin.sh, /usr/bin/kubelet in a
// node) on its own, on the host: the behaviour the run phase and the health
// agent rely on. It is sh + busybox nc because a lab node has no Node.js;
// busybox-static is a lab package on the host too (scripts/setup.sh).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";
import { promisify } from "node:util";
import { freePort, LAB_DIR } from "./lab.ts";

const SCRIPT = join(LAB_DIR, "kubelet-standin.sh");

async function healthz(port: number, timeoutMs = 2000, path = "/healthz"): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, body: await res.text() };
}

test("--version prints Kubernetes v1.33.0, or the version file's first line", async (t) => {
  const state = await mkdtemp(join(tmpdir(), "kubelet-standin-"));
  t.after(() => rm(state, { recursive: true, force: true }));
  const env = { ...process.env, KUBELET_STANDIN_STATE_DIR: state };
  const run = promisify(execFile);
  assert.equal((await run(SCRIPT, ["--version"], { env })).stdout, "Kubernetes v1.33.0\n");
  await writeFile(join(state, "version"), "Kubernetes v1.31.4\nignored\n");
  assert.equal((await run(SCRIPT, ["--version=true"], { env })).stdout, "Kubernetes v1.31.4\n");
});

test("records argv, --config, --kubeconfig; serves /healthz in ok/fail/hang modes; exits 0 on SIGTERM", async (t) => {
  const state = await mkdtemp(join(tmpdir(), "kubelet-standin-"));
  t.after(() => rm(state, { recursive: true, force: true }));
  const port = await freePort();
  const argv = [
    "--config=/etc/kubernetes/kubelet/config.json",
    "--kubeconfig",
    "/var/lib/kubelet/kubeconfig",
    "--v=2",
    'a "quoted\\ arg',
    `--healthz-port=${port}`,
  ];
  const child = spawn(SCRIPT, argv, { env: { ...process.env, KUBELET_STANDIN_STATE_DIR: state }, stdio: ["ignore", "pipe", "pipe"] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  // Serving once a request is answered (nc gives no ready signal of its own).
  for (let i = 0; ; i++) {
    try {
      if ((await healthz(port, 500)).status === 200) break;
    } catch (e) {
      if (i > 100) throw e;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  assert.match(out, new RegExp(`pid ${child.pid} serving /healthz on port ${port}`));

  const rec = JSON.parse(await readFile(join(state, "last-run.json"), "utf8")) as Record<string, unknown>;
  assert.deepEqual(rec.argv, argv, "argv recorded exactly, quotes and backslashes included");
  assert.equal(rec.config, "/etc/kubernetes/kubelet/config.json");
  assert.equal(rec.kubeconfig, "/var/lib/kubelet/kubeconfig");
  assert.equal(rec.pid, child.pid, "the pid systemd sees as MainPID");
  assert.equal(rec.port, port);
  assert.ok(!Number.isNaN(Date.parse(String(rec.startedAt))));
  assert.equal((await readFile(join(state, "runs.jsonl"), "utf8")).trim().split("\n").length, 1);

  assert.deepEqual(await healthz(port), { status: 200, body: "ok" });
  assert.deepEqual(await healthz(port, 2000, "/healthz?verbose"), { status: 200, body: "ok" });
  assert.equal((await healthz(port, 2000, "/metrics")).status, 404);
  await writeFile(join(state, "healthz-mode"), "fail\n");
  assert.deepEqual(await healthz(port), { status: 500, body: "[-]standin failed: healthz-mode=fail\n" });
  await writeFile(join(state, "healthz-mode"), "hang\n");
  await assert.rejects(healthz(port, 300), (e: Error) => e.name === "TimeoutError");
  await writeFile(join(state, "healthz-mode"), "ok\n");
  assert.equal((await healthz(port)).status, 200);

  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const [code, signal] = (await exited) as [number | null, string | null];
  assert.equal(signal, null);
  assert.equal(code, 0, "a SIGTERM'd kubelet exits 0, so only Restart=always brings it back");
  // Its listener went with it: the port is free for the next start.
  const again = createServer().listen(port, "127.0.0.1");
  await once(again, "listening");
  again.close();
});

test("fails loudly when the port is taken", async (t) => {
  const state = await mkdtemp(join(tmpdir(), "kubelet-standin-"));
  t.after(() => rm(state, { recursive: true, force: true }));
  const blocker = createServer().listen(0, "127.0.0.1");
  await once(blocker, "listening");
  t.after(() => blocker.close());
  const addr = blocker.address();
  assert.ok(addr !== null && typeof addr !== "string");
  const child = spawn(SCRIPT, [], {
    env: { ...process.env, KUBELET_STANDIN_STATE_DIR: state, KUBELET_STANDIN_HEALTHZ_PORT: String(addr.port) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, "exit")) as [number | null];
  assert.equal(code, 1);
  assert.match(stderr, new RegExp(`cannot serve /healthz on port ${addr.port}`));
});
