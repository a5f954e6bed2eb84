// GENERATED from schemas/trainer-events.schema.json by scripts/gen-types.mjs — do not edit.
// Run `npm run gen:types` after changing the schema; test/unit/schemas.test.ts fails when this file is stale.
/* eslint-disable */
/**
 * One line of hqlora-train's stdout (and of <run>/events.jsonl): a JSON object describing one event of a training run. Sender: the native trainer (native/src/events.cpp). Receivers: the extension's run manager and dashboard, which must treat every line as untrusted input and validate it against this schema. Non-finite numbers are encoded as the strings "NaN", "Infinity" and "-Infinity" (see $defs.Number). See docs/CONTRACTS.md section 5.
 */
export type TrainerEvent =
  | StartEvent
  | StepEvent
  | EvalEvent
  | CheckpointEvent
  | AdapterStatsEvent
  | WarningEvent
  | ErrorEvent
  | DoneEvent
  | McqEvent
  | EvalProgressEvent
  | EvalResultEvent;
/**
 * A JSON number, or one of the strings "NaN", "Infinity", "-Infinity" for the non-finite IEEE values (JSON has no literal for them).
 */
export type Number = number | ('NaN' | 'Infinity' | '-Infinity');
/**
 * Emitted after a multiple-choice evaluation: by training at every eval when eval.mcq is set (step = optimizer steps), and by `hqlora-train eval` once per table row (step null).
 */
export type McqEvent = McqSummary & {
  /**
   * Event format version (always 1).
   */
  v: 1;
  /**
   * Event discriminator.
   */
  type: 'mcq';
  /**
   * Unix seconds (float) when the event was emitted.
   */
  time: number;
  /**
   * Optimizer steps completed, or null outside training (hqlora-train eval).
   */
  step: Step | null;
  /**
   * hqlora-train eval: the table row's name (e.g. "base (NF4)", "L1+L2 (r 16+4)").
   */
  config?: string;
  /**
   * hqlora-train eval: adapter levels active (0 = the base model alone).
   */
  levels?: number;
};
/**
 * Number of optimizer steps completed when the event was emitted (1-based after the first step; 0 before any step).
 */
export type Step = number;

/**
 * Emitted once, after the model and data are loaded and before the first step.
 */
export interface StartEvent {
  /**
   * Event format version (always 1).
   */
  v: 1;
  /**
   * Event discriminator.
   */
  type: 'start';
  /**
   * Unix seconds (float) when the event was emitted.
   */
  time: number;
  /**
   * Absolute path of the run folder (output.dir/output.run_name).
   */
  run_dir: string;
  /**
   * Semantic version of hqlora-train.
   */
  trainer_version?: string;
  /**
   * Hex FNV-1a-64 hash of the canonical (sorted-key) JSON of the training-relevant part of run.json; a resumed run whose hash differs from its checkpoint gets a warning.
   */
  config_hash?: string;
  /**
   * The base model as loaded.
   */
  model: {
    /**
     * Absolute path of the model folder.
     */
    path: string;
    /**
     * config.json model_type, e.g. "llama" or "gemma".
     */
    architecture: string;
    /**
     * Number of decoder layers.
     */
    layers: number;
    /**
     * Hidden size C.
     */
    hidden: number;
    /**
     * Vocabulary size V.
     */
    vocab: number;
    /**
     * Quantization of the targeted projections: "nf4" or "none".
     */
    quantization?: string;
  };
  /**
   * Compute backend in use, e.g. "cpu".
   */
  backend: string;
  /**
   * Number of compute threads (OpenMP / BLAS).
   */
  threads: number;
  /**
   * Ranks of the data-parallel world (1 without a launcher; see the README, Multi-GPU and clusters).
   */
  world_size?: number;
  /**
   * The collective backend that sums the gradients over ranks: cpu (shared memory), nccl, or none (no launcher).
   */
  dist_backend?: 'none' | 'cpu' | 'nccl';
  /**
   * Parameter counts.
   */
  params: {
    /**
     * Base model parameters plus adapter parameters.
     */
    total: number;
    /**
     * Adapter parameters (all levels, all adapted modules).
     */
    trainable: number;
    /**
     * One entry per adapter level, in level order.
     */
    per_level: {
      /**
       * 0-based level index.
       */
      level: number;
      /**
       * Rank r_i of the level.
       */
      rank: number;
      /**
       * LoRA alpha of the level.
       */
      alpha: number | ('NaN' | 'Infinity' | '-Infinity');
      /**
       * Scale s_i = alpha/r (alpha/sqrt(r) with rsLoRA).
       */
      scale: number | ('NaN' | 'Infinity' | '-Infinity');
      /**
       * Trainable parameters of this level over all adapted modules.
       */
      params: number;
    }[];
  };
  /**
   * Number of optimizer steps the run will perform in total (from training.max_steps or epochs, after any --max-steps override).
   */
  total_steps: number;
  /**
   * Step of the checkpoint the run resumed from, or null for a fresh run.
   */
  resumed_from_step: number | null;
  /**
   * Mean number of target (loss) tokens per optimizer step over one epoch of the training file (examples_per_step x mean target tokens per example).
   */
  tokens_per_step: number | ('NaN' | 'Infinity' | '-Infinity');
  /**
   * micro_batch_size x gradient_accumulation_steps.
   */
  examples_per_step?: number;
  /**
   * Number of examples in the training token file.
   */
  train_examples?: number;
  /**
   * Number of examples in the eval token file (0 when there is none).
   */
  eval_examples?: number;
}
/**
 * Emitted after every logging.every_steps optimizer steps (and after the last step).
 */
