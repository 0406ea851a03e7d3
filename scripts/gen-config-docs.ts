/**
 * Regenerate the generated parts of berth's user docs:
 *
 * - docs/config.md: the field tables of NodeConfig `spec` and BerthConfig
 *   `spec`, read from the shipped JSON Schema (data/schema/*.json, itself
 *   generated from src/api/schema.ts), with each field's merge rule and, for
 *   BerthConfig, its default (from the constants the code uses);
 * - docs/files.md: every file the config phase writes, from real `buildPlan`
 *   output for the demo config and for a config that switches on every
 *   optional file.
 *
 * Only the text between `<!-- BEGIN GENERATED name -->` and
 * `<!-- END GENERATED -->` is replaced; the prose around it is hand-written.
 * tests/unit/docs.test.ts regenerates and compares, so the docs cannot drift
 * from the schema or the renderers.
 *
 * Run: node --import tsx scripts/gen-config-docs.ts          (rewrite docs/)
 *      node --import tsx scripts/gen-config-docs.ts --check  (exit 1 if stale)
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { JsonObject, JsonValue, MergedConfig } from "../src/api/types.ts";
import { decodeDocuments } from "../src/api/decode.ts";
import { mergeConfigs } from "../src/api/merge.ts";
import { buildPlan } from "../src/plan/plan.ts";
import type { Plan } from "../src/plan/types.ts";
import type { NodeFacts } from "../src/facts/types.ts";
import { staticFacts } from "../src/facts/index.ts";
import { AGENT_DEFAULTS } from "../src/api/agent-settings.ts";
import { DEFAULTS as RUN_DEFAULTS } from "../src/phases/run.ts";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

// ---------------------------------------------------------------- markers

const BEGIN = (name: string): string => `<!-- BEGIN GENERATED ${name} (scripts/gen-config-docs.ts; do not edit) -->`;
const END = "<!-- END GENERATED -->";

/**
 * Replace the body of the generated block `name` in `text`. Throws when the
 * markers are missing or unbalanced: a doc that lost its markers must fail
 * loudly rather than silently stop being generated.
 */
export function replaceGenerated(text: string, name: string, body: string): string {
  const begin = BEGIN(name);
  const start = text.indexOf(begin);
  if (start < 0) throw new Error(`marker "${begin}" not found`);
  if (text.indexOf(begin, start + begin.length) >= 0) throw new Error(`marker "${begin}" appears twice`);
  const from = start + begin.length;
  const end = text.indexOf(END, from);
  if (end < 0) throw new Error(`no "${END}" after "${begin}"`);
  return `${text.slice(0, from)}\n${body.trimEnd()}\n${text.slice(end)}`;
}

/** Names of every generated block in `text`, in order. */
export function generatedBlockNames(text: string): string[] {
  return [...text.matchAll(/<!-- BEGIN GENERATED (\S+) /g)].map((m) => m[1]!);
}

// ---------------------------------------------------------------- schema tables

type Schema = { [key: string]: JsonValue };

const isObj = (v: JsonValue | undefined): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

/** Markdown table cell: pipes escaped, newlines flattened. */
function cell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

function code(s: string): string {
  return `\`${s}\``;
}

