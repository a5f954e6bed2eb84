// results.ts — the sweep's matrix (schemas/sweep-results.schema.json), laid out like the paper's Table 2: rows are
// rank splits (with any other non-data, non-seed axis values), columns are datasets × metrics. Built from each
// finished cell's eval.json (`hqlora eval` on its run folder) and events.jsonl (training time, throughput, memory).
//
// MMLU here is the micro average (correct / questions), the Hendrycks "average accuracy"; the categories are micro
// averages over their subjects' questions. Uncertainty: the binomial standard error of each score, the sample std
// across seeds, and a paired bootstrap over questions of each row's difference to the baseline row (same dataset,
// same seeds, same questions; stats.ts), with its 95 % interval and a significance mark.
import { readFileSync } from 'node:fs';
import path from 'node:path';

import type { EvalResultEvent } from '../../schemas/generated/trainer-events';
import type { CellResult, Column, Row, SweepResults } from '../../schemas/generated/sweep-results';
import { num } from '../core/format';
import { readEventFile } from '../job/events';
import { CATEGORIES, CATEGORY_LABELS, type Category, categoryOf } from './categories';
import type { LoadedSweep, SweepCell } from './spec';
import type { StateCell } from './state';
import { validateSweepResults } from './schemas';
import { meanStd, pairedBootstrap, standardError } from './stats';

/** The matrix file of a sweep folder (runner.ts writes it). */
export const RESULTS_JSON = 'sweep-results.json';

