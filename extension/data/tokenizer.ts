// tokenizer.ts — the model's own tokenizer (tokenizer.json + tokenizer_config.json, via @huggingface/tokenizers)
// and its special ids, as the data preparation needs them.
//
// Special ids are looked up in this order: tokenizer_config.json (`bos_token` etc., string or {content}),
// special_tokens_map.json, then config.json (`bos_token_id`, first element when it is a list). A missing pad
// falls back to eos (the trainer never trains on padding, so any valid id works). A missing BOS is allowed:
// some tokenizers have none, and then the source is just the prompt.
// The chat template is chat_template.jinja when the folder has one (newer transformers save it there), else
// tokenizer_config.json `chat_template` (a string, or a list of {name, template} where "default" is used).
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { Tokenizer } from '@huggingface/tokenizers';

import { HqError, errnoCode } from '../core/errors';
import { type ChatTemplate, compileChatTemplate } from './chat';

export interface ModelTokenizer {
  /** Token ids of `text`, without any special token added (QLoRA: add_special_tokens=False). */
  encode(text: string): number[];
  /** Token ids of `text` with the tokenizer's post-processor (add_special_tokens=True, e.g. a leading BOS). */
  encodeWithSpecial(text: string): number[];
  /** Text of token ids (special tokens kept), for previews. */
  decode(ids: number[]): string;
  /** The model's chat template, or null when it has none. */
  chatTemplate: ChatTemplate | null;
  /** Embedding rows of the model (config.json `vocab_size`); every id is below it. */
  vocabSize: number;
  bosId: number | null;
  eosId: number;
  padId: number;
  /** sha256 (hex) of tokenizer.json's bytes. */
  sha256: string;
  /** Raw bytes of the files that decide tokenization (for cache keys). */
  fingerprint: Buffer[];
}

type Json = Record<string, unknown>;

async function readJson(file: string, required: boolean): Promise<{ json: Json | null; bytes: Buffer | null }> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    if (!required && errnoCode(err) === 'ENOENT') return { json: null, bytes: null };
    throw new HqError(`cannot read ${path.basename(file)}: ${(err as Error).message}`, { file },
      'the model folder needs tokenizer.json and config.json (as downloaded from the Hugging Face Hub)', { cause: err });
  }
  try {
    const json: unknown = JSON.parse(bytes.toString('utf8'));
    if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new Error('not a JSON object');
    return { json: json as Json, bytes };
  } catch (err) {
    throw new HqError(`invalid JSON in ${path.basename(file)}: ${(err as Error).message}`, { file },
      're-download the file from the model repository', { cause: err });
  }
}

/** `"<s>"` or `{"content": "<s>", ...}` (tokenizer_config / special_tokens_map style). */
function tokenString(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && 'content' in v && typeof v.content === 'string') return v.content;
  return null;
}

/** `2` or `[2, 32000]` (config.json style; Llama-3 lists several eos ids, the first is the canonical one). */
function idValue(v: unknown): number | null {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
  if (Array.isArray(v) && typeof v[0] === 'number') return idValue(v[0]);
  return null;
}

/**
 * SentencePiece-style BPE tokenizers with no pre-tokenizer (LLaMA-2: spaces become "▁" and the whole text is one
 * BPE word) make @huggingface/tokenizers run its heap BPE over the entire text, uncached: ~25k tokens/s. When no
 * merge joins a token that has a non-"▁" character with a token starting with "▁" (checked on the merges), no BPE
 * merge can cross the point before a "▁" that follows another character, so the word is split there and each piece
 * is merged (and cached) on its own: the same tokens, several times faster. The golden test checks the ids.
 */
function splitBpeWords(tokenizer: Tokenizer, tokJson: Json): void {
  const model = tokJson.model as { type?: string; merges?: unknown[]; end_of_word_suffix?: unknown; continuing_subword_suffix?: unknown } | undefined;
  if (model?.type !== 'BPE' || tokJson.pre_tokenizer != null || !Array.isArray(model.merges)) return;
  if (model.end_of_word_suffix != null || model.continuing_subword_suffix != null) return;
  for (const m of model.merges) {
    const [a, b] = Array.isArray(m) ? (m as string[]) : String(m).split(' ', 2);
    if (a === undefined || b === undefined || (b.startsWith('\u2581') && /[^\u2581]/.test(a))) return;
  }
  const bpe = tokenizer.model as unknown as { bpe?: (token: string) => string[] };
  if (typeof bpe.bpe !== 'function') return;
  const whole = bpe.bpe.bind(bpe);
  bpe.bpe = (token) => {
    const pieces = token.split(/(?<=[^\u2581])(?=\u2581)/);
    return pieces.length === 1 ? whole(token) : pieces.flatMap(whole);
  };
}

