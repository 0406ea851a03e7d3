/**
 * STAND-IN for the EC2 instance metadata service (IMDSv2 only), for tests.
 * Not the real IMDS: it serves an amazon-ec2-metadata-mock (aemm) config file
 * on 127.0.0.1 with an OS-chosen port, the way aemm v1.11 does:
 *
 * - PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds (1..21600)
 *   → a token; a missing/invalid TTL → 400. Any GET without a valid,
 *   unexpired token → 401.
 * - metadata.values[key] at metadata.paths[key] (the file's paths over aemm's
 *   defaults), else at /latest/meta-data/<key>; objects are served as JSON.
 * - dynamic.values: the identity document at /latest/dynamic/instance-identity/document
 *   (the file's fields over aemm's default document, as aemm's config merge does).
 * - userdata.values.userdata is base64 in the file; aemm serves it DECODED
 *   (application/octet-stream) at /latest/user-data, and so does this.
 * - Directory listings for every prefix (children one a line, subdirectories
 *   with a trailing `/`), 404 for everything else.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const DEFAULT_AEMM_CONFIG = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../../shared/conformance/nodeadm-e2e/infra/aemm-default-config.json",
);

export interface ImdsStandInOptions {
  /** Path to an aemm config JSON (default: the conformance suite's). */
  config?: string;
  /** Overrides instance-type in both the metadata and the identity document. */
  instanceType?: string;
  /** Raw user data (not base64); overrides the config file's. */
  userData?: string | Uint8Array;
  /** The first N requests (of any kind) are answered 500. */
  failFirst?: number;
}

export interface ImdsStandIn {
  url: string;
  close(): Promise<void>;
  setUserData(d: string | Uint8Array | undefined): void;
  /** `METHOD /path` of every request, in order. */
  requests: string[];
  /** Invalidate every issued token (as an IMDS restart would): the next GET with one gets 401. */
  expireTokens(): void;
  /** Set or remove (undefined) a metadata path, e.g. `meta-data/network/interfaces/macs/<mac>/ipv6s`. */
  setPath(p: string, value: string | undefined): void;
}

/**
 * The slice of aemm's built-in defaults berth can read (values are aemm's);
 * the conformance file only overrides a few keys on top of these.
 */
const AEMM_DEFAULT_PATHS: Record<string, string> = {
  "mac-device-number": "/latest/meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/device-number",
  "mac-ipv6-associations": "/latest/meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/ipv6s",
  "mac-local-hostname": "/latest/meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/local-hostname",
  "mac-local-ipv4s": "/latest/meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/local-ipv4s",
  "mac-mac": "/latest/meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/mac",
  "mac-network-interface-card-index": "/latest/meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/network-card-index",
  "services-domain": "/latest/meta-data/services/domain",
  "services-partition": "/latest/meta-data/services/partition",
  "ami-id": "/latest/meta-data/ami-id",
};
const AEMM_DEFAULT_VALUES: Record<string, string> = {
  "mac-device-number": "0",
  "mac-ipv6-associations": "2001:db8:8:4::2",
  "mac-local-hostname": "ip-172-16-34-43.ec2.internal",
  "mac-local-ipv4s": "172.16.34.43",
  "mac-mac": "0e:49:61:0f:c3:11",
  "mac-network-interface-card-index": "0",
  "services-domain": "amazonaws.com",
  "services-partition": "aws",
  "ami-id": "ami-0a887e401f7654935",
};
const AEMM_DEFAULT_DOCUMENT: Record<string, unknown> = {
  accountId: "0123456789",
  imageId: "ami-0b69ea66ff7391e80",
  availabilityZone: "us-east-1f",
  ramdiskId: null,
  kernelId: null,
  devpayProductCodes: null,
  marketplaceProductCodes: null,
  version: "2017-09-30",
  privateIp: "10.0.7.10",
  billingProducts: null,
  instanceId: "i-1234567890abcdef0",
  pendingTime: "2019-10-31T07:02:24Z",
  architecture: "x86_64",
  instanceType: "m4.xlarge",
  region: "us-east-1",
};

interface AemmSection {
  paths?: Record<string, string>;
  values?: Record<string, unknown>;
}
interface AemmConfig {
  metadata?: AemmSection;
  dynamic?: AemmSection;
  userdata?: AemmSection;
}

const asText = (v: unknown): string => (typeof v === "string" ? v : JSON.stringify(v, null, 2));

