// gpu_attention.h — causal GQA attention on the GPU: cuBLASLt batched GEMMs around a fused causal softmax (the
// "gemm" kernel, below, the default), or a fused FlashAttention-2 style kernel (flash_attention.cu, head_dim 16, 32,
// 64, 96, 128 or 256; the default wherever head_dim allows it, HQ_ATTN=gemm forces the other). The sliding window,
// soft-capping and the document mask need flash.
//
// The gemm kernel:
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

enum class AttnKernel { Auto, Gemm, Flash };

struct AttnDims {
    int B = 0, T = 0, H = 0, KV = 0, d = 0;
    float scale = 1.0f;   // head_dim^-0.5 (or the model's query_pre_attn_scalar^-0.5)
    // kv groups (one (b, kv head) pair and its H/KV query heads) per chunk; 0: as many as keep a chunk's fp32
    // scores within HQ_ATTN_CHUNK_MB (default 256 MiB; <= 0: no limit), which bounds the workspace at long T.
    int chunk = 0;
    // Flash only (the gemm kernel refuses them):
    int window = 0;                  // sliding window: key j visible from query i iff 0 <= i - j < window; 0: causal
    float softcap = 0.0f;            // scores = softcap·tanh(scale·q·k / softcap) (Gemma-2); 0: off
    const int32_t* seg = nullptr;    // device [B, T]: document id of each position (packing); key j visible from
                                     // query i only when seg[b, i] == seg[b, j]; nullptr: one document per row
    AttnKernel kernel = AttnKernel::Auto;   // Auto: attention_kernel's choice (tests force one)
};

// The kernel for these dims: a.kernel when not Auto; else flash when flash_supported(a) and HQ_ATTN is not gemm, else
// gemm. Throws E_CONFIG when the window, soft-capping or a document mask is asked of the gemm kernel.
AttnKernel attention_kernel(const AttnDims& a);
const char* attention_kernel_name(AttnKernel k);
bool flash_supported(const AttnDims& a);   // head_dim 16, 32, 64, 96, 128 or 256

// Scratch the caller owns and reuses: sized by attention_workspace_floats(dims). gemm: one chunk's S / dP (fp32),
// dS and P (bf16), and the full O / dO (bf16). flash: dO (bf16) and D = rowsum(dO ⊙ O) (fp32), O(T).
size_t attention_workspace_floats(const AttnDims& a);

// out [B, T, H, d] bf16; lse [B, H, T] fp32 (log-sum-exp of each score row; written by flash, which the backward
// needs; the gemm kernel leaves it alone and may get nullptr). P [B, H, T, T] bf16 is written when given (gemm
// only, tests); nullptr keeps only a chunk's P in the workspace (training: the backward recomputes it).
void attention_forward(Gemm& g, bf16* out, float* lse, bf16* P, const bf16* q, const bf16* k, const bf16* v,
                       float* work, const AttnDims& a);

// dout [B, T, H, d] fp32 -> dq [B, H, T, d], dk, dv [B, KV, T, d] fp32 (overwritten). out and lse are the forward's
// (flash). P is the forward's (gemm), or nullptr: recomputed chunk by chunk from q and k (the same kernels on the
// same inputs: the same bits), so the forward need not keep the [B, H, T, T] probabilities of every layer.
void attention_backward(Gemm& g, float* dq, float* dk, float* dv, const float* dout, const bf16* out,
                        const float* lse, const bf16* q, const bf16* k, const bf16* v, const bf16* P, float* work,
                        const AttnDims& a);

// The flash kernels themselves (flash_attention.cu); attention_forward / attention_backward call them.
size_t flash_workspace_floats(const AttnDims& a);
void flash_attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const AttnDims& a,
                             cudaStream_t s);
void flash_attention_backward(float* dq, float* dk, float* dv, const float* dout, const bf16* out, const float* lse,
                              const bf16* q, const bf16* k, const bf16* v, float* work, const AttnDims& a,
                              cudaStream_t s);

}  // namespace hq::cuda
