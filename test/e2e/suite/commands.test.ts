// commands.test.ts — extension-host suite for the merge/export and Preview Data commands, in a real VS Code with
// the workspace made by test/e2e/run-ext-tests.mjs: a tiny run is trained to completion with the run manager, then
// "Merge Adapter Levels" and "Merge Adapter into Base Model" export it (arguments given, so nothing prompts) and
// "Export to GGUF" checks it in llama.cpp, "Chat with Adapter" answers in its playground and "Preview Data" opens its
// marked document. Every figure is printed.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import * as vscode from 'vscode';

import type { HqloraApi } from '../../../extension/extension';
import type { GgufExportResult } from '../../../extension/gguf/export';
import type { ExportReport } from '../../../extension/native/addon';
import type { Run } from '../../../extension/registry/run';

import { activate, waitFor, ws } from './host';

const readJson = (f: string): Record<string, unknown> => JSON.parse(readFileSync(f, 'utf8')) as Record<string, unknown>;

let api: HqloraApi;
let run: Run;

suite('H-QLoRA merge/export and Preview Data commands', () => {
  suiteSetup(async () => {
    ({ api } = await activate());
  });

  test('the commands are registered (the dashboard enables its Merge / Export buttons from this list)', async () => {
    const all = new Set(await vscode.commands.getCommands(true));
    for (const id of ['hqlora.mergeLevels', 'hqlora.exportMerged', 'hqlora.combineAdapters', 'hqlora.previewData']) {
      assert.ok(all.has(id), `${id} is not registered`);
    }
  });

  test('Merge Adapter Levels on a completed tiny run: PEFT folder + verify.json pass', async () => {
    const t0 = Date.now();
    const started = await api.runs.start(path.join(ws(), 'quick.hqlora.yaml'));
    assert.ok(started, 'the run manager started no run');
    run = started;
    await api.runs.whenDone(run);
    assert.equal(run.status, 'completed', run.record.message);
    const trained = Date.now() - t0;

    const t1 = Date.now();
    const rep = await vscode.commands.executeCommand<ExportReport | undefined>('hqlora.mergeLevels', run.id, { rank: 0 });
    assert.ok(rep, 'hqlora.mergeLevels returned no report (see the H-QLoRA log)');
    const out = `${run.id}-peft-merged`;
    assert.equal(rep.output, out);
    assert.equal(rep.format, 'peft');
    for (const f of ['adapter_config.json', 'adapter_model.safetensors', 'verify.json']) assert.ok(existsSync(path.join(out, f)), `missing ${f}`);
    const cfg = readJson(path.join(out, 'adapter_config.json'));
    assert.equal(cfg.r, rep.total_rank, 'exact merge: rank = Σ level ranks');
    const verify = readJson(path.join(out, 'verify.json')) as { verification: { status: string; exact: boolean; max_abs_diff: number; mean_abs_diff: number; tolerance: number } };
    assert.equal(verify.verification.status, 'pass');
    assert.equal(verify.verification.exact, true);
    assert.ok(verify.verification.max_abs_diff <= verify.verification.tolerance);
    console.log(`merge levels: run trained in ${trained} ms, merged in ${Date.now() - t1} ms: rank ${String(cfg.r)}, ` +
      `max |Δlogit| ${verify.verification.max_abs_diff}, mean ${verify.verification.mean_abs_diff} (tolerance ${verify.verification.tolerance})`);
  });

  test('Merge Adapter into Base Model (dequantized, fp32): HF model folder + verify.json pass', async () => {
    const t0 = Date.now();
    const rep = await vscode.commands.executeCommand<ExportReport | undefined>('hqlora.exportMerged', run.id, { base: 'dequantized', dtype: 'fp32' });
    assert.ok(rep, 'hqlora.exportMerged returned no report (see the H-QLoRA log)');
    assert.equal(rep.output, `${run.id}-merged-dequantized-fp32`);
    assert.equal(rep.format, 'hf-model');
    assert.ok(existsSync(path.join(rep.output, 'config.json')) && existsSync(path.join(rep.output, 'verify.json')));
    const verify = readJson(path.join(rep.output, 'verify.json')) as { verification: { status: string; max_abs_diff: number } };
    assert.equal(verify.verification.status, 'pass');
    console.log(`merge into base: ${Date.now() - t0} ms, max |Δlogit| ${verify.verification.max_abs_diff}`);
  });

  test('Export to GGUF (f32) on the completed run: model, base and LoRA GGUF beside it, verify.json from llama.cpp passes', async () => {
    const t0 = Date.now();
    const rep = await vscode.commands.executeCommand<GgufExportResult | undefined>('hqlora.exportGguf', run.id, { type: 'f32' });
    assert.ok(rep, 'hqlora.exportGguf returned no report (see the H-QLoRA log)');
    assert.equal(rep.output, `${run.id}-gguf-dequantized-f32`);
    for (const f of ['model-f32.gguf', 'base-f32.gguf', 'adapter-f32.gguf', 'Modelfile', 'verify.json']) assert.ok(existsSync(path.join(rep.output, f)), `missing ${f}`);
    const v = (readJson(path.join(rep.output, 'verify.json')) as unknown as GgufExportResult).verification;
    assert.equal(v.status, 'pass', JSON.stringify(v).slice(0, 1500));
    assert.equal(v.engine?.version, '3.21.1');
    assert.equal(v.tokens?.mismatches.length, 0);
    console.log(`export to GGUF: ${Date.now() - t0} ms, llama.cpp on ${v.engine?.backend}: merged max |Δ log-prob| ${v.logits?.merged?.max_abs_diff}, ` +
      `base + LoRA ${v.adapter?.vs_ours.max_abs_diff} (bound ${v.logits?.tolerance})`);
  });

  test('Chat with Adapter on the completed run: the playground panel (the webview ready, then a validated ask) answers in the base and tuned panes', async () => {
    const t0 = Date.now();
    const source = await vscode.commands.executeCommand<string | undefined>('hqlora.chatWithAdapter', run.id);
    assert.equal(source, run.id);
    const panel = api.playgrounds.get(run.id);
    assert.ok(panel, 'no playground panel for the run');
    // The webview's own `ready` prepares the GGUFs and starts the server; then a prompt as the webview sends it.
    await waitFor('the playground server', () => panel.stats.backend, 180_000);
    panel.receive({ type: 'ask', prompt: 'cfabz =>', panes: ['base', 'tuned'], settings: { temperature: 0, topP: 1, topK: 40, maxTokens: 8, seed: 1, systemPrompt: '' } });
    const answers = await waitFor('two answers', () => panel.stats.answers.length >= 2 && panel.stats.answers, 180_000);
    const tuned = answers.find((a) => a.pane === 'tuned');
    assert.ok(tuned && tuned.stopReason !== 'error', JSON.stringify(answers));
    assert.ok((tuned.tokens ?? 0) > 0 && tuned.text.length > 0, JSON.stringify(tuned));
    assert.equal(panel.stats.invalid, 0);
    console.log(`chat: llama.cpp on ${panel.stats.backend}, ${Date.now() - t0} ms to two answers; tuned: ${JSON.stringify(tuned.text)} (${tuned.tokens} tokens, ${tuned.tokensPerSecond?.toFixed(1)} tok/s)`);
    panel.panel.dispose();
  });

  test('Preview Data opens a read-only document with the trained parts marked', async () => {
    const config = vscode.Uri.file(path.join(ws(), 'quick.hqlora.yaml'));
    const uri = await vscode.commands.executeCommand<vscode.Uri | undefined>('hqlora.previewData', config, 3);
    assert.ok(uri, 'hqlora.previewData returned no document (see the H-QLoRA log)');
    const editor = await waitFor('the preview editor', () => vscode.window.visibleTextEditors.find((e) => e.document.uri.toString() === uri.toString()));
    const text = editor.document.getText();
    assert.match(text, /«trained» = tokens with loss/);
    assert.match(text, /── example 1 .* \d+ tokens, \d+ trained/);
    assert.ok(!text.includes('── example 4'), 'three examples asked for');
    const marked = [...text.matchAll(/«([^«»]+)»/g)].slice(1); // after the header's «trained» legend
    assert.ok(marked.length >= 1, 'no trained part is marked');
    await vscode.commands.executeCommand('workbench.action.closeActiveEditor');
    console.log(`preview data: ${text.split('\n').length} lines, ${marked.length} trained parts marked`);
  });
});
