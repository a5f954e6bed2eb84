// lora_ops.cu — elementwise helpers of the hierarchical-LoRA linear: per-level rank scaling and adapter dropout.
//
//   scale_cols_to_bf16: out [N, R] bf16 = z [N, R] fp32 ⊙ scale [R]    (s_j on the rank rows of level j; one fp32
//                       product, then bf16: the B-GEMM input)
//   dropout_bf16:       out[i] = u_i >= p ? x[i] · keep : 0,  keep = f32(1 / (1 − p)),  u_i = rng_uniform(key, i)
//                       over the flat [N, in] index i (the CPU's mask: counter-based, nothing stored)
//   dropout_accumulate: dx[i] += u_i >= p ? t[i] · keep : 0   (the backward through the same mask)
// Reference: hlora_forward's z ⊙ s loop and dropout_input in native/src/hlora.cpp; mix64 / rng_uniform are copied
// from native/src/hlora.h (same 64-bit integer arithmetic, so the same bits).
// 4 elements per thread step (8-byte bf16 / 16-byte fp32 accesses) when the shape and pointers allow.
#include <cstdint>

#include "cuda_util.cuh"
#include "kernels.h"

namespace hq::cuda {
namespace {

constexpr int kThreads = 256;

using util::grid_for;
using util::grid_for_vec4;
using util::grid_stride_vec4;

using util::aligned;

using util::pack_bf16x2;

// hlora.h mix64 (SplitMix64 finaliser) and rng_uniform, bit for bit.
__device__ __forceinline__ uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}
__device__ __forceinline__ float rng_uniform(uint64_t key, uint64_t ctr) {
    return __fmul_rn((float)(mix64(key + ctr * 0xD1B54A32D192ED03ULL) >> 40), 1.0f / 16777216.0f);
}

__global__ void __launch_bounds__(kThreads) scale_cols_kernel(bf16* __restrict__ out, const float* __restrict__ z,
                                                              int64_t N, int R, const float* __restrict__ scale,
                                                              bool vec, int64_t ldo) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t i0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (vec) {   // R and ldo multiples of 4: a 4-step never crosses a row
        const int rv = R / 4;
        const int64_t nv = N * rv, lv = ldo / 4;
        for (int64_t k = i0; k < nv; k += stride) {
            const int64_t r = k / rv;
            const int c = (int)(k - r * rv);
            const float4 v = reinterpret_cast<const float4*>(z)[k];
            const float4 sc = reinterpret_cast<const float4*>(scale)[c];
            reinterpret_cast<uint2*>(out)[r * lv + c] =
                make_uint2(pack_bf16x2(__fmul_rn(v.x, sc.x), __fmul_rn(v.y, sc.y)),
                           pack_bf16x2(__fmul_rn(v.z, sc.z), __fmul_rn(v.w, sc.w)));
        }
    } else {
        const int64_t n = N * R;
        for (int64_t k = i0; k < n; k += stride)
            out[(k / R) * ldo + k % R] = __float2bfloat16_rn(__fmul_rn(z[k], scale[k % R]));
    }
}

__device__ __forceinline__ float drop(float x, uint64_t key, uint64_t i, float p, float keep) {
    return rng_uniform(key, i) >= p ? __fmul_rn(x, keep) : 0.0f;
}

__global__ void __launch_bounds__(kThreads) dropout_kernel(bf16* __restrict__ out, const bf16* __restrict__ x,
                                                           int64_t n, float p, float keep, uint64_t key, bool vec) {
    grid_stride_vec4(
        n, vec,
        [&](int64_t k) {
            const uint2 u = reinterpret_cast<const uint2*>(x)[k];
            const uint64_t e = (uint64_t)k * 4;
            const float a = drop(__uint_as_float(u.x << 16), key, e, p, keep);
            const float b = drop(__uint_as_float(u.x & 0xFFFF0000u), key, e + 1, p, keep);
            const float c = drop(__uint_as_float(u.y << 16), key, e + 2, p, keep);
            const float d = drop(__uint_as_float(u.y & 0xFFFF0000u), key, e + 3, p, keep);
            reinterpret_cast<uint2*>(out)[k] = make_uint2(pack_bf16x2(a, b), pack_bf16x2(c, d));
        },
        [&](int64_t k) {
            out[k] = __float2bfloat16_rn(drop(__bfloat162float(x[k]), key, (uint64_t)k, p, keep));
        });
}

__global__ void __launch_bounds__(kThreads) dropout_accumulate_kernel(float* __restrict__ dx,
                                                                      const float* __restrict__ t, int64_t n, float p,
                                                                      float keep, uint64_t key) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += stride)
        if (rng_uniform(key, (uint64_t)k) >= p) dx[k] = __fadd_rn(dx[k], __fmul_rn(t[k], keep));
}

}  // namespace

void scale_cols_to_bf16(bf16* out, const float* z, int64_t N, int R, const float* scale, cudaStream_t s,
                        int64_t ldo) {
    const int64_t n = N * R;
    if (n <= 0) return;
    if (ldo == 0) ldo = R;
    HQ_ASSERT(ldo >= R);
    const bool vec = R % 4 == 0 && ldo % 4 == 0 && aligned(out, 8) && aligned(z, 16) && aligned(scale, 16);
    scale_cols_kernel<<<grid_for(vec ? n / 4 : n, kThreads), kThreads, 0, s>>>(out, z, N, R, scale, vec, ldo);
    HQ_CUDA_LAUNCH("scale_cols_to_bf16");
}

void dropout_bf16(bf16* out, const bf16* x, int64_t n, float p, uint64_t key, cudaStream_t s) {
    if (n <= 0) return;
    HQ_CHECK(p >= 0.0f && p < 1.0f, "E_INTERNAL", "dropout_bf16: p = " << p << " outside [0, 1)", Where{},
             "this is a bug in the caller (lora_dropout is validated in [0, 1) by the config)");
    const float keep = 1.0f / (1.0f - p);   // as dropout_input computes keep_scale (fp32)
    const bool vec = aligned(out, 8) && aligned(x, 8);
    dropout_kernel<<<grid_for_vec4(n, vec, kThreads), kThreads, 0, s>>>(out, x, n, p, keep, key, vec);
    HQ_CUDA_LAUNCH("dropout_bf16");
}

void dropout_accumulate(float* dx, const float* t, int64_t n, float p, uint64_t key, cudaStream_t s) {
    if (n <= 0) return;
    const float keep = 1.0f / (1.0f - p);
    dropout_accumulate_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(dx, t, n, p, keep, key);
    HQ_CUDA_LAUNCH("dropout_accumulate");
}

}  // namespace hq::cuda
