#!/usr/local/bin/node
// KUBELET STAND-IN — NOT A KUBELET. Test double installed at /usr/bin/kubelet
// inside berth's node lab, so the run phase and the health agent can start,
// probe, restart and kill "kubelet" without a cluster.
//
// Behaviour:
//   kubelet --version          prints "Kubernetes v1.33.0" (or the first line
//                              of $STATE_DIR/version, so tests can fake upgrades)
//   kubelet [args...]          records argv, --config path and pid in
//                              $STATE_DIR/last-run.json (and appends to runs.jsonl),
//                              serves GET /healthz on 127.0.0.1:$port, and keeps
//                              running until SIGTERM/SIGINT, then exits 0 like a
//                              real kubelet does.
//   port                       --healthz-port (kubelet's own flag name) > env
//                              KUBELET_STANDIN_HEALTHZ_PORT > 10248; lab nodes share
//                              the host's network, so parallel nodes need distinct ports.
//   $STATE_DIR/healthz-mode    read on every request: "ok" (default), "fail" (500),
//                              "hang" (never answers), for the agent's fault tests.
//   $STATE_DIR                 env KUBELET_STANDIN_STATE_DIR, default
//                              /var/lib/kubelet-standin.
//
// Plain JavaScript on purpose: the node runs it with the host's node binary,
// without tsx or a build step.
import { createServer } from "node:http";
import { appendFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const stateDir = process.env.KUBELET_STANDIN_STATE_DIR || "/var/lib/kubelet-standin";
const argv = process.argv.slice(2);

function readState(name) {
  try {
    return readFileSync(join(stateDir, name), "utf8").trim();
  } catch {
    return "";
  }
}

function flagValue(name) {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === `--${name}`) return argv[i + 1];
    if (a.startsWith(`--${name}=`)) return a.slice(name.length + 3);
  }
  return undefined;
}

if (argv.includes("--version") || argv.includes("--version=true")) {
  const v = readState("version").split("\n")[0] || "Kubernetes v1.33.0";
  process.stdout.write(`${v}\n`);
  process.exit(0);
}

const port = Number(flagValue("healthz-port") ?? process.env.KUBELET_STANDIN_HEALTHZ_PORT ?? 10248);
const record = {
  argv,
  config: flagValue("config") ?? null,
  kubeconfig: flagValue("kubeconfig") ?? null,
  pid: process.pid,
  port,
  startedAt: new Date().toISOString(),
};
mkdirSync(stateDir, { recursive: true });
// Atomic replace: a test reading last-run.json never sees half a file.
writeFileSync(join(stateDir, ".last-run.json.tmp"), `${JSON.stringify(record, null, 2)}\n`);
renameSync(join(stateDir, ".last-run.json.tmp"), join(stateDir, "last-run.json"));
appendFileSync(join(stateDir, "runs.jsonl"), `${JSON.stringify(record)}\n`);

const server = createServer((req, res) => {
  if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/healthz") {
    res.writeHead(404, { "content-type": "text/plain" }).end("404 page not found\n");
    return;
  }
  const mode = readState("healthz-mode") || "ok";
  if (mode === "hang") return; // leave the request open: the prober's deadline must fire
  if (mode === "fail") {
    res.writeHead(500, { "content-type": "text/plain" }).end("[-]standin failed: healthz-mode=fail\n");
    return;
  }
  res.writeHead(200, { "content-type": "text/plain" }).end("ok");
});
server.on("error", (err) => {
  process.stderr.write(`kubelet-standin: cannot listen on 127.0.0.1:${port}: ${err.message}\n`);
  process.exit(1);
});
server.listen(port, "127.0.0.1", () => {
  process.stdout.write(`kubelet-standin: pid ${process.pid} serving /healthz on 127.0.0.1:${port}\n`);
});

function stop(signal) {
  process.stdout.write(`kubelet-standin: ${signal}, exiting 0\n`);
  server.closeAllConnections?.();
  server.close();
  process.exit(0);
}
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));
