// gpu_attention.cu — causal GQA attention as cuBLASLt batched GEMMs around the causal softmax kernels. See gpu_attention.h.
//
// GQA without copies: in the bhtd layout the G = H/KV query heads of kv head (b, kv) are contiguous, so the group is
// one [G·T, d] block q_g, and its score rows are one [G·T, T] block S_g (row (j·T + i) = head kv·G + j, query i).
// Every product is then one strided batch over the B·KV groups:
//   forward   S_g = q_g·k_gᵀ             [G·T, T]   K = d
//             O_g = P_g·v_g              [G·T, d]   K = T   (bf16, bhtd; then transposed to out [B, T, H, d])
//   backward  dP_g = dO_g·v_gᵀ           [G·T, T]   K = d
//             dq_g = dS_g·k_g            [G·T, d]   K = T
//             dk_g = dS_gᵀ·q_g           [T, d]     K = G·T  (the sum over the group's heads is the K sum)
//             dv_g = P_gᵀ·dO_g           [T, d]     K = G·T
// All products accumulate in fp32; the GEMM inputs are bf16 (q, k, v, P, dS, dO). S and dP cover the full T×T
// (the softmax kernels mask j > i), which costs up to 2× the causal FLOPs of these products.
// The groups are processed in chunks (AttnDims::chunk) whose fp32 scores fit a budget (HQ_ATTN_CHUNK_MB, default
// 256 MiB), which bounds the workspace at long sequences. Small chunks that keep S, P, dP and dS in the L2 cache were
// measured slower on the H200 (LLaMA-2-7B, 4 × 512: 0.1418 s/step at 16 MiB against 0.1349 s in one chunk): the
// launches and the smaller batched GEMMs cost more than the HBM traffic saved.
#include "gpu_attention.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "cuda_util.cuh"
#include "kernels.h"

namespace hq::cuda {

namespace {

constexpr int kThreads = 256;
constexpr size_t kAlignFloats = 64;   // 256-byte alignment of each workspace region (cuBLASLt's preferred)

size_t align_up(size_t n) { return (n + kAlignFloats - 1) / kAlignFloats * kAlignFloats; }

// Workspace regions (offsets in floats), for one chunk of C kv groups (rows = C·G·T score rows): S / dP fp32
// [rows, T], dS bf16 [rows, T], P bf16 [rows, T] (when the caller keeps none), and O / dO bf16 [B, H, T, d] whole
// (the forward's O and the backward's dO are never live at the same time).
struct WorkLayout {
    size_t s = 0, ds = 0, p = 0, o = 0, total = 0;
};

int64_t chunk_groups(const AttnDims& a) {
    const int64_t groups = int64_t(a.B) * a.KV, G = a.H / a.KV;
    if (a.chunk > 0) return std::min<int64_t>(a.chunk, groups);
    static const int64_t budget = [] {
        const char* e = std::getenv("HQ_ATTN_CHUNK_MB");
        const long mb = e && *e ? std::strtol(e, nullptr, 10) : 256;
        return int64_t(mb > 0 ? mb : 1 << 20) << 20;   // <= 0: one chunk (no chunking)
    }();
    const int64_t per_group = G * a.T * a.T * int64_t(sizeof(float));
    return std::clamp<int64_t>(budget / per_group, 1, groups);
}

WorkLayout work_layout(const AttnDims& a) {
    const int64_t G = a.H / a.KV;
    const size_t nS = size_t(chunk_groups(a)) * G * a.T * a.T;
    const size_t nO = size_t(a.B) * a.H * a.T * a.d;
    WorkLayout w;
    w.s = 0;
    w.ds = align_up(nS);
    w.p = w.ds + align_up((nS + 1) / 2);
    w.o = w.p + align_up((nS + 1) / 2);
    w.total = w.o + align_up((nO + 1) / 2);
    return w;
}

void check_dims(const AttnDims& a) {
    HQ_ASSERT(a.B > 0 && a.T > 0 && a.H > 0 && a.KV > 0 && a.d > 0);
    HQ_ASSERT(a.H % a.KV == 0);
}

// out [B, T, H, d] = in [B, H, T, d] (bf16), V elements per thread (V = 8: 16-byte vectors).
template <int V>
__global__ void bhtd_to_bthd_bf16_kernel(bf16* __restrict__ out, const bf16* __restrict__ in, int T, int H, int d,
                                         int64_t nvec) {
    struct alignas(V * sizeof(bf16)) Vec {
        bf16 x[V];
    };
    const int dv = d / V;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < nvec; i += int64_t(gridDim.x) * blockDim.x) {
        // i walks the output in order: ((b·T + t)·H + h)·dv + c
        const int c = int(i % dv);
        int64_t r = i / dv;
        const int h = int(r % H);
        r /= H;
        const int t = int(r % T);
        const int64_t b = r / T;
        const int64_t src = ((b * H + h) * T + t) * dv + c;
        reinterpret_cast<Vec*>(out)[i] = reinterpret_cast<const Vec*>(in)[src];
    }
}

// out [B, H, T, d] bf16 = in [B, T, H, d] fp32, V elements per thread (V = 4: float4 loads).
template <int V>
__global__ void bthd_f32_to_bhtd_bf16_kernel(bf16* __restrict__ out, const float* __restrict__ in, int T, int H,
                                             int d, int64_t nvec) {
    const int dv = d / V;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < nvec; i += int64_t(gridDim.x) * blockDim.x) {
        // i walks the output in order: ((b·H + h)·T + t)·dv + c
        const int c = int(i % dv);
        int64_t r = i / dv;
        const int t = int(r % T);
        r /= T;
        const int h = int(r % H);
        const int64_t b = r / H;
        const int64_t src = ((b * T + t) * H + h) * dv + c;
        if constexpr (V == 4) {
            const float4 f = reinterpret_cast<const float4*>(in)[src];
            __nv_bfloat162* o2 = reinterpret_cast<__nv_bfloat162*>(out) + 2 * i;
            o2[0] = __floats2bfloat162_rn(f.x, f.y);
            o2[1] = __floats2bfloat162_rn(f.z, f.w);
        } else {
            out[i] = __float2bfloat16_rn(in[src]);
        }
    }
}

