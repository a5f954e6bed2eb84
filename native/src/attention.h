// attention.h — causal scaled-dot-product attention with GQA/MQA, forward and backward (fp32, CPU).
//
//   S = (q·kᵀ)·scale, scale = head_dim^-0.5 (or AttnShape::scale); optional soft-capping S = cap·tanh(S/cap);
//   causal mask (key j <= query i), with a sliding window also i - j < window (transformers' sliding_window_overlay:
//   kv_idx > q_idx - window), with packed rows also seg[b, j] == seg[b, i] (a document mask: a query sees only
//   its own document, as transformers' padding-free packing / flash_attn_varlen_func with cu_seqlens);
//   P = softmax(S) with max subtraction (fp32); out = P·v. Query head h reads kv head h / (H/KV) (transformers
//   repeat_kv). Backward of the cap: dS_raw = dS·(1 − tanh²). A masked key gets P = 0 and dS = 0; key i is always
//   visible from query i, so no row is empty.
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
    float scale = 0.0f;    // score scale; 0 = head_dim^-0.5 (Gemma-2/3: query_pre_attn_scalar^-0.5)
    int window = 0;        // sliding window: key j visible from query i iff 0 <= i - j < window; 0 = causal only
    float softcap = 0.0f;  // scores = softcap·tanh(scores / softcap) before the mask (Gemma-2); 0 = off
    const int32_t* seg = nullptr;   // [B, T] document id per position (packing): key j visible from query i only
                                    // if seg[b·T + i] == seg[b·T + j], on top of causal and window; nullptr = off
};

// q [B, T, H, d], k, v [B, T, KV, d] -> out [B, T, H, d], lse [B, H, T].
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const AttnShape& s);

// dout [B, T, H, d] -> dq [B, T, H, d], dk, dv [B, T, KV, d] (all overwritten). Needs the forward's out and lse.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const AttnShape& s);

}  // namespace hq
