// eval.test.ts — the multiple-choice readers and prompts (extension/eval/*): the prompt text and token ids the
// golden letter-logit test scores (test/golden/mcq-tiny-llama.json, made with transformers by
// test/reference/make_mcq_golden.py), RFC-4180 CSV quoting, malformed rows with file:line errors, k-shot prompt
// exactness, the .hqmcq layout, the eval table, and the committed fixture sets against their generator.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { EvalResultEvent, McqEvent } from '../../schemas/generated/trainer-events';
import { type ModelTokenizer, loadTokenizer } from '../../extension/data/tokenizer';
import { parseCsv } from '../../extension/eval/csv';
import { HQMCQ_MAGIC, decodeMcqFile, encodeMcqFile, letterIds, tokenizeMcq } from '../../extension/eval/mcqfile';
import { type Question, buildPrompt, formatExample, loadMcq, parseHendrycksCsv, promptHeader, readQloraMcq } from '../../extension/eval/mmlu';
import { evalMarkdown, formatMcqLine } from '../../extension/eval/table';
import { HqError } from '../../extension/core/errors';

const ROOT = process.cwd(); // the test runner runs from the repository root
const MODEL = path.join(ROOT, 'test/fixtures/models/tiny-llama');
const MCQ = path.join(ROOT, 'test/fixtures/mcq');

interface GoldenPrompt { subject: string; text: string; ids: number[]; answer: number }
interface Golden { letters: string[]; letter_ids: number[]; bos_id: number; prompts: GoldenPrompt[] }
const golden = JSON.parse(readFileSync(path.join(ROOT, 'test/golden/mcq-tiny-llama.json'), 'utf8')) as Golden;

let tmp: string;
let tok: ModelTokenizer;
before(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), 'hqlora-eval-test-'));
  tok = await loadTokenizer(MODEL);
});
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Throws-assertion for an HqError at file:line whose message matches `msg`. */
function assertRowError(fn: () => unknown, file: string, line: number, msg: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof HqError, String(e));
    assert.equal(e.where.file, file);
    assert.equal(e.where.line, line);
    assert.match(e.message, msg);
    assert.ok(e.format().includes(`${file}:${line}`), e.format());
    assert.ok(e.hint.length > 0);
    return true;
  });
}

describe('prompts and ids vs the transformers golden', () => {
  // The golden's question list (make_mcq_golden.py QUESTIONS): the first row of a subject is its 1-shot example.
  const rows: [string, string, string[], number][] = [
    ['next_letter', "Which letter follows 'c'?", ['d', 'q', 'b', 'x'], 0],
    ['next_letter', "Which letter follows 'y'?", ['a', 'x', 'z', 'm'], 2],
    ['previous_letter', 'Which letter precedes "k"?', ['l', 'j', 'k', 'e'], 1],
    ['previous_letter', "Which letter precedes 'a', the first?", ['b', 'a', 'y', 'z'], 3],
    ['word_shift', "Shift each letter of 'cab' by one, z wraps to a.", ['dbc', 'dbb', 'ebc', 'cab'], 0],
  ];
  const q = ([subject, question, choices, answer]: (typeof rows)[number]): Question => ({ subject, question, choices, answer, file: 'g', line: 1 });

  it('builds exactly the golden prompt texts (0-shot for a subject\'s first question, 1-shot after it)', () => {
    assert.equal(golden.prompts.length, rows.length);
    const first = new Map<string, Question>();
    rows.forEach((r, i) => {
      const question = q(r);
      const shot = first.get(question.subject);
      if (!shot) first.set(question.subject, question);
      const text = buildPrompt(question.subject, shot ? [shot] : [], question);
      assert.equal(text, golden.prompts[i]!.text, `prompt ${i}`);
      assert.equal(golden.prompts[i]!.answer, question.answer);
      assert.equal(golden.prompts[i]!.subject, question.subject);
    });
  });

  it('tokenizes them to the golden ids (BOS + ids without special tokens) and the golden letter ids', () => {
    assert.deepEqual(letterIds(tok), golden.letter_ids);
    assert.equal(tok.bosId, golden.bos_id);
    for (const [i, p] of golden.prompts.entries()) assert.deepEqual([tok.bosId, ...tok.encode(p.text)], p.ids, `prompt ${i}`);
  });

  it('tokenizeMcq writes the golden ids into an .hqmcq that decodes to the same prompts', () => {
    const items = golden.prompts.map((p, i) => ({ subject: p.subject, answer: p.answer, file: 'g', line: i + 1, maxShots: 0, prompt: () => p.text }));
    const subjects = [...new Set(golden.prompts.map((p) => p.subject))].sort();
    const t = tokenizeMcq(tok, { layout: 'qlora', subjects, items, files: ['g'], shots: null }, { maxLen: 256, shots: 0 });
    assert.equal(t.tooLong, 0);
    assert.equal(t.reducedShots, 0);
    const buf = encodeMcqFile(t.data);
    assert.ok(buf.subarray(0, 8).equals(HQMCQ_MAGIC));
    assert.equal(buf.length % 8, 0);
    const d = decodeMcqFile(buf, 'x.hqmcq');
    assert.deepEqual(d.prompts, golden.prompts.map((p) => p.ids));
    assert.deepEqual(d.answers, golden.prompts.map((p) => p.answer));
    assert.deepEqual(d.subjects, golden.prompts.map((p) => subjects.indexOf(p.subject)));
    assert.deepEqual(d.header.choice_ids, golden.letter_ids);
    assert.equal(d.header.n_tokens, golden.prompts.reduce((s, p) => s + p.ids.length, 0));
    assert.equal(d.header.vocab_size, 105);
  });
});

