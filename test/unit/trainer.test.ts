// trainer.test.ts — trainer discovery follows the documented order and lists every path it tried.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import { HqError } from '../../extension/run/errors';
import { bundledTrainerPath, findTrainer, trainerEnv } from '../../extension/run/trainer';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'hqlora-trainer-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('findTrainer', () => {
  it('lists env, setting and bundled paths with a reason each when none works', async () => {
    const notExec = path.join(tmp, 'not-executable');
    writeFileSync(notExec, 'x', { mode: 0o644 });
    const warnings: string[] = [];
    await assert.rejects(
      findTrainer({
        packageRoot: path.join(tmp, 'pkg'),
        setting: notExec,
        env: { HQLORA_TRAINER: path.join(tmp, 'missing') },
        onWarning: (m) => warnings.push(m),
      }),
      (err: unknown) => {
        assert.ok(err instanceof HqError);
        const text = err.format();
        assert.match(text, /HQLORA_TRAINER: .*missing \(does not exist\)/);
        assert.match(text, /setting hqlora\.trainer\.path: .*not-executable \(not executable\)/);
        assert.ok(text.includes(bundledTrainerPath(path.join(tmp, 'pkg'))), text);
        assert.match(text, /npm run build:native/);
        return true;
      },
    );
    assert.equal(warnings.length, 2);
  });

  it('rejects an executable that is not hqlora-train (the --version check is awaited)', async () => {
    await assert.rejects(
      findTrainer({ packageRoot: path.join(tmp, 'pkg'), env: { HQLORA_TRAINER: '/bin/true' } }),
      /\/bin\/true \(--version printed .*not "hqlora-train <version>"\)/,
    );
  });
});

describe('trainerEnv', () => {
  it('passes only an explicit allowlist of variables plus extras', () => {
    process.env.HQLORA_TEST_SECRET = 'x';
    const env = trainerEnv({ OMP_NUM_THREADS: '2' });
    delete process.env.HQLORA_TEST_SECRET;
    assert.equal(env.HQLORA_TEST_SECRET, undefined);
    assert.equal(env.OMP_NUM_THREADS, '2');
    assert.equal(env.PATH, process.env.PATH);
  });
});
