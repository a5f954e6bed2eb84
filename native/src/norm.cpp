// norm.cpp — RMSNorm forward/backward. See norm.h for the numerics.
#include "norm.h"

#include <cmath>

#include "hlora.h"

namespace hq {

void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int64_t N, int C, float eps, bool gemma) {
#pragma omp parallel for schedule(static) if (N * C >= kParMinElems)
    for (int64_t n = 0; n < N; n++) {
        const float* xr = x + n * C;   // [C]
        float* yr = y + n * C;         // [C]
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += (double)xr[c] * (double)xr[c];
        const float ms = (float)(ss / C);
        const float r = 1.0f / std::sqrt(ms + eps);
        if (rstd) rstd[n] = r;
        if (gemma) {
            for (int c = 0; c < C; c++) yr[c] = (xr[c] * r) * (1.0f + w[c]);
        } else {
            for (int c = 0; c < C; c++) yr[c] = w[c] * (xr[c] * r);
        }
    }
}

void rmsnorm_backward(float* dx, const float* dy, const float* x, const float* w, const float* rstd, int64_t N,
                      int C, bool gemma) {
#pragma omp parallel for schedule(static) if (N * C >= kParMinElems)
    for (int64_t n = 0; n < N; n++) {
        const float* xr = x + n * C;    // [C]
        const float* dyr = dy + n * C;  // [C]
        float* dxr = dx + n * C;        // [C]
        const float r = rstd[n];
        double dot = 0.0;               // Σ_j dy_j·g_j·x_j
        for (int c = 0; c < C; c++) {
            const float g = gemma ? 1.0f + w[c] : w[c];
            dot += (double)dyr[c] * g * xr[c];
        }
        const float k = (float)(dot * r * r * r / C);
        for (int c = 0; c < C; c++) {
            const float g = gemma ? 1.0f + w[c] : w[c];
            dxr[c] += r * g * dyr[c] - k * xr[c];
        }
    }
}

}  // namespace hq
