// embedding.cu — token embedding lookup into the fp32 residual stream.
//
//   x [N, C] fp32 = E[ids[n]] [C] (bf16 -> fp32, exact) * scale      (scale = √C for Gemma, 1 for LLaMA)
// Reference: embedding_forward in native/src/embedding.cpp (one fp32 product per element, so bit-exact on the
// bf16-rounded table). The ids are checked against [0, V) by the host caller.
// One block per row (grid-stride over rows); 8 columns per thread step (16-byte bf16 load, two 16-byte stores)
// when C % 8 == 0 and the pointers allow it.
#include <cstdint>

#include "cuda_util.cuh"
#include "kernels.h"

namespace hq::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    embedding_kernel(float* __restrict__ x, const bf16* __restrict__ E, const int32_t* __restrict__ ids, int64_t N,
                     int C, float scale, bool vec) {
    for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
        const bf16* e = E + (int64_t)ids[n] * C;   // [C]
        float* xr = x + n * C;                      // [C]
        if (vec) {
            const int nv = C / 8;
            for (int k = threadIdx.x; k < nv; k += blockDim.x) {
                const uint4 u = __ldg(reinterpret_cast<const uint4*>(e) + k);
                float4 lo, hi;
                lo.x = __fmul_rn(__uint_as_float(u.x << 16), scale);
                lo.y = __fmul_rn(__uint_as_float(u.x & 0xFFFF0000u), scale);
                lo.z = __fmul_rn(__uint_as_float(u.y << 16), scale);
                lo.w = __fmul_rn(__uint_as_float(u.y & 0xFFFF0000u), scale);
                hi.x = __fmul_rn(__uint_as_float(u.z << 16), scale);
                hi.y = __fmul_rn(__uint_as_float(u.z & 0xFFFF0000u), scale);
                hi.z = __fmul_rn(__uint_as_float(u.w << 16), scale);
                hi.w = __fmul_rn(__uint_as_float(u.w & 0xFFFF0000u), scale);
                reinterpret_cast<float4*>(xr)[2 * k] = lo;
                reinterpret_cast<float4*>(xr)[2 * k + 1] = hi;
            }
        } else {
            for (int c = threadIdx.x; c < C; c += blockDim.x) xr[c] = __fmul_rn(__bfloat162float(e[c]), scale);
        }
    }
}

using util::aligned;

}  // namespace

void embedding_forward(float* x, const bf16* E, const int32_t* ids, int64_t N, int C, float scale, cudaStream_t s) {
    if (N <= 0 || C <= 0) return;
    const bool vec = C % 8 == 0 && aligned(E, 16) && aligned(x, 16);
    const int grid = (int)(N < 65535 ? N : 65535);
    embedding_kernel<<<grid, kThreads, 0, s>>>(x, E, ids, N, C, scale, vec);
    HQ_CUDA_LAUNCH("embedding_forward");
}

}  // namespace hq::cuda
