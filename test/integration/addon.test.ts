// addon.test.ts — the REAL built hqlora.node (native/build/bin, or HQLORA_ADDON) through extension/native/addon.ts:
// Promise API, progress callbacks from the worker thread, cancellation, and errors carrying code/where/hint.
// The adapter is the golden hierarchical adapter (test/golden/tiny-llama.safetensors, levels 4/2/2, B != 0),
// re-packed by golden-adapter.ts.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { type ExportProgress, type HqloraAddon, isNativeError, loadAddon } from '../../extension/native/addon';
import { writeGoldenAdapter } from './golden-adapter';

const root = process.cwd();
const fixture = path.join(root, 'test', 'fixtures', 'models', 'tiny-llama');

describe('hqlora.node (real addon)', () => {
  let addon: HqloraAddon;
  let tmp: string;
  let adapter: string;

  before(() => {
    addon = loadAddon(root);
    tmp = mkdtempSync(path.join(os.tmpdir(), 'hq-addon-'));
    adapter = path.join(tmp, 'adapter');
    writeGoldenAdapter(root, adapter);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('inspect returns the native parser view synchronously', () => {
    const info = addon.inspect(path.join(fixture, 'model-00001-of-00002.safetensors'));
    assert.ok(Array.isArray(info.tensors) && info.tensors.length > 0);
    assert.throws(() => addon.inspect(path.join(tmp, 'nope.safetensors')), (e: unknown) => isNativeError(e) && e.code === 'E_IO');
  });

  it('mergeLevels resolves with a passing verification and reports progress from the worker', async () => {
    const seen: ExportProgress[] = [];
    const out = path.join(tmp, 'peft');
    const pending = addon.mergeLevels({ source: adapter, out }, (p) => seen.push(p));
    assert.ok(pending instanceof Promise);
    const rep = await pending;
    assert.equal(rep.operation, 'merge_levels');
    assert.equal(rep.rank, 8);
    assert.equal(rep.verification.status, 'pass');
    assert.ok((rep.verification.max_abs_diff ?? 1) <= 1e-5, `max |Δlogit| ${String(rep.verification.max_abs_diff)}`);
    assert.ok(existsSync(path.join(out, 'adapter_model.safetensors')));
    assert.deepEqual(JSON.parse(readFileSync(path.join(out, 'verify.json'), 'utf8')), JSON.parse(JSON.stringify(rep)));
    const merges = seen.filter((p) => p.phase === 'merge');
    assert.equal(merges.length, 14);
    assert.deepEqual(merges.map((p) => p.done), Array.from({ length: 14 }, (_, i) => i + 1));
    assert.equal(seen.at(-1)?.phase, 'publish');
    assert.match(addon.summary(rep), /verify: PASS/);
  });

  it('mergeIntoBase writes a verified fp32 model and combine concatenates exactly', async () => {
    const phases = new Set<string>();
    const rep = await addon.mergeIntoBase({ source: adapter, out: path.join(tmp, 'merged'), base: 'dequantized', dtype: 'fp32' },
      (p) => phases.add(p.phase));
    assert.equal(rep.verification.status, 'pass');
    assert.ok((rep.verification.max_abs_diff ?? 1) <= 1e-5);
    assert.ok((rep.nf4_gap?.max_abs ?? 0) > 0);
    assert.deepEqual([...phases].sort(), ['publish', 'verify', 'write']);
    assert.ok(existsSync(path.join(tmp, 'merged', 'tokenizer.json')));
    const c = await addon.combine({ sources: [adapter, adapter], weights: [0.25, 0.75], mode: 'concat', out: path.join(tmp, 'comb') });
    assert.equal(c.rank, 16);
    assert.equal(c.verification.status, 'pass');
  });

  it('errors reject with code, where and hint, and leave no output', async () => {
    const trunc = path.join(tmp, 'trunc');
    mkdirSync(trunc);
    const bytes = readFileSync(path.join(adapter, 'adapter.safetensors'));
    writeFileSync(path.join(trunc, 'adapter.safetensors'), bytes.subarray(0, bytes.length - 64));
    await assert.rejects(addon.mergeLevels({ source: trunc, out: path.join(tmp, 'o1') }), (e: unknown) => {
      assert.ok(isNativeError(e));
      assert.equal(e.code, 'E_SAFETENSORS');
      assert.equal(e.where.file, path.join(trunc, 'adapter.safetensors'));
      assert.ok(e.hint.length > 0);
      return true;
    });
    await assert.rejects(addon.mergeLevels({ source: adapter, out: path.join(tmp, 'peft') }),
      (e: unknown) => isNativeError(e) && e.code === 'E_IO' && e.where.file === path.join(tmp, 'peft'));
    await assert.rejects(addon.mergeIntoBase({ source: adapter, out: path.join(tmp, 'o2'), dtype: 'fp8' as 'bf16' }),
      (e: unknown) => isNativeError(e) && e.code === 'E_CONFIG' && e.where.key === 'dtype');
    assert.ok(!existsSync(path.join(tmp, 'o1')) && !existsSync(path.join(tmp, 'o2')));
  });

  it('a CancelToken stops the worker midway with E_CANCELLED and nothing under the target', async () => {
    const token = new addon.CancelToken();
    let writes = 0;
    const out = path.join(tmp, 'cancelled');
    await assert.rejects(
      addon.mergeIntoBase({ source: adapter, out, dtype: 'bf16', cancel: token }, (p) => {
        if (p.phase === 'write' && ++writes === 3) token.cancel();
      }),
      (e: unknown) => isNativeError(e) && e.code === 'E_CANCELLED',
    );
    assert.equal(token.cancelled, true);
    assert.ok(!existsSync(out));
    assert.deepEqual(readdirSync(tmp).filter((n) => n.startsWith('.tmp-')), []);
  });

  it('loadAddon lists every path it tried', () => {
    assert.throws(() => loadAddon(path.join(tmp, 'no-package'), { HQLORA_ADDON: path.join(tmp, 'missing.node') }), (e: unknown) => {
      const m = (e as Error).message;
      return m.includes(path.join(tmp, 'missing.node')) && m.includes(path.join(tmp, 'no-package', 'native', 'build', 'bin', 'hqlora.node'));
    });
  });
});
