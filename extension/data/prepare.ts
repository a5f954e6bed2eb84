// prepare.ts — dataset + model tokenizer -> <outDir>/train.hqtok (+ eval.hqtok) + stats.json, shared by the CLI
// and the extension (job/job.ts). prepareData is the one driver of the pipeline, a stage per step:
//   read      the data files, each record's format detected (readSplits; reader.ts, formats.ts, oasst.ts)
//   cache     stats.json says the token files are of these files, tokenizer and settings: done (cachedResult)
//   split     the eval split: its own file, or a seeded holdout of the training examples (splitExamples)
//   tokenize  each example through its template (a QLoRA prompt, or the chat template, chat.ts) and the model's
//             tokenizer (tokenizer.ts), with its loss mask (tokenizeSplit)
//   pack      group-by-length order and packing of the training split (arrangeTrain; pack.ts)
//   write     the token files, then stats.json last (writeOutputs; tokenfile.ts)
//
// Masking is QLoRA's DataCollatorForCausalLM (trainer-anchors §2.3): source = BOS + prompt and target =
// output + EOS are tokenized separately without special tokens, truncated to source_max_len / target_max_len
// (keeping the first tokens, so a truncated target loses its EOS, as in qlora.py), and concatenated. The mask is
// 1 on the target and 0 on the source unless train_on_source.
//
// Chat examples (chat format, or OASST1 threads rendered as chat) are the model's chat template output with the
// loss on assistant turns (chat.ts), cut to source_max_len + target_max_len tokens. Then, for the training split
// only: optional group-by-length order and packing (pack.ts).
//
// Cache: stats.json records a sha256 over the data files' bytes, the tokenizer files and the settings. When it
// matches and the token files are there, nothing is re-tokenized (cached: true). stats.json is deleted first and
// written last, so it only ever describes complete token files.
import { createHash } from 'node:crypto';
import { mkdir, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';

import { HqError } from '../core/errors';
import { DEFAULT_MAX_LINE_BYTES } from './reader';
import { buildChatExample } from './chat';
import { type Example, type FormatSetting, type RecordFormat, readExamples } from './formats';
import { lengthGroupedOrder, packSequences, reorder, seededPermutation } from './pack';
import { cancelled, decodeTokenFile, type TokenData, writeFileAtomic, writeTokenFile } from './tokenfile';
import { type ModelTokenizer, loadTokenizer } from './tokenizer';

export interface DataSettings {
  train: string;
  eval?: string;
  format?: FormatSetting;
  sourceMaxLen: number;
  targetMaxLen: number;
  trainOnSource: boolean;
  /** Without `eval`: hold out this many training examples (seeded shuffle) for evaluation. */
  evalHoldout?: number;
  seed?: number;
  /** OASST1 export: 'best' (top-ranked thread per tree) or 'all' paths; root-language filter; training form. */
  oasstPaths?: 'best' | 'all';
  oasstLang?: string[] | null;
  oasstRender?: 'guanaco' | 'chat';
  /** Concatenate training examples into sequences of at most packMaxLen tokens (default source + target max). */
  packing?: boolean;
  packMaxLen?: number | null;
  /** Training examples ordered in length-sorted mega-batches of groupSize (seeded), as QLoRA's group_by_length. */
  groupByLength?: boolean;
  groupSize?: number;
  /** Longest accepted line of a data file, in bytes. */
  maxLineBytes?: number;
}

export interface PrepareProgress {
  phase: 'read' | 'tokenize' | 'write';
  done: number;
  total: number;
}

export interface SplitStats {
  examples: number;
  tokens: number;
  /** Tokens with mask 1. */
  target_tokens: number;
  /** 1 - target_tokens / tokens. */
  masked_fraction: number;
  truncated_source: number;
  truncated_target: number;
  /** Examples with a truncated source or target (a chat example cut at source + target max counts as target). */
  truncated: number;
  /** Sequences in the token file: examples, or fewer when packed. */
  sequences: number;
  max_length: number;
  mean_length: number;
  /** Example lengths in tokens (before packing): key "a-b" counts lengths a..b (power-of-two bins). */
  length_histogram: Record<string, number>;
}

export interface DataStats {
  cache_key: string;
  format: RecordFormat;
  train: SplitStats;
  eval: SplitStats | null;
  /** Where the eval split came from. */
  eval_source: 'file' | 'holdout' | 'none';
  settings: Required<Omit<DataSettings, 'eval' | 'packMaxLen' | 'oasstLang'>> &
    { eval: string | null; packMaxLen: number | null; oasstLang: string[] | null };
}

export interface PrepareResult {
  trainTokens: string;
  evalTokens?: string;
  stats: DataStats;
  cached: boolean;
}

// 3: packed files are version 2 (document offsets); a cached version-1 packed file would train across documents.
const CACHE_VERSION = 'hqlora-data-3';
const YIELD_EVERY = 256; // examples between event-loop yields (progress + abort)

/** Token ids and mask of one example, QLoRA style. */
export function buildExample(tok: Pick<ModelTokenizer, 'encode' | 'bosId' | 'eosId'>, ex: { source: string; target: string },
  s: Pick<DataSettings, 'sourceMaxLen' | 'targetMaxLen' | 'trainOnSource'>) {
  const srcFull = [...(tok.bosId != null ? [tok.bosId] : []), ...tok.encode(ex.source)];
  const tgtFull = [...tok.encode(ex.target), tok.eosId];
  const src = srcFull.slice(0, s.sourceMaxLen), tgt = tgtFull.slice(0, s.targetMaxLen);
  return {
    ids: [...src, ...tgt],
    mask: [...src.map(() => (s.trainOnSource ? 1 : 0)), ...tgt.map(() => 1)],
    truncatedSource: srcFull.length > src.length,
    truncatedTarget: tgtFull.length > tgt.length,
  };
}

function histogramKey(len: number): string {
  let hi = 1;
  while (hi < len) hi *= 2;
  const lo = hi === 1 ? 0 : hi / 2 + 1;
  return `${lo}-${hi}`;
}

/** Token ids and mask of any example: QLoRA pair masking, or the chat template with assistant-only loss. */
export function tokenizeExample(tok: ModelTokenizer, ex: Example, s: DataSettings) {
  if (ex.kind === 'pair') return buildExample(tok, ex, s);
  if (!tok.chatTemplate) {
    throw new HqError('chat examples need the model\'s chat template, and this model has none', { file: ex.file, line: ex.line },
      'use a model folder whose tokenizer_config.json has chat_template (or a chat_template.jinja file), or another format');
  }
  const built = buildChatExample(tok, tok.chatTemplate, ex.messages, { maxLen: s.sourceMaxLen + s.targetMaxLen, trainOnSource: s.trainOnSource },
    { file: ex.file, line: ex.line });
  return { ids: built.ids, mask: built.mask, truncatedSource: false, truncatedTarget: built.truncated };
}

async function tokenizeSplit(examples: Example[], tok: ModelTokenizer, s: DataSettings, progress: (n: number) => void,
  signal?: AbortSignal): Promise<{ data: TokenData; stats: SplitStats }> {
  const offsets = [0];
  const ids: number[] = [];
  const mask: number[] = [];
  let truncSrc = 0, truncTgt = 0, trunc = 0, maxLen = 0;
  const lengths: number[] = [];
  for (let i = 0; i < examples.length; i++) {
    if (i % YIELD_EVERY === 0) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (signal?.aborted) throw cancelled();
      progress(i);
    }
    const ex = examples[i]!;
    let built;
    try {
      built = tokenizeExample(tok, ex, s);
    } catch (err) {
      if (err instanceof HqError) throw err;
      throw new HqError(`cannot tokenize this example: ${(err as Error).message}`, { file: ex.file, line: ex.line },
        'check the text for unusual characters', { cause: err });
    }
    ids.push(...built.ids);
    mask.push(...built.mask);
    offsets.push(ids.length);
    lengths.push(built.ids.length);
    maxLen = Math.max(maxLen, built.ids.length);
    if (built.truncatedSource) truncSrc++;
    if (built.truncatedTarget) truncTgt++;
    if (built.truncatedSource || built.truncatedTarget) trunc++;
  }
  progress(examples.length);
  const histogram: Record<string, number> = {};
  for (const len of [...lengths].sort((a, b) => a - b)) {
    const k = histogramKey(len);
    histogram[k] = (histogram[k] ?? 0) + 1;
  }
  const targets = mask.reduce((a, b) => a + b, 0);
  return {
    data: { offsets, ids: Uint32Array.from(ids), mask: Uint8Array.from(mask) },
    stats: {
      examples: examples.length, tokens: ids.length, target_tokens: targets,
      masked_fraction: ids.length ? 1 - targets / ids.length : 0,
      truncated_source: truncSrc, truncated_target: truncTgt, truncated: trunc, sequences: examples.length, max_length: maxLen,
      mean_length: examples.length ? ids.length / examples.length : 0, length_histogram: histogram,
    },
  };
}

