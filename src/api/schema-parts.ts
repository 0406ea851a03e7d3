/**
 * What the NodeConfig and BerthConfig schemas (schema.ts, berth-schema.ts)
 * share: custom issues with a stable code, and the field types both use.
 * Field rules come from rules.ts; nothing here decides what is valid alone.
 */
import * as z from "zod";
import { isHttpUrl } from "./rules.ts";

/** The `params` of a custom issue raised by a schema refinement (decode.ts reads them). */
export interface CustomIssueParams {
  code: string;
  hint?: string;
  /** 1-based position inside an embedded TOML text (containerd.config). */
  tomlLine?: number;
  tomlColumn?: number;
}

export const custom = (params: CustomIssueParams, message: string, input: unknown, path?: PropertyKey[]) => ({
  code: "custom" as const,
  message,
  input,
  params,
  ...(path ? { path } : {}),
});

export const quote = (v: unknown): string => (typeof v === "string" ? JSON.stringify(v) : String(v));

/** Compile-time check helpers: the schemas must produce values assignable to the contracts in types.ts. */
export type Assert<T extends true> = T;
export type Extends<A, B> = [A] extends [B] ? true : false;

export const jsonObject = z.record(z.string(), z.json());

export const httpUrl = (what: string, example: string) =>
  z.string().superRefine((v, ctx) => {
    if (!isHttpUrl(v))
      ctx.addIssue(
        custom(
          { code: "config.invalid-url", hint: `use an absolute http(s) URL, e.g. ${example}` },
          `${quote(v)} is not a valid http(s) URL for ${what}`,
          v,
        ),
      );
  });

export const metadataSchema = z
  .looseObject({
    name: z.string().optional(),
    namespace: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  })
  .describe("Object metadata (ignored by berth).");
