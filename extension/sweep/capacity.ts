// capacity.ts — how many cells may train side by side: never more than fit. On the CPU one at a time (each
// trainer uses every core it is given). On a GPU the cells' training-memory estimates (extension/model/memory.ts,
// the language server's estimate, calibrated against nvidia-smi) must add up to at most the GPU's memory.
import { inspectModel } from '../model/modelinfo';
import { type GpuInfo, baseParams, detectGpus, estimateMemory, formatBytes, trainableParams } from '../model/memory';
import { findTrainer } from '../job/trainer';
import type { LoadedSweep, SweepCell } from './spec';

export interface DeviceBudget {
  /** Bytes the running cells' estimates may add up to, or null on the CPU (one cell at a time). */
  bytes: number | null;
  cuda: boolean;
  /** Most cells side by side. */
  slots: number;
  describe: string;
}

/** The device the cells train on and its memory (the first cell's hardware settings decide). */
export async function deviceBudget(sweep: LoadedSweep, opts: { packageRoot: string; trainerSetting?: string }, gpus?: GpuInfo[] | null): Promise<DeviceBudget> {
  const hw = sweep.cells[0]?.loaded.raw.hardware;
  const device = hw?.device ?? 'auto';
  if (device === 'cpu') return { bytes: null, cuda: false, slots: 1, describe: 'on the CPU: one cell at a time' };
  const trainer = await findTrainer({ packageRoot: opts.packageRoot, setting: opts.trainerSetting }).catch(() => undefined);
  if (!trainer?.backends.includes('cuda')) return { bytes: null, cuda: false, slots: 1, describe: 'on the CPU (no CUDA backend): one cell at a time' };
  const found = gpus !== undefined ? gpus : await detectGpus();
  const want = hw?.gpu_ids?.[0] ?? 0;
  const gpu = found?.find((g) => g.index === want);
  if (!gpu) return { bytes: null, cuda: false, slots: 1, describe: 'no GPU detected: one cell at a time' };
  return { bytes: gpu.totalBytes, cuda: true, slots: 64, describe: `on GPU ${gpu.index} (${gpu.name}, ${formatBytes(gpu.totalBytes)}): cells side by side while their memory estimates fit` };
}

/** The training-memory estimate of a cell, or null when its model cannot be inspected. */
export function cellMemoryBytes(cell: SweepCell, cuda: boolean): number | null {
  const c = cell.loaded.raw;
  const modelPath = typeof c.model === 'string' ? c.model : c.model.path;
  const dir = modelPath.startsWith('/') ? modelPath : `${cell.loaded.file.replace(/[^/]*$/, '')}${modelPath}`;
  const insp = inspectModel(dir);
  if (!insp.ok) return null;
  const info = insp.info;
  const modules = c.adapter?.target_modules ?? ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
  const dtype = c.quantization?.compute_dtype ?? 'auto';
  return estimateMemory({
    dims: info.dims, modules, ranks: cell.ranks,
    quant: { type: c.quantization?.type === 'none' ? 'none' : 'nf4', blocksize: c.quantization?.blocksize ?? 64, doubleQuant: c.quantization?.double_quant ?? true },
    computeBytes: cuda && dtype !== 'float32' ? 2 : 4,
    microBatch: c.training?.micro_batch_size ?? 1,
    seqLen: (c.data.source_max_len ?? 1024) + (c.data.target_max_len ?? 256),
    checkpointing: c.training?.gradient_checkpointing ?? true,
    cuda,
  }).total;
}

export interface CellCost {
  /** Training-memory estimate (bytes), null when the model cannot be inspected. */
  memoryBytes: number | null;
  /** Optimizer steps (null when the run counts epochs: the step count depends on the data). */
  steps: number | null;
  /** Tokens per step at most (micro batch × accumulation × source + target length). */
  tokensPerStep: number;
  /** Training FLOPs (4·N_base + 6·N_adapter per token, as the README's MFU), null without the model or steps. */
  flops: number | null;
}

export function cellCost(cell: SweepCell, cuda: boolean): CellCost {
  const c = cell.loaded.raw;
  const t = c.training ?? {};
  const steps = t.epochs != null ? null : t.max_steps ?? 1000;
  const tokensPerStep = (t.micro_batch_size ?? 1) * (t.gradient_accumulation_steps ?? 16) * ((c.data.source_max_len ?? 1024) + (c.data.target_max_len ?? 256));
  const modelPath = typeof c.model === 'string' ? c.model : c.model.path;
  const insp = inspectModel(modelPath.startsWith('/') ? modelPath : `${cell.loaded.file.replace(/[^/]*$/, '')}${modelPath}`);
  let flops: number | null = null;
  if (insp.ok && steps !== null) {
    const modules = c.adapter?.target_modules ?? ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
    const nBase = baseParams(insp.info.dims, modules).total;
    const nAdapter = trainableParams(insp.info.dims, modules, cell.ranks).total;
    flops = (4 * nBase + 6 * nAdapter) * tokensPerStep * steps;
  }
  return { memoryBytes: cellMemoryBytes(cell, cuda), steps, tokensPerStep, flops };
}
