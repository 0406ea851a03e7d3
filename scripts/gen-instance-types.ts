/**
 * Regenerates data/instance-types.json: instance type → [max ENIs on the
 * default network card, IPv4 addresses per ENI], the table berth's maxPods
 * default (ENIs × (IPs − 1) + 2) reads first.
 *
 * Sources (pick one):
 *   --jsonl FILE     nodeadm's data file, one `{"instanceType","defaultMaxENIs",
 *                    "ipv4AddressesPerInterface"}` object per line:
 *                    awslabs/amazon-eks-ami nodeadm/internal/kubelet/instance-info.jsonl
 *                    (e.g. `git -C <mirror> show HEAD:nodeadm/internal/kubelet/instance-info.jsonl > /tmp/ii.jsonl`).
 *                    `-` reads stdin.
 *   --pages FILE...  saved EC2 DescribeInstanceTypes pages as the AWS CLI prints
 *                    them (`aws ec2 describe-instance-types --region R --output json`,
 *                    one file per region); the default network card's
 *                    MaximumNetworkInterfaces is used, as nodeadm's generator does.
 *                    Later files override earlier ones.
 *   --source TEXT    provenance recorded in the file (default: the input paths).
 *   --out FILE       default data/instance-types.json
 *
 *   node --import tsx scripts/gen-instance-types.ts --jsonl /tmp/ii.jsonl --source "amazon-eks-ami@81fec2e8 nodeadm/internal/kubelet/instance-info.jsonl"
 *
 * Output is deterministic: keys sorted, one type per line (small diffs).
 */
import { readFileSync, writeFileSync } from "node:fs";

type Row = [number, number];

function fromJsonl(text: string): Map<string, Row> {
  const out = new Map<string, Row>();
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    const o = JSON.parse(line) as { instanceType?: unknown; defaultMaxENIs?: unknown; ipv4AddressesPerInterface?: unknown };
    if (typeof o.instanceType !== "string" || typeof o.defaultMaxENIs !== "number" || typeof o.ipv4AddressesPerInterface !== "number") {
      throw new Error(`line ${i + 1}: expected instanceType, defaultMaxENIs, ipv4AddressesPerInterface`);
    }
    out.set(o.instanceType, [o.defaultMaxENIs, o.ipv4AddressesPerInterface]);
  });
  return out;
}

interface CliInstanceType {
  InstanceType: string;
  NetworkInfo?: {
    DefaultNetworkCardIndex?: number;
    MaximumNetworkInterfaces?: number;
    Ipv4AddressesPerInterface?: number;
    NetworkCards?: { NetworkCardIndex?: number; MaximumNetworkInterfaces?: number }[];
  };
}

function fromPages(files: string[], into = new Map<string, Row>()): Map<string, Row> {
  for (const f of files) {
    const page = JSON.parse(readFileSync(f, "utf8")) as { InstanceTypes?: CliInstanceType[] };
    for (const t of page.InstanceTypes ?? []) {
      const ni = t.NetworkInfo;
      const card = ni?.NetworkCards?.find((c) => (c.NetworkCardIndex ?? 0) === (ni.DefaultNetworkCardIndex ?? 0));
      const enis = card?.MaximumNetworkInterfaces ?? ni?.MaximumNetworkInterfaces;
      const ips = ni?.Ipv4AddressesPerInterface;
      if (!enis || enis <= 0 || ips === undefined) throw new Error(`${f}: ${t.InstanceType} has no default-card ENI count or IPv4 count`);
      into.set(t.InstanceType, [enis, ips]);
    }
  }
  return into;
}

function main(argv: string[]): void {
  let jsonl: string | undefined;
  const pages: string[] = [];
  let source: string | undefined;
  let out = "data/instance-types.json";
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--jsonl") jsonl = argv[++i];
    else if (a === "--source") source = argv[++i];
    else if (a === "--out") out = argv[++i] ?? out;
    else if (a === "--pages") while (argv[i + 1] && !argv[i + 1]!.startsWith("--")) pages.push(argv[++i]!);
    else throw new Error(`unknown argument ${a}`);
  }
  if (!jsonl && pages.length === 0) throw new Error("give --jsonl FILE or --pages FILE...");
  let rows = new Map<string, Row>();
  if (jsonl) rows = fromJsonl(readFileSync(jsonl === "-" ? 0 : jsonl, "utf8"));
  if (pages.length) rows = fromPages(pages, rows);
  const keys = [...rows.keys()].sort();
  const body = keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(rows.get(k))}`).join(",\n");
  const header = `{"format":"instance type -> [max ENIs on the default network card, IPv4 addresses per ENI]",\n"source":${JSON.stringify(source ?? [jsonl, ...pages].filter(Boolean).join(" "))},\n"types":{\n`;
  writeFileSync(out, `${header}${body}\n}}\n`);
  process.stdout.write(`wrote ${keys.length} instance types to ${out}\n`);
}

main(process.argv.slice(2));
