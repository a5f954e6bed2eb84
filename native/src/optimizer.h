// optimizer.h — AdamW (torch.optim.AdamW, single-tensor path, fp32), gradient clipping, learning-rate schedules.
//
// AdamW::step follows torch/optim/adam.py `_single_tensor_adam` (decoupled weight decay) operation by operation,
// with fp32 tensors and Python-float (fp64) hyper-parameters, so a run matches PyTorch bit for bit:
//   t  += 1                                   (fp64 step counter)
//   p   = p * f32(1 - lr*wd)                  param.mul_(1 - lr * weight_decay)           [skipped when wd == 0]
//   m   = m + f32(1-b1) * (g - m)             exp_avg.lerp_(grad, 1 - beta1)  (ATen lerp, weight < 0.5 branch)
//   v   = v * f32(b2)                         exp_avg_sq.mul_(beta2)
//   v   = v + (f32(1-b2) * g) * g             .addcmul_(grad, grad, value=1 - beta2)
//   bc1 = 1 - b1^t ; bc2 = 1 - b2^t           (fp64)
//   step_size = lr / bc1 ; bc2_sqrt = sqrt(bc2)                                        (fp64)
//   d   = sqrt(v) / f32(bc2_sqrt) + f32(eps)  (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
//   p   = p + (f32(-step_size) * m) / d       param.addcdiv_(exp_avg, denom, value=-step_size)
// fp32 products/sums are never fused (no FMA contraction in optimizer.cpp), as in ATen's scalar kernels.
// Hyper-parameters are double because PyTorch keeps them as Python floats: f32(1 - 0.9) != 1 - f32(0.9).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model.h"

namespace hq {

struct AdamWConfig {
    double lr = 2e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

class AdamW {
  public:
    AdamW(std::vector<Param>& params, AdamWConfig cfg);
    // One update of every param from its gradient (Param::g) with learning rate `lr`.
    void step(double lr);
    const AdamWConfig& config() const { return cfg_; }
    std::vector<Param>& params() { return params_; }

    // ZeRO-1 (distributed.zero): this rank updates params [first, last) only and holds only their moments (the
    // others' m and v are emptied); step() skips the rest, whose new weights come from their owners. unshard() gives
    // every param full-size moments again (zeros where not held: the caller fills them, e.g. a checkpoint's gather).
    void shard(size_t first, size_t last);
    void unshard();
    bool owns(size_t i) const { return i >= first_ && i < last_; }
    bool sharded() const { return first_ != 0 || last_ != params_.size(); }

    int64_t t = 0;                          // steps taken (torch's state["step"])
    std::vector<std::vector<float>> m, v;   // exp_avg, exp_avg_sq per param, [numel] (empty when not owned)

  private:
    std::vector<Param>& params_;
    AdamWConfig cfg_;
    size_t first_ = 0, last_ = 0;   // the params this rank updates (all unless sharded)
};

// Global L2 norm of all gradients (fp64 accumulation), returned as fp32 before clipping. When max_norm > 0,
// every gradient is multiplied by clip_coef = max_norm / (norm + 1e-6) if that is < 1 (torch.nn.utils.
// clip_grad_norm_: clip_coef clamped to 1.0, computed in fp32).
float clip_grad_norm(std::vector<Param>& params, float max_norm);

// true iff every weight of every param is finite.
bool params_finite(const std::vector<Param>& params);

struct ScheduleConfig {
    std::string type = "constant";  // constant | linear | cosine
    double lr = 2e-4;               // peak learning rate
    int64_t warmup_steps = 0;
    int64_t total_steps = 1;
};

// Learning rate of the optimizer step with 0-based index `step` (transformers' LambdaLR semantics: the first
// step uses factor(0)). Warmup, for every schedule: factor = step / max(1, warmup) while step < warmup. After it:
//   constant: 1
//   linear:   max(0, (total - step) / max(1, total - warmup))
//   cosine:   max(0, 0.5 * (1 + cos(pi * progress))),  progress = (step - warmup) / max(1, total - warmup)
// Unlike transformers' "constant" (which ignores warmup), warmup is honoured for "constant" too (CONTRACTS §6).
double lr_at(const ScheduleConfig& cfg, int64_t step);

// Warmup steps from the config: warmup_steps if > 0, else ceil(warmup_ratio * total_steps) (transformers'
// get_warmup_steps).
int64_t resolve_warmup_steps(int64_t warmup_steps, double warmup_ratio, int64_t total_steps);

}  // namespace hq
