// chat-test.mjs — the demo's tuned model answers in the chat playground. In a real VS Code (code-server) driven by
// Chromium, with the demo config (test/fixtures/demo.hqlora.yaml, 5 levels):
//   1. the demo run trains to completion from the palette (Start H-QLoRA Run);
//   2. "H-QLoRA: Chat with Adapter" from the palette opens the playground on it (the only completed run: no pick);
//      the panel exports the run's GGUF on first use and starts llama.cpp; its status line names the backend;
//   3. the default panes (base, level 1 only, tuned) get a fourth, "levels 1–2", from the Compare checkboxes, placed
//      between level 1 and tuned (the columns keep the hierarchy's order);
//   4. one prompt is sent with greedy settings (temperature 0) and 16 max tokens; a MutationObserver in the webview
//      records every text the answers show, so the base and tuned panes must have shown growing partial answers
//      (streamed tokens) before their final one, and every pane ends with its tokens, TTFT and tokens/s;
//   5. the tuned pane's answer equals `node dist/cli.js generate <run> --prompt … --max-tokens 16 --json`'s text
//      (the same cached GGUF, greedy), and each pane's answer equals what the extension host sent (stats.answers is
//      not reachable from here: the host's answer message sets the final text, which must be the streamed text).
// Screenshot: test-results/e2e/chat-playground.png; docs/screenshots/ holds a copy of it.
// usage: node test/e2e/chat-test.mjs   (after setup.sh and npm run build)
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { demoWorkspace, readEvents, runCommand, startUiTest, testLog, waitFor, webview } from './lib.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ws = demoWorkspace(path.join(repo, 'test-results', 'e2e', 'chat', 'workspace'), repo);
const log = testLog();
const { page, shot, run } = await startUiTest({ name: 'chat', repo, port: 8315, viewport: { width: 1600, height: 720 }, log });
const runDirs = () => fs.existsSync(path.join(ws, 'runs'))
  ? fs.readdirSync(path.join(ws, 'runs')).map((d) => path.join(ws, 'runs', d)).filter((d) => fs.existsSync(path.join(d, 'events.jsonl'))).sort() : [];
// An eval word of the demo's shift task (test/fixtures/data/eval.completion.jsonl), as the trainer saw prompts.
const PROMPT = JSON.parse(fs.readFileSync(path.join(repo, 'test', 'fixtures', 'data', 'eval.completion.jsonl'), 'utf8').split('\n')[0]);
const MAX_TOKENS = 16;
const PANES = ['base', 'L1', 'L2', 'tuned']; // the hierarchy's order, whatever order the boxes were ticked in

/**
 * Runs in the webview, on #panes (which stays while its columns are redrawn): every text each pane's latest answer
 * showed, recorded on each DOM change (token by token) into root.chatTrace.
 */
function recordAnswers(root) {
  const trace = {};
  root.chatTrace = trace;
  const snap = () => {
    for (const pane of root.querySelectorAll('section.pane')) {
      const answer = [...pane.querySelectorAll('.answer')].at(-1);
      if (!answer) continue;
      const list = (trace[pane.dataset.pane] ??= []);
      const s = { state: answer.dataset.state, text: answer.textContent };
      const last = list.at(-1);
      if (!last || last.state !== s.state || last.text !== s.text) list.push(s);
    }
  };
  new root.ownerDocument.defaultView.MutationObserver(snap).observe(root, { subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ['data-state'] });
}

