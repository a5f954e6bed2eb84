// format.ts — human-readable renderings of trainer events, shared by the CLI progress line and the extension's
// status bar so both say the same thing.
import type { Number as EvNumber, StartEvent, StepEvent, EvalEvent } from '../../schemas/generated/trainer-events';

/** A schema Number (finite number or "NaN" / "Infinity" / "-Infinity") as a JS number. */
export function num(x: EvNumber): number {
  return typeof x === 'number' ? x : x === 'NaN' ? NaN : x === 'Infinity' ? Infinity : -Infinity;
}

/** `42s`, `3m05s`, `1h02m`; `?` when unknown or not finite. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** `512 B`, `12.3 KiB`, `4.0 MiB`, `1.20 GiB`. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i] ?? 'TiB'}`;
}

/** A loss-like value with 4 decimals, non-finite values spelled out. */
export function formatLoss(x: EvNumber): string {
  const v = num(x);
  return Number.isFinite(v) ? v.toFixed(4) : String(v);
}

/** `step 12/150  loss 2.3456  lr 2.0e-4  1234 tok/s  ETA 1m02s` */
export function formatStep(e: StepEvent): string {
  const tps = num(e.tokens_per_s);
  return [
    `step ${e.step}/${e.total_steps}`,
    `loss ${formatLoss(e.loss)}`,
    `lr ${num(e.lr).toExponential(1)}`,
    `${Number.isFinite(tps) ? Math.round(tps) : '?'} tok/s${e.world_size !== undefined && e.world_size > 1 ? ` on ${e.world_size} ranks` : ''}`,
    `ETA ${formatDuration(num(e.eta_s))}`,
  ].join('  ');
}

/** Data parallel: `2 ranks · memory 1.20 GiB / 1.21 GiB · all-reduce 280 KiB/step`; undefined for a world of one. */
export function formatRanks(e: StepEvent): string | undefined {
  if (e.world_size === undefined || e.world_size <= 1) return undefined;
  const parts = [`${e.world_size} ranks`];
  if (e.rank_memory_bytes?.length) parts.push(`memory ${e.rank_memory_bytes.map((b) => formatBytes(b)).join(' / ')}`);
  if (e.allreduce_bytes !== undefined) parts.push(`all-reduce ${formatBytes(e.allreduce_bytes)}/step`);
  return parts.join(' · ');
}

/** Short status-bar form: `12/150 · loss 2.346 · ETA 1m02s` */
export function formatStepShort(e: StepEvent): string {
  return `${e.step}/${e.total_steps} · loss ${num(e.loss).toFixed(3)} · ETA ${formatDuration(num(e.eta_s))}`;
}

/** `eval @ step 50: loss 1.2345  ppl 3.44  accuracy 61.2%` */
export function formatEval(e: EvalEvent): string {
  const parts = [`eval @ step ${e.step}: loss ${formatLoss(e.eval_loss)}`, `ppl ${num(e.perplexity).toFixed(2)}`];
  if (e.accuracy !== undefined) parts.push(`accuracy ${(num(e.accuracy) * 100).toFixed(1)}%`);
  if (e.exact_match !== undefined) parts.push(`exact match ${(num(e.exact_match) * 100).toFixed(1)}%`);
  return parts.join('  ');
}

/** Two lines describing a run's start: model and compute, then the adapter levels. */
export function formatStart(e: StartEvent): string[] {
  const m = e.model;
  const levels = e.params.per_level.map((l) => `r${l.rank}/α${num(l.alpha)}`).join(' + ');
  return [
    `model ${m.architecture}: ${m.layers} layers, hidden ${m.hidden}, vocab ${m.vocab}` +
      `${m.quantization ? `, ${m.quantization}` : ''}; ${e.backend} × ${e.threads} threads` +
      `${e.world_size !== undefined && e.world_size > 1 ? ` × ${e.world_size} ranks (${e.dist_backend ?? '?'} all-reduce)` : ''}`,
    `adapter ${levels}: ${e.params.trainable.toLocaleString('en-US')} trainable of ${e.params.total.toLocaleString('en-US')} params; ` +
      `${e.total_steps} steps${e.resumed_from_step != null ? `, resumed from step ${e.resumed_from_step}` : ''}`,
  ];
}
