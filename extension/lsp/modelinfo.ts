// modelinfo.ts — what the language server needs to know about a Hugging Face model folder, read cheaply and cached
// by file mtimes: the architecture and dimensions from config.json, the weight files, and the tensor names (from
// model.safetensors.index.json, or from the JSON header of the single .safetensors file; never the weights).
import { closeSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import path from 'node:path';

import type { Dims } from './memory';

/** Architectures hqlora-train implements (native/src/model_config.cpp), with the projections of each layer. */
export const ARCHITECTURES: Readonly<Record<string, { attn: readonly string[]; mlp: readonly string[] }>> = {
  llama: { attn: ['q_proj', 'k_proj', 'v_proj', 'o_proj'], mlp: ['gate_proj', 'up_proj', 'down_proj'] },
  gemma: { attn: ['q_proj', 'k_proj', 'v_proj', 'o_proj'], mlp: ['gate_proj', 'up_proj', 'down_proj'] },
};

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
  dims: Dims;
  maxPositions: number | null;
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
      tied: typeof c.tie_word_embeddings === 'boolean' ? c.tie_word_embeddings : architecture === 'gemma',
    };
  } catch (err) {
    return { ok: false, file: configFile, problem: `${configFile}: ${(err as Error).message}` };
  }
  const files = readdirSync(dir);
  const weightFiles = files.filter((f) => f.endsWith('.safetensors')).sort();
  const info: ModelInfo = {
    dir,
    architecture,
    supported: architecture in ARCHITECTURES,
    dims,
    maxPositions: typeof c.max_position_embeddings === 'number' ? c.max_position_embeddings : null,
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
  return `model.layers.0.${block}.${m}.weight`;
}
