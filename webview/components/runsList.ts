// runsList.ts — every run of the workspace: status, duration, final loss; click selects, checkboxes pick runs whose
// loss curves are overlaid; with exactly two checked, "Compare configs" shows the run.json differences.
import type { DiffMessage, RunSummary } from '../../schemas/generated/webview-messages';
import { button, checkbox, setDisabled, tag } from '../ui/toolkit';
import { formatDuration } from './header';

export interface RunsListEvents {
  select(runId: string): void;
  overlay(runIds: string[]): void;
  diff(a: string, b: string): void;
}

export class RunsList {
  readonly root = document.createElement('section');
  private readonly table = document.createElement('table');
  private readonly diffBox = document.createElement('div');
  private readonly compare: HTMLElement;
  private runs: RunSummary[] = [];
  private selected: string | undefined;

  constructor(private checked: string[], private readonly on: RunsListEvents) {
    this.root.id = 'runs';
    const h = document.createElement('h3');
    h.textContent = 'Runs';
    this.compare = button('Compare configs', { id: 'btn-diff', title: 'Check exactly two runs to compare their configs', onClick: () => {
      const [a, b] = this.checked;
      if (a && b) this.on.diff(a, b);
    } });
    this.diffBox.id = 'config-diff';
    this.root.append(h, this.table, this.compare, this.diffBox);
  }

  setRuns(runs: RunSummary[], selected: string | undefined): void {
    this.runs = runs;
    this.selected = selected;
    this.checked = this.checked.filter((id) => runs.some((r) => r.id === id));
    this.render();
  }

  showDiff(m: DiffMessage): void {
    const name = (id: string): string => this.runs.find((r) => r.id === id)?.name ?? id;
    const t = document.createElement('table');
    t.className = 'diff';
    const head = t.createTHead().insertRow();
    for (const c of ['key', name(m.a), name(m.b)]) head.insertCell().textContent = c;
    for (const row of m.rows) {
      const tr = t.insertRow();
      tr.insertCell().textContent = row.key;
      tr.insertCell().textContent = row.a;
      tr.insertCell().textContent = row.b;
    }
    const note = document.createElement('p');
    note.textContent = m.rows.length ? `${m.rows.length} setting(s) differ` : 'The two configs are identical (apart from run name and token files).';
    this.diffBox.replaceChildren(note, ...(m.rows.length ? [t] : []));
  }

  private render(): void {
    const head = document.createElement('thead');
    head.innerHTML = '<tr><th></th><th>Run</th><th>Status</th><th>Steps</th><th>Duration</th><th>Final loss</th></tr>';
    const body = document.createElement('tbody');
    for (const r of this.runs) {
      const tr = document.createElement('tr');
      tr.dataset.runId = r.id;
      if (r.id === this.selected) tr.className = 'selected';
      tr.title = r.message;
      tr.addEventListener('click', () => this.on.select(r.id));
      const cells = [
        checkbox(this.checked.includes(r.id), `overlay ${r.name}`, (on) => {
          this.checked = on ? [...this.checked, r.id].slice(-8) : this.checked.filter((id) => id !== r.id);
          this.on.overlay(this.checked);
          setDisabled(this.compare, this.checked.length !== 2);
        }),
        text(r.name), tag(r.status, `status status-${r.status}`), text(`${r.step}/${r.totalSteps || '?'}`),
        text(formatDuration(r.durationS)), text(r.finalLoss === null ? '—' : r.finalLoss.toFixed(4)),
      ];
      for (const c of cells) {
        const td = document.createElement('td');
        td.append(c);
        tr.append(td);
      }
      body.append(tr);
    }
    this.table.replaceChildren(head, body);
    setDisabled(this.compare, this.checked.length !== 2);
  }
}

function text(s: string): Text {
  return document.createTextNode(s);
}
