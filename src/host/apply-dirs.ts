/**
 * Directories for an apply: mkdir -p that remembers what it made (so a
 * rollback can remove exactly that), and the fsyncs that make renames
 * durable. Never writes a file.
 */
import { closeSync, constants as fsc, fchmodSync, fsync, mkdirSync, openSync, statSync } from "node:fs";
import path from "node:path";

/** mkdir -p that remembers which directories it created, so a rollback can remove them. */
export function ensureDir(dir: string, created: string[], known: Set<string>, umask: number): void {
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
    try {
      mkdirSync(m, { mode: 0o755 });
    } catch (e) {
      // Made by someone else meanwhile (a run that does not hold the lock): fine if it is a directory; not ours to chmod or undo.
      if ((e as NodeJS.ErrnoException).code !== "EEXIST" || !statSync(m).isDirectory()) throw e;
      continue;
    }
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

export const fsyncFd = (fd: number): Promise<void> => new Promise((resolve, reject) => fsync(fd, (e) => (e ? reject(e) : resolve())));

export async function fsyncDirs(dirs: Iterable<string>): Promise<void> {
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
