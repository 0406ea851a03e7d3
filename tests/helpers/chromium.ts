/**
 * A real browser for tests of pictures berth draws (`berth timeline --svg`):
 * Debian's chromium, headless, takes a screenshot of a file, and a small PNG
 * decoder (node:zlib) tells how much of the screenshot is not white.
 * scripts/setup.sh installs chromium.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { inflateSync } from "node:zlib";

export const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));

/** Screenshot `file` (an SVG, HTML...) at 1200×800 into `png`; rejects with chromium's output when it fails. */
export async function screenshot(file: string, png: string, size = "1200,800"): Promise<void> {
  if (!CHROMIUM) throw new Error("chromium is not installed: run scripts/setup.sh (apt-get install -y chromium)");
  const profile = await mkdtemp(path.join(tmpdir(), "berth-chromium-"));
  const args = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    `--user-data-dir=${profile}`,
    `--screenshot=${png}`,
    `--window-size=${size}`,
    `file://${path.resolve(file)}`,
  ];
  try {
    await new Promise<void>((resolve, reject) => {
      execFile(CHROMIUM, args, { timeout: 60_000 }, (err, stdout, stderr) => {
        if (err || !existsSync(png))
          reject(new Error(`chromium --screenshot failed: ${err?.message ?? "no PNG"}\n${stdout}${stderr.slice(-2000)}`));
        else resolve();
      });
    });
  } finally {
    await rm(profile, { recursive: true, force: true });
  }
}

export interface PngStats {
  width: number;
  height: number;
  /** Pixels whose colour is not (near) white. */
  nonWhite: number;
  /** Distinct colours (quantised to 4 bits a channel): a blank or one-colour image has 1. */
  colours: number;
}

/** Decode an 8-bit RGB or RGBA, non-interlaced PNG (what chromium writes) and count its non-white pixels. */
export async function pngStats(file: string): Promise<PngStats> {
  const buf = await readFile(file);
  if (buf.subarray(1, 4).toString("latin1") !== "PNG") throw new Error(`${file} is not a PNG`);
  let off = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.subarray(off + 4, off + 8).toString("latin1");
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === "IHDR") {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const [depth, colourType, , , interlace] = [data[8], data[9], data[10], data[11], data[12]];
      if (depth !== 8 || (colourType !== 2 && colourType !== 6) || interlace !== 0)
        throw new Error(`${file}: unsupported PNG (depth ${depth}, colour type ${colourType})`);
      channels = colourType === 6 ? 4 : 3;
    } else if (type === "IDAT") idat.push(data);
    off += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const prev = Buffer.alloc(stride);
  const row = Buffer.alloc(stride);
  let nonWhite = 0;
  const colours = new Set<number>();
  for (let y = 0; y < height; y++) {
    const base = y * (stride + 1);
    const filter = raw[base] as number;
    for (let i = 0; i < stride; i++) {
      const x = raw[base + 1 + i] as number;
      const a = i >= channels ? (row[i - channels] as number) : 0;
      const b = prev[i] as number;
      const c = i >= channels ? (prev[i - channels] as number) : 0;
      let v = x;
      if (filter === 1) v = x + a;
      else if (filter === 2) v = x + b;
      else if (filter === 3) v = x + ((a + b) >> 1);
      else if (filter === 4) {
        const p = a + b - c;
        const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
        v = x + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
      }
      row[i] = v & 0xff;
    }
    for (let px = 0; px < width; px++) {
      const [r, g, bl] = [row[px * channels] as number, row[px * channels + 1] as number, row[px * channels + 2] as number];
      if (r < 245 || g < 245 || bl < 245) nonWhite++;
      colours.add(((r >> 4) << 8) | ((g >> 4) << 4) | (bl >> 4));
    }
    row.copy(prev);
  }
  return { width, height, nonWhite, colours: colours.size };
}
