/**
 * berth's version and build identity. VERSION is kept in step with
 * package.json (tests/unit/cli.test.ts checks it); the commit is stamped in
 * by scripts/build.mjs (esbuild `define`), "dev" when running from source.
 */
export const VERSION = "0.1.0";

declare const __BERTH_COMMIT__: string | undefined;

const COMMIT: string = typeof __BERTH_COMMIT__ === "string" ? __BERTH_COMMIT__ : "dev";

/** `berth --version`: version, commit, the Node.js that runs it, and the architecture. */
export function versionLine(): string {
  return `berth ${VERSION} (commit ${COMMIT}, node ${process.version}, linux/${process.arch})\n`;
}
