// model.h — the decoder (LLaMA 1/2/3, Gemma 1) with an NF4-frozen base and hierarchical LoRA adapters, CPU fp32.
//
// This header is the contract between the model (model*.cpp, layers) and its users (the training loop in
// train*.cpp, the exporters, the tests). Shapes use B = micro-batch, T = sequence length, C = hidden size,
// V = vocab, R = Σ level ranks. All activations are fp32, row-major.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "attention.h"
#include "model_config.h"

namespace hq {

struct LevelSpec {
    int rank = 8;
    float alpha = 16.0f;
};

struct AdapterSpec {
    std::vector<std::string> target_modules = {"q_proj", "k_proj", "v_proj", "o_proj",
                                               "gate_proj", "up_proj", "down_proj"};
    std::vector<LevelSpec> levels = {{32, 16}, {8, 16}, {8, 16}, {8, 16}, {8, 16}};
    float dropout = 0.0f;       // per-level dropout on the adapter input (independent mask per level)
    std::string init = "kaiming";  // "kaiming" (A ~ kaiming_uniform(a=sqrt(5)), B = 0) | "gaussian" (A ~ N(0,1/r))
    bool rslora = false;        // scale = alpha/sqrt(r) instead of alpha/r
    // Scale of level i as PEFT computes it.
    float scale(int level) const;
    int total_rank() const;
};

struct QuantSpec {
    std::string type = "nf4";   // "nf4" | "none" (targets kept in fp32: for tests and references)
    bool double_quant = true;
    int blocksize = 64;
};

// One trainable tensor. The model owns the storage; pointers stay valid for the model's lifetime.
// For each adapted module there are two params: "<module>.lora_A" with shape [R, in] and "<module>.lora_B" with
// shape [out, R] (the concatenated levels; level j occupies rows/cols [offset_j, offset_j + r_j)).
// <module> is the HF module name, e.g. "model.layers.0.self_attn.q_proj".
struct Param {
    std::string name;
    std::vector<int64_t> shape;
    float* w = nullptr;   // weights
    float* g = nullptr;   // gradient accumulator (same size)
    size_t numel = 0;
};

// Per-level view of one adapted module, for stats and export.
struct AdaptedModule {
    std::string name;        // "model.layers.0.self_attn.q_proj"
    int in = 0, out = 0;
    Param* A = nullptr;      // [R, in]
    Param* B = nullptr;      // [out, R]
    std::vector<int> level_offset;  // start row (A) / col (B) of each level, size = levels
};

class AdamW;   // optimizer.h

struct LossOut {
    double loss_sum = 0.0;   // Σ of per-token CE over target positions (fp64 accumulate)
    int64_t n_tokens = 0;    // number of target positions (labels != -100 after the shift)
};

class Model {
  public:
    // Loads config.json + safetensors (single or sharded) from `dir`, quantizes the targeted projection weights
    // (NF4 + double quant when quant.type == "nf4"), creates adapters initialised from `seed`.
    // Throws hq::Error naming the file/tensor on any problem.
    static std::unique_ptr<Model> load(const std::string& dir, const QuantSpec& quant, const AdapterSpec& adapter,
                                       uint64_t seed);
    virtual ~Model() = default;

    virtual const ModelConfig& config() const = 0;
    virtual const AdapterSpec& adapter_spec() const = 0;

    // All trainable tensors in a fixed order (layer by layer, module order of target_modules, A then B).
    virtual std::vector<Param>& params() = 0;
    virtual std::vector<AdaptedModule>& modules() = 0;
    virtual int64_t base_param_count() const = 0;   // parameters of the base model (all tensors)

    // Forward + (optionally) backward on one micro-batch.
    //   ids    [B, T] token ids
    //   labels [B, T] target ids or -100; the loss at position t uses logits[t] against labels[t+1] (HF shift)
    // Returns the summed loss and count. When `backward` is true, adds grad_scale * d(loss_sum)/d(param) into
    // every Param::g (so grad_scale = 1/total_target_tokens_of_the_optimizer_step gives the mean-loss gradient).
    // The vocab projection + cross-entropy is computed over chunks so the full [B*T, V] logits never exist.
    virtual LossOut forward_backward(const int32_t* ids, const int32_t* labels, int B, int T, bool backward,
                                     float grad_scale) = 0;
    // The same on packed rows (data.packing, a version-2 token file): seg [B, T] is the document of each position
    // within its row (MicroBatch::seg; documents are contiguous runs). A token attends only to earlier tokens of its
    // own document and each document's RoPE positions start at 0, as transformers' padding-free packing does
    // (flash_attn_varlen_func over cu_seqlens, position_ids per example); the labels already hold -100 at each
    // document's first token, so every document gets the loss and gradients it gets alone. seg == nullptr is
    // forward_backward. A backend without packing (supports_packing() false) throws E_CONFIG.
    virtual LossOut forward_backward_packed(const int32_t* ids, const int32_t* labels, const int32_t* seg, int B,
                                            int T, bool backward, float grad_scale);
    virtual bool supports_packing() const { return false; }

