/**
 * `file://PATH` config sources: one file, or a directory whose `.yaml`,
 * `.yml` and `.json` entries (case-insensitive, sub-directories skipped) are
 * read in lexical byte order, as nodeadm does. Absolute paths are host paths
 * and resolve under `--root`; a relative path (`file://config.yaml`) is
 * relative to the working directory and is not re-rooted, since it names a
 * file of the invoking user rather than of the node.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import type { HostRoot } from "../host/root.ts";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import { decodeConfigFile, type SourceText } from "./userdata.ts";

const CONFIG_EXTENSIONS = [".yaml", ".yml", ".json"];

export function isConfigFileName(name: string): boolean {
  const lower = name.toLowerCase();
  return CONFIG_EXTENSIONS.some((ext) => lower.endsWith(ext));
}

/** Lexical order by UTF-8 bytes, like Go's os.ReadDir (JS sort compares UTF-16 units). */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/** The path part of a `file://` URL (`file:///etc/x` → `/etc/x`, `file://x.yaml` → `x.yaml`). */
export function filePathOfUrl(url: string): Result<string> {
  if (!url.startsWith("file://")) {
    return fail({ code: "source.url", message: `"${url}" is not a file:// URL`, where: { source: url }, hint: "write file:///absolute/path or file://relative/path" });
  }
  let p = url.slice("file://".length);
  const cut = p.search(/[?#]/);
  if (cut !== -1) p = p.slice(0, cut);
  try {
    p = decodeURIComponent(p);
  } catch {
    // Not percent-encoded after all; take it literally.
  }
  if (p === "") {
    return fail({ code: "source.url", message: `"${url}" names no path`, where: { source: url }, hint: "write file:///etc/eks/nodeadm.d or file:///path/to/config.yaml" });
  }
  return ok(p);
}

export interface FileSourceOptions {
  root: HostRoot;
  /** Base of relative paths; default process.cwd(). */
  cwd?: string;
}

function describe(hostPath: string, real: string, root: HostRoot): string {
  return real === hostPath ? real : `${hostPath} (${real} under --root ${root.dir})`;
}

/** Reads a `file://` source into the config texts it holds, in order. An empty directory yields none. */
export async function readFileSource(url: string, opts: FileSourceOptions): Promise<Result<SourceText[]>> {
  const p = filePathOfUrl(url);
  if (!p.ok) return p;
  const hostPath = p.value;
  const real = hostPath.startsWith("/") ? opts.root.path(hostPath) : path.resolve(opts.cwd ?? process.cwd(), hostPath);
  let isDir: boolean;
  try {
    isDir = (await stat(real)).isDirectory();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return fail({
      code: code === "ENOENT" ? "source.not-found" : "source.unreadable",
      message: code === "ENOENT" ? `config path ${describe(hostPath, real, opts.root)} does not exist` : `cannot access config path ${describe(hostPath, real, opts.root)}: ${(e as Error).message}`,
      where: { source: url },
      hint: code === "ENOENT"
        ? "create it, fix the --config-source URL, or drop that source"
        : "check the permissions of the path (berth reads it as the user it runs as)",
      cause: e,
    });
  }
  if (!isDir) return readOne(url, real, hostPath, opts.root);

  let names: string[];
  try {
    const entries = await readdir(real, { withFileTypes: true });
    names = entries.filter((e) => !e.isDirectory() && isConfigFileName(e.name)).map((e) => e.name).sort(compareNames);
  } catch (e) {
    return fail({ code: "source.unreadable", message: `cannot list directory ${describe(hostPath, real, opts.root)}: ${(e as Error).message}`, where: { source: url }, hint: "check its permissions", cause: e });
  }
  const out: SourceText[] = [];
  const errors: BerthError[] = [];
  const base = url.replace(/\/+$/, "");
  for (const name of names) {
    const r = await readOne(`${base}/${name}`, path.join(real, name), path.posix.join(hostPath, name), opts.root);
    if (r.ok) out.push(...r.value);
    else errors.push(...r.errors);
  }
  return errors.length ? { ok: false, errors } : ok(out);
}

async function readOne(source: string, real: string, hostPath: string, root: HostRoot): Promise<Result<SourceText[]>> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(real);
  } catch (e) {
    return fail({
      code: "source.unreadable",
      message: `cannot read config file ${describe(hostPath, real, root)}: ${(e as Error).message}`,
      where: { source },
      hint: "check that it is a readable regular file",
      cause: e,
    });
  }
  return decodeConfigFile(bytes, source);
}
