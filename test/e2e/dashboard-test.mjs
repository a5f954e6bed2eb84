// dashboard-test.mjs — the dashboard shows one run at a time, consistently, and its merge/export buttons finish in
// the panel. In a real VS Code (code-server) driven by Chromium, with the demo config (test/fixtures/demo.hqlora.yaml):
//   1. run A trains to completion; run B (the same config at 32 micro-batches a step) is stopped with the panel's
//      Stop button at about step 30;
//   2. both are overlaid (the selection stays), then each is selected in turn: the header's run id, status and step,
//      every step chart's first and last x, and which buttons are enabled (and why not, in their tooltips) must all
//      agree with that run's events.jsonl;
//   3. the window is reloaded: the restored panel (serializer + webview state) shows the same run, checked again;
//   4. on A: Merge levels with the exact default rank (the prompt names it), Merge levels with a smaller rank, and
//      Export merged model, each through the command's own prompts; the panel then lists each output with its
//      verify.json summary, and the files on disk (adapter_config.json, config.json, verify.json) are checked.
// Screenshots go to test-results/e2e/ (dashboard-overlay-diff.png, dashboard-overlay-stopped.png, dashboard-exports.png);
// docs/screenshots/ holds copies of them.
// usage: node test/e2e/dashboard-test.mjs   (after setup.sh and npm run build)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { demoWorkspace, readEvents, runCommand, startUiTest, testLog, waitFor, waitForWorkbench, webview } from './lib.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ws = demoWorkspace(path.join(repo, 'test-results', 'e2e', 'dashboard', 'workspace'), repo);
const log = testLog();
// Tall enough for the whole panel in one shot: header, charts, the runs list and the config diff (no scrolling).
const { page, shot, run } = await startUiTest({ name: 'dashboard', repo, port: 8313, viewport: { width: 1600, height: 1640 }, log });
const runDirs = () => fs.existsSync(path.join(ws, 'runs'))
  ? fs.readdirSync(path.join(ws, 'runs')).map((d) => path.join(ws, 'runs', d)).filter((d) => fs.existsSync(path.join(d, 'events.jsonl'))).sort() : [];
const readJson = (f) => JSON.parse(fs.readFileSync(f, 'utf8'));
const ALL_BUTTONS = ['btn-stop', 'btn-save', 'btn-resume', 'btn-folder', 'btn-merge', 'btn-export', 'btn-gguf', 'btn-chat'];
const STEP_CHARTS = ['loss', 'lr', 'grad', 'tps', 'mem'];

/** What a finished run's events.jsonl says: status, steps (first, last, count). */
function facts(dir) {
  const ev = readEvents(dir);
  const steps = ev.filter((e) => e.type === 'step').map((e) => e.step);
  const done = ev.filter((e) => e.type === 'done').at(-1);
  const evals = ev.filter((e) => e.type === 'eval').map((e) => e.step);
  return { dir, name: path.basename(dir), status: done?.status, first: Math.min(...steps), last: Math.max(...steps), count: new Set(steps).size,
    lastEval: evals.length ? String(Math.max(...evals)) : '' };
}

