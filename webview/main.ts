// main.ts — the dashboard webview (browser code: never imports vscode, node:* or extension/). It says `ready`,
// then renders what the host sends: the runs list, the selected run's header and its metrics, appended
// incrementally to column arrays and drawn by uPlot charts decimated to their pixel width.
//
// One selected run drives the header, facts, actions, tooltips, charts and exports. The host owns the selection:
// clicking a run only asks for it (selectRun); the switch happens when the host's MetricsMessage with reset=true
// for that run arrives, and then everything is redrawn from it in the same task. Overlaid runs are extra dashed
// series on the loss chart, clipped to the selected run's steps; they never change the selection.
import 'uplot/dist/uPlot.min.css';
import './main.css';

import uPlot from 'uplot';

import type { Columns, HostToWebview, MetricsMessage, OutputsMessage, OverlayMessage, RunSummary } from '../schemas/generated/webview-messages';
import { LineChart, type SeriesDef } from './charts/chart';
import { Ema, type Y } from './charts/series';
import { Header } from './components/header';
import { Outputs } from './components/outputs';
import { RunsList } from './components/runsList';
import { getState, onHostMessage, post, setState } from './vscode';

const view = getState();
const STEP_KEYS = ['loss', 'lr', 'grad_norm', 'tokens_per_s', 'memory_bytes'] as const;

/** The selected run (runId, as the host confirmed it) and its series (column arrays that only grow until a reset). */
const data = {
  runId: undefined as string | undefined,
  steps: { x: [] as number[], loss: [] as Y, lr: [] as Y, grad_norm: [] as Y, tokens_per_s: [] as Y, memory_bytes: [] as Y },
  smooth: [] as Y,
  ema: new Ema(view.smoothing),
  evals: { x: [] as number[], eval_loss: [] as Y },
  levels: { x: [] as number[], series: [] as Y[] },
  overlay: [] as OverlayMessage['curves'],
};
let runs: RunSummary[] = [];
/** The latest OutputsMessage; shown only while its runId is the selected run. */
let outputs: OutputsMessage | undefined;

const app = document.getElementById('app') as HTMLElement;
app.replaceChildren();
app.dataset.state = 'ready';

const header = new Header((action, runId) => post({ type: 'action', action, runId }));
const exportsBox = new Outputs((output, what) => data.runId && post({ type: 'openOutput', runId: data.runId, output, what }));
const list = new RunsList(view.overlay, {
  // Only a request: the host answers with the run's history (reset), and render() switches everything then.
  select: (runId) => post({ type: 'selectRun', runId }),
  overlay: (runIds) => {
    view.overlay = runIds;
    setState(view);
    post({ type: 'setOverlay', runIds });
  },
  diff: (a, b) => post({ type: 'requestDiff', a, b }),
});

const mib = (v: number): string => `${(v / 2 ** 20).toFixed(v < 10 * 2 ** 20 ? 1 : 0)} MiB`;
const charts = {
  loss: new LineChart('loss', 'Training loss', [{ label: 'loss', color: 0, width: 1 }, { label: 'smoothed', color: 1, width: 2 }]),
  eval: new LineChart('eval', 'Eval loss', [{ label: 'eval loss', color: 2, width: 2 }], { empty: 'no evaluation yet (every eval.every_steps steps)' }),
  lr: new LineChart('lr', 'Learning rate', [{ label: 'lr', color: 3 }]),
  grad: new LineChart('grad', 'Gradient norm (before clipping)', [{ label: 'grad norm', color: 4 }]),
  tps: new LineChart('tps', 'Tokens / s', [{ label: 'tokens/s', color: 0 }]),
  mem: new LineChart('mem', 'Memory', [{ label: 'memory', color: 5 }], { format: mib }),
  levels: new LineChart('levels', 'Adapter update norm per level ‖s·B·A‖', [], { logY: true }),
};

const smoothing = document.createElement('label');
smoothing.className = 'smoothing';
const slider = document.createElement('input');
slider.type = 'range';
slider.id = 'smoothing';
slider.min = '0';
slider.max = '0.99';
slider.step = '0.01';
slider.value = String(view.smoothing);
const sliderValue = document.createElement('span');
sliderValue.textContent = view.smoothing.toFixed(2);
smoothing.append('Smoothing ', slider, sliderValue);
slider.addEventListener('input', () => {
  view.smoothing = Number(slider.value);
  sliderValue.textContent = view.smoothing.toFixed(2);
  setState(view);
  resmooth();
  drawLoss();
});

const grid = document.createElement('div');
grid.className = 'charts';
grid.append(...Object.values(charts).map((c) => c.root));
charts.loss.root.querySelector('h3')?.after(smoothing);
const main = document.createElement('main');
main.append(header.root, exportsBox.root, grid, list.root);
app.append(main);

function resmooth(): void {
  data.ema = new Ema(view.smoothing);
  data.smooth = data.steps.loss.map((v) => data.ema.push(v));
}

function appendColumns(target: Record<string, unknown[]>, cols: Columns, keys: readonly string[]): void {
  const add = (dst: unknown[], src: unknown[] | undefined): void => {
    // push in slices: spreading 100k arguments at once can overflow the call stack
    for (let i = 0; src && i < src.length; i += 10000) dst.push(...src.slice(i, i + 10000));
  };
  add(target.x as unknown[], cols.x);
  for (const k of keys) add(target[k] as unknown[], cols[k]);
}

