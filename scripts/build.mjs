// Builds berth with esbuild:
//
//   dist/berth.mjs + dist/chunks/*.mjs   the CLI, ESM, code-split
//   dist/snapshot/berth.blob             V8 startup snapshot of the config phase (fast path)
//
// Code splitting, because startup time is a requirement: the entry is a few
// KB (argument dispatch only) and each command loads just the chunks it
// imports. One 2.9 MB file made `berth demo` ~20% slower than the split build
// (bench/config-phase.ts --single): V8 must scan the whole file (gRPC,
// D-Bus, CEL, pino) before running a line of it.
//
// The startup snapshot (src/cli/snapshot.ts) goes further for the
// config-phase commands: a CommonJS bundle of the config phase is evaluated
// and warmed up once by `node --build-snapshot`; bin/berth starts from the
// resulting heap. A snapshot only works with the node that built it, so the
// node binary's identity (path, and its mtime on a stamp file) is recorded beside it; if building or smoke-testing it fails,
// it is left out with a warning and bin/berth uses dist/berth.mjs.
//
//   BERTH_SINGLE=1       also build the single-file variant to dist/single/ (for comparison)
//   BERTH_NO_SNAPSHOT=1  skip the snapshot
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const single = process.env.BERTH_SINGLE === "1";

const common = {
  absWorkingDir: repo,
  bundle: true,
  platform: "node",
  target: "node20",
  minify: true,
  legalComments: "none",
  logLevel: "warning",
  // dbus-next's optional X11 session-bus discovery; berth only uses the system bus.
  external: ["x11"],
};
// CommonJS dependencies (gRPC, dbus-next) call require(); give every ESM output file one.
const esmRequire = "import { createRequire as __berthCreateRequire } from 'node:module'; const require = __berthCreateRequire(import.meta.url);";

async function buildEsm() {
  // Chunk names carry content hashes; drop the previous build's so dist/ holds one consistent set.
  if (!single) rmSync(path.join(repo, "dist/chunks"), { recursive: true, force: true });
  const result = await build({
    ...common,
    entryPoints: { berth: "src/cli/main.ts" },
    format: "esm",
    ...(single
      ? { outfile: "dist/single/berth.mjs" }
      : { splitting: true, outdir: "dist", entryNames: "[name]", chunkNames: "chunks/[name]-[hash]", outExtension: { ".js": ".mjs" } }),
    sourcemap: "linked",
    banner: { js: esmRequire },
    // dist/meta.json: which module went into which chunk (esbuild's analyzer reads it).
    metafile: true,
  });
  writeFileSync(path.join(repo, single ? "dist/single/meta.json" : "dist/meta.json"), JSON.stringify(result.metafile));
}

/** Packages the snapshot loads from their own file on first use: [package, dist/snapshot/<file>.cjs]. */
const SIDE_BUNDLES = [
  ["@bufbuild/cel", "cel"],
  ["postal-mime", "postal-mime"],
];

/** node:http cannot be loaded while a snapshot is built (Node 20); load it on first use instead. */
const lazyHttp = {
  name: "berth-lazy-http",
  setup(b) {
    b.onResolve({ filter: /^(node:)?http$/ }, (a) => (a.namespace === "berth-lazy" ? undefined : { path: "http", namespace: "berth-lazy" }));
    b.onLoad({ filter: /.*/, namespace: "berth-lazy" }, () => ({
      contents: "let m; const real = () => (m ??= require('node:http')); module.exports = new Proxy({}, { get: (_, k) => real()[k] });",
      loader: "js",
    }));
    // CEL (with protobuf and re2, a third of the bundle) serves only spec.kubelet.maxPodsExpression,
    // postal-mime only MIME multipart user data: keep both out of the snapshot's heap and load
    // dist/snapshot/<name>.cjs when a config needs it.
    for (const [pkg, file] of SIDE_BUNDLES) {
      const ns = `berth-side-${file}`;
      b.onResolve({ filter: new RegExp(`^${pkg.replace(/[/.]/g, "\\$&")}$`) }, (a) => (a.namespace === ns ? undefined : { path: file, namespace: ns }));
      b.onLoad({ filter: /.*/, namespace: ns }, () => ({
        contents:
          "const path = require('node:path');" +
          // BERTH_HOME may be relative (bin/berth run as ./bin/berth); require() needs an absolute path.
          "const dir = process.env.BERTH_HOME ? path.resolve(process.env.BERTH_HOME, 'dist', 'snapshot') : __dirname;" +
          `module.exports = require('node:module').createRequire(__filename)(path.join(dir, '${file}.cjs'));`,
        loader: "js",
      }));
    }
    // The snapshot never runs the run phase (src/cli/snapshot.ts hands it over); keep its clients out.
    b.onResolve({ filter: /\/phases\/run\.ts$/ }, () => ({ path: "run-phase", namespace: "berth-stub" }));
    b.onLoad({ filter: /.*/, namespace: "berth-stub" }, () => ({
      contents: "export async function runPhase() { throw new Error('the run phase is not part of the startup snapshot'); }",
      loader: "js",
    }));
  },
};

