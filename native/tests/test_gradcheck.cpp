// test_gradcheck.cpp — finite-difference gradient checks of every layer's backward, and of the whole model.
//
// Method: each check builds a scalar L = Σ r ⊙ f(inputs) with a fixed random projection r (accumulated in fp64 from
// the fp32 outputs), takes the analytic gradient from the layer's backward with dy = r, and compares it with the
// central difference (L(x + ε) − L(x − ε)) / 2ε of every input element (the layers are fp32-only).
// Tolerances: inputs are O(1) and ε = 1e-2, so the O(ε²) truncation error is ~1e-4·|f'''| and the fp32 rounding
// noise of L is ~1e-6·|L|/ε; we require |analytic − fd| <= 1e-3 + 1e-2·max(|analytic|, |fd|) per element.
// The whole-model check perturbs a few adapter elements of a tiny synthetic model (nonzero B) and compares
// d(mean loss)/d(A, B) with the same rule.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "attention.h"
#include "embedding.h"
#include "error.h"
#include "fsutil.h"
#include "hlora.h"
#include "loss.h"
#include "mlp.h"
#include "model.h"
#include "nf4.h"
#include "norm.h"
#include "rope.h"
#include "safetensors.h"

using namespace hq;

namespace {

constexpr float kEps = 1e-2f;
constexpr double kAtol = 1e-3, kRtol = 1e-2;

std::vector<float> randu(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
    std::mt19937_64 g(seed);
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    return v;
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); i++) s += (double)a[i] * b[i];
    return s;
}

// Compares analytic[i] with the central difference of loss() w.r.t. x[i] for every i. Returns the max error ratio.
void fd_check(const std::string& what, std::vector<float>& x, const std::vector<float>& analytic,
              const std::function<double()>& loss) {
    REQUIRE(x.size() == analytic.size());
    int bad = 0;
    double max_abs = 0;
    for (size_t i = 0; i < x.size(); i++) {
        const float x0 = x[i];
        x[i] = x0 + kEps;
        const double lp = loss();
        x[i] = x0 - kEps;
        const double lm = loss();
        x[i] = x0;
        const double fd = (lp - lm) / (2.0 * kEps);
        const double a = analytic[i];
        const double err = std::fabs(a - fd);
        max_abs = std::max(max_abs, std::fabs(a));
        if (err > kAtol + kRtol * std::max(std::fabs(a), std::fabs(fd))) {
            if (bad < 5) MESSAGE(what << "[" << i << "]: analytic " << a << " vs fd " << fd);
            bad++;
        }
    }
    CHECK_MESSAGE(bad == 0, what << ": " << bad << " of " << x.size() << " elements off");
    CHECK_MESSAGE(max_abs > 1e-3, what << ": gradient is (almost) zero, the check is vacuous");
}

}  // namespace

TEST_CASE("rmsnorm backward (LLaMA and Gemma) matches finite differences") {
    const int N = 3, C = 8;
    for (bool gemma : {false, true}) {
        CAPTURE(gemma);
        std::vector<float> x = randu(N * C, 1), w = randu(C, 2, gemma ? -0.5f : 0.5f, gemma ? 0.5f : 1.5f);
        const std::vector<float> r = randu(N * C, 3);
        std::vector<float> y(N * C), rstd(N);
        auto loss = [&] {
            rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5f, gemma);
            return dot(y, r);
        };
        loss();
        // forward against the fp64 formula
        for (int n = 0; n < N; n++) {
            double ss = 0;
            for (int c = 0; c < C; c++) ss += (double)x[n * C + c] * x[n * C + c];
            const double rr = 1.0 / std::sqrt(ss / C + 1e-5);
            for (int c = 0; c < C; c++)
                CHECK(y[n * C + c] == doctest::Approx(x[n * C + c] * rr * (gemma ? 1.0 + w[c] : w[c])).epsilon(1e-6));
        }
        std::vector<float> dx(N * C, 0.0f);
        rmsnorm_backward(dx.data(), r.data(), x.data(), w.data(), rstd.data(), N, C, gemma);
        fd_check(gemma ? "gemma rmsnorm dx" : "llama rmsnorm dx", x, dx, loss);
    }
}

TEST_CASE("rope backward matches finite differences; rotation keeps norms; llama3 inv_freq") {
    const int B = 2, T = 5, nh = 3, d = 8;
    RopeScaling none;
    RopeScaling l3;
    l3.type = "llama3";
    l3.factor = 8;
    l3.low_freq_factor = 1;
    l3.high_freq_factor = 4;
    l3.original_max_position_embeddings = 16;
    for (const RopeScaling* sc : {&none, &l3}) {
        CAPTURE(sc->type);
        const std::vector<float> inv = rope_inv_freq(d, 10000.0f, *sc);
        std::vector<float> cs(T * d / 2), sn(T * d / 2);
        rope_tables(cs.data(), sn.data(), inv.data(), T, d);
        std::vector<float> x = randu(B * T * nh * d, 4);
        const std::vector<float> r = randu(x.size(), 5);
        std::vector<float> y;
        auto loss = [&] {
            y = x;
            rope_forward(y.data(), cs.data(), sn.data(), B, T, nh, d);
            return dot(y, r);
        };
        loss();
        for (int i = 0; i < B * T * nh; i++) {   // a rotation keeps the norm of each head vector
            double a = 0, b = 0;
            for (int c = 0; c < d; c++) {
                a += (double)x[i * d + c] * x[i * d + c];
                b += (double)y[i * d + c] * y[i * d + c];
            }
            CHECK(b == doctest::Approx(a).epsilon(1e-5));
        }
        for (int c = 0; c < nh * d; c++) CHECK(y[c] == x[c]);   // position 0 is the identity
        std::vector<float> dx = r;
        rope_backward(dx.data(), cs.data(), sn.data(), B, T, nh, d);
        fd_check("rope dx", x, dx, loss);
    }
    // inv_freq against the transformers formulas evaluated in fp64 (fp32 rounding differences only).
    const std::vector<float> base = rope_inv_freq(d, 10000.0f, none), scaled = rope_inv_freq(d, 10000.0f, l3);
    for (int i = 0; i < d / 2; i++) {
        const double f = 1.0 / std::pow(10000.0, 2.0 * i / d);
        CHECK(base[i] == doctest::Approx(f).epsilon(1e-6));
        const double wl = 2 * M_PI / f, lo = 16.0 / 1, hi = 16.0 / 4;
        double e;
        if (wl < hi) e = f;
        else if (wl > lo) e = f / 8;
        else {
            const double s = (16.0 / wl - 1) / (4 - 1);
            e = (1 - s) * f / 8 + s * f;
        }
        CHECK(scaled[i] == doctest::Approx(e).epsilon(1e-5));
    }
}

