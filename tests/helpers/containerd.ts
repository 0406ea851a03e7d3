/**
 * A real containerd (Debian's 1.6) started by hand for tests: every path it
 * touches (root, state, sockets, opt, CNI dirs) is under a temp dir, so it
 * never meets the host's containerd. `restrict_oom_score_adj = true` because
 * test processes here lack CAP_SYS_RESOURCE (see LAB-FACTS.md).
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export interface StartContainerdOptions {
  /** Reuse this directory (e.g. to restart on the same socket). Default: a new temp dir. */
  dir?: string;
  /** Binary, default `containerd` on PATH. */
  bin?: string;
  /** Extra TOML appended to the generated config. */
  extraConfig?: string;
  /** How long to wait for the socket, ms (default 15 000). */
  startTimeoutMs?: number;
  /** Do not wait for the socket to appear (for tests that wait themselves). */
  noWait?: boolean;
}

export interface ContainerdHandle {
  /** Absolute path of the gRPC socket. */
  socket: string;
  dir: string;
  readonly pid: number;
  /** SIGTERM and wait for exit (SIGKILL after 5 s). */
  stop(): Promise<void>;
  /** SIGKILL and wait for exit. */
  kill9(): Promise<void>;
  /** Start again with the same config and socket (after stop/kill9). */
  restart(opts?: { noWait?: boolean }): Promise<void>;
  /** Resolves when the socket exists. */
  ready(): Promise<void>;
  /** Stop (if running) and remove the directory. */
  cleanup(): Promise<void>;
  /** containerd's own log (stderr), for assertion messages. */
  log(): string;
}

function configToml(dir: string, extra: string): string {
  const q = (p: string) => JSON.stringify(path.join(dir, p));
  return `version = 2
root = ${q("root")}
state = ${q("state")}
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = ${q("containerd.sock")}

[ttrpc]
  address = ${q("containerd.sock.ttrpc")}

[debug]
  address = ""
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = ${q("opt")}

[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = ${q("cni/bin")}
    conf_dir = ${q("cni/net.d")}
${extra}
`;
}

async function waitForSocket(socket: string, timeoutMs: number, child: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (fs.statSync(socket).isSocket()) return;
    } catch {
      /* not yet */
    }
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`containerd exited (${child.exitCode ?? child.signalCode}) before creating ${socket}:\n${readTail(logFile)}`);
    }
    if (Date.now() > deadline) throw new Error(`containerd did not create ${socket} within ${timeoutMs} ms:\n${readTail(logFile)}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function readTail(file: string): string {
  try {
    return fs.readFileSync(file, "utf8").split("\n").slice(-30).join("\n");
  } catch {
    return "(no log)";
  }
}

function waitExit(child: ChildProcess, killAfterMs?: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    let t: NodeJS.Timeout | undefined;
    child.once("exit", () => {
      clearTimeout(t);
      resolve();
    });
    if (killAfterMs !== undefined) t = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
  });
}

export async function startContainerd(opts: StartContainerdOptions = {}): Promise<ContainerdHandle> {
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), "berth-ctrd-"));
  for (const d of ["root", "state", "opt", "cni/bin", "cni/net.d"]) fs.mkdirSync(path.join(dir, d), { recursive: true });
  const config = path.join(dir, "config.toml");
  fs.writeFileSync(config, configToml(dir, opts.extraConfig ?? ""));
  const socket = path.join(dir, "containerd.sock");
  const logFile = path.join(dir, "containerd.log");
  const timeout = opts.startTimeoutMs ?? 15_000;
  let child: ChildProcess;

  const launch = async (noWait: boolean) => {
    // A socket left by a SIGKILLed containerd: containerd removes it itself on
    // start, but a test that waits for the socket must not see the stale one.
    fs.rmSync(socket, { force: true });
    const log = fs.openSync(logFile, "a");
    child = spawn(opts.bin ?? "containerd", ["--config", config], { stdio: ["ignore", log, log], detached: false });
    fs.closeSync(log);
    if (!noWait) await waitForSocket(socket, timeout, child, logFile);
  };
  await launch(opts.noWait ?? false);

  const running = () => child.exitCode === null && child.signalCode === null;
  const handle: ContainerdHandle = {
    socket,
    dir,
    get pid() {
      return child.pid ?? -1;
    },
    async stop() {
      if (!running()) return;
      child.kill("SIGTERM");
      await waitExit(child, 5000);
    },
    async kill9() {
      if (!running()) return;
      child.kill("SIGKILL");
      await waitExit(child);
    },
    async restart(o) {
      if (running()) throw new Error("containerd is still running: stop() or kill9() it first");
      await launch(o?.noWait ?? false);
    },
    ready: () => waitForSocket(socket, timeout, child, logFile),
    async cleanup() {
      await handle.stop();
      if (!opts.dir) fs.rmSync(dir, { recursive: true, force: true });
    },
    log: () => readTail(logFile),
  };
  return handle;
}
