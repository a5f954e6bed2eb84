// mmlu.ts — multiple-choice questions in the two MMLU layouts users have locally, and their prompts.
//
// Hendrycks layout (github.com/hendrycks/test, data.tar): <root>/{dev,val,test}/<subject>_<split>.csv, no header
// row, six fields per row: question, choice A, B, C, D, answer letter. Prompts are built as that repository's
// evaluate.py does (format_subject / format_example / gen_prompt):
//   "The following are multiple choice questions (with answers) about" + " " + subject with "_" → " " + ".\n\n"
//   + k solved dev examples "Q\nA. a\nB. b\nC. c\nD. d\nAnswer: X\n\n" + the question "...\nAnswer:".
// QLoRA layout (qlora.py data/mmlu/*.json): JSON array or JSONL of {subject, input, output}; `input` is the whole
// prompt (header and shots included) and `output` the answer letter — used as written.
// Scoring reads the logit of each answer letter's token after the prompt (trainer-anchors §2.4).
import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';

import { readRecords } from '../data/reader';
import { HqError, errnoCode } from '../core/errors';
import { parseCsv } from './csv';

export const LETTERS = ['A', 'B', 'C', 'D'] as const;
export const SPLITS = ['dev', 'val', 'test'] as const;
export type Split = (typeof SPLITS)[number];

export interface Question {
  subject: string;
  question: string;
  /** The four choices, in letter order. */
  choices: string[];
  /** Index of the right choice (0 = A). */
  answer: number;
  file: string;
  line: number;
}

/** One question to score: its subject, answer and a prompt renderer for k shots. */
export interface McqItem {
  subject: string;
  answer: number;
  file: string;
  line: number;
  /** Most shots available for this item (0 for QLoRA-layout prompts, which are used as written). */
  maxShots: number;
  /** The prompt with `k` shots (k ≤ maxShots), without BOS. */
  prompt(k: number): string;
}

export interface McqSet {
  layout: 'hendrycks' | 'qlora';
  /** Subjects in sorted order (the subject index of the question file). */
  subjects: string[];
  items: McqItem[];
  files: string[];
  /** Shots requested (Hendrycks) or null (QLoRA prompts as written). */
  shots: number | null;
}

/** " abstract algebra" for "abstract_algebra" (evaluate.py format_subject: every word gets a leading space). */
export function formatSubject(subject: string): string {
  return subject.split('_').map((w) => ` ${w}`).join('');
}

export function promptHeader(subject: string): string {
  return `The following are multiple choice questions (with answers) about${formatSubject(subject)}.\n\n`;
}

/** evaluate.py format_example: the question, lettered choices, "Answer:" and, for a shot, " X\n\n". */
export function formatExample(q: Pick<Question, 'question' | 'choices' | 'answer'>, withAnswer: boolean): string {
  let s = q.question;
  q.choices.forEach((c, j) => (s += `\n${LETTERS[j]}. ${c}`));
  s += '\nAnswer:';
  if (withAnswer) s += ` ${LETTERS[q.answer]}\n\n`;
  return s;
}

export function buildPrompt(subject: string, shots: readonly Question[], q: Question): string {
  return promptHeader(subject) + shots.map((s) => formatExample(s, true)).join('') + formatExample(q, false);
}

function rowError(file: string, line: number, msg: string): HqError {
  return new HqError(msg, { file, line },
    'each row needs six fields: question, four choices and the answer letter A-D (quote fields that hold commas)');
}

/** Questions of one Hendrycks CSV file. */
export function parseHendrycksCsv(text: string, file: string, subject: string): Question[] {
  return parseCsv(text, file).map(({ fields, line }) => {
    if (fields.length !== 6) throw rowError(file, line, `row has ${fields.length} fields, expected 6`);
    const letter = fields[5]!.trim();
    const answer = LETTERS.indexOf(letter as (typeof LETTERS)[number]);
    if (answer < 0) throw rowError(file, line, `answer ${JSON.stringify(fields[5])} is not one of A, B, C, D`);
    return { subject, question: fields[0]!, choices: fields.slice(1, 5), answer, file, line };
  });
}

async function readUtf8(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new HqError(`cannot read ${file}: ${(err as Error).message}`, { file }, 'check the multiple-choice data path',
      { cause: err });
  }
}

