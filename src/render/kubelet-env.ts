/**
 * `/etc/eks/kubelet/environment`: read by kubelet.service as an
 * EnvironmentFile; its `ExecStart` expands `$NODEADM_KUBELET_ARGS`.
 *
 * Format is nodeadm's (environment.go): `KEY=value` lines, unquoted, no
 * trailing newline. nodeadm emits flags and keys from Go maps, so its order
 * changes run to run; berth sorts its own flags by name and the keys by name
 * (which puts NODEADM_KUBELET_ARGS last), then appends the user's flags in
 * their order so they still take precedence (the kubelet keeps the last
 * value of a repeated flag; --node-labels accumulates).
 */

import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import { flagHasControlCharacter } from "../api/rules.ts";

export const KUBELET_ARGS_VARIABLE = "NODEADM_KUBELET_ARGS";

/** `--name=value` for each of berth's flags, sorted by name. */
function formatBerthFlags(flags: Record<string, string>): string[] {
  return Object.keys(flags)
    .sort()
    .map((name) => `--${name}=${flags[name]}`);
}

/**
 * A user flag may not contain control characters: a newline would start a
 * new variable in the environment file (and NUL ends it). Spaces are allowed
 * as in nodeadm (systemd splits `$VAR` on whitespace, so `--v 5` works).
 */
export function checkUserFlags(flags: readonly string[]): Result<void> {
  const errors: BerthError[] = [];
  flags.forEach((f, i) => {
    if (flagHasControlCharacter(f)) {
      errors.push({
        code: "config.invalid-flag",
        message: `kubelet flag ${JSON.stringify(f)} contains a control character (newline, NUL, ...)`,
        where: { path: `spec.kubelet.flags[${i}]` },
        hint: "write each flag on one line as --name=value",
      });
    }
  });
  return errors.length > 0 ? fail(...errors) : ok(undefined);
}

/** The whole kubelet flag line: berth's sorted flags, then the user's in order. */
export function kubeletArgs(berthFlags: Record<string, string>, userFlags: readonly string[]): string {
  return [...formatBerthFlags(berthFlags), ...userFlags].join(" ");
}

/** The environment file text; keys sorted, `KEY=value` per line, no trailing newline (as nodeadm). */
export function kubeletEnvironmentFile(environment: Record<string, string>): string {
  return Object.keys(environment)
    .sort()
    .map((k) => `${k}=${environment[k]}`)
    .join("\n");
}
