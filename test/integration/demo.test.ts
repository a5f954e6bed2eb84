// demo.test.ts — the main job (`npm start`) is a real fine-tune that learns: the embedded tiny LLaMA, trained with
// the H-QLoRA levels of test/fixtures/demo.hqlora.yaml on the "shift" task, must solve held-out words it never saw
// (test/fixtures/data/eval.completion.jsonl is disjoint from the training words). Chance per letter is 1/26.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import YAML from 'yaml';

import { fixtures, requireBuilds, runCli } from './helpers';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'hqlora-demo-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
before(requireBuilds);

interface Ev {
  type: string;
  step?: number;
  loss?: number;
  accuracy?: number;
  exact_match?: number;
}

describe('npm start (the demo fine-tune)', () => {
  it('learns the embedded task: held-out accuracy far above chance, loss falls, adapters written', async () => {
    // The demo config itself, with paths made absolute and the runs folder moved into the temp dir.
    const cfg = YAML.parse(readFileSync(path.join(fixtures, 'demo.hqlora.yaml'), 'utf8')) as Record<string, unknown> & {
      model: string;
      data: { train: string; eval: string };
      output: { dir: string };
    };
    cfg.model = path.join(fixtures, cfg.model);
    cfg.data.train = path.join(fixtures, cfg.data.train);
    cfg.data.eval = path.join(fixtures, cfg.data.eval);
    cfg.output.dir = path.join(tmp, 'runs');
    const file = path.join(tmp, 'demo.hqlora.yaml');
    writeFileSync(file, YAML.stringify(cfg));

    const r = await runCli(['run', file]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const runs = readdirSync(cfg.output.dir);
    assert.equal(runs.length, 1, runs.join(','));
    const run = path.join(cfg.output.dir, runs[0] ?? '');
    assert.ok(r.stdout.includes(path.join(run, 'adapter')), r.stdout.slice(-500));
    assert.ok(existsSync(path.join(run, 'adapter', 'adapter.safetensors')));
    assert.ok(existsSync(path.join(run, 'peft', 'adapter_model.safetensors')));

    const events = readFileSync(path.join(run, 'events.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Ev);
    const steps = events.filter((e) => e.type === 'step');
    const evals = events.filter((e) => e.type === 'eval');
    const first = steps[0]?.loss ?? NaN;
    const last = steps[steps.length - 1]?.loss ?? NaN;
    const final: Ev = evals[evals.length - 1] ?? { type: 'none' };
    console.log(`demo: loss ${first.toFixed(3)} -> ${last.toFixed(3)}, held-out per-letter accuracy ` +
      `${((final.accuracy ?? 0) * 100).toFixed(1)}%, exact match ${((final.exact_match ?? 0) * 100).toFixed(1)}%`);
    assert.ok(last < first / 4, `loss ${first} -> ${last} did not fall by 4x`);
    assert.ok((final.accuracy ?? 0) >= 0.9, `held-out accuracy ${final.accuracy}`);
    assert.ok((final.exact_match ?? 0) >= 0.5, `held-out exact match ${final.exact_match}`);
  });
});
