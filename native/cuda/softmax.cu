// softmax.cu — the causal softmax between attention's score and value GEMMs, forward and backward.
//
//   rows = B·H·T; row r has query index i = r % T and sees keys j <= i.
//   forward:  P [rows, T] bf16 = softmax_j(scale·S) for j <= i (fp32: max subtraction, Σexp, one reciprocal),
//             exact zeros for j > i.   S [rows, T] fp32 (entries above the diagonal are never read)
//   backward: dS [rows, T] bf16 = (P ⊙ (dP − D)) · scale,  D = Σ_{j<=i} P·dP (fp32),  zeros for j > i;
//             P is the forward's bf16 P read back as fp32, dP [rows, T] fp32 = dO·Vᵀ.
// Reference: the per-row loops of attention_forward / attention_backward in native/src/attention.cpp (same
// formulas; there D = Σ dO·O, which equals Σ P·dP up to rounding). The test replays them on one row at a time.
// One warp per row (8 rows per block): pass 1 is an online max / Σexp over the visible keys (per lane, merged
// across the warp with a fixed xor tree so every lane holds the same m and Σ), pass 2 writes the row. 4 keys per
// lane step (16-byte fp32 / 8-byte bf16 accesses) when T % 4 == 0 and the pointers allow it.
#include <cstdint>

#include "cuda_util.cuh"
#include "kernels.h"

