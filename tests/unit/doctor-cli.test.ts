/**
 * `berth doctor` as users run it: the release executable
 * (dist/release/berth-linux-<arch>) against a scratch root configured by
 * `berth init --skip run`, with IMDS, EC2 and API server STAND-INs, an exec
 * credential plugin STAND-IN on PATH, and black holes (accept, never answer)
 * for the deadline bound. The output contract: the JSON schema, the table,
 * exit statuses, every deadline named and the run ending by itself (the 10 s
 * bound is measured in bench/doctor.ts).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { ensureRelease, NO_STACK, runBerth, scratchDirs, type CliRun } from "../fixtures/cli.ts";
import { startImdsStandIn, type ImdsStandIn } from "../standins/imds-server.ts";
import { startEc2StandIn, type Ec2StandIn } from "../standins/ec2-server.ts";
import { startApiServerStandIn, type ApiServerStandIn } from "../standins/apiserver.ts";
import { writeExecPluginStandIn } from "../standins/exec-credential-plugin.ts";
import { startBlackHole, type BlackHole } from "../standins/black-hole.ts";
import { createTestCa } from "../standins/test-pki.ts";
import { CHECK_IDS } from "../../src/doctor/types.ts";

const scratch = scratchDirs("berth-doctor-cli-");
const NODE = "ip-172-16-34-43.ec2.internal";
const TOKEN = "k8s-aws-v1.cli-standin-token";
let imds: ImdsStandIn;
let ec2: Ec2StandIn;
let api: ApiServerStandIn;
let pluginDir: string;
/** A port nothing listens on: kubelet's /healthz there is "connection refused" whatever else runs on this machine. */
let closedPort: number;
const holes: BlackHole[] = [];

before(async () => {
  ensureRelease();
  imds = await startImdsStandIn();
  ec2 = await startEc2StandIn();
  api = await startApiServerStandIn({ nodes: { [NODE]: { ready: "True" } }, tokens: { [TOKEN]: NODE } });
  pluginDir = await scratch.make();
  await writeExecPluginStandIn(pluginDir, { token: TOKEN });
  const gone = await startBlackHole();
  closedPort = gone.port;
  await gone.close();
});
after(async () => {
  for (const h of holes) await h.close();
  await Promise.all([imds.close(), ec2.close(), api.close()]);
  await scratch.removeAll();
});

const nodeConfig = (endpoint: string, caBase64: string) => `apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  cluster:
    name: my-cluster
    apiServerEndpoint: ${endpoint}
    certificateAuthority: ${caBase64}
    cidr: 10.100.0.0/16
`;

function env(over: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    AWS_EC2_METADATA_DISABLED: "",
    AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url,
    ...ec2.env(),
    AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
    AWS_CONFIG_FILE: "/dev/null",
    BERTH_PATH: "/usr/bin/berth",
    PATH: `${pluginDir}:${process.env.PATH}`,
    ...over,
  };
}

async function put(root: string, hostPath: string, content: string): Promise<void> {
  await mkdir(path.dirname(path.join(root, hostPath)), { recursive: true });
  await writeFile(path.join(root, hostPath), content);
}

/** A scratch node configured by `berth init --skip run` from /node.yaml, pointing at the API server stand-in. */
async function configuredNode(): Promise<string> {
  const root = await scratch.make();
  await put(root, "/etc/eks/kubelet-version.txt", "v1.33.0\n");
  await put(root, "/etc/eks/containerd-version.txt", "1.7.27\n");
  await put(root, "/sys/devices/system/cpu/online", "0-1\n");
  await put(root, "/node.yaml", nodeConfig(api.url, api.ca.base64));
  const init = await runBerth(["init", "--skip", "run", "--root", root, "-c", "file:///node.yaml"], { env: env() });
  assert.equal(init.code, 0, init.stderr);
  return root;
}

interface JsonReport {
  node: { name: string | null; instanceId: string | null };
  checks: Array<{ id: string; status: string; finding: string; hint: string; durationMs: number; detail?: string[] }>;
}

function doctor(root: string, more: string[] = [], over: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  return runBerth(
    ["doctor", "--root", root, "-c", "file:///node.yaml", "--kubelet-healthz", `http://127.0.0.1:${closedPort}/healthz`, ...more],
    { env: env(over) },
  );
}

function parse(r: CliRun): JsonReport & { by: Record<string, JsonReport["checks"][number]> } {
  assert.doesNotMatch(r.stderr, NO_STACK);
  const j = JSON.parse(r.stdout) as JsonReport;
  return { ...j, by: Object.fromEntries(j.checks.map((c) => [c.id, c])) };
}

