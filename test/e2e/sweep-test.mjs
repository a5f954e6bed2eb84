// sweep-test.mjs — the Sweep results panel in a real VS Code (code-server) driven by Chromium, on the fixture sweep
// (test/fixtures/sweep.hqsweep.yaml, 2 splits × 2 datasets of 16 steps on the tiny LLaMA, scored 1-shot on
// test/fixtures/mcq; here 256 micro-batches a step instead of 2 (a cell's 16 steps in about 5 s), so that each cell
// trains for a few panel refreshes even on an idle machine, where 8 left a cell's 16 steps in 0.8 s and the
// fresh-clone CI's refreshes caught none training):
//   1. "H-QLoRA: Open Sweep Results" from the palette, then "H-QLoRA: Start Sweep": the panel follows the sweep live,
//      with a cell shown training at step k / 16 and the matrix filled in as cells finish (1..3 of 4 done);
//   2. on the finished sweep: "4 / 4 cells done", one loss curve per cell (the chart's data-curves / data-last-x) and
//      one matrix row per cell whose split, data, status, final loss, eval loss, MMLU and Δ MMLU to the baseline row
//      (its 95 % interval, * exactly when sweep-results.json calls it significant) equal sweep-results.json and the
//      cell's events.jsonl;
//   3. "Save as Markdown…" through the save dialog writes results.md (to the offered <sweep>/table-results.md);
//      "Copy as CSV" puts results.csv on the clipboard;
//   4. a click on the "Final loss" header sorts the rows by it ascending, a second click descending;
//   5. the window is reloaded: the restored panel (serializer + webview state) shows the same sweep, sorted the same.
// Screenshots: test-results/e2e/sweep-results.png (docs/screenshots/ holds a copy).
// usage: node test/e2e/sweep-test.mjs   (after setup.sh, npm run build and npm run build:native)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { readEvents, runCommand, startUiTest, testLog, waitFor, waitForWorkbench, webview } from './lib.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ws = path.join(repo, 'test-results', 'e2e', 'sweep', 'workspace');
const fx = path.join(repo, 'test', 'fixtures');
const log = testLog();

