/**
 * kubelet and containerd versions: the AMI's version files first (no process
 * to start), else the binaries' `--version`, as nodeadm does.
 */
import { execFile } from "node:child_process";
import { pathExists, readTextIfPresent } from "../host/read.ts";
import type { HostRoot } from "../host/root.ts";
import { errorMessage } from "../util/errors.ts";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import { CONTAINERD_VERSION_FILE, KUBELET_VERSION_FILE } from "../util/node-layout.ts";

/** Runs `cmd args…` and resolves its stdout; rejects when it cannot be run or exits non-zero. Injected in tests. */
export type CommandRunner = (cmd: string, args: string[]) => Promise<string>;

export const runCommand: CommandRunner = (cmd, args) =>
  new Promise((resolve, reject) => {
    // A version probe must never hang the config phase.
    execFile(cmd, args, { timeout: 5000, encoding: "utf8", maxBuffer: 1 << 20 }, (err: Error | null, stdout) =>
      err ? reject(err) : resolve(stdout),
    );
  });

/**
 * kubelet's version from `v1.33.0`, `Kubernetes v1.33.0` or
 * `Kubernetes v1.35.0-eks-5e0fdde`: without the `v`, with any pre-release
 * suffix kept (EKS builds carry one).
 */
export function parseKubeletVersion(text: string): string | undefined {
  return /(?:^|\s)v?(\d+\.\d+\.\d+(?:-[0-9A-Za-z][0-9A-Za-z.-]*)?)(?=\s|$)/.exec(text)?.[1];
}

/**
 * containerd's version from `1.7.27`, `containerd containerd.io 1.7.27 05044ec…`,
 * `containerd github.com/containerd/containerd/v2 v2.0.5 fb4c30d…` or Debian's
 * `containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1`:
 * the first X.Y.Z token, core only (distribution suffixes dropped, as nodeadm does).
 */
export function parseContainerdVersion(text: string): string | undefined {
  for (const tok of text.trim().split(/\s+/)) {
    const m = /^v?(\d+\.\d+\.\d+)(?:$|[-+~.])/.exec(tok);
    if (m) return m[1];
  }
  return undefined;
}

/** Where one component's version is found. */
interface VersionSource {
  component: "kubelet" | "containerd";
  file: string;
  binary: string;
  parse: (s: string) => string | undefined;
  example: string;
}

async function probeVersion(p: VersionSource, root: HostRoot, run: CommandRunner): Promise<Result<string>> {
  const file = root.path(p.file);
  const text = await readTextIfPresent(file);
  if (text !== undefined) {
    const v = p.parse(text);
    if (v) return ok(v);
    return fail({
      code: `facts.${p.component}-version`,
      message: `no ${p.component} version in ${JSON.stringify(text.trim().slice(0, 80))}`,
      where: { source: file, line: 1, column: 1 },
      hint: `write a version such as ${p.example} to ${p.file}, or delete the file so berth asks \`${p.binary} --version\``,
    });
  }
  // On the host, the binary on PATH; under --root, the root's own copy.
  const candidates = root.isHost ? [p.binary] : [root.path(`/usr/bin/${p.binary}`), root.path(`/usr/local/bin/${p.binary}`)];
  const errors: string[] = [];
  for (const cmd of candidates) {
    if (!root.isHost && !(await pathExists(cmd))) continue;
    try {
      const out = await run(cmd, ["--version"]);
      const v = p.parse(out);
      if (v) return ok(v);
      errors.push(`\`${cmd} --version\` printed ${JSON.stringify(out.trim().slice(0, 80))}`);
    } catch (e) {
      errors.push(`\`${cmd} --version\` failed: ${errorMessage(e).split("\n")[0]}`);
    }
  }
  const tried = errors.length ? errors.join("; ") : `no ${p.binary} binary was found`;
  const err: BerthError = {
    code: `facts.${p.component}-version`,
    message: `cannot tell the ${p.component} version: ${file} does not exist and ${tried}`,
    where: { source: file },
    hint: `install ${p.component}, or write its version (e.g. ${p.example}) to ${p.file}${root.isHost ? "" : " under --root"}`,
  };
  return fail(err);
}

export function kubeletVersion(root: HostRoot, run: CommandRunner = runCommand): Promise<Result<string>> {
  return probeVersion(
    { component: "kubelet", file: KUBELET_VERSION_FILE, binary: "kubelet", parse: parseKubeletVersion, example: "v1.33.0" },
    root,
    run,
  );
}

export function containerdVersion(root: HostRoot, run: CommandRunner = runCommand): Promise<Result<string>> {
  return probeVersion(
    { component: "containerd", file: CONTAINERD_VERSION_FILE, binary: "containerd", parse: parseContainerdVersion, example: "1.7.27" },
    root,
    run,
  );
}
