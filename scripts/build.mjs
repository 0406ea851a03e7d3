// Builds berth's one bundle with esbuild: dist/berth.cjs (+ .map).
//
// That file is what ships: the release executables embed it unchanged as the
// main script of a Node single-executable application (scripts/package.mjs),
// and bin/berth runs it with the development machine's node. One bundle, one
// code path: there is no second, faster path that could behave differently
// (the V8 startup snapshot of earlier builds could not load node built-ins
// and broke https and gzip on real nodes; see issue 7).
//
// CommonJS, one file: a single-executable application runs exactly one
// script, whose require() only reaches node's built-ins, so every dependency
// is bundled and built-ins are loaded with require() or
// process.getBuiltinModule(), never import() (tests/unit/build.test.ts checks
// the output for import() of anything).
//
// The build is reproducible: the same commit gives the same bytes. It embeds
// the commit (BERTH_COMMIT, else `git rev-parse`), printed by `berth --version`.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** The commit being built: $BERTH_COMMIT, else git's HEAD (with -dirty for local changes), else "unknown". */
export function commitId() {
  if (process.env.BERTH_COMMIT) return process.env.BERTH_COMMIT;
  try {
    const head = execFileSync("git", ["rev-parse", "--short=12", "HEAD"], { cwd: repo, stdio: ["ignore", "pipe", "ignore"] })
      .toString()
      .trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], { cwd: repo, stdio: ["ignore", "pipe", "ignore"] })
      .toString()
      .trim();
    return dirty ? `${head}-dirty` : head;
  } catch {
    return "unknown";
  }
}

export async function buildBundle() {
  await build({
    absWorkingDir: repo,
    entryPoints: ["src/cli/main.ts"],
    outfile: "dist/berth.cjs",
    bundle: true,
    platform: "node",
    // The development node (20) runs it too; the release executables embed a newer one.
    target: "node20",
    format: "cjs",
    minify: true,
    legalComments: "none",
    logLevel: "warning",
    sourcemap: "linked",
    // Paths in the source map relative to dist/, never the builder's absolute path: reproducible.
    sourceRoot: "",
    // dbus-next's optional X11 session-bus discovery; berth only uses the system bus.
    external: ["x11"],
    define: {
      // The example NodeConfig of `berth demo` is part of the executable, not a file beside it.
      __BERTH_EXAMPLE_NODECONFIG__: JSON.stringify(readFileSync(path.join(repo, "data/example-nodeconfig.yaml"), "utf8")),
      // Only demo.ts's from-source fallback reads it, and that branch is dead in the bundle.
      "import.meta.url": JSON.stringify("file:///berth-bundle/src/cli/demo.ts"),
      __BERTH_COMMIT__: JSON.stringify(commitId()),
    },
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    await buildBundle();
  } catch {
    // esbuild has already printed the errors with their locations.
    process.exit(1);
  }
}
