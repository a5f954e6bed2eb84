// data.test.ts — data preparation: QLoRA templates, masking, truncation, the .hqtok layout, error locations,
// caching, cancellation, and the committed fixtures against their generators.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { HqError } from '../../extension/core/errors';
import { ALPACA_PROMPT_INPUT, ALPACA_PROMPT_NO_INPUT, type Example, alpacaPrompt, readExamples } from '../../extension/data/formats';
import { buildExample, holdoutIndices, prepareData, type DataSettings } from '../../extension/data/prepare';
import { decodeTokenFile, encodeTokenFile, readTokenFile } from '../../extension/data/tokenfile';
import { type ModelTokenizer, loadTokenizer } from '../../extension/data/tokenizer';

const ROOT = process.cwd(); // the test runner runs from the repository root
const MODEL = path.join(ROOT, 'test/fixtures/models/tiny-llama');
const DATA = path.join(ROOT, 'test/fixtures/data');
// Fixture tokenizer ids (test/fixtures/generate.mjs): <pad>=0 <s>=1 </s>=2 <unk>=3, '\n'=4, ' '..'~' = 5..99.
const ch = (c: string): number => (c === '\n' ? 4 : c.charCodeAt(0) - 0x20 + 5);
const chars = (s: string): number[] => Array.from(s, ch);

