/**
 * Outposts (`cluster.enableOutpost`): the facts behind the API server's
 * /etc/hosts entries (src/render/hosts.ts) — the endpoint's addresses,
 * looked up at config time, and /etc/hosts as it is now.
 *
 * nodeadm resolves the name with Go's resolver, which reads /etc/hosts
 * first, so after the first boot it only finds the lines it appended itself.
 * berth asks DNS first (A and AAAA, with a deadline), and only when DNS gives
 * no address the system resolver (getaddrinfo: /etc/hosts, then DNS), so a
 * re-run picks up changed addresses while a disconnected Outpost keeps the
 * ones it has. The lookup uses this machine's resolver, also under --root.
 *
 * Never throws: a failed lookup is a fact (the renderer turns it into an
 * error that points at the endpoint's source line).
 */
import { lookup as systemLookup, promises as dnsPromises } from "node:dns";
import { readFile, stat } from "node:fs/promises";
import { isIP } from "node:net";
import type { NodeConfigSpec } from "../api/types.ts";
import type { HostRoot } from "../host/root.ts";
import { errorMessage } from "../util/errors.ts";
import { sleep } from "../util/retry.ts";
import { HOSTS_FILE_PATH } from "../util/node-layout.ts";

export interface OutpostFacts {
  /** The host name of `cluster.apiServerEndpoint`. */
  host: string;
  /** Its addresses, IPv4 then IPv6, sorted, without duplicates; empty when the endpoint is an IP address (nothing to resolve). */
  addresses: string[];
  /** Why no address was found (each resolver's error), when none was. */
  lookupError?: string;
  /** /etc/hosts under the root now; absent when there is none. */
  hostsFile?: { text: string; mode: number };
  /** Why /etc/hosts could not be read, when it exists but cannot be. */
  hostsFileError?: string;
}

/** The resolvers the lookup uses; tests inject their own. */
export interface Resolvers {
  /** DNS A / AAAA records. */
  dns4(host: string): Promise<string[]>;
  dns6(host: string): Promise<string[]>;
  /** The system resolver (getaddrinfo: /etc/hosts, then DNS), both families. */
  system(host: string): Promise<string[]>;
}

/** DNS: 2 s per try, 2 tries per family, both families at once. */
const DNS_TIMEOUT_MS = 2000;
const DNS_TRIES = 2;
/** getaddrinfo has no deadline of its own. */
const SYSTEM_DEADLINE_MS = 5000;

async function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  const ac = new AbortController();
  const late = sleep(ms, ac.signal).then(() => Promise.reject(new Error(`no answer within ${ms} ms`)));
  try {
    return await Promise.race([p, late]);
  } finally {
    ac.abort();
  }
}

export function systemResolvers(): Resolvers {
  const dns = new dnsPromises.Resolver({ timeout: DNS_TIMEOUT_MS, tries: DNS_TRIES });
  return {
    dns4: (host) => dns.resolve4(host),
    dns6: (host) => dns.resolve6(host),
    system: (host) =>
      withDeadline(
        new Promise<string[]>((resolve, reject) =>
          systemLookup(host, { all: true }, (e, addrs) => (e ? reject(e) : resolve(addrs.map((a) => a.address)))),
        ),
        SYSTEM_DEADLINE_MS,
      ),
  };
}

const codeOf = (e: unknown): string => {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : errorMessage(e);
};

/** IPv4 (numerically) then IPv6 (as text), each once; anything that is not an IP address is left out. */
export function orderAddresses(list: readonly string[]): string[] {
  const v4 = [...new Set(list.filter((a) => isIP(a) === 4))];
  const v6 = [...new Set(list.filter((a) => isIP(a) === 6))];
  const num = (a: string): number => a.split(".").reduce((n, o) => n * 256 + Number(o), 0);
  return [...v4.sort((a, b) => num(a) - num(b)), ...v6.sort()];
}

/** DNS first, then the system resolver; the addresses, or why there are none. */
export async function lookupApiServer(host: string, r: Resolvers): Promise<{ addresses: string[]; lookupError?: string }> {
  if (isIP(host) !== 0) return { addresses: [] };
  const [a, aaaa] = await Promise.allSettled([r.dns4(host), r.dns6(host)]);
  const fromDns = orderAddresses([...(a.status === "fulfilled" ? a.value : []), ...(aaaa.status === "fulfilled" ? aaaa.value : [])]);
  if (fromDns.length > 0) return { addresses: fromDns };
  const why = (s: PromiseSettledResult<string[]>): string => (s.status === "rejected" ? codeOf(s.reason) : "no address");
  let system: string;
  try {
    const addresses = orderAddresses(await r.system(host));
    if (addresses.length > 0) return { addresses };
    system = "no address";
  } catch (e) {
    system = codeOf(e);
  }
  return { addresses: [], lookupError: `DNS A: ${why(a)}, AAAA: ${why(aaaa)}; system resolver: ${system}` };
}

async function readHostsFile(root: HostRoot): Promise<Pick<OutpostFacts, "hostsFile" | "hostsFileError">> {
  let real = HOSTS_FILE_PATH;
  try {
    real = root.path(HOSTS_FILE_PATH);
    const [text, st] = await Promise.all([readFile(real, "utf8"), stat(real)]);
    return { hostsFile: { text, mode: st.mode & 0o7777 } };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return {};
    return { hostsFileError: `cannot read ${root.describe(HOSTS_FILE_PATH, real)}: ${errorMessage(e)}` };
  }
}

/**
 * The Outposts facts when `cluster.enableOutpost` is true (undefined
 * otherwise, or when the endpoint is not a URL, which validation reports).
 */
export async function outpostFacts(spec: NodeConfigSpec, root: HostRoot, resolvers?: Resolvers): Promise<OutpostFacts | undefined> {
  const cluster = spec.cluster;
  if (cluster?.enableOutpost !== true || !cluster.apiServerEndpoint) return undefined;
  let host: string;
  try {
    host = new URL(cluster.apiServerEndpoint).hostname.replace(/^\[(.*)\]$/, "$1");
  } catch {
    return undefined;
  }
  if (host === "") return undefined;
  try {
    const [found, hosts] = await Promise.all([lookupApiServer(host, resolvers ?? systemResolvers()), readHostsFile(root)]);
    return { host, ...found, ...hosts };
  } catch (e) {
    return { host, addresses: [], lookupError: errorMessage(e) };
  }
}
