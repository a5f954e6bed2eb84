// memory.ts — parameter counts and the training-memory estimate the language server shows and checks, plus the GPU
// memory it is compared with (nvidia-smi). Pure arithmetic except detectGpus.
//
// Estimate (bytes), for a LLaMA/Gemma decoder with L layers, hidden h, MLP width i, q width hq = heads·head_dim,
// kv width hkv = kv_heads·head_dim, vocabulary V, micro batch B, sequence length T = source_max_len + target_max_len:
//   base weights   targeted projections at NF4 bits/param (4 + 8/blocksize + 32/(blocksize·256) with double quant,
//                  4 + 32/blocksize without: 4.127 for blocksize 64 + double quant); every other weight (embedding,
//                  untargeted projections, norms, lm_head unless tied) at the compute dtype (2 B bf16, 4 B fp32)
//   adapters       P trainable params (Σ levels r_j·(in+out) over targeted modules and layers) × 4 B (fp32 master)
//   optimizer      AdamW m and v: 2 × 4 B × P
//   gradients      4 B × P
//   activations    per layer per token, stored for backward: 4h (residual, two norm outputs, attn out) + 2hq (q, attn
//                  context) + 2hkv (k, v) + 4i (gate, up, act, product) + heads (the attention's log-sum-exp: the CPU
//                  attention keeps no T × T probabilities, its backward recomputes them from q, k and the lse, so its
//                  memory is O(T)) + 7R (x·Aᵀ per module); with gradient checkpointing only h per layer (the layer
//                  input) is kept, plus one layer's full set during its recompute; all × compute bytes × B·T, plus
//                  fp32 logits and their gradient (2 × 4 B × B·T·V) and the attention's per-thread score rows
//                  (2 × 64 query rows × T keys × 4 B per thread, counted for 64 threads)
//   runtime        nothing on the CPU
// That is the CPU backend's (fp32) picture. On CUDA the estimate follows the CUDA backend's own buffers instead
// (cudaEstimate below, calibrated against nvidia-smi on an H200). It is an estimate: allocator fragmentation is not
// modelled.
import { execFile } from 'node:child_process';

export interface Dims {
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
  /** lm_head shares the embedding matrix. */
  tied: boolean;
  /** The family's extra weights (modelinfo.ts ARCHITECTURES; absent: none, as LLaMA): q/k/v biases (Qwen2),
   * an RMSNorm over head_dim on q and on k (Qwen3, Gemma-3), post-attention and pre/post-feed-forward norms
   * (Gemma-2/3: 4 norms a layer instead of 2). */
  qkvBias?: boolean;
  qkNorm?: boolean;
  sandwichNorm?: boolean;
}

/** [in, out] of one projection. */
export function moduleShape(d: Dims, m: string): [number, number] {
  const hq = d.heads * d.headDim;
  const hkv = d.kvHeads * d.headDim;
  switch (m) {
    case 'q_proj': return [d.hidden, hq];
    case 'k_proj':
    case 'v_proj': return [d.hidden, hkv];
    case 'o_proj': return [hq, d.hidden];
    case 'gate_proj':
    case 'up_proj': return [d.hidden, d.intermediate];
    case 'down_proj': return [d.intermediate, d.hidden];
    default: throw new Error(`unknown module ${m}`);
  }
}

export const ALL_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

/** Trainable parameters of each level (rank r: r·(in+out) per targeted module per layer) and their total. */
export function trainableParams(d: Dims, modules: readonly string[], ranks: readonly number[]): { perLevel: number[]; total: number } {
  const perRank = d.layers * modules.reduce((s, m) => s + moduleShape(d, m).reduce((a, b) => a + b, 0), 0);
  const perLevel = ranks.map((r) => r * perRank);
  return { perLevel, total: perLevel.reduce((a, b) => a + b, 0) };
}

/** Base-model parameters: all of them (as hqlora-train counts them: the start event's params.total minus the
 * adapters), and those of the targeted projections (which NF4 quantizes). */
export function baseParams(d: Dims, modules: readonly string[]): { total: number; targeted: number } {
  const proj = (ms: readonly string[]): number => d.layers * ms.reduce((s, m) => s + moduleShape(d, m)[0] * moduleShape(d, m)[1], 0);
  const embed = d.vocab * d.hidden;
  const perLayer = (d.sandwichNorm ? 4 : 2) * d.hidden + (d.qkNorm ? 2 * d.headDim : 0) +
    (d.qkvBias ? (d.heads + 2 * d.kvHeads) * d.headDim : 0);
  const norms = d.layers * perLayer + d.hidden;
  return { total: proj(ALL_MODULES) + embed * (d.tied ? 1 : 2) + norms, targeted: proj(modules) };
}