TEST_CASE("attention with GQA: forward equals an fp64 reference, backward matches finite differences") {
    // T = 67 > the 64-row query block, so two blocks (one partial) are exercised; H = 4 query heads on KV = 2.
    AttnShape s;
    s.B = 1, s.T = 67, s.H = 4, s.KV = 2, s.d = 4;
    const size_t nq = (size_t)s.B * s.T * s.H * s.d, nk = (size_t)s.B * s.T * s.KV * s.d;
    std::vector<float> q = randu(nq, 6), k = randu(nk, 7), v = randu(nk, 8);
    const std::vector<float> r = randu(nq, 9);
    std::vector<float> out(nq), lse((size_t)s.B * s.H * s.T);
    auto loss = [&] {
        attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), s);
        return dot(out, r);
    };
    loss();
    const double scale = 1.0 / std::sqrt((double)s.d);
    for (int h = 0; h < s.H; h++) {
        const int kvh = h / (s.H / s.KV);
        for (int i = 0; i < s.T; i++) {
            std::vector<double> p(i + 1);
            double m = -1e300, sum = 0;
            for (int j = 0; j <= i; j++) {
                double dd = 0;
                for (int c = 0; c < s.d; c++) dd += (double)q[(i * s.H + h) * s.d + c] * k[(j * s.KV + kvh) * s.d + c];
                p[j] = dd * scale;
                m = std::max(m, p[j]);
            }
            for (int j = 0; j <= i; j++) sum += (p[j] = std::exp(p[j] - m));
            CHECK(lse[h * s.T + i] == doctest::Approx(m + std::log(sum)).epsilon(1e-5));
            for (int c = 0; c < s.d; c++) {
                double o = 0;
                for (int j = 0; j <= i; j++) o += p[j] / sum * v[(j * s.KV + kvh) * s.d + c];
                CHECK(std::fabs(out[(i * s.H + h) * s.d + c] - o) < 1e-5);
            }
        }
    }
    std::vector<float> dq(nq), dk(nk), dv(nk);
    attention_backward(dq.data(), dk.data(), dv.data(), r.data(), q.data(), k.data(), v.data(), out.data(),
                       lse.data(), s);
    fd_check("attention dq", q, dq, loss);
    fd_check("attention dk", k, dk, loss);
    fd_check("attention dv", v, dv, loss);
}

TEST_CASE("attention with a sliding window, soft-capping and a custom scale (Gemma-2/Mistral): fp64 forward, fd backward") {
    // T = 70 crosses the 64-row query block; the window 5 is shorter than the sequence, so rows see keys
    // (i - 4 .. i) only (transformers: kv_idx > q_idx - window); the cap 0.7 clips the scores of these inputs.
    for (const float cap : {0.0f, 0.7f}) {
        CAPTURE(cap);
        AttnShape s;
        s.B = 1, s.T = 70, s.H = 2, s.KV = 1, s.d = 4, s.window = 5, s.softcap = cap, s.scale = 0.9f;
        const size_t nq = (size_t)s.T * s.H * s.d, nk = (size_t)s.T * s.KV * s.d;
        std::vector<float> q = randu(nq, 31, -1.5f, 1.5f), k = randu(nk, 32, -1.5f, 1.5f), v = randu(nk, 33);
        const std::vector<float> r = randu(nq, 34);
        std::vector<float> out(nq), lse((size_t)s.H * s.T);
        auto loss = [&] {
            attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), s);
            return dot(out, r);
        };
        loss();
        double max_ratio = 0;
        for (int h = 0; h < s.H; h++) {
            for (int i = 0; i < s.T; i++) {
                const int j0 = std::max(0, i - s.window + 1);
                std::vector<double> p(i + 1, 0.0);
                double m = -1e300, sum = 0;
                for (int j = j0; j <= i; j++) {
                    double dd = 0;
                    for (int c = 0; c < s.d; c++) dd += (double)q[(i * s.H + h) * s.d + c] * k[j * s.d + c];
                    dd *= s.scale;
                    if (cap > 0) {
                        max_ratio = std::max(max_ratio, std::fabs(dd) / cap);
                        dd = cap * std::tanh(dd / cap);
                    }
                    p[j] = dd;
                    m = std::max(m, dd);
                }
                for (int j = j0; j <= i; j++) sum += (p[j] = std::exp(p[j] - m));
                CHECK(lse[h * s.T + i] == doctest::Approx(m + std::log(sum)).epsilon(1e-5));
                for (int c = 0; c < s.d; c++) {
                    double o = 0;
                    for (int j = j0; j <= i; j++) o += p[j] / sum * v[j * s.d + c];
                    CHECK(std::fabs(out[(i * s.H + h) * s.d + c] - o) < 1e-5);
                }
            }
        }
        if (cap > 0) CHECK(max_ratio > 1.5);   // the cap really clips
        std::vector<float> dq(nq), dk(nk), dv(nk);
        attention_backward(dq.data(), dk.data(), dv.data(), r.data(), q.data(), k.data(), v.data(), out.data(),
                           lse.data(), s);
        fd_check("windowed attention dq", q, dq, loss);
        fd_check("windowed attention dk", k, dk, loss);
        fd_check("windowed attention dv", v, dv, loss);
    }
}