export interface StepEvent {
  /**
   * Event format version (always 1).
   */
  v: 1;
  /**
   * Event discriminator.
   */
  type: 'step';
  /**
   * Unix seconds (float) when the event was emitted.
   */
  time: number;
  /**
   * Optimizer steps completed.
   */
  step: number;
  /**
   * Total optimizer steps of the run.
   */
  total_steps: number;
  /**
   * Fractional epoch position of the data cursor after this step.
   */
  epoch?: number | ('NaN' | 'Infinity' | '-Infinity');
  /**
   * Mean cross-entropy over all target tokens of this step's micro-batches.
   */
  loss: number | ('NaN' | 'Infinity' | '-Infinity');
  /**
   * Learning rate used for this step (after warmup / schedule).
   */
  lr: number | ('NaN' | 'Infinity' | '-Infinity');
  /**
   * Global L2 norm of all adapter gradients before clipping.
   */
  grad_norm: number | ('NaN' | 'Infinity' | '-Infinity');
  /**
   * Target tokens in this step.
   */
  tokens: number;
  /**
   * Throughput of this step: all (input) tokens processed per second of wall time.
   */
  tokens_per_s: number | ('NaN' | 'Infinity' | '-Infinity');
  /**
   * Seconds since the start of this process's training loop.
   */
  elapsed_s: number | ('NaN' | 'Infinity' | '-Infinity');
  /**
   * Estimated seconds until total_steps, from the mean step time of this process.
   */
  eta_s: number | ('NaN' | 'Infinity' | '-Infinity');
  /**
   * Resident bytes of the model (quantized base weights, adapters, workspace, as the model reports them) plus the AdamW state.
   */
  memory_bytes: number;
  /**
   * Data parallel only: ranks of the world; loss, tokens and tokens_per_s are those of the global batch.
   */
  world_size?: number;
  /**
   * Data parallel only: bytes of adapter gradients each rank all-reduced in this step.
   */
  allreduce_bytes?: number;
  /**
   * Data parallel only: memory_bytes of each rank, in rank order.
   */
  rank_memory_bytes?: number[];
}
/**
 * Emitted after an evaluation over the eval token file (every eval.every_steps steps and at the end, when an eval file exists).
 */