describe('CSV', () => {
  it('handles quoted commas, doubled quotes, newlines in quotes, CRLF, a BOM and blank lines', () => {
    const text = '\ufeffplain,"a, b","say ""hi""",x\r\n\r\n"two\nlines",,"",last\n';
    assert.deepEqual(parseCsv(text, 'f.csv'), [
      { fields: ['plain', 'a, b', 'say "hi"', 'x'], line: 1 },
      { fields: ['two\nlines', '', '', 'last'], line: 3 },
    ]);
  });

  it('keeps a quote inside an unquoted field literally (as pandas does)', () => {
    assert.deepEqual(parseCsv('it\'s 5" long,b\n', 'f.csv')[0]!.fields, ['it\'s 5" long', 'b']);
  });

  it('counts lines across quoted newlines for later records', () => {
    const recs = parseCsv('"a\nb\nc",1\nd,2\n', 'f.csv');
    assert.deepEqual(recs.map((r) => r.line), [1, 4]);
  });

  it('rejects an unterminated quote at the line it opened and junk after a closing quote', () => {
    assertRowError(() => parseCsv('a,b\nc,"open\nmore\n', 'f.csv'), 'f.csv', 2, /unterminated quoted field \(opened on line 2\)/);
    assertRowError(() => parseCsv('a,b\n"x"y,z\n', 'f.csv'), 'f.csv', 2, /unexpected character "y" after a closing quote/);
  });
});

describe('Hendrycks rows', () => {
  const good = '"Q, one?",a,b,c,d,B\n';
  it('parses six fields with the answer letter', () => {
    const [q] = parseHendrycksCsv(good, 's_val.csv', 's');
    assert.deepEqual(q, { subject: 's', question: 'Q, one?', choices: ['a', 'b', 'c', 'd'], answer: 1, file: 's_val.csv', line: 1 });
  });

  it('reports malformed rows as file:line errors', () => {
    assertRowError(() => parseHendrycksCsv(`${good}only,five,fields,here,A\n`, 'x.csv', 's'), 'x.csv', 2, /row has 5 fields, expected 6/);
    assertRowError(() => parseHendrycksCsv(`${good}\n"multi\nline",a,b,c,d,E\n`, 'x.csv', 's'), 'x.csv', 3, /answer "E" is not one of A, B, C, D/);
    assertRowError(() => parseHendrycksCsv('q,a,b,c,d,e,f,A\n', 'x.csv', 's'), 'x.csv', 1, /row has 8 fields/);
  });

  it('names the CSV file and line when a fixture-like folder has a broken row', async () => {
    const root = path.join(tmp, 'broken');
    mkdirSync(path.join(root, 'val'), { recursive: true });
    const file = path.join(root, 'val', 'math_val.csv');
    writeFileSync(file, 'q1,a,b,c,d,A\nq2,a,b,c,d,Z\n');
    await assert.rejects(loadMcq(root, { shots: 0 }), (e: unknown) => {
      assert.ok(e instanceof HqError);
      assert.equal(e.where.file, file);
      assert.equal(e.where.line, 2);
      return true;
    });
  });

  it('reports malformed QLoRA records with file:line', async () => {
    const file = path.join(tmp, 'bad.jsonl');
    writeFileSync(file, '{"subject":"s","input":"Q\\nAnswer:","output":"A"}\n{"subject":"s","input":"Q","output":"F"}\n');
    await assert.rejects(readQloraMcq(file), (e: unknown) => e instanceof HqError && e.where.file === file && e.where.line === 2 &&
      /output "F" is not one of A, B, C, D/.test(e.message));
    writeFileSync(file, '{"subject":"s","input":"Q","output":"A"}\n{"subject":"s","output":"A"}\n');
    await assert.rejects(readQloraMcq(file), (e: unknown) => e instanceof HqError && e.where.line === 2 && /field "input" is missing/.test(e.message));
  });
});

