// eval.ts — `hqlora eval <config|run-dir> [--mcq DIR|FILE] [--shots k] [--split val|test|dev] [--ablation]`:
// scores the base model and the run's adapter (or the level ablation) and prints + saves the table
// (<run>/eval.json, <run>/eval.md). On a TTY the progress line (done/total, ETA) is redrawn in place.
import { evaluateRun } from '../job/evaluate';
import { SPLITS, type Split } from '../eval/mmlu';
import { formatProgress } from '../eval/table';
import { warn } from './io';
import { UsageError } from './args';

export interface EvalCommandOptions {
  target: string;
  packageRoot: string;
  mcq?: string;
  shots?: number;
  split?: string;
  ablation: boolean;
  adapter?: string;
  maxQuestions?: number;
  threads?: number;
  trainerSetting?: string;
}

export async function evalCommand(o: EvalCommandOptions): Promise<number> {
  if (o.split !== undefined && !(SPLITS as readonly string[]).includes(o.split)) {
    throw new UsageError(`--split must be one of ${SPLITS.join(', ')}, got "${o.split}"`);
  }
  const tty = process.stdout.isTTY;
  let live = false;
  const status = (text: string): void => {
    if (tty) {
      process.stdout.write(`\r\x1b[2K${text}`);
      live = true;
    } else {
      process.stdout.write(`${text}\n`);
    }
  };
  const endLine = (): void => {
    if (live) process.stdout.write('\n');
    live = false;
  };
  let lastPrepare = 0;
  const abort = new AbortController();
  const onSignal = (): void => abort.abort(new Error('interrupted'));
  process.on('SIGINT', onSignal);
  try {
    const out = await evaluateRun({
      target: o.target, packageRoot: o.packageRoot, ablation: o.ablation, signal: abort.signal,
      ...(o.mcq !== undefined ? { mcq: o.mcq } : {}),
      ...(o.shots !== undefined ? { shots: o.shots } : {}),
      ...(o.split !== undefined ? { split: o.split as Split } : {}),
      ...(o.adapter !== undefined ? { adapter: o.adapter } : {}),
      ...(o.maxQuestions !== undefined ? { maxQuestions: o.maxQuestions } : {}),
      ...(o.threads !== undefined ? { threads: o.threads } : {}),
      ...(o.trainerSetting !== undefined ? { trainerSetting: o.trainerSetting } : {}),
      onPrepare: (d, t) => {
        const now = Date.now();
        if (now - lastPrepare < 200 && d < t) return;
        lastPrepare = now;
        status(`tokenizing questions ${d}/${t}`);
      },
      onProgress: (e) => status(formatProgress(e)),
      onMcq: (e) => {
        if (!tty) return;
        endLine();
        process.stdout.write(`${e.config ?? ''}: multiple-choice accuracy ${(100 * e.macro_accuracy).toFixed(1)}% (macro), ${(100 * e.accuracy).toFixed(1)}% (micro) of ${e.n}\n`);
      },
      onWarning: (m) => {
        endLine();
        warn(m);
      },
    });
    endLine();
    process.stdout.write(`\n${out.markdown}\nsaved    ${out.jsonFile}\n         ${out.mdFile}\n`);
    return 0;
  } finally {
    endLine();
    process.off('SIGINT', onSignal);
  }
}
