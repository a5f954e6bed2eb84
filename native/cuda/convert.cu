// convert.cu — fp32 <-> bf16 conversion of flat device arrays.
//
//   f32_to_bf16: out [n] bf16 = round-to-nearest-even(in [n] fp32)   (NaN stays NaN, ±Inf stays ±Inf)
//   bf16_to_f32: out [n] fp32 = in [n]                                (exact: bf16 is the top half of an fp32)
// Reference: hq::f32_to_bf16 / hq::bf16_to_f32 in native/src/dtype.cpp (the same rounding as torch's .to()).
// Memory-bound: 4 elements per thread step (16-byte fp32 / 8-byte bf16 accesses) when both pointers are aligned,
// otherwise one element per step; grid-stride loops.
#include <cstdint>

#include "cuda_util.cuh"
#include "kernels.h"

namespace hq::cuda {
namespace {

constexpr int kThreads = 256;

using util::aligned;
using util::grid_for;
using util::grid_for_vec4;
using util::grid_stride_vec4;

using util::pack_bf16x2;

// vec: 4 elements per step for i < n/4, then the tail element-wise.
__global__ void f32_to_bf16_kernel(bf16* __restrict__ out, const float* __restrict__ in, int64_t n, bool vec) {
    grid_stride_vec4(
        n, vec,
        [&](int64_t k) {
            const float4 v = reinterpret_cast<const float4*>(in)[k];
            reinterpret_cast<uint2*>(out)[k] = make_uint2(pack_bf16x2(v.x, v.y), pack_bf16x2(v.z, v.w));
        },
        [&](int64_t k) { out[k] = __float2bfloat16_rn(in[k]); });
}

__global__ void bf16_to_f32_kernel(float* __restrict__ out, const bf16* __restrict__ in, int64_t n, bool vec) {
    grid_stride_vec4(
        n, vec,
        [&](int64_t k) {
            const uint2 u = reinterpret_cast<const uint2*>(in)[k];
            reinterpret_cast<float4*>(out)[k] =
                make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xFFFF0000u), __uint_as_float(u.y << 16),
                            __uint_as_float(u.y & 0xFFFF0000u));
        },
        [&](int64_t k) { out[k] = __bfloat162float(in[k]); });
}

}  // namespace

void f32_to_bf16(bf16* out, const float* in, int64_t n, cudaStream_t s) {
    if (n <= 0) return;
    const bool vec = aligned(in, 16) && aligned(out, 8);
    f32_to_bf16_kernel<<<grid_for_vec4(n, vec, kThreads), kThreads, 0, s>>>(out, in, n, vec);
    HQ_CUDA_LAUNCH("f32_to_bf16");
}

void bf16_to_f32(float* out, const bf16* in, int64_t n, cudaStream_t s) {
    if (n <= 0) return;
    const bool vec = aligned(in, 8) && aligned(out, 16);
    bf16_to_f32_kernel<<<grid_for_vec4(n, vec, kThreads), kThreads, 0, s>>>(out, in, n, vec);
    HQ_CUDA_LAUNCH("bf16_to_f32");
}

}  // namespace hq::cuda