export interface EvalEvent {
  /**
   * Event format version (always 1).
   */
  v: 1;
  /**
   * Event discriminator.
   */
  type: 'eval';
  /**
   * Unix seconds (float) when the event was emitted.
   */
  time: number;
  /**
   * Optimizer steps completed.
   */
  step: number;
  /**
   * Mean cross-entropy over all target tokens of the evaluated examples.
   */
  eval_loss: number | ('NaN' | 'Infinity' | '-Infinity');
  /**
   * exp(eval_loss).
   */
  perplexity: number | ('NaN' | 'Infinity' | '-Infinity');
  /**
   * Target tokens evaluated.
   */
  eval_tokens: number;
  /**
   * Examples evaluated.
   */
  eval_examples?: number;
  /**
   * Teacher-forced target-token accuracy: fraction of target tokens whose argmax prediction equals the target.
   */
  accuracy?: number | ('NaN' | 'Infinity' | '-Infinity');
  /**
   * Fraction of evaluated examples whose every target token is the argmax prediction (teacher forced).
   */
  exact_match?: number | ('NaN' | 'Infinity' | '-Infinity');
}
/**
 * Emitted after a checkpoint folder was completely written and renamed into place.
 */
export interface CheckpointEvent {
  /**
   * Event format version (always 1).
   */
  v: 1;
  /**
   * Event discriminator.
   */
  type: 'checkpoint';
  /**
   * Unix seconds (float) when the event was emitted.
   */
  time: number;
  /**
   * Optimizer steps completed.
   */
  step: number;
  /**
   * Absolute path of the checkpoint folder (<run>/checkpoints/step-NNNNNN).
   */
  path: string;
  /**
   * Total size of the checkpoint's files.
   */
  bytes: number;
  /**
   * Absolute paths of all checkpoints kept after pruning, oldest first.
   */
  kept: string[];
  /**
   * Why it was written: "periodic" (checkpoints.every_steps), "signal" (a stop: SIGINT/SIGTERM), "requested" ("save now": SIGUSR1; training goes on) or "final".
   */
  reason?: 'periodic' | 'signal' | 'requested' | 'final';
}
/**
 * Emitted every logging.adapter_stats_every steps: per-level size of the learned update over a fixed sample of adapted modules.
 */
export interface AdapterStatsEvent {
  /**
   * Event format version (always 1).
   */
  v: 1;
  /**
   * Event discriminator.
   */
  type: 'adapter_stats';
  /**
   * Unix seconds (float) when the event was emitted.
   */
  time: number;
  /**
   * Optimizer steps completed.
   */
  step: number;
  /**
   * One entry per adapter level, in level order.
   */
  levels: {
    /**
     * 0-based level index.
     */
    level: number;
    /**
     * Rank r_i of the level.
     */
    rank: number;
    /**
     * Frobenius norm of s_i*B_i*A_i, summed in quadrature over the sampled modules.
     */
    delta_norm: number | ('NaN' | 'Infinity' | '-Infinity');
    /**
     * Frobenius norm of A_i, summed in quadrature over the sampled modules.
     */
    a_norm: number | ('NaN' | 'Infinity' | '-Infinity');
    /**
     * Frobenius norm of B_i, summed in quadrature over the sampled modules.
     */
    b_norm: number | ('NaN' | 'Infinity' | '-Infinity');
  }[];
  /**
   * HF names of the sampled adapted modules.
   */
  modules: string[];
}
/**
 * Something the user should know that does not stop the run.
 */
export interface WarningEvent {
  /**
   * Event format version (always 1).
   */
  v: 1;
  /**
   * Event discriminator.
   */
  type: 'warning';
  /**
   * Unix seconds (float) when the event was emitted.
   */
  time: number;
  /**
   * Stable machine code, e.g. "W_TRUNCATED", "W_CHECKPOINT_REMOVED".
   */
  code: string;
  /**
   * Human-readable description.
   */
  message: string;
}
/**
 * The run failed. Emitted once, right before exit code 1 (or 4 for E_NONFINITE).
 */
export interface ErrorEvent {
  /**
   * Event format version (always 1).
   */
  v: 1;
  /**
   * Event discriminator.
   */
  type: 'error';
  /**
   * Unix seconds (float) when the event was emitted.
   */
  time: number;
  /**
   * Stable machine code: E_SAFETENSORS, E_CONFIG, E_TOKENS, E_NONFINITE, E_SHAPE, E_IO, E_CHECKPOINT, E_OOM, E_INTERNAL, ...
   */
  code: string;
  /**
   * What failed, in words.
   */
  message: string;
  /**
   * Where the problem is; only the applicable fields are present.
   */
  where: {
    /**
     * The user file the error is about (model shard, token file, run.json, checkpoint file).
     */
    file?: string;
    /**
     * Tensor name, when about a tensor.
     */
    tensor?: string;
    /**
     * Byte offset in file.
     */
    offset?: number;
    /**
     * Config key path, e.g. "adapter.levels[2].rank".
     */
    key?: string;
    /**
     * 1-based line in file.
     */
    line?: number;
    /**
     * Optimizer step at which the error happened.
     */
    step?: number;
  };
  /**
   * What the user can do about it (may be empty).
   */
  hint: string;
}
/**
 * The run ended normally (completed all steps) or was stopped by a signal after a successful checkpoint.
 */
