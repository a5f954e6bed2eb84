// gpu_attention.h — causal GQA attention on the GPU as cuBLASLt batched GEMMs around a fused causal softmax.
//
//   q [B, H, T, d], k, v [B, KV, T, d] bf16 ("bhtd", written by rope_forward_to_bhtd / bthd_to_bhtd);
//   query head h reads kv head h / (H / KV) (transformers repeat_kv).
//   S = q·kᵀ (fp32), P = softmax(scale·S) causal (bf16, kept for the backward), out = P·v written as [B, T, H, d]
//   bf16 (the o_proj input).
// Backward: dP = dO·vᵀ, dS = scale·P ⊙ (dP − rowsum(P ⊙ dP)), dq = dS·k, dk = Σ_group dSᵀ·q, dv = Σ_group Pᵀ·dO.
// The reference is attention_forward / attention_backward in native/src/attention.cpp.
#pragma once
#include "cuda_common.h"
#include "gemm.h"

namespace hq::cuda {

struct AttnDims {
    int B = 0, T = 0, H = 0, KV = 0, d = 0;
    float scale = 1.0f;   // head_dim^-0.5 (or the model's query_pre_attn_scalar^-0.5)
    // kv groups (one (b, kv head) pair and its H/KV query heads) per chunk; 0: as many as keep a chunk's fp32
    // scores within HQ_ATTN_CHUNK_MB (default 256 MiB; <= 0: no limit), which bounds the workspace at long T.
    int chunk = 0;
};

// Scratch the caller owns and reuses: sized by attention_workspace_floats(dims): one chunk's S / dP (fp32), dS and
// P (bf16), and the full O / dO (bf16).
size_t attention_workspace_floats(const AttnDims& a);

// out [B, T, H, d] bf16. P [B, H, T, T] bf16 is written when given (tests); nullptr keeps only a chunk's P in the
// workspace (training: the backward recomputes it).
void attention_forward(Gemm& g, bf16* out, bf16* P, const bf16* q, const bf16* k, const bf16* v, float* work,
                       const AttnDims& a);

// dout [B, T, H, d] fp32 -> dq [B, H, T, d], dk, dv [B, KV, T, d] fp32 (overwritten). P is the forward's, or
// nullptr: recomputed chunk by chunk from q and k (the same kernels on the same inputs: the same bits), so the
// forward need not keep the [B, H, T, T] probabilities of every layer.
void attention_backward(Gemm& g, float* dq, float* dk, float* dv, const float* dout, const bf16* q, const bf16* k,
                        const bf16* v, const bf16* P, float* work, const AttnDims& a);

}  // namespace hq::cuda
