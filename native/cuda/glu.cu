// glu.cu — the gated-MLP activation between the gate/up and down projections (SwiGLU / tanh-GeGLU).
//
//   forward:  h = act(gate) ⊙ up                              gate, up, h [n] bf16 (fp32 math)
//   backward: dup = dh ⊙ act(gate),  dgate = dh ⊙ up ⊙ act'(gate)     dh [n] fp32 -> dgate, dup [n] bf16
//   act 0 = SiLU:      act(g) = g / (1 + exp(−g)),  act'(g) = σ(g)·(1 + g·(1 − σ(g)))
//   act 1 = GeluTanh:  act(g) = 0.5·g·(1 + tanh(u)),  u = √(2/π)·(g + 0.044715·g³)
//                      act'(g) = 0.5·(1 + t) + 0.5·g·(1 − t²)·√(2/π)·(1 + 3·0.044715·g²),  t = tanh(u)
// Reference: glu_forward / glu_backward in native/src/mlp.cpp, with the same operation order (explicit _rn
// intrinsics; expf/tanhf are the CUDA full-precision versions, within 2 ulp of the host's).
// 4 elements per thread step (8-byte bf16 / 16-byte fp32 accesses) when the pointers allow, then the tail.
#include <cstdint>

#include "cuda_util.cuh"
#include "kernels.h"

namespace hq::cuda {
namespace {

constexpr int kThreads = 256;
constexpr float kGeluBeta = 0.7978845608028654f;   // √(2/π)
constexpr float kGeluKappa = 0.044715f;
constexpr float kGeluKappa3 = 3.0f * kGeluKappa;   // as the CPU's `3.0f * kGeluKappa * g * g` groups it

using util::grid_for;
using util::grid_for_vec4;
using util::grid_stride_vec4;

using util::aligned;

using util::pack_bf16x2;
__device__ __forceinline__ void unpack4(uint2 u, float (&f)[4]) {
    f[0] = __uint_as_float(u.x << 16);
    f[1] = __uint_as_float(u.x & 0xFFFF0000u);
    f[2] = __uint_as_float(u.y << 16);
    f[3] = __uint_as_float(u.y & 0xFFFF0000u);
}

__device__ __forceinline__ float gelu_inner(float g) {   // √(2/π)·(g + κ·g·g·g)
    return __fmul_rn(kGeluBeta, __fadd_rn(g, __fmul_rn(__fmul_rn(__fmul_rn(kGeluKappa, g), g), g)));
}

template <int ACT>
__device__ __forceinline__ float glu_fwd(float g, float u) {
    if (ACT == 0) return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
    const float t = tanhf(gelu_inner(g));
    return __fmul_rn(__fmul_rn(__fmul_rn(0.5f, g), __fadd_rn(1.0f, t)), u);
}

// dgate, dup of one element.
template <int ACT>
__device__ __forceinline__ void glu_bwd(float dh, float g, float u, float& dgate, float& dup) {
    float a, da;
    if (ACT == 0) {
        const float sg = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-g)));
        a = __fmul_rn(g, sg);
        da = __fmul_rn(sg, __fadd_rn(1.0f, __fmul_rn(g, __fsub_rn(1.0f, sg))));
    } else {
        const float t = tanhf(gelu_inner(g));
        a = __fmul_rn(__fmul_rn(0.5f, g), __fadd_rn(1.0f, t));
        const float left = __fmul_rn(0.5f, __fadd_rn(1.0f, t));
        const float half_g_sech2 = __fmul_rn(__fmul_rn(0.5f, g), __fsub_rn(1.0f, __fmul_rn(t, t)));
        const float right = __fmul_rn(__fmul_rn(half_g_sech2, kGeluBeta),
                                      __fadd_rn(1.0f, __fmul_rn(__fmul_rn(kGeluKappa3, g), g)));
        da = __fadd_rn(left, right);
    }
    dup = __fmul_rn(dh, a);
    dgate = __fmul_rn(__fmul_rn(dh, u), da);
}

template <int ACT>
__global__ void __launch_bounds__(kThreads) glu_forward_kernel(bf16* __restrict__ h, const bf16* __restrict__ gate,
                                                               const bf16* __restrict__ up, int64_t n, bool vec) {
    grid_stride_vec4(
        n, vec,
        [&](int64_t k) {
            float g[4], u[4];
            unpack4(reinterpret_cast<const uint2*>(gate)[k], g);
            unpack4(reinterpret_cast<const uint2*>(up)[k], u);
            const uint32_t lo = pack_bf16x2(glu_fwd<ACT>(g[0], u[0]), glu_fwd<ACT>(g[1], u[1]));
            const uint32_t hi = pack_bf16x2(glu_fwd<ACT>(g[2], u[2]), glu_fwd<ACT>(g[3], u[3]));
            reinterpret_cast<uint2*>(h)[k] = make_uint2(lo, hi);
        },
        [&](int64_t k) {
            h[k] = __float2bfloat16_rn(glu_fwd<ACT>(__bfloat162float(gate[k]), __bfloat162float(up[k])));
        });
}

