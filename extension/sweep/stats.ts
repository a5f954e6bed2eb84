// stats.ts — the uncertainty of the sweep's scores, so that nobody reads noise as a result.
//
// - standardError: the binomial standard error of an accuracy over n questions, sqrt(p(1-p)/n).
// - pairedBootstrap: the difference of two (or, with seeds, two sets of) per-question correctness vectors scored
//   on the SAME questions, resampled over questions with replacement. Each resample draws n question indices and
//   applies them to every vector, so the pairing (same question, same seed) is kept and the question-to-question
//   variance cancels. The 95 % interval is the percentile interval (2.5th and 97.5th of the resampled differences,
//   linear interpolation between order statistics); a difference is significant when the interval excludes 0.
// - meanStd: mean and sample standard deviation (n-1) across seeds.
// The PRNG is mulberry32 seeded explicitly: the same inputs and seed give the same interval on every machine.

/** sqrt(p(1-p)/n) for an accuracy p over n items (0 when n is 0). */
export function standardError(p: number, n: number): number {
  return n > 0 ? Math.sqrt((p * (1 - p)) / n) : 0;
}

/** Mean and sample standard deviation (null with fewer than two values). */
export function meanStd(xs: readonly number[]): { mean: number; std: number | null } {
  const n = xs.length;
  if (n === 0) return { mean: NaN, std: null };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, std: null };
  const ss = xs.reduce((a, x) => a + (x - mean) * (x - mean), 0);
  return { mean, std: Math.sqrt(ss / (n - 1)) };
}

/** mulberry32: a 32-bit state PRNG; returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The q-quantile of sorted values, linear between order statistics (numpy's default "linear" method). */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, sorted.length - 1);
  const a = sorted[lo] ?? NaN;
  const b = sorted[hi] ?? NaN;
  return a + (h - lo) * (b - a);
}

export interface BootstrapResult {
  /** Observed difference: mean over seeds of accuracy(row) - accuracy(baseline). */
  delta: number;
  /** Percentile interval of the resampled differences. */
  lo: number;
  hi: number;
  /** The interval excludes 0. */
  significant: boolean;
  samples: number;
  seed: number;
  level: number;
}

/**
 * Paired bootstrap over questions of mean_s(acc(rows[s])) - mean_s(acc(base[s])). `rows[s]` and `base[s]` are the
 * per-question correctness (1/0) of seed s, all of the same length n (the same questions in the same order).
 */
export function pairedBootstrap(rows: readonly (readonly number[])[], base: readonly (readonly number[])[],
  opts: { samples: number; seed: number; level?: number }): BootstrapResult {
  const level = opts.level ?? 0.95;
  const k = rows.length;
  if (k === 0 || k !== base.length) throw new Error(`pairedBootstrap: ${k} row vectors but ${base.length} baseline vectors`);
  const n = rows[0]!.length;
  for (let s = 0; s < k; s++) {
    if (rows[s]!.length !== n || base[s]!.length !== n) throw new Error('pairedBootstrap: vectors of different lengths (not the same questions)');
  }
  // d[i] = mean over seeds of row - base on question i: the statistic is the mean of d over the sampled questions.
  const d = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (let s = 0; s < k; s++) sum += rows[s]![i]! - base[s]![i]!;
    d[i] = sum / k;
  }
  const delta = n > 0 ? d.reduce((a, b) => a + b, 0) / n : 0;
  const rand = mulberry32(opts.seed);
  const stats = new Array<number>(opts.samples);
  for (let b = 0; b < opts.samples; b++) {
    let sum = 0;
    for (let j = 0; j < n; j++) sum += d[Math.floor(rand() * n)]!;
    stats[b] = n > 0 ? sum / n : 0;
  }
  stats.sort((x, y) => x - y);
  const lo = quantile(stats, (1 - level) / 2);
  const hi = quantile(stats, 1 - (1 - level) / 2);
  return { delta, lo, hi, significant: lo > 0 || hi < 0, samples: opts.samples, seed: opts.seed, level };
}
