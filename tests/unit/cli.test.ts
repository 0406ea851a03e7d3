/**
 * The CLI as users run it: the release executable (dist/release/berth-linux-<arch>) as a child process.
 * Exit statuses (0 ok, 1 failure, 2 usage), help and version, errors printed
 * with formatError and never a stack trace, and nothing written on failure.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync } from "node:fs";
import { mkdir, symlink, writeFile, readFile } from "node:fs/promises";
import path from "node:path";
import { BIN, ensureRelease, EXE, NO_STACK, REPO, runBerth, runCli, scratchDirs, tree, type CliRun } from "../fixtures/cli.ts";
import { CLUSTER_NODECONFIG_YAML as GOOD } from "../fixtures/node.ts";

const scratchDir = scratchDirs("berth-cli-");
const scratch = scratchDir.make;

before(ensureRelease);
after(scratchDir.removeAll);

const berth = runBerth;

test("--version matches package.json", async () => {
  const pkg = JSON.parse(readFileSync(path.join(REPO, "package.json"), "utf8")) as { version: string };
  const r = await berth(["--version"]);
  assert.equal(r.code, 0);
  assert.ok(r.stdout.startsWith(`berth ${pkg.version} (`), r.stdout);
});

test("--help everywhere, exit 0", async () => {
  for (const args of [
    ["--help"],
    ["init", "--help"],
    ["config", "check", "--help"],
    ["config", "dump", "-h"],
    ["config", "--help"],
    ["demo", "--help"],
    ["agent", "--help"],
    ["status", "--help"],
    ["install", "--help"],
    ["task", "--help"],
  ]) {
    const r = await berth(args);
    assert.equal(r.code, 0, args.join(" "));
    assert.match(r.stdout, /Usage:/, args.join(" "));
  }
  const top = await berth(["--help"]);
  for (const w of [
    "init",
    "config check",
    "config dump",
    "demo",
    "install",
    "task",
    "--config-source",
    "--skip",
    "--config-cache",
    "--root",
    "--dry-run",
  ])
    assert.ok(top.stdout.includes(w), w);
});

test("usage errors exit 2 with a hint and no stack trace", async () => {
  for (const args of [
    [],
    ["frobnicate"],
    ["init", "--bogus"],
    ["init", "--skip", "nope"],
    ["init", "extra"],
    ["config"],
    ["config", "nope"],
    ["config", "check", "-c"],
    ["init", "--config-cache", "relative.json"],
    ["config", "dump", "--config-cache", "x"],
  ]) {
    const r = await berth(args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, NO_STACK);
    if (args.length) assert.match(r.stderr, /^error: .+\n {2}hint: /, args.join(" "));
  }
});

test("init without --skip run goes on to the run phase, which fails clearly without systemd", async () => {
  const root = await scratch();
  await writeFile(path.join(root, "good.yaml"), GOOD);
  // Facts come from a missing IMDS here, so the config phase fails first, and cleanly; the demo
  // profile is not reachable through init. What matters: one formatted error, no stack, exit 1.
  const r = await berth(["init", "--root", root, "-c", "file:///good.yaml"], {
    env: { DBUS_SYSTEM_BUS_ADDRESS: "unix:path=/nonexistent/berth-test-bus", BERTH_BUS_ADDRESS: "unix:path=/nonexistent/berth-test-bus" },
  });
  assert.equal(r.code, 1, r.stderr);
  assert.doesNotMatch(r.stderr, NO_STACK);
  assert.match(r.stderr, /^error: /m);
});

test("init --dry-run writes nothing and does not start the run phase", async () => {
  const root = await scratch();
  await writeFile(path.join(root, "good.yaml"), GOOD);
  const before = await tree(root);
  const r = await berth(["init", "--dry-run", "--root", root, "-c", "file:///good.yaml"]);
  // Without IMDS the facts step fails; either way nothing may be written.
  assert.doesNotMatch(r.stderr, NO_STACK);
  assert.deepEqual(await tree(root), before);
});

test("an invalid config writes nothing and names source, line and field", async () => {
  const root = await scratch();
  await mkdir(path.join(root, "etc/eks"), { recursive: true });
  await writeFile(path.join(root, "etc/eks/kubelet-version.txt"), "v1.33.0\n");
  await writeFile(path.join(root, "etc/eks/containerd-version.txt"), "1.7.27\n");
  await writeFile(path.join(root, "bad.yaml"), GOOD.replace("    name: my-cluster\n", "    nmae: my-cluster\n"));
  const before = await tree(root);
  const r = await berth(["init", "--skip", "run", "--root", root, "-c", "file:///bad.yaml"]);
  assert.equal(r.code, 1, r.stderr);
  assert.doesNotMatch(r.stderr, NO_STACK);
  assert.match(r.stderr, /^error: .*bad\.yaml:\d+:\d+/m);
  assert.match(r.stderr, /nmae/);
  assert.deepEqual(await tree(root), before);

  const check = await berth(["config", "check", "--root", root, "-c", "file:///bad.yaml"]);
  assert.equal(check.code, 1);
  assert.match(check.stderr, /^error: /m);
});

test("config check accepts a good config; config dump prints and writes it", async () => {
  const root = await scratch();
  await writeFile(path.join(root, "good.yaml"), GOOD);
  const check = await berth(["config", "check", "--root", root, "-c", "file:///good.yaml"]);
  assert.equal(check.code, 0, check.stderr);
  assert.match(check.stdout, /valid/);
  // JSON by default (nodeadm's); the exact shape is in cli-commands.test.ts.
  const json = await berth(["config", "dump", "--root", root, "-c", "file:///good.yaml"]);
  assert.equal(json.code, 0, json.stderr);
  assert.equal((JSON.parse(json.stdout) as { spec: { cluster: { name: string } } }).spec.cluster.name, "my-cluster");
  const dump = await berth(["config", "dump", "--format", "yaml", "--root", root, "-c", "file:///good.yaml"]);
  assert.equal(dump.code, 0, dump.stderr);
  assert.match(dump.stdout, /kind: NodeConfig/);
  assert.match(dump.stdout, /name: my-cluster/);
  const out = path.join(root, "out/dump.yaml");
  const toFile = await berth(["config", "dump", "--format", "yaml", "--root", root, "-c", "file:///good.yaml", "-o", out]);
  assert.equal(toFile.code, 0, toFile.stderr);
  assert.equal(await readFile(out, "utf8"), dump.stdout);
});

test("demo writes the node's files into a scratch root; a second run changes nothing; dry run writes nothing", async () => {
  const root = await scratch();
  const r = await berth(["demo", "--root", root]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.includes(root), "prints where it wrote");
  for (const f of [
    "etc/kubernetes/kubelet/config.json",
    "etc/containerd/config.toml",
    "var/lib/kubelet/kubeconfig",
    "etc/eks/kubelet/environment",
  ]) {
    assert.match(r.stdout, new RegExp(`wrote +/${f.replace(/\./g, "\\.")}`), f);
    assert.ok(existsSync(path.join(root, f)), f);
  }
  const again = await berth(["demo", "--root", root]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /^0 written, 0 removed, \d+ unchanged/m);

  const fresh = await scratch();
  const dry = await berth(["demo", "--root", fresh, "--dry-run"]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /^--- \/dev\/null\n\+\+\+ b\/etc\/kubernetes\/kubelet\/config\.json\n@@ /m);
  assert.match(dry.stdout, /nothing was written/);
  assert.deepEqual(await tree(fresh), []);
});

test("a bad config source URL is a user error, not a crash", async () => {
  const root = await scratch();
  const r = await berth(["init", "--skip", "run", "--root", root, "-c", "http://example.com/x.yaml"]);
  assert.equal(r.code, 1);
  assert.doesNotMatch(r.stderr, NO_STACK);
  assert.match(r.stderr, /^error: .*unsupported scheme/m);
  assert.deepEqual(await tree(root), []);
});

// bin/berth (the development launcher: the same bundle on the host's node) must behave exactly like the release executable.
const viaBin = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> => runCli(BIN, args, { env });

async function readTree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of await tree(dir)) {
    const p = path.join(dir, f);
    const st = statSync(p);
    if (st.isFile()) out[f] = `${(st.mode & 0o7777).toString(8)} ${await readFile(p, "utf8")}`;
  }
  return out;
}

/** Units name the executable that wrote them: mask that one path to compare two executables' output. */
const maskExe = (files: Record<string, string>, exe: string): Record<string, string> =>
  Object.fromEntries(Object.entries(files).map(([k, v]) => [k, v.replaceAll(exe, "BERTH")]));