template <int ACT>
__global__ void __launch_bounds__(kThreads) glu_backward_kernel(bf16* __restrict__ dgate, bf16* __restrict__ dup,
                                                                const float* __restrict__ dh,
                                                                const bf16* __restrict__ gate,
                                                                const bf16* __restrict__ up, int64_t n, bool vec,
                                                                int64_t cols, int64_t ldo) {
    // Element k of the [n / cols, cols] inputs goes to (k / cols)·ldo + k % cols of the outputs.
    grid_stride_vec4(
        n, vec,
        [&](int64_t k) {   // cols and ldo are multiples of 4: a 4-step never crosses a row
            const int64_t r = (4 * k) / cols, o = (r * ldo + (4 * k - r * cols)) / 4;
            float g[4], u[4], dg[4], du[4];
            unpack4(reinterpret_cast<const uint2*>(gate)[k], g);
            unpack4(reinterpret_cast<const uint2*>(up)[k], u);
            const float4 d = reinterpret_cast<const float4*>(dh)[k];
            glu_bwd<ACT>(d.x, g[0], u[0], dg[0], du[0]);
            glu_bwd<ACT>(d.y, g[1], u[1], dg[1], du[1]);
            glu_bwd<ACT>(d.z, g[2], u[2], dg[2], du[2]);
            glu_bwd<ACT>(d.w, g[3], u[3], dg[3], du[3]);
            reinterpret_cast<uint2*>(dgate)[o] = make_uint2(pack_bf16x2(dg[0], dg[1]), pack_bf16x2(dg[2], dg[3]));
            reinterpret_cast<uint2*>(dup)[o] = make_uint2(pack_bf16x2(du[0], du[1]), pack_bf16x2(du[2], du[3]));
        },
        [&](int64_t k) {
            float dg, du;
            glu_bwd<ACT>(dh[k], __bfloat162float(gate[k]), __bfloat162float(up[k]), dg, du);
            const int64_t o = (k / cols) * ldo + k % cols;
            dgate[o] = __float2bfloat16_rn(dg);
            dup[o] = __float2bfloat16_rn(du);
        });
}

void check_act(int act, const char* name) {
    HQ_CHECK(act == 0 || act == 1, "E_INTERNAL", name << ": unknown activation " << act << " (0 = SiLU, 1 = tanh-GELU)",
             Where{}, "this is a bug in the caller");
}

}  // namespace

void glu_forward(bf16* h, const bf16* gate, const bf16* up, int64_t n, int act, cudaStream_t s) {
    if (n <= 0) return;
    check_act(act, "glu_forward");
    const bool vec = aligned(h, 8) && aligned(gate, 8) && aligned(up, 8);
    const int grid = grid_for_vec4(n, vec, kThreads);
    if (act == 0)
        glu_forward_kernel<0><<<grid, kThreads, 0, s>>>(h, gate, up, n, vec);
    else
        glu_forward_kernel<1><<<grid, kThreads, 0, s>>>(h, gate, up, n, vec);
    HQ_CUDA_LAUNCH("glu_forward");
}

void glu_backward(bf16* dgate, bf16* dup, const float* dh, const bf16* gate, const bf16* up, int64_t n, int act,
                  cudaStream_t s, int64_t cols, int64_t ldo) {
    if (n <= 0) return;
    check_act(act, "glu_backward");
    if (cols == 0) cols = ldo = n;
    HQ_ASSERT(n % cols == 0 && ldo >= cols);
    const bool vec = cols % 4 == 0 && ldo % 4 == 0 && aligned(dgate, 8) && aligned(dup, 8) && aligned(dh, 16) &&
                     aligned(gate, 8) && aligned(up, 8);
    const int grid = grid_for_vec4(n, vec, kThreads);
    if (act == 0)
        glu_backward_kernel<0><<<grid, kThreads, 0, s>>>(dgate, dup, dh, gate, up, n, vec, cols, ldo);
    else
        glu_backward_kernel<1><<<grid, kThreads, 0, s>>>(dgate, dup, dh, gate, up, n, vec, cols, ldo);
    HQ_CUDA_LAUNCH("glu_backward");
}

}  // namespace hq::cuda
