// loss.cpp — chunked vocab projection + cross-entropy, forward and backward. See loss.h.
#include "loss.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "error.h"
#include "hlora.h"

namespace hq {

void shift_labels(int32_t* targets, const int32_t* labels, int B, int T) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t + 1 < T; t++) targets[(int64_t)b * T + t] = labels[(int64_t)b * T + t + 1];
        if (T > 0) targets[(int64_t)b * T + T - 1] = -100;
    }
}

size_t LossWorkspace::bytes() const {
    return (h.capacity() + logits.capacity() + dh.capacity()) * sizeof(float) + rows.capacity() * sizeof(int64_t) +
           row_loss.capacity() * sizeof(double);
}

LossOut cross_entropy_chunked(const float* h, const float* W, const int32_t* targets, int64_t N, int C, int V,
                              int chunk, float grad_scale, float* dh, LossWorkspace& ws, float softcap) {
    const float inv_cap = softcap > 0 ? 1.0f / softcap : 0.0f;
    HQ_ASSERT(chunk > 0);
    ws.rows.clear();
    for (int64_t n = 0; n < N; n++) {
        const int32_t t = targets[n];
        if (t == -100) continue;
        HQ_CHECK(t >= 0 && t < V, "E_TOKENS", "label " << t << " at flat position " << n + 1
                                                       << " is outside the vocabulary [0, " << V << ")",
                 Where{}, "the token file does not match this model's tokenizer/vocab_size; re-tokenize the data");
        ws.rows.push_back(n);
    }
    if (dh) std::memset(dh, 0, sizeof(float) * (size_t)N * C);
    LossOut res;
    const int64_t M = (int64_t)ws.rows.size();
    res.n_tokens = M;
    if (M == 0) return res;
    const int cr = (int)std::min<int64_t>(chunk, M);
    if (ws.h.size() < (size_t)cr * C) ws.h.resize((size_t)cr * C);
    if (ws.logits.size() < (size_t)cr * V) ws.logits.resize((size_t)cr * V);
    if (dh && ws.dh.size() < (size_t)cr * C) ws.dh.resize((size_t)cr * C);
    ws.row_loss.assign(M, 0.0);
    for (int64_t m0 = 0; m0 < M; m0 += cr) {
        const int nc = (int)std::min<int64_t>(cr, M - m0);
        float* hc = ws.h.data();        // [nc, C] gathered rows
        float* lg = ws.logits.data();   // [nc, V]
        for (int i = 0; i < nc; i++) std::memcpy(hc + (int64_t)i * C, h + ws.rows[m0 + i] * C, sizeof(float) * C);
        // logits [nc, V] = hc · Wᵀ
        par_sgemm(false, true, nc, V, C, 1.0f, hc, C, W, C, 0.0f, lg, V);
#pragma omp parallel for schedule(static) if ((int64_t)nc * V >= kParMinElems / 4)
        for (int i = 0; i < nc; i++) {
            float* l = lg + (int64_t)i * V;
            const int32_t tgt = targets[ws.rows[m0 + i]];
            if (softcap > 0)
                for (int j = 0; j < V; j++) l[j] = std::tanh(l[j] * inv_cap) * softcap;
            float m = -INFINITY;
            for (int j = 0; j < V; j++) m = std::max(m, l[j]);
            double sum = 0.0;
            for (int j = 0; j < V; j++) sum += (double)std::exp(l[j] - m);
            const double lse = (double)m + std::log(sum);
            ws.row_loss[m0 + i] = lse - (double)l[tgt];
            if (dh) {
                const float flse = (float)lse;
                if (softcap > 0) {
                    // d raw = d capped · (1 − tanh²), tanh = capped / softcap
                    for (int j = 0; j < V; j++) {
                        const float t = l[j] * inv_cap;
                        const float g = std::exp(l[j] - flse) * grad_scale - (j == tgt ? grad_scale : 0.0f);
                        l[j] = g * (1.0f - t * t);
                    }
                } else {
                    for (int j = 0; j < V; j++) l[j] = std::exp(l[j] - flse) * grad_scale;
                    l[tgt] -= grad_scale;
                }
            }
        }
        if (dh) {
            // dhc [nc, C] = dlogits · W, scattered back to the target rows
            par_sgemm(false, false, nc, C, V, 1.0f, lg, V, W, C, 0.0f, ws.dh.data(), C);
            for (int i = 0; i < nc; i++)
                std::memcpy(dh + ws.rows[m0 + i] * C, ws.dh.data() + (int64_t)i * C, sizeof(float) * C);
        }
    }
    for (int64_t i = 0; i < M; i++) res.loss_sum += ws.row_loss[i];
    return res;
}

void softcap_logits(float* logits, int64_t n, float softcap) {
    if (!(softcap > 0)) return;
    const float inv_cap = 1.0f / softcap;
#pragma omp parallel for schedule(static) if (n >= kParMinElems)
    for (int64_t i = 0; i < n; i++) logits[i] = std::tanh(logits[i] * inv_cap) * softcap;
}

}  // namespace hq