/** Subject → questions of `<root>/<split>/<subject>_<split>.csv`. */
export async function readHendrycksSplit(root: string, split: Split): Promise<Map<string, Question[]>> {
  const dir = path.join(root, split);
  let names: string[];
  try {
    names = (await readdir(dir)).filter((f) => f.endsWith(`_${split}.csv`)).sort();
  } catch (err) {
    throw new HqError(`no ${split}/ folder in ${root}${errnoCode(err) === 'ENOENT' ? '' : `: ${(err as Error).message}`}`,
      { file: root }, 'the Hendrycks layout has dev/, val/ and test/ folders of <subject>_<split>.csv files');
  }
  const out = new Map<string, Question[]>();
  for (const f of names) {
    const subject = f.slice(0, -`_${split}.csv`.length);
    const file = path.join(dir, f);
    out.set(subject, parseHendrycksCsv(await readUtf8(file), file, subject));
  }
  return out;
}

/** QLoRA-layout records {subject, input, output}. */
export async function readQloraMcq(file: string): Promise<McqItem[]> {
  const records = await readRecords(file);
  return records.map(({ value, line }) => {
    const r = value as Record<string, unknown>;
    if (!r || typeof r !== 'object' || Array.isArray(r)) throw new HqError('record is not a JSON object', { file, line }, 'each record is {"subject", "input", "output"}');
    for (const k of ['subject', 'input', 'output']) {
      if (typeof r[k] !== 'string') {
        throw new HqError(`field "${k}" is ${r[k] === undefined ? 'missing' : 'not a string'}`, { file, line },
          'each record is {"subject": "...", "input": "<prompt ending in Answer:>", "output": "A"}');
      }
    }
    const answer = LETTERS.indexOf((r.output as string).trim() as (typeof LETTERS)[number]);
    if (answer < 0) {
      throw new HqError(`output ${JSON.stringify(r.output)} is not one of A, B, C, D`, { file, line },
        'the output of a multiple-choice record is the answer letter');
    }
    const input = r.input as string;
    return { subject: (r.subject as string).trim(), answer, file, line, maxShots: 0, prompt: () => input };
  });
}

export interface LoadMcqOptions {
  /** Hendrycks layout: the split scored (default val). */
  split?: Split;
  /** Hendrycks layout: shots from dev (default 5). */
  shots?: number;
}

/**
 * Questions at `p`: a Hendrycks root (has dev/ or val/ or test/), one Hendrycks CSV (<subject>_<split>.csv; shots
 * from ../dev when present), or a QLoRA JSON/JSONL file.
 */
export async function loadMcq(p: string, opts: LoadMcqOptions = {}): Promise<McqSet> {
  const split = opts.split ?? 'val';
  const shots = opts.shots ?? 5;
  let st;
  try {
    st = await stat(p);
  } catch (err) {
    throw new HqError(`multiple-choice data not found: ${p}`, { file: p }, 'pass a Hendrycks MMLU folder (dev/ val/ test/), a <subject>_<split>.csv or a QLoRA {subject,input,output} JSON file', { cause: err });
  }
  let questions: Map<string, Question[]>;
  let dev = new Map<string, Question[]>();
  let files: string[];
  if (st.isDirectory()) {
    questions = await readHendrycksSplit(p, split);
    if (shots > 0 && split !== 'dev') dev = await readHendrycksSplit(p, 'dev');
    files = [...questions.values()].map((qs) => qs[0]?.file ?? '').filter((f) => f);
  } else if (p.endsWith('.csv')) {
    const m = /^(.*)_(dev|val|test)\.csv$/.exec(path.basename(p));
    const subject = m ? m[1]! : path.basename(p, '.csv');
    questions = new Map([[subject, parseHendrycksCsv(await readUtf8(p), p, subject)]]);
    const devFile = path.join(path.dirname(p), '..', 'dev', `${subject}_dev.csv`);
    if (shots > 0 && m?.[2] !== 'dev') {
      const text = await readFile(devFile, 'utf8').catch(() => null);
      if (text !== null) dev.set(subject, parseHendrycksCsv(text, devFile, subject));
    }
    files = [p];
  } else {
    const items = await readQloraMcq(p);
    const subjects = [...new Set(items.map((i) => i.subject))].sort();
    return { layout: 'qlora', subjects, items, files: [p], shots: null };
  }
  const subjects = [...questions.keys()].sort();
  const items: McqItem[] = [];
  for (const subject of subjects) {
    const pool = (dev.get(subject) ?? []).slice(0, shots);
    for (const q of questions.get(subject)!) {
      items.push({ subject, answer: q.answer, file: q.file, line: q.line, maxShots: pool.length,
        prompt: (k) => buildPrompt(subject, pool.slice(0, k), q) });
    }
  }
  return { layout: 'hendrycks', subjects, items, files, shots };
}
