/**
 * Field rules that validation (schema.ts, validate.ts) enforces and renderers
 * rely on, each defined once so `berth config check` and `berth init` apply
 * the very same rule. Pure (node:net only): renderers import them for their
 * own guards without loading the schema.
 */

import { isIPv4, isIPv6 } from "node:net";
import type { BerthError, Result } from "../util/result.ts";
import type { Task } from "./types.ts";

/** `address/prefix`, IPv4 or IPv6 (no zone). */
export function isCidr(s: string): boolean {
  const slash = s.indexOf("/");
  if (slash < 0 || slash !== s.lastIndexOf("/")) return false;
  const ip = s.slice(0, slash);
  const bits = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bits)) return false;
  const n = Number(bits);
  if (isIPv4(ip)) return n <= 32;
  if (isIPv6(ip) && !ip.includes("%")) return n <= 128;
  return false;
}

/** An absolute http(s) URL with a host. */
export function isHttpUrl(s: string): boolean {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return false;
  }
  return (u.protocol === "https:" || u.protocol === "http:") && u.hostname !== "";
}

const PORT_RE = /^\d{1,5}$/;

/** `host:port` or `[v6]:port`; an empty host means every address. */
export function isHostPort(s: string): boolean {
  let host: string;
  let port: string;
  if (s.startsWith("[")) {
    const end = s.indexOf("]");
    if (end < 0 || s[end + 1] !== ":") return false;
    host = s.slice(1, end);
    port = s.slice(end + 2);
    if (!isIPv6(host)) return false;
  } else {
    const colon = s.lastIndexOf(":");
    if (colon < 0) return false;
    host = s.slice(0, colon);
    port = s.slice(colon + 1);
    if (host.includes(":")) return false;
    if (host !== "" && !isIPv4(host) && !/^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$/.test(host)) return false;
  }
  return PORT_RE.test(port) && Number(port) <= 65535;
}

const BASE64_ALPHABET = /^[A-Za-z0-9+/]*$/;

/**
 * Go's encoding/base64 StdEncoding as used for []byte in JSON: padded, CR/LF
 * ignored. Linear and without backtracking: a regular expression with a
 * repeated group overflows V8's backtracking stack on a megabyte of input.
 */
export function isStdBase64(s: string): boolean {
  const t = s.includes("\r") || s.includes("\n") ? s.replace(/[\r\n]/g, "") : s;
  if (t.length === 0 || t.length % 4 !== 0) return false;
  const pad = t.endsWith("==") ? 2 : t.endsWith("=") ? 1 : 0;
  return BASE64_ALPHABET.test(t.slice(0, t.length - pad));
}

/**
 * A kubelet flag may not contain control characters other than tab: a
 * newline would start a new variable in the kubelet's environment file (and
 * NUL ends it). Spaces are allowed as in nodeadm (`--v 5`).
 */
// eslint-disable-next-line no-control-regex
const FLAG_CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
export function flagHasControlCharacter(flag: string): boolean {
  return FLAG_CONTROL.test(flag);
}

// A unit name prefix: systemd allows ASCII letters, digits, ":-_.\\"; `@` (templates) is left out on purpose.
const SERVICE_NAME = /^[A-Za-z0-9:_.\\-]+$/;
/** A key of `instance.environment`: `default`, or a service name without `.service` (it would become kubelet.service.service.d). */
export function isEnvironmentService(name: string): boolean {
  return name === "default" || (SERVICE_NAME.test(name) && !name.endsWith(".service"));
}

// POSIX-portable environment variable names; systemd rejects anything else with a warning and drops it.
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
export function isEnvironmentName(name: string): boolean {
  return ENV_NAME.test(name);
}

// resolved.conf entries are space-separated on one line: whitespace or control characters would split or break it.
// eslint-disable-next-line no-control-regex
const BAD_NETWORK_ENTRY = /[\s\u0000-\u001f\u007f]/;
/** A nameserver or search domain that fits one resolved.conf list entry. */
export function isNetworkEntry(v: string): boolean {
  return v !== "" && !BAD_NETWORK_ENTRY.test(v);
}

/** A task name: unit-name-safe and shell-safe, a DNS label (lower-case, digits, '-', 1..63 characters). */
export const TASK_NAME = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;

// registry/path:tag@digest characters only (no whitespace, quotes or systemd specials).
const IMAGE_REF = /^[A-Za-z0-9][A-Za-z0-9._\-/:@+]*$/;
export function isImageReference(v: string): boolean {
  return IMAGE_REF.test(v);
}

/**
 * The same task rules as a list of errors, for callers that hold a BerthSpec
 * without having run the schema (the units renderer guards with it).
 */
export function taskErrors(tasks: readonly Task[]): BerthError[] {
  const errors: BerthError[] = [];
  const seen = new Set<string>();
  tasks.forEach((t, i) => {
    const at = `berth.tasks[${i}]`;
    if (!TASK_NAME.test(t.name)) {
      errors.push({
        code: "config.task-name",
        message: `task name ${JSON.stringify(t.name)} cannot name a unit`,
        where: { path: `${at}.name` },
        hint: "use lower-case letters, digits and '-', starting and ending with a letter or digit (at most 63 characters)",
      });
    } else if (seen.has(t.name)) {
      errors.push({
        code: "config.task-duplicate",
        message: `task name "${t.name}" is used twice`,
        where: { path: `${at}.name` },
        hint: "give every task its own name",
      });
    }
    seen.add(t.name);
    if (t.pullImages !== undefined) {
      if (t.pullImages.length === 0) {
        errors.push({
          code: "config.task-empty",
          message: `task "${t.name}" has an empty pullImages list`,
          where: { path: `${at}.pullImages` },
          hint: "list at least one image, or remove the task",
        });
      }
      t.pullImages.forEach((img, j) => {
        if (!isImageReference(img)) {
          errors.push({
            code: "config.task-image",
            message: `${JSON.stringify(img)} is not an image reference`,
            where: { path: `${at}.pullImages[${j}]` },
            hint: "write it as registry/repository:tag or registry/repository@sha256:digest",
          });
        }
      });
    } else if (t.script === undefined || t.script.trim() === "") {
      errors.push({
        code: "config.task-empty",
        message: `task "${t.name}" has neither pullImages nor a script`,
        where: { path: at },
        hint: "set pullImages (a list of images) or script (a shell script)",
      });
    }
  });
  return errors;
}

/** maxPods is an int32 in KubeletConfiguration. */
export const MAX_INT32 = 2_147_483_647;

/** Variables a maxPodsExpression may use; names are nodeadm's, so existing expressions keep working. */
export interface MaxPodsVariables {
  default_enis: number;
  ips_per_eni: number;
  /** The standard ENI-formula value, so `max_pods + 2` style tweaks work. */
  max_pods: number;
}

/** Evaluates a maxPodsExpression (CEL; src/render/max-pods.ts builds one) against the variables; a value or an error, never throws. */
export interface MaxPodsEvaluator {
  /**
   * What can be checked while the variables are unknown (`config check`, an
   * instance type without ENI limits): the syntax, and what fails whatever
   * their values — an unknown variable, mismatched types, a result that is
   * no integer. Whether the result is in range depends on the instance.
   */
  check(expression: string): Result<void>;
  evaluate(expression: string, vars: MaxPodsVariables): Result<number>;
}
