// mlp.cpp — SwiGLU / GeGLU(tanh) elementwise forward and backward. See mlp.h.
#include "mlp.h"

#include <cmath>

#include "hlora.h"

namespace hq {

static constexpr float kGeluBeta = 0.7978845608028654f;   // √(2/π)
static constexpr float kGeluKappa = 0.044715f;

void glu_forward(float* h, const float* gate, const float* up, int64_t n, Act act) {
    if (act == Act::SiLU) {
#pragma omp parallel for schedule(static) if (n >= kParMinElems / 4)
        for (int64_t i = 0; i < n; i++) {
            const float g = gate[i];
            h[i] = (g / (1.0f + std::exp(-g))) * up[i];
        }
    } else {
#pragma omp parallel for schedule(static) if (n >= kParMinElems / 4)
        for (int64_t i = 0; i < n; i++) {
            const float g = gate[i];
            const float inner = kGeluBeta * (g + kGeluKappa * g * g * g);
            h[i] = (0.5f * g * (1.0f + std::tanh(inner))) * up[i];
        }
    }
}

void glu_backward(float* dgate, float* dup, const float* dh, const float* gate, const float* up, int64_t n, Act act) {
    if (act == Act::SiLU) {
#pragma omp parallel for schedule(static) if (n >= kParMinElems / 4)
        for (int64_t i = 0; i < n; i++) {
            const float g = gate[i];
            const float sg = 1.0f / (1.0f + std::exp(-g));        // σ(g)
            const float a = g * sg;                                // silu(g)
            const float da = sg * (1.0f + g * (1.0f - sg));        // silu'(g)
            dup[i] = dh[i] * a;
            dgate[i] = dh[i] * up[i] * da;
        }
    } else {
#pragma omp parallel for schedule(static) if (n >= kParMinElems / 4)
        for (int64_t i = 0; i < n; i++) {
            const float g = gate[i];
            const float inner = kGeluBeta * (g + kGeluKappa * g * g * g);
            const float t = std::tanh(inner);
            const float a = 0.5f * g * (1.0f + t);
            const float da =
                0.5f * (1.0f + t) + 0.5f * g * (1.0f - t * t) * kGeluBeta * (1.0f + 3.0f * kGeluKappa * g * g);
            dup[i] = dh[i] * a;
            dgate[i] = dh[i] * up[i] * da;
        }
    }
}

}  // namespace hq
