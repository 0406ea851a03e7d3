/**
 * Apply a Plan to the disk under a HostRoot: write what differs, atomically
 * (stage every temp file and fsync, then rename; a staging failure leaves the
 * node unchanged), remove what is absent, leave everything else alone.
 * `writeFileAtomic` is the same for one file: the one atomic write in berth.
 * Never writes through a link at a target. Details: docs/internals.md
 * ("Applying a plan").
 */
import {
  closeSync,
  constants as fsc,
  fchmodSync,
  fchownSync,
  lstatSync,
  openSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import type { FileOwner, Plan, PlannedFile } from "../plan/types.ts";
import { isUnitPath } from "../plan/types.ts";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import type { BerthLock } from "./lock.ts";
import type { HostRoot } from "./root.ts";
import { ensureDir, fsyncDirs, fsyncFd } from "./apply-dirs.ts";
import { errnoText, removeStaleTemps, TEMP_NAME, tempName } from "./temp-files.ts";

export interface ApplyReport {
  /** Host paths written (or, in a dry run, that would be written), sorted. */
  written: string[];
  /** Host paths already as planned (bytes, mode and, as root, owner); not touched. */
  unchanged: string[];
  /** Host paths removed (or that would be removed). */
  removed: string[];
  /** A systemd unit or drop-in was written or removed: a daemon-reload is due. */
  unitsChanged: boolean;
  /** Dry run only: one unified diff per written/removed path, in path order. */
  diffs?: FileDiff[];
  /** Temp files left by killed runs that this apply removed (real paths); only with `ApplyOptions.lock`. */
  staleTemps?: string[];
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
   * The berth lock this process holds for the root (src/host/lock.ts). With
   * it, temp files that killed runs left beside the targets are removed.
   */
  lock?: BerthLock;
  /**
   * Owner of files whose plan names none: default root:root when berth runs
   * as root, and not managed otherwise (an unprivileged run cannot give
   * files away). `false` turns ownership off; tests that are not root can
   * pass their own uid/gid.
   */
  owner?: FileOwner | false;
  /**
   * Test seam: called before each file is staged; throwing simulates a
   * failure in the middle of a plan (a full disk, a permission error).
   */
  beforeStage?: (hostPath: string) => void;
}

/** A regular file on disk (mode -1 and no bytes for a symlink, which is replaced). */
interface Existing {
  bytes: Uint8Array;
  mode: number;
  uid: number;
  gid: number;
}

interface Pending {
  file: PlannedFile;
  target: string;
  bytes: Uint8Array;
  owner?: FileOwner;
  old?: Existing;
  tmp?: string;
}

const toBytes = (c: string | Uint8Array): Uint8Array => (typeof c === "string" ? Buffer.from(c, "utf8") : c);

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.compare(a, b) === 0;
}

