/**
 * The kubelet's kubeconfig (`aws eks get-token` exec credentials) and the
 * cluster CA it points at. Layout is nodeadm's kubeconfig.template.yaml, so
 * for ordinary values the bytes are identical to nodeadm's.
 */

import type { ClusterDetails } from "../api/types.ts";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import { isStdBase64 } from "../api/rules.ts";
import { BOOTSTRAP_KUBECONFIG_PATH, CA_CERT_PATH, KUBECONFIG_PATH } from "../util/node-layout.ts";

/**
 * A YAML scalar for a URL `s`: bare when it is plainly safe (what the template
 * would write), otherwise a JSON string, which is a valid YAML double-quoted
 * scalar. Hand-rolled instead of the yaml package so the output keeps the
 * template's exact bytes and this module stays dependency-free.
 */
function yamlScalar(s: string): string {
  // Requiring "://" keeps words YAML would retype (true, null, 1.5) quoted.
  return s.includes("://") && /^[A-Za-z0-9/][A-Za-z0-9._~:/?#@!$&'()*+,;=%-]*$/.test(s) && !/: |\s#|:$/.test(s) ? s : JSON.stringify(s);
}

export interface KubeconfigInput {
  /** Name passed to `aws eks get-token --cluster-name`: the cluster name, or the cluster id on Outposts. */
  clusterName: string;
  region: string;
  apiServerEndpoint: string;
}

export function kubeconfigYaml(i: KubeconfigInput): string {
  return [
    "---",
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "  - name: kubernetes",
    "    cluster:",
    `      certificate-authority: ${CA_CERT_PATH}`,
    `      server: ${yamlScalar(i.apiServerEndpoint)}`,
    "current-context: kubelet",
    "contexts:",
    "  - name: kubelet",
    "    context:",
    "      cluster: kubernetes",
    "      user: kubelet",
    "users:",
    "  - name: kubelet",
    "    user:",
    "      exec:",
    "        apiVersion: client.authentication.k8s.io/v1beta1",
    "        command: aws",
    "        args:",
    '          - "eks"',
    '          - "get-token"',
    '          - "--cluster-name"',
    `          - ${JSON.stringify(i.clusterName)}`,
    '          - "--region"',
    `          - ${JSON.stringify(i.region)}`,
    "",
  ].join("\n");
}

export function isOutpost(cluster: ClusterDetails | undefined): boolean {
  return cluster?.enableOutpost === true;
}

function missing(path: string, what: string, hint: string): BerthError {
  return { code: "config.missing-field", message: `${what} is not set`, where: { path }, hint };
}

/**
 * Where the kubeconfig goes and what it says. On Outposts nodeadm names the
 * cluster by its id (the local cluster's name is not resolvable while
 * disconnected) and writes it as the bootstrap kubeconfig.
 */
export function renderKubeconfig(cluster: ClusterDetails | undefined, region: string): Result<{ path: string; content: string }> {
  const errors: BerthError[] = [];
  if (!cluster?.apiServerEndpoint) {
    errors.push(
      missing(
        "spec.cluster.apiServerEndpoint",
        "the API server endpoint",
        "set it to the cluster's endpoint URL (aws eks describe-cluster: endpoint)",
      ),
    );
  }
  const outpost = isOutpost(cluster);
  if (outpost && !cluster?.id) {
    errors.push(
      missing(
        "spec.cluster.id",
        "the cluster id (required when enableOutpost is true)",
        "set spec.cluster.id to the Outposts cluster's id (aws eks describe-cluster: id)",
      ),
    );
  }
  if (!outpost && !cluster?.name) {
    errors.push(missing("spec.cluster.name", "the cluster name", "set spec.cluster.name to the EKS cluster's name"));
  }
  if (errors.length > 0) return fail(...errors);
  const c = cluster as ClusterDetails;
  return ok({
    path: outpost ? BOOTSTRAP_KUBECONFIG_PATH : KUBECONFIG_PATH,
    content: kubeconfigYaml({
      clusterName: (outpost ? c.id : c.name) as string,
      region,
      apiServerEndpoint: c.apiServerEndpoint as string,
    }),
  });
}

/**
 * The CA bundle bytes from the NodeConfig's base64 `certificateAuthority`.
 * Strict (standard alphabet, padded; line breaks ignored as Go's decoder
 * does) because Buffer's decoder silently drops bad characters and would
 * write a corrupt CA.
 */
export function decodeCertificateAuthority(b64: string | undefined): Result<Uint8Array> {
  const where = { path: "spec.cluster.certificateAuthority" };
  if (!b64) {
    return fail({
      code: "config.missing-field",
      message: "the cluster certificate authority is not set",
      where,
      hint: "set it to the base64 CA bundle (aws eks describe-cluster: certificateAuthority.data)",
    });
  }
  const compact = b64.replace(/[\r\n]/g, "");
  if (!isStdBase64(compact)) {
    return fail({
      code: "config.invalid-base64",
      message: "the cluster certificate authority is not valid base64",
      where,
      hint: "paste certificateAuthority.data from aws eks describe-cluster unchanged (standard base64, padded with =)",
    });
  }
  return ok(new Uint8Array(Buffer.from(compact, "base64")));
}
