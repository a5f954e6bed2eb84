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
});
