/**
 * Apply a Plan to the disk under a HostRoot: write what differs, atomically,
 * and leave everything else alone.
 *
 * Two phases so a failure cannot leave a half-configured node:
 *   1. stage: every changed file is written to a temp file beside its target
 *      (same directory, so the rename is atomic), chmod-ed and fsynced. Any
 *      error here removes every temp file (and directories this apply created)
 *      and nothing on the node has changed.
 *   2. commit: rename every temp over its target, remove the `absent` paths,
 *      then fsync each touched directory once (those whose entries changed,
 *      and the parent of each directory this apply created).
 * A rename can still fail in phase 2 (e.g. the disk vanishes); a filesystem
 * offers no multi-file transaction, so this is "all or nothing as far as the
 * filesystem allows".
 *
 * Why synchronous fs calls, except for the fsyncs: startup time is a
 * requirement (bench/config-phase.ts) and the config phase does nothing else
 * while it applies. Each promise-based call is a hand-off to libuv's thread
 * pool and back; for a dozen small files those round trips cost more than
 * the syscalls. The fsyncs are the one step that waits on the disk (~3 ms
 * each on ext4), so they, and only they, run concurrently in the pool, where
 * they share journal commits.
 */
import { closeSync, constants as fsc, fchmodSync, fsync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, rmdirSync, rmSync, statSync, writeSync } from "node:fs";
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
function readExisting(target: string, hostPath: string): Result<{ bytes: Uint8Array; mode: number } | undefined> {
  let st;
  try {
    st = lstatSync(target);
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
    return ok({ bytes: readFileSync(target), mode: st.mode & 0o7777 });
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

/** mkdir -p that remembers which directories it created, so a rollback can remove them. */
function ensureDir(dir: string, created: string[], known: Set<string>, umask: number): void {
  const missing: string[] = [];
  let d = dir;
  for (;;) {
    if (known.has(d)) break;
    try {
      const st = statSync(d);
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
    mkdirSync(m, { mode: 0o755 });
    created.push(m);
    // 0755 whatever the umask: the node's directories must not depend on the shell berth ran from.
    if ((umask & 0o755) !== 0) chmodDir(m);
  }
  for (let k = dir; !known.has(k); k = path.dirname(k)) {
    known.add(k);
    if (path.dirname(k) === k) break;
  }
}

function chmodDir(dir: string): void {
  const fd = openSync(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    fchmodSync(fd, 0o755);
  } finally {
    closeSync(fd);
  }
}

const fsyncFd = (fd: number): Promise<void> => new Promise((resolve, reject) => fsync(fd, (e) => (e ? reject(e) : resolve())));

async function fsyncDirs(dirs: Iterable<string>): Promise<void> {
  const fds: number[] = [];
  for (const dir of dirs) {
    try {
      fds.push(openSync(dir, fsc.O_RDONLY | fsc.O_DIRECTORY));
    } catch {
      // Gone or unreadable: nothing to make durable there.
    }
  }
  // Some filesystems refuse fsync on a directory (EINVAL); the renames are already done.
  await Promise.all(fds.map((fd) => fsyncFd(fd).catch(() => undefined)));
  for (const fd of fds) closeSync(fd);
}

let tmpSeq = 0;

/** Write one temp file beside its target (its directory exists already): create, chmod, write. Returns its fd, still open for the fsync. */
function stage(p: Pending): number {
  const dir = path.dirname(p.target);
  // pid + sequence is unique within this host; O_EXCL catches a leftover from a crashed run with a recycled pid.
  const tmp = path.join(dir, `.${path.basename(p.target)}.berth-${process.pid}-${++tmpSeq}.tmp`);
  const fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
  p.tmp = tmp;
  try {
    // chmod explicitly (the mode given to open() is filtered by the umask).
    fchmodSync(fd, p.file.mode);
    for (let off = 0; off < p.bytes.byteLength; ) off += writeSync(fd, p.bytes, off);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return fd;
}

function rollback(pending: Pending[], created: string[]): void {
  for (const p of pending) {
    if (p.tmp) {
      try {
        rmSync(p.tmp, { force: true });
      } catch {
        // best effort
      }
    }
    delete p.tmp;
  }
  for (const d of [...created].reverse()) {
    try {
      rmdirSync(d);
    } catch {
      // not empty (someone else wrote there) or gone: leave it
    }
  }
}

/** Compute what differs between the plan and the disk. Reads only. */
function compare(plan: Plan, root: HostRoot): Result<{ pending: Pending[]; unchanged: string[]; toRemove: { hostPath: string; target: string; old: { bytes: Uint8Array; mode: number } }[] }> {
  const errors: BerthError[] = [];
  const pending: Pending[] = [];
  const unchanged: string[] = [];
  const files = [...plan.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (const file of files) {
    const target = root.path(file.path);
    const bytes = toBytes(file.content);
    const cur = readExisting(target, file.path);
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
    const cur = readExisting(target, hostPath);
    if (!cur.ok) errors.push(...cur.errors);
    else if (cur.value) toRemove.push({ hostPath, target, old: cur.value });
  }
  return errors.length ? fail(...errors) : ok({ pending, unchanged, toRemove });
}

export async function applyPlan(plan: Plan, root: HostRoot, opts: ApplyOptions = {}): Promise<Result<ApplyReport>> {
  const cmp = compare(plan, root);
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
  const fds: number[] = [];
  let current = "";
  try {
    // Directories first, so `created` knows exactly what to undo; `known` spares a stat of every directory already seen.
    const known = new Set<string>();
    // process.umask() without an argument only reads it (a documentation-only deprecation, for workers).
    const umask = process.umask();
    for (const p of pending) {
      current = p.file.path;
      ensureDir(path.dirname(p.target), created, known, umask);
    }
    // Every file is staged even after a failure, as before, so the failure report names the first one in path order.
    let firstError: { path: string; error: unknown } | undefined;
    for (const p of pending) {
      try {
        opts.beforeStage?.(p.file.path);
        fds.push(stage(p));
      } catch (e) {
        firstError ??= { path: p.file.path, error: e };
      }
    }
    if (firstError) {
      current = firstError.path;
      throw firstError.error;
    }
    // Every temp file's data on disk before any rename, concurrently (see the module comment).
    const synced = await Promise.allSettled(fds.map(fsyncFd));
    const failed = synced.findIndex((r) => r.status === "rejected");
    if (failed >= 0) {
      current = pending[failed]!.file.path;
      throw (synced[failed] as PromiseRejectedResult).reason;
    }
  } catch (e) {
    rollback(pending, created);
    return fail(ioError(e, current, "write"));
  } finally {
    for (const fd of fds) closeSync(fd);
  }

  // The directories whose entries change: each target's, and the parent of each created directory.
  const dirs = new Set(pending.map((p) => path.dirname(p.target)));
  for (const d of created) dirs.add(path.dirname(d));
  for (const [i, p] of pending.entries()) {
    try {
      renameSync(p.tmp!, p.target);
      delete p.tmp;
    } catch (e) {
      // Past the point of no return for the files already renamed; at least drop the leftovers.
      rollback(pending, []);
      await fsyncDirs(dirs);
      return fail({ ...ioError(e, pending[i]!.file.path, "rename into place"), hint: "some files were already replaced; fix the cause and run berth again (apply is idempotent)" });
    }
  }
  const removeErrors: BerthError[] = [];
  for (const r of toRemove) {
    try {
      rmSync(r.target, { force: true });
      dirs.add(path.dirname(r.target));
    } catch (e) {
      removeErrors.push(ioError(e, r.hostPath, "remove"));
    }
  }
  await fsyncDirs(dirs);
  if (removeErrors.length) return fail(...removeErrors);
  return ok({ written, unchanged, removed, unitsChanged });
}
