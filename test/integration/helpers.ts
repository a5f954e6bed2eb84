// helpers.ts — shared setup of the integration tests: the REAL built CLI (dist/cli.js) and trainer
// (native/build/bin/hqlora-train). A missing build fails loudly with the command that makes it; nothing is skipped.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { bundledTrainerPath } from '../../extension/job/trainer';

export const root = process.cwd();
export const fixtures = path.join(root, 'test', 'fixtures');
export const cli = path.join(root, 'dist', 'cli.js');
export const trainer = bundledTrainerPath(root);

/** The family fixtures of issue 15 (test/fixtures/models/tiny-*) and the config.json model_type of each. */
export const FAMILIES: readonly { fixture: string; modelType: string }[] = [
  { fixture: 'tiny-qwen2', modelType: 'qwen2' },
  { fixture: 'tiny-qwen2-tied', modelType: 'qwen2' },
  { fixture: 'tiny-qwen3', modelType: 'qwen3' },
  { fixture: 'tiny-mistral', modelType: 'mistral' },
  { fixture: 'tiny-gemma2', modelType: 'gemma2' },
  { fixture: 'tiny-gemma3', modelType: 'gemma3_text' },
  { fixture: 'tiny-phi3', modelType: 'phi3' },
];

export function requireBuilds(): void {
  assert.ok(existsSync(cli), `${cli} is missing: run \`npm run build\` first`);
  assert.ok(existsSync(trainer), `${trainer} is missing: run \`npm run build:native\` first`);
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node dist/cli.js ...args` to completion (never on a TTY, so progress comes as plain lines). */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], {
      cwd: root,
      env: { ...process.env, HQLORA_TRAINER: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A small, fast run config over the fixtures, written into `dir`; returns its path. */
export function tinyConfig(dir: string, name: string, extra = ''): string {
  const file = path.join(dir, `${name}.hqlora.yaml`);
  writeFileSync(
    file,
    [
      `model: ${path.join(fixtures, 'models', 'tiny-llama')}`,
      'adapter: {ranks: [4, 2], alpha: 8}',
      'data:',
      `  train: ${path.join(fixtures, 'data', 'train.completion.jsonl')}`,
      `  eval: ${path.join(fixtures, 'data', 'eval.completion.jsonl')}`,
      '  format: completion',
      '  source_max_len: 64',
      '  target_max_len: 16',
      'training: {max_steps: 4, micro_batch_size: 2, gradient_accumulation_steps: 2, learning_rate: 0.003}',
      'eval: {every_steps: 2, max_batches: 2}',
      'checkpoints: {every_steps: 2, keep: 2}',
      `output: {dir: ${path.join(dir, 'runs')}}`,
      'hardware: {threads: 1}',
      extra,
    ].join('\n'),
  );
  return file;
}
