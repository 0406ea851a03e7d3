/**
 * The CLI words added for image builds and nodeadm parity: `berth task`,
 * `berth install`, `config dump --config-output/--format`, `init -d`.
 * Run through the release executable (dist/release/berth-linux-<arch>) as a child process, like users do.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, statSync } from "node:fs";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { startImdsStandIn, type ImdsStandIn } from "../standins/imds-server.ts";
import { startEc2StandIn, type Ec2StandIn } from "../standins/ec2-server.ts";
import { ensureRelease, EXE, NO_STACK, runBerth, scratchDirs, tree, type CliRun } from "../fixtures/cli.ts";
import { CLUSTER_NODECONFIG_YAML as GOOD, seedNodeRoot } from "../fixtures/node.ts";

const scratchDir = scratchDirs("berth-cli-cmd-");
const scratch = scratchDir.make;
let imds: ImdsStandIn | undefined;
let ec2: Ec2StandIn | undefined;

before(ensureRelease);
after(async () => {
  await imds?.close();
  await ec2?.close();
  await scratchDir.removeAll();
});

const berth = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> => runBerth(args, { env });

// ------------------------------------------------------------------ task

test("task: help, usage errors (exit 2), unknown subcommand", async () => {
  const h = await berth(["task", "--help"]);
  assert.equal(h.code, 0, h.stderr);
  assert.match(h.stdout, /Usage: berth task/);
  assert.match(h.stdout, /pull-images IMAGE/);
  for (const args of [
    ["task"],
    ["task", "pull-images"],
    ["task", "frobnicate"],
    ["task", "--bogus"],
    ["task", "pull-images", "x", "--timeout", "soon"],
  ]) {
    const r = await berth(args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, NO_STACK);
    assert.match(r.stderr, /error: |Usage:/, args.join(" "));
  }
  const top = await berth(["--help"]);
  assert.match(top.stdout, /berth task pull-images IMAGE/);
});

test("task pull-images: no containerd under --root is a clear failure (exit 1), not 'unknown command'", async () => {
  const root = await scratch();
  const r = await berth(["task", "pull-images", "--root", root, "--timeout", "300", "registry.k8s.io/pause:3.10"]);
  assert.equal(r.code, 1, r.stderr);
  assert.doesNotMatch(r.stderr, /unknown command/);
  assert.doesNotMatch(r.stderr, NO_STACK);
  assert.match(r.stderr, /^error: .*CRI/m);
  assert.match(r.stderr, /hint: /);
});

// ------------------------------------------------------------------ config dump

test("config dump: JSON by default, as nodeadm prints it; --format yaml; --config-output is -o", async () => {
  const root = await scratch();
  await writeFile(path.join(root, "good.yaml"), GOOD);
  const src = ["--root", root, "-c", "file:///good.yaml"];
  const json = await berth(["config", "dump", ...src]);
  assert.equal(json.code, 0, json.stderr);
  assert.equal(
    json.stdout,
    '{"kind":"NodeConfig","apiVersion":"node.eks.aws/v1alpha1","metadata":{"creationTimestamp":null},"spec":{"cluster":{"name":"my-cluster","apiServerEndpoint":"https://example.com","certificateAuthority":"Y2VydGlmaWNhdGVBdXRob3JpdHk=","cidr":"10.100.0.0/16"},"containerd":{},"instance":{"localStorage":{},"network":{}},"kubelet":{}}}\n',
  );
  const yaml = await berth(["config", "dump", "--format", "yaml", ...src]);
  assert.equal(yaml.code, 0, yaml.stderr);
  assert.match(yaml.stdout, /^---\napiVersion: node\.eks\.aws\/v1alpha1\nkind: NodeConfig\n/);

  const out = path.join(root, "out/config.json");
  const w = await berth(["config", "dump", ...src, "--config-output", out]);
  assert.equal(w.code, 0, w.stderr);
  assert.equal(w.stdout, "");
  assert.equal(await readFile(out, "utf8"), json.stdout);
  assert.equal(statSync(out).mode & 0o777, 0o644);

  // The YAML dump reads back as a config source.
  await writeFile(path.join(root, "dump.yaml"), yaml.stdout);
  const again = await berth(["config", "dump", "--root", root, "-c", "file:///dump.yaml"]);
  assert.equal(again.stdout, json.stdout);

  for (const args of [
    ["--format", "toml"],
    ["-o", path.join(root, "a"), "--config-output", path.join(root, "b")],
  ]) {
    const r = await berth(["config", "dump", ...src, ...args]);
    assert.equal(r.code, 2, args.join(" "));
    assert.match(r.stderr, /^error: .+\n {2}hint: /);
  }
});

test('config dump JSON carries berth\'s own settings under "berth" only when set', async () => {
  const root = await scratch();
  await writeFile(
    path.join(root, "c.yaml"),
    `${GOOD}---\napiVersion: berth.dev/v1alpha1\nkind: BerthConfig\nspec:\n  rebootAfterBootstrap: true\n`,
  );
  const r = await berth(["config", "dump", "--root", root, "-c", "file:///c.yaml"]);
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as { berth?: { kind: string; spec: Record<string, unknown> } };
  assert.equal(doc.berth?.kind, "BerthConfig");
  assert.deepEqual(doc.berth?.spec, { rebootAfterBootstrap: true });
});

// ------------------------------------------------------------------ init -d

test("init -d: both daemons is the default; one alone is refused clearly; an unknown name is a usage error", async () => {
  const root = await scratch();
  await writeFile(path.join(root, "good.yaml"), GOOD);
  const one = await berth(["init", "--skip", "run", "--root", root, "-c", "file:///good.yaml", "-d", "kubelet"]);
  assert.equal(one.code, 1, one.stderr);
  assert.match(one.stderr, /^error: --daemon kubelet: berth does not configure or run one daemon alone/m);
  assert.match(one.stderr, /hint: drop --daemon/);
  const bad = await berth(["init", "--skip", "run", "--root", root, "-d", "docker"]);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /unknown daemon 'docker'/);
  assert.deepEqual(await tree(root), ["good.yaml"]);
  const help = await berth(["init", "--help"]);
  assert.match(help.stdout, /-d, --daemon NAME/);
});

// ------------------------------------------------------------------ install

async function nodeRoot(): Promise<string> {
  const root = await scratch();
  await seedNodeRoot(root);
  return root;
}

/** An image root with berth copied in at /usr/bin/berth, as an image build does before `berth install --root`. */
async function imageRoot(root?: string): Promise<string> {
  const r = root ?? (await scratch());
  await mkdir(path.join(r, "usr/bin"), { recursive: true });
  await copyFile(EXE, path.join(r, "usr/bin/berth"));
  return r;
}

