// GENERATED from schemas/mcq-file.schema.json by scripts/gen-types.mjs — do not edit.
// Run `npm run gen:types` after changing the schema; test/unit/schemas.test.ts fails when this file is stale.
/* eslint-disable */
/**
 * The JSON header of a tokenized multiple-choice question file (*.hqmcq, version 1). Sender: hqlora eval / the run preparation (extension/eval/mcqfile.ts). Receiver: the native trainer (native/src/mcq.cpp), which validates it. Binary layout (little-endian): bytes 0-7 magic 48 51 4D 43 51 00 00 01 ("HQMCQ\0\0\1"); u32 version = 1; u32 H = byte length of this JSON header; H bytes of UTF-8 JSON padded with 0x20 to a multiple of 8; u64 x (n_questions+1) prompt start offsets into the ids (first 0, strictly increasing, last n_tokens); u32 x n_tokens prompt token ids (BOS + tokens of the prompt text, each < vocab_size); u32 x n_questions answer index (< number of choices); u32 x n_questions subject index (< number of subjects); zero padding to a multiple of 8, where the file ends exactly. A question is scored by the logits at its last prompt position, read at choice_ids. See docs/CONTRACTS.md section 7.
 */
export interface McqFileHeader {
  /**
   * Always "hqmcq".
   */
  format: 'hqmcq';
  /**
   * Format version; this schema describes version 1.
   */
  version: 1;
  /**
   * Number of questions.
   */
  n_questions: number;
  /**
   * Total prompt tokens over all questions.
   */
  n_tokens: number;
  /**
   * Vocabulary size of the model the ids were made for; every id is below it.
   */
  vocab_size: number;
  /**
   * BOS id that starts every prompt, or null when the tokenizer has none.
   */
  bos_id?: number | null;
  /**
   * Id the trainer right-pads batched prompts with (never read: causal attention).
   */
  pad_id: number;
  /**
   * Answer letters in choice order.
   *
   * @minItems 2
   */
  choice_labels: string[];
  /**
   * Token id of each answer letter: tokenizer(letter, add_special_tokens=False)[0] (qlora.py abcd_idx).
   *
   * @minItems 2
   */
  choice_ids: number[];
  /**
   * Subject names; a question's subject index points here. Sorted by name.
   */
  subjects: string[];
  /**
   * Source layout: hendrycks (dev/val/test CSV per subject) or qlora ({subject, input, output} JSON).
   */
  layout?: 'hendrycks' | 'qlora';
  /**
   * Shots requested per prompt (Hendrycks layout; fewer where a prompt would not fit), or null for QLoRA prompts used as written.
   */
  shots?: number | null;
  /**
   * Split scored (Hendrycks layout), or null.
   */
  split?: string | null;
  /**
   * sha256 (hex) of the tokenizer.json used.
   */
  tokenizer_sha256?: string;
  /**
   * Where the questions came from.
   */
  source?: {
    /**
     * Question files read, as absolute paths.
     */
    files?: string[];
  };
  /**
   * Program that wrote the file.
   */
  created_by?: string;
}
