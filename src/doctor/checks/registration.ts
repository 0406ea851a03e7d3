/**
 * `registration`: with kubelet's own kubeconfig and credentials — its exec
 * credential plugin run the way client-go runs it (src/doctor/kubeconfig.ts)
 * — GET this node's Node object: Ready, or the conditions that say why not;
 * 404 (never registered), 401 (the role is not mapped) and 403 (mapped to the
 * wrong user) are different findings.
 */
import { readFile } from "node:fs/promises";
import { readTextIfPresent } from "../../host/read.ts";
import { isOutpost } from "../../render/kubeconfig.ts";
import { errorMessage } from "../../util/errors.ts";
import type { DoctorDeps, DoctorState } from "../deps.ts";
import { readKubeconfig, runExecPlugin, type ExecCredentialStatus, type KubeconfigTarget } from "../kubeconfig.ts";
import { httpsGet } from "../net.ts";
import { excerpt, failed, fromErrors, passed, warned } from "../outcome.ts";
import type { CheckOutcome, CheckSpec } from "../types.ts";
import { BOOTSTRAP_KUBECONFIG_PATH, KUBECONFIG_PATH, KUBELET_ENVIRONMENT_PATH } from "../../util/node-layout.ts";

const ACCESS_HINT =
  "map the node's role: an access entry (aws eks create-access-entry --cluster-name C --principal-arn ROLE_ARN --type EC2_LINUX) or " +
  "the aws-auth ConfigMap (groups system:bootstrappers, system:nodes); also check the cluster name and region in the kubeconfig's " +
  "exec args, and the clock";

/** The last --hostname-override in kubelet's flag file (user flags come last and win), else undefined. Pure. */
export function hostnameOverride(envFile: string | undefined): string | undefined {
  const all = [...(envFile ?? "").matchAll(/--hostname-override[= ](\S+)/g)];
  return all.length ? all[all.length - 1]?.[1] : undefined;
}

/** The Node's name: kubelet's --hostname-override, else what berth would name it from EC2 / IMDS. */
export async function nodeNameOf(deps: DoctorDeps, state: DoctorState): Promise<string | undefined> {
  const flag = hostnameOverride(await readTextIfPresent(deps.root.path(KUBELET_ENVIRONMENT_PATH)));
  if (flag) return flag;
  if (state.config?.nodeConfig.featureGates?.InstanceIdNodeName === true) return state.identity?.instanceId;
  return state.privateDnsName ?? state.facts?.instance.privateDnsName;
}

interface Condition {
  type?: string;
  status?: string;
  reason?: string;
  message?: string;
}

/** What GET /api/v1/nodes/<name> answered, as the registration finding. Pure. */
export function nodeOutcome(name: string, status: number, body: string): CheckOutcome {
  let o: { status?: { conditions?: Condition[]; nodeInfo?: { kubeletVersion?: string } }; message?: string } = {};
  try {
    o = JSON.parse(body) as typeof o;
  } catch {
    // a non-JSON answer is reported by status below
  }
  if (status === 404)
    return failed(
      `the Node ${name} does not exist: kubelet has not registered it`,
      "see the kubelet check: its log says why (Unauthorized → the role is not mapped); kubelet registers the Node as soon as it can " +
        "authenticate",
    );
  if (status === 401) return failed(`the API server refuses kubelet's credentials (401 Unauthorized)`, ACCESS_HINT);
  if (status === 403) {
    return failed(
      `kubelet's credentials are accepted but may not read the Node ${name} (403): ${excerpt(o.message ?? body, 160)}`,
      "a node may read only its own Node: the role's mapping must give the username system:node:{{EC2PrivateDNSName}} and the group " +
        "system:nodes (an EC2_LINUX access entry does); the name must match kubelet's --hostname-override",
    );
  }
  if (status !== 200)
    return failed(
      `GET /api/v1/nodes/${name} answered ${status}: ${excerpt(o.message ?? body, 160)}`,
      "check the API server (see the apiserver check)",
    );
  const conditions = o.status?.conditions ?? [];
  const ready = conditions.find((c) => c.type === "Ready");
  const pressure = conditions
    .filter((c) => c.type !== "Ready" && c.status === "True")
    .map((c) => `${c.type}${c.reason ? ` (${c.reason})` : ""}`);
  const extra = pressure.length ? `; also ${pressure.join(", ")}` : "";
  const version = o.status?.nodeInfo?.kubeletVersion ? `, kubelet ${o.status.nodeInfo.kubeletVersion}` : "";
  if (ready?.status === "True") {
    if (pressure.length)
      return warned(`the Node ${name} is Ready${version}${extra}`, "see the host check (disk, memory); kubelet evicts pods under pressure");
    return passed(`the Node ${name} is registered and Ready${version}`);
  }
  if (!ready)
    return warned(
      `the Node ${name} is registered but reports no Ready condition yet${extra}`,
      "wait a few seconds and run berth doctor again",
    );
  const why = `${ready.reason ?? ""}${ready.message ? `: ${excerpt(ready.message, 200)}` : ""}`;
  const cni = /network plugin|cni|NetworkReady=false|NetworkPluginNotReady/i.test(why);
  return failed(
    `the Node ${name} is registered but NotReady (Ready=${ready.status ?? "?"}${why ? `, ${why}` : ""})${extra}`,
    cni
      ? "the cluster's CNI is not running on this node yet: check the aws-node (VPC CNI) pod on it (kubectl -n kube-system get pods -o " +
          "wide --field-selector spec.nodeName=NAME)"
      : `see the kubelet and containerd checks; kubectl describe node ${name}`,
  );
}

