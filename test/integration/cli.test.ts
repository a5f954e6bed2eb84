// cli.test.ts — `hqlora` end to end with the real trainer: --version, inspect, a complete run, and the errors a
// user makes most (broken YAML, schema violation, missing model folder).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { validateTrainerEvent } from '../../extension/core/schemas';
import { fixtures, requireBuilds, root, runCli, tinyConfig, trainer } from './helpers';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'hqlora-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
before(requireBuilds);

describe('hqlora --version', () => {
  it('prints the CLI version, the trainer path and the backends', async () => {
    const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
    const r = await runCli(['--version']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^hqlora ${pkg.version.replace(/\./g, '\\.')}$`, 'm'));
    assert.ok(r.stdout.includes(`trainer: ${trainer} (hqlora-train `), r.stdout);
    assert.match(r.stdout, /^backends: cpu/m);
  });

  it('honours HQLORA_TRAINER first and reports every path tried when it is wrong and nothing else works', async () => {
    const r = await runCli(['--version', '--trainer', path.join(tmp, 'nope')], { HQLORA_TRAINER: path.join(tmp, 'missing') });
    // The bundled trainer still works, so the run goes on with warnings naming the rejected paths.
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /ignoring HQLORA_TRAINER=.*missing: does not exist/);
    assert.match(r.stderr, /ignoring setting hqlora\.trainer\.path=.*nope: does not exist/);
  });
});

describe('hqlora inspect', () => {
  it('lists the tensors of a safetensors file with dtype, shape and bytes', async () => {
    const file = path.join(fixtures, 'models', 'tiny-llama3', 'model.safetensors');
    const r = await runCli(['inspect', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.startsWith(file), r.stdout.slice(0, 200));
    assert.match(r.stdout, /model\.embed_tokens\.weight\s+(F32|BF16|F16)\s+\[\d+, 64\]/);
    assert.match(r.stdout, /model\.layers\.0\.self_attn\.q_proj\.weight/);
  });

  it('describes a sharded model folder, tensor by tensor, with --json as one object', async () => {
    const dir = path.join(fixtures, 'models', 'tiny-llama');
    const r = await runCli(['inspect', dir, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout) as { tensors: { name: string; file: string }[] };
    const names = info.tensors.map((t) => t.name);
    assert.ok(names.includes('model.norm.weight'), names.join(','));
    assert.equal(new Set(info.tensors.map((t) => path.basename(t.file))).size, 2);
  });

  it('names the file when it is not valid safetensors', async () => {
    const bad = path.join(tmp, 'bad.safetensors');
    writeFileSync(bad, Buffer.from([1, 2, 3]));
    const r = await runCli(['inspect', bad]);
    assert.notEqual(r.code, 0);
    assert.ok(r.stderr.includes(bad), r.stderr);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });
});

describe('hqlora run', () => {
  it('trains a tiny config to completion and writes the hierarchical and the PEFT adapter', async () => {
    const config = tinyConfig(tmp, 'tiny');
    const r = await runCli(['run', config]);
    assert.equal(r.code, 0, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    const runs = readdirSync(path.join(tmp, 'runs'));
    assert.equal(runs.length, 1);
    const runDir = path.join(tmp, 'runs', runs[0] ?? '');
    assert.match(path.basename(runDir), /^tiny-\d{8}-\d{6}$/);
    for (const f of ['run.json', 'events.jsonl', 'trainer.log', 'adapter/adapter.safetensors', 'adapter/adapter_metadata.json',
      'peft/adapter_config.json', 'peft/adapter_model.safetensors']) {
      assert.ok(existsSync(path.join(runDir, f)), `${f} missing in ${runDir}`);
    }
    assert.match(r.stdout, /^step 4\/4 {2}loss \d+\.\d{4}/m);
    assert.match(r.stdout, /^eval @ step \d+: loss/m);
    assert.ok(r.stdout.includes(`hierarchical  ${path.join(runDir, 'adapter')}`), r.stdout);
    assert.ok(r.stdout.includes(`PEFT          ${path.join(runDir, 'peft')}`), r.stdout);
    assert.equal(r.stderr, '', 'no warnings (every trainer event validated)');

    const events = readFileSync(path.join(runDir, 'events.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as unknown);
    for (const e of events) assert.ok(validateTrainerEvent(e), `${JSON.stringify(e)}: ${JSON.stringify(validateTrainerEvent.errors)}`);
    const types = events.map((e) => (e as { type: string }).type);
    assert.equal(types[0], 'start');
    assert.equal(types.at(-1), 'done');
    assert.equal(types.filter((t) => t === 'step').length, 4);

    const runJson = JSON.parse(readFileSync(path.join(runDir, 'run.json'), 'utf8')) as {
      model: { path: string }; data: { train_tokens: string }; training: { adam_beta2: number };
    };
    assert.equal(runJson.model.path, path.join(fixtures, 'models', 'tiny-llama'));
    assert.ok(path.isAbsolute(runJson.data.train_tokens) && existsSync(runJson.data.train_tokens));
    assert.equal(runJson.training.adam_beta2, 0.999, 'defaults are filled in');
  });

  it('reports broken YAML with file:line:col and exits non-zero', async () => {
    const file = path.join(tmp, 'broken.hqlora.yaml');
    writeFileSync(file, 'model: m\ndata:\n  train: [a, b\nadapter: {\n');
    const r = await runCli(['run', file]);
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(`${file}:`), r.stderr);
    assert.match(r.stderr, /broken\.hqlora\.yaml:\d+:\d+: YAML syntax error/);
    assert.match(r.stderr, /hint:/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });

  it('reports a schema violation with file:line:col, the key path and a suggestion', async () => {
    const file = tinyConfig(tmp, 'typo', 'logging:\n  every_step: 1\n');
    const r = await runCli(['validate', file]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /typo\.hqlora\.yaml:15:3: unknown key "every_step" \(at logging\.every_step\)/);
    assert.match(r.stderr, /did you mean "every_steps"/);
    const wrongType = tinyConfig(tmp, 'wrongtype');
    writeFileSync(wrongType, readFileSync(wrongType, 'utf8').replace('hardware: {threads: 1}', 'hardware: {threads: many}'));
    const r2 = await runCli(['run', wrongType]);
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /wrongtype\.hqlora\.yaml:\d+:\d+: must be integer \(at hardware\.threads\)/);
  });

  it('reports a missing model folder at the model key', async () => {
    const file = tinyConfig(tmp, 'nomodel');
    writeFileSync(file, readFileSync(file, 'utf8').replace(/^model: .*$/m, 'model: ./no-such-model'));
    const r = await runCli(['run', file]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /nomodel\.hqlora\.yaml:1:1: model folder not found: .*no-such-model \(at model\)/);
    assert.match(r.stderr, /hint: set model to a Hugging Face model folder/);
  });

  it('exits 2 with usage help for a bad command line', async () => {
    const r = await runCli(['run']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /needs exactly one config file/);
    const r2 = await runCli(['frobnicate']);
    assert.equal(r2.code, 2);
    const help = await runCli(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /hqlora run <config\.hqlora\.yaml>/);
  });
});
