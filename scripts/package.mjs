// `npm run package`: berth's release artifacts, into dist/release/:
//
//   berth-linux-x64, berth-linux-arm64        single executables (Node SEA) on the Node of packaging/node.json
//   berth_<v>_amd64.deb, berth_<v>_arm64.deb   install /usr/bin/berth; postinst runs `berth install`
//   berth-<v>-1.x86_64.rpm, berth-<v>-1.aarch64.rpm
//   berth-<v>-linux-x64.tar.gz, berth-<v>-linux-arm64.tar.gz
//   SHA256SUMS                                 covering all eight
//
// The executables embed dist/berth.cjs unchanged (scripts/build.mjs): the
// tests run these very files. Nothing is downloaded but the pinned
// node-linux-* packages from the npm registry (checked against their
// integrity; cached in node_modules/.cache/berth-node).
//
// Reproducible: two runs on one commit give byte-identical artifacts. Every
// timestamp is SOURCE_DATE_EPOCH (default: the commit's time), owners are
// root, archives are sorted. No V8 code cache in the executables: V8 writes
// a per-process random hash seed into it, so two builds differ (measured in
// bench/config-phase.ts; fixing the seed would fix it at run time too).
//
//   BERTH_ARCHES=x64        build only these architectures (comma-separated); default both
//   BERTH_RELEASE_DIR=DIR   write there instead of dist/release
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { buildBundle } from "./build.mjs";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const pkg = JSON.parse(readFileSync(path.join(repo, "package.json"), "utf8"));
const nodeRelease = JSON.parse(readFileSync(path.join(repo, "packaging/node.json"), "utf8"));
const VERSION = pkg.version;
const outDir = path.resolve(repo, process.env.BERTH_RELEASE_DIR ?? "dist/release");
const arches = (process.env.BERTH_ARCHES ?? "x64,arm64").split(",").filter(Boolean);
const ARCH = {
  x64: { deb: "amd64", rpm: "x86_64" },
  arm64: { deb: "arm64", rpm: "aarch64" },
};

const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });

function sourceDateEpoch() {
  if (process.env.SOURCE_DATE_EPOCH) return Number(process.env.SOURCE_DATE_EPOCH);
  try {
    return Number(run("git", ["log", "-1", "--format=%ct"], { cwd: repo }).toString().trim());
  } catch {
    return 0;
  }
}
const EPOCH = sourceDateEpoch();

/** Every file and directory under `dir` gets mtime EPOCH (deb and tar take mtimes from the tree). */
function clampTimes(dir) {
  for (const e of readdirSync(dir, { recursive: true })) utimesSync(path.join(dir, e), EPOCH, EPOCH);
  utimesSync(dir, EPOCH, EPOCH);
}

