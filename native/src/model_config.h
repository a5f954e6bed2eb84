// model_config.h — the Hugging Face config.json of a supported decoder, parsed and checked.
//
// Families: LLaMA 1/2/3, Gemma 1, Qwen2/2.5, Qwen3 (dense), Mistral, Gemma-2, Gemma-3 (text), Phi-3/3.5-mini.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace hq {

// The supported decoder families (config.json model_type). Gemma (1) keeps its name for compatibility.
enum class Arch { Llama, Gemma, Qwen2, Qwen3, Mistral, Gemma2, Gemma3, Phi3 };

// "llama" | "gemma" | "qwen2" | "qwen3" | "mistral" | "gemma2" | "gemma3_text" | "phi3"
const char* arch_model_type(Arch a);
// The families a refusal lists: "llama (LLaMA 1/2/3), gemma (Gemma 1), qwen2 (Qwen2/2.5), ...".
const char* supported_families();

struct RopeScaling {
    std::string type;   // "" (none) | "llama3" | "linear" | "longrope"
    float factor = 1.0f, low_freq_factor = 1.0f, high_freq_factor = 4.0f;
    int original_max_position_embeddings = 8192;
    // longrope (Phi-3): per-frequency divisors [d/2] for sequences of length <= original_max_position_embeddings
    // (short) and longer (long); cos/sin are multiplied by attention_factor.
    std::vector<float> short_factor, long_factor;
    float attention_factor = 1.0f;
};

struct ModelConfig {
    Arch arch = Arch::Llama;
    std::string model_type;      // as in config.json (see arch_model_type)
    int vocab_size = 0;
    int hidden_size = 0;         // C
    int intermediate_size = 0;   // F
    int num_layers = 0;          // L
    int num_heads = 0;           // H
    int num_kv_heads = 0;        // KV (GQA when KV < H)
    int head_dim = 0;            // d (config head_dim, else C / H)
    float rms_norm_eps = 1e-6f;
    float rope_theta = 10000.0f;
    RopeScaling rope_scaling;    // for every layer, or (Gemma-3) for the global layers only
    std::string rope_key = "rope_scaling";   // the config.json key it was read from (a later rope_parameters wins)
    int max_position_embeddings = 2048;
    bool tie_word_embeddings = false;
    std::string hidden_act;      // "silu" | "gelu_pytorch_tanh" (Gemma family; "gelu" maps to tanh-GELU)
    int bos_token_id = -1, eos_token_id = -1, pad_token_id = -1;
    std::string torch_dtype;     // as stored, informational

    // ---- family features (all off for LLaMA) ----
    bool gemma_norm = false;       // RMSNorm scales by (1 + w) and the embeddings by √C (Gemma 1/2/3)
    bool qkv_bias = false;         // q/k/v projections carry a bias (Qwen2), frozen, fp32
    bool qk_norm = false;          // RMSNorm over head_dim on q and k before RoPE (Qwen3, Gemma-3)
    bool sandwich_norm = false;    // post-attention and pre/post-feedforward norms (Gemma-2/3)
    bool fused_proj = false;       // qkv_proj / gate_up_proj tensors, split by rows at load (Phi-3)
    int sliding_window = 0;        // window of the sliding layers (0: none); key j visible from i iff i - j < W
    std::vector<uint8_t> layer_sliding;   // [L] 1 = sliding-window layer
    float attn_softcap = 0.0f;     // scores = cap·tanh(scores/cap) (Gemma-2); 0 = off
    float final_softcap = 0.0f;    // logits = cap·tanh(logits/cap) (Gemma-2); 0 = off
    float query_pre_attn_scalar = 0.0f;   // attention scale = this^-0.5 (Gemma-2/3); 0 = head_dim
    float rope_local_theta = 0.0f; // Gemma-3: theta of the sliding layers (default RoPE, no scaling); 0 = same

    float attn_scale() const;
    bool any_sliding() const;
    // The family features of this config, for `hqlora inspect` and logs: e.g. {"qkv_bias", "sliding_window=4096"}.
    std::vector<std::string> features() const;
    // The features the CUDA backend does not implement yet (empty: CUDA can train this model), comma-separated.
    std::string cuda_missing_features() const;
};

// The head sizes the CUDA flash attention kernel is built for (native/cuda/flash_attention.cu: flash_supported).
inline bool flash_head_dim(int d) { return d == 16 || d == 32 || d == 64 || d == 96 || d == 128 || d == 256; }

// Where the weight of projection `module` ("model.layers.3.self_attn.q_proj") is stored in the checkpoint: rows
// [row0, row0 + rows) of the tensor `tensor` ("model.layers.3.self_attn.qkv_proj.weight"). Its own tensor from row 0
// for every family except Phi-3 (fused_proj): q/k/v are rows of self_attn.qkv_proj = [q (H·d); k (KV·d); v (KV·d)]
// and gate/up rows of mlp.gate_up_proj = [gate (F); up (F)], as Phi3Attention / Phi3MLP split them.
struct ProjRows {
    std::string tensor;
    int64_t row0 = 0, rows = 0;
};
ProjRows proj_rows(const ModelConfig& c, const std::string& module);
// Rows of the tensor that holds `module` (proj_rows(c, module).tensor): its own out rows, or (Phi-3) all of
// qkv_proj ((H+2KV)·d) / gate_up_proj (2F).
int64_t proj_tensor_rows(const ModelConfig& c, const std::string& module);

// Reads <dir>/config.json. Throws hq::Error("E_CONFIG", ..., where.file=config.json, where.key=<field>) for an
// unsupported architecture or field value (e.g. attention_bias=true, rope_scaling.type="yarn").
ModelConfig load_model_config(const std::string& dir);

}  // namespace hq