TEST_CASE("attention with a document mask (packed rows): fp64 forward, fd backward, nothing leaks across documents") {
    // B = 2 packed rows of T = 70 (two query blocks): row 0 holds documents of 20, 25 and 25 tokens, row 1 one of 66
    // and one of 4, so a boundary falls inside the second, partial block. GQA (H = 4 on KV = 2); once with a window
    // of 9 and the soft-cap on top, so all three masks combine.
    const std::vector<std::pair<int, int>> docs[2] = {{{0, 20}, {20, 45}, {45, 70}}, {{0, 66}, {66, 70}}};
    for (const int window : {0, 9}) {
        CAPTURE(window);
        AttnShape s;
        s.B = 2, s.T = 70, s.H = 4, s.KV = 2, s.d = 4, s.window = window, s.softcap = window ? 0.8f : 0.0f;
        std::vector<int32_t> seg((size_t)s.B * s.T);
        for (int b = 0; b < s.B; b++)
            for (size_t n = 0; n < docs[b].size(); n++)
                for (int t = docs[b][n].first; t < docs[b][n].second; t++) seg[(size_t)b * s.T + t] = (int32_t)n;
        s.seg = seg.data();
        const int G = s.H / s.KV;
        const size_t nq = (size_t)s.B * s.T * s.H * s.d, nk = (size_t)s.B * s.T * s.KV * s.d;
        std::vector<float> q = randu(nq, 51, -1.5f, 1.5f), k = randu(nk, 52, -1.5f, 1.5f), v = randu(nk, 53);
        const std::vector<float> r = randu(nq, 54);
        std::vector<float> out(nq), lse((size_t)s.B * s.H * s.T);
        auto loss = [&] {
            attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), s);
            return dot(out, r);
        };
        loss();
        const double scale = 1.0 / std::sqrt((double)s.d);
        for (int b = 0; b < s.B; b++)
            for (int h = 0; h < s.H; h++)
                for (int i = 0; i < s.T; i++) {
                    // fp64: keys j <= i of i's own document (and inside the window).
                    std::vector<double> p(i + 1, 0.0);
                    std::vector<bool> vis(i + 1, false);
                    double m = -1e300, sum = 0;
                    for (int j = 0; j <= i; j++) {
                        vis[j] = seg[b * s.T + j] == seg[b * s.T + i] && (window == 0 || i - j < window);
                        if (!vis[j]) continue;
                        double dd = 0;
                        for (int c = 0; c < s.d; c++)
                            dd += (double)q[((b * s.T + i) * s.H + h) * s.d + c] * k[((b * s.T + j) * s.KV + h / G) * s.d + c];
                        dd *= scale;
                        if (s.softcap > 0) dd = s.softcap * std::tanh(dd / s.softcap);
                        m = std::max(m, p[j] = dd);
                    }
                    for (int j = 0; j <= i; j++)
                        if (vis[j]) sum += (p[j] = std::exp(p[j] - m));
                    CHECK(lse[(b * s.H + h) * s.T + i] == doctest::Approx(m + std::log(sum)).epsilon(1e-5));
                    for (int c = 0; c < s.d; c++) {
                        double o = 0;
                        for (int j = 0; j <= i; j++)
                            if (vis[j]) o += p[j] / sum * v[((b * s.T + j) * s.KV + h / G) * s.d + c];
                        CHECK(std::fabs(out[((b * s.T + i) * s.H + h) * s.d + c] - o) < 1e-5);
                    }
                }
        std::vector<float> dq(nq), dk(nk), dv(nk);
        attention_backward(dq.data(), dk.data(), dv.data(), r.data(), q.data(), k.data(), v.data(), out.data(),
                           lse.data(), s);
        fd_check("document-masked attention dq", q, dq, loss);
        fd_check("document-masked attention dk", k, dk, loss);
        fd_check("document-masked attention dv", v, dv, loss);
        // A change to the values of row 0's first document moves no output of its other documents.
        loss();   // fd_check left `out` at its last perturbed input
        const std::vector<float> before = out;
        for (int t = 0; t < 20; t++)
            for (int c = 0; c < s.KV * s.d; c++) v[(size_t)t * s.KV * s.d + c] += 0.5f;
        loss();
        for (size_t e = (size_t)20 * s.H * s.d; e < nq; e++) REQUIRE(out[e] == before[e]);
    }
}