export async function startImdsStandIn(opts: ImdsStandInOptions = {}): Promise<ImdsStandIn> {
  const cfg = JSON.parse(readFileSync(opts.config ?? DEFAULT_AEMM_CONFIG, "utf8")) as AemmConfig;
  // Every served leaf, keyed by its path under /latest/ (no leading slash).
  const leaves = new Map<string, Buffer>();
  const put = (p: string, v: string | Uint8Array) => leaves.set(p.replace(/^\/?latest\//, ""), Buffer.from(v));

  const mdPaths = { ...AEMM_DEFAULT_PATHS, ...(cfg.metadata?.paths ?? {}) };
  const mdValues: Record<string, unknown> = { ...AEMM_DEFAULT_VALUES, ...(cfg.metadata?.values ?? {}) };
  if (opts.instanceType) mdValues["instance-type"] = opts.instanceType;
  for (const [k, v] of Object.entries(mdValues)) put(mdPaths[k] ?? `/latest/meta-data/${k}`, asText(v));

  const dynPaths: Record<string, string> = {
    "instance-identity-document": "/latest/dynamic/instance-identity/document",
    ...(cfg.dynamic?.paths ?? {}),
  };
  const dynValues: Record<string, unknown> = { ...(cfg.dynamic?.values ?? {}) };
  const doc = { ...AEMM_DEFAULT_DOCUMENT, ...((dynValues["instance-identity-document"] as Record<string, unknown> | undefined) ?? {}) };
  if (opts.instanceType) doc.instanceType = opts.instanceType;
  dynValues["instance-identity-document"] = doc;
  for (const [k, v] of Object.entries(dynValues)) put(dynPaths[k] ?? `/latest/dynamic/${k}`, asText(v));

  const userDataPath = cfg.userdata?.paths?.userdata ?? "/latest/user-data";
  const setUserData = (d: string | Uint8Array | undefined) => {
    const key = userDataPath.replace(/^\/?latest\//, "");
    if (d === undefined) leaves.delete(key);
    else put(userDataPath, d);
  };
  const fileUserData = cfg.userdata?.values?.userdata;
  setUserData(opts.userData ?? (typeof fileUserData === "string" ? Buffer.from(fileUserData, "base64") : undefined));

  const tokens = new Map<string, number>(); // token → expiry (ms)
  const requests: string[] = [];
  let failuresLeft = opts.failFirst ?? 0;

  const listing = (dir: string): string | undefined => {
    const prefix = dir === "" ? "" : dir.endsWith("/") ? dir : dir + "/";
    const children = new Set<string>();
    for (const key of leaves.keys()) {
      if (!key.startsWith(prefix) || key === prefix) continue;
      const rest = key.slice(prefix.length);
      const slash = rest.indexOf("/");
      children.add(slash === -1 ? rest : rest.slice(0, slash + 1));
    }
    if (children.size === 0) return undefined;
    return [...children].sort().join("\n");
  };

  const server = http.createServer((req, res) => {
    const pathname = new URL(req.url ?? "/", "http://x").pathname;
    requests.push(`${req.method} ${pathname}`);
    req.resume();
    const send = (status: number, body: string | Buffer, type = "text/plain", extra: Record<string, string> = {}) => {
      res.writeHead(status, { "content-type": type, ...extra });
      res.end(body);
    };
    if (failuresLeft > 0) {
      failuresLeft--;
      return send(500, "Internal Server Error (stand-in failFirst)");
    }
    if (pathname === "/latest/api/token") {
      if (req.method !== "PUT") return send(405, "Method Not Allowed");
      const ttl = Number(req.headers["x-aws-ec2-metadata-token-ttl-seconds"]);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21600) return send(400, "Bad Request");
      const token = randomBytes(32).toString("base64");
      tokens.set(token, Date.now() + ttl * 1000);
      return send(200, token, "text/plain", { "x-aws-ec2-metadata-token-ttl-seconds": String(ttl) });
    }
    if (req.method !== "GET") return send(405, "Method Not Allowed");
    const tok = req.headers["x-aws-ec2-metadata-token"];
    const exp = typeof tok === "string" ? tokens.get(tok) : undefined;
    if (exp === undefined || exp <= Date.now()) return send(401, "Unauthorized");
    if (!pathname.startsWith("/latest/") && pathname !== "/latest") return send(404, "Not Found");
    const rel = pathname.replace(/^\/latest\/?/, "");
    const leaf = leaves.get(rel.replace(/\/$/, ""));
    if (leaf && !rel.endsWith("/")) {
      return send(200, leaf, rel === userDataPath.replace(/^\/?latest\//, "") ? "application/octet-stream" : "text/plain");
    }
    const list = listing(rel.replace(/\/$/, ""));
    if (list !== undefined) return send(200, list);
    return send(404, "Not Found");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${addr.port}`,
    requests,
    setUserData,
    expireTokens: () => tokens.clear(),
    setPath: (p, v) => {
      const key = p.replace(/^\/?(latest\/)?/, "");
      if (v === undefined) leaves.delete(key);
      else leaves.set(key, Buffer.from(v));
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