/** The credentials the kubeconfig gives: a bearer token, or a client certificate and key (PEM). */
async function credentials(
  deps: DoctorDeps,
  kc: KubeconfigTarget,
  kcPath: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<{ token?: string; cert?: string; key?: string } | CheckOutcome> {
  const u = kc.user;
  const read = (p: string) => readFile(deps.root.path(p), "utf8");
  try {
    if (u.exec) {
      const r = await runExecPlugin(u.exec, {
        signal,
        env: deps.env,
        root: deps.root,
        kubeconfigPath: kcPath,
        timeoutMs,
        cluster: { server: kc.server, ...(kc.caData ? { caData: kc.caData } : {}) },
      });
      if (!r.ok) return fromErrors("fail", r.errors, "run the kubeconfig's exec command by hand");
      const s: ExecCredentialStatus = r.value;
      if (s.token) return { token: s.token };
      return { cert: s.clientCertificateData as string, key: s.clientKeyData as string };
    }
    if (u.token) return { token: u.token };
    if (u.tokenFile) return { token: (await read(u.tokenFile)).trim() };
    const cert = u.clientCertificateData
      ? Buffer.from(u.clientCertificateData, "base64").toString("utf8")
      : u.clientCertificate
        ? await read(u.clientCertificate)
        : undefined;
    const key = u.clientKeyData
      ? Buffer.from(u.clientKeyData, "base64").toString("utf8")
      : u.clientKey
        ? await read(u.clientKey)
        : undefined;
    if (cert && key) return { cert, key };
  } catch (e) {
    return failed(
      `cannot read kubelet's credentials named in ${kcPath}: ${excerpt(errorMessage(e), 160)}`,
      "berth init (or kubelet's TLS bootstrap) writes them",
    );
  }
  return failed(
    `${kcPath} gives kubelet no credentials (no exec plugin, token or client certificate)`,
    "berth init rewrites kubelet's kubeconfig",
  );
}

export function registrationCheck(deps: DoctorDeps, state: DoctorState, deadlineMs: number): CheckSpec {
  return {
    id: "registration",
    needs: ["config", "apiserver"],
    after: ["ec2", "kubelet"],
    deadlineMs,
    async run(ctx) {
      const outpost = isOutpost(state.config?.nodeConfig.cluster);
      const kcPath =
        outpost && (await readTextIfPresent(deps.root.path(KUBECONFIG_PATH))) === undefined ? BOOTSTRAP_KUBECONFIG_PATH : KUBECONFIG_PATH;
      const kc = await readKubeconfig(deps.root, kcPath);
      if (!kc.ok) return fromErrors("fail", kc.errors, "berth init writes kubelet's kubeconfig");
      const name = await nodeNameOf(deps, state);
      if (!name)
        return failed(
          "cannot tell this node's name (no --hostname-override in kubelet's flags, no private DNS name from EC2)",
          "see the ec2 and files checks; berth init writes kubelet's flags",
        );
      state.nodeName = name;
      const plugin = kc.value.user.exec ? [kc.value.user.exec.command, ...kc.value.user.exec.args].join(" ") : "";
      ctx.step(
        plugin ? `running the credential plugin \`${plugin}\`` : "reading kubelet's credentials",
        "the credential plugin does not finish: run it by hand; aws eks get-token needs the instance role's credentials from IMDS and " +
          "the STS endpoint",
      );
      const creds = await credentials(deps, kc.value, kcPath, Math.max(1, ctx.remaining() - 800), ctx.signal);
      if ("status" in creds) return creds;
      let ca = kc.value.caData;
      if (!ca && kc.value.caFile) {
        ca = await readTextIfPresent(deps.root.path(kc.value.caFile));
        if (ca === undefined)
          return failed(
            `cannot read the cluster CA ${kc.value.caFile} that ${kcPath} names`,
            "berth init writes it from spec.cluster.certificateAuthority",
          );
      }
      const url = new URL(`/api/v1/nodes/${encodeURIComponent(name)}`, kc.value.server);
      ctx.step(
        `GET ${url.href}`,
        "the API server accepted TLS in the apiserver check but does not answer this request: retry; check the cluster's health",
      );
      const r = await httpsGet(url, { ...(ca ? { ca } : {}), ...creds, timeoutMs: Math.max(1, ctx.remaining() - 50) });
      if (!r.ok)
        return failed(
          `GET ${url.href} with kubelet's credentials failed: ${excerpt(r.message, 160)}`,
          "see the apiserver check; the kubeconfig's server and CA must be the NodeConfig's",
        );
      return nodeOutcome(name, r.status, r.body);
    },
  };
}
