/**
 * What ships (dist/release/, from `npm run package`): the eight artifacts and
 * their checksums, what each package installs and runs on install and
 * removal, the arm64 executable under qemu-user, the one bundle with no
 * import() a single executable could not serve, and reproducibility.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { ensureRelease, NO_STACK, RELEASE_DIR, REPO, runCli, scratchDirs, tree } from "../fixtures/cli.ts";
import { CLUSTER_NODECONFIG_YAML as GOOD } from "../fixtures/node.ts";

const VERSION = (JSON.parse(readFileSync(path.join(REPO, "package.json"), "utf8")) as { version: string }).version;
const ARTIFACTS = [
  "berth-linux-x64",
  "berth-linux-arm64",
  `berth_${VERSION}_amd64.deb`,
  `berth_${VERSION}_arm64.deb`,
  `berth-${VERSION}-1.x86_64.rpm`,
  `berth-${VERSION}-1.aarch64.rpm`,
  `berth-${VERSION}-linux-x64.tar.gz`,
  `berth-${VERSION}-linux-arm64.tar.gz`,
];
const QEMU = "/usr/bin/qemu-aarch64-static";
/** The arm64 C library for qemu-user (Debian's libc6-arm64-cross and friends, installed by scripts/setup.sh). */
const ARM64_SYSROOT = "/usr/aarch64-linux-gnu";

const scratchDir = scratchDirs("berth-release-");
before(ensureRelease);
after(scratchDir.removeAll);

const sh = (cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): string =>
  execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...opts.env } });

test("dist/release holds the eight artifacts and SHA256SUMS covering exactly them", () => {
  const present = readdirSync(RELEASE_DIR).sort();
  assert.deepEqual(present, [...ARTIFACTS, "SHA256SUMS"].sort());
  const sums = readFileSync(path.join(RELEASE_DIR, "SHA256SUMS"), "utf8").trim().split("\n");
  assert.deepEqual(sums.map((l) => l.slice(66)).sort(), [...ARTIFACTS].sort());
  for (const line of sums) {
    const [sum, name] = [line.slice(0, 64), line.slice(66)];
    assert.equal(
      createHash("sha256")
        .update(readFileSync(path.join(RELEASE_DIR, name)))
        .digest("hex"),
      sum,
      name,
    );
  }
  for (const exe of ["berth-linux-x64", "berth-linux-arm64"]) assert.equal(statSync(path.join(RELEASE_DIR, exe)).mode & 0o777, 0o755, exe);
});

test("the executables are ELF for their architecture and need only the C and C++ runtime libraries the packages depend on", () => {
  const head = (f: string): Buffer => readFileSync(path.join(RELEASE_DIR, f)).subarray(0, 20);
  // e_machine at offset 18: 0x3e x86-64, 0xb7 AArch64.
  assert.equal(head("berth-linux-x64").readUInt16LE(18), 0x3e);
  assert.equal(head("berth-linux-arm64").readUInt16LE(18), 0xb7);
  const needed = sh("readelf", ["-d", path.join(RELEASE_DIR, "berth-linux-x64")])
    .split("\n")
    .filter((l) => l.includes("(NEEDED)"))
    .map((l) => /\[(.+)\]/.exec(l)?.[1]);
  assert.deepEqual(
    needed.filter((n) => !/^(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|libatomic|ld-linux.*)\.so/.test(n ?? "")),
    [],
    `unexpected libraries: ${needed.join(" ")}`,
  );
});

test(".deb: installs /usr/bin/berth as root:root 0755; postinst runs berth install, prerm berth install --remove", () => {
  for (const arch of ["amd64", "arm64"]) {
    const deb = path.join(RELEASE_DIR, `berth_${VERSION}_${arch}.deb`);
    const fields = sh("dpkg-deb", ["-f", deb, "Package", "Version", "Architecture", "Depends"]);
    assert.equal(
      fields,
      `Package: berth\nVersion: ${VERSION}\nArchitecture: ${arch}\nDepends: libc6 (>= 2.28), libstdc++6, libgcc-s1, libatomic1, systemd\n`,
    );
    const files = sh("dpkg-deb", ["-c", deb]);
    assert.match(files, /^-rwxr-xr-x root\/root +\d+ [\d-]+ [\d:]+ \.\/usr\/bin\/berth$/m);
    assert.match(files, /\.\/usr\/share\/doc\/berth\/copyright$/m);
    const scripts = sh("sh", ["-c", `dpkg-deb --ctrl-tarfile '${deb}' | tar -xO ./postinst ./prerm`]);
    assert.match(scripts, /^ {4}\/usr\/bin\/berth install >\/dev\/null$/m);
    assert.match(scripts, /^ {4}\/usr\/bin\/berth install --remove >\/dev\/null$/m);
  }
});

