// GENERATED from schemas/run-config.schema.json by scripts/gen-types.mjs — do not edit.
// Run `npm run gen:types` after changing the schema; test/unit/schemas.test.ts fails when this file is stale.
/* eslint-disable */
/**
 * An H-QLoRA run: the `*.hqlora.yaml` a user writes and, with every default filled in and every path absolute, the `<run>/run.json` that hqlora (CLI or VS Code extension) writes for hqlora-train. Sender: the user (YAML) and the launcher (run.json). Receivers: the launcher (validates the YAML with ajv, fills defaults) and the native trainer (reads run.json). Defaults are the QLoRA recipe (Dettmers et al. 2023), with the rank budget split into hierarchical levels. Relative paths are resolved against the folder of the config file. See docs/CONTRACTS.md section 6.
 */
export interface RunConfig {
  /**
   * Optional URL or path of this schema, for editors.
   */
  $schema?: string;
  /**
   * The base model: a Hugging Face model folder (config.json, tokenizer.json, model.safetensors or shards with model.safetensors.index.json), or a Hugging Face repo id (`org/name`) resolved offline to its snapshot in the local Hugging Face cache ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub); a folder that exists wins over a repo id of the same spelling. A plain string is shorthand for {path: <string>}; run.json always has the object form with an absolute path (and, for a repo id, the repo id and the snapshot's commit).
   */
  model: string | ModelRef;
  quantization?: Quantization;
  adapter?: Adapter;
  data: Data;
  training?: Training;
  eval?: Eval;
  checkpoints?: Checkpoints;
  output?: Output;
  hardware?: Hardware;
  distributed?: Distributed;
  logging?: Logging;
}
/**
 * The base model folder.
 */
export interface ModelRef {
  /**
   * Path of the Hugging Face model folder (relative to the config file, or absolute), or a Hugging Face repo id (`org/name`) found in the local Hugging Face cache.
   */
  path: string;
  /**
   * For a repo id: the branch or tag (a file under refs/ in the cache) or the commit hash of the cached snapshot to use; main when not given (not a schema `default`: ajv cannot fill defaults inside a oneOf branch). In run.json: the commit hash of the snapshot that was used.
   */
  revision?: string;
  /**
   * Written by hqlora into run.json, not by hand: the repo id that `path` was resolved from (absent when the model was given as a folder).
   */
  repo_id?: string;
}
/**
 * How the targeted projection weights of the frozen base model are stored. Embeddings, norms and lm_head are never quantized.
 */
export interface Quantization {
  /**
   * nf4: blockwise 4-bit NormalFloat as in bitsandbytes; none: keep the base weights in fp32.
   */
  type?: 'nf4' | 'none';
  /**
   * Quantize the per-block fp32 scales again with an 8-bit dynamic map (bitsandbytes double quantization, blocks of 256 scales).
   */
  double_quant?: boolean;
  /**
   * Weights per NF4 block (one absmax scale per block).
   */
  blocksize?: 32 | 64 | 128 | 256 | 512 | 1024 | 2048 | 4096;
  /**
   * Data type of the matrix products with the dequantized weights and of the activations. auto: bfloat16 on the CUDA backend, float32 on the CPU backend (which always computes in float32). Adapter weights, gradients and optimizer states are float32 in every case.
   */
  compute_dtype?: 'auto' | 'bfloat16' | 'float32';
}
/**
 * The hierarchical LoRA adapter. Give the levels either as `levels` (a list of {rank, alpha}) or with the shorthand `ranks` + `alpha` (one alpha for every level); run.json always has `levels`.
 */
export interface Adapter {
  /**
   * Linear projections of every decoder layer that get an adapter.
   *
   * @minItems 1
   */
  target_modules?: ('q_proj' | 'k_proj' | 'v_proj' | 'o_proj' | 'gate_proj' | 'up_proj' | 'down_proj')[];
  /**
   * Adapter levels, coarse to fine. The default splits QLoRA's rank-64 budget into 32+8+8+8+8, alpha 16 each.
   *
   * @minItems 1
   * @maxItems 16
   */
  levels?: AdapterLevel[];
  /**
   * Shorthand for `levels`: the rank of each level; needs `alpha`. Not allowed together with `levels`.
   *
   * @minItems 1
   * @maxItems 16
   */
  ranks?: number[];
  /**
   * Shorthand for `levels`: the alpha of every level listed in `ranks`.
   */
  alpha?: number;
  /**
   * Dropout probability on the adapter input (applied per level during training only).
   */
  dropout?: number;
  /**
   * Initialisation of A from training.seed, B always zero: kaiming = kaiming-uniform(a=sqrt(5)) as torch.nn.Linear (PEFT's default); gaussian = normal(0, 1/rank) (PEFT init_lora_weights="gaussian").
   */
  init?: 'kaiming' | 'gaussian';
  /**
   * Rank-stabilised LoRA: scale each level by alpha/sqrt(rank) instead of alpha/rank.
   */
  rslora?: boolean;
}
/**
 * One level of the hierarchical adapter: a LoRA pair A [rank, in], B [out, rank] with scale alpha/rank (alpha/sqrt(rank) with rsLoRA).
 */
