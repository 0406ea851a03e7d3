/**
 * renderKubelet against nodeadm's conformance data: every step in cases.yaml
 * whose checks touch a kubelet file is run through the renderer with the
 * conformance node's facts built by hand, and every json/yaml/exact/contains
 * check on a kubelet path is applied (berth_differs included).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import type { JsonObject, JsonValue, NodeConfigSpec } from "../../src/api/types.ts";
import type { NodeFacts } from "../../src/facts/types.ts";
import type { PlannedFile } from "../../src/plan/types.ts";
import { renderKubelet, renderKubeletAsync } from "../../src/render/kubelet.ts";
import { mergeKubeletConfig } from "../../src/render/kubelet-config.ts";
import { conformanceFacts, CONFORMANCE_INSTANCE } from "../fixtures/node.ts";

const ROOT = "/work/shared/conformance/nodeadm-e2e";
const KUBELET_PATHS = [
  "/etc/kubernetes/kubelet/",
  "/etc/eks/kubelet/",
  "/var/lib/kubelet/",
  "/etc/eks/image-credential-provider/",
  "/etc/kubernetes/pki/",
];
const isKubeletPath = (p: string) => KUBELET_PATHS.some((k) => p.startsWith(k));

interface Step {
  kubelet?: string;
  source?: string;
  sources?: string[];
  command?: string;
  expect?: string;
  json?: Record<string, string>;
  yaml?: Record<string, string>;
  exact?: Record<string, string>;
  contains?: Record<string, string>;
  not_contains?: Record<string, string>;
  berth_differs?: Record<string, Record<string, JsonValue>>;
}
interface Case {
  kubelet?: string;
  instance_type?: string;
  steps: Step[];
}

const cases = parseYaml(readFileSync(path.join(ROOT, "cases.yaml"), "utf8"), { merge: true }) as Record<string, Case>;

/** The conformance node with a case's kubelet version; an instance type other than m4.xlarge is unknown to the table. */
function caseFacts(kubeletVersion: string, instanceType = "m4.xlarge"): NodeFacts {
  const known = instanceType === "m4.xlarge";
  return conformanceFacts({
    instance: { ...CONFORMANCE_INSTANCE, type: instanceType },
    ...(known ? {} : { instanceType: { origin: "unknown" } }),
    kubeletVersion,
  });
}

/** NodeConfig specs in a config file: YAML documents, or the node.eks.aws parts of a MIME multipart. */
function specsOf(text: string): NodeConfigSpec[] {
  let yamlParts = [text];
  if (text.startsWith("MIME-Version")) {
    const boundary = /boundary="([^"]+)"/.exec(text)?.[1];
    assert.ok(boundary);
    yamlParts = text
      .split(`--${boundary}`)
      .filter((p) => /Content-Type: application\/node\.eks\.aws/.test(p))
      .map((p) => p.slice(p.indexOf("\n\n") + 2));
  }
  const specs: NodeConfigSpec[] = [];
  for (const part of yamlParts) {
    for (const doc of parseAllDocuments(part)) {
      const v = doc.toJS() as { kind?: string; spec?: NodeConfigSpec } | null;
      if (v?.kind === "NodeConfig" && v.spec) specs.push(v.spec);
    }
  }
  return specs;
}

function loadSpec(caseName: string, source: string): NodeConfigSpec {
  assert.ok(source.startsWith("file://"), source);
  const specs = specsOf(readFileSync(path.join(ROOT, "cases", caseName, source.slice("file://".length)), "utf8"));
  return specs.reduce<NodeConfigSpec>((a, s) => mergeKubeletConfig(a as JsonObject, s as JsonObject), {});
}

function text(f: PlannedFile): string {
  return typeof f.content === "string" ? f.content : Buffer.from(f.content).toString("utf8");
}

function setDotted(obj: JsonObject, dotted: string, value: JsonValue): void {
  const keys = dotted.split(".");
  let o: JsonObject = obj;
  for (const k of keys.slice(0, -1)) o = o[k] as JsonObject;
  o[keys[keys.length - 1] as string] = value;
}

