/**
 * JSON Schema (draft 2020-12) for NodeConfig and BerthConfig, generated from
 * the zod schemas so editors can complete and check config files. The shipped
 * copies live in data/schema/ (scripts/gen-schema.ts writes them; a test keeps
 * them in sync).
 */
import * as z from "zod";
import { berthConfigDocumentSchema, taskSchema } from "./berth-schema.ts";
import { nodeConfigDocumentSchema } from "./schema.ts";
import type { JsonObject } from "./types.ts";

const BASE = "https://berth.dev/schema";

function generate(schema: z.ZodType, id: string, title: string): JsonObject {
  const out = z.toJSONSchema(schema, {
    target: "draft-2020-12",
    io: "input",
    unrepresentable: "any",
    override: (ctx) => {
      // "Exactly one of pullImages/script" is a refinement in zod; say it in the schema too.
      if (ctx.zodSchema === taskSchema) {
        ctx.jsonSchema.oneOf = [{ required: ["pullImages"] }, { required: ["script"] }];
      }
      // Some editors complete from `enum` but not `const`: give both for apiVersion/kind.
      if (typeof ctx.jsonSchema.const === "string") ctx.jsonSchema.enum = [ctx.jsonSchema.const];
    },
  }) as JsonObject;
  // zod names the recursive JSON-value definition `__schema0`; give it a readable name.
  const named = JSON.parse(JSON.stringify(out).replaceAll("__schema0", "JsonValue")) as JsonObject;
  return { $id: `${BASE}/${id}`, title, ...named };
}

export function nodeConfigJsonSchema(): JsonObject {
  return generate(nodeConfigDocumentSchema, "nodeconfig.schema.json", "NodeConfig (node.eks.aws/v1alpha1)");
}

export function berthConfigJsonSchema(): JsonObject {
  return generate(berthConfigDocumentSchema, "berthconfig.schema.json", "BerthConfig (berth.dev/v1alpha1)");
}

/** The text written to data/schema/*.json: stable key order as generated, 2-space indent, final newline. */
export function schemaText(schema: JsonObject): string {
  return `${JSON.stringify(schema, null, 2)}\n`;
}
