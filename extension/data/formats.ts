// formats.ts — dataset records to examples, the QLoRA way (trainer-anchors §2.3). Files are read by reader.ts.
// Record formats (detected from the first record unless data.format names one):
//   alpaca      {instruction, input?, output}  source = ALPACA prompt (with/without input), target = output
//   completion  {prompt, completion} or {input, output}      source = prompt, target = completion
//   guanaco     {text: "### Human: ...### Assistant: ..."}   source = "" (BOS only), target = the whole text (QLoRA oasst1)
//   text        {text} (or a .txt paragraph)                 source = "",     target = text
//   oasst1      OASST1 message-tree export (oasst.ts)        threads in the Guanaco text form, or as chat
//   chat        {messages: [{role, content}]}                rendered with the model's chat template (chat.ts)
// Pair examples get BOS/EOS as ids in prepare.ts, not as text; chat examples get what the template writes.
// Every error names file:line and what is wrong.
import { HqError } from '../core/errors';
import { CHAT_ROLES, type ChatMessage } from './chat';
import { guanacoText, isOasstRecord, oasstThreads, type OasstOptions } from './oasst';
import { DEFAULT_MAX_LINE_BYTES, type RawRecord, dataFiles, readRecords } from './reader';

export type RecordFormat = 'alpaca' | 'completion' | 'guanaco' | 'text' | 'oasst1' | 'chat';
export type FormatSetting = 'auto' | RecordFormat;

/** Source/target text pair (QLoRA masking: loss on the target). */
export interface PairExample {
  kind: 'pair';
  source: string;
  target: string;
  file: string;
  /** 1-based line where the record starts. */
  line: number;
}

/** A conversation for the chat template (loss on assistant turns). */
export interface ChatExample {
  kind: 'chat';
  messages: ChatMessage[];
  file: string;
  line: number;
}

export type Example = PairExample | ChatExample;

export interface ReadOptions {
  format?: FormatSetting;
  /** OASST1 threads: which paths, which languages, and how they are trained (Guanaco text or chat template). */
  oasst?: Partial<OasstOptions> & { render?: 'guanaco' | 'chat' };
  maxLineBytes?: number;
}

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

/** Which format a record looks like, or null. */
export function detectFormat(rec: unknown): RecordFormat | null {
  if (!rec || typeof rec !== 'object' || Array.isArray(rec)) return null;
  const r = rec as Record<string, unknown>;
  if (isOasstRecord(r)) return 'oasst1';
  if ('messages' in r) return 'chat';
  if ('instruction' in r) return 'alpaca';
  if (('prompt' in r && 'completion' in r) || ('input' in r && 'output' in r)) return 'completion';
  if ('text' in r) return typeof r.text === 'string' && r.text.trimStart().startsWith('### Human:') ? 'guanaco' : 'text';
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
    case 'guanaco':
      return 'guanaco records are {"text": "### Human: ...### Assistant: ..."} (timdettmers/openassistant-guanaco)';
    case 'chat':
      return 'chat records are {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}';
    case 'oasst1':
      return 'OASST1 records are messages {"message_id", "parent_id", "role", "text", "rank", "lang"} or trees {"prompt": {..., "replies": [...]}}';
  }
}

function chatMessages(rec: Record<string, unknown>, file: string, line: number): ChatMessage[] {
  const msgs = rec.messages;
  if (!Array.isArray(msgs) || msgs.length === 0) {
    throw new HqError('`messages` must be a non-empty array', { file, line }, formatHint('chat'));
  }
  return msgs.map((m: unknown, i) => {
    if (!m || typeof m !== 'object' || Array.isArray(m)) {
      throw new HqError(`messages[${i}] must be an object {role, content}`, { file, line }, formatHint('chat'));
    }
    const { role, content } = m as Record<string, unknown>;
    if (!CHAT_ROLES.includes(role as ChatMessage['role'])) {
      throw new HqError(`messages[${i}] has unknown role ${JSON.stringify(role)} (expected ${CHAT_ROLES.join(', ')})`,
        { file, line }, formatHint('chat'));
    }
    if (typeof content !== 'string') {
      throw new HqError(`messages[${i}].content must be a string, got ${content === null ? 'null' : typeof content}`,
        { file, line }, formatHint('chat'));
    }
    return { role: role as ChatMessage['role'], content };
  });
}

function toExample(raw: RawRecord, format: Exclude<RecordFormat, 'oasst1'>, file: string): Example {
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
      return { kind: 'pair', source: alpacaPrompt(instruction, input), target: field(rec, 'output', file, line, format), file, line };
    }
    case 'completion':
      return 'prompt' in rec || 'completion' in rec
        ? { kind: 'pair', source: field(rec, 'prompt', file, line, format), target: field(rec, 'completion', file, line, format), file, line }
        : { kind: 'pair', source: field(rec, 'input', file, line, format), target: field(rec, 'output', file, line, format), file, line };
    case 'text':
      return { kind: 'pair', source: '', target: field(rec, 'text', file, line, format), file, line };
    case 'guanaco': {
      const text = field(rec, 'text', file, line, format);
      if (!text.includes('### Human:') || !text.includes('### Assistant:')) {
        throw new HqError('guanaco text has no "### Human:" / "### Assistant:" turns', { file, line }, formatHint(format));
      }
      return { kind: 'pair', source: '', target: text, file, line };
    }
    case 'chat':
      return { kind: 'chat', messages: chatMessages(rec, file, line), file, line };
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
export async function readExamples(p: string, opts: ReadOptions | FormatSetting = {},
  onFile?: (done: number, total: number) => void): Promise<ReadResult> {
  const o: ReadOptions = typeof opts === 'string' ? { format: opts } : opts;
  const files = await dataFiles(p);
  let fmt: RecordFormat | null = !o.format || o.format === 'auto' ? null : o.format;
  const examples: Example[] = [];
  const oasst: { raw: RawRecord; file: string }[] = [];
  for (const [i, file] of files.entries()) {
    const raws = await readRecords(file, o.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES);
    if (fmt === null && raws[0]) {
      fmt = detectFormat(raws[0].value);
      if (fmt === null) {
        throw new HqError(`cannot tell the record format from the first record (${JSON.stringify(raws[0].value).slice(0, 80)})`,
          { file, line: raws[0].line },
          'records need instruction/output (alpaca), prompt/completion or input/output (completion), text, messages ' +
          '(chat) or message_id/parent_id (oasst1); or set data.format');
      }
    }
    if (fmt === 'oasst1') oasst.push(...raws.map((raw) => ({ raw, file })));
    else for (const raw of raws) examples.push(toExample(raw, fmt!, file));
    onFile?.(i + 1, files.length);
  }
  if (fmt === 'oasst1') {
    const threads = oasstThreads(oasst, { paths: o.oasst?.paths ?? 'best', lang: o.oasst?.lang ?? null });
    for (const t of threads) {
      examples.push(o.oasst?.render === 'chat'
        ? { kind: 'chat', messages: t.messages.map((m) => ({ role: m.role === 'prompter' ? 'user' : 'assistant', content: m.text })), file: t.file, line: t.line }
        : { kind: 'pair', source: '', target: guanacoText(t.messages), file: t.file, line: t.line });
    }
  }
  if (examples.length === 0) {
    throw new HqError(`no examples in ${p}`, { file: p },
      fmt === 'oasst1' ? 'no OASST1 thread has an assistant reply (check data.oasst1.lang)' : 'the dataset is empty; add records or point at another file');
  }
  return { examples, format: fmt!, files };
}
