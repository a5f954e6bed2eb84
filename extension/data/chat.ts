// chat.ts — chat records ({messages: [{role, content}]}) rendered with the model's own chat template
// (tokenizer_config.json `chat_template`, or chat_template.jinja) through @huggingface/jinja, with the loss on
// assistant turns only.
//
// How the assistant spans are found (prefix rendering; no {% generation %} markers needed):
//   F   = render(all messages, add_generation_prompt=false)          the training text
//   P_i = render(messages[0..i), add_generation_prompt=true)         for each assistant message i
//   R_i = render(messages[0..i], add_generation_prompt=false)
// The template must be prefix-stable: every P_i and R_i is a prefix of F. Assistant span i is F[|P_i|, |R_i|): the
// reply as the template writes it plus its end-of-turn marker (e.g. Gemma's "<end_of_turn>\n", Llama-3's
// "<|eot_id|>"), so the model learns to stop. A template that is not prefix-stable is rejected with the message
// index rather than trained with a guessed mask.
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

/** A compiled template; `vars` are the special-token strings templates use (bos_token, eos_token, ...). */
export function compileChatTemplate(source: string, vars: Record<string, string>, origin: string): ChatTemplate {
  let tpl: Template;
  try {
    tpl = new Template(source);
  } catch (err) {
    throw new HqError(`the chat template does not parse: ${(err as Error).message}`, { file: origin },
      'fix chat_template in tokenizer_config.json (or chat_template.jinja)', { cause: err });
  }
  return {
    origin,
    render: (messages, addGenerationPrompt) =>
      tpl.render({ ...vars, messages, add_generation_prompt: addGenerationPrompt }),
  };
}

/** Longest common prefix length of two id arrays. */
function lcp(a: number[], b: number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

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
  const spans: [number, number][] = [];
  for (let i = 0; i < messages.length; i++) {
    if (messages[i]!.role !== 'assistant') continue;
    const p = render(messages.slice(0, i), true, `the prefix before message ${i}`);
    const r = render(messages.slice(0, i + 1), false, `the prefix through message ${i}`);
    if (!full.startsWith(p) || !full.startsWith(r) || r.length < p.length || (spans.length && p.length < spans[spans.length - 1]![1])) {
      throw new HqError(`the chat template is not prefix-stable at message ${i}: rendering the conversation up to it ` +
        'is not a prefix of rendering the whole conversation, so the assistant turn cannot be located', where,
        `the template (${tpl.origin}) must render each conversation prefix as a prefix of the whole conversation ` +
        '(e.g. honour add_generation_prompt); fix the template or use the completion format');
    }
    spans.push([p.length, r.length]);
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
