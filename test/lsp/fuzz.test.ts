// fuzz.test.ts — property/fuzz test of the language server in-process (fast-check): generated and mutated configs
// (random YAML, deep nesting, huge strings, binary junk, wrong types at every schema path, mutations of the demo
// config, hostile paths such as /dev/stdin) go through the real JSON-RPC connection. For every document: the
// diagnostics arrive within the time bound (no hang), the server never reports an internal error (no crash inside a
// check), every diagnostic has a valid range, and an invalid config gets at least one error. Every 25th document
// also gets completion, hover and symbols requests, which must answer.
// HQLORA_FUZZ_RUNS sets the number of documents (default 10,000); HQLORA_FUZZ_SEED replays a failure.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import fc from 'fast-check';
import { type Diagnostic, DiagnosticSeverity } from 'vscode-languageserver';
import { TextDocument } from 'vscode-languageserver-textdocument';
import { parseDocument, stringify } from 'yaml';

import { validateRunConfig } from '../../extension/core/schemas';
import { FIXTURES } from './fixtures';
import { LspHarness, fileUri } from './harness';

const RUNS = Number(process.env.HQLORA_FUZZ_RUNS ?? 10000);
const SEED = process.env.HQLORA_FUZZ_SEED ? Number(process.env.HQLORA_FUZZ_SEED) : undefined;
const PER_DOC_MS = 15000; // "no hang": typical documents take milliseconds; the bound leaves room for a loaded 2-core CI machine
const DEMO = readFileSync(path.join(FIXTURES, 'demo.hqlora.yaml'), 'utf8');
const DEMO_VALUE = parseDocument(DEMO).toJS() as Record<string, unknown>;

const PATHS = [
  '/', '.', '..', '~', '~/x', '/dev/null', '/dev/zero', '/dev/stdin', '/proc/self/fd/0', '/proc', '/etc/passwd', 'models/tiny-llama',
  'models/tiny-gemma', 'data', 'data/train.completion.jsonl', 'data/train.alpaca.jsonl', 'acme/tiny-llama', 'org/name', '', ' ', '\0', 'C:\\x',
];
const KEY_PATHS: string[][] = [
  ['model'], ['model', 'path'], ['model', 'revision'], ['quantization', 'type'], ['quantization', 'blocksize'], ['quantization', 'compute_dtype'],
  ['adapter', 'target_modules'], ['adapter', 'levels'], ['adapter', 'ranks'], ['adapter', 'alpha'], ['adapter', 'dropout'],
  ['data', 'train'], ['data', 'eval'], ['data', 'format'], ['data', 'source_max_len'], ['training', 'max_steps'], ['training', 'epochs'],
  ['training', 'micro_batch_size'], ['training', 'gradient_accumulation_steps'], ['training', 'learning_rate'], ['training', 'warmup_steps'],
  ['eval', 'every_steps'], ['checkpoints', 'every_steps'], ['output', 'dir'], ['hardware', 'device'], ['hardware', 'gpu_ids'], ['zzz'],
];

const yamlish = fc.string({ unit: fc.constantFrom(...'ab:-[]{},#&*!|>\'"%@` \n\t\r?=~0123456789.\\'.split('')), maxLength: 300 });
const junk = fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b).toString('latin1'));
const deep = fc.tuple(fc.integer({ min: 1, max: 5000 }), fc.constantFrom('[', '{a: ', '- ', 'a:\n ')).map(([n, s]) =>
  s === 'a:\n ' ? Array.from({ length: Math.min(n, 700) }, (_, i) => `${' '.repeat(i)}a:`).join('\n') : s.repeat(n));
const huge = fc.tuple(fc.constantFrom('model: ', 'data:\n  train: ', '# ', 'x: "', 'adapter:\n  ranks: ['), fc.integer({ min: 1000, max: 200_000 }), fc.constantFrom('x', '9, ', 'é', '\u{1F600}'))
  .map(([k, n, c]) => k + c.repeat(Math.ceil(n / c.length)));
const wrongTypes = fc.array(fc.tuple(fc.constantFrom(...KEY_PATHS), fc.oneof(fc.anything({ maxDepth: 3 }), fc.constantFrom(...PATHS), fc.integer(), fc.double())), { maxLength: 8 })
  .chain((sets) => fc.boolean().map((json) => {
    const cfg = structuredClone(DEMO_VALUE);
    for (const [p, v] of sets) {
      let cur = cfg;
      for (const k of p.slice(0, -1)) {
        if (!cur[k] || typeof cur[k] !== 'object') cur[k] = {};
        cur = cur[k] as Record<string, unknown>;
      }
      cur[p[p.length - 1]!] = v;
    }
    try {
      return json ? JSON.stringify(cfg, null, 2) ?? '' : stringify(cfg);
    } catch {
      return '';
    }
  }));
