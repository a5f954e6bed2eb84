// verify.ts — verify.json of a GGUF export, from llama.cpp itself (node-llama-cpp 3.21.1 in the playground server
// process, llama/client.ts):
//   tokens   llama.cpp's ids of TOKEN_STRINGS (special tokens, unicode, whitespace runs; special tokens parsed, none
//            added) equal ours (extension/data/tokenizer.ts on tokenizer.json), id for id; and llama.cpp adds BOS
//            exactly when our data preparation does (whenever there is one). A tokenizer without byte fallback (the fixtures' character
//            vocabulary) cannot represent characters outside its vocabulary in llama.cpp (Hugging Face gives <unk>,
//            llama.cpp drops them): such strings are listed as skipped with that reason.
//   logits   teacher-forced next-token log-probabilities at every position of 3 fixed rows of 16 ids (verify_ids)
//            from llama.cpp against the log-softmax of our forward (node-llama-cpp exposes probabilities, not raw
//            logits, so both sides are centred by their logsumexp): merged GGUF vs our base + adapter, base GGUF vs
//            our base alone. K/V cache in f32.
//   adapter  base GGUF + LoRA GGUF in llama.cpp vs our base + adapter, and vs the merged GGUF in llama.cpp.
// Bounds (max |Δ log-prob|): f32 1e-3 (3e-3 for gemma2 / gemma3: logitBound); f16 / bf16 the f32 bound plus 3 × the
// change that rounding the weights to the type makes in our own forward (ROUNDING_FACTOR); q8_0 1e-1 (8-bit
// weights; measured values in verify.json).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { loadTokenizer } from '../data/tokenizer';
import type { CancelToken, ExportProgress, GgufExportReport, HqloraAddon, ReferenceLogits } from '../native/addon';
import { PlaygroundClient } from '../llama/client';
import type { LogitsCase, VerifyResult } from '../llama/protocol';

/** The fixed tokenization strings (the bos/eos texts of the model are added around one of them). */
export const TOKEN_STRINGS: readonly string[] = [
  'Hello world', 'hello world', ' leading space', '  two leading spaces', 'trailing spaces   ', 'a  b   c    d     e',
  'tabs\tand\t\ttabs', 'line one\nline two\n\nline four', '\n\n\n', '   \n   \n', '12345678901234567890',
  'punctuation: (a), [b]; {c}! "q" \'s', 'cfabz => dgbca', 'Shift each letter by one.',
  '\n\n### Instruction:\nShift each letter by one.\n\n### Response: dgbca',
  'ünïcödé naïve café', 'Ελληνικά и русский', '日本語のテキスト', 'emoji 🙂👍🏽', 'zero\u200bwidth', '',
];

/** Fixed bounds by type; f16 / bf16 are replaced by the rounding-derived bound (ROUNDING_FACTOR) whenever our rounded
 *  forward runs (every verified export), 3e-2 only names the figure. */
export const LOGIT_BOUNDS: Record<string, number> = { f32: 1e-3, f16: 3e-2, bf16: 3e-2, q8_0: 1e-1 };

/**
 * f32 bound of Gemma-2 and Gemma-3. llama.cpp's CPU GELU reads a table of f16 values at the f16-rounded input
 * (ggml-cpu vec.h, GGML_GELU_FP16: about 2^-11 relative), and these two families RMS-normalise the MLP's output
 * (post_ffw_norm) before adding it, so that rounding reaches the log-probabilities at full scale: 1.06e-3 (gemma2)
 * and 1.17e-3 (gemma3) on the fixtures, against 1.5e-5 for Gemma 1 (GELU, no post-norm) and 1e-6 for the SiLU
 * families. The table alone accounts for it: a float64 forward with the table emulated moves the fixtures' base by
 * max 8.9e-4 / 9.4e-4, mean 1.30e-4 / 1.55e-4, where llama.cpp's base GGUF measures mean 1.33e-4 / 1.64e-4
 * (test/reference/gguf_gelu_table.py). The bound is about 2.5 times the measured max.
 */
export const F32_POST_NORM_GELU_BOUND = 3e-3;

