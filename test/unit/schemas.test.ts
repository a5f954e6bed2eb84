// schemas.test.ts — the contracts in schemas/: every schema compiles (ajv, draft 2020-12, strict), the committed
// generated types and standalone validators are fresh, the examples validate and known-bad documents are rejected.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { parse } from 'yaml';

import { generateTypes, listSchemas } from '../../scripts/schema-types.mjs';
import { generateValidators, makeAjv } from '../../scripts/schema-validators.mjs';
import { explainInvalidEvent, fillRunConfigDefaults, validateRunConfig, validateTrainerEvent } from '../../extension/core/schemas';

const root = process.cwd();
const schemas = listSchemas(root);

describe('schemas/', () => {
  it('has the run-config and trainer-events schemas', () => {
    const names = schemas.map((s) => s.name);
    assert.ok(names.includes('run-config'), names.join(','));
    assert.ok(names.includes('trainer-events'), names.join(','));
  });

  for (const { name, schemaFile, typesFile } of schemas) {
    it(`${name}: compiles with ajv (draft 2020-12, strict)`, () => {
      const schema = JSON.parse(readFileSync(schemaFile, 'utf8')) as { $schema?: string };
      assert.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema');
      assert.doesNotThrow(() => makeAjv().compile(schema));
    });

    it(`${name}: schemas/generated/${name}.ts is up to date (npm run gen:types)`, async () => {
      const expected = await generateTypes(schemaFile);
      let actual = '';
      try {
        actual = readFileSync(typesFile, 'utf8');
      } catch {
        assert.fail(`${path.relative(root, typesFile)} is missing: run npm run gen:types`);
      }
      assert.ok(actual === expected, `${path.relative(root, typesFile)} is stale: run npm run gen:types`);
    });

    it(`${name}: the standalone validators in schemas/generated/${name}.*.js are up to date (npm run gen:types)`, () => {
      for (const { file, text } of generateValidators(schemaFile)) {
        let actual = '';
        try {
          actual = readFileSync(file, 'utf8');
        } catch {
          assert.fail(`${path.relative(root, file)} is missing: run npm run gen:types`);
        }
        assert.ok(actual === text, `${path.relative(root, file)} is stale: run npm run gen:types`);
      }
    });
  }
});

