// chart.ts — one uPlot line chart, theme-aware and decimated to its pixel width, redrawn at most once a frame.
// Decimation only thins what is drawn (the first and last point and each series' min/max per pixel column stay),
// never the data: the chart's note says when it is in effect, and data-first-x / data-last-x / data-points /
// data-drawn tell tests (and the curious) exactly what was drawn.
import uPlot from 'uplot';

import { decimateIndices, take, type Y } from './series';

export interface SeriesDef {
  label: string;
  /** Index into the theme palette (VS Code's --vscode-charts-* colors). */
  color: number;
  width?: number;
  dash?: number[];
}

const PALETTE = ['blue', 'orange', 'green', 'purple', 'red', 'yellow'];

function cssVar(name: string, fallback: string): string {
  return getComputedStyle(document.body).getPropertyValue(name).trim() || fallback;
}

export function themeColor(i: number): string {
  const name = PALETTE[i % PALETTE.length] ?? 'blue';
  return cssVar(`--vscode-charts-${name}`, ['#3794ff', '#d18616', '#89d185', '#b180d7', '#f14c4c', '#cca700'][i % 6] ?? '#3794ff');
}

export class LineChart {
  readonly root: HTMLElement;
  private plot: uPlot | undefined;
  private x: readonly number[] = [];
  private ys: readonly Y[] = [];
  private defs: SeriesDef[];
  private frame = 0;
  /** Points drawn at the last render (tests read it via data-points). */
  private drawn = 0;
  /** Points of the chart's own run (data-points); the x length unless overlays joined more x values in. */
  private points: number | undefined;
  private readonly note = document.createElement('span');

  /** opts.empty: the note while the selected run has no points for this chart (default "no points yet"). */
  constructor(readonly id: string, readonly title: string, defs: SeriesDef[], private readonly opts: { logY?: boolean; format?: (v: number) => string; empty?: string } = {}) {
    this.defs = defs;
    this.root = document.createElement('section');
    this.root.className = 'chart';
    this.root.id = `chart-${id}`;
    const h = document.createElement('h3');
    h.textContent = title;
    this.note.className = 'chart-note';
    h.append(this.note);
    const body = document.createElement('div');
    body.className = 'chart-body';
    this.root.append(h, body);
    new ResizeObserver(() => this.rebuild()).observe(body);
  }

  /** Replaces the data (x ascending; one Y per series def) and schedules a redraw. `points`: the run's own count. */
  setData(x: readonly number[], ys: readonly Y[], defs?: SeriesDef[], points?: number): void {
    this.x = x;
    this.ys = ys;
    this.points = points;
    if (defs && (defs.length !== this.defs.length || defs.some((d, i) => d.label !== this.defs[i]?.label))) {
      this.defs = defs;
      this.plot?.destroy();
      this.plot = undefined;
    }
    this.schedule();
  }

  /** Rebuilds with the current theme colors and size. */
  rebuild(): void {
    this.plot?.destroy();
    this.plot = undefined;
    this.schedule();
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  private render(): void {
    const body = this.root.querySelector<HTMLElement>('.chart-body');
    if (!body) return;
    const width = Math.max(200, body.clientWidth);
    const height = 180;
    const idx = decimateIndices(this.x, this.ys, width);
    const data: uPlot.AlignedData = [take(this.x, idx), ...this.ys.map((y) => take(y, idx))] as uPlot.AlignedData;
    this.drawn = idx.length;
    const drawnX = data[0];
    this.root.dataset.points = String(this.points ?? this.x.length);
    this.root.dataset.drawn = String(this.drawn);
    this.root.dataset.firstX = drawnX.length ? String(drawnX[0]) : '';
    this.root.dataset.lastX = drawnX.length ? String(drawnX[drawnX.length - 1]) : '';
    if (this.x.length === 0) {
      // No points for this run: an empty chart, not the axes of whatever was drawn before (uPlot keeps its scales).
      this.note.textContent = this.opts.empty ?? 'no points yet';
      this.note.title = '';
      this.plot?.destroy();
      this.plot = undefined;
      return;
    }
    const thinned = this.drawn < this.x.length;
    this.note.textContent = thinned ? `downsampled for drawing: ${this.drawn.toLocaleString('en-US')} of ${this.x.length.toLocaleString('en-US')} points` : '';
    this.note.title = thinned ? 'Per pixel column the first, last, lowest and highest point of each series is drawn, so peaks and the last step stay visible; no data is dropped.' : '';
    if (this.plot && (this.plot.width !== width)) this.plot.setSize({ width, height });
    if (this.plot) {
      this.plot.setData(data);
      return;
    }
    const fg = cssVar('--vscode-foreground', '#ccc');
    const grid = cssVar('--vscode-editorWidget-border', 'rgba(128,128,128,0.25)');
    const fmt = this.opts.format ?? ((v: number) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(1) : String(+v.toPrecision(4))));
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    this.plot = new uPlot({
      width, height,
      scales: { x: { time: false }, y: this.opts.logY ? { distr: 3 } : {} },
      legend: { show: this.defs.length > 1 },
      cursor: { drag: { x: true, y: false } },
      axes: [{ ...axis, label: 'step' }, { ...axis, values: (_u, vals) => vals.map((v) => (v == null ? '' : fmt(v))), size: 60 }],
      series: [
        { label: 'step' },
        ...this.defs.map((d) => ({ label: d.label, stroke: themeColor(d.color), width: d.width ?? 1.5, spanGaps: true, points: { show: false }, ...(d.dash ? { dash: d.dash } : {}) })),
      ],
    }, data, body);
  }
}