/** Deterministic held-out indices: the first `n` of a seeded permutation. */
export function holdoutIndices(count: number, n: number, seed: number): Set<number> {
  return new Set(seededPermutation(count, seed).slice(0, n));
}

/** Group-by-length order and packing of the training split (stats.sequences follows). */
function arrangeTrain(out: { data: TokenData; stats: SplitStats }, s: DataStats['settings']): void {
  if (s.groupByLength) {
    const lengths = out.data.offsets.slice(1).map((o, i) => o - out.data.offsets[i]!);
    out.data = reorder(out.data, lengthGroupedOrder(lengths, s.groupSize, s.seed));
  }
  if (s.packing) out.data = packSequences(out.data, s.packMaxLen ?? s.sourceMaxLen + s.targetMaxLen);
  out.stats.sequences = out.data.offsets.length - 1;
}

async function cacheKey(tok: ModelTokenizer, s: DataSettings, files: { train: string[]; eval: string[] }): Promise<string> {
  const h = createHash('sha256');
  // Paths are not part of the key (the file contents are); the seed only matters for a holdout split.
  const n = normalizedSettings(s);
  const seeded = n.evalHoldout > 0 || n.groupByLength;
  const settings = { ...n, train: undefined, eval: undefined, seed: seeded ? n.seed : 0 };
  h.update(JSON.stringify({ v: CACHE_VERSION, settings, vocab: tok.vocabSize, bos: tok.bosId, eos: tok.eosId, pad: tok.padId }));
  for (const part of tok.fingerprint) h.update(createHash('sha256').update(part).digest());
  for (const [split, list] of Object.entries(files)) {
    for (const f of list) {
      h.update(`${split}:${path.basename(f)}:`);
      h.update(createHash('sha256').update(await readFile(f)).digest());
    }
  }
  return h.digest('hex');
}

