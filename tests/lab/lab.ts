// The node lab harness: boots a real Debian node (systemd as PID 1, dbus,
// containerd, runc; no Node.js) in systemd-nspawn, installs berth's .deb in
// it with dpkg, runs commands inside it, reaches its system bus from the
// host, and tears it all down again. See lab/README.md.
//
// Shape of one node on the host (everything under one temp dir, prefix
// $TMPDIR/berth-lab-, which lab/cleanup.sh knows about):
//   <dir>/root        overlay: cached rootfs (lower) + <dir>/upper; the node's /
//   <dir>/containerd  bind-mounted at <root>/var/lib/containerd, because
//                     containerd's overlayfs snapshotter cannot sit on an overlay
//   <dir>/dbus        bound at /run/dbus inside: the node's system bus socket
//   <dir>/nspawn.log  nspawn's console output (read it when a boot fails)
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { once } from "node:events";
import { chmod, copyFile, mkdir, mkdtemp, readFile, readdir, rename, rm, rmdir, writeFile, open } from "node:fs/promises";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { pushOciLayout } from "../../lab/oci-push.ts";
import { mergeToml, parseToml, stringifyToml, type TomlTable } from "../../src/util/toml.ts";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const LAB_DIR = join(REPO_ROOT, "lab");
/** Every node's and registry's temp dir starts with this; cleanup.sh relies on it. */
export const LAB_TMP_PREFIX = join(tmpdir(), "berth-lab-");
/** Marker in every nspawn command line (the machine name prefix). */
export const MACHINE_PREFIX = "berthlab-";
/** The sandbox image reference tests and the lab containerd config use. */
export const PAUSE_IMAGE = "localhost/kubernetes/pause:latest";

const NODE_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Kill the command after this long (default 30 s); the result then has code 124. */
  timeoutMs?: number;
  /** Written to the command's stdin. */
  input?: string;
  /** Extra environment; the base is a clean PATH, not the host's environment. */
  env?: Record<string, string>;
  /** Throw when the exit code is not 0 (default false). */
  check?: boolean;
}

export interface Follower {
  /** Kills the command (its whole process group) and waits for it to exit. */
  stop(): Promise<void>;
}

export interface BindSpec {
  host: string;
  node: string;
  readOnly?: boolean;
}

export type FileSpec = string | { content: string; mode?: number };

export interface BootOptions {
  /** Short name, used in the machine name and temp dir (default "node"). */
  name?: string;
  binds?: BindSpec[];
  /** Extra systemd-nspawn arguments, e.g. a block device: `--bind=/dev/loop3`, `--property=DeviceAllow=/dev/loop3 rwm`. */
  nspawnArgs?: string[];
  /** Files written into the node's root before boot: node path → content. */
  files?: Record<string, FileSpec>;
  /** Deadline for reaching running/degraded, per boot (default 60 s). */
  bootTimeoutMs?: number;
  /**
   * After `dpkg -i` of berth's package, boot the node once more, so berth's
   * boot units (put in place by the package) run at boot, as on an image
   * built with the package installed. Default: no second boot.
   */
  rebootAfterInstall?: boolean;
}

export interface LabNode {
  readonly name: string;
  /** nspawn machine name (MACHINE_PREFIX + name + suffix); also the node's cgroup name. */
  readonly machine: string;
  /** The node's "/" on the host (an overlay over the cached rootfs). */
  readonly root: string;
  /** The node's private temp dir on the host. */
  readonly dir: string;
  /** PID (host view) of the node's systemd (a new one after reboot()). */
  readonly leaderPid: number;
  /** PID of the systemd-nspawn process (a new one after reboot()). */
  readonly nspawnPid: number;
  /** Node path of the node's private copy of berth's .deb (installed with dpkg -i at boot). */
  readonly berthPackage: string;
  /** D-Bus address of the node's system bus, usable from the host. */
  readonly busAddress: string;
  /** Host path of a path inside the running node (through /proc/<leader>/root, so /run works too). */
  hostPath(nodePath: string): string;
  exec(cmd: string[], opts?: ExecOptions): Promise<ExecResult>;
  /**
   * Runs a long-lived command inside the node (e.g. `journalctl -f`) and
   * hands each line of its stdout to `onLine`; stop() (or shutdown()) ends it.
   */
  follow(cmd: string[], onLine: (line: string) => void): Follower;
  systemctl(...args: string[]): Promise<ExecResult>;
  /** The unit's journal (short-precise format). */
  journal(unit: string, opts?: { lines?: number }): Promise<string>;
  /** Polls ActiveState until it equals `state`; throws with the journal tail on timeout. */
  waitForState(unit: string, state: string, timeoutMs: number): Promise<void>;
  /** Writes a file into the running node (atomic inside the node's root). */
  writeFile(nodePath: string, content: string, mode?: number): Promise<void>;
  /** Orderly poweroff and a fresh boot of the same root (like a reboot: /run and /tmp start empty). */
  reboot(timeoutMs?: number): Promise<void>;
  /** Stops the node and removes every trace; safe to call twice and after failures. */
  shutdown(): Promise<void>;
}

