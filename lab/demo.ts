// Boots a lab node (with the lab registry and containerd settings; berth
// installed from its .deb), runs one shell command inside it, prints a
// timeline, and tears everything down. `make demo` (tests/lab/run-demo.ts)
// runs a full `berth init` instead. Usage: lab/demo.sh [--shell | COMMAND...]
import { spawnSync } from "node:child_process";
import {
  bootNode,
  startRegistry,
  pushPauseImage,
  containerdLabFiles,
  labContainerdConfig,
  lastBootTimings,
  PAUSE_IMAGE,
} from "../tests/lab/lab.ts";

const args = process.argv.slice(2);
const shell = args[0] === "--shell";
const command =
  !shell && args.length > 0
    ? args.join(" ")
    : "systemctl is-system-running; systemctl start containerd && ctr version | grep -A1 Server; " +
      `ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d ${PAUSE_IMAGE} >/dev/null && ctr -n k8s.io images ls -q; ` +
      "kubelet --version; dpkg-query -W berth; berth --version 2>&1 | head -n 3";

const t0 = performance.now();
const mark = (what: string): void => {
  process.stderr.write(`[demo +${(performance.now() - t0).toFixed(0).padStart(5)} ms] ${what}\n`);
};
const registry = await startRegistry();
mark(`registry on ${registry.address}`);
await pushPauseImage(registry);
mark(`pushed ${PAUSE_IMAGE}`);
const node = await bootNode({
  name: "demo",
  files: {
    ...containerdLabFiles(registry),
    // One table per TOML key: merged, not appended (a second [plugins."io.containerd.grpc.v1.cri"] is a syntax error).
    "/etc/containerd/config.toml": labContainerdConfig(`[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "${PAUSE_IMAGE}"\n`),
  },
});
mark(
  `node ${node.machine} running (boot ${lastBootTimings?.bootMs.toFixed(0)} ms, dpkg -i berth ${lastBootTimings?.installMs.toFixed(0)} ms), bus ${node.busAddress}`,
);
let code: number;
try {
  if (shell) {
    const r = spawnSync("nsenter", ["-t", String(node.leaderPid), "-a", "-r", "-w", "/bin/bash", "-l"], { stdio: "inherit" });
    code = r.status ?? 1;
  } else {
    const r = await node.exec(["/bin/sh", "-c", command], { timeoutMs: 120_000 });
    process.stdout.write(r.stdout);
    process.stderr.write(r.stderr);
    code = r.code;
    mark(`command exited ${r.code}`);
  }
} finally {
  await node.shutdown();
  mark("node shut down");
  await registry.stop();
  mark("registry stopped");
}
process.exit(code);