await run(ws, async () => {
  // 1. The demo run, trained to completion from the palette.
  await runCommand(page, 'H-QLoRA: Start H-QLoRA Run');
  const dir = await waitFor('the demo run folder', () => runDirs()[0], 120000);
  await waitFor('the demo run to complete', () => readEvents(dir).some((e) => e.type === 'done'), 240000, 250);
  const done = readEvents(dir).filter((e) => e.type === 'done').at(-1);
  assert.equal(done.status, 'completed', JSON.stringify(done));
  log(`demo run ${path.basename(dir)} completed`);

  // 2. Chat with Adapter from the palette: the panel on that run, the GGUF exported, llama.cpp started.
  // The command refuses a run the run manager still has live; wait for the dashboard to show it completed.
  await waitFor('the dashboard on the completed run', async () => (await webview(page).locator('#run-status').getAttribute('data-status')) === 'completed', 60000);
  await runCommand(page, 'H-QLoRA: Chat with Adapter');
  const wv = webview(page);
  await wv.locator('#panes section.pane[data-pane="tuned"]').waitFor({ timeout: 180000 });
  const statusText = await waitFor('llama.cpp started (the status line names it)', async () => {
    const s = wv.locator('#status');
    return (await s.getAttribute('data-level')) === 'info' && /llama\.cpp \(node-llama-cpp [\d.]+\) on \w+/.test(await s.innerText()) && s.innerText();
  }, 180000);
  log('playground status:', statusText);
  assert.ok(fs.existsSync(path.join(dir, 'gguf-dequantized-f16', 'verify.json')), 'the GGUF is cached in the run folder');
  assert.equal(await wv.locator('.note').innerText(), 'This model has no chat template: each pane\'s turns are sent as one plain prompt.');

  // 3. Default panes base, level 1 only, tuned; tick "levels 1–2" for a fourth.
  const shown = async () => wv.locator('#panes section.pane').evaluateAll((s) => s.map((e) => e.dataset.pane));
  assert.deepEqual(await shown(), ['base', 'L1', 'tuned']);
  await wv.locator('#pane-L2').click();
  await waitFor('four panes', async () => (await shown()).length === 4, 30000);
  assert.deepEqual(await shown(), PANES);
  const heads = await wv.locator('#panes section.pane h3').allInnerTexts();
  assert.deepEqual(heads, ['base', 'level 1 only', 'levels 1–2', 'tuned (levels 1–5)']);
  assert.deepEqual(await wv.locator('.pane-choice .choice').allInnerTexts(), ['base', 'level 1 only', 'levels 1–2', 'levels 1–3', 'levels 1–4', 'tuned (levels 1–5)']);

  // 4. Greedy settings, 16 max tokens; record the answers as they stream, send the prompt with Enter.
  assert.equal(await wv.locator('#temperature').evaluate((e) => e.value), '0', 'greedy by default');
  await wv.locator('#max-tokens input').fill(String(MAX_TOKENS));
  await wv.locator('#panes').evaluate(recordAnswers);
  await wv.locator('#prompt textarea').fill(PROMPT.prompt);
  await wv.locator('#prompt textarea').press('Enter');
  await waitFor('the turn to start', async () => (await wv.locator('#panes .user').count()) === 4, 30000);
  await waitFor('every pane answered', async () => (await wv.locator('#panes .answer').evaluateAll((a) => a.map((e) => e.dataset.state)))
    .every((s) => s === 'eos' || s === 'maxTokens'), 180000, 200);
  await waitFor('the panel idle', async () => (await wv.locator('#app').getAttribute('data-state')) === 'idle', 30000);
  // The level subsets' LoRA exports (first use) showed in the status line; once answered it says so, spinner off.
  const after = await waitFor('the status line after the turn', async () => (await wv.locator('#status').getAttribute('data-level')) === 'info'
    && /^4 answers in [\d.]+ s · llama\.cpp \(node-llama-cpp [\d.]+\) on \w+$/.test(await wv.locator('#status').innerText()) && wv.locator('#status').innerText(), 30000);
  assert.equal(await wv.locator('#status vscode-progress-ring').isVisible(), false, 'the status spinner stopped');
  log('status after the turn:', after);
  const trace = await wv.locator('#panes').evaluate((root) => root.chatTrace);
  const answers = {};
  for (const pane of PANES) {
    const sec = wv.locator(`#panes section.pane[data-pane="${pane}"]`);
    const final = await sec.locator('.answer').evaluate((e) => ({ state: e.dataset.state, text: e.textContent }));
    const stats = (await sec.locator('.stats').innerText()).replace(/\s+/g, ' ');
    const m = /(\d+) tokens · TTFT (\d+) ms · ([\d.]+) tok\/s/.exec(stats);
    assert.ok(m, `${pane}: the stats line "${stats}"`);
    const [tokens, tps] = [Number(m[1]), Number(m[3])];
    const partial = (trace[pane] ?? []).filter((s) => s.state === 'streaming').map((s) => s.text);
    answers[pane] = { ...final, tokens, tps, partial: partial.length };
    log(`${pane}: ${JSON.stringify(final.text)} (${final.state}, ${stats}; ${partial.length} streamed texts: ${partial.map((t) => JSON.stringify(t)).join(' ')})`);
    assert.ok(tokens >= 1 && tokens <= MAX_TOKENS, `${pane}: ${tokens} tokens`);
    assert.ok(final.state === 'eos' || tokens === MAX_TOKENS, `${pane}: stopped at max tokens with ${tokens}`);
    // Streamed: each text shown while streaming extends the one before and leads to the final answer.
    for (let i = 1; i < partial.length; i++) assert.ok(partial[i].startsWith(partial[i - 1]) && partial[i].length > partial[i - 1].length, `${pane}: streamed text ${i} grows`);
    if (partial.length) assert.ok(final.text.startsWith(partial.at(-1)), `${pane}: the final answer continues the streamed text`);
    if (pane === 'base' || pane === 'tuned') {
      assert.ok(tokens >= 2, `${pane}: ${tokens} token(s) cannot show streaming`);
      assert.ok(partial.some((t) => t.length > 0 && t.length < final.text.length), `${pane}: no partial answer was shown before the final one (${JSON.stringify(trace[pane])})`);
    }
  }

  // 5. The tuned pane's greedy answer is hqlora generate's on the same run (its cached GGUF).
  const t0 = Date.now();
  const { stdout } = await promisify(execFile)(process.execPath, [path.join(repo, 'dist', 'cli.js'), 'generate', dir, '--prompt', PROMPT.prompt,
    '--max-tokens', String(MAX_TOKENS), '--json'], { cwd: ws, timeout: 180000 });
  const cli = JSON.parse(stdout);
  log(`hqlora generate (${Date.now() - t0} ms): ${JSON.stringify(cli.text)} (${cli.tokens} tokens, ${cli.stopReason}); expected completion ${JSON.stringify(PROMPT.completion)}`);
  assert.equal(answers.tuned.text, cli.text, 'the tuned pane\'s greedy answer is hqlora generate\'s');
  assert.equal(answers.tuned.tokens, cli.tokens);
  assert.equal(cli.gguf, path.join(dir, 'gguf-dequantized-f16'));

  await runCommand(page, 'Notifications: Clear All Notifications');
  await shot('chat-playground.png');
});
