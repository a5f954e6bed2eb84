// pack.ts — sequence order and packing of a tokenized split (token arrays + example offsets).
//
// Group by length (QLoRA's group_by_length, transformers' LengthGroupedSampler): a seeded random permutation is cut
// into mega-batches of `groupSize` examples (transformers uses 50 x the batch size), each sorted longest first, so
// a micro-batch holds examples of similar length and wastes little padding. transformers measures the length in
// characters of input + output; here it is the token count. The order is written into the token file; the trainer
// must then keep the file order (run.json training.shuffle = false, set by the run module).
//
// Packing: consecutive sequences are concatenated while the total stays <= maxLen (greedy, in order); each token
// keeps its own example's mask, and the examples' offsets become the file's document offsets (token file version
// 2). The trainer then trains each document as if alone: a document mask (a token attends only to earlier tokens of
// its own document), RoPE positions from 0 per document, and no loss on a document's first token — transformers'
// padding-free packing (DataCollatorWithFlattening: position_ids per example, separator label -100, flash varlen).
// Each example starts with its own BOS. Fewer, fuller sequences: less padding and no wasted attention.
import type { TokenData } from './tokenfile';

/** A seeded permutation of 0..count-1: Fisher-Yates with a 32-bit xorshift seeded from `seed`. */
export function seededPermutation(count: number, seed: number): number[] {
  let x = (seed ^ 0x9e3779b9) >>> 0 || 1;
  const rand = (): number => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
  const idx = Array.from({ length: count }, (_, i) => i);
  for (let i = count - 1; i > 0; i--) {
    const j = rand() % (i + 1);
    [idx[i], idx[j]] = [idx[j]!, idx[i]!];
  }
  return idx;
}

/** Example order for group-by-length: seeded shuffle, then each mega-batch of `groupSize` sorted longest first. */
export function lengthGroupedOrder(lengths: number[], groupSize: number, seed: number): number[] {
  const perm = seededPermutation(lengths.length, seed);
  const out: number[] = [];
  for (let i = 0; i < perm.length; i += groupSize) {
    const mega = perm.slice(i, i + groupSize);
    // Stable: equal lengths keep their shuffled order.
    out.push(...mega.map((e, k) => [e, k] as const).sort((a, b) => lengths[b[0]]! - lengths[a[0]]! || a[1] - b[1]).map(([e]) => e));
  }
  return out;
}

/** The split with its examples in `order`. */
export function reorder(data: TokenData, order: number[]): TokenData {
  const ids = new Uint32Array(data.ids.length), mask = new Uint8Array(data.mask.length);
  const offsets = [0];
  let at = 0;
  for (const e of order) {
    const s = data.offsets[e]!, t = data.offsets[e + 1]!;
    ids.set(data.ids.subarray(s, t), at);
    mask.set(data.mask.subarray(s, t), at);
    at += t - s;
    offsets.push(at);
  }
  return { offsets, ids, mask };
}

/** Greedy packing in order: sequence boundaries are dropped while the packed length stays <= maxLen; they stay as documents. */
export function packSequences(data: TokenData, maxLen: number): TokenData {
  const offsets = [0];
  for (let e = 0; e + 1 < data.offsets.length; e++) {
    const end = data.offsets[e + 1]!;
    // The current pack is [offsets[-2], offsets[-1]); extend it over example e (drop the boundary) when it fits.
    if (offsets.length >= 2 && end - offsets[offsets.length - 2]! <= maxLen) offsets[offsets.length - 1] = end;
    else offsets.push(end);
  }
  return { offsets, ids: data.ids, mask: data.mask, documents: data.documents ?? [...data.offsets] };
}
