/**
 * The doctor's checks that reach endpoints, run in-process against
 * stand-ins: an API server STAND-IN (real TLS, a CA made per test, and a
 * second CA to prove a mismatch is caught), an exec credential plugin
 * STAND-IN, IMDS and EC2 stand-ins, a black hole that accepts and never
 * answers, a private dbus-daemon with a systemd-timedated STAND-IN, and the
 * recording fakes of systemd and CRI.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import dbus from "@particle/dbus-next";
import { createDoctorDeps, type DoctorDeps, type DoctorState } from "../../src/doctor/deps.ts";
import { runChecks } from "../../src/doctor/run.ts";
import type { CheckResult, CheckSpec } from "../../src/doctor/types.ts";
import { apiserverCheck } from "../../src/doctor/checks/apiserver.ts";
import { registrationCheck } from "../../src/doctor/checks/registration.ts";
import { ec2Check, imdsCheck } from "../../src/doctor/checks/aws.ts";
import { containerdCheck } from "../../src/doctor/checks/containerd.ts";
import { clockCheck, TIMEDATE_SERVICE } from "../../src/doctor/checks/clock.ts";
import { kubeletCheck } from "../../src/doctor/checks/kubelet.ts";
import { HostRoot } from "../../src/host/root.ts";
import type { MergedConfig } from "../../src/api/types.ts";
import { kubeconfigYaml } from "../../src/render/kubeconfig.ts";
import { startApiServerStandIn, type ApiServerStandIn } from "../standins/apiserver.ts";
import { createTestCa } from "../standins/test-pki.ts";
import { writeExecPluginStandIn } from "../standins/exec-credential-plugin.ts";
import { startBlackHole } from "../standins/black-hole.ts";
import { startImdsStandIn, type ImdsStandIn } from "../standins/imds-server.ts";
import { startEc2StandIn } from "../standins/ec2-server.ts";
import { FakeSystemd } from "../fakes/systemd-fake.ts";
import { FakeCri } from "../fakes/cri-fake.ts";
import { scratchDirs } from "../fixtures/cli.ts";

const scratch = scratchDirs("berth-doctor-ep-");
const closers: Array<() => Promise<void> | void> = [];
let api: ApiServerStandIn;
let imds: ImdsStandIn;
const NODE = "ip-10-0-1-5.ec2.internal";
const TOKEN = "k8s-aws-v1.standin-token";

before(async () => {
  api = await startApiServerStandIn({ nodes: { [NODE]: { ready: "True" } }, tokens: { [TOKEN]: NODE } });
  imds = await startImdsStandIn();
  closers.push(
    () => api.close(),
    () => imds.close(),
  );
});
after(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  await scratch.removeAll();
});

function config(endpoint: string, caBase64: string, over: Partial<MergedConfig["nodeConfig"]> = {}): MergedConfig {
  return {
    nodeConfig: {
      cluster: { name: "my-cluster", apiServerEndpoint: endpoint, certificateAuthority: caBase64, cidr: "10.100.0.0/16" },
      ...over,
    },
    berth: {},
    sources: ["test"],
  };
}

async function deps(over: Partial<DoctorDeps> = {}, env: NodeJS.ProcessEnv = {}): Promise<DoctorDeps> {
  const root = await scratch.make();
  const base = {
    PATH: process.env.PATH,
    AWS_EC2_METADATA_SERVICE_ENDPOINT: "http://127.0.0.1:9",
    BERTH_BUS_ADDRESS: "unix:path=/nonexistent/berth-doctor-test-bus",
  };
  const d = createDoctorDeps({ root: new HostRoot(root), env: { ...base, ...env }, sources: [], berthPath: "/usr/bin/berth" });
  closers.push(() => d.close());
  return { ...d, ...over };
}

/** One check alone, as if what it needs had passed (the state says what they found). */
async function one(spec: CheckSpec): Promise<CheckResult> {
  const [r] = await runChecks([{ ...spec, needs: [] }], { totalMs: 9500 });
  return r!;
}

// ------------------------------------------------------------------ apiserver

