/**
 * kubelet's kubeconfig, read the way client-go reads it, and its credential
 * plugin run the way client-go runs one: the `users[].user.exec` command with
 * its args, the caller's environment plus the entry's `env`, the
 * KUBERNETES_EXEC_INFO variable holding an ExecCredential (apiVersion of the
 * entry, spec.interactive false), no stdin; its stdout must be an
 * ExecCredential of the same apiVersion with status.token or a client
 * certificate and key. Parsing is pure; running is the shell's part.
 */
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import type { HostRoot } from "../host/root.ts";
import { errorMessage } from "../util/errors.ts";
import { fail, ok, type Result } from "../util/result.ts";

export interface ExecConfig {
  apiVersion: string;
  command: string;
  args: string[];
  env: Array<{ name: string; value: string }>;
  provideClusterInfo: boolean;
}

export interface KubeconfigUser {
  token?: string;
  tokenFile?: string;
  clientCertificate?: string;
  clientKey?: string;
  clientCertificateData?: string;
  clientKeyData?: string;
  exec?: ExecConfig;
}

export interface KubeconfigTarget {
  server: string;
  /** PEM text from certificate-authority-data, or the file named by certificate-authority (a host path). */
  caData?: string;
  caFile?: string;
  user: KubeconfigUser;
}

/** What a credential plugin gave. */
export interface ExecCredentialStatus {
  token?: string;
  clientCertificateData?: string;
  clientKeyData?: string;
  expirationTimestamp?: string;
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj | undefined => (v && typeof v === "object" && !Array.isArray(v) ? (v as Obj) : undefined);
const text = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);

function named(list: unknown, name: string | undefined, key: string): Obj | undefined {
  if (!Array.isArray(list)) return undefined;
  const entry = (name === undefined ? list[0] : list.find((e) => obj(e)?.name === name)) as unknown;
  return obj(obj(entry)?.[key]);
}

function execConfig(e: Obj): Result<ExecConfig> {
  const command = text(e.command);
  const apiVersion = text(e.apiVersion);
  if (!command || !apiVersion)
    return fail({
      code: "kubeconfig.exec",
      message: "the kubeconfig's exec entry lacks command or apiVersion",
      hint: "berth init rewrites kubelet's kubeconfig",
    });
  const env = Array.isArray(e.env)
    ? e.env
        .map(obj)
        .filter((x): x is Obj => x !== undefined)
        .map((x) => ({ name: text(x.name) ?? "", value: typeof x.value === "string" ? x.value : "" }))
    : [];
  return ok({
    apiVersion,
    command,
    args: Array.isArray(e.args) ? e.args.map(String) : [],
    env,
    provideClusterInfo: e.provideClusterInfo === true,
  });
}

/** The cluster and user of the kubeconfig's current context. Pure. */
export function parseKubeconfig(yamlText: string, source: string): Result<KubeconfigTarget> {
  let doc: Obj | undefined;
  try {
    doc = obj(parseYaml(yamlText));
  } catch (e) {
    return fail({
      code: "kubeconfig.invalid",
      message: `${source} is not valid YAML: ${errorMessage(e)}`,
      where: { source },
      hint: "berth init rewrites kubelet's kubeconfig",
    });
  }
  if (!doc)
    return fail({
      code: "kubeconfig.invalid",
      message: `${source} is not a kubeconfig`,
      where: { source },
      hint: "berth init rewrites kubelet's kubeconfig",
    });
  const ctxName = text(doc["current-context"]);
  const context = named(doc.contexts, ctxName, "context");
  const cluster = named(doc.clusters, text(context?.cluster), "cluster");
  const user = named(doc.users, text(context?.user), "user") ?? {};
  const server = text(cluster?.server);
  if (!server)
    return fail({
      code: "kubeconfig.invalid",
      message: `${source} names no server for context ${ctxName ?? "(first)"}`,
      where: { source },
      hint: "berth init rewrites kubelet's kubeconfig",
    });
  const u: KubeconfigUser = {};
  for (const [k, f] of [
    ["token", "token"],
    ["tokenFile", "tokenFile"],
    ["client-certificate", "clientCertificate"],
    ["client-key", "clientKey"],
    ["client-certificate-data", "clientCertificateData"],
    ["client-key-data", "clientKeyData"],
  ] as const) {
    const v = text(user[k]);
    if (v) u[f] = v;
  }
  const exec = obj(user.exec);
  if (exec) {
    const e = execConfig(exec);
    if (!e.ok) return { ok: false, errors: e.errors.map((x) => ({ ...x, where: { source } })) };
    u.exec = e.value;
  }
  const caData = text(cluster?.["certificate-authority-data"]);
  const caFile = text(cluster?.["certificate-authority"]);
  return ok({
    server,
    ...(caData ? { caData: Buffer.from(caData, "base64").toString("utf8") } : {}),
    ...(caFile ? { caFile } : {}),
    user: u,
  });
}

