// model_impl.h — the decoder's internal pieces shared by model.cpp (weights, per-layer activation cache).
//
// Shapes: N = B·T tokens, C hidden, F intermediate, H/KV heads, d head_dim, R_a active adapter rank.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hlora.h"
#include "mlp.h"
#include "model.h"

namespace hq {

// The seven projections of a decoder layer, in HF order. Index = position in kProjNames.
enum Proj { P_Q = 0, P_K, P_V, P_O, P_GATE, P_UP, P_DOWN, P_COUNT };
extern const char* const kProjNames[P_COUNT];   // "q_proj", ..., "down_proj"
// "model.layers.{l}.self_attn.q_proj" / "model.layers.{l}.mlp.gate_proj"
std::string proj_module_name(int layer, int proj);

struct DecoderLayer {
    std::vector<float> ln1;      // [C] input_layernorm.weight
    std::vector<float> ln2;      // [C] the pre-MLP norm: post_attention_layernorm.weight, or (Gemma-2/3)
                                 //     pre_feedforward_layernorm.weight
    HLoraLinear proj[P_COUNT];   // q [H·d, C], k/v [KV·d, C], o [C, H·d], gate/up [F, C], down [C, F]
                                 // (Phi-3: row slices of qkv_proj [(H+2KV)·d, C] and gate_up_proj [2F, C])
    // Family extras (empty when the family has none):
    std::vector<float> ln_post_attn;   // [C] Gemma-2/3 post_attention_layernorm: on the o_proj output
    std::vector<float> ln_post_ff;     // [C] Gemma-2/3 post_feedforward_layernorm: on the down_proj output
    std::vector<float> q_norm, k_norm; // [d] Qwen3 / Gemma-3 per-head RMSNorm of q and k before RoPE
    std::vector<float> bias[3];        // Qwen2 q/k/v biases [H·d], [KV·d], [KV·d] (frozen, fp32)
    bool sliding = false;              // sliding-window attention layer
};

// Activations of one layer kept for its backward (one per layer, or a single one with gradient checkpointing).
struct LayerActs {
    std::vector<float> xn1;      // [N, C]     input_layernorm(x)
    std::vector<float> rstd1;    // [N]
    std::vector<float> q;        // [N, H·d]   after rope
    std::vector<float> k;        // [N, KV·d]  after rope
    std::vector<float> v;        // [N, KV·d]
    std::vector<float> att;      // [N, H·d]   attention output (o_proj input)
    std::vector<float> lse;      // [B, H, T]
    std::vector<float> xmid;     // [N, C]     x + attn
    std::vector<float> xn2;      // [N, C]     post_attention_layernorm(xmid)
    std::vector<float> rstd2;    // [N]
    std::vector<float> g;        // [N, F]     gate_proj output
    std::vector<float> u;        // [N, F]     up_proj output
    std::vector<float> h;        // [N, F]     act(g) ⊙ u (down_proj input)
    std::vector<float> z[P_COUNT];   // [N, R_a] adapter intermediates (empty for non-adapted projections)
    // Family extras (allocated only when the family uses them):
    std::vector<float> qpre, kpre;   // [N, H·d], [N, KV·d] q/k before q_norm/k_norm
    std::vector<float> rstdq, rstdk; // [N·H], [N·KV]
    std::vector<float> ao, rstd3;    // [N, C] o_proj output before post_attention_layernorm (Gemma-2/3), [N]
    std::vector<float> mo, rstd4;    // [N, C] down_proj output before post_feedforward_layernorm, [N]
    size_t bytes() const;
};

// Read-only view of a CPU-loaded model's frozen weights and adapter layout, for a device backend that uploads them
// (native/cuda/cuda_model.cpp). The pointers live as long as the model.
struct HostWeights {
    const ModelConfig* cfg = nullptr;
    bool gemma = false;
    Act act = Act::SiLU;
    const std::vector<float>* embed = nullptr;     // [V, C]
    const std::vector<float>* lm_head = nullptr;   // [V, C]; empty when tied
    const std::vector<float>* norm = nullptr;      // [C]
    const std::vector<DecoderLayer>* layers = nullptr;
    const std::vector<float>* inv_freq = nullptr;  // [d/2] rope inverse frequencies (scaling applied; the global
                                                   //        layers' for Gemma-3)
    float* params_w = nullptr;                     // all adapter weights back to back (params() order)
    float* params_g = nullptr;                     // their gradients
    size_t params_numel = 0;
};
// Throws E_INTERNAL when `m` is not the CPU model of model.cpp.
HostWeights host_weights(Model& m);

}  // namespace hq
