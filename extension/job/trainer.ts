// trainer.ts — finding the hqlora-train executable and asking it short questions (--version, inspect).
//
// Discovery order (the one documented order, README "Trainer discovery"):
//   1. the environment variable HQLORA_TRAINER,
//   2. the caller's setting (the extension's `hqlora.trainer.path`, machine-overridable),
//   3. the bundled binary <package root>/native/build/bin/hqlora-train (built by `npm run build:native`),
// and otherwise an error that lists every path tried with the reason it was rejected. A candidate counts only if
// `<path> --version` runs and prints `hqlora-train <semver>` — the check is awaited.
import { execFile, spawn } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';

import type { ErrorEvent } from '../../schemas/generated/trainer-events';
import { HqError } from '../core/errors';

export interface TrainerInfo {
  /** Absolute path of the executable. */
  path: string;
  /** Where the path came from. */
  source: 'env' | 'setting' | 'bundled';
  /** Semantic version from `--version`. */
  version: string;
  /** Compute backends compiled in, e.g. ['cpu'] or ['cpu', 'cuda']. */
  backends: string[];
}

export interface FindTrainerOptions {
  /** Folder holding package.json (the bundled binary is under native/build/bin). */
  packageRoot: string;
  /** A user setting, e.g. the extension's hqlora.trainer.path; empty = unset. */
  setting?: string;
  /** Environment to read HQLORA_TRAINER from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Called when an explicit candidate (env, setting) is rejected and a later one is tried. */
  onWarning?: (message: string) => void;
  /** This machine's platform and architecture (default process.platform, process.arch). */
  platform?: string;
  arch?: string;
}

/** Path of the trainer that `npm run build:native` builds. */
export function bundledTrainerPath(packageRoot: string): string {
  return path.join(packageRoot, 'native', 'build', 'bin', 'hqlora-train');
}

export async function findTrainer(opts: FindTrainerOptions): Promise<TrainerInfo> {
  const env = opts.env ?? process.env;
  const candidates: { source: TrainerInfo['source']; label: string; path: string }[] = [];
  if (env.HQLORA_TRAINER) candidates.push({ source: 'env', label: 'HQLORA_TRAINER', path: env.HQLORA_TRAINER });
  if (opts.setting) candidates.push({ source: 'setting', label: 'setting hqlora.trainer.path', path: opts.setting });
  candidates.push({ source: 'bundled', label: 'bundled', path: bundledTrainerPath(opts.packageRoot) });

  const tried: string[] = [];
  for (const c of candidates) {
    const file = path.resolve(c.path);
    const problem = notExecutable(file);
    let reason = problem;
    if (!problem) {
      try {
        const { version, backends } = await trainerVersion(file);
        return { path: file, source: c.source, version, backends };
      } catch (err) {
        reason = err instanceof Error ? err.message : String(err);
      }
    }
    tried.push(`  ${c.label}: ${file} (${reason})`);
    if (c.source !== 'bundled') opts.onWarning?.(`ignoring ${c.label}=${file}: ${reason}`);
  }
  const platform = `${opts.platform ?? process.platform}-${opts.arch ?? process.arch}`;
  if (platform !== SUPPORTED_PLATFORM) {
    throw new HqError(`hqlora-train is built for ${SUPPORTED_PLATFORM} only, and this is ${platform}; tried:\n${tried.join('\n')}`, {},
      'build it from source (README "The two commands": `npm install` in a clone of the repository, on a machine with ' +
      'CMake, a C++17 compiler and OpenBLAS), then set hqlora.trainer.path (or HQLORA_TRAINER) to native/build/bin/hqlora-train');
  }
  throw new HqError(`hqlora-train not found; tried:\n${tried.join('\n')}`, {},
    'run `npm run build:native` in the H-QLoRA folder, or set HQLORA_TRAINER to the path of hqlora-train');
}

/** The one platform the VSIX's binaries are built for (`vsce package --target linux-x64`). */
export const SUPPORTED_PLATFORM = 'linux-x64';

