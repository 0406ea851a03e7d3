/**
 * maxPods: nodeadm's ENI formula, its fallback for unknown instance types, and
 * the optional CEL `maxPodsExpression`.
 *
 * The CEL library costs ~100 ms to import, which is most of the config phase's
 * budget, and almost no node sets an expression. So nothing here imports it
 * statically: `loadMaxPodsEvaluator()` pulls it in with a dynamic import (which
 * esbuild also keeps lazy in a single-file bundle), and the pure functions take
 * the loaded evaluator as an argument.
 */

import type { NodeConfigSpec } from "../api/types.ts";
import type { InstanceTypeFacts } from "../facts/types.ts";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import { errorMessage } from "../util/errors.ts";
import type * as Cel from "@bufbuild/cel";
import { MAX_INT32, type MaxPodsEvaluator } from "../api/rules.ts";

/** kubelet's own default, used when the instance type's ENI limits are unknown. */
export const DEFAULT_MAX_PODS = 110;

const MAX_PODS_EXPRESSION_PATH = "spec.kubelet.maxPodsExpression";

/**
 * The AL2/nodeadm formula: every ENI but the primary IP of each can hold a pod
 * IP, plus 2 for host-network pods (kube-proxy, aws-node).
 */
export function maxPodsFromEnis(enis: number, ipsPerEni: number): number {
  return enis * (ipsPerEni - 1) + 2;
}

/** The standard value for an instance type: the formula, or 110 when its ENI limits are unknown. */
export function standardMaxPods(t: InstanceTypeFacts): number {
  if (t.defaultEnis === undefined || t.ipv4PerEni === undefined) return DEFAULT_MAX_PODS;
  return maxPodsFromEnis(t.defaultEnis, t.ipv4PerEni);
}

function exprError(expression: string, message: string, cause?: unknown): BerthError {
  return {
    code: "config.max-pods-expression",
    message: `maxPodsExpression ${JSON.stringify(expression)}: ${message}`,
    where: { path: MAX_PODS_EXPRESSION_PATH },
    hint:
      "write a CEL expression over the integers default_enis, ips_per_eni and max_pods that yields a positive integer, " +
      "e.g. ((default_enis - 1) * (ips_per_eni - 1)) + 2",
    ...(cause !== undefined ? { cause } : {}),
  };
}

/** The subset of `@bufbuild/cel` used here, so tests can type against it without importing it. */
type CelModule = typeof Cel;

/**
 * Turn a CEL result into an int32 the way nodeadm's conversion to CEL `int`
 * does: ints as they are, doubles truncated toward zero, uints and integer
 * strings converted; anything else is an error.
 */
function toInteger(cel: CelModule, value: unknown): bigint | undefined {
  if (typeof value === "bigint") return value;
  if (typeof value === "number" && Number.isFinite(value)) return BigInt(Math.trunc(value));
  if (cel.isCelUint(value)) return value.value;
  if (typeof value === "string" && /^[+-]?\d+$/.test(value.trim())) return BigInt(value.trim());
  return undefined;
}

function toPositiveInt32(cel: CelModule, expression: string, value: unknown): Result<number> {
  const n = toInteger(cel, value);
  if (n === undefined) {
    return fail(exprError(expression, `the result ${celValueText(value)} is not an integer`));
  }
  if (n <= 0n || n > BigInt(MAX_INT32)) {
    return fail(exprError(expression, `the result ${n} is not a positive integer up to ${MAX_INT32}`));
  }
  return ok(Number(n));
}

function celValueText(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean" || value === null) return String(value);
  return `of type ${typeof value}`;
}

/** Typical variables (an m5.large: 3 ENIs of 10 addresses) for check(). */
const CHECK_BINDINGS = { default_enis: 3n, ips_per_eni: 10n, max_pods: BigInt(maxPodsFromEnis(3, 10)) };
/** CEL errors that other variable values could avoid. */
const VALUE_DEPENDENT = /divide by zero|modulus by zero|overflow|out of range|range error/i;

/** Build an evaluator over an already-loaded `@bufbuild/cel` module. */
function celMaxPodsEvaluator(cel: CelModule): MaxPodsEvaluator {
  return {
    check(expression) {
      try {
        cel.parse(expression);
      } catch (e) {
        return fail(exprError(expression, errorMessage(e), e));
      }
      // Run it once with typical values: an unknown variable or a type mismatch fails whatever
      // the values; arithmetic errors (divide by zero, overflow) may depend on them, so pass.
      let result: unknown;
      try {
        result = cel.run(expression, CHECK_BINDINGS);
      } catch {
        return ok(undefined);
      }
      if (cel.isCelError(result)) {
        if (VALUE_DEPENDENT.test(result.message)) return ok(undefined);
        const msg =
          result.message === "unresolved attribute" ? "unknown variable (known: default_enis, ips_per_eni, max_pods)" : result.message;
        return fail(exprError(expression, msg, result));
      }
      if (toInteger(cel, result) === undefined) return fail(exprError(expression, `the result ${celValueText(result)} is not an integer`));
      return ok(undefined);
    },
    evaluate(expression, vars) {
      const bindings = {
        default_enis: BigInt(vars.default_enis),
        ips_per_eni: BigInt(vars.ips_per_eni),
        max_pods: BigInt(vars.max_pods),
      };
      let result: unknown;
      try {
        result = cel.run(expression, bindings);
      } catch (e) {
        // run() is documented never to throw; guard anyway so a library bug is still a config error.
        return fail(exprError(expression, errorMessage(e), e));
      }
      if (cel.isCelError(result)) {
        const msg =
          result.message === "unresolved attribute" ? "unknown variable (known: default_enis, ips_per_eni, max_pods)" : result.message;
        return fail(exprError(expression, msg, result));
      }
      return toPositiveInt32(cel, expression, result);
    },
  };
}

let loaded: Promise<MaxPodsEvaluator> | undefined;

/** Import `@bufbuild/cel` (once) and return an evaluator. Call only when an expression is set. */
export function loadMaxPodsEvaluator(): Promise<MaxPodsEvaluator> {
  loaded ??= import("@bufbuild/cel").then((cel) => celMaxPodsEvaluator(cel));
  return loaded;
}

/**
 * The maxPods berth writes into config.json: the expression's value when one
 * is set and the ENI limits are known, else the standard value. Unlike
 * nodeadm, a bad expression is an error, not a silent fallback, because a node
 * that silently ignores its maxPods policy is worse than one that fails to join.
 * With unknown ENI limits nodeadm never evaluates the expression (110); berth
 * does the same but still syntax-checks it.
 */
export function computeMaxPods(spec: NodeConfigSpec, types: InstanceTypeFacts, evaluator?: MaxPodsEvaluator): Result<number> {
  const expression = spec.kubelet?.maxPodsExpression;
  const standard = standardMaxPods(types);
  if (expression === undefined || expression === "") return ok(standard);
  if (!evaluator) {
    return fail({
      code: "internal.cel-not-loaded",
      message: "maxPodsExpression is set but the CEL evaluator was not loaded",
      where: { path: MAX_PODS_EXPRESSION_PATH },
      hint: "call renderKubeletAsync(), or pass loadMaxPodsEvaluator()'s result to renderKubelet()",
    });
  }
  if (types.defaultEnis === undefined || types.ipv4PerEni === undefined) {
    const checked = evaluator.check(expression);
    return checked.ok ? ok(standard) : checked;
  }
  return evaluator.evaluate(expression, { default_enis: types.defaultEnis, ips_per_eni: types.ipv4PerEni, max_pods: standard });
}
