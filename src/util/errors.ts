/**
 * The one way a thrown value becomes text or a `BerthError` in the shell:
 * `errorMessage(e)` for a log line or a cause, `toBerthError(s)` where a call
 * that threw must end as a `Result`. Pure; never prints, never rethrows.
 */
import { BerthFailure, type BerthError, type Location } from "./result.ts";
import type { RetryExhausted } from "./retry.ts";

/** The message of anything thrown: an Error's `message`, else its string form. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// By name, not instanceof: retry.ts imports this module, so importing its class here would be a cycle.
function isRetryExhausted(e: unknown): e is RetryExhausted {
  return e instanceof Error && e.name === "RetryExhausted";
}

/**
 * Anything thrown, as BerthErrors: a `BerthFailure` (`SystemdError`,
 * `CriError`, …) keeps its own errors, also as the last error of a
 * `RetryExhausted`; anything else becomes one error `{ code, message:
 * "<what>: <its message>", hint, where, cause }`.
 */
export function toBerthErrors(e: unknown, code: string, what: string, hint?: string, where?: Location): BerthError[] {
  const inner = isRetryExhausted(e) ? e.lastError : e;
  if (inner instanceof BerthFailure && inner.errors.length > 0) return inner.errors;
  return [{ code, message: `${what}: ${errorMessage(e)}`, ...(where ? { where } : {}), ...(hint !== undefined ? { hint } : {}), cause: e }];
}

/** The first of `toBerthErrors`: for a step that reports one error. */
export function toBerthError(e: unknown, code: string, what: string, hint?: string, where?: Location): BerthError {
  return toBerthErrors(e, code, what, hint, where)[0] as BerthError;
}