/** The panel shows `run` everywhere: header, status, step, every step chart's x range, buttons and their tooltips. */
async function assertShows(wv, run, enabled, why) {
  await wv.locator('#run-header[data-run-id]').waitFor({ timeout: 120000 }); // after a reload: the restored webview
  await waitFor(`header on ${run.name}`, async () => (await wv.locator('#run-header').getAttribute('data-run-id')) === run.dir, 30000);
  await waitFor(`the step charts of ${run.name} drawn to step ${run.last}`, async () => {
    for (const c of STEP_CHARTS) if ((await wv.locator(`#chart-${c}`).getAttribute('data-last-x')) !== String(run.last)) return false;
    return true;
  }, 30000);
  assert.equal(await wv.locator('#run-status').getAttribute('data-status'), run.status);
  assert.match(await wv.locator('dd[data-fact="step"]').innerText(), new RegExp(`^${run.last} / 600$`));
  assert.equal(await wv.locator('#runs tbody tr.selected').getAttribute('data-run-id'), run.dir, 'the runs list highlights the selected run');
  const charts = {};
  for (const c of STEP_CHARTS) {
    const el = wv.locator(`#chart-${c}`);
    charts[c] = { first: await el.getAttribute('data-first-x'), last: await el.getAttribute('data-last-x'), points: await el.getAttribute('data-points') };
    assert.equal(charts[c].first, String(run.first), `${c} chart starts at the run's first step`);
    assert.equal(charts[c].points, String(run.count), `${c} chart has every step of the run`);
  }
  // The eval chart ends at the run's last eval (every 50 steps in the demo config; none when stopped before step 50).
  assert.equal(await wv.locator('#chart-eval').getAttribute('data-last-x') ?? '', run.lastEval, 'eval chart ends at the run\'s last eval');
  const state = {};
  for (const id of ALL_BUTTONS) {
    const b = wv.locator(`#${id}`);
    state[id] = { enabled: !(await b.evaluate((e) => e.hasAttribute('disabled'))), title: (await b.getAttribute('title')) ?? '' };
  }
  const on = ALL_BUTTONS.filter((id) => state[id].enabled);
  assert.deepEqual(on, enabled, `enabled buttons for ${run.name} (${run.status})`);
  for (const [id, re] of Object.entries(why)) assert.match(state[id].title, re, `tooltip of the disabled ${id}`);
  log(`panel shows ${run.name} (${run.status}): header, step ${run.last}/600, charts ${run.first}..${run.last} (${run.count} points), enabled: ${on.join(' ')}`);
  return { charts, buttons: state };
}

const COMPLETED = { enabled: ['btn-folder', 'btn-merge', 'btn-export', 'btn-gguf', 'btn-chat'], why: { 'btn-stop': /only while the run is training; .* is completed/, 'btn-resume': /Only stopped or failed runs resume/ } };
const STOPPED = {
  enabled: ['btn-resume', 'btn-folder'],
  why: { 'btn-stop': /only while the run is training; .* is stopped/, 'btn-save': /only while the run is training/, 'btn-merge': /Available once the run has completed.* is stopped/, 'btn-export': /Available once the run has completed/,
    'btn-gguf': /Available once the run has completed.* is stopped/, 'btn-chat': /Available once the run has completed.* is stopped/ },
};

async function select(wv, run) {
  await wv.locator(`#runs tbody tr[data-run-id="${run.dir}"] td`).nth(1).click();
}

/** The quick input the command opened (from a webview click); waits for it to be visible. */
async function quickInput() {
  const input = page.locator('.quick-input-widget .quick-input-box input');
  await input.waitFor({ state: 'visible', timeout: 30000 });
  return input;
}

async function waitForOutput(wv, dir) {
  const li = wv.locator(`#outputs li[data-output="${dir}"]`);
  await li.waitFor({ timeout: 180000 });
  const status = await li.getAttribute('data-verify');
  const summary = await li.locator('.summary').innerText();
  log(`panel lists ${path.basename(dir)}: ${summary}`);
  assert.equal(status, 'pass', summary);
  const verify = readJson(path.join(dir, 'verify.json'));
  assert.equal(verify.verification.status, 'pass');
  assert.ok(verify.verification.max_abs_diff <= verify.verification.tolerance, 'verify.json: max |Δlogit| within tolerance');
  return verify;
}

