// eval.test.ts — multiple-choice evaluation end to end with the real CLI and trainer: `hqlora run` fine-tunes the
// tiny LLaMA on the generated task of test/fixtures/mcq.hqlora.yaml (mcq-own-number/ from make-mcq.mjs: "Which
// option holds its own number?", answer key known, each letter right equally often, so chance and any constant
// letter score 25 %), with the periodic multiple-choice eval on the val split; then
// `hqlora eval <run> --split test --shots 0 --ablation` scores held-out questions. The adapter must beat the NF4 base
// and chance by a clear margin, the table must have one row per cumulative level set, and eval.json / eval.md must
// hold the same table.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import YAML from 'yaml';

import type { EvalResultEvent, EvalRow, McqEvent } from '../../schemas/generated/trainer-events';
import { fixtures, requireBuilds, runCli } from './helpers';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'hqlora-eval-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
before(requireBuilds);

const MCQ = path.join(fixtures, 'mcq-own-number');
const CHANCE = 0.25;
/** What "a clear margin" means here: the fine-tuned model answers at least half of the held-out questions and at
 * least 25 points more than the base (measured: 100 % vs 25 %, see test/fixtures/mcq.hqlora.yaml). */
const MIN_ACCURACY = 0.5;
const MIN_GAIN = 0.25;

interface Config {
  model: string;
  adapter: { levels: { rank: number; alpha: number }[] };
  data: { train: string };
  training: { max_steps: number };
  eval: { every_steps: number; mcq: { path: string } };
  output: { dir: string };
}

type SavedEval = EvalResultEvent & { mcq_source: string | null; split: string; created: string };

const pct = (x: number | undefined): string => `${(100 * (x ?? NaN)).toFixed(1)}%`;
const acc = (row: EvalRow | undefined): number => row?.mcq?.accuracy ?? NaN;