/** What is on disk at `target`: undefined when absent; an error for a directory or other non-file. */
function readExisting(target: string, hostPath: string, root: HostRoot): Result<Existing | undefined> {
  let st;
  try {
    st = lstatSync(target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT" || (e as NodeJS.ErrnoException).code === "ENOTDIR") return ok(undefined);
    return fail(ioError(e, root, hostPath, target, "read"));
  }
  if (st.isSymbolicLink()) {
    // A symlink is replaced by the rename, never followed: report its target bytes as "different".
    return ok({ bytes: new Uint8Array(), mode: -1, uid: st.uid, gid: st.gid });
  }
  if (!st.isFile()) {
    return fail({
      code: "apply.not-a-file",
      message: `${root.describe(hostPath, target)} exists and is not a regular file`,
      where: { source: target },
      hint: "remove or rename it, then run berth again",
    });
  }
  try {
    return ok({ bytes: readFileSync(target), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid });
  } catch (e) {
    return fail(ioError(e, root, hostPath, target, "read"));
  }
}

/**
 * An I/O error on the file the user knows: the host path, and under --root
 * the real path too. `where` only when the system named another path (the
 * parent directory that could not be made, say), never a temp file.
 */
function ioError(e: unknown, root: HostRoot, hostPath: string, real: string | undefined, op: string): BerthError {
  const err = e as NodeJS.ErrnoException;
  const other = typeof err?.path === "string" && err.path !== real && !TEMP_NAME.test(path.basename(err.path)) ? err.path : undefined;
  return {
    code: "apply.io",
    message: `could not ${op} ${root.describe(hostPath, real)}: ${errnoText(e)}`,
    ...(other ? { where: { source: other } } : {}),
    hint: "check the path's parent directories, permissions and free space; nothing was written",
    cause: e,
  };
}

/**
 * Write one temp file beside its target (its directory exists already):
 * create, chown, chmod, write. Returns its fd, still open for the fsync.
 */
function stage(p: Pending): number {
  const open = (): number => {
    const tmp = tempName(p.target);
    // O_EXCL: never open a file someone else made (or a link planted) at that name.
    const fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
    p.tmp = tmp;
    return fd;
  };
  let fd: number;
  try {
    fd = open();
  } catch (e) {
    // 48 random bits: a second collision is not chance, so only one more try.
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    fd = open();
  }
  try {
    // chown before chmod (chown clears set-id bits); chmod explicitly (the mode given to open() is filtered by the umask).
    if (p.owner) fchownSync(fd, p.owner.uid, p.owner.gid);
    fchmodSync(fd, p.file.mode);
    for (let off = 0; off < p.bytes.byteLength;) off += writeSync(fd, p.bytes, off);
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

/** The owner every file without one of its own gets (see ApplyOptions.owner). */
function defaultOwner(opt: ApplyOptions["owner"]): FileOwner | undefined {
  if (opt === false) return undefined;
  if (opt) return opt;
  return process.geteuid?.() === 0 ? { uid: 0, gid: 0 } : undefined;
}

/** `entryPath`, with a link loop under --root as an error value. */
function entryOf(root: HostRoot, hostPath: string): Result<string> {
  try {
    return ok(root.entryPath(hostPath));
  } catch (e) {
    return fail(ioError(e, root, hostPath, undefined, "resolve"));
  }
}

type Removal = { hostPath: string; target: string; old: Existing };

/** Compute what differs between the plan and the disk. Reads only. */
function compare(
  plan: Plan,
  root: HostRoot,
  owner: FileOwner | undefined,
): Result<{ pending: Pending[]; unchanged: string[]; toRemove: Removal[]; dirs: Map<string, Set<string>> }> {
  const errors: BerthError[] = [];
  const pending: Pending[] = [];
  const unchanged: string[] = [];
  // Every directory the plan names, with the file names planned in it (for the stale-temp sweep).
  const dirs = new Map<string, Set<string>>();
  const note = (target: string): void => {
    const d = path.dirname(target);
    const names = dirs.get(d) ?? new Set<string>();
    names.add(path.basename(target));
    dirs.set(d, names);
  };
  const files = [...plan.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (const file of files) {
    const t = entryOf(root, file.path);
    if (!t.ok) {
      errors.push(...t.errors);
      continue;
    }
    const target = t.value;
    note(target);
    const bytes = toBytes(file.content);
    const cur = readExisting(target, file.path, root);
    if (!cur.ok) {
      errors.push(...cur.errors);
      continue;
    }
    const want = file.owner ?? owner;
    const c = cur.value;
    if (c && c.mode === file.mode && (!want || (c.uid === want.uid && c.gid === want.gid)) && sameBytes(c.bytes, bytes)) {
      unchanged.push(file.path);
      continue;
    }
    pending.push({ file, target, bytes, ...(want ? { owner: want } : {}), ...(c ? { old: c } : {}) });
  }
  const planned = new Set(plan.files.map((f) => f.path));
  const toRemove: Removal[] = [];
  for (const hostPath of [...new Set(plan.absent)].sort()) {
    if (planned.has(hostPath)) {
      errors.push({
        code: "apply.conflict",
        message: `${hostPath} is both planned and marked absent`,
        hint: "this is a bug in a renderer; please report it",
      });
      continue;
    }
    const t = entryOf(root, hostPath);
    if (!t.ok) {
      errors.push(...t.errors);
      continue;
    }
    const target = t.value;
    note(target);
    const cur = readExisting(target, hostPath, root);
    if (!cur.ok) errors.push(...cur.errors);
    else if (cur.value) toRemove.push({ hostPath, target, old: cur.value });
  }
  return errors.length ? fail(...errors) : ok({ pending, unchanged, toRemove, dirs });
}

export async function applyPlan(plan: Plan, root: HostRoot, opts: ApplyOptions = {}): Promise<Result<ApplyReport>> {
  const cmp = compare(plan, root, defaultOwner(opts.owner));
  if (!cmp.ok) return cmp;
  const { pending, unchanged, toRemove } = cmp.value;
  const written = pending.map((p) => p.file.path);
  const removed = toRemove.map((r) => r.hostPath);
  const unitsChanged = [...written, ...removed].some(isUnitPath);

  if (opts.dryRun) {
    const { unifiedDiff } = await import("../plan/diff.ts");
    const diffs: FileDiff[] = [];
    for (const p of pending) {
      const owners = p.old && p.owner ? { old: `${p.old.uid}:${p.old.gid}`, next: `${p.owner.uid}:${p.owner.gid}` } : undefined;
      diffs.push({
        path: p.file.path,
        kind: p.old ? "update" : "create",
        text: unifiedDiff(p.file.path, p.old && { ...p.old, ...(owners ? { owner: owners.old } : {}) }, {
          bytes: p.bytes,
          mode: p.file.mode,
          ...(owners ? { owner: owners.next } : {}),
        }),
      });
    }
    for (const r of toRemove) diffs.push({ path: r.hostPath, kind: "remove", text: unifiedDiff(r.hostPath, r.old, undefined) });
    diffs.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    return ok({ written, unchanged, removed, unitsChanged, diffs });
  }

  const staleTemps = opts.lock ? removeStaleTemps(cmp.value.dirs) : [];
  const created: string[] = [];
  const fds: number[] = [];
  let current: Pending | undefined;
  try {
    // Directories first, so `created` knows exactly what to undo; `known` spares a stat of every directory already seen.
    const known = new Set<string>();
    // process.umask() without an argument only reads it (a documentation-only deprecation, for workers).
    const umask = process.umask();
    for (const p of pending) {
      current = p;
      ensureDir(path.dirname(p.target), created, known, umask);
    }
    // Every file is staged even after a failure, as before, so the failure report names the first one in path order.
    let firstError: { p: Pending; error: unknown } | undefined;
    for (const p of pending) {
      try {
        opts.beforeStage?.(p.file.path);
        fds.push(stage(p));
      } catch (e) {
        firstError ??= { p, error: e };
      }
    }
    if (firstError) {
      current = firstError.p;
      throw firstError.error;
    }
    // Every temp file's data on disk before any rename, concurrently (see the module comment).
    const synced = await Promise.allSettled(fds.map(fsyncFd));
    const failed = synced.findIndex((r) => r.status === "rejected");
    if (failed >= 0) {
      current = pending[failed];
      throw (synced[failed] as PromiseRejectedResult).reason;
    }
  } catch (e) {
    rollback(pending, created);
    return fail(ioError(e, root, current?.file.path ?? "/", current?.target, "write"));
  } finally {
    for (const fd of fds) closeSync(fd);
  }

  // The directories whose entries change: each target's, and the parent of each created directory.
  const dirs = new Set(pending.map((p) => path.dirname(p.target)));
  for (const d of created) dirs.add(path.dirname(d));
  for (const p of pending) {
    try {
      renameSync(p.tmp!, p.target);
      delete p.tmp;
    } catch (e) {
      // Past the point of no return for the files already renamed; at least drop the leftovers.
      rollback(pending, []);
      await fsyncDirs(dirs);
      return fail({
        ...ioError(e, root, p.file.path, p.target, "rename into place"),
        hint: "some files were already replaced; fix the cause and run berth again (apply is idempotent)",
      });
    }
  }
  const removeErrors: BerthError[] = [];
  for (const r of toRemove) {
    try {
      rmSync(r.target, { force: true });
      dirs.add(path.dirname(r.target));
    } catch (e) {
      removeErrors.push(ioError(e, root, r.hostPath, r.target, "remove"));
    }
  }
  await fsyncDirs(dirs);
  if (removeErrors.length) return fail(...removeErrors);
  return ok({ written, unchanged, removed, unitsChanged, ...(staleTemps.length ? { staleTemps } : {}) });
}

/**
 * The one atomic write, for a single file outside the plan (the run status
 * file, the config cache): everything applyPlan does — parents resolved in
 * the root, a temp file that cannot collide, fchown/fchmod, fsync, rename,
 * directory fsync, nothing written when unchanged — with its errors as values.
 */
export function writeFileAtomic(
  root: HostRoot,
  hostPath: string,
  content: string | Uint8Array,
  opts: { mode: number; owner?: FileOwner; lock?: BerthLock; component?: string },
): Promise<Result<ApplyReport>> {
  const file: PlannedFile = {
    path: hostPath,
    content,
    mode: opts.mode,
    component: opts.component ?? "berth",
    ...(opts.owner ? { owner: opts.owner } : {}),
  };
  return applyPlan({ files: [file], absent: [] }, root, opts.lock ? { lock: opts.lock } : {});
}
