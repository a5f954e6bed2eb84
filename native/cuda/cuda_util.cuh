// cuda_util.cuh — small launch and bf16 helpers shared by the backend's kernel files (.cu only).
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

namespace hq::cuda::util {

// Blocks for `work` threads of `threads` each, at least 1 and at most 8192 (kernels use grid-stride loops).
inline int grid_for(int64_t work, int threads = 256) {
    const int64_t b = (work + threads - 1) / threads;
    return (int)(b < 1 ? 1 : (b > 8192 ? 8192 : b));
}

// true when p is aligned to `al` bytes (a power of two).
inline bool aligned(const void* p, uintptr_t al) { return (reinterpret_cast<uintptr_t>(p) & (al - 1)) == 0; }

// Two floats rounded to bf16 and packed into one word: a in the low half (element 0, the lower address).
__device__ __forceinline__ uint32_t pack_bf16x2(float a, float b) {
    return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(a)) |
           ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(b)) << 16);
}

}  // namespace hq::cuda::util
