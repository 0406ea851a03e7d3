import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, writeFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { HostRoot } from "../../src/host/root.ts";
import { gatherFacts, staticFacts, demoFacts } from "../../src/facts/index.ts";
import { createImdsClient, type ImdsHttpClient } from "../../src/facts/imds.ts";
import { createEc2Client } from "../../src/facts/ec2.ts";
import type { BerthError } from "../../src/util/result.ts";
import type { NodeConfigSpec } from "../../src/api/types.ts";
import { startImdsStandIn } from "../standins/imds-server.ts";
import { startEc2StandIn } from "../standins/ec2-server.ts";
import { clusterSpec } from "../fixtures/node.ts";

const fast = { initialMs: 1, maxMs: 5 };
const noCommands = async (cmd: string): Promise<string> => {
  throw new Error(`${cmd}: not found`);
};
const spec: NodeConfigSpec = clusterSpec();

let root: HostRoot;
const cleanup: (() => Promise<void> | void)[] = [];
before(async () => {
  const d = await mkdtemp(path.join(os.tmpdir(), "berth-gather-"));
  cleanup.push(() => rm(d, { recursive: true, force: true }));
  const files: Record<string, string> = {
    "sys/devices/system/cpu/online": "0-1\n",
    "proc/meminfo": "MemTotal:       16106628 kB\nMemFree:        15000000 kB\n",
    "etc/eks/kubelet-version.txt": "v1.33.0\n",
    "etc/eks/containerd-version.txt": "1.7.27\n",
  };
  for (const [p, c] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(d, p)), { recursive: true });
    await writeFile(path.join(d, p), c);
  }
  root = new HostRoot(d);
});
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

async function node(opts: { imds?: Parameters<typeof startImdsStandIn>[0]; ec2?: Parameters<typeof startEc2StandIn>[0] } = {}) {
  const imdsS = await startImdsStandIn(opts.imds);
  const ec2S = await startEc2StandIn(opts.ec2);
  cleanup.push(
    () => imdsS.close(),
    () => ec2S.close(),
  );
  // Static credentials and IMDS credentials off: nothing may reach past loopback.
  const env: NodeJS.ProcessEnv = { ...ec2S.env(), AWS_EC2_METADATA_DISABLED: "true" };
  const imds: ImdsHttpClient = createImdsClient({ endpoint: imdsS.url, env: {}, backoff: fast, deadlineMs: 3000 });
  cleanup.push(() => imds.close());
  let ec2Made = 0;
  const ec2 = async () => {
    ec2Made++;
    return createEc2Client({ region: "us-west-2", env, imds, backoff: fast, waiterBackoff: fast, callDeadlineMs: 3000, dnsWaitMs: 3000 });
  };
  return { imdsS, ec2S, imds, ec2, env, made: () => ec2Made };
}

test("the conformance node: every fact in the README table", async () => {
  const n = await node();
  const warnings: BerthError[] = [];
  const r = await gatherFacts(spec, { root, imds: n.imds, ec2: n.ec2, run: noCommands, onWarning: (w) => warnings.push(w) });
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  const f = r.value;
  assert.equal(f.instance.type, "m4.xlarge");
  assert.deepEqual(f.instanceType, { defaultEnis: 4, ipv4PerEni: 15, origin: "table" });
  assert.equal(f.instance.id, "i-1234567890abcdef0");
  assert.equal(f.instance.region, "us-west-2");
  assert.equal(f.instance.availabilityZone, "us-west-2f");
  assert.equal(f.instance.localIpv4, "172.16.34.43");
  assert.equal(f.instance.mac, "0e:49:61:0f:c3:11");
  assert.match(f.instance.privateDnsName ?? "", /ip.*ec2\.internal/);
  assert.equal(f.cpus, 2);
  assert.equal(f.kubeletVersion, "1.33.0");
  assert.equal(f.containerdVersion, "1.7.27");
  assert.equal(f.nvidiaRuntime, false);
  assert.equal(f.neuronDevices, false);
  assert.equal(f.nvidiaGpu, false);
  assert.equal(f.memoryBytes, 16106628 * 1024);
  assert.deepEqual(warnings, []);
  // Only DescribeInstances: m4.xlarge comes from the table.
  assert.deepEqual(
    n.ec2S.calls.map((c) => c.action),
    ["DescribeInstances"],
  );
  // The embedded demo profile is exactly this node.
  assert.deepEqual(await demoFacts(), f);
});

