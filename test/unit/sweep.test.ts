// sweep.test.ts — the pure parts of the rank-split sweep (extension/sweep/): the statistics against hand-computed
// small cases, the expansion of a sweep file into cells (cartesian product, explicit list, scalar key paths), its
// errors at file:line (unknown axis key, missing dataset, unequal rank totals), the atomic state file and the
// detection of a changed sweep file, and the results matrix built from hand-made eval tables.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { EvalResultEvent } from '../../schemas/generated/trainer-events';
import { HqError, HqErrors } from '../../extension/core/errors';
import { scalarPaths } from '../../extension/sweep/paths';
import { buildResults, resultsCsv, resultsMarkdown, type CellOutcome } from '../../extension/sweep/results';
import { validateSweepResults } from '../../extension/sweep/schemas';
import { parseSweep } from '../../extension/sweep/spec';
import { acquireLock, addCells, newState, planChanges, readState, writeFileAtomic, writeState } from '../../extension/sweep/state';
import { sweepPanelData } from '../../extension/sweep/panelData';
import { sweepView } from '../../extension/sweep/view';
import { COLUMNS, deltaText, sortCells } from '../../webview/sweep/columns';
import { meanStd, mulberry32, pairedBootstrap, quantile, standardError } from '../../extension/sweep/stats';
import runConfigSchema from '../../schemas/run-config.schema.json';

const ROOT = process.cwd();
const FIX = path.join(ROOT, 'test/fixtures');
let tmp: string;
before(() => {
  tmp = mkdtempSync(path.join(tmpdir(), 'hqlora-sweep-test-'));
  writeFileSync(path.join(tmp, 'base.hqlora.yaml'), `model: ${path.join(FIX, 'models/tiny-llama')}\ndata: {train: ${path.join(FIX, 'data/train.completion.jsonl')}}\nadapter: {ranks: [8, 8], alpha: 8}\n`);
});
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Parses sweep text written to <tmp>/<name>.hqsweep.yaml. */
function sweepOf(text: string, name = 's'): ReturnType<typeof parseSweep> {
  const file = path.join(tmp, `${name}.hqsweep.yaml`);
  writeFileSync(file, text);
  return parseSweep(file, text);
}

/** The HqErrors of a rejected sweep, as `line: message`. */
async function problems(text: string): Promise<string[]> {
  try {
    await sweepOf(text);
  } catch (e) {
    assert.ok(e instanceof HqError, String(e));
    const all = e instanceof HqErrors ? e.errors : [e];
    return all.map((x) => `${x.where.line ?? '?'}: ${x.message}`);
  }
  assert.fail('the sweep was accepted');
}

