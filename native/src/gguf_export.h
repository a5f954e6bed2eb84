// gguf_export.h — an adapter as GGUF files for llama.cpp, Ollama, LM Studio and node-llama-cpp, with no Python:
//   model-<type>.gguf    the merged model: W' = W + B·A per adapted projection (every level pre-summed, the paper's
//                        eq. 4), W the original weight or the NF4-dequantized one the adapter was trained on
//   base-<type>.gguf     the same base without the adapter (for several adapters over one base, and the check below)
//   adapter-<type>.gguf  the flat adapter as a llama.cpp LoRA (general.type "adapter", adapter.type "lora",
//                        adapter.lora.alpha = R so llama.cpp's scale alpha/R is 1): <tensor>.lora_a [R, in] holds
//                        concat_rows(s_j·A_j), <tensor>.lora_b [out, R] concat_cols(B_j)
//   Modelfile            Ollama: FROM base + ADAPTER adapter (only when both are written)
//   verify.json          what the export did; the llama.cpp checks are added by the caller (extension/gguf)
// Types: f32 | f16 | bf16 | q8_0 for the 2-D weights; norms and rope_freqs stay f32 (as llama.cpp's converter
// writes them). LoRA tensors are f32 for f32 exports and f16 otherwise (q8_0 needs rows of 32: ranks seldom are).
//
// Architecture mapping (kGgufArchs in gguf_export.cpp, one entry per family): the HF model_type, llama.cpp's
// general.architecture, the per-layer tensor names, and the value fix-ups llama.cpp's converter applies:
//   llama  attn_q / attn_k rows permuted from HF's rotate-half RoPE layout to llama.cpp's interleaved pairs
//          (per head of d rows: new row 2j+k = old row k·d/2 + j); llama3 rope scaling as a rope_freqs tensor
//   gemma  every *norm.weight + 1 (HF stores scale - 1); lm_head dropped (tied)
// Streaming and atomic as merge.h: one tensor in memory at a time, the folder built in a temp sibling and renamed
// when complete; cancel between tensors (E_CANCELLED), nothing left under out_dir on any failure.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "merge.h"

namespace hq {

struct GgufExportOptions : ExportCommon {
    std::string source;                 // run folder or adapter folder (adapter_source.h)
    std::string base = "dequantized";   // "original" | "dequantized"
    std::string type = "f16";           // "f32" | "f16" | "bf16" | "q8_0"
    bool write_merged = true, write_base = true, write_lora = true;
    int levels = 0;                     // LoRA and merge of the first n levels (0 = all)
};

nlohmann::json export_gguf(const GgufExportOptions& opts);

// Logits [kVerifyBatch, kVerifySeq, V] of the trainer's forward on verify_ids(): the base (original, or with NF4
// targets for "dequantized") plus the source adapter when `with_adapter`; {"ids", "vocab", "batch", "seq",
// "logits"} for the llama.cpp comparison of extension/gguf.
nlohmann::json gguf_reference_logits(const std::string& source, const std::string& base_model, const std::string& base,
                                     bool with_adapter);

}  // namespace hq