describe('multiple-choice evaluation after a real fine-tune (mcq.hqlora.yaml)', () => {
  // The fixture config itself, with paths made absolute and the runs folder moved into the temp dir.
  const cfg = YAML.parse(readFileSync(path.join(fixtures, 'mcq.hqlora.yaml'), 'utf8')) as Config;
  cfg.model = path.join(fixtures, cfg.model);
  cfg.data.train = path.join(fixtures, cfg.data.train);
  cfg.eval.mcq.path = path.join(fixtures, cfg.eval.mcq.path);
  cfg.output.dir = path.join(tmp, 'runs');
  const configFile = path.join(tmp, 'mcq.hqlora.yaml');
  const ranks = cfg.adapter.levels.map((l) => l.rank);
  let run = '';

  it('trains, with an mcq event at every eval that ends far above chance', async () => {
    assert.equal(cfg.eval.mcq.path, MCQ);
    writeFileSync(configFile, YAML.stringify(cfg));
    const started = Date.now();
    const r = await runCli(['run', configFile]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const runs = readdirSync(cfg.output.dir);
    assert.equal(runs.length, 1, runs.join(','));
    run = path.join(cfg.output.dir, runs[0] ?? '');
    assert.ok(existsSync(path.join(run, 'adapter', 'adapter.safetensors')));

    const mcq = readFileSync(path.join(run, 'events.jsonl'), 'utf8').trim().split('\n')
      .map((l) => JSON.parse(l) as { type: string })
      .filter((e): e is McqEvent => e.type === 'mcq');
    const every = cfg.eval.every_steps, total = cfg.training.max_steps;
    assert.deepEqual(mcq.map((e) => e.step), Array.from({ length: total / every }, (_, k) => (k + 1) * every));
    const last = mcq[mcq.length - 1];
    console.log(`mcq fine-tune: ${total} steps in ${((Date.now() - started) / 1000).toFixed(1)} s, val accuracy by step ` +
      mcq.map((e) => `${e.step}: ${pct(e.accuracy)}`).join(', '));
    assert.equal(last?.n, 100);
    assert.ok((last?.accuracy ?? 0) >= MIN_ACCURACY, `val accuracy after training ${last?.accuracy}`);
    assert.match(r.stdout, /multiple choice @ step \d+: [\d.]+% macro/);
  });

  it('eval --ablation: the adapter beats the base and chance on held-out questions, one row per level set, saved', async () => {
    assert.ok(run, 'the training test did not produce a run');
    const r = await runCli(['eval', run, '--mcq', MCQ, '--split', 'test', '--shots', '0', '--ablation']);
    assert.equal(r.code, 0, r.stderr + r.stdout);

    const jsonFile = path.join(run, 'eval.json'), mdFile = path.join(run, 'eval.md');
    const saved = JSON.parse(readFileSync(jsonFile, 'utf8')) as SavedEval;
    assert.equal(saved.type, 'eval_result');
    assert.equal(saved.run_dir, run);
    assert.equal(saved.adapter, path.join(run, 'adapter', 'adapter.safetensors'));
    assert.equal(saved.mcq_source, MCQ);
    assert.equal(saved.split, 'test');
    assert.ok(!Number.isNaN(Date.parse(saved.created)), saved.created);
    assert.equal(saved.questions, 100);
    assert.deepEqual(saved.subjects, ['own_number']);
    assert.ok(saved.mcq_file && existsSync(saved.mcq_file), String(saved.mcq_file));

    // base (NF4), then levels 1..k cumulatively: L1 (r 16), L1+L2 (r 16+4), adapter, all 3 levels (r 16+4+4).
    const rows = saved.rows;
    assert.equal(rows.length, ranks.length + 1, rows.map((x) => x.name).join(' | '));
    rows.forEach((row, k) => {
      assert.equal(row.levels, k, row.name);
      assert.deepEqual(row.ranks, ranks.slice(0, k), row.name);
      assert.equal(row.mcq?.n, 100, row.name);
      assert.equal(row.mcq?.truncated, 0, row.name);
      assert.deepEqual(row.mcq?.subjects.map((s) => s.subject), ['own_number'], row.name);
      assert.ok(acc(row) >= 0 && acc(row) <= 1, `${row.name}: ${acc(row)}`);
      assert.equal(row.mcq?.correct, Math.round(acc(row) * 100), row.name);
    });
    assert.equal(rows[0]?.name, 'base (NF4)');
    assert.equal(rows[ranks.length]?.name, `adapter, all ${ranks.length} levels (r ${ranks.join('+')})`);
    const base = acc(rows[0]), full = acc(rows[ranks.length]);
    console.log(`mcq eval (test split, 0-shot): ${rows.map((x) => `${x.name} ${pct(x.mcq?.accuracy)}`).join(', ')}`);
    assert.ok(full >= MIN_ACCURACY, `adapter accuracy ${full} < ${MIN_ACCURACY}`);
    assert.ok(full >= CHANCE + MIN_GAIN, `adapter accuracy ${full} is not clearly above chance`);
    assert.ok(full >= base + MIN_GAIN, `adapter ${full} vs base ${base}: no clear gain`);

    // eval.md and the CLI output: the same table, one line per row with its accuracy.
    const md = readFileSync(mdFile, 'utf8');
    assert.ok(md.startsWith(`# Evaluation of ${run}\n`), md.slice(0, 200));
    assert.match(md, /multiple choice: .*mcq-own-number, 100 questions, 1 subjects, 0-shot/);
    assert.ok(md.includes('| configuration | levels | MC acc (macro) % | MC acc (micro) % | own_number % |'), md);
    const lines = md.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| configuration') && !l.startsWith('| ---'));
    assert.deepEqual(lines, rows.map((row) => {
      const a = (100 * acc(row)).toFixed(1);
      return `| ${row.name} | ${row.levels === 0 ? '–' : row.ranks.join('+')} | ${a} | ${a} | ${a} |`;
    }));
    assert.ok(r.stdout.includes(md), r.stdout.slice(-1500));
    assert.ok(r.stdout.includes(`saved    ${jsonFile}`), r.stdout.slice(-500));
  });

  it('eval <config> picks the newest run of the config: base vs the whole adapter', async () => {
    assert.ok(run, 'the training test did not produce a run');
    const r = await runCli(['eval', configFile, '--split', 'test', '--shots', '0']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const saved = JSON.parse(readFileSync(path.join(run, 'eval.json'), 'utf8')) as SavedEval;
    assert.equal(saved.mcq_source, MCQ, 'the mcq path comes from the config when --mcq is not given');
    assert.deepEqual(saved.rows.map((x) => x.levels), [0, ranks.length]);
    assert.ok(acc(saved.rows[1]) >= acc(saved.rows[0]) + MIN_GAIN, saved.rows.map((x) => `${x.name} ${acc(x)}`).join(', '));
  });
});