await run(ws, async () => {
  // 1. Run A to completion, then run B, stopped from the panel at about step 30.
  await runCommand(page, 'H-QLoRA: Start H-QLoRA Run');
  const dirA = await waitFor('run A folder', () => runDirs()[0], 120000);
  let wv = webview(page);
  await waitFor('run A completed in the panel', async () => (await wv.locator('#run-header').getAttribute('data-run-id')) === dirA
    && (await wv.locator('#run-status').getAttribute('data-status')) === 'completed', 180000);
  const A = facts(dirA);
  log(`run A ${A.name}: ${A.status} at step ${A.last}`);
  assert.equal(A.status, 'completed');

  // Run B is stopped at about step 30 with a plain mouse click on the panel's Stop button, located while A is still
  // selected (the button stays put). A locator click, even locating the button, while the trainer keeps both cores
  // busy took 1-2 s here: 20-30 more steps of the demo run.
  // Run B takes 32 micro-batches a step instead of the demo's 4 (nothing else changes): on an idle 2-core machine the
  // demo trains about 40 steps/s, so step 30 came before the panel had switched to run B and enabled Stop (CI: the
  // click landed at step 81).
  const cfg = path.join(ws, 'demo.hqlora.yaml');
  const demoText = fs.readFileSync(cfg, 'utf8');
  assert.match(demoText, /^\s*gradient_accumulation_steps: 4$/m, 'the demo config\'s accumulation');
  fs.writeFileSync(cfg, demoText.replace(/^(\s*gradient_accumulation_steps:) 4$/m, '$1 32'));
  const box = await wv.locator('#btn-stop').boundingBox();
  const [x, y] = [box.x + box.width / 2, box.y + box.height / 2];
  await page.mouse.move(x, y);
  await runCommand(page, 'H-QLoRA: Start H-QLoRA Run');
  const dirB = await waitFor('run B folder', () => runDirs().find((d) => d !== dirA), 120000);
  await waitFor('the panel on run B', async () => (await wv.locator('#run-header').getAttribute('data-run-id')) === dirB, 60000);
  await wv.locator('#btn-stop:not([disabled])').waitFor({ timeout: 60000 });
  const lastStep = () => Math.max(0, ...readEvents(dirB).filter((e) => e.type === 'step').map((e) => e.step));
  await waitFor('run B at step 30', () => lastStep() >= 30, 60000, 10);
  const pressedAt = lastStep();
  await page.mouse.click(x, y);
  await waitFor('run B stopped in the panel', async () => (await wv.locator('#run-status').getAttribute('data-status')) === 'stopped', 90000);
  assert.deepEqual(await wv.locator('#btn-stop').boundingBox(), box, 'the Stop button stayed where it was clicked');
  const B = facts(dirB);
  log(`run B ${B.name}: ${B.status} at step ${B.last} (Stop clicked at step ${pressedAt})`);
  assert.equal(B.status, 'stopped');
  // "About step 30": on an idle machine it stops within a few steps of the click; the bound leaves room for a busy one.
  assert.ok(B.last >= 30 && B.last <= 80, `stopped at step ${B.last}, not about step 30 (clicked at ${pressedAt})`);
  await assertShows(wv, B, STOPPED.enabled, STOPPED.why);

  // 2. Overlay both: the selection does not move; the other run is an extra legend entry on the loss chart.
  for (const r of [A, B]) await wv.locator(`#runs tbody tr[data-run-id="${r.dir}"] vscode-checkbox`).click();
  await wv.locator('#chart-loss .u-legend', { hasText: `${A.name} (overlay)` }).waitFor({ timeout: 30000 });
  await assertShows(wv, B, STOPPED.enabled, STOPPED.why);
  await select(wv, A);
  await wv.locator('#chart-loss .u-legend', { hasText: `${B.name} (overlay)` }).waitFor({ timeout: 30000 });
  await assertShows(wv, A, COMPLETED.enabled, COMPLETED.why);
  await wv.locator('#btn-diff').click();
  await wv.locator('#config-diff p').waitFor({ timeout: 30000 });
  log('config diff:', await wv.locator('#config-diff p').innerText());
  await shot('dashboard-overlay-diff.png');
  await select(wv, B);
  await assertShows(wv, B, STOPPED.enabled, STOPPED.why);
  await shot('dashboard-overlay-stopped.png');

  // 3. Reload the window: the restored panel comes back on B (its webview state), then A is selected again.
  await runCommand(page, 'Developer: Reload Window');
  await waitForWorkbench(page);
  log('reloaded the window');
  wv = webview(page);
  await assertShows(wv, B, STOPPED.enabled, STOPPED.why);
  await wv.locator('#chart-loss .u-legend', { hasText: `${A.name} (overlay)` }).waitFor({ timeout: 30000 });
  await select(wv, A);
  await assertShows(wv, A, COMPLETED.enabled, COMPLETED.why);

  // 4. Merge levels (exact default, then a smaller rank) and Export merged model, from the panel's buttons.
  const exact = readJson(path.join(dirA, 'run.json')).adapter.levels.reduce((s, l) => s + l.rank, 0);
  await wv.locator('#btn-merge').click();
  let input = await quickInput();
  const prompt = await page.locator('.quick-input-widget .quick-input-message, .quick-input-widget .quick-input-description').allInnerTexts();
  log('merge prompt:', prompt.join(' | '));
  assert.ok(prompt.join(' ').includes(`empty = exact (rank ${exact}, Σ level ranks)`), `the prompt names the exact rank ${exact}`);
  await input.press('Enter');
  const exactOut = `${dirA}-peft-merged`;
  const vExact = await waitForOutput(wv, exactOut);
  assert.equal(readJson(path.join(exactOut, 'adapter_config.json')).r, exact);
  assert.equal(vExact.verification.exact, true);

  const small = 24; // 16 + 4 + 4 of the 32: max |Δlogit| ≈ 0.06 against the lossy tolerance 0.5 (rank 8 fails it, ≈ 2.4)
  await wv.locator('#btn-merge:not([disabled])').click();
  input = await quickInput();
  await input.fill(String(small));
  await input.press('Enter');
  const smallOut = `${dirA}-peft-r${small}`;
  await waitForOutput(wv, smallOut);
  assert.equal(readJson(path.join(smallOut, 'adapter_config.json')).r, small);

  await wv.locator('#btn-export:not([disabled])').click();
  // Original weights in fp32: the exact export, verified within 1e-5 x max(1, max |logit|) (its max |Δlogit| on
  // this demo run is about 1e-5, with logits up to 6.7); bf16 misses its 0.1 (by 0.178: the panel shows FAILED).
  for (const [title, filter, choice] of [['Base weights', 'Original', 'original'], ['Data type', 'float32', 'fp32']]) {
    input = page.locator('.quick-input-widget .quick-input-box input[aria-label*="' + title + '"]');
    await input.waitFor({ state: 'visible', timeout: 30000 });
    await input.fill(filter);
    await page.locator('.quick-input-list .monaco-list-row.focused', { hasText: choice }).first().waitFor({ timeout: 30000 });
    await input.press('Enter');
  }
  const modelOut = `${dirA}-merged-original-fp32`;
  await waitForOutput(wv, modelOut);
  for (const f of ['config.json', 'tokenizer.json']) assert.ok(fs.existsSync(path.join(modelOut, f)), `missing ${f} in ${modelOut}`);
  assert.ok(fs.readdirSync(modelOut).some((f) => f.endsWith('.safetensors')), 'merged model weights');
  assert.equal(await wv.locator('#outputs li').count(), 3);

  // "Reveal in Explorer" of the merged model: the explorer selects its folder.
  await wv.locator(`#outputs li[data-output="${modelOut}"] vscode-button`, { hasText: 'Reveal in Explorer' }).click();
  await page.locator('.explorer-folders-view .monaco-list-row.selected', { hasText: path.basename(modelOut) }).first().waitFor({ timeout: 30000 });
  log('Reveal in Explorer selected', path.basename(modelOut));
  await runCommand(page, 'Notifications: Clear All Notifications'); // the three result toasts would cover the charts
  await shot('dashboard-exports.png');
});
