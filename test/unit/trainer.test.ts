// trainer.test.ts — trainer discovery follows the documented order and lists every path it tried.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import { HqError } from '../../extension/core/errors';
import { bundledTrainerPath, findTrainer, missingSharedLibrary, trainerEnv } from '../../extension/job/trainer';

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

describe('findTrainer on a machine the bundled binary does not fit', () => {
  it('on an unsupported platform says what is supported and how to build from source', async () => {
    await assert.rejects(findTrainer({ packageRoot: path.join(tmp, 'pkg'), env: {}, platform: 'darwin', arch: 'arm64' }),
      (err: unknown) => {
        assert.ok(err instanceof HqError);
        const text = err.format();
        assert.match(text, /built for linux-x64 only, and this is darwin-arm64/);
        assert.match(text, /build it from source .*npm install/);
        assert.match(text, /hqlora\.trainer\.path/);
        return true;
      });
  });

  it('names the shared library a trainer cannot start without (a real executable whose library is gone)', async () => {
    const dir = mkdtempSync(path.join(tmp, 'lib-'));
    writeFileSync(path.join(dir, 'lib.c'), 'int hq_missing(void) { return 0; }\n');
    writeFileSync(path.join(dir, 'main.c'), 'int hq_missing(void);\nint main(void) { return hq_missing(); }\n');
    const cc = (args: string[]): void => {
      const r = spawnSync('cc', args, { cwd: dir, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
    };
    cc(['-shared', '-fPIC', '-Wl,-soname,libhqgone.so.1', '-o', 'libhqgone.so.1', 'lib.c']);
    cc(['-o', 'hqlora-train', 'main.c', path.join(dir, 'libhqgone.so.1')]);
    rmSync(path.join(dir, 'libhqgone.so.1'));
    const exe = path.join(dir, 'hqlora-train');
    await assert.rejects(findTrainer({ packageRoot: path.join(tmp, 'pkg'), env: { HQLORA_TRAINER: exe } }), (err: unknown) => {
      assert.ok(err instanceof HqError);
      assert.match(err.format(), /needs the shared library libhqgone\.so\.1, which is not installed/);
      return true;
    });
    assert.equal(missingSharedLibrary('x: error while loading shared libraries: libopenblas.so.0: cannot open shared object file: No such file or directory'), 'libopenblas.so.0');
  });
});
