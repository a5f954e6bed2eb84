// matrix.ts — the sweep's cells as a sortable table: split, dataset, seed, status, step, final loss, eval loss,
// tokens/s and MMLU. A header click sorts by that column (again: the other way); unknown values sort last either
// way. Each row carries data-cell-id and each cell data-key, so tests read exactly what is shown.
import type { SweepCellRow } from '../../schemas/generated/sweep-messages';
import { button } from '../ui/toolkit';

export type SortKey = keyof Pick<SweepCellRow, 'index' | 'split' | 'data' | 'seed' | 'status' | 'step' | 'final_loss' | 'eval_loss' | 'tokens_per_s' | 'mmlu'>;

interface Column {
  key: SortKey;
  label: string;
  show: (c: SweepCellRow) => string;
}

const num = (digits: number) => (v: number | null): string => (v === null ? '–' : v.toFixed(digits));
const COLUMNS: Column[] = [
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

export interface MatrixEvents {
  sort(key: SortKey): void;
  open(cellId: string, what: 'folder' | 'log'): void;
}

export class Matrix {
  readonly root = document.createElement('section');
  private readonly table = document.createElement('table');

  constructor(private readonly on: MatrixEvents) {
    this.root.id = 'matrix';
    const h = document.createElement('h3');
    h.textContent = 'Cells';
    this.root.append(h, this.table);
  }

  render(cells: readonly SweepCellRow[], key: SortKey, dir: 1 | -1): void {
    const head = this.table.createTHead();
    head.replaceChildren();
    const hr = head.insertRow();
    for (const c of COLUMNS) {
      const th = document.createElement('th');
      th.dataset.key = c.key;
      th.textContent = c.label + (c.key === key ? (dir === 1 ? ' ▲' : ' ▼') : '');
      th.title = `Sort by ${c.label.toLowerCase()}`;
      if (c.key === key) th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
      th.addEventListener('click', () => this.on.sort(c.key));
      hr.append(th);
    }
    hr.append(document.createElement('th'));
    const body = document.createElement('tbody');
    for (const cell of sortCells(cells, key, dir)) {
      const tr = body.insertRow();
      tr.dataset.cellId = cell.id;
      tr.dataset.status = cell.status;
      for (const c of COLUMNS) {
        const td = tr.insertCell();
        td.dataset.key = c.key;
        td.textContent = c.show(cell);
        if (c.key === 'status') td.className = `cell-status status-${cell.status}`;
      }
      const actions = tr.insertCell();
      actions.className = 'cell-actions';
      actions.append(
        button('Folder', { appearance: 'secondary', title: 'Reveal the cell\'s run folder', onClick: () => this.on.open(cell.id, 'folder') }),
        button('Log', { appearance: 'secondary', title: 'Open the cell\'s trainer.log', onClick: () => this.on.open(cell.id, 'log') }),
      );
    }
    this.table.querySelector('tbody')?.remove();
    this.table.append(body);
  }
}
