// kernels.h — the CUDA backend's elementwise, normalisation, loss and optimizer kernels (host launch API).
//
// Conventions: all pointers are device pointers, row-major; every function enqueues on `s` and returns without
// synchronising; launches are checked with HQ_CUDA_LAUNCH. bf16 tensors are GEMM inputs (activations, weights);
// fp32 tensors are the residual stream, gradients, statistics and optimizer state. Each kernel has a CPU reference
// in native/src (named in its comment) and a test in native/tests/test_cuda_kernels.cpp.
#pragma once
#include <cstdint>

#include "cuda_common.h"

namespace hq::cuda {

// ---- conversions -----------------------------------------------------------------------------------------------
void f32_to_bf16(bf16* out, const float* in, int64_t n, cudaStream_t s);
void bf16_to_f32(float* out, const bf16* in, int64_t n, cudaStream_t s);

// ---- NF4 (reference: nf4_dequantize in nf4.cpp) --------------------------------------------------------------
// Device copy of an NF4Tensor's storage. double_quant: scale[b] = dyn8[qabsmax[b]] * absmax2[b / nested] + offset;
// otherwise scale[b] = absmax[b]. w = kNF4Code[code] * scale[b] in fp32, then rounded to bf16.
struct NF4View {
    const uint8_t* packed = nullptr;   // [ceil(n/2)], first element of a pair in the high nibble
    const uint8_t* qabsmax = nullptr;  // [nblocks]            (double quant)
    const float* absmax2 = nullptr;    // [ceil(nblocks/nested)] (double quant)
    const float* absmax = nullptr;     // [nblocks]            (no double quant)
    float offset = 0.0f;
    int64_t n = 0;                     // rows * cols
    int blocksize = 64, nested_blocksize = 256;
    bool double_quant = true;
};
// Uploads the NF4 code table and the signed dynamic 8-bit map into constant memory (once per process; idempotent).
void nf4_init_tables();
// out [n] bf16 = dequantized weight (same values as nf4_dequantize, rounded to bf16).
void nf4_dequantize_bf16(bf16* out, const NF4View& t, cudaStream_t s);

// ---- embedding (reference: embedding_forward) ------------------------------------------------------------------
// x [N, C] fp32 = E[ids] * scale, E [V, C] bf16. Ids outside [0, V) are a caller bug (checked on the host).
void embedding_forward(float* x, const bf16* E, const int32_t* ids, int64_t N, int C, float scale, cudaStream_t s);

// ---- RMSNorm (reference: rmsnorm_forward / rmsnorm_backward in norm.cpp) ---------------------------------------
// y [N, C] bf16 = x·rstd·w (LLaMA) or x·rstd·(1 + w) (Gemma); rstd [N] fp32 saved (may be nullptr).
void rmsnorm_forward(bf16* y, float* rstd, const float* x, const float* w, int64_t N, int C, float eps, bool gemma,
                     cudaStream_t s);
// Same, fp32 output (final norm before the loss when an fp32 copy is wanted).
void rmsnorm_forward_f32(float* y, float* rstd, const float* x, const float* w, int64_t N, int C, float eps,
                         bool gemma, cudaStream_t s);
// dx [N, C] += dL/dx from dy [N, C] fp32, the forward input x and rstd. With dres, dx = dres + dL/dx instead
// (the residual branch's gradient; dx's old values are not read; dres may equal dx). With dxb, a bf16 copy of the
// new dx is also written, rows ldb elements apart (the next GEMM's input).
void rmsnorm_backward(float* dx, const float* dy, const float* x, const float* w, const float* rstd, int64_t N,
                      int C, bool gemma, cudaStream_t s, const float* dres = nullptr, bf16* dxb = nullptr,
                      int64_t ldb = 0);

// ---- RoPE and head layouts (reference: rope_forward / rope_backward in rope.cpp) -------------------------------
// cos, sin [T, d/2] fp32 tables (rope_tables). Layouts: "bthd" = [B, T, nh, d] (a projection's [N, nh·d] output),
// "bhtd" = [B, nh, T, d] (per-head contiguous, the attention GEMMs' layout).
// out bhtd bf16 = rope(in bthd bf16). pos [B, T] (device): the table row of each token (packed rows: its position
// within its document, positions_from_segments); nullptr: row t.
void rope_forward_to_bhtd(bf16* out, const bf16* in, const float* cos, const float* sin, int B, int T, int nh, int d,
                          cudaStream_t s, const int32_t* pos = nullptr);
// dx bthd bf16 = rope_backward(dy bhtd fp32)  (the transposed rotation, then the layout change). The output rows
// (one per token) are ldo elements apart (0: nh·d), so dx can be a column block of a wider matrix.
void rope_backward_from_bhtd(bf16* dx, const float* dy, const float* cos, const float* sin, int B, int T, int nh,
                             int d, cudaStream_t s, int64_t ldo = 0, const int32_t* pos = nullptr);
// Layout changes without rotation (v and dv).
void bthd_to_bhtd(bf16* out, const bf16* in, int B, int T, int nh, int d, cudaStream_t s);
void bhtd_to_bthd_f32_to_bf16(bf16* out, const float* in, int B, int T, int nh, int d, cudaStream_t s,
                              int64_t ldo = 0);   // output rows ldo apart (0: nh·d)

// ---- gated MLP (reference: glu_forward / glu_backward in mlp.cpp); act: 0 = SiLU, 1 = tanh-GELU ----------------
void glu_forward(bf16* h, const bf16* gate, const bf16* up, int64_t n, int act, cudaStream_t s);
// dh fp32 -> dgate, dup bf16 (overwritten). With cols > 0 the inputs are [n / cols, cols] and the outputs' rows
// are ldo elements apart (column blocks of a wider matrix); cols = 0: all flat.
void glu_backward(bf16* dgate, bf16* dup, const float* dh, const bf16* gate, const bf16* up, int64_t n, int act,
                  cudaStream_t s, int64_t cols = 0, int64_t ldo = 0);

// ---- hierarchical-LoRA helpers (reference: hlora.cpp) ------------------------------------------------------------
// out [N, R] bf16 = z [N, ldz-strided, first R columns] ⊙ scale[R] (per-rank-row level scales s_j).
// out's rows are ldo elements apart (0: R), so out can be a column block of a wider matrix.
void scale_cols_to_bf16(bf16* out, const float* z, int64_t N, int R, const float* scale, cudaStream_t s,
                        int64_t ldo = 0);
// Inverted dropout of the adapter input of one level, same mask as the CPU (hlora.cpp dropout_input):
//   out[i] = rng_uniform(key, i) >= p ? x[i] / (1 - p) : 0,  i over the flat [N, in] array.
void dropout_bf16(bf16* out, const bf16* x, int64_t n, float p, uint64_t key, cudaStream_t s);
// The matching backward: dx[i] += rng_uniform(key, i) >= p ? t[i] / (1 - p) : 0  (dx, t fp32 [n]).
void dropout_accumulate(float* dx, const float* t, int64_t n, float p, uint64_t key, cudaStream_t s);

// ---- causal attention softmax (used by attention.cu around the batched GEMMs) ----------------------------------
// S [rows = B·H·T, T] fp32 scores (already scaled or not: `scale` is applied here); row r has query index
// i = r % T and sees keys j <= i. P [rows, T] bf16 = softmax(scale·S) with zeros at j > i.
void causal_softmax_forward(bf16* P, const float* S, int64_t rows, int T, float scale, cudaStream_t s);
// dS [rows, T] bf16 = scale · P ⊙ (dP − Σ_j P·dP)  (in the score domain before scaling; zeros above the diagonal).
// dP [rows, T] fp32 (= dO·Vᵀ).
void causal_softmax_backward(bf16* dS, const bf16* P, const float* dP, int64_t rows, int T, float scale,
                             cudaStream_t s);

// ---- cross-entropy on one chunk of rows (reference: cross_entropy_chunked in loss.cpp) ---------------------------
// logits [rows, V] fp32; targets [rows] (−100 = ignored). row_loss [rows] fp32 = lse − logit[target] (0 when
// ignored). When dlogits != nullptr: dlogits [rows, V] bf16 = grad_scale·(softmax − onehot), zero rows when ignored.
// softcap > 0 (Gemma-2's final soft-capping): `logits` are already capped (softcap_inplace) and dlogits is the
// gradient w.r.t. the raw logits: grad_scale·(softmax − onehot)·(1 − t²), t = logit / softcap.
void cross_entropy_rows(float* row_loss, bf16* dlogits, const float* logits, const int32_t* targets, int64_t rows,
                        int V, float grad_scale, cudaStream_t s, float softcap = 0.0f);

// ---- the issue-15 families' extra layers (family_ops.cu) ---------------------------------------------------------
// y [N, n] fp32 += bias [n] on every row (Qwen2's frozen q/k/v biases; reference: add_bias in model.cpp).
void add_bias_rows(float* y, const float* bias, int64_t N, int n, cudaStream_t s);
// out [n] = a + b, fp32 (out may equal a or b): the residual adds after Gemma-2/3's post-norms.
void add_f32(float* out, const float* a, const float* b, int64_t n, cudaStream_t s);
// out bf16, rows ldo elements apart (a column block of a wider matrix) = in [rows, cols] fp32, rounded once.
void f32_to_bf16_rows(bf16* out, int64_t ldo, const float* in, int64_t rows, int cols, cudaStream_t s);
// dx bthd fp32 = rope_backward(dy bhtd fp32): rope_backward_from_bhtd without the bf16 rounding, for the q/k norm
// backward that follows it (Qwen3, Gemma-3).
void rope_backward_from_bhtd_f32(float* dx, const float* dy, const float* cos, const float* sin, int B, int T, int nh,
                                 int d, cudaStream_t s, const int32_t* pos = nullptr);
// x [n] fp32 in place = cap·tanh(x / cap) (reference: softcap_logits in loss.cpp); no-op for cap <= 0.
void softcap_inplace(float* x, int64_t n, float cap, cudaStream_t s);

// ---- optimizer (reference: AdamW::step, clip_grad_norm in optimizer.cpp) -----------------------------------------
// Σ g² over n elements, accumulated in fp64 into *out (device; overwritten).
void sum_squares(double* out, const float* g, int64_t n, cudaStream_t s);
// g *= c
void scale_inplace(float* g, int64_t n, float c, cudaStream_t s);
// One torch-order AdamW update (see optimizer.h): hyper-parameters computed on the host in fp64 then cast.
struct AdamWArgs {
    float one_minus_lr_wd = 1.0f;   // f32(1 - lr*wd); 1 = no decay
    float one_minus_b1 = 0.1f;      // f32(1 - b1)
    float b2 = 0.999f;              // f32(b2)
    float one_minus_b2 = 0.001f;    // f32(1 - b2)
    float bc2_sqrt = 1.0f;          // f32(sqrt(1 - b2^t))
    float eps = 1e-8f;              // f32(eps)
    float neg_step_size = 0.0f;     // f32(-lr / (1 - b1^t))
};
void adamw_step(float* w, const float* g, float* m, float* v, int64_t n, const AdamWArgs& a, cudaStream_t s);
// Counts non-finite values of x [n] into *out (device int, overwritten).
void count_nonfinite(int* out, const float* x, int64_t n, cudaStream_t s);

}  // namespace hq::cuda
