/**
 * Issue 10, `berth doctor` in the node lab (root): a node boots with berth's
 * package installed, so its boot runs berth-config → berth-run by itself, with
 * a NodeConfig whose spec.cluster names an API server STAND-IN on the host's
 * 127.0.0.1 (the node shares the host's network) and a CA made for this test
 * (tests/standins/test-pki.ts). kubelet's kubeconfig runs `aws eks get-token`:
 * in the node that is the exec credential plugin STAND-IN
 * (tests/standins/exec-credential-plugin.ts) at /usr/local/bin/aws, whose token
 * the API server stand-in maps to this node's Node object, so `registration`
 * can pass too.
 *
 * `berth doctor -o json`, run inside the node, must pass every check that can
 * pass there (the lab's limits are named, with their actual status, in
 * LAB_LIMITS below); then, restoring the node after each: containerd stopped
 * → `containerd` fails; kubelet's config.json edited → `files` fails naming
 * it; the stand-in serving a certificate of a second CA → `apiserver` fails
 * with the wrong-CA finding; an unresolvable endpoint (`*.invalid`) →
 * `apiserver` fails with the DNS finding; each run exits 1. No wall-clock
 * bound is asserted here (bench/doctor.ts measures the ≤ 10 s); every doctor
 * run has a deadline, so a hang fails the test.
 *
 * Run: node --import tsx --test tests/lab/doctor.test.ts  (after npm run package)
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { stringify as yamlStringify } from "yaml";
import { bootRunNode, type RunNode } from "./run-node.ts";
import { startApiServerStandIn, type ApiServerStandIn } from "../standins/apiserver.ts";
import { createTestCa, type TestCa } from "../standins/test-pki.ts";
import { writeExecPluginStandIn } from "../standins/exec-credential-plugin.ts";
import { CHECK_IDS, type CheckId, type CheckStatus } from "../../src/doctor/types.ts";

interface Report {
  node: { name: string | null; instanceId: string | null };
  checks: Array<{ id: CheckId; status: CheckStatus; finding: string; hint: string; durationMs: number; detail?: string[] }>;
}

/** A doctor run that takes longer than this is a hang (the doctor's own budget is 10 s). */
const DOCTOR_TIMEOUT_MS = 30_000;
const TOKEN = "berth-lab-doctor-node-token";
const KUBELET_CONFIG = "/etc/kubernetes/kubelet/config.json";
/** Where the exec plugin stand-in records its calls inside the node. */
const PLUGIN_CALLS = "/var/log/berth-lab-exec-plugin-calls";

/**
 * Checks that cannot pass in this lab, with the status they do get and why.
 * Everything not listed here must pass.
 */
