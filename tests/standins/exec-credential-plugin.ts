/**
 * STAND-IN for a kubeconfig exec credential plugin (what `aws eks get-token`
 * is to kubelet), for `berth doctor`'s registration tests. Not the aws CLI:
 * a /bin/sh script, written where a test puts it on PATH (named `aws` by
 * default, as berth's kubeconfig calls it), that
 *
 * - refuses to run (exit 3) unless KUBERNETES_EXEC_INFO holds a
 *   client.authentication.k8s.io/v1beta1 ExecCredential, as client-go sets it;
 * - refuses (exit 2) unless its arguments start with `eks get-token`;
 * - appends its arguments to `<dir>/exec-plugin-calls`;
 * - prints an ExecCredential with `token`, or fails like the aws CLI does
 *   without credentials (`fail`).
 */
import { chmod, writeFile } from "node:fs/promises";
import path from "node:path";

export interface ExecPluginStandIn {
  /** The script's path. */
  file: string;
  /** Where each run's arguments are appended, one line per run. */
  callsFile: string;
}

export async function writeExecPluginStandIn(
  dir: string,
  opts: { token: string; name?: string; fail?: string; apiVersion?: string },
): Promise<ExecPluginStandIn> {
  const file = path.join(dir, opts.name ?? "aws");
  const callsFile = path.join(dir, "exec-plugin-calls");
  const apiVersion = opts.apiVersion ?? "client.authentication.k8s.io/v1beta1";
  const credential = JSON.stringify({
    kind: "ExecCredential",
    apiVersion,
    spec: {},
    status: { expirationTimestamp: "2099-01-01T00:00:00Z", token: opts.token },
  });
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const script = [
    "#!/bin/sh",
    "# EXEC CREDENTIAL PLUGIN STAND-IN (tests/standins/exec-credential-plugin.ts) - not the aws CLI.",
    `printf '%s\\n' "$*" >> ${q(callsFile)}`,
    'case "$KUBERNETES_EXEC_INFO" in',
    `  *'"kind":"ExecCredential"'*'"apiVersion":"client.authentication.k8s.io/v1beta1"'*) ;;`,
    '  *) echo "stand-in: KUBERNETES_EXEC_INFO is not a v1beta1 ExecCredential: $KUBERNETES_EXEC_INFO" >&2; exit 3 ;;',
    "esac",
    `[ "$1 $2" = "eks get-token" ] || { echo "stand-in: expected 'eks get-token', got '$*'" >&2; exit 2; }`,
    opts.fail !== undefined ? `echo ${q(opts.fail)} >&2; exit 255` : `printf '%s\\n' ${q(credential)}`,
    "",
  ].join("\n");
  await writeFile(file, script);
  await chmod(file, 0o755);
  return { file, callsFile };
}