function normalizedSettings(s: DataSettings): DataStats['settings'] {
  return {
    train: s.train, eval: s.eval ?? null, format: s.format ?? 'auto', sourceMaxLen: s.sourceMaxLen,
    targetMaxLen: s.targetMaxLen, trainOnSource: s.trainOnSource, evalHoldout: s.eval ? 0 : s.evalHoldout ?? 0,
    seed: s.seed ?? 0, oasstPaths: s.oasstPaths ?? 'best', oasstLang: s.oasstLang ?? null, oasstRender: s.oasstRender ?? 'guanaco',
    packing: s.packing ?? false, packMaxLen: s.packMaxLen ?? null, groupByLength: s.groupByLength ?? false,
    groupSize: s.groupSize ?? 50, maxLineBytes: s.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES,
  };
}

/** The cached result in `outDir` when its stats.json has `key` and its token files parse. */
async function cachedResult(outDir: string, key: string, paths: { train: string; eval: string; stats: string }):
  Promise<PrepareResult | null> {
  try {
    const stats = JSON.parse(await readFile(paths.stats, 'utf8')) as DataStats;
    if (stats.cache_key !== key) return null;
    decodeTokenFile(await readFile(paths.train), paths.train);
    if (stats.eval) decodeTokenFile(await readFile(paths.eval), paths.eval);
    return { trainTokens: paths.train, ...(stats.eval ? { evalTokens: paths.eval } : {}), stats, cached: true };
  } catch {
    return null; // missing or unreadable: prepare again
  }
}

