// addon.ts — the ONE require() site of hqlora.node (native/addon/addon.cpp) and its hand-written typed interface.
//
// Discovery order (STYLE §4): 1. env HQLORA_ADDON; 2. the bundled <packageRoot>/native/build/bin/hqlora.node;
// otherwise an HqError listing every path tried. Slow calls return Promises (AsyncWorker on the libuv pool); progress
// arrives through the optional callback (a ThreadSafeFunction); a CancelToken passed as `cancel` stops the work
// between modules/tensors and rejects with code E_CANCELLED. Rejections are NativeError: Error + code/where/hint.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import { HqError } from '../core/errors';

/** Where a native error is (hq::Where); only the known fields are present. */
export interface NativeWhere {
  file?: string;
  tensor?: string;
  key?: string;
  offset?: number;
  line?: number;
}

/** What a rejected addon promise carries (sent by addon.cpp to_js_error). */
export interface NativeError extends Error {
  code: string;   // E_IO | E_SAFETENSORS | E_SHAPE | E_CONFIG | E_CANCELLED | E_INTERNAL
  where: NativeWhere;
  hint: string;
}

/** One progress report, sent by the worker thread: phase "merge" | "write" | "verify" | "publish". */
export interface ExportProgress {
  phase: 'merge' | 'write' | 'verify' | 'publish';
  done: number;
  total: number;
  item: string;
}

export interface CancelToken {
  cancel(): void;
  readonly cancelled: boolean;
}

export interface QuantizationOptions {
  type: 'nf4' | 'none';
  double_quant?: boolean;
  blocksize?: number;
}

export interface ExportCommonOptions {
  /** Final output folder; built in a temp sibling and renamed when complete. */
  out: string;
  /** Replace an existing `out` (atomically); default false. */
  overwrite?: boolean;
  /** Base model folder; default from the adapter metadata / run.json. */
  baseModel?: string;
  /** Quantization the adapter was trained against; default from run.json, else NF4 + double quant, blocksize 64. */
  quantization?: QuantizationOptions;
  /** Forward-pass verification (default true). */
  verify?: boolean;
  /** Max |Δlogit| for exact fp32 exports (default 1e-5). */
  tolerance?: number;
  /** Max |Δlogit| for lossy exports: svd, linear (default 0.5). */
  lossyTolerance?: number;
  cancel?: CancelToken;
}

export interface MergeLevelsOptions extends ExportCommonOptions {
  /** Run folder, hierarchical adapter folder/file, or PEFT adapter folder. */
  source: string;
  /** 0 (default) = exact flat merge (rank = Σ level ranks); smaller = truncated SVD per module. */
  rank?: number;
}

export interface MergeIntoBaseOptions extends ExportCommonOptions {
  source: string;
  base?: 'original' | 'dequantized';
  dtype?: 'bf16' | 'fp16' | 'fp32';
  maxShardBytes?: number;
}

export interface CombineOptions extends ExportCommonOptions {
  sources: string[];
  mode?: 'concat' | 'linear' | 'svd';
  weights?: number[];
  rank?: number;
}

export interface GgufExportOptions extends ExportCommonOptions {
  /** Run folder or adapter folder. */
  source: string;
  base?: 'original' | 'dequantized';
  type?: 'f32' | 'f16' | 'bf16' | 'q8_0';
  /** Write the merged model GGUF (default true). */
  merged?: boolean;
  /** Write the base model GGUF (default true). */
  baseGguf?: boolean;
  /** Write the LoRA GGUF (default true). */
  lora?: boolean;
  /** Merge / LoRA of the first n levels (0 = all). */
  levels?: number;
}

/** One written GGUF file of a GGUF export (gguf_export.cpp `files`). */
export interface GgufFileInfo {
  file: string;
  bytes: number;
  type: string;
  rank?: number;
  alpha?: number;
}

/** The native part of a GGUF export's report (gguf_export.cpp); extension/gguf adds the llama.cpp verification. */
export interface GgufExportReport {
  operation: 'export_gguf';
  output: string;
  format: 'gguf';
  source: string;
  base_model: string;
  base: 'original' | 'dequantized';
  type: string;
  architecture: string;
  levels: { rank: number; alpha: number; scale: number }[];
  levels_used: number;
  files: { merged?: GgufFileInfo; base?: GgufFileInfo; lora?: GgufFileInfo };
  tokenizer?: {
    kind: 'spm' | 'bytelevel' | 'chars'; ggml_model: string; pre: string; bos: number; eos: number; unk: number; pad: number;
    add_bos: boolean; add_eos: boolean; add_space_prefix: boolean; chat_template: boolean; byte_complete: boolean;
  };
  verification: { status: string; reason?: string };
  /** What llama.cpp runs differently from the model (e.g. a sliding window its architecture lacks). */
  warnings?: string[];
  elapsed_s: number;
}