export interface AdapterLevel {
  /**
   * Rank r_i of this level.
   */
  rank: number;
  /**
   * LoRA alpha of this level.
   */
  alpha: number;
}
/**
 * The dataset. hqlora tokenizes it with the model's tokenizer.json into <run>/data/*.hqtok before training.
 */
export interface Data {
  /**
   * Training data: a .jsonl / .json / .txt file, or a folder holding them.
   */
  train: string;
  /**
   * Evaluation data (same formats), or null to hold out `eval_holdout` of the training examples (none when 0).
   */
  eval?: string | null;
  /**
   * Record format (README "Data formats"): alpaca ({instruction, input, output} with the QLoRA Alpaca prompt; loss on output); completion ({prompt, completion} or {input, output}; loss on completion); guanaco ({text: "### Human: ...### Assistant: ..."}, QLoRA's oasst1: source = BOS only, the whole text is the target); text ({text} or .txt paragraphs; loss on every token); oasst1 (the OpenAssistant message-tree export {message_id, parent_id, role, rank, lang, text}, or its nested trees form, turned into threads, see `oasst1`); chat ({messages: [{role: system|user|assistant, content}]} rendered with the model's chat template from tokenizer_config.json or chat_template.jinja; loss on assistant turns and their end-of-turn marker only; cut at source_max_len + target_max_len tokens); auto: detected from the first record.
   */
  format?: 'auto' | 'alpaca' | 'completion' | 'guanaco' | 'text' | 'oasst1' | 'chat';
  /**
   * Source (prompt) tokens kept per example; longer sources are truncated. source_max_len + target_max_len is at most 16384 (the longest sequence hqlora trains).
   */
  source_max_len?: number;
  /**
   * Target (response) tokens kept per example; longer targets are truncated. source_max_len + target_max_len is at most 16384.
   */
  target_max_len?: number;
  /**
   * Also train on the source tokens (QLoRA trains on the target only).
   */
  train_on_source?: boolean;
  /**
   * When `eval` is null: the number of training examples held out for evaluation (0 = no evaluation).
   */
  eval_holdout?: number;
  /**
   * How an OASST1 message-tree export becomes training examples.
   */
  oasst1?: {
    /**
     * best: one thread per tree, following at each message the reply with the lowest rank (null rank last), OASST's top-1 thread as used for Guanaco; all: every root-to-leaf path. Threads end at their last assistant reply; deleted or review-rejected messages are left out with their replies.
     */
    paths?: 'best' | 'all';
    /**
     * Keep only threads whose first (prompter) message has one of these language codes; null keeps every language.
     */
    lang?: string[] | null;
    /**
     * guanaco: each thread as one "### Human: ...### Assistant: ..." text, trained as QLoRA did (source = BOS, target = the whole text); chat: each thread as a conversation through the model's chat template, loss on assistant turns only.
     */
    render?: 'guanaco' | 'chat';
  };
  /**
   * Pack training examples: consecutive examples are concatenated into sequences of at most `pack_max_len` tokens (the eval split is never packed), and each is still trained as if alone, as transformers' padding-free packing does: a document mask (a token attends only to earlier tokens of its own example), RoPE positions restarting at 0 per example, no loss on an example's first token from the one before it, and its own loss mask. Less padding and faster steps with the same per-example losses. The CPU backend trains packed data; the CUDA backend refuses it until its attention takes the document mask.
   */
  packing?: boolean;
  /**
   * Longest packed sequence in tokens; null: source_max_len + target_max_len (the most the trainer keeps of any sequence, so it cannot be larger).
   */
  pack_max_len?: number | null;
  /**
   * QLoRA's group_by_length: the training examples are written in a seeded random order of mega-batches of `group_size` examples, each sorted longest first, so micro-batches hold examples of similar length (less padding). The trainer then keeps this order (run.json training.shuffle is set to false); the order is the same every epoch. Lengths are token counts.
   */
  group_by_length?: boolean;
  /**
   * Examples per length-sorted mega-batch for group_by_length; null: 50 x training.micro_batch_size (transformers' LengthGroupedSampler).
   */
  group_size?: number | null;
  /**
   * Longest accepted line of a .jsonl data file, in bytes; a longer line is reported with its file and line number.
   */
  max_line_bytes?: number;
  /**
   * Written by hqlora into run.json, not by hand: absolute path of the tokenized training file (<run>/data/train.hqtok).
   */
  train_tokens?: string;
  /**
   * Written by hqlora into run.json, not by hand: absolute path of the tokenized eval file, or null when there is no eval data.
   */
  eval_tokens?: string | null;
}
/**
 * The optimisation recipe.
 */
