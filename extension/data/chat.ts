// chat.ts — chat records ({messages: [{role, content}]}) rendered with the model's own chat template
// (tokenizer_config.json `chat_template`, or chat_template.jinja) through @huggingface/jinja, with the loss on
// assistant turns only.
//
// How the assistant spans are found (prefix rendering; no {% generation %} markers needed):
//   F   = render(all messages, add_generation_prompt=false)          the training text
//   P_i = render(messages[0..i), add_generation_prompt=true)         for each assistant message i
//   R_i = render(messages[0..i], add_generation_prompt=false)
// The template must be prefix-stable: every P_i is a prefix of F, and so is R_i. Assistant span i is F[|P_i|, |R_i|):
// the reply as the template writes it plus its end-of-turn marker (e.g. Gemma's "<end_of_turn>\n", Qwen's
// "<|im_end|>\n", Llama-3's "<|eot_id|>"), so the model learns to stop.
// One exception, the last-turn form: a template may write the final assistant turn differently from the same turn
// in the history (Qwen3 gives the turn after the last user message a "<think>\n\n</think>\n\n" block and drops it
// from earlier turns), so R_i is not a prefix of F while P_i is. Then span i ends where the reply ends in F plus the
// closing text R_i writes after the reply; both ends are found by rendering again with a sentinel appended to the
// reply (the first character where the two renderings differ), and F must continue with that closing text at that
// point. Any other mismatch is rejected with the message index rather than trained with a guessed mask.
// Tokens: F is tokenized once, without added special tokens (the template writes BOS itself), so the ids are what
// the model sees at inference. A span boundary at character b becomes the token index where encode(F[0..b)) stops
// agreeing with encode(F); a token that straddles a boundary goes with the following segment. The sequence is cut
// to maxLen tokens (the first ones kept).
import { Template } from '@huggingface/jinja';

import { HqError } from '../core/errors';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export const CHAT_ROLES = ['system', 'user', 'assistant'] as const;

export interface ChatTemplate {
  render(messages: ChatMessage[], addGenerationPrompt: boolean): string;
  /** Where the template came from (for messages). */
  origin: string;
}

/** Python's str.strip / lstrip / rstrip with a `chars` argument (null: whitespace). */
function pyStrip(mode: 'strip' | 'lstrip' | 'rstrip') {
  return (s: unknown, chars: unknown): string => {
    if (typeof s !== 'string') throw new Error(`${mode}() of a non-string`);
    if (chars == null) return mode === 'lstrip' ? s.trimStart() : mode === 'rstrip' ? s.trimEnd() : s.trim();
    if (typeof chars !== 'string') throw new Error(`${mode}() argument must be a string or none`);
    let a = 0, b = s.length;
    if (mode !== 'rstrip') while (a < b && chars.includes(s[a]!)) a++;
    if (mode !== 'lstrip') while (b > a && chars.includes(s[b - 1]!)) b--;
    return s.slice(a, b);
  };
}
const STRIP_FNS = { __hq_strip: pyStrip('strip'), __hq_lstrip: pyStrip('lstrip'), __hq_rstrip: pyStrip('rstrip') };

/**
 * @huggingface/jinja 0.5.11 (and 0.5.13) ignores the argument of str.strip / lstrip / rstrip and always strips
 * whitespace, where transformers' Jinja (Python) strips only the given characters: Qwen3's template writes the
 * last reply as `content.lstrip('\n')`, so a reply starting with spaces lost them. Each `x.strip(chars)` call of
 * the parsed template becomes `__hq_strip(x, chars)`, a Python-exact function passed in with the variables.
 */
function pythonStripCalls(node: unknown, seen = new Set<object>()): void {
  if (!node || typeof node !== 'object' || seen.has(node)) return;
  seen.add(node);
  const n = node as { type?: unknown; callee?: { type?: unknown; computed?: unknown; object?: unknown; property?: { type?: unknown; value?: unknown } }; args?: unknown[] };
  const c = n.callee;
  const name = c?.property?.value;
  if (n.type === 'CallExpression' && c?.type === 'MemberExpression' && !c.computed && c.property?.type === 'Identifier' &&
    (name === 'strip' || name === 'lstrip' || name === 'rstrip') && n.args?.length === 1) {
    c.property.value = `__hq_${name}`;
    n.args = [c.object, n.args[0]];
    n.callee = c.property;
  }
  for (const v of Object.values(node)) pythonStripCalls(v, seen);
}

