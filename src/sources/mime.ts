/**
 * The structure of a MIME multipart user data message, checked line by line
 * with the line numbers a user can act on (postal-mime, which decodes the
 * parts, accepts broken messages silently): boundaries, header blocks, the
 * blank lines that end them. Pure; never decodes a part's body.
 */
import type { BerthError, Result } from "../util/result.ts";
import { fail, ok } from "../util/result.ts";

/** The media type of a part that holds a NodeConfig stream (nodeadm's). */
const NODECONFIG_MEDIA_TYPE = "application/node.eks.aws";

interface Line {
  text: string;
  /** Offset of the first character of the line in the text. */
  start: number;
  /** Offset just past the line terminator. */
  next: number;
}

function splitLines(text: string): Line[] {
  const lines: Line[] = [];
  let i = 0;
  while (i < text.length) {
    const nl = text.indexOf("\n", i);
    const end = nl === -1 ? text.length : nl;
    const body = end > i && text[end - 1] === "\r" ? text.slice(i, end - 1) : text.slice(i, end);
    lines.push({ text: body, start: i, next: nl === -1 ? text.length : nl + 1 });
    i = nl === -1 ? text.length : nl + 1;
  }
  return lines;
}

const HEADER_RE = /^([!-9;-~]+):(.*)$/;

interface HeaderBlock {
  headers: Map<string, { value: string; line: number }>;
  names: { name: string; line: number }[];
  /** Index of the blank line that ends the block, or -1. */
  blank: number;
  /** Index of the first line that is neither a header nor blank (the block is broken there), or -1. */
  bad: number;
}

function readHeaders(lines: Line[], from: number, to: number): HeaderBlock {
  const headers = new Map<string, { value: string; line: number }>();
  const names: { name: string; line: number }[] = [];
  let last: string | undefined;
  for (let i = from; i < to; i++) {
    const t = lines[i]!.text;
    if (t.trim() === "") return { headers, names, blank: i, bad: -1 };
    if ((t.startsWith(" ") || t.startsWith("\t")) && last !== undefined) {
      const h = headers.get(last)!;
      h.value += " " + t.trim();
      continue;
    }
    const m = HEADER_RE.exec(t);
    if (!m) return { headers, names, blank: -1, bad: i };
    last = m[1]!.toLowerCase();
    names.push({ name: m[1]!, line: i + 1 });
    if (!headers.has(last)) headers.set(last, { value: m[2]!.trim(), line: i + 1 });
  }
  return { headers, names, blank: -1, bad: -1 };
}

function mediaType(value: string): string {
  return (value.split(";")[0] ?? "").trim().toLowerCase();
}

function boundaryOf(value: string): string | undefined {
  const m = /(?:^|;)\s*boundary\s*=\s*(?:"([^"]*)"|([^;\s]+))/i.exec(value);
  const b = m?.[1] ?? m?.[2];
  return b === undefined || b === "" ? undefined : b;
}

/** Keys of a NodeConfig that, without a blank line after the part headers, get read as headers. */
const YAML_KEYS_AS_HEADERS = new Set(["apiversion", "kind", "spec", "metadata"]);

function mimeError(source: string, line: number, message: string, hint: string, code = "source.mime"): BerthError {
  return { code, message, where: { source, line, column: 1 }, hint };
}

export interface RawPart {
  index: number;
  total: number;
  contentType: string;
  /** Raw text of the part (headers, blank line, body) for postal-mime. */
  raw: string;
  /** 1-based line of the first body line in the whole text. */
  bodyLine: number;
}

/**
 * Checks the multipart structure line by line (postal-mime accepts broken
 * messages silently and reports no line numbers, so the classic mistakes are
 * caught here) and returns the top-level parts.
 * `undefined` when the text is not a MIME multipart message.
 */