const mutated = fc.array(fc.tuple(fc.nat(), fc.nat({ max: 40 }), fc.oneof(yamlish, junk, fc.constantFrom(...PATHS), fc.constant('\n'))), { minLength: 1, maxLength: 6 })
  .map((edits) => edits.reduce((t, [at, del, ins]) => {
    const i = at % (t.length + 1);
    return t.slice(0, i) + ins + t.slice(i + del);
  }, DEMO));
const docs = fc.oneof(
  { arbitrary: mutated, weight: 5 }, { arbitrary: wrongTypes, weight: 5 }, { arbitrary: yamlish, weight: 3 },
  { arbitrary: junk, weight: 2 }, { arbitrary: deep, weight: 1 }, { arbitrary: huge, weight: 1 },
);

function checkRanges(text: string, diags: Diagnostic[]): void {
  const td = TextDocument.create('file:///x', 'hqlora-config', 1, text);
  for (const d of diags) {
    for (const p of [d.range.start, d.range.end]) {
      assert.ok(Number.isInteger(p.line) && Number.isInteger(p.character) && p.line >= 0 && p.character >= 0, JSON.stringify(d));
      assert.ok(p.line < td.lineCount, `line ${p.line} >= ${td.lineCount}: ${d.message}`);
      assert.deepEqual(td.positionAt(td.offsetAt(p)), p, `position outside its line: ${JSON.stringify(p)} ${d.message}`);
    }
    assert.ok(td.offsetAt(d.range.start) <= td.offsetAt(d.range.end), `start after end: ${JSON.stringify(d.range)}`);
    assert.ok(typeof d.message === 'string' && d.message.length > 0);
  }
}

/** Whether the server should find no error: parses and validates like the server (which refuses over 64 KiB). */
function isValidConfig(text: string): boolean {
  if (text.length > 64 * 1024) return false;
  try {
    const doc = parseDocument(text, { uniqueKeys: true, strict: false, logLevel: 'error' });
    if (doc.errors.length) return false;
    return validateRunConfig(doc.toJS({ maxAliasCount: 100 }));
  } catch {
    return false;
  }
}

describe('lsp fuzz', () => {
  let h: LspHarness;
  before(async () => {
    h = await LspHarness.start({ debounce: { minMs: 0, maxMs: 0 } });
  });
  after(() => h.stop());

  it(`survives ${RUNS} generated and mutated configs with a diagnostic, a valid range and no internal error for every problem`, async () => {
    const uri = fileUri(path.join(FIXTURES, 'fuzz.hqlora.yaml'));
    await h.open(uri, '');
    await h.diagnostics(uri, 1);
    let count = 0;
    let slowest = 0;
    const t0 = Date.now();
    await fc.assert(fc.asyncProperty(docs, fc.nat(), async (text, where) => {
      count++;
      const started = Date.now();
      const version = await h.change(uri, text);
      const diags = await h.diagnostics(uri, version, PER_DOC_MS);
      slowest = Math.max(slowest, Date.now() - started);
      checkRanges(text, diags);
      const internal = diags.filter((d) => d.code === 'internal-error');
      assert.deepEqual(internal.map((d) => d.message), []);
      // Every problem is a diagnostic: a document without an error diagnostic must be a valid config (checked only
      // then, so the independent parse runs once per error-free document).
      if (!diags.some((d) => d.severity === DiagnosticSeverity.Error)) assert.ok(isValidConfig(text), 'an invalid config has an error diagnostic');
      if (count % 25 === 0) {
        const td = TextDocument.create(uri, 'hqlora-config', 1, text);
        const position = td.positionAt(where % (text.length + 1));
        await h.request('textDocument/completion', { textDocument: { uri }, position });
        await h.request('textDocument/hover', { textDocument: { uri }, position });
        await h.request('textDocument/documentSymbol', { textDocument: { uri } });
      }
    }), { numRuns: RUNS, ...(SEED !== undefined ? { seed: SEED } : {}) });
    console.log(`fuzz: ${count} documents in ${((Date.now() - t0) / 1000).toFixed(1)} s, slowest ${slowest} ms`);
    assert.ok(slowest < PER_DOC_MS);
  });
});
