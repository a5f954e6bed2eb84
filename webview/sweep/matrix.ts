// matrix.ts — the sweep's cells as a sortable table (columns.ts): split, dataset, seed, status, step, final loss,
// eval loss, tokens/s, MMLU and its difference to the baseline row with the significance mark. A header click sorts
// by that column (again: the other way); unknown values sort last either way. Each row carries data-cell-id and each
// cell data-key (the Δ cell also data-significant), so tests read exactly what is shown.
import type { SweepCellRow } from '../../schemas/generated/sweep-messages';
import { button } from '../ui/toolkit';
import { COLUMNS, type SortKey, sortCells } from './columns';

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
        if (c.key === 'delta' && cell.significant !== null) {
          td.dataset.significant = String(cell.significant);
          td.title = cell.significant
            ? 'Significant: the paired bootstrap\'s 95 % interval (over questions) excludes 0'
            : 'Not significant: the 95 % interval includes 0 (do not read this difference as a result)';
          if (cell.significant) td.classList.add('significant');
        }
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
