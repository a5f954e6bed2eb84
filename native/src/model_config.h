// model_config.h — the Hugging Face config.json of a supported decoder, parsed and checked.
#pragma once
#include <cstdint>
#include <string>

namespace hq {

enum class Arch { Llama, Gemma };

struct RopeScaling {
    std::string type;   // "" (none) | "llama3"
    float factor = 1.0f, low_freq_factor = 1.0f, high_freq_factor = 4.0f;
    int original_max_position_embeddings = 8192;
};

struct ModelConfig {
    Arch arch = Arch::Llama;
    std::string model_type;      // "llama" | "gemma"
    int vocab_size = 0;
    int hidden_size = 0;         // C
    int intermediate_size = 0;   // F
    int num_layers = 0;          // L
    int num_heads = 0;           // H
    int num_kv_heads = 0;        // KV (GQA when KV < H)
    int head_dim = 0;            // d (config head_dim, else C / H)
    float rms_norm_eps = 1e-6f;
    float rope_theta = 10000.0f;
    RopeScaling rope_scaling;
    int max_position_embeddings = 2048;
    bool tie_word_embeddings = false;
    std::string hidden_act;      // "silu" (LLaMA) | "gelu_pytorch_tanh" (Gemma; "gelu" maps to tanh-GELU)
    int bos_token_id = -1, eos_token_id = -1, pad_token_id = -1;
    std::string torch_dtype;     // as stored, informational
};

// Reads <dir>/config.json. Throws hq::Error("E_CONFIG", ..., where.file=config.json, where.key=<field>) for an
// unsupported architecture or field value (e.g. attention_bias=true, rope_scaling.type="yarn").
ModelConfig load_model_config(const std::string& dir);

}  // namespace hq
