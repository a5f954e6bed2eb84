// reader.ts — dataset files to raw JSON records with their physical line numbers (reliability-anchors §6: every
// bad row is reported as file:line:col, never as a batch-relative row index, and fail-fast is the default).
//
// Files: .jsonl (one JSON value per line, blank lines skipped, CRLF accepted), .json (a JSON array of objects, or
// JSON lines), .txt (paragraphs separated by blank lines), or a folder of them (sorted by name). A leading UTF-8 BOM
// is dropped. Rejected with file:line:col: bytes that are not UTF-8, an empty file, a line longer than the line
// limit (bytes), invalid JSON.
import { isUtf8 } from 'node:buffer';
import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';

import { HqError, errnoCode } from '../core/errors';

/** Default line limit: 16 MiB (a single conversation longer than that is almost certainly a broken file). */
export const DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024;

const DATA_EXTS = ['.jsonl', '.json', '.txt'];

export interface RawRecord {
  value: unknown;
  /** 1-based physical line where the record starts. */
  line: number;
}

/** The data files of `p`: the file itself, or the .jsonl/.json/.txt files of a folder, sorted by name. */
export async function dataFiles(p: string): Promise<string[]> {
  let st;
  try {
    st = await stat(p);
  } catch (err) {
    const missing = errnoCode(err) === 'ENOENT';
    throw new HqError(missing ? `data file not found: ${p}` : `cannot read ${p}: ${(err as Error).message}`, { file: p },
      'check data.train / data.eval in the run config (relative paths are relative to the config file)', { cause: err });
  }
  if (!st.isDirectory()) return [p];
  const files = (await readdir(p)).filter((f) => DATA_EXTS.includes(path.extname(f).toLowerCase())).sort();
  if (files.length === 0) {
    throw new HqError(`the data folder has no .jsonl, .json or .txt files: ${p}`, { file: p },
      'put the dataset files in the folder or point data.train at a file');
  }
  return files.map((f) => path.join(p, f));
}

/** Byte offset of the first byte that breaks UTF-8 (only called once isUtf8 said there is one). */
function firstBadUtf8(buf: Buffer): number {
  for (let i = 0; i < buf.length;) {
    const b = buf[i]!;
    const n = b < 0x80 ? 1 : b >= 0xc2 && b < 0xe0 ? 2 : b >= 0xe0 && b < 0xf0 ? 3 : b >= 0xf0 && b < 0xf5 ? 4 : 0;
    if (n === 0 || i + n > buf.length || !isUtf8(buf.subarray(i, i + n))) return i;
    i += n;
  }
  return buf.length;
}

/** 1-based line and column (in characters) of a byte offset. */
function bytePosition(buf: Buffer, offset: number): { line: number; col: number } {
  let line = 1, lineStart = 0;
  for (let i = 0; i < offset; i++) if (buf[i] === 10) [line, lineStart] = [line + 1, i + 1];
  return { line, col: buf.toString('utf8', lineStart, offset).length + 1 };
}

/** Reads `file` as UTF-8 text (BOM dropped), rejecting an empty file and bytes that are not UTF-8. */
export async function readText(file: string): Promise<string> {
  let buf: Buffer;
  try {
    buf = await readFile(file);
  } catch (err) {
    throw new HqError(`cannot read data file: ${(err as Error).message}`, { file }, 'check the path and permissions', { cause: err });
  }
  if (!isUtf8(buf)) {
    const at = firstBadUtf8(buf);
    throw new HqError(`the file is not UTF-8: byte 0x${buf[at]!.toString(16).padStart(2, '0')} at byte offset ${at}`,
      { file, ...bytePosition(buf, at) }, 'convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)');
  }
  const text = buf.toString('utf8').replace(/^\uFEFF/, '');
  if (text.trim() === '') {
    throw new HqError('the data file is empty', { file, line: 1 }, 'add records to the file or point the config at another file');
  }
  return text;
}

/** `{line, col}` from a JSON.parse message's "position N" (relative to `text`, which starts at `line`:`col0`). */
function jsonErrorPosition(msg: string, text: string, line: number, col0: number): { line: number; col: number } {
  const m = /position (\d+)/.exec(msg);
  if (!m) return { line, col: col0 };
  const pos = Number(m[1]);
  const before = text.slice(0, pos);
  const nl = before.lastIndexOf('\n');
  return nl < 0 ? { line, col: col0 + pos } : { line: line + before.split('\n').length - 1, col: pos - nl };
}