// The fixture sweep with absolute paths, its sweep folder inside the workspace, its base run at 256 micro-batches a step.
fs.rmSync(ws, { recursive: true, force: true });
fs.mkdirSync(ws, { recursive: true });
const base = fs.readFileSync(path.join(fx, 'sweep-base.hqlora.yaml'), 'utf8');
assert.match(base, /^\s*gradient_accumulation_steps: 2$/m, 'the fixture base run\'s accumulation');
fs.writeFileSync(path.join(ws, 'sweep-base.hqlora.yaml'), base
  .replace(/^# yaml-language-server: .*$/m, `# yaml-language-server: $schema=${path.join(repo, 'schemas', 'run-config.schema.json')}`)
  .replace(/^model: models\//m, `model: ${path.join(fx, 'models')}/`)
  .replace(/^(\s*train:) data\//m, `$1 ${path.join(fx, 'data')}/`)
  .replace(/^(\s*gradient_accumulation_steps:) 2$/m, '$1 256'));
const sweepFile = path.join(ws, 'table.hqsweep.yaml');
fs.writeFileSync(sweepFile, fs.readFileSync(path.join(fx, 'sweep.hqsweep.yaml'), 'utf8')
  .replace(/^# yaml-language-server: .*$/m, `# yaml-language-server: $schema=${path.join(repo, 'schemas', 'sweep.schema.json')}`)
  .replace(/train: data\//g, `train: ${path.join(fx, 'data')}/`)
  .replace('path: mcq,', `path: ${path.join(fx, 'mcq')},`)
  .replace('dir: ../../sweeps', 'dir: sweeps'));
const dir = path.join(ws, 'sweeps', 'table');
const readResults = () => JSON.parse(fs.readFileSync(path.join(dir, 'sweep-results.json'), 'utf8'));
/** Δ MMLU as the panel must show it: points with the 95 % interval, * when significant ('–' for the baseline row). */
const points = (x) => `${x >= 0 ? '+' : '−'}${Math.abs(100 * x).toFixed(1)}`;
const deltaOf = (results, id) => {
  const diff = results.rows.flatMap((r) => r.columns).find((c) => c.cells.includes(id))?.diff ?? null;
  return { text: diff ? `${points(diff.delta)} [${points(diff.lo)}, ${points(diff.hi)}]${diff.significant ? ' *' : ''}` : '–',
    significant: diff ? String(diff.significant) : null };
};
let results;
let expected;

/** What the matrix must show of each cell: from sweep-results.json and the cell's events.jsonl. */
function expectedCells() {
  results = readResults();
  assert.equal(results.cells.length, 4);
  assert.ok(results.cells.every((c) => c.status === 'done'), 'every cell of the fixture sweep finished');
  assert.ok(results.rows.some((r) => r.columns.some((c) => c.diff)), 'a row has a difference to the baseline');
  return results.cells.map((c) => {
    const steps = readEvents(c.run_dir).filter((e) => e.type === 'step');
    const last = steps.reduce((a, e) => (e.step >= a.step ? e : a), steps[0]);
    return { id: c.id, split: c.split, data: c.data, status: 'done', finalLoss: last.loss, lastStep: last.step,
      evalLoss: c.eval_loss === null ? '–' : c.eval_loss.toFixed(4), mmlu: c.mmlu ? (100 * c.mmlu.accuracy).toFixed(1) : '–',
      delta: deltaOf(results, c.id) };
  });
}

const { page, shot, run } = await startUiTest({ name: 'sweep', repo, port: 8314, viewport: { width: 1700, height: 1100 }, log });

async function rows(wv) {
  return wv.locator('#matrix tbody tr').evaluateAll((trs) => trs.map((tr) => {
    const cell = (k) => tr.querySelector(`td[data-key="${k}"]`)?.textContent ?? '';
    return { id: tr.dataset.cellId, split: cell('split'), data: cell('data'), status: cell('status'), step: cell('step'), finalLoss: cell('final_loss'),
      evalLoss: cell('eval_loss'), mmlu: cell('mmlu'), delta: cell('delta'), significant: tr.querySelector('td[data-key="delta"]')?.getAttribute('data-significant') ?? null };
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
    assert.equal(r.delta, e.delta.text, `Δ MMLU of ${r.id}`);
    assert.equal(r.significant, e.delta.significant, `significance mark of ${r.id}`);
  }
  return shown;
}

const byLoss = (dir) => [...expected].sort((a, b) => dir * (a.finalLoss - b.finalLoss) || results.cells.findIndex((c) => c.id === a.id) - results.cells.findIndex((c) => c.id === b.id)).map((e) => e.id);

await run(ws, async () => {
  await runCommand(page, 'H-QLoRA: Open Sweep Results');
  let wv = webview(page);
  await waitFor('the panel on the sweep not started yet', async () => /has not started/.test(await wv.locator('#sweep-problem').innerText()), 60000);
  await runCommand(page, 'H-QLoRA: Start Sweep');
  log('ran "H-QLoRA: Start Sweep" from the palette');
  // Live: the panel refreshes once a second while a cell trains; every snapshot is kept until all 4 cells are done.
  const seen = { training: '', partial: '' };
  await waitFor('the sweep done in the panel', async () => {
    const shown = await rows(wv).catch(() => []);
    const done = Number(await wv.locator('main').getAttribute('data-done').catch(() => '0'));
    const training = shown.find((r) => r.status === 'training' && /^[1-9]\d* \/ 16$/.test(r.step));
    if (training && !seen.training) seen.training = `${training.id} at step ${training.step}`;
    if (done > 0 && done < 4 && !seen.partial && shown.filter((r) => r.mmlu !== '–').length === done) seen.partial = `${done} / 4 done, their MMLU shown`;
    return done === 4;
  }, 600000);
  log(`live: ${seen.training || 'no cell seen training'}; ${seen.partial || 'no partial matrix seen'}`);
  assert.ok(seen.training, 'a cell shown training with its step k / 16');
  assert.ok(seen.partial, 'the matrix filled in as cells finish');
  await waitFor('sweep-results.json with every cell scored', () => {
    try { return readResults().cells.every((c) => c.status === 'done'); } catch { return false; }
  }, 60000);
  expected = expectedCells();
  log(`the sweep: ${expected.length} cells done; Δ: ${expected.map((e) => `${e.id} ${e.delta.text}`).join(', ')}`);
  await assertShows(wv, expected.map((e) => e.id));
  log('panel: 4 cells, 4 curves, matrix (with Δ and its significance marks) equal to sweep-results.json and events.jsonl (sweep order)');

  // Export: Save as Markdown… (the workbench's save dialog, which offers <sweep>/<name>-results.md), Copy as CSV (the
  // clipboard).
  const saved = path.join(dir, 'table-results.md');
  await wv.locator('#btn-save-md').click();
  const input = page.locator('.quick-input-widget .quick-input-box input');
  await input.waitFor({ state: 'visible', timeout: 30000 });
  await waitFor('the save dialog at <sweep>/table-results.md', async () => (await input.inputValue()).endsWith('/sweeps/table/table-results.md'), 30000);
  await input.press('Enter');
  await waitFor('the saved matrix', () => fs.existsSync(saved), 30000);
  assert.equal(fs.readFileSync(saved, 'utf8'), fs.readFileSync(path.join(dir, 'results.md'), 'utf8'));
  log('Save as Markdown… wrote results.md to', saved);
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write']);
  await wv.locator('#btn-copy-csv').click();
  const csv = fs.readFileSync(path.join(dir, 'results.csv'), 'utf8');
  await waitFor('results.csv on the clipboard', async () => (await page.evaluate(() => navigator.clipboard.readText()).catch(() => '')) === csv, 30000);
  log('Copy as CSV put results.csv on the clipboard');
  await runCommand(page, 'Notifications: Clear All Notifications');

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
