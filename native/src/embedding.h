// embedding.h — token embedding lookup (with Gemma's √hidden scale), forward and backward.
//
// Gemma multiplies the looked-up rows by normalizer = √hidden_size. transformers rounds the normalizer to the
// weight dtype first (embed_scale.to(weight.dtype): √3072 = 55.4256 becomes 55.5 in bf16); our compute dtype is
// fp32, so the scale is √C rounded to fp32, which is what transformers does for an fp32-loaded model.
#pragma once
#include <cstdint>

namespace hq {

// √C rounded to fp32 for Gemma, 1 for LLaMA.
float embedding_scale(bool gemma, int C);

// ids [N] -> x [N, C] = E[ids] · scale, E [V, C]. Throws E_TOKENS for an id outside [0, V).
void embedding_forward(float* x, const float* E, const int32_t* ids, int64_t N, int C, int V, float scale);

// dE [V, C] += scale · Σ_{n: ids[n] = v} dx[n]. The base embedding is frozen in QLoRA training; this is the exact
// gradient for tools and tests. Parallel over columns, tokens in order: deterministic.
void embedding_backward(float* dE, const float* dx, const int32_t* ids, int64_t N, int C, float scale);

}  // namespace hq