// One thread per element (no grid-stride loop): up to 2^20 blocks.
int grid_for(int64_t n) { return util::grid_for(n, kThreads, int64_t(1) << 20); }

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

AttnKernel attention_kernel(const AttnDims& a) {
    static const std::string forced = [] {
        const char* e = std::getenv("HQ_ATTN");
        return std::string(e ? e : "");
    }();
    // Flash wherever head_dim allows it (test_cuda_gemm_attention proves it against the CPU reference on the GPU);
    // HQ_ATTN=gemm keeps the cuBLASLt kernel, for comparison.
    AttnKernel k = forced != "gemm" && flash_supported(a) ? AttnKernel::Flash : AttnKernel::Gemm;
    if (a.kernel != AttnKernel::Auto) k = a.kernel;
    HQ_CHECK(k == AttnKernel::Gemm || flash_supported(a), "E_CONFIG",
             "the flash attention kernel supports head_dim 16, 32, 64, 96, 128 and 256, not " << a.d, Where{},
             "unset HQ_ATTN");
    const bool needs_flash = a.window > 0 || a.softcap > 0.0f || a.seg != nullptr;
    if (k == AttnKernel::Gemm && needs_flash) {
        const char* what = a.window > 0 ? "the sliding window" : a.softcap > 0.0f ? "attention soft-capping"
                                                                                  : "packing (a document mask)";
        HQ_CHECK(false, "E_CONFIG",
                 what << " on CUDA needs the flash attention kernel, which supports head_dim 16, 32, 64, 96, 128 and "
                      << "256 (this model: " << a.d << ")" << (forced == "gemm" ? "; HQ_ATTN=gemm is set" : ""),
                 Where{}, forced == "gemm" ? "unset HQ_ATTN" : "train this model with hardware.device: cpu");
    }
    return k;
}

const char* attention_kernel_name(AttnKernel k) {
    return k == AttnKernel::Flash ? "flash" : k == AttnKernel::Gemm ? "gemm" : "auto";
}

size_t attention_workspace_floats(const AttnDims& a) {
    check_dims(a);
    if (attention_kernel(a) == AttnKernel::Flash) return flash_workspace_floats(a);
    return work_layout(a).total;
}

void attention_forward(Gemm& g, bf16* out, float* lse, bf16* P, const bf16* q, const bf16* k, const bf16* v,
                       float* work, const AttnDims& a) {
    check_dims(a);
    if (attention_kernel(a) == AttnKernel::Flash) {
        HQ_ASSERT(P == nullptr && lse != nullptr);
        flash_attention_forward(out, lse, q, k, v, a, g.stream());
        return;
    }
    const cudaStream_t s = g.stream();
    const int64_t B = a.B, T = a.T, H = a.H, KV = a.KV, d = a.d, G = H / KV;
    const WorkLayout w = work_layout(a);
    float* S = work + w.s;                                   // [chunk·G·T, T] fp32
    bf16* O = reinterpret_cast<bf16*>(work + w.o);           // [B, H, T, d] bf16
    const int64_t groups = B * KV, chunk = chunk_groups(a);
    for (int64_t g0 = 0; g0 < groups; g0 += chunk) {
        const int n = int(std::min(chunk, groups - g0));
        bf16* Pc = P ? P + g0 * G * T * T : reinterpret_cast<bf16*>(work + w.p);
        // S_g [G·T, T] = q_g [G·T, d] · k_gᵀ
        g.run(false, true, G * T, T, d, 1.0f, q + g0 * G * T * d, d, k + g0 * T * d, d, 0.0f, S, DType::F32, T, n,
              G * T * d, T * d, G * T * T);
        // P = causal softmax(scale · S)
        causal_softmax_forward(Pc, S, n * G * T, a.T, a.scale, s);
        // O_g [G·T, d] = P_g [G·T, T] · v_g [T, d]
        g.run(false, false, G * T, d, T, 1.0f, Pc, T, v + g0 * T * d, d, 0.0f, O + g0 * G * T * d, DType::BF16, d, n,
              G * T * T, T * d, G * T * d);
    }
    // out [B, T, H, d] = O [B, H, T, d]
    const bool vec = d % 8 == 0 && aligned16(out) && aligned16(O);
    const int64_t nvec = B * H * T * d / (vec ? 8 : 1);
    if (vec)
        bhtd_to_bthd_bf16_kernel<8><<<grid_for(nvec), kThreads, 0, s>>>(out, O, a.T, a.H, a.d, nvec);
    else
        bhtd_to_bthd_bf16_kernel<1><<<grid_for(nvec), kThreads, 0, s>>>(out, O, a.T, a.H, a.d, nvec);
    HQ_CUDA_LAUNCH("bhtd_to_bthd_bf16_kernel");
}

