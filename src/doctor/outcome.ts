/**
 * Small helpers the checks share to turn what they saw into a CheckOutcome:
 * BerthErrors as a finding line, a thrown value's cause chain, a quoted
 * excerpt. Pure.
 */
import type { BerthError } from "../util/result.ts";
import { formatError } from "../util/result.ts";
import type { CheckOutcome } from "./types.ts";

export const NOTHING_TO_DO = "nothing to do";

export function passed(finding: string, hint = NOTHING_TO_DO, detail?: string[]): CheckOutcome {
  return { status: "pass", finding, hint, ...(detail ? { detail } : {}) };
}

export function warned(finding: string, hint: string, detail?: string[]): CheckOutcome {
  return { status: "warn", finding, hint, ...(detail ? { detail } : {}) };
}

export function failed(finding: string, hint: string, detail?: string[]): CheckOutcome {
  return { status: "fail", finding, hint, ...(detail ? { detail } : {}) };
}

/** One BerthError as a finding line: `source:line:col: path: message`, as berth prints errors, without `error:` and the hint. */
export function errorLine(e: BerthError): string {
  const { hint: _hint, ...rest } = e;
  return formatError(rest).replace(/^error: /, "");
}

/** BerthErrors as an outcome: the first one's line and hint, and how many more there are. */
export function fromErrors(status: "warn" | "fail", errors: readonly BerthError[], fallbackHint: string, more?: string): CheckOutcome {
  const first = errors[0];
  if (!first) return { status, finding: "failed without an error message", hint: fallbackHint };
  const extra = errors.length > 1 ? ` (and ${errors.length - 1} more${more ? `: ${more}` : ""})` : "";
  return { status, finding: `${errorLine(first)}${extra}`, hint: first.hint ?? fallbackHint };
}

/**
 * The first value in `e`'s cause chain (Error.cause, RetryExhausted.lastError,
 * BerthFailure.errors[].cause) that `pred` accepts.
 */
export function findCause<T>(e: unknown, pred: (x: unknown) => x is T): T | undefined {
  const seen = new Set<unknown>();
  const queue: unknown[] = [e];
  while (queue.length) {
    const x = queue.shift();
    if (x === undefined || x === null || seen.has(x)) continue;
    seen.add(x);
    if (pred(x)) return x;
    if (typeof x !== "object") continue;
    const o = x as { cause?: unknown; lastError?: unknown; errors?: unknown };
    queue.push(o.cause, o.lastError);
    if (Array.isArray(o.errors)) for (const be of o.errors) queue.push((be as { cause?: unknown } | undefined)?.cause);
  }
  return undefined;
}

/** `s` cut to `max` characters with an ellipsis, for quoting a log line or a response body in a finding. */
export function excerpt(s: string, max = 160): string {
  const t = s.replace(/\s+/g, " ").trim();
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

/** A whole number of days (or hours, under two days) from ms, for "expires in …". */
export function humanDuration(ms: number): string {
  const h = Math.round(Math.abs(ms) / 3_600_000);
  return h < 48 ? `${h}h` : `${Math.round(h / 24)} days`;
}