describe('sweep statistics (hand-computed cases)', () => {
  it('standard error of an accuracy is sqrt(p(1-p)/n)', () => {
    // p = 3/4 over 4 questions: sqrt(0.75 · 0.25 / 4) = sqrt(0.046875) = 0.21650635...
    assert.ok(Math.abs(standardError(0.75, 4) - 0.21650635094610965) < 1e-15);
    assert.equal(standardError(1, 10), 0);
    assert.equal(standardError(0.5, 0), 0);
    // p = 0.5 over 100: 0.05 exactly.
    assert.ok(Math.abs(standardError(0.5, 100) - 0.05) < 1e-15);
  });

  it('mean ± sample std across seeds', () => {
    const { mean, std } = meanStd([0.5, 0.7, 0.6]);
    assert.ok(Math.abs(mean - 0.6) < 1e-15);
    assert.ok(Math.abs((std ?? NaN) - 0.1) < 1e-12); // ((0.01 + 0.01 + 0) / 2)^0.5
    assert.equal(meanStd([0.4]).std, null);
  });

  it('quantile interpolates linearly between order statistics', () => {
    assert.equal(quantile([1, 2, 3, 4], 0.25), 1.75);
    assert.equal(quantile([1, 2, 3, 4], 0), 1);
    assert.equal(quantile([1, 2, 3, 4], 1), 4);
    assert.equal(quantile([5], 0.975), 5);
  });

  it('mulberry32 is deterministic and uniform enough', () => {
    const a = mulberry32(7), b = mulberry32(7);
    const xs = Array.from({ length: 10000 }, () => a());
    assert.deepEqual(xs.slice(0, 5), Array.from({ length: 5 }, () => b()));
    assert.ok(xs.every((x) => x >= 0 && x < 1));
    const m = xs.reduce((s, x) => s + x, 0) / xs.length;
    assert.ok(Math.abs(m - 0.5) < 0.01, String(m));
  });

  it('paired bootstrap: 3 questions, the row right on one that the baseline missed', () => {
    // d = [1, 0, 0]: the resampled mean is k/3 with k ~ Binomial(3, 1/3): P(0) = 8/27, P(3) = 1/27 = 3.7 %.
    // So the 2.5th percentile is 0 and the 97.5th is 1; delta = 1/3; the interval contains 0: not significant.
    const r = pairedBootstrap([[1, 0, 1]], [[0, 0, 1]], { samples: 20000, seed: 1 });
    assert.ok(Math.abs(r.delta - 1 / 3) < 1e-15);
    assert.equal(r.lo, 0);
    assert.equal(r.hi, 1);
    assert.equal(r.significant, false);
  });

  it('paired bootstrap: 10 questions, 8 gained and 2 equal', () => {
    // d = eight 1s, two 0s: the mean is X/10, X ~ Binomial(10, 0.8). P(X <= 4) = 0.0064 and P(X <= 5) = 0.0328, so the
    // 2.5th percentile is 0.5; P(X <= 9) = 0.893 < 0.975, so the 97.5th is 1. Significant (0 is outside [0.5, 1]).
    const row = [1, 1, 1, 1, 1, 1, 1, 1, 1, 0];
    const base = [0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    const r = pairedBootstrap([row], [base], { samples: 20000, seed: 3 });
    assert.ok(Math.abs(r.delta - 0.8) < 1e-15);
    assert.equal(r.lo, 0.5);
    assert.equal(r.hi, 1);
    assert.equal(r.significant, true);
  });

  it('paired bootstrap: identical rows give a zero-width interval at 0; pairing cancels shared difficulty', () => {
    const same = pairedBootstrap([[1, 0, 1, 1]], [[1, 0, 1, 1]], { samples: 500, seed: 0 });
    assert.deepEqual([same.delta, same.lo, same.hi, same.significant], [0, 0, 0, false]);
    // Two seeds: the statistic averages the per-seed differences question by question: d = [(1+0)/2, (0+0)/2] = [0.5, 0].
    const two = pairedBootstrap([[1, 0], [0, 1]], [[0, 0], [0, 1]], { samples: 4000, seed: 5 });
    assert.ok(Math.abs(two.delta - 0.25) < 1e-15);
    assert.equal(two.lo, 0); // both draws the 0 question: probability 1/4
    assert.equal(two.hi, 0.5); // both draws the 0.5 question: 1/4
  });

  it('paired bootstrap: the same seed gives the same interval; another seed may not', () => {
    const row = Array.from({ length: 50 }, (_, i) => (i % 3 === 0 ? 0 : 1));
    const base = Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? 0 : 1));
    const a = pairedBootstrap([row], [base], { samples: 1000, seed: 42 });
    const b = pairedBootstrap([row], [base], { samples: 1000, seed: 42 });
    assert.deepEqual(a, b);
    assert.throws(() => pairedBootstrap([row], [base.slice(1)], { samples: 10, seed: 0 }), /same questions/);
  });
});

