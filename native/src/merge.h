// merge.h — adapter export: levels → flat PEFT LoRA, adapter → merged full model, several adapters → one.
//
// Every operation
//   - streams: one module (adapter ops) or one tensor (model export) is in memory at a time, plus fixed buffers;
//     mapped input pages are released after use, so peak resident memory is ~ a few of the largest tensor;
//   - builds its output in a temp sibling of `out_dir` and publishes it with one rename (fsutil publish_dir); on any
//     error or cancellation the temp folder is removed and nothing appears under `out_dir`;
//   - writes verify.json next to its output (export_verify.h) and returns the same JSON object.
// Errors are hq::Error naming the file and tensor: E_IO (missing input, unwritable target), E_SAFETENSORS
// (truncated / malformed input), E_SHAPE (adapter and base disagree), E_CONFIG (architecture mismatch, bad
// options), E_CANCELLED (the cancel flag was set), E_VERIFY is never thrown: a failed verification is reported.
//
// Math (trainer-anchors §3.4–3.5, CONTRACTS §4), per module with levels j = 0..L-1, s_j = alpha_j / r_j:
//   flat exact   r = lora_alpha = R = Σ r_j;  A = concat_rows(s_j·A_j) [R, in];  B = concat_cols(B_j) [out, R]
//   svd (k < R)  ΔW = B·A = U·S·Vᵀ (lowrank.h);  B' = U_k·S_k [out, k], A' = V_kᵀ [k, in], r = lora_alpha = k
//   merged       W' = W + B·A with W the original weight, or the NF4-dequantized weight the adapter was trained on
//   combine      concat: A = concat_rows(w_i·A_i), B = concat_cols(B_i)  (exactly Σ w_i ΔW_i)
//                linear: equal ranks; A = Σ sqrt(w_i)·A_i, B = Σ sqrt(w_i)·B_i  (PEFT "linear"; cross terms make it
//                        approximate — the report gives the error against Σ w_i ΔW_i per module)
//                svd:    Σ w_i ΔW_i truncated to rank k  (PEFT "svd")
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model.h"

namespace hq {

struct MergeProgress {
    std::string phase;   // "merge" | "write" | "verify" | "publish"
    int64_t done = 0, total = 0;
    std::string item;    // module or tensor name
};

struct ExportCommon {
    std::string out_dir;                          // final folder (must not exist unless overwrite)
    bool overwrite = false;                       // replace an existing out_dir (atomically)
    std::string base_model;                       // base model folder; "" = from the adapter / run.json
    bool quant_set = false;                       // use `quant` instead of the source's (run.json) or the default
    QuantSpec quant;                              // what the adapter was trained against (default NF4, dq, 64)
    bool verify = true;                           // forward check (needs the base; skipped with a reason otherwise)
    double tolerance = 1e-5;                      // max |Δlogit| / max(1, max |logit|), exact fp32 exports
    double lossy_tolerance = 0.5;                 // max |Δlogit| accepted for lossy exports (svd, linear)
    std::function<void(const MergeProgress&)> progress;
    const std::atomic<bool>* cancel = nullptr;    // set to stop; the operation throws E_CANCELLED
};

struct MergeLevelsOptions : ExportCommon {
    std::string source;   // run folder, hierarchical adapter folder/file, or PEFT folder
    int rank = 0;         // 0 = exact (R); 0 < rank < R = truncated SVD per module
};

struct MergeIntoBaseOptions : ExportCommon {
    std::string source;
    std::string base = "dequantized";   // "original" | "dequantized"
    std::string dtype = "bf16";         // "bf16" | "fp16" | "fp32"
    uint64_t max_shard_bytes = uint64_t(4) << 30;
};

struct CombineOptions : ExportCommon {
    std::vector<std::string> sources;
    std::string mode = "concat";        // "concat" | "linear" | "svd"
    std::vector<double> weights;        // one per source; empty = all 1
    int rank = 0;                       // svd target rank; 0 = the largest source rank (PEFT's default)
};

nlohmann::json merge_levels(const MergeLevelsOptions& opts);
nlohmann::json merge_into_base(const MergeIntoBaseOptions& opts);
nlohmann::json combine_adapters(const CombineOptions& opts);

// Builds an export folder: checks that `o.out_dir` is free (or o.overwrite) and contains none of `inputs`, runs
// `fill(tmp)` on a temp sibling, writes the returned report as verify.json, publishes the folder with one rename and
// returns the report (with "output" set). On any error or cancellation the temp folder is removed.
nlohmann::json build_export_dir(const ExportCommon& o, const std::vector<std::string>& inputs,
                                const std::function<nlohmann::json(const std::string& tmp)>& fill);

// For the export writers (merge.cpp, gguf_export.cpp): E_CANCELLED naming `item` once o.cancel is set (nothing is
// published), and progress `phase` done/total at `item` to o.progress.
void export_check_cancel(const ExportCommon& o, const std::string& item);
void export_report(const ExportCommon& o, const char* phase, int64_t done, int64_t total, const std::string& item);

// One-line human summary of a returned report, e.g. "verify: PASS max |Δlogit| 2.4e-07 (tol 1e-05) ...".
std::string export_summary(const nlohmann::json& report);

}  // namespace hq
