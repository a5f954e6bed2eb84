// exportPlan.ts — the pure part of the merge/export/combine commands (commands/merge.ts): default output folders,
// the rank input's validation and one overall progress fraction over the addon's phases (the verification summary
// line is native/exportReport.ts, shared with the dashboard). No vscode import, so test/unit covers it directly.
import { readFileSync } from 'node:fs';
import path from 'node:path';

import type { ExportProgress } from '../native/addon';
import { timestamp } from '../job/resolve';

export type BaseChoice = 'original' | 'dequantized';
export type DtypeChoice = 'bf16' | 'fp16' | 'fp32';
export type CombineMode = 'concat' | 'linear' | 'svd';
export type GgufType = 'f16' | 'f32' | 'bf16' | 'q8_0';

/**
 * Default output folders. They are siblings of the source (`<run>-peft-merged`, `<run>-merged-dequantized-bf16`):
 * the addon refuses an output inside an input folder, and a sibling without events.jsonl is not taken for a run.
 */
export function mergeOutDir(source: string, rank: number): string {
  return `${stripSlash(source)}-${rank > 0 ? `peft-r${rank}` : 'peft-merged'}`;
}

export function exportOutDir(source: string, base: BaseChoice, dtype: DtypeChoice): string {
  return `${stripSlash(source)}-merged-${base}-${dtype}`;
}

/** `<run>-gguf-<base>-<type>`: GGUF for llama.cpp (gguf/export.ts), beside the run like the other exports. */
export function ggufOutDir(source: string, base: BaseChoice, type: GgufType): string {
  return `${stripSlash(source)}-gguf-${base}-${type}`;
}

/** `<folder of the first source>/combined-<mode>-<stamp>` (the stamp of run names: yyyymmdd-hhmmss, UTC). */
export function combineOutDir(sources: readonly string[], mode: CombineMode, now: Date): string {
  return path.join(path.dirname(stripSlash(sources[0] ?? '.')), `combined-${mode}-${timestamp(now)}`);
}

function stripSlash(p: string): string {
  return p.length > 1 ? p.replace(/[\\/]+$/, '') : p;
}

/** Σ level ranks of a run (its run.json adapter.levels), the exact merge's rank; undefined when unreadable. */
export function totalRank(runDir: string): number | undefined {
  try {
    const run = JSON.parse(readFileSync(path.join(runDir, 'run.json'), 'utf8')) as { adapter?: { levels?: { rank?: unknown }[] } };
    const ranks = (run.adapter?.levels ?? []).map((l) => l.rank);
    return ranks.length > 0 && ranks.every((r) => typeof r === 'number' && r > 0) ? (ranks as number[]).reduce((a, b) => a + b, 0) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The rank input box: empty = 0 (exact), else a whole number in 1..max-1 (a rank ≥ Σ level ranks is the exact
 * merge, asked for by leaving the box empty). Returns the rank, or the message the input box shows.
 */
export function parseRank(text: string, max?: number): { rank: number } | { error: string } {
  const t = text.trim();
  if (t === '') return { rank: 0 };
  if (!/^\d+$/.test(t) || Number(t) < 1) return { error: 'Enter a whole number ≥ 1, or leave empty for the exact merge.' };
  const rank = Number(t);
  if (max !== undefined && rank >= max) return { error: `The exact merge already has rank ${max} (Σ level ranks): leave empty for it, or enter less than ${max}.` };
  return { rank };
}

/** The addon's phases in the order they run; each gets an equal share of the notification's progress bar. */
const PHASES: readonly ExportProgress['phase'][] = ['merge', 'write', 'verify', 'publish'];

/**
 * Turns the addon's per-phase progress into withProgress's increments (which are cumulative percentages): the
 * overall fraction never goes back, so a phase the operation skips (merge_levels writes while merging) is jumped.
 */
export class ProgressMeter {
  private reported = 0;

  update(p: ExportProgress): { message: string; increment: number } {
    const i = Math.max(0, PHASES.indexOf(p.phase));
    const within = p.total > 0 ? Math.min(1, Math.max(0, p.done / p.total)) : 1;
    const pct = Math.min(100, (100 * (i + within)) / PHASES.length);
    const increment = Math.max(0, pct - this.reported);
    this.reported += increment;
    return { message: `${p.phase} ${p.done}/${p.total}${p.item ? ` · ${p.item}` : ''}`, increment };
  }
}