export interface Timings {
  rootfsMs: number;
  prepareMs: number;
  bootMs: number;
  /** dpkg -i of berth's package inside the node (its postinst runs `berth install`). */
  installMs: number;
  /** The second boot with rebootAfterInstall (poweroff + boot). */
  rebootMs?: number;
}

/** Timings of the most recent bootNode, for bench/ and the README. */
export let lastBootTimings: Timings | undefined;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A sleep that does not keep the process alive: for the losing side of Promise.race. */
function grace(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

/** Runs a host command; never throws on a non-zero exit. */
export function run(cmd: string, args: string[], opts: ExecOptions = {}, baseEnv: NodeJS.ProcessEnv = process.env): Promise<ExecResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, {
      stdio: ["pipe", "pipe", "pipe"],
      // Own process group, so a timeout kills nsenter's forked child too.
      detached: true,
      env: { ...baseEnv, ...(opts.env ?? {}) },
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        if (child.pid) process.kill(-child.pid, "SIGKILL");
      } catch {}
    }, opts.timeoutMs ?? 30_000);
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => err.push(d));
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${cmd}: ${e.message} (run scripts/setup.sh to install the lab's packages)`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const res: ExecResult = {
        code: timedOut ? 124 : (code ?? (signal ? 128 : 1)),
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8") + (timedOut ? `\n[lab] killed after ${opts.timeoutMs ?? 30_000} ms` : ""),
      };
      if (opts.check && res.code !== 0) {
        reject(new Error(`${cmd} ${args.join(" ")} exited ${res.code}: ${res.stderr.trim() || res.stdout.trim()}`));
      } else resolvePromise(res);
    });
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}

/** Fails with a clear message when the lab cannot work on this machine at all. */
export function assertLabPossible(): void {
  if (process.getuid?.() !== 0) {
    throw new Error("the node lab needs root (nspawn, overlay mounts, nsenter); run the lab tests as root");
  }
  for (const tool of ["systemd-nspawn", "nsenter", "setpriv", "debootstrap", "mount", "umount"]) {
    const found = NODE_PATH_ENV.split(":").some((d) => existsSync(join(d, tool)));
    if (!found) throw new Error(`${tool} is not installed; run scripts/setup.sh (it installs the lab's Debian packages)`);
  }
}

let rootfsPromise: Promise<string> | undefined;
/** Path of the cached rootfs; builds it (≈1 min, once per machine) when missing. */
export function ensureRootfs(): Promise<string> {
  rootfsPromise ??= (async () => {
    const res = await run("bash", [join(LAB_DIR, "build-rootfs.sh")], { timeoutMs: 15 * 60_000 });
    if (res.code !== 0) throw new Error(`lab/build-rootfs.sh failed (${res.code}):\n${res.stderr}`);
    const path = res.stdout.trim().split("\n").pop() ?? "";
    if (!existsSync(join(path, ".berth-lab-complete")))
      throw new Error(`lab/build-rootfs.sh printed ${path}, which is not a complete rootfs`);
    return path;
  })();
  rootfsPromise.catch(() => (rootfsPromise = undefined));
  return rootfsPromise;
}

function procStatus(pid: number): Map<string, string> | undefined {
  try {
    const m = new Map<string, string>();
    for (const line of readFileSync(`/proc/${pid}/status`, "utf8").split("\n")) {
      const i = line.indexOf(":");
      if (i > 0) m.set(line.slice(0, i), line.slice(i + 1).trim());
    }
    return m;
  } catch {
    return undefined;
  }
}