function checkSettings(s: DataSettings): void {
  for (const key of ['sourceMaxLen', 'targetMaxLen'] as const) {
    if (!Number.isInteger(s[key]) || s[key] < 1) {
      throw new HqError(`${key} must be a positive integer, got ${s[key]}`, { key: key === 'sourceMaxLen' ? 'data.source_max_len' : 'data.target_max_len' });
    }
  }
  if (s.evalHoldout != null && (!Number.isInteger(s.evalHoldout) || s.evalHoldout < 0)) {
    throw new HqError(`eval_holdout must be a non-negative integer, got ${s.evalHoldout}`, { key: 'data.eval_holdout' });
  }
  const maxLen = s.sourceMaxLen + s.targetMaxLen;
  if (s.packMaxLen != null && (!Number.isInteger(s.packMaxLen) || s.packMaxLen < 1 || s.packMaxLen > maxLen)) {
    throw new HqError(`pack_max_len must be an integer from 1 to source_max_len + target_max_len = ${maxLen}, got ${s.packMaxLen}`,
      { key: 'data.pack_max_len' }, 'the trainer cuts every sequence at source_max_len + target_max_len tokens, so a longer pack would lose its end');
  }
  if (s.groupSize != null && (!Number.isInteger(s.groupSize) || s.groupSize < 1)) {
    throw new HqError(`group_size must be a positive integer, got ${s.groupSize}`, { key: 'data.group_size' });
  }
}

export async function prepareData(modelDir: string, data: DataSettings, outDir: string,
  opts: { onProgress?: (p: PrepareProgress) => void; signal?: AbortSignal } = {}): Promise<PrepareResult> {
  const { onProgress, signal } = opts;
  checkSettings(data);
  if (signal?.aborted) throw cancelled();
  const tok = await loadTokenizer(modelDir);
  const paths = { train: path.join(outDir, 'train.hqtok'), eval: path.join(outDir, 'eval.hqtok'), stats: path.join(outDir, 'stats.json') };

  const { train, evalRead } = await readSplits(data, onProgress);
  if (signal?.aborted) throw cancelled();

  const key = await cacheKey(tok, data, { train: train.files, eval: evalRead?.files ?? [] });
  const hit = await cachedResult(outDir, key, paths);
  if (hit) return hit;

  const { trainExamples, evalExamples } = splitExamples(train.examples, evalRead?.examples ?? null, data);

  const total = trainExamples.length + evalExamples.length;
  const report = (base: number) => (n: number) => onProgress?.({ phase: 'tokenize', done: base + n, total });
  const trainOut = await tokenizeSplit(trainExamples, tok, data, report(0), signal);
  const evalOut = evalExamples.length ? await tokenizeSplit(evalExamples, tok, data, report(trainExamples.length), signal) : null;
  if (signal?.aborted) throw cancelled();

  const settings = normalizedSettings(data);
  arrangeTrain(trainOut, settings);
  const stats: DataStats = {
    cache_key: key, format: train.format, train: trainOut.stats, eval: evalOut?.stats ?? null,
    eval_source: evalRead ? 'file' : evalOut ? 'holdout' : 'none', settings,
  };
  const header = (files: string[]) => ({
    format: 'hqtok' as const, vocab_size: tok.vocabSize, bos_id: tok.bosId, eos_id: tok.eosId,
    pad_id: tok.padId, tokenizer_sha256: tok.sha256, source: { files, format: train.format }, created_by: 'hqlora data/prepare.ts',
  });

  await writeOutputs(outDir, paths, { train: header(train.files), eval: header(evalRead?.files ?? train.files) },
    { train: trainOut.data, eval: evalOut?.data ?? null }, stats, onProgress, signal);
  return { trainTokens: paths.train, ...(evalOut ? { evalTokens: paths.eval } : {}), stats, cached: false };
}

