/**
 * User data as real nodes get it, through what ships (the release executable,
 * `init --skip run -c imds://user-data`), on the default node: the node name
 * comes from EC2 DescribeInstances (InstanceIdNodeName off), over https with
 * the stand-in's CA in AWS_CA_BUNDLE, IMDS on plain http.
 *
 * IMDS serves a conformance case's NodeConfig gzip'd, base64'd, base64 of
 * gzip, and as MIME multipart whose NodeConfig parts are gzip'd (with
 * Content-Transfer-Encoding: base64) or base64 text of gzip; every encoding
 * is checked against the case's own expected files, as the plain text is.
 * These are the cases that failed through the old startup-snapshot path
 * ("A dynamic import callback was not specified"): https, gzip and MIME all
 * load node built-ins or modules on first use.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { startImdsStandIn } from "../standins/imds-server.ts";
import { startEc2StandIn, type Ec2StandIn } from "../standins/ec2-server.ts";
import { NO_STACK } from "../fixtures/cli.ts";
import {
  assertOk,
  CASES_DIR,
  checkStep,
  loadCases,
  makeNode,
  nodeEnv,
  runExe,
  useConformanceSetup,
  writeNodeFile,
  type Step,
} from "./harness.ts";

const CASES = loadCases();
const INSTANCE_ID = "i-1234567890abcdef0";

const setup = useConformanceSetup();
const scratches = setup.scratches;

/** `base64` as the coreutils tool writes it: 76-character lines and a final newline. */
const base64 = (b: Uint8Array): string => `${Buffer.from(b).toString("base64").replace(/.{76}/g, "$&\n").replace(/\n$/, "")}\n`;
const gzip = (b: Uint8Array | string): Buffer => gzipSync(b);

/** The case's config file and its first step (an init from that file), as cases.yaml has them. */
function caseStep(name: string): { config: Buffer; step: Step; kubelet: string } {
  const c = CASES[name];
  assert.ok(c, `case ${name} is not in cases.yaml`);
  const step = c.steps[0]!;
  assert.equal(step.source, "file://config.yaml", `${name}: the first step must read config.yaml`);
  return { config: readFileSync(path.join(CASES_DIR, name, "config.yaml")), step, kubelet: String(step.kubelet ?? c.kubelet ?? "1.35.0") };
}

/** mime-userdata-merge's message with its NodeConfig parts re-encoded; the shell-script part stays as it is. */
function mimeWithEncodedParts(mime: string): string {
  const [head, ...rest] = mime.split("\n--//\n");
  const parts = rest.map((p) => p.replace(/\n--\/\/--\n?$/, ""));
  assert.equal(parts.length, 3, "mime-userdata-merge has three parts");
  const body = (p: string): string => p.slice(p.indexOf("\n\n") + 2);
  assert.match(parts[0]!, /^Content-Type: application\/node\.eks\.aws\n\n/);
  assert.match(parts[1]!, /^Content-Type: application\/node\.eks\.aws\n\n/);
  // Part 1: gzip'd, carried as base64 by the MIME transfer encoding (how cloud-init tools write it).
  const gzPart = `Content-Type: application/node.eks.aws\nContent-Transfer-Encoding: base64\n\n${base64(gzip(body(parts[0]!)))}`;
  // Part 2: the body is base64 text of gzip, no transfer encoding (nodeadm decodes base64, then gzip, per part).
  const b64GzPart = `Content-Type: application/node.eks.aws\n\n${base64(gzip(body(parts[1]!)))}`;
  return `${head}\n--//\n${gzPart}\n--//\n${b64GzPart}\n--//\n${parts[2]}\n--//--\n`;
}

const SINGLE = "kubelet-config-set-empty";
const MIME = "mime-userdata-merge";
const single = caseStep(SINGLE);
const mime = caseStep(MIME);
const mimeText = mime.config.toString("utf8");

const ENCODINGS: { name: string; base: string; userData: () => Uint8Array | string }[] = [
  { name: "plain YAML", base: SINGLE, userData: () => single.config },
  { name: "gzip", base: SINGLE, userData: () => gzip(single.config) },
  { name: "base64", base: SINGLE, userData: () => base64(single.config) },
  { name: "base64 of gzip", base: SINGLE, userData: () => base64(gzip(single.config)) },
  { name: "MIME multipart", base: MIME, userData: () => mime.config },
  {
    name: "MIME multipart, a gzip'd part (transfer-encoded base64) and a base64-of-gzip part",
    base: MIME,
    userData: () => mimeWithEncodedParts(mimeText),
  },
  { name: "gzip of MIME multipart with encoded parts", base: MIME, userData: () => gzip(mimeWithEncodedParts(mimeText)) },
  { name: "base64 of gzip of MIME multipart", base: MIME, userData: () => base64(gzip(mime.config)) },
];

