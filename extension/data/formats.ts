// formats.ts — reading a dataset into (source, target) text pairs, the QLoRA way (trainer-anchors §2.3).
//
// Files: .jsonl (one JSON object per line, blank lines skipped), .json (a JSON array of objects, or JSON lines),
// .txt (plain text: paragraphs separated by blank lines, one example each), or a folder of them (sorted by name).
// Record formats:
//   alpaca      {instruction, input?, output}  source = ALPACA prompt (with/without input), target = output
//   completion  {prompt, completion} or {input, output}      source = prompt, target = completion
//   text        {text} (or a .txt paragraph)                 source = "",     target = text
// BOS/EOS are added as ids by prepare.ts, not as text. Every error names file:line and what is wrong.
import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';

import { HqError, errnoCode } from '../run/errors';

export type RecordFormat = 'alpaca' | 'completion' | 'text';
export type FormatSetting = 'auto' | RecordFormat;

/** qlora.py ALPACA_PROMPT_DICT, verbatim; note the trailing space after "### Response:". */
export const ALPACA_PROMPT_INPUT =
  'Below is an instruction that describes a task, paired with an input that provides further context. ' +
  'Write a response that appropriately completes the request.\n\n' +
  '### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response: ';
export const ALPACA_PROMPT_NO_INPUT =
  'Below is an instruction that describes a task. ' +
  'Write a response that appropriately completes the request.\n\n' +
  '### Instruction:\n{instruction}\n\n### Response: ';

/** The Alpaca source text; an empty `input` selects the no-input template (as qlora.py does). */
export function alpacaPrompt(instruction: string, input: string): string {
  // Function replacers: `$` in user text must stay literal.
  return input !== ''
    ? ALPACA_PROMPT_INPUT.replace('{instruction}', () => instruction).replace('{input}', () => input)
    : ALPACA_PROMPT_NO_INPUT.replace('{instruction}', () => instruction);
}

export interface Example {
  source: string;
  target: string;
  file: string;
  /** 1-based line where the record starts. */
  line: number;
}

const DATA_EXTS = ['.jsonl', '.json', '.txt'];

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

interface RawRecord {
  value: unknown;
  line: number;
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

function parseLines(text: string, file: string): RawRecord[] {
  const out: RawRecord[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const s = lines[i]!.trim();
    if (s === '') continue;
    try {
      out.push({ value: JSON.parse(s), line: i + 1 });
    } catch (err) {
      throw new HqError(`invalid JSON: ${(err as Error).message}`, { file, line: i + 1 },
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

function parseArray(text: string, file: string): RawRecord[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const msg = (err as Error).message;
    const pos = /position (\d+)/.exec(msg);
    throw new HqError(`invalid JSON: ${msg}`, { file, ...(pos ? { line: linesAt(text, [Number(pos[1])])[0]! } : {}) },
      'a .json data file must hold one JSON array of objects (or use .jsonl with one object per line)');
  }
  if (!Array.isArray(value)) {
    throw new HqError('a .json data file must hold an array of records', { file, line: 1 },
      'wrap the records in [ ... ] or write them as JSON lines (.jsonl)');
  }
  const lines = linesAt(text, arrayElementOffsets(text));
  return (value as unknown[]).map((v, i) => ({ value: v, line: lines[i] ?? 1 }));
}

/** .txt: each run of non-blank lines is one example (its line breaks kept). */
function parseText(text: string): RawRecord[] {
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

/** Which format a record looks like, or null. */
export function detectFormat(rec: unknown): RecordFormat | null {
  if (!rec || typeof rec !== 'object' || Array.isArray(rec)) return null;
  if ('instruction' in rec) return 'alpaca';
  if (('prompt' in rec && 'completion' in rec) || ('input' in rec && 'output' in rec)) return 'completion';
  if ('text' in rec) return 'text';
  return null;
}

function field(rec: Record<string, unknown>, key: string, file: string, line: number, format: RecordFormat,
  optional = false): string {
  const v = rec[key];
  if (typeof v === 'string') return v;
  if (optional && (v === undefined || v === null)) return '';
  if (v === undefined) {
    throw new HqError(`missing \`${key}\` in ${format} record (keys: ${Object.keys(rec).join(', ') || 'none'})`,
      { file, line }, formatHint(format));
  }
  throw new HqError(`\`${key}\` must be a string, got ${v === null ? 'null' : typeof v}`, { file, line }, formatHint(format));
}

function formatHint(format: RecordFormat): string {
  switch (format) {
    case 'alpaca':
      return 'alpaca records are {"instruction": ..., "input": ... (optional), "output": ...}';
    case 'completion':
      return 'completion records are {"prompt": ..., "completion": ...} or {"input": ..., "output": ...}';
    case 'text':
      return 'text records are {"text": ...}';
  }
}

function toExample(raw: RawRecord, format: RecordFormat, file: string): Example {
  const { value, line } = raw;
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw new HqError(`expected a JSON object, got ${Array.isArray(value) ? 'an array' : JSON.stringify(value)}`,
      { file, line }, formatHint(format));
  }
  const rec = value as Record<string, unknown>;
  switch (format) {
    case 'alpaca': {
      const instruction = field(rec, 'instruction', file, line, format);
      const input = field(rec, 'input', file, line, format, true);
      return { source: alpacaPrompt(instruction, input), target: field(rec, 'output', file, line, format), file, line };
    }
    case 'completion':
      return 'prompt' in rec || 'completion' in rec
        ? { source: field(rec, 'prompt', file, line, format), target: field(rec, 'completion', file, line, format), file, line }
        : { source: field(rec, 'input', file, line, format), target: field(rec, 'output', file, line, format), file, line };
    case 'text':
      return { source: '', target: field(rec, 'text', file, line, format), file, line };
  }
}

export interface ReadResult {
  examples: Example[];
  format: RecordFormat;
  files: string[];
}

/**
 * Reads every record of `p` (file or folder). With format 'auto' the format comes from the first record (a .txt
 * file is text); every later record must then have that format's fields.
 */
export async function readExamples(p: string, format: FormatSetting = 'auto',
  onFile?: (done: number, total: number) => void): Promise<ReadResult> {
  const files = await dataFiles(p);
  let fmt: RecordFormat | null = format === 'auto' ? null : format;
  const examples: Example[] = [];
  for (const [i, file] of files.entries()) {
    let text: string;
    try {
      text = (await readFile(file, 'utf8')).replace(/^\uFEFF/, '');
    } catch (err) {
      throw new HqError(`cannot read data file: ${(err as Error).message}`, { file }, 'check the path and permissions', { cause: err });
    }
    const ext = path.extname(file).toLowerCase();
    const raws = ext === '.txt' ? parseText(text) : ext === '.json' && text.trimStart().startsWith('[')
      ? parseArray(text, file) : parseLines(text, file);
    if (fmt === null && raws[0]) {
      fmt = detectFormat(raws[0].value);
      if (fmt === null) {
        throw new HqError(`cannot tell the record format from the first record (${JSON.stringify(raws[0].value).slice(0, 80)})`,
          { file, line: raws[0].line },
          'records need instruction/output (alpaca), prompt/completion or input/output (completion), or text; or set data.format');
      }
    }
    for (const raw of raws) examples.push(toExample(raw, fmt!, file));
    onFile?.(i + 1, files.length);
  }
  if (examples.length === 0) {
    throw new HqError(`no examples in ${p}`, { file: p }, 'the dataset is empty; add records or point at another file');
  }
  return { examples, format: fmt!, files };
}
