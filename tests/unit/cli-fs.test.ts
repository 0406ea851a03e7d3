/**
 * Issue 8's filesystem items through the real CLI (the release executable,
 * as a child process): nothing escapes --root through a symbolic link (the
 * node's files, config sources, the cache, the status file); a killed run's
 * temp files block nothing and are cleaned; two inits at once do not mix
 * their files (the second waits, says so, and gives up at a deadline);
 * ownership drift is repaired; errors name the user's file, never a temp.
 * Needs root (chown, unshare, setpriv), as the suite does.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { chown, mkdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { acquireLock } from "../../src/host/lock.ts";
import { LOCK_PATH } from "../../src/util/node-layout.ts";
import { HostRoot } from "../../src/host/root.ts";
import { useAwsStandIns } from "../fixtures/aws-standins.ts";
import { ensureRelease, EXE, NO_STACK, runCli, scratchDirs, type CliRun } from "../fixtures/cli.ts";
import { seedNodeRoot } from "../fixtures/node.ts";

const scratchDir = scratchDirs("berth-cli-fs-");
const scratch = scratchDir.make;

const aws = useAwsStandIns();
before(ensureRelease);
after(scratchDir.removeAll);

/** What init needs to reach the stand-ins instead of AWS. */
const awsEnv = (): NodeJS.ProcessEnv => aws.env();

/** `berth args…`, optionally through a wrapper (`unshare …`, `setpriv …`) that then execs berth. */
function berth(args: string[], opts: { env?: NodeJS.ProcessEnv; via?: string[] } = {}): Promise<CliRun> {
  const env = { ...awsEnv(), ...opts.env };
  if (!opts.via?.length) return runCli(EXE, args, { env });
  const [file, ...pre] = opts.via;
  return runCli(file!, [...pre, EXE, ...args], { env });
}

/** A NodeConfig whose every rendered file is recognisably A's or B's. */
function nodeConfig(tag: "a" | "b"): string {
  const cidr = tag === "a" ? "10.100.0.0/16" : "172.20.0.0/16";
  return `apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  cluster:
    name: cluster-${tag}
    apiServerEndpoint: https://${tag}.example.com
    certificateAuthority: ${Buffer.from(`certificate ${tag}\n`).toString("base64")}
    cidr: ${cidr}
`;
}

/** A seeded node root (version files, CPU list, data/example-nodeconfig.yaml as a drop-in). */
async function nodeRoot(): Promise<string> {
  const root = await scratch();
  await seedNodeRoot(root);
  return root;
}

const initArgs = (root: string, ...more: string[]): string[] => [
  "init",
  "--skip",
  "run",
  "--root",
  root,
  "-c",
  "file:///etc/eks/nodeadm.d/",
  ...more,
];

/** Every regular file under `dir` (relative), links not followed. */
function filesUnder(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).filter((f) => lstatSync(path.join(dir, f)).isFile()).sort();
}

// ------------------------------------------------------------------ 1: nothing escapes --root

test("init --root R with R/etc/kubernetes -> /elsewhere and R/var/lib/kubelet -> ../../../x writes inside R only", async () => {
  const root = await nodeRoot();
  const outside = await scratch();
  // The issue's two shapes: an absolute link to a real directory outside R, and a relative one climbing out of R
  // (from R/var/lib, ../../../ is R's parent: without chroot semantics this lands in `outside`).
  symlinkSync(outside, path.join(root, "etc/kubernetes"));
  mkdirSync(path.join(root, "var/lib"), { recursive: true });
  symlinkSync(`../../../${path.basename(outside)}`, path.join(root, "var/lib/kubelet"));
  // The status file and the config cache go through links too: R/run -> /elsewhere.
  symlinkSync(outside, path.join(root, "run"));
  const r = await berth(["init", "--root", root, "-c", "file:///etc/eks/nodeadm.d/", "--config-cache", "/run/eks/nodeadm/config.json"], {
    env: { DBUS_SYSTEM_BUS_ADDRESS: "unix:path=/nonexistent/berth-test-bus", BERTH_BUS_ADDRESS: "unix:path=/nonexistent/berth-test-bus" },
  });
  // The run phase has no systemd here and fails; the config phase and the status file are what matter.
  assert.doesNotMatch(r.stderr, NO_STACK);
  assert.match(r.stdout, /^wrote +\/etc\/kubernetes\/kubelet\/config\.json$/m, r.stderr);
  assert.deepEqual(filesUnder(outside), [], "nothing written outside the root");
  // chroot semantics: /elsewhere means R/elsewhere, and `..` stops at R.
  const inside = path.join(root, outside);
  for (const f of ["kubelet/config.json", "pki/ca.crt"]) assert.ok(existsSync(path.join(inside, f)), f);
  assert.ok(existsSync(path.join(root, path.basename(outside), "kubeconfig")), "the kubelet's kubeconfig via the relative link");
  assert.ok(existsSync(path.join(inside, "eks/nodeadm/config.json")), "the config cache");
  assert.equal((JSON.parse(readFileSync(path.join(inside, "berth/status.json"), "utf8")) as { kind: string }).kind, "RunStatus");
});