test("bin/berth and the release executable write the same files and print the same errors", async () => {
  const a = await scratch();
  const b = await scratch();
  const dev = await viaBin(["demo", "--root", a]);
  const rel = await berth(["demo", "--root", b]);
  assert.equal(dev.code, 0, dev.stderr);
  assert.equal(rel.code, 0, rel.stderr);
  assert.deepEqual(maskExe(await readTree(a), BIN), maskExe(await readTree(b), EXE));
  assert.equal(dev.stdout.replaceAll(a, "ROOT"), rel.stdout.replaceAll(b, "ROOT"));

  const root = await scratch();
  await writeFile(path.join(root, "bad.yaml"), GOOD.replace("    name: my-cluster\n", "    nmae: my-cluster\n"));
  for (const args of [
    ["config", "check", "--root", root, "-c", "file:///bad.yaml"],
    ["init", "--skip", "run", "--root", root, "-c", "file:///bad.yaml"],
    ["init", "--skip", "nope"],
    ["config", "dump", "-c", "file://data/example-nodeconfig.yaml"],
  ]) {
    const d = await viaBin(args);
    const r = await berth(args);
    assert.deepEqual(d, r, args.join(" "));
  }
});

test("--version names berth's version, the commit, the Node.js inside and the architecture", async () => {
  const v = await berth(["--version"]);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^berth \d+\.\d+\.\d+ \(commit [0-9a-f]{7,}(-dirty)?, node v(\d+)\.\d+\.\d+, linux\/(x64|arm64)\)\n$/);
  const node = /node v(\d+)/.exec(v.stdout)![1];
  const pinned = JSON.parse(readFileSync(path.join(REPO, "packaging/node.json"), "utf8")) as { version: string };
  assert.equal(node, pinned.version.split(".")[0], "the release embeds the pinned Node.js");
});

test("the units name the executable that wrote them, its real path; BERTH_PATH overrides", async () => {
  const root = await scratch();
  const r = await berth(["demo", "--root", root]);
  assert.equal(r.code, 0, r.stderr);
  const agent = await readFile(path.join(root, "etc/systemd/system/berth-agent.service"), "utf8");
  assert.match(agent, new RegExp(`^ExecStart=${EXE.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")} agent`, "m"));
  // Through a symlink: still the real path.
  const dir = await scratch();
  await symlink(EXE, path.join(dir, "berth"));
  const root2 = await scratch();
  const viaLink = await runCli(path.join(dir, "berth"), ["demo", "--root", root2]);
  assert.equal(viaLink.code, 0, viaLink.stderr);
  assert.equal(await readFile(path.join(root2, "etc/systemd/system/berth-agent.service"), "utf8"), agent);
  const root3 = await scratch();
  const over = await berth(["demo", "--root", root3], { env: { BERTH_PATH: "/opt/berth/bin/berth" } });
  assert.equal(over.code, 0, over.stderr);
  assert.match(
    await readFile(path.join(root3, "etc/systemd/system/berth-agent.service"), "utf8"),
    /^ExecStart=\/opt\/berth\/bin\/berth agent/m,
  );
});