function onMetrics(m: MetricsMessage): void {
  const switched = m.runId !== data.runId;
  if (m.reset || switched) {
    data.runId = m.runId;
    if (view.selected !== m.runId) {
      view.selected = m.runId; // kept for the serializer: a reloaded window reopens on this run
      setState(view);
    }
    data.steps = { x: [], loss: [], lr: [], grad_norm: [], tokens_per_s: [], memory_bytes: [] };
    data.evals = { x: [], eval_loss: [] };
    data.levels = { x: [], series: [] };
    resmooth();
  }
  appendColumns(data.steps, m.steps, STEP_KEYS);
  for (const v of (m.steps.loss ?? []) as Y) data.smooth.push(data.ema.push(v));
  appendColumns(data.evals, m.evals, ['eval_loss']);
  const n = data.levels.x.length;
  data.levels.x.push(...m.levels.x);
  Object.keys(m.levels).filter((k) => k.startsWith('level')).forEach((k) => {
    const i = Number(k.slice(5));
    const s = (data.levels.series[i] ??= new Array<number | null>(n).fill(null));
    s.push(...((m.levels[k] ?? []) as Y));
  });
  if (m.reset || switched) render();
  drawAll();
}

/** An overlay curve limited to the selected run's steps [first, last] (all of it when the run has no points yet). */
function clip(c: OverlayMessage['curves'][number], first: number | undefined, last: number | undefined): uPlot.AlignedData {
  if (first === undefined || last === undefined) return [c.x, c.loss];
  let i = 0;
  while (i < c.x.length && (c.x[i] ?? 0) < first) i++;
  let j = c.x.length;
  while (j > i && (c.x[j - 1] ?? 0) > last) j--;
  return [c.x.slice(i, j), c.loss.slice(i, j)];
}

function drawLoss(): void {
  const main: uPlot.AlignedData = [data.steps.x, data.steps.loss, data.smooth];
  const others = data.overlay.filter((c) => c.runId !== data.runId);
  const defs: SeriesDef[] = [{ label: 'loss', color: 0, width: 1 }, { label: 'smoothed', color: 1, width: 2 },
    ...others.map((c, i) => ({ label: `${c.name} (overlay)`, color: 2 + i, width: 1.5, dash: [6, 4] }))];
  if (!others.length) {
    charts.loss.setData(data.steps.x, [data.steps.loss, data.smooth], defs);
    return;
  }
  const x = data.steps.x;
  const joined = uPlot.join([main, ...others.map((c) => clip(c, x[0], x[x.length - 1]))]);
  charts.loss.setData(joined[0] as number[], joined.slice(1) as Y[], defs, x.length);
}

function drawAll(): void {
  drawLoss();
  const s = data.steps;
  charts.eval.setData(data.evals.x, [data.evals.eval_loss]);
  charts.lr.setData(s.x, [s.lr]);
  charts.grad.setData(s.x, [s.grad_norm]);
  charts.tps.setData(s.x, [s.tokens_per_s]);
  charts.mem.setData(s.x, [s.memory_bytes]);
  const defs = data.levels.series.map((_, i) => ({ label: `level ${i}`, color: i }));
  charts.levels.setData(data.levels.x, data.levels.series, defs);
}

/** Header, facts, actions and exports of the selected run, and the runs list's highlight: all from data.runId. */
function render(): void {
  const selected = runs.find((r) => r.id === data.runId);
  const out = outputs && outputs.runId === selected?.id ? outputs : undefined;
  header.setRun(selected, out?.busy ?? null);
  exportsBox.set(out, selected?.status === 'completed');
  list.setRuns(runs, selected?.id);
}

onHostMessage((m: HostToWebview) => {
  switch (m.type) {
    case 'init':
      // The selected run's outputs and history follow (the host restored the selection from this webview's state).
      runs = m.runs;
      header.setCommands(m.commands);
      render();
      if (view.overlay.length) post({ type: 'setOverlay', runIds: view.overlay });
      break;
    case 'runs':
      runs = m.runs;
      render();
      break;
    case 'metrics':
      onMetrics(m);
      break;
    case 'overlay':
      data.overlay = m.curves;
      drawLoss();
      break;
    case 'outputs':
      outputs = m;
      if (m.runId === data.runId) render();
      break;
    case 'diff':
      list.showDiff(m);
      break;
  }
});

// Theme switches change the --vscode-* variables: rebuild the charts with the new colors.
new MutationObserver(() => Object.values(charts).forEach((c) => c.rebuild())).observe(document.body, { attributes: true, attributeFilter: ['class'] });
window.addEventListener('error', (e) => post({ type: 'log', level: 'error', message: `${e.message} (${e.filename}:${e.lineno})`.slice(0, 2000) }));
document.addEventListener('securitypolicyviolation', (e) => post({ type: 'log', level: 'warn', message: `CSP blocked ${e.violatedDirective}: ${e.blockedURI}`.slice(0, 2000) }));

post({ type: 'ready' });