describe('k-shot prompts of the fixture set', () => {
  const dev = parseHendrycksCsv(readFileSync(path.join(MCQ, 'dev', 'next_letter_dev.csv'), 'utf8'), 'dev', 'next_letter');
  const val = parseHendrycksCsv(readFileSync(path.join(MCQ, 'val', 'next_letter_val.csv'), 'utf8'), 'val', 'next_letter');

  it('reads the quoted fixture questions (their commas are inside quotes)', () => {
    assert.equal(dev.length, 5);
    assert.equal(val.length, 30);
    for (const q of [...dev, ...val]) assert.match(q.question, /^In the alphabet, which letter follows '[a-z]'\?$/);
  });

  it('renders 0-, 1- and 5-shot prompts character for character', async () => {
    const set = await loadMcq(MCQ, { split: 'val', shots: 5 });
    assert.equal(set.layout, 'hendrycks');
    assert.deepEqual(set.subjects, ['next_letter', 'previous_letter']);
    assert.equal(set.items.length, 60);
    const item = set.items[0]!;
    assert.equal(item.subject, 'next_letter');
    assert.equal(item.maxShots, 5);
    assert.equal(item.answer, val[0]!.answer);
    const head = 'The following are multiple choice questions (with answers) about next letter.\n\n';
    assert.equal(promptHeader('next_letter'), head);
    const ex = (q: Question, ans: boolean): string =>
      `${q.question}\nA. ${q.choices[0]}\nB. ${q.choices[1]}\nC. ${q.choices[2]}\nD. ${q.choices[3]}\nAnswer:${ans ? ` ${'ABCD'[q.answer]}\n\n` : ''}`;
    assert.equal(item.prompt(0), head + ex(val[0]!, false));
    assert.equal(item.prompt(1), head + ex(dev[0]!, true) + ex(val[0]!, false));
    assert.equal(item.prompt(5), head + dev.map((d) => ex(d, true)).join('') + ex(val[0]!, false));
    assert.equal(formatExample(dev[0]!, true), ex(dev[0]!, true));
    assert.ok(item.prompt(5).endsWith('\nAnswer:'));
  });

  it('drops shots one at a time to fit maxLen and counts prompts that still do not fit', async () => {
    const set = await loadMcq(MCQ, { split: 'val', shots: 5 });
    const full = [tok.bosId!, ...tok.encode(set.items[0]!.prompt(5))].length;
    const two = [tok.bosId!, ...tok.encode(set.items[0]!.prompt(2))].length;
    const t = tokenizeMcq(tok, { ...set, items: [set.items[0]!] }, { maxLen: two, shots: 5 });
    assert.ok(two < full);
    assert.equal(t.reducedShots, 1);
    assert.equal(t.tooLong, 0);
    assert.deepEqual(t.data.prompts[0], [tok.bosId, ...tok.encode(set.items[0]!.prompt(2))]);
    const tiny = tokenizeMcq(tok, { ...set, items: [set.items[0]!] }, { maxLen: 10, shots: 5 });
    assert.equal(tiny.tooLong, 1);
    assert.equal(tiny.data.prompts[0]!.length, [tok.bosId!, ...tok.encode(set.items[0]!.prompt(0))].length);
  });

  it('reads the QLoRA layout as written: its val prompts equal the Hendrycks 0-shot prompts', async () => {
    const q = await loadMcq(path.join(MCQ, 'val.mcq.jsonl'));
    const h = await loadMcq(MCQ, { split: 'val', shots: 0 });
    assert.equal(q.layout, 'qlora');
    assert.deepEqual(q.subjects, h.subjects);
    const key = (i: { subject: string; answer: number; prompt(k: number): string }): string => `${i.subject}|${i.answer}|${i.prompt(0)}`;
    assert.deepEqual(q.items.map(key).sort(), h.items.map(key).sort());
  });

  it('a single CSV takes its shots from ../dev', async () => {
    const set = await loadMcq(path.join(MCQ, 'val', 'previous_letter_val.csv'), { shots: 3 });
    assert.deepEqual(set.subjects, ['previous_letter']);
    assert.equal(set.items[0]!.maxShots, 3);
    assert.ok(set.items[0]!.prompt(3).startsWith(promptHeader('previous_letter')));
  });
});