/** Our forward's logits on the fixed verification ids (gguf_export.h gguf_reference_logits). */
export interface ReferenceLogits {
  ids: number[];
  vocab: number;
  batch: number;
  seq: number;
  logits: number[];
}

/** verify.json (written next to every export; merge.h / export_verify.h). */
export interface Verification {
  status: 'pass' | 'fail' | 'skipped';
  reason?: string;
  reference: string;
  exported: string;
  exact: boolean;
  max_abs_diff?: number;
  mean_abs_diff?: number;
  tolerance?: number;
  ref_max_abs?: number;
  ids_shape?: [number, number];
  vs_trainer_nf4?: { max_abs_diff: number; mean_abs_diff: number };
}

export interface ExportReport {
  operation: 'merge_levels' | 'merge_into_base' | 'combine';
  output: string;
  format: 'peft' | 'hf-model';
  rank?: number;
  total_rank?: number;
  exact?: boolean;
  elapsed_s: number;
  verification: Verification;
  svd?: { min_retained_energy: number; max_abs_error: number };
  nf4_gap?: { max_abs: number; modules: { module: string; nf4_gap_max_abs: number; nf4_gap_mean_abs: number }[] };
  modules?: Record<string, number | string>[];
  [key: string]: unknown;
}

type ProgressFn = (p: ExportProgress) => void;

/** The addon's exports, exactly as addon.cpp Init sets them. */
export interface HqloraAddon {
  readonly version: string;
  CancelToken: new () => CancelToken;
  inspect(path: string): Record<string, unknown>;
  mergeLevels(opts: MergeLevelsOptions, onProgress?: ProgressFn): Promise<ExportReport>;
  mergeIntoBase(opts: MergeIntoBaseOptions, onProgress?: ProgressFn): Promise<ExportReport>;
  combine(opts: CombineOptions, onProgress?: ProgressFn): Promise<ExportReport>;
  /** Merged model, base and LoRA adapter as GGUF files (gguf_export.h); `out` is published when complete. */
  exportGguf(opts: GgufExportOptions, onProgress?: ProgressFn): Promise<GgufExportReport>;
  /** Our forward on the fixed verification ids: base (+ the adapter when withAdapter, default true); round: on what a GGUF
   *  of that type holds (adapter merged, 2-D weights rounded). */
  ggufReferenceLogits(opts: { source: string; baseModel?: string; base?: 'original' | 'dequantized'; withAdapter?: boolean; round?: 'f16' | 'bf16' }): Promise<ReferenceLogits>;
  /** One-line (two with verification) human summary of a report (merge.h export_summary). */
  summary(report: ExportReport): string;
}

export function bundledAddonPath(packageRoot: string): string {
  return path.join(packageRoot, 'native', 'build', 'bin', 'hqlora.node');
}

let cached: { file: string; addon: HqloraAddon } | undefined;

/** Loads hqlora.node once (env HQLORA_ADDON, then the bundled path). */
export function loadAddon(packageRoot: string, env: NodeJS.ProcessEnv = process.env): HqloraAddon {
  const tried: string[] = [];
  const candidates: [string, string][] = [];
  if (env.HQLORA_ADDON) candidates.push([path.resolve(env.HQLORA_ADDON), 'HQLORA_ADDON']);
  candidates.push([bundledAddonPath(packageRoot), 'bundled']);
  for (const [file, source] of candidates) {
    if (cached?.file === file) return cached.addon;
    if (!existsSync(file)) {
      tried.push(`${file} (${source}: not found)`);
      continue;
    }
    try {
      const addon = createRequire(__filename)(file) as HqloraAddon;
      cached = { file, addon };
      return addon;
    } catch (e) {
      tried.push(`${file} (${source}: ${(e as Error).message})`);
    }
  }
  throw new HqError(`the native addon hqlora.node could not be loaded; tried:\n  ${tried.join('\n  ')}`, {},
    'run `npm run build:native`, or set HQLORA_ADDON to a built hqlora.node');
}

/** True when `e` is a rejection from the addon (carries code and where). */
export function isNativeError(e: unknown): e is NativeError {
  return e instanceof Error && typeof (e as Partial<NativeError>).code === 'string' &&
    typeof (e as Partial<NativeError>).where === 'object';
}

/** A NativeError as the project's HqError (message with file/tensor, hint), for the CLI and notifications. */
export function toHqError(e: NativeError): HqError {
  const w = e.where;
  const where = [w.file, w.tensor ? `tensor ${w.tensor}` : '', w.key ? `key ${w.key}` : ''].filter(Boolean).join(', ');
  return new HqError(`${e.message}${where && !e.message.includes(where) ? ` (${where})` : ''} [${e.code}]`,
    w.file ? { file: w.file, ...(w.key ? { key: w.key } : {}) } : {}, e.hint, { cause: e });
}
