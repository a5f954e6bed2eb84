// run.ts — one run folder as the extension sees it: its registry record, its metrics (from events.jsonl), its
// liveness (our child process, or a re-attached PID checked against its start time) and its one status.
//
// Events come from <run>/events.jsonl, which the trainer appends itself, never from the trainer's stdout pipe: the
// trainer is detached and must outlive a window reload, and after a reload only the file is left to read. The file
// is followed by tail.ts and read by the one event reader (job/events.ts), as `hqlora run` reads stdout.
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import type { RunSummary } from '../../schemas/generated/webview-messages';
import type { TrainerEvent } from '../../schemas/generated/trainer-events';
import { num } from '../core/format';
import { TrainerEventReader } from '../job/events';
import { ExitCode, explainSignal } from '../job/launcher';
import { RunMetrics } from './metrics';
import { isSameProcessAlive } from './proc';
import { FileTailer } from './tail';

export type RunStatus = RunSummary['status'];

/** What the registry keeps per run (workspaceState), enough to find the run and its process after a reload. */
export interface RunRecord {
  runDir: string;
  configFile: string;
  pid?: number;
  /** /proc/<pid>/stat start time, to tell our trainer from a process that reused its PID. */
  pidStart?: string;
  /** Unix ms. */
  startedAt: number;
  status: RunStatus;
  message: string;
  stopRequested?: boolean;
}

export interface RunEvents {
  /** Status, step or header changed. */
  changed: [];
  /** New metric points (or a reset). */
  metrics: [];
  /** A line that is not a valid trainer event (ignored). */
  invalid: [line: string, reason: string];
  /** Lines of trainer.log (only while the run is followed live). */
  log: [lines: string[]];
  /** A checkpoint was published (periodic, requested, on stop or final). */
  checkpoint: [event: CheckpointEvent];
}

export type CheckpointEvent = Extract<TrainerEvent, { type: 'checkpoint' }>;

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class Run extends EventEmitter<RunEvents> {
  readonly metrics: RunMetrics;
  private readonly reader: TrainerEventReader;
  private readonly events: FileTailer;
  private log: FileTailer | undefined;
  private liveness: NodeJS.Timeout | undefined;
  private child: ChildProcess | undefined;
  /** Whether the lines read so far in this batch changed the summary (anything but adapter_stats). */
  private changedInBatch = false;

  constructor(readonly record: RunRecord) {
    super();
    this.reader = new TrainerEventReader({
      event: (e) => this.onEvent(e),
      invalid: (line, reason) => this.emit('invalid', line, reason),
    });
    this.metrics = new RunMetrics(this.reader);
    this.events = new FileTailer(path.join(record.runDir, 'events.jsonl'), {
      onLines: (lines) => this.onLines(lines),
      onReset: () => {
        this.metrics.reset();
        this.emit('metrics');
      },
    });
  }

  get id(): string {
    return this.record.runDir;
  }

  get name(): string {
    return path.basename(this.record.runDir);
  }

  get status(): RunStatus {
    return this.record.status;
  }

  get live(): boolean {
    return this.record.status === 'running' || this.record.status === 'preparing';
  }

  /** Reads a finished run's events once (no polling). */
  load(): void {
    this.events.drain(true);
    if (this.record.status === 'running' && !this.alive()) this.finish(undefined);
  }

  /** Follows a live trainer: our own child (exit code known) or a re-attached PID (polled). */
  follow(child?: ChildProcess): void {
    this.child = child;
    this.events.follow();
    this.log = new FileTailer(path.join(this.record.runDir, 'trainer.log'), { onLines: (l) => this.emit('log', l), intervalMs: 500 });
    this.log.follow();
    if (child) {
      child.once('exit', (code, signal) => this.finish({ code, signal }));
      child.once('error', (err) => {
        this.record.message = `could not start hqlora-train: ${err.message}`;
        this.finish({ code: ExitCode.error, signal: null });
      });
    } else {
      this.liveness = setInterval(() => {
        if (!this.alive()) this.finish(undefined);
      }, 1000);
    }
    this.emit('changed');
  }

  /** True while the recorded trainer process is alive (and is still the same process). */
  alive(): boolean {
    const { pid, pidStart } = this.record;
    return pid !== undefined && isSameProcessAlive(pid, pidStart);
  }

  /**
   * SIGTERM (graceful: the trainer checkpoints and exits 3), SIGKILL, or SIGUSR1 (a checkpoint after the current step,
   * training goes on) to the run's whole process group.
   */
  signal(sig: NodeJS.Signals): boolean {
    const pid = this.record.pid;
    if (pid === undefined || !this.alive()) return false;
    if (sig === 'SIGTERM') this.record.stopRequested = true;
    try {
      process.kill(-pid, sig); // detached => the trainer leads its own process group
      return true;
    } catch {
      return false;
    }
  }

  dispose(): void {
    this.events.stop();
    this.log?.stop();
    if (this.liveness) clearInterval(this.liveness);
    this.removeAllListeners();
  }

  summary(now = Date.now()): RunSummary {
    const m = this.metrics;
    const st = m.start;
    const last = m.lastStep;
    const endMs = this.live ? now : Math.max(m.lastTime * 1000, this.record.startedAt);
    const loss = last ? num(last.loss) : NaN;
    const eta = last ? num(last.eta_s) : NaN;
    return {
      id: this.id,
      name: this.name,
      status: this.record.status,
      message: this.record.message,
      step: last?.step ?? m.done?.step ?? 0,
      totalSteps: last?.total_steps ?? st?.total_steps ?? 0,
      etaS: this.live && Number.isFinite(eta) ? eta : null,
      startTime: this.record.startedAt,
      durationS: Math.max(0, (endMs - this.record.startedAt) / 1000),
      finalLoss: Number.isFinite(loss) ? loss : null,
      backend: st ? `${st.backend} × ${st.threads}` : '',
      model: st ? `${st.model.architecture} (${path.basename(st.model.path)})` : '',
      levels: st ? st.params.per_level.map((l) => `r${l.rank}/α${num(l.alpha)}`).join(' + ') : '',
      live: this.live,
      ranks: last?.world_size ?? st?.world_size ?? 1,
      tokensPerS: last && Number.isFinite(num(last.tokens_per_s)) ? num(last.tokens_per_s) : null,
      rankMemoryBytes: last ? (last.rank_memory_bytes ?? [last.memory_bytes]) : [],
    };
  }

  private onLines(lines: string[]): void {
    this.changedInBatch = false;
    this.reader.lines(lines);
    this.emit('metrics');
    if (this.changedInBatch) this.emit('changed');
  }

  private onEvent(e: TrainerEvent): void {
    this.metrics.add(e);
    if (e.type === 'checkpoint') this.emit('checkpoint', e);
    this.changedInBatch ||= e.type !== 'adapter_stats';
    if (e.type === 'start' && this.record.status === 'preparing') this.record.status = 'running';
  }

  /** The process is gone: read the last events and map (exit, events, stop request) to one status. */
  private finish(exit: ExitInfo | undefined): void {
    if (this.liveness) clearInterval(this.liveness);
    this.liveness = undefined;
    this.events.drain(true);
    this.events.stop();
    this.log?.drain(true);
    this.log?.stop();
    const { status, message } = classify(this.metrics, exit, this.record.stopRequested ?? false, this.record.runDir);
    this.record.status = status;
    this.record.message = this.record.message.startsWith('could not start') ? this.record.message : message;
    this.child = undefined;
    this.emit('changed');
  }
}

