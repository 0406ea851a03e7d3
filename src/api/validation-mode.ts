/**
 * The validation mode: `strict` (berth's default) rejects what nodeadm
 * silently drops — unknown fields and unknown feature gates — while `warn`
 * drops them as nodeadm does and reports each as a warning, a migration path
 * for user data written for nodeadm. Every other problem (types, CIDRs,
 * ranges, enums, …) is an error in both modes.
 *
 * The mode comes from `--validate` when given, else from the merged
 * BerthConfig `spec.validation`, else strict. The setting is read after the
 * unknown fields are set aside, so it governs every document of every
 * source, its own included; a document that fails for another reason sets
 * nothing, that setting included.
 */
import type { BerthError } from "../util/result.ts";
import type { ConfigDocument, ValidationMode } from "./types.ts";

/** Error codes for input nodeadm drops without a word (decode.ts reports them). */
const DROPPABLE_CODES: ReadonlySet<string> = new Set(["config.unknown-field", "config.unknown-feature-gate"]);

export const isDroppable = (e: BerthError): boolean => DROPPABLE_CODES.has(e.code);

/** Where the mode in effect came from, for messages. */
export type ValidationModeOrigin = "flag" | "setting" | "default";

export interface EffectiveMode {
  mode: ValidationMode;
  from: ValidationModeOrigin;
}

/**
 * The BerthConfig `spec.validation` of `docs` as mergeConfigs (merge.ts)
 * merges it: a scalar, the last document that sets it wins.
 */
export function validationSetting(docs: readonly ConfigDocument[]): ValidationMode | undefined {
  let mode: ValidationMode | undefined;
  for (const d of docs) if (d.kind === "BerthConfig" && d.spec.validation !== undefined) mode = d.spec.validation;
  return mode;
}

/** The flag wins over the setting; strict when neither is given. */
export function effectiveMode(flag: ValidationMode | undefined, docs: readonly ConfigDocument[]): EffectiveMode {
  if (flag !== undefined) return { mode: flag, from: "flag" };
  const setting = validationSetting(docs);
  return setting !== undefined ? { mode: setting, from: "setting" } : { mode: "strict", from: "default" };
}

/**
 * Split decoding's problems by mode: in strict mode all are errors; in warn
 * mode the droppable ones are warnings, each field once (an alias can name
 * one key from several paths), in input order.
 */
export function applyValidationMode(
  problems: readonly BerthError[],
  mode: ValidationMode,
): { errors: BerthError[]; warnings: BerthError[] } {
  if (mode === "strict") return { errors: [...problems], warnings: [] };
  const errors: BerthError[] = [];
  const warnings: BerthError[] = [];
  const seen = new Set<string>();
  for (const p of problems) {
    if (!isDroppable(p)) {
      errors.push(p);
      continue;
    }
    const w = p.where;
    const key = `${w?.source ?? ""}\u0000${w?.line ?? ""}\u0000${w?.column ?? ""}\u0000${p.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    warnings.push(p);
  }
  return { errors, warnings };
}