namespace hq::cuda {
namespace {

constexpr int kThreads = 256;   // 8 warps = 8 rows per block
constexpr int kRowsPerBlock = kThreads / 32;

using util::aligned;

int grid_rows(int64_t rows) {
    const int64_t b = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
    return (int)(b > (int64_t(1) << 20) ? (int64_t(1) << 20) : b);
}

using util::pack_bf16x2;

template <int V>
__device__ __forceinline__ void load_f32(const float* p, float (&f)[V]) {
    if constexpr (V == 4) {
        const float4 u = *reinterpret_cast<const float4*>(p);
        f[0] = u.x;
        f[1] = u.y;
        f[2] = u.z;
        f[3] = u.w;
    } else {
        f[0] = p[0];
    }
}
template <int V>
__device__ __forceinline__ void load_bf16(const bf16* p, float (&f)[V]) {
    if constexpr (V == 4) {
        const uint2 u = *reinterpret_cast<const uint2*>(p);
        f[0] = __uint_as_float(u.x << 16);
        f[1] = __uint_as_float(u.x & 0xFFFF0000u);
        f[2] = __uint_as_float(u.y << 16);
        f[3] = __uint_as_float(u.y & 0xFFFF0000u);
    } else {
        f[0] = __bfloat162float(p[0]);
    }
}
template <int V>
__device__ __forceinline__ void store_bf16(bf16* p, const float (&f)[V]) {
    if constexpr (V == 4)
        *reinterpret_cast<uint2*>(p) = make_uint2(pack_bf16x2(f[0], f[1]), pack_bf16x2(f[2], f[3]));
    else
        p[0] = __float2bfloat16_rn(f[0]);
}

using util::softmax_merge;

template <int V>
__global__ void __launch_bounds__(kThreads) causal_softmax_forward_kernel(bf16* __restrict__ P,
                                                                          const float* __restrict__ S, int64_t rows,
                                                                          int T, float scale) {
    const int lane = threadIdx.x & 31;
    for (int64_t r = (int64_t)blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5); r < rows;
         r += (int64_t)gridDim.x * kRowsPerBlock) {
        const int nvis = (int)(r % T) + 1;   // keys 0 .. i
        const float* s = S + r * T;          // [T]
        bf16* p = P + r * T;                 // [T]
        float m = -INFINITY, l = 0.0f;
        for (int j0 = lane * V; j0 < nvis; j0 += 32 * V) {
            float x[V];
            load_f32<V>(s + j0, x);
            float cm = -INFINITY;
#pragma unroll
            for (int k = 0; k < V; k++) {
                x[k] = __fmul_rn(x[k], scale);
                if (j0 + k < nvis) cm = fmaxf(cm, x[k]);
            }
            if (cm > m) {
                l = m == -INFINITY ? 0.0f : __fmul_rn(l, expf(__fsub_rn(m, cm)));
                m = cm;
            }
#pragma unroll
            for (int k = 0; k < V; k++)
                if (j0 + k < nvis) l = __fadd_rn(l, expf(__fsub_rn(x[k], m)));
        }
        for (int o = 16; o > 0; o >>= 1) {
            const float m2 = __shfl_xor_sync(0xFFFFFFFFu, m, o), l2 = __shfl_xor_sync(0xFFFFFFFFu, l, o);
            softmax_merge(m, l, m2, l2);
        }
        const float inv = __fdiv_rn(1.0f, l);
        for (int j0 = lane * V; j0 < T; j0 += 32 * V) {
            float y[V];
            if (j0 < nvis) {
                load_f32<V>(s + j0, y);
#pragma unroll
                for (int k = 0; k < V; k++)
                    y[k] = j0 + k < nvis ? __fmul_rn(expf(__fsub_rn(__fmul_rn(y[k], scale), m)), inv) : 0.0f;
            } else {
#pragma unroll
                for (int k = 0; k < V; k++) y[k] = 0.0f;
            }
            store_bf16<V>(p + j0, y);
        }
    }
}

template <int V>
__global__ void __launch_bounds__(kThreads) causal_softmax_backward_kernel(bf16* __restrict__ dS,
                                                                           const bf16* __restrict__ P,
                                                                           const float* __restrict__ dP,
                                                                           int64_t rows, int T, float scale) {
    const int lane = threadIdx.x & 31;
    for (int64_t r = (int64_t)blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5); r < rows;
         r += (int64_t)gridDim.x * kRowsPerBlock) {
        const int nvis = (int)(r % T) + 1;
        const bf16* p = P + r * T;      // [T]
        const float* dp = dP + r * T;   // [T]
        bf16* ds = dS + r * T;          // [T]
        float D = 0.0f;
        for (int j0 = lane * V; j0 < nvis; j0 += 32 * V) {
            float a[V], b[V];
            load_bf16<V>(p + j0, a);
            load_f32<V>(dp + j0, b);
#pragma unroll
            for (int k = 0; k < V; k++)
                if (j0 + k < nvis) D = __fadd_rn(D, __fmul_rn(a[k], b[k]));
        }
        for (int o = 16; o > 0; o >>= 1) D = __fadd_rn(D, __shfl_xor_sync(0xFFFFFFFFu, D, o));
        for (int j0 = lane * V; j0 < T; j0 += 32 * V) {
            float y[V];
            if (j0 < nvis) {
                float a[V], b[V];
                load_bf16<V>(p + j0, a);
                load_f32<V>(dp + j0, b);
#pragma unroll
                for (int k = 0; k < V; k++)
                    y[k] = j0 + k < nvis ? __fmul_rn(__fmul_rn(a[k], __fsub_rn(b[k], D)), scale) : 0.0f;
            } else {
#pragma unroll
                for (int k = 0; k < V; k++) y[k] = 0.0f;
            }
            store_bf16<V>(ds + j0, y);
        }
    }
}

}  // namespace

void causal_softmax_forward(bf16* P, const float* S, int64_t rows, int T, float scale, cudaStream_t s) {
    if (rows <= 0 || T <= 0) return;
    if (T % 4 == 0 && aligned(P, 8) && aligned(S, 16))
        causal_softmax_forward_kernel<4><<<grid_rows(rows), kThreads, 0, s>>>(P, S, rows, T, scale);
    else
        causal_softmax_forward_kernel<1><<<grid_rows(rows), kThreads, 0, s>>>(P, S, rows, T, scale);
    HQ_CUDA_LAUNCH("causal_softmax_forward");
}

void causal_softmax_backward(bf16* dS, const bf16* P, const float* dP, int64_t rows, int T, float scale,
                             cudaStream_t s) {
    if (rows <= 0 || T <= 0) return;
    if (T % 4 == 0 && aligned(dS, 8) && aligned(P, 8) && aligned(dP, 16))
        causal_softmax_backward_kernel<4><<<grid_rows(rows), kThreads, 0, s>>>(dS, P, dP, rows, T, scale);
    else
        causal_softmax_backward_kernel<1><<<grid_rows(rows), kThreads, 0, s>>>(dS, P, dP, rows, T, scale);
    HQ_CUDA_LAUNCH("causal_softmax_backward");
}

}  // namespace hq::cuda
