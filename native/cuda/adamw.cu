// adamw.cu — the optimizer step on the GPU: gradient norm (for clipping), gradient scaling, fused AdamW, and a
// non-finite counter (skip / abort checks).
//
//   sum_squares:     *out = Σ g² in fp64. Deterministic: each of at most kPartials blocks sums a fixed
//                    grid-stride slice, then one block adds the partials in a fixed tree; the split depends on n
//                    only, so repeated calls give identical bits (no floating-point atomics).
//   scale_inplace:   g = g · c                                      (clip_grad_norm's P.g[k] * coef)
//   adamw_step:      torch's single-tensor AdamW in the order of optimizer.h, fp32 with every product, sum,
//                    quotient and root rounded on its own (_rn intrinsics: no FMA contraction), so a step matches
//                    hq::AdamW::step bit for bit on the same inputs; the fp64 hyper-parameters come precomputed in
//                    AdamWArgs (one_minus_lr_wd = 1 reproduces the CPU's skipped decay: p·1 = p).
//   count_nonfinite: *out = number of NaN / ±Inf in x (integer atomics: exact).
// Reference: AdamW::step and clip_grad_norm in native/src/optimizer.cpp.
// sum_squares keeps its per-block partials in a static device array: calls on one stream are ordered, but two
// sum_squares calls must not run concurrently on different streams.
#include <cstdint>

#include "cuda_util.cuh"
#include "kernels.h"

namespace hq::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kPartials = 1024;   // max blocks of the sum_squares first pass (= threads of the second pass)

__device__ double g_partials[kPartials];

using util::aligned;
using util::block_sum;
using util::grid_for_vec4;
using util::grid_stride_vec4;

__device__ __forceinline__ double sq(float x) { return (double)x * (double)x; }   // exact in fp64

// Σ of of4(x[4k..4k+3]) over this thread's grid-stride groups and of1(x[k]) over its tail elements (see
// grid_stride_vec4), then over the block in a fixed order; valid in every thread. sh: [32] shared.
template <typename T, class Of4, class Of1>
__device__ __forceinline__ T grid_block_sum(const float* __restrict__ x, int64_t n, bool vec, T* sh, Of4 of4,
                                            Of1 of1) {
    T acc = T(0);
    grid_stride_vec4(
        n, vec, [&](int64_t k) { acc += of4(reinterpret_cast<const float4*>(x)[k]); },
        [&](int64_t k) { acc += of1(x[k]); });
    return block_sum(acc, sh);
}

__global__ void __launch_bounds__(kThreads) sum_squares_partial_kernel(const float* __restrict__ g, int64_t n,
                                                                       bool vec) {
    __shared__ double sh[32];
    const double acc = grid_block_sum(
        g, n, vec, sh, [](float4 v) { return (sq(v.x) + sq(v.y)) + (sq(v.z) + sq(v.w)); },
        [](float x) { return sq(x); });
    if (threadIdx.x == 0) g_partials[blockIdx.x] = acc;
}

__global__ void __launch_bounds__(kPartials) sum_squares_final_kernel(double* __restrict__ out, int nparts) {
    __shared__ double sh[32];
    double v = (int)threadIdx.x < nparts ? g_partials[threadIdx.x] : 0.0;
    v = block_sum(v, sh);
    if (threadIdx.x == 0) *out = v;
}

__global__ void __launch_bounds__(kThreads) scale_kernel(float* __restrict__ g, int64_t n, float c, bool vec) {
    grid_stride_vec4(
        n, vec,
        [&](int64_t k) {
            float4 v = reinterpret_cast<float4*>(g)[k];
            v.x = __fmul_rn(v.x, c);
            v.y = __fmul_rn(v.y, c);
            v.z = __fmul_rn(v.z, c);
            v.w = __fmul_rn(v.w, c);
            reinterpret_cast<float4*>(g)[k] = v;
        },
        [&](int64_t k) { g[k] = __fmul_rn(g[k], c); });
}

// One element of optimizer.h's sequence.
__device__ __forceinline__ void adamw_elem(float& p, float g, float& m, float& v, const AdamWArgs& a) {
    p = __fmul_rn(p, a.one_minus_lr_wd);                                        // p·(1 − lr·wd)
    m = __fadd_rn(m, __fmul_rn(a.one_minus_b1, __fsub_rn(g, m)));               // lerp(m, g, 1 − b1)
    v = __fadd_rn(__fmul_rn(v, a.b2), __fmul_rn(__fmul_rn(a.one_minus_b2, g), g));   // v·b2 + ((1 − b2)·g)·g
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), a.bc2_sqrt), a.eps);   // sqrt(v)/bc2_sqrt + eps
    p = __fadd_rn(p, __fdiv_rn(__fmul_rn(a.neg_step_size, m), denom));           // p + (−step·m)/denom
}

