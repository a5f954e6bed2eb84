// mcqfile.ts — the .hqmcq question file (docs/CONTRACTS.md §7, schemas/mcq-file.schema.json), version 1,
// little-endian, read by native/src/mcq.cpp:
//
//   0   8 B                    magic 48 51 4D 43 51 00 00 01 ("HQMCQ\0\0\1")
//   8   u32                    format version = 1
//   12  u32                    H = byte length of the header JSON
//   16  H B                    UTF-8 header JSON, then 0x20 padding to a multiple of 8          -> P = round8(16 + H)
//   P   u64 x (n+1)            prompt start offsets into the ids (0 .. n_tokens, strictly increasing)
//   ..  u32 x n_tokens         prompt token ids: BOS (when the tokenizer has one) + tokens of the prompt text
//   ..  u32 x n                answer index of each question (0 = A)
//   ..  u32 x n                subject index of each question (into header.subjects)
//   ..  0-7 B                  zero padding to a multiple of 8; the file ends here
//
// Tokenization follows qlora.py: BOS + tokenizer(prompt, add_special_tokens=False); the letter ids are
// tokenizer(letter, add_special_tokens=False)[0]. A Hendrycks prompt that does not fit `maxLen` tokens drops shots
// one at a time (evaluate.py's "while crop(prompt) too long: k -= 1"); the trainer keeps the last tokens of a
// prompt that still does not fit.
import { randomBytes } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

import type { McqFileHeader } from '../../schemas/generated/mcq-file';
import type { ModelTokenizer } from '../data/tokenizer';
import { HqError } from '../core/errors';
import { LETTERS, type McqSet } from './mmlu';

export const HQMCQ_MAGIC = Buffer.from([0x48, 0x51, 0x4d, 0x43, 0x51, 0x00, 0x00, 0x01]);

export interface McqData {
  header: McqFileHeader;
  /** Prompt ids per question. */
  prompts: number[][];
  answers: number[];
  subjects: number[];
}

const round8 = (x: number): number => Math.ceil(x / 8) * 8;

export function encodeMcqFile(d: Omit<McqData, 'header'> & { header: Omit<McqFileHeader, 'format' | 'version' | 'n_questions' | 'n_tokens'> }): Buffer {
  const n = d.prompts.length;
  if (d.answers.length !== n || d.subjects.length !== n) throw new Error('prompts, answers and subjects differ in length');
  const nTok = d.prompts.reduce((s, p) => s + p.length, 0);
  const h: McqFileHeader = { format: 'hqmcq', version: 1, n_questions: n, n_tokens: nTok, ...d.header };
  const json = Buffer.from(JSON.stringify(h), 'utf8');
  const P = round8(16 + json.length);
  const idsAt = P + 8 * (n + 1), ansAt = idsAt + 4 * nTok, subjAt = ansAt + 4 * n, end = round8(subjAt + 4 * n);
  const buf = Buffer.alloc(end);
  HQMCQ_MAGIC.copy(buf, 0);
  buf.writeUInt32LE(1, 8);
  buf.writeUInt32LE(json.length, 12);
  json.copy(buf, 16);
  buf.fill(0x20, 16 + json.length, P);
  let o = 0, t = idsAt;
  buf.writeBigUInt64LE(0n, P);
  d.prompts.forEach((p, i) => {
    if (p.length === 0) throw new Error(`prompt ${i} is empty`);
    o += p.length;
    buf.writeBigUInt64LE(BigInt(o), P + 8 * (i + 1));
    for (const id of p) {
      if (id >= h.vocab_size) throw new Error(`token id ${id} of prompt ${i} is not below vocab_size ${h.vocab_size}`);
      buf.writeUInt32LE(id, t);
      t += 4;
    }
  });
  d.answers.forEach((a, i) => buf.writeUInt32LE(a, ansAt + 4 * i));
  d.subjects.forEach((s, i) => buf.writeUInt32LE(s, subjAt + 4 * i));
  return buf;
}

