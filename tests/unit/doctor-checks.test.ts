/**
 * The doctor's judgements, as pure functions: what the checks make of what
 * they read (host files, kubelet's log, unit states, certificates, API
 * answers, kubeconfigs). The checks that reach endpoints are tested against
 * stand-ins in doctor-endpoints.test.ts; the CLI in doctor-cli.test.ts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { judgeHost, type HostFacts } from "../../src/doctor/checks/host.ts";
import { classifyKubeletLog } from "../../src/doctor/checks/kubelet-log.ts";
import { judgeClientCert, judgeKubelet, type KubeletFacts } from "../../src/doctor/checks/kubelet.ts";
import { answerOutcome, certificateProblem, connectFailure } from "../../src/doctor/checks/apiserver.ts";
import { hostnameOverride, nodeOutcome } from "../../src/doctor/checks/registration.ts";
import { clockOutcome } from "../../src/doctor/checks/clock.ts";
import { driftOutcome, firstChange } from "../../src/doctor/checks/files.ts";
import { execInfo, parseExecCredential, parseKubeconfig } from "../../src/doctor/kubeconfig.ts";
import { isPrivateAddress } from "../../src/doctor/net.ts";
import { kubeconfigYaml } from "../../src/render/kubeconfig.ts";
import { unifiedDiff } from "../../src/plan/diff.ts";
import type { UnitState } from "../../src/host/systemd.ts";
import { createTestCa } from "../standins/test-pki.ts";

// ------------------------------------------------------------------ host

const healthyHost = (over: Partial<HostFacts> = {}): HostFacts => ({
  swaps: "Filename\tType\tSize\tUsed\tPriority\n",
  cgroupV2: true,
  ipForward: "1\n",
  disks: [
    { hostPath: "/var/lib/containerd", fs: "imagefs", availablePct: 60, inodesFreePct: 90 },
    { hostPath: "/var/lib/kubelet", fs: "nodefs", availablePct: 60, inodesFreePct: 90 },
  ],
  diskErrors: [],
  swapAllowed: false,
  ...over,
});

test("host: a healthy machine passes and says what it saw", () => {
  const o = judgeHost(healthyHost());
  assert.equal(o.status, "pass");
  assert.match(o.finding, /^swap off; cgroup v2; net\.ipv4\.ip_forward=1; free: \/var\/lib\/containerd 60%\/90% inodes/);
});

test("host: swap on fails (kubelet refuses to start) unless the kubelet config allows it", () => {
  const swaps = "Filename\tType\tSize\tUsed\tPriority\n/swapfile                               file\t\t2097148\t\t0\t\t-2\n";
  const o = judgeHost(healthyHost({ swaps }));
  assert.equal(o.status, "fail");
  assert.match(o.finding, /swap is on \(\/swapfile\): kubelet refuses to start \(failSwapOn\)/);
  assert.match(o.hint, /swapoff -a/);
  assert.equal(judgeHost(healthyHost({ swaps, swapAllowed: true })).status, "warn");
});

test("host: cgroup v1, ip_forward=0 and unreadable files are warnings", () => {
  const o = judgeHost(healthyHost({ cgroupV2: false, ipForward: "0\n" }));
  assert.equal(o.status, "warn");
  assert.match(o.finding, /no cgroup v2/);
  assert.match(o.finding, /net\.ipv4\.ip_forward=0/);
  const unknown = judgeHost({ cgroupV2: true, disks: [], diskErrors: ["cannot measure /var/log: EACCES"], swapAllowed: false });
  assert.equal(unknown.status, "warn");
  assert.match(unknown.finding, /cannot read \/proc\/swaps.*cannot read \/proc\/sys\/net\/ipv4\/ip_forward.*cannot measure \/var\/log/);
});

test("host: disk space and inodes against kubelet's default eviction thresholds", () => {
  const disk = (fs: "nodefs" | "imagefs", availablePct: number, inodesFreePct?: number): HostFacts =>
    healthyHost({
      disks: [
        {
          hostPath: fs === "imagefs" ? "/var/lib/containerd" : "/var/lib/kubelet",
          fs,
          availablePct,
          ...(inodesFreePct !== undefined ? { inodesFreePct } : {}),
        },
      ],
    });
  const imageLow = judgeHost(disk("imagefs", 14));
  assert.equal(imageLow.status, "fail");
  assert.match(imageLow.finding, /\/var\/lib\/containerd: 14% space free, under kubelet's eviction threshold imagefs\.available<15%/);
  assert.equal(judgeHost(disk("nodefs", 14)).status, "warn", "14% is above nodefs.available<10%, but close");
  assert.equal(judgeHost(disk("nodefs", 9.5)).status, "fail");
  const inodes = judgeHost(disk("nodefs", 50, 4));
  assert.equal(inodes.status, "fail");
  assert.match(inodes.finding, /4\.0% inodes free, under kubelet's eviction threshold nodefs\.inodesFree<5%/);
  assert.equal(judgeHost(disk("nodefs", 50)).status, "pass", "no inode count (btrfs): not judged");
  // A failure is reported before warnings, and its hint is the one given.
  const mixed = judgeHost(healthyHost({ cgroupV2: false, disks: [{ hostPath: "/var/log", fs: "nodefs", availablePct: 3 }] }));
  assert.equal(mixed.status, "fail");
  assert.match(mixed.finding, /^\/var\/log: 3\.0% space free/);
  assert.match(mixed.hint, /free space on the filesystem of \/var\/log/);
});

// ------------------------------------------------------------------ kubelet's log

const KLOG = {
  x509: 'E0612 10:01:02.123456    1234 reflector.go:158] "Unhandled Error" err="k8s.io/client-go/informers/factory.go:160: Failed to watch *v1.Node: failed to list *v1.Node: Get \\"https://ABC.gr7.us-west-2.eks.amazonaws.com/api/v1/nodes\\": tls: failed to verify certificate: x509: certificate signed by unknown authority"',
  unauthorized:
    'E0612 10:01:03.000001    1234 kubelet_node_status.go:96] "Unable to register node with API server" err="Unauthorized" node="ip-10-0-1-5.ec2.internal"',
  notFound:
    'E0612 10:01:04.000001    1234 kubelet_node_status.go:462] "Error getting the current node from lister" err="node \\"ip-10-0-1-5.ec2.internal\\" not found"',
  containerd:
    'W0612 10:01:00.5    1234 logging.go:55] [core] [Channel #1 SubChannel #2]grpc: addrConn.createTransport failed to connect to {Addr: "/run/containerd/containerd.sock"}. Err: connection error: desc = "transport: Error while dialing: dial unix /run/containerd/containerd.sock: connect: connection refused"',
  exec: 'E0612 10:01:05.1    1234 reflector.go:158] "Unhandled Error" err="getting credentials: exec: executable aws not found"',
  swap: 'E0612 10:00:01.0    1234 run.go:72] "command failed" err="failed to run Kubelet: running with swap on is not supported, please disable swap or set --fail-swap-on flag to false"',
  noise: 'I0612 10:00:00.000000    1234 server.go:484] "Kubelet version" kubeletVersion="v1.33.0-eks-5e0fdde"',
};

test("kubelet log: each known cause is recognised and the latest line quoted", () => {
  const cases: Array<[string, string]> = [
    [KLOG.x509, "ca-mismatch"],
    [KLOG.unauthorized, "unauthorized"],
    [KLOG.notFound, "node-not-found"],
    [KLOG.containerd, "containerd"],
    [KLOG.exec, "exec-plugin"],
    [KLOG.swap, "swap"],
  ];
  for (const [line, key] of cases) {
    const c = classifyKubeletLog([KLOG.noise, line, KLOG.noise]);
    assert.equal(c?.key, key, line);
    assert.equal(c?.line, line);
  }
  assert.equal(classifyKubeletLog([KLOG.noise]), undefined);
  assert.equal(classifyKubeletLog([]), undefined);
});

test("kubelet log: the root cause wins over its symptoms (Unauthorized over 'node not found')", () => {
  const c = classifyKubeletLog([KLOG.containerd, KLOG.unauthorized, KLOG.notFound, KLOG.notFound]);
  assert.equal(c?.key, "unauthorized");
  assert.match(c.cause, /no access entry or aws-auth mapping/);
  assert.match(c.hint, /create-access-entry .*--type EC2_LINUX/);
  assert.equal(classifyKubeletLog([KLOG.unauthorized, KLOG.x509])?.key, "ca-mismatch");
});

const unit = (over: Partial<UnitState> = {}): UnitState => ({
  loadState: "loaded",
  activeState: "active",
  subState: "running",
  mainPid: 42,
  activeEnterTimestampUs: 1,
  activeExitTimestampUs: 0,
  inactiveEnterTimestampUs: 0,
  nRestarts: 0,
  result: "success",
  ...over,
});
const kubelet = (over: Partial<KubeletFacts> = {}): KubeletFacts => ({
  unit: { state: unit() },
  healthzUrl: "http://127.0.0.1:10248/healthz",
  healthz: { ok: true, latencyMs: 1 },
  cert: { status: "pass", text: "no client certificate" },
  log: { source: "journal", lines: 0 } as unknown as KubeletFacts["log"],
  ...over,
});

test("kubelet: running, healthy and a quiet log passes", () => {
  const o = judgeKubelet(kubelet({ log: { source: "journalctl -u kubelet.service" } }));
  assert.equal(o.status, "pass");
  assert.match(
    o.finding,
    /^kubelet\.service active \(running\); \/healthz ok; no client certificate; no known problem in its last 200 log lines$/,
  );
});

test("kubelet: a crash loop explained by its log gets the log's cause, quoted, and its hint", () => {
  const o = judgeKubelet(
    kubelet({
      unit: { state: unit({ activeState: "activating", subState: "auto-restart", result: "exit-code", nRestarts: 7, mainPid: 0 }) },
      healthz: { ok: false, cause: "http://127.0.0.1:10248/healthz: connection refused (kubelet not listening)", latencyMs: 1 },
      log: { source: "journalctl -u kubelet.service", cause: { ...classifyKubeletLog([KLOG.x509])! } },
    }),
  );
  assert.equal(o.status, "fail");
  assert.match(
    o.finding,
    /kubelet\.service keeps exiting and systemd keeps restarting it: activating \(auto-restart, result exit-code\), 7 restart\(s\) by systemd/,
  );
  // A long line is quoted around what matched.
  assert.match(o.finding, /CA mismatch: .*: "….*x509: certificate signed by unknown authority"/);
  assert.match(o.hint, /spec\.cluster\.certificateAuthority/);
  assert.deepEqual(o.detail, [`journalctl -u kubelet.service: ${KLOG.x509}`]);
});

test("kubelet: healthy but 'node not found' in the log is a warning; a stopped unit is a failure", () => {
  const w = judgeKubelet(kubelet({ log: { source: "f", cause: classifyKubeletLog([KLOG.notFound])! } }));
  assert.equal(w.status, "warn");
  assert.match(w.finding, /registration pending/);
  const stopped = judgeKubelet(
    kubelet({
      unit: { state: unit({ activeState: "inactive", subState: "dead", mainPid: 0 }) },
      healthz: { ok: false, cause: "refused", latencyMs: 1 },
      log: { error: "no journal" },
    }),
  );
  assert.equal(stopped.status, "fail");
  assert.match(stopped.finding, /^kubelet\.service is not running: inactive \(dead\); \/healthz: refused$/);
  assert.match(stopped.hint, /berth-run\.service starts it/);
  const missing = judgeKubelet(kubelet({ unit: { state: unit({ loadState: "not-found", activeState: "inactive", subState: "dead" }) } }));
  assert.match(missing.finding, /kubelet\.service is not installed/);
});

test("kubelet: its client certificate, judged against the clock", async () => {
  const ca = await createTestCa();
  const { cert, key } = await ca.issue(["system:node:ip-10-0-1-5"], { noIp: true, client: true });
  const pem = cert + key;
  const now = Date.now();
  assert.equal(judgeClientCert(pem, now).status, "pass");
  assert.match(judgeClientCert(pem, now).text, /^client certificate valid until /);
  const expired = judgeClientCert(pem, now + 5 * 86_400_000);
  assert.equal(expired.status, "fail");
  assert.match(expired.text, /expired .* ago/);
  assert.equal(judgeClientCert(pem, now - 86_400_000).status, "fail");
  assert.match(judgeClientCert(pem, now - 86_400_000).text, /clock is behind/);
  assert.equal(judgeClientCert(pem, now + 36 * 3_600_000).status, "warn");
  assert.equal(judgeClientCert(undefined, now).status, "pass");
  assert.equal(judgeClientCert("garbage", now).status, "warn");
});

// ------------------------------------------------------------------ apiserver

test("apiserver: a connect that times out is a dropped port — or a private endpoint when the address is private", () => {
  const pub = connectFailure("ETIMEOUT", "abc.gr7.us-west-2.eks.amazonaws.com", "52.1.2.3", 443, 2000);
  assert.equal(pub.status, "fail");
  assert.match(
    pub.finding,
    /TCP connect to abc\.gr7\.us-west-2\.eks\.amazonaws\.com:443 \(52\.1\.2\.3\) got no answer within 2000 ms: packets to port 443 are dropped/,
  );
  assert.match(pub.hint, /security group/);
  const priv = connectFailure("ETIMEOUT", "abc.gr7.us-west-2.eks.amazonaws.com", "10.0.12.7", 443, 2000);
  assert.match(priv.finding, /10\.0\.12\.7 is a private address: a private cluster endpoint is reachable only from its VPC/);
  assert.match(priv.hint, /cluster's VPC/);
  assert.match(
    connectFailure("ECONNREFUSED", "127.0.0.1", "127.0.0.1", 6443, 1).finding,
    /^nothing listens on 127\.0\.0\.1:6443: connection refused$/,
  );
  assert.match(connectFailure("EHOSTUNREACH", "h", "192.0.2.1", 443, 1).finding, /no route to h:443 \(192\.0\.2\.1\)/);
  for (const ip of ["10.1.2.3", "172.20.0.1", "192.168.1.1", "100.64.0.1", "fd12::1", "127.0.0.1"]) assert.ok(isPrivateAddress(ip), ip);
  for (const ip of ["52.1.2.3", "8.8.8.8", "2600:1f18::1", "not-an-ip"]) assert.ok(!isPrivateAddress(ip), ip);
});

test("apiserver: certificate problems by OpenSSL's reason", () => {
  const cert = {
    subject: "CN=kube-apiserver",
    issuer: "CN=other CA",
    validFrom: "Jan 1 00:00:00 2020 GMT",
    validTo: "Jan 1 00:00:00 2021 GMT",
    subjectAltName: "DNS:kubernetes",
  };
  const wrong = certificateProblem(
    { authorized: false, authorizationError: "UNABLE_TO_VERIFY_LEAF_SIGNATURE", cert },
    "h",
    "CN=kubernetes",
  );
  assert.match(
    wrong!.finding,
    /^wrong CA: the API server's certificate \(issuer CN=other CA\) does not verify against the cluster CA in the NodeConfig \(CN=kubernetes\)/,
  );
  assert.match(wrong!.hint, /certificateAuthority\.data/);
  assert.match(certificateProblem({ authorized: false, authorizationError: "CERT_HAS_EXPIRED", cert }, "h", "")!.finding, /expired/);
  assert.match(
    certificateProblem({ authorized: false, authorizationError: "CERT_NOT_YET_VALID", cert }, "h", "")!.finding,
    /clock is behind/,
  );
  assert.match(
    certificateProblem(
      { authorized: true, hostError: "Hostname/IP does not match certificate's altnames: Host: h. is not cert's CN", cert },
      "h",
      "",
    )!.finding,
    /is not for h/,
  );
  assert.equal(certificateProblem({ authorized: true, cert }, "h", ""), undefined);
});

test("apiserver: what /readyz and /version answered", () => {
  assert.equal(answerOutcome("B", { status: 200, body: "ok" }).status, "pass");
  const anon = answerOutcome("B", { status: 401, body: "" }, { status: 401, body: "" });
  assert.equal(anon.status, "pass");
  assert.match(anon.finding, /anonymous requests get 401, which proves it is there/);
  assert.match(
    answerOutcome("B", { status: 403, body: "" }, { status: 200, body: '{"gitVersion":"v1.33.1-eks-1"}' }).finding,
    /\/version: v1\.33\.1-eks-1/,
  );
  const notReady = answerOutcome("B", { status: 500, body: "[-]etcd failed" });
  assert.equal(notReady.status, "fail");
  assert.match(notReady.finding, /not ready: \/readyz answered 500: \[-\]etcd failed/);
  assert.equal(answerOutcome("B", { status: 404, body: "" }, { status: 404, body: "" }).status, "warn");
});

// ------------------------------------------------------------------ registration

const node = (ready: string, reason = "", message = "", more: object[] = []) =>
  JSON.stringify({
    kind: "Node",
    status: { conditions: [...more, { type: "Ready", status: ready, reason, message }], nodeInfo: { kubeletVersion: "v1.33.0" } },
  });

test("registration: Ready, NotReady with its reason, and each refusal", () => {
  const ok = nodeOutcome("n1", 200, node("True", "KubeletReady"));
  assert.equal(ok.status, "pass");
  assert.equal(ok.finding, "the Node n1 is registered and Ready, kubelet v1.33.0");
  const cni = nodeOutcome(
    "n1",
    200,
    node(
      "False",
      "KubeletNotReady",
      "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized",
    ),
  );
  assert.equal(cni.status, "fail");
  assert.match(cni.finding, /NotReady \(Ready=False, KubeletNotReady: container runtime network not ready/);
  assert.match(cni.hint, /aws-node/);
  const pressure = nodeOutcome(
    "n1",
    200,
    node("True", "", "", [{ type: "DiskPressure", status: "True", reason: "KubeletHasDiskPressure" }]),
  );
  assert.equal(pressure.status, "warn");
  assert.match(pressure.finding, /also DiskPressure \(KubeletHasDiskPressure\)/);
  assert.match(nodeOutcome("n1", 404, "{}").finding, /does not exist: kubelet has not registered it/);
  assert.match(nodeOutcome("n1", 401, "{}").hint, /access entry .*EC2_LINUX/);
  const forbidden = nodeOutcome(
    "n1",
    403,
    JSON.stringify({ message: 'nodes "n1" is forbidden: User "system:node:n2" cannot get resource "nodes"' }),
  );
  assert.match(forbidden.finding, /may not read the Node n1 \(403\): nodes "n1" is forbidden/);
  assert.match(forbidden.hint, /system:node:\{\{EC2PrivateDNSName\}\}/);
});

test("registration: the node name is kubelet's last --hostname-override", () => {
  const env =
    "NODEADM_KUBELET_ARGS=--cloud-provider=external --hostname-override=ip-10-0-1-5.ec2.internal --node-ip=10.0.1.5 --hostname-override=custom";
  assert.equal(hostnameOverride(env), "custom");
  assert.equal(hostnameOverride("NODEADM_KUBELET_ARGS=--node-ip=1.2.3.4"), undefined);
  assert.equal(hostnameOverride(undefined), undefined);
});

test("kubeconfig: berth's own kubeconfig reads back with its exec plugin; ExecCredential output is checked as client-go does", () => {
  const kc = parseKubeconfig(
    kubeconfigYaml({ clusterName: "my-cluster", region: "us-west-2", apiServerEndpoint: "https://abc.example" }),
    "/var/lib/kubelet/kubeconfig",
  );
  assert.ok(kc.ok);
  assert.equal(kc.value.server, "https://abc.example");
  assert.equal(kc.value.caFile, "/etc/kubernetes/pki/ca.crt");
  assert.deepEqual(kc.value.user.exec, {
    apiVersion: "client.authentication.k8s.io/v1beta1",
    command: "aws",
    args: ["eks", "get-token", "--cluster-name", "my-cluster", "--region", "us-west-2"],
    env: [],
    provideClusterInfo: false,
  });
  assert.equal(
    execInfo(kc.value.user.exec),
    '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":false}}',
  );
  const v1 = "client.authentication.k8s.io/v1beta1";
  const good = parseExecCredential(JSON.stringify({ kind: "ExecCredential", apiVersion: v1, status: { token: "k8s-aws-v1.abc" } }), v1);
  assert.ok(good.ok && good.value.token === "k8s-aws-v1.abc");
  const wrongVersion = parseExecCredential(
    JSON.stringify({ kind: "ExecCredential", apiVersion: "client.authentication.k8s.io/v1", status: { token: "t" } }),
    v1,
  );
  assert.ok(!wrongVersion.ok && /apiVersion "client.authentication.k8s.io\/v1", not .*v1beta1/.test(wrongVersion.errors[0]!.message));
  assert.ok(!parseExecCredential("Unable to locate credentials", v1).ok);
  assert.ok(!parseExecCredential(JSON.stringify({ kind: "ExecCredential", apiVersion: v1, status: {} }), v1).ok);
  assert.ok(!parseKubeconfig("clusters: [", "x").ok);
  assert.ok(!parseKubeconfig("apiVersion: v1\nkind: Config\n", "x").ok);
});

// ------------------------------------------------------------------ clock, files

test("clock: synchronised passes; not synchronised is a warning that says whether NTP is on", () => {
  assert.equal(clockOutcome(true, true).status, "pass");
  assert.match(clockOutcome(false, false).finding, /no time-sync service is enabled/);
  assert.match(clockOutcome(false, false).hint, /timedatectl set-ntp true/);
  assert.match(clockOutcome(false, true).finding, /not synchronised yet/);
});

test("files: a drifted file is named with its first changed lines and a short diff", () => {
  const path = "/etc/kubernetes/kubelet/config.json";
  const text = unifiedDiff(
    path,
    { bytes: Buffer.from('{\n    "maxPods": 20,\n    "x": 1\n}\n'), mode: 0o644 },
    { bytes: Buffer.from('{\n    "maxPods": 58,\n    "x": 1\n}\n'), mode: 0o644 },
  );
  assert.equal(firstChange(text), '-"maxPods": 20, +"maxPods": 58,');
  const o = driftOutcome(
    [
      { path, kind: "update", text },
      { path: "/etc/eks/kubelet/environment", kind: "create", text: "" },
    ],
    12,
  );
  assert.equal(o.status, "fail");
  assert.equal(
    o.finding,
    `2 file(s) differ from what berth would write now: ${path} (-"maxPods": 20, +"maxPods": 58,); /etc/eks/kubelet/environment (missing)`,
  );
  assert.match(o.hint, /berth init --skip run/);
  assert.ok(o.detail?.includes(`--- a${path}`));
  assert.ok(o.detail?.includes('-    "maxPods": 20,'));
  assert.equal(driftOutcome([], 12).status, "pass");
});