/** An enum value as the tables show it: strings bare, anything else as JSON. */
function scalarText(v: unknown): string {
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** A short type description of a JSON Schema node. */
export function typeOf(s: Schema): string {
  if (typeof s["$ref"] === "string") return s["$ref"].endsWith("/JsonValue") ? "any JSON value" : s["$ref"];
  const enumValues = s["enum"];
  if (Array.isArray(enumValues) && s["const"] === undefined) return `one of ${enumValues.map((v) => code(scalarText(v))).join(", ")}`;
  const t = s["type"];
  if (t === "array") {
    const items = isObj(s["items"]) ? typeOf(s["items"]) : "any";
    const min = typeof s["minItems"] === "number" && s["minItems"] > 0 ? ` (at least ${s["minItems"]})` : "";
    return `list of ${items}${min}`;
  }
  if (t === "object") {
    if (isObj(s["properties"])) return "object";
    const keys =
      isObj(s["propertyNames"]) && Array.isArray(s["propertyNames"]["enum"])
        ? s["propertyNames"]["enum"].map((v) => code(scalarText(v))).join(" or ")
        : "string";
    const values = isObj(s["additionalProperties"]) ? typeOf(s["additionalProperties"]) : "any";
    return `map of ${keys} → ${values}`;
  }
  if (t === "integer" || t === "number") {
    const min = s["minimum"];
    const max = s["maximum"];
    if (typeof min === "number" && typeof max === "number") return `${t} ${min}..${max}`;
    if (typeof min === "number") return `${t} ≥ ${min}`;
    return String(t);
  }
  if (t === "string") {
    if (typeof s["pattern"] === "string" && s["format"] !== "starts_with") return `string matching ${code(s["pattern"])}`;
    if (s["format"] === "starts_with") return "string (absolute path)";
    if (typeof s["minLength"] === "number" && s["minLength"] > 0) return "non-empty string";
    return "string";
  }
  return typeof t === "string" ? t : "any";
}

export interface FieldRow {
  /** Dotted path under `spec`, e.g. `cluster.cidr`. */
  path: string;
  type: string;
  description: string;
  required: boolean;
}

/** Every field under `node` (depth first, schema order): objects with `properties` are descended into. */
export function fieldRows(node: Schema, prefix = ""): FieldRow[] {
  const rows: FieldRow[] = [];
  const props = node["properties"];
  if (!isObj(props)) return rows;
  const required = Array.isArray(node["required"]) ? node["required"].map(String) : [];
  for (const [name, child] of Object.entries(props)) {
    if (!isObj(child)) continue;
    const p = prefix ? `${prefix}.${name}` : name;
    rows.push({
      path: p,
      type: typeOf(child),
      description: typeof child["description"] === "string" ? child["description"] : "",
      required: required.includes(name),
    });
    if (child["type"] === "object" && isObj(child["properties"])) rows.push(...fieldRows(child, p));
    const items = child["items"];
    if (child["type"] === "array" && isObj(items) && isObj(items["properties"])) rows.push(...fieldRows(items, `${p}[]`));
  }
  return rows;
}

/**
 * How each NodeConfig field merges when several documents set it (src/api/merge.ts).
 * Keyed by dotted path; the test fails when a schema field has no entry, so a
 * new field cannot appear in the docs without its merge rule.
 */
export const NODECONFIG_MERGE: Readonly<Record<string, string>> = {
  cluster: "per field",
  "cluster.name": "later non-empty wins",
  "cluster.apiServerEndpoint": "later non-empty wins",
  "cluster.certificateAuthority": "later non-empty wins",
  "cluster.cidr": "later non-empty wins",
  "cluster.enableOutpost": "later wins (`false` overrides `true`)",
  "cluster.id": "later non-empty wins",
  containerd: "per field",
  "containerd.config": "TOML deep merge: tables merge, later key wins, arrays replace",
  "containerd.baseRuntimeSpec": "JSON deep merge: objects merge, later leaf wins, arrays replace",
  instance: "per field",
  "instance.localStorage": "per field",
  "instance.localStorage.strategy": "later non-empty wins",
  "instance.localStorage.mountPath": "later non-empty wins",
  "instance.localStorage.disabledMounts": "later non-empty list replaces",
  "instance.environment": "per service, then per variable; later wins",
  "instance.network": "per field",
  "instance.network.nameservers": "later non-empty list replaces",
  "instance.network.domains": "later non-empty list replaces",
  kubelet: "per field",
  "kubelet.config": 'JSON deep merge: objects merge, later leaf wins (also `""`, `0`, `false`, `null`), arrays replace',
  "kubelet.flags": "appended in source order",
  "kubelet.maxPodsExpression": "later non-empty wins",
  featureGates: "per gate; later wins",
};

/** How each BerthConfig field merges (src/api/merge.ts mergeBerthSpecs). */
export const BERTH_MERGE: Readonly<Record<string, string>> = {
  run: "per field",
  "run.criReadyTimeoutMs": "later wins",
  "run.sandboxImageArchive": "later non-empty wins",
  "run.unitJobTimeoutMs": "later wins",
  tasks: "upsert by `name`: same name replaces in place, new names append",
  "tasks[].name": "—",
  "tasks[].pullImages": "—",
  "tasks[].script": "—",
  rebootAfterBootstrap: "later wins",
  agent: "per field",
  validation: "later wins",
};

/** Defaults of BerthConfig fields, from the constants the code itself uses. */
export function berthDefaults(): Record<string, string> {
  const out: Record<string, string> = {
    "run.criReadyTimeoutMs": String(RUN_DEFAULTS.criReadyTimeoutMs),
    "run.unitJobTimeoutMs": String(RUN_DEFAULTS.unitJobTimeoutMs),
    "run.sandboxImageArchive": "unset (pull)",
    tasks: "none",
    rebootAfterBootstrap: "`false`",
    validation: "`strict`",
  };
  for (const [k, v] of Object.entries(AGENT_DEFAULTS)) out[`agent.${k}`] = typeof v === "string" ? code(v) : String(v);
  return out;
}

function mergeRuleFor(table: Readonly<Record<string, string>>, p: string): string | undefined {
  if (table[p] !== undefined) return table[p];
  // Every agent setting is a scalar that a later document overrides.
  if (p.startsWith("agent.")) return "later wins";
  return undefined;
}

/** Schema fields that have no merge rule documented (the test wants none). */
export function undocumentedMergeRules(): string[] {
  const { node, berth } = loadSchemas();
  const missing: string[] = [];
  for (const r of fieldRows(specOf(node)))
    if (mergeRuleFor(NODECONFIG_MERGE, r.path) === undefined) missing.push(`NodeConfig spec.${r.path}`);
  for (const r of fieldRows(specOf(berth))) if (mergeRuleFor(BERTH_MERGE, r.path) === undefined) missing.push(`BerthConfig spec.${r.path}`);
  return missing;
}

function loadSchemas(): { node: Schema; berth: Schema } {
  const read = (name: string): Schema => JSON.parse(readFileSync(path.join(REPO, "data", "schema", name), "utf8")) as Schema;
  return { node: read("nodeconfig.schema.json"), berth: read("berthconfig.schema.json") };
}

function specOf(doc: Schema): Schema {
  const props = doc["properties"];
  if (!isObj(props) || !isObj(props["spec"])) throw new Error("schema has no properties.spec");
  return props["spec"];
}

export function schemaTable(spec: Schema, merge: Readonly<Record<string, string>>, defaults?: Record<string, string>): string {
  const head = defaults
    ? ["Field (`spec.`…)", "Type", "Default", "Merge", "Description"]
    : ["Field (`spec.`…)", "Type", "Merge", "Description"];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => " --- ").join("|")}|`];
  for (const r of fieldRows(spec)) {
    const depth = r.path.split(".").length - 1;
    // Indent nested fields with non-breaking spaces so the hierarchy reads in rendered Markdown.
    const name = `${"&nbsp;&nbsp;".repeat(depth)}${code(r.path)}`;
    const merged = mergeRuleFor(merge, r.path) ?? "?";
    const cols = defaults
      ? [name, cell(r.type), cell(defaults[r.path] ?? (r.type === "object" ? "" : "—")), cell(merged), cell(r.description)]
      : [name, cell(r.type), cell(merged), cell(r.description)];
    lines.push(`| ${cols.join(" | ")} |`);
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------- files table

/** The facts of `berth demo` (data/demo-instance.json), optionally changed. */
export function demoFactsSync(over: Partial<NodeFacts> = {}): NodeFacts {
  const raw = JSON.parse(readFileSync(path.join(REPO, "data", "demo-instance.json"), "utf8")) as unknown;
  const r = staticFacts(raw, "data/demo-instance.json");
  if (!r.ok) throw new Error(r.errors.map((e) => e.message).join("; "));
  return { ...r.value, ...over };
}

function configFrom(text: string, source: string): MergedConfig {
  const d = decodeDocuments(text, source);
  if (!d.ok) throw new Error(`${source}: ${d.errors.map((e) => e.message).join("; ")}`);
  return mergeConfigs(d.value);
}

export function exampleConfigText(): string {
  return readFileSync(path.join(REPO, "data", "example-nodeconfig.yaml"), "utf8");
}

/** Added to the example so that every optional file of the config phase is planned. */
export const EVERYTHING_ON = `---
apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  featureGates:
    FastImagePull: true
  instance:
    environment:
      kubelet:
        GODEBUG: http2client=0
    localStorage:
      strategy: RAID0
    network:
      nameservers: [10.0.0.2]
      domains: [example.internal]
