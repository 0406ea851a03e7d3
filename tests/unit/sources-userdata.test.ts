import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { decodeUserData, maybeBase64, type SourceText } from "../../src/sources/userdata.ts";
import { readSources } from "../../src/sources/index.ts";
import { HostRoot } from "../../src/host/root.ts";
import { MemoryImds, fakeDecode, fakeMerge } from "../fakes/sources.ts";

const CASE = "/work/shared/conformance/nodeadm-e2e/cases/mime-userdata-merge/config.yaml";
const mimeText = readFileSync(CASE, "utf8");
const enc = (s: string) => new TextEncoder().encode(s);
const b64 = (b: Uint8Array | string) => enc(Buffer.from(typeof b === "string" ? enc(b) : b).toString("base64"));

async function texts(bytes: Uint8Array): Promise<SourceText[]> {
  const r = await decodeUserData(bytes);
  if (!r.ok) assert.fail(JSON.stringify(r.errors, null, 2));
  return r.value;
}

function assertCaseParts(parts: SourceText[]): void {
  assert.equal(parts.length, 2);
  assert.equal(parts[0]!.source, "imds://user-data (MIME part 1 of 3)");
  assert.equal(parts[1]!.source, "imds://user-data (MIME part 2 of 3)");
  assert.match(parts[0]!.text, /name: my-cluster/);
  assert.match(parts[1]!.text, /cpu: 150m/);
  assert.doesNotMatch(parts.map((p) => p.text).join(""), /hello/);
}

test("conformance MIME user data: 2 NodeConfig parts, shell part ignored", async () => {
  const parts = await texts(enc(mimeText));
  assertCaseParts(parts);
  assert.match(parts[0]!.lineNote ?? "", /line 7 of imds:\/\/user-data/);
});

test("base64, gzip, gzip+base64 and CRLF forms give the same parts", async () => {
  const raw = enc(mimeText);
  const plain = await texts(raw);
  for (const form of [b64(raw), new Uint8Array(gzipSync(raw)), b64(gzipSync(raw)), enc(mimeText.replace(/\n/g, "\r\n"))]) {
    const got = await texts(form);
    assertCaseParts(got);
    assert.deepEqual(
      got.map((p) => p.text.replace(/\r\n/g, "\n")),
      plain.map((p) => p.text),
    );
  }
  // base64 wrapped at 76 columns with a trailing newline, as `base64` prints it
  const wrapped =
    Buffer.from(gzipSync(raw))
      .toString("base64")
      .replace(/(.{76})/g, "$1\n") + "\n";
  assertCaseParts(await texts(enc(wrapped)));
});

test("per-part base64 (Content-Transfer-Encoding and raw) and gzip", async () => {
  const yamlA = "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: a\n";
  const yamlB = "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  kubelet:\n    flags: [--v=2]\n";
  const yamlC = "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    cidr: 10.0.0.0/16\n";
  const msg = [
    "MIME-Version: 1.0",
    'Content-Type: multipart/mixed; boundary="BOUNDARY"',
    "",
    "--BOUNDARY",
    "Content-Type: application/node.eks.aws",
    "Content-Transfer-Encoding: base64",
    "",
    Buffer.from(yamlA).toString("base64"),
    "--BOUNDARY",
    "Content-Type: application/node.eks.aws",
    "",
    Buffer.from(yamlB).toString("base64"),
    "--BOUNDARY",
    "Content-Type: application/node.eks.aws; charset=us-ascii",
    "Content-Transfer-Encoding: base64",
    "",
    Buffer.from(gzipSync(yamlC)).toString("base64"),
    "--BOUNDARY--",
    "",
  ].join("\r\n");
  const parts = await texts(enc(msg));
  assert.deepEqual(
    parts.map((p) => p.text),
    [yamlA, yamlB, yamlC],
  );
  assert.deepEqual(
    parts.map((p) => p.source),
    [1, 2, 3].map((i) => `imds://user-data (MIME part ${i} of 3)`),
  );
});

