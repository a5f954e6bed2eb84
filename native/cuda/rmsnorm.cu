// rmsnorm.cu — RMSNorm forward (bf16 or fp32 output) and backward (dx only: the norm weights are frozen).
//
//   rstd[n] = 1 / sqrt(mean_c(x[n, c]²) + eps)        Σx² accumulated in fp64 (as the CPU), rounded once to fp32
//   LLaMA: y = w · (x · rstd)          Gemma: y = (x · rstd) · (1 + w)
//   backward, g = w (or 1 + w):  dx += r·g·dy − k·x,   k = f32(r³/C · Σ_c dy·g·x)   (Σ in fp64)
// Reference: rmsnorm_forward / rmsnorm_backward in native/src/norm.cpp, with the same operation order (explicit
// _rn intrinsics, no FMA contraction). The sums are fixed-order tree reductions, so results are deterministic.
// One block per row (grid-stride over rows); the block size grows with C (C up to 8192 and beyond: columns loop);
// 4 columns per thread step (16-byte accesses) when C % 4 == 0 and the pointers allow it.
#include <cstdint>

#include "cuda_util.cuh"
#include "kernels.h"

namespace hq::cuda {
namespace {

using util::block_sum;

__device__ __forceinline__ float norm_out(float x, float r, float w, bool gemma) {
    return gemma ? __fmul_rn(__fmul_rn(x, r), __fadd_rn(1.0f, w)) : __fmul_rn(w, __fmul_rn(x, r));
}

__device__ __forceinline__ void store4(float* y, int c, float a, float b, float cc, float d) {
    *reinterpret_cast<float4*>(y + c) = make_float4(a, b, cc, d);
}
__device__ __forceinline__ void store4(bf16* y, int c, float a, float b, float cc, float d) {
    const uint32_t lo = (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(a)) |
                        ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(b)) << 16);
    const uint32_t hi = (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(cc)) |
                        ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(d)) << 16);
    *reinterpret_cast<uint2*>(y + c) = make_uint2(lo, hi);
}
__device__ __forceinline__ void store1(float* y, int c, float a) { y[c] = a; }
__device__ __forceinline__ void store1(bf16* y, int c, float a) { y[c] = __float2bfloat16_rn(a); }

template <typename OutT>
__global__ void __launch_bounds__(1024) rmsnorm_forward_kernel(OutT* __restrict__ y, float* __restrict__ rstd,
                                                               const float* __restrict__ x,
                                                               const float* __restrict__ w, int64_t N, int C,
                                                               float eps, bool gemma, bool vec) {
    __shared__ double sh[32];
    for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
        const float* xr = x + n * C;   // [C]
        OutT* yr = y + n * C;          // [C]
        double ss = 0.0;
        if (vec) {
            for (int c = 4 * threadIdx.x; c < C; c += 4 * blockDim.x) {
                const float4 v = *reinterpret_cast<const float4*>(xr + c);
                ss += (double)v.x * v.x + (double)v.y * v.y + (double)v.z * v.z + (double)v.w * v.w;
            }
        } else {
            for (int c = threadIdx.x; c < C; c += blockDim.x) ss += (double)xr[c] * xr[c];
        }
        ss = block_sum(ss, sh);
        const float ms = (float)(ss / C);
        const float r = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(ms, eps)));
        if (rstd && threadIdx.x == 0) rstd[n] = r;
        if (vec) {
            for (int c = 4 * threadIdx.x; c < C; c += 4 * blockDim.x) {
                const float4 v = *reinterpret_cast<const float4*>(xr + c);
                const float4 g = *reinterpret_cast<const float4*>(w + c);
                store4(yr, c, norm_out(v.x, r, g.x, gemma), norm_out(v.y, r, g.y, gemma),
                       norm_out(v.z, r, g.z, gemma), norm_out(v.w, r, g.w, gemma));
            }
        } else {
            for (int c = threadIdx.x; c < C; c += blockDim.x) store1(yr, c, norm_out(xr[c], r, w[c], gemma));
        }
    }
}

__device__ __forceinline__ float gain(float w, bool gemma) { return gemma ? __fadd_rn(1.0f, w) : w; }
__device__ __forceinline__ double dot_term(float dy, float g, float x) { return (double)dy * (double)g * (double)x; }
__device__ __forceinline__ float dx_term(float dx, float dy, float g, float x, float r, float k) {
    return __fadd_rn(dx, __fsub_rn(__fmul_rn(__fmul_rn(r, g), dy), __fmul_rn(k, x)));
}

