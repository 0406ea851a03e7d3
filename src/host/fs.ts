/**
 * Apply a Plan to the disk under a HostRoot: write what differs, atomically,
 * and leave everything else alone.
 *
 * Two phases so a failure cannot leave a half-configured node:
 *   1. stage: every changed file is written to a temp file beside its target
 *      (same directory, so the rename is atomic), fsynced and chmod-ed. Any
 *      error here removes every temp file (and directories this apply created)
 *      and nothing on the node has changed.
 *   2. commit: rename every temp over its target, fsync each touched
 *      directory, then remove the `absent` paths.
 * A rename can still fail in phase 2 (e.g. the disk vanishes); a filesystem
 * offers no multi-file transaction, so this is "all or nothing as far as the
 * filesystem allows".
 */
import { promises as fsp, constants as fsc } from "node:fs";
import path from "node:path";
import type { Plan, PlannedFile } from "../plan/types.ts";
import { isUnitPath } from "../plan/types.ts";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import type { HostRoot } from "./root.ts";

export interface ApplyReport {
  /** Host paths written (or, in a dry run, that would be written), sorted. */
  written: string[];
  /** Host paths already as planned (bytes and mode); not touched. */
  unchanged: string[];
  /** Host paths removed (or that would be removed). */
  removed: string[];
  /** A systemd unit or drop-in was written or removed: a daemon-reload is due. */
  unitsChanged: boolean;
  /** Dry run only: one unified diff per written/removed path, in path order. */
  diffs?: FileDiff[];
}

export interface FileDiff {
  path: string;
  kind: "create" | "update" | "remove";
  /** Unified diff text (ends with a newline); mode changes as git-style `old mode`/`new mode` lines. */
  text: string;
}

export interface ApplyOptions {
  dryRun?: boolean;
  /**
   * Test seam: called before each file is staged; throwing simulates a
   * failure in the middle of a plan (a full disk, a permission error).
   */
  beforeStage?: (hostPath: string) => void;
}

interface Pending {
  file: PlannedFile;
  target: string;
  bytes: Uint8Array;
  old?: { bytes: Uint8Array; mode: number };
  tmp?: string;
}

const toBytes = (c: string | Uint8Array): Uint8Array => (typeof c === "string" ? Buffer.from(c, "utf8") : c);

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.compare(a, b) === 0;
}