let checked = 0;
for (const [name, c] of Object.entries(cases)) {
  c.steps.forEach((step, i) => {
    const checks = [step.json, step.yaml, step.exact, step.contains, step.not_contains].flatMap((m) => Object.keys(m ?? {}));
    if (!checks.some(isKubeletPath) || step.command || !step.source) return;
    test(`conformance ${name} step ${i + 1} (kubelet ${step.kubelet ?? c.kubelet})`, async () => {
      const version = step.kubelet ?? c.kubelet ?? "1.35.0";
      const spec = loadSpec(name, step.source as string);
      const facts = caseFacts(version, c.instance_type);
      const r = await renderKubeletAsync(spec, facts);
      if (!r.ok) assert.fail(JSON.stringify(r.errors, null, 2));
      const byPath = new Map(r.value.map((f) => [f.path, f]));
      const get = (p: string) => {
        const f = byPath.get(p);
        assert.ok(f, `renderer produced no ${p}; produced ${[...byPath.keys()].join(", ")}`);
        return f;
      };
      const caseFile = (f: string) => readFileSync(path.join(ROOT, "cases", name, f), "utf8");
      for (const [p, f] of Object.entries(step.json ?? {})) {
        if (!isKubeletPath(p)) continue;
        const expected = JSON.parse(caseFile(f)) as JsonObject;
        for (const [k, v] of Object.entries(step.berth_differs?.[p] ?? {})) setDotted(expected, k, v);
        assert.deepEqual(JSON.parse(text(get(p))), expected, `${p} vs ${f}`);
        checked++;
      }
      for (const [p, f] of Object.entries(step.yaml ?? {})) {
        if (!isKubeletPath(p)) continue;
        assert.deepEqual(parseYaml(text(get(p))), parseYaml(caseFile(f)), `${p} vs ${f}`);
        // The bonus: identical bytes.
        assert.equal(text(get(p)), caseFile(f));
        checked++;
      }
      for (const [p, f] of Object.entries(step.exact ?? {})) {
        if (!isKubeletPath(p)) continue;
        assert.equal(text(get(p)), caseFile(f));
        checked++;
      }
      for (const [p, re] of Object.entries(step.contains ?? {})) {
        if (!isKubeletPath(p)) continue;
        assert.match(text(get(p)), new RegExp(re), p);
        checked++;
      }
      for (const [p, re] of Object.entries(step.not_contains ?? {})) {
        if (!isKubeletPath(p)) continue;
        assert.doesNotMatch(text(get(p)), new RegExp(re), p);
        checked++;
      }
      // Deterministic: rendering again gives the same bytes.
      const again = await renderKubeletAsync(spec, facts);
      assert.ok(again.ok);
      assert.deepEqual(again.value, r.value);
    });
  });
}

test("every kubelet conformance check ran", { concurrency: false }, () => {
  // Registered last, so it runs after the case tests above.
  assert.ok(checked >= 20, `only ${checked} checks ran`);
});

test("credential provider config is byte-identical to nodeadm's", () => {
  const spec = loadSpec("image-credential-provider", "file://config.yaml");
  for (const [v, f] of [
    ["1.31.0", "expected-image-credential-provider-config-1.31.json"],
    ["1.36.0", "expected-image-credential-provider-config.json"],
  ] as const) {
    const r = renderKubelet(spec, caseFacts(v));
    assert.ok(r.ok);
    const file = r.value.find((x) => x.path === "/etc/eks/image-credential-provider/config.json");
    assert.equal(file?.content, readFileSync(path.join(ROOT, "cases/image-credential-provider", f), "utf8"));
  }
});

test("files, modes and components", () => {
  const spec = loadSpec("kubelet-config-set-empty", "file://config.yaml");
  const r = renderKubelet(spec, caseFacts("1.35.0"));
  assert.ok(r.ok);
  assert.deepEqual(
    r.value.map((f) => [f.path, f.mode.toString(8), f.component]),
    [
      ["/etc/eks/image-credential-provider/config.json", "644", "kubelet"],
      ["/etc/eks/kubelet/environment", "644", "kubelet"],
      ["/etc/kubernetes/kubelet/config.json", "644", "kubelet"],
      ["/etc/kubernetes/kubelet/config.json.d/40-nodeadm.conf", "644", "kubelet"],
      ["/etc/kubernetes/pki/ca.crt", "644", "kubelet"],
      ["/var/lib/kubelet/kubeconfig", "600", "kubelet"],
    ],
  );
  const ca = r.value.find((f) => f.path === "/etc/kubernetes/pki/ca.crt");
  assert.equal(Buffer.from(ca?.content as Uint8Array).toString(), "certificateAuthority");
});
