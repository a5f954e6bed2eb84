// gguf_vocab.h — a Hugging Face tokenizer.json (+ tokenizer_config.json, config.json) as llama.cpp's tokenizer
// metadata (tokenizer.ggml.*, tokenizer.chat_template), with no Python and no sentencepiece model file.
//
// The tokenizer.json kinds we convert, and the llama.cpp vocabulary each becomes:
//   spm        BPE with byte_fallback (LLaMA-1/2, Gemma: pieces with U+2581 for spaces, <0xXX> byte pieces)
//              -> tokenizer.ggml.model "llama": tokens as stored, scores = -(rank of the first merge that makes the
//              token) (llama.cpp's SPM tokenizer merges the highest-scoring pair first, the HF BPE the lowest merge
//              rank: the same order), add_space_prefix from the normalizer / Metaspace pre-tokenizer.
//   bytelevel  BPE with a ByteLevel pre-tokenizer (LLaMA-3): -> "gpt2": tokens and merges as stored, pre from the
//              Split regex (kPreTable), no scores.
//   chars      BPE with neither (the test fixtures' character tokenizer): -> "gpt2" with every token's bytes mapped
//              through GPT-2's byte-to-unicode table (what a ByteLevel vocabulary stores) and pre "default". With no
//              byte fallback, a character outside the vocabulary is <unk> for Hugging Face and dropped by llama.cpp.
// Token types (gguf-py TokenType): special added tokens CONTROL (3), other added tokens USER_DEFINED (4) with their
// raw text, <0xXX> pieces BYTE (6), the unk token UNKNOWN (2), everything else NORMAL (1).
// Special ids: bos/eos/unk/pad from tokenizer_config.json's token strings, else config.json's ids; add_bos_token
// whenever there is a BOS (H-QLoRA's data preparation always starts a sequence with it); add_eos_token from
// tokenizer_config.json, else the post-processor's template; chat_template from chat_template.jinja or
// tokenizer_config.json.
#pragma once
#include <string>
#include <unordered_set>
#include <vector>

#include "gguf_writer.h"

namespace hq {

struct GgufVocabInfo {
    std::string kind;            // "spm" | "bytelevel" | "chars"
    std::string ggml_model;      // "llama" | "gpt2"
    std::string pre;             // gpt2 pre-tokenizer name ("" for llama)
    int n_tokens = 0;
    int bos = -1, eos = -1, unk = -1, pad = -1;
    bool add_bos = false, add_eos = false, add_space_prefix = false;
    bool has_chat_template = false;
    bool byte_complete = false;  // every byte has a token (byte fallback or byte-level): no character is lost
    std::unordered_set<std::string> texts;   // every token's text as tokenizer.json stores it (before byte mapping)
};

// Reads <model_dir>/tokenizer.json (+ tokenizer_config.json, config.json) and adds the tokenizer keys to `w`.
// `vocab_size` is the model's embedding rows: the token list is padded with "[PAD{id}]" UNUSED tokens up to it
// (as llama.cpp's converter does) and must not be shorter than the tokenizer. Throws E_CONFIG naming the file.
GgufVocabInfo add_gguf_vocab(GgufWriter& w, const std::string& model_dir, int vocab_size);

}  // namespace hq
