// lsp.test.ts — extension-host suite for the run-config language server (extension/lsp) in a real VS Code: a
// *.hqlora.yaml written into the workspace made by test/e2e/run-ext-tests.mjs (model = the tiny LLaMA fixture by
// absolute path) is opened, the server's diagnostics are awaited (polled with a deadline, never a sleep), the
// document is edited through a WorkspaceEdit (an unknown key, an out-of-range value) and the new diagnostics are
// checked with their exact ranges; then completion (schema keys of `training` / `adapter`, the level presets) and
// hover (trainable parameters) go through VS Code's own provider commands, i.e. through the language client.
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import * as vscode from 'vscode';

import { activate, waitFor, ws } from './host';

const codeOf = (d: vscode.Diagnostic): string => String(typeof d.code === 'object' ? d.code.value : d.code);
const ours = (uri: vscode.Uri): vscode.Diagnostic[] => vscode.languages.getDiagnostics(uri).filter((d) => d.source === 'hqlora');
const show = (ds: vscode.Diagnostic[]): string => JSON.stringify(ds.map((d) => `${codeOf(d)} @${d.range.start.line}:${d.range.start.character}-${d.range.end.line}:${d.range.end.character}: ${d.message}`));
const labelOf = (i: vscode.CompletionItem): string => (typeof i.label === 'string' ? i.label : i.label.label);

/** The range of the first `needle` on the first line containing `lineHas` (asserted to exist). */
function rangeOf(doc: vscode.TextDocument, lineHas: string, needle: string): vscode.Range {
  for (let l = 0; l < doc.lineCount; l++) {
    const t = doc.lineAt(l).text;
    if (!t.includes(lineHas)) continue;
    const c = t.indexOf(needle, t.indexOf(lineHas));
    assert.ok(c >= 0, `"${needle}" not on line ${l}: ${t}`);
    return new vscode.Range(l, c, l, c + needle.length);
  }
  assert.fail(`no line containing "${lineHas}"`);
}

const lineOf = (doc: vscode.TextDocument, has: string): number => rangeOf(doc, has, has).start.line;

async function completeAt(uri: vscode.Uri, pos: vscode.Position): Promise<string[]> {
  const list = await vscode.commands.executeCommand<vscode.CompletionList>('vscode.executeCompletionItemProvider', uri, pos);
  return list.items.map(labelOf);
}

let repo: string;
let file: string;
let uri: vscode.Uri;
let doc: vscode.TextDocument;

