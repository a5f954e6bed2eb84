// family_ops.cu — the small element-wise kernels of the issue-15 families' extra layers: Qwen2's q/k/v biases,
// Gemma-2/3's post-norm residual adds, the fp32 RoPE backward in front of Qwen3/Gemma-3's q/k norm backward, a
// strided fp32 -> bf16 copy into a column block, and Gemma-2's final logit soft-capping.
//
// Written plainly (one element per thread step, grid-stride loops, explicit _rn arithmetic, no FMA contraction) so
// that each one is obviously its CPU reference in native/src:
//   add_bias_rows ............ add_bias in model.cpp             y[r, i] += bias[i]
//   add_f32 .................. the residual loops of layer_forward  out[i] = a[i] + b[i]
//   rope_backward_from_bhtd_f32  rope_backward in rope.cpp       dx[i] = dy[i]·cos + dy[i+h]·sin ;
//                                                                dx[i+h] = dy[i+h]·cos − dy[i]·sin
//   softcap_inplace .......... softcap_logits in loss.cpp        x = tanh(x · (1/cap)) · cap
#include <cstdint>

#include "cuda_util.cuh"
#include "kernels.h"

namespace hq::cuda {
namespace {

constexpr int kThreads = 256;

using util::grid_for;

__global__ void add_bias_rows_kernel(float* __restrict__ y, const float* __restrict__ bias, int64_t N, int n) {
    const int64_t total = N * n;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += stride)
        y[k] = __fadd_rn(y[k], bias[k % n]);
}

__global__ void add_f32_kernel(float* out, const float* a, const float* b, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += stride)
        out[k] = __fadd_rn(a[k], b[k]);
}

__global__ void f32_to_bf16_rows_kernel(bf16* __restrict__ out, int64_t ldo, const float* __restrict__ in,
                                        int64_t rows, int cols) {
    const int64_t total = rows * cols;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += stride) {
        const int64_t r = k / cols;
        const int c = (int)(k % cols);
        out[r * ldo + c] = __float2bfloat16_rn(in[k]);
    }
}

// One thread step per rotation pair (b, t, head, i < d/2).
__global__ void rope_backward_f32_kernel(float* __restrict__ dx, const float* __restrict__ dy,
                                         const float* __restrict__ cos, const float* __restrict__ sin,
                                         const int32_t* __restrict__ pos, int B, int T, int nh, int d) {
    const int h = d / 2;
    const int64_t total = (int64_t)B * T * nh * h;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const int i = (int)(idx % h);
        int64_t rest = idx / h;
        const int hh = (int)(rest % nh);
        rest /= nh;
        const int t = (int)(rest % T);
        const int b = (int)(rest / T);
        const float* g = dy + (((int64_t)b * nh + hh) * T + t) * d;   // [d] of bhtd
        float* o = dx + (((int64_t)b * T + t) * nh + hh) * d;         // [d] of bthd
        const int64_t tp = pos ? pos[(int64_t)b * T + t] : t;   // packed rows: the position within the document
        const float c = cos[tp * h + i], s = sin[tp * h + i];
        const float g1 = g[i], g2 = g[i + h];
        o[i] = __fadd_rn(__fmul_rn(g1, c), __fmul_rn(g2, s));
        o[i + h] = __fsub_rn(__fmul_rn(g2, c), __fmul_rn(g1, s));
    }
}

__global__ void softcap_kernel(float* x, int64_t n, float cap, float inv_cap) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += stride)
        x[k] = __fmul_rn(tanhf(__fmul_rn(x[k], inv_cap)), cap);
}

}  // namespace

void add_bias_rows(float* y, const float* bias, int64_t N, int n, cudaStream_t s) {
    if (N <= 0 || n <= 0) return;
    add_bias_rows_kernel<<<grid_for(N * n, kThreads), kThreads, 0, s>>>(y, bias, N, n);
    HQ_CUDA_LAUNCH("add_bias_rows");
}

void add_f32(float* out, const float* a, const float* b, int64_t n, cudaStream_t s) {
    if (n <= 0) return;
    add_f32_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(out, a, b, n);
    HQ_CUDA_LAUNCH("add_f32");
}

void f32_to_bf16_rows(bf16* out, int64_t ldo, const float* in, int64_t rows, int cols, cudaStream_t s) {
    if (rows <= 0 || cols <= 0) return;
    HQ_ASSERT(ldo >= cols);
    f32_to_bf16_rows_kernel<<<grid_for(rows * cols, kThreads), kThreads, 0, s>>>(out, ldo, in, rows, cols);
    HQ_CUDA_LAUNCH("f32_to_bf16_rows");
}

void rope_backward_from_bhtd_f32(float* dx, const float* dy, const float* cos, const float* sin, int B, int T, int nh,
                                 int d, cudaStream_t s, const int32_t* pos) {
    const int64_t pairs = (int64_t)B * T * nh * (d / 2);
    if (pairs <= 0) return;
    HQ_CHECK(d % 2 == 0, "E_INTERNAL", "rope_backward_from_bhtd_f32: odd head_dim " << d, Where{},
             "rotary embeddings need an even head_dim; this is a bug in the caller");
    rope_backward_f32_kernel<<<grid_for(pairs, kThreads), kThreads, 0, s>>>(dx, dy, cos, sin, pos, B, T, nh, d);
    HQ_CUDA_LAUNCH("rope_backward_from_bhtd_f32");
}

void softcap_inplace(float* x, int64_t n, float cap, cudaStream_t s) {
    if (n <= 0 || !(cap > 0.0f)) return;
    softcap_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(x, n, cap, 1.0f / cap);
    HQ_CUDA_LAUNCH("softcap_inplace");
}

}  // namespace hq::cuda
