// runner.ts — runs a sweep's cells to completion, shared by `hqlora sweep` and "H-QLoRA: Start Sweep".
//
// Each cell is an ordinary run (extension/job/job.ts prepareRun, the same path as `hqlora run`) in
// <sweep>/cells/<id>, trained by hqlora-train detached in its own process group with stdout/stderr going to files
// (like the extension's run manager): killing the sweep, or a window reload, leaves the trainers running, and
// their events stay in <run>/events.jsonl. A finished cell is scored by `hqlora eval` (extension/job/evaluate.ts)
// on its run folder, then the matrix is written (sweep-results.json, results.csv, results.md).
//
// Resuming (running the same sweep again): the state file says where each cell was.
//   done                   kept (scored again only when the eval settings changed)
//   training, trainer alive  re-attached: waited for, never started twice (PID + process start time)
//   training/queued, a run folder with a completed trainer (done event, adapter written)  → scored
//   otherwise              hqlora-train --resume: from the cell's last complete checkpoint, else from step 0
//   failed                 left alone, unless --retry-failed
// Concurrency: one cell at a time on the CPU; on a GPU another cell starts only while the memory estimates
// (extension/model/memory.ts) of the running cells and the next one fit the GPU's memory, and `parallel` caps it.
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

import type { EvalResultEvent, TrainerEvent } from '../../schemas/generated/trainer-events';
import { evaluateRun } from '../job/evaluate';
import { HqError, formatError } from '../core/errors';
import { num } from '../core/format';
import { prepareRun } from '../job/job';
import { TrainerEventReader, readEventFile } from '../job/events';
import { explainSignal, writeRunJson } from '../job/launcher';
import { trainerEnv } from '../job/trainer';
import { isSameProcessAlive, procStartTime } from '../registry/proc';
import { FileTailer } from '../registry/tail';
import { cellMemoryBytes, deviceBudget } from './capacity';
import { type CellOutcome, RESULTS_JSON, buildResults, readTrainCost, resultsCsv, resultsMarkdown, type SweepResults } from './results';
import type { LoadedSweep, SweepCell } from './spec';
import {
  type StateCell, type SweepChanges, type SweepState, acquireLock, addCells, hasStructuralChanges, moveAside, newState,
  planChanges, readState, writeFileAtomic, writeState,
} from './state';

export type ChangeDecision = 'add' | 'restart' | 'cancel';

export interface SweepRunOptions {
  sweep: LoadedSweep;
  packageRoot: string;
  trainerSetting?: string;
  /** Run only this cell (the others are kept as they are). */
  only?: string;
  /** Run failed cells again (from their last checkpoint). */
  retryFailed?: boolean;
  /** Trainer compute threads (default: the config's hardware.threads). */
  threads?: number;
  /** Asked when the sweep file changed since the sweep started. */
  decide: (changes: SweepChanges) => Promise<ChangeDecision>;
  /** Aborting stops the running cells gracefully (each writes a checkpoint) and returns. */
  signal?: AbortSignal;
  log?: (line: string) => void;
  /** The state changed (a cell started, finished, failed); for live views. */
  onState?: (state: SweepState) => void;
  /** A trainer event of a running cell. */
  onEvent?: (cellId: string, e: TrainerEvent) => void;
  /** The matrix was written. */
  onResults?: (r: SweepResults) => void;
}

export interface SweepOutcome {
  state: SweepState;
  results: SweepResults;
  /** 0: every cell done; 1: some failed; 3: stopped before the end. */
  exitCode: number;
}


const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** How a cell's trainer ended, from its events.jsonl: the last done or error event after its last start. */
function trainerOutcome(runDir: string): { status: 'completed' | 'stopped' | 'error' | 'none'; message: string } {
  let out: { status: 'completed' | 'stopped' | 'error' | 'none'; message: string } = { status: 'none', message: '' };
  readEventFile(path.join(runDir, 'events.jsonl'), {
    event: (e) => {
      if (e.type === 'start') out = { status: 'none', message: '' };
      else if (e.type === 'done') out = { status: e.status, message: '' };
      else if (e.type === 'error') out = { status: 'error', message: `${e.code}: ${e.message}${e.hint ? ` (${e.hint})` : ''}` };
    },
  });
  if (out.status === 'completed' && !existsSync(path.join(runDir, 'adapter', 'adapter.safetensors'))) return { status: 'none', message: '' };
  return out;
}

export function sha256File(file: string): string | null {
  try {
    return createHash('sha256').update(readFileSync(file)).digest('hex');
  } catch {
    return null;
  }
}