async function buildSnapshot() {
  // The single-file variant is only for comparison; it leaves the real build alone.
  if (single) return;
  const dir = path.join(repo, "dist/snapshot");
  rmSync(dir, { recursive: true, force: true });
  if (process.env.BERTH_NO_SNAPSHOT === "1") return;
  mkdirSync(dir, { recursive: true });
  const bundle = path.join(dir, "berth.cjs");
  await build({
    ...common,
    entryPoints: ["src/cli/snapshot.ts"],
    format: "cjs",
    outfile: bundle,
    // demo.ts finds data/ from its own URL; in CommonJS that is the bundle's path.
    define: { "import.meta.url": "__berthImportMetaUrl" },
    banner: { js: "var __berthImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
    plugins: [lazyHttp],
  });
  for (const [pkg, file] of SIDE_BUNDLES) {
    await build({
      ...common,
      stdin: { contents: `module.exports = require(${JSON.stringify(pkg)});`, resolveDir: repo, loader: "js" },
      format: "cjs",
      outfile: path.join(dir, `${file}.cjs`),
    });
  }
  const blob = path.join(dir, "berth.blob");
  const scratch = mkdtempSync(path.join(tmpdir(), "berth-build-"));
  try {
    // Node warns that some built-ins are "not yet fully verified" in snapshots; the smoke test below is the check.
    execFileSync(process.execPath, ["--snapshot-blob", blob, "--build-snapshot", bundle], { cwd: repo, stdio: ["ignore", "ignore", "pipe"] });
    // Smoke test: the demo from the snapshot must run and write the node's files.
    execFileSync(process.execPath, ["--snapshot-blob", blob, "demo", "--root", path.join(scratch, "root")], { cwd: repo, stdio: ["ignore", "ignore", "pipe"] });
    // bin/berth uses the snapshot only with this very node binary (node refuses a blob from
    // another build, with no fallback): the first node on PATH must be the same file as
    // node-path (`test -ef`: device and inode) with the same mtime, to the nanosecond, as
    // node-stamp (`test -nt`/`-ot`). Shell builtins only: a `stat` process would cost
    // bin/berth more than the rest of its work (bench/config-phase.ts).
    writeFileSync(path.join(dir, "node-path"), `${process.execPath}\n`);
    const stamp = path.join(dir, "node-stamp");
    writeFileSync(stamp, "");
    // touch -r copies the timestamp exactly; fs.utimes takes float seconds and would round it.
    execFileSync("touch", ["-r", process.execPath, stamp], { stdio: ["ignore", "ignore", "pipe"] });
    writeFileSync(path.join(dir, "node-version"), `${process.version}\n`);
  } catch (e) {
    const err = e && typeof e === "object" && "stderr" in e ? String(e.stderr) : String(e);
    process.stderr.write(`warning: startup snapshot not built (bin/berth will use dist/berth.mjs):\n${err.split("\n").filter((l) => l && !/not yet fully verified|It may still work|To request support|--trace-warnings/.test(l)).slice(-5).join("\n")}\n`);
    rmSync(dir, { recursive: true, force: true });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

try {
  await buildEsm();
  await buildSnapshot();
} catch {
  // esbuild has already printed the errors with their locations.
  process.exit(1);
}