describe('sweep file → cells', () => {
  it('the fixture sweep: a 2 × 2 cartesian product in the written order', async () => {
    const s = await parseSweep(path.join(FIX, 'sweep.hqsweep.yaml'), readFileSync(path.join(FIX, 'sweep.hqsweep.yaml'), 'utf8'));
    assert.deepEqual(s.cells.map((c) => c.id), ['r32_completion', 'r32_alpaca', 'r16-4-4-4-4_completion', 'r16-4-4-4-4_alpaca']);
    assert.equal(s.baseline, '32');
    assert.equal(s.dir, path.join(ROOT, 'sweeps', 'sweep'));
    const c = s.cells[3]!;
    assert.deepEqual(c.loaded.raw.adapter, { ranks: [16, 4, 4, 4, 4], alpha: 16 });
    assert.equal(c.loaded.raw.data.train, path.join(FIX, 'data/train.alpaca.jsonl'));
    assert.equal(c.loaded.raw.data.format, 'alpaca');
    assert.equal(c.loaded.raw.data.eval_holdout, 16); // the base's other data keys stay
    assert.equal(c.loaded.file, path.join(FIX, 'sweep-base.hqlora.yaml')); // the base's own paths resolve as before
    assert.equal(s.eval.mmlu?.path, path.join(FIX, 'mcq'));
    assert.notEqual(s.cells[0]!.fingerprint, s.cells[1]!.fingerprint);
  });

  it('seeds and any scalar key by its path; levels of the base replaced by the split', async () => {
    const s = await sweepOf(`base: base.hqlora.yaml\naxes:\n  adapter.ranks: ["16", "8,8"]\n  seed: [0, 1]\n  training.learning_rate: [0.001]\n`);
    assert.deepEqual(s.cells.map((c) => c.id), ['r16_s0_learning_rate0.001', 'r16_s1_learning_rate0.001', 'r8-8_s0_learning_rate0.001', 'r8-8_s1_learning_rate0.001']);
    assert.equal(s.cells[1]!.loaded.raw.training?.seed, 1);
    assert.equal(s.cells[1]!.loaded.raw.training?.learning_rate, 0.001);
    assert.deepEqual(s.cells[2]!.loaded.raw.adapter, { ranks: [8, 8], alpha: 8 });
    assert.deepEqual(s.cells[2]!.extra, { 'training.learning_rate': 0.001 });
    assert.equal(s.baseline, '16');
  });

  it('an explicit list of cells', async () => {
    const s = await sweepOf(`base: base.hqlora.yaml\ncells:\n  - { adapter.ranks: [16], name: big }\n  - { adapter.ranks: [8, 8], training.max_steps: 5 }\n`);
    assert.deepEqual(s.cells.map((c) => c.id), ['big', 'r8-8_max_steps5']);
    assert.equal(s.cells[1]!.loaded.raw.training?.max_steps, 5);
  });

  it('scalar paths come from the run-config schema', () => {
    const p = scalarPaths(runConfigSchema);
    for (const k of ['training.learning_rate', 'training.seed', 'adapter.dropout', 'data.source_max_len', 'quantization.blocksize', 'model']) assert.ok(p.includes(k), k);
    assert.ok(!p.includes('adapter.levels'));
    assert.ok(!p.includes('training'));
  });

  it('an unknown axis key is an error at its line, with the closest key', async () => {
    const ps = await problems(`base: base.hqlora.yaml\naxes:\n  adapter.ranks: [[16]]\n  training.learnig_rate: [0.1]\n`);
    assert.equal(ps.length, 1);
    assert.match(ps[0]!, /^4: unknown axis key "training.learnig_rate"/);
  });

  it('a missing dataset is an error at its line, once however many cells use it', async () => {
    const ps = await problems(`base: base.hqlora.yaml\naxes:\n  data:\n    - ${path.join(FIX, 'data/train.completion.jsonl')}\n    - nope/missing.jsonl\n  seed: [0, 1]\n`);
    assert.equal(ps.length, 1);
    assert.match(ps[0]!, /^5: training data of dataset "missing" not found: .*nope\/missing\.jsonl/);
  });

  it('unequal rank totals are an error at the split when total_rank is set', async () => {
    const ps = await problems(`base: base.hqlora.yaml\ntotal_rank: 16\naxes:\n  adapter.ranks:\n    - [16]\n    - [8, 4]\n    - [8, 8]\n  seed: [0, 1, 2]\n`);
    assert.deepEqual(ps, ['6: rank split 8,4 adds up to 12, not the sweep\'s total_rank 16']);
    // Without total_rank unequal totals are allowed.
    assert.equal((await sweepOf(`base: base.hqlora.yaml\naxes:\n  adapter.ranks: [[16], [8, 4]]\n`)).cells.length, 2);
  });

  it('schema errors, a missing base and invalid cell configs name the line', async () => {
    assert.deepEqual(await problems(`base: base.hqlora.yaml\naxes: {seed: [1]}\ncells: [{seed: 1}]\n`),
      ['1: give the cells either as axes: (a cartesian product) or as cells: (an explicit list), exactly one of them']);
    assert.match((await problems(`base: base.hqlora.yaml\naxes: {seed: [1]}\nevall: {}\n`))[0]!, /^3: unknown key "evall"/);
    assert.match((await problems(`base: nothere.hqlora.yaml\naxes: {seed: [1]}\n`))[0]!, /^1: base run config not found/);
    assert.match((await problems(`base: base.hqlora.yaml\naxes:\n  training.learning_rate: ["fast"]\n`))[0]!, /^3: cell learning_ratefast: its run config is invalid: training.learning_rate must be number/);
    assert.match((await problems(`base: base.hqlora.yaml\naxes: {seed: [1]}\neval: {mmlu: {path: nomm}}\n`))[0]!, /^3: multiple-choice data not found/);
    assert.match((await problems(`base: base.hqlora.yaml\naxes:\n  output.dir: [a, b]\n`))[0]!, /^3: "output.dir" cannot vary/);
  });
});