TEST_CASE("rope with per-document positions equals rotating each document alone") {
    // Packed row [doc of 5 | doc of 3 | doc of 4]: positions 0..4, 0..2, 0..3; forward and backward with pos give
    // the same numbers as each document rotated by positions 0..len-1 on its own.
    const int T = 12, nh = 2, d = 6;
    const std::vector<int32_t> seg = {0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2};
    std::vector<int32_t> pos(T);
    CHECK(positions_from_segments(pos.data(), seg.data(), 1, T) == 5);
    CHECK(pos == std::vector<int32_t>{0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3});
    const std::vector<float> inv = rope_inv_freq(d, 10000.0f, RopeScaling{});
    std::vector<float> cs((size_t)T * d / 2), sn((size_t)T * d / 2);
    rope_tables(cs.data(), sn.data(), inv.data(), T, d);
    const std::vector<float> x = randu((size_t)T * nh * d, 61);
    for (const bool bwd : {false, true}) {
        std::vector<float> packed = x;
        (bwd ? rope_backward : rope_forward)(packed.data(), cs.data(), sn.data(), 1, T, nh, d, pos.data());
        for (const auto& [t0, len] : {std::pair{0, 5}, {5, 3}, {8, 4}}) {
            std::vector<float> alone(x.begin() + (size_t)t0 * nh * d, x.begin() + (size_t)(t0 + len) * nh * d);
            (bwd ? rope_backward : rope_forward)(alone.data(), cs.data(), sn.data(), 1, len, nh, d, nullptr);
            for (size_t e = 0; e < alone.size(); e++) REQUIRE(packed[(size_t)t0 * nh * d + e] == alone[e]);
        }
    }
}

TEST_CASE("cross-entropy with final logit soft-capping (Gemma-2): fp64 loss, fd dh") {
    const int N = 7, C = 5, V = 9;
    std::vector<float> h = randu((size_t)N * C, 41, -2, 2), W = randu((size_t)V * C, 42, -2, 2);
    const std::vector<int32_t> tgt = {3, -100, 0, 8, 5, 1, 2};
    const float cap = 1.5f;
    LossWorkspace ws;
    auto loss = [&] {
        return cross_entropy_chunked(h.data(), W.data(), tgt.data(), N, C, V, 4, 1.0f, nullptr, ws, cap).loss_sum;
    };
    double ref = 0, max_ratio = 0;
    for (int n = 0; n < N; n++) {
        if (tgt[n] < 0) continue;
        std::vector<double> l(V);
        double m = -1e300, s = 0;
        for (int v = 0; v < V; v++) {
            double a = 0;
            for (int c = 0; c < C; c++) a += (double)h[n * C + c] * W[v * C + c];
            max_ratio = std::max(max_ratio, std::fabs(a) / cap);
            l[v] = cap * std::tanh(a / cap);
            m = std::max(m, l[v]);
        }
        for (int v = 0; v < V; v++) s += std::exp(l[v] - m);
        ref += m + std::log(s) - l[tgt[n]];
    }
    CHECK(max_ratio > 1.5);
    std::vector<float> dh((size_t)N * C);
    const LossOut lo = cross_entropy_chunked(h.data(), W.data(), tgt.data(), N, C, V, 4, 1.0f, dh.data(), ws, cap);
    CHECK(lo.loss_sum == doctest::Approx(ref).epsilon(1e-5));
    fd_check("capped cross-entropy dh", h, dh, loss);
    std::vector<float> lg = {-10.0f, 0.0f, 0.3f, 10.0f};
    softcap_logits(lg.data(), 4, cap);
    CHECK(lg[0] == doctest::Approx(-cap * std::tanh(10.0 / cap)));
    CHECK(lg[2] == doctest::Approx(cap * std::tanh(0.3 / cap)));
}

TEST_CASE("RoPE linear and LongRoPE inverse frequencies and tables (transformers' formulas)") {
    const int d = 8;
    RopeScaling lin;
    lin.type = "linear";
    lin.factor = 8.0f;
    const std::vector<float> base = rope_inv_freq(d, 1e6f, RopeScaling{}), l8 = rope_inv_freq(d, 1e6f, lin);
    for (int i = 0; i < d / 2; i++) CHECK(l8[i] == base[i] / 8.0f);
    RopeScaling lr;
    lr.type = "longrope";
    lr.short_factor = {1.0f, 1.1f, 1.2f, 1.3f};
    lr.long_factor = {1.0f, 2.0f, 4.0f, 8.0f};
    lr.original_max_position_embeddings = 8;
    lr.attention_factor = 1.4142135f;
    CHECK(rope_depends_on_length(lr));
    CHECK_FALSE(rope_depends_on_length(lin));
    const std::vector<float> s6 = rope_inv_freq(d, 1e4f, lr, 8), l9 = rope_inv_freq(d, 1e4f, lr, 9);
    for (int i = 0; i < d / 2; i++) {
        const double p = std::pow(1e4, 2.0 * i / d);
        CHECK(s6[i] == doctest::Approx(1.0 / (lr.short_factor[i] * p)).epsilon(1e-6));   // T <= original: short
        CHECK(l9[i] == doctest::Approx(1.0 / (lr.long_factor[i] * p)).epsilon(1e-6));    // T > original: long
    }
    std::vector<float> cs(9 * d / 2), sn(9 * d / 2);
    rope_tables(cs.data(), sn.data(), l9.data(), 9, d, rope_attention_scale(lr));
    CHECK(cs[0] == doctest::Approx(1.4142135));   // cos(0) · attention_factor
    CHECK(sn[5 * d / 2 + 1] == doctest::Approx(1.4142135 * std::sin(5.0 * l9[1])).epsilon(1e-6));
}

