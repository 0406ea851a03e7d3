/**
 * berth's one logger: pino JSON lines, configured here and nowhere else.
 * The run phase, `berth task` and the agent each make theirs with
 * `createLogger` (run phase: `createLogger({ app: "berth-run" })`, replacing
 * src/phases/run.ts's `defaultLogger`). Every line is a structured event:
 * `event`, `component`, `cause`, durations as `…Ms` (docs/agent.md, DESIGN).
 * Never a second pino setup, a hand-written fallback or a plain text line.
 */

export type LogLevel = "debug" | "info" | "warn" | "error";
export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/** One event: what happened (`event`, e.g. `containerd.restart`), to what (`component`) and why (`cause`). */
export interface LogFields {
  event?: string;
  component?: string;
  cause?: string;
  [field: string]: unknown;
}

/** What berth logs through; a test may pass a recorder, the agent needs only info, warn and error. */
export interface Logger {
  debug(fields: LogFields, msg?: string): void;
  info(fields: LogFields, msg?: string): void;
  warn(fields: LogFields, msg?: string): void;
  error(fields: LogFields, msg?: string): void;
}

export interface LoggerOptions {
  /** `app` on every line: `berth-run`, `berth-task`, `berth-agent`. */
  app: string;
  /** Lowest level written (default: BERTH_LOG_LEVEL, else info; an unknown name means info). */
  level?: string;
  /** stderr for the oneshots (stdout is their report), stdout for the agent (default stderr). */
  to?: "stdout" | "stderr";
  /**
   * Write each line before returning (default true): a oneshot must not lose
   * its last lines on exit. The agent, resident, writes asynchronously.
   */
  sync?: boolean;
  env?: NodeJS.ProcessEnv;
}

function levelOf(requested: string | undefined): LogLevel {
  return LOG_LEVELS.find((l) => l === requested) ?? "info";
}

/** A pino logger: ISO timestamps, levels as labels, `app` on every line. pino loads on first use. */
export async function createLogger(opts: LoggerOptions): Promise<Logger> {
  // The default export: bundled (esbuild) CommonJS exposes module.exports there.
  const pino = (await import("pino")).default;
  const l = pino(
    {
      level: levelOf(opts.level ?? (opts.env ?? process.env).BERTH_LOG_LEVEL),
      base: { app: opts.app },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ fd: opts.to === "stdout" ? 1 : 2, sync: opts.sync ?? true }),
  );
  return {
    debug: (fields, msg) => l.debug(fields, msg),
    info: (fields, msg) => l.info(fields, msg),
    warn: (fields, msg) => l.warn(fields, msg),
    error: (fields, msg) => l.error(fields, msg),
  };
}