/**
 * The one mapping from how a trainer ended to a run status (CONTRACTS §1 exit codes, §5 done/error events).
 * `exit` is undefined for a re-attached run, whose exit code nobody can read: its events decide.
 */
export function classify(m: RunMetrics, exit: ExitInfo | undefined, stopRequested: boolean, runDir: string): { status: RunStatus; message: string } {
  if (m.done) {
    return m.done.status === 'stopped'
      ? { status: 'stopped', message: `stopped at step ${m.done.step} after a checkpoint; Resume continues it` }
      : { status: 'completed', message: `completed ${m.done.step} steps, final loss ${m.done.final_loss === null ? '?' : num(m.done.final_loss).toFixed(4)}` };
  }
  const error = m.error ?? earlyError(runDir);
  if (error) return { status: 'failed', message: `${error.code}: ${error.message}${error.hint ? ` — ${error.hint}` : ''}` };
  if (exit?.code === ExitCode.stopped) return { status: 'stopped', message: 'stopped after a checkpoint; Resume continues it' };
  if (exit?.signal) {
    return stopRequested
      ? { status: 'stopped', message: `stopped (${exit.signal})` }
      : { status: 'failed', message: `${explainSignal(exit.signal, 'Resume')}; see trainer.log` };
  }
  if (stopRequested) return { status: 'stopped', message: 'stopped' };
  if (exit?.code === ExitCode.done) return { status: 'completed', message: 'completed' };
  const code = exit ? `exited with code ${String(exit.code)}` : 'ended without a final event';
  return { status: 'failed', message: `hqlora-train ${code}${lastLogLine(runDir)}` };
}

/**
 * Errors before the trainer opened events.jsonl (bad run.json, unreadable model) only reach its stdout file, which
 * every launch of the run appends to: the last launch's error (the reader forgets errors before a later start).
 */
function earlyError(runDir: string): Extract<TrainerEvent, { type: 'error' }> | undefined {
  const file = path.join(runDir, 'trainer.stdout.jsonl');
  if (!existsSync(file)) return undefined;
  const reader = new TrainerEventReader();
  reader.push(readFileSync(file));
  reader.end();
  return reader.error;
}

function lastLogLine(runDir: string): string {
  try {
    const last = readFileSync(path.join(runDir, 'trainer.log'), 'utf8').trimEnd().split('\n').at(-1);
    return last ? `: ${last.slice(0, 300)}` : '';
  } catch {
    return '';
  }
}
