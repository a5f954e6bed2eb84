// evaluate.ts — one evaluation of a run, shared by `hqlora eval`, the "Evaluate Adapter" command and the sweep:
// find the run folder, tokenize the multiple-choice data into <run>/data/*.hqmcq (eval/prepare.ts), run
// `hqlora-train eval` (its events are validated like training events), and save the table as <run>/eval.json +
// <run>/eval.md.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

import type { EvalProgressEvent, EvalResultEvent, McqEvent } from '../../schemas/generated/trainer-events';
import { HqError } from '../core/errors';
import { LineSplitter } from '../core/lines';
import type { Split } from '../eval/mmlu';
import { mcqMaxLen, prepareMcq } from '../eval/prepare';
import { evalMarkdown } from '../eval/table';
import { loadRunConfig } from './config';
import { TrainerEventReader } from './events';
import { configName } from './resolve';
import { findTrainer, trainerEnv } from './trainer';

export interface EvalOptions {
  /** A run folder (holding run.json), or a config file (its newest run with an adapter). */
  target: string;
  packageRoot: string;
  /** Multiple-choice data (Hendrycks folder / CSV, QLoRA JSON); default: the run's eval.mcq.path. */
  mcq?: string;
  /** Shots (Hendrycks layout); default: the run's eval.mcq.shots, else 5. */
  shots?: number;
  split?: Split;
  /** Level ablation (base + levels 1..k cumulatively) instead of base vs the whole adapter. */
  ablation?: boolean;
  /** Adapter folder/file, or "none"; default <run>/adapter. */
  adapter?: string;
  maxQuestions?: number;
  /** Leave out the eval loss (score multiple choice only). */
  noEvalLoss?: boolean;
  threads?: number;
  trainerSetting?: string;
  signal?: AbortSignal;
  onProgress?: (e: EvalProgressEvent) => void;
  onMcq?: (e: McqEvent) => void;
  onWarning?: (message: string) => void;
  /** Tokenization progress of the questions. */
  onPrepare?: (done: number, total: number) => void;
}

export interface EvalOutcome {
  runDir: string;
  result: EvalResultEvent;
  jsonFile: string;
  mdFile: string;
  markdown: string;
}

interface RunJson {
  model: { path: string };
  data: { source_max_len: number; target_max_len: number };
  eval?: { mcq?: { path?: string; shots?: number; split?: Split; max_questions?: number } };
  output: { dir: string; run_name: string };
}

/** The run folder of `target`: itself when it holds run.json, else the newest run of the config with an adapter. */
export async function findRunDir(target: string): Promise<string> {
  const t = path.resolve(target);
  if (existsSync(path.join(t, 'run.json'))) return t;
  if (!existsSync(t) || statSync(t).isDirectory()) {
    throw new HqError(`${t} is neither a run folder (with run.json) nor a config file`, { file: t },
      'pass a run folder such as runs/demo-20250101-120000, or the .hqlora.yaml whose newest run to evaluate');
  }
  // A config file: its runs are <output.dir>/<name>-<timestamp> (or output.run_name), as `hqlora run` names them.
  const loaded = await loadRunConfig(t);
  const name = loaded.raw.output?.run_name ?? configName(t);
  const dir = path.resolve(path.dirname(t), loaded.raw.output?.dir ?? 'runs');
  const runs = existsSync(dir)
    ? readdirSync(dir)
        .filter((d) => (d === name || d.startsWith(`${name}-`)) && existsSync(path.join(dir, d, 'run.json')) &&
          existsSync(path.join(dir, d, 'adapter', 'adapter.safetensors')))
        .map((d) => ({ d, t: statSync(path.join(dir, d, 'adapter', 'adapter.safetensors')).mtimeMs }))
        .sort((a, b) => b.t - a.t || b.d.localeCompare(a.d))
    : [];
  if (!runs[0]) {
    throw new HqError(`no finished run of ${name} in ${dir}`, { file: t },
      `train it first (hqlora run ${path.basename(t)}), or pass the run folder`);
  }
  return path.join(dir, runs[0].d);
}