/** The max |Δ log-prob| bound of a GGUF type on an architecture (general.architecture). */
export function logitBound(type: string, architecture: string): number {
  const b = LOGIT_BOUNDS[type] ?? 1e-1;
  return type === 'f32' && (architecture === 'gemma2' || architecture === 'gemma3') ? Math.max(b, F32_POST_NORM_GELU_BOUND) : b;
}

export interface GgufVerification {
  status: 'pass' | 'fail' | 'skipped';
  reason?: string;
  engine?: { library: string; version: string; backend: string; note?: string };
  tokens?: {
    pass: boolean; compared: number; equal: number; add_bos: { ours: boolean; llama_cpp: boolean };
    mismatches: { text: string; ours: number[]; llama_cpp: number[] }[];
    skipped: { text: string; reason: string }[];
  };
  logits?: {
    compared_as: string; tolerance: number; positions: number;
    /** f16 / bf16: max |Δ log-prob| of our forward on the rounded weights vs unrounded; tolerance = f32_bound + factor × max. */
    rounding?: { type: string; merged: number; base?: number; factor: number; f32_bound: number };
    merged?: { max_abs_diff: number; mean_abs_diff: number; pass: boolean };
    base?: { max_abs_diff: number; mean_abs_diff: number; pass: boolean };
  };
  adapter?: {
    tolerance: number;
    vs_ours: { max_abs_diff: number; mean_abs_diff: number; pass: boolean };
    vs_merged_gguf?: { max_abs_diff: number; mean_abs_diff: number; pass: boolean; tolerance?: number };
  };
  elapsed_s?: number;
}

/**
 * f16 / bf16 exports: the bound is the f32 bound plus ROUNDING_FACTOR times s, the max |Δ log-prob| that rounding the
 * weights to the type makes in our own forward (the adapter merged and every 2-D weight rounded to nearest-even as
 * the file stores it, against the unrounded forward: ggufReferenceLogits round). Of llama.cpp's difference:
 *   - the weights: llama.cpp evaluates those very rounded values, so their share is our rounded forward's, <= s;
 *   - the activations: ggml's CPU matmul rounds its input to the weights' type too (vec_dot_type), an error of the
 *     same kind and size but another realization, whose max over the 48 × V entries can fall above ours: 2 s;
 *   - llama.cpp's own arithmetic: the f32 bound.
 * Measured: the 600-step demo (f16) s = 0.058, llama.cpp 0.0205 merged and 0.0307 base + LoRA, bound 0.175 (the mean
 * |Δ| 1.05e-3 equals our rounded forward's 1.05e-3: rounding is the whole difference); tiny-llama3 in bf16 s = 3.5e-3,
 * llama.cpp 7.6e-3 = 1e-3 + 1.9 s, bound 1.1e-2. The fixed 3e-2 this replaces was below the demo's 0.0307: a trained
 * model's logits are larger than the fixtures', and so is what rounding changes in them.
 * base + LoRA against the merged GGUF compares two llama.cpp results each within the bound of ours: twice the bound.
 */
export const ROUNDING_FACTOR = 3;

/** log-softmax of each row of `r.logits` (rows·seq × vocab). */
function logSoftmax(r: ReferenceLogits): Float32Array {
  const n = r.batch * r.seq;
  const out = new Float32Array(n * r.vocab);
  for (let i = 0; i < n; i++) {
    let m = -Infinity;
    for (let v = 0; v < r.vocab; v++) m = Math.max(m, r.logits[i * r.vocab + v] ?? 0);
    let s = 0;
    for (let v = 0; v < r.vocab; v++) s += Math.exp((r.logits[i * r.vocab + v] ?? 0) - m);
    const lse = m + Math.log(s);
    for (let v = 0; v < r.vocab; v++) out[i * r.vocab + v] = (r.logits[i * r.vocab + v] ?? 0) - lse;
  }
  return out;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
  return m;
}

function rows(r: ReferenceLogits): number[][] {
  return Array.from({ length: r.batch }, (_, b) => r.ids.slice(b * r.seq, (b + 1) * r.seq));
}

