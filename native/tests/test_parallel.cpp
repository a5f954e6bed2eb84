// test_parallel.cpp — the threaded paths of the CPU trainer, which the other tests' tiny shapes keep serial:
// par_sgemm's N / M / K splits against an fp64 reference (every transpose, beta 0 and 1, padded leading dims),
// and model calls large enough to use several threads: repeat and checkpointing on/off bit-exact, one thread vs two
// within tolerance, forward_logits_at equal to the matching rows of forward_logits.
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "error.h"
#include "hlora.h"
#include "model.h"

using namespace hq;

namespace {

const std::string kTiny = std::string(HQ_REPO_ROOT) + "/test/fixtures/models/tiny-llama";

std::vector<float> randn(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = nd(rng);
    return v;
}

void check_gemm(int M, int N, int K, bool ta, bool tb, float beta) {
    CAPTURE(M);
    CAPTURE(N);
    CAPTURE(K);
    CAPTURE(ta);
    CAPTURE(tb);
    CAPTURE(beta);
    const int pad = 3;
    const int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    const std::vector<float> A = randn((size_t)(ta ? K : M) * lda, 1), B = randn((size_t)(tb ? N : K) * ldb, 2);
    std::vector<float> C0 = randn((size_t)M * ldc, 3);
    if (beta == 0.0f) C0.assign(C0.size(), std::numeric_limits<float>::quiet_NaN());   // beta 0: C is not read
    auto a = [&](int i, int k) { return (double)(ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]); };
    auto b = [&](int k, int j) { return (double)(tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]); };
    std::vector<float> C = C0, C2 = C0;
    BlasThreadScope scope;
    par_sgemm(ta, tb, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
    par_sgemm(ta, tb, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, beta, C2.data(), ldc);
    double worst = 0;
    bool same = true;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double ref = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                ref += a(i, k) * b(k, j);
                mag += std::fabs(a(i, k) * b(k, j));
            }
            if (beta != 0.0f) {
                ref += beta * (double)C0[(size_t)i * ldc + j];
                mag += std::fabs(beta * (double)C0[(size_t)i * ldc + j]);
            }
            const float c = C[(size_t)i * ldc + j];
            worst = std::max(worst, std::isfinite(c) ? std::fabs(c - ref) / (mag + 1e-30) : 1.0);
            same = same && c == C2[(size_t)i * ldc + j];
        }
    CHECK(worst < 1e-5);
    CHECK(same);
    for (int i = 0; i < M; i++)   // the padding columns of C are untouched
        for (int j = N; j < ldc; j++) CHECK(std::isnan(C[(size_t)i * ldc + j]) == std::isnan(C0[(size_t)i * ldc + j]));
}

struct Run {
    double loss = 0;
    int64_t n = 0;
    std::vector<float> grads;
};

Run train_call(Model& m, const std::vector<int32_t>& ids, int B, int T, bool ckpt) {
    m.set_gradient_checkpointing(ckpt);
    m.set_training(true, 5);   // same dropout masks for every run
    m.zero_grad();
    const LossOut lo = m.forward_backward(ids.data(), ids.data(), B, T, true, 1.0f / (float)(B * (T - 1)));
    Run r{lo.loss_sum, lo.n_tokens, {}};
    for (const Param& p : m.params()) r.grads.insert(r.grads.end(), p.g, p.g + p.numel);
    return r;
}

}  // namespace

TEST_CASE("par_sgemm: N, M and K splits match an fp64 reference and repeat bit-exactly") {
    omp_set_num_threads(2);
    const int shapes[][3] = {
        {128, 512, 256},   // split N (x·Wᵀ)
        {512, 64, 200},    // split M (dB = dyᵀ·z)
        {96, 80, 4096},    // split K (dh = dlogits·W)
        {16, 24, 8},       // serial
    };
    for (const auto& s : shapes)
        for (int t = 0; t < 4; t++)
            for (float beta : {0.0f, 1.0f}) check_gemm(s[0], s[1], s[2], t & 1, t & 2, beta);
}

TEST_CASE("model on two threads: repeat and checkpointing bit-exact, one thread within tolerance, logits_at") {
    omp_set_num_threads(2);
    AdapterSpec spec;
    spec.levels = {{16, 16}, {4, 16}, {4, 16}};
    spec.dropout = 0.1f;
    QuantSpec quant;   // nf4
    auto m = Model::load(kTiny, quant, spec, 3);
    for (Param& p : m->params())   // non-zero B so every adapter product matters
        for (size_t i = 0; i < p.numel; i++)
            if (p.name.find("lora_B") != std::string::npos) p.w[i] = 0.01f * (float)((i * 7919) % 13) - 0.06f;
    const int B = 4, T = 256, V = m->config().vocab_size;
    std::vector<int32_t> ids((size_t)B * T);
    std::mt19937 rng(9);
    for (int32_t& x : ids) x = 3 + (int32_t)(rng() % (uint32_t)(V - 3));

    const Run a = train_call(*m, ids, B, T, true);
    const Run b = train_call(*m, ids, B, T, true);
    const Run c = train_call(*m, ids, B, T, false);
    CHECK(a.n == (int64_t)B * (T - 1));
    CHECK(a.loss == b.loss);
    CHECK(a.grads == b.grads);
    CHECK(a.loss == c.loss);
    CHECK(a.grads == c.grads);

    omp_set_num_threads(1);
    const Run one = train_call(*m, ids, B, T, true);
    omp_set_num_threads(2);
    CHECK(one.loss == doctest::Approx(a.loss).epsilon(1e-5));
    float gmax = 0, dmax = 0;
    for (size_t i = 0; i < a.grads.size(); i++) {
        gmax = std::max(gmax, std::fabs(a.grads[i]));
        dmax = std::max(dmax, std::fabs(a.grads[i] - one.grads[i]));
    }
    CHECK(gmax > 0.0f);
    CHECK(dmax <= 1e-3f * gmax);

    m->set_training(false, 0);
    std::vector<float> full((size_t)B * T * V), at((size_t)B * V);
    const std::vector<int32_t> pos = {T - 1, 0, 100, 17};
    m->forward_logits(ids.data(), B, T, full.data());
    m->forward_logits_at(ids.data(), B, T, pos.data(), at.data());
    float worst = 0;
    for (int r = 0; r < B; r++)
        for (int v = 0; v < V; v++)
            worst = std::max(worst, std::fabs(at[(size_t)r * V + v] - full[((size_t)r * T + pos[r]) * V + v]));
    CHECK(worst <= 1e-5f);
    const std::vector<int32_t> bad = {T, 0, 0, 0};
    CHECK_THROWS_AS(m->forward_logits_at(ids.data(), B, T, bad.data(), at.data()), hq::Error);
}
