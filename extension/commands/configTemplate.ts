// configTemplate.ts — the commented starter run config that "H-QLoRA: New H-QLoRA Run Config" writes for a model
// folder. Pure (no vscode): the model's config.json decides the level preset, everything else is the QLoRA recipe
// spelled out with the schema's defaults, so a user sees every knob once.
import { readFileSync } from 'node:fs';
import path from 'node:path';

export interface TemplateInput {
  /** Absolute path of the model folder. */
  modelDir: string;
  /** Absolute path the config will be written to (the model path is written relative to its folder). */
  configFile: string;
}

/** Ranks for a model of this hidden size: QLoRA's 64 split 32+8+8+8+8, scaled down for tiny models. */
export function levelPreset(hidden: number | null): number[] {
  if (hidden === null || hidden >= 256) return [32, 8, 8, 8, 8];
  const top = Math.max(2, Math.floor(hidden / 4));
  const fine = Math.max(1, Math.floor(top / 4));
  return [top, fine, fine, fine, fine];
}

function readHidden(modelDir: string): { hidden: number | null; arch: string | null } {
  try {
    const c = JSON.parse(readFileSync(path.join(modelDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    return {
      hidden: typeof c.hidden_size === 'number' ? c.hidden_size : null,
      arch: typeof c.model_type === 'string' ? c.model_type : null,
    };
  } catch {
    return { hidden: null, arch: null };
  }
}

/** The text of the starter config. */
export function starterConfig(input: TemplateInput): string {
  let rel = path.relative(path.dirname(input.configFile), input.modelDir).split(path.sep).join('/');
  if (rel === '') rel = '.';
  const { hidden, arch } = readHidden(input.modelDir);
  const ranks = levelPreset(hidden);
  const archNote = arch ? `${arch}, hidden size ${hidden ?? '?'}` : 'no readable config.json: check the folder';
  return `# H-QLoRA run config. Every key is documented on hover; unset keys get the QLoRA defaults.
# Start it with "H-QLoRA: Start H-QLoRA Run" (or the code lens above), or: hqlora run <this file>

# The base model (${archNote}): a folder, or a Hugging Face repo id from your local cache.
model: ${rel}

quantization:
  type: nf4            # 4-bit NormalFloat base weights (none: keep them unquantized)
  double_quant: true
  blocksize: 64

adapter:
  # Hierarchical levels, coarse to fine (presets: 64 / 32,32 / 32,16,16 / 32,8,8,8,8).
  ranks: [${ranks.join(', ')}]
  alpha: 16
  target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]
  dropout: 0.0

data:
  # Point these at your dataset (.jsonl / .json / .txt, or a folder); paths are relative to this file.
  train: data/train.jsonl
  eval: null           # null: no eval file (see eval_holdout)
  format: auto         # alpaca | completion | text | auto (from the first record)
  source_max_len: 1024
  target_max_len: 256

training:
  max_steps: 1875
  micro_batch_size: 1
  gradient_accumulation_steps: 16   # effective batch = micro_batch_size x gradient_accumulation_steps
  learning_rate: 0.0002
  lr_scheduler: constant
  warmup_steps: 0
  max_grad_norm: 0.3
  gradient_checkpointing: true
  seed: 0

eval:
  every_steps: 187

checkpoints:
  every_steps: 250
  keep: 3

output:
  dir: runs

hardware:
  device: auto         # auto | cpu | cuda
  threads: 0           # CPU threads, 0 = all cores
`;
}

/** The default file name for a config of this model: `<model folder name>.hqlora.yaml`. */
export function defaultConfigName(modelDir: string): string {
  const base = path.basename(modelDir).replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[-.]+/, '') || 'run';
  return `${base}.hqlora.yaml`;
}
