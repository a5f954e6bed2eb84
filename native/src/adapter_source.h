// adapter_source.h — read-only access to an adapter on disk, one module at a time, in either format:
//   hierarchical  <dir>/adapter.safetensors (+ adapter_metadata.json) or the .safetensors file itself,
//                 keys M.levels.{j}.lora_{A,B}.weight, levels from the `hqlora.levels` metadata (CONTRACTS §4)
//   peft          <dir>/adapter_config.json + adapter_model.safetensors, keys base_model.model.M.lora_{A,B}.weight,
//                 one level {r, lora_alpha}; rank_pattern / alpha_pattern give a module its own rank / alpha (PEFT's
//                 rule: the first key K, in file order, with re.match(rf"(.*\.)?({K})$", module)). Phi-3's fused
//                 qkv_proj / gate_up_proj modules are read as their projections (q/k/v, gate/up), each with the
//                 fused A and its rows of the fused B (proj_rows of the base model's config.json)
//   run folder    <run>/adapter/ (hierarchical); <run>/run.json supplies the base model path and the quantization
// Opening validates everything that can be validated without reading weights: every module has every level with
// A [r_j, in] and B [out, r_j] and no stray tensors. Errors name the file and the tensor.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model.h"
#include "safetensors.h"

namespace hq {

struct SourceModule {
    std::string name;   // "model.layers.0.self_attn.q_proj"
    int in = 0, out = 0;
    // Where its tensors are (PEFT): the module `stored` (= name, or the fused "...self_attn.qkv_proj" of a Phi-3
    // adapter), lora_A [rank, in] and rows [row0, row0 + out) of lora_B [stored_out, rank]; scale = its alpha / rank
    // (rsLoRA: / sqrt(rank)).
    std::string stored;
    int64_t row0 = 0, stored_out = 0;
    int rank = 0;
    float scale = 1.0f;
};

struct AdapterSource {
    std::string kind;                    // "hierarchical" | "peft"
    std::string path;                    // what the user gave
    std::string file;                    // the safetensors file
    std::vector<LevelSpec> levels;       // rank, alpha per level
    std::vector<float> scales;           // per level, as the forward uses it
    bool rslora = false;
    // PEFT modules of different ranks or alphas (rank_pattern / alpha_pattern): levels = {{R, R}} (scale 1) with R
    // the largest rank, and read_level gives each module's A times its own scale, zero-padded to R rows, and B
    // zero-padded to R columns, so B·A is exactly that module's update.
    bool per_module = false;
    std::vector<std::string> target_modules;   // projection short names present, canonical order (q_proj, ...)
    std::vector<SourceModule> modules;   // sorted by layer, then q,k,v,o,gate,up,down
    std::string base_model;              // base model folder ("" when unknown)
    std::string architecture;            // model_type the adapter was trained on ("" when unknown)
    bool has_quant = false;              // quantization known from run.json
    QuantSpec quant;
    std::unique_ptr<SafeTensorsFile> st;

    int total_rank() const;
    const SourceModule* find(const std::string& module) const;
    // Level j of a module as stored (unscaled): A [r_j, in], B [out, r_j].
    void read_level(const SourceModule& m, int j, std::vector<float>* A, std::vector<float>* B) const;
    // All levels with the scales folded into A: A [R, in] = concat_rows(s_j·A_j), B [out, R] = concat_cols(B_j).
    // This is the exact flat form: B·A = Σ s_j·B_j·A_j.
    void read_flat(const SourceModule& m, std::vector<float>* A, std::vector<float>* B) const;
    // read_level of a PEFT module (its rows of the stored lora_B; padded and scaled when per_module).
    void read_peft(const SourceModule& m, std::vector<float>* A, std::vector<float>* B) const;
    // Drops the mapped pages of everything read so far (keeps resident memory bounded on big adapters).
    void release_pages() const;
};

// `base_dir`: the base model folder whose config.json lays out Phi-3's fused modules ("" = the adapter's own
// base_model_name_or_path / run.json / adapter_metadata.json path).
AdapterSource open_adapter_source(const std::string& path, const std::string& base_dir = "");

// The AdapterSpec a Model needs to hold this adapter's levels exactly (targets = the source's target modules).
AdapterSpec source_adapter_spec(const AdapterSource& src);

// Canonical order index of a projection short name (q_proj = 0 ... down_proj = 6), -1 if unknown.
int projection_index(const std::string& short_name);

// Drops the page-cache mapping of [p, p + n) from this process's resident set (madvise DONTNEED on the pages
// fully inside the range; the data stays in the file).
void release_mapped_range(const void* p, size_t n);

}  // namespace hq