TEST_CASE("SwiGLU and GeGLU(tanh) backward match finite differences") {
    const int n = 40;
    for (Act act : {Act::SiLU, Act::GeluTanh}) {
        CAPTURE((int)act);
        std::vector<float> g = randu(n, 10, -3, 3), u = randu(n, 11);
        const std::vector<float> r = randu(n, 12);
        std::vector<float> h(n);
        auto loss = [&] {
            glu_forward(h.data(), g.data(), u.data(), n, act);
            return dot(h, r);
        };
        loss();
        for (int i = 0; i < n; i++) {   // forward against the fp64 formulas
            const double x = g[i];
            const double gelu = 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
            const double a = act == Act::SiLU ? x / (1 + std::exp(-x)) : gelu;
            CHECK(h[i] == doctest::Approx(a * u[i]).epsilon(1e-5));
        }
        std::vector<float> dg(n), du(n);
        glu_backward(dg.data(), du.data(), r.data(), g.data(), u.data(), n, act);
        fd_check("glu dgate", g, dg, loss);
        fd_check("glu dup", u, du, loss);
    }
}

TEST_CASE("hierarchical LoRA linear: dx, dA, dB match finite differences (levels, scales, NF4, dropout)") {
    const int in = 64, out = 10, N = 5;
    const std::vector<int> ranks = {4, 2, 3};
    const std::vector<float> alphas = {8, 2, 9};   // scales 2, 1, 3
    for (int variant = 0; variant < 4; variant++) {
        // 0: fp32 W, all levels; 1: NF4 W; 2: dropout 0.3; 3: only the first 2 levels active
        CAPTURE(variant);
        HLoraLinear L;
        L.in = in, L.out = out;
        std::vector<float> w = randu((size_t)out * in, 13, -0.3f, 0.3f);
        if (variant == 1) {
            L.quantized = true;
            L.wq = nf4_quantize(w.data(), out, in, 64, true);
        } else {
            L.w = w;
        }
        L.rank = ranks;
        L.offset = {0};
        for (size_t j = 0; j < ranks.size(); j++) {
            L.offset.push_back(L.offset.back() + ranks[j]);
            for (int i = 0; i < ranks[j]; i++) L.scale.push_back(alphas[j] / ranks[j]);
        }
        L.R = L.offset.back();
        std::vector<float> A = randu((size_t)L.R * in, 14, -0.2f, 0.2f), B = randu((size_t)out * L.R, 15);
        std::vector<float> dA(A.size(), 0.0f), dB(B.size(), 0.0f);
        L.A = A.data(), L.B = B.data(), L.dA = dA.data(), L.dB = dB.data();
        HLoraRun run;
        run.levels = variant == 3 ? 2 : 3;
        run.dropout = variant == 2 ? 0.3f : 0.0f;
        run.mask_key = 77;
        HLoraWorkspace ws;
        std::vector<float> x = randu((size_t)N * in, 16);
        const std::vector<float> r = randu((size_t)N * out, 17);
        std::vector<float> y((size_t)N * out), z((size_t)N * L.R);
        auto loss = [&] {
            hlora_forward(L, run, x.data(), N, y.data(), z.data(), ws);
            return dot(y, r);
        };
        loss();
        std::vector<float> dx((size_t)N * in, 0.0f);
        hlora_backward(L, run, x.data(), z.data(), r.data(), N, dx.data(), false, ws);
        fd_check("hlora dx", x, dx, loss);
        std::vector<float> dA_act(dA.begin(), dA.begin() + (size_t)L.offset[run.levels] * in);
        std::vector<float> A_act(A.begin(), A.begin() + (size_t)L.offset[run.levels] * in);
        // FD on the active rows of A through a copy that is written back before each evaluation
        auto loss_A = [&] {
            std::copy(A_act.begin(), A_act.end(), A.begin());
            return loss();
        };
        fd_check("hlora dA", A_act, dA_act, loss_A);
        std::copy(A_act.begin(), A_act.end(), A.begin());   // undo the last perturbation left in A
        fd_check("hlora dB", B, dB, loss);
        if (variant == 3) {   // inactive level: no gradient, and B's inactive columns get none either
            for (size_t i = (size_t)L.offset[2] * in; i < dA.size(); i++) CHECK(dA[i] == 0.0f);
            for (int o = 0; o < out; o++)
                for (int c = L.offset[2]; c < L.R; c++) CHECK(dB[(size_t)o * L.R + c] == 0.0f);
        }
        // accumulate = true adds to dx (z from a fresh forward: the FD loop overwrote it)
        loss();
        std::vector<float> dx2((size_t)N * in, 1.0f);
        hlora_backward(L, run, x.data(), z.data(), r.data(), N, dx2.data(), true, ws);
        for (size_t i = 0; i < dx.size(); i++) CHECK(dx2[i] == doctest::Approx(dx[i] + 1.0f).epsilon(1e-6));
    }
}

