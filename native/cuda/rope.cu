// rope.cu — rotary position embedding (HF rotate_half layout) fused with the head layout change, and the plain
// layout changes of v and dv.
//
//   "bthd" = [B, T, nh, d] (a projection's [N, nh·d] output), "bhtd" = [B, nh, T, d] (the attention GEMMs' layout)
//   cos, sin [T, d/2] fp32 (rope_tables); lane i < d/2 pairs with i + d/2:
//   forward:  y[i] = x[i]·cos − x[i+d/2]·sin ;   y[i+d/2] = x[i+d/2]·cos + x[i]·sin
//   backward: dx[i] = dy[i]·cos + dy[i+d/2]·sin ; dx[i+d/2] = dy[i+d/2]·cos − dy[i]·sin   (transposed rotation)
// Reference: rope_forward / rope_backward in native/src/rope.cpp (same products and sums in fp32, no FMA), plus
// the layout change; outputs are rounded to bf16 once.
// One thread step handles V consecutive lanes i of one (b, t, head) row and their partners i + d/2, with V = 4, 2
// or 1 as d/2 and the pointers allow (8-byte bf16 / 16-byte fp32 accesses at V = 4).
#include <cstdint>
#include <numeric>

#include "cuda_util.cuh"
#include "kernels.h"

namespace hq::cuda {
namespace {

constexpr int kThreads = 256;

using util::grid_for;

using util::aligned;

// ---- V-wide loads and stores (V = 1, 2, 4 elements) -------------------------------------------------------------
template <int V>
__device__ __forceinline__ void load_bf16(const bf16* p, float (&f)[V]) {
    if constexpr (V == 1) {
        f[0] = __bfloat162float(p[0]);
    } else if constexpr (V == 2) {
        const uint32_t u = *reinterpret_cast<const uint32_t*>(p);
        f[0] = __uint_as_float(u << 16);
        f[1] = __uint_as_float(u & 0xFFFF0000u);
    } else {
        const uint2 u = *reinterpret_cast<const uint2*>(p);
        f[0] = __uint_as_float(u.x << 16);
        f[1] = __uint_as_float(u.x & 0xFFFF0000u);
        f[2] = __uint_as_float(u.y << 16);
        f[3] = __uint_as_float(u.y & 0xFFFF0000u);
    }
}

using util::pack_bf16x2;

template <int V>
__device__ __forceinline__ void store_bf16(bf16* p, const float (&f)[V]) {
    if constexpr (V == 1) {
        p[0] = __float2bfloat16_rn(f[0]);
    } else if constexpr (V == 2) {
        *reinterpret_cast<uint32_t*>(p) = pack_bf16x2(f[0], f[1]);
    } else {
        *reinterpret_cast<uint2*>(p) = make_uint2(pack_bf16x2(f[0], f[1]), pack_bf16x2(f[2], f[3]));
    }
}

template <int V>
__device__ __forceinline__ void load_f32(const float* p, float (&f)[V]) {
    if constexpr (V == 1) {
        f[0] = p[0];
    } else if constexpr (V == 2) {
        const float2 u = *reinterpret_cast<const float2*>(p);
        f[0] = u.x;
        f[1] = u.y;
    } else {
        const float4 u = *reinterpret_cast<const float4*>(p);
        f[0] = u.x;
        f[1] = u.y;
        f[2] = u.z;
        f[3] = u.w;
    }
}

// ---- kernels ------------------------------------------------------------------------------------------------------
// Steps are ordered (b, t, head, i/V) for the forward (bthd input), (b, head, t, i/V) for the backward (bhtd input),
// so the larger input side is read contiguously.
template <int V>
__global__ void __launch_bounds__(kThreads) rope_forward_kernel(bf16* __restrict__ out, const bf16* __restrict__ in,
                                                                const float* __restrict__ cos,
                                                                const float* __restrict__ sin,
                                                                const int32_t* __restrict__ pos, int B, int T, int nh,
                                                                int d) {
    const int h = d / 2, hv = h / V;
    const int64_t total = (int64_t)B * T * nh * hv;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const int i = (int)(idx % hv) * V;
        int64_t rest = idx / hv;
        const int hh = (int)(rest % nh);
        rest /= nh;
        const int t = (int)(rest % T);
        const int b = (int)(rest / T);
        const bf16* x = in + (((int64_t)b * T + t) * nh + hh) * d;    // [d] of bthd
        bf16* y = out + (((int64_t)b * nh + hh) * T + t) * d;         // [d] of bhtd
        float x1[V], x2[V], c[V], s[V], y1[V], y2[V];
        load_bf16<V>(x + i, x1);
        load_bf16<V>(x + i + h, x2);
        const int64_t tp = pos ? pos[(int64_t)b * T + t] : t;   // packed rows: the position within the document
        load_f32<V>(cos + tp * h + i, c);
        load_f32<V>(sin + tp * h + i, s);
#pragma unroll
        for (int k = 0; k < V; k++) {
            y1[k] = __fsub_rn(__fmul_rn(x1[k], c[k]), __fmul_rn(x2[k], s[k]));
            y2[k] = __fadd_rn(__fmul_rn(x2[k], c[k]), __fmul_rn(x1[k], s[k]));
        }
        store_bf16<V>(y + i, y1);
        store_bf16<V>(y + i + h, y2);
    }
}

template <int V>
__global__ void __launch_bounds__(kThreads) rope_backward_kernel(bf16* __restrict__ dx, const float* __restrict__ dy,
                                                                 const float* __restrict__ cos,
                                                                 const float* __restrict__ sin,
                                                                 const int32_t* __restrict__ pos, int B, int T, int nh,
                                                                 int d, int64_t ldo) {
    const int h = d / 2, hv = h / V;
    const int64_t total = (int64_t)B * nh * T * hv;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const int i = (int)(idx % hv) * V;
        int64_t rest = idx / hv;
        const int t = (int)(rest % T);
        rest /= T;
        const int hh = (int)(rest % nh);
        const int b = (int)(rest / nh);
        const float* g = dy + (((int64_t)b * nh + hh) * T + t) * d;   // [d] of bhtd
        bf16* o = dx + ((int64_t)b * T + t) * ldo + (int64_t)hh * d;  // [d] of bthd (rows ldo apart)
        float g1[V], g2[V], c[V], s[V], o1[V], o2[V];
        load_f32<V>(g + i, g1);
        load_f32<V>(g + i + h, g2);
        const int64_t tp = pos ? pos[(int64_t)b * T + t] : t;   // packed rows: the position within the document
        load_f32<V>(cos + tp * h + i, c);
        load_f32<V>(sin + tp * h + i, s);
#pragma unroll
        for (int k = 0; k < V; k++) {
            o1[k] = __fadd_rn(__fmul_rn(g1[k], c[k]), __fmul_rn(g2[k], s[k]));
            o2[k] = __fsub_rn(__fmul_rn(g2[k], c[k]), __fmul_rn(g1[k], s[k]));
        }
        store_bf16<V>(o + i, o1);
        store_bf16<V>(o + i + h, o2);
    }
}

