// cli-gpus.test.ts — `hqlora run --gpus N` end to end with the real trainer on the CPU backend: hqlora-train starts
// and supervises the ranks, the CLI shows rank 0's events, the run equals one rank with N × accumulation; and the
// config errors of the world (more ranks than listed GPUs) at their key.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { validateTrainerEvent } from '../../extension/core/schemas';
import { Run } from '../../extension/registry/run';
import { requireBuilds, runCli, tinyConfig } from './helpers';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'hqlora-gpus-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
before(requireBuilds);

interface Ev { type: string; loss?: number; world_size?: number; dist_backend?: string; rank_memory_bytes?: number[] }

function events(runsDir: string): { runDir: string; ev: Ev[] } {
  const runs = readdirSync(runsDir);
  assert.equal(runs.length, 1, runs.join(', '));
  const runDir = path.join(runsDir, runs[0] ?? '');
  const lines = readFileSync(path.join(runDir, 'events.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as unknown);
  for (const e of lines) assert.ok(validateTrainerEvent(e), `${JSON.stringify(e)}: ${JSON.stringify(validateTrainerEvent.errors)}`);
  return { runDir, ev: lines as Ev[] };
}

/** The config file with hardware.device cpu and the given replacements. */
function edited(file: string, subs: [string, string][]): string {
  let text = readFileSync(file, 'utf8').replace('hardware: {threads: 1}', 'hardware: {threads: 1, device: cpu}');
  for (const [a, b] of subs) {
    assert.ok(text.includes(a), a);
    text = text.replace(a, b);
  }
  writeFileSync(file, text);
  return file;
}

describe('hqlora run --gpus', () => {
  it('trains on 2 CPU ranks that hqlora-train supervises, equal to 1 rank with 2x accumulation', async () => {
    // tinyConfig: micro_batch_size 2 × accumulation 2; the 2-rank run takes accumulation 1 (the same global batch).
    const two = edited(tinyConfig(tmp, 'two'), [['gradient_accumulation_steps: 2', 'gradient_accumulation_steps: 1'],
      [`output: {dir: ${path.join(tmp, 'runs')}}`, `output: {dir: ${path.join(tmp, 'runs2')}}`]]);
    const r = await runCli(['run', two, '--gpus', '2']);
    assert.equal(r.code, 0, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    assert.match(r.stdout, /^ranks {4}2 on this host \(CPU processes\)/m);
    assert.match(r.stdout, /× 2 ranks \(cpu all-reduce\)/);
    assert.match(r.stdout, /^step 4\/4 .* tok\/s on 2 ranks/m);
    assert.equal(r.stderr, '', 'no warnings (every trainer event validated)');
    const { runDir, ev } = events(path.join(tmp, 'runs2'));
    assert.equal(ev.filter((e) => e.type === 'start').length, 1, 'rank 0 alone writes events');
    assert.equal(ev.find((e) => e.type === 'start')?.world_size, 2);
    const steps = ev.filter((e) => e.type === 'step');
    assert.equal(steps.length, 4);
    for (const s of steps) assert.equal(s.rank_memory_bytes?.length, 2);
    const runJson = JSON.parse(readFileSync(path.join(runDir, 'run.json'), 'utf8')) as { hardware: { gpus: number } };
    assert.equal(runJson.hardware.gpus, 2, 'run.json records the world');
    assert.match(readFileSync(path.join(runDir, 'trainer.log'), 'utf8'), /^\[rank 1\] \[hqlora\] rank 1 of 2/m);
    // What the dashboard and the status bar show: the world, the global throughput, each rank's memory.
    const summary = (dir: string) => {
      const run = new Run({ runDir: dir, configFile: two, startedAt: Date.now(), status: 'running', message: '' });
      run.load();
      const s = run.summary();
      run.dispose();
      return s;
    };
    const s2 = summary(runDir);
    assert.equal(s2.ranks, 2);
    assert.equal(s2.rankMemoryBytes.length, 2);
    for (const b of s2.rankMemoryBytes) assert.ok(b > 0, String(b));
    assert.ok(s2.tokensPerS !== null && s2.tokensPerS > 0, String(s2.tokensPerS));

    const one = edited(tinyConfig(tmp, 'one'), []);
    const r1 = await runCli(['run', one]);
    assert.equal(r1.code, 0, r1.stderr);
    const oneRun = events(path.join(tmp, 'runs'));
    const ref = oneRun.ev.filter((e) => e.type === 'step').map((e) => e.loss);
    const s1 = summary(oneRun.runDir);
    assert.equal(s1.ranks, 1);
    assert.equal(s1.rankMemoryBytes.length, 1, 'a one-process run: its memory_bytes');
    assert.deepEqual(steps.map((e) => e.loss), ref, 'the CPU backend sums in rank order: the same losses, bit for bit');
  });

  it('refuses more ranks than hardware.gpu_ids names, at the key', async () => {
    const cfg = edited(tinyConfig(tmp, 'ids'), [['device: cpu', 'gpu_ids: [0, 1]']]);
    const r = await runCli(['run', cfg, '--gpus', '3']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /--gpus 3 asks for more ranks than the 2 GPU\(s\) of hardware\.gpu_ids/);
    assert.match(r.stderr, /hardware\.gpus/);
  });
});
