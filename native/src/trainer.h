// trainer.h — the training loop of hqlora-train (docs/CONTRACTS.md §1, §2, §5, §6).
//
// One optimizer step = gradient_accumulation_steps micro-batches. The step's micro-batches are gathered first so
// that grad_scale = 1 / (target tokens of the whole step): the accumulated gradient is that of the step's mean
// token loss (transformers' num_items_in_batch semantics). Then: global-norm clipping, learning rate from the
// schedule, AdamW. Dropout masks are re-seeded at every step from (seed, step), so the dropout stream, like the
// data cursor, is a pure function of the checkpointed state: a resumed run reproduces the uninterrupted one bit
// for bit (same thread count).
#pragma once
#include <atomic>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "events.h"
#include "model.h"
#include "tokens.h"

namespace hq {

struct TrainOptions {
    std::string config_path;
    bool resume = false;
    int threads = -1;             // -1: from run.json (hardware.threads; 0 = all cores)
    int64_t max_steps = -1;       // -1: from run.json
};

// Exit codes (CONTRACTS §1).
constexpr int kExitDone = 0, kExitError = 1, kExitUsage = 2, kExitStopped = 3, kExitNonFinite = 4;

// Runs the whole job and returns the exit code: kExitDone, kExitStopped (stop_flag became non-zero; a checkpoint
// was written) or kExitNonFinite (an E_NONFINITE error event was emitted; the last good checkpoint is untouched).
// Other failures throw hq::Error (the caller emits the error event and exits 1).
// save_request (optional): when it becomes non-zero, a checkpoint (reason "requested") is written after the current
// step and training goes on; it is reset to zero when served (SIGUSR1 in main_train.cpp).
int run_training(const TrainOptions& opt, EventSink& events, const std::atomic<int>& stop_flag,
                 std::atomic<int>* save_request = nullptr);

struct EvalResult {
    double loss = 0.0, perplexity = 0.0;
    int64_t tokens = 0, examples = 0;
    double accuracy = -1.0, exact_match = -1.0;   // -1 when not computed (logits too large)
};

// Teacher-forced evaluation, one example at a time through forward_logits: mean CE over target tokens (fp64
// log-sum-exp), token accuracy (argmax == target) and exact match (every target token right). Examples whose
// [T, V] logits exceed `max_logits_bytes` are scored with forward_backward (loss only; accuracy then omitted).
// max_examples 0 = all.
EvalResult evaluate(Model& model, const TokenFile& file, int64_t max_len, int64_t max_examples,
                    size_t max_logits_bytes = size_t(1) << 30);

// adapter_stats event fields for a fixed, evenly spaced sample of up to `max_modules` adapted modules:
// per level: delta_norm = sqrt(Σ_modules s_i²·tr((B_iᵀB_i)(A_iA_iᵀ))) (= ‖s_i·B_i·A_i‖_F without forming it),
// a_norm, b_norm (Frobenius, in quadrature over the sample).
nlohmann::json adapter_stats(Model& model, int max_modules = 4);

}  // namespace hq