// bf16 bthd -> bhtd copy, V elements per step (V = 8: 16-byte accesses).
template <int V>
struct BytesOf;
template <> struct BytesOf<8> { using T = uint4; };
template <> struct BytesOf<4> { using T = uint2; };
template <> struct BytesOf<2> { using T = uint32_t; };
template <> struct BytesOf<1> { using T = uint16_t; };

template <int V>
__global__ void __launch_bounds__(kThreads) bthd_to_bhtd_kernel(bf16* __restrict__ out, const bf16* __restrict__ in,
                                                                int B, int T, int nh, int d) {
    using W = typename BytesOf<V>::T;
    const int dv = d / V;
    const int64_t total = (int64_t)B * T * nh * dv;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const int i = (int)(idx % dv) * V;
        int64_t rest = idx / dv;
        const int hh = (int)(rest % nh);
        rest /= nh;
        const int t = (int)(rest % T);
        const int b = (int)(rest / T);
        const bf16* x = in + (((int64_t)b * T + t) * nh + hh) * d + i;
        bf16* y = out + (((int64_t)b * nh + hh) * T + t) * d + i;
        *reinterpret_cast<W*>(y) = *reinterpret_cast<const W*>(x);
    }
}

// fp32 bhtd -> bf16 bthd, V elements per step.
template <int V>
__global__ void __launch_bounds__(kThreads) bhtd_to_bthd_kernel(bf16* __restrict__ out, const float* __restrict__ in,
                                                                int B, int T, int nh, int d, int64_t ldo) {
    const int dv = d / V;
    const int64_t total = (int64_t)B * nh * T * dv;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const int i = (int)(idx % dv) * V;
        int64_t rest = idx / dv;
        const int t = (int)(rest % T);
        rest /= T;
        const int hh = (int)(rest % nh);
        const int b = (int)(rest / nh);
        float f[V];
        load_f32<V>(in + (((int64_t)b * nh + hh) * T + t) * d + i, f);
        store_bf16<V>(out + ((int64_t)b * T + t) * ldo + (int64_t)hh * d + i, f);
    }
}

// Widest V in {4, 2, 1} with n % V == 0 and every pointer aligned to V elements of its type.
int pick_vec4(int n, const void* b16a, const void* b16b, const float* f1, const float* f2, const float* f3) {
    for (int v = 4; v > 1; v /= 2) {
        if (n % v) continue;
        const uintptr_t a16 = uintptr_t(2 * v), a32 = uintptr_t(4 * v);
        if (aligned(b16a, a16) && aligned(b16b, a16) && aligned(f1, a32) && (!f2 || aligned(f2, a32)) &&
            (!f3 || aligned(f3, a32)))
            return v;
    }
    return 1;
}

// n reduced so that a vector width dividing it (at most 4) also divides the row stride ldo.
int with_ld(int n, int64_t ldo) { return std::gcd(n, ldo % 4 == 0 ? 4 : (ldo % 2 == 0 ? 2 : 1)); }

}  // namespace

