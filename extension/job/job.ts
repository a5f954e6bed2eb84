// job.ts — one H-QLoRA run from a config file, shared by the CLI (`hqlora run`) and the extension
// ("H-QLoRA: Start H-QLoRA Run"): load + validate the config, resolve it, find the trainer, tokenize the data
// into <run>/data, write run.json and launch hqlora-train. The caller shows progress and awaits `proc.result`.
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

import { type PrepareProgress, type PrepareResult, prepareData } from '../data/prepare';
import { dataSettings } from '../data/settings';
import { mcqMaxLen, prepareMcq } from '../eval/prepare';
import { type LoadedRunConfig, loadRunConfig } from './config';
import { HqError } from '../core/errors';
import { launchTrainer, type TrainerProcess } from './launcher';
import { type ResolvedRun, configName, resolveRunConfig } from './resolve';
import { findTrainer, type TrainerInfo } from './trainer';
import { isWorldProblem, worldPlan } from './world';

export interface StartRunOptions {
  configPath: string;
  /** Folder holding package.json (for the bundled trainer). */
  packageRoot: string;
  /** Continue the newest run of this config from its newest complete checkpoint. */
  resume?: boolean;
  /** The caller's trainer path setting (second in the discovery order). */
  trainerSetting?: string;
  /** Extra trainer flags, e.g. ['--threads', '2']. */
  trainerArgs?: string[];
  /** Ranks of a one-host data-parallel run (`hqlora run --gpus N`); default: the config's hardware.gpus. */
  gpus?: number;
  signal?: AbortSignal;
  onWarning?: (message: string) => void;
  onPrepareProgress?: (p: PrepareProgress) => void;
}

export interface PreparedRun {
  run: ResolvedRun;
  trainer: TrainerInfo;
  data: PrepareResult;
}

export interface StartedRun extends PreparedRun {
  proc: TrainerProcess;
}

export interface PrepareRunOptions extends StartRunOptions {
  /** Run folder name to use (e.g. the run the extension resumes); default: a new name, or the newest with `resume`. */
  runName?: string;
  /** Overrides output.dir (the extension's hqlora.runsFolder setting). */
  outputDir?: string;
  /** hardware.device to use when the config does not set one (the extension's hqlora.defaultDevice setting). */
  defaultDevice?: string;
  /** The config already loaded (a sweep cell: the base config with the cell's values); configPath is not read. */
  loaded?: LoadedRunConfig;
}

export async function startRun(opts: StartRunOptions): Promise<StartedRun> {
  const { run, trainer, data } = await prepareRun(opts);
  const proc = launchTrainer({ trainer: trainer.path, run, resume: opts.resume ?? false, args: opts.trainerArgs ?? [] });
  return { run, trainer, data, proc };
}

/** Everything before the launch: config, run folder, trainer discovery, tokenized data. The caller launches. */
export async function prepareRun(opts: PrepareRunOptions): Promise<PreparedRun> {
  const loaded = opts.loaded ?? await loadRunConfig(opts.configPath);
  let run = resolveRunConfig(loaded, opts.runName ? { runName: opts.runName } : {});
  if (opts.outputDir) {
    run.config.output.dir = opts.outputDir;
    run.runDir = path.join(opts.outputDir, run.config.output.run_name);
  }
  if (opts.resume && !opts.runName && loaded.raw.output?.run_name === undefined) {
    const runName = newestRun(run.config.output.dir, run.name, loaded.file);
    run = { ...run, runDir: path.join(run.config.output.dir, runName), config: { ...run.config, output: { ...run.config.output, run_name: runName } } };
  }
  if (opts.defaultDevice && loaded.raw.hardware?.device === undefined) {
    run.config.hardware.device = opts.defaultDevice as typeof run.config.hardware.device;
  }
  // Data parallel on this host: run.json gets the rank count (hqlora-train starts the ranks) and the devices.
  const world = worldPlan(run.config.hardware, opts.gpus);
  if (isWorldProblem(world)) throw new HqError(world.message, { file: loaded.file, key: world.path.join('.') }, world.hint);
  run.config.hardware.gpus = world.ranks;
  run.config.hardware.gpu_ids = world.devices;
  const trainer = await findTrainer({ packageRoot: opts.packageRoot, setting: opts.trainerSetting, onWarning: opts.onWarning });
  opts.signal?.throwIfAborted();

  const c = run.config;
  const data = await prepareData(
    c.model.path,
    dataSettings(c),
    path.join(run.runDir, 'data'),
    { ...(opts.onPrepareProgress ? { onProgress: opts.onPrepareProgress } : {}), ...(opts.signal ? { signal: opts.signal } : {}) },
  );
  opts.signal?.throwIfAborted();
  c.data.train_tokens = data.trainTokens;
  c.data.eval_tokens = data.evalTokens ?? null;
  if (c.eval.mcq) {
    // eval.mcq: the questions tokenized once into <run>/data; the trainer scores them at every eval (mcq events).
    const maxLen = await mcqMaxLen(c.model.path, c.data.source_max_len + c.data.target_max_len);
    c.eval.mcq.tokens = await prepareMcq(run.runDir, c.model.path, maxLen,
      { path: c.eval.mcq.path, shots: c.eval.mcq.shots ?? 5, split: c.eval.mcq.split ?? 'val' }, undefined, opts.onWarning);
  }
  // group_by_length wrote the training order into the token file; the trainer's shuffle would undo it.
  if (c.data.group_by_length) c.training.shuffle = false;
  return { run, trainer, data };
}

/** The newest `<name>-*` run folder under `dir` that has a run.json (what --resume continues). */
export function newestRun(dir: string, name: string, configFile: string): string {
  const runs = existsSync(dir)
    ? readdirSync(dir)
        .filter((d) => d.startsWith(`${name}-`) && existsSync(path.join(dir, d, 'run.json')))
        .map((d) => ({ d, t: statSync(path.join(dir, d, 'run.json')).mtimeMs }))
        .sort((a, b) => b.t - a.t || b.d.localeCompare(a.d))
    : [];
  const newest = runs[0];
  if (!newest) {
    throw new HqError(`--resume: no earlier run of ${configName(configFile)} in ${dir}`, { file: configFile },
      'start the run without --resume first, or set output.run_name to the run folder to continue');
  }
  return newest.d;
}