export interface Training {
  /**
   * Optimizer steps to run (ignored when `epochs` is set).
   */
  max_steps?: number;
  /**
   * Passes over the training data; when set, the run has ceil(epochs x train examples / (micro_batch_size x gradient_accumulation_steps)) steps and max_steps is ignored. null: use max_steps.
   */
  epochs?: number | null;
  /**
   * Examples per forward/backward pass.
   */
  micro_batch_size?: number;
  /**
   * Micro-batches per optimizer step (effective batch = micro_batch_size x gradient_accumulation_steps).
   */
  gradient_accumulation_steps?: number;
  /**
   * Peak AdamW learning rate.
   */
  learning_rate?: number;
  /**
   * Learning-rate schedule after warmup. Warmup is honoured for every schedule, constant included (unlike transformers' `constant`).
   */
  lr_scheduler?: 'constant' | 'linear' | 'cosine';
  /**
   * Linear warmup from 0 over this many steps (wins over warmup_ratio when > 0).
   */
  warmup_steps?: number;
  /**
   * Linear warmup over this fraction of the total steps (used when warmup_steps is 0).
   */
  warmup_ratio?: number;
  /**
   * AdamW beta1 (at least 0.5, the range in which the trainer matches PyTorch's AdamW bit for bit).
   */
  adam_beta1?: number;
  /**
   * AdamW beta2.
   */
  adam_beta2?: number;
  /**
   * AdamW epsilon.
   */
  adam_epsilon?: number;
  /**
   * AdamW decoupled weight decay on the adapter weights.
   */
  weight_decay?: number;
  /**
   * Clip the global L2 norm of all adapter gradients to this value (0 = no clipping).
   */
  max_grad_norm?: number;
  /**
   * Recompute layer activations in the backward pass instead of storing them (less memory, about 30% more compute).
   */
  gradient_checkpointing?: boolean;
  /**
   * Seed for adapter init, dropout and data shuffling; the same seed and config give the same run bit for bit on CPU.
   */
  seed?: number;
  /**
   * Shuffle the training examples every epoch.
   */
  shuffle?: boolean;
}
/**
 * Periodic evaluation on the eval data (skipped when there is none).
 */
export interface Eval {
  /**
   * Evaluate every this many optimizer steps, and at the end (0 = only at the end).
   */
  every_steps?: number;
  /**
   * Micro-batches evaluated each time (0 = the whole eval file).
   */
  max_batches?: number;
  mcq?: EvalMcq;
}
/**
 * Multiple-choice (MMLU-style) accuracy at every evaluation, streamed as `mcq` events: the answer-letter logits at the answer position, per subject and macro-averaged (docs/CONTRACTS.md section 7). hqlora tokenizes the questions into <run>/data/mcq.hqmcq.
 */
export interface EvalMcq {
  /**
   * Multiple-choice data: a Hendrycks MMLU folder (dev/, val/, test/ with <subject>_<split>.csv: question, four choices, answer letter; no header row), one such CSV, or a QLoRA-layout JSON/JSONL file of {subject, input, output} records. Relative paths start at the config file.
   */
  path: string;
  /**
   * Hendrycks layout: the split scored (shots always come from dev).
   */
  split?: 'val' | 'test' | 'dev';
  /**
   * Hendrycks layout: solved examples from dev/<subject>_dev.csv before each question (k-shot); fewer are used when the prompt would not fit the model. QLoRA JSON prompts are used as written.
   */
  shots?: number;
  /**
   * Score only the first N questions each time (0 = all).
   */
  max_questions?: number;
  /**
   * Written by hqlora into run.json, not by hand: absolute path of the tokenized question file (.hqmcq).
   */
  tokens?: string | null;
}
/**
 * Complete, atomic checkpoints (adapter, optimizer, scheduler, RNG, data position) under <run>/checkpoints/.
 */
