// resolve.ts — from a loaded config to the complete, absolute config the trainer reads as <run>/run.json
// (docs/CONTRACTS.md §2 and §6): shorthands expanded, every default filled in (ajv useDefaults, so the schema
// stays the one place defaults live), every path absolute relative to the config file, the run folder named.
import { existsSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import type { RunConfig } from '../../schemas/generated/run-config';
import { type KeyPath, formatKeyPath } from '../core/keypath';
import type { LoadedRunConfig } from './config';
import { HqError } from '../core/errors';
import { hfCacheDir, locateModel } from '../model/hfcache';
import { describeAjvErrors } from '../core/schemaProblems';
import type { ResolvedRunConfig } from '../core/runjson';
import { fillRunConfigDefaults } from '../core/schemas';

export interface ResolvedRun {
  /** Absolute path of the config file. */
  configFile: string;
  /** The config's name: its file name without `.hqlora.yaml` (or the last extension). */
  name: string;
  /** Absolute path of the run folder, output.dir/output.run_name. */
  runDir: string;
  config: ResolvedRunConfig;
}

export interface ResolveOptions {
  /** Time used for the default run name (tests pass a fixed one). */
  now?: Date;
  /** Run folder name to use when the config has no output.run_name (e.g. the run picked by --resume). */
  runName?: string;
}

/** The config's name: `demo` for `demo.hqlora.yaml`. */
export function configName(configFile: string): string {
  const base = path.basename(configFile);
  for (const ext of ['.hqlora.yaml', '.hqlora.yml', '.yaml', '.yml', '.json']) {
    if (base.endsWith(ext)) return base.slice(0, -ext.length);
  }
  return base;
}

/** `20250102-030405` (UTC). */
export function timestamp(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}-` +
    `${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
}

export function resolveRunConfig(loaded: LoadedRunConfig, opts: ResolveOptions = {}): ResolvedRun {
  const { file } = loaded;
  const base = path.dirname(file);
  const abs = (p: string): string => path.resolve(base, p.startsWith('~/') ? path.join(os.homedir(), p.slice(2)) : p);

  const cfg = structuredClone(loaded.raw) as RunConfig & Record<string, unknown>;
  delete cfg.$schema;
  if (typeof cfg.model === 'string') cfg.model = { path: cfg.model };
  if (cfg.adapter?.ranks) {
    const alpha = cfg.adapter.alpha ?? 16;
    cfg.adapter.levels = cfg.adapter.ranks.map((rank) => ({ rank, alpha }));
    delete cfg.adapter.ranks;
    delete cfg.adapter.alpha;
  }

  if (!fillRunConfigDefaults(cfg)) {
    throw new HqError(`config does not validate after filling defaults: ${describeAjvErrors(fillRunConfigDefaults.errors)}`,
      { file }, 'this is a bug in hqlora; please report it with the config file');
  }
  const config = cfg as unknown as ResolvedRunConfig;

  // A folder wins; else a repo id is resolved offline to its snapshot in the local Hugging Face cache, and the
  // run records the repo id and the snapshot's commit.
  const model = locateModel(config.model.path, config.model.revision, base, hfCacheDir());
  config.model = model.kind === 'cache' ? { path: model.dir, repo_id: model.repoId, revision: model.commit } : { path: model.dir };
  config.data.train = abs(config.data.train);
  if (config.data.eval != null) config.data.eval = abs(config.data.eval);
  if (config.eval.mcq) config.eval.mcq.path = abs(config.eval.mcq.path);
  config.output.dir = abs(config.output.dir);
  const name = configName(file);
  config.output.run_name ??= opts.runName ?? `${name}-${timestamp(opts.now ?? new Date())}`;

  checkModelFolder(loaded, config.model.path);
  checkExists(loaded, ['data', 'train'], config.data.train, 'training data');
  if (config.data.eval != null) checkExists(loaded, ['data', 'eval'], config.data.eval, 'eval data');
  if (config.eval.mcq) checkExists(loaded, ['eval', 'mcq', 'path'], config.eval.mcq.path, 'multiple-choice data');

  return { configFile: file, name, runDir: path.join(config.output.dir, config.output.run_name), config };
}

function keyError(loaded: LoadedRunConfig, key: KeyPath, message: string, hint: string): HqError {
  return new HqError(message, { file: loaded.file, ...loaded.locate(key), key: formatKeyPath(key) }, hint);
}

function checkModelFolder(loaded: LoadedRunConfig, dir: string): void {
  const key = typeof loaded.raw.model === 'string' ? ['model'] : ['model', 'path'];
  if (!existsSync(dir)) {
    throw keyError(loaded, key, `model folder not found: ${dir}`,
      'set model to a Hugging Face model folder (config.json, tokenizer.json, *.safetensors); relative paths start at the config file');
  }
  if (!statSync(dir).isDirectory()) {
    throw keyError(loaded, key, `model must be a folder, not a file: ${dir}`, 'point model at the folder that holds config.json');
  }
  for (const need of ['config.json', 'tokenizer.json']) {
    if (!existsSync(path.join(dir, need))) {
      throw keyError(loaded, key, `model folder has no ${need}: ${dir}`,
        'download the complete model folder (config.json, tokenizer.json and the *.safetensors weights)');
    }
  }
}

function checkExists(loaded: LoadedRunConfig, key: KeyPath, p: string, what: string): void {
  if (!existsSync(p)) {
    throw keyError(loaded, key, `${what} not found: ${p}`, 'relative paths start at the folder of the config file');
  }
}