test("a file config source linking out of the root reads the root's file, not the host's", async () => {
  const root = await nodeRoot();
  const outside = await scratch();
  const evil = path.join(outside, "evil.yaml");
  writeFileSync(evil, nodeConfig("b"));
  // The same absolute path inside the root holds A.
  mkdirSync(path.join(root, outside), { recursive: true });
  writeFileSync(path.join(root, evil), nodeConfig("a"));
  symlinkSync(evil, path.join(root, "etc/eks/nodeadm.d/zz.yaml"));
  const dump = await berth(["config", "dump", "--root", root, "-c", "file:///etc/eks/nodeadm.d/"]);
  assert.equal(dump.code, 0, dump.stderr);
  assert.equal((JSON.parse(dump.stdout) as { spec: { cluster: { name: string } } }).spec.cluster.name, "cluster-a");
  // A single file source too, and a missing target is reported with both paths.
  const one = await berth(["config", "dump", "--root", root, "-c", "file:///etc/eks/nodeadm.d/zz.yaml"]);
  assert.equal((JSON.parse(one.stdout) as { spec: { cluster: { name: string } } }).spec.cluster.name, "cluster-a");
  symlinkSync("/no/such.yaml", path.join(root, "etc/eks/nodeadm.d/zzz.yaml"));
  const missing = await berth(["config", "check", "--root", root, "-c", "file:///etc/eks/nodeadm.d/"]);
  assert.equal(missing.code, 1);
  assert.ok(
    missing.stderr.includes(`/etc/eks/nodeadm.d/zzz.yaml (${path.join(root, "no/such.yaml")} under --root ${root})`),
    missing.stderr,
  );
});

// ------------------------------------------------------------------ 2 and 6: temp files

test("a killed run's temp names (pid 1 in a fresh PID namespace) block nothing and are removed; status.json is not written through a planted link", async () => {
  const first = await nodeRoot();
  const r1 = await berth(initArgs(first));
  assert.equal(r1.code, 0, r1.stderr);
  const written = [...r1.stdout.matchAll(/^wrote +(\S+)$/gm)].map((m) => m[1]!);
  assert.ok(written.length > 10);

  // A fresh root with, beside every file init writes, the names a berth-config killed at boot as pid 1 would leave.
  const root = await nodeRoot();
  const planted: string[] = [];
  for (const f of written) {
    const dir = path.join(root, path.dirname(f));
    mkdirSync(dir, { recursive: true });
    for (let seq = 1; seq <= written.length; seq++) {
      const p = path.join(dir, `.${path.basename(f)}.berth-1-${seq}.tmp`);
      writeFileSync(p, "left by a killed run\n");
      planted.push(p);
    }
  }
  // The old status writer's name for pid 1, planted as a link to a file outside the root.
  const outside = await scratch();
  writeFileSync(path.join(outside, "victim"), "precious\n");
  mkdirSync(path.join(root, "run/berth"), { recursive: true });
  symlinkSync(path.join(outside, "victim"), path.join(root, "run/berth/status.json.1.tmp"));

  const r = await berth(["init", "--root", root, "-c", "file:///etc/eks/nodeadm.d/"], {
    via: ["unshare", "--fork", "--pid", "--mount-proc"],
    env: { DBUS_SYSTEM_BUS_ADDRESS: "unix:path=/nonexistent/berth-test-bus", BERTH_BUS_ADDRESS: "unix:path=/nonexistent/berth-test-bus" },
  });
  assert.doesNotMatch(r.stderr, /EEXIST/);
  assert.match(r.stdout, new RegExp(`^${written.length} written`, "m"), r.stderr);
  for (const p of planted) assert.ok(!existsSync(p), `${p} removed`);
  assert.match(r.stderr, /^removed .*\.berth-1-1\.tmp, a temp file left by an interrupted berth run$/m);
  // The status file: written (the run phase failed without systemd), the planted link left alone and not followed.
  assert.equal(readFileSync(path.join(outside, "victim"), "utf8"), "precious\n");
  assert.ok(lstatSync(path.join(root, "run/berth/status.json")).isFile());
  assert.equal((JSON.parse(readFileSync(path.join(root, "run/berth/status.json"), "utf8")) as { result: string }).result, "failed");
  assert.deepEqual(
    readdirSync(path.join(root, "run/berth")).filter((n) => n.endsWith(".tmp")),
    [],
    "the planted link is removed as a stale temp (not followed)",
  );
});