/** A compiled template; `vars` are the special-token strings templates use (bos_token, eos_token, ...). */
export function compileChatTemplate(source: string, vars: Record<string, string>, origin: string): ChatTemplate {
  let tpl: Template;
  try {
    tpl = new Template(source);
  } catch (err) {
    throw new HqError(`the chat template does not parse: ${(err as Error).message}`, { file: origin },
      'fix chat_template in tokenizer_config.json (or chat_template.jinja)', { cause: err });
  }
  pythonStripCalls(tpl.parsed);
  return {
    origin,
    render: (messages, addGenerationPrompt) =>
      tpl.render({ ...vars, ...STRIP_FNS, messages, add_generation_prompt: addGenerationPrompt }),
  };
}

/** Longest common prefix length of two id arrays or strings. */
function lcp(a: ArrayLike<number | string>, b: ArrayLike<number | string>): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/** Appended to a reply to find where the template writes the reply's end (a control character no template trims). */
const SENTINEL = '\u0001';

export interface ChatBuilt {
  ids: number[];
  mask: number[];
  truncated: boolean;
  /** The rendered text and its trained character spans (for previews). */
  text: string;
  spans: [number, number][];
}

/** What buildChatExample needs of a tokenizer (tokenizer.ts ModelTokenizer has it; chat.ts stays below tokenizer.ts). */
export interface ChatEncoder {
  encode(text: string): number[];
}

/** Renders, finds the assistant spans and tokenizes one conversation. Errors carry file:line. */
export function buildChatExample(tok: ChatEncoder, tpl: ChatTemplate, messages: ChatMessage[],
  opts: { maxLen: number; trainOnSource: boolean }, where: { file: string; line: number }): ChatBuilt {
  const render = (msgs: ChatMessage[], gen: boolean, what: string): string => {
    try {
      return tpl.render(msgs, gen);
    } catch (err) {
      throw new HqError(`the chat template failed to render ${what}: ${(err as Error).message}`, where,
        `check the conversation against the model's chat template (${tpl.origin})`, { cause: err });
    }
  };
  const full = render(messages, false, 'this conversation');
  /** The last-turn form (see the top): the end of span i in F, or -1 when F does not close the reply as R_i does. */
  const lastTurnEnd = (i: number, r: string): number => {
    const marked = messages.map((m, j) => (j === i ? { ...m, content: m.content + SENTINEL } : m));
    const replyEndF = lcp(full, render(marked, false, 'this conversation'));
    const replyEndR = lcp(r, render(marked.slice(0, i + 1), false, `the prefix through message ${i}`));
    const closing = r.slice(replyEndR);
    return closing.length > 0 && full.startsWith(closing, replyEndF) ? replyEndF + closing.length : -1;
  };
  const spans: [number, number][] = [];
  for (let i = 0; i < messages.length; i++) {
    if (messages[i]!.role !== 'assistant') continue;
    const p = render(messages.slice(0, i), true, `the prefix before message ${i}`);
    const r = render(messages.slice(0, i + 1), false, `the prefix through message ${i}`);
    const end = full.startsWith(r) ? r.length : full.startsWith(p) ? lastTurnEnd(i, r) : -1;
    if (!full.startsWith(p) || end < p.length || (spans.length && p.length < spans[spans.length - 1]![1])) {
      throw new HqError(`the chat template is not prefix-stable at message ${i}: rendering the conversation up to it ` +
        'is not a prefix of rendering the whole conversation, so the assistant turn cannot be located', where,
        `the template (${tpl.origin}) must render each conversation prefix as a prefix of the whole conversation ` +
        '(e.g. honour add_generation_prompt); fix the template or use the completion format');
    }
    spans.push([p.length, end]);
  }
  const ids = tok.encode(full);
  // Token index of each character boundary, via the prefix tokenization.
  const at = (b: number): number => (b >= full.length ? ids.length : lcp(tok.encode(full.slice(0, b)), ids));
  const mask = new Array<number>(ids.length).fill(opts.trainOnSource ? 1 : 0);
  for (const [s, e] of spans) {
    const ts = at(s), te = at(e);
    for (let t = ts; t < te; t++) mask[t] = 1;
  }
  const truncated = ids.length > opts.maxLen;
  return { ids: ids.slice(0, opts.maxLen), mask: mask.slice(0, opts.maxLen), truncated, text: full, spans };
}