/** node-linux-<arch> from the npm registry (integrity-checked, cached): [path of bin/node, path of its LICENSE]. */
function nodeBinary(arch) {
  const { name, integrity } = nodeRelease.packages[arch];
  const cache = path.join(repo, "node_modules/.cache/berth-node", `${name}-${nodeRelease.version}`);
  const bin = path.join(cache, "package/bin/node");
  if (existsSync(bin)) return [bin, path.join(cache, "package/LICENSE")];
  const scratch = mkdtempSync(path.join(tmpdir(), "berth-node-"));
  try {
    run("npm", ["pack", `${name}@${nodeRelease.version}`, "--pack-destination", scratch, "--silent"], { cwd: scratch });
    const tgz = readdirSync(scratch).find((f) => f.endsWith(".tgz"));
    if (!tgz) throw new Error(`npm pack ${name}@${nodeRelease.version} produced no archive`);
    const [algo, want] = integrity.split(/-(.*)/s);
    const got = createHash(algo)
      .update(readFileSync(path.join(scratch, tgz)))
      .digest("base64");
    if (got !== want)
      throw new Error(`${name}@${nodeRelease.version}: integrity ${algo}-${got} does not match packaging/node.json (${integrity})`);
    const unpack = path.join(scratch, "unpack");
    mkdirSync(unpack);
    run("tar", ["xzf", path.join(scratch, tgz), "-C", unpack, "package/bin/node", "package/LICENSE"]);
    mkdirSync(path.dirname(cache), { recursive: true });
    rmSync(cache, { recursive: true, force: true });
    renameSync(unpack, cache);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return [bin, path.join(cache, "package/LICENSE")];
}

/**
 * The single executable for `arch`: the bundle injected into that arch's node. Built by the host's
 * release node (`--build-sea` is new in Node 25.5): without a code cache or snapshot the blob does not
 * depend on the builder's architecture.
 */
function buildExecutable(arch, builderNode, work) {
  const [base] = nodeBinary(arch);
  const out = path.join(work, `berth-linux-${arch}`);
  const config = path.join(work, `sea-${arch}.json`);
  writeFileSync(
    config,
    JSON.stringify({
      main: path.join(repo, "dist/berth.cjs"),
      mainFormat: "commonjs",
      executable: base,
      output: out,
      disableExperimentalSEAWarning: true,
      useSnapshot: false,
      useCodeCache: false,
      // NODE_OPTIONS works as with any node (berth-agent.service sets --jitless through it).
      execArgvExtension: "env",
    }),
  );
  run(builderNode, ["--build-sea", config], { cwd: work });
  chmodSync(out, 0o755);
  return out;
}

const COPYRIGHT = (nodeLicense) => `berth
License: Apache-2.0

This executable embeds Node.js ${nodeRelease.version} (the npm registry's ${Object.values(nodeRelease.packages)
  .map((p) => p.name)
  .join(" / ")} packages), under this license:

${readFileSync(nodeLicense, "utf8")}`;

/** The installed tree shared by the .deb, the .rpm and the tarball: usr/bin/berth and its docs. */
function stageTree(exe, arch, work) {
  const stage = path.join(work, `stage-${arch}`);
  mkdirSync(path.join(stage, "usr/bin"), { recursive: true });
  mkdirSync(path.join(stage, "usr/share/doc/berth"), { recursive: true });
  copyFileSync(exe, path.join(stage, "usr/bin/berth"));
  chmodSync(path.join(stage, "usr/bin/berth"), 0o755);
  writeFileSync(path.join(stage, "usr/share/doc/berth/copyright"), COPYRIGHT(nodeBinary(arch)[1]));
  copyFileSync(path.join(repo, "README.md"), path.join(stage, "usr/share/doc/berth/README.md"));
  for (const f of readdirSync(stage, { recursive: true })) {
    const p = path.join(stage, f);
    if (statSync(p).isDirectory()) chmodSync(p, 0o755);
    else if (!f.endsWith("usr/bin/berth")) chmodSync(p, 0o644);
  }
  return stage;
}

function buildDeb(stage, arch, work) {
  const tree = path.join(work, `deb-${arch}`);
  run("cp", ["-a", `${stage}/.`, tree]);
  mkdirSync(path.join(tree, "DEBIAN"));
  const control = readFileSync(path.join(repo, "packaging/deb/control"), "utf8")
    .replaceAll("@VERSION@", VERSION)
    .replaceAll("@ARCH@", ARCH[arch].deb);
  const size = Math.ceil(statSync(path.join(tree, "usr/bin/berth")).size / 1024) + 64;
  writeFileSync(path.join(tree, "DEBIAN/control"), control.replace(/^(Description:)/m, `Installed-Size: ${size}\n$1`));
  for (const s of ["postinst", "prerm"]) {
    copyFileSync(path.join(repo, "packaging/deb", s), path.join(tree, "DEBIAN", s));
    chmodSync(path.join(tree, "DEBIAN", s), 0o755);
  }
  chmodSync(path.join(tree, "DEBIAN/control"), 0o644);
  chmodSync(path.join(tree, "DEBIAN"), 0o755);
  clampTimes(tree);
  const out = path.join(work, `berth_${VERSION}_${ARCH[arch].deb}.deb`);
  run("dpkg-deb", ["--root-owner-group", "-Zzstd", "-z3", "--build", tree, out], {
    env: { ...process.env, SOURCE_DATE_EPOCH: String(EPOCH) },
  });
  return out;
}

function buildRpm(stage, arch, work) {
  const top = path.join(work, `rpm-${arch}`);
  for (const d of ["SPECS", "BUILD", "BUILDROOT", "RPMS", "SOURCES", "SRPMS"]) mkdirSync(path.join(top, d), { recursive: true });
  const spec = path.join(top, "SPECS/berth.spec");
  writeFileSync(
    spec,
    readFileSync(path.join(repo, "packaging/rpm/berth.spec"), "utf8").replaceAll("@VERSION@", VERSION).replaceAll("@STAGE@", stage),
  );
  run(
    "rpmbuild",
    ["-bb", "--quiet", "--target", ARCH[arch].rpm, "--define", `_topdir ${top}`, "--define", "_tmppath %{_topdir}/tmp", spec],
    {
      env: { ...process.env, SOURCE_DATE_EPOCH: String(EPOCH), TZ: "UTC", LC_ALL: "C" },
    },
  );
  const name = `berth-${VERSION}-1.${ARCH[arch].rpm}.rpm`;
  return path.join(top, "RPMS", ARCH[arch].rpm, name);
}

function buildTarball(stage, arch, work) {
  const base = `berth-${VERSION}-linux-${arch}`;
  const tree = path.join(work, `tar-${arch}`, base);
  mkdirSync(tree, { recursive: true });
  copyFileSync(path.join(stage, "usr/bin/berth"), path.join(tree, "berth"));
  chmodSync(path.join(tree, "berth"), 0o755);
  for (const f of ["copyright", "README.md"]) copyFileSync(path.join(stage, "usr/share/doc/berth", f), path.join(tree, f));
  clampTimes(path.dirname(tree));
  const tar = path.join(work, `${base}.tar`);
  run("tar", [
    "--sort=name",
    "--owner=0",
    "--group=0",
    "--numeric-owner",
    "--format=gnu",
    `--mtime=@${EPOCH}`,
    "-cf",
    tar,
    "-C",
    path.dirname(tree),
    base,
  ]);
  run("gzip", ["-n", "-6", "-f", tar]);
  return `${tar}.gz`;
}

export async function packageRelease() {
  await buildBundle();
  const work = mkdtempSync(path.join(tmpdir(), "berth-package-"));
  try {
    // The builder: the release node of this machine's architecture (the host's node 20 has no --build-sea).
    const hostArch = process.arch === "arm64" ? "arm64" : "x64";
    const [builderNode] = nodeBinary(hostArch);
    const artifacts = [];
    for (const arch of arches) {
      if (!ARCH[arch]) throw new Error(`unknown architecture '${arch}' in BERTH_ARCHES (use x64, arm64)`);
      const exe = buildExecutable(arch, builderNode, work);
      const stage = stageTree(exe, arch, work);
      artifacts.push(exe, buildDeb(stage, arch, work), buildRpm(stage, arch, work), buildTarball(stage, arch, work));
    }
    rmSync(outDir, { recursive: true, force: true });
    mkdirSync(outDir, { recursive: true });
    const sums = [];
    for (const a of artifacts) {
      const dest = path.join(outDir, path.basename(a));
      copyFileSync(a, dest);
      chmodSync(dest, /^berth-linux-(x64|arm64)$/.test(path.basename(dest)) ? 0o755 : 0o644);
      sums.push(`${createHash("sha256").update(readFileSync(dest)).digest("hex")}  ${path.basename(dest)}`);
    }
    writeFileSync(path.join(outDir, "SHA256SUMS"), sums.sort((a, b) => (a.slice(66) < b.slice(66) ? -1 : 1)).join("\n") + "\n");
    return outDir;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    const dir = await packageRelease();
    for (const f of readdirSync(dir).sort())
      process.stdout.write(`${String(statSync(path.join(dir, f)).size).padStart(11)}  ${path.relative(repo, path.join(dir, f))}\n`);
  } catch (e) {
    const stderr = e && typeof e === "object" && "stderr" in e && e.stderr ? `\n${String(e.stderr).trim()}` : "";
    process.stderr.write(`package: ${e instanceof Error ? e.message : String(e)}${stderr}\n`);
    process.exit(1);
  }
}
