import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { berthConfigJsonSchema, nodeConfigJsonSchema, schemaText } from "../../src/api/json-schema.ts";

const DIR = new URL("../../data/schema/", import.meta.url);

test("shipped JSON Schemas equal freshly generated output (run scripts/gen-schema.ts)", () => {
  assert.equal(readFileSync(new URL("nodeconfig.schema.json", DIR), "utf8"), schemaText(nodeConfigJsonSchema()));
  assert.equal(readFileSync(new URL("berthconfig.schema.json", DIR), "utf8"), schemaText(berthConfigJsonSchema()));
});

test("schemas name the document types and are strict", () => {
  const n = nodeConfigJsonSchema() as {
    properties: Record<string, { enum?: string[] }>;
    required: string[];
    additionalProperties: boolean;
  };
  assert.deepEqual(n.properties["apiVersion"]?.enum, ["node.eks.aws/v1alpha1"]);
  assert.deepEqual(n.properties["kind"]?.enum, ["NodeConfig"]);
  assert.deepEqual(n.required, ["apiVersion", "kind"]);
  assert.equal(n.additionalProperties, false);
  const b = berthConfigJsonSchema() as { properties: Record<string, { enum?: string[] }> };
  assert.deepEqual(b.properties["kind"]?.enum, ["BerthConfig"]);
  assert.match(JSON.stringify(b), /"oneOf":\[\{"required":\["pullImages"\]\},\{"required":\["script"\]\}\]/);
});
