/**
 * Interval arithmetic for the boot timeline (model.ts): the critical path
 * through a set of bars and the length of a union of intervals. Pure.
 */

/** [start, end), ms. */
export type Interval = [number, number];

/** A bar as the critical path sees it. */
export interface Span {
  id: string;
  startMs: number;
  endMs: number;
}

/**
 * How far a bar may start before the one it waits on ended and still follow
 * it (ms): steps are timed with 1 ms resolution, and the next step's start
 * is read a moment before the previous one's end is written.
 */
export const CHAIN_TOLERANCE_MS = 2;

/**
 * The chain of bars that ends last: start from the bar that ends last, and
 * walk back, each time to the bar that ended last before this one started
 * (within CHAIN_TOLERANCE_MS) — what it most likely waited on. Bars that
 * contain others should not be given (pass the leaves). Returns the chain
 * first to last, each with the idle time between its predecessor's end (or
 * the origin) and its own start.
 */
export function criticalPath(bars: readonly Span[]): Array<{ id: string; gapBeforeMs: number }> {
  if (bars.length === 0) return [];
  const later = (a: Span, b: Span): Span => (b.endMs > a.endMs || (b.endMs === a.endMs && b.startMs > a.startMs) ? b : a);
  let current = bars.reduce(later);
  const chain: Span[] = [current];
  for (;;) {
    const c = current;
    const before = bars.filter((b) => b !== c && b.startMs < c.startMs && b.endMs <= c.startMs + CHAIN_TOLERANCE_MS);
    if (before.length === 0) break;
    current = before.reduce(later);
    chain.push(current);
  }
  chain.reverse();
  return chain.map((b, i) => {
    const prevEnd = i === 0 ? 0 : (chain[i - 1] as Span).endMs;
    return { id: b.id, gapBeforeMs: Math.round(Math.max(0, b.startMs - prevEnd) * 10) / 10 };
  });
}

/** The length of the union of `intervals` (overlaps counted once). */
export function intervalsLength(intervals: readonly Interval[]): number {
  const sorted = intervals.filter(([s, e]) => e > s).sort((a, b) => a[0] - b[0]);
  let total = 0;
  let curStart = -Infinity;
  let curEnd = -Infinity;
  for (const [s, e] of sorted) {
    if (s > curEnd) {
      if (curEnd > curStart) total += curEnd - curStart;
      curStart = s;
      curEnd = e;
    } else curEnd = Math.max(curEnd, e);
  }
  if (curEnd > curStart) total += curEnd - curStart;
  return total;
}

/** Axis ticks for 0..endMs: a 1-2-5 step giving at most `maxTicks` intervals; ms values from 0. */
export function axisTicks(endMs: number, maxTicks: number): number[] {
  if (!(endMs > 0) || maxTicks < 1) return [0];
  const raw = endMs / maxTicks;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw) as number) || pow * 10;
  const ticks: number[] = [];
  for (let t = 0; t <= endMs + step * 1e-9; t += step) ticks.push(Math.round(t * 1000) / 1000);
  return ticks;
}

/** Seconds for a label: `1.5s`, `0.25s`, `120s` (no trailing zeros). */
export function secondsLabel(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))}s`;
}
