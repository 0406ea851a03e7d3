/**
 * Test certificate authorities, one per call (openssl, in a temp dir removed
 * at exit): what the API server STAND-IN serves with, and a second CA to
 * prove a mismatch is caught. Not a real PKI: EC P-256 keys, two-day
 * certificates, nothing trusts them unless told to.
 */
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface TestCa {
  /** PEM of the CA certificate. */
  pem: string;
  /** The CA's PEM base64-encoded, as a NodeConfig's spec.cluster.certificateAuthority holds it. */
  base64: string;
  dir: string;
  caFile: string;
  keyFile: string;
  /** A certificate signed by this CA for `names` (DNS names; `127.0.0.1` as an IP SAN unless `noIp`), with its key; `client` for client auth. */
  issue(names: string[], opts?: { noIp?: boolean; client?: boolean; cn?: string }): Promise<{ cert: string; key: string }>;
}

export async function createTestCa(label = "berth test CA"): Promise<TestCa> {
  const dir = mkdtempSync(path.join(tmpdir(), "berth-test-pki-"));
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  const caFile = path.join(dir, "ca.pem");
  const keyFile = path.join(dir, "ca.key");
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    keyFile,
    "-out",
    caFile,
    "-days",
    "2",
    "-subj",
    `/CN=${label} ${randomUUID()}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  const pem = readFileSync(caFile, "utf8");
  return {
    pem,
    base64: Buffer.from(pem).toString("base64"),
    dir,
    caFile,
    keyFile,
    async issue(names, opts = {}) {
      const base = path.join(dir, `leaf-${randomUUID()}`);
      const san = [...(opts.noIp ? [] : ["IP:127.0.0.1"]), ...names.map((n) => `DNS:${n}`)];
      writeFileSync(
        `${base}.ext`,
        [
          ...(san.length ? [`subjectAltName=${san.join(",")}`] : []),
          "basicConstraints=critical,CA:FALSE",
          "keyUsage=critical,digitalSignature",
          `extendedKeyUsage=${opts.client ? "clientAuth" : "serverAuth"}`,
          "authorityKeyIdentifier=keyid",
          "",
        ].join("\n"),
      );
      await run("openssl", [
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        `${base}.key`,
        "-out",
        `${base}.csr`,
        "-subj",
        `/CN=${opts.cn ?? names[0] ?? "127.0.0.1"}`,
      ]);
      await run("openssl", [
        "x509",
        "-req",
        "-in",
        `${base}.csr`,
        "-CA",
        caFile,
        "-CAkey",
        keyFile,
        "-set_serial",
        `0x${randomUUID().replace(/-/g, "")}`,
        "-days",
        "2",
        "-extfile",
        `${base}.ext`,
        "-out",
        `${base}.pem`,
      ]);
      return { cert: readFileSync(`${base}.pem`, "utf8"), key: readFileSync(`${base}.key`, "utf8") };
    },
  };
}
