// cli-families.test.ts — every model family of issue 15 through the REAL CLI (dist/cli.js), trainer
// (native/build/bin/hqlora-train) and addon, one parametrized case per fixture (test/fixtures/models/tiny-*):
// validate, train until the first checkpoint and SIGKILL the trainer (as the OOM killer would), resume to the end,
// evaluate, merge to a flat PEFT adapter (Phi-3: the fused qkv_proj / gate_up_proj) and export the merged model,
// each export verified by the trainer's forward. The language server's parameter count for the folder
// (model/modelinfo.ts + memory.ts: each family's biases and norms) must equal the trainer's. Tiny step counts: 37 s for
// all seven on 2 busy cores (user 19 s).
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { StartEvent, TrainerEvent } from '../../schemas/generated/trainer-events';
import { baseParams, trainableParams } from '../../extension/model/memory';
import { inspectModel, modulesOf } from '../../extension/model/modelinfo';
import { FAMILIES, cli, fixtures, requireBuilds, root, runCli } from './helpers';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'hqlora-families-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
before(requireBuilds);

const RANKS = [4, 2];

function familyConfig(fixture: string, maxSteps: number): string {
  const file = path.join(tmp, `${fixture}.hqlora.yaml`);
  writeFileSync(file, [
    `model: ${path.join(fixtures, 'models', fixture)}`,
    `adapter: {ranks: [${RANKS.join(', ')}], alpha: 8}`,
    'data:',
    `  train: ${path.join(fixtures, 'data', 'train.completion.jsonl')}`,
    `  eval: ${path.join(fixtures, 'data', 'eval.completion.jsonl')}`,
    '  format: completion',
    '  source_max_len: 24',
    '  target_max_len: 8',
    `training: {max_steps: ${maxSteps}, micro_batch_size: 2, gradient_accumulation_steps: 1, learning_rate: 0.003}`,
    'eval: {every_steps: 2, max_batches: 1}',
    'checkpoints: {every_steps: 2, keep: 2}',
    `output: {dir: ${path.join(tmp, 'runs', fixture)}}`,
    'hardware: {threads: 1}',
    '',
  ].join('\n'));
  return file;
}

