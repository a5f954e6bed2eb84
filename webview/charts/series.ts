// series.ts — the numerics behind smooth charts: per-pixel min/max decimation and TensorBoard's debiased EMA.
// Pure functions (unit-tested in test/unit/webview-series.test.ts).

export type Y = (number | null)[];

/**
 * Indices to draw so that a chart `buckets` pixels wide looks the same as with every point: per bucket (equal
 * x ranges) the first and last index and the index of each series' min and max. O(n · series); at most
 * (2 + 2·series) · buckets indices, in increasing order. Returns every index when there are few points.
 */
export function decimateIndices(x: readonly number[], ys: readonly Y[], buckets: number): number[] {
  const n = x.length;
  if (n <= 4 * buckets || buckets < 1 || n < 2) return Array.from({ length: n }, (_, i) => i);
  const x0 = x[0] ?? 0;
  const span = (x[n - 1] ?? 0) - x0 || 1;
  const out: number[] = [];
  let i = 0;
  for (let b = 0; b < buckets && i < n; b++) {
    const end = b === buckets - 1 ? Infinity : x0 + (span * (b + 1)) / buckets;
    const start = i;
    while (i < n && (x[i] ?? 0) < end) i++;
    if (i === start) continue;
    const pick = new Set<number>([start, i - 1]);
    for (const y of ys) {
      let lo = -1;
      let hi = -1;
      for (let j = start; j < i; j++) {
        const v = y[j];
        if (v == null) continue;
        if (lo < 0 || v < (y[lo] as number)) lo = j;
        if (hi < 0 || v > (y[hi] as number)) hi = j;
      }
      if (lo >= 0) pick.add(lo);
      if (hi >= 0) pick.add(hi);
    }
    out.push(...[...pick].sort((a, c) => a - c));
  }
  return out;
}

export function take<T>(a: readonly T[], idx: readonly number[]): T[] {
  return idx.map((i) => a[i] as T);
}

/**
 * TensorBoard-style exponential moving average with debiasing (weight in [0, 1); 0 = no smoothing), extended
 * incrementally: `state` carries the running value across calls so new points cost O(new).
 */
export class Ema {
  private last = 0;
  private count = 0;

  constructor(readonly weight: number) {}

  push(v: number | null): number | null {
    if (v == null || !Number.isFinite(v)) return null;
    this.last = this.last * this.weight + (1 - this.weight) * v;
    this.count++;
    const debias = 1 - Math.pow(this.weight, this.count);
    return debias > 0 ? this.last / debias : v;
  }
}
