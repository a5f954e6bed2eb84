// config.test.ts — loading and resolving *.hqlora.yaml: positions and key paths in every error, defaults from the
// schema, shorthands expanded, paths made absolute, run folder named.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import { loadRunConfig, parseRunConfig } from '../../extension/job/config';
import { HqError, HqErrors } from '../../extension/core/errors';
import { configName, resolveRunConfig, timestamp } from '../../extension/job/resolve';

const root = process.cwd();
const fixtures = path.join(root, 'test', 'fixtures');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'hqlora-config-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Writes a config next to the fixtures' models/ and data/ so relative paths resolve. */
function fixtureConfig(name: string, text: string): string {
  const file = path.join(tmp, name);
  writeFileSync(file, text.replace(/@FIX/g, fixtures));
  return file;
}

function errorsOf(fn: () => unknown): HqError[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof HqErrors) return err.errors;
    if (err instanceof HqError) return [err];
    throw err;
  }
  assert.fail('expected an error');
}

describe('loadRunConfig', () => {
  it('reports a YAML syntax error with file:line:col', () => {
    const file = path.join(tmp, 'syntax.hqlora.yaml');
    const [e, ...rest] = errorsOf(() => parseRunConfig(file, 'model: m\ndata:\n  train: [a, b\n  eval: x\n'));
    assert.ok(e);
    assert.equal(e.where.file, file);
    assert.ok(e.where.line !== undefined && e.where.line >= 3, `line ${e.where.line}`);
    assert.match(e.format(), new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: YAML syntax error`));
    assert.ok(rest.every((r) => r instanceof HqError));
  });

  it('reports an unknown key at its line with a suggestion', () => {
    const text = 'model: m\ndata:\n  train: t\ntraining:\n  max_steps: 3\n  lerning_rate: 0.1\n';
    const [e] = errorsOf(() => parseRunConfig('/x/c.hqlora.yaml', text));
    assert.ok(e);
    assert.equal(e.where.key, 'training.lerning_rate');
    assert.equal(e.where.line, 6);
    assert.equal(e.where.col, 3);
    assert.match(e.message, /unknown key "lerning_rate"/);
    assert.match(e.hint, /did you mean "learning_rate"/);
  });

  it('reports every wrong type and enum with key paths into lists', () => {
    const text = [
      'model: m',
      'data: {train: t}',
      'adapter:',
      '  levels:',
      '    - {rank: 8, alpha: 16}',
      '    - {rank: eight, alpha: 16}',
      'training:',
      '  lr_scheduler: step',
    ].join('\n');
    const errs = errorsOf(() => parseRunConfig('/x/c.hqlora.yaml', text));
    const byKey = new Map(errs.map((e) => [e.where.key, e]));
    assert.equal(byKey.get('adapter.levels[1].rank')?.where.line, 6);
    assert.match(byKey.get('adapter.levels[1].rank')?.message ?? '', /integer/);
    assert.equal(byKey.get('training.lr_scheduler')?.where.line, 8);
    assert.match(byKey.get('training.lr_scheduler')?.message ?? '', /"constant", "linear", "cosine"/);
  });

  it('reports a missing required key at its parent', () => {
    const [e] = errorsOf(() => parseRunConfig('/x/c.hqlora.yaml', 'model: m\ndata:\n  eval: e\n'));
    assert.ok(e);
    assert.equal(e.where.key, 'data.train');
    assert.match(e.message, /missing required key "train"/);
    assert.equal(e.where.line, 2);
  });

  it('rejects a config that is not a mapping', () => {
    const [e] = errorsOf(() => parseRunConfig('/x/c.hqlora.yaml', '- a\n- b\n'));
    assert.match(e?.message ?? '', /must be a YAML mapping/);
  });

  it('says when the file does not exist', async () => {
    await assert.rejects(loadRunConfig(path.join(tmp, 'nope.hqlora.yaml')), (err: unknown) => {
      assert.ok(err instanceof HqError);
      assert.match(err.format(), /nope\.hqlora\.yaml: config file not found/);
      return true;
    });
  });
});

describe('resolveRunConfig', () => {
  it('fills every default, expands shorthands and makes paths absolute', async () => {
    const file = fixtureConfig('short.hqlora.yaml', [
      'model: @FIX/models/tiny-llama',
      'adapter: {ranks: [4, 2], alpha: 8}',
      'data: {train: @FIX/data/train.completion.jsonl}',
      'output: {dir: out}',
    ].join('\n'));
    const run = resolveRunConfig(await loadRunConfig(file), { now: new Date(Date.UTC(2025, 0, 2, 3, 4, 5)) });
    const c = run.config;
    assert.deepEqual(c.model, { path: path.join(fixtures, 'models', 'tiny-llama') });
    assert.deepEqual(c.adapter.levels, [{ rank: 4, alpha: 8 }, { rank: 2, alpha: 8 }]);
    assert.equal('ranks' in c.adapter, false);
    assert.equal(c.training.learning_rate, 2e-4);
    assert.equal(c.training.max_steps, 1875);
    assert.equal(c.training.gradient_accumulation_steps, 16);
    assert.equal(c.training.max_grad_norm, 0.3);
    assert.equal(c.quantization.type, 'nf4');
    assert.equal(c.data.source_max_len, 1024);
    assert.equal(c.data.eval, null);
    assert.equal(c.output.dir, path.join(tmp, 'out'));
    assert.equal(c.output.run_name, 'short-20250102-030405');
    assert.equal(run.runDir, path.join(tmp, 'out', 'short-20250102-030405'));
    assert.equal(run.name, 'short');
  });

  it('gives the QLoRA level defaults when no levels are written', async () => {
    const file = fixtureConfig('defaults.hqlora.yaml', 'model: {path: @FIX/models/tiny-llama}\ndata: {train: @FIX/data}\n');
    const c = resolveRunConfig(await loadRunConfig(file)).config;
    assert.deepEqual(c.adapter.levels.map((l) => [l.rank, l.alpha]), [[32, 16], [8, 16], [8, 16], [8, 16], [8, 16]]);
    assert.deepEqual(c.adapter.target_modules, ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
  });

  it('resolves the demo config against its own folder', async () => {
    const run = resolveRunConfig(await loadRunConfig(path.join(fixtures, 'demo.hqlora.yaml')));
    assert.equal(run.config.model.path, path.join(fixtures, 'models', 'tiny-llama'));
    assert.equal(run.config.output.dir, path.join(root, 'runs'));
    assert.match(run.config.output.run_name, /^demo-\d{8}-\d{6}$/);
  });

  it('reports a missing model folder at the model key', async () => {
    const file = fixtureConfig('nomodel.hqlora.yaml', 'data: {train: @FIX/data}\nmodel: models/does-not-exist\n');
    const loaded = await loadRunConfig(file);
    const [e] = errorsOf(() => resolveRunConfig(loaded));
    assert.ok(e);
    assert.match(e.message, /model folder not found: .*does-not-exist/);
    assert.equal(e.where.key, 'model');
    assert.equal(e.where.line, 2);
    assert.ok(e.hint.length > 0);
  });

  it('reports missing training data at data.train', async () => {
    const file = fixtureConfig('nodata.hqlora.yaml', 'model: @FIX/models/tiny-llama\ndata:\n  train: nothing.jsonl\n');
    const loaded = await loadRunConfig(file);
    const [e] = errorsOf(() => resolveRunConfig(loaded));
    assert.ok(e);
    assert.equal(e.where.key, 'data.train');
    assert.equal(e.where.line, 3);
  });
});

describe('names', () => {
  it('derives the config name and a UTC timestamp', () => {
    assert.equal(configName('/a/demo.hqlora.yaml'), 'demo');
    assert.equal(configName('/a/x.hqlora.yml'), 'x');
    assert.equal(timestamp(new Date(Date.UTC(2024, 11, 31, 23, 59, 58))), '20241231-235958');
  });
});
