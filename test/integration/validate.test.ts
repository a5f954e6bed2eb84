// validate.test.ts — `hqlora validate` (the real built CLI) on lengths above the model's max_position_embeddings:
// a warning at file:line:col of data.source_max_len with both numbers, the fixes as the hint, in the words the
// language server shows (core/truncation.ts); the config stays valid (exit 0).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { lengthProblem, modelContext } from '../../extension/core/truncation';
import { fixtures, requireBuilds, runCli, tinyConfig } from './helpers';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'hqlora-validate-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
before(requireBuilds);

describe('hqlora validate: lengths against the model context', () => {
  it('warns at data.source_max_len with both numbers and the fixes, exit 0', async () => {
    // tiny-llama takes 256 positions; 300 + 16 do not fit.
    const file = tinyConfig(tmp, 'long');
    writeFileSync(file, readFileSync(file, 'utf8').replace('source_max_len: 64', 'source_max_len: 300'));
    const r = await runCli(['validate', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /long\.hqlora\.yaml: valid, 1 warning/);
    const configJson = path.join(fixtures, 'models', 'tiny-llama', 'config.json');
    const head = `${file}:7:3: warning: source_max_len + target_max_len = 316 exceeds the model's max_position_embeddings 256 ` +
      `(${configJson}): the trainer cuts every example at 256 tokens and trains none past it (at data.source_max_len)`;
    assert.ok(r.stderr.startsWith(`${head}\n  hint: `), r.stderr);
    assert.ok(r.stderr.includes('lower source_max_len / target_max_len to a sum of at most 256 (e.g. 240 + 16), or set ' +
      'max_position_embeddings to 316 and "rope_scaling": {"rope_type": "linear", "factor": 1.2344} in the model\'s config.json'), r.stderr);
    const p = lengthProblem(300, 16, modelContext(JSON.parse(readFileSync(configJson, 'utf8')) as Record<string, unknown>), configJson);
    assert.equal(r.stderr, `${file}:7:3: warning: ${p!.message} (at data.source_max_len)\n  hint: ${p!.hint}\n`, 'the shared wording');
  });

  it('says nothing when the lengths fit', async () => {
    const r = await runCli(['validate', tinyConfig(tmp, 'fits')]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /fits\.hqlora\.yaml: valid\n/);
  });
});