/** The eval table a cell was scored with (<run>/eval.json), or null. */
function readEval(runDir: string): EvalResultEvent | null {
  try {
    return JSON.parse(readFileSync(path.join(runDir, 'eval.json'), 'utf8')) as EvalResultEvent;
  } catch {
    return null;
  }
}

/** Everything the matrix needs from the cells' folders. */
export function collectOutcomes(sweep: LoadedSweep, state: SweepState): CellOutcome[] {
  return sweep.cells.map((cell) => {
    const st = state.cells.find((c) => c.id === cell.id) ?? { id: cell.id, fingerprint: cell.fingerprint, status: 'queued', run_dir: path.join(sweep.dir, 'cells', cell.id), attempts: 0 };
    const done = st.status === 'done';
    return {
      cell, state: st,
      eval: done ? readEval(st.run_dir) : null,
      train: readTrainCost(path.join(st.run_dir, 'events.jsonl')),
      adapterSha256: done ? sha256File(path.join(st.run_dir, 'adapter', 'adapter.safetensors')) : null,
    };
  });
}

/** Writes sweep-results.json, results.csv and results.md (each atomically). */
export function writeResults(sweep: LoadedSweep, state: SweepState): SweepResults {
  const r = buildResults(sweep, collectOutcomes(sweep, state));
  writeFileAtomic(path.join(sweep.dir, RESULTS_JSON), `${JSON.stringify(r, null, 2)}\n`);
  writeFileAtomic(path.join(sweep.dir, 'results.csv'), resultsCsv(r));
  writeFileAtomic(path.join(sweep.dir, 'results.md'), resultsMarkdown(r));
  return r;
}

/** The sweep's state to continue, or the user's choice to start over / not to start, when the sweep file changed. */
async function openState(opts: SweepRunOptions): Promise<SweepState | 'restart' | 'cancel'> {
  const { sweep } = opts;
  const state = readState(sweep.dir);
  if (!state) return newState(sweep);
  const ch = planChanges(sweep, state);
  if (hasStructuralChanges(ch)) {
    const d = await opts.decide(ch);
    if (d !== 'add') return d;
    for (const m of addCells(sweep, state, ch)) opts.log?.(`moved the old run of a changed cell aside: ${m}`);
  }
  if (ch.evalChanged) {
    for (const c of state.cells) if (c.status === 'done') c.status = 'evaluating';
    state.eval_fingerprint = sweep.evalFingerprint;
    opts.log?.('the eval settings changed: the finished cells are scored again (their training is kept)');
  }
  return state;
}

export async function runSweep(opts: SweepRunOptions): Promise<SweepOutcome> {
  const { sweep } = opts;
  const log = opts.log ?? ((): void => undefined);
  if (opts.only && !sweep.cells.some((c) => c.id === opts.only)) {
    throw new HqError(`no cell "${opts.only}" in the sweep`, { file: sweep.file }, `cells: ${sweep.cells.map((c) => c.id).join(', ')}`);
  }
  mkdirSync(sweep.dir, { recursive: true });
  let lock = acquireLock(sweep.dir);
  try {
    const opened = await openState(opts);
    if (opened === 'cancel') {
      throw new HqError('sweep not started: the sweep file changed since it started', { file: sweep.file },
        'run it again and choose to add the new cells (--add) or to start over (--restart: the old sweep folder is moved aside)');
    }
    let state: SweepState;
    if (opened === 'restart') {
      lock.release();
      const old = moveAside(sweep.dir);
      log(`started over: the old sweep folder is now ${old}`);
      mkdirSync(sweep.dir, { recursive: true });
      lock = acquireLock(sweep.dir);
      state = newState(sweep);
    } else {
      state = opened;
    }
    const st = state;
    if (opts.retryFailed) for (const c of st.cells) if (c.status === 'failed') Object.assign(c, { status: 'queued', error: null });
    const save = (): void => {
      writeState(sweep.dir, st);
      opts.onState?.(st);
    };
    save();
    let results = writeResults(sweep, st);
    opts.onResults?.(results);

    const budget = await deviceBudget(sweep, opts);
    const pending = sweep.cells.filter((c) => (!opts.only || c.id === opts.only) && needsWork(st.cells.find((s) => s.id === c.id)));
    const running = new Map<string, { bytes: number; done: Promise<void> }>();
    const cap = Math.max(1, Math.min(budget.slots, typeof sweep.parallel === 'number' ? sweep.parallel : Infinity));
    log(`${sweep.cells.length} cells, ${pending.length} to run; ${budget.describe}`);
    while ((pending.length > 0 || running.size > 0) && !opts.signal?.aborted) {
      const next = pending[0];
      if (next) {
        const bytes = budget.bytes === null ? 0 : cellMemoryBytes(next, budget.cuda) ?? Infinity;
        const used = [...running.values()].reduce((a, r) => a + r.bytes, 0);
        const fits = running.size === 0 || (budget.bytes !== null && used + bytes <= budget.bytes);
        if (running.size < cap && fits) {
          pending.shift();
          const sc = st.cells.find((s) => s.id === next.id)!;
          const done = runCell(opts, next, sc, save).then(() => {
            running.delete(next.id);
            results = writeResults(sweep, st);
            opts.onResults?.(results);
          });
          running.set(next.id, { bytes, done });
          continue;
        }
      }
      await Promise.race([...running.values()].map((r) => r.done));
    }
    await Promise.all([...running.values()].map((r) => r.done));
    results = writeResults(sweep, st);
    opts.onResults?.(results);
    const mine = st.cells.filter((c) => sweep.cells.some((x) => x.id === c.id) && (!opts.only || c.id === opts.only));
    const exitCode = mine.some((c) => c.status !== 'done' && c.status !== 'failed') ? 3 : mine.some((c) => c.status === 'failed') ? 1 : 0;
    return { state: st, results, exitCode };
  } finally {
    lock.release();
  }
}

