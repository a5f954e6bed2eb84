// semantic.ts — the checks no JSON Schema can express: the model folder and its architecture, the target modules
// in its weights, the level ranks, the dataset files and their format, the output folder, step/batch sanity and
// the memory estimate against the detected GPU. Each check is named; an exception inside one becomes a visible
// "internal error in check X" diagnostic (never silence, never a crashed server). The checks also collect the
// computed values (Facts) that hover shows.
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';

import { type Diagnostic, DiagnosticSeverity, type Range } from 'vscode-languageserver';

import { LENGTH_KEY, lengthProblem, seqLenLimitProblem } from '../core/truncation';
import { isWorldProblem, worldPlan } from '../job/world';
import { type DataPeek, peekData, recordFits } from './datapeek';
import type { ConfigDoc, KeyPath } from './document';
import { locateModel, type ModelLocation } from '../model/hfcache';
import { ALL_MODULES, type GpuInfo, type MemoryEstimate, estimateMemory, formatBytes, formatCount, moduleShape, trainableParams } from '../model/memory';
import { type ModelInfo, inspectModel, layerZeroWeight, modulesOf } from '../model/modelinfo';
import { type EditsFixData, lengthFixes } from './lengthfix';
import { schemaAt } from './schemanav';

export const SOURCE = 'hqlora';

/** What the checks know about the machine. */
export interface CheckEnv {
  /** The local Hugging Face hub cache (hfcache.ts hfCacheDir). */
  cacheDir: string;
  /** GPUs from nvidia-smi; null when none could be detected. */
  gpus: GpuInfo[] | null;
  /** System memory, for device: cpu. */
  totalMemBytes: number;
}

/** Values computed from the config (and the model / data it names), shown by hover. */
export interface Facts {
  model?: { location: ModelLocation; info?: ModelInfo };
  modules: string[];
  ranks: number[];
  perLevelParams?: number[];
  trainableParams?: number;
  microBatch: number;
  accumulation: number;
  /** Ranks of the data-parallel world hardware.gpus asks for (1 without it). */
  world: number;
  /** micro_batch_size x gradient_accumulation_steps x world: the examples of one optimizer step. */
  effectiveBatch: number;
  seqLen: number;
  tokensPerStep: number;
  examples?: number;
  totalSteps?: number;
  memory?: MemoryEstimate;
  memoryBudget?: { bytes: number; what: string };
  device: string;
}

export interface CheckContext {
  cd: ConfigDoc;
  cfg: Record<string, unknown>;
  /** Folder relative paths start at; null for an unsaved document (path checks are skipped). */
  baseDir: string | null;
  env: CheckEnv;
  facts: Facts;
  /** `data` travels with the diagnostic to its quick fixes (quickfix.ts). */
  report(path: KeyPath, severity: DiagnosticSeverity, message: string, code: string, prefer?: 'value' | 'key', data?: EditsFixData): void;
}