/** Host PIDs of every descendant of `pid` (by PPid), deepest last. */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    const ppid = Number(procStatus(Number(e))?.get("PPid") ?? "0");
    const list = children.get(ppid) ?? [];
    list.push(Number(e));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const queue = [...(children.get(pid) ?? [])];
  while (queue.length > 0) {
    const p = queue.shift() as number;
    out.push(p);
    queue.push(...(children.get(p) ?? []));
  }
  return out;
}

/** The container's PID 1 among nspawn's descendants: the process whose NSpid ends in 1. */
function findLeader(nspawnPid: number): number | undefined {
  for (const pid of descendants(nspawnPid)) {
    const nspid = procStatus(pid)?.get("NSpid")?.split(/\s+/) ?? [];
    if (nspid.length >= 2 && nspid[nspid.length - 1] === "1") return pid;
  }
  return undefined;
}

function running(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Mount points at or below `dir`, deepest first. */
export function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const mp = line.split(" ")[4];
    if (!mp) continue;
    const decoded = mp.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (decoded === dir || decoded.startsWith(`${dir}/`)) out.push(decoded);
  }
  return out.sort((a, b) => b.length - a.length);
}

/**
 * One cgroup per hierarchy for a node, below the test process's own cgroup in
 * that hierarchy. On a pure cgroup v2 host: /sys/fs/cgroup/<machine> (a child
 * of a populated v2 cgroup is not allowed to take processes once controllers
 * are enabled). On hybrid/v1 hosts every hierarchy gets one, because the
 * node's runc creates pod cgroups in the v1 controllers too, and those must go
 * when the node goes.
 */
export function nodeCgroupDirs(machine: string): string[] {
  if (existsSync("/sys/fs/cgroup/cgroup.procs")) return [join("/sys/fs/cgroup", machine)];
  const dirs: string[] = [];
  for (const line of readFileSync("/proc/self/cgroup", "utf8").split("\n")) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const ctrls = m[1] ?? "";
    const path = m[2] ?? "/";
    const candidates = ctrls === "" ? ["unified"] : [ctrls.replace(/^name=/, ""), ...ctrls.split(",")];
    const mount = candidates.map((c) => join("/sys/fs/cgroup", c)).find((d) => existsSync(join(d, "cgroup.procs")));
    if (mount) dirs.push(join(mount, path, machine));
  }
  return [...new Set(dirs)].sort();
}

/** Removes a cgroup subtree bottom-up (only empty cgroups can be removed). */
async function removeCgroupTree(path: string): Promise<void> {
  let entries: string[];
  try {
    entries = (await readdir(path, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name);
  } catch {
    return;
  }
  for (const e of entries) await removeCgroupTree(join(path, e));
  try {
    await rmdir(path);
  } catch {
    /* busy or already gone: cleanup.sh reports what is left */
  }
}

async function writeNodeFile(root: string, nodePath: string, spec: FileSpec): Promise<void> {
  const content = typeof spec === "string" ? spec : spec.content;
  const mode = typeof spec === "string" ? 0o644 : (spec.mode ?? 0o644);
  const target = join(root, nodePath);
  await mkdir(dirname(target), { recursive: true });
  const tmp = `${target}.berth-lab-tmp`;
  await writeFile(tmp, content, { mode });
  await chmod(tmp, mode);
  await rename(tmp, target);
}

/** Files every node gets before its first boot: its hostname and the kubelet stand-in. */
async function baseFiles(root: string, machine: string): Promise<void> {
  // debootstrap copied the host's /etc/hostname; each node gets its own.
  await writeNodeFile(root, "/etc/hostname", `${machine}\n`);
  await mkdir(join(root, "usr/bin"), { recursive: true });
  await copyFile(join(LAB_DIR, "kubelet-standin.sh"), join(root, "usr/bin/kubelet"));
  await chmod(join(root, "usr/bin/kubelet"), 0o755);
}

/** Debian's name for this machine's architecture (the .deb's suffix). */
function debArch(): string {
  if (process.arch === "x64") return "amd64";
  if (process.arch === "arm64") return "arm64";
  throw new Error(`the node lab has no berth package for ${process.arch} (npm run package builds amd64 and arm64)`);
}

/**
 * The berth package lab nodes install: $BERTH_LAB_DEB, else
 * dist/release/berth_<version>_<debarch>.deb from `npm run package`.
 */
export function berthDebPath(): string {
  const alt = process.env.BERTH_LAB_DEB;
  if (alt) {
    if (!existsSync(alt)) throw new Error(`BERTH_LAB_DEB=${alt} does not exist`);
    return resolve(alt);
  }
  const version = (JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { version: string }).version;
  const deb = join(REPO_ROOT, "dist", "release", `berth_${version}_${debArch()}.deb`);
  if (!existsSync(deb))
    throw new Error(`${deb} is missing: lab nodes install berth from its package; run \`npm run package\` first (scripts/test.sh does)`);
  return deb;
}

/** Where a node keeps its private copy of the package (the copy dpkg installs). */
export const NODE_PACKAGE_DIR = "/var/lib/berth-lab/packages";

const liveNodes = new Set<LabNode>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort when a test forgets shutdown(): kill nspawn synchronously so
  // no node outlives the test process (mounts are left to cleanup.sh).
  process.on("exit", () => {
    for (const n of liveNodes) {
      try {
        process.kill(n.leaderPid, "SIGKILL");
      } catch {}
      try {
        process.kill(n.nspawnPid, "SIGKILL");
      } catch {}
    }
  });
}

