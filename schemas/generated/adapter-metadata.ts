// GENERATED from schemas/adapter-metadata.schema.json by scripts/gen-types.mjs — do not edit.
// Run `npm run gen:types` after changing the schema; test/unit/schemas.test.ts fails when this file is stale.
/* eslint-disable */
/**
 * adapter_metadata.json, written by hqlora-train (native/src/adapter_io.cpp, save_hierarchical_adapter) beside adapter.safetensors in <run>/adapter/. Receivers: the VS Code extension (run views, export commands) and users. It describes the hierarchical adapter: its levels, what it adapts, which base model it belongs to and how it was trained. See docs/CONTRACTS.md section 4.
 */
export interface AdapterMetadata {
  /**
   * Fixed marker identifying this file kind.
   */
  format: 'hqlora-adapter';
  /**
   * Version of this metadata layout and of the adapter.safetensors key layout (hqlora.version in its __metadata__).
   */
  version: 1;
  /**
   * The adapter levels in order; level j owns the tensors <module>.levels.<j>.lora_A.weight [rank, in] and <module>.levels.<j>.lora_B.weight [out, rank].
   *
   * @minItems 1
   *
   * Items: One LoRA level.
   */
  levels: {
    /**
     * LoRA rank r_j of this level.
     */
    rank: number;
    /**
     * LoRA alpha_j of this level, as configured.
     */
    alpha: number;
    /**
     * Scaling applied to this level's output: alpha_j / r_j, or alpha_j / sqrt(r_j) with rsLoRA.
     */
    scale: number;
  }[];
  /**
   * True when the scales use rank-stabilized LoRA (alpha / sqrt(r)).
   */
  rslora: boolean;
  /**
   * Projection names that carry adapters, e.g. q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.
   *
   * Items: A projection name (suffix of the Hugging Face module name).
   */
  target_modules: string[];
  /**
   * R = sum of the level ranks; the rank of the flat PEFT export (r = lora_alpha = R).
   */
  total_rank: number;
  /**
   * The frozen base model the adapter was trained on.
   */
  base_model: {
    /**
     * Absolute path of the base model folder (or a hub id), null if unknown.
     */
    path: string | null;
    /**
     * config.json model_type of the base model, e.g. llama or gemma.
     */
    architecture: string;
    /**
     * Lowercase hex SHA-256 of the base model's config.json bytes, null if not recorded; used to warn when an adapter is applied to another model.
     */
    config_sha256: string | null;
    [k: string]: unknown | undefined;
  };
  /**
   * Summary of the run that produced the adapter. Writers may add fields (e.g. config_hash, seed).
   */
  training: {
    /**
     * Optimizer steps completed.
     */
    steps: number;
    /**
     * Training loss of the last optimizer step; null before the first step; non-finite values are the strings NaN / Infinity / -Infinity as in trainer events.
     */
    final_loss: number | ('NaN' | 'Infinity' | '-Infinity') | null;
    /**
     * Target tokens seen during training, null if not recorded.
     */
    tokens: number | null;
    /**
     * Hash of the resolved run.json that produced the adapter.
     */
    config_hash?: string;
    /**
     * training.seed of the run.
     */
    seed?: number;
    [k: string]: unknown | undefined;
  };
  /**
   * UTC creation time, ISO 8601 (YYYY-MM-DDTHH:MM:SSZ).
   */
  created: string;
  /**
   * Semantic version of hqlora-train that wrote the adapter.
   */
  trainer_version: string;
  [k: string]: unknown | undefined;
}
