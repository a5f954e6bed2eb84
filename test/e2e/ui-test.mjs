// ui-test.mjs — the user's loop in a real VS Code (code-server) driven by Chromium: palette "Start H-QLoRA Run" →
// status bar progress → dashboard charts receive points → window reload mid-run → the run is re-attached →
// completed → adapter files on disk; then stop + resume from the palette; then completion in the config editor.
// (Selection, overlay, config diff and the merge/export buttons: dashboard-test.mjs.)
// Screenshots go to test-results/e2e/.
// usage: node test/e2e/ui-test.mjs   (after setup.sh and npm run build)
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { makeWorkspace, runCommand, startUiTest, statusBarItem, testLog, waitFor, waitForWorkbench, webview } from './lib.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const state = path.join(repo, 'test-results', 'e2e', 'ui');
// 600 steps of 16 micro-batches: long enough to reload the window mid-run (about 1-2 min on 2 cores), short for CI.
const ws = makeWorkspace(path.join(state, 'workspace'), repo, { tiny: { steps: 600, accum: 16, evalEvery: 50, ckptEvery: 25 } });
const log = testLog();
const { page, shot, run } = await startUiTest({ name: 'ui', repo, port: 8312, log });
const runDirs = () => fs.existsSync(path.join(ws, 'runs')) ? fs.readdirSync(path.join(ws, 'runs')).map((d) => path.join(ws, 'runs', d)) : [];
const progress = /H-QLoRA (\d+)\/(\d+) · loss \d+\.\d{3} · .+ left/;
const barStep = async () => Number(progress.exec(await statusBarItem(page, progress).first().innerText())?.[1] ?? -1);
await run(ws, async () => {
  await runCommand(page, 'H-QLoRA: Start H-QLoRA Run');
  log('ran "H-QLoRA: Start H-QLoRA Run" from the palette');
  await statusBarItem(page, progress).first().waitFor({ timeout: 120000 });
  log('status bar:', await statusBarItem(page, progress).first().innerText());

  let wv = webview(page);
  await wv.locator('#chart-loss[data-points]').waitFor({ timeout: 60000 });
  await waitFor('loss chart points', async () => Number(await wv.locator('#chart-loss').getAttribute('data-points')) >= 20, 60000);
  log('dashboard loss chart points:', await wv.locator('#chart-loss').getAttribute('data-points'));
  await shot('dashboard-running.png');

  // Reload the window mid-run: the trainer keeps running (detached), the new extension host re-attaches.
  const before = await barStep();
  const [runDir] = runDirs();
  await runCommand(page, 'Developer: Reload Window');
  log(`reloaded the window at step ${before}`);
  await waitForWorkbench(page);
  await waitFor('status bar progress after the reload, beyond the step before it', async () => {
    try { return (await barStep()) > before; } catch { return false; }
  }, 90000);
  log('re-attached after reload; status bar:', await statusBarItem(page, progress).first().innerText());
  await runCommand(page, 'H-QLoRA: Open H-QLoRA Dashboard');
  wv = webview(page);
  await wv.locator('#run-status[data-status="completed"]').waitFor({ timeout: 300000 });
  const points = Number(await wv.locator('#chart-loss').getAttribute('data-points'));
  log(`completed; loss chart shows ${points} points (history re-read from events.jsonl after the reload)`);
  if (points !== 600) throw new Error(`expected 600 loss points, got ${points}`);
  for (const f of ['adapter/adapter.safetensors', 'adapter/adapter_metadata.json', 'peft/adapter_model.safetensors', 'peft/adapter_config.json']) {
    if (!fs.existsSync(path.join(runDir, f))) throw new Error(`missing ${f} in ${runDir}`);
  }
  log('adapter files present in', runDir);
  await shot('dashboard-completed.png');

  // Stop and resume from the palette.
  await runCommand(page, 'H-QLoRA: Start H-QLoRA Run');
  await statusBarItem(page, progress).first().waitFor({ timeout: 120000 });
  await waitFor('step 30', async () => (await barStep()) >= 30, 60000);
  await runCommand(page, 'H-QLoRA: Stop H-QLoRA Run');
  await statusBarItem(page, /H-QLoRA .*: stopped/).first().waitFor({ timeout: 90000 });
  log('stopped:', await statusBarItem(page, /: stopped/).first().innerText());
  await runCommand(page, 'H-QLoRA: Resume H-QLoRA Run');
  await statusBarItem(page, progress).first().waitFor({ timeout: 120000 });
  log('resumed:', await statusBarItem(page, progress).first().innerText());
  await runCommand(page, 'H-QLoRA: Stop H-QLoRA Run');
  await statusBarItem(page, /: stopped/).first().waitFor({ timeout: 90000 });
  // The run-config language server in the editor: typing a key prefix on a new line brings up the suggest widget
  // with the schema key, and the half-typed line gets an error squiggle; then the file is reverted.
  await runCommand(page, 'Go to File...');
  await page.keyboard.type('tiny.hqlora.yaml');
  await page.locator('.quick-input-list .monaco-list-row.focused', { hasText: 'tiny.hqlora.yaml' }).first().waitFor({ timeout: 30000 });
  await page.keyboard.press('Enter');
  const editor = page.locator('.editor-instance .monaco-editor[data-uri$="tiny.hqlora.yaml"]').first();
  await editor.locator('.view-lines').click();
  await page.keyboard.press('Control+End');
  await page.keyboard.press('Enter');
  await page.keyboard.type('qu');
  await page.keyboard.press('Control+Space');
  await page.locator('.suggest-widget.visible .monaco-list-row', { hasText: 'quantization' }).first().waitFor({ timeout: 30000 });
  await editor.locator('.squiggly-error').first().waitFor({ timeout: 30000 });
  log('suggest widget:', await page.locator('.suggest-widget.visible .monaco-list-row').allInnerTexts());
  await shot('editor-suggest.png');
  await page.keyboard.press('Escape');
  await runCommand(page, 'File: Revert File');
});
