/**
 * Errors are values until the CLI prints them.
 *
 * A `BerthError` always says what was wrong (`message`), where (`where`:
 * source, line, column, field path) and what to do (`hint`). Functions in the
 * pure core return `Result<T>`; only the CLI turns an error into text and an
 * exit status.
 */

export interface Location {
  /** The config source or file, e.g. `file:///etc/eks/nodeadm.d/a.yaml`, `imds://user-data (part 2)`. */
  source?: string;
  /** 1-based line and column inside the source. */
  line?: number;
  column?: number;
  /** Dotted field path, e.g. `spec.cluster.cidr`. */
  path?: string;
}

export interface BerthError {
  /** Stable machine-readable code, e.g. `config.unknown-field`, `facts.imds-timeout`. */
  code: string;
  /** What was wrong, one sentence. */
  message: string;
  where?: Location;
  /** What to do about it. */
  hint?: string;
  /** The underlying error, kept for logs (never printed as a stack trace). */
  cause?: unknown;
}

export type Result<T> = { ok: true; value: T } | { ok: false; errors: BerthError[] };

export const ok = <T>(value: T): Result<T> => ({ ok: true, value });
export const fail = <T = never>(...errors: BerthError[]): Result<T> => ({ ok: false, errors });

/** A thrown wrapper for the imperative shell, so async edges can bail out with a value. */
export class BerthFailure extends Error {
  readonly errors: BerthError[];
  constructor(errors: BerthError[] | BerthError) {
    const list = Array.isArray(errors) ? errors : [errors];
    super(list.map((e) => e.message).join("; "));
    this.errors = list;
  }
}

/** Unwrap a Result in the shell: throws BerthFailure on error. */
export function unwrap<T>(r: Result<T>): T {
  if (r.ok) return r.value;
  throw new BerthFailure(r.errors);
}

/**
 * A user-supplied string made safe to print inside one line: control
 * characters (C0, DEL, C1, and the Unicode line and paragraph separators)
 * become JSON-style escapes (`\n`, `\u001b`), so no input can start a line of
 * its own (a forged `error:` or `hint:`) or drive the terminal.
 */
export function escapeControl(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    switch (c) {
      case "\n":
        return "\\n";
      case "\r":
        return "\\r";
      case "\t":
        return "\\t";
      default:
        return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
    }
  });
}

/**
 * `source:line:column: path: message` + hint, the one way errors are printed.
 * Every part may carry user input (a key, a file name, a value), so each is
 * escaped: one error is always exactly its `error:` line and its `hint:` line.
 */
export function formatError(e: BerthError): string {
  return formatProblem("error", e);
}

/** A problem that did not stop berth (e.g. an unknown field `--validate=warn` dropped), printed as formatError prints errors. */
export function formatWarning(e: BerthError): string {
  return formatProblem("warning", e);
}

function formatProblem(label: "error" | "warning", e: BerthError): string {
  const w = e.where;
  const parts: string[] = [];
  if (w?.source) parts.push(w.line !== undefined ? `${escapeControl(w.source)}:${w.line}:${w.column ?? 1}` : escapeControl(w.source));
  if (w?.path) parts.push(escapeControl(w.path));
  const head = parts.length ? `${parts.join(": ")}: ` : "";
  return `${label}: ${head}${escapeControl(e.message)}${e.hint ? `\n  hint: ${escapeControl(e.hint)}` : ""}`;
}
