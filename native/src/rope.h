// rope.h — rotary position embedding in the Hugging Face layout (rotate_half, not interleaved), fwd + bwd.
//
// Numerics follow transformers (trainer-anchors §5.1):
//   inv_freq[i] = 1 / theta^((2i)/d)   in fp32, i < d/2      (torch: arange(0,d,2).float()/d, pow, reciprocal)
//   llama3 scaling (_compute_llama3_parameters): wavelen = 2π/inv_freq;
//     wavelen > orig/low  -> inv/factor ; wavelen < orig/high -> inv ;
//     between             -> (1-s)·inv/factor + s·inv,  s = (orig/wavelen - low)/(high - low)
//   freqs[t, i] = t · inv_freq[i] (fp32); cos/sin of freqs in fp32. HF's emb = cat(freqs, freqs), so the
//   tables keep only the first half: cos[t, i] serves both lanes i and i + d/2.
//   x'[i]       = x[i]·cos − x[i+d/2]·sin
//   x'[i+d/2]   = x[i+d/2]·cos + x[i]·sin            (x·cos + rotate_half(x)·sin)
// HF checkpoints already carry the q/k row permutation for this layout: no permutation at load.
#pragma once
#include <cstdint>
#include <vector>

#include "model_config.h"

namespace hq {

// inv_freq [d/2], fp32, with the config's rope_scaling applied ("", "linear": inv / factor, "llama3", or
// "longrope": 1 / (ext · theta^(2i/d)) with ext = long_factor when the batch length T exceeds
// original_max_position_embeddings, else short_factor — transformers' longrope_frequency_update decides by
// max(position_ids) + 1, which is T for positions 0..T-1).
std::vector<float> rope_inv_freq(int head_dim, float theta, const RopeScaling& scaling, int T = 0);
// The factor cos/sin are multiplied by (longrope's attention_factor; 1 otherwise).
float rope_attention_scale(const RopeScaling& scaling);
// True when the tables depend on the batch length (longrope).
bool rope_depends_on_length(const RopeScaling& scaling);
// cos, sin [T, d/2] for positions 0..T-1, each multiplied by `scale` (fp32, after cos/sin as transformers does).
void rope_tables(float* cos, float* sin, const float* inv_freq, int T, int head_dim, float scale = 1.0f);

// x [B, T, nh, d] rotated in place with the tables of positions 0..T-1 (cos, sin [>=T, d/2]). With pos [B, T]
// (packed rows: each document's positions restart at 0, transformers' position_ids) token (b, t) is rotated by the
// table row pos[b·T + t] instead of t; the tables must then cover max(pos) + 1 rows.
void rope_forward(float* x, const float* cos, const float* sin, int B, int T, int nh, int head_dim,
                  const int32_t* pos = nullptr);

// dx [B, T, nh, d] in place: the gradient w.r.t. the rotation input (the transposed rotation), same `pos`.
//   dx[i] = dy[i]·cos + dy[i+d/2]·sin ;  dx[i+d/2] = dy[i+d/2]·cos − dy[i]·sin
void rope_backward(float* dx, const float* cos, const float* sin, int B, int T, int nh, int head_dim,
                   const int32_t* pos = nullptr);

// pos [B, T] of packed rows: pos = t − (the first position of t's run of equal seg values), so each document of a
// row counts from 0. Returns max(pos) + 1 (the rows of the rope tables that are read).
int positions_from_segments(int32_t* pos, const int32_t* seg, int B, int T);

}  // namespace hq