/** The trainer the CLI process `cli` started: its child whose command is hqlora-train (Linux /proc). */
function trainerChild(cliPid: number): number | undefined {
  const kids = readFileSync(`/proc/${cliPid}/task/${cliPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  return kids.find((k) => {
    try {
      return readFileSync(`/proc/${k}/comm`, 'utf8').trim() === 'hqlora-train';
    } catch {
      return false;
    }
  });
}

/** `hqlora run config` until its first "checkpoint" line, then SIGKILL of its trainer; resolves with the CLI's result. */
function runAndKillTrainer(config: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(process.execPath, [cli, 'run', config], {
      cwd: root, env: { ...process.env, HQLORA_TRAINER: '' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let killed = false;
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      stdout += s;
      if (killed || !/^checkpoint step-\d+/m.test(stdout)) return;
      const pid = trainerChild(child.pid!);
      if (pid === undefined) return;
      killed = true;
      process.kill(pid, 'SIGKILL');
    });
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function events(runDir: string): TrainerEvent[] {
  return readFileSync(path.join(runDir, 'events.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as TrainerEvent);
}

describe('hqlora with every model family (issue 15)', () => {
  for (const { fixture, modelType } of FAMILIES) {
    it(`${fixture} (${modelType}): validate, train, killed + resume, eval, merge (PEFT), export (merged)`, async () => {
      const modelDir = path.join(fixtures, 'models', fixture);
      const config = familyConfig(fixture, 400);
      const v = await runCli(['validate', config]);
      assert.equal(v.code, 0, v.stderr + v.stdout);

      // Train; the trainer is killed right after its first checkpoint.
      const first = await runAndKillTrainer(config);
      assert.equal(first.code, 1, first.stdout + first.stderr);
      assert.match(first.stderr, /killed by SIGKILL/);
      assert.match(first.stderr, /--resume continues from the last checkpoint/);
      const runsDir = path.join(tmp, 'runs', fixture);
      const runs = readdirSync(runsDir);
      assert.equal(runs.length, 1, runs.join(','));
      const runDir = path.join(runsDir, runs[0]!);
      const ckpts = readdirSync(path.join(runDir, 'checkpoints')).filter((d) => /^step-\d+$/.test(d))
        .map((d) => Number(d.slice(5))).sort((a, b) => a - b);
      const last = ckpts.at(-1);
      assert.ok(last !== undefined && last >= 2, `checkpoints ${ckpts.join(',')}`);

      // Resume to two steps past the newest checkpoint.
      familyConfig(fixture, last + 2);
      const second = await runCli(['run', config, '--resume']);
      assert.equal(second.code, 0, second.stdout + second.stderr);
      const evs = events(runDir);
      const starts = evs.filter((e): e is StartEvent => e.type === 'start');
      assert.equal(starts.at(-1)?.resumed_from_step, last);
      assert.equal(starts.at(-1)?.model.architecture, modelType);
      assert.equal(evs.at(-1)?.type, 'done');
      const steps = evs.filter((e) => e.type === 'step').map((e) => (e as { step: number }).step);
      assert.deepEqual(steps.slice(-2), [last + 1, last + 2]);
      // The language server's counts of this folder are the trainer's (each family's extra weights included).
      const insp = inspectModel(modelDir);
      assert.ok(insp.ok && insp.info.supported, JSON.stringify(insp));
      const trainable = trainableParams(insp.info.dims, modulesOf(modelType), RANKS).total;
      assert.equal(starts.at(-1)?.params.trainable, trainable);
      assert.equal(starts.at(-1)?.params.total, baseParams(insp.info.dims, modulesOf(modelType)).total + trainable);
      // The trainer's own PEFT export names the modules PEFT wraps.
      const trainerPeft = JSON.parse(readFileSync(path.join(runDir, 'peft', 'adapter_config.json'), 'utf8')) as { target_modules: string[] };
      const peftModules = modelType === 'phi3' ? ['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj'] : modulesOf(modelType);
      assert.deepEqual(trainerPeft.target_modules, peftModules);

      const ev = await runCli(['eval', runDir, '--mcq', path.join(fixtures, 'mcq'), '--split', 'test', '--shots', '0',
        '--max-questions', '4']);
      assert.equal(ev.code, 0, ev.stdout + ev.stderr);
      const saved = JSON.parse(readFileSync(path.join(runDir, 'eval.json'), 'utf8')) as { rows: { mcq: { n: number } | null }[] };
      assert.equal(saved.rows.length, 2, 'base and adapter');
      for (const row of saved.rows) assert.equal(row.mcq?.n, 4);

      const merged = await runCli(['merge', runDir]);
      assert.equal(merged.code, 0, merged.stdout + merged.stderr);
      assert.match(merged.stdout, /verify: PASS max \|Δlogit\| \S+ mean \S+ \(tolerance \S+\)/);
      const peftDir = path.join(runDir, 'peft-merged');
      const cfg = JSON.parse(readFileSync(path.join(peftDir, 'adapter_config.json'), 'utf8')) as
        { r: number; target_modules: string[]; rank_pattern: Record<string, number> };
      assert.equal(cfg.r, RANKS[0]! + RANKS[1]!);
      assert.deepEqual(cfg.target_modules, peftModules);
      assert.deepEqual(cfg.rank_pattern, modelType === 'phi3' ? { qkv_proj: 18, gate_up_proj: 12 } : {});

      const out = path.join(tmp, `${fixture}-merged`);
      const ex = await runCli(['export', runDir, '--base', 'dequantized', '--dtype', 'fp32', '--out', out]);
      assert.equal(ex.code, 0, ex.stdout + ex.stderr);
      assert.match(ex.stdout, /verify: PASS/);
      assert.ok(existsSync(path.join(out, 'model.safetensors')) && existsSync(path.join(out, 'config.json')));
      const outCfg = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')) as { model_type: string };
      assert.equal(outCfg.model_type, modelType);
    });
  }
});
