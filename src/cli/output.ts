/**
 * How the CLI prints: an apply report (what changed, where, deterministic
 * order), and how the process ends once all of its output is out.
 */
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
        : `dry run: ${r.written.length} file(s) would be written, ${r.removed.length} removed, ${r.unchanged.length} ` +
            `unchanged; nothing was written\n`,
    );
    process.stdout.write(out.join(""));
    return;
  }
  const where = root.isHost ? "" : ` under ${root.dir}`;
  for (const p of r.written) out.push(`wrote     ${p}\n`);
  for (const p of r.removed) out.push(`removed   ${p}\n`);
  for (const p of r.unchanged) out.push(`unchanged ${p}\n`);
  out.push(
    `${r.written.length} written, ${r.removed.length} removed, ${r.unchanged.length} ` +
      `unchanged${where}${r.unitsChanged ? " (systemd units changed: daemon-reload due)" : ""}\n`,
  );
  process.stdout.write(out.join(""));
}

/** Set when writing stdout failed for another reason than a reader that went away. */
let outputFailed = false;

/**
 * Call once at startup. A reader that stops early (`berth config dump | head`)
 * makes the next write fail with EPIPE; Node would throw that as an uncaught
 * 'error' event with a stack trace. berth stops talking to that reader and
 * goes on. Any other write error (a full disk behind `> file`) is reported on
 * stderr and makes the exit status a failure: output cut short must never
 * look like success.
 */
export function guardOutput(): void {
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE" || outputFailed) return;
    outputFailed = true;
    process.stderr.write(
      `error: could not write to standard output: ${e.message}\n  hint: check where the output goes (disk ` +
        `space, the reading process)\n`,
    );
  });
  // Nothing is left to report a stderr failure on; only keep it from becoming a crash.
  process.stderr.on("error", () => undefined);
}

/** Resolves once everything written to `s` so far has been handed to the OS (or `s` cannot take more). */
function flushed(s: NodeJS.WriteStream): Promise<void> {
  if (s.destroyed || s.writableEnded || s.writableLength === 0) return Promise.resolve();
  // Writes complete in order, so an empty write's callback runs after every earlier one.
  return new Promise((resolve) => s.write("", () => resolve()));
}

/**
 * End the process with `code` once stdout and stderr are flushed. Writes to a
 * pipe are asynchronous in Node: `process.exit()` right after a large write
 * would cut the output at the pipe's buffer size (64 KiB) with a success
 * status, so nothing in berth calls it directly; this waits for the streams
 * first, then exits without waiting for stray handles (an idle keep-alive
 * socket) to close.
 */
export async function exitWhenFlushed(code: number): Promise<never> {
  await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  // A failed write reports its 'error' event on a later tick; let guardOutput() see it first.
  await new Promise((resolve) => setImmediate(resolve));
  process.exit(outputFailed && code === 0 ? 1 : code);
}