test("help, usage errors (exit 2), and the top-level help names doctor", async () => {
  const h = await runBerth(["doctor", "--help"]);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /^Usage: berth doctor/);
  for (const id of CHECK_IDS) assert.ok(h.stdout.includes(id), id);
  for (const args of [
    ["doctor", "-o", "yaml"],
    ["doctor", "extra"],
    ["doctor", "--bogus"],
    ["doctor", "--config-cache", "relative.json"],
    ["doctor", "--kubelet-healthz", "ftp://x"],
  ]) {
    const r = await runBerth(args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /^error: .+\n {2}hint: /);
  }
  const top = await runBerth(["--help"]);
  assert.match(top.stdout, /^ {2}berth doctor /m);
  assert.match(top.stdout, /^ {2}doctor +what stands between this node and Ready/m);
});

test("-o json: the stable schema; a configured node passes config, imds, ec2, files, apiserver and registration; exit 1 for what fails", async () => {
  const root = await configuredNode();
  const log = path.join(await scratch.make(), "kubelet.log");
  await writeFile(
    log,
    'I0612 10:00:00.000000 1 server.go:484] "Kubelet version"\nE0612 10:01:03.000001 1 kubelet_node_status.go:96] "Unable to register node with API server" err="Unauthorized" node="x"\n',
  );
  const r = await doctor(root, ["-o", "json", "--kubelet-log", log]);
  assert.equal(r.code, 1, r.stderr);
  const j = parse(r);
  assert.deepEqual(
    Object.keys(j).filter((k) => k !== "by"),
    ["node", "checks"],
  );
  assert.deepEqual(j.node, { name: NODE, instanceId: "i-1234567890abcdef0" });
  assert.deepEqual(
    j.checks.map((c) => c.id),
    [...CHECK_IDS],
  );
  for (const c of j.checks) {
    assert.deepEqual(Object.keys(c).slice(0, 5), ["id", "status", "finding", "hint", "durationMs"], c.id);
    assert.ok(Object.keys(c).length === 5 || (Object.keys(c).length === 6 && Array.isArray(c.detail)), c.id);
    assert.ok(["pass", "warn", "fail", "skip"].includes(c.status), c.id);
    assert.ok(c.finding.length > 0 && !c.finding.includes("\n"), c.id);
    assert.ok(c.hint.length > 0 && !c.hint.includes("\n"), c.id);
    assert.ok(Number.isInteger(c.durationMs) && c.durationMs >= 0, c.id);
  }
  for (const id of ["config", "imds", "ec2", "files", "apiserver", "registration"])
    assert.equal(j.by[id]?.status, "pass", `${id}: ${j.by[id]?.finding} / ${j.by[id]?.hint}`);
  assert.match(j.by.files!.finding, /^all \d+ files berth writes match what the NodeConfig gives now$/);
  assert.equal(j.by.registration!.finding, `the Node ${NODE} is registered and Ready, kubelet v1.33.0`);
  // No containerd in a scratch root: its socket is missing.
  assert.equal(j.by.containerd!.status, "fail");
  assert.match(j.by.containerd!.finding, /containerd's socket \/run\/containerd\/containerd\.sock does not exist/);
  // kubelet: nothing answers /healthz, and the log's Unauthorized line is the cause, quoted.
  assert.equal(j.by.kubelet!.status, "fail");
  assert.match(
    j.by.kubelet!.finding,
    /connection refused .*; the API server rejects the node's credentials \(Unauthorized\): .*"E0612 .*err="Unauthorized" node="x""$/,
  );
  assert.match(j.by.kubelet!.hint, /create-access-entry/);
  assert.ok(["pass", "warn", "fail"].includes(j.by.host!.status), "host judges the scratch root's filesystem");
});

test("the table: one row per check, hints under what is not a pass, no colour when not a terminal", async () => {
  const root = await configuredNode();
  const r = await doctor(root);
  assert.equal(r.code, 1);
  assert.ok(!r.stdout.includes("\u001b["), "no colour codes");
  assert.match(r.stdout, new RegExp(`^berth doctor: node ${NODE.replace(/\./g, "\\.")} \\(i-1234567890abcdef0\\)\n\n`));
  for (const id of CHECK_IDS) assert.match(r.stdout, new RegExp(`^ {2}${id} +(pass|WARN|FAIL|skip) +\\d+ ms {2}\\S`, "m"), id);
  assert.match(r.stdout, /^ {2}containerd +FAIL .*\n +hint: containerd is not running or listens elsewhere/m);
  assert.match(r.stdout, /^\d+ failed, \d+ warning\(s\), \d+ passed, \d+ skipped in \d+\.\d s$/m);
  assert.match(r.stdout, /^start with containerd: /m);
});

test("a drifted kubelet config.json fails `files`, named with a short diff", async () => {
  const root = await configuredNode();
  const file = path.join(root, "etc/kubernetes/kubelet/config.json");
  const before = await readFile(file, "utf8");
  assert.match(before, /"maxPods": 58/);
  await writeFile(file, before.replace('"maxPods": 58', '"maxPods": 200'));
  const j = parse(await doctor(root, ["-o", "json"]));
  const f = j.by.files!;
  assert.equal(f.status, "fail");
  assert.equal(
    f.finding,
    '1 file(s) differ from what berth would write now: /etc/kubernetes/kubelet/config.json (-"maxPods": 200, +"maxPods": 58,)',
  );
  assert.match(f.hint, /berth init --skip run/);
  assert.ok(f.detail?.includes("--- a/etc/kubernetes/kubelet/config.json"), f.detail?.join("\n"));
  assert.ok(f.detail?.includes('-    "maxPods": 200,') && f.detail.includes('+    "maxPods": 58,'), f.detail?.join("\n"));
  const table = await doctor(root);
  assert.match(table.stdout, /^ +\| - {4}"maxPods": 200,$/m);
});

test("the NodeConfig's CA not matching the API server, and an unresolvable endpoint: each a named apiserver failure", async () => {
  const root = await configuredNode();
  const other = await createTestCa("another cluster's CA");
  await put(root, "/wrong-ca.yaml", nodeConfig(api.url, other.base64));
  await put(root, "/invalid.yaml", nodeConfig("https://apiserver.berth-test.invalid", api.ca.base64));
  const wrong = parse(await runBerth(["doctor", "--root", root, "-c", "file:///wrong-ca.yaml", "-o", "json"], { env: env() }));
  assert.equal(wrong.by.apiserver!.status, "fail");
  assert.match(wrong.by.apiserver!.finding, /^wrong CA: /);
  assert.equal(wrong.by.registration!.status, "skip");
  const invalid = parse(await runBerth(["doctor", "--root", root, "-c", "file:///invalid.yaml", "-o", "json"], { env: env() }));
  assert.equal(invalid.by.apiserver!.finding, "the API server name apiserver.berth-test.invalid does not resolve (ENOTFOUND)");
});

// A hang would fail this test through its own timeout; how long a broken node's run takes is measured in
// bench/doctor.ts, never asserted here (timings are not test assertions).
test("every endpoint black-holed: each check ends at its deadline and names it; the run ends by itself", { timeout: 60_000 }, async () => {
  const root = await configuredNode();
  const hole = await startBlackHole();
  holes.push(hole);
  const sock = (p: string) => path.join(root, p);
  await mkdir(sock("run/containerd"), { recursive: true });
  await mkdir(sock("run/dbus"), { recursive: true });
  holes.push(await startBlackHole({ unixPath: sock("run/containerd/containerd.sock") }));
  holes.push(await startBlackHole({ unixPath: sock("run/dbus/system_bus_socket") }));
  await put(root, "/node.yaml", nodeConfig(`https://${hole.address}`, api.ca.base64));
  const blackHoled = { AWS_EC2_METADATA_SERVICE_ENDPOINT: `http://${hole.address}`, AWS_ENDPOINT_URL_EC2: `https://${hole.address}` };
  const r = await runBerth(
    ["doctor", "--root", root, "-c", "file:///node.yaml", "--kubelet-healthz", `http://${hole.address}/healthz`, "-o", "json"],
    { env: env(blackHoled) },
  );
  assert.equal(r.code, 1);
  const j = parse(r);
  assert.equal(j.by.config!.status, "pass");
  assert.match(j.by.imds!.finding, /IMDSv2 token PUT .* got no answer/);
  assert.match(j.by.apiserver!.finding, /connects, but the TLS handshake got no answer within \d+ ms$/);
  assert.equal(j.by.registration!.status, "skip");
  assert.equal(j.by.kubelet!.status, "fail");
  assert.match(j.by.kubelet!.finding, /no answer within/);
  assert.equal(j.by.containerd!.status, "fail");
  assert.equal(j.by.clock!.status, "warn");

  // The default source, IMDS user data, black-holed too: config fails within its deadline.
  const r2 = await runBerth(["doctor", "--root", root, "-o", "json", "--kubelet-healthz", `http://${hole.address}/healthz`], {
    env: env(blackHoled),
  });
  const j2 = parse(r2);
  assert.equal(j2.by.config!.status, "fail");
  assert.match(j2.by.config!.finding, /user-data/);
  for (const id of ["apiserver", "files", "registration"]) assert.equal(j2.by[id]!.status, "skip", id);
});
