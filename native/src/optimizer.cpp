// optimizer.cpp — AdamW, clipping and schedules. See optimizer.h for the exact operation order.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include "optimizer.h"

#include <cmath>

#include "error.h"

namespace hq {

AdamW::AdamW(std::vector<Param>& params, AdamWConfig cfg) : params_(params), cfg_(cfg), last_(params.size()) {
    m.resize(params.size());
    v.resize(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
        m[i].assign(params[i].numel, 0.0f);
        v[i].assign(params[i].numel, 0.0f);
    }
}

void AdamW::shard(size_t first, size_t last) {
    HQ_ASSERT(first <= last && last <= params_.size());
    first_ = first;
    last_ = last;
    for (size_t i = 0; i < params_.size(); ++i)
        if (!owns(i)) {
            std::vector<float>().swap(m[i]);
            std::vector<float>().swap(v[i]);
        }
}

void AdamW::unshard() {
    for (size_t i = 0; i < params_.size(); ++i) {
        m[i].resize(params_[i].numel, 0.0f);
        v[i].resize(params_[i].numel, 0.0f);
    }
    first_ = 0;
    last_ = params_.size();
}

void AdamW::step(double lr) {
    t += 1;
    const double step = static_cast<double>(t);
    const float decay = static_cast<float>(1.0 - lr * cfg_.weight_decay);
    const float w1 = static_cast<float>(1.0 - cfg_.beta1);
    const float b2 = static_cast<float>(cfg_.beta2);
    const float w2 = static_cast<float>(1.0 - cfg_.beta2);
    const double bc1 = 1.0 - std::pow(cfg_.beta1, step);
    const double bc2 = 1.0 - std::pow(cfg_.beta2, step);
    const float neg_step_size = static_cast<float>(-(lr / bc1));
    const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
    const float eps = static_cast<float>(cfg_.eps);
    const bool wd = cfg_.weight_decay != 0.0;
    HQ_ASSERT(w1 < 0.5f);  // ATen lerp uses `self + w*(end-self)` only for |w| < 0.5; betas >= 0.5 everywhere
    for (size_t i = first_; i < last_; ++i) {
        Param& P = params_[i];
        float* __restrict p = P.w;
        const float* __restrict g = P.g;
        float* __restrict mi = m[i].data();
        float* __restrict vi = v[i].data();
        const int64_t n = static_cast<int64_t>(P.numel);
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t k = 0; k < n; ++k) {
            float pk = p[k];
            if (wd) pk = pk * decay;
            const float gk = g[k];
            float mk = mi[k];
            mk = mk + w1 * (gk - mk);
            float vk = vi[k] * b2;
            vk = vk + (w2 * gk) * gk;
            const float denom = std::sqrt(vk) / bc2_sqrt + eps;
            pk = pk + (neg_step_size * mk) / denom;
            mi[k] = mk;
            vi[k] = vk;
            p[k] = pk;
        }
    }
}

float clip_grad_norm(std::vector<Param>& params, float max_norm) {
    double ss = 0.0;
    for (const Param& P : params) {
        double s = 0.0;
        const int64_t n = static_cast<int64_t>(P.numel);
        // Fixed-order reduction per param (no OpenMP reduction) so the norm is identical for any thread count.
        for (int64_t k = 0; k < n; ++k) s += static_cast<double>(P.g[k]) * static_cast<double>(P.g[k]);
        ss += s;
    }
    const float norm = static_cast<float>(std::sqrt(ss));
    if (max_norm > 0.0f && std::isfinite(norm)) {
        const float coef = max_norm / (norm + 1e-6f);
        if (coef < 1.0f) {
            for (Param& P : params)
                for (size_t k = 0; k < P.numel; ++k) P.g[k] = P.g[k] * coef;
        }
    }
    return norm;
}

bool params_finite(const std::vector<Param>& params) {
    for (const Param& P : params)
        for (size_t k = 0; k < P.numel; ++k)
            if (!std::isfinite(P.w[k])) return false;
    return true;
}

double lr_at(const ScheduleConfig& cfg, int64_t step) {
    const double kPi = 3.14159265358979323846;
    const int64_t warm = cfg.warmup_steps, total = cfg.total_steps;
    double factor;
    if (step < warm) {
        factor = static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warm));
    } else if (cfg.type == "constant") {
        factor = 1.0;
    } else if (cfg.type == "linear") {
        factor = std::max(0.0, static_cast<double>(total - step) / static_cast<double>(std::max<int64_t>(1, total - warm)));
    } else if (cfg.type == "cosine") {
        const double progress = static_cast<double>(step - warm) / static_cast<double>(std::max<int64_t>(1, total - warm));
        factor = std::max(0.0, 0.5 * (1.0 + std::cos(kPi * progress)));
    } else {
        throw Error("E_CONFIG", HQ_MSG("unknown lr_scheduler \"" << cfg.type << "\""),
                    Where{"", "", "training.lr_scheduler"}, "use constant, linear or cosine");
    }
    return cfg.lr * factor;
}

int64_t resolve_warmup_steps(int64_t warmup_steps, double warmup_ratio, int64_t total_steps) {
    if (warmup_steps > 0) return warmup_steps;
    return static_cast<int64_t>(std::ceil(warmup_ratio * static_cast<double>(total_steps)));
}

}  // namespace hq
