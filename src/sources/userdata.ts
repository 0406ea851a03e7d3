/**
 * User data and MIME multipart handling (pure apart from zlib/postal-mime).
 *
 * Facts taken from nodeadm's configprovider: the whole user data blob may be
 * base64 (standard alphabet, padded; CR/LF ignored) and is then possibly
 * gzip (magic 1f 8b), in that order; the result is either a MIME multipart
 * message whose top-level parts of media type `application/node.eks.aws`
 * each hold a NodeConfig stream (each part again possibly base64 then gzip),
 * or a plain NodeConfig YAML/JSON stream. Nested multiparts are not
 * descended into (nodeadm only reads the top level).
 */
// node:zlib and postal-mime are imported where gzip or MIME multipart is
// actually met: the common config (a plain YAML file) needs neither, and
// startup time is a requirement (bench/config-phase.ts).
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import { errorMessage } from "../util/errors.ts";
import { scanMultipart } from "./mime.ts";

export const USERDATA_SOURCE = "imds://user-data";

/** One text to hand to the document decoder. */
export interface SourceText {
  text: string;
  /** Source name for errors, e.g. `imds://user-data (MIME part 2 of 3)`. */
  source: string;
  /** Added to the hint of decode errors that point into this text (e.g. where a MIME part body starts). */
  lineNote?: string;
}

/** Decompressed size limit; IMDS user data is at most 16 KiB, so this only stops gzip bombs. */
const MAX_GUNZIP_BYTES = 64 * 1024 * 1024;

// ---------------------------------------------------------------- encodings

const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Like nodeadm: the data counts as base64 only if all of it (CR/LF aside)
 * is valid padded standard base64. Surrounding whitespace is also tolerated,
 * because editors and `base64` append a newline.
 * Hand-written because Buffer.from(…, "base64") silently skips junk and
 * would "decode" YAML.
 */
export function maybeBase64(bytes: Uint8Array): Uint8Array {
  if (bytes.length === 0 || bytes.length > 64 * 1024 * 1024) return bytes;
  // Cheap reject before building a string: YAML/MIME always has ':' or ' ' inside.
  for (const b of bytes) {
    const isB64 =
      (b >= 0x41 && b <= 0x5a) ||
      (b >= 0x61 && b <= 0x7a) ||
      (b >= 0x30 && b <= 0x39) ||
      b === 0x2b ||
      b === 0x2f ||
      b === 0x3d ||
      b === 0x0d ||
      b === 0x0a ||
      b === 0x20 ||
      b === 0x09;
    if (!isB64) return bytes;
  }
  const s = Buffer.from(bytes)
    .toString("latin1")
    .trim()
    .replace(/[\r\n]/g, "");
  if (s.length === 0 || !B64_RE.test(s)) return bytes;
  return new Uint8Array(Buffer.from(s, "base64"));
}

function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

async function maybeGunzip(bytes: Uint8Array, source: string): Promise<Result<Uint8Array>> {
  if (!isGzip(bytes)) return ok(bytes);
  try {
    // Loaded on first use: most user data is not gzip'd. getBuiltinModule, not import(): no module loader involved.
    const { gunzipSync } = process.getBuiltinModule("node:zlib");
    return ok(new Uint8Array(gunzipSync(bytes, { maxOutputLength: MAX_GUNZIP_BYTES })));
  } catch (e) {
    return fail({
      code: "source.gzip",
      message: `data starts with the gzip magic bytes but does not decompress (${errorMessage(e)})`,
      where: { source },
      hint: "re-create it with `gzip -c config.yaml` (and `| base64 -w0` when it must be text); do not truncate it",
      cause: e,
    });
  }
}

function utf8(bytes: Uint8Array, source: string): Result<string> {
  try {
    let text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    return ok(text);
  } catch (e) {
    return fail({
      code: "source.not-utf8",
      message: "data is not valid UTF-8 text (nor base64 or gzip that decodes to it)",
      where: { source },
      hint: "write the NodeConfig as UTF-8 YAML or JSON; binary data must be gzip, optionally base64-encoded",
      cause: e,
    });
  }
}

/**
 * Splits MIME multipart text into the NodeConfig texts of its
 * `application/node.eks.aws` parts (each base64/gzip-decoded as needed).
 * Resolves `ok(undefined)` when the text is not multipart MIME.
 */
