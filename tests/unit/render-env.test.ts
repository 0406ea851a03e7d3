import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";

import type { NodeConfigSpec } from "../../src/api/types.ts";
import { escapeSystemdValue, renderEnvironment } from "../../src/render/environment.ts";
import { renderResolved } from "../../src/render/resolved.ts";

const CASES = join(import.meta.dirname, "../../../shared/conformance/nodeadm-e2e/cases");
const caseFile = (c: string, f: string): string => readFileSync(join(CASES, c, f), "utf8");
const specOf = (c: string, f: string): NodeConfigSpec => (parseYaml(caseFile(c, f)) as { spec: NodeConfigSpec }).spec;

const ENV = "nodeadm-environment-config";
const DEFAULT = "/etc/systemd/system.conf.d/environment.conf";
const KUBELET = "/etc/systemd/system/kubelet.service.d/environment.conf";
const CONTAINERD = "/etc/systemd/system/containerd.service.d/environment.conf";

function envFiles(spec: NodeConfigSpec): { files: Map<string, string>; absent: string[] } {
  const r = renderEnvironment(spec);
  if (!r.ok) throw new Error(r.errors.map((e) => e.message).join("; "));
  for (const f of r.value.files) assert.equal(f.mode, 0o644);
  return { files: new Map(r.value.files.map((f) => [f.path, f.content as string])), absent: r.value.absent };
}

// The six steps of nodeadm-environment-config, exact bytes.
const STEPS: { config: string; exact: Record<string, string>; absent: string[] }[] = [
  { config: "config-basic-env.yaml", exact: { [DEFAULT]: "expected-config-basic-env.conf" }, absent: [CONTAINERD, KUBELET] },
  { config: "config-quote-escaping.yaml", exact: { [DEFAULT]: "expected-config-quote-escaping.conf" }, absent: [CONTAINERD, KUBELET] },
  {
    config: "config-service-specific.yaml",
    exact: {
      [DEFAULT]: "expected-config-service-specific-default.conf",
      [KUBELET]: "expected-config-service-specific-kubelet.conf",
      [CONTAINERD]: "expected-config-service-specific-containerd.conf",
    },
    absent: [],
  },
  {
    config: "config-service-only.yaml",
    exact: { [KUBELET]: "expected-config-service-only-kubelet.conf", [CONTAINERD]: "expected-config-service-only-containerd.conf" },
    absent: [DEFAULT],
  },
  { config: "config-no-env.yaml", exact: {}, absent: [DEFAULT, KUBELET, CONTAINERD] },
  { config: "config-empty-env.yaml", exact: {}, absent: [DEFAULT, KUBELET, CONTAINERD] },
];

for (const step of STEPS) {
  test(`${ENV}: ${step.config} (exact bytes, absent paths)`, () => {
    const { files, absent } = envFiles(specOf(ENV, step.config));
    assert.deepEqual([...files.keys()].sort(), Object.keys(step.exact).sort());
    for (const [path, expected] of Object.entries(step.exact)) assert.equal(files.get(path), caseFile(ENV, expected), path);
    assert.deepEqual([...absent].sort(), [...step.absent].sort());
  });
}

test("environment: other services get their own drop-in; empty sections are absent", () => {
  const { files, absent } = envFiles({ instance: { environment: { "amazon-ssm-agent": { A: "1" }, sshd: {} } } });
  assert.equal(files.get("/etc/systemd/system/amazon-ssm-agent.service.d/environment.conf"), '[Service]\nEnvironment="A=1"\n');
  assert.ok(absent.includes("/etc/systemd/system/sshd.service.d/environment.conf"));
});

test("environment: escaping of quotes, backslashes, control characters and % specifiers", () => {
  assert.equal(escapeSystemdValue('a "b" \\c'), 'a \\"b\\" \\\\c');
  assert.equal(escapeSystemdValue("line1\nline2\ttab"), "line1\\nline2\\ttab");
  assert.equal(escapeSystemdValue("100%"), "100%%");
  assert.equal(escapeSystemdValue("\x01"), "\\x01");
  assert.equal(escapeSystemdValue("naïve"), "naïve");
});

test("environment: bad service or variable names are errors naming the field", () => {
  const r = renderEnvironment({
    instance: { environment: { "bad/name": { A: "1" }, "kubelet.service": { A: "1" }, kubelet: { "1BAD": "x", OK: "y" } } },
  });
  assert.equal(r.ok, false);
  if (r.ok) return;
  const paths = r.errors.map((e) => e.where?.path).sort();
  assert.deepEqual(paths, [
    "spec.instance.environment.bad/name",
    "spec.instance.environment.kubelet.1BAD",
    "spec.instance.environment.kubelet.service",
  ]);
  for (const e of r.errors) assert.ok(e.hint);
});

test("network-name-resolution: exact bytes of 40-eks.conf", () => {
  const r = renderResolved(specOf("network-name-resolution", "config.yaml"));
  assert.ok(r.ok);
  if (!r.ok) return;
  assert.equal(r.value.length, 1);
  assert.equal(r.value[0]!.path, "/run/systemd/resolved.conf.d/40-eks.conf");
  assert.equal(r.value[0]!.content, caseFile("network-name-resolution", "expected-resolved.conf"));
});

test("resolved: nothing without nameservers or domains; one list alone leaves the other line empty", () => {
  const none = renderResolved({ instance: { network: {} } });
  assert.deepEqual(none, { ok: true, value: [] });
  const dnsOnly = renderResolved({ instance: { network: { nameservers: ["10.0.0.2"] } } });
  assert.ok(dnsOnly.ok);
  if (dnsOnly.ok) assert.equal(dnsOnly.value[0]!.content, "[Resolve]\nDNS=10.0.0.2\n\n");
  const bad = renderResolved({ instance: { network: { domains: ["a b"] } } });
  assert.equal(bad.ok, false);
  if (!bad.ok) assert.equal(bad.errors[0]!.where?.path, "spec.instance.network.domains[0]");
});