const LAB_LIMITS: Partial<Record<CheckId, { status: CheckStatus; finding: RegExp; why: string }>> = {
  clock: {
    status: "warn",
    finding: /^the clock is not synchronised and no time-sync service is enabled \(NTPSynchronized=no, NTP=no\)$/,
    why:
      "systemd-timedated answers in the node, but the lab's minbase rootfs has no chronyd or systemd-timesyncd, and a container " +
      "may not set the host's clock anyway",
  },
  host: {
    status: "warn",
    finding: /no cgroup v2 \(\/sys\/fs\/cgroup\/cgroup\.controllers is missing|net\.ipv4\.ip_forward=0/,
    why:
      "the node sees the lab host's cgroup layout (hybrid: v1 controllers + unified) and the host's ip_forward through a read-only " +
      "/proc/sys (no CAP_NET_ADMIN to change it); swap and disk space pass",
  },
  containerd: {
    status: "warn",
    finding: /CRI ready on .*; sandbox image .* present; NetworkReady=false \(NetworkPluginNotReady\)$/,
    why:
      "no CNI plugin runs in the lab (aws-node comes from the cluster once the node registers), so CRI reports NetworkReady=false; " +
      "unit, CRI and sandbox image pass",
  },
};

let rn: RunNode;
let dir: string;
let ca: TestCa;
let otherCa: TestCa;
let api: ApiServerStandIn;
const tokens: Record<string, string> = {};
let baseline: Report;

async function doctor(args: string[] = []): Promise<{ code: number; report: Report; raw: string }> {
  const r = await rn.berth(["doctor", "-o", "json", ...args], DOCTOR_TIMEOUT_MS);
  assert.notEqual(r.code, 124, `berth doctor hung (killed after ${DOCTOR_TIMEOUT_MS} ms):\n${r.stdout}\n${r.stderr}`);
  let report: Report;
  try {
    report = JSON.parse(r.stdout) as Report;
  } catch {
    throw new Error(`berth doctor -o json printed no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  assert.deepEqual(
    report.checks.map((c) => c.id),
    [...CHECK_IDS],
  );
  return { code: r.code, report, raw: r.stdout };
}

function check(report: Report, id: CheckId): Report["checks"][number] {
  const c = report.checks.find((x) => x.id === id);
  assert.ok(c, `no ${id} check in the report`);
  return c;
}

/** Every check has its baseline status except those in `expected`, which have theirs. */
function assertOnlyChanged(report: Report, expected: Partial<Record<CheckId, CheckStatus>>): void {
  const got = report.checks.map((c) => `${c.id}: ${c.status}`);
  const want = baseline.checks.map((c) => `${c.id}: ${expected[c.id] ?? c.status}`);
  assert.deepEqual(got, want, "only the checks the fault touches change");
}

/** The instance id the IMDS stand-in gives (the Node's name: the NodeConfig sets InstanceIdNodeName). */
async function instanceId(imdsUrl: string): Promise<string> {
  const t = await fetch(new URL("/latest/api/token", imdsUrl), {
    method: "PUT",
    headers: { "x-aws-ec2-metadata-token-ttl-seconds": "60" },
    signal: AbortSignal.timeout(5000),
  });
  const token = await t.text();
  const r = await fetch(new URL("/latest/meta-data/instance-id", imdsUrl), {
    headers: { "x-aws-ec2-metadata-token": token },
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(r.status, 200);
  return (await r.text()).trim();
}

/** Run doctor until `id` is back to its baseline status (the node restored), or fail after `ms`. */
async function waitRestored(id: CheckId, ms: number): Promise<void> {
  const want = check(baseline, id).status;
  const end = Date.now() + ms;
  let last = "";
  while (Date.now() < end) {
    const c = check((await doctor()).report, id);
    if (c.status === want) return;
    last = `${c.status}: ${c.finding}`;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`${id} did not return to ${want} within ${ms} ms after restoring the node (last: ${last})`);
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "berth-doctor-lab-"));
  ca = await createTestCa("berth lab apiserver CA");
  otherCa = await createTestCa("berth lab second CA");
  api = await startApiServerStandIn({ ca, tokens, anonymous: true });
  const plugin = await writeExecPluginStandIn(dir, { token: TOKEN });
  // The script records its calls in a host path: inside the node it records them in PLUGIN_CALLS.
  const script = (await readFile(plugin.file, "utf8")).split(plugin.callsFile).join(PLUGIN_CALLS);
  rn = await bootRunNode({
    name: "doctor",
    rebootAfterInstall: true,
    cluster: { apiServerEndpoint: api.url, certificateAuthority: ca.base64 },
    files: { "/usr/local/bin/aws": { content: script, mode: 0o755 } },
  });
  const s = await rn.waitSettled("berth-run.service", 180_000);
  if (s !== "active") {
    const j = await rn.node.exec(["journalctl", "--no-pager", "-o", "cat", "-u", "berth-config", "-u", "berth-run"]);
    throw new Error(`berth-run.service is ${s} after boot:\n${j.stdout.slice(-6000)}`);
  }
  // The API server stand-in knows this node: kubelet's token (from the plugin stand-in) authenticates as it, its Node is Ready.
  const name = await instanceId(rn.imds.url);
  tokens[TOKEN] = name;
  api.nodes[name] = { ready: "True" };
});

after(async () => {
  await rn?.cleanup();
  await api?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("berth doctor passes every check that can pass on a bootstrapped lab node", { timeout: 120_000 }, async (tc) => {
  const { code, report, raw } = await doctor();
  tc.diagnostic(raw);
  for (const c of report.checks) {
    const limit = LAB_LIMITS[c.id];
    if (limit) {
      assert.equal(c.status, limit.status, `${c.id} (${limit.why}): ${c.finding}`);
      assert.match(c.finding, limit.finding, `${c.id} (${limit.why})`);
    } else {
      assert.equal(c.status, "pass", `${c.id}: ${c.status}: ${c.finding} (hint: ${c.hint})`);
    }
  }
  assert.equal(code, 0, "no check failed, so berth doctor exits 0");
  assert.equal(report.node.name, tokens[TOKEN]);
  assert.match(check(report, "apiserver").finding, /verified against the cluster CA/);
  assert.match(check(report, "registration").finding, /is registered and Ready/);
  // registration ran kubelet's credential plugin (the stand-in) the way client-go does.
  const calls = await rn.node.exec(["cat", PLUGIN_CALLS]);
  assert.match(calls.stdout, /^eks get-token --cluster-name berth-lab --region /m);
  baseline = report;
});

test("containerd stopped: the containerd check fails and berth doctor exits 1", { timeout: 180_000 }, async () => {
  assert.ok(baseline, "needs the baseline run");
  const stop = await rn.node.systemctl("stop", "containerd");
  assert.equal(stop.code, 0, stop.stderr);
  try {
    const { code, report } = await doctor();
    const c = check(report, "containerd");
    assert.equal(c.status, "fail", c.finding);
    assert.match(c.finding, /^containerd\.service is not running: inactive \(dead\)/);
    assert.match(c.hint, /systemctl start containerd/);
    assertOnlyChanged(report, { containerd: "fail" });
    assert.equal(code, 1);
  } finally {
    await rn.node.systemctl("start", "containerd");
  }
  await waitRestored("containerd", 60_000);
});

test("kubelet's config.json edited: the files check fails, naming the file", { timeout: 120_000 }, async () => {
  assert.ok(baseline, "needs the baseline run");
  const original = await readFile(rn.node.hostPath(KUBELET_CONFIG), "utf8");
  // An operator's edit by hand: one value changed, the file's layout kept.
  const maxPods = /"maxPods": (\d+)/.exec(original)?.[1];
  assert.ok(maxPods, `berth's ${KUBELET_CONFIG} sets maxPods:\n${original}`);
  const edited = original.replace(/"maxPods": \d+/, '"maxPods": 7');
  // Rewritten in place (cat >): the file keeps its mode and owner, only its content drifts.
  const write = (text: string) => rn.node.exec(["sh", "-c", `cat > ${KUBELET_CONFIG}`], { input: text, check: true });
  await write(edited);
  try {
    const { code, report } = await doctor();
    const c = check(report, "files");
    assert.equal(c.status, "fail", c.finding);
    assert.ok(c.finding.includes(KUBELET_CONFIG), c.finding);
    assert.match(c.finding, /^1 file\(s\) differ/);
    // The finding quotes the first changed lines (on disk → what berth would write); the detail is the diff.
    assert.ok(c.finding.includes(`(-"maxPods": 7, +"maxPods": ${maxPods},)`), c.finding);
    const diff = (c.detail ?? []).join("\n");
    assert.match(diff, /^--- a\/etc\/kubernetes\/kubelet\/config\.json$/m);
    assert.match(diff, /^-\s*"maxPods": 7,$/m);
    assert.match(diff, new RegExp(`^\\+\\s*"maxPods": ${maxPods},$`, "m"));
    assertOnlyChanged(report, { files: "fail" });
    assert.equal(code, 1);
  } finally {
    await write(original);
  }
  await waitRestored("files", 30_000);
});

test(
  "the API server stand-in's certificate from a second CA: apiserver fails with the wrong-CA finding",
  { timeout: 120_000 },
  async () => {
    assert.ok(baseline, "needs the baseline run");
    // Same endpoint, another CA: the NodeConfig (and every file berth wrote from it) stays as it is.
    const port = api.port;
    await api.close();
    api = await startApiServerStandIn({ ca: otherCa, tokens, nodes: api.nodes, anonymous: true, port });
    try {
      const { code, report } = await doctor();
      const c = check(report, "apiserver");
      assert.equal(c.status, "fail", c.finding);
      assert.match(c.finding, /^wrong CA: /);
      assert.ok(c.finding.includes("berth lab apiserver CA"), `names the NodeConfig's CA: ${c.finding}`);
      assert.ok(c.finding.includes("berth lab second CA"), `names the server's issuer: ${c.finding}`);
      assert.match(c.hint, /certificateAuthority/);
      assert.equal(check(report, "registration").status, "skip");
      assertOnlyChanged(report, { apiserver: "fail", registration: "skip" });
      assert.equal(code, 1);
    } finally {
      await api.close();
      api = await startApiServerStandIn({ ca, tokens, nodes: api.nodes, anonymous: true, port });
    }
    await waitRestored("apiserver", 30_000);
  },
);

test("an unresolvable API server endpoint: apiserver fails with the DNS finding", { timeout: 120_000 }, async () => {
  assert.ok(baseline, "needs the baseline run");
  const host = "berth-lab-doctor.invalid";
  // The same NodeConfig and BerthConfig as the user data, with the endpoint changed, as a file source.
  const cluster = { ...rn.nodeConfig.cluster, apiServerEndpoint: `https://${host}` };
  const docs = [
    yamlStringify({ apiVersion: "node.eks.aws/v1alpha1", kind: "NodeConfig", spec: { ...rn.nodeConfig, cluster } }),
    yamlStringify({ apiVersion: "berth.dev/v1alpha1", kind: "BerthConfig", spec: rn.berthSpec }),
  ];
  const file = "/etc/berth-lab/doctor-unresolvable.yaml";
  await rn.node.writeFile(file, `---\n${docs.join("---\n")}`);
  try {
    const { code, report } = await doctor(["-c", `file://${file}`]);
    const c = check(report, "apiserver");
    assert.equal(c.status, "fail", c.finding);
    assert.match(c.finding, new RegExp(`^the API server name ${host.replace(/\./g, "\\.")} does not resolve \\(ENOTFOUND\\)`));
    assert.match(c.hint, /apiServerEndpoint/);
    assert.equal(check(report, "registration").status, "skip");
    // kubelet's kubeconfig names the endpoint berth wrote at boot, not this one: files sees that drift too.
    const files = check(report, "files");
    assert.equal(files.status, "fail", files.finding);
    assert.ok(files.finding.includes("/var/lib/kubelet/kubeconfig"), files.finding);
    assertOnlyChanged(report, { files: "fail", apiserver: "fail", registration: "skip" });
    assert.equal(code, 1);
  } finally {
    await rn.node.exec(["rm", "-f", file]);
  }
});