test(".rpm: installs /usr/bin/berth; %post runs berth install, %preun on erase berth install --remove", () => {
  for (const arch of ["x86_64", "aarch64"]) {
    const rpm = path.join(RELEASE_DIR, `berth-${VERSION}-1.${arch}.rpm`);
    assert.equal(sh("rpm", ["-qp", "--qf", "%{NAME} %{VERSION} %{RELEASE} %{ARCH}\n", rpm]), `berth ${VERSION} 1 ${arch}\n`);
    const files = sh("rpm", ["-qlvp", rpm]);
    assert.match(files, /^-rwxr-xr-x +1 root +root +\d+ .* \/usr\/bin\/berth$/m);
    const scripts = sh("rpm", ["-qp", "--scripts", rpm]);
    assert.match(scripts, /postinstall scriptlet[^\n]*\n(#.*\n)*\/usr\/bin\/berth install >\/dev\/null/);
    assert.match(scripts, /preuninstall scriptlet[^\n]*\n[\s\S]*if \[ "\$1" -eq 0 \]; then\n {2}\/usr\/bin\/berth install --remove/);
  }
});

test("tarballs: berth-<v>-linux-<arch>/berth, owned by root, one top directory", () => {
  for (const arch of ["x64", "arm64"]) {
    const list = sh("tar", ["-tvzf", path.join(RELEASE_DIR, `berth-${VERSION}-linux-${arch}.tar.gz`)]);
    assert.match(list, new RegExp(`^-rwxr-xr-x 0/0 +\\d+ [\\d-]+ [\\d:]+ berth-${VERSION}-linux-${arch}/berth$`, "m"));
    for (const line of list.trim().split("\n")) assert.match(line, new RegExp(` berth-${VERSION}-linux-${arch}/`), line);
  }
});

test("the arm64 executable runs under qemu-user: --version, config check, demo", async () => {
  const exe = path.join(RELEASE_DIR, "berth-linux-arm64");
  const env = { QEMU_LD_PREFIX: ARM64_SYSROOT };
  const v = await runCli(QEMU, [exe, "--version"], { env });
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, /^berth .*, linux\/arm64\)\n$/);
  const dir = await scratchDir.make();
  await writeFile(path.join(dir, "good.yaml"), GOOD);
  await writeFile(path.join(dir, "bad.yaml"), GOOD.replace("    name: my-cluster\n", "    nmae: my-cluster\n"));
  const good = await runCli(QEMU, [exe, "config", "check", "-c", `file://${dir}/good.yaml`], { env });
  assert.equal(good.code, 0, good.stderr);
  const bad = await runCli(QEMU, [exe, "config", "check", "-c", `file://${dir}/bad.yaml`], { env });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /bad\.yaml:\d+:\d+.*nmae/);
  assert.doesNotMatch(bad.stderr, NO_STACK);
  const root = await scratchDir.make();
  const demo = await runCli(QEMU, [exe, "demo", "--root", root], { env });
  assert.equal(demo.code, 0, demo.stderr);
  assert.ok((await tree(root)).includes("etc/kubernetes/kubelet/config.json"));
});

test("the bundle loads node built-ins without import(): a single executable's main script has no module loader", () => {
  const bundle = readFileSync(path.join(REPO, "dist/berth.cjs"), "utf8");
  const dynamic = bundle.match(/\bimport\s*\(/g) ?? [];
  assert.equal(dynamic.length, 0, "dist/berth.cjs calls import(); use require() or process.getBuiltinModule()");
});

test("reproducible: packaging the same tree again gives byte-identical artifacts", async () => {
  const dir = await scratchDir.make();
  const sha = readFileSync(path.join(RELEASE_DIR, "SHA256SUMS"), "utf8");
  sh("node", [path.join(REPO, "scripts/package.mjs")], { env: { BERTH_RELEASE_DIR: dir } });
  assert.equal(readFileSync(path.join(dir, "SHA256SUMS"), "utf8"), sha);
});