export interface VerifyGgufOptions {
  addon: HqloraAddon;
  packageRoot: string;
  /** Folder holding the report's files. */
  folder: string;
  report: GgufExportReport;
  cancel?: CancelToken;
  onProgress?: (p: ExportProgress) => void;
  onStatus?: (s: string) => void;
  /** An already running server to use (else one is started and ended here). */
  client?: PlaygroundClient;
}

export async function verifyGgufExport(o: VerifyGgufOptions): Promise<GgufVerification> {
  const t0 = Date.now();
  const rep = o.report;
  const f = rep.files;
  let tol = logitBound(rep.type, rep.architecture);
  let loraTol = logitBound(f.lora?.type ?? rep.type, rep.architecture);
  const rounds = rep.type === 'f16' || rep.type === 'bf16';
  if (rep.levels_used !== rep.levels.length) {
    return { status: 'skipped', reason: `a level subset (${rep.levels_used} of ${rep.levels.length}) is not verified` };
  }
  const client = o.client ?? new PlaygroundClient({ packageRoot: o.packageRoot });
  const poll = setInterval(() => { if (o.cancel?.cancelled) client.dispose(); }, 100);
  const scratch = await mkdtemp(path.join(tmpdir(), 'hqlora-gguf-verify-'));
  try {
    o.onProgress?.({ phase: 'verify', done: 0, total: 3, item: 'our forward (reference logits)' });
    const common = { source: rep.source, baseModel: rep.base_model, base: rep.base };
    const withAd = await o.addon.ggufReferenceLogits({ ...common, withAdapter: true });
    const baseOnly = f.base ? await o.addon.ggufReferenceLogits({ ...common, withAdapter: false }) : undefined;
    const lsAd = logSoftmax(withAd);
    const lsBase = baseOnly ? logSoftmax(baseOnly) : undefined;
    const refAd = path.join(scratch, 'merged.f32');
    await writeFile(refAd, Buffer.from(lsAd.buffer));
    const refBase = path.join(scratch, 'base.f32');
    if (lsBase) await writeFile(refBase, Buffer.from(lsBase.buffer));
    let rounding: NonNullable<GgufVerification['logits']>['rounding'];
    if (rounds) {
      const round = rep.type as 'f16' | 'bf16';
      const merged = maxAbsDiff(lsAd, logSoftmax(await o.addon.ggufReferenceLogits({ ...common, withAdapter: true, round })));
      const base = lsBase ? maxAbsDiff(lsBase, logSoftmax(await o.addon.ggufReferenceLogits({ ...common, withAdapter: false, round }))) : undefined;
      const f32Bound = logitBound('f32', rep.architecture);
      rounding = { type: round, merged, ...(base !== undefined ? { base } : {}), factor: ROUNDING_FACTOR, f32_bound: f32Bound };
      tol = f32Bound + ROUNDING_FACTOR * Math.max(merged, base ?? 0);
      loraTol = tol;
    }

    o.onProgress?.({ phase: 'verify', done: 1, total: 3, item: 'our tokenizer (tokenizer.json)' });
    const tok = await loadTokenizer(rep.base_model);
    const bosText = tok.bosId !== null ? tok.decode([tok.bosId]) : '';
    const eosText = tok.decode([tok.eosId]);
    const strings = [...TOKEN_STRINGS, `${bosText}special ${eosText} tokens${eosText}`];
    const compared: { text: string; ours: number[] }[] = [];
    const skipped: { text: string; reason: string }[] = [];
    const unk = rep.tokenizer?.unk ?? -1;
    for (const s of strings) {
      const ours = tok.encode(s);
      if (!rep.tokenizer?.byte_complete && unk >= 0 && ours.includes(unk)) {
        skipped.push({ text: s, reason: 'characters outside the vocabulary of a tokenizer without byte fallback (Hugging Face: <unk>, llama.cpp: dropped)' });
      } else compared.push({ text: s, ours });
    }
    // Our data preparation starts every sequence with BOS when the tokenizer has one (prepare.ts buildExample).
    const oursAddsBos = tok.bosId !== null;

    o.onStatus?.('starting llama.cpp (node-llama-cpp)');
    const hello = await client.start();
    o.onProgress?.({ phase: 'verify', done: 2, total: 3, item: `llama.cpp (${hello.backend})` });
    const ids = rows(withAd);
    const cases: LogitsCase[] = [];
    const file = (n: string): string => path.join(o.folder, n);
    if (f.merged) cases.push({ name: 'merged', model: file(f.merged.file), ids, referenceFile: refAd, vocab: withAd.vocab });
    if (f.base && baseOnly) cases.push({ name: 'base', model: file(f.base.file), ids, referenceFile: refBase, vocab: withAd.vocab });
    if (f.base && f.lora) {
      cases.push({
        name: 'base+lora', model: file(f.base.file), lora: file(f.lora.file), ids, referenceFile: refAd, vocab: withAd.vocab,
        ...(f.merged ? { compareTo: 'merged' } : {}),
      });
    }
    const tokenModel = f.merged ?? f.base;
    let res: VerifyResult;
    if (tokenModel) {
      res = await client.verify({ tokenizerModel: file(tokenModel.file), strings: compared.map((c) => c.text), cases });
    } else {
      res = { tokens: [], addBos: oursAddsBos, cases: [] };
    }
    o.onProgress?.({ phase: 'verify', done: 3, total: 3, item: 'compared' });

    const mismatches = compared.flatMap((c, i) => {
      const theirs = res.tokens[i] ?? [];
      return theirs.length === c.ours.length && theirs.every((t, k) => t === c.ours[k]) ? [] : [{ text: c.text, ours: c.ours, llama_cpp: theirs }];
    });
    const v: GgufVerification = {
      status: 'pass',
      engine: { library: 'node-llama-cpp', version: hello.nodeLlamaCppVersion, backend: hello.backend, ...(hello.note ? { note: hello.note } : {}) },
    };
    if (tokenModel) {
      v.tokens = {
        pass: mismatches.length === 0 && res.addBos === oursAddsBos, compared: compared.length,
        equal: compared.length - mismatches.length, add_bos: { ours: oursAddsBos, llama_cpp: res.addBos }, mismatches, skipped,
      };
    }
    const stat = (name: string, bound: number): { max_abs_diff: number; mean_abs_diff: number; pass: boolean } | undefined => {
      const c = res.cases.find((x) => x.name === name);
      return c ? { max_abs_diff: c.max_abs_diff, mean_abs_diff: c.mean_abs_diff, pass: c.max_abs_diff <= bound } : undefined;
    };
    const merged = stat('merged', tol);
    const base = stat('base', tol);
    v.logits = {
      compared_as: 'max |Δ log-probability| of the next token, every position and vocabulary entry (llama.cpp vs log-softmax of our forward)',
      tolerance: tol, positions: res.cases[0]?.positions ?? 0, ...(rounding ? { rounding } : {}), ...(merged ? { merged } : {}), ...(base ? { base } : {}),
    };
    const bl = res.cases.find((x) => x.name === 'base+lora');
    if (bl) {
      // Two llama.cpp results, each within the bound of ours (rounded types); f32: the bound itself, as before.
      const vsMergedTol = (rounds ? 2 : 1) * Math.max(tol, loraTol);
      v.adapter = {
        tolerance: Math.max(tol, loraTol),
        vs_ours: { max_abs_diff: bl.max_abs_diff, mean_abs_diff: bl.mean_abs_diff, pass: bl.max_abs_diff <= Math.max(tol, loraTol) },
        ...(bl.vs ? { vs_merged_gguf: { max_abs_diff: bl.vs.max_abs_diff, mean_abs_diff: bl.vs.mean_abs_diff, pass: bl.vs.max_abs_diff <= vsMergedTol, tolerance: vsMergedTol } } : {}),
      };
    }
    const passes = [v.tokens?.pass, merged?.pass, base?.pass, v.adapter?.vs_ours.pass, v.adapter?.vs_merged_gguf?.pass];
    v.status = passes.every((p) => p !== false) ? 'pass' : 'fail';
    v.elapsed_s = (Date.now() - t0) / 1000;
    return v;
  } finally {
    clearInterval(poll);
    if (!o.client) client.dispose();
    await rm(scratch, { recursive: true, force: true });
  }
}