describe('eval table', () => {
  const result: EvalResultEvent = {
    v: 1, type: 'eval_result', time: 0, run_dir: '/r', model: { path: '/m', architecture: 'llama', quantization: 'nf4' },
    adapter: '/r/adapter/adapter.safetensors', mcq_file: '/r/data/x.hqmcq', eval_file: null, shots: 0, questions: 4,
    eval_examples: 0, subjects: ['a', 'b'], threads: 2, elapsed_s: 3,
    rows: [
      { name: 'base (NF4)', levels: 0, ranks: [], mcq: { n: 4, correct: 1, accuracy: 0.25, macro_accuracy: 0.25, truncated: 0, seconds: 1,
        subjects: [{ subject: 'a', n: 2, correct: 1, accuracy: 0.5 }, { subject: 'b', n: 2, correct: 0, accuracy: 0 }] } },
      { name: 'L1 (r 16)', levels: 1, ranks: [16], mcq: { n: 4, correct: 3, accuracy: 0.75, macro_accuracy: 0.75, truncated: 0, seconds: 1,
        subjects: [{ subject: 'a', n: 2, correct: 2, accuracy: 1 }, { subject: 'b', n: 2, correct: 1, accuracy: 0.5 }] } },
    ],
  };

  it('renders one row per configuration with macro, micro and per-subject accuracy', () => {
    const md = evalMarkdown(result, { runDir: '/r', mcq: '/data/mmlu', shots: 5 });
    const lines = md.split('\n');
    assert.ok(lines.includes('| configuration | levels | MC acc (macro) % | MC acc (micro) % | a % | b % |'), md);
    assert.ok(lines.includes('| base (NF4) | – | 25.0 | 25.0 | 50.0 | 0.0 |'), md);
    assert.ok(lines.includes('| L1 (r 16) | 16 | 75.0 | 75.0 | 100.0 | 50.0 |'), md);
    assert.match(md, /multiple choice: \/data\/mmlu, 4 questions, 2 subjects, 5-shot/);
  });

  it('formats an mcq event as one line (hqlora run progress)', () => {
    const e: McqEvent = { v: 1, type: 'mcq', time: 0, step: 40, n: 60, correct: 21, accuracy: 0.35, macro_accuracy: 0.3333,
      truncated: 0, seconds: 1.5, subjects: [] };
    assert.equal(formatMcqLine(e), 'multiple choice @ step 40: 33.3% macro, 35.0% micro of 60 questions');
    assert.equal(formatMcqLine({ ...e, step: null, config: 'base (NF4)' }), 'multiple choice base (NF4): 33.3% macro, 35.0% micro of 60 questions');
  });
});

describe('fixtures', () => {
  it('test/fixtures/mcq and mcq-own-number match make-mcq.mjs byte for byte', () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'test/fixtures/make-mcq.mjs'), '--check'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /make-mcq: \d+ files match/);
  });
});