/** Parses a .hqmcq file (layout checks only; the trainer validates fully). */
export function decodeMcqFile(buf: Buffer, file = '<buffer>'): McqData {
  const bad = (msg: string): HqError => new HqError(`${msg}`, { file }, 're-create the question file with hqlora eval');
  if (buf.length < 16 || !buf.subarray(0, 8).equals(HQMCQ_MAGIC)) throw bad('not an .hqmcq file (bad magic)');
  const H = buf.readUInt32LE(12);
  const header = JSON.parse(buf.subarray(16, 16 + H).toString('utf8')) as McqFileHeader;
  const n = header.n_questions, nTok = header.n_tokens;
  const P = round8(16 + H), idsAt = P + 8 * (n + 1), ansAt = idsAt + 4 * nTok, subjAt = ansAt + 4 * n;
  if (buf.length !== round8(subjAt + 4 * n)) throw bad(`file is ${buf.length} bytes, header implies ${round8(subjAt + 4 * n)}`);
  const off = Array.from({ length: n + 1 }, (_, i) => Number(buf.readBigUInt64LE(P + 8 * i)));
  const prompts = Array.from({ length: n }, (_, i) =>
    Array.from({ length: off[i + 1]! - off[i]! }, (_, t) => buf.readUInt32LE(idsAt + 4 * (off[i]! + t))));
  const answers = Array.from({ length: n }, (_, i) => buf.readUInt32LE(ansAt + 4 * i));
  const subjects = Array.from({ length: n }, (_, i) => buf.readUInt32LE(subjAt + 4 * i));
  return { header, prompts, answers, subjects };
}

export interface TokenizeMcqOptions {
  /** Longest prompt in tokens (BOS included); Hendrycks prompts drop shots to fit. */
  maxLen: number;
  /** Shots wanted per prompt (capped by each item's maxShots). */
  shots: number;
  split?: string;
  onProgress?: (done: number, total: number) => void;
}

export interface TokenizedMcq {
  data: McqData;
  /** Prompts that got fewer shots than asked to fit maxLen. */
  reducedShots: number;
  /** Prompts still longer than maxLen with 0 shots (the trainer keeps their last tokens). */
  tooLong: number;
}

export function letterIds(tok: Pick<ModelTokenizer, 'encode'>): number[] {
  return LETTERS.map((L) => {
    const ids = tok.encode(L);
    if (ids.length === 0) throw new HqError(`the tokenizer encodes "${L}" as no token`, {}, 'this tokenizer cannot score multiple-choice letters');
    return ids[0]!;
  });
}

export function tokenizeMcq(tok: ModelTokenizer, set: McqSet, opts: TokenizeMcqOptions): TokenizedMcq {
  const bos = tok.bosId === null ? [] : [tok.bosId];
  const subjIndex = new Map(set.subjects.map((s, i) => [s, i]));
  const prompts: number[][] = [];
  let reducedShots = 0, tooLong = 0;
  set.items.forEach((item, i) => {
    const want = Math.min(opts.shots, item.maxShots);
    let k = want;
    let ids = [...bos, ...tok.encode(item.prompt(k))];
    while (ids.length > opts.maxLen && k > 0) {
      k--;
      ids = [...bos, ...tok.encode(item.prompt(k))];
    }
    if (k < want) reducedShots++;
    if (ids.length > opts.maxLen) tooLong++;
    prompts.push(ids);
    if (opts.onProgress && (i % 256 === 255 || i === set.items.length - 1)) opts.onProgress(i + 1, set.items.length);
  });
  const header: McqFileHeader = {
    format: 'hqmcq', version: 1, n_questions: prompts.length, n_tokens: prompts.reduce((s, p) => s + p.length, 0),
    vocab_size: tok.vocabSize, bos_id: tok.bosId, pad_id: tok.padId,
    choice_labels: [...LETTERS], choice_ids: letterIds(tok), subjects: set.subjects,
    layout: set.layout, shots: set.shots, split: opts.split ?? null,
    tokenizer_sha256: tok.sha256, source: { files: set.files }, created_by: 'hqlora eval',
  };
  return {
    data: { header, prompts, answers: set.items.map((q) => q.answer), subjects: set.items.map((q) => subjIndex.get(q.subject)!) },
    reducedShots, tooLong,
  };
}

/** Writes the file atomically (temp + rename) and returns its path. */
export async function writeMcqFile(file: string, d: McqData): Promise<string> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, encodeMcqFile(d));
  await rename(tmp, file);
  return file;
}
