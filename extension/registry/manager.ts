// manager.ts — the run manager: starts runs (config → data prep with a cancellable progress notification →
// detached trainer), follows them through events.jsonl and trainer.log, stops them (SIGTERM to the process group,
// SIGKILL after a timeout), and after a window reload re-attaches to the ones still alive (registry: PID + start
// time) and lists finished ones from their folders.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, statSync } from 'node:fs';
import path from 'node:path';

import * as vscode from 'vscode';

import { HqError } from '../core/errors';
import { type PreparedRun, prepareRun } from '../job/job';
import { gpuEnv, writeRunJson } from '../job/launcher';
import { trainerEnv } from '../job/trainer';
import type { Settings } from '../settings';
import { procStartTime } from './proc';
import { RunRegistry, scanRunFolders } from './registry';
import { type CheckpointEvent, Run, type RunRecord } from './run';

export interface Preparing {
  name: string;
  configFile: string;
  abort: AbortController;
}

export interface StartOptions {
  /** Continue this run folder from its newest complete checkpoint. */
  resumeRunDir?: string;
  /** Extra trainer flags. */
  trainerArgs?: string[];
  /** No progress notification (tests, and the 100-cycle stop test). */
  quiet?: boolean;
  /** Ranks of a one-host data-parallel run (Start Run's GPU count); default: the config's hardware.gpus. */
  gpus?: number;
}

export class RunManager implements vscode.Disposable {
  private readonly runs_ = new Map<string, Run>();
  private readonly registry: RunRegistry;
  private preparing_: Preparing | undefined;
  private readonly changeEmitter = new vscode.EventEmitter<Run | undefined>();
  private readonly metricsEmitter = new vscode.EventEmitter<Run>();
  /** A run was added, removed or changed status/step (undefined: the list or the preparing state changed). */
  readonly onDidChange = this.changeEmitter.event;
  /** A run has new metric points. */
  readonly onDidMetrics = this.metricsEmitter.event;

  constructor(
    private readonly extension: vscode.ExtensionContext,
    private readonly settings: Settings,
    private readonly log: vscode.LogOutputChannel,
    private readonly trainerLog: vscode.LogOutputChannel,
  ) {
    this.registry = new RunRegistry(extension.workspaceState);
  }

  get preparing(): Preparing | undefined {
    return this.preparing_;
  }

  /** Every known run, newest first. */
  get runs(): Run[] {
    return [...this.runs_.values()].sort((a, b) => b.record.startedAt - a.record.startedAt);
  }

  get liveRuns(): Run[] {
    return this.runs.filter((r) => r.live);
  }

  get(id: string): Run | undefined {
    return this.runs_.get(id);
  }

  /** After activation: re-attach to live runs from the registry, then list run folders. */
  restore(): void {
    for (const rec of this.registry.load()) {
      const run = this.add(rec);
      if (run.live && run.alive()) {
        this.log.info(`re-attached to ${run.name} (pid ${rec.pid ?? '?'})`);
        run.follow();
      } else {
        run.load();
      }
    }
    this.rescan();
    void this.persist();
  }

  /** Lists run folders not yet known (hqlora.runsFolder, <workspace>/runs, the parents of known runs). */
  rescan(): void {
    const dirs = new Set<string>();
    const folder = this.settings.runsFolder;
    if (folder) dirs.add(folder);
    for (const wf of vscode.workspace.workspaceFolders ?? []) dirs.add(path.join(wf.uri.fsPath, 'runs'));
    for (const r of this.runs_.values()) dirs.add(path.dirname(r.id));
    let added = 0;
    for (const { runDir } of scanRunFolders(dirs)) {
      if (this.runs_.has(runDir)) continue;
      const startedAt = statSync(path.join(runDir, 'run.json')).mtimeMs;
      this.add({ runDir, configFile: '', startedAt, status: 'running', message: '' }).load();
      added++;
    }
    if (added) this.changeEmitter.fire(undefined);
  }