/** sweep-results.json when it is there and matches its schema (it is written atomically, so a read is whole). */
export function readSweepResults(dir: string): SweepResults | undefined {
  try {
    const v: unknown = JSON.parse(readFileSync(path.join(dir, RESULTS_JSON), 'utf8'));
    return validateSweepResults(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** How far a sweep is: its cells done, all its cells, and whether one is training or evaluating now. */
export function sweepProgress(cells: readonly { status: string }[]): { done: number; total: number; running: boolean } {
  return {
    done: cells.filter((c) => c.status === 'done').length,
    total: cells.length,
    running: cells.some((c) => c.status === 'training' || c.status === 'evaluating'),
  };
}

export type { SweepResults };

/** What one cell contributed: its state, its eval table (when scored) and its training cost. */
export interface CellOutcome {
  cell: SweepCell;
  state: StateCell;
  eval: EvalResultEvent | null;
  train: TrainCost | null;
  adapterSha256: string | null;
}

export interface TrainCost {
  /** Seconds of training summed over the run's trainer processes (each process's last step elapsed_s). */
  trainS: number;
  /** Median tokens_per_s of the step events. */
  tokensPerS: number;
  /** Largest memory_bytes of any step. */
  peakBytes: number;
  /** Loss per optimizer step, the last report of each step (a step run again after a kill counts once). */
  losses: [number, number][];
}

/** The training cost and loss curve of a run, from its events.jsonl (schema-validated lines only). */
export function readTrainCost(eventsFile: string): TrainCost | null {
  let trainS = 0;
  let segment = 0;
  const tps: number[] = [];
  let peak = 0;
  const losses = new Map<number, number>();
  readEventFile(eventsFile, {
    event: (e) => {
      if (e.type === 'start') {
        trainS += segment;
        segment = 0;
      } else if (e.type === 'step') {
        segment = num(e.elapsed_s);
        tps.push(num(e.tokens_per_s));
        peak = Math.max(peak, e.memory_bytes);
        losses.set(e.step, num(e.loss));
      }
    },
  });
  trainS += segment;
  if (tps.length === 0) return null;
  tps.sort((a, b) => a - b);
  const median = tps.length % 2 ? tps[(tps.length - 1) / 2]! : (tps[tps.length / 2 - 1]! + tps[tps.length / 2]!) / 2;
  return { trainS, tokensPerS: median, peakBytes: peak, losses: [...losses.entries()].sort((a, b) => a[0] - b[0]) };
}

/** The eval row of the whole adapter (most levels), and the ablation rows (levels ≥ 1). */
function adapterRow(r: EvalResultEvent): EvalResultEvent['rows'][number] | undefined {
  return r.rows.reduce<EvalResultEvent['rows'][number] | undefined>((best, row) => (row.levels > (best?.levels ?? 0) ? row : best), undefined);
}

/** 1/0 per question: did the whole adapter answer it right (null without per-question predictions). */
function correctness(r: EvalResultEvent): number[] | null {
  const row = adapterRow(r);
  if (!row?.predictions || typeof r.answers !== 'string' || row.predictions.length !== r.answers.length) return null;
  return [...row.predictions].map((p, i) => (p === r.answers![i] ? 1 : 0));
}

function categoryAccuracy(row: EvalResultEvent['rows'][number] | undefined): Record<Category, number | null> {
  const acc: Record<Category, [number, number]> = { stem: [0, 0], humanities: [0, 0], social_sciences: [0, 0], other: [0, 0] };
  for (const s of row?.mcq?.subjects ?? []) {
    const c = categoryOf(s.subject);
    if (!c) continue;
    acc[c][0] += s.correct;
    acc[c][1] += s.n;
  }
  const out = {} as Record<Category, number | null>;
  for (const c of CATEGORIES) out[c] = acc[c][1] > 0 ? acc[c][0] / acc[c][1] : null;
  return out;
}

const mean = (xs: number[]): number | null => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);

function rowKeyOf(c: SweepCell): string {
  const extras = Object.entries(c.extra).map(([k, v]) => `${k.split('.').at(-1) ?? k}=${String(v)}`);
  return [c.split, ...extras].join(' · ');
}

export function buildResults(sweep: LoadedSweep, outcomes: CellOutcome[]): SweepResults {
  const datasets = [...new Set(sweep.cells.map((c) => c.data))];
  const seeds = [...new Set(sweep.cells.map((c) => c.seed))];
  const rowKeys = [...new Set(sweep.cells.map(rowKeyOf))];
  const byRow = new Map<string, CellOutcome[]>();
  for (const o of outcomes) {
    const k = rowKeyOf(o.cell);
    byRow.set(k, [...(byRow.get(k) ?? []), o]);
  }
  const scored = (o: CellOutcome): boolean => o.state.status === 'done' && o.eval !== null;

  const columnOf = (os: CellOutcome[], data: string): Omit<Column, 'diff' | 'time_vs_baseline'> => {
    const cs = os.filter((o) => o.cell.data === data).sort((a, b) => a.cell.seed - b.cell.seed);
    const done = cs.filter(scored);
    const accs = done.map((o) => adapterRow(o.eval!)?.mcq?.accuracy).filter((x): x is number => x !== undefined);
    const ses = done.map((o) => {
      const m = adapterRow(o.eval!)?.mcq;
      return m ? standardError(m.accuracy, m.n) : undefined;
    }).filter((x): x is number => x !== undefined);
    const cats = done.map((o) => categoryAccuracy(adapterRow(o.eval!)));
    const categories = {} as Column['categories'];
    for (const c of CATEGORIES) categories[c] = mean(cats.map((x) => x[c]).filter((x): x is number => x !== null));
    const losses = done.map((o) => adapterRow(o.eval!)?.eval_loss).filter((x) => x !== undefined).map((x) => num(x));
    const costs = done.map((o) => o.train).filter((t): t is TrainCost => t !== null);
    const levels = Math.max(0, ...done.map((o) => adapterRow(o.eval!)?.levels ?? 0));
    const ablation: Column['ablation'] = [];
    if (sweep.eval.ablation && levels > 1) {
      for (let l = 1; l <= levels; l++) {
        const rows = done.map((o) => o.eval!.rows.find((r) => r.levels === l)).filter((r) => r !== undefined);
        ablation.push({ levels: l, ranks: rows[0]?.ranks ?? [], mmlu: mean(rows.map((r) => r.mcq?.accuracy).filter((x): x is number => x !== undefined)) });
      }
    }
    const st = meanStd(accs);
    return {
      data, cells: cs.map((o) => o.cell.id), done: done.length,
      mmlu: accs.length ? st.mean : null, mmlu_se: mean(ses), mmlu_std: st.std, categories,
      eval_loss: mean(losses.filter((x) => Number.isFinite(x))),
      train_s: mean(costs.map((t) => t.trainS)), tokens_per_s: mean(costs.map((t) => t.tokensPerS)),
      peak_memory_bytes: costs.length ? Math.max(...costs.map((t) => t.peakBytes)) : null,
      ablation,
    };
  };

  const baselineKey = (k: string): string => [sweep.baseline, ...k.split(' · ').slice(1)].join(' · ');
  const rows: Row[] = rowKeys.map((key) => {
    const os = byRow.get(key) ?? [];
    const first = sweep.cells.find((c) => rowKeyOf(c) === key)!;
    return { key, split: first.split, ranks: first.ranks, extra: first.extra, columns: datasets.map((d) => ({ ...columnOf(os, d), diff: null, time_vs_baseline: null })) };
  });
  // Differences to the baseline row: the same dataset, the seeds both have scored, the same questions.
  for (const row of rows) {
    const base = rows.find((r) => r.key === baselineKey(row.key));
    if (!base) continue;
    row.columns.forEach((col, j) => {
      const bcol = base.columns[j]!;
      if (col.train_s !== null && bcol.train_s !== null && bcol.train_s > 0) col.time_vs_baseline = col.train_s / bcol.train_s - 1;
      if (base === row) return;
      const pairs: [number[], number[]][] = [];
      for (const id of col.cells) {
        const o = outcomes.find((x) => x.cell.id === id);
        const b = o && outcomes.find((x) => bcol.cells.includes(x.cell.id) && x.cell.seed === o.cell.seed);
        if (!o || !b || !scored(o) || !scored(b)) continue;
        const x = correctness(o.eval!), y = correctness(b.eval!);
        if (x && y && x.length === y.length && o.eval!.answers === b.eval!.answers) pairs.push([x, y]);
      }
      if (pairs.length === 0 || pairs[0]![0].length === 0) return;
      const r = pairedBootstrap(pairs.map((p) => p[0]), pairs.map((p) => p[1]), sweep.bootstrap);
      col.diff = { delta: r.delta, lo: r.lo, hi: r.hi, significant: r.significant };
    });
  }

  const firstEval = outcomes.find((o) => o.eval !== null)?.eval;
  const cells: CellResult[] = outcomes.map((o) => {
    const m = o.eval ? adapterRow(o.eval)?.mcq : undefined;
    const loss = o.eval ? adapterRow(o.eval)?.eval_loss : undefined;
    return {
      id: o.cell.id, status: o.state.status, run_dir: o.state.run_dir, split: o.cell.split, data: o.cell.data, seed: o.cell.seed,
      adapter_sha256: o.adapterSha256,
      mmlu: m ? { n: m.n, correct: m.correct, accuracy: m.accuracy, se: standardError(m.accuracy, m.n) } : null,
      eval_loss: loss === undefined || !Number.isFinite(num(loss)) ? null : num(loss),
      error: o.state.error ?? null,
    };
  });
  return {
    v: 1, name: sweep.name, sweep_file: sweep.file, baseline: sweep.baseline, datasets, seeds,
    mmlu: sweep.eval.mmlu ? { path: sweep.eval.mmlu.path, shots: sweep.eval.mmlu.shots, split: sweep.eval.mmlu.split, questions: firstEval?.questions ?? 0 } : null,
    bootstrap: { samples: sweep.bootstrap.samples, seed: sweep.bootstrap.seed, level: 0.95 },
    rows, cells,
  };
}

const pct = (x: number | null, d = 1): string => (x === null ? '–' : (100 * x).toFixed(d));
const signedPct = (x: number): string => `${x >= 0 ? '+' : '−'}${Math.abs(100 * x).toFixed(1)}`;

function mmluCell(c: Column, seeds: number): string {
  if (c.mmlu === null) return '–';
  const spread = seeds > 1 && c.mmlu_std !== null ? ` ± ${pct(c.mmlu_std)}` : ` ± ${pct(c.mmlu_se)}`;
  return `${pct(c.mmlu)}${spread}`;
}

function diffCell(c: Column): string {
  if (!c.diff) return '–';
  return `${signedPct(c.diff.delta)} [${signedPct(c.diff.lo)}, ${signedPct(c.diff.hi)}]${c.diff.significant ? ' *' : ''}`;
}

/** results.md: the matrix, then the level ablation, then how to read it. */
export function resultsMarkdown(r: SweepResults): string {
  const seeds = r.seeds.length;
  const multi = r.datasets.length > 1;
  const head = ['split'];
  for (const d of r.datasets) {
    const p = multi || d ? `${d} ` : '';
    head.push(`${p}MMLU %`, `${p}Δ vs ${r.baseline} [95% CI]`, ...CATEGORIES.map((c) => `${p}${CATEGORY_LABELS[c]} %`), `${p}eval loss`, `${p}time`, `${p}tok/s`, `${p}peak MiB`);
  }
  const lines = [
    `# Sweep ${r.name}`,
    '',
    `- sweep file: ${r.sweep_file}`,
    ...(r.mmlu ? [`- MMLU: ${r.mmlu.path}, ${r.mmlu.split} split, ${r.mmlu.shots}-shot, ${r.mmlu.questions} questions; micro average over questions`] : []),
    `- ${seeds > 1 ? `mean ± std over ${seeds} seeds (${r.seeds.join(', ')})` : 'MMLU ± its standard error sqrt(p(1-p)/n)'}; Δ: paired bootstrap over questions (${r.bootstrap.samples} resamples, seed ${r.bootstrap.seed}) of the difference to the ${r.baseline} row, 95 % percentile interval, * = the interval excludes 0`,
    `- time: training seconds, with the change relative to the ${r.baseline} row`,
    '',
    `| ${head.join(' | ')} |`,
    `| ${head.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
  ];
  for (const row of r.rows) {
    const cells = [row.key];
    for (const c of row.columns) {
      const time = c.train_s === null ? '–' : `${c.train_s.toFixed(1)} s${c.time_vs_baseline !== null && row.split !== r.baseline ? ` (${signedPct(c.time_vs_baseline)} %)` : ''}`;
      cells.push(mmluCell(c, seeds), diffCell(c), ...CATEGORIES.map((k) => pct(c.categories[k])),
        c.eval_loss === null ? '–' : c.eval_loss.toFixed(4), time, c.tokens_per_s === null ? '–' : c.tokens_per_s.toFixed(0),
        c.peak_memory_bytes === null ? '–' : (c.peak_memory_bytes / 2 ** 20).toFixed(1));
    }
    lines.push(`| ${cells.join(' | ')} |`);
  }
  const abl = r.rows.filter((row) => row.columns.some((c) => c.ablation.length > 0));
  if (abl.length) {
    lines.push('', '## Level ablation (MMLU % with levels 1, 1–2, ..., all)', '');
    const maxL = Math.max(...abl.flatMap((row) => row.columns.map((c) => c.ablation.length)));
    const h = ['split', 'data', ...Array.from({ length: maxL }, (_, i) => (i === 0 ? 'L1' : `L1–${i + 1}`))];
    lines.push(`| ${h.join(' | ')} |`, `| ${h.map((_, i) => (i < 2 ? '---' : '---:')).join(' | ')} |`);
    for (const row of abl) {
      for (const c of row.columns) {
        if (!c.ablation.length) continue;
        lines.push(`| ${row.key} | ${c.data} | ${Array.from({ length: maxL }, (_, i) => pct(c.ablation[i]?.mmlu ?? null)).join(' | ')} |`);
      }
    }
  }
  const failed = r.cells.filter((c) => c.status === 'failed');
  if (failed.length) lines.push('', '## Failed cells', '', ...failed.map((c) => `- ${c.id}: ${c.error ?? 'failed'}`));
  return `${lines.join('\n')}\n`;
}

const csvField = (v: string | number | boolean | null): string => {
  const s = v === null ? '' : String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};

/** results.csv: one line per row × dataset, every metric in its own column (fractions, seconds, bytes). */
export function resultsCsv(r: SweepResults): string {
  const head = ['split', 'row', 'data', 'cells_done', 'mmlu', 'mmlu_se', 'mmlu_std', 'delta_vs_baseline', 'delta_lo', 'delta_hi', 'significant',
    ...CATEGORIES, 'eval_loss', 'train_s', 'time_vs_baseline', 'tokens_per_s', 'peak_memory_bytes'];
  const lines = [head.join(',')];
  for (const row of r.rows) {
    for (const c of row.columns) {
      lines.push([row.split, row.key, c.data, c.done, c.mmlu, c.mmlu_se, c.mmlu_std, c.diff?.delta ?? null, c.diff?.lo ?? null, c.diff?.hi ?? null,
        c.diff ? c.diff.significant : null, ...CATEGORIES.map((k) => c.categories[k]), c.eval_loss, c.train_s, c.time_vs_baseline, c.tokens_per_s,
        c.peak_memory_bytes].map(csvField).join(','));
    }
  }
  return `${lines.join('\n')}\n`;
}
