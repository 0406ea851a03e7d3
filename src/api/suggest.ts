/**
 * "Did you mean …?" for near-miss keys and enum values.
 *
 * Hand-written rather than a dependency: it is ~40 lines, runs on tiny inputs,
 * and keeps the config phase's import graph small.
 */

/** Optimal-string-alignment distance (Damerau–Levenshtein with adjacent transpositions). */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  if (a.length === 0) return b.length;
  if (b.length === 0) return a.length;
  const cols = b.length + 1;
  // Three rolling rows are enough for OSA (transposition looks two rows back).
  let prev2 = new Array<number>(cols).fill(0);
  let prev = new Array<number>(cols);
  let cur = new Array<number>(cols);
  for (let j = 0; j < cols; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    cur[0] = i;
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, prev2[j - 2]! + 1);
      cur[j] = v;
    }
    [prev2, prev, cur] = [prev, cur, prev2];
  }
  return prev[b.length]!;
}

/** Lower-case and drop `-`/`_`, so `api_server_endpoint` meets `apiServerEndpoint`. */
const fold = (s: string): string => s.toLowerCase().replace(/[-_]/g, "");

/**
 * The candidate the user most plausibly meant, or undefined.
 *
 * Suggest when, after folding case and separators, the strings are equal, one
 * is a prefix or suffix of the other (at least 3 characters, e.g.
 * `name-not-real` → `name`, `Logs` → `PodLogs`), or the edit distance is at most a third of the longer string
 * (minimum 1, maximum 3). Ties go to the earlier candidate, so the answer is
 * deterministic.
 */
export function suggest(input: string, candidates: readonly string[]): string | undefined {
  const fi = fold(input);
  if (fi.length === 0) return undefined;
  let best: string | undefined;
  let bestScore = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    if (c === input) continue;
    const fc = fold(c);
    let score: number;
    if (fc === fi) score = 0;
    else {
      const d = editDistance(fi, fc);
      const limit = Math.min(3, Math.max(1, Math.floor(Math.max(fi.length, fc.length) / 3)));
      if (d <= limit) score = d;
      else if (Math.min(fi.length, fc.length) >= 3 && (fi.startsWith(fc) || fc.startsWith(fi) || fi.endsWith(fc) || fc.endsWith(fi)))
        score = 10 + Math.abs(fi.length - fc.length);
      else continue;
    }
    if (score < bestScore) {
      best = c;
      bestScore = score;
    }
  }
  return best;
}