describe('sweep state', () => {
  it('is written atomically and validated on read', async () => {
    const s = await sweepOf(`base: base.hqlora.yaml\naxes: {seed: [0, 1]}\noutput: {dir: out-a}\n`, 'a');
    const dir = path.join(tmp, 'st');
    rmSync(dir, { recursive: true, force: true });
    assert.equal(readState(dir), undefined);
    mkdirSync(dir, { recursive: true });
    const st = newState(s);
    writeState(dir, st);
    assert.deepEqual(readdirSync(dir), ['sweep-state.json']); // no temp file left
    assert.deepEqual(readState(dir), st);
    writeFileAtomic(path.join(dir, 'sweep-state.json'), '{"v": 1');
    assert.throws(() => readState(dir), /not valid JSON/);
    writeFileAtomic(path.join(dir, 'sweep-state.json'), '{"v": 2}');
    assert.throws(() => readState(dir), /does not match schemas\/sweep-state.schema.json/);
  });

  it('detects added, changed and removed cells; adding moves a changed cell aside, deletes nothing', async () => {
    const s1 = await sweepOf(`base: base.hqlora.yaml\naxes: {seed: [0, 1]}\noutput: {dir: out-b}\n`, 'b');
    const st = newState(s1);
    assert.deepEqual(planChanges(s1, st), { added: [], changed: [], removed: [], evalChanged: false });
    const s2 = await sweepOf(`base: base.hqlora.yaml\ncells:\n  - {seed: 1, training.max_steps: 3, name: s1}\n  - {seed: 2, name: s2}\noutput: {dir: out-b}\n`, 'b');
    const ch = planChanges(s2, st);
    assert.deepEqual(ch, { added: ['s2'], changed: ['s1'], removed: ['s0'], evalChanged: false });
    const old = st.cells.find((c) => c.id === 's1')!;
    mkdirSync(path.join(old.run_dir, 'adapter'), { recursive: true });
    st.cells[1]!.status = 'done';
    const moved = addCells(s2, st, ch);
    assert.deepEqual(moved, [`${old.run_dir}.old-1`]);
    assert.ok(existsSync(path.join(`${old.run_dir}.old-1`, 'adapter')));
    assert.deepEqual(st.cells.map((c) => [c.id, c.status]), [['s1', 'queued'], ['s2', 'queued'], ['s0', 'removed']]);
    assert.deepEqual(planChanges(s2, st), { added: [], changed: [], removed: [], evalChanged: false });
  });

  it('the lock refuses a second live holder and takes over a stale one', () => {
    const dir = path.join(tmp, 'lock');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'sweep.lock'), JSON.stringify({ pid: process.ppid, pid_start: null }));
    assert.throws(() => acquireLock(dir), /already running \(pid/);
    writeFileSync(path.join(dir, 'sweep.lock'), JSON.stringify({ pid: 2 ** 22 + 12345, pid_start: '1' })); // no such process
    const lock = acquireLock(dir);
    assert.match(readFileSync(path.join(dir, 'sweep.lock'), 'utf8'), new RegExp(`"pid":${process.pid}`));
    lock.release();
    assert.ok(!existsSync(path.join(dir, 'sweep.lock')));
  });
});