function needsWork(c: StateCell | undefined): boolean {
  return c !== undefined && (c.status === 'queued' || c.status === 'training' || c.status === 'evaluating');
}

/** Trains (or re-attaches to, or resumes) and scores one cell; records every transition in the state. */
async function runCell(opts: SweepRunOptions, cell: SweepCell, sc: StateCell, save: () => void): Promise<void> {
  const log = opts.log ?? ((): void => undefined);
  try {
    if (sc.status !== 'evaluating') {
      const ok = await trainCell(opts, cell, sc, save);
      if (!ok) return;
      sc.status = 'evaluating';
      sc.pid = null;
      sc.pid_start = null;
      save();
    }
    if (opts.signal?.aborted) return;
    log(`${cell.id}: scoring`);
    await scoreCell(opts, sc);
    if (opts.signal?.aborted) return;
    sc.status = 'done';
    sc.eval_fingerprint = opts.sweep.evalFingerprint;
    save();
    log(`${cell.id}: done`);
  } catch (err) {
    if (opts.signal?.aborted) return;
    sc.status = 'failed';
    sc.error = formatError(err).split('\n')[0] ?? 'failed';
    sc.pid = null;
    sc.pid_start = null;
    save();
    log(`${cell.id}: failed: ${sc.error}`);
  }
}