/** The KUBERNETES_EXEC_INFO value client-go sets (cluster info only when the entry asks for it). */
export function execInfo(exec: ExecConfig, cluster?: { server: string; caData?: string }): string {
  const spec: Obj = { interactive: false };
  if (exec.provideClusterInfo && cluster)
    spec.cluster = {
      server: cluster.server,
      ...(cluster.caData ? { "certificate-authority-data": Buffer.from(cluster.caData).toString("base64") } : {}),
    };
  return JSON.stringify({ kind: "ExecCredential", apiVersion: exec.apiVersion, spec });
}

/** A plugin's stdout as client-go checks it. Pure. */
export function parseExecCredential(stdout: string, apiVersion: string): Result<ExecCredentialStatus> {
  const bad = (why: string) =>
    fail<ExecCredentialStatus>({
      code: "kubeconfig.exec-output",
      message: `the credential plugin's output ${why}`,
      hint: "run the kubeconfig's exec command by hand and check what it prints",
    });
  let o: Obj | undefined;
  try {
    o = obj(JSON.parse(stdout));
  } catch {
    return bad(`is not JSON: ${JSON.stringify(stdout.slice(0, 80))}`);
  }
  if (!o || o.kind !== "ExecCredential") return bad("is not an ExecCredential");
  if (o.apiVersion !== apiVersion) return bad(`has apiVersion ${JSON.stringify(o.apiVersion)}, not ${apiVersion} as the kubeconfig asks`);
  const s = obj(o.status);
  const st: ExecCredentialStatus = {};
  for (const k of ["token", "clientCertificateData", "clientKeyData", "expirationTimestamp"] as const) {
    const v = text(s?.[k]);
    if (v) st[k] = v;
  }
  if (!st.token && !(st.clientCertificateData && st.clientKeyData))
    return bad("has neither status.token nor status.clientCertificateData and clientKeyData");
  return ok(st);
}

/**
 * Run the plugin. `root`: an absolute command is taken under a non-host root
 * (like every host path berth reads); a bare name is looked up in PATH; a
 * relative path with a slash is relative to the kubeconfig's directory, as in client-go.
 */
export function runExecPlugin(
  exec: ExecConfig,
  opts: {
    env: NodeJS.ProcessEnv;
    root: HostRoot;
    kubeconfigPath: string;
    timeoutMs: number;
    cluster?: { server: string; caData?: string };
    /** Kills the plugin when aborted (the check's deadline passed). */
    signal?: AbortSignal;
  },
): Promise<Result<ExecCredentialStatus>> {
  let cmd = exec.command;
  if (cmd.startsWith("/")) cmd = opts.root.path(cmd);
  else if (cmd.includes("/")) cmd = opts.root.path(path.posix.join(path.posix.dirname(opts.kubeconfigPath), cmd));
  const env: NodeJS.ProcessEnv = { ...opts.env, KUBERNETES_EXEC_INFO: execInfo(exec, opts.cluster) };
  for (const e of exec.env) env[e.name] = e.value;
  const shown = [exec.command, ...exec.args].join(" ");
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      exec.args,
      { env, timeout: opts.timeoutMs, encoding: "utf8", maxBuffer: 1 << 20, ...(opts.signal ? { signal: opts.signal } : {}) },
      (err, stdout, stderr) => {
        if (err) {
          const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: unknown; signal?: string | null };
          const last = stderr.trim().split("\n").filter(Boolean).pop();
          const why =
            e.code === "ENOENT"
              ? `executable ${exec.command} not found`
              : e.killed
                ? `no answer within ${opts.timeoutMs} ms`
                : `failed (exit ${String(e.code ?? e.signal)})${last ? `: ${last}` : ""}`;
          const hint =
            e.code === "ENOENT"
              ? `install it (the aws CLI for aws eks get-token) or fix the kubeconfig's exec command`
              : "run it by hand to see why; for aws eks get-token the instance role's credentials must be reachable (see the imds check)";
          resolve(
            fail({ code: "kubeconfig.exec-failed", message: `the kubeconfig's credential plugin \`${shown}\` ${why}`, hint, cause: err }),
          );
          return;
        }
        resolve(parseExecCredential(stdout, exec.apiVersion));
      },
    );
    child.stdin?.end();
  });
}

/** The kubeconfig at a host path under `root`. */
export async function readKubeconfig(root: HostRoot, hostPath: string): Promise<Result<KubeconfigTarget>> {
  let yamlText: string;
  try {
    yamlText = await readFile(root.path(hostPath), "utf8");
  } catch (e) {
    return fail({
      code: "kubeconfig.unreadable",
      message: `cannot read kubelet's kubeconfig ${hostPath}: ${errorMessage(e)}`,
      where: { source: hostPath },
      hint: "berth init writes it (the config phase)",
    });
  }
  return parseKubeconfig(yamlText, hostPath);
}
