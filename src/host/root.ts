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
  /** Map an absolute host path (`/etc/...`) to where it is under this root. */
  path(hostPath: string): string {
    if (!hostPath.startsWith("/")) throw new Error(`host path must be absolute: ${hostPath}`);
    return this.dir === "/" ? hostPath : path.join(this.dir, hostPath);
  }
  get isHost(): boolean {
    return this.dir === "/";
  }
}
