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
//   mistral  as llama (the converter registers MistralForCausalLM under llama), permuted alike; llama.cpp's llama
//          has no sliding window: a window shorter than the context is reported in "warnings"
//   qwen2  q/k/v biases as blk.N.attn_{q,k,v}.bias (f32); tied models have no output.weight (llama.cpp reuses
//          token_embd); qwen3 adds attn_q_norm / attn_k_norm (plain RMSNorm weights, no +1)
//   gemma2 post_attention_layernorm -> post_attention_norm, pre_/post_feedforward_layernorm -> ffn_norm /
//          post_ffw_norm, norms + 1, both soft-caps and the sliding window with its layer period; gemma3 adds
//          attn_q_norm / attn_k_norm (+1 too), rope.freq_base_swa (the local layers' theta) and linear rope scaling
//          (the global layers'). llama.cpp scales q by head_dim^-1/2 whatever query_pre_attn_scalar says: a
//          different scalar is folded into attn_q (Gemma-2) or attn_q_norm (Gemma-3), exact since RoPE is linear.
//          The embedding keeps its padded rows (the converter trims Gemma-3's to the tokenizer; the padding tokens
//          are written as unused tokens instead, so every logit is compared)
//   phi3   qkv_proj -> attn_qkv, gate_up_proj -> ffn_up (fused as stored); LongRoPE as rope_factors_long/_short
//          with rope.scaling.original_context_length and .attn_factor. The LoRA of a fused tensor stacks its
//          modules' A rows and places each B block-diagonally (exact); llama.cpp scales a tensor by alpha / its rank,
//          so the A of a tensor holding k modules is multiplied by k
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
// "logits"} for the llama.cpp comparison of extension/gguf. `round` "f16" | "bf16": the same forward on what a GGUF of
// that type holds (the adapter merged, every 2-D weight rounded to the type; norms f32), for the rounding part of a
// f16 / bf16 export's bound.
nlohmann::json gguf_reference_logits(const std::string& source, const std::string& base_model, const std::string& base,
                                     bool with_adapter, const std::string& round = "");

}  // namespace hq
