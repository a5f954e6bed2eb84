// launcher.ts — hqlora-train as a typed, cancellable resource (docs/CONTRACTS.md §1, §2, §5).
//
// launchTrainer() writes <run>/run.json, spawns `hqlora-train --config <run>/run.json [--resume]` with an explicit
// environment in its own process group (so stop() reaches every thread and child), copies stderr to
// <run>/trainer.log, and reads stdout with the one event reader (events.ts: EVERY line validated against
// schemas/trainer-events.schema.json): valid events are emitted as 'event', anything else as 'invalid' (a warning,
// never a crash). `result` resolves once with the one run status derived from the exit code or signal.
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createWriteStream, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import type { DoneEvent, ErrorEvent, StartEvent, TrainerEvent } from '../../schemas/generated/trainer-events';
import { LineSplitter } from '../core/lines';
import { TrainerEventReader } from './events';
import type { ResolvedRun } from './resolve';
import { trainerEnv } from './trainer';

/** Exit codes of hqlora-train (CONTRACTS §1). */
export const ExitCode = { done: 0, error: 1, usage: 2, stopped: 3, nonFinite: 4 } as const;

/**
 * Why a trainer that nobody asked to stop ended on `signal`, and what to do: the message of a failed run (CLI and
 * extension alike; `resume` is how the user resumes there). The last complete checkpoint is always kept, so every
 * case can be resumed.
 */
export function explainSignal(signal: string, resume = '--resume'): string {
  switch (signal) {
    case 'SIGKILL':
      return 'hqlora-train was killed by SIGKILL from outside H-QLoRA, on Linux most often by the out-of-memory killer '
        + '(`dmesg` or `journalctl -k` says so). Lower training.micro_batch_size or data.source_max_len / target_max_len, '
        + `or turn on training.gradient_checkpointing; ${resume} continues from the last checkpoint`;
    case 'SIGSEGV':
    case 'SIGBUS':
    case 'SIGILL':
    case 'SIGFPE':
    case 'SIGABRT':
      return `hqlora-train crashed (${signal}). This is a bug in H-QLoRA: please report it with trainer.log; `
        + `${resume} continues from the last checkpoint`;
    case 'SIGTERM':
    case 'SIGINT':
    case 'SIGHUP':
    case 'SIGQUIT':
      return `hqlora-train was stopped from outside (${signal}) before it could write a checkpoint; `
        + `${resume} continues from the last checkpoint, if there is one`;
    default:
      return `hqlora-train was killed by ${signal}; ${resume} continues from the last checkpoint`;
  }
}

export type RunStatus = 'running' | 'completed' | 'stopped' | 'failed';

export interface RunResult {
  status: Exclude<RunStatus, 'running'>;
  /** One line for the user: what happened (and for failures, why). */
  message: string;
  /** Hint from the trainer's error event, if any. */
  hint: string;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  done?: DoneEvent;
  error?: ErrorEvent;
}

export interface TrainerProcessEvents {
  /** A schema-valid trainer event, in stdout order. */
  event: [TrainerEvent];
  /** A stdout line that is not JSON or does not match the schema. */
  invalid: [line: string, reason: string];
}

export interface LaunchOptions {
  trainer: string;
  run: ResolvedRun;
  resume?: boolean;
  /** Extra environment variables for the trainer (on top of trainerEnv()). */
  env?: Record<string, string>;
  /** Extra command-line flags (e.g. ['--threads', '2']). */
  args?: string[];
}

