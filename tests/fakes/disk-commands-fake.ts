/**
 * A recording fake of `DiskCommandRunner` (src/host/disks.ts) for the
 * local-storage step's unit tests. It records every command in order and
 * keeps a small model of the disks: which signature blkid finds on each
 * device path (mkfs.xfs writes "xfs"; mdadm --create marks the members
 * "linux_raid_member" and creates the array's device file), whether the
 * kernel has md (without it, mdadm --create and --assemble fail like
 * mdadm does), and which programs are missing (ENOENT). `cp -a FROM/. TO/`
 * really copies, so a test can see state directories move.
 *
 *   const disks = new FakeDiskCommands({ fs: { "/r/dev/nvme2n1": "xfs" }, md: false });
 *   runPhase({ ..., deps: { diskCommands: disks.run } });
 *   assert.deepEqual(disks.lines(), ["blkid -p -o value -s TYPE /r/dev/nvme1n1", "mkfs.xfs -l su=8b /r/dev/nvme1n1"]);
 */
import { cpSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { commandLine, type CommandOutput, type DiskCommandRunner } from "../../src/host/disks.ts";

export interface FakeDiskOptions {
  /** Device path (as the step passes it, under the test root) → the signature blkid reports. */
  fs?: Record<string, string>;
  /** The kernel has md (default true). */
  md?: boolean;
  /** Programs that are not installed. */
  missing?: string[];
}

export class FakeDiskCommands {
  readonly calls: { cmd: string; args: string[]; timeoutMs: number }[] = [];
  readonly fs: Map<string, string>;
  md: boolean;
  private readonly missing: Set<string>;
  private readonly failures = new Map<string, CommandOutput[]>();

  constructor(opts: FakeDiskOptions = {}) {
    this.fs = new Map(Object.entries(opts.fs ?? {}));
    this.md = opts.md ?? true;
    this.missing = new Set(opts.missing ?? []);
  }

  /** The next call of `cmd` ends with this output instead of the model's. */
  failOnce(cmd: string, out: Partial<CommandOutput> = {}): this {
    const q = this.failures.get(cmd) ?? [];
    q.push({ code: 1, stdout: "", stderr: `${cmd}: fake failure`, ...out });
    this.failures.set(cmd, q);
    return this;
  }

  /** Every command line, in order. */
  lines(): string[] {
    return this.calls.map((c) => commandLine(c.cmd, c.args));
  }

  readonly run: DiskCommandRunner = (cmd, args, opts) => {
    this.calls.push({ cmd, args: [...args], timeoutMs: opts.timeoutMs });
    if (this.missing.has(cmd)) return Promise.reject(Object.assign(new Error(`spawn ${cmd} ENOENT`), { code: "ENOENT" }));
    return Promise.resolve(this.failures.get(cmd)?.shift() ?? this.model(cmd, [...args]));
  };

  private model(cmd: string, args: string[]): CommandOutput {
    const done = (stdout = ""): CommandOutput => ({ code: 0, stdout, stderr: "" });
    const last = args[args.length - 1] ?? "";
    if (cmd === "blkid") {
      const t = this.fs.get(last);
      return t === undefined ? { code: 2, stdout: "", stderr: "" } : done(`${t}\n`);
    }
    if (cmd === "mkfs.xfs") {
      this.fs.set(last, "xfs");
      return done(`meta-data=${last}\n`);
    }
    if (cmd === "cp") {
      const [from, to] = args.slice(-2).map((a) => a.replace(/\/\.?$/, ""));
      cpSync(from!, to!, { recursive: true });
      return done();
    }
    if (cmd === "mdadm") return this.mdadm(args);
    return { code: 127, stdout: "", stderr: `fake: no model for ${cmd}` };
  }

  private mdadm(args: string[]): CommandOutput {
    const [op, device] = args;
    if (op === "--detail")
      return {
        code: 0,
        stdout: `ARRAY ${args[args.length - 1]} metadata=1.2 name=node:kubernetes UUID=0a1b2c3d:4e5f6a7b:8c9d0e1f:2a3b4c5d\n`,
        stderr: "",
      };
    if (!this.md) return { code: 1, stdout: "", stderr: "mdadm: unexpected failure opening /dev/md127" };
    const members = args.filter((a, i) => i > 1 && !a.startsWith("--"));
    if (op === "--create") for (const m of members) this.fs.set(m, "linux_raid_member");
    if (device) {
      mkdirSync(path.dirname(device), { recursive: true });
      writeFileSync(device, "");
    }
    return { code: 0, stdout: "", stderr: `mdadm: array ${device} started.\n` };
  }
}
