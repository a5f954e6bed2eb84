// commands.test.ts — the pure helpers of the merge/export and Preview Data commands (extension/commands/
// exportPlan.ts, previewDocument.ts, native/exportReport.ts): output folders, rank input, progress, verification
// summary, preview ranges.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';

import { ProgressMeter, combineOutDir, exportOutDir, mergeOutDir, parseRank, totalRank } from '../../extension/commands/exportPlan';
import { CLOSE, OPEN, previewDocument } from '../../extension/commands/previewDocument';
import type { DataPreview } from '../../extension/data/preview';
import type { ExportReport } from '../../extension/native/addon';
import { fmtDiff, verificationSummary } from '../../extension/native/exportReport';

describe('export plan', () => {
  it('puts default outputs beside the source, never inside it', () => {
    assert.equal(mergeOutDir('/w/runs/quick-1', 0), '/w/runs/quick-1-peft-merged');
    assert.equal(mergeOutDir('/w/runs/quick-1/', 8), '/w/runs/quick-1-peft-r8');
    assert.equal(exportOutDir('/w/runs/quick-1', 'dequantized', 'bf16'), '/w/runs/quick-1-merged-dequantized-bf16');
    assert.equal(combineOutDir(['/w/runs/a', '/w/runs/b'], 'svd', new Date(Date.UTC(2026, 0, 2, 3, 4, 5))), '/w/runs/combined-svd-20260102-030405');
  });

  it('reads the exact rank (Σ level ranks) from run.json', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'hq-plan-'));
    try {
      assert.equal(totalRank(dir), undefined);
      writeFileSync(path.join(dir, 'run.json'), JSON.stringify({ adapter: { levels: [{ rank: 16 }, { rank: 4 }, { rank: 4 }] } }));
      assert.equal(totalRank(dir), 24);
      writeFileSync(path.join(dir, 'run.json'), JSON.stringify({ adapter: { levels: [{ rank: 'x' }] } }));
      assert.equal(totalRank(dir), undefined);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('validates the rank input: empty = exact, 1..max-1, else a message', () => {
    assert.deepEqual(parseRank(''), { rank: 0 });
    assert.deepEqual(parseRank('  '), { rank: 0 });
    assert.deepEqual(parseRank(' 8 ', 24), { rank: 8 });
    for (const bad of ['0', '-1', '2.5', 'eight', '1e3']) assert.ok('error' in parseRank(bad, 24), bad);
    const tooBig = parseRank('24', 24);
    assert.ok('error' in tooBig && /exact merge already has rank 24/.test(tooBig.error));
    assert.deepEqual(parseRank('100'), { rank: 100 });
  });

  it('turns per-phase progress into monotone increments summing to 100', () => {
    const m = new ProgressMeter();
    const steps = [
      { phase: 'merge', done: 0, total: 14, item: 'a' }, { phase: 'merge', done: 7, total: 14, item: 'b' },
      { phase: 'merge', done: 14, total: 14, item: 'c' }, { phase: 'verify', done: 1, total: 2, item: 'ref' },
      { phase: 'merge', done: 3, total: 14, item: 'late' }, { phase: 'verify', done: 2, total: 2, item: 'exp' },
      { phase: 'publish', done: 0, total: 0, item: '/out' },
    ] as const;
    const incs = steps.map((s) => m.update(s));
    assert.ok(incs.every((i) => i.increment >= 0));
    assert.equal(incs[1]?.increment, 12.5);
    assert.equal(incs[4]?.increment, 0, 'a late report of an earlier phase does not move the bar back');
    assert.equal(incs.reduce((a, i) => a + i.increment, 0), 100);
    assert.equal(incs[1]?.message, 'merge 7/14 · b');
  });

  it('summarises the verification: pass/fail, max/mean |Δlogit|, tolerance', () => {
    const rep = (v: Partial<ExportReport['verification']>, extra: Partial<ExportReport> = {}): ExportReport => ({
      operation: 'merge_levels', output: '/w/runs/quick-1-peft-merged', format: 'peft', elapsed_s: 0.5,
      verification: { status: 'pass', reference: 'trainer', exported: 'peft', exact: true, max_abs_diff: 0, mean_abs_diff: 0, tolerance: 1e-5, ...v },
      ...extra,
    });
    const pass = verificationSummary(rep({}));
    assert.equal(pass.ok, true);
    assert.equal(pass.text, 'Merged adapter levels → quick-1-peft-merged. Verification PASSED: max |Δlogit| 0, mean 0 (tolerance 1.0e-5, exact).');
    const fail = verificationSummary(rep({ status: 'fail', exact: false, max_abs_diff: 0.81, mean_abs_diff: 0.0123, tolerance: 0.5 },
      { operation: 'combine', svd: { min_retained_energy: 0.9512, max_abs_error: 0.1 } }));
    assert.equal(fail.ok, false);
    assert.match(fail.text, /^Combined adapters → .*Verification FAILED: max \|Δlogit\| 0\.810, mean 0\.0123 \(tolerance 0\.500, lossy export\); SVD retained energy ≥ 95\.12 %\.$/);
    const gap = verificationSummary(rep({ exact: false, max_abs_diff: 0.0149, mean_abs_diff: 0.002, tolerance: 0.1 },
      { operation: 'merge_into_base', nf4_gap: { max_abs: 0.0101, modules: [] } }));
    assert.match(gap.text, /NF4 gap max \|W − deq\(W\)\| 0\.0101\.$/);
    const skipped = verificationSummary(rep({ status: 'skipped', reason: 'verify: false' }));
    assert.deepEqual(skipped, { ok: true, text: 'Merged adapter levels → quick-1-peft-merged. Verification skipped: verify: false.' });
    assert.equal(fmtDiff(undefined), '?');
    assert.equal(fmtDiff(3.14e-7), '3.1e-7');
  });
});

describe('preview document', () => {
  const preview: DataPreview = {
    format: 'alpaca', totalExamples: 3,
    examples: [
      { file: '/d/t.jsonl', line: 1, tokens: 9, trainedTokens: 3, truncated: false,
        segments: [{ text: 'Q: a «b» \u0001c', trained: false, tokens: 6 }, { text: ' yes</s>', trained: true, tokens: 3 }] },
      { file: '/d/t.jsonl', line: 2, tokens: 5, trainedTokens: 2, truncated: true,
        segments: [{ text: 'x', trained: true, tokens: 1 }, { text: ' y ', trained: false, tokens: 3 }, { text: 'z', trained: true, tokens: 1 }] },
    ],
  };

  it('marks every trained part with « » and returns its range, even when the data holds the markers', () => {
    const d = previewDocument(preview);
    assert.ok(d.text.startsWith(`format alpaca, 3 training examples; ${OPEN}trained${CLOSE} = tokens with loss`));
    assert.ok(d.text.includes(`Q: a «b» c${OPEN} yes</s>${CLOSE}`));
    assert.ok(d.text.includes(`${OPEN}x${CLOSE} y ${OPEN}z${CLOSE}`));
    assert.ok(!d.text.includes('\u0001') && !d.text.includes('\u0002'));
    assert.deepEqual(d.trained.map(([s, e]) => d.text.slice(s, e)), [' yes</s>', 'x', 'z']);
    for (const [s, e] of d.trained) {
      assert.equal(d.text[s - 1], OPEN);
      assert.equal(d.text[e], CLOSE);
    }
  });
});
