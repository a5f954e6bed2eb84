// cross_entropy.cu — causal-LM cross-entropy and its logits gradient on one chunk of rows (never the full
// [N, V] logits: the caller projects a chunk, calls this, then multiplies dlogits back into dh).
//
//   logits [rows, V] fp32, targets [rows] int32 (−100 = ignored)
//   lse = m + log Σ_j exp(l_j − m)  (m = max_j l_j; Σ in fp32 per thread, merged across the block; the log and
//         the final sum in fp64 like the CPU)
//   row_loss [rows] fp32 = f32(lse − l[target])                          0 for ignored rows
//   dlogits [rows, V] bf16 = exp(l_j − f32(lse))·grad_scale − grad_scale·[j = target]   zero rows when ignored
//   softcap > 0: l is the capped logit (softcap_inplace ran before) and dlogits is multiplied by 1 − (l/softcap)²
// Reference: the per-row loop of cross_entropy_chunked in native/src/loss.cpp (same gradient formula and order).
// A target outside [0, V) other than −100 is a caller bug (the host checks it); the kernel then writes a NaN loss
// and a zero gradient row instead of reading out of bounds.
// One block per row (grid-stride over rows); pass 1 is an online max / Σexp per thread, merged with fixed-order
// trees (deterministic), pass 2 writes the gradient. V up to 256k (Gemma): 1024 threads per row for large V.
// 4 logits per thread step (16-byte loads, 8-byte bf16 stores) when V % 4 == 0 and the pointers allow it.
#include <cstdint>

#include "cuda_util.cuh"
#include "kernels.h"

namespace hq::cuda {
namespace {

using util::aligned;

using util::pack_bf16x2;

using util::softmax_merge;

__device__ __forceinline__ void warp_merge(float& m, float& l) {
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xFFFFFFFFu, m, o), l2 = __shfl_xor_sync(0xFFFFFFFFu, l, o);
        softmax_merge(m, l, m2, l2);
    }
}

// Block-wide merge; every thread gets the result. sm, sl [32] are reused across rows (the leading barrier
// protects them from the previous row's readers).
__device__ void block_merge(float& m, float& l, float* sm, float* sl) {
    warp_merge(m, l);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) {
        sm[warp] = m;
        sl[warp] = l;
    }
    __syncthreads();
    m = lane < nw ? sm[lane] : -INFINITY;
    l = lane < nw ? sl[lane] : 0.0f;
    warp_merge(m, l);
}

template <int VEC>
__global__ void __launch_bounds__(1024) cross_entropy_kernel(float* __restrict__ row_loss, bf16* __restrict__ dlogits,
                                                             const float* __restrict__ logits,
                                                             const int32_t* __restrict__ targets, int64_t rows, int V,
                                                             float grad_scale, float softcap, float inv_cap) {
    __shared__ float sm[32], sl[32];
    const int step = blockDim.x * VEC;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* lg = logits + r * V;                      // [V]
        bf16* dl = dlogits ? dlogits + r * V : nullptr;        // [V]
        const int32_t tgt = targets[r];
        const bool valid = tgt >= 0 && tgt < V;
        if (!valid) {   // ignored (−100) or a caller bug: zero gradient, loss 0 or NaN
            if (threadIdx.x == 0) row_loss[r] = tgt == -100 ? 0.0f : __int_as_float(0x7FC00000);
            if (dl) {
                for (int j0 = threadIdx.x * VEC; j0 < V; j0 += step) {
                    if constexpr (VEC == 4)
                        *reinterpret_cast<uint2*>(dl + j0) = make_uint2(0u, 0u);
                    else
                        dl[j0] = __float2bfloat16_rn(0.0f);
                }
            }
            continue;
        }
        float m = -INFINITY, l = 0.0f;
        for (int j0 = threadIdx.x * VEC; j0 < V; j0 += step) {
            float x[VEC];
            if constexpr (VEC == 4) {
                const float4 u = *reinterpret_cast<const float4*>(lg + j0);
                x[0] = u.x;
                x[1] = u.y;
                x[2] = u.z;
                x[3] = u.w;
            } else {
                x[0] = lg[j0];
            }
            float cm = x[0];
#pragma unroll
            for (int k = 1; k < VEC; k++) cm = fmaxf(cm, x[k]);
            if (cm > m) {
                l = m == -INFINITY ? 0.0f : __fmul_rn(l, expf(__fsub_rn(m, cm)));
                m = cm;
            }
#pragma unroll
            for (int k = 0; k < VEC; k++) l = __fadd_rn(l, expf(__fsub_rn(x[k], m)));
        }
        block_merge(m, l, sm, sl);
        const double lse = (double)m + log((double)l);
        if (threadIdx.x == 0) row_loss[r] = (float)(lse - (double)lg[tgt]);
        if (!dl) continue;
        const float flse = (float)lse;
        for (int j0 = threadIdx.x * VEC; j0 < V; j0 += step) {
            float g[VEC];
            if constexpr (VEC == 4) {
                const float4 u = *reinterpret_cast<const float4*>(lg + j0);
                g[0] = u.x;
                g[1] = u.y;
                g[2] = u.z;
                g[3] = u.w;
            } else {
                g[0] = lg[j0];
            }
#pragma unroll
            for (int k = 0; k < VEC; k++) {
                const float x = g[k];   // the (capped) logit
                g[k] = __fmul_rn(expf(__fsub_rn(x, flse)), grad_scale);
                if (j0 + k == tgt) g[k] = __fsub_rn(g[k], grad_scale);
                if (softcap > 0.0f) {   // d raw = d capped · (1 − tanh²), tanh = capped / softcap
                    const float t = __fmul_rn(x, inv_cap);
                    g[k] = __fmul_rn(g[k], __fsub_rn(1.0f, __fmul_rn(t, t)));
                }
            }
            if constexpr (VEC == 4)
                *reinterpret_cast<uint2*>(dl + j0) = make_uint2(pack_bf16x2(g[0], g[1]), pack_bf16x2(g[2], g[3]));
            else
                dl[j0] = __float2bfloat16_rn(g[0]);
        }
    }
}

}  // namespace

void cross_entropy_rows(float* row_loss, bf16* dlogits, const float* logits, const int32_t* targets, int64_t rows,
                        int V, float grad_scale, cudaStream_t s, float softcap) {
    if (rows <= 0) return;
    HQ_CHECK(V > 0, "E_INTERNAL", "cross_entropy_rows: vocabulary size " << V, Where{}, "this is a bug in the caller");
    const int threads = V >= 65536 ? 1024 : (V >= 8192 ? 512 : 128);
    const int grid = (int)(rows < (int64_t(1) << 30) ? rows : (int64_t(1) << 30));
    const bool vec = V % 4 == 0 && aligned(logits, 16) && (!dlogits || aligned(dlogits, 8));
    const float cap = softcap > 0.0f ? softcap : 0.0f, inv_cap = cap > 0.0f ? 1.0f / cap : 0.0f;
    if (vec)
        cross_entropy_kernel<4><<<grid, threads, 0, s>>>(row_loss, dlogits, logits, targets, rows, V, grad_scale, cap,
                                                         inv_cap);
    else
        cross_entropy_kernel<1><<<grid, threads, 0, s>>>(row_loss, dlogits, logits, targets, rows, V, grad_scale, cap,
                                                         inv_cap);
    HQ_CUDA_LAUNCH("cross_entropy_rows");
}

}  // namespace hq::cuda