test("plain YAML user data is one text; shell scripts and cloud-config yield nothing", async () => {
  const y = "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec: {}\n";
  assert.deepEqual(await texts(enc(y)), [{ text: y, source: "imds://user-data" }]);
  assert.deepEqual(await texts(enc("#!/bin/bash\necho hi\n")), []);
  assert.deepEqual(await texts(enc("#cloud-config\npackages: [jq]\n")), []);
  assert.deepEqual(await texts(new Uint8Array()), []);
  assert.equal((await texts(b64(y)))[0]!.text, y);
});

test("MIME part headers not followed by a blank line: specific error with line", async () => {
  const bad = mimeText.replace(
    "Content-Type: application/node.eks.aws\n\n---\napiVersion",
    "Content-Type: application/node.eks.aws\n---\napiVersion",
  );
  const r = await decodeUserData(enc(bad));
  assert.ok(!r.ok);
  assert.equal(r.errors[0]!.code, "source.mime-part-headers");
  assert.equal(r.errors[0]!.where?.line, 6);
  assert.match(r.errors[0]!.message, /MIME part 1 of 3.*blank line/);
  assert.match(r.errors[0]!.hint ?? "", /empty line after/);

  const bad2 = mimeText.replace(
    "Content-Type: application/node.eks.aws\n\n---\napiVersion",
    "Content-Type: application/node.eks.aws\napiVersion",
  );
  const r2 = await decodeUserData(enc(bad2));
  assert.ok(!r2.ok);
  assert.match(r2.errors[0]!.message, /"apiVersion: node.eks.aws\/v1alpha1" is read as a MIME header/);
  assert.equal(r2.errors[0]!.where?.line, 6);
});

test("missing closing boundary, missing boundary param, boundary never used", async () => {
  const r1 = await decodeUserData(enc(mimeText.replace("--//--\n", "")));
  assert.ok(!r1.ok);
  assert.equal(r1.errors[0]!.code, "source.mime-unterminated");
  assert.equal(r1.errors[0]!.where?.line, 34);
  assert.match(r1.errors[0]!.hint ?? "", /--\/\/--/);

  const r2 = await decodeUserData(enc(mimeText.replace('; boundary="//"', "")));
  assert.ok(!r2.ok);
  assert.match(r2.errors[0]!.message, /no boundary parameter/);
  assert.equal(r2.errors[0]!.where?.line, 2);

  const r3 = await decodeUserData(enc(mimeText.replace('boundary="//"', 'boundary="=="')));
  assert.ok(!r3.ok);
  assert.match(r3.errors[0]!.message, /never appears/);

  const r4 = await decodeUserData(enc(mimeText.replace('boundary="//"\n\n', 'boundary="//"\n')));
  assert.ok(!r4.ok);
  assert.match(r4.errors[0]!.message, /top are not followed by a blank line/);
});

test("decode errors in a part point at the part and say where line numbers count from", async () => {
  const bad = mimeText.replace("cpu: 150m", "cpu: [150m");
  const r = await readSources(["imds://user-data"], {
    root: new HostRoot("/"),
    imds: MemoryImds.withUserData(bad),
    decode: fakeDecode,
    merge: fakeMerge,
  });
  assert.ok(!r.ok);
  assert.equal(r.errors[0]!.where?.source, "imds://user-data (MIME part 2 of 3)");
  assert.match(r.errors[0]!.hint ?? "", /line numbers count from the first line of the part body, which is line 25/);
});

test("base64 detection is nodeadm's: only whole valid padded base64", () => {
  const y = enc("kind: NodeConfig\n");
  assert.equal(maybeBase64(y), y);
  const odd = enc("abc");
  assert.equal(maybeBase64(odd), odd); // not a multiple of 4: unchanged
  const unpadded = enc("aGk");
  assert.equal(maybeBase64(unpadded), unpadded); // Go's StdEncoding needs padding
  assert.deepEqual(maybeBase64(b64("hello")), enc("hello"));
});