export interface Check {
  name: string;
  run(c: CheckContext): void;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

/** The value at `path` of the plain config (undefined when absent or when the path crosses a non-object). */
export function valueAt(cfg: unknown, path: KeyPath): unknown {
  let cur = cfg;
  for (const seg of path) {
    if (typeof seg === 'number') cur = Array.isArray(cur) ? (cur as unknown[])[seg] : undefined;
    else cur = isObj(cur) ? cur[seg] : undefined;
  }
  return cur;
}

function defaultAt(path: KeyPath): unknown {
  return schemaAt(path)?.default;
}

/** A positive finite number at `path`, else the schema default (else `fallback`). */
function numAt(cfg: unknown, path: KeyPath, fallback: number): number {
  const v = valueAt(cfg, path);
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  const d = defaultAt(path);
  return typeof d === 'number' ? d : fallback;
}

function strAt(cfg: unknown, path: KeyPath): string | undefined {
  const v = valueAt(cfg, path);
  if (typeof v === 'string') return v;
  const d = defaultAt(path);
  return typeof d === 'string' ? d : undefined;
}

function boolAt(cfg: unknown, path: KeyPath): boolean {
  const v = valueAt(cfg, path);
  return typeof v === 'boolean' ? v : defaultAt(path) === true;
}

const modelCheck: Check = {
  name: 'model',
  run(c) {
    const m = valueAt(c.cfg, ['model']);
    const spec = typeof m === 'string' ? m : isObj(m) && typeof m.path === 'string' ? m.path : null;
    const at: KeyPath = typeof m === 'string' ? ['model'] : ['model', 'path'];
    if (!spec || c.baseDir === null) return;
    const revision = isObj(m) && typeof m.revision === 'string' ? m.revision : undefined;
    const location = locateModel(spec, revision, c.baseDir, c.env.cacheDir);
    c.facts.model = { location };
    if (location.kind === 'missing') {
      c.report(at, DiagnosticSeverity.Error, `${location.reason}. Relative paths start at the config's folder; a repo id ` +
        '(org/name) must be in the Hugging Face cache first (huggingface-cli download org/name).', 'model-missing');
      return;
    }
    const r = inspectModel(location.dir);
    if (!r.ok) {
      c.report(at, DiagnosticSeverity.Error, r.problem, 'model-invalid');
      return;
    }
    const info = r.info;
    if (!info.supported) {
      c.report(at, DiagnosticSeverity.Error, info.problem ?? `architecture "${info.architecture}" (config.json model_type) is not ` +
        'supported by hqlora-train', 'model-architecture');
      return;
    }
    if (info.weightFiles.length === 0) {
      c.report(at, DiagnosticSeverity.Error, `the model folder has no .safetensors weights: ${info.dir}`, 'model-weights');
    }
    if (!info.hasTokenizer) {
      c.report(at, DiagnosticSeverity.Error, `the model folder has no tokenizer.json (needed to tokenize the data): ${info.dir}`, 'model-tokenizer');
    }
    c.facts.model.info = info;
  },
};

const targetModulesCheck: Check = {
  name: 'target-modules',
  run(c) {
    const written = valueAt(c.cfg, ['adapter', 'target_modules']);
    const list = Array.isArray(written) ? written : (defaultAt(['adapter', 'target_modules']) as unknown[]);
    c.facts.modules = list.filter((m): m is string => typeof m === 'string' && (ALL_MODULES as readonly string[]).includes(m));
    const info = c.facts.model?.info;
    if (!info || !Array.isArray(written)) return;
    const known = modulesOf(info.architecture);
    written.forEach((m, i) => {
      if (typeof m !== 'string') return;
      if (!known.includes(m)) {
        c.report(['adapter', 'target_modules', i], DiagnosticSeverity.Error,
          `"${m}" is not a module of ${info.architecture}; its modules are ${known.join(', ')}`, 'target-module');
      } else if (info.tensors && !info.tensors.has(layerZeroWeight(info.architecture, m))) {
        c.report(['adapter', 'target_modules', i], DiagnosticSeverity.Error,
          `the model's weights have no ${layerZeroWeight(info.architecture, m)}, so "${m}" cannot get an adapter`, 'target-module');
      }
    });
  },
};

const levelsCheck: Check = {
  name: 'levels',
  run(c) {
    const levels = valueAt(c.cfg, ['adapter', 'levels']);
    const ranksW = valueAt(c.cfg, ['adapter', 'ranks']);
    const key: KeyPath | null = Array.isArray(levels) ? ['adapter', 'levels'] : Array.isArray(ranksW) ? ['adapter', 'ranks'] : null;
    const raw = Array.isArray(levels) ? levels.map((l) => valueAt(l, ['rank']))
      : Array.isArray(ranksW) ? ranksW
      : (defaultAt(['adapter', 'levels']) as { rank: number }[]).map((l) => l.rank);
    c.facts.ranks = raw.filter((r): r is number => typeof r === 'number' && Number.isInteger(r) && r >= 1 && r <= 4096);
    const info = c.facts.model?.info;
    if (info && c.facts.modules.length) {
      const p = trainableParams(info.dims, c.facts.modules, c.facts.ranks);
      c.facts.perLevelParams = p.perLevel;
      c.facts.trainableParams = p.total;
    }
    if (!key || c.facts.ranks.length !== raw.length || raw.length === 0) return;
    const sum = c.facts.ranks.reduce((a, b) => a + b, 0);
    const params = c.facts.trainableParams !== undefined
      ? `; ${formatCount(c.facts.trainableParams)} trainable parameters (${c.facts.perLevelParams!.map(formatCount).join(' + ')})` : '';
    c.report(key, DiagnosticSeverity.Information,
      `${raw.length} level${raw.length === 1 ? '' : 's'}, total rank ${sum} = ${c.facts.ranks.join(' + ')}${params}`, 'levels-sum', 'key');
    if (info && c.facts.modules.length) {
      const [mod, dim] = c.facts.modules.map((m) => [m, Math.min(...moduleShape(info.dims, m))] as const).sort((a, b) => a[1] - b[1])[0]!;
      if (sum > dim) {
        c.report(key, DiagnosticSeverity.Warning, `the total rank ${sum} exceeds ${mod}'s smaller dimension ${dim}: ` +
          `an update of that module has rank at most ${dim}, so the extra levels add parameters but no capacity`, 'levels-rank', 'key');
      }
    }
  },
};

function peekOrReport(c: CheckContext, key: 'train' | 'eval', what: string): DataPeek | null {
  const v = valueAt(c.cfg, ['data', key]);
  if (typeof v !== 'string' || v === '' || c.baseDir === null) return null;
  const p = path.resolve(c.baseDir, v);
  let peek: DataPeek;
  try {
    peek = peekData(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    c.report(['data', key], DiagnosticSeverity.Error, code === 'ENOENT' ? `${what} not found: ${p} (relative paths start at the config's folder)`
      : `cannot read ${what}: ${(err as Error).message}`, 'data-missing');
    return null;
  }
  if (peek.problem) {
    c.report(['data', key], DiagnosticSeverity.Error, `${peek.problem.file}:${peek.problem.line}: ${peek.problem.message}`, 'data-invalid');
    return null;
  }
  if (!peek.first) {
    c.report(['data', key], DiagnosticSeverity.Error, `no examples in ${p}`, 'data-empty');
    return null;
  }
  const fmt = strAt(c.cfg, ['data', 'format']) ?? 'auto';
  const where = `${peek.first.file}:${peek.first.line}`;
  const keys = isObj(peek.first.value) ? Object.keys(peek.first.value).join(', ') || 'none' : JSON.stringify(peek.first.value).slice(0, 60);
  if (fmt === 'auto' && peek.detected === null) {
    c.report(['data', key], DiagnosticSeverity.Error, `cannot tell the record format from the first record (${where}, keys: ${keys}); ` +
      'records need instruction/output (alpaca), prompt/completion or input/output (completion), or text; or set data.format', 'data-format');
  } else if (fmt !== 'auto' && recordFits(fmt, peek.first.value) === false) {
    c.report(['data', key], DiagnosticSeverity.Error, `data.format is "${fmt}" but the first record (${where}) has keys: ${keys}` +
      `${peek.detected ? `; it looks like ${peek.detected}` : ''}`, 'data-format');
  }
  return peek;
}

const dataCheck: Check = {
  name: 'data',
  run(c) {
    const train = peekOrReport(c, 'train', 'training data');
    peekOrReport(c, 'eval', 'eval data');
    if (train?.examples != null) {
      const holdout = valueAt(c.cfg, ['data', 'eval']) == null ? numAt(c.cfg, ['data', 'eval_holdout'], 0) : 0;
      c.facts.examples = Math.max(0, train.examples - holdout);
    }
  },
};

const outputCheck: Check = {
  name: 'output',
  run(c) {
    if (c.baseDir === null) return;
    const dir = path.resolve(c.baseDir, strAt(c.cfg, ['output', 'dir']) ?? 'runs');
    let p = dir;
    for (;;) {
      let st;
      try {
        st = statSync(p);
      } catch {
        const up = path.dirname(p);
        if (up === p) return;
        p = up;
        continue;
      }
      if (!st.isDirectory()) {
        c.report(['output', 'dir'], DiagnosticSeverity.Error, `the output folder cannot be created: ${p} is a file`, 'output-dir');
        return;
      }
      try {
        accessSync(p, constants.W_OK);
      } catch {
        c.report(['output', 'dir'], DiagnosticSeverity.Error, `the output folder is not writable: ${p === dir ? dir : `${p} (where ${dir} would be created)`}`, 'output-dir');
      }
      return;
    }
  },
};

const trainingCheck: Check = {
  name: 'training',
  run(c) {
    const f = c.facts;
    f.microBatch = numAt(c.cfg, ['training', 'micro_batch_size'], 1);
    f.accumulation = numAt(c.cfg, ['training', 'gradient_accumulation_steps'], 16);
    f.world = worldOf(c.cfg);
    f.effectiveBatch = f.microBatch * f.accumulation * f.world;
    f.seqLen = numAt(c.cfg, ['data', 'source_max_len'], 1024) + numAt(c.cfg, ['data', 'target_max_len'], 256);
    f.tokensPerStep = f.effectiveBatch * f.seqLen;
    const epochs = valueAt(c.cfg, ['training', 'epochs']);
    const maxSteps = numAt(c.cfg, ['training', 'max_steps'], 1875);
    if (typeof epochs === 'number' && epochs > 0) {
      if (f.examples !== undefined) f.totalSteps = Math.ceil((epochs * f.examples) / Math.max(1, f.effectiveBatch));
      if (valueAt(c.cfg, ['training', 'max_steps']) !== undefined) {
        c.report(['training', 'max_steps'], DiagnosticSeverity.Information, 'max_steps is ignored because training.epochs is set', 'steps-ignored', 'key');
      }
    } else {
      f.totalSteps = maxSteps;
    }
    if (f.examples !== undefined && f.examples > 0 && f.effectiveBatch > f.examples) {
      c.report(['training', 'gradient_accumulation_steps'], DiagnosticSeverity.Warning, `the effective batch ${batchFormula(f)} = ` +
        `${f.effectiveBatch} is larger than the ${f.examples} training examples: every step repeats examples`, 'batch-size', 'key');
    }
    const total = f.totalSteps;
    if (total !== undefined) {
      const warm = numAt(c.cfg, ['training', 'warmup_steps'], 0);
      if (warm >= total) {
        c.report(['training', 'warmup_steps'], DiagnosticSeverity.Warning, `warmup_steps ${warm} >= the ${total} total steps: the learning rate never reaches its peak`, 'warmup');
      }
      for (const [sec, what] of [['eval', 'evaluation'], ['checkpoints', 'checkpoint']] as const) {
        const every = numAt(c.cfg, [sec, 'every_steps'], 0);
        if (valueAt(c.cfg, [sec, 'every_steps']) !== undefined && every > total) {
          c.report([sec, 'every_steps'], DiagnosticSeverity.Information, `every_steps ${every} > the ${total} total steps: the only ${what} is at the end`, 'every-steps');
        }
      }
    }
    const limit = seqLenLimitProblem(numAt(c.cfg, ['data', 'source_max_len'], 1024), numAt(c.cfg, ['data', 'target_max_len'], 256));
    if (limit) c.report([...LENGTH_KEY], DiagnosticSeverity.Error, `${limit.message}; ${limit.hint}`, 'seq-len-max', 'key');
    const model = f.model;
    if (model?.info) {
      const lengths = { source: numAt(c.cfg, ['data', 'source_max_len'], 1024), target: numAt(c.cfg, ['data', 'target_max_len'], 256) };
      const configJson = path.join(model.info.dir, 'config.json');
      const shared = model.location.kind === 'cache';
      const p = lengthProblem(lengths.source, lengths.target, model.info.context, configJson, shared);
      if (p) {
        c.report([...LENGTH_KEY], DiagnosticSeverity.Warning, `${p.message}; ${p.hint}`, 'seq-len', 'key',
          lengthFixes(c.cd, p, lengths, configJson, !shared));
      }
    }
    const lr = numAt(c.cfg, ['training', 'learning_rate'], 2e-4);
    if (lr > 0.1) {
      c.report(['training', 'learning_rate'], DiagnosticSeverity.Warning, `learning_rate ${lr} is far above LoRA's usual 1e-4 to 1e-2: the loss will likely diverge`, 'learning-rate');
    }
  },
};

const memoryCheck: Check = {
  name: 'memory',
  run(c) {
    const f = c.facts;
    const info = f.model?.info;
    f.device = strAt(c.cfg, ['hardware', 'device']) ?? 'auto';
    const dtype = strAt(c.cfg, ['quantization', 'compute_dtype']) ?? 'auto';
    const gpus = c.env.gpus;
    if (dtype === 'bfloat16' && f.device === 'cpu') {
      c.report(['quantization', 'compute_dtype'], DiagnosticSeverity.Warning, 'the CPU backend computes in float32; bfloat16 applies on CUDA only', 'compute-dtype');
    }
    const onGpu = f.device === 'cuda' || (f.device === 'auto' && gpus !== null);
    if (!info || !f.modules.length || !f.ranks.length) return;
    const qtype = strAt(c.cfg, ['quantization', 'type']) === 'none' ? 'none' : 'nf4';
    f.memory = estimateMemory({
      dims: info.dims, modules: f.modules, ranks: f.ranks,
      quant: { type: qtype, blocksize: numAt(c.cfg, ['quantization', 'blocksize'], 64), doubleQuant: boolAt(c.cfg, ['quantization', 'double_quant']) },
      computeBytes: onGpu && dtype !== 'float32' ? 2 : 4,
      microBatch: f.microBatch, seqLen: f.seqLen, checkpointing: boolAt(c.cfg, ['training', 'gradient_checkpointing']), cuda: onGpu,
    });
    const est = formatBytes(f.memory.total);
    const where: KeyPath = valueAt(c.cfg, ['hardware', 'device']) !== undefined ? ['hardware', 'device'] : ['model'];
    if (!onGpu) {
      f.memoryBudget = { bytes: c.env.totalMemBytes, what: 'system memory' };
      if (f.device === 'cuda') return;
      if (f.device === 'auto') {
        c.report(where, DiagnosticSeverity.Information, `no NVIDIA GPU detected (nvidia-smi unavailable): training would run on the CPU; ` +
          `estimated memory ${est} was not compared with a GPU`, 'memory-no-gpu', 'key');
      }
      // CPU ranks are processes of this host, each with the whole model: they share its memory.
      const host = f.memory.total * f.world;
      if (host > c.env.totalMemBytes) {
        const ranks = f.world > 1 ? ` (${formatBytes(host)} for the ${f.world} ranks on this host: ${est} each)` : '';
        c.report(where, DiagnosticSeverity.Warning, `estimated memory ${f.world > 1 ? formatBytes(host) : est}${ranks} exceeds the system memory ` +
          `${formatBytes(c.env.totalMemBytes)}`, 'memory', 'key');
      }
      return;
    }
    if (gpus === null) {
      c.report(where, DiagnosticSeverity.Warning, `device is cuda but no NVIDIA GPU was detected (nvidia-smi unavailable); estimated memory ${est}`, 'memory-no-gpu', 'key');
      return;
    }
    const ids = valueAt(c.cfg, ['hardware', 'gpu_ids']);
    const want = Array.isArray(ids) && typeof ids[0] === 'number' ? ids[0] : 0;
    const gpu = gpus.find((g) => g.index === want);
    if (!gpu) {
      c.report(Array.isArray(ids) ? ['hardware', 'gpu_ids', 0] : where, DiagnosticSeverity.Error,
        `GPU ${want} does not exist; nvidia-smi lists ${gpus.map((g) => g.index).join(', ')}`, 'gpu-id');
      return;
    }
    f.memoryBudget = { bytes: gpu.totalBytes, what: `GPU ${gpu.index} (${gpu.name})` };
    if (f.memory.total > gpu.totalBytes) {
      const m = f.memory;
      c.report(where, DiagnosticSeverity.Warning, `will not fit: estimated ${est} (weights ${formatBytes(m.weights)}, adapters+grads+AdamW ` +
        `${formatBytes(m.adapters + m.gradients + m.optimizer)}, activations ${formatBytes(m.activations)}) > ${formatBytes(gpu.totalBytes)} ` +
        `of GPU ${gpu.index} (${gpu.name}); lower micro_batch_size or the max lengths, or turn on gradient_checkpointing`, 'memory', 'key');
    }
  },
};

/** Ranks of the world hardware.gpus asks for; 1 when it is absent or a problem (distributedCheck reports those). */
function worldOf(cfg: unknown): number {
  const hw = valueAt(cfg, ['hardware']);
  const plan = worldPlan(isObj(hw) ? hw : undefined);
  return isWorldProblem(plan) || !Number.isInteger(plan.ranks) || plan.ranks < 1 ? 1 : plan.ranks;
}

/** `2 x 4` or, for a data-parallel world, `2 x 4 x 2 ranks`. */
export function batchFormula(f: Pick<Facts, 'microBatch' | 'accumulation' | 'world'>): string {
  return `${f.microBatch} x ${f.accumulation}${f.world > 1 ? ` x ${f.world} ranks` : ''}`;
}

/**
 * Data parallel (hardware.gpus, distributed.*): the world's own problems (world.ts, as hqlora run says them), the
 * global batch, more ranks than GPUs, and the distributed settings the trainer refuses or ignores. After memoryCheck
 * (f.device).
 */
const distributedCheck: Check = {
  name: 'distributed',
  run(c) {
    const f = c.facts;
    const hw = valueAt(c.cfg, ['hardware']);
    const plan = worldPlan(isObj(hw) ? hw : undefined);
    if (isWorldProblem(plan)) {
      c.report(plan.path, DiagnosticSeverity.Error, `${plan.message}; ${plan.hint}`, 'world');
      return;
    }
    const onGpu = f.device === 'cuda' || (f.device === 'auto' && c.env.gpus !== null);
    if (f.world > 1) {
      c.report(['hardware', 'gpus'], DiagnosticSeverity.Information, `${f.world} data-parallel ranks, each with the whole model on its own ` +
        `${onGpu ? 'GPU' : 'share of the CPU cores'}: the global batch is ${batchFormula(f)} = ${f.effectiveBatch} examples per step`, 'global-batch', 'key');
      const visible = c.env.gpus?.length ?? 0;
      if (onGpu && c.env.gpus !== null && plan.devices === null && f.world > visible) {
        c.report(['hardware', 'gpus'], DiagnosticSeverity.Warning, `hardware.gpus asks for ${f.world} ranks but nvidia-smi lists ${visible} GPU(s): ` +
          `NCCL needs one GPU per rank; lower hardware.gpus to ${visible}`, 'gpus-visible');
      }
      if (onGpu && c.env.gpus !== null && plan.devices !== null) {
        const missing = plan.devices.filter((d) => !c.env.gpus!.some((g) => g.index === d));
        if (missing.length) {
          c.report(['hardware', Array.isArray(valueAt(c.cfg, ['hardware', 'gpus'])) ? 'gpus' : 'gpu_ids'], DiagnosticSeverity.Error,
            `GPU ${missing.join(', ')} does not exist; nvidia-smi lists ${c.env.gpus.map((g) => g.index).join(', ')}`, 'gpu-id');
        }
      }
    }
    const backend = strAt(c.cfg, ['distributed', 'backend']) ?? 'auto';
    if (backend === 'nccl' && f.device === 'cpu') {
      c.report(['distributed', 'backend'], DiagnosticSeverity.Error, 'distributed.backend nccl needs the CUDA backend, but hardware.device is cpu; ' +
        'use backend cpu (or auto), or hardware.device cuda', 'dist-backend');
    } else if (backend === 'cpu' && f.device === 'cuda') {
      c.report(['distributed', 'backend'], DiagnosticSeverity.Error, 'distributed.backend cpu sums host buffers, but hardware.device is cuda; ' +
        'use backend nccl (or auto)', 'dist-backend');
    }
    if (numAt(c.cfg, ['distributed', 'zero'], 0) === 1) {
      if (onGpu) {
        c.report(['distributed', 'zero'], DiagnosticSeverity.Error, 'distributed.zero 1 shards the optimizer of the CPU backend only: the trainer ' +
          'refuses it on CUDA (each GPU keeps the adapters\' AdamW state, 2 x their size); set zero: 0, or hardware.device: cpu', 'zero');
      } else if (f.world === 1) {
        c.report(['distributed', 'zero'], DiagnosticSeverity.Warning, 'distributed.zero 1 does nothing on a world of one rank (hardware.gpus is 1): ' +
          'there is no other rank to share the optimizer state with, unless a launcher (torchrun, srun) starts several', 'zero');
      }
    }
  },
};

/** The checks, in dependency order (model before target modules and memory; data before training; memory before distributed). */
export const CHECKS: readonly Check[] = [modelCheck, targetModulesCheck, levelsCheck, dataCheck, outputCheck, trainingCheck, memoryCheck, distributedCheck];

/** Runs every check on a parsed config; problems and computed values. */
export function runChecks(cd: ConfigDoc, cfg: Record<string, unknown>, env: CheckEnv, checks: readonly Check[] = CHECKS): { diagnostics: Diagnostic[]; facts: Facts } {
  const diagnostics: Diagnostic[] = [];
  const facts: Facts = { modules: [], ranks: [], microBatch: 1, accumulation: 16, world: 1, effectiveBatch: 16, seqLen: 1280, tokensPerStep: 16 * 1280, device: 'auto' };
  const ctx: CheckContext = {
    cd, cfg, env, facts,
    baseDir: cd.file ? path.dirname(cd.file) : null,
    report(p, severity, message, code, prefer = 'value', data) {
      diagnostics.push({ range: cd.rangeFor(p, prefer), severity, message, code, source: SOURCE, ...(data ? { data } : {}) });
    },
  };
  for (const check of checks) {
    try {
      check.run(ctx);
    } catch (err) {
      const range: Range = cd.firstLineRange();
      diagnostics.push({ range, severity: DiagnosticSeverity.Error, source: SOURCE, code: 'internal-error',
        message: `internal error in check ${check.name}: ${err instanceof Error ? err.message : String(err)} (please report this with the config)` });
    }
  }
  return { diagnostics, facts };
}