/** tokenizer_config `chat_template`: a string, or [{name, template}] (the "default" one, else the first). */
function chatTemplateSource(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const all = v.filter((t): t is { name?: unknown; template: string } =>
      !!t && typeof t === 'object' && typeof (t as { template?: unknown }).template === 'string');
    return (all.find((t) => t.name === 'default') ?? all[0])?.template ?? null;
  }
  return null;
}

export async function loadTokenizer(modelDir: string): Promise<ModelTokenizer> {
  const tokFile = path.join(modelDir, 'tokenizer.json');
  const tok = await readJson(tokFile, true);
  const tcfg = await readJson(path.join(modelDir, 'tokenizer_config.json'), false);
  const smap = await readJson(path.join(modelDir, 'special_tokens_map.json'), false);
  const cfgFile = path.join(modelDir, 'config.json');
  const cfg = await readJson(cfgFile, true);

  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(tok.json!, tcfg.json ?? {});
  } catch (err) {
    throw new HqError(`cannot load tokenizer.json: ${(err as Error).message}`, { file: tokFile },
      'the tokenizer type may not be supported by @huggingface/tokenizers (BPE, WordPiece, Unigram are)', { cause: err });
  }

  splitBpeWords(tokenizer, tok.json!);

  const special = (name: 'bos' | 'eos' | 'pad'): number | null => {
    for (const src of [tcfg.json, smap.json]) {
      const s = tokenString(src?.[`${name}_token`]);
      const id = s == null ? undefined : tokenizer.token_to_id(s);
      if (id !== undefined) return id;
    }
    return idValue(cfg.json![`${name}_token_id`]);
  };
  const eosId = special('eos');
  if (eosId == null) {
    throw new HqError('the tokenizer has no end-of-sequence token', { file: cfgFile },
      'set eos_token in tokenizer_config.json or eos_token_id in config.json');
  }
  const bosId = special('bos');
  const padId = special('pad') ?? eosId;

  const tokVocab = tokenizer.get_vocab(true);
  let maxId = -1;
  for (const id of tokVocab.values()) maxId = Math.max(maxId, id);
  const cfgVocab = cfg.json!.vocab_size;
  const vocabSize = typeof cfgVocab === 'number' && Number.isInteger(cfgVocab) ? cfgVocab : maxId + 1;
  if (maxId >= vocabSize) {
    throw new HqError(`tokenizer.json has token id ${maxId} but config.json vocab_size is ${vocabSize}`, { file: cfgFile },
      'the tokenizer does not belong to this model; use the tokenizer files from the same repository');
  }

  const jinjaFile = path.join(modelDir, 'chat_template.jinja');
  let jinja: Buffer | null = null;
  try {
    jinja = await readFile(jinjaFile);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw new HqError(`cannot read chat_template.jinja: ${(err as Error).message}`, { file: jinjaFile });
  }
  const vars: Record<string, string> = {};
  for (const name of ['bos', 'eos', 'pad', 'unk']) {
    const s = tokenString(tcfg.json?.[`${name}_token`]) ?? tokenString(smap.json?.[`${name}_token`]);
    if (s != null) vars[`${name}_token`] = s;
  }
  const cfgTemplate = chatTemplateSource(tcfg.json?.chat_template);
  const chatTemplate = jinja
    ? compileChatTemplate(jinja.toString('utf8'), vars, jinjaFile)
    : cfgTemplate != null ? compileChatTemplate(cfgTemplate, vars, path.join(modelDir, 'tokenizer_config.json')) : null;

  return {
    encode: (text) => (text.length === 0 ? [] : tokenizer.encode(text, { add_special_tokens: false }).ids),
    encodeWithSpecial: (text) => tokenizer.encode(text, { add_special_tokens: true }).ids,
    decode: (ids) => tokenizer.decode(ids, { skip_special_tokens: false }),
    chatTemplate,
    vocabSize,
    bosId,
    eosId,
    padId,
    sha256: createHash('sha256').update(tok.bytes!).digest('hex'),
    fingerprint: [tok.bytes!, tcfg.bytes ?? Buffer.alloc(0), smap.bytes ?? Buffer.alloc(0), jinja ?? Buffer.alloc(0)],
  };
}
