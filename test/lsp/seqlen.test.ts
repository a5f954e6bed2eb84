// seqlen.test.ts — the 'seq-len' warning over a real language server: source_max_len + target_max_len above the
// model's max_position_embeddings, both numbers in the message (the words of core/truncation.ts, which
// `hqlora validate` prints too), and its quick fixes applied: the lowered lengths (written keys and defaults in a
// flow mapping) and the config.json context extension per rope scaling kind (none, llama3, transformers-5
// rope_parameters); none for Phi-3's longrope, nor for a shared Hugging Face cache snapshot.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import type { CodeAction, Diagnostic } from 'vscode-languageserver';
import { TextDocument } from 'vscode-languageserver-textdocument';

import { lengthProblem, modelContext } from '../../extension/core/truncation';
import { LLAMA_7B, type Workspace, makeWorkspace, modelFolder } from './fixtures';
import { LspHarness, fileUri } from './harness';

const ALL = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

describe('lsp: lengths against the model context (seq-len)', () => {
  let ws: Workspace;
  let h: LspHarness;
  let n = 0;
  before(async () => {
    ws = makeWorkspace();
    const m = (name: string, cfg: object, mods = ALL): void => modelFolder(path.join(ws.dir, 'models', name), cfg, mods);
    m('short', { ...LLAMA_7B, max_position_embeddings: 1024 });
    m('llama3', { ...LLAMA_7B, vocab_size: 128256, max_position_embeddings: 8192,
      rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } });
    m('tf5', { ...LLAMA_7B, rope_parameters: { rope_type: 'default', rope_theta: 10000 } });
    m('phi-long', { ...LLAMA_7B, model_type: 'phi3', original_max_position_embeddings: 4096,
      rope_scaling: { type: 'longrope', short_factor: [1], long_factor: [2] } }, ['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj']);
    h = await LspHarness.start({ env: { HF_HUB_CACHE: ws.cache } });
  });
  after(() => {
    h.stop();
    ws.cleanup();
  });

  async function open(text: string): Promise<{ uri: string; seqLen: Diagnostic[]; actions: CodeAction[] }> {
    const uri = fileUri(path.join(ws.dir, `s${n++}.hqlora.yaml`));
    const seqLen = (await h.diagnose(uri, text)).filter((d) => d.code === 'seq-len');
    const actions = seqLen[0] ? await h.request<CodeAction[]>('textDocument/codeAction',
      { textDocument: { uri }, range: seqLen[0].range, context: { diagnostics: [seqLen[0]] } }) : [];
    return { uri, seqLen, actions };
  }

  /** The text of `uri` (`text` when it is the run config, else the file on disk) after `action`'s edits. */
  function applied(action: CodeAction, uri: string, text: string): string {
    const edits = action.edit!.changes![uri];
    assert.ok(edits, `${action.title} edits ${uri}: ${JSON.stringify(Object.keys(action.edit!.changes!))}`);
    return TextDocument.applyEdits(TextDocument.create(uri, 'x', 0, text), edits);
  }

  function modelJson(name: string): { file: string; uri: string; text: string } {
    const file = path.join(ws.dir, 'models', name, 'config.json');
    return { file, uri: fileUri(file), text: readFileSync(file, 'utf8') };
  }

  it('warns on source_max_len with both numbers and the fixes, in the words hqlora validate uses', async () => {
    const text = 'model: models/llama-7b\ndata:\n  train: data/three.jsonl\n  source_max_len: 6000\n  target_max_len: 256\n';
    const { seqLen } = await open(text);
    assert.equal(seqLen.length, 1);
    const d = seqLen[0]!;
    assert.equal(d.severity, 2);
    assert.equal(d.range.start.line, 3, 'on the source_max_len key');
    const configJson = path.join(ws.dir, 'models', 'llama-7b', 'config.json');
    assert.ok(d.message.startsWith(`source_max_len + target_max_len = 6256 exceeds the model's max_position_embeddings 4096 (${configJson}): ` +
      'the trainer cuts every example at 4096 tokens and trains none past it; '), d.message);
    assert.match(d.message, /lower source_max_len \/ target_max_len to a sum of at most 4096 \(e\.g\. 3840 \+ 256\)/);
    assert.ok(d.message.includes('or set max_position_embeddings to 6256 and "rope_scaling": {"rope_type": "linear", "factor": 1.5273} ' +
      "in the model's config.json (linear position interpolation"), d.message);
    const p = lengthProblem(6000, 256, modelContext(JSON.parse(modelJson('llama-7b').text) as Record<string, unknown>), configJson);
    assert.equal(d.message, `${p!.message}; ${p!.hint}`, 'the shared wording');
  });

  it('lowers the written lengths, and extends config.json with linear rope scaling; either clears the warning', async () => {
    const text = 'model: models/llama-7b\ndata:\n  train: data/three.jsonl\n  source_max_len: 6000\n  target_max_len: 256\n';
    const { uri, actions } = await open(text);
    assert.deepEqual(actions.map((a) => a.title), [
      "Lower source_max_len to 3840 (sum 4096, the model's max_position_embeddings)",
      "Extend the model's context to 6256 in its config.json (max_position_embeddings, linear rope scaling factor 1.5273)",
    ]);
    assert.equal(actions[0]!.isPreferred, true);
    const lowered = applied(actions[0]!, uri, text);
    assert.equal(lowered, text.replace('source_max_len: 6000', 'source_max_len: 3840'));
    assert.equal((await h.diagnose(uri, lowered)).filter((d) => d.code === 'seq-len').length, 0);

    const mj = modelJson('llama-7b');
    const extended = applied(actions[1]!, mj.uri, mj.text);
    const cfg = JSON.parse(extended) as Record<string, unknown>;
    assert.deepEqual(cfg, { ...LLAMA_7B, max_position_embeddings: 6256, rope_scaling: { rope_type: 'linear', factor: 1.5273 } });
    writeFileSync(mj.file, extended);
    assert.equal((await h.diagnose(uri, text)).filter((d) => d.code === 'seq-len').length, 0, 'the extended model takes 6256');
  });

  it('inserts the lowered default lengths into a flow or block mapping', async () => {
    // Defaults 1024 + 256 against 1024 positions; neither key is written.
    const text = 'model: models/short\ndata: {train: data/three.jsonl}\n';
    const { uri, seqLen, actions } = await open(text);
    assert.match(seqLen[0]!.message, /= 1280 exceeds the model's max_position_embeddings 1024/);
    assert.equal(seqLen[0]!.range.start.line, 1, 'on data, the nearest written key');
    const lowered = applied(actions[0]!, uri, text);
    assert.equal(lowered, 'model: models/short\ndata: {source_max_len: 768, train: data/three.jsonl}\n');
    assert.equal((await h.diagnose(uri, lowered)).filter((d) => d.code === 'seq-len').length, 0);
    const block = 'model: models/short\ndata:\n  train: data/three.jsonl\n';
    const b = await open(block);
    assert.equal(applied(b.actions[0]!, b.uri, block), 'model: models/short\ndata:\n  source_max_len: 768\n  train: data/three.jsonl\n');
  });

  it('raises a llama3 factor, and edits transformers-5 rope_parameters in place', async () => {
    const l3 = await open('model: models/llama3\ndata:\n  train: data/three.jsonl\n  source_max_len: 16000\n  target_max_len: 384\n');
    assert.match(l3.seqLen[0]!.message, /set max_position_embeddings to 16384 and rope_scaling\.factor from 8 to 16 in the model's config\.json \(llama3 rope scaling\)/);
    const mj = modelJson('llama3');
    const cfg = JSON.parse(applied(l3.actions[1]!, mj.uri, mj.text)) as { max_position_embeddings: number; rope_scaling: Record<string, unknown> };
    assert.equal(cfg.max_position_embeddings, 16384);
    assert.deepEqual(cfg.rope_scaling, { rope_type: 'llama3', factor: 16, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 });

    const tf5 = await open('model: models/tf5\ndata:\n  train: data/three.jsonl\n  source_max_len: 8000\n  target_max_len: 192\n');
    assert.match(tf5.seqLen[0]!.message, /rope_parameters\.rope_type "linear" with rope_parameters\.factor 2 in the model's config\.json/);
    const t5 = modelJson('tf5');
    const c5 = JSON.parse(applied(tf5.actions[1]!, t5.uri, t5.text)) as Record<string, unknown>;
    assert.equal(c5.max_position_embeddings, 8192);
    assert.deepEqual(c5.rope_parameters, { rope_type: 'linear', rope_theta: 10000, factor: 2 });
    assert.equal(c5.rope_scaling, undefined, 'rope_parameters is what the trainer reads last');
  });

  it('offers no context extension for longrope, nor for a Hugging Face cache snapshot', async () => {
    const phi = await open('model: models/phi-long\ndata:\n  train: data/three.jsonl\n  source_max_len: 5000\n');
    assert.match(phi.seqLen[0]!.message, /this model's longrope rope scaling was fitted to 4096 positions and cannot be stretched/);
    assert.deepEqual(phi.actions.map((a) => a.title), ["Lower source_max_len to 3840 (sum 4096, the model's max_position_embeddings)"]);

    // acme/tiny-llama (256 positions) lives in the cache: its snapshot's files are shared.
    const cached = await open('model: acme/tiny-llama\ndata:\n  train: data/three.jsonl\n  source_max_len: 300\n  target_max_len: 20\n');
    assert.match(cached.seqLen[0]!.message, /copy its folder and point model at the copy first/);
    assert.equal(cached.actions.length, 1);
    for (const a of cached.actions) for (const u of Object.keys(a.edit!.changes!)) assert.ok(!fileURLToPath(u).endsWith('config.json'), a.title);
  });

  it('takes sequences up to 16384 tokens, and marks a longer sum (or one key above it) as an error', async () => {
    // llama3 has 8192 positions x factor room, so only the 16384 limit is in play at 16384 and above.
    const uri = (): string => fileUri(path.join(ws.dir, `m${n++}.hqlora.yaml`));
    const at = async (src: number, tgt: number): Promise<Diagnostic[]> => (await h.diagnose(uri(),
      `model: models/llama3\ndata:\n  train: data/three.jsonl\n  source_max_len: ${src}\n  target_max_len: ${tgt}\n`))
      .filter((d) => d.severity === 1);
    assert.deepEqual(await at(16000, 384), []);
    const over = await at(16000, 385);
    assert.deepEqual(over.map((d) => d.code), ['seq-len-max']);
    assert.match(over[0]!.message, /source_max_len \+ target_max_len = 16385 exceeds 16384, the longest sequence hqlora trains; lower .* \(e\.g\. 15999 \+ 385\)/);
    const key = await at(20000, 16);
    assert.ok(key.some((d) => /16384/.test(d.message) && d.code !== 'seq-len-max'), JSON.stringify(key));
  });
});
