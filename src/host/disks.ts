/**
 * Disks at the edge: the commands the run phase's local-storage step runs
 * (blkid, mkfs.xfs, mdadm, cp), all through one `DiskCommandRunner`, so the
 * step's tests use a recording fake (tests/fakes/disk-commands-fake.ts) and
 * only this module starts processes. Never a shell: arguments reach the
 * program as they are, stdin is /dev/null (mdadm must never wait for a
 * "Continue?" answer), and each command has a deadline. Every failure comes
 * back as a BerthError that quotes the command line and its error output.
 */
import { spawn } from "node:child_process";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";

export interface CommandOutput {
  /** Exit code; 124 when the deadline killed it, 128 + n for signal n otherwise. */
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program; resolves with its exit code and output, rejects only when it cannot be started (e.g. ENOENT). */
export type DiskCommandRunner = (cmd: string, args: readonly string[], opts: { timeoutMs: number }) => Promise<CommandOutput>;

/** Output kept per stream: the end of it, where the error is. */
const MAX_OUTPUT = 64 * 1024;

export const runDiskCommand: DiskCommandRunner = (cmd, args, opts) =>
  new Promise((resolve, reject) => {
    const child = spawn(cmd, [...args], { stdio: ["ignore", "pipe", "pipe"] });
    const out = { stdout: "", stderr: "" };
    const keep = (k: "stdout" | "stderr") => (d: Buffer) => void (out[k] = (out[k] + d.toString("utf8")).slice(-MAX_OUTPUT));
    child.stdout.on("data", keep("stdout"));
    child.stderr.on("data", keep("stderr"));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, opts.timeoutMs);
    let settled = false;
    child.on("error", (e) => {
      clearTimeout(timer);
      if (!settled) reject(e);
      settled = true;
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (settled) return;
      settled = true;
      if (timedOut) resolve({ code: 124, stdout: out.stdout, stderr: `${out.stderr}\n(killed after ${opts.timeoutMs} ms)` });
      else resolve({ code: code ?? 128 + (signal === "SIGKILL" ? 9 : 15), ...out });
    });
  });

/** Which package has each program, for the hint when it is missing. */
const PACKAGES: Record<string, string> = { blkid: "util-linux", "mkfs.xfs": "xfsprogs", mdadm: "mdadm", cp: "coreutils" };

/** Deadlines: mkfs.xfs discards (TRIMs) whole disks unless -K; cp moves whatever the state directories hold. */
const DISK_TIMEOUTS = { probeMs: 30_000, mkfsMs: 15 * 60_000, mdadmMs: 2 * 60_000, copyMs: 30 * 60_000 } as const;

/** The command as a person would type it. */
export function commandLine(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(" ");
}

/** The last few lines of a command's error output, on one line. */
function tail(text: string): string {
  const lines = text
    .trim()
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  return lines.slice(-4).join(" / ") || "(no output)";
}

function commandError(cmd: string, args: readonly string[], out: CommandOutput, hint: string): BerthError {
  return {
    code: "run.local-storage-command",
    message: `\`${commandLine(cmd, args)}\` failed (exit ${out.code}): ${tail(out.stderr || out.stdout)}`,
    hint,
  };
}

/** Runs the command; a program that cannot be started is an error here, any exit code is the caller's to judge. */
async function attempt(run: DiskCommandRunner, cmd: string, args: readonly string[], timeoutMs: number): Promise<Result<CommandOutput>> {
  try {
    return ok(await run(cmd, args, { timeoutMs }));
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === "ENOENT" ? `${cmd} is not installed` : `${cmd} cannot be started`;
    return fail({
      code: "run.local-storage-tool",
      message: `${why} (\`${commandLine(cmd, args)}\`: ${e instanceof Error ? e.message : String(e)})`,
      hint: `install ${PACKAGES[cmd] ?? cmd} on the node (instance.localStorage needs blkid, mkfs.xfs and, for RAID, mdadm)`,
    });
  }
}