describe('sweep results', () => {
  /** An eval table of one cell: base + adapter rows (levels 1..L) with per-question predictions. */
  function evalOf(answers: string, predictions: string[], subjects: string[]): EvalResultEvent {
    const rows = predictions.map((p, levels) => {
      const correct = [...p].filter((c, i) => c === answers[i]).length;
      const per = subjects.map((s, k) => {
        const idx = [...answers].map((_, i) => i).filter((i) => i % subjects.length === k);
        const ok = idx.filter((i) => p[i] === answers[i]).length;
        return { subject: s, n: idx.length, correct: ok, accuracy: ok / idx.length };
      });
      return { name: `L${levels}`, levels, ranks: [8, 8].slice(0, levels), eval_loss: 1 + levels, predictions: p,
        mcq: { n: answers.length, correct, accuracy: correct / answers.length, macro_accuracy: 0, subjects: per } };
    });
    return { v: 1, type: 'eval_result', time: 0, run_dir: '', model: {}, adapter: null, mcq_file: null, eval_file: null, subjects, rows, elapsed_s: 1, answers, questions: answers.length };
  }

  it('builds the matrix: rows are splits, Δ vs the baseline with a bootstrap interval, categories, ablation', async () => {
    const s = await sweepOf(`base: base.hqlora.yaml\naxes:\n  adapter.ranks: [[16], [8, 8]]\nbootstrap: {samples: 2000, seed: 1}\n`, 'r');
    const answers = 'ABCDABCDAB';
    const subjects = ['abstract_algebra', 'world_religions'];
    const st = newState(s);
    st.cells.forEach((c) => (c.status = 'done'));
    const outcomes: CellOutcome[] = [
      { cell: s.cells[0]!, state: st.cells[0]!, adapterSha256: 'a', train: { trainS: 10, tokensPerS: 100, peakBytes: 2 ** 20, losses: [] },
        eval: evalOf(answers, ['DDDDDDDDDD', 'ABCDDDDDDD'], subjects) },
      { cell: s.cells[1]!, state: st.cells[1]!, adapterSha256: 'b', train: { trainS: 12, tokensPerS: 90, peakBytes: 2 ** 21, losses: [] },
        eval: evalOf(answers, ['DDDDDDDDDD', 'ABCDDDDDDD', 'ABCDABCDDD'], subjects) },
    ];
    const r = buildResults(s, outcomes);
    assert.ok(validateSweepResults(r), JSON.stringify(validateSweepResults.errors));
    const [b, h] = r.rows;
    // Baseline 16 (ABCDDDDDDD): right on questions 0-3 and 7 → 5/10; 8+8 (ABCDABCDDD): right on 0-7 → 8/10.
    assert.equal(b!.columns[0]!.mmlu, 0.5);
    assert.equal(h!.columns[0]!.mmlu, 0.8);
    assert.ok(Math.abs(h!.columns[0]!.mmlu_se! - Math.sqrt(0.8 * 0.2 / 10)) < 1e-15);
    assert.ok(Math.abs(h!.columns[0]!.diff!.delta - 0.3) < 1e-12);
    assert.equal(b!.columns[0]!.diff, null);
    assert.ok(Math.abs(h!.columns[0]!.time_vs_baseline! - 0.2) < 1e-12);
    // abstract_algebra (STEM) holds the even questions 0,2,4,6,8 and world_religions (humanities) the odd ones; the
    // 8+8 row misses 8 and 9: 4/5 each.
    assert.equal(h!.columns[0]!.categories.stem, 0.8);
    assert.equal(h!.columns[0]!.categories.humanities, 0.8);
    assert.equal(h!.columns[0]!.categories.social_sciences, null);
    assert.deepEqual(h!.columns[0]!.ablation.map((a) => a.mmlu), [0.5, 0.8]);
    assert.deepEqual(b!.columns[0]!.ablation, []); // one level: no ablation
    const md = resultsMarkdown(r);
    assert.match(md, /\| 8,8 \| 80\.0 ± 12\.6 \| \+30\.0 \[[^\]]+\]( \*)? \| 80\.0 \| 80\.0 \| – \| – \| 3\.0000 \| 12\.0 s \(\+20\.0 %\) \| 90 \| 2\.0 \|/);
    const csv = resultsCsv(r).split('\n');
    assert.equal(csv[0], 'split,row,data,cells_done,mmlu,mmlu_se,mmlu_std,delta_vs_baseline,delta_lo,delta_hi,significant,stem,humanities,social_sciences,other,eval_loss,train_s,time_vs_baseline,tokens_per_s,peak_memory_bytes');
    assert.match(csv[2]!, /^"8,8","8,8",,1,0\.8,/);
  });

  it('the Sweep panel marks a difference significant exactly when its 95 % interval excludes 0 (hand-computed)', async () => {
    const s = await sweepOf(`base: base.hqlora.yaml\naxes:\n  adapter.ranks: [[16], [8, 8]]\n  data:\n    - { name: completion, train: ${path.join(FIX, 'data/train.completion.jsonl')} }\n`
      + `    - { name: alpaca, train: ${path.join(FIX, 'data/train.alpaca.jsonl')}, format: alpaca }\nbootstrap: {samples: 20000, seed: 3}\n`, 'p');
    assert.deepEqual(s.cells.map((c) => c.id), ['r16_completion', 'r16_alpaca', 'r8-8_completion', 'r8-8_alpaca']);
    const dir = mkdtempSync(path.join(tmpdir(), 'hqlora-sweep-panel-'));
    try {
      const st = newState(s);
      for (const c of st.cells) {
        c.run_dir = path.join(dir, 'cells', c.id);
        c.status = 'done';
      }
      writeState(dir, st);
      // completion: 10 questions; the baseline 16 is right on question 8 only, 8,8 on 0-8: d = eight 1s and two 0s.
      // The resampled mean is X/10 with X ~ Binomial(10, 0.8): P(X <= 4) = 0.0064 < 0.025 < P(X <= 5) = 0.0328, so the
      // 2.5th percentile is 0.5; P(X = 10) = 0.107 > 0.025, so the 97.5th is 1: [+50, +100] excludes 0, significant.
      // alpaca: 3 questions; the baseline right on question 2, 8,8 on 0 and 2: d = [1, 0, 0], the mean is k/3 with
      // k ~ Binomial(3, 1/3): P(k = 0) = 8/27 > 0.025 and P(k = 3) = 1/27 = 0.037 > 0.025, so the interval is [0, +100]:
      // it contains 0, not significant.
      const preds: Record<string, [string, string]> = {
        r16_completion: ['ABCDABCDAB', 'DDDADDDAAD'], 'r8-8_completion': ['ABCDABCDAB', 'ABCDABCDAD'],
        r16_alpaca: ['ABC', 'DDC'], 'r8-8_alpaca': ['ABC', 'ADC'],
      };
      const outcomes: CellOutcome[] = s.cells.map((cell, i) => {
        const [answers, p] = preds[cell.id]!;
        const levels = cell.ranks.length === 1 ? [answers.replace(/./g, 'D'), p] : [answers.replace(/./g, 'D'), p, p];
        return { cell, state: st.cells[i]!, adapterSha256: null, train: null, eval: evalOf(answers, levels, ['abstract_algebra']) };
      });
      writeFileAtomic(path.join(dir, 'sweep-results.json'), JSON.stringify(buildResults(s, outcomes)));
      const data = sweepPanelData(dir, s.baseline)!;
      const byId = Object.fromEntries(data.cells.map((c) => [c.id, c]));
      const sig = byId['r8-8_completion']!, not = byId['r8-8_alpaca']!;
      assert.ok(Math.abs(sig.delta! - 0.8) < 1e-12);
      assert.deepEqual([sig.delta_lo, sig.delta_hi, sig.significant], [0.5, 1, true]);
      assert.ok(Math.abs(not.delta! - 1 / 3) < 1e-12);
      assert.deepEqual([not.delta_lo, not.delta_hi, not.significant], [0, 1, false]);
      for (const id of ['r16_completion', 'r16_alpaca']) assert.deepEqual([byId[id]!.delta, byId[id]!.significant], [null, null], `${id} is the baseline row`);
      // What the panel's Δ column shows: the mark only on the significant one.
      const shown = (c: (typeof data.cells)[number]): string => COLUMNS.find((col) => col.key === 'delta')!.show(c);
      assert.equal(shown(sig), '+80.0 [+50.0, +100.0] *');
      assert.equal(shown(not), '+33.3 [+0.0, +100.0]');
      assert.equal(deltaText(byId['r16_completion']!), '–');
      // Sorted by Δ, the baseline rows (no Δ) go last either way.
      assert.deepEqual(sortCells(data.cells, 'delta', -1).map((c) => c.id), ['r8-8_completion', 'r8-8_alpaca', 'r16_completion', 'r16_alpaca']);
      assert.deepEqual(sortCells(data.cells, 'delta', 1).map((c) => c.id), ['r8-8_alpaca', 'r8-8_completion', 'r16_completion', 'r16_alpaca']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the Sweeps view: cell states and the matrix lines, from the sweep folder\'s files', async () => {
    const s = await sweepOf(`base: base.hqlora.yaml\naxes:\n  adapter.ranks: [[16], [8, 8]]\n  seed: [0, 1]\nbootstrap: {samples: 500, seed: 1}\n`, 'v');
    const dir = mkdtempSync(path.join(tmpdir(), 'hqlora-sweep-view-'));
    try {
      assert.equal(sweepView(dir), undefined); // never started
      const answers = 'ABCDABCDAB';
      const st = newState(s);
      for (const c of st.cells) c.run_dir = path.join(dir, 'cells', c.id);
      const [a, b, c, d] = st.cells;
      a!.status = 'done';
      b!.status = 'done';
      c!.status = 'training';
      d!.status = 'failed';
      d!.error = 'train.jsonl:3: bad line';
      writeState(dir, st);
      const outcomes: CellOutcome[] = s.cells.map((cell, i) => ({
        cell, state: st.cells[i]!, adapterSha256: null, train: null,
        eval: i < 2 ? evalOf(answers, ['DDDDDDDDDD', i === 0 ? 'ABCDDDDDDD' : 'ABCDABDDDD'], ['abstract_algebra']) : null,
      }));
      writeFileAtomic(path.join(dir, 'sweep-results.json'), JSON.stringify(buildResults(s, outcomes)));
      const v = sweepView(dir)!;
      assert.equal(v.name, 'v');
      assert.deepEqual([v.done, v.total, v.running], [2, 4, true]);
      assert.deepEqual(v.cells.map((x) => x.description), ['done · MMLU 50.0 %', 'done · MMLU 70.0 %', 'training 0/?', 'failed: train.jsonl:3: bad line']);
      // Row 16 over seeds 0 and 1: mean ± std across seeds (50 %, 70 %); row 8,8 has no finished cell yet.
      assert.deepEqual(v.rows.map((r) => r.split), ['16', '8,8']);
      assert.equal(v.rows[0]!.columns[0], `60.0 ± ${(100 * Math.sqrt(0.02)).toFixed(1)} (seeds) %`);
      assert.equal(v.rows[1]!.columns[0], '–');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