  /**
   * Starts (or resumes) a run of `configFile`: prepares data under a cancellable progress notification, then
   * spawns the trainer. Resolves with the Run once the trainer is spawned; undefined when cancelled.
   */
  async start(configFile: string, opts: StartOptions = {}): Promise<Run | undefined> {
    const max = this.settings.maxConcurrentRuns;
    const active = this.liveRuns.length + (this.preparing_ ? 1 : 0);
    if (active >= max) {
      throw new HqError(`${active} H-QLoRA run(s) already active (hqlora.maxConcurrentRuns = ${max})`, {},
        'stop a run first, or raise the setting hqlora.maxConcurrentRuns');
    }
    const abort = new AbortController();
    const name = path.basename(opts.resumeRunDir ?? configFile).replace(/\.hqlora\.ya?ml$/, '');
    this.preparing_ = { name, configFile, abort };
    this.changeEmitter.fire(undefined);
    try {
      const prepare = (report: (m: string) => void): Promise<PreparedRun> =>
        prepareRun({
          configPath: configFile,
          packageRoot: this.extension.extensionPath,
          trainerSetting: this.settings.trainerPath,
          ...(opts.resumeRunDir ? { resume: true, runName: path.basename(opts.resumeRunDir), outputDir: path.dirname(opts.resumeRunDir) } : {}),
          ...(!opts.resumeRunDir && this.settings.runsFolder ? { outputDir: this.settings.runsFolder } : {}),
          ...(this.settings.defaultDevice ? { defaultDevice: this.settings.defaultDevice } : {}),
          ...(opts.gpus !== undefined ? { gpus: opts.gpus } : {}),
          signal: abort.signal,
          onWarning: (m) => this.log.warn(m),
          onPrepareProgress: (p) => report(`${p.phase} ${p.done}/${p.total}`),
        });
      const prepared = opts.quiet
        ? await prepare(() => undefined)
        : await vscode.window.withProgress(
            { location: vscode.ProgressLocation.Notification, title: `H-QLoRA ${name}: preparing data`, cancellable: true },
            (progress, token) => {
              token.onCancellationRequested(() => abort.abort(new Error('cancelled')));
              return prepare((message) => progress.report({ message }));
            },
          );
      if (abort.signal.aborted) return undefined;
      return this.launch(prepared, configFile, opts);
    } catch (err) {
      if (abort.signal.aborted) {
        this.log.info(`${name}: data preparation cancelled`);
        return undefined;
      }
      throw err;
    } finally {
      this.preparing_ = undefined;
      this.changeEmitter.fire(undefined);
    }
  }

  /** Cancels a data preparation in progress. */
  cancelPreparing(): boolean {
    if (!this.preparing_) return false;
    this.preparing_.abort.abort(new Error('cancelled'));
    return true;
  }

  /** Spawns the trainer of a prepared run, detached in its own process group, and follows it. */
  launch(prepared: PreparedRun, configFile: string, opts: StartOptions = {}): Run {
    const { run, trainer } = prepared;
    const runJson = writeRunJson(run);
    const resume = opts.resumeRunDir !== undefined;
    const args = ['--config', runJson, ...(resume ? ['--resume'] : []), ...(opts.trainerArgs ?? [])];
    // stdout and stderr go to files, not pipes: a pipe would break (SIGPIPE) when the window reloads, and the
    // trainer must outlive the extension host. Events are read from events.jsonl (the trainer appends it itself);
    // trainer.stdout.jsonl only matters for errors raised before the trainer knows its run folder.
    const out = openSync(path.join(run.runDir, 'trainer.stdout.jsonl'), 'a');
    const err = openSync(path.join(run.runDir, 'trainer.log'), 'a');
    let child: ChildProcess;
    try {
      child = spawn(trainer.path, args, { cwd: run.runDir, env: trainerEnv(gpuEnv(run.config.hardware.gpu_ids)), detached: true, stdio: ['ignore', out, err] });
    } finally {
      closeSync(out);
      closeSync(err);
    }
    child.unref(); // the extension host may exit (reload) without waiting for, or killing, the trainer
    const rec: RunRecord = {
      runDir: run.runDir, configFile, startedAt: Date.now(), status: 'running', message: resume ? 'resumed' : 'started',
      ...(child.pid !== undefined ? { pid: child.pid, pidStart: procStartTime(child.pid) } : {}),
    };
    let r = this.runs_.get(run.runDir);
    if (r) Object.assign(r.record, { ...rec, startedAt: r.record.startedAt, stopRequested: false });
    else r = this.add(rec);
    this.log.info(`${resume ? 'resumed' : 'started'} ${r.name}: ${trainer.path} ${args.join(' ')} (pid ${child.pid ?? '?'})`);
    r.follow(child);
    void this.persist();
    return r;
  }

