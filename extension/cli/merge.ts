// merge.ts — `hqlora merge | export | combine`: adapter export through the native addon (extension/native/addon.ts).
//   merge   <run | adapter-dir> [--rank N] [--out DIR]                      levels -> one flat PEFT LoRA
//   export  <run | adapter-dir> [--base original|dequantized] [--dtype bf16|fp16|fp32] [--out DIR]
//                                                                           adapter merged into a full HF model
//   combine <adapter...> --mode concat|linear|svd [--weights a,b,...] [--rank N] --out DIR
// Common: [--base-model DIR] [--force] [--no-verify] [--json]. A progress line goes to stderr; the verification
// summary (and verify.json next to the output) ends every export. Ctrl-C cancels: nothing is left under --out.
// Exit codes: 0 done (verification passed, skipped, or a lossy export within its tolerance), 1 error or a failed
// exact verification, 2 usage error, 3 cancelled.
import path from 'node:path';

import {
  type CancelToken, type ExportCommonOptions, type ExportProgress, type ExportReport, type HqloraAddon, isNativeError, loadAddon, toHqError,
} from '../native/addon';
import { type GgufExportResult, exportGgufVerified, ggufFolderName } from '../gguf/export';
import { HqError } from '../core/errors';
import { UsageError } from './args';

export const EXPORT_USAGE = `  hqlora merge <run-folder | adapter-folder> [--rank N] [--out DIR]
      Merge the hierarchical levels into one flat PEFT LoRA (exact: rank = Σ level ranks, lora_alpha = rank);
      --rank N < Σ ranks re-compresses each module by truncated SVD (reports retained energy and max error).
      Default --out: <run>/peft-merged (or <run>/peft-r<N>), else <adapter-folder>-peft.
  hqlora export <run-folder | adapter-folder> [--base original|dequantized] [--dtype bf16|fp16|fp32] [--out DIR]
                [--shard-mb N]
      Merge the adapter into the base weights: a complete Hugging Face model folder (config, tokenizer, sharded
      safetensors + index). --base dequantized (default) = the NF4 weights the adapter was trained on; original =
      the checkpoint's weights (the report gives the per-module gap). Default: bf16, <run>/merged-<base>-<dtype>.
  hqlora export <run-folder | adapter-folder> --format gguf [--type f32|f16|bf16|q8_0] [--base original|dequantized]
                [--levels N] [--out DIR]
      GGUF for llama.cpp, Ollama, LM Studio and node-llama-cpp: model-<type>.gguf (merged), base-<type>.gguf,
      adapter-<type>.gguf (LoRA: general.type adapter) and an Ollama Modelfile (FROM base + ADAPTER). verify.json
      comes from llama.cpp itself: tokenization equals tokenizer.json's, logits equal our forward (f32 <= 1e-3,
      f16/bf16 <= 3e-2, q8_0 <= 1e-1), base + LoRA equals the merged model. Default: f16,
      <run>/gguf-<base>-<type>. --levels N: the first N levels only (not verified).
  hqlora combine <adapter>... --mode concat|linear|svd [--weights w1,w2,...] [--rank N] --out DIR
      Combine several adapters into one flat PEFT LoRA: concat (exact weighted sum), linear (PEFT's, equal ranks),
      svd (weighted sum truncated to --rank, default the largest input rank).
  Common export options: --base-model DIR (default: from the adapter / run.json), --force (replace --out),
      --no-verify (skip the forward check), --json (print the report as JSON)
`;

const VALUE = new Set(['--rank', '--out', '--base', '--dtype', '--mode', '--weights', '--base-model', '--shard-mb', '--format',
  '--type', '--levels']);
const ALLOWED: Record<string, string[]> = {
  merge: ['--rank', '--out', '--base-model', '--force', '--no-verify', '--json'],
  export: ['--base', '--dtype', '--out', '--base-model', '--shard-mb', '--force', '--no-verify', '--json', '--format', '--type',
    '--levels'],
  combine: ['--mode', '--weights', '--rank', '--out', '--base-model', '--force', '--no-verify', '--json'],
};

