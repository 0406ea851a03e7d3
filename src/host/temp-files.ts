/**
 * berth's temp files (`.<name>.berth-<pid>-<random>.tmp`, beside their
 * targets): their names, the sweep of those killed runs left (only under the
 * berth lock), and error text that never shows one to the user. Never writes
 * a temp file itself (fs.ts does).
 */
import { randomBytes } from "node:crypto";
import { lstatSync, readdirSync, rmSync } from "node:fs";
import path from "node:path";

/** Temp files of this module, of any run: `.<name>.berth-<pid>-<seq or random>.tmp`. */
export const TEMP_NAME = /^\..+\.berth-\d+-[0-9a-z]+\.tmp$/;

/** A temp name beside `target` that no other run, in this boot or an earlier one, can have used. */
export function tempName(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.berth-${process.pid}-${randomBytes(6).toString("hex")}.tmp`);
}

/**
 * The system's words for an I/O error, without the path Node appends
 * (`EROFS: read-only file system, open '/etc/.x.berth-1-ab.tmp'` →
 * `EROFS: read-only file system`) when that path is one of berth's temp
 * files, which the user never asked about and cannot find afterwards.
 */
export function errnoText(e: unknown): string {
  const err = e as Partial<NodeJS.ErrnoException> | undefined;
  let msg = err?.message ?? String(e);
  if (typeof err?.path === "string" && TEMP_NAME.test(path.basename(err.path))) {
    msg = msg.replace(/, [a-z_]+ '[^]*$/, "");
  }
  if (err?.code && !msg.startsWith(err.code)) msg = `${err.code} ${msg}`;
  return msg.replace(/\s+/g, " ").trim();
}

/**
 * Remove what killed runs left in the plan's directories: berth temp files
 * (`.<name>.berth-….tmp`), and the older names of the status file and the
 * config cache temps (`<name>.<pid>.tmp`, `.<name>.<pid>.<ms>.tmp`) for the
 * files planned there. Only under the berth lock: no other run is writing.
 */
export function removeStaleTemps(dirs: Map<string, Set<string>>): string[] {
  const removed: string[] = [];
  for (const [dir, planned] of dirs) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue; // not there yet, or unreadable: nothing of ours
    }
    for (const n of names) {
      const legacy = [/^(.+)\.\d+\.tmp$/.exec(n)?.[1], /^\.(.+)\.\d+\.\d+\.tmp$/.exec(n)?.[1]];
      if (!TEMP_NAME.test(n) && !legacy.some((b) => b !== undefined && planned.has(b))) continue;
      const p = path.join(dir, n);
      try {
        // lstat: a directory of that name is not a temp file of ours; a link is removed, never followed.
        const st = lstatSync(p);
        if (!st.isFile() && !st.isSymbolicLink()) continue;
        rmSync(p, { force: true });
        removed.push(p);
      } catch {
        // gone meanwhile, or not ours to remove (EACCES): leave it
      }
    }
  }
  return removed.sort();
}