test("install writes only berth's boot units; the first-boot config phase finds them unchanged", async () => {
  const root = await imageRoot(await nodeRoot());
  const help = await berth(["install", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /First boot/);

  const r = await berth(["install", "--root", root, "--berth-path", "/usr/bin/berth"]);
  assert.equal(r.code, 0, r.stderr);
  const units = (await tree(path.join(root, "etc/systemd/system"))).filter((f) => f.includes("."));
  assert.deepEqual(units, [
    "berth-agent.service",
    "berth-config.service",
    "berth-run.service",
    "berth-tasks.target",
    "berth.target",
    "containerd.service.d",
    "containerd.service.d/10-berth.conf",
    "kubelet.service",
    "multi-user.target.d",
    "multi-user.target.d/10-berth.conf",
    "runtime.slice",
  ]);
  assert.match(
    await readFile(path.join(root, "etc/systemd/system/berth-config.service"), "utf8"),
    /^ExecStart=\/usr\/bin\/berth init --skip run$/m,
  );
  // No NodeConfig-dependent file.
  assert.ok(!existsSync(path.join(root, "etc/kubernetes")));
  assert.ok(!existsSync(path.join(root, "etc/containerd")));

  const again = await berth(["install", "--root", root, "--berth-path", "/usr/bin/berth"]);
  assert.match(again.stdout, /^0 written, 0 removed, 9 unchanged/m);

  imds ??= await startImdsStandIn();
  ec2 ??= await startEc2StandIn();
  const init = await berth(["init", "--skip", "run", "--root", root, "-c", "file:///etc/eks/nodeadm.d/example.yaml"], {
    AWS_EC2_METADATA_DISABLED: "",
    AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url,
    // The EC2 stand-in's https endpoint, its CA (AWS_CA_BUNDLE), region and test credentials.
    ...ec2.env(),
    // As on the node, where /usr/bin/berth is the executable that runs.
    BERTH_PATH: "/usr/bin/berth",
  });
  assert.equal(init.code, 0, init.stderr);
  for (const u of [
    "berth-config.service",
    "berth-run.service",
    "berth-agent.service",
    "berth.target",
    "berth-tasks.target",
    "kubelet.service",
    "runtime.slice",
    "containerd.service.d/10-berth.conf",
    "multi-user.target.d/10-berth.conf",
  ]) {
    assert.match(init.stdout, new RegExp(`^unchanged /etc/systemd/system/${u.replace(/\./g, "\\.")}$`, "m"), u);
  }
  assert.match(init.stdout, /^wrote +\/etc\/kubernetes\/kubelet\/config\.json$/m);
});

test("install --berth-path: used in ExecStart= and handed to the first-boot config phase; bad paths are usage errors", async () => {
  const root = await imageRoot();
  await mkdir(path.join(root, "opt/berth/bin"), { recursive: true });
  await copyFile(EXE, path.join(root, "opt/berth/bin/berth"));
  const r = await berth(["install", "--root", root, "--berth-path", "/opt/berth/bin/berth"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    await readFile(path.join(root, "etc/systemd/system/berth-run.service"), "utf8"),
    /^ExecStart=\/opt\/berth\/bin\/berth init --skip config$/m,
  );
  assert.equal(
    await readFile(path.join(root, "etc/systemd/system/berth-config.service.d/10-berth-path.conf"), "utf8"),
    "# Written by berth; changes are overwritten.\n[Service]\nEnvironment=BERTH_PATH=/opt/berth/bin/berth\n",
  );
  // Back to the default path: the drop-in goes away.
  const back = await berth(["install", "--root", root, "--berth-path", "/usr/bin/berth"]);
  assert.equal(back.code, 0, back.stderr);
  assert.match(back.stdout, /^removed +\/etc\/systemd\/system\/berth-config\.service\.d\/10-berth-path\.conf$/m);

  for (const args of [["--berth-path", "berth"], ["--berth-path", "/opt/my berth"], ["extra"], ["--bogus"]]) {
    const u = await berth(["install", "--root", root, ...args]);
    assert.equal(u.code, 2, args.join(" "));
    assert.match(u.stderr, /^error: .+\n {2}hint: /);
  }
  const dry = await imageRoot();
  const d = await berth(["install", "--root", dry, "--dry-run", "--berth-path", "/usr/bin/berth"]);
  assert.equal(d.code, 0, d.stderr);
  assert.match(d.stdout, /nothing was written/);
  assert.deepEqual(await tree(dry), ["usr", "usr/bin", "usr/bin/berth"]);
});

test("install refuses to write units that name an executable missing from the root; --remove takes out what it wrote", async () => {
  const root = await scratch();
  const missing = await berth(["install", "--root", root]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^error: .*the units would run .+berth-linux-(x64|arm64), which does not exist under --root /m);
  assert.match(missing.stderr, /hint: copy berth into the image first .* --berth-path \/usr\/bin\/berth/);
  assert.deepEqual(await tree(root), []);

  await imageRoot(root);
  await mkdir(path.join(root, "etc/kubernetes"), { recursive: true });
  await writeFile(path.join(root, "etc/kubernetes/keep.conf"), "config stays\n");
  const ok = await berth(["install", "--root", root, "--berth-path", "/usr/bin/berth"]);
  assert.equal(ok.code, 0, ok.stderr);
  const rm = await berth(["install", "--remove", "--root", root, "--berth-path", "/usr/bin/berth"]);
  assert.equal(rm.code, 0, rm.stderr);
  assert.match(rm.stdout, /^0 written, 9 removed/m);
  const left = (await tree(root)).filter(
    (p) => !(p.endsWith("/") || ["etc", "etc/systemd", "etc/systemd/system", "usr", "usr/bin"].includes(p)),
  );
  assert.ok(!left.some((p) => p.startsWith("etc/systemd/system/") && !p.endsWith(".d")), left.join(" "));
  assert.equal(await readFile(path.join(root, "etc/kubernetes/keep.conf"), "utf8"), "config stays\n");
});

// ------------------------------------------------------------------ --config-cache directories

test("the config cache's new directories are 0755 whatever the umask (nodeadm tools read them)", async () => {
  const { writeCache } = await import("../../src/sources/cache.ts");
  const { HostRoot } = await import("../../src/host/root.ts");
  const root = await scratch();
  const config = { nodeConfig: { cluster: { name: "c" } }, berth: {}, sources: ["test"] };
  const old = process.umask(0o077);
  try {
    await writeCache("/run/eks/nodeadm/config.json", config, new HostRoot(root));
  } finally {
    process.umask(old);
  }
  for (const d of ["run", "run/eks", "run/eks/nodeadm"]) assert.equal(statSync(path.join(root, d)).mode & 0o777, 0o755, d);
  assert.equal(statSync(path.join(root, "run/eks/nodeadm/config.json")).mode & 0o777, 0o600);
});
