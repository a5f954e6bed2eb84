// run_config.h — run.json (docs/CONTRACTS.md §6) parsed into typed structs.
//
// Defaults are the QLoRA recipe (trainer-anchors §2): NF4 + double quant, blocksize 64, all seven linear
// projections, lr 2e-4 constant, batch 1 × accumulation 16, max_grad_norm 0.3, AdamW betas (0.9, 0.999), no weight
// decay, gradient checkpointing, seed 0. Keys the trainer does not read (data.train, data.format, ...) are ignored;
// keys it reads are type- and range-checked, and every problem throws hq::Error("E_CONFIG", ..., Where{file, key})
// naming the key path, e.g. "adapter.levels[2].rank".
//
// Step count: when training.epochs is a number, total steps = ceil(epochs × n_train_examples / examples_per_step)
// and training.max_steps is ignored; otherwise training.max_steps. The --max-steps flag overrides both.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "data_parallel.h"
#include "model.h"

namespace hq {

// The longest sequence the trainer takes (source_max_len + target_max_len); MAX_SEQ_LEN in extension/core/truncation.ts
// and the schema's maxima say the same.
constexpr int64_t kMaxSeqLen = 16384;

struct DataConfig {
    std::string train_tokens, eval_tokens;  // absolute paths; eval_tokens "" = no eval
    int64_t source_max_len = 1024, target_max_len = 256;
    // Truncation length of an example in the trainer: source_max_len + target_max_len.
    int64_t max_len() const { return source_max_len + target_max_len; }
};

struct TrainingConfig {
    int64_t max_steps = 1875;
    double epochs = 0.0;           // 0 = not set (null)
    bool has_epochs = false;
    int micro_batch_size = 1;
    int gradient_accumulation_steps = 16;
    double learning_rate = 2e-4;
    std::string lr_scheduler = "constant";  // constant | linear | cosine
    int64_t warmup_steps = 0;
    double warmup_ratio = 0.0;
    double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_epsilon = 1e-8, weight_decay = 0.0;
    double max_grad_norm = 0.3;    // 0 = no clipping
    bool gradient_checkpointing = true;
    uint64_t seed = 0;
    bool shuffle = true;
};

struct EvalConfig {
    int64_t every_steps = 187;     // 0 = only at the end
    int64_t max_batches = 0;       // 0 = whole eval file
    std::string mcq_tokens;        // eval.mcq.tokens: the .hqmcq written by hqlora ("" = no multiple-choice eval)
    int64_t mcq_max_questions = 0; // eval.mcq.max_questions (0 = all)
};

struct CheckpointConfig {
    int64_t every_steps = 250;     // 0 = only on signals
    int keep = 3;                  // 0 = keep all
};

struct LoggingConfig {
    int64_t every_steps = 1;
    int64_t adapter_stats_every = 10;   // 0 = never
};

struct RunConfig {
    std::string file;              // the run.json path (for error messages)
    std::string model_path;
    QuantSpec quant;
    AdapterSpec adapter;
    DataConfig data;
    TrainingConfig training;
    EvalConfig eval;
    CheckpointConfig checkpoints;
    std::string output_dir, run_name;
    std::string device = "auto";
    std::string compute_dtype = "auto";   // quantization.compute_dtype: auto | bfloat16 | float32
    int threads = 0;               // 0 = all cores
    int gpus = 1;                  // hardware.gpus: ranks the one-host launcher starts (a list: its length)
    DistributedConfig dist;        // distributed.*: backend, timeout, buckets (a world of one ignores them)
    LoggingConfig logging;
    nlohmann::json raw;            // the parsed run.json

    std::string run_dir() const;   // output_dir/run_name
};

// Parses an already-loaded JSON object. `file` is used in error locations.
RunConfig parse_run_config(const nlohmann::json& j, const std::string& file);
// Reads + parses `path`. JSON syntax errors name the byte offset and line.
RunConfig load_run_config(const std::string& path);

// The parts of the config a checkpoint must agree with to be resumed (model, quantization, adapter shape).
nlohmann::json compat_json(const RunConfig& c);
// Hex FNV-1a-64 over the sorted-key JSON of everything that changes the numbers of training (model, quant,
// adapter, data files and lengths, training); not output/logging/hardware/eval cadence.
std::string config_hash(const RunConfig& c);

}  // namespace hq
