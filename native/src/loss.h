// loss.h — vocab projection + causal-LM cross-entropy over token chunks (never the full [N, V] logits).
//
//   h [N, C] final hidden states (after the final norm), W [V, C] (lm_head, or the tied embedding)
//   targets [N] already shifted (targets[t] = labels[t+1], −100 = ignored; see shift_labels)
//   loss_n = logsumexp(l_n) − l_n[target_n],  l_n = h_n·Wᵀ (fp32; softmax with max subtraction)
// Only rows with a target are projected: they are gathered into chunks of at most `chunk` rows, so the largest
// logits block is [chunk, V]. With dh != nullptr the backward runs chunk by chunk too:
//   dlogits = grad_scale·(softmax(l) − onehot(target)),  dh_n = dlogits_n · W   (W frozen: no dW)
// The loss sum is accumulated in fp64 in row order (deterministic). Like transformers' ForCausalLMLoss with
// reduction "sum"; the mean is loss_sum / n_tokens.
#pragma once
#include <cstdint>
#include <vector>

#include "model.h"

namespace hq {

// labels [B, T] -> targets [B, T]: targets[b, t] = labels[b, t+1] for t < T−1, −100 at t = T−1.
void shift_labels(int32_t* targets, const int32_t* labels, int B, int T);

// Reused scratch: gathered rows, logits block and its gradient.
struct LossWorkspace {
    std::vector<float> h;        // [chunk, C]
    std::vector<float> logits;   // [chunk, V]
    std::vector<float> dh;       // [chunk, C]
    std::vector<int64_t> rows;   // indices of target rows
    std::vector<double> row_loss;// [N]
    size_t bytes() const;
};

// Returns Σ CE and the number of target rows. dh [N, C] (optional) is overwritten: grad_scale · d(loss_sum)/dh,
// zero on ignored rows. Throws E_TOKENS for a target outside [0, V).
// softcap > 0 applies Gemma-2's final logit soft-capping first: l = softcap·tanh(l / softcap) (and its derivative
// 1 − tanh² in the backward).
LossOut cross_entropy_chunked(const float* h, const float* W, const int32_t* targets, int64_t N, int C, int V,
                              int chunk, float grad_scale, float* dh, LossWorkspace& ws, float softcap = 0.0f);
// logits [N, V] in place: softcap·tanh(logits / softcap) (no-op for softcap <= 0).
void softcap_logits(float* logits, int64_t n, float softcap);

}  // namespace hq
