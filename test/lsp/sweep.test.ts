// sweep.test.ts — the language server on sweep files (*.hqsweep.yaml), over an in-process LSP connection: the
// fixture sweep is clean; an unknown axis key, a split off total_rank and a missing dataset are each an error on
// their own line, with the hint; a sweep file gets no run-config completion.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { CompletionItem } from 'vscode-languageserver';

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

  it('no run-config completion in a sweep file', async () => {
    const u = uri();
    await h.diagnose(u, SWEEP);
    const items = await h.request<CompletionItem[]>('textDocument/completion', { textDocument: { uri: u }, position: { line: 9, character: 0 } });
    assert.deepEqual(items, []);
  });
});