/** What is on disk at `target`: undefined when absent; an error for a directory or other non-file. */
async function readExisting(target: string, hostPath: string): Promise<Result<{ bytes: Uint8Array; mode: number } | undefined>> {
  let st;
  try {
    st = await fsp.lstat(target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT" || (e as NodeJS.ErrnoException).code === "ENOTDIR") return ok(undefined);
    return fail(ioError(e, hostPath, "read"));
  }
  if (st.isSymbolicLink()) {
    // A symlink is replaced by the rename, never followed: report its target bytes as "different".
    return ok({ bytes: new Uint8Array(), mode: -1 });
  }
  if (!st.isFile()) {
    return fail({
      code: "apply.not-a-file",
      message: `${hostPath} exists and is not a regular file`,
      where: { source: target },
      hint: "remove or rename it, then run berth again",
    });
  }
  try {
    return ok({ bytes: await fsp.readFile(target), mode: st.mode & 0o7777 });
  } catch (e) {
    return fail(ioError(e, hostPath, "read"));
  }
}

function ioError(e: unknown, hostPath: string, op: string): BerthError {
  const err = e as NodeJS.ErrnoException;
  return {
    code: "apply.io",
    message: `could not ${op} ${hostPath}: ${err.code ?? ""}${err.code ? " " : ""}${err.message ?? String(e)}`.replace(/\s+/g, " ").trim(),
    where: { source: err.path ?? hostPath },
    hint: "check the path's parent directories, permissions and free space; nothing was written",
    cause: e,
  };
}

/** Whether the umask takes bits off 0755 (then new directories need a chmod). */
function umaskNarrows(): boolean {
  // process.umask() without an argument only reads it (a documentation-only deprecation, for workers).
  return (process.umask() & 0o755) !== 0;
}

/** mkdir -p that remembers which directories it created, so a rollback can remove them. */
async function ensureDir(dir: string, created: string[], known: Set<string>): Promise<void> {
  const missing: string[] = [];
  let d = dir;
  for (;;) {
    if (known.has(d)) break;
    try {
      const st = await fsp.stat(d);
      if (!st.isDirectory()) {
        const e = new Error(`${d} is not a directory`) as NodeJS.ErrnoException;
        e.code = "ENOTDIR";
        e.path = d;
        throw e;
      }
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      missing.push(d);
      const parent = path.dirname(d);
      if (parent === d) break;
      d = parent;
    }
  }
  for (const m of missing.reverse()) {
    await fsp.mkdir(m, { mode: 0o755 });
    created.push(m);
    // 0755 whatever the umask: the node's directories must not depend on the shell berth ran from.
    if (umaskNarrows()) await fsp.chmod(m, 0o755);
  }
  for (let k = dir; !known.has(k); k = path.dirname(k)) {
    known.add(k);
    if (path.dirname(k) === k) break;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  let fh;
  try {
    fh = await fsp.open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
    await fh.sync();
  } catch {
    // Some filesystems refuse fsync on a directory (EINVAL); the renames are already done.
  } finally {
    await fh?.close();
  }
}

let tmpSeq = 0;

/** Write one temp file beside its target: chmod, write, fsync (data and mode). Its directory exists already. */
async function stage(p: Pending): Promise<void> {
  const dir = path.dirname(p.target);
  // pid + sequence is unique within this host; O_EXCL catches a leftover from a crashed run with a recycled pid.
  const tmp = path.join(dir, `.${path.basename(p.target)}.berth-${process.pid}-${++tmpSeq}.tmp`);
  const fh = await fsp.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
  p.tmp = tmp;
  try {
    // chmod explicitly (the mode given to open() is filtered by the umask), before the fsync that persists it.
    await fh.chmod(p.file.mode);
    await fh.writeFile(p.bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function rollback(pending: Pending[], created: string[]): Promise<void> {
  for (const p of pending) {
    if (p.tmp) await fsp.rm(p.tmp, { force: true }).catch(() => undefined);
    delete p.tmp;
  }
  for (const d of [...created].reverse()) await fsp.rmdir(d).catch(() => undefined);
}

/** Compute what differs between the plan and the disk. Reads only. */
async function compare(plan: Plan, root: HostRoot): Promise<Result<{ pending: Pending[]; unchanged: string[]; toRemove: { hostPath: string; target: string; old: { bytes: Uint8Array; mode: number } }[] }>> {
  const errors: BerthError[] = [];
  const pending: Pending[] = [];
  const unchanged: string[] = [];
  const files = [...plan.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  // Reads run concurrently (the results are consumed in path order, so output stays deterministic).
  const current = await Promise.all(files.map((f) => readExisting(root.path(f.path), f.path)));
  for (const [i, file] of files.entries()) {
    const target = root.path(file.path);
    const bytes = toBytes(file.content);
    const cur = current[i]!;
    if (!cur.ok) {
      errors.push(...cur.errors);
      continue;
    }
    if (cur.value && cur.value.mode === file.mode && sameBytes(cur.value.bytes, bytes)) {
      unchanged.push(file.path);
      continue;
    }
    pending.push({ file, target, bytes, ...(cur.value ? { old: cur.value } : {}) });
  }
  const planned = new Set(plan.files.map((f) => f.path));
  const toRemove: { hostPath: string; target: string; old: { bytes: Uint8Array; mode: number } }[] = [];
  for (const hostPath of [...new Set(plan.absent)].sort()) {
    if (planned.has(hostPath)) {
      errors.push({
        code: "apply.conflict",
        message: `${hostPath} is both planned and marked absent`,
        hint: "this is a bug in a renderer; please report it",
      });
      continue;
    }
    const target = root.path(hostPath);
    const cur = await readExisting(target, hostPath);
    if (!cur.ok) errors.push(...cur.errors);
    else if (cur.value) toRemove.push({ hostPath, target, old: cur.value });
  }
  return errors.length ? fail(...errors) : ok({ pending, unchanged, toRemove });
}

export async function applyPlan(plan: Plan, root: HostRoot, opts: ApplyOptions = {}): Promise<Result<ApplyReport>> {
  const cmp = await compare(plan, root);
  if (!cmp.ok) return cmp;
  const { pending, unchanged, toRemove } = cmp.value;
  const written = pending.map((p) => p.file.path);
  const removed = toRemove.map((r) => r.hostPath);
  const unitsChanged = [...written, ...removed].some(isUnitPath);

  if (opts.dryRun) {
    const { unifiedDiff } = await import("../plan/diff.ts");
    const diffs: FileDiff[] = [];
    for (const p of pending) {
      diffs.push({ path: p.file.path, kind: p.old ? "update" : "create", text: unifiedDiff(p.file.path, p.old, { bytes: p.bytes, mode: p.file.mode }) });
    }
    for (const r of toRemove) diffs.push({ path: r.hostPath, kind: "remove", text: unifiedDiff(r.hostPath, r.old, undefined) });
    diffs.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    return ok({ written, unchanged, removed, unitsChanged, diffs });
  }

  const created: string[] = [];
  let current = "";
  try {
    // Directories first, one at a time, so `created` knows exactly what to undo;
    // `known` spares a stat of every directory already seen.
    const known = new Set<string>();
    for (const p of pending) {
      current = p.file.path;
      await ensureDir(path.dirname(p.target), created, known);
    }
    // Temp files concurrently: each fsync waits on the disk (~1-5 ms on ext4),
    // and concurrent fsyncs share journal commits.
    const staged = await Promise.allSettled(
      pending.map(async (p) => {
        opts.beforeStage?.(p.file.path);
        await stage(p);
      }),
    );
    const firstFailure = staged.findIndex((r) => r.status === "rejected");
    if (firstFailure >= 0) {
      current = pending[firstFailure]!.file.path;
      throw (staged[firstFailure] as PromiseRejectedResult).reason;
    }
  } catch (e) {
    await rollback(pending, created);
    return fail(ioError(e, current, "write"));
  }

  const dirs = new Set(pending.map((p) => path.dirname(p.target)));
  // Renames are independent of each other (each is atomic on its own), so they run concurrently.
  const renamed = await Promise.allSettled(
    pending.map(async (p) => {
      await fsp.rename(p.tmp!, p.target);
      delete p.tmp;
    }),
  );
  const failedRename = renamed.findIndex((r) => r.status === "rejected");
  if (failedRename >= 0) {
    // Past the point of no return for the files already renamed; at least drop the leftovers.
    await rollback(pending, []);
    const e = (renamed[failedRename] as PromiseRejectedResult).reason;
    return fail({ ...ioError(e, pending[failedRename]!.file.path, "rename into place"), hint: "some files were already replaced; fix the cause and run berth again (apply is idempotent)" });
  }
  const removeErrors: BerthError[] = [];
  for (const r of toRemove) {
    try {
      await fsp.rm(r.target, { force: true });
      dirs.add(path.dirname(r.target));
    } catch (e) {
      removeErrors.push(ioError(e, r.hostPath, "remove"));
    }
  }
  await Promise.all([...dirs].map(fsyncDir));
  if (removeErrors.length) return fail(...removeErrors);
  return ok({ written, unchanged, removed, unitsChanged });
}
