/**
 * Outposts: the API server's addresses in /etc/hosts, so a node of a local
 * cluster still finds its control plane while the Outpost is disconnected
 * from its Region (nodeadm appends `<address>\t<name>` lines at every run).
 *
 * berth keeps its lines in one marked block that a re-run replaces in place;
 * every other line of /etc/hosts stays as it is. The same facts give the same
 * bytes (addresses sorted), so an unchanged block is an unchanged file.
 * Pure: the current /etc/hosts and the addresses come from src/facts/dns.ts.
 */
import { isIP } from "node:net";
import type { NodeConfigSpec } from "../api/types.ts";
import type { OutpostFacts } from "../facts/dns.ts";
import type { NodeFacts } from "../facts/types.ts";
import type { PlannedFile } from "../plan/types.ts";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import { HOSTS_FILE_PATH } from "../util/node-layout.ts";

export const HOSTS_BLOCK_BEGIN = "# BEGIN berth: outpost api server";
export const HOSTS_BLOCK_END = "# END berth: outpost api server";

const ENDPOINT_PATH = "spec.cluster.apiServerEndpoint";

/** Where berth's block is: the first BEGIN line and its END line (0-based, inclusive), and any further complete blocks. */
function findBlocks(lines: readonly string[]): Result<Array<[number, number]>> {
  const blocks: Array<[number, number]> = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trimEnd() !== HOSTS_BLOCK_BEGIN) continue;
    let j = i + 1;
    while (j < lines.length && lines[j]!.trimEnd() !== HOSTS_BLOCK_END) j++;
    if (j === lines.length)
      return fail({
        code: "render.hosts-block",
        message: `/etc/hosts has "${HOSTS_BLOCK_BEGIN}" on line ${i + 1} but no "${HOSTS_BLOCK_END}" line after it`,
        where: { source: HOSTS_FILE_PATH, line: i + 1, column: 1 },
        hint: "berth will not guess where its block ends: delete that line and the API server lines under it, then run berth again",
      });
    blocks.push([i, j]);
    i = j;
  }
  return ok(blocks);
}

/**
 * /etc/hosts with berth's block holding `host`'s `addresses` (one
 * `<address>\t<host>` line each): the block replaced where it is, or
 * appended; with no addresses, the block removed. Other lines are kept
 * byte for byte (a missing final newline is added before an appended block).
 */
export function renderHostsBlock(current: string, host: string, addresses: readonly string[]): Result<string> {
  const lines = current.split("\n");
  // A final newline leaves an empty last element: not a line of its own.
  const endsWithNewline = current.endsWith("\n");
  if (endsWithNewline || current === "") lines.pop();
  const found = findBlocks(lines);
  if (!found.ok) return found;
  const block = addresses.length ? [HOSTS_BLOCK_BEGIN, ...addresses.map((a) => `${a}\t${host}`), HOSTS_BLOCK_END] : [];
  const blocks = found.value;
  // concat, not push(...): an /etc/hosts can be a blocklist of 100,000s of lines, too many for call arguments.
  let out: string[];
  if (blocks.length === 0) out = lines.concat(block);
  else {
    // The first block is replaced where it is; any later copy of it goes.
    out = [];
    let from = 0;
    blocks.forEach(([b, e], n) => {
      out = out.concat(lines.slice(from, b), n === 0 ? block : []);
      from = e + 1;
    });
    out = out.concat(lines.slice(from));
  }
  if (out.length === 0) return ok("");
  // Keep a file that ended without a newline that way unless berth's block is now last.
  const last = blocks.length === 0 && block.length > 0 ? true : endsWithNewline || current === "";
  return ok(out.join("\n") + (last ? "\n" : ""));
}

function unresolved(o: OutpostFacts): BerthError {
  return {
    code: "render.outpost-unresolved",
    message: `cannot resolve the API server name ${o.host} for /etc/hosts (cluster.enableOutpost): ${o.lookupError ?? "no address"}`,
    where: { path: ENDPOINT_PATH },
    hint:
      "check that the name in apiServerEndpoint is right and that this machine's DNS (/etc/resolv.conf) answers for it: " +
      "an Outposts node resolves it at config time, so the Outpost must reach its Region then; " +
      `or add "<address> ${o.host}" lines to /etc/hosts yourself, which the lookup then finds`,
  };
}

/**
 * The /etc/hosts of an Outposts node. Nothing when the cluster is not on
 * Outposts or the facts hold no lookup (a static facts profile: `berth demo`).
 */
export function renderOutpostHosts(spec: NodeConfigSpec, facts: Pick<NodeFacts, "outpost">): Result<PlannedFile[]> {
  const o = facts.outpost;
  if (spec.cluster?.enableOutpost !== true || o === undefined) return ok([]);
  if (o.hostsFileError !== undefined)
    return fail({
      code: "render.hosts-unreadable",
      message: o.hostsFileError,
      where: { source: HOSTS_FILE_PATH },
      hint: "berth adds the Outposts API server lines to /etc/hosts and keeps the rest: make it a readable regular file",
    });
  if (o.lookupError !== undefined) return fail(unresolved(o));
  // A URL's host name is letters, digits, '-' and '.' (IDNs as punycode), or an IP address: one hosts-file field.
  if (!/^[A-Za-z0-9.-]+$/.test(o.host) && isIP(o.host) === 0)
    return fail({
      code: "render.outpost-host",
      message: `the API server host ${JSON.stringify(o.host)} cannot be written to /etc/hosts`,
      where: { path: ENDPOINT_PATH },
      hint: "use a DNS name (letters, digits, '-' and '.') in apiServerEndpoint",
    });
  const addresses = o.addresses.filter((a) => isIP(a) !== 0);
  // An IP address endpoint needs no entry; a block from an earlier endpoint then goes.
  if (addresses.length === 0 && o.hostsFile === undefined) return ok([]);
  const text = renderHostsBlock(o.hostsFile?.text ?? "", o.host, addresses);
  if (!text.ok) return text;
  return ok([{ path: HOSTS_FILE_PATH, content: text.value, mode: o.hostsFile?.mode ?? 0o644, component: "outpost-hosts" }]);
}
