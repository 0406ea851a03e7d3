// The kubelet stand-in on its own, on the host (no node lab needed): the
// behaviour the run phase and the health agent rely on.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createServer } from "node:net";
import { promisify } from "node:util";

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), "kubelet-standin.mjs");

async function freePort(): Promise<number> {
  const srv = createServer().listen(0, "127.0.0.1");
  await once(srv, "listening");
  const addr = srv.address();
  srv.close();
  if (addr === null || typeof addr === "string") throw new Error("no port");
  return addr.port;
}

async function healthz(port: number, timeoutMs = 2000): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, body: await res.text() };
}

test("--version prints Kubernetes v1.33.0, or the version file's first line", async (t) => {
  const state = await mkdtemp(join(tmpdir(), "kubelet-standin-"));
  t.after(() => rm(state, { recursive: true, force: true }));
  const env = { ...process.env, KUBELET_STANDIN_STATE_DIR: state };
  const run = promisify(execFile);
  assert.equal((await run(process.execPath, [SCRIPT, "--version"], { env })).stdout, "Kubernetes v1.33.0\n");
  await writeFile(join(state, "version"), "Kubernetes v1.31.4\nignored\n");
  assert.equal((await run(process.execPath, [SCRIPT, "--version"], { env })).stdout, "Kubernetes v1.31.4\n");
});

test("records argv and --config, serves /healthz in ok/fail/hang modes, exits 0 on SIGTERM", async (t) => {
  const state = await mkdtemp(join(tmpdir(), "kubelet-standin-"));
  t.after(() => rm(state, { recursive: true, force: true }));
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [SCRIPT, "--config=/etc/kubernetes/kubelet/config.json", "--kubeconfig", "/var/lib/kubelet/kubeconfig", "--v=2"],
    {
      env: { ...process.env, KUBELET_STANDIN_STATE_DIR: state, KUBELET_STANDIN_HEALTHZ_PORT: String(port) },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  // Ready when it says so on stdout.
  await new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (d: Buffer) => {
      if (d.toString().includes("serving /healthz")) resolve();
    });
    child.on("exit", (code) => reject(new Error(`stand-in exited ${code} before serving`)));
  });

  const rec = JSON.parse(await readFile(join(state, "last-run.json"), "utf8")) as Record<string, unknown>;
  assert.deepEqual(rec.argv, ["--config=/etc/kubernetes/kubelet/config.json", "--kubeconfig", "/var/lib/kubelet/kubeconfig", "--v=2"]);
  assert.equal(rec.config, "/etc/kubernetes/kubelet/config.json");
  assert.equal(rec.kubeconfig, "/var/lib/kubelet/kubeconfig");
  assert.equal(rec.pid, child.pid);
  assert.equal(rec.port, port);
  assert.equal((await readFile(join(state, "runs.jsonl"), "utf8")).trim().split("\n").length, 1);

  assert.deepEqual(await healthz(port), { status: 200, body: "ok" });
  await writeFile(join(state, "healthz-mode"), "fail\n");
  assert.equal((await healthz(port)).status, 500);
  await writeFile(join(state, "healthz-mode"), "hang\n");
  await assert.rejects(healthz(port, 300), (e: Error) => e.name === "TimeoutError");
  await writeFile(join(state, "healthz-mode"), "ok\n");
  assert.equal((await healthz(port)).status, 200);

  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const [code, signal] = (await exited) as [number | null, string | null];
  assert.equal(signal, null);
  assert.equal(code, 0, "a SIGTERM'd kubelet exits 0, so only Restart=always brings it back");
});

test("fails loudly when the port is taken", async (t) => {
  const state = await mkdtemp(join(tmpdir(), "kubelet-standin-"));
  t.after(() => rm(state, { recursive: true, force: true }));
  const blocker = createServer().listen(0, "127.0.0.1");
  await once(blocker, "listening");
  t.after(() => blocker.close());
  const addr = blocker.address();
  assert.ok(addr !== null && typeof addr !== "string");
  const child = spawn(process.execPath, [SCRIPT, `--healthz-port=${addr.port}`], {
    env: { ...process.env, KUBELET_STANDIN_STATE_DIR: state },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, "exit")) as [number | null];
  assert.equal(code, 1);
  assert.match(stderr, /cannot listen on 127\.0\.0\.1:\d+/);
});
