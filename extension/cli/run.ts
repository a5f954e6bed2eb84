// run.ts — `hqlora run <config> [--resume]`: the run module driven from a terminal. On a TTY the step events
// redraw one progress line; otherwise every event is a plain line (logs, CI). Ctrl-C stops the trainer gracefully
// (it checkpoints and exits 3); a second Ctrl-C kills its process group.
import path from 'node:path';

import type { TrainerEvent } from '../../schemas/generated/trainer-events';
import { formatBytes, formatDuration, formatEval, formatLoss, formatStart, formatStep, num } from '../core/format';
import { formatMcqLine } from '../eval/table';
import { startRun } from '../job/job';
import type { RunResult, TrainerProcess } from '../job/launcher';
import { warn } from './io';

export interface RunCommandOptions {
  configPath: string;
  packageRoot: string;
  resume: boolean;
  /** `--gpus N`: ranks of a one-host data-parallel run (hqlora-train starts and supervises them). */
  gpus: number | undefined;
  threads: number | undefined;
  trainerSetting: string | undefined;
}

/** Exit code of `hqlora run` for each run status (mirrors hqlora-train's own codes). */
const EXIT: Record<RunResult['status'], number> = { completed: 0, stopped: 3, failed: 1 };

/** A status line that is redrawn in place on a TTY and printed line by line elsewhere. */
class Console {
  private live = '';
  constructor(private readonly tty: boolean) {}

  /** Prints a permanent line (above the live line on a TTY). */
  line(text: string): void {
    if (this.tty && this.live) process.stdout.write('\r\x1b[2K');
    process.stdout.write(`${text}\n`);
    if (this.tty && this.live) process.stdout.write(this.live);
  }

  /** Replaces the live line (TTY) or prints it (not a TTY). */
  status(text: string): void {
    if (!this.tty) {
      process.stdout.write(`${text}\n`);
      return;
    }
    const width = process.stdout.columns || 120;
    this.live = text.length >= width ? `${text.slice(0, width - 2)}…` : text;
    process.stdout.write(`\r\x1b[2K${this.live}`);
  }

  /** Ends the live line so later output starts on a fresh line. */
  finish(): void {
    if (this.tty && this.live) process.stdout.write('\n');
    this.live = '';
  }
}

export async function runCommand(opts: RunCommandOptions): Promise<number> {
  const out = new Console(process.stdout.isTTY);
  const abort = new AbortController();
  let proc: TrainerProcess | undefined;
  let interrupts = 0;
  const onSignal = (): void => {
    interrupts++;
    if (!proc) {
      abort.abort(new Error('interrupted'));
    } else if (interrupts === 1) {
      out.line('stopping: the trainer writes a checkpoint and exits (Ctrl-C again to kill it)');
      void proc.stop();
    } else {
      proc.kill();
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const killOnExit = (): void => proc?.kill();
  process.on('exit', killOnExit);

  try {
    out.line(`config   ${path.resolve(opts.configPath)}`);
    let lastPrepare = 0;
    const started = await startRun({
      configPath: opts.configPath,
      packageRoot: opts.packageRoot,
      resume: opts.resume,
      ...(opts.gpus !== undefined ? { gpus: opts.gpus } : {}),
      trainerSetting: opts.trainerSetting,
      trainerArgs: opts.threads !== undefined ? ['--threads', String(opts.threads)] : [],
      signal: abort.signal,
      onWarning: warn,
      onPrepareProgress: (p) => {
        // Throttle to ~5 updates/s; every update on a TTY would flood slow terminals.
        const now = Date.now();
        if (now - lastPrepare < 200) return;
        lastPrepare = now;
        out.status(`preparing data: ${p.phase} ${p.done}/${p.total}`);
      },
    });
    proc = started.proc;
    const { run, trainer, data } = started;
    out.status('');
    out.line(`run      ${run.runDir}`);
    out.line(`trainer  ${trainer.path} (hqlora-train ${trainer.version}, ${trainer.backends.join(',')})`);
    const hw = run.config.hardware;
    if (typeof hw.gpus === 'number' && hw.gpus > 1) {
      const where = hw.device === 'cpu' ? ' (CPU processes)' : hw.gpu_ids ? ` (GPUs ${hw.gpu_ids.join(', ')})` : '';
      out.line(`ranks    ${hw.gpus} on this host${where}; hqlora-train supervises them, rank 0's events below`);
    }
    out.line(`data     ${data.trainTokens}${data.evalTokens ? ` + ${path.basename(data.evalTokens)}` : ''}${data.cached ? ' (cached)' : ''}`);

    let firstLoss: number | undefined;
    let lastLoss: number | undefined;
    proc.on('event', (e: TrainerEvent) => {
      switch (e.type) {
        case 'start':
          formatStart(e).forEach((l) => out.line(l));
          break;
        case 'step':
          firstLoss ??= num(e.loss);
          lastLoss = num(e.loss);
          out.status(formatStep(e));
          break;
        case 'eval':
          out.line(formatEval(e));
          break;
        case 'mcq':
          out.line(formatMcqLine(e));
          break;
        case 'checkpoint':
          out.line(`checkpoint ${path.basename(e.path)} (${formatBytes(e.bytes)})`);
          break;
        case 'warning':
          out.line(`warning ${e.code}: ${e.message}`);
          break;
        case 'error':
        case 'adapter_stats':
        case 'done':
          break;
      }
    });
    const reasons = new Set<string>();
    proc.on('invalid', (line, reason) => {
      if (reasons.has(reason)) return; // once per distinct problem; every line is in events.jsonl
      reasons.add(reason);
      warn(`ignored trainer output that does not match schemas/trainer-events.schema.json (${reason}): ${line.slice(0, 160)}`);
    });

    const result = await proc.result;
    out.finish();
    if (result.status === 'completed') {
      const d = result.done;
      if (firstLoss !== undefined && lastLoss !== undefined) {
        out.line(`loss     ${formatLoss(firstLoss)} → ${formatLoss(lastLoss)} in ${formatDuration(d ? num(d.elapsed_s) : NaN)}`);
      }
      out.line('adapters');
      out.line(`  hierarchical  ${d?.adapter_dir ?? path.join(run.runDir, 'adapter')}`);
      out.line(`  PEFT          ${d?.peft_dir ?? path.join(run.runDir, 'peft')}`);
    } else if (result.status === 'stopped') {
      out.line(`stopped  ${result.message}`);
      if (result.done?.checkpoint) out.line(`checkpoint ${result.done.checkpoint}`);
      out.line(`continue with: hqlora run ${opts.configPath} --resume`);
    } else {
      process.stderr.write(`hqlora: run failed: ${result.message}\n`);
      if (result.hint) process.stderr.write(`  hint: ${result.hint}\n`);
      process.stderr.write(`  trainer log: ${proc.logFile}\n`);
    }
    return EXIT[result.status];
  } finally {
    out.finish();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', killOnExit);
  }
}
