import { lstatSync, readlinkSync } from "node:fs";
import path from "node:path";

/** Symbolic links followed while resolving one path before giving up, as Linux does (ELOOP). */
const MAX_LINKS = 40;

/**
 * `--root DIR`: every host path berth reads or writes is resolved under DIR.
 * With the default root `/` paths are used as they are.
 *
 * Under another root, paths are resolved the way a chroot (or
 * `openat2(RESOLVE_IN_ROOT)`, `systemctl --root`) resolves them: a symbolic
 * link inside DIR that points to `/elsewhere` means DIR/elsewhere, and `..`
 * stops at DIR, in a link's target too. `--root` is what an image builder
 * points at a mounted image, whose absolute links (`/var/run -> /run`,
 * `/etc/kubernetes -> /data/k8s`) name places in the image, never on the
 * build host. The resolution is done here, component by component with
 * lstat/readlink, and the result handed to the kernel holds no link in any
 * part that existed then: nothing is followed outside DIR. (A link created
 * under DIR between the resolution and the use is not caught; DIR is the
 * image being built, not an adversary racing berth.)
 */
export class HostRoot {
  readonly dir: string;
  constructor(dir = "/") {
    this.dir = path.resolve(dir);
  }
  /**
   * Where the host path `/etc/...` is under this root, every component
   * resolved in the root, the last one included: the file a read opens.
   * `..` in `hostPath` is resolved lexically first, clamped at the root, so
   * no host path (a config cache path, an archive path from the config) can
   * name a file outside DIR. Components that do not exist are kept as they
   * are (a later mkdir or create makes them real directories and files).
   * Throws an ErrnoException with code ELOOP after 40 links.
   */
  path(hostPath: string): string {
    return this.resolve(hostPath, true);
  }
  /**
   * Where the entry `hostPath` is: its parents resolved in the root as by
   * `path()`, the last component not followed. This is what is created,
   * renamed over or removed: a link there is replaced, never written through.
   */
  entryPath(hostPath: string): string {
    return this.resolve(hostPath, false);
  }
  /**
   * A host path as the user should read it in a message: itself on the host,
   * `/etc/x (DIR/etc/x under --root DIR)` otherwise (`real` is where it
   * resolved to, when already known).
   */
  describe(hostPath: string, real?: string): string {
    if (this.isHost) return real ?? hostPath;
    let r = real;
    if (r === undefined) {
      try {
        r = this.entryPath(hostPath);
      } catch {
        r = this.lexical(hostPath);
      }
    }
    return r === hostPath ? r : `${hostPath} (${r} under --root ${this.dir})`;
  }
  get isHost(): boolean {
    return this.dir === "/";
  }

  /** DIR joined with the normalised host path, no link resolved. */
  private lexical(hostPath: string): string {
    const inRoot = path.posix.resolve("/", hostPath);
    return this.isHost ? inRoot : path.join(this.dir, inRoot);
  }

  private resolve(hostPath: string, followLast: boolean): string {
    if (!hostPath.startsWith("/")) throw new Error(`host path must be absolute: ${hostPath}`);
    // The host itself: the kernel resolves links, and this costs nothing extra.
    if (this.isHost) return path.posix.resolve("/", hostPath);
    // Components still to resolve, the next one last; `done` is the resolved part below DIR.
    const todo = path.posix.resolve("/", hostPath).split("/").filter(Boolean).reverse();
    const done: string[] = [];
    let links = 0;
    let exists = true;
    while (todo.length > 0) {
      const c = todo.pop()!;
      if (c === ".") continue;
      if (c === "..") {
        done.pop();
        continue;
      }
      // Past a component that does not exist (or cannot be looked at), the rest is kept as written:
      // the kernel fails there too (ENOENT, ENOTDIR, EACCES) before it can follow anything.
      if (!exists || (todo.length === 0 && !followLast)) {
        done.push(c);
        continue;
      }
      const here = path.join(this.dir, ...done, c);
      let isLink = false;
      try {
        isLink = lstatSync(here).isSymbolicLink();
      } catch {
        exists = false;
      }
      if (!isLink) {
        done.push(c);
        continue;
      }
      if (++links > MAX_LINKS) {
        const e = new Error(
          `too many levels of symbolic links resolving ${hostPath} under --root ${this.dir} (at ${here})`,
        ) as NodeJS.ErrnoException;
        e.code = "ELOOP";
        e.path = here;
        throw e;
      }
      const target = readlinkSync(here);
      // An absolute target starts again at the root; a relative one from the link's directory.
      if (target.startsWith("/")) done.length = 0;
      todo.push(...target.split("/").filter(Boolean).reverse());
    }
    return done.length === 0 ? this.dir : path.join(this.dir, ...done);
  }
}
