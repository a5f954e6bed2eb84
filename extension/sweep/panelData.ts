// panelData.ts — what the sweep results webview shows of one sweep folder (schemas/sweep-messages.schema.json,
// SweepDataMessage), from its files only, like the Sweeps tree (view.ts): sweep-state.json for the cells and their
// state, sweep-results.json for each cell's split, dataset, seed, eval loss and MMLU, and each cell's events.jsonl
// for its loss curve, last step, final loss and median tokens/s; the MMLU difference of the cell's row to the
// baseline row, with its paired bootstrap interval and significance, is that of the matrix column holding the cell
// (sweep-results.json rows[].columns[].diff). Non-finite numbers become null (the schema's Num).
import path from 'node:path';

import type { SweepCellRow, SweepCurve, SweepDataMessage } from '../../schemas/generated/sweep-messages';
import { readSweepResults, readTrainCost, sweepProgress } from './results';
import { cellProgress } from './runner';
import { readState } from './state';

export type SweepData = NonNullable<SweepDataMessage['sweep']>;

const finite = (x: number | null | undefined): number | null => (typeof x === 'number' && Number.isFinite(x) ? x : null);

/** The sweep in folder `dir` (its sweep file `file`), or null when it never started there. Throws on a corrupt state file. */
export function sweepPanelData(dir: string, baseline: string): SweepData | null {
  const state = readState(dir);
  if (!state) return null;
  const results = readSweepResults(dir);
  const cells: SweepCellRow[] = [];
  const curves: SweepCurve[] = [];
  state.cells.forEach((c, index) => {
    if (c.status === 'removed') return;
    const r = results?.cells.find((x) => x.id === c.id);
    const diff = results?.rows.flatMap((row) => row.columns).find((col) => col.cells.includes(c.id))?.diff ?? null;
    const cost = readTrainCost(path.join(c.run_dir, 'events.jsonl'));
    const progress = cellProgress(c.run_dir);
    const losses = cost?.losses ?? [];
    cells.push({
      id: c.id, index, split: r?.split ?? '?', data: r?.data ?? '', seed: r?.seed ?? 0, status: c.status,
      step: progress.step, total_steps: progress.total,
      final_loss: finite(losses.at(-1)?.[1]), eval_loss: finite(r?.eval_loss), tokens_per_s: finite(cost?.tokensPerS),
      mmlu: finite(r?.mmlu?.accuracy), mmlu_se: finite(r?.mmlu?.se),
      delta: finite(diff?.delta), delta_lo: finite(diff?.lo), delta_hi: finite(diff?.hi), significant: diff ? diff.significant : null,
      error: c.status === 'failed' ? (c.error ?? 'see its trainer.log') : null,
    });
    if (losses.length) curves.push({ cellId: c.id, x: losses.map((l) => l[0]), loss: losses.map((l) => finite(l[1])) });
  });
  return {
    name: state.name, dir, baseline: results?.baseline ?? baseline, cells, curves,
    ...sweepProgress(cells),
  };
}
