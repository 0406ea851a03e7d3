/**
 * Regenerate data/schema/*.json from the zod schemas.
 * Run: node --import tsx scripts/gen-schema.ts
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { berthConfigJsonSchema, nodeConfigJsonSchema, schemaText } from "../src/api/json-schema.ts";

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "data", "schema");
mkdirSync(dir, { recursive: true });
for (const [name, schema] of [
  ["nodeconfig.schema.json", nodeConfigJsonSchema()],
  ["berthconfig.schema.json", berthConfigJsonSchema()],
] as const) {
  writeFileSync(join(dir, name), schemaText(schema));
  process.stdout.write(`wrote data/schema/${name}\n`);
}