  /** Graceful stop: SIGTERM to the process group (checkpoint, exit 3), SIGKILL after hqlora.stopTimeoutSeconds. */
  async stop(run: Run, graceMs = this.settings.stopTimeoutMs): Promise<void> {
    if (!run.live) return;
    this.log.info(`stopping ${run.name} (SIGTERM; SIGKILL after ${Math.round(graceMs / 1000)} s)`);
    run.signal('SIGTERM');
    void this.persist();
    const timer = setTimeout(() => {
      if (run.signal('SIGKILL')) this.log.warn(`${run.name} did not stop within ${graceMs} ms: killed its process group`);
    }, graceMs);
    try {
      await this.whenDone(run);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * "Save checkpoint now": SIGUSR1 asks the trainer for a checkpoint after its current step, and training goes on.
   * Resolves with that checkpoint (reason "requested", which keep-K pruning leaves alone; "final" or "signal" when the
   * run ends or stops first), or undefined if the run ends without one. Periodic checkpoints read meanwhile are not it.
   */
  saveCheckpoint(run: Run): Promise<CheckpointEvent | undefined> {
    if (!run.live) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const done = (e: CheckpointEvent | undefined): void => {
        run.off('checkpoint', onCheckpoint);
        sub.dispose();
        resolve(e);
      };
      const onCheckpoint = (e: CheckpointEvent): void => {
        if (e.reason !== 'periodic') done(e);
      };
      const sub = this.onDidChange((r) => {
        if (r === run && !run.live) done(undefined);
      });
      run.on('checkpoint', onCheckpoint);
      this.log.info(`${run.name}: checkpoint requested (SIGUSR1)`);
      if (!run.signal('SIGUSR1')) done(undefined);
    });
  }

  /** Resolves once `run` is no longer live. */
  whenDone(run: Run): Promise<void> {
    if (!run.live) return Promise.resolve();
    return new Promise((resolve) => {
      const sub = this.onDidChange((r) => {
        if (r === run && !run.live) {
          sub.dispose();
          resolve();
        }
      });
    });
  }

  private add(rec: RunRecord): Run {
    const run = new Run(rec);
    this.runs_.set(run.id, run);
    let lastStatus = rec.status;
    run.on('changed', () => {
      if (run.status !== lastStatus) {
        this.log.info(`${run.name}: ${run.status}${run.record.message ? ` — ${run.record.message}` : ''}`);
        lastStatus = run.status;
        void this.persist();
      }
      this.changeEmitter.fire(run);
    });
    run.on('metrics', () => this.metricsEmitter.fire(run));
    run.on('invalid', (line, reason) => this.log.warn(`${run.name}: ignored events.jsonl line (${reason}): ${line.slice(0, 200)}`));
    run.on('log', (lines) => {
      for (const l of lines) this.trainerLog.appendLine(`[${run.name}] ${l}`);
    });
    return run;
  }

  private persist(): Thenable<void> {
    return this.registry.save(this.runs.filter((r) => r.record.pid !== undefined).map((r) => r.record));
  }

  dispose(): void {
    // Live trainers keep running on purpose (they are detached): the next activation re-attaches to them.
    for (const r of this.runs_.values()) r.dispose();
    this.changeEmitter.dispose();
    this.metricsEmitter.dispose();
  }
}