/** Storage bits per NF4-quantized weight, with the block scales (and their 8-bit second-level quantization). */
export function nf4BitsPerParam(blocksize: number, doubleQuant: boolean): number {
  return doubleQuant ? 4 + 8 / blocksize + 32 / (blocksize * 256) : 4 + 32 / blocksize;
}

export interface MemoryInputs {
  dims: Dims;
  modules: readonly string[];
  ranks: readonly number[];
  quant: { type: 'nf4' | 'none'; blocksize: number; doubleQuant: boolean };
  /** Bytes per element of the compute dtype (2 = bfloat16, 4 = float32). */
  computeBytes: number;
  microBatch: number;
  seqLen: number;
  checkpointing: boolean;
  cuda: boolean;
  /**
   * CUDA only: the attention is the fused flash kernel (native/cuda/flash_attention.cu, issue 17), which keeps q, k,
   * v, out and a [B, H, T] fp32 log-sum-exp per layer and no T × T scores, so attention memory is O(T). False (the
   * default): the batched-GEMM attention of gpu_attention.cu, whose fp32 scores of a chunk of kv groups are
   * materialised (O(T²) up to its 256 MiB chunk). Unset: what the trainer picks, flash wherever head_dim is one
   * the kernel is built for (FLASH_HEAD_DIMS), the batched GEMMs otherwise (gpu_attention.cu attention_kernel).
   */
  flashAttention?: boolean;
}

export interface MemoryEstimate {
  weights: number;
  adapters: number;
  optimizer: number;
  gradients: number;
  activations: number;
  runtime: number;
  total: number;
  trainable: number;
}

export const CUDA_RUNTIME_BYTES = 512 * 2 ** 20;

/** The head sizes native/cuda/flash_attention.cu is built for (flash_supported in gpu_attention.cu). */
export const FLASH_HEAD_DIMS: readonly number[] = [16, 32, 64, 96, 128, 256];

export function estimateMemory(x: MemoryInputs): MemoryEstimate {
  const d = x.dims;
  const base = baseParams(d, x.modules);
  const quantized = x.quant.type === 'nf4' ? base.targeted : 0;
  const weights = (quantized * nf4BitsPerParam(x.quant.blocksize, x.quant.doubleQuant)) / 8 + (base.total - quantized) * x.computeBytes;
  const trainable = trainableParams(d, x.modules, x.ranks).total;
  if (x.cuda) return withTotal({ ...cudaEstimate(x, trainable), weights, trainable });
  const R = x.ranks.reduce((a, b) => a + b, 0);
  const tokens = x.microBatch * x.seqLen;
  const hq = d.heads * d.headDim;
  const hkv = d.kvHeads * d.headDim;
  const perLayerToken = 4 * d.hidden + 2 * hq + 2 * hkv + 4 * d.intermediate + d.heads + x.modules.length * R;
  const stored = x.checkpointing ? d.layers * d.hidden + perLayerToken : d.layers * perLayerToken;
  const scoreRows = 64 * 2 * 64 * x.seqLen * 4; // attention.cpp: P and dP [64, T] per thread
  const activations = stored * x.computeBytes * tokens + 2 * 4 * tokens * d.vocab + scoreRows;
  return withTotal({ weights, adapters: 4 * trainable, optimizer: 8 * trainable, gradients: 4 * trainable, activations, runtime: 0, trainable });
}

function withTotal(e: Omit<MemoryEstimate, 'total'>): MemoryEstimate {
  return { ...e, total: e.weights + e.adapters + e.optimizer + e.gradients + e.activations + e.runtime };
}

/** cuBLASLt workspace of the CUDA backend (native/cuda/gemm.h). */
export const CUBLASLT_WORKSPACE_BYTES = 64 * 2 ** 20;

/**
 * The CUDA backend's buffers (native/cuda/cuda_model.cpp), per token N = B·T, for everything but the weights:
 *   adapters: fp32 master + bf16 shadow (6 B/param); gradients fp32; AdamW moments fp32.
 *   kept per layer for the backward: the layer input and xmid (fp32), q, k, v and the attention output (bf16), gate
 *   and up (bf16), the adapter products z (bf16, R per module): 8h + 4hq + 4hkv + 4i + 2·modules·R bytes (the normed
 *   inputs, probabilities and MLP hidden are recomputed). With checkpointing only the fp32 layer inputs are kept,
 *   plus one layer's set.
 *   one layer's scratch: gradients of the residual stream and projections (fp32), layout copies: 28h + 6i + 12hq +
 *   12hkv bytes; one group's output gradients side by side with the adapters' du (bf16: q|k|v, gate|up, o or down,
 *   each plus R per adapted module); attention over one chunk of kv groups whose fp32 scores fit 256 MiB (S fp32,
 *   P and dS bf16) plus O / dO (bf16); the stacked dequantized weights of the largest group with the adapters' A rows
 *   (bf16); the loss chunk of min(N, 64 MiB / 4V) rows: fp32 logits + bf16 gradient.
 *   runtime: the CUDA context (~512 MiB) and the cuBLASLt workspace.
 * Calibrated against nvidia-smi on an H200 (bench/gpu/results/*-2026-11-28b-*): LLaMA-2-7B, 4 × 512 tokens,
 * levels 32,8,8,8,8: 14.89 GiB without and 9.26 GiB with gradient checkpointing (test/lsp/units.test.ts).
 */
