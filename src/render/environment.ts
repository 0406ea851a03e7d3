/**
 * `spec.instance.environment` → systemd environment files.
 *
 * - `default` → `/etc/systemd/system.conf.d/environment.conf`, a `[Manager]`
 *   section of `DefaultEnvironment=` lines (every service sees them, with the
 *   lowest precedence).
 * - any other key NAME → `/etc/systemd/system/NAME.service.d/environment.conf`,
 *   a `[Service]` section of `Environment=` lines.
 *
 * Bytes match nodeadm: keys sorted, one quoted `"KEY=VALUE"` per line, the
 * value escaped like a Go quoted string (`\"`, `\\`, `\n`, ...; systemd reads
 * the same C escapes) and `%` doubled so systemd does not expand specifiers.
 * An empty map writes nothing; every environment path not written is listed
 * in `absent` so a section removed from the config also disappears from disk.
 */

import type { NodeConfigSpec } from "../api/types.ts";
import type { PlannedFile } from "../plan/types.ts";
import { fail, ok } from "../util/result.ts";
import type { BerthError, Result } from "../util/result.ts";
import { isEnvironmentName, isEnvironmentService } from "../api/rules.ts";
import { SYSTEM_ENVIRONMENT_PATH, UNIT_DIR } from "../util/node-layout.ts";

function serviceEnvironmentPath(service: string): string {
  return `${UNIT_DIR}/${service}.service.d/environment.conf`;
}

/** Services whose drop-in is always cleaned up when the config does not ask for it (the ones berth runs). */
const MANAGED_SERVICES = ["containerd", "kubelet"];

// Which service and variable names are valid is validation's rule (api/rules.ts); these are guards.

/** Escape a value like Go's strconv.Quote (without the outer quotes), then double `%`. */
export function escapeSystemdValue(value: string): string {
  let out = "";
  for (const ch of value) {
    const c = ch.codePointAt(0) ?? 0;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\x07") out += "\\a";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\v") out += "\\v";
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, "0")}`;
    else if ((c >= 0x80 && c <= 0x9f) || c === 0x2028 || c === 0x2029 || c === 0xfeff) out += `\\u${c.toString(16).padStart(4, "0")}`;
    else if (ch === "%") out += "%%";
    else out += ch;
  }
  return out;
}

function renderSection(header: string, directive: string, vars: Record<string, string>): string {
  const keys = Object.keys(vars).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return `${header}\n${keys.map((k) => `${directive}="${k}=${escapeSystemdValue(vars[k] ?? "")}"\n`).join("")}`;
}

export interface EnvironmentFiles {
  files: PlannedFile[];
  /** Environment paths that must not exist after apply. */
  absent: string[];
}

export function renderEnvironment(spec: NodeConfigSpec): Result<EnvironmentFiles> {
  const env = spec.instance?.environment ?? {};
  const errors: BerthError[] = [];
  const files: PlannedFile[] = [];
  const written = new Set<string>();
  const candidates = new Set<string>([SYSTEM_ENVIRONMENT_PATH, ...MANAGED_SERVICES.map(serviceEnvironmentPath)]);

  for (const name of Object.keys(env).sort()) {
    const vars = env[name] ?? {};
    const isDefault = name === "default";
    // "kubelet.service" would become kubelet.service.service.d and never apply.
    if (!isEnvironmentService(name)) {
      errors.push({
        code: "config.environment-service",
        message: `"${name}" is not a systemd service name`,
        where: { path: `spec.instance.environment.${name}` },
        hint: 'use "default" for every service, or a service name without ".service" made of letters, digits and ":-_.\\"',
      });
      continue;
    }
    const path = isDefault ? SYSTEM_ENVIRONMENT_PATH : serviceEnvironmentPath(name);
    candidates.add(path);
    let bad = false;
    for (const key of Object.keys(vars).sort()) {
      if (!isEnvironmentName(key)) {
        bad = true;
        errors.push({
          code: "config.environment-name",
          message: `"${key}" is not a valid environment variable name`,
          where: { path: `spec.instance.environment.${name}.${key}` },
          hint: "use letters, digits and underscores, not starting with a digit (systemd ignores other names)",
        });
      }
    }
    if (bad || Object.keys(vars).length === 0) continue;
    const content = isDefault ? renderSection("[Manager]", "DefaultEnvironment", vars) : renderSection("[Service]", "Environment", vars);
    files.push({ path, content, mode: 0o644, component: "environment" });
    written.add(path);
  }
  if (errors.length > 0) return fail(...errors);
  const absent = [...candidates].filter((p) => !written.has(p)).sort();
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return ok({ files, absent });
}
