// GENERATED from schemas/token-file.schema.json by scripts/gen-types.mjs — do not edit.
// Run `npm run gen:types` after changing the schema; test/unit/schemas.test.ts fails when this file is stale.
/* eslint-disable */
/**
 * The JSON header of a pre-tokenized dataset file (*.hqtok, version 1 or 2). Sender: the data preparation step (extension/data/tokenfile.ts). Receiver: the native trainer (native/src/tokens.cpp), which validates it. Binary layout (little-endian): bytes 0-7 magic 48 51 54 4F 4B 00 00 01 ("HQTOK\0\0\1"); u32 format version = 1; u32 H = byte length of this JSON header; H bytes of UTF-8 JSON, padded with 0x20 to a multiple of 8; u64 x (n_examples+1) example start offsets into the token arrays (first 0, last n_tokens, non-decreasing); u32 x n_tokens token ids (each < vocab_size); u8 x n_tokens loss mask (1 = the token is a training target, predicted from the tokens before it); zero padding to a multiple of 8, where version 1 ends exactly; version 2 (packed sequences, data.packing) then has u64 x (n_documents+1) document start offsets (first 0, last n_tokens, non-decreasing, every example offset among them), where it ends. In a packed file an example is one sequence of several documents (original rows): the trainer gives each document its own attention (a document mask) and RoPE positions from 0, and never predicts a document's first token from the document before it. See docs/CONTRACTS.md section 3.
 */
export interface TokenFileHeader {
  /**
   * Always "hqtok".
   */
  format: 'hqtok';
  /**
   * Format version: 1, or 2 for a packed file with document offsets.
   */
  version: 1 | 2;
  /**
   * Number of examples (sequences) in the file.
   */
  n_examples: number;
  /**
   * Version 2 only: number of documents (original rows) packed into the examples; at least n_examples.
   */
  n_documents?: number;
  /**
   * Total number of tokens over all examples.
   */
  n_tokens: number;
  /**
   * Vocabulary size of the model the ids were made for (config.json vocab_size); every id is below it.
   */
  vocab_size: number;
  /**
   * Beginning-of-sequence id prepended to each source, or null when the tokenizer has none.
   */
  bos_id?: number | null;
  /**
   * End-of-sequence id appended to each target.
   */
  eos_id: number;
  /**
   * Id the trainer uses to right-pad micro-batches (padding never carries loss).
   */
  pad_id: number;
  /**
   * sha256 (hex) of the tokenizer.json the ids were produced with; lets the trainer and the cache detect a tokenizer change.
   */
  tokenizer_sha256?: string;
  /**
   * Where the examples came from.
   */
  source?: {
    /**
     * Dataset files read, as absolute paths.
     */
    files?: string[];
    /**
     * Record format the examples were read as (alpaca, completion, text, ...).
     */
    format?: string;
  };
  /**
   * Program that wrote the file.
   */
  created_by?: string;
}