/** The library named by the loader's "error while loading shared libraries: libX.so.N: cannot open ..." line. */
export function missingSharedLibrary(stderr: string): string | undefined {
  return /error while loading shared libraries: ([^:\s]+): cannot open shared object file/.exec(stderr)?.[1];
}

function notExecutable(file: string): string | undefined {
  try {
    if (!statSync(file).isFile()) return 'not a file';
    accessSync(file, constants.X_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'not executable' : String(code ?? err);
  }
}

/** Runs `<file> --version` and parses `hqlora-train <semver>` and `backends: a,b`. */
export async function trainerVersion(file: string): Promise<{ version: string; backends: string[] }> {
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(file, ['--version'], { timeout: 10_000, env: trainerEnv() }, (err, out, errOut) => {
      const lib = missingSharedLibrary(errOut);
      if (lib) reject(new Error(`cannot start: it needs the shared library ${lib}, which is not installed on this machine (install the package that provides ${lib}, or build hqlora-train from source)`));
      else if (err) reject(new Error(`--version failed: ${err.message.split('\n')[0]}`));
      else resolve(out);
    });
  });
  const version = /^hqlora-train\s+(\d+\.\d+\.\d+\S*)/m.exec(stdout)?.[1];
  if (!version) throw new Error(`--version printed ${JSON.stringify(stdout.slice(0, 80))}, not "hqlora-train <version>"`);
  const backends = /^backends:\s*(.+)$/m.exec(stdout)?.[1]?.split(',').map((b) => b.trim()).filter(Boolean) ?? [];
  return { version, backends };
}

/**
 * The explicit environment of every trainer process: only what a compute process needs from ours (paths, locale,
 * thread and GPU controls), plus `extra`. Nothing else leaks in.
 */
export function trainerEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const keep = /^(PATH|HOME|USER|LANG|LC_[A-Z]+|TZ|TMPDIR|LD_LIBRARY_PATH|OMP_[A-Z_]+|OPENBLAS_[A-Z_]+|GOTO_NUM_THREADS|CUDA_[A-Z_]+|NVIDIA_[A-Z_]+|HQ_[A-Z_]+|NCCL_[A-Z0-9_]+)$/;
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (keep.test(k) && v !== undefined) env[k] = v;
  return { ...env, ...extra };
}

/**
 * Runs `hqlora-train inspect <target>` and returns its one JSON object. A failure is reported by the trainer as an
 * error event on stdout, which becomes an HqError naming the file (and tensor/offset).
 */
export async function inspectWithTrainer(trainer: string, target: string): Promise<Record<string, unknown>> {
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
    (resolve, reject) => {
      const child = spawn(trainer, ['inspect', target], { env: trainerEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
      child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
      child.on('error', reject);
      child.on('close', (c) => resolve({ code: c, stdout, stderr }));
    },
  );
  const lines = stdout.split('\n').map((l) => l.trim()).filter(Boolean);
  if (code === 0) {
    try {
      return JSON.parse(lines.join('\n')) as Record<string, unknown>;
    } catch {
      throw new HqError('hqlora-train inspect printed something that is not JSON', { file: target },
        'the trainer and the CLI may be out of step: run `npm run build` and `npm run build:native`');
    }
  }
  const last = lines.at(-1);
  let ev: Partial<ErrorEvent> | undefined;
  try {
    ev = last ? (JSON.parse(last) as Partial<ErrorEvent>) : undefined;
  } catch {
    ev = undefined;
  }
  if (ev?.type === 'error' && ev.message) {
    const w = ev.where ?? {};
    const at = [w.tensor && `tensor ${w.tensor}`, w.offset !== undefined && `offset ${w.offset}`].filter(Boolean).join(', ');
    throw new HqError(`${ev.code ?? 'error'}: ${ev.message}${at ? ` (${at})` : ''}`, { file: w.file ?? target }, ev.hint ?? '');
  }
  throw new HqError(`hqlora-train inspect failed with exit code ${String(code)}: ${stderr.trim().split('\n').at(-1) ?? ''}`,
    { file: target }, 'check that the path is a .safetensors file or a model folder');
}
