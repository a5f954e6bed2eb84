// launcher.test.ts — the trainer as a typed, cancellable resource, with the real hqlora-train: every event
// validated, stop() = SIGTERM to the process group (checkpoint, exit 3 -> 'stopped'), --resume continues to
// 'completed', and a trainer error becomes 'failed' with the error event's message. The run registry, reading the
// run's events.jsonl, sees what the launcher read on stdout (one event reader, job/events.ts).
import assert from 'node:assert/strict';
import {
  copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { TrainerEvent } from '../../schemas/generated/trainer-events';
import { TrainerEventReader } from '../../extension/job/events';
import { startRun } from '../../extension/job/job';
import { explainSignal } from '../../extension/job/launcher';
import { Run } from '../../extension/registry/run';
import { fixtures, requireBuilds, root, tinyConfig } from './helpers';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'hqlora-launch-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
before(requireBuilds);

describe('launcher', () => {
  it('stops on request after a checkpoint, then resumes to completion', async () => {
    // Long enough that the stop request lands mid-run.
    const long = tinyConfig(tmp, 'stoppable');
    writeFileSync(long, readFileSync(long, 'utf8').replace('max_steps: 4', 'max_steps: 400'));

    const first = await startRun({ configPath: long, packageRoot: root });
    const invalid: string[] = [];
    first.proc.on('invalid', (l, why) => invalid.push(`${why}: ${l}`));
    const steps: number[] = [];
    await new Promise<void>((resolve) => {
      first.proc.on('event', (e: TrainerEvent) => {
        if (e.type === 'step') steps.push(e.step);
        if (e.type === 'step' && e.step === 3) resolve();
      });
    });
    const stopped = await first.proc.stop();
    assert.equal(stopped.status, 'stopped', stopped.message);
    assert.equal(stopped.exitCode, 3);
    assert.deepEqual(invalid, []);
    const ckpts = readdirSync(path.join(first.run.runDir, 'checkpoints')).filter((d) => d.startsWith('step-'));
    assert.ok(ckpts.length > 0, 'a checkpoint was written on SIGTERM');
    assert.ok(existsSync(path.join(first.run.runDir, 'checkpoints', ckpts.at(-1) ?? '', 'state.json')));

    // Resume the same run folder (picked as the newest run of this config) and let it finish quickly.
    writeFileSync(long, readFileSync(long, 'utf8').replace('max_steps: 400', `max_steps: ${Math.max(...steps) + 3}`));
    const second = await startRun({ configPath: long, packageRoot: root, resume: true });
    assert.equal(second.run.runDir, first.run.runDir);
    let resumedFrom: number | null | undefined;
    second.proc.on('event', (e: TrainerEvent) => {
      if (e.type === 'start') resumedFrom = e.resumed_from_step;
    });
    const done = await second.proc.result;
    assert.equal(done.status, 'completed', done.message);
    assert.ok(resumedFrom !== null && resumedFrom !== undefined && resumedFrom >= 1, `resumed_from_step ${resumedFrom}`);
    assert.ok(existsSync(path.join(first.run.runDir, 'peft', 'adapter_model.safetensors')));
  });

  it('explains a trainer killed from outside (the OOM killer\'s SIGKILL, a crash) and the run resumes', async () => {
    const config = tinyConfig(tmp, 'oom');
    writeFileSync(config, readFileSync(config, 'utf8').replace('max_steps: 4', 'max_steps: 400'));
    const first = await startRun({ configPath: config, packageRoot: root });
    await new Promise<void>((resolve) => {
      first.proc.on('event', (e: TrainerEvent) => {
        if (e.type === 'checkpoint') resolve();
      });
    });
    assert.ok(first.proc.pid !== undefined);
    process.kill(first.proc.pid, 'SIGKILL'); // as the kernel's OOM killer does: not through stop()
    const killed = await first.proc.result;
    assert.equal(killed.status, 'failed');
    assert.equal(killed.signal, 'SIGKILL');
    assert.match(killed.message, /out-of-memory killer/);
    assert.match(killed.message, /--resume continues from the last checkpoint/);

    writeFileSync(config, readFileSync(config, 'utf8').replace('max_steps: 400', 'max_steps: 8'));
    const second = await startRun({ configPath: config, packageRoot: root, resume: true });
    assert.equal(second.run.runDir, first.run.runDir);
    const done = await second.proc.result;
    assert.equal(done.status, 'completed', done.message);

    assert.match(explainSignal('SIGSEGV', 'Resume'), /crashed \(SIGSEGV\)\. This is a bug .* Resume continues/);
    assert.match(explainSignal('SIGTERM'), /stopped from outside \(SIGTERM\)/);
  });

  it('maps a trainer error to failed with the error event message and where', async () => {
    // A copy of the model whose first shard is cut short.
    const model = path.join(tmp, 'broken-model');
    mkdirSync(model);
    const src = path.join(fixtures, 'models', 'tiny-llama');
    for (const f of readdirSync(src)) copyFileSync(path.join(src, f), path.join(model, f));
    const shard = path.join(model, 'model-00001-of-00002.safetensors');
    truncateSync(shard, statSync(shard).size - 100);
    const config = tinyConfig(tmp, 'broken');
    writeFileSync(config, readFileSync(config, 'utf8').replace(/^model: .*$/m, `model: ${model}`));

    const { proc } = await startRun({ configPath: config, packageRoot: root });
    const result = await proc.result;
    assert.equal(result.status, 'failed');
    assert.equal(result.exitCode, 1);
    assert.equal(result.error?.code, 'E_SAFETENSORS');
    assert.ok(result.message.includes('model-00001-of-00002.safetensors'), result.message);
    assert.ok(existsSync(proc.logFile));
  });

  it('reads the same events from stdout (launcher) as the run registry reads from events.jsonl', async () => {
    const config = tinyConfig(tmp, 'both-readers');
    const { proc, run } = await startRun({ configPath: config, packageRoot: root });
    const fromStdout: TrainerEvent[] = [];
    const invalid: string[] = [];
    proc.on('event', (e: TrainerEvent) => fromStdout.push(e));
    proc.on('invalid', (l, why) => invalid.push(`${why}: ${l}`));
    const result = await proc.result;
    assert.equal(result.status, 'completed', result.message);
    assert.deepEqual(invalid, []);

    const fromFile: TrainerEvent[] = [];
    const invalidInFile: string[] = [];
    const reader = new TrainerEventReader({ event: (e) => fromFile.push(e), invalid: (l, why) => invalidInFile.push(`${why}: ${l}`) });
    reader.push(readFileSync(path.join(run.runDir, 'events.jsonl')));
    reader.end();
    assert.deepEqual(invalidInFile, []);
    assert.deepEqual(fromFile, fromStdout);

    const registered = new Run({ runDir: run.runDir, configFile: config, startedAt: Date.now(), status: 'running', message: '' });
    registered.load();
    assert.equal(registered.status, 'completed', registered.record.message);
    assert.deepEqual(registered.metrics.done, result.done);
    assert.deepEqual(registered.metrics.steps.x, fromStdout.flatMap((e) => (e.type === 'step' ? [e.step] : [])));
    assert.equal(registered.summary().step, 4);
    registered.dispose();
  });
});
