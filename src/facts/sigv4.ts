/**
 * AWS Signature Version 4 for one POST of a form-encoded body (the EC2 Query
 * API), on node:crypto. Hand-written because it is ~60 lines and the SDK's
 * signer drags in the rest of the SDK's module graph (see ec2.ts).
 */
import { createHash, createHmac } from "node:crypto";

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** When these stop being valid (ms since epoch); undefined = static. */
  expiresAt?: number;
}

export interface SignInput {
  method: string;
  url: URL;
  /** Headers to send and sign (lower-case names); host and x-amz-date are added. */
  headers: Record<string, string>;
  body: string;
  region: string;
  service: string;
  credentials: AwsCredentials;
  now: Date;
}

const sha256 = (s: string | Buffer) => createHash("sha256").update(s).digest("hex");
const hmac = (key: string | Buffer, s: string) => createHmac("sha256", key).update(s).digest();

/** RFC 3986 encoding as SigV4 wants it (encodeURIComponent leaves !'()* alone). */
export function awsUriEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
}

/** `20150830T123600Z` */
function amzDate(d: Date): string {
  return d
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}/, "");
}

/** Returns the headers to send: the input's plus host, x-amz-date, x-amz-security-token and authorization. */
export function signRequest(inp: SignInput): Record<string, string> {
  const date = amzDate(inp.now);
  const day = date.slice(0, 8);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(inp.headers)) headers[k.toLowerCase()] = v;
  headers.host = inp.url.host;
  headers["x-amz-date"] = date;
  if (inp.credentials.sessionToken) headers["x-amz-security-token"] = inp.credentials.sessionToken;
  const names = Object.keys(headers).sort();
  const canonicalHeaders = names.map((n) => `${n}:${headers[n]!.trim().replace(/\s+/g, " ")}\n`).join("");
  const signedHeaders = names.join(";");
  const query = [...inp.url.searchParams.entries()]
    .map(([k, v]) => [awsUriEncode(k), awsUriEncode(v)] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
  const path =
    inp.url.pathname
      .split("/")
      .map((seg) => awsUriEncode(decodeURIComponent(seg)))
      .join("/") || "/";
  const canonicalRequest = [inp.method, path, query, canonicalHeaders, signedHeaders, sha256(inp.body)].join("\n");
  const scope = `${day}/${inp.region}/${inp.service}/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", date, scope, sha256(canonicalRequest)].join("\n");
  const kDate = hmac("AWS4" + inp.credentials.secretAccessKey, day);
  const kSigning = hmac(hmac(hmac(kDate, inp.region), inp.service), "aws4_request");
  const signature = createHmac("sha256", kSigning).update(toSign).digest("hex");
  const credential = `${inp.credentials.accessKeyId}/${scope}`;
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${credential}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
  return headers;
}
