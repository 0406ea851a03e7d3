import path from "node:path";

/**
 * `--root DIR`: every host path berth reads or writes is resolved under DIR.
 * With the default root `/` paths are used as they are.
 */
export class HostRoot {
  readonly dir: string;
  constructor(dir = "/") {
    this.dir = path.resolve(dir);
  }
  /**
   * Map an absolute host path (`/etc/...`) to where it is under this root.
   * `..` is resolved the way a chroot does, clamped at the root, so no host
   * path (a config cache path, an archive path from the config) can name a
   * file outside DIR.
   */
  path(hostPath: string): string {
    if (!hostPath.startsWith("/")) throw new Error(`host path must be absolute: ${hostPath}`);
    const inRoot = path.posix.resolve("/", hostPath);
    return this.dir === "/" ? inRoot : path.join(this.dir, inRoot);
  }
  get isHost(): boolean {
    return this.dir === "/";
  }
}