TEST_CASE("chunked cross-entropy: loss equals the fp64 reference, dh matches finite differences") {
    const int N = 11, C = 6, V = 9;
    std::vector<float> h = randu((size_t)N * C, 18), W = randu((size_t)V * C, 19);
    const std::vector<int32_t> tgt = {3, -100, 0, 8, 5, -100, -100, 1, 2, 7, 4};   // 8 targets
    const float gs = 0.5f;
    for (int chunk : {3, 4, 100}) {   // 4 does not divide the 8 targets + ignored rows evenly; 100 > N
        CAPTURE(chunk);
        LossWorkspace ws;
        auto loss = [&] {
            return cross_entropy_chunked(h.data(), W.data(), tgt.data(), N, C, V, chunk, gs, nullptr, ws).loss_sum;
        };
        double ref = 0;
        int cnt = 0;
        for (int n = 0; n < N; n++) {
            if (tgt[n] < 0) continue;
            std::vector<double> l(V);
            double m = -1e300, s = 0;
            for (int v = 0; v < V; v++) {
                double a = 0;
                for (int c = 0; c < C; c++) a += (double)h[n * C + c] * W[v * C + c];
                l[v] = a;
                m = std::max(m, a);
            }
            for (int v = 0; v < V; v++) s += std::exp(l[v] - m);
            ref += m + std::log(s) - l[tgt[n]];
            cnt++;
        }
        std::vector<float> dh((size_t)N * C, 42.0f);
        const LossOut lo = cross_entropy_chunked(h.data(), W.data(), tgt.data(), N, C, V, chunk, gs, dh.data(), ws);
        CHECK(lo.n_tokens == cnt);
        CHECK(lo.loss_sum == doctest::Approx(ref).epsilon(1e-6));
        for (int n : {1, 5, 6})
            for (int c = 0; c < C; c++) CHECK(dh[n * C + c] == 0.0f);   // ignored rows get no gradient
        std::vector<float> dh_unscaled(dh.size());
        for (size_t i = 0; i < dh.size(); i++) dh_unscaled[i] = dh[i] / gs;
        fd_check("cross-entropy dh", h, dh_unscaled, loss);
    }
    std::vector<int32_t> t(4), labels = {5, 6, 7, 8};
    shift_labels(t.data(), labels.data(), 2, 2);
    CHECK(t == std::vector<int32_t>{6, -100, 8, -100});
    LossWorkspace ws;
    std::vector<int32_t> badt = {3, 9};
    CHECK_THROWS_AS(cross_entropy_chunked(h.data(), W.data(), badt.data(), 2, C, V, 4, 1.0f, nullptr, ws), hq::Error);
}

TEST_CASE("embedding (LLaMA and Gemma scale) backward matches finite differences") {
    const int V = 7, C = 5, N = 6;
    const std::vector<int32_t> ids = {3, 1, 3, 0, 6, 3};   // repeated ids accumulate
    for (bool gemma : {false, true}) {
        const float scale = embedding_scale(gemma, C);
        CHECK(scale == (gemma ? (float)std::sqrt(5.0) : 1.0f));
        std::vector<float> E = randu((size_t)V * C, 20);
        const std::vector<float> r = randu((size_t)N * C, 21);
        std::vector<float> x((size_t)N * C);
        auto loss = [&] {
            embedding_forward(x.data(), E.data(), ids.data(), N, C, V, scale);
            return dot(x, r);
        };
        std::vector<float> dE(E.size(), 0.0f);
        embedding_backward(dE.data(), r.data(), ids.data(), N, C, scale);
        // rows 2, 4, 5 are never looked up: their gradient is exactly 0, which fd_check's non-vacuity test allows
        fd_check("embedding dE", E, dE, loss);
    }
    std::vector<float> E(V * C), x(C);
    const int32_t bad = V;
    CHECK_THROWS_AS(embedding_forward(x.data(), E.data(), &bad, 1, C, V, 1.0f), hq::Error);
}

// ---- whole model ------------------------------------------------------------------------------------------------

namespace {

// Writes a tiny random LLaMA or Gemma checkpoint (F32, single file) to dir.
void write_tiny_model(const std::string& dir, bool gemma, uint64_t seed) {
    const int V = 23, C = 16, F = 24, L = 2, H = 4, KV = 2, d = 4;
    make_dirs(dir);
    nlohmann::json cfg = {{"model_type", gemma ? "gemma" : "llama"}, {"vocab_size", V}, {"hidden_size", C},
                          {"intermediate_size", F}, {"num_hidden_layers", L}, {"num_attention_heads", H},
                          {"num_key_value_heads", KV}, {"head_dim", d}, {"rms_norm_eps", 1e-5},
                          {"rope_theta", 10000.0}, {"tie_word_embeddings", gemma},
                          {"hidden_act", gemma ? "gelu_pytorch_tanh" : "silu"}};
    write_file_atomic(path_join(dir, "config.json"), cfg.dump(2));
    SafeTensorsWriter w;
    uint64_t s = seed;
    auto add = [&](const std::string& name, std::vector<int64_t> shape, float lo, float hi) {
        size_t n = 1;
        for (int64_t x : shape) n *= (size_t)x;
        const std::vector<float> v = randu(n, s++, lo, hi);
        w.add_f32(name, shape, v.data());
    };
    add("model.embed_tokens.weight", {V, C}, -1, 1);
    add("model.norm.weight", {C}, gemma ? -0.3f : 0.7f, gemma ? 0.3f : 1.3f);
    if (!gemma) add("lm_head.weight", {V, C}, -0.5f, 0.5f);
    for (int l = 0; l < L; l++) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        add(p + "input_layernorm.weight", {C}, gemma ? -0.3f : 0.7f, gemma ? 0.3f : 1.3f);
        add(p + "post_attention_layernorm.weight", {C}, gemma ? -0.3f : 0.7f, gemma ? 0.3f : 1.3f);
        add(p + "self_attn.q_proj.weight", {H * d, C}, -0.4f, 0.4f);
        add(p + "self_attn.k_proj.weight", {KV * d, C}, -0.4f, 0.4f);
        add(p + "self_attn.v_proj.weight", {KV * d, C}, -0.4f, 0.4f);
        add(p + "self_attn.o_proj.weight", {C, H * d}, -0.4f, 0.4f);
        add(p + "mlp.gate_proj.weight", {F, C}, -0.4f, 0.4f);
        add(p + "mlp.up_proj.weight", {F, C}, -0.4f, 0.4f);
        add(p + "mlp.down_proj.weight", {C, F}, -0.3f, 0.3f);
    }
    w.write_atomic(path_join(dir, "model.safetensors"));
}

