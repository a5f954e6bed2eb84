// view.ts — what the "H-QLoRA Sweeps" view shows of one sweep folder, from its files only (sweep-state.json,
// sweep-results.json, each cell's events.jsonl), so it is the same whether the sweep runs in this window, in a
// terminal (`hqlora sweep`), or ran before a reload:
//   cells   one line per cell: its state (queued / training k/N · loss / scoring / done · MMLU / failed: why)
//   matrix  one line per row (split) and dataset: MMLU ± se, Δ to the baseline row [95 % CI] with * when significant
import { readSweepResults, sweepProgress } from './results';
import { cellProgress } from './runner';
import { readState } from './state';

export interface SweepViewCell {
  id: string;
  status: string;
  /** queued · training 5/16 · loss 1.234 · scoring · done · MMLU 31.7 % · failed: <why> */
  description: string;
  runDir: string;
}

export interface SweepViewRow {
  split: string;
  /** `completion 31.7 ± 6.0 % · Δ +1.7 [−3.3, +6.7]*`, one entry per dataset column. */
  columns: string[];
}

export interface SweepView {
  name: string;
  done: number;
  total: number;
  running: boolean;
  cells: SweepViewCell[];
  rows: SweepViewRow[];
}

const pct = (x: number): string => (100 * x).toFixed(1);
const signed = (x: number): string => `${x >= 0 ? '+' : '−'}${pct(Math.abs(x))}`;

/** The view of the sweep folder `dir`; undefined when the sweep never started there. */
export function sweepView(dir: string): SweepView | undefined {
  const state = readState(dir);
  if (!state) return undefined;
  const results = readSweepResults(dir);
  const cells = state.cells.filter((c) => c.status !== 'removed').map((c): SweepViewCell => {
    const r = results?.cells.find((x) => x.id === c.id);
    let description: string = c.status;
    if (c.status === 'training') {
      const p = cellProgress(c.run_dir);
      description = `training ${p.step}/${p.total > 0 ? p.total : '?'}${p.loss !== null ? ` · loss ${p.loss.toFixed(3)}` : ''}`;
    } else if (c.status === 'evaluating') {
      description = 'scoring';
    } else if (c.status === 'done') {
      description = r?.mmlu ? `done · MMLU ${pct(r.mmlu.accuracy)} %` : 'done';
    } else if (c.status === 'failed') {
      description = `failed: ${c.error ?? 'see its trainer.log'}`;
    }
    return { id: c.id, status: c.status, description, runDir: c.run_dir };
  });
  const rows = (results?.rows ?? []).map((row): SweepViewRow => ({
    split: row.split + Object.entries(row.extra).map(([k, v]) => ` ${k}=${String(v)}`).join(''),
    columns: row.columns.map((col) => {
      const label = col.data ? `${col.data} ` : '';
      if (col.mmlu === null) return `${label}–`;
      const pm = col.mmlu_std !== null ? ` ± ${pct(col.mmlu_std)} (seeds)` : col.mmlu_se !== null ? ` ± ${pct(col.mmlu_se)}` : '';
      const d = col.diff ? ` · Δ ${signed(col.diff.delta)} [${signed(col.diff.lo)}, ${signed(col.diff.hi)}]${col.diff.significant ? '*' : ''}` : '';
      return `${label}${pct(col.mmlu)}${pm} %${d}`;
    }),
  }));
  return {
    name: state.name, cells, rows,
    ...sweepProgress(cells),
  };
}