interface ExportArgs {
  positionals: string[];
  flags: Map<string, string | true>;
}

/** Parses the words after the subcommand (its own flag set; `hqlora`'s parser does not know these flags). */
export function parseExportArgs(command: string, words: string[]): ExportArgs {
  const allowed = ALLOWED[command] ?? [];
  const flags = new Map<string, string | true>();
  const positionals: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const a = words[i] ?? '';
    if (!a.startsWith('--')) {
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq >= 0 ? a.slice(0, eq) : a;
    if (!allowed.includes(name)) throw new UsageError(`unknown option ${name} for hqlora ${command} (allowed: ${allowed.join(', ')})`);
    if (VALUE.has(name)) {
      const v = eq >= 0 ? a.slice(eq + 1) : words[++i];
      if (v === undefined || v === '') throw new UsageError(`${name} needs a value`);
      flags.set(name, v);
    } else {
      if (eq >= 0) throw new UsageError(`${name} takes no value`);
      flags.set(name, true);
    }
  }
  return { positionals, flags };
}

function str(a: ExportArgs, name: string): string | undefined {
  const v = a.flags.get(name);
  return typeof v === 'string' ? v : undefined;
}

function int(a: ExportArgs, name: string): number | undefined {
  const v = str(a, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`${name} must be a whole number, got "${v}"`);
  return Number(v);
}

function oneOf<T extends string>(a: ExportArgs, name: string, values: readonly T[], def: T): T {
  const v = str(a, name) ?? def;
  if (!(values as readonly string[]).includes(v)) throw new UsageError(`${name} must be one of ${values.join(', ')}, got "${v}"`);
  return v as T;
}

/** A run folder holds adapter/ (CONTRACTS §2); outputs then go inside it. */
function isRunFolder(p: string, exists: (f: string) => boolean): boolean {
  return exists(path.join(p, 'adapter', 'adapter.safetensors'));
}

/** One native export's cancel token (Ctrl-C trips it) and progress line; close() removes the SIGINT handler. */
function exportSession(addon: HqloraAddon): { token: CancelToken; prog: ReturnType<typeof progressPrinter>; close: () => void } {
  const token = new addon.CancelToken();
  const onSigint = (): void => {
    process.stderr.write('\nhqlora: cancelling (nothing will be left under the output folder)…\n');
    token.cancel();
  };
  process.once('SIGINT', onSigint);
  return { token, prog: progressPrinter(process.stderr), close: () => process.removeListener('SIGINT', onSigint) };
}

/** Progress on stderr: one rewritten line on a TTY, otherwise a line per phase (and per 25 % of it). */
function progressPrinter(stream: NodeJS.WriteStream): { onProgress: (p: ExportProgress) => void; end: () => void } {
  let lastPhase = '';
  let lastQuarter = -1;
  let open = false;
  return {
    onProgress: (p) => {
      const pct = p.total > 0 ? Math.floor((100 * p.done) / p.total) : 100;
      const line = `${p.phase.padEnd(7)} ${String(p.done).padStart(5)}/${p.total} ${String(pct).padStart(3)}%  ${p.item}`;
      if (stream.isTTY) {
        stream.write(`\r\x1b[K${line.slice(0, Math.max(20, (stream.columns || 100) - 1))}`);
        open = true;
        return;
      }
      const quarter = Math.floor(pct / 25);
      if (p.phase !== lastPhase || quarter !== lastQuarter) stream.write(`${line}\n`);
      lastPhase = p.phase;
      lastQuarter = quarter;
    },
    end: () => {
      if (open) stream.write('\r\x1b[K');
      open = false;
    },
  };
}

export interface ExportCommandOptions {
  command: 'merge' | 'export' | 'combine';
  words: string[];          // argv after the subcommand
  packageRoot: string;
  exists: (f: string) => boolean;
  addon?: HqloraAddon;      // injected by tests; default loadAddon(packageRoot)
}

