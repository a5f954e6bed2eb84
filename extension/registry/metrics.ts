// metrics.ts — a run's time series, built from its validated trainer events, column-wise (what uPlot draws), beside
// what the one event reader (job/events.ts) keeps of the stream: its start, last step, done and error events.
//
// Columns only grow; `generation` changes when the history is replaced (events.jsonl truncated or rotated), so a
// reader that remembers (generation, lengths) can ask for exactly what is new (see dashboard/panel.ts).
import type { Columns } from '../../schemas/generated/webview-messages';
import type {
  AdapterStatsEvent, DoneEvent, ErrorEvent, EvalEvent, StartEvent, StepEvent, TrainerEvent,
} from '../../schemas/generated/trainer-events';
import { num } from '../core/format';
import type { TrainerEventReader } from '../job/events';

export const STEP_KEYS = ['loss', 'lr', 'grad_norm', 'tokens_per_s', 'memory_bytes'] as const;

/** A number for JSON: non-finite values become null (a gap in the chart). */
const v = (x: StepEvent['loss']): number | null => {
  const n = num(x);
  return Number.isFinite(n) ? n : null;
};

export interface Cursor {
  generation: number;
  steps: number;
  evals: number;
  levels: number;
}

export class RunMetrics {
  generation = 0;
  steps: { x: number[] } & Record<(typeof STEP_KEYS)[number], (number | null)[]> = RunMetrics.emptySteps();
  evals = { x: [] as number[], eval_loss: [] as (number | null)[] };
  levels: { x: number[]; series: (number | null)[][] } = { x: [], series: [] };

  /** `reader` is the run's event reader, which feeds add() with each event it read. */
  constructor(private readonly reader: TrainerEventReader) {}

  get start(): StartEvent | undefined {
    return this.reader.start;
  }

  get lastStep(): StepEvent | undefined {
    return this.reader.lastStep;
  }

  get done(): DoneEvent | undefined {
    return this.reader.done;
  }

  get error(): ErrorEvent | undefined {
    return this.reader.error;
  }

  /** The latest event time (Unix seconds), 0 before the first event. */
  get lastTime(): number {
    return this.reader.lastTime;
  }

  private static emptySteps(): RunMetrics['steps'] {
    return { x: [], loss: [], lr: [], grad_norm: [], tokens_per_s: [], memory_bytes: [] };
  }

  /** The history is replaced (events.jsonl truncated or rotated): the series and the reader start over. */
  reset(): void {
    this.generation++;
    this.steps = RunMetrics.emptySteps();
    this.evals = { x: [], eval_loss: [] };
    this.levels = { x: [], series: [] };
    this.reader.reset();
  }

  add(e: TrainerEvent): void {
    switch (e.type) {
      case 'start':
        // A resumed run starts again from its checkpoint: drop the points after it (they are recomputed).
        if (e.resumed_from_step != null) this.truncateAfter(e.resumed_from_step);
        break;
      case 'step':
        this.steps.x.push(e.step);
        for (const k of STEP_KEYS) this.steps[k].push(v(e[k]));
        break;
      case 'eval':
        this.addEval(e);
        break;
      case 'adapter_stats':
        this.addStats(e);
        break;
      default:
        break;
    }
  }

  private addEval(e: EvalEvent): void {
    this.evals.x.push(e.step);
    this.evals.eval_loss.push(v(e.eval_loss));
  }

  private addStats(e: AdapterStatsEvent): void {
    const n = this.levels.x.length;
    this.levels.x.push(e.step);
    for (const l of e.levels) {
      const s = (this.levels.series[l.level] ??= new Array<number | null>(n).fill(null));
      while (s.length < n) s.push(null);
      s.push(v(l.delta_norm));
    }
    for (const s of this.levels.series) while (s.length < n + 1) s.push(null);
  }

  /** Drops points with x > step (a resume replaces them); bumps the generation since history changed. */
  private truncateAfter(step: number): void {
    const cut = (x: number[]): number => {
      let i = x.length;
      while (i > 0 && (x[i - 1] ?? 0) > step) i--;
      return i;
    };
    const s = cut(this.steps.x);
    const ev = cut(this.evals.x);
    const lv = cut(this.levels.x);
    if (s === this.steps.x.length && ev === this.evals.x.length && lv === this.levels.x.length) return;
    this.generation++;
    this.steps.x.length = s;
    for (const k of STEP_KEYS) this.steps[k].length = s;
    this.evals.x.length = ev;
    this.evals.eval_loss.length = ev;
    this.levels.x.length = lv;
    for (const series of this.levels.series) series.length = lv;
  }

  cursor(): Cursor {
    return { generation: this.generation, steps: this.steps.x.length, evals: this.evals.x.length, levels: this.levels.x.length };
  }

  /** The points after `from` (all of them when `from` is undefined or of another generation). */
  since(from: Cursor | undefined): { reset: boolean; steps: Columns; evals: Columns; levels: Columns } {
    const reset = from === undefined || from.generation !== this.generation;
    const s = reset ? 0 : from.steps;
    const e = reset ? 0 : from.evals;
    const l = reset ? 0 : from.levels;
    const steps: Columns = { x: this.steps.x.slice(s) };
    for (const k of STEP_KEYS) steps[k] = this.steps[k].slice(s);
    const levels: Columns = { x: this.levels.x.slice(l) };
    this.levels.series.forEach((series, i) => (levels[`level${i}`] = series.slice(l)));
    return { reset, steps, evals: { x: this.evals.x.slice(e), eval_loss: this.evals.eval_loss.slice(e) }, levels };
  }
}