// ------------------------------------------------------------------ 3: one run at a time

test("simultaneous inits with configs A and B: each end state is all A or all B, both succeed", async () => {
  const rounds = 10;
  for (let i = 0; i < rounds; i++) {
    const root = await nodeRoot();
    await writeFile(path.join(root, "a.yaml"), nodeConfig("a"));
    await writeFile(path.join(root, "b.yaml"), nodeConfig("b"));
    const run = (tag: "a" | "b") =>
      berth(["init", "--skip", "run", "--root", root, "-c", `file:///${tag}.yaml`, "--config-cache", "/run/eks/nodeadm/config.json"]);
    const [a, b] = await Promise.all([run("a"), run("b")]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const kubeconfig = await readFile(path.join(root, "var/lib/kubelet/kubeconfig"), "utf8");
    const ca = await readFile(path.join(root, "etc/kubernetes/pki/ca.crt"), "utf8");
    const kubelet = await readFile(path.join(root, "etc/kubernetes/kubelet/config.json"), "utf8");
    const cache = JSON.parse(await readFile(path.join(root, "run/eks/nodeadm/config.json"), "utf8")) as {
      spec: { cluster: { name: string } };
    };
    const tags = [
      kubeconfig.includes("https://a.example.com") ? "a" : "b",
      ca === "certificate a\n" ? "a" : "b",
      kubelet.includes("10.100.0.10") ? "a" : "b",
      cache.spec.cluster.name === "cluster-a" ? "a" : "b",
    ];
    assert.equal(new Set(tags).size, 1, `round ${i}: mixed end state ${tags.join(",")}\nA: ${a.stderr}\nB: ${b.stderr}`);
    assert.ok(!existsSync(path.join(root, LOCK_PATH)), "the lock is released");
  }
});

test("a second init waits for the lock, says so, and goes on once it is released", async () => {
  const root = await nodeRoot();
  const lock = await acquireLock(new HostRoot(root), { command: "test holder" });
  assert.ok(lock.ok);
  // Spawned by hand (runCli collects output only at exit): the lock is released once berth says it waits.
  const child = spawn(EXE, initArgs(root), {
    env: { PATH: process.env.PATH, HOME: tmpdir(), ...awsEnv() },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  try {
    await new Promise<void>((resolve) => {
      child.stderr.on("data", (d: Buffer) => {
        stderr += d.toString();
        if (stderr.includes("waiting for the berth lock")) resolve();
      });
      void exited.then(() => resolve());
    });
  } finally {
    lock.value.release();
  }
  const code = await exited;
  assert.equal(code, 0, stderr);
  assert.match(
    stderr,
    new RegExp(`^waiting for the berth lock held by pid ${process.pid} \\(test holder\\) since \\S+; giving up at `, "m"),
  );
  assert.match(stdout, /^wrote +\/etc\/kubernetes\/kubelet\/config\.json$/m);
});

test("a lock held past BERTH_LOCK_TIMEOUT_MS: exit 1, the holder named, nothing written", async () => {
  const root = await nodeRoot();
  const lock = await acquireLock(new HostRoot(root), { command: "test holder" });
  assert.ok(lock.ok);
  try {
    const before = filesUnder(root);
    const r = await berth(initArgs(root), { env: { BERTH_LOCK_TIMEOUT_MS: "300" } });
    assert.equal(r.code, 1, r.stderr);
    assert.doesNotMatch(r.stderr, NO_STACK);
    assert.match(r.stderr, /^waiting for the berth lock held by pid \d+ \(test holder\)/m);
    assert.match(
      r.stderr,
      new RegExp(
        `^error: .*another berth run still holds the berth lock /run/berth/lock \\(${lock.value.path} under --root ${root}\\): pid ${process.pid} \\(test holder\\)`,
        "m",
      ),
    );
    assert.match(r.stderr, /hint: .*BERTH_LOCK_TIMEOUT_MS/);
    assert.deepEqual(filesUnder(root), before);
    const bad = await berth(initArgs(root), { env: { BERTH_LOCK_TIMEOUT_MS: "soon" } });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^error: .*BERTH_LOCK_TIMEOUT_MS="soon" is not a number of milliseconds/m);
  } finally {
    lock.value.release();
  }
});

// ------------------------------------------------------------------ 5: ownership

test("a kubeconfig chowned to uid 1000 is repaired to root:root and reported as written", async () => {
  const root = await nodeRoot();
  assert.equal((await berth(initArgs(root))).code, 0);
  const kc = path.join(root, "var/lib/kubelet/kubeconfig");
  await chown(kc, 1000, 1000);
  const dry = await berth([...initArgs(root), "--dry-run"]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /^old owner 1000:1000\nnew owner 0:0\n/m);
  assert.match(dry.stdout, /dry run: 1 file\(s\) would be written/);
  const r = await berth(initArgs(root));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^wrote +\/var\/lib\/kubelet\/kubeconfig$/m);
  assert.match(r.stdout, /^1 written, 0 removed/m);
  const st = statSync(kc);
  assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [0, 0, 0o600]);
  const again = await berth(initArgs(root));
  assert.match(again.stdout, /^0 written, 0 removed/m);
});