---
apiVersion: berth.dev/v1alpha1
kind: BerthConfig
spec:
  rebootAfterBootstrap: true
  tasks:
    - name: warm-images
      pullImages: [public.ecr.aws/docker/library/busybox:1.36]
    - name: tune
      script: sysctl -w vm.max_map_count=262144
`;

/** Outposts local cluster: the kubeconfig becomes the bootstrap kubeconfig. */
export const OUTPOST = `---
apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  cluster:
    enableOutpost: true
    id: 0123abcd-0000-0000-0000-000000000000
`;

/** What the config phase looks up on an Outposts node (src/facts/dns.ts): the example's API server name, /etc/hosts. */
const OUTPOST_FACTS: NonNullable<NodeFacts["outpost"]> = {
  host: "example0123456789.gr7.us-west-2.eks.amazonaws.com",
  addresses: ["10.0.1.10", "10.0.2.10"],
  hostsFile: { text: "127.0.0.1 localhost\n", mode: 0o644 },
};

/** Two instance-store disks, for the everything-on plan's local storage. */
const DOC_DISKS = [1, 2].map((i) => ({ device: `/dev/nvme${i}n1`, link: `/dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_AWS${i}` }));

/** The plans the files table is generated from: the demo, everything on (FastImagePull needs 4 CPUs, RAID0 two disks), Outposts. */
export function docPlans(): { demo: Plan; everything: Plan; outpost: Plan } {
  const plan = (config: MergedConfig, facts: NodeFacts): Plan => {
    const p = buildPlan(config, facts);
    if (!p.ok) throw new Error(p.errors.map((e) => e.message).join("; "));
    return p.value;
  };
  const example = exampleConfigText();
  return {
    demo: plan(configFrom(example, "data/example-nodeconfig.yaml"), demoFactsSync()),
    everything: plan(configFrom(example + EVERYTHING_ON, "everything-on"), demoFactsSync({ cpus: 4, instanceStoreDisks: DOC_DISKS })),
    outpost: plan(configFrom(example + OUTPOST, "outpost"), demoFactsSync({ outpost: OUTPOST_FACTS })),
  };
}

export interface FileDoc {
  /** Matches the planned host paths this row stands for. */
  pattern: RegExp;
  /** The path as shown in the docs (`<name>` for variable parts). */
  display: string;
  /** When the config phase writes it (it removes nothing else, except `absent` below). */
  when: string;
  /** What reads it. */
  readBy: string;
}

/**
 * What each planned file is for. The test fails when a planned path matches
 * no row or a row matches no planned path, so the table follows the renderers.
 */
export const FILE_DOCS: readonly FileDoc[] = [
  {
    pattern: /^\/etc\/containerd\/base-runtime-spec\.json$/,
    display: "/etc/containerd/base-runtime-spec.json",
    when: "always",
    readBy: "containerd (`base_runtime_spec` in config.toml)",
  },
  {
    pattern: /^\/etc\/containerd\/config\.toml$/,
    display: "/etc/containerd/config.toml",
    when: "always (schema `version = 2` on containerd 1.x, `version = 3` on 2.x)",
    readBy: "containerd.service",
  },
  {
    pattern: /^\/etc\/soci-snapshotter-grpc\/config\.toml$/,
    display: "/etc/soci-snapshotter-grpc/config.toml",
    when: "`featureGates.FastImagePull: true` and the node has ≥ 4 CPUs and ≥ 7 GiB",
    readBy: "soci-snapshotter.service",
  },
  {
    pattern: /^\/etc\/systemd\/system\/containerd\.service\.d\/10-soci-snapshotter\.conf$/,
    display: "/etc/systemd/system/containerd.service.d/10-soci-snapshotter.conf",
    when: "as the SOCI config above",
    readBy: "systemd (containerd.service Requires/After soci-snapshotter.service)",
  },
  {
    pattern: /^\/etc\/eks\/image-credential-provider\/config\.json$/,
    display: "/etc/eks/image-credential-provider/config.json",
    when: "always",
    readBy: "kubelet (`--image-credential-provider-config`)",
  },
  {
    pattern: /^\/etc\/eks\/kubelet\/environment$/,
    display: "/etc/eks/kubelet/environment",
    when: "always",
    readBy: "kubelet.service (`EnvironmentFile=`, `$NODEADM_KUBELET_ARGS`)",
  },
  {
    pattern: /^\/etc\/kubernetes\/kubelet\/config\.json$/,
    display: "/etc/kubernetes/kubelet/config.json",
    when: "always",
    readBy: "kubelet (`--config`)",
  },
  {
    pattern: /^\/etc\/kubernetes\/kubelet\/config\.json\.d\/40-nodeadm\.conf$/,
    display: "/etc/kubernetes/kubelet/config.json.d/40-nodeadm.conf",
    when: "`kubelet.config` is non-empty and kubelet ≥ 1.29 (below 1.29 it is merged into config.json instead)",
    readBy: "kubelet (`--config-dir`)",
  },
  {
    pattern: /^\/etc\/kubernetes\/pki\/ca\.crt$/,
    display: "/etc/kubernetes/pki/ca.crt",
    when: "always (decoded `cluster.certificateAuthority`)",
    readBy: "kubelet (kubeconfig, `authentication.x509.clientCAFile`)",
  },
  {
    pattern: /^\/var\/lib\/kubelet\/kubeconfig$/,
    display: "/var/lib/kubelet/kubeconfig",
    when: "always, except Outposts",
    readBy: "kubelet (`--kubeconfig`)",
  },
  {
    pattern: /^\/var\/lib\/kubelet\/bootstrap-kubeconfig$/,
    display: "/var/lib/kubelet/bootstrap-kubeconfig",
    when: "`cluster.enableOutpost: true` (instead of kubeconfig)",
    readBy: "kubelet (`--bootstrap-kubeconfig`)",
  },
  {
    pattern: /^\/etc\/hosts$/,
    display: "/etc/hosts",
    when: "`cluster.enableOutpost: true`: the API server's addresses in a `# BEGIN berth: outpost api server` block; every other line kept",
    readBy: "the resolver (the API server's name while the Outpost is disconnected)",
  },
  {
    pattern: /^\/etc\/systemd\/system\.conf\.d\/environment\.conf$/,
    display: "/etc/systemd/system.conf.d/environment.conf",
    when: "`instance.environment.default` is non-empty; removed otherwise",
    readBy: "systemd manager (`DefaultEnvironment=`)",
  },
  {
    pattern: /^\/etc\/systemd\/system\/[^/]+\.service\.d\/environment\.conf$/,
    display: "/etc/systemd/system/<service>.service.d/environment.conf",
    when: "`instance.environment.<service>` is non-empty; kubelet's and containerd's are removed otherwise",
    readBy: "<service>.service (`Environment=`)",
  },
  {
    pattern: /^\/run\/systemd\/resolved\.conf\.d\/40-eks\.conf$/,
    display: "/run/systemd/resolved.conf.d/40-eks.conf",
    when: "`instance.network.nameservers` or `domains` is non-empty",
    readBy: "systemd-resolved",
  },
  {
    pattern: /^\/etc\/systemd\/system\/berth-config\.service$/,
    display: "/etc/systemd/system/berth-config.service",
    when: "always",
    readBy: "systemd: runs `berth init --skip run` at boot",
  },
  {
    pattern: /^\/etc\/systemd\/system\/berth-run\.service$/,
    display: "/etc/systemd/system/berth-run.service",
    when: "always",
    readBy: "systemd: runs `berth init --skip config` at boot",
  },
  {
    pattern: /^\/etc\/systemd\/system\/berth-agent\.service$/,
    display: "/etc/systemd/system/berth-agent.service",
    when: "always",
    readBy: "systemd: runs `berth agent`",
  },
  {
    pattern: /^\/etc\/systemd\/system\/berth\.target$/,
    display: "/etc/systemd/system/berth.target",
    when: "always",
    readBy: "systemd (wants berth-run, berth-agent, berth-reboot-once)",
  },
  {
    pattern: /^\/etc\/systemd\/system\/berth-tasks\.target$/,
    display: "/etc/systemd/system/berth-tasks.target",
    when: "always",
    readBy: "systemd (wants the task units)",
  },
  {
    pattern: /^\/etc\/systemd\/system\/berth-task-[^/]+\.service$/,
    display: "/etc/systemd/system/berth-task-<name>.service",
    when: "one per BerthConfig task",
    readBy: "systemd (oneshot, ordered after the previous task)",
  },
  {
    pattern: /^\/etc\/berth\/tasks\/[^/]+\.sh$/,
    display: "/etc/berth/tasks/<name>.sh",
    when: "one per `script` task",
    readBy: "berth-task-<name>.service",
  },
  {
    pattern: /^\/etc\/systemd\/system\/berth-reboot-once\.service$/,
    display: "/etc/systemd/system/berth-reboot-once.service",
    when: "`rebootAfterBootstrap: true`",
    readBy: "systemd (reboots once, marker /var/lib/berth/rebooted-once)",
  },
  {
    pattern: /^\/etc\/systemd\/system\/containerd\.service\.d\/10-berth\.conf$/,
    display: "/etc/systemd/system/containerd.service.d/10-berth.conf",
    when: "always",
    readBy: "containerd.service (`Restart=always`, runtime.slice)",
  },
  {
    pattern: /^\/etc\/systemd\/system\/kubelet\.service$/,
    display: "/etc/systemd/system/kubelet.service",
    when: "always",
    readBy: "systemd",
  },
  {
    pattern: /^\/etc\/systemd\/system\/multi-user\.target\.d\/10-berth\.conf$/,
    display: "/etc/systemd/system/multi-user.target.d/10-berth.conf",
    when: "always",
    readBy: "systemd (what starts at boot; no `systemctl enable`)",
  },
  {
    pattern: /^\/etc\/systemd\/system\/[^/]+\.mount$/,
    display: "/etc/systemd/system/<mount point, systemd-escaped>.mount",
    when: "`instance.localStorage.strategy` is set and the node has instance-store disks: `Mount`, one per disk at `<mountPath>/1`, `/2`, …; `RAID0`/`RAID10`, the array at `<mountPath>/0` and a bind mount for each state directory not in `disabledMounts`",
    readBy: "systemd (mounted before containerd and kubelet; the run phase's local-storage step formats and starts them)",
  },
  {
    pattern: /^\/etc\/systemd\/system\/multi-user\.target\.d\/20-berth-local-storage\.conf$/,
    display: "/etc/systemd/system/multi-user.target.d/20-berth-local-storage.conf",
    when: "with the mount units above",
    readBy: "systemd (wants every local-storage mount unit at boot)",
  },
  {
    pattern: /^\/etc\/systemd\/system\/runtime\.slice$/,
    display: "/etc/systemd/system/runtime.slice",
    when: "always",
    readBy: "systemd (slice of containerd and kubelet)",
  },
];

