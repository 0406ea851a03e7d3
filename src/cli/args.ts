/**
 * Argument parsing shared by the commands, on node:util parseArgs. A usage
 * error is a value (exit status 2), never an exception with a stack trace.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { formatError, formatWarning, type BerthError } from "../util/result.ts";
import type { ValidationMode } from "../api/types.ts";
import { errorMessage } from "../util/errors.ts";

export const EXIT_OK = 0;
export const EXIT_FAIL = 1;
export const EXIT_USAGE = 2;

export type Options = NonNullable<ParseArgsConfig["options"]>;

export type Parsed<O extends Options> = ReturnType<typeof parseArgs<{ options: O; allowPositionals: true; strict: true }>>;

/** Parse, or print the usage error with the command's help hint and return undefined. */
export function parse<O extends Options>(args: string[], options: O, command: string): Parsed<O> | undefined {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    const msg = errorMessage(e);
    usageError(msg.replace(/\. To specify a positional argument.*$/s, ""), command);
    return undefined;
  }
}

/**
 * How every command starts: parse (a usage error is printed), `--help`
 * prints `help`, and positional arguments are a usage error. A number is the
 * exit status to return at once.
 */
export function parseCommand<O extends Options>(args: string[], options: O, command: string, help: string): Parsed<O> | number {
  const p = parse(args, options, command);
  if (!p) return EXIT_USAGE;
  if ((p.values as { help?: unknown }).help) {
    process.stdout.write(help);
    return EXIT_OK;
  }
  if (p.positionals.length) return usageError(`unexpected argument '${p.positionals[0]}'`, command);
  return p;
}

export function usageError(message: string, command: string): number {
  // Through formatError: the message quotes the user's arguments, which must not break its lines.
  process.stderr.write(formatError({ code: "cli.usage", message, hint: `run 'berth ${command} --help' for usage` }) + "\n");
  return EXIT_USAGE;
}

/**
 * nodeadm refuses to run as a normal user; so does berth when it would write
 * the real / (`writesHost`: the root is / and this is no dry run). Prints the
 * error and returns the failure exit status, or undefined when it may go on.
 */
export function refuseNonRoot(writesHost: boolean, why: string, rootHint: string): number | undefined {
  if (!writesHost || typeof process.getuid !== "function" || process.getuid() === 0) return undefined;
  return printErrors([
    {
      code: "cli.not-root",
      message: `${why}, so it must run as root`,
      hint: `run it as root (sudo), or use --root DIR to ${rootHint}, or --dry-run to see what would change`,
    },
  ]);
}

/** How many errors are printed at most; hostile input can produce one per key of a huge map. */
const MAX_PRINTED_ERRORS = 20;

/**
 * Print the errors the way berth prints errors — the first MAX_PRINTED_ERRORS
 * of them, then one line saying how many more there are; returns the failure
 * exit status.
 */
export function printErrors(errors: BerthError[]): number {
  process.stderr.write(cappedReport(errors, "error"));
  return EXIT_FAIL;
}

/** Print warnings as printErrors prints errors (`warning:` lines, the same cap). */
export function printWarnings(warnings: readonly BerthError[]): void {
  if (warnings.length > 0) process.stderr.write(cappedReport(warnings, "warning"));
}

function cappedReport(list: readonly BerthError[], what: "error" | "warning"): string {
  const shown = list.length > MAX_PRINTED_ERRORS ? list.slice(0, MAX_PRINTED_ERRORS) : list;
  const format = what === "error" ? formatError : formatWarning;
  let out = shown.map((e) => format(e) + "\n").join("");
  const more = list.length - shown.length;
  const all = list.length.toLocaleString("en-US");
  if (more > 0)
    out +=
      format({
        code: `cli.more-${what}s`,
        message: `… and ${more.toLocaleString("en-US")} more ${what}${more === 1 ? "" : "s"} (${all} in all)`,
        hint: `fix the ${what === "error" ? "errors" : "fields"} above and run the command again to see the rest`,
      }) + "\n";
  // One write: the lines of one report stay together.
  return out;
}

/** `--validate MODE` of the commands that read config sources. */
export const VALIDATE_OPTION = { validate: { type: "string" } } as const;

/**
 * The `--validate` value: undefined when not given (the config's own
 * setting then decides), else the mode, or the usage error's exit status.
 */
export function validationFlag(value: string | undefined, command: string): ValidationMode | undefined | number {
  if (value === undefined) return undefined;
  if (value === "strict" || value === "warn") return value;
  return usageError(`unknown --validate mode '${value}' (expected strict or warn)`, command);
}

/** nodeadm's default when no -c is given. */
export const DEFAULT_CONFIG_SOURCE = "imds://user-data";

export const CONFIG_SOURCE_OPTION = { "config-source": { type: "string", short: "c", multiple: true } } as const;
