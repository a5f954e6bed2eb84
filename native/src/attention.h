// attention.h — causal scaled-dot-product attention with GQA/MQA, forward and backward (fp32, CPU).
//
//   S = (q·kᵀ)·scale, scale = head_dim^-0.5; causal mask (key j <= query i); P = softmax(S) with max
//   subtraction (fp32); out = P·v. Query head h reads kv head h / (H/KV) (transformers repeat_kv).
// The forward saves only lse [B, H, T] (log-sum-exp of each score row); the backward recomputes P = exp(S − lse)
// row block by row block (FlashAttention-style), so no [T, T] matrix is kept between forward and backward.
// Work is split over (batch, head, query block) with OpenMP; the matmuls are cblas_sgemm calls run single-threaded
// inside the parallel region. Every output element is produced by one task in a fixed order, and the GQA sums of
// dk/dv over the query heads of a group are reduced in head order: results do not depend on the thread count.
#pragma once
#include <cstdint>

namespace hq {

struct AttnShape {
    int B = 0, T = 0, H = 0, KV = 0, d = 0;   // batch, sequence, query heads, kv heads, head dim
};

// q [B, T, H, d], k, v [B, T, KV, d] -> out [B, T, H, d], lse [B, H, T].
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const AttnShape& s);

// dout [B, T, H, d] -> dq [B, T, H, d], dk, dv [B, T, KV, d] (all overwritten). Needs the forward's out and lse.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const AttnShape& s);

}  // namespace hq
