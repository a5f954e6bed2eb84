// hlora.cpp — the hierarchical-LoRA linear, forward / backward / init. See hlora.h.
#include "hlora.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "error.h"
#include "model.h"

namespace hq {

float AdapterSpec::scale(int level) const {
    HQ_ASSERT(level >= 0 && level < (int)levels.size());
    const LevelSpec& l = levels[level];
    return rslora ? l.alpha / std::sqrt((float)l.rank) : l.alpha / (float)l.rank;
}

int AdapterSpec::total_rank() const {
    int r = 0;
    for (const LevelSpec& l : levels) r += l.rank;
    return r;
}

size_t HLoraLinear::base_bytes() const { return quantized ? nf4_bytes(wq) : w.size() * sizeof(float); }

size_t HLoraWorkspace::bytes() const {
    size_t n = w.capacity() + xd.capacity() + du.capacity() + t.capacity();
    for (const Slot& sl : slots) n += sl.w.capacity();
    return n * sizeof(float);
}

BlasThreadScope::BlasThreadScope(int threads) : blas_prev_(openblas_get_num_threads()), omp_prev_(omp_get_max_threads()) {
    if (blas_prev_ != 1) openblas_set_num_threads(1);
    if (threads > 0 && threads < omp_prev_) omp_set_num_threads(threads);
}

BlasThreadScope::~BlasThreadScope() {
    if (omp_get_max_threads() != omp_prev_) omp_set_num_threads(omp_prev_);
    if (blas_prev_ != 1) openblas_set_num_threads(blas_prev_);
}

void par_sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
               float beta, float* C, int ldc) {
    if (M <= 0 || N <= 0) return;
    const CBLAS_TRANSPOSE opA = ta ? CblasTrans : CblasNoTrans, opB = tb ? CblasTrans : CblasNoTrans;
    const double work = (double)M * N * K;
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    nt = (int)std::min<double>(nt, std::max(1.0, work / kGemmWorkPerThread));
    if (nt <= 1 || K <= 0) {
        cblas_sgemm(CblasRowMajor, opA, opB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    // Split the dimension whose extra parts cost the least duplicated work: each part of an N split packs all of A
    // (M·K), of an M split all of B (N·K), of a K split writes and reduces an [M, N] partial (≈ 2·M·N).
    // A K split keeps one partial per part: at most nt parts and kMaxPartialBytes of them.
    const double dup[3] = {(double)M * K, (double)N * K, 2.0 * M * N};   // split N, M, K
    const int dims[3] = {N, M, K};
    constexpr double kMaxPartialBytes = double(128 << 20);
    const int k_parts = (int)std::min<double>(nt, kMaxPartialBytes / (4.0 * M * N));
    int axis = 0;
    for (int c = 1; c < 3; c++)
        if (dup[c] < dup[axis] && (c < 2 || k_parts >= 2)) axis = c;
    const int D = dims[axis];
    // Up to 4 parts per thread (dynamic scheduling evens out threads slowed by other processes), while the parts
    // stay >= 64 wide and their duplicated work stays below 5% of the product.
    constexpr int kAlign = 16, kMinPart = 64;
    const int max_parts = std::max(1, std::min({axis == 2 ? k_parts : 4 * nt, D / kMinPart,
                                                (int)std::min(1e6, 0.05 * work / dup[axis])}));
    int parts = axis == 2 ? max_parts : std::max(std::min(nt, D / kMinPart), max_parts);
    if (parts < 2) {
        cblas_sgemm(CblasRowMajor, opA, opB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int chunk = (D + parts - 1) / parts;
    chunk = (chunk + kAlign - 1) / kAlign * kAlign;
    parts = (D + chunk - 1) / chunk;
    BlasThreadScope blas_one;   // no-op under the model's scope; guards direct callers
    if (axis < 2) {
#pragma omp parallel for num_threads(std::min(nt, parts)) schedule(dynamic, 1)
        for (int p = 0; p < parts; p++) {
            const int d0 = p * chunk, dn = std::min(chunk, D - d0);
            if (axis == 0) {
                const float* Bp = tb ? B + (int64_t)d0 * ldb : B + d0;
                cblas_sgemm(CblasRowMajor, opA, opB, M, dn, K, alpha, A, lda, Bp, ldb, beta, C + d0, ldc);
            } else {
                const float* Ap = ta ? A + d0 : A + (int64_t)d0 * lda;
                cblas_sgemm(CblasRowMajor, opA, opB, dn, N, K, alpha, Ap, lda, B, ldb, beta, C + (int64_t)d0 * ldc,
                            ldc);
            }
        }
        return;
    }
    // K split: partial products into scratch, then C = beta·C + Σ_p partial_p in part order (deterministic).
    static thread_local std::vector<float> partial;
    const size_t mn = (size_t)M * N;
    if (partial.size() < mn * parts) partial.resize(mn * parts);
    float* P = partial.data();
#pragma omp parallel num_threads(std::min(nt, parts))
    {
#pragma omp for schedule(dynamic, 1)
        for (int p = 0; p < parts; p++) {
            const int k0 = p * chunk, kn = std::min(chunk, K - k0);
            const float* Ap = ta ? A + (int64_t)k0 * lda : A + k0;
            const float* Bp = tb ? B + k0 : B + (int64_t)k0 * ldb;
            cblas_sgemm(CblasRowMajor, opA, opB, M, N, kn, alpha, Ap, lda, Bp, ldb, 0.0f, P + mn * p, N);
        }
#pragma omp for schedule(static)
        for (int i = 0; i < M; i++) {
            float* c = C + (int64_t)i * ldc;
            for (int j = 0; j < N; j++) {
                float acc = P[(size_t)i * N + j];
                for (int p = 1; p < parts; p++) acc += P[mn * p + (size_t)i * N + j];
                c[j] = beta == 0.0f ? acc : beta * c[j] + acc;
            }
        }
    }
}

static void ensure(std::vector<float>& v, size_t n) {
    if (v.size() < n) v.resize(n);
}

int hlora_active_rank(const HLoraLinear& L, const HLoraRun& run) {
    if (L.R == 0) return 0;
    HQ_ASSERT(run.levels >= 1 && run.levels < (int)L.offset.size());
    return L.offset[run.levels];
}

void hlora_base_weight(const HLoraLinear& L, float* out) {
    if (L.quantized) {
        nf4_dequantize(L.wq, out);
    } else {
        std::memcpy(out, L.w.data(), sizeof(float) * (size_t)L.out * L.in);
    }
}

// NF4 dequantization of L's weight into out [out, in]; small weights on one thread (no fork/join per call).
static void dequantize_into(const HLoraLinear& L, float* out) {
    const int64_t n = (int64_t)L.out * L.in;
    if (n >= 16 * kParMinElems) {
        nf4_dequantize(L.wq, out);
    } else {
        BlasThreadScope one(1);
        nf4_dequantize(L.wq, out);
    }
}

// W [out, in] pointer for this call: the fp32 copy, or the NF4 weight dequantized (or found in the cache of ws).
static const float* base_weight(const HLoraLinear& L, HLoraWorkspace& ws) {
    if (!L.quantized) return L.w.data();
    if (ws.cache_slots <= 0) {
        ensure(ws.w, (size_t)L.out * L.in);
        dequantize_into(L, ws.w.data());
        return ws.w.data();
    }
    if ((int)ws.slots.size() != ws.cache_slots) ws.slots.resize(ws.cache_slots);
    HLoraWorkspace::Slot* victim = &ws.slots[0];
    for (HLoraWorkspace::Slot& sl : ws.slots) {
        if (sl.owner == &L && sl.data == L.wq.packed.data() && sl.rows == L.out && sl.cols == L.in) {
            sl.used = ++ws.clock;
            return sl.w.data();
        }
        if (sl.used < victim->used) victim = &sl;
    }
    victim->owner = &L;
    victim->data = L.wq.packed.data();
    victim->rows = L.out;
    victim->cols = L.in;
    victim->used = ++ws.clock;
    victim->w.resize((size_t)L.out * L.in);
    dequantize_into(L, victim->w.data());
    return victim->w.data();
}

// xd [N, in] = x ⊙ m_j / (1 − p), the dropped-out adapter input of level j.
static void dropout_input(float* xd, const float* x, int64_t N, int in, float p, uint64_t key) {
    const float keep_scale = 1.0f / (1.0f - p);
    const int64_t n = N * in;
#pragma omp parallel for schedule(static) if (n >= kParMinElems / 4)
    for (int64_t i = 0; i < n; i++) xd[i] = rng_uniform(key, (uint64_t)i) >= p ? x[i] * keep_scale : 0.0f;
}

void hlora_forward(const HLoraLinear& L, const HLoraRun& run, const float* x, int64_t N, float* y, float* z,
                   HLoraWorkspace& ws) {
    const int in = L.in, out = L.out;
    const float* W = base_weight(L, ws);
    // y [N, out] = x · Wᵀ
    par_sgemm(false, true, (int)N, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
    const int Ra = hlora_active_rank(L, run);
    if (Ra == 0) return;
    if (run.dropout <= 0.0f) {
        // z [N, Ra] = x · A_actᵀ
        par_sgemm(false, true, (int)N, Ra, in, 1.0f, x, in, L.A, in, 0.0f, z, Ra);
    } else {
        ensure(ws.xd, (size_t)N * in);
        for (int j = 0; j < run.levels; j++) {
            const int o = L.offset[j], r = L.rank[j];
            dropout_input(ws.xd.data(), x, N, in, run.dropout, rng_key(run.mask_key, (uint64_t)j));
            // z[:, o:o+r] = x̃_j · A_jᵀ
            par_sgemm(false, true, (int)N, r, in, 1.0f, ws.xd.data(), in,
                        L.A + (int64_t)o * in, in, 0.0f, z + o, Ra);
        }
    }
    const float* s = L.scale.data();
#pragma omp parallel for schedule(static) if (N * Ra >= kParMinElems)
    for (int64_t n = 0; n < N; n++) {
        float* zr = z + n * Ra;
        for (int c = 0; c < Ra; c++) zr[c] *= s[c];
    }
    // y += z · B_actᵀ   (B [out, R], first Ra columns)
    par_sgemm(false, true, (int)N, out, Ra, 1.0f, z, Ra, L.B, L.R, 1.0f, y, out);
}

void hlora_backward(const HLoraLinear& L, const HLoraRun& run, const float* x, const float* z, const float* dy,
                    int64_t N, float* dx, bool accumulate, HLoraWorkspace& ws) {
    const int in = L.in, out = L.out;
    const float* W = base_weight(L, ws);
    // dx [N, in] (+)= dy · W
    par_sgemm(false, false, (int)N, in, out, 1.0f, dy, out, W, in,
                accumulate ? 1.0f : 0.0f, dx, in);
    const int Ra = hlora_active_rank(L, run);
    if (Ra == 0) return;
    // dB[:, :Ra] [out, Ra] += dyᵀ · z
    par_sgemm(true, false, out, Ra, (int)N, 1.0f, dy, out, z, Ra, 1.0f, L.dB, L.R);
    // du [N, Ra] = (dy · B_act) ⊙ s
    ensure(ws.du, (size_t)N * Ra);
    float* du = ws.du.data();
    par_sgemm(false, false, (int)N, Ra, out, 1.0f, dy, out, L.B, L.R, 0.0f, du, Ra);
    const float* s = L.scale.data();
#pragma omp parallel for schedule(static) if (N * Ra >= kParMinElems)
    for (int64_t n = 0; n < N; n++) {
        float* ur = du + n * Ra;
        for (int c = 0; c < Ra; c++) ur[c] *= s[c];
    }
    if (run.dropout <= 0.0f) {
        // dA[:Ra] [Ra, in] += duᵀ · x ;  dx += du · A_act
        par_sgemm(true, false, Ra, in, (int)N, 1.0f, du, Ra, x, in, 1.0f, L.dA, in);
        par_sgemm(false, false, (int)N, in, Ra, 1.0f, du, Ra, L.A, in, 1.0f, dx, in);
        return;
    }
    ensure(ws.xd, (size_t)N * in);
    ensure(ws.t, (size_t)N * in);
    const float keep_scale = 1.0f / (1.0f - run.dropout);
    for (int j = 0; j < run.levels; j++) {
        const int o = L.offset[j], r = L.rank[j];
        const uint64_t key = rng_key(run.mask_key, (uint64_t)j);
        dropout_input(ws.xd.data(), x, N, in, run.dropout, key);
        // dA_j [r, in] += du_jᵀ · x̃_j
        par_sgemm(true, false, r, in, (int)N, 1.0f, du + o, Ra, ws.xd.data(), in, 1.0f,
                    L.dA + (int64_t)o * in, in);
        // t [N, in] = du_j · A_j ;  dx += t ⊙ m_j / (1 − p)
        float* t = ws.t.data();
        par_sgemm(false, false, (int)N, in, r, 1.0f, du + o, Ra, L.A + (int64_t)o * in,
                    in, 0.0f, t, in);
        const int64_t n = N * in;
        const float p = run.dropout;
#pragma omp parallel for schedule(static) if (n >= kParMinElems / 4)
        for (int64_t i = 0; i < n; i++)
            if (rng_uniform(key, (uint64_t)i) >= p) dx[i] += t[i] * keep_scale;
    }
}

void hlora_init(HLoraLinear& L, const std::string& init, uint64_t seed, uint64_t stream) {
    HQ_ASSERT(L.R > 0 && L.A && L.B);
    const uint64_t key = rng_key(seed, stream);
    const int in = L.in;
    if (init == "kaiming") {
        const float bound = 1.0f / std::sqrt((float)in);   // kaiming_uniform_(a=√5): gain·√(3/fan_in) = 1/√in
        const int64_t n = (int64_t)L.R * in;
#pragma omp parallel for schedule(static) if (n >= kParMinElems)
        for (int64_t i = 0; i < n; i++) L.A[i] = (2.0f * rng_uniform(key, (uint64_t)i) - 1.0f) * bound;
    } else if (init == "gaussian") {
        for (size_t j = 0; j < L.rank.size(); j++) {
            const float std_ = 1.0f / (float)L.rank[j];     // PEFT: normal_(A, std=1/r)
            const int64_t i0 = (int64_t)L.offset[j] * in, i1 = (int64_t)L.offset[j + 1] * in;
#pragma omp parallel for schedule(static) if (i1 - i0 >= kParMinElems)
            for (int64_t i = i0; i < i1; i++) {
                // Box-Muller from two counter-based uniforms; u1 in (0, 1].
                const double u1 = 1.0 - (double)rng_uniform(key, 2 * (uint64_t)i);
                const double u2 = (double)rng_uniform(key, 2 * (uint64_t)i + 1);
                L.A[i] = (float)(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2)) * std_;
            }
        }
    } else {
        throw Error("E_CONFIG", HQ_MSG("unknown adapter init '" << init << "'"), Where{"", "", "adapter.init", -1, -1},
                    "use \"kaiming\" (PEFT default) or \"gaussian\"");
    }
    std::memset(L.B, 0, sizeof(float) * (size_t)L.out * L.R);
}

}  // namespace hq
