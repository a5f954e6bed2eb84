// datapeek.ts — a cheap look at a dataset for the language server: the data files, the first record and its format
// (extension/data/formats.ts detection), and the number of examples when the files are small enough to count.
// Reads are bounded (the first 256 KiB for the first record, whole files only up to 64 MiB for counting) and only
// regular files are opened, so a path to a FIFO or a device cannot block the server. Cached by path, size and mtime.
import { closeSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import path from 'node:path';

import { type RecordFormat, detectFormat } from '../data/formats';

export interface DataPeek {
  files: string[];
  /** The first record (a .txt paragraph is {text}), or null for an empty file. */
  first: { value: unknown; file: string; line: number } | null;
  /** Problem reading the first record (invalid JSON ...), with its 1-based line. */
  problem: { message: string; file: string; line: number } | null;
  /** Format of the first record by detectFormat (text for .txt), or null. */
  detected: RecordFormat | null;
  /** Number of examples, or null when the files are too large to count here. */
  examples: number | null;
}

const DATA_EXTS = ['.jsonl', '.json', '.txt'];
const HEAD_BYTES = 256 << 10;
const COUNT_LIMIT = 64 << 20;

const cache = new Map<string, { key: string; peek: DataPeek }>();

/** Throws (with a readable message) when `p` is missing or holds no data files. */
export function peekData(p: string): DataPeek {
  const st = statSync(p);
  let files: string[];
  if (st.isDirectory()) {
    files = readdirSync(p).filter((f) => DATA_EXTS.includes(path.extname(f).toLowerCase())).sort().map((f) => path.join(p, f));
    if (files.length === 0) throw new Error(`the data folder has no .jsonl, .json or .txt files: ${p}`);
  } else if (st.isFile()) {
    files = [p];
  } else {
    throw new Error(`not a regular file or folder: ${p}`);
  }
  const stats = files.map((f) => statSync(f));
  const key = stats.map((s) => `${s.size}:${s.mtimeMs}`).join('|');
  const hit = cache.get(p);
  if (hit && hit.key === key) return hit.peek;
  const peek = peekFiles(files, stats.map((s) => ({ size: s.size, isFile: s.isFile() })));
  if (cache.size > 64) cache.clear();
  cache.set(p, { key, peek });
  return peek;
}

function readHead(file: string, bytes: number): string {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(bytes);
    const n = readSync(fd, buf, 0, bytes, 0);
    return buf.subarray(0, n).toString('utf8').replace(/^\uFEFF/, '');
  } finally {
    closeSync(fd);
  }
}

function peekFiles(files: string[], stats: { size: number; isFile: boolean }[]): DataPeek {
  const peek: DataPeek = { files, first: null, problem: null, detected: null, examples: 0 };
  const total = stats.reduce((a, s) => a + s.size, 0);
  for (const [i, file] of files.entries()) {
    if (!stats[i]!.isFile) throw new Error(`not a regular file: ${file}`);
    const ext = path.extname(file).toLowerCase();
    const whole = total <= COUNT_LIMIT;
    const text = whole ? readFileSync(file, 'utf8').replace(/^\uFEFF/, '') : readHead(file, HEAD_BYTES);
    const r = ext === '.txt' ? firstParagraph(text) : ext === '.json' && text.trimStart().startsWith('[') ? firstArrayElement(text, whole) : firstLine(text, whole);
    if (peek.first === null && peek.problem === null) {
      if (r.problem) peek.problem = { ...r.problem, file };
      else if (r.first) {
        peek.first = { ...r.first, file };
        peek.detected = ext === '.txt' ? 'text' : detectFormat(r.first.value);
      }
    }
    if (!whole || r.count === null || peek.examples === null) peek.examples = null;
    else peek.examples += r.count;
  }
  return peek;
}

interface FileHead {
  first: { value: unknown; line: number } | null;
  problem: { message: string; line: number } | null;
  count: number | null;
}

function firstLine(text: string, whole: boolean): FileHead {
  const lines = text.split('\n');
  if (!whole) lines.pop(); // the last line of a bounded read may be cut off
  let first: FileHead['first'] = null;
  let count = 0;
  for (const [i, l] of lines.entries()) {
    const s = l.trim();
    if (s === '') continue;
    count++;
    if (first === null) {
      try {
        first = { value: JSON.parse(s) as unknown, line: i + 1 };
      } catch (err) {
        return { first: null, problem: { message: `invalid JSON: ${(err as Error).message}`, line: i + 1 }, count: null };
      }
    }
  }
  return { first, problem: null, count: whole ? count : null };
}

function firstParagraph(text: string): FileHead {
  const lines = text.split('\n');
  let first: FileHead['first'] = null;
  let count = 0;
  let start = -1;
  for (let i = 0; i <= lines.length; i++) {
    const blank = i === lines.length || lines[i]!.trim() === '';
    if (!blank && start < 0) start = i;
    if (blank && start >= 0) {
      count++;
      first ??= { value: { text: lines.slice(start, i).join('\n') }, line: start + 1 };
      start = -1;
    }
  }
  return { first, problem: null, count };
}

function firstArrayElement(text: string, whole: boolean): FileHead {
  if (whole) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      return { first: null, problem: { message: `invalid JSON: ${(err as Error).message}`, line: 1 }, count: null };
    }
    const arr = value as unknown[];
    const at = text.indexOf('{');
    const line = at < 0 ? 1 : text.slice(0, at).split('\n').length;
    return { first: arr.length ? { value: arr[0], line } : null, problem: null, count: arr.length };
  }
  // Large file: parse the first element only, by matching its braces (string-aware).
  const open = text.indexOf('[');
  let i = open + 1;
  while (i < text.length && /\s/.test(text[i]!)) i++;
  if (text[i] !== '{') return { first: null, problem: { message: 'the first array element is not an object', line: 1 }, count: null };
  let depth = 0, inString = false;
  for (let j = i; j < text.length; j++) {
    const c = text[j]!;
    if (inString) {
      if (c === '\\') j++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      if (--depth === 0) {
        const line = text.slice(0, i).split('\n').length;
        try {
          return { first: { value: JSON.parse(text.slice(i, j + 1)) as unknown, line }, problem: null, count: null };
        } catch (err) {
          return { first: null, problem: { message: `invalid JSON: ${(err as Error).message}`, line }, count: null };
        }
      }
    }
  }
  return { first: null, problem: { message: `the first record is longer than ${HEAD_BYTES >> 10} KiB`, line: 1 }, count: null };
}

/**
 * Whether a record has the fields `format` needs (formats.ts), so the configured format can read it; null when this
 * quick look cannot tell (an unknown format name, or a layout only the full reader understands).
 */
export function recordFits(format: string, rec: unknown): boolean | null {
  if (!rec || typeof rec !== 'object' || Array.isArray(rec)) return false;
  const r = rec as Record<string, unknown>;
  const s = (k: string): boolean => typeof r[k] === 'string';
  switch (format) {
    case 'alpaca': return s('instruction') && s('output');
    case 'completion': return (s('prompt') && s('completion')) || (s('input') && s('output'));
    case 'text':
    case 'guanaco': return s('text');
    case 'chat': return Array.isArray(r.messages);
    case 'oasst1': return detectFormat(rec) === 'oasst1' ? true : null;
    default: return null;
  }
}
