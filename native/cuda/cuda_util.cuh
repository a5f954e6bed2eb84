// cuda_util.cuh — small launch, reduction and bf16 helpers shared by the backend's kernel files (.cu only).
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

namespace hq::cuda::util {

// The one launch-grid helper of the kernel files: blocks for `work` threads of `threads` each, at least 1 and at
// most max_blocks (kernels with grid-stride loops keep the default 8192).
inline int grid_for(int64_t work, int threads = 256, int64_t max_blocks = 8192) {
    const int64_t b = (work + threads - 1) / threads;
    return (int)(b < 1 ? 1 : (b > max_blocks ? max_blocks : b));
}

// Blocks for a kernel that walks n elements with grid_stride_vec4: n / 4 + 1 steps when vec (the +1 for the
// tail), else n.
inline int grid_for_vec4(int64_t n, bool vec, int threads = 256) { return grid_for(vec ? n / 4 + 1 : n, threads); }

// The grid-stride loop of an element-wise kernel over n elements. With vec (every pointer aligned for 4-element
// loads), group(k) for each group k < n / 4 of elements 4k..4k+3, then one(k) for the tail elements; without vec,
// one(k) for every element.
template <class Group, class One>
__device__ __forceinline__ void grid_stride_vec4(int64_t n, bool vec, Group group, One one) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t i0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t done = 0;
    if (vec) {
        const int64_t nv = n / 4;
        for (int64_t k = i0; k < nv; k += stride) group(k);
        done = nv * 4;
    }
    for (int64_t k = done + i0; k < n; k += stride) one(k);
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024) in a fixed order; every thread gets the total.
// `sh` [32] shared is reused across calls: the leading __syncthreads protects it from the previous call's readers.
template <typename T>
__device__ T block_sum(T v, T* sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : T(0);
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    return v;
}

// (m, l) ⊕ (m2, l2) of an online softmax, l = Σ exp(x − m); an empty side has m = −inf, l = 0. Unfused and
// symmetric, so both lanes of an xor pair compute the same bits.
__device__ __forceinline__ void softmax_merge(float& m, float& l, float m2, float l2) {
    const float M = fmaxf(m, m2);
    const float a = m == -INFINITY ? 0.0f : __fmul_rn(l, expf(__fsub_rn(m, M)));
    const float b = m2 == -INFINITY ? 0.0f : __fmul_rn(l2, expf(__fsub_rn(m2, M)));
    m = M;
    l = __fadd_rn(a, b);
}

// true when p is aligned to `al` bytes (a power of two).
inline bool aligned(const void* p, uintptr_t al) { return (reinterpret_cast<uintptr_t>(p) & (al - 1)) == 0; }

// Two floats rounded to bf16 and packed into one word: a in the low half (element 0, the lower address).
__device__ __forceinline__ uint32_t pack_bf16x2(float a, float b) {
    return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(a)) |
           ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(b)) << 16);
}

}  // namespace hq::cuda::util
