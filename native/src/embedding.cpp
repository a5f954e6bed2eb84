// embedding.cpp — token embedding lookup, forward and backward. See embedding.h.
#include "embedding.h"

#include <cmath>

#include "error.h"
#include "hlora.h"

namespace hq {

float embedding_scale(bool gemma, int C) { return gemma ? (float)std::sqrt((double)C) : 1.0f; }

void embedding_forward(float* x, const float* E, const int32_t* ids, int64_t N, int C, int V, float scale) {
    for (int64_t n = 0; n < N; n++)
        HQ_CHECK(ids[n] >= 0 && ids[n] < V, "E_TOKENS",
                 "token id " << ids[n] << " at flat position " << n << " is outside the vocabulary [0, " << V << ")",
                 Where{}, "the token file does not match this model's vocab_size; re-tokenize with its tokenizer");
#pragma omp parallel for schedule(static) if (N * C >= kParMinElems)
    for (int64_t n = 0; n < N; n++) {
        const float* e = E + (int64_t)ids[n] * C;   // [C]
        float* xr = x + n * C;                       // [C]
        if (scale == 1.0f) {
            for (int c = 0; c < C; c++) xr[c] = e[c];
        } else {
            for (int c = 0; c < C; c++) xr[c] = e[c] * scale;
        }
    }
}

void embedding_backward(float* dE, const float* dx, const int32_t* ids, int64_t N, int C, float scale) {
#pragma omp parallel for schedule(static) if (N * C >= kParMinElems)
    for (int c = 0; c < C; c++) {
        for (int64_t n = 0; n < N; n++) dE[(int64_t)ids[n] * C + c] += scale * dx[n * C + c];
    }
}

}  // namespace hq
