// columns.ts — what the sweep matrix shows of a cell, column by column, and its sort; pure (no DOM), so the unit tests
// read the same text the panel draws. Δ MMLU is the cell's row against the baseline row on its dataset, in points,
// with the paired bootstrap's 95 % interval; `*` marks an interval that excludes 0 (as in results.md).
import type { SweepCellRow } from '../../schemas/generated/sweep-messages';

export type SortKey = keyof Pick<SweepCellRow, 'index' | 'split' | 'data' | 'seed' | 'status' | 'step' | 'final_loss' | 'eval_loss' | 'tokens_per_s' | 'mmlu' | 'delta'>;

export interface Column {
  key: SortKey;
  label: string;
  show: (c: SweepCellRow) => string;
}

const num = (digits: number) => (v: number | null): string => (v === null ? '–' : v.toFixed(digits));
const points = (x: number): string => `${x >= 0 ? '+' : '−'}${Math.abs(100 * x).toFixed(1)}`;

/** "+30.0 [+10.0, +50.0] *": the difference to the baseline row in MMLU points, its 95 % interval, * when significant. */
export function deltaText(c: Pick<SweepCellRow, 'delta' | 'delta_lo' | 'delta_hi' | 'significant'>): string {
  if (c.delta === null) return '–';
  const ci = c.delta_lo !== null && c.delta_hi !== null ? ` [${points(c.delta_lo)}, ${points(c.delta_hi)}]` : '';
  return `${points(c.delta)}${ci}${c.significant ? ' *' : ''}`;
}

export const COLUMNS: Column[] = [
  { key: 'index', label: 'Cell', show: (c) => c.id },
  { key: 'split', label: 'Split', show: (c) => c.split },
  { key: 'data', label: 'Data', show: (c) => c.data || '–' },
  { key: 'seed', label: 'Seed', show: (c) => String(c.seed) },
  { key: 'status', label: 'Status', show: (c) => (c.status === 'failed' ? `failed: ${c.error ?? ''}` : c.status) },
  { key: 'step', label: 'Step', show: (c) => (c.total_steps ? `${c.step} / ${c.total_steps}` : '–') },
  { key: 'final_loss', label: 'Final loss', show: (c) => num(4)(c.final_loss) },
  { key: 'eval_loss', label: 'Eval loss', show: (c) => num(4)(c.eval_loss) },
  { key: 'tokens_per_s', label: 'Tok/s', show: (c) => num(0)(c.tokens_per_s) },
  { key: 'mmlu', label: 'MMLU %', show: (c) => (c.mmlu === null ? '–' : `${(100 * c.mmlu).toFixed(1)}${c.mmlu_se === null ? '' : ` ± ${(100 * c.mmlu_se).toFixed(1)}`}`) },
  { key: 'delta', label: 'Δ MMLU [95% CI]', show: deltaText },
];

export const isSortKey = (k: string): k is SortKey => COLUMNS.some((c) => c.key === k);

/** Sorted copy: by `key` in `dir` (1 ascending, -1 descending), nulls last, ties by sweep order. */
export function sortCells(cells: readonly SweepCellRow[], key: SortKey, dir: 1 | -1): SweepCellRow[] {
  return [...cells].sort((a, b) => {
    const x = a[key];
    const y = b[key];
    if (x === null || y === null) return x === y ? a.index - b.index : x === null ? 1 : -1;
    const d = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y), 'en', { numeric: true });
    return d !== 0 ? dir * d : a.index - b.index;
  });
}
