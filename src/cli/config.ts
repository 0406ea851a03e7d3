/** `berth config check` and `berth config dump` (nodeadm's words). */
import { writeFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { HostRoot } from "../host/root.ts";
import {
  BERTH_API_VERSION,
  BERTH_KIND,
  NODECONFIG_API_VERSION,
  NODECONFIG_KIND,
  type JsonObject,
  type JsonValue,
  type MergedConfig,
  type ValidationMode,
} from "../api/types.ts";
import { sortKeys } from "../util/json.ts";
import type { Result } from "../util/result.ts";
import { errorMessage, toBerthErrors } from "../util/errors.ts";
import {
  CONFIG_SOURCE_OPTION,
  DEFAULT_CONFIG_SOURCE,
  EXIT_FAIL,
  EXIT_OK,
  parseCommand,
  printErrors,
  printWarnings,
  usageError,
  VALIDATE_OPTION,
  validationFlag,
} from "./args.ts";
import type { SourcesReport } from "../sources/index.ts";

export const CONFIG_HELP = `Usage: berth config check [options]
       berth config dump [options]

check  decode, merge and validate the configuration from every source; writes
       nothing; ends with a summary per file (ok, N warnings, N errors) and
       exits 0 unless there are errors
dump   print the merged NodeConfig (or write it to -o FILE); JSON by default,
       as nodeadm prints it; berth's own settings, when present, ride along
       under "berth" (for tools; to feed a dump back to -c, use --format yaml)

Options:
  -c, --config-source URL  config source, repeatable, later wins (default imds://user-data)
      --config-cache PATH  (dump) fall back to / compare with this cached config
  -o, --output FILE        (dump) write to FILE instead of stdout
      --config-output FILE (dump) the same as -o (nodeadm's name)
      --format FORMAT      (dump) json (default, nodeadm's) or yaml (NodeConfig and
                           BerthConfig documents, readable back with -c)
      --validate MODE      strict (default): unknown fields are errors; warn: they
                           are dropped with a warning, as nodeadm drops them (wins
                           over the BerthConfig's spec.validation)
      --root DIR           resolve file:// sources and the cache under DIR
  -h, --help               this help
`;

const CHECK_OPTIONS = {
  ...CONFIG_SOURCE_OPTION,
  ...VALIDATE_OPTION,
  root: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

const DUMP_OPTIONS = {
  ...CHECK_OPTIONS,
  "config-cache": { type: "string" },
  output: { type: "string", short: "o" },
  "config-output": { type: "string" },
  format: { type: "string" },
} as const;

const FORMATS = ["json", "yaml"] as const;
type Format = (typeof FORMATS)[number];

/**
 * nodeadm's dump: the NodeConfig encoded by apimachinery's JSON serializer —
 * one line, kind before apiVersion, the empty ObjectMeta as
 * {"creationTimestamp":null}, the spec with Go's field order and omitempty
 * rules (the config cache's shape), a trailing newline. berth's own settings
 * ride along under "berth" (as in berth's config cache) only when set.
 */
function dumpJson(config: MergedConfig, toNodeadmJson: (s: MergedConfig["nodeConfig"]) => JsonObject): string {
  const doc: JsonObject = {
    kind: NODECONFIG_KIND,
    apiVersion: NODECONFIG_API_VERSION,
    metadata: { creationTimestamp: null },
    spec: toNodeadmJson(config.nodeConfig),
  };
  if (Object.values(config.berth).some((x) => x !== undefined)) {
    doc["berth"] = { kind: BERTH_KIND, apiVersion: BERTH_API_VERSION, spec: sortKeys(config.berth as JsonValue) };
  }
  return JSON.stringify(doc) + "\n";
}

interface ResolveOptions {
  validation: ValidationMode | undefined;
  onSources: (report: SourcesReport) => void;
}

async function loadMergedConfig(
  sources: string[],
  cachePath: string | undefined,
  root: HostRoot,
  opts: ResolveOptions,
): Promise<Result<MergedConfig>> {
  const [{ resolveConfig }, { lazyImds }] = await Promise.all([import("../sources/cache.ts"), import("../phases/config.ts")]);
  try {
    const r = await resolveConfig(sources, cachePath, {
      root,
      imds: lazyImds(process.env),
      ...(opts.validation ? { validation: opts.validation } : {}),
      onSources: opts.onSources,
    });
    return r.ok ? { ok: true, value: r.value.config } : r;
  } catch (e) {
    return { ok: false, errors: toBerthErrors(e, "config.resolve", "could not load the configuration") };
  }
}

export async function checkCommand(args: string[]): Promise<number> {
  const p = parseCommand(args, CHECK_OPTIONS, "config check", CONFIG_HELP);
  if (typeof p === "number") return p;
  const validation = validationFlag(p.values.validate, "config check");
  if (typeof validation === "number") return validation;
  const sources = p.values["config-source"]?.length ? p.values["config-source"] : [DEFAULT_CONFIG_SOURCE];
  let report: SourcesReport | undefined;
  // resolveConfig decodes (in the validation mode), merges and validates.
  const r = await loadMergedConfig(sources, undefined, new HostRoot(p.values.root ?? "/"), {
    validation,
    onSources: (rep) => {
      report = rep;
      printWarnings(rep.warnings);
    },
  });
  const { checkSummary } = await import("./check-summary.ts");
  if (!r.ok) {
    printErrors(r.errors);
    process.stdout.write(checkSummary(report, r.errors));
    return EXIT_FAIL;
  }
  process.stdout.write(checkSummary(report, []));
  process.stdout.write(`configuration is valid (${r.value.sources.join(", ") || sources.join(", ")})\n`);
  return EXIT_OK;
}

export async function dumpCommand(args: string[]): Promise<number> {
  const p = parseCommand(args, DUMP_OPTIONS, "config dump", CONFIG_HELP);
  if (typeof p === "number") return p;
  const outFlag = p.values.output;
  const cfgOut = p.values["config-output"];
  if (outFlag !== undefined && cfgOut !== undefined && outFlag !== cfgOut)
    return usageError(`-o ${outFlag} and --config-output ${cfgOut} disagree; give one of them`, "config dump");
  const format = (p.values.format ?? "json") as Format;
  if (!FORMATS.includes(format)) return usageError(`unknown --format '${p.values.format}' (expected json or yaml)`, "config dump");
  const cache = p.values["config-cache"];
  if (cache !== undefined && !cache.startsWith("/"))
    return usageError(`--config-cache must be an absolute path on the node, not '${cache}'`, "config dump");
  const sources = p.values["config-source"]?.length ? p.values["config-source"] : [DEFAULT_CONFIG_SOURCE];
  const validation = validationFlag(p.values.validate, "config dump");
  if (typeof validation === "number") return validation;
  // In warn mode the dropped fields are said on stderr and are not in the dump.
  const onSources = (rep: SourcesReport): void => printWarnings(rep.warnings);
  const r = await loadMergedConfig(sources, p.values["config-cache"], new HostRoot(p.values.root ?? "/"), { validation, onSources });
  if (!r.ok) return printErrors(r.errors);
  const { encodeNodeConfigYaml, toNodeadmJson } = await import("../api/encode.ts");
  const text = format === "yaml" ? encodeNodeConfigYaml(r.value) : dumpJson(r.value, toNodeadmJson);
  const out = outFlag ?? cfgOut;
  if (out === undefined || out === "-") {
    process.stdout.write(text);
    return EXIT_OK;
  }
  try {
    await mkdir(path.dirname(path.resolve(out)), { recursive: true });
    await writeFile(out, text, { mode: 0o644 });
  } catch (e) {
    return printErrors([
      {
        code: "cli.output",
        message: `could not write ${out}: ${errorMessage(e)}`,
        where: { source: out },
        hint: "check that the directory is writable",
        cause: e,
      },
    ]);
  }
  process.stderr.write(`configuration written to ${out}\n`);
  return EXIT_OK;
}
