// dashboard-outputs.test.ts — the dashboard's list of a run's exports (extension/dashboard/outputs.ts) on real
// folders: only siblings `<run>-…` holding a verify.json, newest first, an unreadable report listed as such, and
// the check that guards the webview's openOutput requests. (The real addon's exports: test/e2e/dashboard-test.mjs.)
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';

import { isListedOutput, listOutputs } from '../../extension/dashboard/outputs';

function report(output: string, rank: number, status: 'pass' | 'fail'): string {
  return JSON.stringify({
    operation: 'merge_levels', output, format: 'peft', rank, total_rank: 24, exact: rank === 24, elapsed_s: 0.1,
    verification: { status, reference: 'r', exported: 'e', exact: rank === 24, max_abs_diff: status === 'pass' ? 0 : 2, mean_abs_diff: 0, tolerance: 0.5 },
  });
}

describe('dashboard outputs', () => {
  it('lists the run\'s exports with verify.json, newest first, and nothing else', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'hq-outputs-'));
    try {
      const run = path.join(dir, 'demo-1');
      const write = (name: string, text: string | undefined, mtime: number): void => {
        mkdirSync(path.join(dir, name), { recursive: true });
        if (text === undefined) return;
        const f = path.join(dir, name, 'verify.json');
        writeFileSync(f, text);
        utimesSync(f, mtime, mtime);
      };
      write('demo-1', undefined, 0);
      write('demo-1-peft-merged', report('/elsewhere/demo-1-peft-merged', 24, 'pass'), 1000);
      write('demo-1-peft-r8', report(path.join(dir, 'demo-1-peft-r8'), 8, 'fail'), 3000);
      write('demo-1-broken', '{"operation": ', 2000);
      write('demo-1-no-report', undefined, 0); // not an export
      write('demo-10-peft-merged', report('x', 24, 'pass'), 4000); // run demo-10's, not demo-1's
      write('other-peft-merged', report('x', 24, 'pass'), 5000);
      const got = listOutputs(run);
      assert.deepEqual(got.map((o) => [o.name, o.status]), [['demo-1-peft-r8', 'fail'], ['demo-1-broken', 'unreadable'], ['demo-1-peft-merged', 'pass']]);
      const merged = got[2];
      assert.equal(merged?.output, path.join(dir, 'demo-1-peft-merged'));
      assert.equal(merged?.rank, 24);
      assert.match(merged?.summary ?? '', /^Merged adapter levels → demo-1-peft-merged\. Verification PASSED/);
      assert.match(got[0]?.summary ?? '', /Verification FAILED: max \|Δlogit\| 2/);
      assert.ok(isListedOutput(run, path.join(dir, 'demo-1-peft-r8')));
      assert.ok(!isListedOutput(run, path.join(dir, 'demo-1-no-report')));
      assert.ok(!isListedOutput(run, path.join(dir, 'other-peft-merged')));
      assert.ok(!isListedOutput(run, '/etc'));
      assert.deepEqual(listOutputs(path.join(dir, 'missing', 'run')), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lists an Export to GGUF folder with llama.cpp\'s verdict and its checks', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'hq-outputs-'));
    try {
      const out = path.join(dir, 'demo-1-gguf-dequantized-f16');
      mkdirSync(out);
      const d = (max: number): { max_abs_diff: number; mean_abs_diff: number; pass: boolean } => ({ max_abs_diff: max, mean_abs_diff: max / 10, pass: max <= 0.03 });
      writeFileSync(path.join(out, 'verify.json'), JSON.stringify({
        operation: 'export_gguf', output: out, format: 'gguf', type: 'f16', architecture: 'llama', files: {},
        verification: {
          status: 'fail', engine: { library: 'node-llama-cpp', version: '3.21.1', backend: 'cpu' },
          tokens: { pass: true, compared: 16, equal: 16, add_bos: { ours: true, llama_cpp: true }, mismatches: [], skipped: [] },
          logits: { compared_as: '', tolerance: 0.03, positions: 48, merged: d(0.0205), base: d(0.0011) },
          adapter: { tolerance: 0.03, vs_ours: d(0.0307), vs_merged_gguf: d(0.0165) },
        },
      }));
      const [o] = listOutputs(path.join(dir, 'demo-1'));
      assert.equal(o?.format, 'gguf');
      assert.equal(o?.status, 'fail');
      assert.equal(o?.summary, 'GGUF (f16, llama) → demo-1-gguf-dequantized-f16. Verification by llama.cpp (node-llama-cpp 3.21.1, cpu) ' +
        'FAILED: tokens 16/16 equal, merged max |Δ log-prob| 0.0205, base + LoRA 0.0307 (bound 0.0300).');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
