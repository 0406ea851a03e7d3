/**
 * Outposts /etc/hosts (src/render/hosts.ts): berth's marked block is added,
 * replaced in place or removed; every other line stays byte for byte; the
 * same input gives the same bytes, and a second render changes nothing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { HOSTS_BLOCK_BEGIN as BEGIN, HOSTS_BLOCK_END as END, renderHostsBlock, renderOutpostHosts } from "../../src/render/hosts.ts";
import type { OutpostFacts } from "../../src/facts/dns.ts";
import type { NodeConfigSpec } from "../../src/api/types.ts";

const HOST = "abcd.gr7.us-west-2.eks.amazonaws.com";
const BASE = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n# a comment\n10.0.0.5 db.internal\n";

function text(r: ReturnType<typeof renderHostsBlock>): string {
  assert.ok(r.ok, JSON.stringify(r));
  return r.value;
}

test("the block is appended after every other line, one address per line", () => {
  const out = text(renderHostsBlock(BASE, HOST, ["10.0.1.10", "fd00::10"]));
  assert.equal(out, `${BASE}${BEGIN}\n10.0.1.10\t${HOST}\nfd00::10\t${HOST}\n${END}\n`);
  assert.equal(text(renderHostsBlock(out, HOST, ["10.0.1.10", "fd00::10"])), out, "idempotent");
});

test("a re-run replaces the block where it is and touches no other line", () => {
  const before = `${BASE}${BEGIN}\n10.0.1.10\t${HOST}\n${END}\n# added by someone after berth\n10.9.9.9 other\n`;
  const out = text(renderHostsBlock(before, HOST, ["10.0.2.20"]));
  assert.equal(out, `${BASE}${BEGIN}\n10.0.2.20\t${HOST}\n${END}\n# added by someone after berth\n10.9.9.9 other\n`);
});

test("no addresses: the block goes, the rest stays; an empty file stays empty", () => {
  assert.equal(text(renderHostsBlock(`${BASE}${BEGIN}\n10.0.1.10\t${HOST}\n${END}\n`, HOST, [])), BASE);
  assert.equal(text(renderHostsBlock(BASE, HOST, [])), BASE);
  assert.equal(text(renderHostsBlock("", HOST, [])), "");
  assert.equal(text(renderHostsBlock("", HOST, ["10.0.1.10"])), `${BEGIN}\n10.0.1.10\t${HOST}\n${END}\n`);
});

test("a file without a final newline gets one before the block; duplicated blocks collapse into the first", () => {
  assert.equal(
    text(renderHostsBlock("127.0.0.1 localhost", HOST, ["10.0.1.10"])),
    `127.0.0.1 localhost\n${BEGIN}\n10.0.1.10\t${HOST}\n${END}\n`,
  );
  const twice = `${BEGIN}\nold\n${END}\nkeep\n${BEGIN}\nold too\n${END}\n`;
  assert.equal(text(renderHostsBlock(twice, HOST, ["10.0.1.10"])), `${BEGIN}\n10.0.1.10\t${HOST}\n${END}\nkeep\n`);
});

test("a BEGIN line without its END line is an error naming the line, not a guess", () => {
  const r = renderHostsBlock(`127.0.0.1 localhost\n${BEGIN}\n10.0.1.10\t${HOST}\n`, HOST, ["10.0.1.10"]);
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.equal(r.errors[0]!.code, "render.hosts-block");
  assert.deepEqual(r.errors[0]!.where, { source: "/etc/hosts", line: 2, column: 1 });
  assert.match(r.errors[0]!.hint!, /delete that line/);
});

test("property: other lines are kept in order, the block holds exactly the addresses, and rendering twice changes nothing", () => {
  const line = fc.stringMatching(/^[ -~]{0,30}$/).filter((l) => !l.startsWith("# BEGIN berth") && !l.startsWith("# END berth"));
  const address = fc.oneof(fc.ipV4(), fc.ipV6());
  fc.assert(
    fc.property(
      fc.array(line, { maxLength: 12 }),
      fc.boolean(),
      fc.array(address, { maxLength: 4 }),
      fc.array(address, { maxLength: 4 }),
      (lines, nl, first, second) => {
        const input = lines.join("\n") + (nl && lines.length ? "\n" : "");
        const once = text(renderHostsBlock(input, HOST, first));
        assert.equal(text(renderHostsBlock(once, HOST, first)), once);
        const next = text(renderHostsBlock(once, HOST, second));
        const others = (t: string) => t.split("\n").filter((l) => l !== "" && !l.endsWith(`\t${HOST}`) && l !== BEGIN && l !== END);
        assert.deepEqual(others(next), others(input));
        assert.deepEqual(
          next.split("\n").filter((l) => l.endsWith(`\t${HOST}`)),
          second.map((a) => `${a}\t${HOST}`),
        );
        // Back to no addresses: the input again (up to its final newline, added when a block was appended).
        const gone = text(renderHostsBlock(next, HOST, []));
        assert.equal(gone.replace(/\n$/, ""), input.replace(/\n$/, ""));
      },
    ),
    { numRuns: 300 },
  );
});

const SPEC: NodeConfigSpec = { cluster: { enableOutpost: true, id: "x", apiServerEndpoint: `https://${HOST}` } };
const facts = (o: Partial<OutpostFacts>): { outpost: OutpostFacts } => ({ outpost: { host: HOST, addresses: ["10.0.1.10"], ...o } });

test("renderOutpostHosts: /etc/hosts with the block, keeping the file's mode; nothing without Outposts or without a lookup", () => {
  const r = renderOutpostHosts(SPEC, facts({ hostsFile: { text: BASE, mode: 0o640 } }));
  assert.ok(r.ok);
  assert.deepEqual(r.value, [
    { path: "/etc/hosts", content: `${BASE}${BEGIN}\n10.0.1.10\t${HOST}\n${END}\n`, mode: 0o640, component: "outpost-hosts" },
  ]);
  const created = renderOutpostHosts(SPEC, facts({}));
  assert.ok(created.ok && created.value[0]!.mode === 0o644);
  assert.deepEqual(renderOutpostHosts({ cluster: { ...SPEC.cluster, enableOutpost: false } }, facts({})), { ok: true, value: [] });
  assert.deepEqual(renderOutpostHosts(SPEC, {}), { ok: true, value: [] });
  // An IP address endpoint: nothing to write, and an old block goes.
  assert.deepEqual(renderOutpostHosts(SPEC, facts({ host: "10.0.1.10", addresses: [] })), { ok: true, value: [] });
  const old = renderOutpostHosts(
    SPEC,
    facts({ host: "10.0.1.10", addresses: [], hostsFile: { text: `${BASE}${BEGIN}\nx\n${END}\n`, mode: 0o644 } }),
  );
  assert.ok(old.ok && old.value[0]!.content === BASE);
});

test("renderOutpostHosts: a name that did not resolve is an error on apiServerEndpoint with the resolver's answer and what to do", () => {
  const r = renderOutpostHosts(
    SPEC,
    facts({ addresses: [], lookupError: "DNS A: ENOTFOUND, AAAA: ENOTFOUND; system resolver: ENOTFOUND" }),
  );
  assert.equal(r.ok, false);
  if (r.ok) return;
  const e = r.errors[0]!;
  assert.equal(e.code, "render.outpost-unresolved");
  assert.deepEqual(e.where, { path: "spec.cluster.apiServerEndpoint" });
  assert.match(
    e.message,
    new RegExp(`cannot resolve the API server name ${HOST.replace(/\./g, "\\.")} .*ENOTFOUND; system resolver: ENOTFOUND`),
  );
  assert.match(e.hint!, /resolv\.conf/);
  const unreadable = renderOutpostHosts(SPEC, facts({ hostsFileError: "cannot read /etc/hosts: EACCES" }));
  assert.ok(!unreadable.ok && unreadable.errors[0]!.code === "render.hosts-unreadable");
});
