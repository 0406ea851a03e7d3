/** `berth config check` and `berth config dump` (nodeadm's words). */
import { writeFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { HostRoot } from "../host/root.ts";
import type { MergedConfig } from "../api/types.ts";
import type { Result } from "../util/result.ts";
import { CONFIG_SOURCE_OPTION, DEFAULT_CONFIG_SOURCE, EXIT_OK, parse, printErrors, usageError } from "./args.ts";

export const CONFIG_HELP = `Usage: berth config check [options]
       berth config dump [options]

check  decode, merge and validate the configuration from every source; writes nothing
dump   print the merged NodeConfig as YAML (or write it to -o FILE)

Options:
  -c, --config-source URL  config source, repeatable, later wins (default imds://user-data)
      --config-cache PATH  (dump) fall back to / compare with this cached config
  -o, --output FILE        (dump) write to FILE instead of stdout
      --root DIR           resolve file:// sources and the cache under DIR
  -h, --help               this help
`;

const CHECK_OPTIONS = {
  ...CONFIG_SOURCE_OPTION,
  root: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

const DUMP_OPTIONS = {
  ...CHECK_OPTIONS,
  "config-cache": { type: "string" },
  output: { type: "string", short: "o" },
} as const;

async function resolve(sources: string[], cachePath: string | undefined, root: HostRoot): Promise<Result<MergedConfig>> {
  const [{ resolveConfig }, { lazyImds }] = await Promise.all([import("../sources/cache.ts"), import("../phases/config.ts")]);
  try {
    const r = await resolveConfig(sources, cachePath, { root, imds: lazyImds(process.env) });
    return r.ok ? { ok: true, value: r.value.config } : r;
  } catch (e) {
    const errs = (e as { errors?: unknown }).errors;
    if (Array.isArray(errs)) return { ok: false, errors: errs };
    return { ok: false, errors: [{ code: "config.resolve", message: `could not load the configuration: ${e instanceof Error ? e.message : String(e)}`, cause: e }] };
  }
}

export async function checkCommand(args: string[]): Promise<number> {
  const p = parse(args, CHECK_OPTIONS, "config check");
  if (!p) return 2;
  if (p.values.help) {
    process.stdout.write(CONFIG_HELP);
    return EXIT_OK;
  }
  if (p.positionals.length) return usageError(`unexpected argument '${p.positionals[0]}'`, "config check");
  const sources = p.values["config-source"]?.length ? p.values["config-source"] : [DEFAULT_CONFIG_SOURCE];
  const r = await resolve(sources, undefined, new HostRoot(p.values.root ?? "/"));
  // resolveConfig decodes strictly, merges and validates.
  if (!r.ok) return printErrors(r.errors);
  process.stdout.write(`configuration is valid (${r.value.sources.join(", ") || sources.join(", ")})\n`);
  return EXIT_OK;
}

export async function dumpCommand(args: string[]): Promise<number> {
  const p = parse(args, DUMP_OPTIONS, "config dump");
  if (!p) return 2;
  if (p.values.help) {
    process.stdout.write(CONFIG_HELP);
    return EXIT_OK;
  }
  if (p.positionals.length) return usageError(`unexpected argument '${p.positionals[0]}'`, "config dump");
  const cache = p.values["config-cache"];
  if (cache !== undefined && !cache.startsWith("/")) return usageError(`--config-cache must be an absolute path on the node, not '${cache}'`, "config dump");
  const sources = p.values["config-source"]?.length ? p.values["config-source"] : [DEFAULT_CONFIG_SOURCE];
  const r = await resolve(sources, p.values["config-cache"], new HostRoot(p.values.root ?? "/"));
  if (!r.ok) return printErrors(r.errors);
  const { encodeNodeConfigYaml } = await import("../api/encode.ts");
  const text = encodeNodeConfigYaml(r.value);
  const out = p.values.output;
  if (out === undefined || out === "-") {
    process.stdout.write(text);
    return EXIT_OK;
  }
  try {
    await mkdir(path.dirname(path.resolve(out)), { recursive: true });
    await writeFile(out, text, { mode: 0o644 });
  } catch (e) {
    return printErrors([{ code: "cli.output", message: `could not write ${out}: ${e instanceof Error ? e.message : String(e)}`, where: { source: out }, hint: "check that the directory is writable", cause: e }]);
  }
  process.stderr.write(`configuration written to ${out}\n`);
  return EXIT_OK;
}