/** `hqlora export --format gguf`: native GGUF writer + llama.cpp verification (extension/gguf/export.ts). */
async function ggufCommand(o: ExportCommandOptions, a: ExportArgs, common: ExportCommonOptions): Promise<number> {
  if (a.flags.has('--dtype') || a.flags.has('--shard-mb')) throw new UsageError('--dtype and --shard-mb are for --format hf; GGUF uses --type');
  if (a.positionals.length !== 1) throw new UsageError('hqlora export needs exactly one run or adapter folder');
  const source = path.resolve(a.positionals[0] ?? '');
  const run = isRunFolder(source, o.exists);
  if (!run && !o.exists(path.join(source, 'adapter.safetensors')) && !o.exists(path.join(source, 'adapter_config.json'))) {
    throw new HqError(`${source} holds no completed adapter (no adapter/adapter.safetensors, adapter.safetensors or adapter_config.json)`,
      { file: source }, 'wait for the run to complete (or resume it: hqlora run <config> --resume), then export');
  }
  const base = oneOf(a, '--base', ['dequantized', 'original'] as const, 'dequantized');
  const type = oneOf(a, '--type', ['f16', 'f32', 'bf16', 'q8_0'] as const, 'f16');
  const levels = int(a, '--levels') ?? 0;
  const out = path.resolve(str(a, '--out') ?? (run ? path.join(source, ggufFolderName(base, type, levels))
    : `${source}-${ggufFolderName(base, type, levels)}`));
  const addon = o.addon ?? loadAddon(o.packageRoot);
  const { token, prog, close } = exportSession(addon);
  let rep: GgufExportResult;
  try {
    rep = await exportGgufVerified({
      addon, packageRoot: o.packageRoot, cancel: token, onProgress: prog.onProgress,
      options: { ...common, out, source, base, type, levels },
    });
  } catch (e) {
    prog.end();
    if (token.cancelled || (isNativeError(e) && e.code === 'E_CANCELLED')) {
      process.stderr.write(`hqlora: export cancelled; nothing was written to ${out}\n`);
      return 3;
    }
    if (isNativeError(e)) throw toHqError(e);
    throw e;
  } finally {
    close();
  }
  prog.end();
  if (a.flags.has('--json')) process.stdout.write(`${JSON.stringify(rep, null, 2)}\n`);
  else process.stdout.write(`${ggufSummary(rep)}\nreport: ${path.join(rep.output, 'verify.json')}\n`);
  return rep.verification.status === 'fail' ? 1 : 0;
}

/** Human summary of a GGUF export: the files, then one line per llama.cpp check. */
export function ggufSummary(rep: GgufExportResult): string {
  const lines = [`export_gguf -> ${rep.output} (${rep.architecture}, ${rep.type}, base ${rep.base})`];
  for (const [k, f] of Object.entries(rep.files)) if (f) lines.push(`  ${k.padEnd(6)} ${f.file} (${(f.bytes / 1048576).toFixed(1)} MiB)`);
  const v = rep.verification;
  const st = v.status === 'pass' ? 'PASS' : v.status === 'fail' ? 'FAIL' : 'SKIPPED';
  lines.push(`verify: ${st}${v.engine ? ` (llama.cpp via node-llama-cpp ${v.engine.version}, ${v.engine.backend})` : ''}${v.reason ? ` (${v.reason})` : ''}`);
  if (v.tokens) lines.push(`  tokens  ${v.tokens.equal}/${v.tokens.compared} strings equal${v.tokens.skipped.length ? `, ${v.tokens.skipped.length} skipped (outside a byte-less vocabulary)` : ''}; BOS added: ours ${v.tokens.add_bos.ours}, llama.cpp ${v.tokens.add_bos.llama_cpp}`);
  const g = (x?: { max_abs_diff: number; pass: boolean }): string => (x ? `${x.max_abs_diff.toExponential(2)}${x.pass ? '' : ' (over)'}` : '-');
  if (v.logits) lines.push(`  logits  max |Δ log-prob| merged ${g(v.logits.merged)}, base ${g(v.logits.base)} (tolerance ${v.logits.tolerance})`);
  if (v.adapter) lines.push(`  adapter base+LoRA vs ours ${g(v.adapter.vs_ours)}, vs merged GGUF ${g(v.adapter.vs_merged_gguf)} (tolerance ${v.adapter.tolerance})`);
  for (const w of rep.warnings ?? []) lines.push(`warning: ${w}`);
  return lines.join('\n');
}