/** A fresh node for case `base` whose IMDS serves `userData`; `init --skip run -c imds://user-data` through the executable. */
async function initFromUserData(
  base: string,
  userData: Uint8Array | string,
  ec2S: Ec2StandIn,
  envOver: (env: NodeJS.ProcessEnv) => NodeJS.ProcessEnv = (e) => e,
) {
  const { kubelet } = caseStep(base);
  const imds = await startImdsStandIn({ userData });
  try {
    const { root, cwd } = await makeNode(base, CASES[base]!, scratches);
    await writeNodeFile(root, "/etc/eks/kubelet-version.txt", `v${kubelet}\n`);
    const callsBefore = ec2S.calls.length;
    const r = await runExe(["init", "--skip", "run", "--root", root, "-c", "imds://user-data"], cwd, envOver(nodeEnv(imds, ec2S)));
    return { r, root, ec2Calls: ec2S.calls.slice(callsBefore), imdsRequests: [...imds.requests] };
  } finally {
    await imds.close();
  }
}

for (const enc of ENCODINGS) {
  test(`user data ${enc.name}: init through the executable matches ${enc.base}'s expected files`, async () => {
    const { step } = caseStep(enc.base);
    const { r, root, ec2Calls, imdsRequests } = await initFromUserData(enc.base, enc.userData(), setup.ec2());
    assertOk(r);
    assert.ok(imdsRequests.includes("GET /latest/user-data"), `IMDS user data was not read\n${r.transcript}`);
    // The default node: named by EC2 DescribeInstances over https.
    assert.deepEqual(
      ec2Calls.filter((c) => c.action === "DescribeInstances").map((c) => c.params),
      [{ "InstanceId.1": INSTANCE_ID }],
      r.transcript,
    );
    try {
      await checkStep(
        enc.base,
        {
          ...step,
          contains: { ...step.contains, "/etc/eks/kubelet/environment": "--hostname-override=ip-172-16-34-43\\.ec2\\.internal( |$)" },
        },
        root,
      );
    } catch (e) {
      if (e instanceof Error) e.message += `\n${r.transcript}`;
      throw e;
    }
  });
}

test("the default node (no InstanceIdNodeName) gets its name from DescribeInstances over https, and succeeds", async () => {
  // A name IMDS does not know, so it can only have come from EC2.
  const named = await startEc2StandIn({ privateDnsName: "ip-10-20-30-40.us-west-2.compute.internal" });
  try {
    assert.doesNotMatch(single.config.toString("utf8"), /InstanceIdNodeName/);
    const { r, root, ec2Calls } = await initFromUserData(SINGLE, single.config, named);
    assertOk(r);
    assert.ok(named.url.startsWith("https://"));
    assert.deepEqual(ec2Calls[0], { action: "DescribeInstances", params: { "InstanceId.1": INSTANCE_ID } }, r.transcript);
    assert.match(named.authorizations[0]!, /^AWS4-HMAC-SHA256 Credential=AKIDBERTHSTANDIN\/\d{8}\/us-west-2\/ec2\/aws4_request, /);
    const envFile = await readFile(path.join(root, "etc/eks/kubelet/environment"), "utf8");
    assert.match(envFile, /--hostname-override=ip-10-20-30-40\.us-west-2\.compute\.internal( |"|$)/m, r.transcript);
  } finally {
    await named.close();
  }
});

test("without AWS_CA_BUNDLE the executable refuses the stand-in's certificate: a clear error, no stack, nothing written", async () => {
  const { r, root, ec2Calls } = await initFromUserData(SINGLE, single.config, setup.ec2(), ({ AWS_CA_BUNDLE: _, ...env }) => env);
  assert.equal(r.code, 1, r.transcript);
  assert.doesNotMatch(r.stderr, NO_STACK, r.transcript);
  assert.equal(ec2Calls.length, 0, "no request got past the TLS handshake");
  const errors = r.stderr.split("\n").filter((l) => l.startsWith("error: "));
  assert.equal(errors.length, 1, r.transcript);
  assert.ok(errors[0]!.includes(`EC2 DescribeInstances at ${setup.ec2().url} failed: its TLS certificate is not trusted`), r.transcript);
  assert.match(errors[0]!, /\(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)$/, r.transcript);
  // Node's own advice (its --use-system-ca flag) means nothing to a berth user.
  assert.doesNotMatch(r.stderr, /Node\.js|--use-system-ca/, r.transcript);
  assert.match(r.stderr, /^ {2}hint: .*point AWS_CA_BUNDLE at that CA's certificate/m, r.transcript);
  // Facts come before any write: the node is untouched.
  assert.deepEqual((await readdir(path.join(root, "etc"))).sort(), ["eks"]);
  assert.deepEqual((await readdir(path.join(root, "etc/eks"))).sort(), ["containerd-version.txt", "kubelet-version.txt"]);
});