test("apiserver: TLS verified against the NodeConfig's CA, anonymous 401 still proves it is there", async () => {
  const r = await one(apiserverCheck({ config: config(api.url, api.ca.base64) }, 3500));
  assert.equal(r.status, "pass", r.finding);
  assert.match(
    r.finding,
    /^127\.0\.0\.1:\d+ speaks TLS verified against the cluster CA \(certificate valid until .*\); anonymous requests get 401, which proves it is there$/,
  );
  const open = await startApiServerStandIn({ anonymous: true });
  closers.push(() => open.close());
  const ok = await one(apiserverCheck({ config: config(`${open.url}/`, open.ca.base64) }, 3500));
  assert.match(ok.finding, /; \/readyz: ok$/);
});

test("apiserver: a CA that did not sign the server's certificate is a wrong-CA finding", async () => {
  const other = await createTestCa("some other cluster's CA");
  const r = await one(apiserverCheck({ config: config(api.url, other.base64) }, 3500));
  assert.equal(r.status, "fail");
  assert.match(
    r.finding,
    /^wrong CA: the API server's certificate \(issuer CN=berth apiserver stand-in CA .*\) does not verify against the cluster CA in the NodeConfig \(CN=some other cluster's CA .*\) \(\w+\)$/,
  );
  assert.match(r.hint, /certificateAuthority\.data/);
});