__global__ void __launch_bounds__(1024) rmsnorm_backward_kernel(float* __restrict__ dx, const float* __restrict__ dy,
                                                                const float* __restrict__ x,
                                                                const float* __restrict__ w,
                                                                const float* __restrict__ rstd, int64_t N, int C,
                                                                bool gemma, bool vec, const float* dres,
                                                                bf16* __restrict__ dxb, int64_t ldb) {
    __shared__ double sh[32];
    for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
        const float* xr = x + n * C;     // [C]
        const float* dyr = dy + n * C;   // [C]
        float* dxr = dx + n * C;         // [C]
        const float* srcr = (dres ? dres : dx) + n * C;   // the gradient added to (residual branch, or dx itself)
        bf16* dbr = dxb ? dxb + n * ldb : nullptr;
        const float r = rstd[n];
        double dot = 0.0;
        if (vec) {
            for (int c = 4 * threadIdx.x; c < C; c += 4 * blockDim.x) {
                const float4 v = *reinterpret_cast<const float4*>(xr + c);
                const float4 d = *reinterpret_cast<const float4*>(dyr + c);
                const float4 g = *reinterpret_cast<const float4*>(w + c);
                dot += dot_term(d.x, gain(g.x, gemma), v.x) + dot_term(d.y, gain(g.y, gemma), v.y) +
                       dot_term(d.z, gain(g.z, gemma), v.z) + dot_term(d.w, gain(g.w, gemma), v.w);
            }
        } else {
            for (int c = threadIdx.x; c < C; c += blockDim.x) dot += dot_term(dyr[c], gain(w[c], gemma), xr[c]);
        }
        dot = block_sum(dot, sh);
        const float k = (float)(dot * r * r * r / C);
        if (vec) {
            for (int c = 4 * threadIdx.x; c < C; c += 4 * blockDim.x) {
                const float4 v = *reinterpret_cast<const float4*>(xr + c);
                const float4 d = *reinterpret_cast<const float4*>(dyr + c);
                const float4 g = *reinterpret_cast<const float4*>(w + c);
                float4 o = *reinterpret_cast<const float4*>(srcr + c);
                o.x = dx_term(o.x, d.x, gain(g.x, gemma), v.x, r, k);
                o.y = dx_term(o.y, d.y, gain(g.y, gemma), v.y, r, k);
                o.z = dx_term(o.z, d.z, gain(g.z, gemma), v.z, r, k);
                o.w = dx_term(o.w, d.w, gain(g.w, gemma), v.w, r, k);
                *reinterpret_cast<float4*>(dxr + c) = o;
                if (dbr)
                    *reinterpret_cast<uint2*>(dbr + c) =
                        make_uint2(util::pack_bf16x2(o.x, o.y), util::pack_bf16x2(o.z, o.w));
            }
        } else {
            for (int c = threadIdx.x; c < C; c += blockDim.x) {
                const float o = dx_term(srcr[c], dyr[c], gain(w[c], gemma), xr[c], r, k);
                dxr[c] = o;
                if (dbr) dbr[c] = __float2bfloat16_rn(o);
            }
        }
    }
}

using util::aligned;

// About four column steps per thread: 32 threads for small rows, 256 for C = 4096, 512 for 8192, at most 1024.
int threads_for(int C, bool vec) {
    const int steps = vec ? C / 4 : C;
    int t = ((steps / 4 + 31) / 32) * 32;
    return t < 32 ? 32 : (t > 1024 ? 1024 : t);
}

int grid_rows(int64_t N) { return (int)(N < (int64_t(1) << 30) ? N : (int64_t(1) << 30)); }

template <typename OutT>
void launch_forward(OutT* y, float* rstd, const float* x, const float* w, int64_t N, int C, float eps, bool gemma,
                    cudaStream_t s, const char* name, uintptr_t y_align) {
    if (N <= 0 || C <= 0) return;
    const bool vec = C % 4 == 0 && aligned(x, 16) && aligned(w, 16) && aligned(y, y_align);
    rmsnorm_forward_kernel<OutT><<<grid_rows(N), threads_for(C, vec), 0, s>>>(y, rstd, x, w, N, C, eps, gemma, vec);
    HQ_CUDA_LAUNCH(name);
}

}  // namespace

void rmsnorm_forward(bf16* y, float* rstd, const float* x, const float* w, int64_t N, int C, float eps, bool gemma,
                     cudaStream_t s) {
    launch_forward(y, rstd, x, w, N, C, eps, gemma, s, "rmsnorm_forward", 8);
}

void rmsnorm_forward_f32(float* y, float* rstd, const float* x, const float* w, int64_t N, int C, float eps,
                         bool gemma, cudaStream_t s) {
    launch_forward(y, rstd, x, w, N, C, eps, gemma, s, "rmsnorm_forward_f32", 16);
}

void rmsnorm_backward(float* dx, const float* dy, const float* x, const float* w, const float* rstd, int64_t N,
                      int C, bool gemma, cudaStream_t s, const float* dres, bf16* dxb, int64_t ldb) {
    if (N <= 0 || C <= 0) return;
    if (dxb && ldb == 0) ldb = C;
    HQ_ASSERT(!dxb || ldb >= C);
    const bool vec = C % 4 == 0 && aligned(dx, 16) && aligned(dy, 16) && aligned(x, 16) && aligned(w, 16) &&
                     (!dres || aligned(dres, 16)) && (!dxb || (aligned(dxb, 8) && ldb % 4 == 0));
    rmsnorm_backward_kernel<<<grid_rows(N), threads_for(C, vec), 0, s>>>(dx, dy, x, w, rstd, N, C, gemma, vec, dres,
                                                                         dxb, ldb);
    HQ_CUDA_LAUNCH("rmsnorm_backward");
}

}  // namespace hq::cuda
