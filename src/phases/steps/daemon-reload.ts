/**
 * The run phase's first step: `systemctl daemon-reload`, only when the unit
 * files changed. "Changed" = this process's config phase wrote a unit, or the
 * fingerprint of the unit directories differs from the one recorded in the
 * run status file at the last reload (in /run, so forgotten at reboot, exactly
 * when systemd re-reads everything). Never starts or stops a unit.
 */
import { createHash } from "node:crypto";
import { promises as fsp } from "node:fs";
import path from "node:path";
import type { HostRoot } from "../../host/root.ts";
import { toBerthError } from "../../util/errors.ts";
import type { RunStep } from "./context.ts";
import { SYSTEM_ENVIRONMENT_PATH, UNIT_DIR } from "../../util/node-layout.ts";

/** Unit directories fingerprinted for the reload decision. */
const UNIT_DIRS = [UNIT_DIR, path.dirname(SYSTEM_ENVIRONMENT_PATH)];

/** Pure: reload when this process changed units, or the unit directories differ from the last reload. */
export function decideReload(input: { unitsChanged: boolean; fingerprint: string; recorded?: string }): { reload: boolean; cause: string } {
  if (input.unitsChanged) return { reload: true, cause: "the config phase wrote units" };
  if (input.recorded === undefined) return { reload: true, cause: "no reload recorded since boot" };
  if (input.recorded !== input.fingerprint) return { reload: true, cause: "unit files changed since the last reload" };
  return { reload: false, cause: "unit files unchanged since the last reload" };
}

/** sha256 over (relative path, link target or content) of every entry in the unit directories, sorted. */
export async function unitsFingerprint(root: HostRoot): Promise<string> {
  const h = createHash("sha256");
  const walk = async (hp: string, depth: number): Promise<void> => {
    let st;
    try {
      st = await fsp.lstat(root.entryPath(hp));
    } catch {
      return;
    }
    if (st.isSymbolicLink()) {
      h.update(`L ${hp} ${await fsp.readlink(root.entryPath(hp)).catch(() => "")}\n`);
    } else if (st.isDirectory() && depth < 4) {
      const names = (await fsp.readdir(root.path(hp)).catch(() => [] as string[])).sort();
      for (const n of names) await walk(`${hp}/${n}`, depth + 1);
    } else if (st.isFile()) {
      h.update(`F ${hp} `);
      h.update(await fsp.readFile(root.path(hp)).catch(() => Buffer.alloc(0)));
      h.update("\n");
    }
  };
  for (const d of UNIT_DIRS) await walk(d, 0);
  return h.digest("hex").slice(0, 32);
}

/** `recorded`: the fingerprint in the previous run status file, if any. Records the new one after a reload. */
export function daemonReloadStep(o: { unitsChanged: boolean; recorded?: string }): RunStep {
  return {
    name: "reload",
    needs: [],
    component: "systemd",
    async run(ctx) {
      const fingerprint = await unitsFingerprint(ctx.root);
      const d = decideReload({ unitsChanged: o.unitsChanged, fingerprint, ...(o.recorded !== undefined ? { recorded: o.recorded } : {}) });
      if (!d.reload) return { outcome: "ok", action: "none", cause: d.cause };
      try {
        await ctx.sd.daemonReload();
      } catch (e) {
        const hint = "check `journalctl -b -u init.scope` for unit file errors";
        return { outcome: "failed", error: toBerthError(e, "run.daemon-reload", "daemon-reload failed", hint) };
      }
      ctx.status.unitsFingerprint = fingerprint;
      return { outcome: "changed", action: "reloaded", cause: d.cause, event: "systemd.reloaded" };
    },
  };
}
