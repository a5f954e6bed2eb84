// sweep.ts — `hqlora sweep <file.hqsweep.yaml> [--dry-run] [--only CELL] [--retry-failed] [--add | --restart]`:
// the sweep module (extension/sweep/) driven from a terminal. One line per cell transition; the matrix is printed
// at the end and kept in <sweep>/results.md. Ctrl-C stops the running cells gracefully (each checkpoints); running
// the same command again continues where the sweep stopped.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';

import { formatBytes } from '../model/memory';
import { formatDuration } from '../core/format';
import { cellCost, deviceBudget } from '../sweep/capacity';
import { readTrainCost } from '../sweep/results';
import { type ChangeDecision, runSweep } from '../sweep/runner';
import { loadSweep } from '../sweep/spec';
import { describeChanges, readState, type SweepChanges } from '../sweep/state';
import { UsageError } from './args';

export interface SweepCommandOptions {
  file: string;
  packageRoot: string;
  dryRun: boolean;
  only?: string;
  retryFailed: boolean;
  add: boolean;
  restart: boolean;
  threads?: number;
  trainerSetting?: string;
}

export async function sweepCommand(o: SweepCommandOptions): Promise<number> {
  if (o.add && o.restart) throw new UsageError('--add and --restart exclude each other');
  const sweep = await loadSweep(o.file);
  const out = (line: string): void => void process.stdout.write(`${line}\n`);
  if (o.dryRun) return dryRun(sweep, o, out);

  const abort = new AbortController();
  let interrupts = 0;
  const onSignal = (): void => {
    interrupts++;
    if (interrupts === 1) out('stopping: every running cell writes a checkpoint (run the same command again to continue)');
    abort.abort(new Error('interrupted'));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    out(`sweep    ${sweep.file}`);
    out(`folder   ${sweep.dir}`);
    const result = await runSweep({
      sweep, packageRoot: o.packageRoot, retryFailed: o.retryFailed, signal: abort.signal, log: out,
      ...(o.only !== undefined ? { only: o.only } : {}),
      ...(o.threads !== undefined ? { threads: o.threads } : {}),
      ...(o.trainerSetting !== undefined ? { trainerSetting: o.trainerSetting } : {}),
      decide: (ch) => decide(ch, o),
    });
    const failed = result.state.cells.filter((c) => c.status === 'failed');
    out('');
    process.stdout.write(readResultsMd(sweep.dir));
    out(`saved    ${sweep.dir}/sweep-results.json, results.csv, results.md`);
    if (failed.length) out(`${failed.length} cell(s) failed: ${failed.map((c) => c.id).join(', ')}; rerun them with --retry-failed`);
    if (result.exitCode === 3) out(`stopped; continue with: hqlora sweep ${o.file}`);
    return result.exitCode;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function readResultsMd(dir: string): string {
  try {
    return readFileSync(`${dir}/results.md`, 'utf8');
  } catch {
    return '';
  }
}

/** --add / --restart, else a question on a terminal, else an error that names both. */
async function decide(ch: SweepChanges, o: SweepCommandOptions): Promise<ChangeDecision> {
  if (o.add) return 'add';
  if (o.restart) return 'restart';
  process.stdout.write(`the sweep file changed since the sweep started: ${describeChanges(ch)}\n`);
  if (!process.stdin.isTTY) return 'cancel';
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    const a = (await rl.question('add the new cells and keep the finished ones [a], start over (the old folder is moved aside) [r], or cancel [c]? ')).trim().toLowerCase();
    return a.startsWith('a') ? 'add' : a.startsWith('r') ? 'restart' : 'cancel';
  } finally {
    rl.close();
  }
}

async function dryRun(sweep: Awaited<ReturnType<typeof loadSweep>>, o: SweepCommandOptions, out: (l: string) => void): Promise<number> {
  const budget = await deviceBudget(sweep, { packageRoot: o.packageRoot, ...(o.trainerSetting ? { trainerSetting: o.trainerSetting } : {}) });
  const state = readState(sweep.dir);
  // A measured rate (FLOPs per second of training) from cells that already ran turns FLOPs into time.
  let flops = 0, seconds = 0;
  const costs = sweep.cells.map((c) => cellCost(c, budget.cuda));
  sweep.cells.forEach((c, i) => {
    const run = state?.cells.find((s) => s.id === c.id);
    const t = run ? readTrainCost(`${run.run_dir}/events.jsonl`) : null;
    const cost = costs[i]!;
    if (t && cost.flops !== null && cost.steps) {
      const doneSteps = t.losses.length;
      flops += (cost.flops * doneSteps) / cost.steps;
      seconds += t.trainS;
    }
  });
  const rate = seconds > 0 ? flops / seconds : null;
  out(`sweep ${sweep.name}: ${sweep.cells.length} cells, ${budget.describe}`);
  out(`folder ${sweep.dir}; baseline row ${sweep.baseline}`);
  out('');
  const head = ['cell', 'split', 'data', 'seed', 'steps', 'tokens/step', 'memory (est.)', 'TFLOP', 'time (est.)', 'state'];
  const rows = sweep.cells.map((c, i) => {
    const k = costs[i]!;
    const st = state?.cells.find((s) => s.id === c.id)?.status ?? 'new';
    const time = rate && k.flops !== null ? formatDuration(k.flops / rate) : '?';
    return [c.id, c.split, c.data || '–', String(c.seed), k.steps === null ? 'epochs' : String(k.steps), String(k.tokensPerStep),
      k.memoryBytes === null ? '?' : formatBytes(k.memoryBytes), k.flops === null ? '?' : (k.flops / 1e12).toFixed(3), time, st];
  });
  const widths = head.map((h, j) => Math.max(h.length, ...rows.map((r) => r[j]!.length)));
  const fmt = (r: string[]): string => r.map((x, j) => x.padEnd(widths[j]!)).join('  ').trimEnd();
  out(fmt(head));
  rows.forEach((r) => out(fmt(r)));
  const totalFlops = costs.reduce((a, k) => a + (k.flops ?? 0), 0);
  const peak = Math.max(0, ...costs.map((k) => k.memoryBytes ?? 0));
  out('');
  out(`total: ${(totalFlops / 1e12).toFixed(3)} TFLOP of training, ${rate ? `about ${formatDuration(totalFlops / rate)} at the rate measured so far` : 'time: known once a cell has trained (the rate is measured, not assumed)'}; largest cell ${formatBytes(peak)}`);
  out(`scoring: ${sweep.eval.mmlu ? `${sweep.eval.mmlu.path} (${sweep.eval.mmlu.split}, ${sweep.eval.mmlu.shots}-shot)` : 'no MMLU'}${sweep.eval.ablation ? ', level ablation' : ''}${sweep.eval.loss ? ', eval loss' : ''}`);
  return 0;
}
