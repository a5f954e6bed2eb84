// test_optimizer.cpp — AdamW against a reference, clipping, learning-rate schedules.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "error.h"
#include "optimizer.h"

using namespace hq;

namespace {
Param make_param(const char* name, std::vector<float>& w, std::vector<float>& g) {
    Param p;
    p.name = name;
    p.shape = {static_cast<int64_t>(w.size())};
    p.w = w.data();
    p.g = g.data();
    p.numel = w.size();
    return p;
}
}  // namespace

TEST_CASE("AdamW matches the torch single-tensor fp32 reference bit for bit over 3 steps with weight decay") {
    // Expected values: torch.optim.AdamW(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, foreach=False)
    // arithmetic replayed in numpy float32 op by op (see optimizer.h for the order); step 1 also checked by hand:
    // m̂ = g, v̂ = g², so p1 = p0·(1 − lr·wd) − lr·sign(g) = 0.5·0.999 − 0.01 = 0.4895.
    std::vector<float> w = {0.5f, -1.0f, 2.0f}, g(3);
    std::vector<Param> params = {make_param("p", w, g)};
    AdamW opt(params, {1e-2, 0.9, 0.999, 1e-8, 0.1});
    const float grads[3][3] = {{0.1f, -0.2f, 0.3f}, {-0.05f, 0.4f, 0.0f}, {0.2f, 0.2f, -0.1f}};
    const float expect[3][3] = {{0x1.f53f7ep-2f, -0x1.fa5e36p-1f, 0x1.fced92p+0f},
                                {0x1.f204fcp-2f, -0x1.fbbc72p-1f, 0x1.fab428p+0f},
                                {0x1.eac84ap-2f, -0x1.fde30cp-1f, 0x1.f974f6p+0f}};
    for (int s = 0; s < 3; ++s) {
        for (int k = 0; k < 3; ++k) g[k] = grads[s][k];
        opt.step(1e-2);
        CHECK(opt.t == s + 1);
        for (int k = 0; k < 3; ++k) CHECK(w[k] == expect[s][k]);
    }
    CHECK(std::fabs(w[0] - 0.47927966713905334) < 1e-9);
    CHECK(opt.m[0][0] == doctest::Approx(0.0236).epsilon(1e-5));
    CHECK(opt.v[0][1] == doctest::Approx(0.00023976006).epsilon(1e-5));
}

TEST_CASE("AdamW first step without weight decay moves every weight by lr in the direction -sign(g)") {
    std::vector<float> w = {1.0f, 1.0f, 1.0f, 1.0f}, g = {1e-3f, -5.0f, 0.25f, 0.0f};
    std::vector<Param> params = {make_param("p", w, g)};
    AdamW opt(params, {});
    opt.step(1e-3);
    CHECK(w[0] == doctest::Approx(1.0 - 1e-3).epsilon(1e-6));
    CHECK(w[1] == doctest::Approx(1.0 + 1e-3).epsilon(1e-6));
    CHECK(w[2] == doctest::Approx(1.0 - 1e-3).epsilon(1e-6));
    CHECK(w[3] == 1.0f);   // zero gradient, zero moments: no update
}

TEST_CASE("clip_grad_norm: global L2 over all params, torch clip_coef") {
    std::vector<float> w1(2), g1 = {3.0f, 0.0f}, w2(1), g2 = {4.0f};
    std::vector<Param> params = {make_param("a", w1, g1), make_param("b", w2, g2)};
    float n = clip_grad_norm(params, 1.0f);
    CHECK(n == 5.0f);
    const float coef = 1.0f / (5.0f + 1e-6f);
    CHECK(g1[0] == 3.0f * coef);
    CHECK(g2[0] == 4.0f * coef);
    // Norm below max: untouched, and the returned norm is the pre-clip one.
    float n2 = clip_grad_norm(params, 10.0f);
    CHECK(n2 == doctest::Approx(1.0).epsilon(1e-5));
    CHECK(g1[0] == 3.0f * coef);
    // max_norm 0 = report only.
    g1 = {30.0f, 40.0f};
    CHECK(clip_grad_norm(params, 0.0f) == doctest::Approx(std::sqrt(2500.0 + 16.0 * coef * coef)).epsilon(1e-6));
    CHECK(g1[0] == 30.0f);
}

TEST_CASE("params_finite detects NaN and Inf weights") {
    std::vector<float> w = {1.0f, 2.0f}, g(2);
    std::vector<Param> params = {make_param("a", w, g)};
    CHECK(params_finite(params));
    w[1] = INFINITY;
    CHECK_FALSE(params_finite(params));
    w[1] = NAN;
    CHECK_FALSE(params_finite(params));
}

TEST_CASE("schedules: constant, linear, cosine, each with linear warmup") {
    ScheduleConfig c{"constant", 1.0, 0, 100};
    CHECK(lr_at(c, 0) == 1.0);
    CHECK(lr_at(c, 99) == 1.0);
    c.warmup_steps = 10;
    CHECK(lr_at(c, 0) == 0.0);
    CHECK(lr_at(c, 5) == doctest::Approx(0.5));
    CHECK(lr_at(c, 10) == 1.0);
    CHECK(lr_at(c, 80) == 1.0);

    ScheduleConfig l{"linear", 2.0, 10, 100};
    CHECK(lr_at(l, 0) == 0.0);
    CHECK(lr_at(l, 4) == doctest::Approx(0.8));
    CHECK(lr_at(l, 10) == doctest::Approx(2.0));
    CHECK(lr_at(l, 55) == doctest::Approx(1.0));
    CHECK(lr_at(l, 100) == 0.0);
    l.warmup_steps = 0;
    CHECK(lr_at(l, 0) == 2.0);
    CHECK(lr_at(l, 50) == doctest::Approx(1.0));

    ScheduleConfig cs{"cosine", 1.0, 10, 110};
    CHECK(lr_at(cs, 5) == doctest::Approx(0.5));
    CHECK(lr_at(cs, 10) == doctest::Approx(1.0));
    CHECK(lr_at(cs, 60) == doctest::Approx(0.5));
    CHECK(lr_at(cs, 35) == doctest::Approx(0.5 * (1 + std::cos(M_PI * 0.25))));
    CHECK(lr_at(cs, 110) == doctest::Approx(0.0));
    cs.warmup_steps = 0;
    CHECK(lr_at(cs, 0) == 1.0);

    ScheduleConfig bad{"exponential", 1.0, 0, 10};
    CHECK_THROWS_AS(lr_at(bad, 1), hq::Error);
}

TEST_CASE("warmup from ratio rounds up like transformers") {
    CHECK(resolve_warmup_steps(0, 0.03, 1875) == 57);
    CHECK(resolve_warmup_steps(5, 0.5, 100) == 5);
    CHECK(resolve_warmup_steps(0, 0.0, 100) == 0);
}
