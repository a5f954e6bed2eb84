// modelinfo.ts — what the language server needs to know about a Hugging Face model folder, read cheaply and cached
// by file mtimes: the architecture and dimensions from config.json, the weight files, and the tensor names (from
// model.safetensors.index.json, or from the JSON header of the single .safetensors file; never the weights).
import { closeSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import path from 'node:path';

import { type ModelContext, modelContext } from '../core/truncation';
import type { Dims } from './memory';

const ATTN = ['q_proj', 'k_proj', 'v_proj', 'o_proj'] as const;
const MLP = ['gate_proj', 'up_proj', 'down_proj'] as const;
/**
 * Architectures (config.json model_type) hqlora-train implements (native/src/model_config.cpp), with the
 * projections of each layer. Phi-3 stores q/k/v in one qkv_proj and gate/up in one gate_up_proj; the adapters
 * still use the separate names (they adapt the rows of the fused weight), see `fused`.
 */
export const ARCHITECTURES: Readonly<Record<string, { attn: readonly string[]; mlp: readonly string[];
  fused?: Readonly<Record<string, string>>; tiedByDefault?: boolean } & Pick<Dims, 'qkvBias' | 'qkNorm' | 'sandwichNorm'>>> = {
  llama: { attn: ATTN, mlp: MLP },
  gemma: { attn: ATTN, mlp: MLP, tiedByDefault: true },
  qwen2: { attn: ATTN, mlp: MLP, qkvBias: true },
  qwen3: { attn: ATTN, mlp: MLP, qkNorm: true },
  mistral: { attn: ATTN, mlp: MLP },
  gemma2: { attn: ATTN, mlp: MLP, tiedByDefault: true, sandwichNorm: true },
  gemma3_text: { attn: ATTN, mlp: MLP, tiedByDefault: true, qkNorm: true, sandwichNorm: true },
  phi3: { attn: ATTN, mlp: MLP,
    fused: { q_proj: 'qkv_proj', k_proj: 'qkv_proj', v_proj: 'qkv_proj', gate_proj: 'gate_up_proj', up_proj: 'gate_up_proj' } },
};

/** The same words as the trainer's refusal (native/src/model_config.cpp supported_families). */
export const SUPPORTED_FAMILIES = 'supported model_type values: llama (LLaMA 1/2/3), gemma (Gemma 1), qwen2 (Qwen2/2.5), ' +
  'qwen3 (Qwen3 dense), mistral (Mistral), gemma2 (Gemma-2), gemma3_text (Gemma-3 text, Gemma3ForCausalLM), phi3 ' +
  '(Phi-3/3.5-mini)';

const ROPE_TYPES = new Set(['default', 'linear', 'llama3', 'longrope', 'su']);
const MOE_KEYS = ['num_experts', 'num_local_experts', 'n_routed_experts', 'moe_intermediate_size'];

/**
 * What the trainer refuses in config.json before loading weights (model_type, mixture-of-experts, a rope scaling
 * kind it lacks), as "config.json: <key>: <message>; <families>", or null.
 */
export function configProblem(c: Record<string, unknown>): { key: string; message: string } | null {
  const mt = typeof c.model_type === 'string' ? c.model_type : '';
  if (!(mt in ARCHITECTURES)) {
    return { key: 'model_type', message: `config.json: model_type: ${mt ? `model_type '${mt}' is not supported` : "config.json has no 'model_type'"}; ${SUPPORTED_FAMILIES}` };
  }
  for (const key of MOE_KEYS) {
    const v = c[key];
    if (v === undefined || v === null || (typeof v === 'number' && v <= 0)) continue;
    return { key, message: `config.json: ${key}: mixture-of-experts models ('${key}' = ${JSON.stringify(v)}) are not supported; only dense decoders are; ${SUPPORTED_FAMILIES}` };
  }
  for (const key of ['rope_scaling', 'rope_parameters']) {
    const r = c[key];
    if (!r || typeof r !== 'object' || Array.isArray(r)) continue;
    const objs = Object.values(r).every((v) => v !== null && typeof v === 'object' && !Array.isArray(v)) && Object.keys(r).length > 0
      ? Object.values(r) as Record<string, unknown>[] : [r as Record<string, unknown>];
    for (const o of objs) {
      const t = typeof o.rope_type === 'string' ? o.rope_type : typeof o.type === 'string' ? o.type : 'default';
      if (!ROPE_TYPES.has(t)) {
        return { key, message: `config.json: ${key}: rope scaling type '${t}' is not supported; supported: none/default, "linear", "llama3" (Llama 3.1+) and "longrope" (Phi-3); dynamic and yarn are not. ${SUPPORTED_FAMILIES}` };
      }
    }
  }
  return null;
}

/** The adapter-capable modules of an architecture, attention first. */
export function modulesOf(arch: string): string[] {
  const a = ARCHITECTURES[arch];
  return a ? [...a.attn, ...a.mlp] : [];
}

export interface ModelInfo {
  dir: string;
  /** config.json model_type. */
  architecture: string;
  supported: boolean;
  /** Why the trainer would refuse config.json (its own words), or null. */
  problem: string | null;
  dims: Dims;
  maxPositions: number | null;
  /** max_position_embeddings and rope scaling as the trainer reads them (core/truncation.ts). */
  context: ModelContext;
  /** .safetensors files of the folder. */
  weightFiles: string[];
  hasTokenizer: boolean;
  /** Every tensor name, or null when no weight file/index could be read. */
  tensors: Set<string> | null;
}

export type ModelInspection = { ok: true; info: ModelInfo } | { ok: false; problem: string; file?: string };

const MAX_JSON_BYTES = 64 << 20; // config.json and index files; real ones are a few kB to a few MB
const MAX_HEADER_BYTES = 100 << 20; // the safetensors format's own limit

const cache = new Map<string, { key: string; result: ModelInspection }>();

function fileKey(p: string): string {
  try {
    const st = statSync(p);
    return `${st.mtimeMs}:${st.size}`;
  } catch {
    return 'none';
  }
}

/** Inspects `dir` (cached until config.json, the index or the folder listing changes). */
export function inspectModel(dir: string): ModelInspection {
  const key = [dir, 'config.json', 'model.safetensors.index.json', 'model.safetensors', 'tokenizer.json']
    .map((f, i) => (i === 0 ? fileKey(f) : fileKey(path.join(dir, f)))).join('|');
  const hit = cache.get(dir);
  if (hit && hit.key === key) return hit.result;
  const result = inspectUncached(dir);
  if (cache.size > 64) cache.clear();
  cache.set(dir, { key, result });
  return result;
}

function readJson(file: string): unknown {
  const st = statSync(file);
  if (!st.isFile()) throw new Error(`${file} is not a file`);
  if (st.size > MAX_JSON_BYTES) throw new Error(`${file} is larger than ${MAX_JSON_BYTES >> 20} MiB`);
  return JSON.parse(readFileSync(file, 'utf8')) as unknown;
}

function num(obj: Record<string, unknown>, key: string, fallback?: number): number {
  const v = obj[key];
  if (typeof v === 'number' && Number.isFinite(v) && v > 0) return v;
  if (fallback !== undefined) return fallback;
  throw new Error(`config.json has no positive number "${key}"`);
}

function inspectUncached(dir: string): ModelInspection {
  let st;
  try {
    st = statSync(dir);
  } catch {
    return { ok: false, problem: `model folder not found: ${dir}` };
  }
  if (!st.isDirectory()) return { ok: false, problem: `the model must be a folder, not a file: ${dir}` };
  const configFile = path.join(dir, 'config.json');
  let cfg: unknown;
  try {
    cfg = readJson(configFile);
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    return { ok: false, file: configFile, problem: missing ? `the model folder has no config.json: ${dir}` : `cannot read ${configFile}: ${(err as Error).message}` };
  }
  if (!cfg || typeof cfg !== 'object' || Array.isArray(cfg)) return { ok: false, file: configFile, problem: `${configFile} is not a JSON object` };
  const c = cfg as Record<string, unknown>;
  const architecture = typeof c.model_type === 'string' ? c.model_type : '(none)';
  let dims: Dims;
  try {
    const hidden = num(c, 'hidden_size');
    const heads = num(c, 'num_attention_heads');
    dims = {
      hidden,
      intermediate: num(c, 'intermediate_size'),
      layers: num(c, 'num_hidden_layers'),
      heads,
      kvHeads: num(c, 'num_key_value_heads', heads),
      headDim: num(c, 'head_dim', Math.floor(hidden / heads)),
      vocab: num(c, 'vocab_size'),
      tied: typeof c.tie_word_embeddings === 'boolean' ? c.tie_word_embeddings : ARCHITECTURES[architecture]?.tiedByDefault === true,
      qkvBias: ARCHITECTURES[architecture]?.qkvBias === true,
      qkNorm: ARCHITECTURES[architecture]?.qkNorm === true,
      sandwichNorm: ARCHITECTURES[architecture]?.sandwichNorm === true,
    };
  } catch (err) {
    return { ok: false, file: configFile, problem: `${configFile}: ${(err as Error).message}` };
  }
  const files = readdirSync(dir);
  const weightFiles = files.filter((f) => f.endsWith('.safetensors')).sort();
  const info: ModelInfo = {
    dir,
    architecture,
    supported: architecture in ARCHITECTURES && configProblem(c) === null,
    problem: configProblem(c)?.message ?? null,
    dims,
    maxPositions: typeof c.max_position_embeddings === 'number' ? c.max_position_embeddings : null,
    context: modelContext(c),
    weightFiles,
    hasTokenizer: files.includes('tokenizer.json'),
    tensors: readTensorNames(dir, files, weightFiles),
  };
  return { ok: true, info };
}

function readTensorNames(dir: string, files: string[], weightFiles: string[]): Set<string> | null {
  try {
    if (files.includes('model.safetensors.index.json')) {
      const idx = readJson(path.join(dir, 'model.safetensors.index.json')) as { weight_map?: Record<string, unknown> };
      return idx.weight_map && typeof idx.weight_map === 'object' ? new Set(Object.keys(idx.weight_map)) : null;
    }
    if (weightFiles.length === 1) return new Set(Object.keys(readSafetensorsHeader(path.join(dir, weightFiles[0]!))).filter((k) => k !== '__metadata__'));
  } catch {
    return null; // the trainer's own parser reports broken weight files with offsets; here it only disables a check
  }
  return null;
}

/** The JSON header of a .safetensors file (u64 little-endian length, then that many bytes of JSON). */
export function readSafetensorsHeader(file: string): Record<string, unknown> {
  const fd = openSync(file, 'r');
  try {
    const len = Buffer.alloc(8);
    if (readSync(fd, len, 0, 8, 0) !== 8) throw new Error(`${file} is shorter than 8 bytes`);
    const n = len.readBigUInt64LE(0);
    if (n > BigInt(MAX_HEADER_BYTES)) throw new Error(`${file}: header length ${n} is over the 100 MB limit`);
    const buf = Buffer.alloc(Number(n));
    if (readSync(fd, buf, 0, buf.length, 8) !== buf.length) throw new Error(`${file}: truncated header`);
    const header = JSON.parse(buf.toString('utf8')) as unknown;
    if (!header || typeof header !== 'object' || Array.isArray(header)) throw new Error(`${file}: header is not a JSON object`);
    return header as Record<string, unknown>;
  } finally {
    closeSync(fd);
  }
}

/** The weight name of module `m` in layer 0, e.g. model.layers.0.self_attn.q_proj.weight. */
export function layerZeroWeight(arch: string, m: string): string {
  const a = ARCHITECTURES[arch];
  const block = a && a.mlp.includes(m) ? 'mlp' : 'self_attn';
  return `model.layers.0.${block}.${a?.fused?.[m] ?? m}.weight`;
}
