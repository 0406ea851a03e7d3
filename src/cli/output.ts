/** How the CLI prints an apply report: what changed, where, deterministic order. */
import type { ApplyReport } from "../host/fs.ts";
import type { HostRoot } from "../host/root.ts";

export function printApplyReport(r: ApplyReport, root: HostRoot, dryRun: boolean): void {
  const out: string[] = [];
  if (dryRun) {
    for (const d of r.diffs ?? []) out.push(d.text);
    const n = r.written.length + r.removed.length;
    out.push(
      n === 0
        ? `dry run: nothing would change (${r.unchanged.length} file(s) already up to date)\n`
        : `dry run: ${r.written.length} file(s) would be written, ${r.removed.length} removed, ${r.unchanged.length} unchanged; nothing was written\n`,
    );
    process.stdout.write(out.join(""));
    return;
  }
  const where = root.isHost ? "" : ` under ${root.dir}`;
  for (const p of r.written) out.push(`wrote     ${p}\n`);
  for (const p of r.removed) out.push(`removed   ${p}\n`);
  for (const p of r.unchanged) out.push(`unchanged ${p}\n`);
  out.push(`${r.written.length} written, ${r.removed.length} removed, ${r.unchanged.length} unchanged${where}${r.unitsChanged ? " (systemd units changed: daemon-reload due)" : ""}\n`);
  process.stdout.write(out.join(""));
}