type ReadResult = Awaited<ReturnType<typeof readExamples>>;
type Header = Parameters<typeof writeTokenFile>[1];

/** read: the training data and the eval file (if any), in one record format (the eval file must match). */
async function readSplits(data: DataSettings, onProgress?: (p: PrepareProgress) => void):
  Promise<{ train: ReadResult; evalRead: ReadResult | null }> {
  onProgress?.({ phase: 'read', done: 0, total: data.eval ? 2 : 1 });
  const readOpts = (format: FormatSetting) => ({
    format, maxLineBytes: data.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES,
    oasst: { paths: data.oasstPaths ?? 'best', lang: data.oasstLang ?? null, render: data.oasstRender ?? 'guanaco' },
  });
  const train = await readExamples(data.train, readOpts(data.format ?? 'auto'));
  const evalRead = data.eval ? await readExamples(data.eval, readOpts(data.format ?? train.format)) : null;
  if (evalRead && evalRead.format !== train.format) {
    throw new HqError(`eval data is ${evalRead.format} but train data is ${train.format}`, { file: evalRead.files[0]! },
      'use the same record format for both, or set data.format');
  }
  onProgress?.({ phase: 'read', done: data.eval ? 2 : 1, total: data.eval ? 2 : 1 });
  return { train, evalRead };
}

/** split: the eval examples are the eval file's, else a seeded holdout of eval_holdout training examples. */
function splitExamples(train: Example[], evalFile: Example[] | null, data: DataSettings): { trainExamples: Example[]; evalExamples: Example[] } {
  const holdout = data.eval ? 0 : data.evalHoldout ?? 0;
  if (holdout <= 0) return { trainExamples: train, evalExamples: evalFile ?? [] };
  if (holdout >= train.length) {
    throw new HqError(`eval_holdout ${holdout} leaves no training examples (the data has ${train.length})`,
      { key: 'data.eval_holdout' }, 'hold out fewer examples or give a separate data.eval file');
  }
  const held = holdoutIndices(train.length, holdout, data.seed ?? 0);
  return { trainExamples: train.filter((_, i) => !held.has(i)), evalExamples: train.filter((_, i) => held.has(i)) };
}

/**
 * write: the token files, then stats.json last (deleted first: stale stats must never vouch for new token files);
 * without an eval split an old eval.hqtok is removed. A failure removes the token files this call wrote.
 */
async function writeOutputs(outDir: string, paths: { train: string; eval: string; stats: string }, headers: { train: Header; eval: Header },
  data: { train: TokenData; eval: TokenData | null }, stats: DataStats, onProgress?: (p: PrepareProgress) => void,
  signal?: AbortSignal): Promise<void> {
  await mkdir(outDir, { recursive: true });
  const written: string[] = [];
  const steps = data.eval ? 3 : 2;
  try {
    await unlink(paths.stats).catch(() => undefined);
    onProgress?.({ phase: 'write', done: 0, total: steps });
    await writeTokenFile(paths.train, headers.train, data.train, signal);
    written.push(paths.train);
    onProgress?.({ phase: 'write', done: 1, total: steps });
    if (data.eval) {
      await writeTokenFile(paths.eval, headers.eval, data.eval, signal);
      written.push(paths.eval);
      onProgress?.({ phase: 'write', done: 2, total: steps });
    } else {
      await unlink(paths.eval).catch(() => undefined);
    }
    await writeFileAtomic(paths.stats, Buffer.from(JSON.stringify(stats, null, 2) + '\n'), signal);
    onProgress?.({ phase: 'write', done: steps, total: steps });
  } catch (err) {
    for (const f of written) await unlink(f).catch(() => undefined);
    throw err;
  }
}
