// eval_cmd.h — `hqlora-train eval`: eval loss / perplexity and multiple-choice accuracy of the NF4 base, the base
// plus a hierarchical adapter, and the level ablation (levels 1..k cumulatively), as one table
// (docs/CONTRACTS.md §7; events `eval_progress`, `mcq`, `eval_result` of schemas/trainer-events.schema.json).
//
// Rows, in order: "base" (every lora_B zeroed: y = x·Wᵀ with the dequantized NF4 W), then per --levels
//   all       the whole adapter (one row)
//   k         the first k levels (Model::set_active_levels(k))
//   ablation  levels 1, 1+2, ..., 1..L (the last row is the whole adapter)
// With --adapter none only the base row is computed. The adapter's level ranks/alphas come from the
// adapter.safetensors metadata (hqlora.levels), not from run.json, so any checkpoint or final adapter can be scored.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "events.h"

namespace hq {

struct EvalOptions {
    std::string config_path;          // run.json (model, quantization, data.eval_tokens, eval.mcq.tokens, threads)
    std::string adapter;              // "" = <run>/adapter; "none" = base model only; else a folder or .safetensors
    std::string levels = "all";       // "all" | "ablation" | "<k>"
    std::string mcq;                  // "" = eval.mcq.tokens of run.json; "none" = skip; else a .hqmcq file
    std::string eval_tokens;          // "" = data.eval_tokens of run.json; "none" = skip; else a .hqtok file
    int threads = -1;                 // -1 = run.json hardware.threads (0 = all cores)
    int batch = 32;                   // questions per forward at most
    int64_t max_questions = -1;       // -1 = eval.mcq.max_questions of run.json (0 = all)
    int64_t max_examples = -1;        // eval-loss examples; -1 = eval.max_batches × micro_batch_size (0 = all)
};

// Runs the evaluation; emits progress/mcq events and one final `eval_result` event (the table) on `events`.
// Returns kExitDone; throws hq::Error on bad input.
int run_eval(const EvalOptions& opt, EventSink& events);

// Parses argv[first..] (the words after "eval") and runs; usage problems return kExitUsage, errors kExitError
// after an `error` event.
int eval_main(int argc, char** argv, int first, EventSink& events);

void eval_usage(std::FILE* out);

// The rows' level counts for --levels `spec` with an adapter of L levels: 0 = base. Throws E_CONFIG on a bad spec.
std::vector<int> eval_rows(const std::string& spec, int L, bool has_adapter);

}  // namespace hq
