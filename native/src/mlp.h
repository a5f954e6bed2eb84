// mlp.h — the gated MLP activation of LLaMA (SwiGLU) and Gemma (GeGLU, tanh-GELU), forward and backward.
//
// The decoder MLP is down(act(gate(x)) ⊙ up(x)); the three projections are hierarchical-LoRA linears
// (hlora.h), this file is the elementwise part between them:
//   SiLU:     act(g) = g / (1 + exp(−g))                                          (torch F.silu)
//   GeluTanh: act(g) = 0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³)))                (F.gelu(approximate="tanh"))
// Gemma's "gelu" and "gelu_pytorch_tanh" both map to GeluTanh (trainer-anchors §5.1).
#pragma once
#include <cstdint>

namespace hq {

enum class Act { SiLU, GeluTanh };

// gate, up [n] -> h [n] = act(gate) ⊙ up
void glu_forward(float* h, const float* gate, const float* up, int64_t n, Act act);

// dh [n] -> dgate [n] = dh ⊙ up ⊙ act'(gate), dup [n] = dh ⊙ act(gate)   (both overwritten)
void glu_backward(float* dgate, float* dup, const float* dh, const float* gate, const float* up, int64_t n, Act act);

}  // namespace hq