void rope_forward_to_bhtd(bf16* out, const bf16* in, const float* cos, const float* sin, int B, int T, int nh, int d,
                          cudaStream_t s, const int32_t* pos) {
    const int64_t pairs = (int64_t)B * T * nh * (d / 2);
    if (pairs <= 0) return;
    HQ_CHECK(d % 2 == 0, "E_INTERNAL", "rope_forward_to_bhtd: odd head_dim " << d, Where{},
             "rotary embeddings need an even head_dim; this is a bug in the caller");
    const int v = pick_vec4(d / 2, out, in, cos, sin, nullptr);
    if (v == 4)
        rope_forward_kernel<4><<<grid_for(pairs / 4, kThreads), kThreads, 0, s>>>(out, in, cos, sin, pos, B, T, nh, d);
    else if (v == 2)
        rope_forward_kernel<2><<<grid_for(pairs / 2, kThreads), kThreads, 0, s>>>(out, in, cos, sin, pos, B, T, nh, d);
    else
        rope_forward_kernel<1><<<grid_for(pairs, kThreads), kThreads, 0, s>>>(out, in, cos, sin, pos, B, T, nh, d);
    HQ_CUDA_LAUNCH("rope_forward_to_bhtd");
}

void rope_backward_from_bhtd(bf16* dx, const float* dy, const float* cos, const float* sin, int B, int T, int nh,
                             int d, cudaStream_t s, int64_t ldo, const int32_t* pos) {
    const int64_t pairs = (int64_t)B * T * nh * (d / 2);
    if (pairs <= 0) return;
    HQ_CHECK(d % 2 == 0, "E_INTERNAL", "rope_backward_from_bhtd: odd head_dim " << d, Where{},
             "rotary embeddings need an even head_dim; this is a bug in the caller");
    if (ldo == 0) ldo = (int64_t)nh * d;
    HQ_ASSERT(ldo >= (int64_t)nh * d);
    // Each output row starts ldo elements after the last: V must divide ldo too for aligned vector stores.
    const int v = pick_vec4(with_ld(d / 2, ldo), dx, dx, dy, cos, sin);
    if (v == 4)
        rope_backward_kernel<4><<<grid_for(pairs / 4, kThreads), kThreads, 0, s>>>(dx, dy, cos, sin, pos, B, T, nh, d, ldo);
    else if (v == 2)
        rope_backward_kernel<2><<<grid_for(pairs / 2, kThreads), kThreads, 0, s>>>(dx, dy, cos, sin, pos, B, T, nh, d, ldo);
    else
        rope_backward_kernel<1><<<grid_for(pairs, kThreads), kThreads, 0, s>>>(dx, dy, cos, sin, pos, B, T, nh, d, ldo);
    HQ_CUDA_LAUNCH("rope_backward_from_bhtd");
}

void bthd_to_bhtd(bf16* out, const bf16* in, int B, int T, int nh, int d, cudaStream_t s) {
    const int64_t n = (int64_t)B * T * nh * d;
    if (n <= 0) return;
    int v = 8;
    while (v > 1 && (d % v != 0 || !aligned(out, uintptr_t(2 * v)) || !aligned(in, uintptr_t(2 * v)))) v /= 2;
    if (v == 8)
        bthd_to_bhtd_kernel<8><<<grid_for(n / 8, kThreads), kThreads, 0, s>>>(out, in, B, T, nh, d);
    else if (v == 4)
        bthd_to_bhtd_kernel<4><<<grid_for(n / 4, kThreads), kThreads, 0, s>>>(out, in, B, T, nh, d);
    else if (v == 2)
        bthd_to_bhtd_kernel<2><<<grid_for(n / 2, kThreads), kThreads, 0, s>>>(out, in, B, T, nh, d);
    else
        bthd_to_bhtd_kernel<1><<<grid_for(n, kThreads), kThreads, 0, s>>>(out, in, B, T, nh, d);
    HQ_CUDA_LAUNCH("bthd_to_bhtd");
}

void bhtd_to_bthd_f32_to_bf16(bf16* out, const float* in, int B, int T, int nh, int d, cudaStream_t s, int64_t ldo) {
    const int64_t n = (int64_t)B * T * nh * d;
    if (n <= 0) return;
    if (ldo == 0) ldo = (int64_t)nh * d;
    HQ_ASSERT(ldo >= (int64_t)nh * d);
    const int v = pick_vec4(with_ld(d, ldo), out, out, in, nullptr, nullptr);
    if (v == 4)
        bhtd_to_bthd_kernel<4><<<grid_for(n / 4, kThreads), kThreads, 0, s>>>(out, in, B, T, nh, d, ldo);
    else if (v == 2)
        bhtd_to_bthd_kernel<2><<<grid_for(n / 2, kThreads), kThreads, 0, s>>>(out, in, B, T, nh, d, ldo);
    else
        bhtd_to_bthd_kernel<1><<<grid_for(n, kThreads), kThreads, 0, s>>>(out, in, B, T, nh, d, ldo);
    HQ_CUDA_LAUNCH("bhtd_to_bthd_f32_to_bf16");
}

}  // namespace hq::cuda
