/**
 * The summary `berth config check` prints after the warnings and errors: one
 * line per file read (MIME parts of one file or of the user data count as
 * that file), then the totals and the validation mode, so a directory of
 * user data collected from a fleet says at a glance which files need work.
 */
import type { SourcesReport } from "../sources/index.ts";
import { escapeControl, type BerthError } from "../util/result.ts";
import { isDroppable } from "../api/validation-mode.ts";

/** Problems the merged configuration has that no single file holds (e.g. a required field missing from every source). */
export const MERGED_ROW = "(the merged configuration)";

const MODE_ORIGIN = { flag: "from --validate", setting: "from BerthConfig spec.validation", default: "the default" } as const;

/** The file a text or problem belongs to: a user-data or MIME part name without its part suffix. */
function fileOfSource(source: string | undefined): string {
  if (source === undefined) return MERGED_ROW;
  return source.replace(/ \(MIME part \d+ of \d+\)$/, "");
}

const plural = (n: number, word: string): string => `${n.toLocaleString("en-US")} ${word}${n === 1 ? "" : "s"}`;

interface Row {
  warnings: number;
  errors: number;
}

function statusOf(r: Row): string {
  if (r.errors === 0 && r.warnings === 0) return "ok";
  return [r.errors ? plural(r.errors, "error") : "", r.warnings ? plural(r.warnings, "warning") : ""].filter(Boolean).join(", ");
}

/**
 * The summary text. `report` is absent when the sources could not even be
 * read; `errors` are every error of the check (decoding and merged validation).
 */
export function checkSummary(report: SourcesReport | undefined, errors: readonly BerthError[]): string {
  const rows = new Map<string, Row>();
  const row = (source: string | undefined): Row => {
    const key = fileOfSource(source);
    let r = rows.get(key);
    if (!r) rows.set(key, (r = { warnings: 0, errors: 0 }));
    return r;
  };
  for (const t of report?.texts ?? []) row(t);
  for (const w of report?.warnings ?? []) row(w.where?.source).warnings++;
  for (const e of errors) row(e.where?.source).errors++;
  const merged = rows.get(MERGED_ROW);
  rows.delete(MERGED_ROW);
  const lines: string[] = [];
  const mode = report ? `validation ${report.mode.mode}, ${MODE_ORIGIN[report.mode.from]}` : "the sources could not be read";
  lines.push(`summary (${mode}):`);
  const entries = [...rows.entries(), ...(merged ? [[MERGED_ROW, merged] as const] : [])];
  const width = Math.max(2, ...entries.map(([, r]) => statusOf(r).length));
  for (const [file, r] of entries) lines.push(`  ${statusOf(r).padEnd(width)}  ${escapeControl(file)}`);
  const files = [...rows.values()];
  const okFiles = files.filter((r) => r.errors === 0 && r.warnings === 0).length;
  const warned = files.filter((r) => r.errors === 0 && r.warnings > 0).length;
  const failed = files.filter((r) => r.errors > 0).length;
  const warnings = report?.warnings.length ?? 0;
  lines.push(
    `${plural(files.length, "file")}: ${okFiles} ok, ${warned} with warnings only, ${failed} with errors; ` +
      `${plural(warnings, "warning")} and ${plural(errors.length, "error")} in all`,
  );
  const droppable = errors.filter(isDroppable).length;
  if (droppable > 0)
    lines.push(
      `${plural(droppable, "error")} ${droppable === 1 ? "is an unknown field" : "are unknown fields"}: --validate=warn ` +
        `(or BerthConfig spec.validation: warn) would drop ${droppable === 1 ? "it" : "them"} with a warning, as nodeadm does silently`,
    );
  return lines.join("\n") + "\n";
}
