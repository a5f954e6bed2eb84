// sweep.test.ts — the language server on sweep files (*.hqsweep.yaml), over an in-process LSP connection: the
// fixture sweep is clean; an unknown axis key, a split off total_rank and a missing dataset are each an error on
// their own line, with the hint; completion and hover come from the sweep schema (keys, axis keys with the run
// config's dotted paths, the paper's rank splits, enum/const values), never the run config's top-level keys.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { CompletionItem, Hover } from 'vscode-languageserver';

import { FIXTURES } from './fixtures';
import { LspHarness, fileUri } from './harness';

const SWEEP = readFileSync(path.join(FIXTURES, 'sweep.hqsweep.yaml'), 'utf8');

describe('lsp sweep files', () => {
  let h: LspHarness;
  let n = 0;
  const uri = (): string => fileUri(path.join(FIXTURES, `t${n++}.hqsweep.yaml`));
  before(async () => {
    h = await LspHarness.start();
  });
  after(() => h.stop());

  it('the fixture sweep has no diagnostics', async () => {
    assert.deepEqual(await h.diagnose(uri(), SWEEP), []);
  });

  it('an unknown axis key, a split off total_rank and a missing dataset, each at its line with the hint', async () => {
    const text = SWEEP.replace('    - [16, 4, 4, 4, 4]', '    - [16, 4, 4, 4]\n  training.learnin_rate: [0.001]')
      .replace('train: data/train.alpaca.jsonl', 'train: data/nope.jsonl');
    const lines = text.split('\n');
    const lineOf = (s: string): number => lines.findIndex((l) => l.includes(s));
    const diags = await h.diagnose(uri(), text);
    const key = diags.find((d) => d.message.includes('unknown axis key "training.learnin_rate"'));
    assert.ok(key, JSON.stringify(diags.map((d) => d.message)));
    assert.equal(key.range.start.line, lineOf('training.learnin_rate'));
    assert.match(key.message, /did you mean "training\.learning_rate"/);
    // The unknown key stops the expansion (its cells would only repeat it); fixed, the other two show.
    const rest = await h.diagnose(uri(), text.replace('training.learnin_rate', 'training.learning_rate'));
    const split = rest.find((d) => d.message.includes('adds up to 28'));
    assert.ok(split, JSON.stringify(rest.map((d) => d.message)));
    assert.equal(split.range.start.line, lineOf('[16, 4, 4, 4]'));
    const data = rest.find((d) => d.message.includes('training data of dataset "alpaca" not found'));
    assert.ok(data, JSON.stringify(rest.map((d) => d.message)));
    assert.equal(data.range.start.line, lineOf('nope.jsonl'));
  });

  /** Completion labels at the end of line `line` of `text` (opened as a sweep file). */
  async function labels(text: string, line: number): Promise<string[]> {
    const u = uri();
    await h.diagnose(u, text);
    const character = text.split('\n')[line]!.length;
    const items = await h.request<CompletionItem[]>('textDocument/completion', { textDocument: { uri: u }, position: { line, character } });
    return items.map((i) => i.label);
  }
  const insertAfter = (after: string, line: string): { text: string; line: number } => {
    const lines = SWEEP.split('\n');
    const i = lines.findIndex((l) => l === after);
    assert.ok(i >= 0, after);
    lines.splice(i + 1, 0, line);
    return { text: lines.join('\n'), line: i + 1 };
  };

  it('completes the sweep\'s own top-level keys (not those written, not the run config\'s)', async () => {
    const t = `${SWEEP.trimEnd()}\n`;
    const got = await labels(t, t.split('\n').length - 1);
    for (const k of ['name', 'parallel', 'cells']) assert.ok(got.includes(k), `${k} in ${got.join(',')}`);
    for (const k of ['base', 'axes', 'training', 'model', '$schema']) assert.ok(!got.includes(k), `${k} not in ${got.join(',')}`);
  });

  it('completes axis keys: seed and every scalar run-config path, the written ones left out', async () => {
    const { text, line } = insertAfter('axes:', '  ');
    const got = await labels(text, line);
    for (const k of ['seed', 'training.learning_rate', 'adapter.alpha', 'data.format']) assert.ok(got.includes(k), `${k} in ${got.slice(0, 40).join(',')}`);
    for (const k of ['adapter.ranks', 'data', 'base', 'training']) assert.ok(!got.includes(k), `${k} not in the axis keys`);
  });

  it('completes the paper\'s rank splits as adapter.ranks items and as the baseline', async () => {
    const item = insertAfter('  adapter.ranks:', '    - ');
    assert.deepEqual(await labels(item.text, item.line), ['[64]', '[32, 32]', '[32, 16, 16]', '[32, 8, 8, 8, 8]']);
    const base = SWEEP.replace('baseline: "32"', 'baseline: ');
    assert.deepEqual(await labels(base, base.split('\n').findIndex((l) => l === 'baseline: ')), ['"64"', '"32,32"', '"32,16,16"', '"32,8,8,8,8"']);
  });

  it('completes enum and const values (parallel: auto)', async () => {
    const t = `${SWEEP.trimEnd()}\nparallel: `;
    assert.ok((await labels(t, t.split('\n').length - 1)).includes('auto'));
  });

  it('hovers a sweep key with the sweep schema\'s docs, an axis path with the run config\'s', async () => {
    const { text } = insertAfter('  data:', '');
    const t = text.replace('axes:\n', 'axes:\n  training.learning_rate: [0.001, 0.002]\n');
    const u = uri();
    await h.diagnose(u, t);
    const lines = t.split('\n');
    const at = async (key: string): Promise<string> => {
      const line = lines.findIndex((l) => l.trimStart().startsWith(key));
      const hv = await h.request<Hover | null>('textDocument/hover', { textDocument: { uri: u }, position: { line, character: lines[line]!.indexOf(key) + 1 } });
      return hv && typeof hv.contents === 'object' && 'value' in hv.contents ? hv.contents.value : '';
    };
    assert.match(await at('total_rank'), /\*\*total_rank\*\*[\s\S]*every rank split must add up to this total/);
    assert.match(await at('training.learning_rate'), /\*\*training\.learning_rate\*\*[\s\S]*Peak AdamW learning rate/);
    assert.match(await at('adapter.ranks'), /Rank splits, coarse to fine/);
  });
});
