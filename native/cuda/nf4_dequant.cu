// nf4_dequant.cu — NF4 (double-quant) weight -> bf16, the GEMM input of a frozen base projection.
//
//   scale[b] = dyn8[qabsmax[b]] * absmax2[b / nested] + offset   (double quant; two fp32 roundings, no FMA)
//            = absmax[b]                                         (no double quant)
//   w[e]     = nf4[code(e)] * scale[e / blocksize]                (one fp32 product), then rounded to bf16 (RNE)
// code(e) is the high nibble of packed[e / 2] for even e, the low nibble for odd e. Bit-exact with nf4_dequantize
// (native/src/nf4.cpp) followed by hq::f32_to_bf16.
// The tables (kNF4Code, dynamic_map_signed8) live in constant memory and are copied to shared memory per block:
// the codes of a warp are data-dependent, and constant memory serialises divergent addresses.
// Each thread handles 16 bytes of packed codes (32 weights) per tile, as four 4-byte words spaced blockDim apart, so
// every warp instruction is fully coalesced: 128 contiguous bytes of codes in, 512 contiguous bytes of bf16 out
// (one 16-byte store of 8 weights per word). A word's 8 weights share one quantization block (blocksize is a
// power of two >= 32) and so one scale.
#include <cstdint>
#include <mutex>

#include "cuda_util.cuh"
#include "kernels.h"
#include "nf4.h"