export async function evaluateRun(opts: EvalOptions): Promise<EvalOutcome> {
  const runDir = await findRunDir(opts.target);
  const runJsonFile = path.join(runDir, 'run.json');
  const run = JSON.parse(await readFile(runJsonFile, 'utf8')) as RunJson;
  const cfgMcq = run.eval?.mcq;
  const mcqPath = opts.mcq ? path.resolve(opts.mcq) : cfgMcq?.path;
  const shots = opts.shots ?? cfgMcq?.shots ?? 5;
  const split = opts.split ?? cfgMcq?.split ?? 'val';
  const maxLen = await mcqMaxLen(run.model.path);
  const mcqFile = mcqPath ? await prepareMcq(runDir, run.model.path, maxLen, { path: mcqPath, shots, split }, opts.onPrepare, opts.onWarning) : 'none';
  opts.signal?.throwIfAborted();

  const trainer = await findTrainer({ packageRoot: opts.packageRoot, setting: opts.trainerSetting, onWarning: opts.onWarning });
  const args = ['eval', '--config', runJsonFile, '--mcq', mcqFile, '--levels', opts.ablation ? 'ablation' : 'all'];
  if (opts.adapter) args.push('--adapter', opts.adapter === 'none' ? 'none' : path.resolve(opts.adapter));
  if (opts.maxQuestions !== undefined) args.push('--max-questions', String(opts.maxQuestions));
  if (opts.noEvalLoss) args.push('--eval-tokens', 'none');
  if (opts.threads !== undefined) args.push('--threads', String(opts.threads));
  const result = await runTrainerEval(trainer.path, args, runDir, opts);

  const markdown = evalMarkdown(result, { runDir, mcq: mcqPath ?? null, shots: mcqPath ? shots : null });
  const jsonFile = path.join(runDir, 'eval.json'), mdFile = path.join(runDir, 'eval.md');
  await atomicWrite(jsonFile, `${JSON.stringify({ ...result, mcq_source: mcqPath ?? null, split, created: new Date().toISOString() }, null, 2)}\n`);
  await atomicWrite(mdFile, markdown);
  return { runDir, result, jsonFile, mdFile, markdown };
}

async function atomicWrite(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

/** Spawns `hqlora-train eval ...` in its own process group; resolves with the eval_result event. */
function runTrainerEval(trainer: string, args: string[], cwd: string, opts: EvalOptions): Promise<EvalResultEvent> {
  return new Promise((resolve, reject) => {
    const child = spawn(trainer, args, { cwd, env: trainerEnv(), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const kill = (): void => {
      if (child.pid !== undefined && child.exitCode === null) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    };
    opts.signal?.addEventListener('abort', kill, { once: true });
    let result: EvalResultEvent | undefined;
    const stderrTail: string[] = [];
    const err = new LineSplitter();
    const events = new TrainerEventReader({
      event: (e) => {
        if (e.type === 'eval_progress') opts.onProgress?.(e);
        else if (e.type === 'mcq') opts.onMcq?.(e);
        else if (e.type === 'warning') opts.onWarning?.(`${e.code}: ${e.message}`);
        else if (e.type === 'eval_result') result = e;
      },
      invalid: (line, reason) => opts.onWarning?.(reason === 'not JSON'
        ? `ignored non-JSON trainer output: ${line.slice(0, 160)}`
        : `ignored invalid trainer event (${reason}): ${line.slice(0, 160)}`),
    });
    child.stdout.setEncoding('utf8').on('data', (s: string) => events.push(s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      for (const l of err.push(s)) {
        stderrTail.push(l);
        if (stderrTail.length > 20) stderrTail.shift();
      }
    });
    child.on('error', (e) => reject(new HqError(`cannot start ${trainer}: ${e.message}`, { file: trainer }, 'check the trainer path', { cause: e })));
    child.on('close', (code, signal) => {
      events.end();
      const { error } = events;
      opts.signal?.removeEventListener('abort', kill);
      if (opts.signal?.aborted) return reject(new HqError('evaluation cancelled', {}, ''));
      if (code === 0 && result) return resolve(result);
      if (error) {
        const w = error.where ?? {};
        return reject(new HqError(`hqlora-train eval: ${error.message}`, { ...(w.file ? { file: w.file } : {}), ...(w.line !== undefined ? { line: w.line } : {}) }, error.hint ?? ''));
      }
      reject(new HqError(`hqlora-train eval exited with ${signal ?? `code ${code}`}: ${stderrTail.slice(-5).join(' | ')}`, {},
        code === 2 ? 'this trainer does not understand the eval flags: rebuild it (npm run build:native)' : 'see the lines above'));
    });
  });
}