void attention_backward(Gemm& g, float* dq, float* dk, float* dv, const float* dout, const bf16* out,
                        const float* lse, const bf16* q, const bf16* k, const bf16* v, const bf16* P, float* work,
                        const AttnDims& a) {
    check_dims(a);
    if (attention_kernel(a) == AttnKernel::Flash) {
        HQ_ASSERT(out != nullptr && lse != nullptr);
        flash_attention_backward(dq, dk, dv, dout, out, lse, q, k, v, work, a, g.stream());
        return;
    }
    const cudaStream_t s = g.stream();
    const int64_t B = a.B, T = a.T, H = a.H, KV = a.KV, d = a.d, G = H / KV;
    const WorkLayout w = work_layout(a);
    float* dP = work + w.s;                                  // [chunk·G·T, T] fp32 (first S when recomputing P)
    bf16* dS = reinterpret_cast<bf16*>(work + w.ds);         // [chunk·G·T, T] bf16
    bf16* dO = reinterpret_cast<bf16*>(work + w.o);          // [B, H, T, d] bf16
    // dO [B, H, T, d] bf16 = dout [B, T, H, d] fp32
    const bool vec = d % 4 == 0 && aligned16(dout) && (reinterpret_cast<uintptr_t>(dO) & 7) == 0;
    const int64_t nvec = B * H * T * d / (vec ? 4 : 1);
    if (vec)
        bthd_f32_to_bhtd_bf16_kernel<4><<<grid_for(nvec), kThreads, 0, s>>>(dO, dout, a.T, a.H, a.d, nvec);
    else
        bthd_f32_to_bhtd_bf16_kernel<1><<<grid_for(nvec), kThreads, 0, s>>>(dO, dout, a.T, a.H, a.d, nvec);
    HQ_CUDA_LAUNCH("bthd_f32_to_bhtd_bf16_kernel");
    const int64_t groups = B * KV, chunk = chunk_groups(a);
    for (int64_t g0 = 0; g0 < groups; g0 += chunk) {
        const int n = int(std::min(chunk, groups - g0));
        const bf16* qc = q + g0 * G * T * d;
        const bf16* kc = k + g0 * T * d;
        const bf16* dOc = dO + g0 * G * T * d;
        const bf16* Pc = P ? P + g0 * G * T * T : reinterpret_cast<bf16*>(work + w.p);
        if (!P) {   // P = causal softmax(scale · q·kᵀ), as the forward computed it
            g.run(false, true, G * T, T, d, 1.0f, qc, d, kc, d, 0.0f, dP, DType::F32, T, n, G * T * d, T * d, G * T * T);
            causal_softmax_forward(reinterpret_cast<bf16*>(work + w.p), dP, n * G * T, a.T, a.scale, s);
        }
        // dP_g [G·T, T] = dO_g [G·T, d] · v_gᵀ
        g.run(false, true, G * T, T, d, 1.0f, dOc, d, v + g0 * T * d, d, 0.0f, dP, DType::F32, T, n, G * T * d, T * d,
              G * T * T);
        // dS = scale · P ⊙ (dP − rowsum(P ⊙ dP))   (gradient w.r.t. the unscaled scores; zero above the diagonal)
        causal_softmax_backward(dS, Pc, dP, n * G * T, a.T, a.scale, s);
        // dq_g [G·T, d] = dS_g [G·T, T] · k_g [T, d]
        g.run(false, false, G * T, d, T, 1.0f, dS, T, kc, d, 0.0f, dq + g0 * G * T * d, DType::F32, d, n, G * T * T,
              T * d, G * T * d);
        // dk_g [T, d] = dS_gᵀ · q_g   (A = dS_g stored [G·T, T]: K = G·T sums the group's heads)
        g.run(true, false, T, d, G * T, 1.0f, dS, T, qc, d, 0.0f, dk + g0 * T * d, DType::F32, d, n, G * T * T,
              G * T * d, T * d);
        // dv_g [T, d] = P_gᵀ · dO_g
        g.run(true, false, T, d, G * T, 1.0f, Pc, T, dOc, d, 0.0f, dv + g0 * T * d, DType::F32, d, n, G * T * T,
              G * T * d, T * d);
    }
}

}  // namespace hq::cuda