    // Inference forward: logits_out [B, T, V]. For tests, verification and eval (small inputs).
    virtual void forward_logits(const int32_t* ids, int B, int T, float* logits_out) = 0;
    // Inference forward that projects only one position per row: logits_out [B, V] are the logits of row b at
    // positions[b] (in [0, T)), as forward_logits would give them at [b, positions[b], :]. For the MCQ evaluator.
    virtual void forward_logits_at(const int32_t* ids, int B, int T, const int32_t* positions /*[B]*/,
                                   float* logits_out /*[B,V]*/) = 0;

    virtual void zero_grad() = 0;
    // Training mode enables adapter dropout (mask stream seeded by `dropout_seed`, advanced per call).
    virtual void set_training(bool training, uint64_t dropout_seed) = 0;
    // Advances the dropout mask stream by `n` forward calls, as if they had run (data parallel: rank r skips the
    // masks of the step's micro-batches before its own).
    virtual void skip_dropout_calls(uint64_t n) = 0;
    virtual void set_gradient_checkpointing(bool on) = 0;
    // Use only the first `n` levels (0 = all) in forward: for level ablation and tests.
    virtual void set_active_levels(int n) = 0;
    // Rows per vocab-projection chunk of the loss (0 = automatic: at most 64 MiB of fp32 logits per chunk).
    virtual void set_loss_chunk_rows(int rows) = 0;

    // Dequantized (what the forward uses) weight of a targeted projection, [out, in]; for tests and merge.
    virtual std::vector<float> dequantized_weight(const std::string& module) const = 0;
    virtual size_t memory_bytes() const = 0;    // resident bytes of weights + adapters + workspace

    // ---- what a layer's attention is given (the family probes of test_golden against transformers) -----------
    // cos, sin [T, d/2]: the RoPE tables layer `layer` rotates q and k with for a batch of length T (positions
    // 0..T-1; Gemma-3's sliding layers their local theta, longrope its short or long factors by T).
    virtual void layer_rope(int layer, int T, std::vector<float>* cos, std::vector<float>* sin);
    // The attention of layer `layer` on a [B, T] batch (score scale, sliding window, soft-cap): what it passes to
    // attention_forward.
    virtual AttnShape layer_attention(int layer, int B, int T) const;

    // ---- device-resident training (the CUDA backend) ----------------------------------------------------------
    // The CPU backend computes on params() directly and answers false to device_resident(); the trainer then clips
    // and steps with clip_grad_norm + AdamW::step on the host. A device backend keeps the trainable weights, their
    // gradients and the optimizer moments on the device: the trainer clips and steps there, calls sync_to_host()
    // before it reads params() (adapter stats, checkpoints, exports) and sync_from_host() after it writes them
    // (checkpoint restore). params()' host arrays are then a mirror, current only after sync_to_host().
    virtual std::string backend() const { return "cpu"; }
    virtual bool device_resident() const { return false; }
    // Global gradient L2 norm (fp64 accumulation) before clipping, and the clip, as clip_grad_norm does.
    virtual float device_clip_grad_norm(float max_norm);
    // One AdamW update with the optimizer's hyper-parameters and step counter (opt.t is incremented). Returns
    // false when an updated weight is not finite.
    virtual bool device_adamw_step(AdamW& opt, double lr);
    // Device → host: adapter weights into params()[i].w, and the moments into opt->m / opt->v when opt is given;
    // with grads, also the gradients into params()[i].g.
    virtual void sync_to_host(AdamW* opt, bool grads = false) {}
    // Host → device: the adapter weights (and the moments, when opt is given).
    virtual void sync_from_host(const AdamW* opt) {}
    // The gradient accumulator of every param, back to back (*n floats): host memory on the CPU backend, device memory
    // on a device backend, written on *stream (a cudaStream_t; nullptr on the CPU). The data-parallel all-reduce sums
    // it in place between the backward and the clipping.
    virtual float* grad_buffer(size_t* n, void** stream) = 0;

    // ---- data parallel: a layer's gradients are final (data_parallel.h overlaps their sum with the backward) --
    // During a backward the model calls hook(layer, offset, n) once per decoder layer, the last layer first, as soon
    // as that layer's adapter gradients are final for the call: grad_buffer()[offset, offset + n) (params() is layer
    // by layer with the same modules in every layer, so a layer's gradients are one range, and the ranges of the
    // calls descend to offset 0). A device backend calls it once the layer's backward is enqueued on grad_buffer()'s
    // stream. An empty hook (the default) is not called.
    using GradsReadyHook = std::function<void(int layer, size_t offset, size_t n)>;
    void set_grads_ready_hook(GradsReadyHook hook) { grads_ready_ = std::move(hook); }

  protected:
    // For the backends, after layer `layer`'s backward (no-op without a hook).
    void grads_ready(int layer);

  private:
    GradsReadyHook grads_ready_;
    std::vector<size_t> layer_grad_off_;   // [num_layers + 1] offset of each layer's first gradient (computed once)
};

}  // namespace hq
