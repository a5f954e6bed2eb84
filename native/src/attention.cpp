// attention.cpp — causal GQA attention, forward and backward. See attention.h.
#include "attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "error.h"
#include "hlora.h"

namespace hq {

static constexpr int kQBlock = 64;   // query rows per task / per backward step

// The sgemm calls below run inside an OpenMP parallel region: a pthreads OpenBLAS must not spawn its own threads
// there (it warns "Detect OpenMP Loop ... may hang"), so the region runs with one BLAS thread and restores the
// caller's setting afterwards.
namespace {
struct BlasSingleThread {
    int prev;
    BlasSingleThread() : prev(openblas_get_num_threads()) { openblas_set_num_threads(1); }
    ~BlasSingleThread() { openblas_set_num_threads(prev); }
};
}  // namespace

static float attn_scale(const AttnShape& s) {
    return s.scale > 0 ? s.scale : (float)(1.0 / std::sqrt((double)s.d));
}
// First key visible from query i.
static inline int first_key(const AttnShape& s, int i) { return s.window > 0 ? std::max(0, i - s.window + 1) : 0; }
// The document mask of row b: key j in [first_key, i] is visible from query i (nullptr seg: every one is).
static inline bool same_doc(const int32_t* sg, int i, int j) { return !sg || sg[i] == sg[j]; }

// Per-thread score buffers, kept between calls (no allocation per call).
static float* scratch(std::vector<float>& v, size_t n) {
    if (v.size() < n) v.resize(n);
    return v.data();
}
static thread_local std::vector<float> tl_s, tl_p, tl_dp;

// Parallel only when the score work (≈ B·H·T²·d/2 multiply-adds) is worth a fork/join.
static bool attn_parallel(const AttnShape& s) {
    return (double)s.B * s.H * s.T * s.T * s.d >= 2.0 * kGemmWorkPerThread;
}

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const AttnShape& s) {
    const int B = s.B, T = s.T, H = s.H, KV = s.KV, d = s.d;
    HQ_ASSERT(KV > 0 && H % KV == 0);
    const int G = H / KV;
    const float scale = attn_scale(s);
    const float cap = s.softcap, inv_cap = cap > 0 ? 1.0f / cap : 0.0f;
    const int nqb = (T + kQBlock - 1) / kQBlock;
    const int64_t ntask = (int64_t)B * H * nqb;
    const int ldq = H * d, ldk = KV * d;
    BlasSingleThread one;
#pragma omp parallel if (attn_parallel(s))
    {
        float* S = scratch(tl_s, (size_t)kQBlock * T);   // [nq, nk] scores, then probabilities
#pragma omp for schedule(dynamic)
        for (int64_t task = 0; task < ntask; task++) {
            const int b = (int)(task / ((int64_t)H * nqb));
            const int h = (int)((task / nqb) % H);
            const int i0 = (int)(task % nqb) * kQBlock;
            const int nq = std::min(kQBlock, T - i0);
            const int nk = i0 + nq;                     // keys 0..nk-1 are visible to this block
            const int kvh = h / G;
            const float* Q = q + ((int64_t)b * T + i0) * ldq + (int64_t)h * d;   // [nq, d] (ld H*d)
            const float* K = k + (int64_t)b * T * ldk + (int64_t)kvh * d;       // [nk, d] (ld KV*d)
            const float* V = v + (int64_t)b * T * ldk + (int64_t)kvh * d;       // [nk, d] (ld KV*d)
            float* O = out + ((int64_t)b * T + i0) * ldq + (int64_t)h * d;      // [nq, d] (ld H*d)
            float* L = lse + ((int64_t)b * H + h) * T + i0;                     // [nq]
            // S [nq, nk] = Q · Kᵀ
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, d, 1.0f, Q, ldq, K, ldk, 0.0f, S, nk);
            const int32_t* sg = s.seg ? s.seg + (int64_t)b * T : nullptr;   // [T] this row's documents
            for (int r = 0; r < nq; r++) {
                float* row = S + (int64_t)r * nk;
                const int i = i0 + r, nvis = i + 1;
                const int j0 = first_key(s, i);
                float m = -INFINITY;
                for (int j = j0; j < nvis; j++) {
                    if (!same_doc(sg, i, j)) continue;
                    row[j] *= scale;
                    if (cap > 0) row[j] = std::tanh(row[j] * inv_cap) * cap;   // transformers: /cap, tanh, *cap
                    m = std::max(m, row[j]);
                }
                float sum = 0.0f;
                for (int j = j0; j < nvis; j++) {
                    row[j] = same_doc(sg, i, j) ? std::exp(row[j] - m) : 0.0f;
                    sum += row[j];
                }
                const float inv = 1.0f / sum;
                for (int j = 0; j < j0; j++) row[j] = 0.0f;
                for (int j = j0; j < nvis; j++) row[j] *= inv;
                for (int j = nvis; j < nk; j++) row[j] = 0.0f;
                L[r] = m + std::log(sum);
            }
            // O [nq, d] = P · V
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, d, nk, 1.0f, S, nk, V, ldk, 0.0f, O,
                        ldq);
        }
    }
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const AttnShape& s) {
    const int B = s.B, T = s.T, H = s.H, KV = s.KV, d = s.d;
    HQ_ASSERT(KV > 0 && H % KV == 0);
    const int G = H / KV;
    const float scale = attn_scale(s);
    const float cap = s.softcap, inv_cap = cap > 0 ? 1.0f / cap : 0.0f;
    const int ldq = H * d, ldk = KV * d;
    // Per-query-head partial dk/dv: with G == 1 they are dk/dv themselves, otherwise [B, H, T, d] scratch that is
    // reduced over each group in head order below.
    static thread_local std::vector<float> dkp, dvp;
    if (G > 1) {
        const size_t n = (size_t)B * H * T * d;
        if (dkp.size() < n) dkp.resize(n);
        if (dvp.size() < n) dvp.resize(n);
        std::fill(dkp.begin(), dkp.begin() + n, 0.0f);
        std::fill(dvp.begin(), dvp.begin() + n, 0.0f);
    } else {
        std::memset(dk, 0, sizeof(float) * (size_t)B * T * KV * d);
        std::memset(dv, 0, sizeof(float) * (size_t)B * T * KV * d);
    }
    const int64_t ntask = (int64_t)B * H;
    BlasSingleThread one;
    float* dkp_ = dkp.data();
    float* dvp_ = dvp.data();
#pragma omp parallel if (attn_parallel(s))
    {
        float* P = scratch(tl_p, (size_t)kQBlock * T);     // [nq, nk]
        float* dP = scratch(tl_dp, (size_t)kQBlock * T);   // [nq, nk]
#pragma omp for schedule(dynamic)
        for (int64_t task = 0; task < ntask; task++) {
            const int b = (int)(task / H), h = (int)(task % H), kvh = h / G;
            const int32_t* sg = s.seg ? s.seg + (int64_t)b * T : nullptr;   // [T] this row's documents
            const float* K = k + (int64_t)b * T * ldk + (int64_t)kvh * d;   // [T, d] (ld KV*d)
            const float* V = v + (int64_t)b * T * ldk + (int64_t)kvh * d;   // [T, d] (ld KV*d)
            float* dK;   // [T, d] partial for this query head
            float* dV;
            int ldp;
            if (G > 1) {
                dK = dkp_ + ((int64_t)b * H + h) * T * d;
                dV = dvp_ + ((int64_t)b * H + h) * T * d;
                ldp = d;
            } else {
                dK = dk + (int64_t)b * T * ldk + (int64_t)kvh * d;
                dV = dv + (int64_t)b * T * ldk + (int64_t)kvh * d;
                ldp = ldk;
            }
            for (int i0 = 0; i0 < T; i0 += kQBlock) {
                const int nq = std::min(kQBlock, T - i0), nk = i0 + nq;
                const int64_t rowoff = ((int64_t)b * T + i0) * ldq + (int64_t)h * d;
                const float* Q = q + rowoff;      // [nq, d] (ld H*d)
                const float* O = out + rowoff;    // [nq, d]
                const float* dO = dout + rowoff;  // [nq, d]
                float* dQ = dq + rowoff;          // [nq, d]
                const float* L = lse + ((int64_t)b * H + h) * T + i0;   // [nq]
                // P [nq, nk] = exp(Q·Kᵀ·scale − lse), causal
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, d, 1.0f, Q, ldq, K, ldk, 0.0f, P,
                            nk);
                // dP [nq, nk] = dO · Vᵀ
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, d, 1.0f, dO, ldq, V, ldk, 0.0f,
                            dP, nk);
                for (int r = 0; r < nq; r++) {
                    float* pr = P + (int64_t)r * nk;
                    float* dpr = dP + (int64_t)r * nk;
                    const int i = i0 + r, nvis = i + 1;
                    const int j0 = first_key(s, i);
                    float D = 0.0f;   // Σ_c dO·O = Σ_j P·dP
                    for (int c = 0; c < d; c++) D += dO[(int64_t)r * ldq + c] * O[(int64_t)r * ldq + c];
                    for (int j = 0; j < j0; j++) pr[j] = dpr[j] = 0.0f;
                    if (cap > 0) {
                        for (int j = j0; j < nvis; j++) {
                            if (!same_doc(sg, i, j)) {
                                pr[j] = dpr[j] = 0.0f;
                                continue;
                            }
                            const float t = std::tanh(pr[j] * scale * inv_cap);
                            pr[j] = std::exp(t * cap - L[r]);
                            dpr[j] = pr[j] * (dpr[j] - D) * (1.0f - t * t) * scale;   // through the cap
                        }
                    } else {
                        for (int j = j0; j < nvis; j++) {
                            if (!same_doc(sg, i, j)) {
                                pr[j] = dpr[j] = 0.0f;
                                continue;
                            }
                            pr[j] = std::exp(pr[j] * scale - L[r]);
                            dpr[j] = pr[j] * (dpr[j] - D) * scale;   // dS (scaled back to q·k)
                        }
                    }
                    for (int j = nvis; j < nk; j++) pr[j] = dpr[j] = 0.0f;
                }
                // dQ [nq, d] = dS · K
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, d, nk, 1.0f, dP, nk, K, ldk, 0.0f,
                            dQ, ldq);
                // dK [nk, d] += dSᵀ · Q ;  dV [nk, d] += Pᵀ · dO
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, d, nq, 1.0f, dP, nk, Q, ldq, 1.0f, dK,
                            ldp);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, d, nq, 1.0f, P, nk, dO, ldq, 1.0f, dV,
                            ldp);
            }
        }
    }
    if (G > 1) {
        // dk[b, t, kvh, :] = Σ_{g<G} dkp[b, kvh·G + g, t, :]  (fixed head order)
#pragma omp parallel for collapse(2) schedule(static) if ((int64_t)B * T * H * d >= kParMinElems)
        for (int b = 0; b < B; b++) {
            for (int t = 0; t < T; t++) {
                for (int kvh = 0; kvh < KV; kvh++) {
                    float* dkr = dk + ((int64_t)b * T + t) * ldk + (int64_t)kvh * d;
                    float* dvr = dv + ((int64_t)b * T + t) * ldk + (int64_t)kvh * d;
                    for (int c = 0; c < d; c++) dkr[c] = dvr[c] = 0.0f;
                    for (int g = 0; g < G; g++) {
                        const int64_t off = (((int64_t)b * H + kvh * G + g) * T + t) * d;
                        for (int c = 0; c < d; c++) {
                            dkr[c] += dkp_[off + c];
                            dvr[c] += dvp_[off + c];
                        }
                    }
                }
            }
        }
    }
}

}  // namespace hq
