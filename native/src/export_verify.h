// export_verify.h — the forward check behind every export's verify.json.
//
// A few fixed token sequences (verify_ids) go through
//   reference  the trainer's forward: base (NF4-quantized targets, or fp32 original) + the source adapter levels,
//              each level at its own scale, as one Model (for a single hierarchical source the adapter is loaded
//              with adapter_io's load_hierarchical_adapter, i.e. an independent reader from the exporter's);
//   exported   the artefact read back from disk: a flat PEFT folder as a Model with one level {r, lora_alpha}, or
//              a merged model folder as a Model with quantization "none" and its adapter B = 0;
// and the logits are compared: max and mean |Δ|, pass iff max |Δ| <= tolerance.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "adapter_source.h"
#include "model.h"

namespace hq {

constexpr int kVerifyBatch = 3, kVerifySeq = 16;

// [kVerifyBatch, kVerifySeq] deterministic ids < vocab (a fixed pseudo-random pattern, first token = bos if valid).
std::vector<int32_t> verify_ids(int vocab, int bos);

struct WeightedSource {
    const AdapterSource* src = nullptr;
    double weight = 1.0;
};

// Logits [B, T, V] of base + Σ_i w_i·(source i's levels) through the trainer's Model.
std::vector<float> reference_logits(const std::string& base_dir, const QuantSpec& quant,
                                    const std::vector<WeightedSource>& sources, const std::vector<int32_t>& ids);
// Logits of a model folder with no adapter (quantization none).
std::vector<float> plain_logits(const std::string& model_dir, const std::vector<int32_t>& ids);

// {"max_abs_diff", "mean_abs_diff", "ref_max_abs", "tolerance", "pass"}. relative: the bound is
// tolerance·max(1, ref_max_abs) (exact fp32 exports, whose rounding grows with the logits' scale), and "tolerance"
// reports that bound.
nlohmann::json compare_logits(const std::vector<float>& ref, const std::vector<float>& got, double tolerance,
                              bool relative = false);

}  // namespace hq