export function scanMultipart(text: string, source: string): Result<{ parts: RawPart[] } | undefined> {
  const lines = splitLines(text);
  const top = readHeaders(lines, 0, lines.length);
  const ct = top.headers.get("content-type");
  const looksMime = top.headers.has("mime-version") || (ct !== undefined && mediaType(ct.value).startsWith("multipart/"));
  if (!looksMime || ct === undefined || !mediaType(ct.value).startsWith("multipart/")) {
    if (looksMime && ct === undefined && top.bad === -1) {
      return fail(
        mimeError(
          source,
          top.headers.get("mime-version")!.line,
          "user data has a MIME-Version header but no Content-Type, so it is neither multipart MIME nor a NodeConfig",
          'add `Content-Type: multipart/mixed; boundary="//"` under MIME-Version, or remove the MIME headers and give the ' +
            "NodeConfig YAML alone",
        ),
      );
    }
    return ok(undefined);
  }
  const boundary = boundaryOf(ct.value);
  if (boundary === undefined) {
    return fail(
      mimeError(
        source,
        ct.line,
        `the multipart Content-Type "${ct.value}" has no boundary parameter`,
        'write it as `Content-Type: multipart/mixed; boundary="//"` and separate parts with `--//` lines, ending with `--//--`',
      ),
    );
  }
  if (top.bad !== -1) {
    return fail(
      mimeError(
        source,
        top.bad + 1,
        `the MIME headers at the top are not followed by a blank line; line ${top.bad + 1} ("${clip(lines[top.bad]!.text)}") ` +
          `is read as a header`,
        "insert an empty line after the last top-level header (Content-Type), before the first boundary line",
      ),
    );
  }
  if (top.blank === -1) {
    return fail(
      mimeError(source, ct.line, "the MIME message has headers but no body", "add a blank line after the headers and then the parts"),
    );
  }
  const delim = `--${boundary}`;
  const close = `${delim}--`;
  const starts: number[] = [];
  let closeAt = -1;
  for (let i = top.blank + 1; i < lines.length; i++) {
    const t = lines[i]!.text.trimEnd();
    if (t === close) {
      closeAt = i;
      break;
    }
    if (t === delim) starts.push(i);
  }
  if (starts.length === 0) {
    return fail(
      mimeError(
        source,
        ct.line,
        `the boundary "${boundary}" declared here never appears as a "${delim}" line`,
        `start each part with a line "${delim}" and end the message with "${close}"; check the boundary is spelled the same ` +
          `(it is case-sensitive)`,
      ),
    );
  }
  if (closeAt === -1) {
    return fail(
      mimeError(
        source,
        starts[starts.length - 1]! + 1,
        `the MIME message has no closing boundary line "${close}" (the last part starts here)`,
        `add a line "${close}" after the last part; without it the last part is truncated`,
        "source.mime-unterminated",
      ),
    );
  }
  const total = starts.length;
  const parts: RawPart[] = [];
  const errors: BerthError[] = [];
  for (let k = 0; k < total; k++) {
    const part = scanPart(text, lines, source, { index: k + 1, total, from: starts[k]! + 1, to: k + 1 < total ? starts[k + 1]! : closeAt });
    if (part === undefined) continue;
    if ("code" in part) errors.push(part);
    else parts.push(part);
  }
  if (errors.length) return { ok: false, errors };
  return ok({ parts });
}

/**
 * One part between two boundary lines (`from` is its first header line, `to`
 * the next boundary line): its NodeConfig, undefined for another media
 * type, or what is wrong with its headers.
 */
function scanPart(
  text: string,
  lines: Line[],
  source: string,
  at: { index: number; total: number; from: number; to: number },
): RawPart | BerthError | undefined {
  const { index, total, from, to } = at;
  const label = `MIME part ${index} of ${total}`;
  const h = readHeaders(lines, from, to);
  const pct = h.headers.get("content-type");
  const pmt = pct ? mediaType(pct.value) : "";
  const yamlKey = h.names.find((n) => YAML_KEYS_AS_HEADERS.has(n.name.toLowerCase()));
  if (yamlKey !== undefined && (pmt === NODECONFIG_MEDIA_TYPE || h.blank === -1)) {
    return mimeError(
      source,
      yamlKey.line,
      `${label}: "${clip(lines[yamlKey.line - 1]!.text)}" is read as a MIME header because no blank line separates the part's ` +
        `headers from its body`,
      `insert an empty line after the part's Content-Type header (line ${pct?.line ?? from + 1})`,
      "source.mime-part-headers",
    );
  }
  if (h.bad !== -1) {
    return mimeError(
      source,
      h.bad + 1,
      `${label}: its headers are not followed by a blank line; line ${h.bad + 1} ("${clip(lines[h.bad]!.text)}") is neither a ` +
        `header nor the empty line that must end them`,
      `insert an empty line after the part's headers${pct ? ` (after line ${pct.line})` : ""}`,
      "source.mime-part-headers",
    );
  }
  if (pmt !== NODECONFIG_MEDIA_TYPE) return undefined;
  if (h.blank === -1) {
    return mimeError(
      source,
      pct!.line,
      `${label} has headers but no blank line and no body`,
      "put an empty line after the part's headers, then the NodeConfig YAML",
      "source.mime-part-headers",
    );
  }
  // The CRLF before a delimiter belongs to the delimiter (RFC 2046).
  let end = lines[to]!.start;
  if (end > 0 && text[end - 1] === "\n") end--;
  if (end > 0 && text[end - 1] === "\r") end--;
  const rawStart = lines[from]!.start;
  return { index, total, contentType: pmt, raw: text.slice(rawStart, Math.max(rawStart, end)), bodyLine: h.blank + 2 };
}

function clip(s: string): string {
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