describe('run-config schema', () => {
  const schema = JSON.parse(readFileSync(path.join(root, 'schemas/run-config.schema.json'), 'utf8')) as {
    examples: unknown[];
  };

  it('accepts its own examples', () => {
    assert.ok(schema.examples.length > 0);
    for (const ex of schema.examples) assert.ok(validateRunConfig(ex), JSON.stringify(validateRunConfig.errors));
  });

  it('accepts the demo config', () => {
    const demo: unknown = parse(readFileSync(path.join(root, 'test/fixtures/demo.hqlora.yaml'), 'utf8'));
    assert.ok(validateRunConfig(demo), JSON.stringify(validateRunConfig.errors));
  });

  it('the standalone validators judge like ajv compiling the schema now, errors included', () => {
    const fresh = makeAjv().compile(JSON.parse(readFileSync(path.join(root, 'schemas/run-config.schema.json'), 'utf8')));
    for (const doc of [...schema.examples, { model: 'm', data: {} }, { model: 3, data: { train: 't' }, trianing: {} }]) {
      assert.equal(validateRunConfig(doc), fresh(doc));
      assert.deepEqual(validateRunConfig.errors ?? null, fresh.errors ?? null);
    }
  });

  it('fillRunConfigDefaults writes the defaults, validateRunConfig does not', () => {
    const plain = { model: 'm', data: { train: 't' } };
    assert.ok(validateRunConfig(plain));
    assert.deepEqual(plain, { model: 'm', data: { train: 't' } });
    const filled: Record<string, unknown> = { model: 'm', data: { train: 't' } };
    assert.ok(fillRunConfigDefaults(filled));
    assert.equal((filled.training as { lr_scheduler?: string } | undefined)?.lr_scheduler, 'constant');
  });

  it('accepts the model shorthand, the object form and the ranks shorthand', () => {
    assert.ok(validateRunConfig({ model: 'm', data: { train: 't' } }));
    assert.ok(validateRunConfig({ model: { path: 'm' }, data: { train: 't' }, adapter: { ranks: [8, 4], alpha: 8 } }));
    assert.ok(validateRunConfig({ model: 'm', data: { train: 't' }, adapter: { levels: [{ rank: 8, alpha: 16 }] } }));
  });

  const bad: [string, unknown][] = [
    ['no model', { data: { train: 't' } }],
    ['no data.train', { model: 'm', data: {} }],
    ['unknown top-level key', { model: 'm', data: { train: 't' }, trianing: {} }],
    ['levels and ranks together', { model: 'm', data: { train: 't' }, adapter: { levels: [{ rank: 8, alpha: 16 }], ranks: [8], alpha: 16 } }],
    ['ranks without alpha', { model: 'm', data: { train: 't' }, adapter: { ranks: [8] } }],
    ['rank 0', { model: 'm', data: { train: 't' }, adapter: { levels: [{ rank: 0, alpha: 16 }] } }],
    ['unknown scheduler', { model: 'm', data: { train: 't' }, training: { lr_scheduler: 'step' } }],
    ['string learning rate', { model: 'm', data: { train: 't' }, training: { learning_rate: '2e-4' } }],
    ['unknown target module', { model: 'm', data: { train: 't' }, adapter: { target_modules: ['lm_head'] } }],
    ['blocksize not a power of two', { model: 'm', data: { train: 't' }, quantization: { blocksize: 48 } }],
    ['model of the wrong type', { model: 3, data: { train: 't' } }],
    ['run_name with a slash', { model: 'm', data: { train: 't' }, output: { run_name: 'a/b' } }],
  ];
  for (const [what, doc] of bad) {
    it(`rejects: ${what}`, () => assert.equal(validateRunConfig(doc), false));
  }
});

describe('trainer-events schema', () => {
  const t = 1735689600.5;
  const good = [
    { v: 1, type: 'step', time: t, step: 3, total_steps: 10, loss: 2.5, lr: 2e-4, grad_norm: 'NaN', tokens: 40,
      tokens_per_s: 1000, elapsed_s: 1.5, eta_s: 3.5, memory_bytes: 1024 },
    { v: 1, type: 'warning', time: t, code: 'W_TRUNCATED', message: '3 examples truncated' },
    { v: 1, type: 'error', time: t, code: 'E_SAFETENSORS', message: 'bad header', where: { file: '/m/model.safetensors', offset: 8 }, hint: 'redownload' },
    { v: 1, type: 'done', time: t, step: 10, final_loss: 'Infinity', adapter_dir: '/r/adapter', peft_dir: '/r/peft', elapsed_s: 9, status: 'completed' },
  ];
  for (const ev of good) {
    it(`accepts a ${ev.type} event`, () => assert.ok(validateTrainerEvent(ev), JSON.stringify(validateTrainerEvent.errors)));
  }
  const bad: [string, unknown][] = [
    ['an unknown type', { v: 1, type: 'progress', time: t }],
    ['a wrong version', { ...good[1], v: 2 }],
    ['a non-finite number spelled wrong', { ...good[0], loss: 'nan' }],
    ['a missing field', { v: 1, type: 'warning', time: t, code: 'W' }],
    ['an extra field', { ...good[1], extra: true }],
  ];
  for (const [what, ev] of bad) {
    it(`rejects ${what}`, () => assert.equal(validateTrainerEvent(ev), false));
  }

  it('explains an invalid event by its own type only', () => {
    const ev = { v: 1, type: 'adapter_stats', time: t, levels: [], modules: [] };
    assert.equal(validateTrainerEvent(ev), false);
    assert.equal(explainInvalidEvent(ev), "adapter_stats event: / must have required property 'step'");
    assert.equal(explainInvalidEvent({ v: 1, type: 'progress' }), 'unknown event type "progress"');
    assert.equal(explainInvalidEvent([1]), 'no "type" field');
  });
});
