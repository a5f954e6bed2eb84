// rope.cpp — rotary embedding tables and rotation. See rope.h for the numerics.
#include "rope.h"

#include <algorithm>
#include <cmath>

#include "error.h"
#include "hlora.h"

namespace hq {

std::vector<float> rope_inv_freq(int head_dim, float theta, const RopeScaling& sc, int T) {
    HQ_ASSERT(head_dim > 0 && head_dim % 2 == 0);
    const int h = head_dim / 2;
    std::vector<float> inv(h);   // [d/2]
    const bool longrope = sc.type == "longrope";
    const bool use_long = longrope && T > sc.original_max_position_embeddings;
    if (longrope) HQ_ASSERT((int)sc.short_factor.size() == h && (int)sc.long_factor.size() == h);
    for (int i = 0; i < h; i++) {
        const float e = (float)(2 * i) / (float)head_dim;       // arange(0, d, 2).float() / d
        const float p = std::pow(theta, e);                     // fp32 pow
        // longrope (_compute_longrope_parameters): 1 / (ext_factors * base**e), in fp32
        inv[i] = longrope ? 1.0f / ((use_long ? sc.long_factor[i] : sc.short_factor[i]) * p) : 1.0f / p;
    }
    if (sc.type == "linear") {
        for (int i = 0; i < h; i++) inv[i] /= sc.factor;        // _compute_linear_scaling_rope_parameters
    } else if (sc.type == "llama3") {
        const float pi2 = (float)(2.0 * M_PI);
        const float orig = (float)sc.original_max_position_embeddings;
        const float low_wavelen = orig / sc.low_freq_factor;
        const float high_wavelen = orig / sc.high_freq_factor;
        for (int i = 0; i < h; i++) {
            const float f = inv[i];
            const float wavelen = pi2 / f;
            const float f_llama = wavelen > low_wavelen ? f / sc.factor : f;
            const float s = (orig / wavelen - sc.low_freq_factor) / (sc.high_freq_factor - sc.low_freq_factor);
            const float smoothed = (1.0f - s) * f_llama / sc.factor + s * f_llama;
            const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
            inv[i] = medium ? smoothed : f_llama;
        }
    } else {
        HQ_ASSERT(sc.type.empty() || longrope);
    }
    return inv;
}

float rope_attention_scale(const RopeScaling& sc) { return sc.type == "longrope" ? sc.attention_factor : 1.0f; }

bool rope_depends_on_length(const RopeScaling& sc) { return sc.type == "longrope"; }

void rope_tables(float* cos, float* sin, const float* inv_freq, int T, int head_dim, float scale) {
    const int h = head_dim / 2;
#pragma omp parallel for schedule(static) if ((int64_t)T * head_dim >= kParMinElems / 4)
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < h; i++) {
            const float f = (float)t * inv_freq[i];
            cos[(int64_t)t * h + i] = std::cos(f) * scale;
            sin[(int64_t)t * h + i] = std::sin(f) * scale;
        }
    }
}

// Shared loop: sign = +1 applies the rotation, -1 its transpose (the backward).
static void rope_apply(float* x, const float* cos, const float* sin, int B, int T, int nh, int d, float sign,
                       const int32_t* pos) {
    const int h = d / 2;
#pragma omp parallel for collapse(2) schedule(static) if ((int64_t)B * T * nh * d >= kParMinElems)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const int64_t p = pos ? pos[(int64_t)b * T + t] : t;
            const float* c = cos + p * h;   // [d/2]
            const float* s = sin + p * h;   // [d/2]
            float* row = x + ((int64_t)b * T + t) * nh * d;   // [nh, d]
            for (int hh = 0; hh < nh; hh++) {
                float* v = row + (int64_t)hh * d;
                for (int i = 0; i < h; i++) {
                    const float x1 = v[i], x2 = v[i + h];
                    const float si = sign * s[i];
                    v[i] = x1 * c[i] - x2 * si;
                    v[i + h] = x2 * c[i] + x1 * si;
                }
            }
        }
    }
}

void rope_forward(float* x, const float* cos, const float* sin, int B, int T, int nh, int head_dim,
                  const int32_t* pos) {
    rope_apply(x, cos, sin, B, T, nh, head_dim, 1.0f, pos);
}

void rope_backward(float* dx, const float* cos, const float* sin, int B, int T, int nh, int head_dim,
                   const int32_t* pos) {
    rope_apply(dx, cos, sin, B, T, nh, head_dim, -1.0f, pos);
}

int positions_from_segments(int32_t* pos, const int32_t* seg, int B, int T) {
    int32_t mx = 0;
    for (int b = 0; b < B; b++) {
        const int32_t* sg = seg + (int64_t)b * T;
        int32_t* p = pos + (int64_t)b * T;
        for (int t = 0; t < T; t++) {
            p[t] = t > 0 && sg[t] == sg[t - 1] ? p[t - 1] + 1 : 0;
            mx = std::max(mx, p[t]);
        }
    }
    return (int)mx + 1;
}

}  // namespace hq
