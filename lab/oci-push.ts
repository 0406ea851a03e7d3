// Pushes one image from an OCI image layout into a registry over the
// Distribution HTTP API v2 (monolithic blob uploads, then the manifest).
//
// Hand-written on purpose: the lab needs exactly one push of a two-blob image
// to a plain-HTTP loopback registry; Debian's tools for this (skopeo) pull in
// ~30 MB of extra packages for what is three HTTP requests per blob, and doing
// it in-process keeps the lab's test runs free of another subprocess.
// CLI: node --import tsx lab/oci-push.ts LAYOUT_DIR HOST:PORT REPOSITORY TAG
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

interface Manifest {
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
}

export interface PushOptions {
  /** host:port of a plain-HTTP registry (loopback only) */
  registry: string;
  layoutDir: string;
  /** The tag to push; the layout's manifest is chosen by its ref.name annotation (or the only one). */
  tag: string;
  repository: string;
  timeoutMs?: number;
}

function blobPath(layoutDir: string, digest: string): string {
  const [alg, hex] = digest.split(":");
  if (!alg || !hex || !/^[a-f0-9]+$/.test(hex)) throw new Error(`bad digest ${digest} in ${layoutDir}`);
  return join(layoutDir, "blobs", alg, hex);
}

/** Returns the pushed manifest's digest. */
export async function pushOciLayout(o: PushOptions): Promise<string> {
  if (!/^(127\.0\.0\.1|localhost|\[::1\]):\d+$/.test(o.registry)) {
    throw new Error(`refusing to push to ${o.registry}: the lab only talks to loopback registries`);
  }
  const timeout = o.timeoutMs ?? 30_000;
  const base = `http://${o.registry}/v2/${o.repository}`;
  const index = JSON.parse(await readFile(join(o.layoutDir, "index.json"), "utf8")) as { manifests: Descriptor[] };
  const chosen =
    index.manifests.find((m) => m.annotations?.["org.opencontainers.image.ref.name"] === o.tag) ??
    (index.manifests.length === 1 ? index.manifests[0] : undefined);
  if (!chosen) throw new Error(`no manifest tagged "${o.tag}" in ${o.layoutDir}/index.json`);
  const manifestBytes = await readFile(blobPath(o.layoutDir, chosen.digest));
  const manifest = JSON.parse(manifestBytes.toString("utf8")) as Manifest;

  for (const desc of [manifest.config, ...manifest.layers]) {
    const head = await fetch(`${base}/blobs/${desc.digest}`, { method: "HEAD", signal: AbortSignal.timeout(timeout) });
    if (head.status === 200) continue;
    const data = await readFile(blobPath(o.layoutDir, desc.digest));
    const actual = `sha256:${createHash("sha256").update(data).digest("hex")}`;
    if (actual !== desc.digest) throw new Error(`blob ${desc.digest} in ${o.layoutDir} hashes to ${actual}`);
    const start = await fetch(`${base}/blobs/uploads/`, { method: "POST", signal: AbortSignal.timeout(timeout) });
    const location = start.headers.get("location");
    if (start.status !== 202 || !location) throw new Error(`upload start for ${desc.digest} → HTTP ${start.status}: ${await start.text()}`);
    const url = new URL(location, `http://${o.registry}`);
    url.searchParams.set("digest", desc.digest);
    const put = await fetch(url, {
      method: "PUT",
      body: data,
      headers: { "content-type": "application/octet-stream", "content-length": String(data.length) },
      signal: AbortSignal.timeout(timeout),
    });
    if (put.status !== 201) throw new Error(`upload of ${desc.digest} → HTTP ${put.status}: ${await put.text()}`);
  }
  const res = await fetch(`${base}/manifests/${o.tag}`, {
    method: "PUT",
    body: manifestBytes,
    headers: { "content-type": manifest.mediaType ?? chosen.mediaType ?? "application/vnd.oci.image.manifest.v1+json" },
    signal: AbortSignal.timeout(timeout),
  });
  if (res.status !== 201) throw new Error(`manifest PUT ${o.repository}:${o.tag} → HTTP ${res.status}: ${await res.text()}`);
  return res.headers.get("docker-content-digest") ?? chosen.digest;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [layoutDir, registry, repository, tag] = process.argv.slice(2);
  if (!layoutDir || !registry || !repository || !tag) {
    process.stderr.write("usage: oci-push.ts LAYOUT_DIR HOST:PORT REPOSITORY TAG\n");
    process.exit(2);
  }
  pushOciLayout({ layoutDir, registry, repository, tag }).then(
    (d) => process.stdout.write(`${d}\n`),
    (e: unknown) => {
      process.stderr.write(`oci-push: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}