/** True when the cell's adapter is trained; false when stopped (abort). Throws when it failed. */
async function trainCell(opts: SweepRunOptions, cell: SweepCell, sc: StateCell, save: () => void): Promise<boolean> {
  const log = opts.log ?? ((): void => undefined);
  // A trainer of this cell still running (the sweep was killed, the window reloaded): wait for it, never start a
  // second. The recorded PID is checked, and so is every process training this run.json (a sweep killed between
  // the spawn and the state write left no PID behind).
  const live = sc.pid && isSameProcessAlive(sc.pid, sc.pid_start ?? undefined) ? { pid: sc.pid, start: sc.pid_start ?? undefined }
    : trainerOf(path.join(sc.run_dir, 'run.json'));
  if (live) {
    log(`${cell.id}: re-attached to its running trainer (pid ${live.pid})`);
    const pid = live.pid;
    const onAbort = (): void => {
      try {
        process.kill(-pid, 'SIGTERM');
      } catch {
        /* gone */
      }
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    while (isSameProcessAlive(pid, live.start)) await sleep(100);
    opts.signal?.removeEventListener('abort', onAbort);
  }
  const before = trainerOutcome(sc.run_dir);
  if (before.status === 'completed') return true;
  if (opts.signal?.aborted) return false;

  const resume = existsSync(path.join(sc.run_dir, 'run.json'));
  const prepared = await prepareRun({
    configPath: cell.loaded.file, loaded: cell.loaded, packageRoot: opts.packageRoot, runName: cell.id,
    outputDir: path.join(opts.sweep.dir, 'cells'), ...(opts.trainerSetting ? { trainerSetting: opts.trainerSetting } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}), onWarning: (m) => log(`${cell.id}: warning: ${m}`),
  });
  const runJson = writeRunJson(prepared.run);
  const args = ['--config', runJson, ...(resume ? ['--resume'] : []), ...(opts.threads !== undefined ? ['--threads', String(opts.threads)] : [])];
  // Files, not pipes: the trainer must outlive this process (a killed sweep, a reloaded window).
  const out = openSync(path.join(sc.run_dir, 'trainer.stdout.jsonl'), 'a');
  const err = openSync(path.join(sc.run_dir, 'trainer.log'), 'a');
  let child: ChildProcess;
  try {
    child = spawn(prepared.trainer.path, args, { cwd: sc.run_dir, env: trainerEnv(), detached: true, stdio: ['ignore', out, err] });
  } finally {
    closeSync(out);
    closeSync(err);
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', () => resolve({ code: 1, signal: null }));
  });
  sc.status = 'training';
  sc.attempts += 1;
  sc.pid = child.pid ?? null;
  sc.pid_start = child.pid !== undefined ? procStartTime(child.pid) ?? null : null;
  sc.error = null;
  save();
  log(`${cell.id}: ${resume ? 'resumed' : 'started'} (attempt ${sc.attempts}, pid ${child.pid ?? '?'})`);
  let stopRequested = false;
  const onAbort = (): void => {
    stopRequested = true;
    if (child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGTERM'); // graceful: the trainer checkpoints and exits 3
      } catch {
        /* gone */
      }
    }
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const tail = opts.onEvent ? followEvents(sc.run_dir, (e) => opts.onEvent?.(cell.id, e)) : undefined;
  const exit = await exited;
  tail?.stop();
  opts.signal?.removeEventListener('abort', onAbort);
  const outcome = trainerOutcome(sc.run_dir);
  if (outcome.status === 'completed') return true;
  if (stopRequested || outcome.status === 'stopped') {
    sc.status = 'queued';
    sc.pid = null;
    sc.pid_start = null;
    save();
    log(`${cell.id}: stopped after a checkpoint; running the sweep again resumes it`);
    return false;
  }
  if (outcome.status === 'error') throw new HqError(outcome.message, { file: path.join(sc.run_dir, 'trainer.log') });
  throw new HqError(exit.signal ? explainSignal(exit.signal, 'hqlora sweep --retry-failed') : `hqlora-train exited with code ${String(exit.code)}`,
    { file: path.join(sc.run_dir, 'trainer.log') });
}

/** A live hqlora-train process whose command line trains `runJson` (from /proc/<pid>/cmdline), if any. */
function trainerOf(runJson: string): { pid: number; start: string | undefined } | undefined {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return undefined;
  }
  for (const d of pids) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const i = argv.indexOf('--config');
    if (i >= 0 && argv[i + 1] === runJson && argv[0] !== undefined && !argv.includes('eval')) {
      const pid = Number(d);
      if (isSameProcessAlive(pid, undefined)) return { pid, start: procStartTime(pid) };
    }
  }
  return undefined;
}

/** Polls events.jsonl and delivers each new schema-valid event (a truncated file is read again from its start). */
function followEvents(runDir: string, onEvent: (e: TrainerEvent) => void): { stop(): void } {
  const reader = new TrainerEventReader({ event: onEvent });
  const tailer = new FileTailer(path.join(runDir, 'events.jsonl'), { onLines: (lines) => reader.lines(lines), onReset: () => reader.reset() });
  tailer.follow();
  return { stop: () => { tailer.stop(); tailer.drain(); } };
}

async function scoreCell(opts: SweepRunOptions, sc: StateCell): Promise<void> {
  const ev = opts.sweep.eval;
  const run = JSON.parse(readFileSync(path.join(sc.run_dir, 'run.json'), 'utf8')) as { data?: { eval_tokens?: string | null } };
  const hasLoss = ev.loss && typeof run.data?.eval_tokens === 'string';
  if (!ev.mmlu && !hasLoss) return;
  // eval.json is written atomically by evaluateRun; an interrupted scoring leaves the old one (or none).
  await evaluateRun({
    target: sc.run_dir, packageRoot: opts.packageRoot, ablation: ev.ablation, noEvalLoss: !hasLoss,
    ...(ev.mmlu ? { mcq: ev.mmlu.path, shots: ev.mmlu.shots, split: ev.mmlu.split, ...(ev.mmlu.maxQuestions ? { maxQuestions: ev.mmlu.maxQuestions } : {}) } : { mcq: 'none' }),
    ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
    ...(opts.trainerSetting ? { trainerSetting: opts.trainerSetting } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
}

/** Used by tests and the view: how much of the run's training is done, from its last step event. */
export function cellProgress(runDir: string): { step: number; total: number; loss: number | null } {
  const last = readEventFile(path.join(runDir, 'events.jsonl'))?.lastStep;
  return last ? { step: last.step, total: last.total_steps, loss: num(last.loss) } : { step: 0, total: 0, loss: null };
}