/** Writes <run>/run.json atomically (temp file + rename) and returns its path. */
export function writeRunJson(run: ResolvedRun): string {
  mkdirSync(run.runDir, { recursive: true });
  const file = path.join(run.runDir, 'run.json');
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(run.config, null, 2)}\n`);
  renameSync(tmp, file);
  return file;
}

/** hardware.gpu_ids as CUDA sees them: only those devices, numbered as nvidia-smi numbers them (PCI bus order). */
export function gpuEnv(ids: readonly number[] | null | undefined): Record<string, string> {
  return ids && ids.length > 0 ? { CUDA_DEVICE_ORDER: 'PCI_BUS_ID', CUDA_VISIBLE_DEVICES: ids.join(',') } : {};
}

export function launchTrainer(opts: LaunchOptions): TrainerProcess {
  const runJson = writeRunJson(opts.run);
  const args = ['--config', runJson, ...(opts.resume ? ['--resume'] : []), ...(opts.args ?? [])];
  const child = spawn(opts.trainer, args, {
    cwd: opts.run.runDir,
    env: trainerEnv({ ...gpuEnv(opts.run.config.hardware.gpu_ids), ...opts.env }),
    detached: true, // own process group: stop() signals -pid
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new TrainerProcess(child, opts.run.runDir);
}

export class TrainerProcess extends EventEmitter<TrainerProcessEvents> {
  readonly result: Promise<RunResult>;
  readonly logFile: string;
  private status: RunStatus = 'running';
  private stopRequested = false;
  private readonly events = new TrainerEventReader({
    event: (e) => this.emit('event', e),
    invalid: (line, reason) => this.emit('invalid', line, reason),
  });
  private stderrTail: string[] = [];

  constructor(private readonly child: ChildProcess, readonly runDir: string) {
    super();
    this.logFile = path.join(runDir, 'trainer.log');
    const log = createWriteStream(this.logFile, { flags: 'a' });
    // A log that cannot be written (the run folder removed under us) must not take the host down; the result says
    // what the trainer did either way.
    log.on('error', () => undefined);
    const err = new LineSplitter();

    child.stdout?.setEncoding('utf8').on('data', (s: string) => this.events.push(s));
    child.stdout?.on('end', () => this.events.end());
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      log.write(s);
      for (const l of err.push(s)) this.keepStderr(l);
    });
    child.stderr?.on('end', () => err.end().forEach((l) => this.keepStderr(l)));

    this.result = new Promise<RunResult>((resolve) => {
      let spawnError: Error | undefined;
      child.on('error', (e) => (spawnError = e));
      child.on('close', (code, signal) => {
        const r = spawnError ? this.spawnFailure(spawnError) : this.classify(code, signal);
        this.status = r.status;
        // Resolve once trainer.log is on disk: the stream opens and writes asynchronously, so a trainer that failed
        // before writing to stderr left no file yet when 'close' came (the launcher test saw it missing under load).
        // end's callback runs on 'finish', or on an error.
        log.end(() => resolve(r));
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.status === 'running';
  }

  /** The start event, once received. */
  get startEvent(): StartEvent | undefined {
    return this.events.start;
  }

  /**
   * Stops the run: SIGTERM to the trainer's process group (it writes a checkpoint and exits 3), then SIGKILL if it
   * is still alive after `graceMs`. Resolves with the run result.
   */
  async stop(graceMs = 30_000): Promise<RunResult> {
    if (this.running && this.child.pid !== undefined) {
      this.stopRequested = true;
      this.signalGroup('SIGTERM');
      const timer = setTimeout(() => this.signalGroup('SIGKILL'), graceMs);
      timer.unref();
      const r = await this.result;
      clearTimeout(timer);
      return r;
    }
    return this.result;
  }

  /** Best-effort synchronous SIGKILL of the whole group (for process exit handlers). */
  kill(): void {
    if (this.running) this.signalGroup('SIGKILL');
  }

  private signalGroup(sig: NodeJS.Signals): void {
    const pid = this.child.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, sig);
    } catch {
      // The group is already gone.
    }
  }

  private keepStderr(line: string): void {
    this.stderrTail.push(line);
    if (this.stderrTail.length > 20) this.stderrTail.shift();
  }

  private spawnFailure(e: Error): RunResult {
    return {
      status: 'failed',
      message: `could not start hqlora-train: ${e.message}`,
      hint: 'run `npm run build:native`, or set HQLORA_TRAINER to a working hqlora-train',
      exitCode: null,
      signal: null,
    };
  }

  /** The one mapping from (exit code, signal, events) to a run status. */
  private classify(code: number | null, signal: NodeJS.Signals | null): RunResult {
    const { done, error } = this.events;
    const base = { exitCode: code, signal, done, error, hint: error?.hint ?? '' };
    const logHint = `see ${this.logFile}`;
    if (signal) {
      if (this.stopRequested) return { ...base, status: 'stopped', message: `stopped (${signal})` };
      return { ...base, status: 'failed', message: explainSignal(signal), hint: logHint };
    }
    switch (code) {
      case ExitCode.done:
        if (done?.status === 'stopped') return { ...base, status: 'stopped', message: 'stopped after a checkpoint' };
        return { ...base, status: 'completed', message: `completed ${done?.step ?? '?'} steps` };
      case ExitCode.stopped:
        return { ...base, status: 'stopped', message: 'stopped after a checkpoint; continue with --resume' };
      case ExitCode.usage:
        return { ...base, status: 'failed', message: `hqlora-train usage error: ${this.stderrTail.at(-1) ?? ''}`, hint: logHint };
      default: {
        if (error) {
          const w = error.where;
          const where = [w.file, w.key && `key ${w.key}`, w.tensor && `tensor ${w.tensor}`, w.offset !== undefined && `offset ${w.offset}`]
            .filter(Boolean).join(', ');
          return { ...base, status: 'failed', message: `${error.code}: ${error.message}${where ? ` [${where}]` : ''}` };
        }
        const last = this.stderrTail.at(-1);
        return { ...base, status: 'failed', message: `hqlora-train exited with code ${String(code)}${last ? `: ${last}` : ''}`, hint: logHint };
      }
    }
  }
}