export interface DoneEvent {
  /**
   * Event format version (always 1).
   */
  v: 1;
  /**
   * Event discriminator.
   */
  type: 'done';
  /**
   * Unix seconds (float) when the event was emitted.
   */
  time: number;
  /**
   * Optimizer steps completed.
   */
  step: number;
  /**
   * Loss of the last optimizer step, or null when no step ran in this process.
   */
  final_loss: Number | null;
  /**
   * Absolute path of the final hierarchical adapter folder, or null when stopped.
   */
  adapter_dir: string | null;
  /**
   * Absolute path of the flat PEFT adapter folder, or null when stopped.
   */
  peft_dir: string | null;
  /**
   * Absolute path of the last complete checkpoint, or null if none exists.
   */
  checkpoint?: string | null;
  /**
   * A JSON number, or one of the strings "NaN", "Infinity", "-Infinity" for the non-finite IEEE values (JSON has no literal for them).
   */
  elapsed_s: number | ('NaN' | 'Infinity' | '-Infinity');
  /**
   * "completed": all steps done and adapters written (exit 0); "stopped": stopped by SIGINT/SIGTERM after a checkpoint (exit 3).
   */
  status: 'completed' | 'stopped';
}
/**
 * Multiple-choice result over one .hqmcq question file (docs/CONTRACTS.md section 7): the prediction of a question is the argmax of the model's logits at the last prompt position over the answer-letter token ids (qlora.py's MMLU scoring).
 */
export interface McqSummary {
  /**
   * Questions scored.
   */
  n: number;
  /**
   * Questions answered correctly.
   */
  correct: number;
  /**
   * Micro average: correct / n.
   */
  accuracy: number;
  /**
   * Mean over subjects of the per-subject accuracy (qlora.py's mmlu accuracy).
   */
  macro_accuracy: number;
  /**
   * Prompts longer than the model's positions, scored on their last tokens.
   */
  truncated?: number;
  /**
   * Wall-clock seconds the scoring took.
   */
  seconds?: number;
  /**
   * Per-subject results, in the question file's subject order.
   */
  subjects: SubjectAccuracy[];
}
/**
 * Multiple-choice accuracy of one subject.
 */
export interface SubjectAccuracy {
  /**
   * Subject name as in the question file (e.g. abstract_algebra).
   */
  subject: string;
  /**
   * Questions of this subject scored.
   */
  n: number;
  /**
   * Questions whose highest answer-letter logit is the right letter.
   */
  correct: number;
  /**
   * correct / n.
   */
  accuracy: number;
}
/**
 * Emitted by `hqlora-train eval` at most twice a second and at the end of every row: work done over all rows (eval-loss examples + questions).
 */
export interface EvalProgressEvent {
  /**
   * Event format version (always 1).
   */
  v: 1;
  /**
   * Event discriminator.
   */
  type: 'eval_progress';
  /**
   * Unix seconds (float) when the event was emitted.
   */
  time: number;
  /**
   * 0-based index of the table row being computed.
   */
  row: number;
  /**
   * Number of table rows.
   */
  rows: number;
  /**
   * Name of the row being computed.
   */
  name: string;
  /**
   * Units (eval examples + questions) done over all rows.
   */
  done: number;
  /**
   * Units over all rows.
   */
  total: number;
  /**
   * A JSON number, or one of the strings "NaN", "Infinity", "-Infinity" for the non-finite IEEE values (JSON has no literal for them).
   */
  elapsed_s: number | ('NaN' | 'Infinity' | '-Infinity');
  /**
   * Estimated seconds left, or null before any unit is done.
   */
  eta_s: Number | null;
}
/**
 * The last event of `hqlora-train eval`: the whole table (base vs adapter, or the level ablation).
 */