function modeString(mode: number): string {
  return `0${mode.toString(8).padStart(3, "0")}`;
}

/** Planned paths (of any doc plan) that no FILE_DOCS row describes, and rows that describe nothing. */
export function fileDocProblems(): { undocumented: string[]; unused: string[] } {
  const plans = docPlans();
  const all = [...plans.demo.files, ...plans.everything.files, ...plans.outpost.files].map((f) => f.path);
  const all2 = [...plans.demo.absent, ...plans.everything.absent, ...plans.outpost.absent];
  const undocumented = [...new Set([...all, ...all2])].filter((p) => !FILE_DOCS.some((d) => d.pattern.test(p))).sort();
  const unused = FILE_DOCS.filter((d) => !all.some((p) => d.pattern.test(p))).map((d) => d.display);
  return { undocumented, unused };
}

export function filesTable(): string {
  const plans = docPlans();
  const demoPaths = new Set(plans.demo.files.map((f) => f.path));
  const files = [...plans.everything.files, ...plans.outpost.files.filter((f) => !plans.everything.files.some((g) => g.path === f.path))];
  const lines = ["| Path | Mode | Renderer | In `berth demo` | Written when | Read by |", "| --- | --- | --- | --- | --- | --- |"];
  for (const d of FILE_DOCS) {
    const matched = files.filter((f) => d.pattern.test(f.path));
    if (matched.length === 0) continue;
    const modes = [...new Set(matched.map((f) => modeString(f.mode)))].join(", ");
    const comps = [...new Set(matched.map((f) => f.component))].join(", ");
    const inDemo = matched.some((f) => demoPaths.has(f.path)) ? "yes" : "no";
    lines.push(`| ${code(d.display)} | ${modes} | ${comps} | ${inDemo} | ${cell(d.when)} | ${cell(d.readBy)} |`);
  }
  return lines.join("\n");
}