// A tiny random checkpoint of one of the issue-15 families, with each family's special layers switched on at sizes
// where they act on T = 5: window 3, soft-caps that clip, a local and a global layer, LongRoPE past original 4.
void write_tiny_family(const std::string& dir, const std::string& family, uint64_t seed) {
    const int V = 23, C = 16, F = 24, L = 2, H = 4, KV = 2, d = 4;
    const bool gemma = family == "gemma2" || family == "gemma3_text";
    make_dirs(dir);
    nlohmann::json cfg = {{"model_type", family}, {"vocab_size", V}, {"hidden_size", C},
                          {"intermediate_size", F}, {"num_hidden_layers", L}, {"num_attention_heads", H},
                          {"num_key_value_heads", KV}, {"head_dim", d}, {"rms_norm_eps", 1e-5},
                          {"rope_theta", 10000.0}, {"tie_word_embeddings", gemma}, {"max_position_embeddings", 16},
                          {"hidden_act", gemma ? "gelu_pytorch_tanh" : "silu"}};
    if (family == "mistral") cfg["sliding_window"] = 3;
    if (family == "gemma2") {
        cfg["sliding_window"] = 3;
        cfg["attn_logit_softcapping"] = 0.5;
        cfg["final_logit_softcapping"] = 1.5;
        cfg["query_pre_attn_scalar"] = 6;
    }
    if (family == "gemma3_text") {
        cfg["sliding_window"] = 3;
        cfg["layer_types"] = {"sliding_attention", "full_attention"};
        cfg["rope_local_base_freq"] = 100.0;
        cfg["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 4.0}};
        cfg["query_pre_attn_scalar"] = 4;
    }
    if (family == "phi3") {
        cfg["original_max_position_embeddings"] = 4;
        cfg["rope_scaling"] = {{"type", "longrope"}, {"short_factor", {1.0, 1.5}}, {"long_factor", {1.2, 3.0}}};
    }
    write_file_atomic(path_join(dir, "config.json"), cfg.dump(2));
    SafeTensorsWriter w;
    uint64_t s = seed;
    auto add = [&](const std::string& name, std::vector<int64_t> shape, float lo, float hi) {
        size_t n = 1;
        for (int64_t x : shape) n *= (size_t)x;
        const std::vector<float> v = randu(n, s++, lo, hi);
        w.add_f32(name, shape, v.data());
    };
    const float nlo = gemma ? -0.3f : 0.7f, nhi = gemma ? 0.3f : 1.3f;
    add("model.embed_tokens.weight", {V, C}, -1, 1);
    add("model.norm.weight", {C}, nlo, nhi);
    if (!gemma) add("lm_head.weight", {V, C}, -0.5f, 0.5f);
    for (int l = 0; l < L; l++) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        add(p + "input_layernorm.weight", {C}, nlo, nhi);
        add(p + "post_attention_layernorm.weight", {C}, nlo, nhi);
        if (gemma) {
            add(p + "pre_feedforward_layernorm.weight", {C}, nlo, nhi);
            add(p + "post_feedforward_layernorm.weight", {C}, nlo, nhi);
        }
        if (family == "qwen3" || family == "gemma3_text") {
            add(p + "self_attn.q_norm.weight", {d}, nlo, nhi);
            add(p + "self_attn.k_norm.weight", {d}, nlo, nhi);
        }
        if (family == "qwen2") {
            add(p + "self_attn.q_proj.bias", {H * d}, -0.5f, 0.5f);
            add(p + "self_attn.k_proj.bias", {KV * d}, -0.5f, 0.5f);
            add(p + "self_attn.v_proj.bias", {KV * d}, -0.5f, 0.5f);
        }
        if (family == "phi3") {
            add(p + "self_attn.qkv_proj.weight", {(H + 2 * KV) * d, C}, -0.4f, 0.4f);
            add(p + "mlp.gate_up_proj.weight", {2 * F, C}, -0.4f, 0.4f);
        } else {
            add(p + "self_attn.q_proj.weight", {H * d, C}, -0.8f, 0.8f);
            add(p + "self_attn.k_proj.weight", {KV * d, C}, -0.8f, 0.8f);
            add(p + "self_attn.v_proj.weight", {KV * d, C}, -0.4f, 0.4f);
            add(p + "mlp.gate_proj.weight", {F, C}, -0.4f, 0.4f);
            add(p + "mlp.up_proj.weight", {F, C}, -0.4f, 0.4f);
        }
        add(p + "self_attn.o_proj.weight", {C, H * d}, -0.4f, 0.4f);
        add(p + "mlp.down_proj.weight", {C, F}, -0.3f, 0.3f);
    }
    w.write_atomic(path_join(dir, "model.safetensors"));
}

}  // namespace