/** Runs the command and wants exit 0. */
async function must(
  run: DiskCommandRunner,
  cmd: string,
  args: readonly string[],
  timeoutMs: number,
  hint: string,
): Promise<Result<CommandOutput>> {
  const r = await attempt(run, cmd, args, timeoutMs);
  if (r.ok && r.value.code !== 0) return fail(commandError(cmd, args, r.value, hint));
  return r;
}

/**
 * The filesystem (or other signature: `linux_raid_member`, …) on a device,
 * probed on the device itself (`blkid -p`, no cache); undefined when it has
 * none (blkid's exit 2).
 */
export async function filesystemType(run: DiskCommandRunner, device: string): Promise<Result<string | undefined>> {
  const args = ["-p", "-o", "value", "-s", "TYPE", device];
  const r = await attempt(run, "blkid", args, DISK_TIMEOUTS.probeMs);
  if (!r.ok) return r;
  if (r.value.code === 2) return ok(undefined);
  if (r.value.code !== 0) return fail(commandError("blkid", args, r.value, `check that ${device} exists and is readable`));
  return ok(r.value.stdout.trim() || undefined);
}

/**
 * xfs on a device without a filesystem, as nodeadm makes it: log stripe unit
 * 8 blocks (an md array's 512k stripe is above xfs's log maximum); `-K`
 * (no discard) for the array, whose disks EC2 delivers already trimmed.
 */
export async function makeXfs(run: DiskCommandRunner, device: string, opts: { discard: boolean }): Promise<Result<void>> {
  const args = [...(opts.discard ? [] : ["-K"]), "-l", "su=8b", device];
  const r = await must(
    run,
    "mkfs.xfs",
    args,
    DISK_TIMEOUTS.mkfsMs,
    `check the disk (\`dmesg\`); berth formats only devices that blkid finds empty`,
  );
  return r.ok ? ok(undefined) : r;
}

export interface RaidSpec {
  device: string;
  name: string;
  level: 0 | 10;
  members: readonly string[];
}

/** `mdadm --create`, never asking (`--run`); `hint` says what to do when it fails (the caller knows whether md is there). */
export async function createRaid(run: DiskCommandRunner, a: RaidSpec, hint: string): Promise<Result<void>> {
  const args = [
    "--create",
    a.device,
    "--run",
    "--force",
    "--verbose",
    `--level=${a.level}`,
    `--name=${a.name}`,
    `--raid-devices=${a.members.length}`,
    ...a.members,
  ];
  const r = await must(run, "mdadm", args, DISK_TIMEOUTS.mdadmMs, hint);
  return r.ok ? ok(undefined) : r;
}

/** `mdadm --assemble` of an array whose members carry its superblock (after a reboot that did not assemble it). */
export async function assembleRaid(run: DiskCommandRunner, a: RaidSpec, hint: string): Promise<Result<void>> {
  const r = await must(run, "mdadm", ["--assemble", a.device, ...a.members], DISK_TIMEOUTS.mdadmMs, hint);
  return r.ok ? ok(undefined) : r;
}

/** The array's `ARRAY …` line (`mdadm --detail --brief`), for the mdadm config that re-assembles it at boot. */
export async function raidConfigLine(run: DiskCommandRunner, device: string): Promise<Result<string>> {
  const args = ["--detail", "--brief", device];
  const r = await must(run, "mdadm", args, DISK_TIMEOUTS.mdadmMs, `check the array with \`mdadm --detail ${device}\``);
  if (!r.ok) return r;
  const line = r.value.stdout.split("\n").find((l) => l.startsWith("ARRAY "));
  if (line === undefined)
    return fail(
      commandError("mdadm", args, { ...r.value, stderr: "no ARRAY line in the output" }, "check the array with `mdadm --detail`"),
    );
  return ok(line.trim());
}

/** `cp -a FROM/. TO/`: FROM's contents (owners, modes, links, times) into TO, which exists. */
export async function copyTree(run: DiskCommandRunner, from: string, to: string): Promise<Result<void>> {
  const r = await must(
    run,
    "cp",
    ["-a", `${from}/.`, `${to}/`],
    DISK_TIMEOUTS.copyMs,
    `check free space on ${to} and the files under ${from}`,
  );
  return r.ok ? ok(undefined) : r;
}
