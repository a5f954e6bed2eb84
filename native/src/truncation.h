// truncation.h — what the trainer's W_TRUNCATED warning says: how many training rows are longer than the length the
// trainer cuts them at (min(source_max_len + target_max_len, the model's max_position_embeddings)), how many tokens
// and loss targets that drops, why the limit is what it is, and what to do about it. The language server and
// `hqlora validate` word the same limit before a run (extension/core/truncation.ts); keep the two in step.
#pragma once
#include <cstdint>
#include <string>

#include "model_config.h"
#include "tokens.h"

namespace hq {

struct TruncationStats {
    int64_t rows = 0;      // examples longer than max_len
    int64_t tokens = 0;    // tokens past max_len, summed over those rows
    int64_t max_row = 0;   // the most tokens one row loses
    int64_t targets = 0;   // loss targets among the dropped tokens
};

// Rows of `f` longer than max_len (> 0) and what cutting them at max_len drops.
TruncationStats truncation_stats(const TokenFile& f, int64_t max_len);

// How to give the model a context of `want` > max_position_embeddings positions in its config.json, the way
// hqlora-train reads it (model_config.cpp): linear position interpolation for a model without rope scaling, a larger
// factor for linear / llama3 scaling, under the key the scaling was read from (rope_scaling, or transformers 5's
// rope_parameters); "" where the model cannot be extended so (Phi-3's fitted longrope factors).
std::string rope_extension_advice(const ModelConfig& mc, int64_t want);

// The W_TRUNCATED message. max_len is the cut (min(config_len, mc.max_position_embeddings)); config_len is
// data.source_max_len + data.target_max_len; model_dir and tokens_path name the files the limit comes from.
std::string truncation_message(const TruncationStats& s, int64_t n_examples, int64_t max_len, int64_t config_len,
                               const ModelConfig& mc, const std::string& model_dir, const std::string& tokens_path);

}  // namespace hq