namespace hq::cuda {
namespace {

__constant__ float c_nf4[16];
__constant__ float c_dyn8[256];

constexpr int kThreads = 256;

using util::grid_for;

int log2_exact(int v) {   // -1 unless v is a power of two
    if (v <= 0 || (v & (v - 1)) != 0) return -1;
    int r = 0;
    while ((1 << r) < v) r++;
    return r;
}

struct Args {
    const uint8_t* packed;
    const uint8_t* qabsmax;
    const float* absmax2;
    const float* absmax;
    float offset;
    int64_t n;
    int bs_shift;       // log2(blocksize)
    int nested_shift;   // log2(nested_blocksize)
};

using util::pack_bf16x2;

// The two weights of one packed byte as a bf16 pair: high nibble first (lower address).
__device__ __forceinline__ uint32_t byte_to_bf16x2(uint32_t byte, const float* lut, float scale) {
    return pack_bf16x2(__fmul_rn(lut[byte >> 4], scale), __fmul_rn(lut[byte & 15u], scale));
}

__device__ __forceinline__ uint4 word_to_bf16x8(uint32_t w, const float* lut, float scale) {
    return make_uint4(byte_to_bf16x2(w & 0xFFu, lut, scale), byte_to_bf16x2((w >> 8) & 0xFFu, lut, scale),
                      byte_to_bf16x2((w >> 16) & 0xFFu, lut, scale), byte_to_bf16x2(w >> 24, lut, scale));
}

constexpr int kWordsPerThread = 4;   // 4 words x 4 bytes = 16 bytes of codes = 32 weights per thread and tile

// Word w = packed bytes [4w, 4w + 4) = weights [8w, 8w + 8). vec: packed is 4-byte and out 16-byte aligned, so a
// full word is one 4-byte load and one 16-byte store; the partial last word (n % 8 != 0) and the unaligned case go
// element by element.
template <bool DQ>
__global__ void __launch_bounds__(kThreads) nf4_dequant_kernel(bf16* __restrict__ out, Args a, bool vec) {
    __shared__ float s_nf4[16];
    __shared__ float s_dyn8[DQ ? 256 : 1];
    for (int i = threadIdx.x; i < 16; i += blockDim.x) s_nf4[i] = c_nf4[i];
    if (DQ)
        for (int i = threadIdx.x; i < 256; i += blockDim.x) s_dyn8[i] = c_dyn8[i];
    __syncthreads();

    const int64_t nwords = (a.n + 7) / 8;
    const int64_t tile = (int64_t)kWordsPerThread * blockDim.x;
    for (int64_t base = (int64_t)blockIdx.x * tile; base < nwords; base += (int64_t)gridDim.x * tile) {
        uint32_t codes[kWordsPerThread];
#pragma unroll
        for (int k = 0; k < kWordsPerThread; k++) {   // issue the loads first (independent, coalesced)
            const int64_t w = base + (int64_t)k * blockDim.x + threadIdx.x;
            codes[k] = vec && 8 * w + 8 <= a.n ? __ldg(reinterpret_cast<const uint32_t*>(a.packed) + w) : 0u;
        }
#pragma unroll
        for (int k = 0; k < kWordsPerThread; k++) {
            const int64_t w = base + (int64_t)k * blockDim.x + threadIdx.x;
            if (w >= nwords) break;
            const int64_t e0 = 8 * w;
            const int64_t b = e0 >> a.bs_shift;
            float scale;
            if (DQ)
                scale = __fadd_rn(__fmul_rn(s_dyn8[a.qabsmax[b]], a.absmax2[b >> a.nested_shift]), a.offset);
            else
                scale = a.absmax[b];
            if (vec && e0 + 8 <= a.n) {
                reinterpret_cast<uint4*>(out)[w] = word_to_bf16x8(codes[k], s_nf4, scale);
            } else {
                const int64_t e1 = e0 + 8 < a.n ? e0 + 8 : a.n;
                for (int64_t e = e0; e < e1; e++) {
                    const uint32_t byte = a.packed[e >> 1];
                    const uint32_t code = (e & 1) ? (byte & 15u) : (byte >> 4);
                    out[e] = __float2bfloat16_rn(__fmul_rn(s_nf4[code], scale));
                }
            }
        }
    }
}

using util::aligned;

}  // namespace

void nf4_init_tables() {
    // Idempotent; a failed upload throws and leaves the flag unset, so a later call retries. The tables are per
    // device: a process that switches devices must call this once per device (the trainer uses one).
    static std::once_flag once;
    std::call_once(once, [] {
        HQ_CUDA(cudaMemcpyToSymbol(c_nf4, kNF4Code, sizeof(float) * 16));
        HQ_CUDA(cudaMemcpyToSymbol(c_dyn8, dynamic_map_signed8().data(), sizeof(float) * 256));
    });
}

void nf4_dequantize_bf16(bf16* out, const NF4View& t, cudaStream_t s) {
    if (t.n <= 0) return;
    const int bs_shift = log2_exact(t.blocksize);
    const int nested_shift = log2_exact(t.nested_blocksize);
    HQ_CHECK(bs_shift >= 5 && bs_shift <= 12 && (!t.double_quant || nested_shift >= 0), "E_INTERNAL",
             "nf4_dequantize_bf16: blocksize " << t.blocksize << " / nested_blocksize " << t.nested_blocksize
                                              << " not powers of two (blocksize in [32, 4096])",
             Where{}, "this is a bug in the NF4 upload; the CPU quantizer only produces such sizes");
    HQ_CHECK(t.packed && (t.double_quant ? (t.qabsmax && t.absmax2) : (t.absmax != nullptr)), "E_INTERNAL",
             "nf4_dequantize_bf16: missing device storage (packed/qabsmax/absmax2/absmax)", Where{},
             "this is a bug in the NF4 upload");
    nf4_init_tables();   // no-op after the first call
    Args a{t.packed, t.qabsmax, t.absmax2, t.absmax, t.offset, t.n, bs_shift, nested_shift < 0 ? 0 : nested_shift};
    const bool vec = aligned(t.packed, 4) && aligned(out, 16);
    // One thread per 32 weights, at most 8192 blocks (grid-stride).
    const int grid = grid_for((t.n + 31) / 32, kThreads);
    if (t.double_quant)
        nf4_dequant_kernel<true><<<grid, kThreads, 0, s>>>(out, a, vec);
    else
        nf4_dequant_kernel<false><<<grid, kThreads, 0, s>>>(out, a, vec);
    HQ_CUDA_LAUNCH("nf4_dequantize_bf16");
}

}  // namespace hq::cuda
