/**
 * kubelet's recent log, classified into the causes that keep a node from
 * joining, most telling first. Pure: lines in, the cause and the line that
 * shows it out. The patterns are the kubelet's and client-go's own wording.
 */

export interface KubeletLogCause {
  /** A stable key, for tests and docs/doctor.md. */
  key: "ca-mismatch" | "cert-time" | "unauthorized" | "exec-plugin" | "swap" | "containerd" | "node-not-found";
  status: "warn" | "fail";
  /** What it means, one line. */
  cause: string;
  hint: string;
}

interface Pattern extends KubeletLogCause {
  test: RegExp;
}

/** In priority order: an earlier cause explains the later ones (Unauthorized → "node not found"). */
export const KUBELET_LOG_PATTERNS: readonly Pattern[] = [
  {
    key: "ca-mismatch",
    test: /x509: certificate signed by unknown authority/,
    status: "fail",
    cause: "CA mismatch: the API server's certificate is not signed by the CA kubelet trusts (/etc/kubernetes/pki/ca.crt)",
    hint:
      "set spec.cluster.certificateAuthority to the cluster's CA (aws eks describe-cluster --query " +
      "cluster.certificateAuthority.data), then berth init",
  },
  {
    key: "cert-time",
    test: /x509: certificate has expired or is not yet valid/,
    status: "fail",
    cause: "a certificate is expired or not yet valid: the node's clock is off, or a certificate really expired",
    hint: "see the clock check (timedatectl); if the clock is right, the certificate named in the line must be renewed",
  },
  {
    key: "unauthorized",
    test: /\bUnauthorized\b/,
    status: "fail",
    cause: "the API server rejects the node's credentials (Unauthorized): the node role has no access entry or aws-auth mapping",
    hint:
      "create an access entry for the node's role (aws eks create-access-entry --cluster-name C --principal-arn ROLE_ARN --type " +
      "EC2_LINUX), or map the role in the aws-auth ConfigMap (groups system:bootstrappers, system:nodes)",
  },
  {
    key: "exec-plugin",
    test: /getting credentials: exec|executable \S+ not found|exec: executable \S+ failed/,
    status: "fail",
    cause: "the kubeconfig's credential plugin (aws eks get-token) fails, so kubelet has no token",
    hint:
      "see the registration check, which runs the plugin the way kubelet does; the aws CLI must be installed and find the " +
      "instance role's credentials",
  },
  {
    key: "swap",
    test: /running with swap on is not supported/,
    status: "fail",
    cause: "kubelet refuses to run with swap on (failSwapOn)",
    hint: "turn swap off (swapoff -a), or set spec.kubelet.config.failSwapOn: false",
  },
  {
    key: "containerd",
    test: /containerd\.sock[^\n]*(?:connection refused|no such file or directory)/,
    status: "warn",
    cause: "kubelet could not reach containerd's socket",
    hint: "see the containerd check; kubelet retries by itself once containerd answers",
  },
  {
    key: "node-not-found",
    test: /node \\?"[^"\\]+\\?" not found/,
    status: "warn",
    cause: "registration pending: the Node object does not exist (yet)",
    hint: "usual in a boot's first seconds; if it lasts, see the registration check and any Unauthorized lines",
  },
];

/** Longest quote of a log line in a finding; a longer line is cut around what matched. */
export const QUOTE_MAX = 200;

/** `line` cut to QUOTE_MAX characters around [at, at+len), whitespace squeezed. Pure. */
export function quoteAround(line: string, at: number, len: number): string {
  if (line.length <= QUOTE_MAX) return line.replace(/\s+/g, " ");
  const start = Math.max(0, Math.min(at - (QUOTE_MAX - len - 40), line.length - QUOTE_MAX));
  const cut = line.slice(start, start + QUOTE_MAX).replace(/\s+/g, " ");
  return `${start > 0 ? "…" : ""}${cut}${start + QUOTE_MAX < line.length ? "…" : ""}`;
}

/** The most telling known cause in `lines` (oldest first), with the latest line that shows it and a quote of it. */
export function classifyKubeletLog(lines: readonly string[]): (KubeletLogCause & { line: string; quote: string }) | undefined {
  for (const p of KUBELET_LOG_PATTERNS) {
    for (let i = lines.length - 1; i >= 0; i--) {
      const line = (lines[i] as string).trim();
      const m = p.test.exec(line);
      if (m) {
        const { test: _test, ...cause } = p;
        return { ...cause, line, quote: quoteAround(line, m.index, m[0].length) };
      }
    }
  }
  return undefined;
}