export async function bootNode(opts: BootOptions = {}): Promise<LabNode> {
  assertLabPossible();
  // Before anything is mounted: a missing package is the most common setup mistake.
  const deb = berthDebPath();
  const t0 = performance.now();
  const rootfs = await ensureRootfs();
  const t1 = performance.now();
  const name = (opts.name ?? "node").replace(/[^a-zA-Z0-9-]/g, "-").slice(0, 20);
  const dir = await mkdtemp(`${LAB_TMP_PREFIX}${name}-`);
  const machine = `${MACHINE_PREFIX}${name}-${dir.slice(-6)}`.toLowerCase().replace(/[^a-z0-9-]/g, "x");
  const root = join(dir, "root");
  const busDir = join(dir, "dbus");
  const containerdDir = join(dir, "containerd");
  for (const d of ["upper", "work", "root", "dbus", "containerd"]) {
    await mkdir(join(dir, d));
    // The overlay's root takes the upper dir's mode: the node's "/" must be 0755 whatever the umask.
    await chmod(join(dir, d), 0o755);
  }
  // cleanup.sh only touches nodes whose owner is gone (unless --all).
  await writeFile(join(dir, "owner"), `${process.pid}\n`);
  await writeFile(join(dir, "machine"), `${machine}\n`);

  const nodeCgroups = nodeCgroupDirs(machine);
  let nspawn: ChildProcess | undefined;
  let leaderPid = 0;
  let down = false;
  const nspawnLog = async (): Promise<string> => (await readFile(join(dir, "nspawn.log"), "utf8").catch(() => "")).slice(-4000);

  /** Powers the node off (SIGTERM to nspawn: an orderly poweroff), SIGKILL after 15 s; removes its cgroups. */
  const stopNspawn = async (): Promise<void> => {
    const nspawnPid = nspawn?.pid;
    if (nspawn && nspawnPid && alive(nspawnPid)) {
      const exited = running(nspawn) ? once(nspawn, "exit") : Promise.resolve();
      try {
        process.kill(nspawnPid, "SIGTERM");
      } catch {}
      const done = await Promise.race([exited.then(() => true), grace(15_000).then(() => false)]);
      if (!done) {
        // Killing PID 1 of the node's PID namespace kills everything in it.
        for (const p of [leaderPid, nspawnPid]) {
          try {
            if (p) process.kill(p, "SIGKILL");
          } catch {}
        }
        await Promise.race([exited, grace(5_000)]);
      }
    }
    for (const cg of nodeCgroups) await removeCgroupTree(cg);
  };

  const followers = new Set<Follower>();
  const teardown = async (): Promise<void> => {
    if (down) return;
    down = true;
    for (const f of [...followers]) await f.stop();
    await stopNspawn();
    for (const mp of mountsUnder(dir)) {
      const r = await run("umount", [mp]);
      if (r.code !== 0) await run("umount", ["-l", mp]);
    }
    if (mountsUnder(dir).length === 0) await rm(dir, { recursive: true, force: true });
    liveNodes.delete(node);
  };

  // Runs a command inside the node (as root, all its namespaces) through nsenter.
  const exec = (cmd: string[], eo: ExecOptions = {}): Promise<ExecResult> => {
    if (down) return Promise.reject(new Error(`node ${name} is shut down; cannot run ${cmd.join(" ")}`));
    if (!leaderPid) return Promise.reject(new Error(`node ${name} is not running; cannot run ${cmd.join(" ")}`));
    // A clean environment: the host's (NODE_OPTIONS, TMPDIR, ...) must not leak into the node.
    return run("nsenter", ["-t", String(leaderPid), "-a", "-r", "-w", "--", ...cmd], eo, {
      PATH: NODE_PATH_ENV,
      LANG: "C.UTF-8",
      SYSTEMD_PAGER: "",
      SYSTEMD_COLORS: "0",
    });
  };

  const follow = (cmd: string[], onLine: (line: string) => void): Follower => {
    if (down || !leaderPid) throw new Error(`node ${name} is not running; cannot follow ${cmd.join(" ")}`);
    // Own process group (as in run()): killing it takes the command nsenter forked in the node too.
    const child = spawn("nsenter", ["-t", String(leaderPid), "-a", "-r", "-w", "--", ...cmd], {
      stdio: ["ignore", "pipe", "ignore"],
      detached: true,
      env: { PATH: NODE_PATH_ENV, LANG: "C.UTF-8", SYSTEMD_PAGER: "", SYSTEMD_COLORS: "0" },
    });
    child.on("error", () => {});
    let buf = "";
    child.stdout.on("data", (d: Buffer) => {
      buf += d.toString("utf8");
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        onLine(line);
      }
    });
    const exited = once(child, "close");
    const f: Follower = {
      async stop() {
        followers.delete(f);
        if (running(child) && child.pid) {
          try {
            process.kill(-child.pid, "SIGKILL");
          } catch {}
          await Promise.race([exited, grace(5000)]);
        }
      },
    };
    followers.add(f);
    return f;
  };

  const args = [
    "-b",
    "--keep-unit",
    "--register=no",
    // The console (systemd's status lines, units' StandardOutput=console) goes to nspawn.log;
    // "passive" would connect it to nothing, and a failed boot would say nothing.
    "--console=read-only",
    "-q",
    "-D",
    root,
    "-M",
    machine,
    `--bind=${busDir}:/run/dbus`,
    ...(opts.binds ?? []).map((b) => `--bind${b.readOnly ? "-ro" : ""}=${b.host}:${b.node}`),
    ...(opts.nspawnArgs ?? []),
  ];

  const launchedAt: number[] = [];
  const bootTimeoutMsFor = (deadline: number): string =>
    `${Math.round((deadline - (launchedAt[launchedAt.length - 1] ?? deadline)) / 1000)} s`;
  /** Starts nspawn on the prepared root and waits until the node's systemd says running or degraded. */
  const launch = async (deadline: number): Promise<void> => {
    launchedAt.push(Date.now());
    leaderPid = 0;
    const log = await open(join(dir, "nspawn.log"), "a");
    // nspawn --keep-unit puts itself in <own cgroup>/supervisor and the node in
    // <own cgroup>/payload: started from the host's root cgroup, two nodes would
    // share one /payload (and leave it behind). So each nspawn starts in its own
    // cgroup, one per hierarchy it uses, which teardown removes.
    for (const cg of nodeCgroups) {
      await mkdir(cg, { recursive: true });
      // A v1 cpuset cgroup takes no process until it has CPUs and memory nodes.
      for (const f of ["cpuset.cpus", "cpuset.mems"]) {
        if (!existsSync(join(cg, f))) continue;
        const current = (await readFile(join(cg, f), "utf8")).trim();
        if (current === "") await writeFile(join(cg, f), await readFile(join(dirname(cg), f), "utf8"));
      }
    }
    const child = spawn(
      "sh",
      // setpriv --pdeathsig: if the test process dies without shutdown(), nspawn
      // gets SIGTERM and powers the node off; cleanup.sh removes the mounts.
      [
        "-c",
        'for cg in $BERTH_LAB_CGROUPS; do echo $$ > "$cg/cgroup.procs" || exit 125; done; exec setpriv --pdeathsig SIGTERM -- systemd-nspawn "$@"',
        "sh",
        ...args,
      ],
      { stdio: ["ignore", log.fd, log.fd], env: { ...process.env, BERTH_LAB_CGROUPS: nodeCgroups.join(" ") } },
    );
    nspawn = child;
    await log.close();
    const nspawnPid = child.pid;
    if (!nspawnPid) throw new Error("systemd-nspawn did not start (is systemd-container installed? run scripts/setup.sh)");
    child.on("error", () => {});
    installExitHook();

    let leader = 0;
    while (!leader) {
      if (!running(child)) throw new Error(`systemd-nspawn exited ${child.exitCode} during boot:\n${await nspawnLog()}`);
      if (Date.now() > deadline) throw new Error(`no node PID 1 under nspawn ${nspawnPid} within the deadline:\n${await nspawnLog()}`);
      leader = findLeader(nspawnPid) ?? 0;
      if (!leader) await sleep(20);
    }
    leaderPid = leader;

    let state = "";
    while (state !== "running" && state !== "degraded") {
      if (!running(child)) throw new Error(`systemd-nspawn exited ${child.exitCode} during boot:\n${await nspawnLog()}`);
      if (Date.now() > deadline) {
        // What the boot is waiting for: the jobs still queued, what failed, and the journal.
        const out = async (cmd: string[]): Promise<string> =>
          (await exec(cmd, { timeoutMs: 5000 }).catch((e: unknown) => ({ stdout: `(${String(e)})` }))).stdout;
        const jobs = await out(["systemctl", "list-jobs", "--no-legend", "--no-pager"]);
        const failed = await out(["systemctl", "--failed", "--no-legend", "--no-pager"]);
        const journal = await out(["journalctl", "-b", "--no-pager", "-o", "short-monotonic", "-n", "60"]);
        throw new Error(
          `node ${name} did not reach running/degraded within ${bootTimeoutMsFor(deadline)} (last: "${state}"); jobs still queued:\n${jobs}\nfailed units:\n${failed}\njournal (last 60 lines):\n${journal}\nconsole:\n${await nspawnLog()}`,
        );
      }
      const r2 = await exec(["systemctl", "is-system-running"], { timeoutMs: 5000 });
      state = r2.stdout.trim();
      if (state !== "running" && state !== "degraded") await sleep(50);
    }
  };

  const bootTimeoutMs = opts.bootTimeoutMs ?? 60_000;
  let node: LabNode;
  try {
    let r = await run("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${rootfs},upperdir=${dir}/upper,workdir=${dir}/work`, root]);
    if (r.code !== 0) throw new Error(`overlay mount of the node root failed: ${r.stderr.trim()}`);
    await mkdir(join(root, "var/lib/containerd"), { recursive: true });
    r = await run("mount", ["--bind", containerdDir, join(root, "var/lib/containerd")]);
    if (r.code !== 0) throw new Error(`bind mount of /var/lib/containerd failed: ${r.stderr.trim()}`);
    await baseFiles(root, machine);
    // The node's private copy of the package, taken now: a rebuild on the
    // host while this node runs cannot swap the code under it.
    const nodeDeb = `${NODE_PACKAGE_DIR}/${basename(deb)}`;
    await mkdir(join(root, NODE_PACKAGE_DIR), { recursive: true });
    await copyFile(deb, join(root, nodeDeb));
    for (const [p, spec] of Object.entries(opts.files ?? {})) await writeNodeFile(root, p, spec);

    const t2 = performance.now();
    await launch(Date.now() + bootTimeoutMs);
    const t3 = performance.now();

    // berth goes in as on any Debian node: dpkg -i, whose postinst runs `berth install`.
    const inst = await exec(["dpkg", "-i", nodeDeb], { timeoutMs: 120_000, env: { DEBIAN_FRONTEND: "noninteractive" } });
    if (inst.code !== 0) {
      throw new Error(
        `dpkg -i ${basename(deb)} in node ${name} failed (exit ${inst.code}); is a dependency missing from lab/build-rootfs.sh's PACKAGES?\n${inst.stdout}${inst.stderr}`,
      );
    }
    const t4 = performance.now();
    let rebootMs: number | undefined;
    if (opts.rebootAfterInstall) {
      await stopNspawn();
      await launch(Date.now() + bootTimeoutMs);
      rebootMs = performance.now() - t4;
    }
    lastBootTimings = {
      rootfsMs: t1 - t0,
      prepareMs: t2 - t1,
      bootMs: t3 - t2,
      installMs: t4 - t3,
      ...(rebootMs !== undefined ? { rebootMs } : {}),
    };

    const systemctl = (...a: string[]): Promise<ExecResult> => exec(["systemctl", ...a]);
    const journal = async (unit: string, jo: { lines?: number } = {}): Promise<string> => {
      const a = ["journalctl", "--no-pager", "-o", "short-precise", "-u", unit];
      if (jo.lines) a.push("-n", String(jo.lines));
      return (await exec(a)).stdout;
    };
    node = {
      name,
      machine,
      root,
      dir,
      get leaderPid() {
        return leaderPid;
      },
      get nspawnPid() {
        return nspawn?.pid ?? 0;
      },
      busAddress: `unix:path=${busDir}/system_bus_socket`,
      berthPackage: nodeDeb,
      hostPath: (p: string) => join(`/proc/${leaderPid}/root`, p),
      exec,
      follow,
      systemctl,
      journal,
      async waitForState(unit: string, want: string, timeoutMs: number): Promise<void> {
        const end = Date.now() + timeoutMs;
        let last: string;
        for (;;) {
          last = (await exec(["systemctl", "show", "-p", "ActiveState", "--value", unit], { timeoutMs: 5000 })).stdout.trim();
          if (last === want) return;
          if (Date.now() > end) break;
          await sleep(100);
        }
        throw new Error(
          `${unit} in node ${name} is "${last}", not "${want}", after ${timeoutMs} ms; journal:\n${await journal(unit, { lines: 30 })}`,
        );
      },
      async writeFile(nodePath: string, content: string, mode = 0o644): Promise<void> {
        await writeNodeFile(root, nodePath, { content, mode });
      },
      async reboot(timeoutMs = bootTimeoutMs): Promise<void> {
        if (down) throw new Error(`node ${name} is shut down; cannot reboot it`);
        await stopNspawn();
        await launch(Date.now() + timeoutMs);
      },
      shutdown: teardown,
    };
    liveNodes.add(node);
    return node;
  } catch (e) {
    await teardown();
    throw e;
  }
}