async function splitMultipart(text: string, source: string): Promise<Result<SourceText[] | undefined>> {
  const scanned = scanMultipart(text, source);
  if (!scanned.ok) return scanned;
  if (scanned.value === undefined) return ok(undefined);
  const out: SourceText[] = [];
  const errors: BerthError[] = [];
  const PostalMime = (await import("postal-mime")).default;
  for (const part of scanned.value.parts) {
    const partSource = `${source} (MIME part ${part.index} of ${part.total})`;
    let content: Uint8Array;
    try {
      // postal-mime undoes Content-Transfer-Encoding (base64, quoted-printable) for us.
      const parsed = await PostalMime.parse(part.raw + "\r\n", { attachmentEncoding: "arraybuffer" });
      const att = parsed.attachments[0];
      if (att !== undefined && typeof att.content !== "string") {
        content = new Uint8Array(
          att.content instanceof ArrayBuffer
            ? att.content
            : att.content.buffer.slice(att.content.byteOffset, att.content.byteOffset + att.content.byteLength),
        );
      } else {
        content = new TextEncoder().encode(parsed.text ?? "");
      }
    } catch (e) {
      errors.push({
        code: "source.mime-part",
        message: `could not read the MIME part: ${errorMessage(e)}`,
        where: { source: partSource },
        hint: "check the part's headers and Content-Transfer-Encoding",
        cause: e,
      });
      continue;
    }
    const decoded = await decodeLayers(content, partSource);
    if (!decoded.ok) {
      errors.push(...decoded.errors);
      continue;
    }
    const plain = decoded.value.encoded === false;
    out.push({
      text: decoded.value.text,
      source: partSource,
      lineNote: plain
        ? `line numbers count from the first line of the part body, which is line ${part.bodyLine} of ${source}`
        : "line numbers count from the first line of the part body after base64/gzip decoding",
    });
  }
  if (errors.length) return { ok: false, errors };
  return ok(out);
}

async function decodeLayers(bytes: Uint8Array, source: string): Promise<Result<{ text: string; encoded: boolean }>> {
  const b64 = maybeBase64(bytes);
  const gz = await maybeGunzip(b64, source);
  if (!gz.ok) return gz;
  const text = utf8(gz.value, source);
  if (!text.ok) return text;
  return ok({ text: text.value, encoded: b64 !== bytes || gz.value !== b64 });
}

/**
 * Plain (non-MIME) user data that does not mention a config API group is not
 * meant for us (a shell script, cloud-config): nodeadm tolerates it in user
 * data, so berth yields no documents rather than a YAML error.
 */
function mentionsConfig(text: string): boolean {
  return /node\.eks\.aws|berth\.dev/.test(text);
}

/**
 * Decodes raw IMDS user data into the NodeConfig texts it carries, in order.
 * Never throws; arbitrary bytes give a Result.
 */
export async function decodeUserData(bytes: Uint8Array, source: string = USERDATA_SOURCE): Promise<Result<SourceText[]>> {
  try {
    if (bytes.length === 0) return ok([]);
    const b64 = maybeBase64(bytes);
    const gz = await maybeGunzip(b64, source);
    if (!gz.ok) return gz;
    const encoded = b64 !== bytes || gz.value !== b64;
    const loose = new TextDecoder("utf-8").decode(gz.value);
    const mime = await splitMultipart(loose, source);
    if (!mime.ok) return mime;
    if (mime.value !== undefined) {
      if (!encoded) return mime as Result<SourceText[]>;
      return ok(
        mime.value.map((p) => ({ ...p, lineNote: `${p.lineNote ?? ""}${p.lineNote ? "; " : ""}${source} was base64/gzip-decoded first` })),
      );
    }
    if (!mentionsConfig(loose)) return ok([]);
    const text = utf8(gz.value, source);
    if (!text.ok) return text;
    return ok([
      { text: text.value, source, ...(encoded ? { lineNote: `line numbers count in ${source} after base64/gzip decoding` } : {}) },
    ]);
  } catch (e) {
    return fail({
      code: "source.user-data",
      message: `could not decode the user data: ${errorMessage(e)}`,
      where: { source },
      hint: "user data must be a NodeConfig YAML stream or a MIME multipart message, optionally gzip and/or base64 encoded",
      cause: e,
    });
  }
}

/** Reads a file's bytes as a config text: MIME multipart is split, anything else is one text. */
export async function decodeConfigFile(bytes: Uint8Array, source: string): Promise<Result<SourceText[]>> {
  try {
    const text = utf8(bytes, source);
    if (!text.ok) return text;
    const mime = await splitMultipart(text.value, source);
    if (!mime.ok) return mime;
    return ok(mime.value ?? [{ text: text.value, source }]);
  } catch (e) {
    return fail({ code: "source.file", message: `could not read config: ${errorMessage(e)}`, where: { source }, cause: e });
  }
}
