// webview-series.test.ts — the dashboard's chart numerics (webview/charts/series.ts): per-pixel decimation keeps
// every extreme and stays bounded with 100k points; the EMA matches TensorBoard's debiased smoothing.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { decimateIndices, Ema } from '../../webview/charts/series';

describe('decimateIndices', () => {
  it('keeps every point when there are few', () => {
    assert.deepEqual(decimateIndices([1, 2, 3], [[1, 2, 3]], 800), [0, 1, 2]);
  });

  it('bounds 100k points to a few per pixel and keeps the extremes', () => {
    const n = 100_000;
    const x = Array.from({ length: n }, (_, i) => i);
    const y = x.map((i) => Math.sin(i / 50) + (i === 54_321 ? 10 : 0) - (i === 7 ? 10 : 0));
    const t0 = performance.now();
    const idx = decimateIndices(x, [y], 800);
    const ms = performance.now() - t0;
    console.log(`100k points → ${idx.length} drawn in ${ms.toFixed(1)} ms`);
    assert.ok(idx.length <= 4 * 800, `${idx.length} indices`);
    assert.ok(idx.includes(54_321) && idx.includes(7) && idx.includes(0) && idx.includes(n - 1));
    assert.deepEqual([...idx].sort((a, b) => a - b), idx);
    assert.ok(ms < 1000, `${ms} ms`);
  });

  it('skips nulls (non-finite values)', () => {
    const x = Array.from({ length: 10_000 }, (_, i) => i);
    const y = x.map((i) => (i % 2 ? null : i));
    const idx = decimateIndices(x, [y], 100);
    assert.ok(idx.length <= 400);
  });
});

describe('Ema', () => {
  it('is the identity with weight 0 and debiased otherwise', () => {
    const e0 = new Ema(0);
    assert.deepEqual([1, 2, 3].map((v) => e0.push(v)), [1, 2, 3]);
    const e = new Ema(0.5);
    assert.equal(e.push(4), 4); // debiased first value = the value
    assert.ok(Math.abs((e.push(2) ?? 0) - (4 * 0.25 + 2 * 0.5) / 0.75) < 1e-12);
    assert.equal(e.push(null), null);
  });
});
