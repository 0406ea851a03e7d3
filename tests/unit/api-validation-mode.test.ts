/**
 * The validation mode (src/api/validation-mode.ts) on top of decoding
 * (src/api/decode.ts decodeSource): strict rejects unknown fields, warn drops
 * them as nodeadm does and says so; every other problem stays an error.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeDocuments, decodeSource } from "../../src/api/decode.ts";
import { applyValidationMode, effectiveMode, isDroppable, validationSetting } from "../../src/api/validation-mode.ts";
import { mergeConfigs } from "../../src/api/merge.ts";
import { encodeNodeConfigYaml } from "../../src/api/encode.ts";
import type { ConfigDocument } from "../../src/api/types.ts";

const SRC = "file:///etc/eks/nodeadm.d/test.yaml";
const NODE = "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n";
const BERTH = "apiVersion: berth.dev/v1alpha1\nkind: BerthConfig\nspec:\n";

test("a misspelled field: strict fails as before; the lenient document has it dropped, the problem kept", () => {
  const text = `${NODE}  cluster:\n    name: c\n  kubelet:\n    flag:\n      - --v=2\n    maxPodsExpression: "1"\n`;
  const strict = decodeDocuments(text, SRC);
  assert.equal(strict.ok, false);
  const d = decodeSource(text, SRC);
  assert.deepEqual(strict.ok ? [] : strict.errors, d.problems, "strict errors are exactly the problems");
  assert.equal(d.problems.length, 1);
  const p = d.problems[0]!;
  assert.equal(p.code, "config.unknown-field");
  assert.match(p.message, /^unknown field `flag`; did you mean `flags`\?$/);
  assert.deepEqual(p.where, { source: SRC, line: 7, column: 5, path: "spec.kubelet.flag" });
  assert.equal(d.docs.length, 1);
  assert.deepEqual(d.docs[0]!.spec, { cluster: { name: "c" }, kubelet: { maxPodsExpression: "1" } });
});

test("warn mode: unknown fields and feature gates become warnings; a type error stays an error and the document is not used", () => {
  const text = `${NODE}  featureGates:\n    Bogus: true\n  cluster:\n    nmae: c\n---\n${NODE}  cluster:\n    name: 5\n    cidrr: 10.0.0.0/16\n`;
  const d = decodeSource(text, SRC);
  const warn = applyValidationMode(d.problems, "warn");
  assert.deepEqual(
    warn.warnings.map((w) => [w.code, w.where?.line, w.where?.path]),
    [
      ["config.unknown-feature-gate", 5, "spec.featureGates.Bogus"],
      ["config.unknown-field", 7, "spec.cluster.nmae"],
      ["config.unknown-field", 14, "spec.cluster.cidrr"],
    ],
  );
  assert.deepEqual(
    warn.errors.map((e) => [e.code, e.where?.path]),
    [["config.wrong-type", "spec.cluster.name"]],
  );
  // Only the first document decodes (its feature gate and field dropped).
  assert.deepEqual(
    d.docs.map((x) => x.spec),
    [{ featureGates: {}, cluster: {} }],
  );
  const strict = applyValidationMode(d.problems, "strict");
  assert.equal(strict.errors.length, 4);
  assert.equal(strict.warnings.length, 0);
});

test("warn mode drops unknown fields inside lists and BerthConfig settings too; refinements still run", () => {
  const text = `${BERTH}  tasks:\n    - name: a\n      script: echo hi\n      timeout: 5\n    - name: b\n      scrpt: echo\n`;
  const d = decodeSource(text, SRC);
  const warn = applyValidationMode(d.problems, "warn");
  assert.deepEqual(
    warn.warnings.map((w) => w.where?.path),
    ["spec.tasks[0].timeout", "spec.tasks[1].scrpt"],
  );
  // Without `scrpt`, task b has neither pullImages nor script: an error in both modes.
  assert.deepEqual(
    warn.errors.map((e) => e.code),
    ["config.invalid-task"],
  );
  const ok = decodeSource(`${BERTH}  tasks:\n    - name: a\n      script: echo hi\n      timeout: 5\n`, SRC);
  assert.deepEqual(
    ok.docs.map((x) => x.spec),
    [{ tasks: [{ name: "a", script: "echo hi" }] }],
  );
});

test("warn mode: one warning per written field, also when an alias repeats it", () => {
  // The anchored map is both spec.run and spec.agent: its one unknown key is reported at one place, once.
  const d = decodeSource(`${BERTH}  run: &r\n    bogus: 1\n  agent: *r\n`, SRC);
  assert.deepEqual(
    d.problems.map((p) => p.where?.path),
    ["spec.run.bogus", "spec.agent.bogus"],
  );
  const warn = applyValidationMode(d.problems, "warn");
  assert.equal(warn.errors.length, 0);
  assert.deepEqual(
    warn.warnings.map((w) => `${w.where?.line}:${w.where?.column} ${w.message}`),
    ["5:5 unknown field `bogus`"],
  );
  assert.deepEqual(
    d.docs.map((x) => x.spec),
    [{ run: {}, agent: {} }],
  );
});

test("the mode: --validate wins over the setting, the last setting wins, strict by default", () => {
  const docs = (...modes: Array<"strict" | "warn" | undefined>): ConfigDocument[] =>
    modes.map((m) => ({ kind: "BerthConfig", source: SRC, spec: m ? { validation: m } : {} }));
  assert.deepEqual(effectiveMode(undefined, []), { mode: "strict", from: "default" });
  assert.deepEqual(effectiveMode(undefined, docs("warn")), { mode: "warn", from: "setting" });
  assert.deepEqual(effectiveMode(undefined, docs("warn", undefined, "strict")), { mode: "strict", from: "setting" });
  assert.deepEqual(effectiveMode("strict", docs("warn")), { mode: "strict", from: "flag" });
  assert.deepEqual(effectiveMode("warn", docs("strict")), { mode: "warn", from: "flag" });
  // The merge keeps the same rule for the merged config (and `config dump`).
  assert.equal(mergeConfigs(docs("warn", undefined, "strict")).berth.validation, "strict");
  assert.equal(validationSetting(docs("strict", "warn")), mergeConfigs(docs("strict", "warn")).berth.validation);
});

test("the setting counts in the document that also has an unknown field; a misspelled setting does not", () => {
  const own = decodeSource(`${BERTH}  validation: warn\n  tsks: []\n`, SRC);
  assert.deepEqual(effectiveMode(undefined, own.docs), { mode: "warn", from: "setting" });
  assert.deepEqual(applyValidationMode(own.problems, "warn").errors, []);

  const typo = decodeSource(`${BERTH}  validaton: warn\n`, SRC);
  assert.deepEqual(effectiveMode(undefined, typo.docs), { mode: "strict", from: "default" });
  const errors = applyValidationMode(typo.problems, "strict").errors;
  assert.match(errors[0]!.message, /unknown field `validaton`; did you mean `validation`\?/);

  const badValue = decodeSource(`${BERTH}  validation: lenient\n  tsks: []\n`, SRC);
  assert.deepEqual(badValue.docs, [], "a document with another error sets nothing");
  assert.equal(badValue.problems.filter((p) => !isDroppable(p)).length, 1);
  assert.match(badValue.problems.find((p) => !isDroppable(p))!.message, /allowed values: strict, warn/);
});

test("the setting survives the YAML dump and reads back", () => {
  const d = decodeDocuments(`${BERTH}  validation: warn\n  rebootAfterBootstrap: true\n`, SRC);
  assert.ok(d.ok);
  const yaml = encodeNodeConfigYaml(mergeConfigs(d.value));
  assert.match(yaml, /^ {2}validation: warn$/m);
  const back = decodeDocuments(yaml, "dump");
  assert.ok(back.ok);
  assert.equal(mergeConfigs(back.value).berth.validation, "warn");
});
