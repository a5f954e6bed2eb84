// norm.h — RMSNorm, LLaMA and Gemma variants, forward and backward (fp32, CPU).
//
// Numerics follow transformers (trainer-anchors §5.1):
//   LLaMA: y = w · (x · rstd)            normalise in fp32 first, then multiply by the weight
//   Gemma: y = (x · rstd) · (1 + w)      the checkpoint stores w, the scale is 1 + w (init zeros)
//   rstd = 1 / sqrt(mean(x²) + eps); mean(x²) is accumulated in fp64 and rounded once to fp32.
// The norm weights are frozen (QLoRA trains adapters only), so the backward gives dx only.
#pragma once
#include <cstdint>

namespace hq {

// x [N, C], w [C] -> y [N, C]; rstd [N] is saved for the backward (may be nullptr when not needed).
void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int64_t N, int C, float eps, bool gemma);

// dx [N, C] += dL/dx, given dy [N, C] = dL/dy, the forward input x [N, C] and its rstd [N].
//   dx_k += r·g_k·dy_k − r³·x_k/C · Σ_j dy_j·g_j·x_j      (g = w, or 1 + w for Gemma)
void rmsnorm_backward(float* dx, const float* dy, const float* x, const float* w, const float* rstd, int64_t N,
                      int C, bool gemma);

}  // namespace hq