TEST_CASE("whole model: d(mean loss)/d(A, B) matches finite differences (LLaMA + Gemma, nonzero B)") {
    for (bool gemma : {false, true}) {
        CAPTURE(gemma);
        const std::string dir = std::string("/tmp/hq_gradcheck_model_") + (gemma ? "gemma" : "llama");
        remove_all(dir);
        write_tiny_model(dir, gemma, 100);
        QuantSpec q;
        q.type = gemma ? "nf4" : "none";   // NF4 only changes the frozen W
        q.blocksize = 64;
        AdapterSpec a;
        a.levels = {{4, 8}, {2, 2}, {2, 6}};
        auto m = Model::load(dir, q, a, 5);
        m->set_loss_chunk_rows(3);
        for (Param& p : m->params())   // nonzero B so that dA is nonzero too
            if (p.name.find("lora_B") != std::string::npos) {
                const std::vector<float> v = randu(p.numel, std::hash<std::string>()(p.name), -0.3f, 0.3f);
                std::copy(v.begin(), v.end(), p.w);
            }
        const int B = 2, T = 5;
        const std::vector<int32_t> ids = {1, 5, 9, 22, 3, 7, 7, 0, 14, 2};
        const std::vector<int32_t> labels = {1, 5, -100, 22, 3, 7, 7, 0, -100, 2};
        m->zero_grad();
        const LossOut lo = m->forward_backward(ids.data(), labels.data(), B, T, true, 1.0f);
        REQUIRE(lo.n_tokens == 6);
        const float gs = 1.0f / (float)lo.n_tokens;
        m->zero_grad();
        m->forward_backward(ids.data(), labels.data(), B, T, true, gs);
        auto mean_loss = [&] {
            const LossOut o = m->forward_backward(ids.data(), labels.data(), B, T, false, 0.0f);
            return o.loss_sum / (double)o.n_tokens;
        };
        std::mt19937_64 g(7);
        int checked = 0, bad = 0;
        double max_grad = 0;
        for (Param& p : m->params()) {
            for (int k = 0; k < 3; k++) {
                const size_t i = g() % p.numel;
                const float w0 = p.w[i];
                p.w[i] = w0 + kEps;
                const double lp = mean_loss();
                p.w[i] = w0 - kEps;
                const double lm = mean_loss();
                p.w[i] = w0;
                const double fd = (lp - lm) / (2.0 * kEps), an = p.g[i];
                max_grad = std::max(max_grad, std::fabs(an));
                if (std::fabs(fd - an) > 2e-4 + kRtol * std::max(std::fabs(fd), std::fabs(an))) {
                    MESSAGE(p.name << "[" << i << "]: analytic " << an << " vs fd " << fd);
                    bad++;
                }
                checked++;
            }
        }
        CHECK(checked == 2 * 7 * 2 * 3);
        CHECK(bad == 0);
        CHECK(max_grad > 1e-2);   // the sampled gradients are not all ~0
        remove_all(dir);
    }
}

TEST_CASE("whole model, the issue-15 families: d(mean loss)/d(A, B) matches finite differences, with and without "
          "gradient checkpointing") {
    for (const char* family : {"qwen2", "qwen3", "mistral", "gemma2", "gemma3_text", "phi3"}) {
        CAPTURE(family);
        const std::string dir = std::string("/tmp/hq_gradcheck_family_") + family;
        remove_all(dir);
        write_tiny_family(dir, family, 300);
        QuantSpec q;
        q.type = "none";
        AdapterSpec a;
        a.levels = {{2, 4}, {2, 6}};
        auto m = Model::load(dir, q, a, 5);
        m->set_loss_chunk_rows(3);
        for (Param& p : m->params())
            if (p.name.find("lora_B") != std::string::npos) {
                const std::vector<float> v = randu(p.numel, std::hash<std::string>()(p.name), -0.3f, 0.3f);
                std::copy(v.begin(), v.end(), p.w);
            }
        const int B = 2, T = 5;
        const std::vector<int32_t> ids = {1, 5, 9, 22, 3, 7, 7, 0, 14, 2};
        const std::vector<int32_t> labels = {1, 5, -100, 22, 3, 7, 7, 0, -100, 2};
        auto mean_loss = [&] {
            const LossOut o = m->forward_backward(ids.data(), labels.data(), B, T, false, 0.0f);
            return o.loss_sum / (double)o.n_tokens;
        };
        std::vector<float> g_plain;
        for (bool ckpt : {false, true}) {
            m->set_gradient_checkpointing(ckpt);
            m->zero_grad();
            m->forward_backward(ids.data(), labels.data(), B, T, true, 1.0f / 6.0f);
            std::vector<float> g;
            for (Param& p : m->params()) g.insert(g.end(), p.g, p.g + p.numel);
            if (!ckpt) g_plain = g;
            else CHECK(g == g_plain);   // the recompute gives the same gradients bit for bit
        }
        std::mt19937_64 g(11);
        int bad = 0;
        double max_grad = 0;
        for (Param& p : m->params()) {
            for (int k = 0; k < 3; k++) {
                const size_t i = g() % p.numel;
                const float w0 = p.w[i];
                p.w[i] = w0 + kEps;
                const double lp = mean_loss();
                p.w[i] = w0 - kEps;
                const double lm = mean_loss();
                p.w[i] = w0;
                const double fd = (lp - lm) / (2.0 * kEps), an = p.g[i];
                max_grad = std::max(max_grad, std::fabs(an));
                if (std::fabs(fd - an) > 2e-4 + kRtol * std::max(std::fabs(fd), std::fabs(an))) {
                    MESSAGE(p.name << "[" << i << "]: analytic " << an << " vs fd " << fd);
                    bad++;
                }
            }
        }
        CHECK(bad == 0);
        CHECK(max_grad > 1e-2);
        remove_all(dir);
    }
}