function cudaEstimate(x: MemoryInputs, trainable: number): Omit<MemoryEstimate, 'total' | 'weights' | 'trainable'> {
  const d = x.dims;
  const flash = x.flashAttention ?? FLASH_HEAD_DIMS.includes(d.headDim);
  const R = x.ranks.reduce((a, b) => a + b, 0);
  const N = x.microBatch * x.seqLen;
  const hq = d.heads * d.headDim;
  const hkv = d.kvHeads * d.headDim;
  // Flash attention also keeps its fp32 log-sum-exp per head: 4·heads bytes per token.
  const kept = 8 * d.hidden + 4 * hq + 4 * hkv + 4 * d.intermediate + 2 * x.modules.length * R + 8 + (flash ? 4 * d.heads : 0);
  const stored = x.checkpointing ? (d.layers + 1) * 4 * d.hidden + (kept - 4 * d.hidden) : d.layers * kept + 4 * d.hidden;
  const scratch = 28 * d.hidden + 6 * d.intermediate + 12 * hq + 12 * hkv;
  // native/cuda/cuda_model.cpp group_backward: the projections that share an input, their adapters' A rows stacked.
  const groups: [string, ...string[]][] = [['q_proj', 'k_proj', 'v_proj'], ['o_proj'], ['gate_proj', 'up_proj'], ['down_proj']];
  let maxCols = 0;
  let maxStacked = 0;
  for (const g of groups) {
    const cols = g.reduce((a, m) => a + moduleShape(d, m)[1] + (x.modules.includes(m) ? R : 0), 0);
    maxCols = Math.max(maxCols, cols);
    maxStacked = Math.max(maxStacked, cols * moduleShape(d, g[0])[0]);
  }
  // native/cuda/gpu_attention.cu: kv groups per chunk so that the chunk's fp32 scores fit 256 MiB.
  const G = d.heads / d.kvHeads;
  const perGroup = G * x.seqLen * x.seqLen;
  const attnChunk = flash ? 0
    : Math.min(Math.max(1, Math.floor((256 * 2 ** 20) / (4 * perGroup))), x.microBatch * d.kvHeads) * perGroup;
  const chunk = Math.min(N, 4096, Math.max(16, Math.floor((64 * 2 ** 20) / (4 * d.vocab))));
  const activations = (stored + scratch + 2 * maxCols + 2 * hq) * N + 8 * attnChunk + 2 * maxStacked + chunk * d.vocab * 6;
  return { adapters: 6 * trainable, optimizer: 8 * trainable, gradients: 4 * trainable, activations,
    runtime: CUDA_RUNTIME_BYTES + CUBLASLT_WORKSPACE_BYTES };
}

/** `1.23 GiB`, `512 MiB`, `12 KiB`. */
export function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${(n / 1024).toFixed(1)} KiB`;
}

/** `1.2B`, `4.5M`, `12.3K`, `512`. */
export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

export interface GpuInfo {
  index: number;
  name: string;
  totalBytes: number;
}

/** Parses `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits` (MiB). */
export function parseNvidiaSmi(out: string): GpuInfo[] {
  const gpus: GpuInfo[] = [];
  for (const line of out.split('\n')) {
    const parts = line.split(',').map((s) => s.trim());
    if (parts.length < 3) continue;
    const index = Number(parts[0]);
    const mib = Number(parts[parts.length - 1]);
    if (!Number.isInteger(index) || !Number.isFinite(mib)) continue;
    gpus.push({ index, name: parts.slice(1, -1).join(','), totalBytes: mib * 2 ** 20 });
  }
  return gpus;
}

/** The machine's GPUs from nvidia-smi, or null when nvidia-smi is missing or fails (no NVIDIA GPU or driver). */
export function detectGpus(timeoutMs = 5000): Promise<GpuInfo[] | null> {
  return new Promise((resolve) => {
    execFile('nvidia-smi', ['--query-gpu=index,name,memory.total', '--format=csv,noheader,nounits'], { timeout: timeoutMs },
      (err, stdout) => {
        if (err) return resolve(null);
        const gpus = parseNvidiaSmi(stdout);
        resolve(gpus.length > 0 ? gpus : null);
      });
  });
}