export async function exportCommand(o: ExportCommandOptions): Promise<number> {
  const a = parseExportArgs(o.command, o.words);
  const common: ExportCommonOptions = {
    out: '',
    overwrite: a.flags.has('--force'),
    verify: !a.flags.has('--no-verify'),
    ...(str(a, '--base-model') ? { baseModel: path.resolve(str(a, '--base-model') ?? '') } : {}),
  };
  const format = oneOf(a, '--format', ['hf', 'gguf'] as const, 'hf');
  if (o.command === 'export' && format === 'gguf') return ggufCommand(o, a, common);
  if (a.flags.has('--type') || a.flags.has('--levels')) throw new UsageError('--type and --levels are for --format gguf');
  const addon = o.addon ?? loadAddon(o.packageRoot);
  const { token, prog, close } = exportSession(addon);
  let rep: ExportReport;
  try {
    if (o.command === 'combine') {
      if (a.positionals.length < 1) throw new UsageError('hqlora combine needs one or more adapter folders');
      const out = str(a, '--out');
      if (!out) throw new UsageError('hqlora combine needs --out DIR');
      const weights = str(a, '--weights')?.split(',').map((w) => {
        if (!/^-?\d*\.?\d+(e-?\d+)?$/i.test(w.trim())) throw new UsageError(`--weights: "${w}" is not a number`);
        return Number(w);
      });
      rep = await addon.combine({
        ...common, out: path.resolve(out), cancel: token, sources: a.positionals.map((p) => path.resolve(p)),
        mode: oneOf(a, '--mode', ['concat', 'linear', 'svd'] as const, 'concat'),
        ...(weights ? { weights } : {}), rank: int(a, '--rank') ?? 0,
      }, prog.onProgress);
    } else {
      if (a.positionals.length !== 1) throw new UsageError(`hqlora ${o.command} needs exactly one run or adapter folder`);
      const source = path.resolve(a.positionals[0] ?? '');
      const run = isRunFolder(source, o.exists);
      if (o.command === 'merge') {
        const rank = int(a, '--rank') ?? 0;
        const name = rank > 0 ? `peft-r${rank}` : 'peft-merged';
        const out = path.resolve(str(a, '--out') ?? (run ? path.join(source, name) : `${source}-${rank > 0 ? `r${rank}` : 'peft'}`));
        rep = await addon.mergeLevels({ ...common, out, cancel: token, source, rank }, prog.onProgress);
      } else {
        const base = oneOf(a, '--base', ['dequantized', 'original'] as const, 'dequantized');
        const dtype = oneOf(a, '--dtype', ['bf16', 'fp16', 'fp32'] as const, 'bf16');
        const name = `merged-${base}-${dtype}`;
        const out = path.resolve(str(a, '--out') ?? (run ? path.join(source, name) : `${source}-${name}`));
        const shardMb = int(a, '--shard-mb');
        rep = await addon.mergeIntoBase({
          ...common, out, cancel: token, source, base, dtype, ...(shardMb ? { maxShardBytes: shardMb * 1024 * 1024 } : {}),
        }, prog.onProgress);
      }
    }
  } catch (e) {
    prog.end();
    if (isNativeError(e)) {
      if (e.code === 'E_CANCELLED') {
        process.stderr.write(`hqlora: ${e.message}\n`);
        return 3;
      }
      throw toHqError(e);
    }
    throw e;
  } finally {
    close();
  }
  prog.end();
  if (a.flags.has('--json')) process.stdout.write(`${JSON.stringify(rep, null, 2)}\n`);
  else process.stdout.write(`${addon.summary(rep)}\nreport: ${path.join(rep.output, 'verify.json')}\n`);
  const v = rep.verification;
  return v.status === 'fail' && v.exact ? 1 : 0;
}