function checkLineLength(s: string, file: string, line: number, maxLineBytes: number): void {
  // s.length <= bytes <= 3 * s.length (UTF-16 units): only measure the bytes when it can matter.
  if (s.length * 3 > maxLineBytes && Buffer.byteLength(s) > maxLineBytes) {
    throw new HqError(`line is ${Buffer.byteLength(s)} bytes, over the ${maxLineBytes}-byte line limit`, { file, line, col: 1 },
      'a line holds one record; check for a missing line break, or raise data.max_line_bytes');
  }
}

export function parseLines(text: string, file: string, maxLineBytes = DEFAULT_MAX_LINE_BYTES): RawRecord[] {
  const out: RawRecord[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    checkLineLength(raw, file, i + 1, maxLineBytes);
    const s = raw.trim();
    if (s === '') continue;
    try {
      out.push({ value: JSON.parse(s), line: i + 1 });
    } catch (err) {
      const msg = (err as Error).message;
      throw new HqError(`invalid JSON: ${msg}`, { file, ...jsonErrorPosition(msg, s, i + 1, raw.indexOf(s[0]!) + 1) },
        'each line of a .jsonl file must be one complete JSON object');
    }
  }
  return out;
}

/** Start offsets of the top-level elements of a JSON array text (already known to parse). */
function arrayElementOffsets(text: string): number[] {
  const starts: number[] = [];
  let depth = 0, inString = false, expectElement = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === ' ' || c === '\n' || c === '\r' || c === '\t') continue;
    if (depth === 1 && expectElement && c !== ']') {
      starts.push(i);
      expectElement = false;
    }
    if (c === '"') inString = true;
    else if (c === '[' || c === '{') {
      depth++;
      if (depth === 1) expectElement = true;
    } else if (c === ']' || c === '}') depth--;
    else if (c === ',' && depth === 1) expectElement = true;
  }
  return starts;
}

/** 1-based line numbers of ascending character offsets, in one pass over `text`. */
function linesAt(text: string, offsets: number[]): number[] {
  const out: number[] = [];
  let line = 1, i = 0;
  for (const off of offsets) {
    for (; i < off && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
    out.push(line);
  }
  return out;
}

export function parseArray(text: string, file: string): RawRecord[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const msg = (err as Error).message;
    throw new HqError(`invalid JSON: ${msg}`, { file, ...jsonErrorPosition(msg, text, 1, 1) },
      'a .json data file must hold one JSON array of objects (or use .jsonl with one object per line)');
  }
  if (!Array.isArray(value)) {
    throw new HqError('a .json data file must hold an array of records', { file, line: 1 },
      'wrap the records in [ ... ] or write them as JSON lines (.jsonl)');
  }
  const lines = linesAt(text, arrayElementOffsets(text));
  return (value as unknown[]).map((v, i) => ({ value: v, line: lines[i] ?? 1 }));
}

/** .txt: each run of non-blank lines is one `{text}` record (its line breaks kept). */
export function parseText(text: string): RawRecord[] {
  const out: RawRecord[] = [];
  const lines = text.split('\n');
  let start = -1;
  for (let i = 0; i <= lines.length; i++) {
    const blank = i === lines.length || lines[i]!.trim() === '';
    if (!blank && start < 0) start = i;
    if (blank && start >= 0) {
      out.push({ value: { text: lines.slice(start, i).join('\n').replace(/\r$/gm, '') }, line: start + 1 });
      start = -1;
    }
  }
  return out;
}

/** Every raw record of one file, by extension. */
export async function readRecords(file: string, maxLineBytes = DEFAULT_MAX_LINE_BYTES): Promise<RawRecord[]> {
  const text = await readText(file);
  const ext = path.extname(file).toLowerCase();
  if (ext === '.txt') return parseText(text);
  if (ext === '.json' && text.trimStart().startsWith('[')) return parseArray(text, file);
  return parseLines(text, file, maxLineBytes);
}