test("apiserver: an unresolvable name, a closed port, a server that never completes TLS, a certificate for another name", async () => {
  const invalid = await one(apiserverCheck({ config: config("https://apiserver.berth-test.invalid", api.ca.base64) }, 3500));
  assert.equal(invalid.status, "fail");
  assert.match(invalid.finding, /^the API server name apiserver\.berth-test\.invalid does not resolve \(ENOTFOUND\)$/);

  const gone = await startApiServerStandIn();
  await gone.close();
  const refused = await one(apiserverCheck({ config: config(gone.url, gone.ca.base64) }, 3500));
  assert.match(refused.finding, /^nothing listens on 127\.0\.0\.1:\d+: connection refused$/);

  const hole = await startBlackHole();
  closers.push(() => hole.close());
  const hung = await one(apiserverCheck({ config: config(`https://${hole.address}`, api.ca.base64) }, 1200));
  assert.equal(hung.status, "fail");
  assert.match(hung.finding, /^TCP to 127\.0\.0\.1:\d+ connects, but the TLS handshake got no answer within \d+ ms$/);
  assert.match(hung.hint, /does not complete TLS/);
  assert.ok(hole.accepted() >= 1);

  const elsewhere = await startApiServerStandIn({ names: ["apiserver.elsewhere.example"], noIp: true });
  closers.push(() => elsewhere.close());
  const wrongName = await one(apiserverCheck({ config: config(elsewhere.url, elsewhere.ca.base64) }, 3500));
  assert.match(wrongName.finding, /^the API server's certificate is not for 127\.0\.0\.1: /);
});

test("apiserver: a control plane that answers /readyz 500 is not ready", async () => {
  const sick = await startApiServerStandIn({ anonymous: true, readyzStatus: 500 });
  closers.push(() => sick.close());
  const r = await one(apiserverCheck({ config: config(sick.url, sick.ca.base64) }, 3500));
  assert.equal(r.status, "fail");
  assert.match(r.finding, /it is not ready: \/readyz answered 500/);
});

// ------------------------------------------------------------------ registration

/** A node root with kubelet's kubeconfig (berth's own layout), the cluster CA and kubelet's flag file. */
async function kubeletRoot(d: DoctorDeps, server: string, caPem: string, nodeName = NODE): Promise<void> {
  const put = async (p: string, c: string) => {
    await mkdir(path.dirname(d.root.path(p)), { recursive: true });
    await writeFile(d.root.path(p), c);
  };
  await put("/var/lib/kubelet/kubeconfig", kubeconfigYaml({ clusterName: "my-cluster", region: "us-west-2", apiServerEndpoint: server }));
  await put("/etc/kubernetes/pki/ca.crt", caPem);
  await put(
    "/etc/eks/kubelet/environment",
    `NODEADM_KUBELET_ARGS=--cloud-provider=external --hostname-override=${nodeName} --node-ip=10.0.1.5`,
  );
}

async function withPlugin(opts: { token?: string; fail?: string } = {}): Promise<{ env: NodeJS.ProcessEnv; callsFile: string }> {
  const dir = await scratch.make();
  const p = await writeExecPluginStandIn(dir, { token: opts.token ?? TOKEN, ...(opts.fail !== undefined ? { fail: opts.fail } : {}) });
  return { env: { PATH: `${dir}:${process.env.PATH}` }, callsFile: p.callsFile };
}

test("registration: kubelet's exec plugin runs as client-go runs it; the Node is Ready", async () => {
  const plugin = await withPlugin();
  const d = await deps({}, plugin.env);
  await kubeletRoot(d, api.url, api.ca.pem);
  const state: DoctorState = { config: config(api.url, api.ca.base64) };
  const r = await one(registrationCheck(d, state, 3000));
  assert.equal(r?.status, "pass", `${r?.finding} / ${r?.hint}`);
  assert.equal(r?.finding, `the Node ${NODE} is registered and Ready, kubelet v1.33.0`);
  assert.equal(state.nodeName, NODE);
  assert.equal((await readFile(plugin.callsFile, "utf8")).trim(), "eks get-token --cluster-name my-cluster --region us-west-2");
  assert.deepEqual(api.requests.at(-1), { path: `/api/v1/nodes/${NODE}`, authorization: `Bearer ${TOKEN}` });
});

test("registration: NotReady with its reason; never registered (404); a token the server refuses (401); another node's name (403)", async () => {
  const sick = "ip-10-0-9-9.ec2.internal";
  const local = await startApiServerStandIn({
    ca: api.ca,
    nodes: {
      [sick]: {
        ready: "False",
        message:
          "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized",
      },
    },
    tokens: { "token-9": sick, "token-404": "ip-10-0-4-4.ec2.internal", [TOKEN]: NODE },
  });
  closers.push(() => local.close());
  const at = async (nodeName: string, token: string) => {
    const p = await withPlugin({ token });
    const d = await deps({}, p.env);
    await kubeletRoot(d, local.url, local.ca.pem, nodeName);
    return one(registrationCheck(d, { config: config(local.url, local.ca.base64) }, 3000));
  };
  const notReady = await at(sick, "token-9");
  assert.equal(notReady.status, "fail");
  assert.match(notReady.finding, /registered but NotReady \(Ready=False, KubeletNotReady: container runtime network not ready/);
  assert.match(notReady.hint, /aws-node/);
  const missing = await at("ip-10-0-4-4.ec2.internal", "token-404");
  assert.match(missing.finding, /^the Node ip-10-0-4-4\.ec2\.internal does not exist: kubelet has not registered it$/);
  const refused = await at(NODE, "not-a-known-token");
  assert.match(refused.finding, /401 Unauthorized/);
  assert.match(refused.hint, /create-access-entry/);
  const forbidden = await at(sick, TOKEN);
  assert.match(forbidden.finding, /may not read the Node ip-10-0-9-9\.ec2\.internal \(403\)/);
});

test("registration: a credential plugin that fails or is not installed is named, with its own words", async () => {
  const failing = await withPlugin({ fail: 'Unable to locate credentials. You can configure credentials by running "aws configure".' });
  const d1 = await deps({}, failing.env);
  await kubeletRoot(d1, api.url, api.ca.pem);
  const r1 = await one(registrationCheck(d1, { config: config(api.url, api.ca.base64) }, 3000));
  assert.equal(r1.status, "fail");
  assert.match(
    r1.finding,
    /the kubeconfig's credential plugin `aws eks get-token --cluster-name my-cluster --region us-west-2` failed \(exit 255\): Unable to locate credentials/,
  );
  const d2 = await deps({}, { PATH: "/nonexistent-berth-bin" });
  await kubeletRoot(d2, api.url, api.ca.pem);
  const r2 = await one(registrationCheck(d2, { config: config(api.url, api.ca.base64) }, 3000));
  assert.match(r2.finding, /`aws eks get-token .*` executable aws not found/);
  assert.match(r2.hint, /install it/);
});

// ------------------------------------------------------------------ imds, ec2

test("imds and ec2 against their stand-ins; a denied DescribeInstances gets the IAM hint", async () => {
  const ec2 = await startEc2StandIn();
  const denied = await startEc2StandIn({ deny: ["DescribeInstances"] });
  closers.push(
    () => ec2.close(),
    () => denied.close(),
  );
  const env = (e: typeof ec2) => ({ AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url, ...e.env(), AWS_SHARED_CREDENTIALS_FILE: "/dev/null" });
  for (const [e, want] of [
    [ec2, "pass"],
    [denied, "fail"],
  ] as const) {
    const d = await deps({}, env(e));
    const state: DoctorState = {};
    const rs = await runChecks([imdsCheck(d, state, 2500), ec2Check(d, state, 3000)], { totalMs: 9500 });
    assert.equal(rs[0]?.status, "pass", rs[0]?.finding);
    assert.match(rs[0].finding, /^IMDSv2 answers at http:\/\/127\.0\.0\.1:\d+: i-1234567890abcdef0 \(m4\.xlarge in us-/);
    assert.equal(rs[1]?.status, want, rs[1]?.finding);
    if (want === "pass") assert.match(rs[1].finding, /DescribeInstances allowed \(private DNS name ip-172-16-34-43\.ec2\.internal\)/);
    else {
      assert.match(rs[1].finding, /^EC2 DescribeInstances at https:\/\/127\.0\.0\.1:\d+ is denied: UnauthorizedOperation: /);
      assert.match(rs[1].hint, /allow ec2:DescribeInstances for .*AmazonEKSWorkerNodePolicy.*InstanceIdNodeName/);
    }
  }
});

test("imds: a token PUT that gets no answer is reported with the hop-limit hint, within the check's deadline", async () => {
  const hole = await startBlackHole();
  closers.push(() => hole.close());
  const d = await deps({}, { AWS_EC2_METADATA_SERVICE_ENDPOINT: `http://${hole.address}` });
  const r = await one(imdsCheck(d, {}, 2500));
  assert.equal(r.status, "fail");
  assert.match(r.finding, /^the IMDSv2 token PUT to http:\/\/127\.0\.0\.1:\d+ got no answer/);
  assert.match(r.hint, /--http-put-response-hop-limit 2/);
});

// ------------------------------------------------------------------ containerd, kubelet (fakes), clock (D-Bus)

async function withSocket(d: DoctorDeps): Promise<void> {
  const sock = d.root.path("/run/containerd/containerd.sock");
  await mkdir(path.dirname(sock), { recursive: true });
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(sock, r));
  closers.push(() => new Promise<void>((r) => srv.close(() => r())));
}

test("containerd: unit, CRI readiness and the sandbox image, through the fakes", async () => {
  const image = "localhost/kubernetes/pause:latest";
  const run = async (unit: Record<string, unknown>, cri: FakeCri, socket = true) => {
    const sd = new FakeSystemd({ units: { "containerd.service": unit } });
    const d = await deps({ systemd: () => Promise.resolve(sd), cri: () => cri });
    if (socket) await withSocket(d);
    return one(containerdCheck(d, 3000));
  };
  const good = new FakeCri();
  good.images.set(image, { id: "sha256:1", repoTags: [image], repoDigests: [], size: 1, pinned: true });
  good.networkReady = true;
  const pass = await run({ activeState: "active", subState: "running" }, good);
  assert.equal(pass.status, "pass", pass.finding);
  assert.match(
    pass.finding,
    /^containerd\.service active \(running\); CRI ready on \/run\/containerd\/containerd\.sock; sandbox image localhost\/kubernetes\/pause:latest present$/,
  );

  const noCni = new FakeCri();
  noCni.images.set(image, { id: "sha256:1", repoTags: [image], repoDigests: [], size: 1, pinned: true });
  assert.equal((await run({ activeState: "active", subState: "running" }, noCni)).status, "warn");

  const absent = await run({ activeState: "active", subState: "running" }, new FakeCri());
  assert.match(absent.finding, /the sandbox image localhost\/kubernetes\/pause:latest is not in containerd/);

  const notReady = new FakeCri();
  notReady.runtimeReady = false;
  assert.match((await run({ activeState: "active", subState: "running" }, notReady)).finding, /RuntimeReady=false \(FakeNotReady\)/);

  const stopped = await run({ activeState: "failed", subState: "failed", result: "exit-code" }, new FakeCri());
  assert.match(stopped.finding, /^containerd\.service is not running: failed \(failed, result exit-code\)$/);
  assert.match(stopped.hint, /systemctl start containerd/);

  const noSocket = await run({ activeState: "active", subState: "running" }, new FakeCri(), false);
  assert.match(noSocket.finding, /containerd's socket \/run\/containerd\/containerd\.sock does not exist/);
});

test("kubelet: /healthz of a stand-in, the unit through the fake, and the log file's cause quoted", async () => {
  const healthz = net.createServer((s) => {
    s.resume();
    s.end("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
  });
  await new Promise<void>((r) => healthz.listen(0, "127.0.0.1", r));
  closers.push(() => new Promise<void>((r) => healthz.close(() => r())));
  const url = `http://127.0.0.1:${(healthz.address() as net.AddressInfo).port}/healthz`;
  const sd = new FakeSystemd({ units: { "kubelet.service": { activeState: "active", subState: "running" } } });
  const logDir = await scratch.make();
  const log = path.join(logDir, "kubelet.log");
  await writeFile(
    log,
    'I0612 kubelet started\nE0612 10:01:03.000001    1234 kubelet_node_status.go:96] "Unable to register node with API server" err="Unauthorized" node="n"\n',
  );
  const d = await deps({
    systemd: () => Promise.resolve(sd),
    kubeletHealthzUrl: url,
    kubeletLog: async () => ({ source: log, lines: (await readFile(log, "utf8")).split("\n").filter(Boolean) }),
  });
  const r = await one(kubeletCheck(d, {}, 3000));
  assert.equal(r.status, "fail");
  assert.match(
    r.finding,
    /^kubelet\.service active \(running\); \/healthz ok; the API server rejects the node's credentials \(Unauthorized\): .*: "E0612 .*err="Unauthorized" node="n""$/,
  );
  assert.match(r.hint, /create-access-entry/);
  assert.deepEqual(r.detail, [
    `${log}: E0612 10:01:03.000001    1234 kubelet_node_status.go:96] "Unable to register node with API server" err="Unauthorized" node="n"`,
  ]);
});

test("clock: NTPSynchronized from a systemd-timedated stand-in on a private D-Bus; no bus is a warning", async () => {
  const dir = await scratch.make();
  const sock = path.join(dir, "bus");
  const address = `unix:path=${sock}`;
  const daemon: ChildProcess = spawn("dbus-daemon", ["--session", "--nofork", "--nopidfile", `--address=${address}`], { stdio: "ignore" });
  closers.push(async () => {
    if (daemon.exitCode === null) {
      daemon.kill("SIGTERM");
      await new Promise((r) => daemon.once("exit", r));
    }
  });
  for (let i = 0; i < 2000 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 5));
  const server = dbus.sessionBus({ busAddress: address });
  await new Promise<void>((resolve, reject) => {
    server.once("connect", () => resolve());
    server.once("error", reject);
  });
  closers.push(() => server.disconnect());
  await server.requestName(TIMEDATE_SERVICE, 0);
  const props: Record<string, boolean> = { NTPSynchronized: true, NTP: true };
  const asked: string[] = [];
  server.addMethodHandler((msg: InstanceType<typeof dbus.Message>) => {
    if (msg.destination !== TIMEDATE_SERVICE || msg.member !== "Get") return false;
    const [iface, name] = msg.body as [string, string];
    asked.push(`${iface}.${name}`);
    server.send(dbus.Message.newMethodReturn(msg, "v", [new dbus.Variant("b", props[name] ?? false)]));
    return true;
  });
  const d = await deps({}, { BERTH_BUS_ADDRESS: address });
  assert.equal(d.busAddress, address);
  const synced = await one(clockCheck(d, 2000));
  assert.equal(synced.status, "pass", synced.finding);
  assert.ok(asked.includes("org.freedesktop.timedate1.NTPSynchronized"), asked.join());
  props.NTPSynchronized = false;
  props.NTP = false;
  const d2 = await deps({}, { BERTH_BUS_ADDRESS: address });
  const drifting = await one(clockCheck(d2, 2000));
  assert.equal(drifting.status, "warn");
  assert.match(drifting.finding, /not synchronised and no time-sync service is enabled/);
  const none = await one(clockCheck(await deps(), 2000));
  assert.equal(none.status, "warn");
  assert.match(
    none.finding,
    /^cannot ask systemd-timedated whether the clock is synchronised: cannot connect to the D-Bus bus at unix:path=\/nonexistent/,
  );
});
