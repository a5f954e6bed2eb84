// sweep-test.mjs — the sweep results panel in a real VS Code (code-server) driven by Chromium, on a finished tiny
// sweep: the fixture sweep (test/fixtures/sweep.hqsweep.yaml, 2 splits × 2 datasets of 16 steps on the tiny LLaMA,
// scored 1-shot on test/fixtures/mcq) is run to completion with the real CLI (`hqlora sweep`), then
//   1. "H-QLoRA: Open Sweep Results" from the palette shows "4 / 4 cells done", one loss curve per cell (the chart's
//      data-curves / data-last-x) and one matrix row per cell whose split, data, status, final loss, eval loss and
//      MMLU equal sweep-results.json and the cell's events.jsonl;
//   2. a click on the "Final loss" header sorts the rows by it ascending, a second click descending;
//   3. the window is reloaded: the restored panel (serializer + webview state) shows the same sweep, sorted the same.
// Screenshots: test-results/e2e/sweep-results.png (docs/screenshots/ holds a copy).
// usage: node test/e2e/sweep-test.mjs   (after setup.sh, npm run build and npm run build:native)
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { readEvents, runCommand, startUiTest, testLog, waitFor, waitForWorkbench, webview } from './lib.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ws = path.join(repo, 'test-results', 'e2e', 'sweep', 'workspace');
const fx = path.join(repo, 'test', 'fixtures');
const log = testLog();

// The fixture sweep with absolute paths, its sweep folder inside the workspace.
fs.rmSync(ws, { recursive: true, force: true });
fs.mkdirSync(ws, { recursive: true });
const sweepFile = path.join(ws, 'table.hqsweep.yaml');
fs.writeFileSync(sweepFile, fs.readFileSync(path.join(fx, 'sweep.hqsweep.yaml'), 'utf8')
  .replace(/^# yaml-language-server: .*$/m, `# yaml-language-server: $schema=${path.join(repo, 'schemas', 'sweep.schema.json')}`)
  .replace('base: sweep-base.hqlora.yaml', `base: ${path.join(fx, 'sweep-base.hqlora.yaml')}`)
  .replace(/train: data\//g, `train: ${path.join(fx, 'data')}/`)
  .replace('path: mcq,', `path: ${path.join(fx, 'mcq')},`)
  .replace('dir: ../../sweeps', 'dir: sweeps'));
const cli = spawnSync(process.execPath, [path.join(repo, 'dist', 'cli.js'), 'sweep', sweepFile], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
if (cli.status !== 0) throw new Error(`hqlora sweep exited ${cli.status}:\n${cli.stdout.slice(-2000)}\n${cli.stderr.slice(-2000)}`);
const dir = path.join(ws, 'sweeps', 'table');
const results = JSON.parse(fs.readFileSync(path.join(dir, 'sweep-results.json'), 'utf8'));
assert.equal(results.cells.length, 4);
assert.ok(results.cells.every((c) => c.status === 'done'), 'every cell of the fixture sweep finished');
log(`hqlora sweep: ${results.cells.length} cells done`);

/** What the matrix must show of each cell: from sweep-results.json and the cell's events.jsonl. */
const expected = results.cells.map((c) => {
  const steps = readEvents(c.run_dir).filter((e) => e.type === 'step');
  const last = steps.reduce((a, e) => (e.step >= a.step ? e : a), steps[0]);
  return { id: c.id, split: c.split, data: c.data, status: 'done', finalLoss: last.loss, lastStep: last.step,
    evalLoss: c.eval_loss === null ? '–' : c.eval_loss.toFixed(4), mmlu: c.mmlu ? (100 * c.mmlu.accuracy).toFixed(1) : '–' };
});

const { page, shot, run } = await startUiTest({ name: 'sweep', repo, port: 8314, viewport: { width: 1600, height: 1100 }, log });

async function rows(wv) {
  return wv.locator('#matrix tbody tr').evaluateAll((trs) => trs.map((tr) => {
    const cell = (k) => tr.querySelector(`td[data-key="${k}"]`)?.textContent ?? '';
    return { id: tr.dataset.cellId, split: cell('split'), data: cell('data'), status: cell('status'), finalLoss: cell('final_loss'), evalLoss: cell('eval_loss'), mmlu: cell('mmlu') };
  }));
}

async function assertShows(wv, order) {
  await waitFor('the panel on the finished sweep', async () => (await wv.locator('main').getAttribute('data-done')) === '4', 120000);
  assert.match(await wv.locator('#sweep-summary').innerText(), /^4 \/ 4 cells done · baseline 32 · /);
  const chart = wv.locator('#chart-cells-loss');
  await waitFor('one loss curve per cell', async () => (await chart.getAttribute('data-curves')) === '4', 30000);
  assert.equal(await chart.getAttribute('data-last-x'), String(Math.max(...expected.map((e) => e.lastStep))));
  for (const e of expected) await chart.locator('.u-legend', { hasText: `${e.split} · ${e.data}` }).waitFor({ timeout: 30000 });
  const shown = await rows(wv);
  assert.deepEqual(shown.map((r) => r.id), order, 'row order');
  for (const r of shown) {
    const e = expected.find((x) => x.id === r.id);
    assert.equal(r.split, e.split);
    assert.equal(r.data, e.data);
    assert.equal(r.status, 'done');
    assert.equal(r.finalLoss, e.finalLoss.toFixed(4), `final loss of ${r.id}`);
    assert.equal(r.evalLoss, e.evalLoss, `eval loss of ${r.id}`);
    assert.ok(r.mmlu.startsWith(e.mmlu), `MMLU of ${r.id}: ${r.mmlu} vs ${e.mmlu}`);
  }
  return shown;
}

const byLoss = (dir) => [...expected].sort((a, b) => dir * (a.finalLoss - b.finalLoss) || results.cells.findIndex((c) => c.id === a.id) - results.cells.findIndex((c) => c.id === b.id)).map((e) => e.id);

await run(ws, async () => {
  await runCommand(page, 'H-QLoRA: Open Sweep Results');
  let wv = webview(page);
  await assertShows(wv, expected.map((e) => e.id));
  log('panel: 4 cells, 4 curves, matrix equal to sweep-results.json and events.jsonl (sweep order)');

  await wv.locator('#matrix th[data-key="final_loss"]').click();
  await waitFor('sorted by final loss ascending', async () => (await wv.locator('#matrix th[data-key="final_loss"]').getAttribute('aria-sort')) === 'ascending', 10000);
  await assertShows(wv, byLoss(1));
  await wv.locator('#matrix th[data-key="final_loss"]').click();
  await waitFor('sorted by final loss descending', async () => (await wv.locator('#matrix th[data-key="final_loss"]').getAttribute('aria-sort')) === 'descending', 10000);
  await assertShows(wv, byLoss(-1));
  log('sorted by final loss, both ways:', byLoss(-1).join(' '));
  await shot('sweep-results.png');

  await runCommand(page, 'Developer: Reload Window');
  await waitForWorkbench(page);
  log('reloaded the window');
  wv = webview(page);
  await assertShows(wv, byLoss(-1));
  log('the restored panel shows the same sweep, sorted the same');
});