/** The exact list `berth demo` writes (and removes if present), with modes. */
export function demoListing(): string {
  const { demo } = docPlans();
  const width = Math.max(...demo.files.map((f) => f.path.length));
  const rows = demo.files.map((f) => `${modeString(f.mode)}  ${f.path.padEnd(width)}  ${f.component}`);
  const gone = demo.absent.map((p) => `absent ${p}`);
  return ["```text", ...rows, ...gone, "```"].join("\n");
}

// ---------------------------------------------------------------- docs

export const DOC_FILES = ["docs/config.md", "docs/files.md"] as const;

/** Every generated block's body, by doc file and block name. */
export function generatedBlocks(): Record<(typeof DOC_FILES)[number], Record<string, string>> {
  const { node, berth } = loadSchemas();
  return {
    "docs/config.md": {
      "nodeconfig-spec": schemaTable(specOf(node), NODECONFIG_MERGE),
      "berthconfig-spec": schemaTable(specOf(berth), BERTH_MERGE, berthDefaults()),
    },
    "docs/files.md": {
      "files-table": filesTable(),
      "demo-listing": demoListing(),
    },
  };
}

/** The docs as they should be: each file's current text with its generated blocks refreshed. */
export function renderDocs(read: (rel: string) => string = (rel) => readFileSync(path.join(REPO, rel), "utf8")): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [file, blocks] of Object.entries(generatedBlocks())) {
    let text = read(file);
    const present = generatedBlockNames(text);
    for (const name of present) if (!(name in blocks)) throw new Error(`${file}: unknown generated block "${name}"`);
    for (const [name, body] of Object.entries(blocks)) text = replaceGenerated(text, name, body);
    out[file] = text;
  }
  return out;
}

function main(): void {
  const check = process.argv.includes("--check");
  let stale = 0;
  for (const [file, text] of Object.entries(renderDocs())) {
    const abs = path.join(REPO, file);
    const current = readFileSync(abs, "utf8");
    if (current === text) continue;
    if (check) {
      process.stderr.write(`${file} is out of date; run: node --import tsx scripts/gen-config-docs.ts\n`);
      stale++;
    } else {
      writeFileSync(abs, text);
      process.stdout.write(`wrote ${file}\n`);
    }
  }
  process.exitCode = stale ? 1 : 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
