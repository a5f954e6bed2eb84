// features.test.ts — completion, hover, code lens, document symbols and quick fixes over an in-process LSP
// connection, on the fixtures (tiny LLaMA, completion dataset) and a Hugging Face cache holding acme/tiny-llama.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { CodeAction, CodeLens, CompletionItem, Diagnostic, DocumentSymbol, Hover, MarkupContent } from 'vscode-languageserver';

import { FIXTURES, type Workspace, makeWorkspace } from './fixtures';
import { LspHarness, fileUri } from './harness';

const DEMO = readFileSync(path.join(FIXTURES, 'demo.hqlora.yaml'), 'utf8');

describe('lsp features', () => {
  let ws: Workspace;
  let h: LspHarness;
  let n = 0;
  before(async () => {
    ws = makeWorkspace();
    h = await LspHarness.start({ env: { HF_HUB_CACHE: ws.cache } });
  });
  after(() => {
    h.stop();
    ws.cleanup();
  });

  /** Opens `text` (the cursor is at `|`) and asks for completion there. */
  async function completeAt(textWithCursor: string, ext = 'hqlora.yaml'): Promise<CompletionItem[]> {
    const offset = textWithCursor.indexOf('|');
    const text = textWithCursor.replace('|', '');
    const before = text.slice(0, offset).split('\n');
    const uri = fileUri(path.join(FIXTURES, `c${n++}.${ext}`));
    await h.diagnose(uri, text);
    const position = { line: before.length - 1, character: before.at(-1)!.length };
    const r = await h.request<CompletionItem[] | { items: CompletionItem[] }>('textDocument/completion', { textDocument: { uri }, position });
    return Array.isArray(r) ? r : r.items;
  }
  const labels = (items: CompletionItem[]): string[] => items.map((i) => i.label);

  it('completes top-level keys not yet written, with their documentation', async () => {
    const items = await completeAt('model: models/tiny-llama\n|');
    assert.ok(!labels(items).includes('model'));
    for (const k of ['data', 'adapter', 'training', 'quantization', 'hardware']) assert.ok(labels(items).includes(k), k);
    const training = items.find((i) => i.label === 'training')!;
    assert.match((training.documentation as MarkupContent).value, /The optimisation recipe/);
    assert.equal(training.insertText, 'training:\n  ');
  });

  it('completes the keys of a section with type, range and default', async () => {
    const items = await completeAt('training:\n  max_steps: 10\n  |');
    assert.ok(!labels(items).includes('max_steps'));
    const mbs = items.find((i) => i.label === 'micro_batch_size');
    assert.ok(mbs);
    const doc = (mbs.documentation as MarkupContent).value;
    assert.match(doc, /Examples per forward\/backward pass/);
    assert.match(doc, /default: `1`/);
    assert.match(doc, /range: \[1, ∞\]/);
  });

  it('completes the keys of a list item (adapter.levels[i])', async () => {
    assert.deepEqual(labels(await completeAt('adapter:\n  levels:\n    - rank: 32\n      |')), ['alpha']);
  });

  it('completes enum and boolean values', async () => {
    assert.deepEqual(labels(await completeAt('training:\n  lr_scheduler: |')), ['constant', 'linear', 'cosine']);
    assert.deepEqual(labels(await completeAt('adapter:\n  rslora: |')), ['true', 'false']);
    assert.deepEqual(labels(await completeAt('hardware:\n  device: c|')), ['auto', 'cpu', 'cuda']);
    assert.deepEqual(labels(await completeAt('quantization:\n  compute_dtype: |')), ['auto', 'bfloat16', 'float32']);
  });

  it('completes data files and folders relative to the config', async () => {
    const items = await completeAt('data:\n  train: data/tr|');
    assert.deepEqual(labels(items).sort(), ['train.alpaca.jsonl', 'train.completion.jsonl']);
    const edit = items[0]!.textEdit as { range: { start: { character: number } }; newText: string };
    assert.equal(edit.range.start.character, 'data:\n  train: data/'.split('\n')[1]!.length, 'replaces only the typed part of the name');
    assert.ok(labels(await completeAt('model: models/|')).includes('tiny-llama/'));
  });

  it('completes model ids from the local Hugging Face cache', async () => {
    const items = await completeAt('model: |');
    const id = items.find((i) => i.label === 'acme/tiny-llama');
    assert.ok(id, JSON.stringify(labels(items)));
    assert.match(id.detail ?? '', /Hugging Face cache: 1 snapshot\(s\), refs main/);
  });

  it('completes target modules of the architecture and level presets', async () => {
    const mods = labels(await completeAt('model: models/tiny-llama\nadapter:\n  target_modules: [q_proj, |'));
    assert.deepEqual(mods, ['k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
    assert.deepEqual(labels(await completeAt('adapter:\n  ranks: |')), ['[64]', '[32, 32]', '[32, 16, 16]', '[32, 8, 8, 8, 8]']);
    const levels = await completeAt('adapter:\n  levels: |');
    assert.equal(levels.length, 4);
    assert.equal(levels[3]!.insertText, '\n    - { rank: 32, alpha: 16 }' + '\n    - { rank: 8, alpha: 16 }'.repeat(4));
  });

  it('completes keys in a JSON config', async () => {
    const items = await completeAt('{\n  "model": "models/tiny-llama",\n  |\n}\n', 'hqlora.json');
    const data = items.find((i) => i.label === 'data');
    assert.ok(data);
    assert.equal(data.insertText, '"data": ');
    assert.ok(!labels(items).includes('model'));
  });

  async function hoverAt(text: string, line: number, character: number): Promise<string> {
    const uri = fileUri(path.join(FIXTURES, `h${n++}.hqlora.yaml`));
    await h.diagnose(uri, text);
    const r = await h.request<Hover | null>('textDocument/hover', { textDocument: { uri }, position: { line, character } });
    assert.ok(r, 'a hover');
    return (r.contents as MarkupContent).value;
  }
  const lineOf = (text: string, s: string): number => text.split('\n').findIndex((l) => l.includes(s));

  it('hovers with schema docs and the effective batch / tokens per step', async () => {
    const v = await hoverAt(DEMO, lineOf(DEMO, 'micro_batch_size'), 4);
    const num = (k: string): number => Number(new RegExp(`${k}: (\\d+)`).exec(DEMO)![1]);
    const [mbs, acc, seq] = [num('micro_batch_size'), num('gradient_accumulation_steps'), num('source_max_len') + num('target_max_len')];
    assert.match(v, /\*\*micro_batch_size\*\*/);
    assert.match(v, /Examples per forward\/backward pass/);
    assert.match(v, new RegExp(`effective batch: ${mbs} x ${acc} = ${mbs * acc} examples per step`));
    assert.match(v, new RegExp(`tokens per step: at most ${(mbs * acc * seq).toLocaleString('en-US')} \\(${mbs * acc} x ${seq} tokens\\)`));
    assert.match(v, new RegExp(`optimizer steps: ${num('max_steps')}`));
  });

  it('hovers on the levels with trainable parameters per level and in total', async () => {
    const v = await hoverAt(DEMO, lineOf(DEMO, 'levels:'), 4);
    // tiny-llama: 2 layers, hidden 64, MLP 128(?), GQA; the numbers come from its config.json.
    const cfg = JSON.parse(readFileSync(path.join(FIXTURES, 'models/tiny-llama/config.json'), 'utf8')) as Record<string, number>;
    const hd = cfg.head_dim ?? cfg.hidden_size! / cfg.num_attention_heads!;
    const q = cfg.hidden_size! + cfg.num_attention_heads! * hd;
    const kv = cfg.hidden_size! + (cfg.num_key_value_heads ?? cfg.num_attention_heads!) * hd;
    const perRank = cfg.num_hidden_layers! * (2 * q + 2 * kv + 3 * (cfg.hidden_size! + cfg.intermediate_size!));
    assert.match(v, new RegExp(`level 0: rank 16, ${(16 * perRank / 1000).toFixed(1)}K trainable parameters`));
    assert.match(v, new RegExp(`total: rank 32, ${(32 * perRank / 1000).toFixed(1)}K trainable parameters over 7 module`));
  });

  it('hovers on the model with its architecture and the memory estimate', async () => {
    const v = await hoverAt(DEMO, lineOf(DEMO, 'model:'), 10);
    assert.match(v, /architecture: llama; 2 layers, hidden 64/);
    assert.match(v, /estimated memory: \*\*[\d.]+ (MiB|GiB)\*\* = weights/);
    assert.match(v, /available: .* \(system memory\)/);
  });

  it('hovers on a repo id with the resolved snapshot', async () => {
    const text = DEMO.replace('model: models/tiny-llama', 'model: acme/tiny-llama');
    const v = await hoverAt(text, lineOf(text, 'model:'), 10);
    assert.match(v, /resolved from the Hugging Face cache: `.*models--acme--tiny-llama\/snapshots\/0123456789ab.*` \(commit 0123456789ab\)/);
  });

  it('gives the Start and Preview code lenses with the document URI', async () => {
    const uri = fileUri(path.join(FIXTURES, 'lens.hqlora.yaml'));
    await h.diagnose(uri, DEMO);
    const lenses = await h.request<CodeLens[]>('textDocument/codeLens', { textDocument: { uri } });
    assert.deepEqual(lenses.map((l) => [l.command?.command, l.command?.arguments]), [['hqlora.startRun', [uri]], ['hqlora.previewData', [uri]]]);
    assert.match(lenses[0]!.command!.title, /Start H-QLoRA Run/);
    assert.match(lenses[1]!.command!.title, /Preview Data/);
    assert.equal(lenses[0]!.range.start.line, lineOf(DEMO, 'model:'), 'above the first key, after the header comment');
  });

  it('gives the outline as document symbols', async () => {
    const uri = fileUri(path.join(FIXTURES, 'sym.hqlora.yaml'));
    await h.diagnose(uri, DEMO);
    const syms = await h.request<DocumentSymbol[]>('textDocument/documentSymbol', { textDocument: { uri } });
    assert.deepEqual(syms.map((s) => s.name), ['model', 'adapter', 'data', 'training', 'eval', 'checkpoints', 'output', 'hardware']);
    const training = syms.find((s) => s.name === 'training')!;
    const maxSteps = training.children!.find((c) => c.name === 'max_steps')!;
    assert.equal(maxSteps.detail, /max_steps: (\d+)/.exec(DEMO)?.[1]);
    assert.equal(maxSteps.selectionRange.start.line, lineOf(DEMO, 'max_steps'));
    assert.equal(syms.find((s) => s.name === 'adapter')!.children![0]!.children!.length, 5);
  });

  async function fixes(text: string, ext = 'hqlora.yaml'): Promise<{ d: Diagnostic; actions: CodeAction[] }[]> {
    const uri = fileUri(path.join(FIXTURES, `q${n++}.${ext}`));
    const ds = await h.diagnose(uri, text);
    const out = [];
    for (const d of ds.filter((x) => x.data)) {
      const actions = await h.request<CodeAction[]>('textDocument/codeAction', { textDocument: { uri }, range: d.range, context: { diagnostics: [d] } });
      out.push({ d, actions });
    }
    return out;
  }
  const newTexts = (r: { actions: CodeAction[] }[]): string[] => r.flatMap((x) => x.actions.flatMap((a) => Object.values(a.edit!.changes!).flat().map((e) => e.newText)));

  it('quick-fixes an unknown key by renaming it to the nearest allowed key', async () => {
    const r = await fixes(DEMO.replace('  micro_batch_size: 4', '  micro_bach_size: 4'));
    assert.deepEqual(newTexts(r), ['micro_batch_size']);
    assert.equal(r[0]!.actions[0]!.title, 'Rename to "micro_batch_size"');
    assert.equal(r[0]!.actions[0]!.kind, 'quickfix');
  });

  it('quick-fixes out-of-range values by clamping to the nearest valid value', async () => {
    const text = DEMO.replace('micro_batch_size: 4', 'micro_batch_size: 0').replace('  levels:', '  dropout: 1\n  levels:')
      .replace('warmup_steps: 20', 'warmup_steps: -5');
    assert.deepEqual(newTexts(await fixes(text)).sort(), ['0', '0.99', '1']);
  });

  it('quick-fixes an enum value to the nearest allowed one, keeping JSON quotes', async () => {
    assert.deepEqual(newTexts(await fixes('model: m\ndata: {train: t}\nquantization: {blocksize: 100}\n')), ['128']);
    const json = '{"model": "m", "data": {"train": "t"}, "hardware": {"device": "cdua"}, "trainig": {}}';
    assert.deepEqual(newTexts(await fixes(json, 'hqlora.json')).sort(), ['"cuda"', '"training"']);
  });
});