test("InstanceIdNodeName: no DescribeInstances, no EC2 client at all for a table type", async () => {
  const n = await node();
  const r = await gatherFacts({ ...spec, featureGates: { InstanceIdNodeName: true } }, { root, imds: n.imds, ec2: n.ec2, run: noCommands });
  assert.ok(r.ok);
  assert.equal(r.value.instance.privateDnsName, undefined);
  assert.deepEqual(n.ec2S.calls, []);
  assert.equal(n.made(), 0);
});

test("unknown instance type: EC2 says InvalidInstanceType → origin unknown (maxPods falls back to 110)", async () => {
  const n = await node({ imds: { instanceType: "mock-type.large" } });
  const r = await gatherFacts(spec, { root, imds: n.imds, ec2: n.ec2, run: noCommands });
  assert.ok(r.ok);
  assert.equal(r.value.instance.type, "mock-type.large");
  assert.deepEqual(r.value.instanceType, { origin: "unknown" });
  assert.deepEqual(n.ec2S.calls.map((c) => c.action).sort(), ["DescribeInstanceTypes", "DescribeInstances"]);
  assert.equal(n.made(), 1);
});

test("a type only EC2 knows comes from DescribeInstanceTypes; the default EC2 factory honours the environment", async () => {
  const n = await node({ imds: { instanceType: "x9.huge" }, ec2: { instanceTypes: { "x9.huge": { defaultEnis: 7, ipv4PerEni: 21 } } } });
  // No ec2 factory: gatherFacts loads src/facts/ec2.ts itself, with deps.env.
  const r = await gatherFacts(spec, { root, imds: n.imds, env: n.env, run: noCommands });
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  assert.deepEqual(r.value.instanceType, { defaultEnis: 7, ipv4PerEni: 21, origin: "ec2" });
  assert.equal(r.value.instance.privateDnsName, "ip-172-16-34-43.ec2.internal");
});

test("failures are error values: missing versions and EC2 refusing DescribeInstances are all reported", async () => {
  const n = await node();
  const emptyRoot = new HostRoot(await mkdtemp(path.join(os.tmpdir(), "berth-gather-empty-")));
  cleanup.push(() => rm(emptyRoot.dir, { recursive: true, force: true }));
  const env = { AWS_ENDPOINT_URL_EC2: n.ec2S.url, AWS_CA_BUNDLE: n.ec2S.caFile, AWS_SHARED_CREDENTIALS_FILE: "/nonexistent" };
  const r = await gatherFacts(spec, { root: emptyRoot, imds: n.imds, env, run: noCommands });
  assert.ok(!r.ok);
  const codes = r.errors.map((e) => e.code).sort();
  assert.deepEqual(codes, ["facts.aws-credentials", "facts.containerd-version", "facts.cpu-online", "facts.kubelet-version"]);
  for (const e of r.errors) assert.ok(e.hint, e.code);
});

test("staticFacts validates a profile and names the bad field", () => {
  const bad = staticFacts(
    {
      instance: { id: "i-1" },
      instanceType: { origin: "x" },
      cpus: 0,
      kubeletVersion: "v1.33.0",
      containerdVersion: "1.7.27",
      nvidiaRuntime: false,
      neuronDevices: "no",
    },
    "facts.json",
  );
  assert.ok(!bad.ok);
  const paths = bad.errors.map((e) => e.where?.path);
  for (const p of ["instance.type", "instance.mac", "instanceType.origin", "cpus", "kubeletVersion", "neuronDevices"])
    assert.ok(paths.includes(p), p);
  assert.equal(bad.errors[0]!.where?.source, "facts.json");
});
