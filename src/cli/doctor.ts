/**
 * `berth doctor`: what stands between this node and Ready, and what to do
 * about it. Argument parsing and printing only; the checks are src/doctor/.
 *
 * Exit status: 0 when no check failed (warnings and passes), 1 when one did,
 * 2 on usage errors.
 */
import { HostRoot } from "../host/root.ts";
import type { CheckResult, DoctorReport } from "../doctor/types.ts";
import { CONFIG_SOURCE_OPTION, DEFAULT_CONFIG_SOURCE, parseCommand, usageError } from "./args.ts";
import { berthExecutable } from "./self.ts";

export const DOCTOR_HELP = `Usage: berth doctor [options]

Check what stands between this node and Ready, and say what to do about it:
config, imds, ec2, clock, host, files, containerd, apiserver, kubelet,
registration (docs/doctor.md). Each check has its own deadline; the whole
run takes at most 10 s. Run it on the node, as root.

Options:
  -c, --config-source URL  config source, repeatable, later wins, as for berth init
                           (imds://user-data [default], file:///path.yaml, file:///dir/)
      --config-cache PATH  the config cache berth init was given (compared with the sources)
  -o, --output FORMAT      table (default) or json
      --root DIR           treat DIR as the node's / for every path read
      --bus-address ADDR   D-Bus system bus (default: BERTH_BUS_ADDRESS, DBUS_SYSTEM_BUS_ADDRESS,
                           else /run/dbus/system_bus_socket under the root)
      --kubelet-healthz URL  kubelet's health URL (default: the BerthConfig's, else
                           http://127.0.0.1:10248/healthz)
      --kubelet-log FILE   read kubelet's recent log from FILE instead of the journal
  -h, --help               this help

Exit status: 0 when no check failed, 1 when one did, 2 on a usage error.
`;

const DOCTOR_OPTIONS = {
  ...CONFIG_SOURCE_OPTION,
  "config-cache": { type: "string" },
  output: { type: "string", short: "o" },
  root: { type: "string" },
  "bus-address": { type: "string" },
  "kubelet-healthz": { type: "string" },
  "kubelet-log": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

const STATUS_LABEL: Record<CheckResult["status"], string> = { pass: "pass", warn: "WARN", fail: "FAIL", skip: "skip" };
const STATUS_COLOUR: Record<CheckResult["status"], string> = { pass: "\x1b[32m", warn: "\x1b[33m", fail: "\x1b[31m", skip: "\x1b[2m" };

/** The report as a person reads it; `colour` only for a terminal. Pure (exported for tests). */
export function formatDoctorTable(report: DoctorReport, opts: { colour: boolean; elapsedMs: number }): string {
  const paint = (s: CheckResult["status"], text: string): string => (opts.colour ? `${STATUS_COLOUR[s]}${text}\x1b[0m` : text);
  const node = report.node.name ?? "(name unknown)";
  const lines = [`berth doctor: node ${node}${report.node.instanceId ? ` (${report.node.instanceId})` : ""}`, ""];
  const idWidth = Math.max(...report.checks.map((c) => c.id.length));
  const timeWidth = Math.max(...report.checks.map((c) => String(c.durationMs).length));
  const indent = " ".repeat(2 + idWidth + 2 + 4 + 2 + timeWidth + 3 + 2);
  for (const c of report.checks) {
    lines.push(
      `  ${c.id.padEnd(idWidth)}  ${paint(c.status, STATUS_LABEL[c.status])}  ${String(c.durationMs).padStart(timeWidth)} ms  ${c.finding}`,
    );
    if (c.status !== "pass") lines.push(`${indent}hint: ${c.hint}`);
    for (const d of c.detail ?? []) lines.push(`${indent}| ${d}`);
  }
  const count = (s: CheckResult["status"]) => report.checks.filter((c) => c.status === s).length;
  const parts = [`${count("fail")} failed`, `${count("warn")} warning(s)`, `${count("pass")} passed`, `${count("skip")} skipped`];
  lines.push("", `${parts.join(", ")} in ${(opts.elapsedMs / 1000).toFixed(1)} s`);
  const first = report.checks.find((c) => c.status === "fail");
  lines.push(first ? `start with ${first.id}: ${first.hint}` : "nothing found that stands between this node and Ready");
  return lines.join("\n") + "\n";
}

/** The JSON output: exactly `{node, checks: [{id, status, finding, hint, durationMs, detail?}]}`. Pure (exported for tests). */
export function formatDoctorJson(report: DoctorReport): string {
  const checks = report.checks.map((c) => ({
    id: c.id,
    status: c.status,
    finding: c.finding,
    hint: c.hint,
    durationMs: c.durationMs,
    ...(c.detail ? { detail: c.detail } : {}),
  }));
  return JSON.stringify({ node: { name: report.node.name, instanceId: report.node.instanceId }, checks }, null, 2) + "\n";
}

export async function doctorCommand(args: string[]): Promise<number> {
  const p = parseCommand(args, DOCTOR_OPTIONS, "doctor", DOCTOR_HELP);
  if (typeof p === "number") return p;
  const v = p.values;
  const output = v.output ?? "table";
  if (output !== "table" && output !== "json") return usageError(`unknown --output '${output}' (expected table or json)`, "doctor");
  const cache = v["config-cache"];
  if (cache !== undefined && !cache.startsWith("/"))
    return usageError(`--config-cache must be an absolute path on the node, not '${cache}'`, "doctor");
  const healthz = v["kubelet-healthz"];
  if (healthz !== undefined && !/^http:\/\/[^/]+/.test(healthz))
    return usageError(`--kubelet-healthz must be an http:// URL, not '${healthz}'`, "doctor");
  const root = new HostRoot(v.root ?? "/");
  if (root.isHost && typeof process.getuid === "function" && process.getuid() !== 0) {
    process.stderr.write(
      "note: berth doctor is not running as root: checks that read kubelet's credentials, the journal or containerd's socket may fail " +
        "for that reason alone\n",
    );
  }
  const started = Date.now();
  const [{ createDoctorDeps }, { runDoctor }, { doctorExitStatus }] = await Promise.all([
    import("../doctor/deps.ts"),
    import("../doctor/checks.ts"),
    import("../doctor/run.ts"),
  ]);
  const deps = createDoctorDeps({
    root,
    env: process.env,
    sources: v["config-source"]?.length ? v["config-source"] : [DEFAULT_CONFIG_SOURCE],
    ...(cache !== undefined ? { cachePath: cache } : {}),
    berthPath: berthExecutable(),
    ...(v["bus-address"] ? { busAddress: v["bus-address"] } : {}),
    ...(healthz !== undefined ? { kubeletHealthzUrl: healthz } : {}),
    ...(v["kubelet-log"] !== undefined ? { kubeletLogFile: v["kubelet-log"] } : {}),
  });
  let report: DoctorReport;
  try {
    report = await runDoctor(deps);
  } finally {
    deps.close();
  }
  const colour = process.stdout.isTTY === true && !process.env.NO_COLOR && process.env.TERM !== "dumb";
  process.stdout.write(
    output === "json" ? formatDoctorJson(report) : formatDoctorTable(report, { colour, elapsedMs: Date.now() - started }),
  );
  return doctorExitStatus(report.checks);
}