let tmp: string;
let tok: ModelTokenizer;
before(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), 'hqlora-data-test-'));
  tok = await loadTokenizer(MODEL);
});
after(() => rmSync(tmp, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const f = path.join(tmp, name);
  writeFileSync(f, text);
  return f;
}

/** [source, target, line] of pair examples (fails on a chat example). */
function pairs(examples: Example[]): [string, string, number][] {
  return examples.map((e) => {
    assert.equal(e.kind, 'pair');
    return e.kind === 'pair' ? [e.source, e.target, e.line] : ['', '', 0];
  });
}

async function rejectsAt(p: Promise<unknown>, file: string, line: number, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof HqError, `expected HqError, got ${String(err)}`);
    assert.equal(err.where.file, file);
    assert.equal(err.where.line, line);
    assert.match(err.message, message);
    assert.ok(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${line}(:\\d+)?: `).test(err.format()), err.format());
    return true;
  });
}

describe('QLoRA Alpaca templates', () => {
  it('are the exact qlora.py strings, with the trailing space after "### Response:"', () => {
    assert.equal(alpacaPrompt('Add.', '1 2'),
      'Below is an instruction that describes a task, paired with an input that provides further context. ' +
      'Write a response that appropriately completes the request.\n\n### Instruction:\nAdd.\n\n### Input:\n1 2\n\n### Response: ');
    assert.equal(alpacaPrompt('Say hi.', ''),
      'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n' +
      '### Instruction:\nSay hi.\n\n### Response: ');
    assert.ok(ALPACA_PROMPT_INPUT.endsWith('### Response: ') && ALPACA_PROMPT_NO_INPUT.endsWith('### Response: '));
  });

  it('keeps $ sequences in user text literal', () => {
    assert.ok(alpacaPrompt("$& $' $1", '').includes("\n$& $' $1\n"));
  });
});

describe('fixture tokenizer', () => {
  it('loads with its special ids and the model vocab size', () => {
    assert.deepEqual([tok.vocabSize, tok.bosId, tok.eosId, tok.padId], [105, 1, 2, 0]);
    assert.match(tok.sha256, /^[0-9a-f]{64}$/);
  });

  it('encodes characters one by one and the template pieces as single tokens, without special tokens', () => {
    assert.deepEqual(tok.encode('ab =>'), chars('ab =>'));
    assert.deepEqual(tok.encode(alpacaPrompt('Go.', 'x')), [100, 102, ...chars('Go.'), 103, ch('x'), 104]);
    assert.deepEqual(tok.encode(''), []);
  });
});

describe('masking and truncation', () => {
  const s = { sourceMaxLen: 64, targetMaxLen: 64, trainOnSource: false };

  it('is BOS + source (mask 0) then target + EOS (mask 1)', () => {
    const ex = buildExample(tok, { source: 'ab =>', target: ' bc' }, s);
    assert.deepEqual(ex.ids, [1, ...chars('ab =>'), ...chars(' bc'), 2]);
    assert.deepEqual(ex.mask, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
    assert.equal(ex.truncatedSource || ex.truncatedTarget, false);
  });

  it('trains on the source too when trainOnSource', () => {
    const ex = buildExample(tok, { source: 'ab', target: 'c' }, { ...s, trainOnSource: true });
    assert.deepEqual(ex.mask, [1, 1, 1, 1, 1]);
  });

  it('truncates source and target separately, keeping the first tokens (a cut target loses its EOS)', () => {
    const ex = buildExample(tok, { source: 'abcdef', target: 'uvwxyz' }, { ...s, sourceMaxLen: 3, targetMaxLen: 4 });
    assert.deepEqual(ex.ids, [1, ch('a'), ch('b'), ...chars('uvwx')]);
    assert.deepEqual(ex.mask, [0, 0, 0, 1, 1, 1, 1]);
    assert.equal(ex.truncatedSource, true);
    assert.equal(ex.truncatedTarget, true);
    const exact = buildExample(tok, { source: 'ab', target: 'uvw' }, { ...s, sourceMaxLen: 3, targetMaxLen: 4 });
    assert.deepEqual(exact.ids, [1, ch('a'), ch('b'), ...chars('uvw'), 2]);
    assert.equal(exact.truncatedSource || exact.truncatedTarget, false);
  });

  it('text records are all target after BOS', () => {
    const ex = buildExample(tok, { source: '', target: 'hi' }, s);
    assert.deepEqual(ex.ids, [1, ch('h'), ch('i'), 2]);
    assert.deepEqual(ex.mask, [0, 1, 1, 1]);
  });
});

describe('.hqtok layout', () => {
  const header = { format: 'hqtok' as const, version: 1 as const, vocab_size: 105, bos_id: 1, eos_id: 2, pad_id: 0,
    tokenizer_sha256: 'ab'.repeat(32), source: { files: ['/d/t.jsonl'], format: 'completion' }, created_by: 'test' };
  // Two examples: [1, 70, 2] (mask 0 1 1) and [1, 71] (mask 0 1): 5 tokens.
  const data = { offsets: [0, 3, 5], ids: Uint32Array.from([1, 70, 2, 1, 71]), mask: Uint8Array.from([0, 1, 1, 0, 1]) };

  it('matches the hand-computed bytes of a 2-example file', () => {
    const json = '{"format":"hqtok","version":1,"n_examples":2,"n_tokens":5,"vocab_size":105,"bos_id":1,"eos_id":2,' +
      `"pad_id":0,"tokenizer_sha256":"${'ab'.repeat(32)}","source":{"files":["/d/t.jsonl"],"format":"completion"},` +
      '"created_by":"test"}';
    const H = json.length; // 270 bytes of ASCII
    assert.equal(H, 270);
    const P = 288; // 16 + 270 = 286, padded with 2 spaces to 288
    const expected = Buffer.concat([
      Buffer.from([0x48, 0x51, 0x54, 0x4f, 0x4b, 0x00, 0x00, 0x01]),
      Buffer.from([1, 0, 0, 0]), // version u32
      Buffer.from([H & 0xff, H >> 8, 0, 0]), // H u32
      Buffer.from(json, 'ascii'),
      Buffer.from('  ', 'ascii'),
      // offsets u64 x 3
      Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]),
      // ids u32 x 5
      Buffer.from([1, 0, 0, 0, 70, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 71, 0, 0, 0]),
      Buffer.from([0, 1, 1, 0, 1]), // mask
      Buffer.from([0, 0, 0, 0, 0, 0, 0]), // P + 24 + 20 + 5 = 337 -> padded with zeros to 344
    ]);
    assert.equal(expected.length, P + 56);
    const bytes = encodeTokenFile(header, data);
    assert.ok(bytes.equals(expected), 'encoded bytes differ from the hand-computed layout');
    const back = decodeTokenFile(bytes);
    assert.deepEqual(back.offsets, [0, 3, 5]);
    assert.deepEqual([...back.ids], [1, 70, 2, 1, 71]);
    assert.deepEqual([...back.mask], [0, 1, 1, 0, 1]);
    assert.equal(back.header.n_examples, 2);
    assert.equal(back.header.n_tokens, 5);
  });

  it('rejects ids at or above vocab_size and damaged files', () => {
    assert.throws(() => encodeTokenFile({ ...header, vocab_size: 71 }, data), /not below vocab_size 71/);
    const bytes = encodeTokenFile(header, data);
    assert.throws(() => decodeTokenFile(bytes.subarray(0, bytes.length - 8)), /requires exactly 344/);
    const bad = Buffer.from(bytes);
    bad[0] = 0x58;
    assert.throws(() => decodeTokenFile(bad), /bad magic/);
  });
});

describe('dataset reading', () => {
  it('names file:line for invalid JSON in a .jsonl file (blank lines still count)', async () => {
    const f = write('bad.jsonl', '{"prompt":"a","completion":"b"}\n\n{"prompt": "a", completion}\n');
    await rejectsAt(readExamples(f), f, 3, /invalid JSON/);
  });

  it('names file:line for a missing field', async () => {
    const f = write('missing.jsonl', '{"instruction":"a","output":"b"}\n{"instruction":"c","input":"d"}\n');
    await rejectsAt(readExamples(f), f, 2, /missing `output`/);
  });

  it('names file:line for a field of the wrong type', async () => {
    const f = write('type.jsonl', '{"text":"a"}\n{"text":7}\n');
    await rejectsAt(readExamples(f), f, 2, /`text` must be a string, got number/);
  });

  it('gives JSON array records the line they start on', async () => {
    const f = write('arr.json', '[\n  {"input": "a", "output": "b"},\n  {"input": "c",\n   "output": "d"},\n  {"input": 1, "output": "e"}\n]\n');
    await rejectsAt(readExamples(f), f, 5, /`input` must be a string/);
    const broken = write('broken.json', '[\n  {"input": "a", "output": "b"},\n  {"input": "c" "output": "d"}\n]\n');
    await rejectsAt(readExamples(broken), broken, 3, /invalid JSON/);
    const ok = write('arr2.json', '[{"input": "a", "output": "b"},\n {"input": "c", "output": "d"}]');
    const r = await readExamples(ok);
    assert.equal(r.format, 'completion');
    assert.deepEqual(pairs(r.examples), [['a', 'b', 1], ['c', 'd', 2]]);
  });

  it('detects alpaca, completion and text, and reads .txt paragraphs', async () => {
    const a = await readExamples(write('a.jsonl', '{"instruction":"I","input":"","output":"O"}\n'));
    assert.deepEqual([a.format, ...pairs(a.examples)[0]!.slice(0, 2)], ['alpaca', alpacaPrompt('I', ''), 'O']);
    const t = await readExamples(write('t.txt', 'line one\nline two\n\n\nsecond\r\n'));
    assert.equal(t.format, 'text');
    assert.deepEqual(pairs(t.examples), [['', 'line one\nline two', 1], ['', 'second', 5]]);
    const f = write('odd.jsonl', '{"foo":1}\n');
    await rejectsAt(readExamples(f), f, 1, /cannot tell the record format/);
  });
});

describe('prepareData', () => {
  const settings = (over: Partial<DataSettings> = {}): DataSettings => ({
    train: path.join(DATA, 'train.completion.jsonl'), eval: path.join(DATA, 'eval.completion.jsonl'),
    format: 'auto', sourceMaxLen: 64, targetMaxLen: 16, trainOnSource: false, ...over,
  });

  it('writes train/eval token files and stats, then serves them from the cache', async () => {
    const out = path.join(tmp, 'prep');
    const phases = new Set<string>();
    const r = await prepareData(MODEL, settings(), out, { onProgress: (p) => phases.add(p.phase) });
    assert.equal(r.cached, false);
    assert.deepEqual([...phases].sort(), ['read', 'tokenize', 'write']);
    const train = await readTokenFile(r.trainTokens);
    assert.equal(train.header.n_examples, 2000);
    assert.equal(train.header.source.format, 'completion');
    // First training record: {"prompt":"ythxi =>","completion":" zuiyj"}.
    const first = [...train.ids.subarray(train.offsets[0], train.offsets[1])];
    assert.deepEqual(first, [1, ...chars('ythxi =>'), ...chars(' zuiyj'), 2]);
    assert.deepEqual([...train.mask.subarray(0, 16)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]);
    assert.equal(r.stats.train.tokens, 2000 * 16);
    assert.equal(r.stats.train.target_tokens, 2000 * 7);
    assert.equal(r.stats.train.truncated, 0);
    assert.deepEqual(r.stats.train.length_histogram, { '9-16': 2000 });
    assert.equal(r.stats.eval?.examples, 200);
    assert.equal((await readTokenFile(r.evalTokens!)).header.n_examples, 200);
    const onDisk = JSON.parse(readFileSync(path.join(out, 'stats.json'), 'utf8')) as { cache_key: string };
    assert.equal(onDisk.cache_key, r.stats.cache_key);

    const again = await prepareData(MODEL, settings(), out);
    assert.equal(again.cached, true);
    assert.deepEqual(again.stats, r.stats);
    const changed = await prepareData(MODEL, settings({ targetMaxLen: 4 }), out);
    assert.equal(changed.cached, false);
    assert.equal(changed.stats.train.truncated_target, 2000);
  });

  it('re-tokenizes when a data file changes', async () => {
    const f = write('small.jsonl', '{"prompt":"ab =>","completion":" bc"}\n');
    const out = path.join(tmp, 'prep-small');
    const s = settings({ train: f, eval: undefined });
    assert.equal((await prepareData(MODEL, s, out)).cached, false);
    assert.equal((await prepareData(MODEL, s, out)).cached, true);
    writeFileSync(f, '{"prompt":"ab =>","completion":" bd"}\n');
    const r = await prepareData(MODEL, s, out);
    assert.equal(r.cached, false);
    assert.equal(r.evalTokens, undefined);
    assert.deepEqual(readdirSync(out).sort(), ['stats.json', 'train.hqtok']);
  });

  it('holds out a seeded, reproducible eval split when there is no eval file', async () => {
    const r = await prepareData(MODEL, settings({ eval: undefined, evalHoldout: 10, seed: 3 }), path.join(tmp, 'hold'));
    assert.equal(r.stats.train.examples, 1990);
    assert.equal(r.stats.eval?.examples, 10);
    assert.equal(r.stats.eval_source, 'holdout');
    assert.deepEqual([...holdoutIndices(2000, 10, 3)], [...holdoutIndices(2000, 10, 3)]);
    assert.notDeepEqual([...holdoutIndices(2000, 10, 3)], [...holdoutIndices(2000, 10, 4)]);
  });

  it('stops on abort with a clear error and leaves no token file behind', async () => {
    const out = path.join(tmp, 'abort');
    const ac = new AbortController();
    await assert.rejects(
      prepareData(MODEL, settings(), out, {
        signal: ac.signal,
        onProgress: (p) => { if (p.phase === 'tokenize' && p.done > 0) ac.abort(); },
      }),
      (err: unknown) => err instanceof HqError && /cancelled/.test(err.message),
    );
    const left = readdirSync(tmp).includes('abort') ? readdirSync(out) : [];
    assert.deepEqual(left, []);
    const pre = new AbortController();
    pre.abort();
    await assert.rejects(prepareData(MODEL, settings(), out, { signal: pre.signal }), /cancelled/);
  });

  it('reports data errors with file:line', async () => {
    const f = write('broken.jsonl', '{"instruction":"a","output":"b"}\n{"instruction":"a","output":"b"\n');
    await rejectsAt(prepareData(MODEL, settings({ train: f, eval: undefined }), path.join(tmp, 'broken')), f, 2, /invalid JSON/);
  });
});

describe('committed fixtures', () => {
  for (const script of ['generate.mjs', 'make-data.mjs']) {
    it(`equal the output of test/fixtures/${script}`, () => {
      const r = spawnSync(process.execPath, [path.join(ROOT, 'test/fixtures', script), '--check'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr + r.stdout);
    });
  }
});
