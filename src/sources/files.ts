/**
 * `file://PATH` config sources: one file, or a directory whose `.yaml`,
 * `.yml` and `.json` entries (case-insensitive, sub-directories skipped) are
 * read in lexical byte order, as nodeadm does. Absolute paths are host paths
 * and resolve under `--root`, links included (a directory entry that links
 * to /etc/x reads ROOT/etc/x, never the build host's); a relative path (`file://config.yaml`) is
 * relative to the working directory and is not re-rooted, since it names a
 * file of the invoking user rather than of the node.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import type { HostRoot } from "../host/root.ts";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import { errorMessage } from "../util/errors.ts";
import { decodeConfigFile, type SourceText } from "./userdata.ts";

const CONFIG_EXTENSIONS = [".yaml", ".yml", ".json"];

function isConfigFileName(name: string): boolean {
  const lower = name.toLowerCase();
  return CONFIG_EXTENSIONS.some((ext) => lower.endsWith(ext));
}

/** Lexical order by UTF-8 bytes, like Go's os.ReadDir (JS sort compares UTF-16 units). */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/** The path part of a `file://` URL (`file:///etc/x` → `/etc/x`, `file://x.yaml` → `x.yaml`). */
function filePathOfUrl(url: string): Result<string> {
  if (!url.startsWith("file://")) {
    return fail({
      code: "source.url",
      message: `"${url}" is not a file:// URL`,
      where: { source: url },
      hint: "write file:///absolute/path or file://relative/path",
    });
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
    return fail({
      code: "source.url",
      message: `"${url}" names no path`,
      where: { source: url },
      hint: "write file:///etc/eks/nodeadm.d or file:///path/to/config.yaml",
    });
  }
  return ok(p);
}

export interface FileSourceOptions {
  root: HostRoot;
  /** Base of relative paths; default process.cwd(). */
  cwd?: string;
}

function shownPath(hostPath: string, real: string, root: HostRoot): string {
  return real === hostPath ? real : root.describe(hostPath, real);
}

/** Reads a `file://` source into the config texts it holds, in order. An empty directory yields none. */
export async function readFileSource(url: string, opts: FileSourceOptions): Promise<Result<SourceText[]>> {
  const p = filePathOfUrl(url);
  if (!p.ok) return p;
  const hostPath = p.value;
  const inRoot = hostPath.startsWith("/");
  // Where a path of this source is on disk: re-rooted (links resolved in the root) or, when relative, as written.
  const locate = (hp: string): string => (inRoot ? opts.root.path(hp) : path.resolve(opts.cwd ?? process.cwd(), hp));
  let real = hostPath;
  let isDir: boolean;
  try {
    real = locate(hostPath);
    isDir = (await stat(real)).isDirectory();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return fail({
      code: code === "ENOENT" ? "source.not-found" : "source.unreadable",
      message:
        code === "ENOENT"
          ? `config path ${shownPath(hostPath, real, opts.root)} does not exist`
          : `cannot access config path ${shownPath(hostPath, real, opts.root)}: ${errorMessage(e)}`,
      where: { source: url },
      hint:
        code === "ENOENT"
          ? "create it, fix the --config-source URL, or drop that source"
          : "check the permissions of the path (berth reads it as the user it runs as)",
      cause: e,
    });
  }
  if (!isDir) return readOne(url, real, hostPath, opts.root);

  let names: string[];
  try {
    const entries = await readdir(real, { withFileTypes: true });
    names = entries
      .filter((e) => !e.isDirectory() && isConfigFileName(e.name))
      .map((e) => e.name)
      .sort(compareNames);
  } catch (e) {
    return fail({
      code: "source.unreadable",
      message: `cannot list directory ${shownPath(hostPath, real, opts.root)}: ${errorMessage(e)}`,
      where: { source: url },
      hint: "check its permissions",
      cause: e,
    });
  }
  const out: SourceText[] = [];
  const errors: BerthError[] = [];
  const base = url.replace(/\/+$/, "");
  for (const name of names) {
    const entry = path.posix.join(hostPath, name);
    let entryReal: string;
    try {
      entryReal = inRoot ? locate(entry) : path.join(real, name);
    } catch (e) {
      errors.push({
        code: "source.unreadable",
        message: `cannot read config file ${shownPath(entry, path.join(real, name), opts.root)}: ${errorMessage(e)}`,
        where: { source: `${base}/${name}` },
        hint: "fix or remove the symbolic link",
        cause: e,
      });
      continue;
    }
    const r = await readOne(`${base}/${name}`, entryReal, entry, opts.root);
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
      message: `cannot read config file ${shownPath(hostPath, real, root)}: ${errorMessage(e)}`,
      where: { source },
      hint: "check that it is a readable regular file",
      cause: e,
    });
  }
  return decodeConfigFile(bytes, source);
}
