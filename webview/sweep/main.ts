// main.ts — the sweep results webview (browser code: never imports vscode, node:* or extension/). It says `ready`,
// then renders each SweepDataMessage whole: every cell's training loss overlaid on one uPlot chart (the dashboard's
// LineChart, x = optimizer step; cells joined on their steps), and the sortable matrix of the cells with each one's
// MMLU difference to the baseline row and its significance mark; the matrix (results.md / results.csv) is copied to
// the clipboard or saved to a file by the host. The sort and the sweep shown are view state (setState), so a reloaded
// window reopens the same sweep sorted the same way.
import 'uplot/dist/uPlot.min.css';
import '../main.css';
import './sweep.css';

import uPlot from 'uplot';

import type { SweepDataMessage } from '../../schemas/generated/sweep-messages';
import { LineChart, type SeriesDef } from '../charts/chart';
import type { Y } from '../charts/series';
import { button } from '../ui/toolkit';
import { getState, onHostMessage, post, setState } from './channel';
import { isSortKey, type SortKey } from './columns';
import { Matrix } from './matrix';

const view = getState();
let sortKey: SortKey = isSortKey(view.sort.key) ? view.sort.key : 'index';
let sortDir: 1 | -1 = view.sort.dir === -1 ? -1 : 1;
let last: SweepDataMessage | undefined;

const app = document.getElementById('app') as HTMLElement;
app.replaceChildren();
app.dataset.state = 'ready';

const title = document.createElement('h2');
title.id = 'sweep-title';
const summary = document.createElement('p');
summary.id = 'sweep-summary';
const problem = document.createElement('p');
problem.id = 'sweep-problem';
const copy = document.createElement('div');
copy.className = 'actions';
copy.append(
  button('Copy as Markdown', { id: 'btn-copy-md', onClick: () => post({ type: 'copyMatrix', format: 'markdown' }) }),
  button('Copy as CSV', { id: 'btn-copy-csv', onClick: () => post({ type: 'copyMatrix', format: 'csv' }) }),
  button('Save as Markdown…', { id: 'btn-save-md', title: 'Save results.md of this sweep to a file', onClick: () => post({ type: 'saveMatrix', format: 'markdown' }) }),
  button('Save as CSV…', { id: 'btn-save-csv', title: 'Save results.csv of this sweep to a file', onClick: () => post({ type: 'saveMatrix', format: 'csv' }) }),
);
const header = document.createElement('header');
header.append(title, summary, copy);

const chart = new LineChart('cells-loss', 'Training loss of every cell', [], { empty: 'no cell has reported a step yet' });
const matrix = new Matrix({
  sort: (key) => {
    sortDir = key === sortKey ? (sortDir === 1 ? -1 : 1) : 1;
    sortKey = key;
    view.sort = { key, dir: sortDir };
    setState(view);
    if (last?.sweep) matrix.render(last.sweep.cells, sortKey, sortDir);
  },
  open: (cellId, what) => post({ type: 'openCell', cellId, what }),
});
const main = document.createElement('main');
main.append(header, problem, chart.root, matrix.root);
app.append(main);

function render(m: SweepDataMessage): void {
  last = m;
  if (view.sweepFile !== m.sweepFile) {
    view.sweepFile = m.sweepFile; // kept for the serializer: a reloaded window reopens this sweep
    setState(view);
  }
  const s = m.sweep;
  problem.textContent = m.problem ?? '';
  title.textContent = s ? `Sweep ${s.name}` : 'Sweep';
  summary.textContent = s ? `${s.done} / ${s.total} cells done${s.running ? ' · running' : ''} · baseline ${s.baseline} · ${s.dir}` : m.sweepFile;
  main.dataset.done = String(s?.done ?? 0);
  main.dataset.total = String(s?.total ?? 0);
  copy.hidden = !s;
  matrix.root.hidden = !s;
  if (!s) {
    chart.setData([], [], []);
    return;
  }
  matrix.render(s.cells, sortKey, sortDir);
  const label = (id: string): string => {
    const c = s.cells.find((x) => x.id === id);
    return c ? `${c.split}${c.data ? ` · ${c.data}` : ''}${s.cells.some((o) => o.seed !== c.seed) ? ` · seed ${c.seed}` : ''}` : id;
  };
  const defs: SeriesDef[] = s.curves.map((c, i) => ({ label: label(c.cellId), color: i, width: 1.5, ...(i >= 6 ? { dash: [6, 4] } : {}) }));
  const joined = s.curves.length ? uPlot.join(s.curves.map((c) => [c.x, c.loss] as uPlot.AlignedData)) : [[]];
  chart.setData(joined[0] as number[], joined.slice(1) as Y[], defs);
  chart.root.dataset.curves = String(s.curves.length);
}

onHostMessage((m) => {
  if (m.type === 'sweep') render(m);
});

new MutationObserver(() => chart.rebuild()).observe(document.body, { attributes: true, attributeFilter: ['class'] });
window.addEventListener('error', (e) => post({ type: 'log', level: 'error', message: `${e.message} (${e.filename}:${e.lineno})`.slice(0, 2000) }));
document.addEventListener('securitypolicyviolation', (e) => post({ type: 'log', level: 'warn', message: `CSP blocked ${e.violatedDirective}: ${e.blockedURI}`.slice(0, 2000) }));

post({ type: 'ready' });
