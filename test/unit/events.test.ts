// events.test.ts — the one reader of trainer events (extension/job/events.ts), used on the trainer's stdout and on
// events.jsonl: every line validated against schemas/trainer-events.schema.json, whatever the chunking; what is not
// an event is reported with its reason and skipped; the stream's start / last step / done / error are kept, and a
// resumed run's start forgets the earlier process's done and error.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { TrainerEvent } from '../../schemas/generated/trainer-events';
import { validateTrainerEvent } from '../../extension/core/schemas';
import { TrainerEventReader } from '../../extension/job/events';

const t = 1735689600.5;
const start = (resumedFrom: number | null, time: number): TrainerEvent => ({
  v: 1, type: 'start', time, run_dir: '/r', model: { path: '/m', architecture: 'llama', layers: 2, hidden: 64, vocab: 256 },
  backend: 'cpu', threads: 2, params: { total: 1000, trainable: 10, per_level: [] }, total_steps: 10,
  resumed_from_step: resumedFrom, tokens_per_step: 64,
});
const step = (n: number, time: number): TrainerEvent => ({
  v: 1, type: 'step', time, step: n, total_steps: 10, loss: 2.5, lr: 2e-4, grad_norm: 'NaN', tokens: 40,
  tokens_per_s: 1000, elapsed_s: 1.5, eta_s: 3.5, memory_bytes: 1024,
});
const warning: TrainerEvent = { v: 1, type: 'warning', time: t, code: 'W_TRUNCATED', message: '3 examples truncated — «ü»' };
const error: TrainerEvent = { v: 1, type: 'error', time: t + 3, code: 'E_SAFETENSORS', message: 'bad header', where: { file: '/m/a.safetensors' }, hint: 'redownload' };
const done: TrainerEvent = { v: 1, type: 'done', time: t + 4, step: 4, final_loss: 2.25, adapter_dir: '/r/adapter', peft_dir: '/r/peft', elapsed_s: 9, status: 'completed' };

interface Read {
  events: TrainerEvent[];
  invalid: string[];
  reader: TrainerEventReader;
}

function read(text: string, chunk: number): Read {
  const events: TrainerEvent[] = [], invalid: string[] = [];
  const reader = new TrainerEventReader({ event: (e) => events.push(e), invalid: (line, why) => invalid.push(`${why}: ${line}`) });
  const bytes = Buffer.from(text, 'utf8');
  for (let i = 0; i < bytes.length; i += chunk) reader.push(bytes.subarray(i, i + chunk));
  reader.end();
  return { events, invalid, reader };
}

describe('TrainerEventReader', () => {
  it('uses events that the schema accepts', () => {
    for (const e of [start(null, t), step(1, t), warning, error, done]) assert.ok(validateTrainerEvent(e), JSON.stringify(validateTrainerEvent.errors));
  });

  it('reads the same events and rejects the same lines for every byte chunking', () => {
    const lines = [JSON.stringify(start(null, t)), '', JSON.stringify(step(3, t + 1)), 'loading model…', '{"v":1,"type":"progress","time":1}',
      JSON.stringify(warning), JSON.stringify(step(4, t + 2)), JSON.stringify(error), '  ', JSON.stringify(done)];
    const text = lines.join('\r\n'); // no newline after the last event: end() reads it
    for (let chunk = 1; chunk <= 64; chunk++) {
      const { events, invalid, reader } = read(text, chunk);
      assert.deepEqual(events.map((e) => e.type), ['start', 'step', 'warning', 'step', 'error', 'done'], `chunk ${chunk}`);
      assert.deepEqual(invalid, ['not JSON: loading model…', 'unknown event type "progress": {"v":1,"type":"progress","time":1}'], `chunk ${chunk}`);
      assert.deepEqual(events[2], warning, `chunk ${chunk}`);
      assert.equal(reader.lastStep?.step, 4);
      assert.equal(reader.start?.total_steps, 10);
      assert.deepEqual(reader.error, error);
      assert.deepEqual(reader.done, done);
      assert.equal(reader.lastTime, t + 4);
    }
  });

  it('forgets done and error at a later start (events.jsonl of a resumed run), and everything at reset()', () => {
    const first = [start(null, t), step(1, t + 1), error, done].map((e) => JSON.stringify(e));
    const { reader } = read(`${[...first, JSON.stringify(start(1, t + 10))].join('\n')}\n`, 4096);
    assert.equal(reader.start?.resumed_from_step, 1);
    assert.equal(reader.done, undefined);
    assert.equal(reader.error, undefined);
    assert.equal(reader.lastStep?.step, 1, 'the last step is kept until the resumed run steps');
    assert.equal(reader.lastTime, t + 10);
    reader.reset();
    assert.deepEqual([reader.start, reader.lastStep, reader.done, reader.error, reader.lastTime], [undefined, undefined, undefined, undefined, 0]);
  });

  it('reads lines a tailer already split like the same text pushed', () => {
    const lines = [step(1, t), step(2, t + 1), done].map((e) => JSON.stringify(e));
    const seen: number[] = [];
    const reader = new TrainerEventReader({ event: (e) => e.type === 'step' && seen.push(e.step) });
    reader.lines(lines.slice(0, 2));
    reader.lines(['', lines[2] ?? '']);
    assert.deepEqual(seen, [1, 2]);
    assert.equal(reader.done?.step, 4);
  });
});