// ---------------------------------------------------------------- registry

export interface Registry {
  /** host:port on 127.0.0.1 */
  address: string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  const addr = srv.address();
  srv.close();
  if (addr === null || typeof addr === "string") throw new Error("no TCP port from the OS");
  return addr.port;
}

/** Debian's docker-registry (distribution v2) on 127.0.0.1:<free port>, storage in a temp dir. */
export async function startRegistry(): Promise<Registry> {
  if (!existsSync("/usr/bin/docker-registry")) throw new Error("docker-registry is not installed; run scripts/setup.sh");
  const dir = await mkdtemp(`${LAB_TMP_PREFIX}registry-`);
  await writeFile(join(dir, "owner"), `${process.pid}\n`);
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    const config = [
      "version: 0.1",
      "log:",
      "  level: warn",
      "storage:",
      "  filesystem:",
      `    rootdirectory: ${dir}/data`,
      "  delete:",
      "    enabled: true",
      "http:",
      `  addr: ${address}`,
      "",
    ].join("\n");
    await writeFile(join(dir, "config.yml"), config);
    const log = await open(join(dir, "registry.log"), "a");
    const child = spawn("setpriv", ["--pdeathsig", "SIGTERM", "--", "/usr/bin/docker-registry", "serve", join(dir, "config.yml")], {
      stdio: ["ignore", log.fd, log.fd],
    });
    await log.close();
    child.on("error", () => {});
    const deadline = Date.now() + 10_000;
    let up = false;
    while (Date.now() < deadline && running(child)) {
      try {
        const res = await fetch(`http://${address}/v2/`, { signal: AbortSignal.timeout(1000) });
        if (res.status === 200) {
          up = true;
          break;
        }
      } catch {}
      await sleep(30);
    }
    const stop = async (): Promise<void> => {
      if (running(child) && child.pid) {
        const exited = once(child, "exit");
        child.kill("SIGTERM");
        await Promise.race([exited, grace(5000)]);
        if (running(child)) child.kill("SIGKILL");
      }
    };
    if (up) {
      return {
        address,
        async stop() {
          await stop();
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    await stop();
    // Another process may have taken the port between freePort() and listen.
    if (attempt >= 2) {
      const logText = await readFile(join(dir, "registry.log"), "utf8").catch(() => "");
      await rm(dir, { recursive: true, force: true });
      throw new Error(`docker-registry did not answer on ${address}:\n${logText.slice(-2000)}`);
    }
  }
}

let pauseLayoutPromise: Promise<string> | undefined;
/** OCI layout (tag "latest") of the lab's pause image, built offline once per machine. */
export function ensurePauseImageLayout(): Promise<string> {
  pauseLayoutPromise ??= (async () => {
    const res = await run("bash", [join(LAB_DIR, "build-pause-image.sh")], { timeoutMs: 120_000 });
    if (res.code !== 0) throw new Error(`lab/build-pause-image.sh failed (${res.code}):\n${res.stderr}`);
    return res.stdout.trim().split("\n").pop() ?? "";
  })();
  pauseLayoutPromise.catch(() => (pauseLayoutPromise = undefined));
  return pauseLayoutPromise;
}

/** Builds (cached) and pushes the pause image as kubernetes/pause:latest; returns its manifest digest. */
export async function pushPauseImage(registry: Registry): Promise<string> {
  const layout = await ensurePauseImageLayout();
  return pushOciLayout({ registry: registry.address, layoutDir: layout, tag: "latest", repository: "kubernetes/pause" });
}

/**
 * hosts.toml that makes containerd resolve `localhost/...` to the lab registry
 * (plain HTTP on loopback). Install at /etc/containerd/certs.d/localhost/hosts.toml.
 */
export function registryHostsToml(registry: Registry | string): string {
  const address = typeof registry === "string" ? registry : registry.address;
  return [`server = "http://${address}"`, "", `[host."http://${address}"]`, '  capabilities = ["pull", "resolve"]', ""].join("\n");
}

/** The lab's containerd TOML fragment (merge it over berth's config). */
export function containerdLabToml(): string {
  return readFileSync(join(LAB_DIR, "containerd-lab.toml"), "utf8");
}

/** containerd's defaults spelled out (schema 2, root, state, socket): the base a lab node's config.toml starts from. */
const LAB_CONTAINERD_BASE = `version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
`;

/**
 * A complete config.toml for a lab node that berth did not configure: the
 * base above plus `extra`, with the lab's settings (containerdLabToml)
 * merged over it the way berth layers user TOML (mergeToml).
 */
export function labContainerdConfig(extra = ""): string {
  const parse = (text: string, what: string): TomlTable => {
    const r = parseToml(text);
    if (!r.ok) throw new Error(`${what}: ${r.message} (line ${r.line ?? "?"})`);
    return r.value;
  };
  return stringifyToml(
    mergeToml(parse(LAB_CONTAINERD_BASE + extra, "lab containerd base"), parse(containerdLabToml(), "lab/containerd-lab.toml")),
  );
}

/** The containerd.service drop-in the lab needs inside nspawn. */
export function containerdLabDropIn(): string {
  return readFileSync(join(LAB_DIR, "containerd-lab.dropin.conf"), "utf8");
}

/** Files (node path → spec) that prepare containerd inside a node: drop-in and registry mirror. */
export function containerdLabFiles(registry?: Registry): Record<string, FileSpec> {
  const files: Record<string, FileSpec> = {
    "/etc/systemd/system/containerd.service.d/10-berth-lab.conf": containerdLabDropIn(),
  };
  if (registry) files["/etc/containerd/certs.d/localhost/hosts.toml"] = registryHostsToml(registry);
  return files;
}

/** Leftovers of any lab run on this host: nspawn processes with our marker, mounts under our prefix. */
export function labLeftovers(): { processes: number[]; mounts: string[]; cgroups: string[] } {
  const processes: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, "utf8").split("\0");
      if (cmd[0]?.endsWith("systemd-nspawn") && cmd.some((a) => a.startsWith(MACHINE_PREFIX))) processes.push(Number(e));
    } catch {}
  }
  const mounts: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const mp = line.split(" ")[4];
    if (mp?.startsWith(LAB_TMP_PREFIX)) mounts.push(mp);
  }
  const cgroups: string[] = [];
  for (const base of nodeCgroupDirs("x").map((d) => dirname(d))) {
    try {
      for (const e of readdirSync(base)) if (e.startsWith(MACHINE_PREFIX)) cgroups.push(join(base, e));
    } catch {}
  }
  return { processes, mounts, cgroups };
}