export interface Checkpoints {
  /**
   * Write a checkpoint every this many optimizer steps (0 = only on stop signals).
   */
  every_steps?: number;
  /**
   * Keep the newest this many checkpoints; older ones are removed (0 = keep all). Checkpoints saved on request (Save Checkpoint Now, SIGUSR1) are not counted and never removed.
   */
  keep?: number;
}
/**
 * Where the run folder goes: <dir>/<run_name>.
 */
export interface Output {
  /**
   * Parent folder of run folders (relative to the config file, or absolute).
   */
  dir?: string;
  /**
   * Name of the run folder. Default: the config file's name without .hqlora.yaml, plus a UTC timestamp (e.g. demo-20250101-120000); with --resume, the newest such folder.
   */
  run_name?: string;
}
/**
 * Compute placement.
 */
export interface Hardware {
  /**
   * auto: CUDA when the trainer was built with it and a GPU is present, else CPU.
   */
  device?: 'auto' | 'cpu' | 'cuda';
  /**
   * CUDA device ordinals (as nvidia-smi numbers them) the run may use; the launcher sets CUDA_VISIBLE_DEVICES to them and the trainer trains on the first. null: every visible GPU, training on device 0.
   *
   * @minItems 1
   */
  gpu_ids?: number[] | null;
  /**
   * Data parallel on one host: the number of trainer ranks `hqlora run` (and Start Run) launches, one per GPU, or the list of GPU ordinals (as nvidia-smi numbers them), one rank per listed GPU. Every rank holds the whole quantized model and trains on its own share of each global batch, so the memory per GPU is that of a one-GPU run and the global batch is micro_batch_size × gradient_accumulation_steps × gpus. With a count and gpu_ids, the ranks use the first `gpus` of gpu_ids; a list replaces gpu_ids. With device cpu the ranks are processes on the CPU (the cores are shared among them). `hqlora run --gpus N` overrides it. Launchers of their own (torchrun, srun) set the world themselves and ignore it.
   */
  gpus?: number | number[];
  /**
   * CPU compute threads (0 = all cores).
   */
  threads?: number;
}
/**
 * Data-parallel training, used when the trainer runs as one rank of several (hardware.gpus > 1, torchrun, srun). The adapter gradients are summed over ranks after every step's backward, so a run on N ranks is a run on one rank with N × gradient_accumulation_steps.
 */
export interface Distributed {
  /**
   * The collective backend. auto: NCCL when the model is on a GPU, else the CPU backend (shared memory, every rank on one host). nccl needs hardware.device cuda; cpu needs hardware.device cpu.
   */
  backend?: 'auto' | 'cpu' | 'nccl';
  /**
   * Seconds that the rendezvous and any collective may wait for the other ranks (NCCL's watchdog timeout); past it the rank fails naming the ranks that did not arrive. Raise it when rank 0's evaluations or checkpoints are long.
   */
  timeout_s?: number;
  /**
   * Size in MiB of the gradient buckets that are all-reduced one after another. With `overlap`, a bucket is whole layers: its sum starts once its layers reach this size; 0: every layer is a bucket of its own (without overlap: one bucket).
   */
  bucket_mb?: number;
  /**
   * Sum each gradient bucket over ranks while the backward still runs on the layers below it (CPU backend: on a communication thread; NCCL: on a stream of its own), instead of after the whole backward. The sums are the same (bit for bit on the CPU backend); false is for comparisons.
   */
  overlap?: boolean;
  /**
   * ZeRO stage. 1: the AdamW state is sharded over the ranks (each rank keeps and updates about 1/N of it, then sends its updated weights to the others); the result is the same bits as 0. Checkpoints hold the whole state, so a run resumes on another world size with or without it. The CPU backend only for now (the CUDA backend keeps the adapters' AdamW state, 2 x their size, on every GPU). A world of one rank ignores it.
   */
  zero?: 0 | 1;
}
/**
 * How often the trainer emits events.
 */
export interface Logging {
  /**
   * Emit a step event every this many optimizer steps (and after the last).
   */
  every_steps?: number;
  /**
   * Emit an adapter_stats event every this many steps (0 = never).
   */
  adapter_stats_every?: number;
}