__global__ void __launch_bounds__(kThreads) adamw_kernel(float* __restrict__ w, const float* __restrict__ g,
                                                         float* __restrict__ m, float* __restrict__ v, int64_t n,
                                                         AdamWArgs a, bool vec) {
    grid_stride_vec4(
        n, vec,
        [&](int64_t k) {
            float4 pw = reinterpret_cast<float4*>(w)[k];
            const float4 pg = reinterpret_cast<const float4*>(g)[k];
            float4 pm = reinterpret_cast<float4*>(m)[k];
            float4 pv = reinterpret_cast<float4*>(v)[k];
            adamw_elem(pw.x, pg.x, pm.x, pv.x, a);
            adamw_elem(pw.y, pg.y, pm.y, pv.y, a);
            adamw_elem(pw.z, pg.z, pm.z, pv.z, a);
            adamw_elem(pw.w, pg.w, pm.w, pv.w, a);
            reinterpret_cast<float4*>(w)[k] = pw;
            reinterpret_cast<float4*>(m)[k] = pm;
            reinterpret_cast<float4*>(v)[k] = pv;
        },
        [&](int64_t k) {
            float p = w[k], mk = m[k], vk = v[k];
            adamw_elem(p, g[k], mk, vk, a);
            w[k] = p;
            m[k] = mk;
            v[k] = vk;
        });
}

__device__ __forceinline__ int nonfinite(float x) { return (__float_as_uint(x) & 0x7F800000u) == 0x7F800000u; }

__global__ void __launch_bounds__(kThreads) count_nonfinite_kernel(int* __restrict__ out, const float* __restrict__ x,
                                                                   int64_t n, bool vec) {
    __shared__ int sh[32];
    const int cnt = grid_block_sum(
        x, n, vec, sh, [](float4 u) { return nonfinite(u.x) + nonfinite(u.y) + nonfinite(u.z) + nonfinite(u.w); },
        [](float v) { return nonfinite(v); });
    if (threadIdx.x == 0 && cnt) atomicAdd(out, cnt);
}

}  // namespace

void sum_squares(double* out, const float* g, int64_t n, cudaStream_t s) {
    if (n <= 0) {
        HQ_CUDA(cudaMemsetAsync(out, 0, sizeof(double), s));
        return;
    }
    const bool vec = aligned(g, 16);
    const int64_t steps = vec ? n / 4 + 1 : n;
    int64_t blocks = (steps + 4 * kThreads - 1) / (4 * kThreads);   // at least ~4 steps per thread
    blocks = blocks < 1 ? 1 : (blocks > kPartials ? kPartials : blocks);
    sum_squares_partial_kernel<<<(int)blocks, kThreads, 0, s>>>(g, n, vec);
    HQ_CUDA_LAUNCH("sum_squares (partials)");
    sum_squares_final_kernel<<<1, kPartials, 0, s>>>(out, (int)blocks);
    HQ_CUDA_LAUNCH("sum_squares (final)");
}

void scale_inplace(float* g, int64_t n, float c, cudaStream_t s) {
    if (n <= 0) return;
    const bool vec = aligned(g, 16);
    scale_kernel<<<grid_for_vec4(n, vec, kThreads), kThreads, 0, s>>>(g, n, c, vec);
    HQ_CUDA_LAUNCH("scale_inplace");
}

void adamw_step(float* w, const float* g, float* m, float* v, int64_t n, const AdamWArgs& a, cudaStream_t s) {
    if (n <= 0) return;
    const bool vec = aligned(w, 16) && aligned(g, 16) && aligned(m, 16) && aligned(v, 16);
    adamw_kernel<<<grid_for_vec4(n, vec, kThreads), kThreads, 0, s>>>(w, g, m, v, n, a, vec);
    HQ_CUDA_LAUNCH("adamw_step");
}

void count_nonfinite(int* out, const float* x, int64_t n, cudaStream_t s) {
    HQ_CUDA(cudaMemsetAsync(out, 0, sizeof(int), s));
    if (n <= 0) return;
    const bool vec = aligned(x, 16);
    count_nonfinite_kernel<<<grid_for_vec4(n, vec, kThreads), kThreads, 0, s>>>(out, x, n, vec);
    HQ_CUDA_LAUNCH("count_nonfinite");
}

}  // namespace hq::cuda