// ------------------------------------------------------------------ 10: errors name the user's file

test("EROFS and EACCES name the target and its real path, never a temp file", async () => {
  // Read-only: R/etc/kubernetes bind-mounted read-only in a mount namespace of the run's own.
  const root = await nodeRoot();
  // The directories exist, so the first write that fails is a temp file's.
  for (const d of ["kubelet/config.json.d", "pki"]) await mkdir(path.join(root, "etc/kubernetes", d), { recursive: true });
  const ro = await berth(initArgs(root), {
    via: [
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      'mount --bind -o ro "$0" "$0" && exec "$@"',
      path.join(root, "etc/kubernetes"),
    ],
  });
  assert.equal(ro.code, 1, ro.stderr);
  assert.doesNotMatch(ro.stderr, /berth-\d+-/);
  assert.match(
    ro.stderr,
    new RegExp(
      `^error: .*could not write /etc/kubernetes/\\S+ \\(${root}/etc/kubernetes/\\S+ under --root ${root}\\): EROFS: read-only file system$`,
      "m",
    ),
  );
  assert.deepEqual(filesUnder(path.join(root, "etc/kubernetes")), []);

  // Permission denied: an unprivileged run (the demo: no AWS stand-ins to reach) on a root whose /etc/kubernetes it cannot write.
  const root2 = await scratch();
  chmodSync(root2, 0o755);
  for (const d of ["kubelet/config.json.d", "pki"]) await mkdir(path.join(root2, "etc/kubernetes", d), { recursive: true });
  await mkdir(path.join(root2, "run/berth"), { recursive: true });
  chmodSync(path.join(root2, "run/berth"), 0o777);
  for (const d of ["var", "usr", "etc/containerd", "etc/eks", "etc/systemd"]) {
    await mkdir(path.join(root2, d), { recursive: true });
    await chown(path.join(root2, d), 65534, 65534);
  }
  const denied = await berth(["demo", "--root", root2], { via: ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] });
  assert.equal(denied.code, 1, denied.stderr);
  assert.doesNotMatch(denied.stderr, /berth-\d+-/);
  assert.match(
    denied.stderr,
    new RegExp(
      `^error: .*could not write /etc/kubernetes/\\S+ \\(${root2}/etc/kubernetes/\\S+ under --root ${root2}\\): EACCES: permission denied$`,
      "m",
    ),
  );
});
