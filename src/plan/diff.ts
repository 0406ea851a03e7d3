/**
 * Unified diffs for `--dry-run`, via the `diff` package (the Myers
 * implementation most JS tooling uses; hand-writing an LCS diff would only
 * add bugs). Loaded lazily: only dry runs pay for it.
 */
import { createTwoFilesPatch } from "diff";

export interface DiffSide {
  bytes: Uint8Array;
  /** Permission bits; -1 when the old path is not a regular file (a symlink). */
  mode: number;
  /** `uid:gid`, when ownership is managed; a change shows as `old owner`/`new owner` lines. */
  owner?: string;
}

const decoder = new TextDecoder("utf-8", { fatal: true });

function asText(b: Uint8Array): string | undefined {
  try {
    const s = decoder.decode(b);
    return s.includes("\0") ? undefined : s;
  } catch {
    return undefined;
  }
}

const octal = (m: number): string => (0o100000 | m).toString(8);

/**
 * A unified diff from `old` to `next` for one host path, git-style headers
 * (`a/…`, `b/…`, `/dev/null` for a create or remove) plus mode lines when
 * only or also the mode changes. Always ends with a newline.
 */
export function unifiedDiff(hostPath: string, old: DiffSide | undefined, next: DiffSide | undefined): string {
  const head: string[] = [];
  if (old && next && old.mode !== next.mode && old.mode >= 0) head.push(`old mode ${octal(old.mode)}`, `new mode ${octal(next.mode)}`);
  if (!old && next) head.push(`new file mode ${octal(next.mode)}`);
  if (old && !next && old.mode >= 0) head.push(`deleted file mode ${octal(old.mode)}`);
  if (old?.owner !== undefined && next?.owner !== undefined && old.owner !== next.owner && old.mode >= 0)
    head.push(`old owner ${old.owner}`, `new owner ${next.owner}`);
  const a = old ? asText(old.bytes) : "";
  const b = next ? asText(next.bytes) : "";
  const prefix = head.length ? head.join("\n") + "\n" : "";
  if (a === undefined || b === undefined) {
    return `${prefix}Binary files ${old ? "a" + hostPath : "/dev/null"} and ${next ? "b" + hostPath : "/dev/null"} differ\n`;
  }
  if (a === b) return prefix || `(no content change) ${hostPath}\n`;
  const patch = createTwoFilesPatch(old ? `a${hostPath}` : "/dev/null", next ? `b${hostPath}` : "/dev/null", a, b, undefined, undefined, {
    context: 3,
  });
  // Drop the "Index:"/"====" preamble the library adds; keep ---/+++ and hunks.
  const body = patch
    .split("\n")
    .filter((l, i) => !(i < 2 && (l.startsWith("Index:") || l.startsWith("===="))))
    .join("\n");
  return prefix + (body.endsWith("\n") ? body : body + "\n");
}