suite('H-QLoRA run-config language server', () => {
  suiteSetup(async () => {
    repo = (await activate()).ext.extensionUri.fsPath;
    const fx = path.join(repo, 'test', 'fixtures');
    file = path.join(ws(), 'lsp-e2e.hqlora.yaml');
    writeFileSync(file, `# E2E: language server diagnostics, completion and hover
model: ${path.join(fx, 'models', 'tiny-llama')}
adapter:
  levels: [{ rank: 16, alpha: 16 }, { rank: 4, alpha: 16 }, { rank: 4, alpha: 16 }]
data:
  train: ${path.join(fx, 'data', 'train.completion.jsonl')}
  format: completion
  source_max_len: 64
  target_max_len: 16
training:
  max_steps: 10
  micro_batch_size: 2
output: { dir: runs }
hardware: { threads: 1 }
`);
    uri = vscode.Uri.file(file);
  });

  suiteTeardown(async () => {
    // Leave no dirty editor and no extra config behind for the suites that follow.
    await vscode.commands.executeCommand('workbench.action.revertAndCloseActiveEditor');
    rmSync(file, { force: true });
  });

  test('opening a config: the server publishes its diagnostics (levels summary, no errors)', async () => {
    const t0 = Date.now();
    doc = await vscode.workspace.openTextDocument(uri);
    assert.equal(doc.languageId, 'hqlora-config');
    await vscode.window.showTextDocument(doc);
    const ds = await waitFor('the levels-sum diagnostic', () => {
      const d = ours(uri);
      return d.some((x) => codeOf(x) === 'levels-sum') && d;
    });
    console.log(`lsp: first diagnostics after ${Date.now() - t0} ms: ${show(ds)}`);
    assert.deepEqual(ds.filter((d) => d.severity === vscode.DiagnosticSeverity.Error), [], show(ds));
    const sum = ds.find((d) => codeOf(d) === 'levels-sum')!;
    assert.equal(sum.severity, vscode.DiagnosticSeverity.Information);
    assert.match(sum.message, /^3 levels, total rank 24 = 16 \+ 4 \+ 4; [\d.]+K trainable parameters/);
    assert.deepEqual(sum.range, rangeOf(doc, '  levels:', 'levels'));
  });

  test('editing: an unknown key and an out-of-range value are marked exactly', async () => {
    const t0 = Date.now();
    const edit = new vscode.WorkspaceEdit();
    edit.insert(uri, new vscode.Position(lineOf(doc, '  max_steps: 10') + 1, 0), '  gradient_acumulation_steps: 2\n');
    edit.replace(uri, rangeOf(doc, 'micro_batch_size: 2', '2'), '0');
    assert.ok(await vscode.workspace.applyEdit(edit), 'applyEdit');
    assert.match(doc.getText(), /\n {2}gradient_acumulation_steps: 2\n {2}micro_batch_size: 0\n/);
    const ds = await waitFor('unknown-key and out-of-range diagnostics', () => {
      const d = ours(uri);
      return d.some((x) => codeOf(x) === 'unknown-key') && d.some((x) => codeOf(x) === 'out-of-range') && d;
    });
    console.log(`lsp: diagnostics ${Date.now() - t0} ms after the edit: ${show(ds)}`);
    const unknown = ds.find((d) => codeOf(d) === 'unknown-key')!;
    assert.deepEqual(unknown.range, rangeOf(doc, 'gradient_acumulation_steps', 'gradient_acumulation_steps'));
    assert.match(unknown.message, /did you mean "gradient_accumulation_steps"/);
    const range = ds.find((d) => codeOf(d) === 'out-of-range')!;
    assert.deepEqual(range.range, rangeOf(doc, 'micro_batch_size: 0', '0'));
    assert.match(range.message, /micro_batch_size/);
    assert.equal(range.severity, vscode.DiagnosticSeverity.Error);
  });

  test('completion through the client: section keys of training / adapter, top-level keys, level presets', async () => {
    const edit = new vscode.WorkspaceEdit();
    edit.insert(uri, new vscode.Position(lineOf(doc, 'training:') + 1, 0), '  \n');
    edit.insert(uri, new vscode.Position(lineOf(doc, 'adapter:') + 1, 0), '  \n  ranks: \n');
    edit.insert(uri, new vscode.Position(doc.lineCount, 0), '\n');
    assert.ok(await vscode.workspace.applyEdit(edit), 'applyEdit');

    const training = await completeAt(uri, new vscode.Position(lineOf(doc, 'training:') + 1, 2));
    console.log(`lsp: completion in training: ${JSON.stringify(training)}`);
    for (const k of ['learning_rate', 'lr_scheduler', 'warmup_steps', 'gradient_accumulation_steps']) assert.ok(training.includes(k), `training.${k} in ${JSON.stringify(training)}`);
    assert.ok(!training.includes('max_steps'), 'keys already written are not offered');

    const adapter = await completeAt(uri, new vscode.Position(lineOf(doc, 'adapter:') + 1, 2));
    console.log(`lsp: completion in adapter: ${JSON.stringify(adapter)}`);
    for (const k of ['target_modules', 'rslora', 'dropout']) assert.ok(adapter.includes(k), `adapter.${k} in ${JSON.stringify(adapter)}`);
    assert.ok(!adapter.includes('levels'));

    const top = await completeAt(uri, new vscode.Position(doc.lineCount - 1, 0));
    console.log(`lsp: completion at top level: ${JSON.stringify(top)}`);
    for (const k of ['eval', 'quantization', 'checkpoints']) assert.ok(top.includes(k), `${k} in ${JSON.stringify(top)}`);
    for (const k of ['model', 'training', 'adapter']) assert.ok(!top.includes(k), `${k} is written already`);

    const ranksLine = lineOf(doc, '  ranks: ');
    const presets = await completeAt(uri, new vscode.Position(ranksLine, doc.lineAt(ranksLine).text.length));
    console.log(`lsp: completion for adapter.ranks: ${JSON.stringify(presets)}`);
    for (const p of ['[64]', '[32, 32]', '[32, 16, 16]', '[32, 8, 8, 8, 8]']) assert.ok(presets.includes(p), `preset ${p} in ${JSON.stringify(presets)}`);

    const levels = await completeAt(uri, rangeOf(doc, '  levels: ', '[').start);
    console.log(`lsp: completion for adapter.levels: ${JSON.stringify(levels)}`);
    for (const p of ['levels 64', 'levels 32,32', 'levels 32,16,16', 'levels 32,8,8,8,8']) assert.ok(levels.includes(p), `preset ${p} in ${JSON.stringify(levels)}`);
  });

  test('hover through the client: trainable parameters per level and in total', async () => {
    const hovers = await vscode.commands.executeCommand<vscode.Hover[]>('vscode.executeHoverProvider', uri, new vscode.Position(lineOf(doc, '  levels:'), 4));
    const text = hovers.flatMap((h) => h.contents.map((c) => (typeof c === 'string' ? c : c.value))).join('\n');
    console.log(`lsp: hover on levels:\n${text}`);
    const cfg = JSON.parse(readFileSync(path.join(repo, 'test/fixtures/models/tiny-llama/config.json'), 'utf8')) as Record<string, number>;
    const hd = cfg.head_dim ?? cfg.hidden_size! / cfg.num_attention_heads!;
    const q = cfg.hidden_size! + cfg.num_attention_heads! * hd;
    const kv = cfg.hidden_size! + (cfg.num_key_value_heads ?? cfg.num_attention_heads!) * hd;
    const perRank = cfg.num_hidden_layers! * (2 * q + 2 * kv + 3 * (cfg.hidden_size! + cfg.intermediate_size!));
    assert.match(text, new RegExp(`level 0: rank 16, ${(16 * perRank / 1000).toFixed(1)}K trainable parameters`));
    assert.match(text, new RegExp(`level 2: rank 4, ${(4 * perRank / 1000).toFixed(1)}K trainable parameters`));
    assert.match(text, new RegExp(`total: rank 24, ${(24 * perRank / 1000).toFixed(1)}K trainable parameters over 7 module`));
  });
});
