// hlora.h — the hierarchical-LoRA linear: a frozen (NF4 or fp32) base weight plus several LoRA levels of different
// ranks, computed as ONE concatenated-rank product with per-rank-row scales (docs/CONTRACTS.md §4).
//
//   x [N, in], W [out, in] frozen, A_cat [R, in], B_cat [out, R], s [R] (s = alpha_j / r_j on the rows of level j)
//   y [N, out] = x·Wᵀ + ((x·A_catᵀ) ⊙ s)·B_catᵀ                  == Σ_j s_j·(x·A_jᵀ)·B_jᵀ
// Only the first `levels` levels are active (R_a = offset[levels] rank rows); inactive levels get no gradient.
// W is dequantized into a reused workspace buffer once per call (amortised over all N tokens of the batch);
// it is frozen, so the backward gives dx (through W and the adapter) and accumulates dA, dB only.
// Dropout (training): an independent inverted-dropout mask per level on the adapter input x̃_j = x ⊙ m_j / (1−p),
// as PEFT's separate adapters would have; the A product is then done per level, B stays concatenated. Masks come
// from a counter-based generator keyed by (call, module, level), so the backward and a checkpoint recompute
// regenerate them exactly without storing them.
// Init (PEFT reset_lora_parameters): "kaiming" A ~ U(−1/√in, 1/√in) (kaiming_uniform a=√5), "gaussian"
// A_j ~ N(0, (1/r_j)²); B = 0. Each element is a pure function of (seed, module stream, index): reproducible and
// independent of thread count.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "nf4.h"

namespace hq {

// SplitMix64 finaliser: a bijective 64-bit mix.
inline uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}
// Key of a sub-stream (e.g. module index, level) derived from a parent key.
inline uint64_t rng_key(uint64_t parent, uint64_t stream) {
    return mix64(parent ^ mix64(stream + 0x632BE59BD9B4E019ULL));
}
// Counter-based uniform in [0, 1) with 24 random bits: element `ctr` of stream `key`.
inline float rng_uniform(uint64_t key, uint64_t ctr) {
    return (float)(mix64(key + ctr * 0xD1B54A32D192ED03ULL) >> 40) * (1.0f / 16777216.0f);
}

struct HLoraLinear {
    std::string name;               // HF module name, e.g. "model.layers.0.self_attn.q_proj"
    int in = 0, out = 0;
    bool quantized = false;
    NF4Tensor wq;                   // W [out, in] as NF4 (quantized)
    std::vector<float> w;           // W [out, in] fp32 (not quantized)
    // Adapter; R == 0 means the projection is not adapted (plain frozen linear).
    int R = 0;
    std::vector<int> rank;          // [levels] r_j
    std::vector<int> offset;        // [levels + 1] start row of level j in A (col in B); offset[levels] = R
    std::vector<float> scale;       // [R] s_j on every rank row of level j
    float* A = nullptr;             // [R, in]   (model-owned param storage)
    float* B = nullptr;             // [out, R]
    float* dA = nullptr;            // [R, in]   gradient accumulators
    float* dB = nullptr;            // [out, R]
    size_t base_bytes() const;      // resident bytes of W (NF4 or fp32)
};

struct HLoraRun {
    int levels = 0;                 // active levels (1..levels of the module)
    float dropout = 0.0f;           // > 0 only in training
    uint64_t mask_key = 0;          // mask stream of this (call, module); same in forward and backward
};

// Reused scratch of the adapted linears (one per model; calls are sequential).
// Dequantized-weight cache: with cache_slots == 0 every call dequantizes its NF4 weight into `w`. With
// cache_slots = k > 0 the last k dequantized weights are kept (least recently used evicted), keyed by the
// projection and its packed storage; the weights are frozen, so a hit returns exactly the values a fresh
// dequantization would. The model sets k = 7 (one decoder layer) when that fits its budget, so the backward reuses
// the weights its forward (or checkpoint recompute) just dequantized.
struct HLoraWorkspace {
    std::vector<float> w;           // [out, in] dequantized W (cache_slots == 0)
    std::vector<float> xd;          // [N, in] dropped-out adapter input of one level
    std::vector<float> du;          // [N, R_a] adapter gradient
    std::vector<float> t;           // [N, in] per-level dx contribution (dropout)
    int cache_slots = 0;
    struct Slot {
        const void* owner = nullptr;    // HLoraLinear
        const void* data = nullptr;     // its packed NF4 storage
        int64_t rows = 0, cols = 0;
        uint64_t used = 0;              // LRU stamp
        std::vector<float> w;           // [rows, cols]
    };
    std::vector<Slot> slots;
    uint64_t clock = 0;
    size_t bytes() const;
};

// Row-major C [M, N] = alpha·op(A)·op(B) + beta·C (op = transpose when ta / tb), like cblas_sgemm, split over
// OpenMP threads along the dimension whose parts duplicate the least work: N (each part packs A), M (each part
// packs B) or K (each part writes an [M, N] partial; C = beta·C + Σ partials in part order). Runs on one thread
// when the work is small (M·N·K below kGemmWorkPerThread per thread) or when called inside a parallel region.
// Parts are scheduled dynamically (a thread slowed by other processes takes fewer), which does not change any
// value: the split depends only on the shape and omp_get_max_threads(), so results are deterministic for a fixed
// thread count. OpenBLAS must be single-threaded (BlasThreadScope) so that its own pthreads do not compete with
// the OpenMP team.
void par_sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
               float beta, float* C, int ldc);
constexpr double kGemmWorkPerThread = double(1 << 21);   // multiply-adds per thread worth a fork/join
constexpr int64_t kParMinElems = int64_t(1) << 15;       // elementwise loops below this size run on one thread

// Scope of one model call: OpenBLAS single-threaded (restored on exit), and the OpenMP team capped at
// `threads` (<= 0: unchanged). Tiny models then run serially instead of waking and spinning idle threads.
class BlasThreadScope {
  public:
    explicit BlasThreadScope(int threads = 0);
    ~BlasThreadScope();
    BlasThreadScope(const BlasThreadScope&) = delete;
    BlasThreadScope& operator=(const BlasThreadScope&) = delete;

  private:
    int blas_prev_, omp_prev_;
};

// Rank rows used by `run`: offset[run.levels] (0 when not adapted).
int hlora_active_rank(const HLoraLinear& L, const HLoraRun& run);

// W [out, in] as the forward uses it (dequantized NF4 or the fp32 copy) into `out`.
void hlora_base_weight(const HLoraLinear& L, float* out);

// x [N, in] -> y [N, out]. z [N, R_a] receives (x̃·A_actᵀ) ⊙ s, needed by the backward (ignored when R_a == 0).
void hlora_forward(const HLoraLinear& L, const HLoraRun& run, const float* x, int64_t N, float* y, float* z,
                   HLoraWorkspace& ws);

// dy [N, out] -> dx [N, in] (overwritten, or added to when `accumulate`); dA [R_a, in] += , dB [out, R_a] += .
// x and z are the forward's input and saved z.
void hlora_backward(const HLoraLinear& L, const HLoraRun& run, const float* x, const float* z, const float* dy,
                    int64_t N, float* dx, bool accumulate, HLoraWorkspace& ws);

// Fills A (kaiming | gaussian) and zeroes B from (seed, stream). Throws E_CONFIG for an unknown init name.
void hlora_init(HLoraLinear& L, const std::string& init, uint64_t seed, uint64_t stream);

}  // namespace hq