// ---------------------------------------------------------------- properties

const yamlDoc = fc
  .record({ name: fc.stringMatching(/^[a-z][a-z0-9-]{0,12}$/), n: fc.nat(1000) })
  .map(({ name, n }) => `apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: ${name}-${n}\n`);
const otherPart = fc.constantFrom("#!/bin/bash\necho hi\n", "#cloud-config\nruncmd: [ls]\n");
const part = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({ node: fc.constant(true), body: yamlDoc, cte: fc.boolean(), rawB64: fc.boolean(), gz: fc.boolean() }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      node: fc.constant(false),
      body: otherPart,
      cte: fc.constant(false),
      rawB64: fc.constant(false),
      gz: fc.constant(false),
    }),
  },
);

function buildMime(parts: { node: boolean; body: string; cte: boolean; rawB64: boolean; gz: boolean }[], crlf: boolean): string {
  const lines = ["MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="==BOUND=="', ""];
  for (const p of parts) {
    lines.push("--==BOUND==", `Content-Type: ${p.node ? "application/node.eks.aws" : "text/x-shellscript"}`);
    let body: Uint8Array = enc(p.body);
    if (p.gz) body = new Uint8Array(gzipSync(body));
    if (p.cte || p.gz || p.rawB64) {
      if (p.cte) lines.push("Content-Transfer-Encoding: base64");
      lines.push("", Buffer.from(body).toString("base64"));
    } else lines.push("", p.body);
  }
  lines.push("--==BOUND==--", "");
  return lines.join(crlf ? "\r\n" : "\n");
}

test("property: MIME/base64/gzip round trips never lose or reorder NodeConfig parts", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(part, { minLength: 1, maxLength: 5 }),
      fc.boolean(),
      fc.constantFrom("none", "b64", "gz", "gzb64"),
      async (parts, crlf, outer) => {
        let bytes: Uint8Array = enc(buildMime(parts, crlf));
        if (outer === "gz" || outer === "gzb64") bytes = new Uint8Array(gzipSync(bytes));
        if (outer === "b64" || outer === "gzb64") bytes = b64(bytes);
        const got = await texts(bytes);
        const want = parts.flatMap((p, i) => (p.node ? [{ i: i + 1, body: p.body }] : []));
        assert.deepEqual(
          got.map((g) => g.text.replace(/\r\n/g, "\n").replace(/\n+$/, "\n")),
          want.map((w) => w.body),
        );
        assert.deepEqual(
          got.map((g) => g.source),
          want.map((w) => `imds://user-data (MIME part ${w.i} of ${parts.length})`),
        );
      },
    ),
    { numRuns: 60 },
  );
});

test("property: arbitrary bytes never throw", async () => {
  const mimeish = fc
    .array(
      fc.constantFrom(
        "MIME-Version: 1.0\n",
        'Content-Type: multipart/mixed; boundary="x"\n',
        "\n",
        "--x\n",
        "--x--\n",
        "Content-Type: application/node.eks.aws\n",
        "Content-Transfer-Encoding: base64\n",
        "apiVersion: node.eks.aws/v1alpha1\n",
        "H4sI\n",
        "\u0000\u00ff",
      ),
      { maxLength: 12 },
    )
    .map((a) => enc(a.join("")));
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.uint8Array({ maxLength: 256 }),
        mimeish,
        fc.uint8Array({ maxLength: 64 }).map((b) => new Uint8Array([0x1f, 0x8b, ...b])),
      ),
      async (bytes) => {
        const r = await decodeUserData(bytes);
        assert.equal(typeof r.ok, "boolean");
        if (!r.ok) for (const e of r.errors) assert.ok(e.message.length > 0 && e.where?.source?.startsWith("imds://user-data"));
      },
    ),
    { numRuns: 200 },
  );
});