export interface EvalResultEvent {
  /**
   * Event format version (always 1).
   */
  v: 1;
  /**
   * Event discriminator.
   */
  type: 'eval_result';
  /**
   * Unix seconds (float) when the event was emitted.
   */
  time: number;
  /**
   * The run folder of the run.json evaluated.
   */
  run_dir: string;
  /**
   * The base model.
   */
  model: {
    /**
     * Model folder.
     */
    path?: string;
    /**
     * config.json model_type.
     */
    architecture?: string;
    /**
     * nf4 or none.
     */
    quantization?: string;
  };
  /**
   * adapter.safetensors scored, or null (base model only).
   */
  adapter: string | null;
  /**
   * .hqmcq question file, or null.
   */
  mcq_file: string | null;
  /**
   * .hqtok eval file, or null.
   */
  eval_file: string | null;
  /**
   * Shots per prompt recorded in the question file, or null.
   */
  shots?: number | null;
  /**
   * Questions scored per row.
   */
  questions?: number;
  /**
   * Eval-loss examples per row.
   */
  eval_examples?: number;
  /**
   * Subject names of the question file.
   */
  subjects: string[];
  /**
   * Table rows: base first, then the adapter configurations.
   */
  rows: EvalRow[];
  /**
   * The right letter of every question scored, in question-file order (as EvalRow.predictions), or null without questions.
   */
  answers?: string | null;
  /**
   * Compute threads.
   */
  threads?: number;
  /**
   * A JSON number, or one of the strings "NaN", "Infinity", "-Infinity" for the non-finite IEEE values (JSON has no literal for them).
   */
  elapsed_s: number | ('NaN' | 'Infinity' | '-Infinity');
}
/**
 * One row of the evaluation table: the base model, or the base plus the first `levels` adapter levels.
 */
export interface EvalRow {
  /**
   * Row name, e.g. "base (NF4)", "L1 (r 16)", "adapter, all 5 levels (r 16+4+4+4+4)".
   */
  name: string;
  /**
   * Adapter levels active (0 = base).
   */
  levels: number;
  /**
   * Ranks of the active levels.
   */
  ranks: number[];
  /**
   * A JSON number, or one of the strings "NaN", "Infinity", "-Infinity" for the non-finite IEEE values (JSON has no literal for them).
   */
  eval_loss?: number | ('NaN' | 'Infinity' | '-Infinity');
  /**
   * A JSON number, or one of the strings "NaN", "Infinity", "-Infinity" for the non-finite IEEE values (JSON has no literal for them).
   */
  perplexity?: number | ('NaN' | 'Infinity' | '-Infinity');
  /**
   * Target tokens evaluated.
   */
  eval_tokens?: number;
  /**
   * A JSON number, or one of the strings "NaN", "Infinity", "-Infinity" for the non-finite IEEE values (JSON has no literal for them).
   */
  token_accuracy?: number | ('NaN' | 'Infinity' | '-Infinity');
  mcq?: McqSummary1;
  /**
   * The predicted letter of every question scored, in question-file order (A = the first choice): two rows, or two runs, can be compared question by question (the sweep's paired bootstrap).
   */
  predictions?: string;
}
/**
 * Multiple-choice result over one .hqmcq question file (docs/CONTRACTS.md section 7): the prediction of a question is the argmax of the model's logits at the last prompt position over the answer-letter token ids (qlora.py's MMLU scoring).
 */
export interface McqSummary1 {
  /**
   * Questions scored.
   */
  n: number;
  /**
   * Questions answered correctly.
   */
  correct: number;
  /**
   * Micro average: correct / n.
   */
  accuracy: number;
  /**
   * Mean over subjects of the per-subject accuracy (qlora.py's mmlu accuracy).
   */
  macro_accuracy: number;
  /**
   * Prompts longer than the model's positions, scored on their last tokens.
   */
  truncated?: number;
  /**
   * Wall-clock seconds the scoring took.
   */
  seconds?: number;
  /**
   * Per-subject results, in the question file's subject order.
   */
  subjects: SubjectAccuracy[];
}
