/**
 * STAND-IN for a Kubernetes API server, for `berth doctor`'s tests. Not a
 * Kubernetes API server: https on 127.0.0.1 (an OS-chosen port) with a
 * certificate from a CA made for it (tests/standins/test-pki.ts), answering
 * three paths the way kube-apiserver does:
 *
 * - GET /readyz → `ok` (text), GET /version → a version.Info JSON; both
 *   401 (a Status JSON) without a known bearer token, unless `anonymous`
 *   (then 200 like EKS's system:public-info-viewer).
 * - GET /api/v1/nodes/<name> with `Authorization: Bearer <token>`: 401 for
 *   an unknown token; 403 when the token belongs to another node (the node
 *   authorizer lets a node read only its own Node); 404 when no such Node;
 *   else the Node with its Ready condition.
 *
 * `tokens` maps a bearer token to the node name it authenticates as
 * (system:node:<name>). Every request is recorded.
 */
import https from "node:https";
import type { AddressInfo } from "node:net";
import { createTestCa, type TestCa } from "./test-pki.ts";

export interface StandInNode {
  ready: "True" | "False" | "Unknown";
  reason?: string;
  message?: string;
  kubeletVersion?: string;
}

export interface ApiServerStandInOptions {
  /** Serve with a certificate of this CA (default: a new one). */
  ca?: TestCa;
  /** DNS names the certificate is for, besides IP 127.0.0.1 (default localhost). */
  names?: string[];
  /** Leave the 127.0.0.1 IP SAN out (a certificate for another host). */
  noIp?: boolean;
  nodes?: Record<string, StandInNode>;
  tokens?: Record<string, string>;
  /** /readyz and /version answer anonymous requests (default: 401). */
  anonymous?: boolean;
  /** /readyz answers this status instead of 200 (a control plane that is not ready). */
  readyzStatus?: number;
  /** Listen on this port (default: one the OS picks), e.g. to replace a stand-in by one with another CA at the same endpoint. */
  port?: number;
}

export interface ApiServerStandIn {
  /** `https://127.0.0.1:<port>`. */
  url: string;
  port: number;
  ca: TestCa;
  nodes: Record<string, StandInNode>;
  requests: Array<{ path: string; authorization: string | undefined }>;
  close(): Promise<void>;
}

function status(code: number, reason: string, message: string): string {
  return JSON.stringify({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code });
}

function nodeJson(name: string, n: StandInNode): string {
  const now = new Date().toISOString();
  const conditions = [
    { type: "MemoryPressure", status: "False", reason: "KubeletHasSufficientMemory", lastHeartbeatTime: now },
    { type: "DiskPressure", status: "False", reason: "KubeletHasNoDiskPressure", lastHeartbeatTime: now },
    {
      type: "Ready",
      status: n.ready,
      reason: n.reason ?? (n.ready === "True" ? "KubeletReady" : "KubeletNotReady"),
      message: n.message ?? "",
      lastHeartbeatTime: now,
    },
  ];
  return JSON.stringify({
    kind: "Node",
    apiVersion: "v1",
    metadata: { name },
    status: { conditions, nodeInfo: { kubeletVersion: n.kubeletVersion ?? "v1.33.0" } },
  });
}

export async function startApiServerStandIn(opts: ApiServerStandInOptions = {}): Promise<ApiServerStandIn> {
  const ca = opts.ca ?? (await createTestCa("berth apiserver stand-in CA"));
  const leaf = await ca.issue(opts.names ?? ["localhost"], { ...(opts.noIp ? { noIp: true } : {}) });
  const nodes: Record<string, StandInNode> = { ...(opts.nodes ?? {}) };
  const tokens = opts.tokens ?? {};
  const requests: ApiServerStandIn["requests"] = [];
  const server = https.createServer({ key: leaf.key, cert: leaf.cert }, (req, res) => {
    const path = new URL(req.url ?? "/", "https://x").pathname;
    const authorization = req.headers.authorization;
    requests.push({ path, authorization });
    req.resume();
    const send = (code: number, body: string, type = "application/json") => {
      res.writeHead(code, { "content-type": type });
      res.end(body);
    };
    const token = /^Bearer (.+)$/.exec(authorization ?? "")?.[1];
    const user = token !== undefined ? tokens[token] : undefined;
    if (path === "/readyz" || path === "/version") {
      if (!opts.anonymous && user === undefined) return send(401, status(401, "Unauthorized", "Unauthorized"));
      if (path === "/readyz")
        return send(
          opts.readyzStatus ?? 200,
          opts.readyzStatus && opts.readyzStatus !== 200 ? "[-]etcd failed: reason withheld\nreadyz check failed" : "ok",
          "text/plain",
        );
      return send(200, JSON.stringify({ major: "1", minor: "33", gitVersion: "v1.33.0-standin", platform: "linux/amd64" }));
    }
    const m = /^\/api\/v1\/nodes\/([^/]+)$/.exec(path);
    if (!m) return send(404, status(404, "NotFound", "the server could not find the requested resource"));
    if (user === undefined) return send(401, status(401, "Unauthorized", "Unauthorized"));
    const name = decodeURIComponent(m[1]!);
    if (user !== name)
      return send(
        403,
        status(
          403,
          "Forbidden",
          `nodes "${name}" is forbidden: User "system:node:${user}" cannot get resource "nodes" in API group "" at the cluster scope: node '${user}' cannot read '${name}', only its own Node object`,
        ),
      );
    const n = nodes[name];
    if (!n) return send(404, status(404, "NotFound", `nodes "${name}" not found`));
    return send(200, nodeJson(name, n));
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `https://127.0.0.1:${port}`,
    port,
    ca,
    nodes,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
