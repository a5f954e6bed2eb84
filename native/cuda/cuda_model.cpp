// cuda_model.cpp — the CUDA backend's decoder: upload, forward, backward, loss, optimizer (see cuda_model.h).
//
// Layer by layer this mirrors ModelImpl in native/src/model.cpp; the differences are the storage types:
//   residual stream, norm statistics, gradients w.r.t. activations ............ fp32
//   GEMM inputs (normed activations, q/k/v, attention output, MLP hidden) ...... bf16
//   frozen projection weights: NF4 on the device, dequantized to bf16 per call; embeddings and lm_head bf16
//   adapters: fp32 master weights, gradients and moments; a bf16 shadow of the weights feeds the GEMMs
// Adapter intermediates z = (x̃·Aᵀ)⊙s are kept in bf16 for the backward (as the CPU keeps them in fp32).
#include "cuda_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "gpu_attention.h"
#include "cuda_common.h"
#include "embedding.h"
#include "error.h"
#include "gemm.h"
#include "kernels.h"
#include "loss.h"
#include "model_impl.h"
#include "optimizer.h"
#include "rope.h"

namespace hq::cuda {

namespace {

// One frozen projection on the device, with its adapter's place in the flat parameter buffer.
struct DevLinear {
    int in = 0, out = 0;
    bool quantized = false;
    DeviceBuffer<uint8_t> packed, qabsmax;
    DeviceBuffer<float> absmax2, absmax;
    NF4View view;
    DeviceBuffer<bf16> w;       // [out, in] when not quantized
    int R = 0;                  // adapter rank (0: not adapted)
    size_t a_off = 0, b_off = 0;   // offsets of A [R, in] and B [out, R] in the flat params
};

struct DevLayer {
    DeviceBuffer<float> ln1, ln2;
    // Family extras (empty when the family has none), fp32 like the CPU's DecoderLayer:
    DeviceBuffer<float> ln_post_attn, ln_post_ff;   // [C] Gemma-2/3 post-attention / post-feedforward norms
    DeviceBuffer<float> q_norm, k_norm;             // [d] Qwen3 / Gemma-3 per-head norms of q and k before RoPE
    DeviceBuffer<float> bias[3];                    // Qwen2 q/k/v biases [H·d], [KV·d], [KV·d] (frozen)
    bool sliding = false;                           // sliding-window layer (Gemma-3: the local rope tables)
    DevLinear proj[P_COUNT];
};

// Saved activations of one layer for its backward. The normed inputs, the attention probabilities and the MLP
// hidden act(g)⊙u are not kept: the backward recomputes them (same kernels on the same inputs: the same bits), which
// saves 2·C + H·T + F bf16 values per token and layer (≈ 160 MiB per 7B layer at 4 × 512 tokens).
struct DevActs {
    DeviceBuffer<bf16> q, k, v, att, g, u;
    DeviceBuffer<float> rstd1, rstd2, xmid;
    DeviceBuffer<float> lse;   // [B, H, T] attention log-sum-exp (flash kernel; the backward needs it)
    DeviceBuffer<bf16> z[P_COUNT];
    // Family extras (allocated only when the family uses them), fp32 as in the CPU's LayerActs:
    DeviceBuffer<float> qpre, kpre, rstdq, rstdk;   // [N, H·d], [N, KV·d] q/k before q_norm/k_norm; [N·H], [N·KV]
    DeviceBuffer<float> ao, rstd3, mo, rstd4;       // [N, C] o_proj / down_proj outputs before the post-norms; [N]
};

// HQ_CUDA_PROFILE=1: device time per category, measured with CUDA events on the model's one stream (mark(c) starts
// category c at that point of the stream), printed to stderr when the model is destroyed. Off: no events at all.
// Also the host gaps: wall time from the first mark to the last flush that the stream spent outside the model's calls
// (between two flushes: the trainer's host work per step, data, logging, checkpoints). Idle time inside a call (the
// GPU waiting for the host to enqueue) stays in the category that was running.
enum ProfCat { PC_DEQUANT, PC_GEMM, PC_LORA, PC_ATTN, PC_ELEM, PC_LOSS, PC_OPT, PC_COUNT };
const char* const kProfNames[PC_COUNT] = {"nf4 dequant", "base GEMMs", "adapter (LoRA)", "attention",
                                          "norms/rope/glu/copies", "loss (lm_head + CE)", "optimizer"};

class Profiler {
  public:
    explicit Profiler(cudaStream_t s) : s_(s) {
        const char* e = std::getenv("HQ_CUDA_PROFILE");
        on_ = e && *e && std::string(e) != "0";
    }
    ~Profiler() {
        if (!on_) return;
        flush();
        double total = 0;
        for (double m : ms_) total += m;
        std::fprintf(stderr, "[hqlora] cuda profile over %lld flushes (device ms, share):\n", (long long)flushes_);
        for (int c = 0; c < PC_COUNT; c++)
            std::fprintf(stderr, "[hqlora]   %-24s %10.1f ms %5.1f%%\n", kProfNames[c], ms_[c],
                         total > 0 ? 100.0 * ms_[c] / total : 0.0);
        const double wall = std::chrono::duration<double, std::milli>(last_ - first_).count();
        std::fprintf(stderr, "[hqlora]   %-24s %10.1f ms %5.1f%% of the wall %.1f ms\n", "host gaps (between calls)",
                     std::max(0.0, wall - inside_), wall > 0 ? 100.0 * std::max(0.0, wall - inside_) / wall : 0.0, wall);
        for (cudaEvent_t ev : pool_) cudaEventDestroy(ev);
        for (auto& m : marks_) cudaEventDestroy(m.second);
    }
    void mark(int cat) {
        if (!on_) return;
        cudaEvent_t ev;
        if (!pool_.empty()) {
            ev = pool_.back();
            pool_.pop_back();
        } else {
            HQ_CUDA(cudaEventCreate(&ev));
        }
        HQ_CUDA(cudaEventRecord(ev, s_));
        if (marks_.empty()) {
            start_ = std::chrono::steady_clock::now();   // this call's first mark (host side)
            if (flushes_ == 0) first_ = start_;
        }
        marks_.push_back({cat, ev});
    }
    // Ends the current category and adds up the intervals (synchronises the stream).
    void flush() {
        if (!on_ || marks_.empty()) return;
        mark(PC_COUNT);
        HQ_CUDA(cudaEventSynchronize(marks_.back().second));
        for (size_t i = 0; i + 1 < marks_.size(); i++) {
            float t = 0;
            HQ_CUDA(cudaEventElapsedTime(&t, marks_[i].second, marks_[i + 1].second));
            if (marks_[i].first < PC_COUNT) ms_[marks_[i].first] += t;
        }
        for (auto& m : marks_) pool_.push_back(m.second);
        marks_.clear();
        flushes_++;
        last_ = std::chrono::steady_clock::now();
        inside_ += std::chrono::duration<double, std::milli>(last_ - start_).count();
    }

  private:
    cudaStream_t s_;
    bool on_ = false;
    std::vector<cudaEvent_t> pool_;
    std::vector<std::pair<int, cudaEvent_t>> marks_;
    double ms_[PC_COUNT] = {};
    int64_t flushes_ = 0;
    // Host clock: the first mark of all, the first mark of the current call, the end of the last flush, and the
    // calls' summed wall time (first mark to its flush).
    std::chrono::steady_clock::time_point first_, start_, last_;
    double inside_ = 0;
};

template <typename T>
void upload(DeviceBuffer<T>& d, const T* h, size_t n, cudaStream_t s) {
    d.resize(n);
    if (n) HQ_CUDA(cudaMemcpyAsync(d.data(), h, n * sizeof(T), cudaMemcpyHostToDevice, s));
}

// fp32 host array -> bf16 device buffer (through a staging fp32 device buffer).
void upload_bf16(DeviceBuffer<bf16>& d, const float* h, size_t n, DeviceBuffer<float>& stage, cudaStream_t s) {
    stage.resize(n);
    HQ_CUDA(cudaMemcpyAsync(stage.data(), h, n * sizeof(float), cudaMemcpyHostToDevice, s));
    d.resize(n);
    f32_to_bf16(d.data(), stage.data(), (int64_t)n, s);
    HQ_CUDA(cudaStreamSynchronize(s));   // the staging buffer is reused by the next upload
}

class CudaModel final : public Model {
  public:
    CudaModel(std::unique_ptr<Model> host);
    ~CudaModel() override;

    const ModelConfig& config() const override { return host_->config(); }
    const AdapterSpec& adapter_spec() const override { return host_->adapter_spec(); }
    std::vector<Param>& params() override { return host_->params(); }
    std::vector<AdaptedModule>& modules() override { return host_->modules(); }
    int64_t base_param_count() const override { return host_->base_param_count(); }

    LossOut forward_backward(const int32_t* ids, const int32_t* labels, int B, int T, bool backward,
                             float grad_scale) override;
    LossOut forward_backward_packed(const int32_t* ids, const int32_t* labels, const int32_t* seg, int B, int T,
                                    bool backward, float grad_scale) override;
    bool supports_packing() const override { return true; }   // the flash kernel's document mask
    void forward_logits(const int32_t* ids, int B, int T, float* logits_out) override;
    void forward_logits_at(const int32_t* ids, int B, int T, const int32_t* positions, float* logits_out) override;

    void zero_grad() override {
        HQ_CUDA(cudaMemsetAsync(g32_.data(), 0, n_params_ * sizeof(float), stream_));
    }
    void set_training(bool training, uint64_t dropout_seed) override {
        training_ = training;
        dropout_seed_ = dropout_seed;
        call_ = 0;
        host_->set_training(training, dropout_seed);
    }
    void skip_dropout_calls(uint64_t n) override {
        call_ += n;
        host_->skip_dropout_calls(n);
    }
    float* grad_buffer(size_t* n, void** stream) override {
        *n = n_params_;
        *stream = stream_;
        return g32_.data();
    }
    void set_gradient_checkpointing(bool on) override {
        ckpt_ = on;
        if (on && acts_.size() > 1) acts_.resize(1);
    }
    void set_active_levels(int n) override {
        host_->set_active_levels(n);   // validates
        const int L = (int)spec().levels.size();
        active_levels_ = n == 0 ? L : n;
    }
    void set_loss_chunk_rows(int rows) override {
        host_->set_loss_chunk_rows(rows);   // validates
        loss_chunk_ = rows;
    }
    std::vector<float> dequantized_weight(const std::string& module) const override {
        return host_->dequantized_weight(module);
    }
    size_t memory_bytes() const override;

    std::string backend() const override { return "cuda"; }
    bool device_resident() const override { return true; }
    float device_clip_grad_norm(float max_norm) override;
    bool device_adamw_step(AdamW& opt, double lr) override;
    void sync_to_host(AdamW* opt, bool grads) override;
    void sync_from_host(const AdamW* opt) override;

  private:
    const AdapterSpec& spec() const { return host_->adapter_spec(); }
    const ModelConfig& cfg() const { return host_->config(); }
    void upload_all();
    void refresh_shadow();   // bf16 shadow of the fp32 adapter weights
    void ensure_rope(int T);
    void ensure_acts(DevActs& a, int B, int T);
    void ensure_scratch(int B, int T);
    int active_rank(const DevLinear& L) const { return L.R > 0 ? level_offset_[active_levels_] : 0; }
    float dropout() const { return training_ ? spec().dropout : 0.0f; }
    uint64_t mask_key(int layer, int proj) const {
        return rng_key(rng_key(dropout_seed_, call_), (uint64_t)layer * P_COUNT + proj);
    }
    const bf16* base_weight(const DevLinear& L);
    // y [N, out] (bf16, or fp32 accumulated with beta) = x·Wᵀ + ((x̃·Aᵀ)⊙s)·Bᵀ (+ yin, a residual read instead
    // of y when given) ; z [N, Ra] saved (bf16).
    void linear_forward(int layer, int proj, const bf16* x, int64_t N, void* y, DType yt, float beta, bf16* z,
                        const float* yin = nullptr);
    // Row stride of the bf16 gradient matrix of a group of projections sharing one input: their output gradients
    // side by side, then one active-rank block per adapted projection (the adapters' du, see group_backward).
    int64_t group_ld(std::initializer_list<int> ps) const;
    // Backward of the projections ps, which share the input x [N, in]: dy [N, ld] bf16 holds their output
    // gradients side by side (dy_p after the earlier projections' widths). dx [N, in] fp32 = (or +=) Σ_p dL/dx;
    // dA, dB += . Without dropout the adapters' dx terms ride in one GEMM with the base's:
    //   dx = [dy_1 … dy_k | du_1 … du_k] · [W_1; …; W_k; A_1; …; A_k],  du_p = (dy_p·B_p)⊙s  (K = Σ out + k·Ra)
    // (du_p is written into dy's trailing columns, the A_p rows are stacked under the dequantized W_p), so dx is
    // written once instead of once per projection and adapter.
    void group_backward(int layer, std::initializer_list<int> ps, const bf16* x, const DevActs& a, bf16* dy,
                        int64_t ld, int64_t N, float* dx, bool accumulate);
    // q, k, v of layer l from the normed input xnb_ into qraw_, kraw_, vraw_ (bf16 [N, nh·d]): the GEMMs' bf16
    // outputs, or (biases / q-k norms) fp32 outputs + bias, then the per-head RMSNorm, rounded to bf16 once.
    void qkv_forward(int l, DevActs& a, int64_t N);
    // dq, dk [B, nh, T, d] fp32 (attention backward) -> the q/k projections' output gradients, bf16 column blocks
    // of dcat (rows ld apart): the transposed rotation, then (Qwen3, Gemma-3) the q/k norm backward in fp32.
    void qk_backward(int l, const DevActs& a, int B, int T, bf16* dcat, int64_t ld);
    // The rope tables of layer l: the local ones on Gemma-3's sliding layers, else the global ones.
    const float* rope_cos(int l) const { return layers_[l].sliding && cosl_.size() ? cosl_.data() : cos_.data(); }
    const float* rope_sin(int l) const { return layers_[l].sliding && sinl_.size() ? sinl_.data() : sin_.data(); }
    void layer_forward(int l, const float* x, float* y, DevActs& a, int B, int T);
    void layer_backward(int l, const float* x, DevActs& a, const float* dy, float* dx, int B, int T);
    void forward_hidden(const int32_t* ids, int B, int T, bool keep);
    // Layer l's attention: causal, or (Mistral, Gemma-2/3's local layers) within the sliding window; Gemma-2's
    // score soft-capping; packed rows' document mask. l = -1: the most demanding layer (any sliding one).
    AttnDims attn_dims(int l, int B, int T) const {
        const ModelConfig& c = cfg();
        AttnDims ad{B, T, c.num_heads, c.num_kv_heads, c.head_dim, attn_scale_};
        const bool sliding = l < 0 ? c.any_sliding() : layers_[l].sliding != 0;
        ad.window = sliding ? c.sliding_window : 0;
        ad.softcap = c.attn_softcap;
        ad.seg = packed_ ? segd_.data() : nullptr;
        return ad;
    }
    // Packed rows (forward_backward_packed): each token's RoPE table row, its position within its document.
    const int32_t* rope_pos() const { return packed_ ? posd_.data() : nullptr; }
    void check_ids(const int32_t* ids, int64_t N) const;
    const bf16* out_weight() const { return cfg().tie_word_embeddings ? embed_.data() : lm_head_.data(); }
    int loss_chunk(int64_t N) const;

    std::unique_ptr<Model> host_;
    HostWeights hw_;
    cudaStream_t stream_ = nullptr;
    std::unique_ptr<Gemm> gemm_;
    std::unique_ptr<Profiler> prof_;
    bool gemma_ = false;
    int act_ = 0;
    float attn_scale_ = 1.0f;

    DeviceBuffer<bf16> embed_, lm_head_;
    DeviceBuffer<float> norm_;
    std::vector<DevLayer> layers_;
    std::vector<int> level_offset_;   // [levels + 1]
    DeviceBuffer<float> scale_;       // [R] per-rank-row level scale
    size_t n_params_ = 0;
    DeviceBuffer<float> w32_, g32_, m_, v_;
    DeviceBuffer<bf16> wbf_;
    DeviceBuffer<double> dsum_;
    DeviceBuffer<int> dcount_;

    DeviceBuffer<float> cos_, sin_;     // [rope_T_, d/2] (longrope: of the current rope_T_, attention factor applied)
    DeviceBuffer<float> cosl_, sinl_;   // Gemma-3's sliding layers (rope_local_theta, no scaling); else empty
    int rope_T_ = 0;

    bool training_ = false, ckpt_ = false;
    uint64_t dropout_seed_ = 0, call_ = 0;
    int active_levels_ = 0;
    int loss_chunk_ = 0;

    std::vector<DevActs> acts_;
    std::vector<DeviceBuffer<float>> xs_;
    DeviceBuffer<bf16> wbuf_;                // dequantized weight [out, in] of the current projection
    DeviceBuffer<float> zf_;                 // [N, R] fp32 adapter product
    DeviceBuffer<bf16> xd_;                  // [N, in] dropped-out adapter input
    DeviceBuffer<float> tf_;                 // [N, in] per-level dx contribution (dropout)
    DeviceBuffer<bf16> qraw_, kraw_, vraw_;  // [N, H·d] / [N, KV·d] projection outputs before rope / layout
    DeviceBuffer<bf16> xnb_, hb_;            // normed input [N, C], MLP hidden [N, F]
    DeviceBuffer<float> attn_work_;
    DeviceBuffer<float> ytmp_, dxa_, dxb_, dmid_, dxn_, dh_, datt_, dq_, dk_, dv_, dxf_;
    // Family scratch (allocated only when used): fp32 q/k/v before rounding [N, H·d] / [N, KV·d]; the post-norm
    // output [N, C]; the rope backward's fp32 bthd dq/dk and the q/k norm backward's outputs; the gradients of the
    // o_proj / down_proj outputs [N, C] (Gemma-2/3).
    DeviceBuffer<float> qf_, kf_, vf_, postf_, dqr_, dkr_, dqn_, dkn_, dao_, dmo_;
    DeviceBuffer<bf16> dcat_, dus_;          // a group's output gradients and adapter du (group_ld), du scratch
    DeviceBuffer<bf16> xf_;                  // [N, C] final norm output
    DeviceBuffer<bf16> rows_;                // [B, C] the rows forward_logits_at projects (reused across calls)
    DeviceBuffer<float> rstdf_;
    DeviceBuffer<float> logits_, row_loss_;
    DeviceBuffer<bf16> dlogits_;
    DeviceBuffer<int32_t> ids_, targets_;
    // Packed rows, for the current forward_backward_packed call only: seg and RoPE positions [B, T] on the device.
    bool packed_ = false;
    DeviceBuffer<int32_t> segd_, posd_;
    std::vector<int32_t> pos_h_;
    int pos_len_ = 0;
    std::vector<int32_t> targets_h_;
    std::vector<float> row_loss_h_;
    size_t weight_bytes_ = 0;
};

CudaModel::CudaModel(std::unique_ptr<Model> host) : host_(std::move(host)) {
    hw_ = host_weights(*host_);
    const std::string missing = cfg().cuda_missing_features();
    HQ_CHECK(missing.empty(), "E_CUDA",
             "the CUDA backend does not implement " << missing << " of this " << cfg().model_type << " model yet",
             (Where{"", "", "hardware.device", -1, -1}), "set hardware.device to \"cpu\" (\"auto\" falls back to it)");
    HQ_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    gemm_ = std::make_unique<Gemm>(stream_);
    prof_ = std::make_unique<Profiler>(stream_);
    gemma_ = hw_.gemma;
    act_ = hw_.act == Act::GeluTanh ? 1 : 0;
    attn_scale_ = cfg().attn_scale();   // head_dim^-0.5, or query_pre_attn_scalar^-0.5 (Gemma-2/3), as the CPU
    active_levels_ = (int)spec().levels.size();
    nf4_init_tables();
    upload_all();
}

CudaModel::~CudaModel() {
    if (stream_) {
        cudaStreamSynchronize(stream_);
        prof_.reset();
        gemm_.reset();
        cudaStreamDestroy(stream_);
    }
}

void CudaModel::upload_all() {
    const ModelConfig& c = cfg();
    DeviceBuffer<float> stage;
    upload_bf16(embed_, hw_.embed->data(), hw_.embed->size(), stage, stream_);
    if (!c.tie_word_embeddings) upload_bf16(lm_head_, hw_.lm_head->data(), hw_.lm_head->size(), stage, stream_);
    upload(norm_, hw_.norm->data(), hw_.norm->size(), stream_);
    weight_bytes_ = embed_.bytes() + lm_head_.bytes() + norm_.bytes();

    // Adapter layout: every adapted projection has the same levels (model.cpp build_adapters).
    const int nlev = (int)spec().levels.size();
    level_offset_.assign(nlev + 1, 0);
    for (int j = 0; j < nlev; j++) level_offset_[j + 1] = level_offset_[j] + spec().levels[j].rank;
    std::vector<float> scale((size_t)level_offset_[nlev]);
    for (int j = 0; j < nlev; j++)
        for (int i = level_offset_[j]; i < level_offset_[j + 1]; i++) scale[i] = spec().scale(j);
    upload(scale_, scale.data(), scale.size(), stream_);

    layers_.resize(hw_.layers->size());
    for (size_t l = 0; l < layers_.size(); l++) {
        const DecoderLayer& H = (*hw_.layers)[l];
        DevLayer& D = layers_[l];
        upload(D.ln1, H.ln1.data(), H.ln1.size(), stream_);
        upload(D.ln2, H.ln2.data(), H.ln2.size(), stream_);
        weight_bytes_ += D.ln1.bytes() + D.ln2.bytes();
        // Family extras, fp32 as loaded by the CPU backend (empty host vectors stay unallocated).
        auto extra = [&](DeviceBuffer<float>& d, const std::vector<float>& h) {
            if (h.empty()) return;
            upload(d, h.data(), h.size(), stream_);
            weight_bytes_ += d.bytes();
        };
        extra(D.ln_post_attn, H.ln_post_attn);
        extra(D.ln_post_ff, H.ln_post_ff);
        extra(D.q_norm, H.q_norm);
        extra(D.k_norm, H.k_norm);
        for (int j = 0; j < 3; j++) extra(D.bias[j], H.bias[j]);
        D.sliding = H.sliding;
        HQ_ASSERT(!c.sandwich_norm || (D.ln_post_attn.size() && D.ln_post_ff.size()));
        HQ_ASSERT(!c.qk_norm || (D.q_norm.size() && D.k_norm.size()));
        HQ_ASSERT(!c.qkv_bias || (D.bias[0].size() && D.bias[1].size() && D.bias[2].size()));
        for (int p = 0; p < P_COUNT; p++) {
            const HLoraLinear& P = H.proj[p];
            DevLinear& L = D.proj[p];
            L.in = P.in;
            L.out = P.out;
            L.quantized = P.quantized;
            if (P.quantized) {
                const NF4Tensor& t = P.wq;
                upload(L.packed, t.packed.data(), t.packed.size(), stream_);
                L.view.packed = L.packed.data();
                if (t.double_quant) {
                    upload(L.qabsmax, t.qabsmax.data(), t.qabsmax.size(), stream_);
                    upload(L.absmax2, t.absmax2.data(), t.absmax2.size(), stream_);
                    L.view.qabsmax = L.qabsmax.data();
                    L.view.absmax2 = L.absmax2.data();
                } else {
                    upload(L.absmax, t.absmax.data(), t.absmax.size(), stream_);
                    L.view.absmax = L.absmax.data();
                }
                L.view.offset = t.offset;
                L.view.n = t.numel();
                L.view.blocksize = t.blocksize;
                L.view.nested_blocksize = t.nested_blocksize;
                L.view.double_quant = t.double_quant;
                weight_bytes_ += L.packed.bytes() + L.qabsmax.bytes() + L.absmax2.bytes() + L.absmax.bytes();
            } else {
                upload_bf16(L.w, P.w.data(), P.w.size(), stage, stream_);
                weight_bytes_ += L.w.bytes();
            }
            L.R = P.R;
            if (P.R > 0) {
                L.a_off = (size_t)(P.A - hw_.params_w);
                L.b_off = (size_t)(P.B - hw_.params_w);
            }
        }
    }
    n_params_ = hw_.params_numel;
    w32_.resize(n_params_);
    g32_.resize(n_params_);
    m_.resize(n_params_);
    v_.resize(n_params_);
    wbf_.resize(n_params_);
    HQ_CUDA(cudaMemcpyAsync(w32_.data(), hw_.params_w, n_params_ * sizeof(float), cudaMemcpyHostToDevice, stream_));
    HQ_CUDA(cudaMemsetAsync(g32_.data(), 0, n_params_ * sizeof(float), stream_));
    HQ_CUDA(cudaMemsetAsync(m_.data(), 0, n_params_ * sizeof(float), stream_));
    HQ_CUDA(cudaMemsetAsync(v_.data(), 0, n_params_ * sizeof(float), stream_));
    refresh_shadow();
    dsum_.resize(1);
    dcount_.resize(1);
    HQ_CUDA(cudaStreamSynchronize(stream_));
}

void CudaModel::refresh_shadow() { f32_to_bf16(wbf_.data(), w32_.data(), (int64_t)n_params_, stream_); }

void CudaModel::ensure_rope(int T) {
    // As ModelImpl::ensure_rope: tables of positions 0..T'-1 serve any T <= T', except for longrope (Phi-3) whose
    // frequencies (short or long factors) depend on T itself; its tables carry the attention factor.
    const ModelConfig& c = cfg();
    const bool by_length = rope_depends_on_length(c.rope_scaling);
    if (by_length ? T == rope_T_ : T <= rope_T_) return;
    const int h = c.head_dim / 2;
    const std::vector<float> inv = rope_inv_freq(c.head_dim, c.rope_theta, c.rope_scaling, T);   // [d/2]
    std::vector<float> cs((size_t)T * h), sn((size_t)T * h);
    rope_tables(cs.data(), sn.data(), inv.data(), T, c.head_dim, rope_attention_scale(c.rope_scaling));
    cos_.release();
    sin_.release();
    upload(cos_, cs.data(), cs.size(), stream_);
    upload(sin_, sn.data(), sn.size(), stream_);
    std::vector<float> csl, snl;   // Gemma-3's local layers: default RoPE with rope_local_theta
    if (c.rope_local_theta > 0) {
        const std::vector<float> invl = rope_inv_freq(c.head_dim, c.rope_local_theta, RopeScaling{});
        csl.resize((size_t)T * h);
        snl.resize((size_t)T * h);
        rope_tables(csl.data(), snl.data(), invl.data(), T, c.head_dim);
        cosl_.release();
        sinl_.release();
        upload(cosl_, csl.data(), csl.size(), stream_);
        upload(sinl_, snl.data(), snl.size(), stream_);
    }
    HQ_CUDA(cudaStreamSynchronize(stream_));   // the host tables are freed on return
    rope_T_ = T;
}

void CudaModel::ensure_acts(DevActs& a, int B, int T) {
    const ModelConfig& c = cfg();
    const size_t N = (size_t)B * T, C = c.hidden_size, F = c.intermediate_size;
    const size_t Hd = (size_t)c.num_heads * c.head_dim, KVd = (size_t)c.num_kv_heads * c.head_dim;
    a.rstd1.resize(N);
    a.q.resize(N * Hd);
    a.k.resize(N * KVd);
    a.v.resize(N * KVd);
    a.att.resize(N * Hd);
    a.lse.resize(N * (size_t)c.num_heads);
    a.xmid.resize(N * C);
    a.rstd2.resize(N);
    a.g.resize(N * F);
    a.u.resize(N * F);
    const int Ra = level_offset_.back();
    for (int j = 0; j < P_COUNT; j++)
        if (layers_[0].proj[j].R > 0) a.z[j].resize(N * (size_t)Ra);
    if (c.qk_norm) {
        a.qpre.resize(N * Hd);
        a.kpre.resize(N * KVd);
        a.rstdq.resize(N * c.num_heads);
        a.rstdk.resize(N * c.num_kv_heads);
    }
    if (c.sandwich_norm) {
        a.ao.resize(N * C);
        a.rstd3.resize(N);
        a.mo.resize(N * C);
        a.rstd4.resize(N);
    }
}

void CudaModel::ensure_scratch(int B, int T) {
    const ModelConfig& c = cfg();
    const size_t N = (size_t)B * T, C = c.hidden_size, F = c.intermediate_size;
    const size_t Hd = (size_t)c.num_heads * c.head_dim, KVd = (size_t)c.num_kv_heads * c.head_dim;
    const size_t R = (size_t)level_offset_.back();
    size_t maxin = 0;
    for (const DevLinear& L : layers_[0].proj) maxin = std::max(maxin, (size_t)std::max(L.in, L.out));
    // wbuf_: the largest stacked group weight (group_backward), which also covers any single projection.
    size_t maxw = 0, maxld = 0;
    const DevLinear* P = layers_[0].proj;
    const std::vector<std::vector<int>> groups = {{P_Q, P_K, P_V}, {P_O}, {P_GATE, P_UP}, {P_DOWN}};
    for (const std::vector<int>& g : groups) {
        size_t rows = 0;
        for (int p : g) rows += (size_t)P[p].out + (P[p].R > 0 ? R : 0);
        maxw = std::max(maxw, rows * (size_t)P[g[0]].in);
        maxld = std::max(maxld, rows);
    }
    wbuf_.resize(maxw);
    zf_.resize(N * std::max<size_t>(R, 1));
    dus_.resize(N * std::max<size_t>(R, 1));
    if (spec().dropout > 0.0f) {
        xd_.resize(N * maxin);
        tf_.resize(N * maxin);
    }
    xnb_.resize(N * C);
    hb_.resize(N * F);
    qraw_.resize(N * Hd);
    kraw_.resize(N * KVd);
    vraw_.resize(N * KVd);
    // Sized (and the kernel chosen, which refuses what it cannot do) for the most demanding layer: a sliding one
    // when the model has any, with the document mask when these rows are packed.
    const AttnDims ad = attn_dims(-1, B, T);
    attn_work_.resize(attention_workspace_floats(ad));
    static const bool logged = (std::fprintf(stderr, "[hqlora] cuda attention kernel: %s (HQ_ATTN=gemm|flash)\n",
                                             attention_kernel_name(attention_kernel(ad))),
                                true);
    (void)logged;
    ytmp_.resize(N * C);
    dxa_.resize(N * C);
    dxb_.resize(N * C);
    dmid_.resize(N * C);
    dxn_.resize(N * C);
    dh_.resize(N * F);
    datt_.resize(N * Hd);
    dq_.resize(N * Hd);
    dk_.resize(N * KVd);
    dv_.resize(N * KVd);
    dxf_.resize(N * C);
    if (c.qkv_bias || c.qk_norm) {
        qf_.resize(N * Hd);
        kf_.resize(N * KVd);
        vf_.resize(N * KVd);
    }
    if (c.qk_norm) {
        dqr_.resize(N * Hd);
        dkr_.resize(N * KVd);
        dqn_.resize(N * Hd);
        dkn_.resize(N * KVd);
    }
    if (c.sandwich_norm) {
        postf_.resize(N * C);
        dao_.resize(N * C);
        dmo_.resize(N * C);
    }
    dcat_.resize(N * maxld);
    xf_.resize(N * C);
    rstdf_.resize(N);
    ids_.resize(N);
    targets_.resize(N);
    row_loss_.resize(N);
}

const bf16* CudaModel::base_weight(const DevLinear& L) {
    if (!L.quantized) return L.w.data();
    prof_->mark(PC_DEQUANT);
    nf4_dequantize_bf16(wbuf_.data(), L.view, stream_);
    return wbuf_.data();
}

void CudaModel::linear_forward(int layer, int proj, const bf16* x, int64_t N, void* y, DType yt, float beta, bf16* z,
                               const float* yin) {
    const DevLinear& L = layers_[layer].proj[proj];
    const int in = L.in, out = L.out;
    const bf16* W = base_weight(L);
    prof_->mark(PC_GEMM);
    gemm_->run(false, true, N, out, in, 1.0f, x, in, W, in, yin ? 1.0f : beta, y, yt, out, 1, 0, 0, 0, yin);
    const int Ra = active_rank(L);
    if (Ra == 0) return;
    prof_->mark(PC_LORA);
    const bf16* A = wbf_.data() + L.a_off;
    const bf16* Bw = wbf_.data() + L.b_off;
    const float p = dropout();
    if (p <= 0.0f) {
        gemm_->run(false, true, N, Ra, in, 1.0f, x, in, A, in, 0.0f, zf_.data(), DType::F32, Ra);
    } else {
        const uint64_t key = mask_key(layer, proj);
        for (int j = 0; j < active_levels_; j++) {
            const int o = level_offset_[j], r = level_offset_[j + 1] - o;
            dropout_bf16(xd_.data(), x, N * in, p, rng_key(key, (uint64_t)j), stream_);
            gemm_->run(false, true, N, r, in, 1.0f, xd_.data(), in, A + (int64_t)o * in, in, 0.0f, zf_.data() + o,
                       DType::F32, Ra);
        }
    }
    scale_cols_to_bf16(z, zf_.data(), N, Ra, scale_.data(), stream_);
    // y += z · B_actᵀ   (B [out, R], first Ra columns)
    gemm_->run(false, true, N, out, Ra, 1.0f, z, Ra, Bw, L.R, 1.0f, y, yt, out);
}

int64_t CudaModel::group_ld(std::initializer_list<int> ps) const {
    const DevLayer& D = layers_[0];
    int64_t ld = 0;
    for (int p : ps) ld += D.proj[p].out + active_rank(D.proj[p]);
    return ld;
}

void CudaModel::group_backward(int layer, std::initializer_list<int> ps, const bf16* x, const DevActs& a, bf16* dy,
                               int64_t ld, int64_t N, float* dx, bool accumulate) {
    const DevLayer& D = layers_[layer];
    const int in = D.proj[*ps.begin()].in;
    const int Ra = level_offset_[active_levels_];
    const float p = dropout();
    int64_t cols = 0;
    int adapted = 0;
    for (int q : ps) {
        HQ_ASSERT(D.proj[q].in == in);
        cols += D.proj[q].out;
        if (active_rank(D.proj[q]) > 0) adapted++;
    }
    HQ_ASSERT(ld == cols + (int64_t)adapted * Ra);
    const bool fold = adapted > 0 && p <= 0.0f;

    // The stacked weight [W_1; …; W_k] (bf16, dequantized) and, when folding, the active A_p rows under it.
    const bf16* W = nullptr;
    const DevLinear& L0 = D.proj[*ps.begin()];
    if (ps.size() == 1 && !fold && !L0.quantized) {
        W = L0.w.data();
    } else {
        prof_->mark(PC_DEQUANT);
        int64_t row = 0;
        for (int q : ps) {
            const DevLinear& L = D.proj[q];
            bf16* dst = wbuf_.data() + row * in;
            if (L.quantized)
                nf4_dequantize_bf16(dst, L.view, stream_);
            else
                HQ_CUDA(cudaMemcpyAsync(dst, L.w.data(), sizeof(bf16) * L.out * in, cudaMemcpyDeviceToDevice, stream_));
            row += L.out;
        }
        W = wbuf_.data();
    }

    // Adapters: dB_p += dy_pᵀ·z_p ; du_p = (dy_p·B_p)⊙s ; dA_p += du_pᵀ·x (with dropout: per level, on x̃_j, and
    // their dx terms after the base GEMM below).
    auto adapters = [&](bool folded) {
        int64_t col = 0;
        int k = 0;
        for (int q : ps) {
            const DevLinear& L = D.proj[q];
            const bf16* dyq = dy + col;
            col += L.out;
            if (active_rank(L) == 0) continue;
            prof_->mark(PC_LORA);
            const bf16* A = wbf_.data() + L.a_off;
            const bf16* Bw = wbf_.data() + L.b_off;
            float* dA = g32_.data() + L.a_off;
            float* dB = g32_.data() + L.b_off;
            const bf16* z = a.z[q].data();
            // dB [out, Ra] += dy_qᵀ · z
            gemm_->run(true, false, L.out, Ra, N, 1.0f, dyq, ld, z, Ra, 1.0f, dB, DType::F32, L.R);
            // du [N, Ra] = (dy_q · B_act) ⊙ s
            gemm_->run(false, false, N, Ra, L.out, 1.0f, dyq, ld, Bw, L.R, 0.0f, zf_.data(), DType::F32, Ra);
            bf16* du = folded ? dy + cols + (int64_t)k * Ra : dus_.data();
            const int64_t ldu = folded ? ld : Ra;
            scale_cols_to_bf16(du, zf_.data(), N, Ra, scale_.data(), stream_, ldu);
            if (folded) {
                // dA [Ra, in] += duᵀ · x ; A's active rows join the stacked weight
                gemm_->run(true, false, Ra, in, N, 1.0f, du, ldu, x, in, 1.0f, dA, DType::F32, in);
                HQ_CUDA(cudaMemcpyAsync(wbuf_.data() + (cols + (int64_t)k * Ra) * in, A, sizeof(bf16) * Ra * in,
                                        cudaMemcpyDeviceToDevice, stream_));
                k++;
                continue;
            }
            const uint64_t key = mask_key(layer, q);
            for (int j = 0; j < active_levels_; j++) {
                const int o = level_offset_[j], r = level_offset_[j + 1] - o;
                const uint64_t kj = rng_key(key, (uint64_t)j);
                dropout_bf16(xd_.data(), x, N * in, p, kj, stream_);
                // dA_j [r, in] += du_jᵀ · x̃_j
                gemm_->run(true, false, r, in, N, 1.0f, du + o, Ra, xd_.data(), in, 1.0f, dA + (int64_t)o * in,
                           DType::F32, in);
                // dx += (du_j · A_j) ⊙ m_j / (1 − p)
                gemm_->run(false, false, N, in, r, 1.0f, du + o, Ra, A + (int64_t)o * in, in, 0.0f, tf_.data(),
                           DType::F32, in);
                dropout_accumulate(dx, tf_.data(), N * in, p, kj, stream_);
            }
        }
    };
    if (fold) adapters(true);
    // dx [N, in] (=, +=) dy[:, :K] · W_stacked[:K, :]
    prof_->mark(PC_GEMM);
    const int64_t K = fold ? ld : cols;
    gemm_->run(false, false, N, in, K, 1.0f, dy, ld, W, in, accumulate ? 1.0f : 0.0f, dx, DType::F32, in);
    if (!fold && adapted > 0) adapters(false);
}

void CudaModel::qkv_forward(int l, DevActs& a, int64_t N) {
    const ModelConfig& c = cfg();
    if (!c.qkv_bias && !c.qk_norm) {
        linear_forward(l, P_Q, xnb_.data(), N, qraw_.data(), DType::BF16, 0.0f, a.z[P_Q].data());
        linear_forward(l, P_K, xnb_.data(), N, kraw_.data(), DType::BF16, 0.0f, a.z[P_K].data());
        linear_forward(l, P_V, xnb_.data(), N, vraw_.data(), DType::BF16, 0.0f, a.z[P_V].data());
        return;
    }
    const DevLayer& D = layers_[l];
    const int H = c.num_heads, KV = c.num_kv_heads, d = c.head_dim;
    const int Hd = H * d, KVd = KV * d;
    // fp32 projection outputs: q, k into the kept pre-norm buffers when q/k are normed (model.cpp: qpre, kpre)
    float* qp = c.qk_norm ? a.qpre.data() : qf_.data();   // [N, H·d]
    float* kp = c.qk_norm ? a.kpre.data() : kf_.data();   // [N, KV·d]
    float* vp = vf_.data();                               // [N, KV·d]
    linear_forward(l, P_Q, xnb_.data(), N, qp, DType::F32, 0.0f, a.z[P_Q].data());
    linear_forward(l, P_K, xnb_.data(), N, kp, DType::F32, 0.0f, a.z[P_K].data());
    linear_forward(l, P_V, xnb_.data(), N, vp, DType::F32, 0.0f, a.z[P_V].data());
    prof_->mark(PC_ELEM);
    if (c.qkv_bias) {   // Qwen2: + frozen fp32 biases
        add_bias_rows(qp, D.bias[0].data(), N, Hd, stream_);
        add_bias_rows(kp, D.bias[1].data(), N, KVd, stream_);
        add_bias_rows(vp, D.bias[2].data(), N, KVd, stream_);
    }
    if (c.qk_norm) {   // Qwen3 / Gemma-3: RMSNorm over each head's d values (weight [d]), before RoPE
        rmsnorm_forward_f32(qf_.data(), a.rstdq.data(), qp, D.q_norm.data(), N * H, d, c.rms_norm_eps, gemma_,
                            stream_);
        rmsnorm_forward_f32(kf_.data(), a.rstdk.data(), kp, D.k_norm.data(), N * KV, d, c.rms_norm_eps, gemma_,
                            stream_);
        qp = qf_.data();
        kp = kf_.data();
    }
    f32_to_bf16(qraw_.data(), qp, N * Hd, stream_);
    f32_to_bf16(kraw_.data(), kp, N * KVd, stream_);
    f32_to_bf16(vraw_.data(), vp, N * KVd, stream_);
}

void CudaModel::qk_backward(int l, const DevActs& a, int B, int T, bf16* dcat, int64_t ld) {
    const ModelConfig& c = cfg();
    const int H = c.num_heads, KV = c.num_kv_heads, d = c.head_dim;
    const int64_t N = (int64_t)B * T, Hd = (int64_t)H * d, KVd = (int64_t)KV * d;
    if (!c.qk_norm) {
        rope_backward_from_bhtd(dcat, dq_.data(), rope_cos(l), rope_sin(l), B, T, H, d, stream_, ld, rope_pos());
        rope_backward_from_bhtd(dcat + Hd, dk_.data(), rope_cos(l), rope_sin(l), B, T, KV, d, stream_, ld, rope_pos());
        return;
    }
    const DevLayer& D = layers_[l];
    // fp32 through the rotation's and the norm's backward (model.cpp: rope_backward, then rmsnorm_backward into
    // zeroed dqn / dkn), rounded to bf16 once into dcat's q and k column blocks.
    rope_backward_from_bhtd_f32(dqr_.data(), dq_.data(), rope_cos(l), rope_sin(l), B, T, H, d, stream_, rope_pos());
    rope_backward_from_bhtd_f32(dkr_.data(), dk_.data(), rope_cos(l), rope_sin(l), B, T, KV, d, stream_, rope_pos());
    HQ_CUDA(cudaMemsetAsync(dqn_.data(), 0, sizeof(float) * N * Hd, stream_));
    HQ_CUDA(cudaMemsetAsync(dkn_.data(), 0, sizeof(float) * N * KVd, stream_));
    rmsnorm_backward(dqn_.data(), dqr_.data(), a.qpre.data(), D.q_norm.data(), a.rstdq.data(), N * H, d, gemma_,
                     stream_);
    rmsnorm_backward(dkn_.data(), dkr_.data(), a.kpre.data(), D.k_norm.data(), a.rstdk.data(), N * KV, d, gemma_,
                     stream_);
    f32_to_bf16_rows(dcat, ld, dqn_.data(), N, (int)Hd, stream_);
    f32_to_bf16_rows(dcat + Hd, ld, dkn_.data(), N, (int)KVd, stream_);
}

void CudaModel::layer_forward(int l, const float* x, float* y, DevActs& a, int B, int T) {
    const ModelConfig& c = cfg();
    const int64_t N = (int64_t)B * T, C = c.hidden_size;
    DevLayer& D = layers_[l];
    ensure_acts(a, B, T);
    prof_->mark(PC_ELEM);
    rmsnorm_forward(xnb_.data(), a.rstd1.data(), x, D.ln1.data(), N, (int)C, c.rms_norm_eps, gemma_, stream_);
    qkv_forward(l, a, N);
    prof_->mark(PC_ELEM);
    rope_forward_to_bhtd(a.q.data(), qraw_.data(), rope_cos(l), rope_sin(l), B, T, c.num_heads, c.head_dim, stream_,
                         rope_pos());
    rope_forward_to_bhtd(a.k.data(), kraw_.data(), rope_cos(l), rope_sin(l), B, T, c.num_kv_heads, c.head_dim,
                         stream_, rope_pos());
    bthd_to_bhtd(a.v.data(), vraw_.data(), B, T, c.num_kv_heads, c.head_dim, stream_);
    const AttnDims ad = attn_dims(l, B, T);
    prof_->mark(PC_ATTN);
    attention_forward(*gemm_, a.att.data(), a.lse.data(), nullptr, a.q.data(), a.k.data(), a.v.data(),
                      attn_work_.data(), ad);
    if (c.sandwich_norm) {
        // Gemma-2/3: xmid = x + post_attention_layernorm(o(att)), all fp32 (ao kept for the norm's backward)
        linear_forward(l, P_O, a.att.data(), N, a.ao.data(), DType::F32, 0.0f, a.z[P_O].data());
        prof_->mark(PC_ELEM);
        rmsnorm_forward_f32(postf_.data(), a.rstd3.data(), a.ao.data(), D.ln_post_attn.data(), N, (int)C,
                            c.rms_norm_eps, gemma_, stream_);
        add_f32(a.xmid.data(), x, postf_.data(), N * C, stream_);
    } else {
        // xmid = x + o(att)
        linear_forward(l, P_O, a.att.data(), N, a.xmid.data(), DType::F32, 1.0f, a.z[P_O].data(), x);
    }
    prof_->mark(PC_ELEM);
    rmsnorm_forward(xnb_.data(), a.rstd2.data(), a.xmid.data(), D.ln2.data(), N, (int)C, c.rms_norm_eps, gemma_,
                    stream_);
    linear_forward(l, P_GATE, xnb_.data(), N, a.g.data(), DType::BF16, 0.0f, a.z[P_GATE].data());
    linear_forward(l, P_UP, xnb_.data(), N, a.u.data(), DType::BF16, 0.0f, a.z[P_UP].data());
    prof_->mark(PC_ELEM);
    glu_forward(hb_.data(), a.g.data(), a.u.data(), N * c.intermediate_size, act_, stream_);
    if (c.sandwich_norm) {
        // Gemma-2/3: y = xmid + post_feedforward_layernorm(down(h)) (mo kept for the norm's backward)
        linear_forward(l, P_DOWN, hb_.data(), N, a.mo.data(), DType::F32, 0.0f, a.z[P_DOWN].data());
        prof_->mark(PC_ELEM);
        rmsnorm_forward_f32(postf_.data(), a.rstd4.data(), a.mo.data(), D.ln_post_ff.data(), N, (int)C,
                            c.rms_norm_eps, gemma_, stream_);
        add_f32(y, a.xmid.data(), postf_.data(), N * C, stream_);
    } else {
        // y = xmid + down(h)
        linear_forward(l, P_DOWN, hb_.data(), N, y, DType::F32, 1.0f, a.z[P_DOWN].data(), a.xmid.data());
    }
}

void CudaModel::layer_backward(int l, const float* x, DevActs& a, const float* dy, float* dx, int B, int T) {
    // dy [N, C] fp32 is the gradient w.r.t. the layer output; its bf16 copy is already in dcat_ (rows
    // group_ld({P_DOWN}) apart), written by the RMSNorm backward that produced dy.
    const ModelConfig& c = cfg();
    const int64_t N = (int64_t)B * T, C = c.hidden_size, F = c.intermediate_size;
    const int64_t Hd = (int64_t)c.num_heads * c.head_dim, KVd = (int64_t)c.num_kv_heads * c.head_dim;
    DevLayer& D = layers_[l];
    bf16* dcat = dcat_.data();
    const int64_t ld_down = group_ld({P_DOWN}), ld_gu = group_ld({P_GATE, P_UP}), ld_o = group_ld({P_O}),
                  ld_qkv = group_ld({P_Q, P_K, P_V});
    // MLP block: y = xmid + down(act(g) ⊙ u)   (Gemma-2/3: y = xmid + post_ff_norm(down(...)))
    prof_->mark(PC_ELEM);
    if (c.sandwich_norm) {
        // down_proj's output gradient is the post-norm's backward of dy (replacing dy's bf16 copy in dcat)
        HQ_CUDA(cudaMemsetAsync(dmo_.data(), 0, sizeof(float) * N * C, stream_));
        rmsnorm_backward(dmo_.data(), dy, a.mo.data(), D.ln_post_ff.data(), a.rstd4.data(), N, (int)C, gemma_,
                         stream_, nullptr, dcat, ld_down);
    }
    glu_forward(hb_.data(), a.g.data(), a.u.data(), N * F, act_, stream_);   // the down_proj input, recomputed
    group_backward(l, {P_DOWN}, hb_.data(), a, dcat, ld_down, N, dh_.data(), false);
    prof_->mark(PC_ELEM);
    glu_backward(dcat, dcat + F, dh_.data(), a.g.data(), a.u.data(), N * F, act_, stream_, F, ld_gu);
    rmsnorm_forward(xnb_.data(), nullptr, a.xmid.data(), D.ln2.data(), N, (int)C, c.rms_norm_eps, gemma_, stream_);
    group_backward(l, {P_GATE, P_UP}, xnb_.data(), a, dcat, ld_gu, N, dxn_.data(), false);
    // dmid = dy + ln2 backward (and its bf16 copy, o_proj's output gradient)
    prof_->mark(PC_ELEM);
    if (c.sandwich_norm) {
        // Gemma-2/3: xmid = x + post_attn_norm(o(...)): o_proj's output gradient is the post-norm's backward of dmid
        rmsnorm_backward(dmid_.data(), dxn_.data(), a.xmid.data(), D.ln2.data(), a.rstd2.data(), N, (int)C, gemma_,
                         stream_, dy);
        HQ_CUDA(cudaMemsetAsync(dao_.data(), 0, sizeof(float) * N * C, stream_));
        rmsnorm_backward(dao_.data(), dmid_.data(), a.ao.data(), D.ln_post_attn.data(), a.rstd3.data(), N, (int)C,
                         gemma_, stream_, nullptr, dcat, ld_o);
    } else {
        rmsnorm_backward(dmid_.data(), dxn_.data(), a.xmid.data(), D.ln2.data(), a.rstd2.data(), N, (int)C, gemma_,
                         stream_, dy, dcat, ld_o);
    }
    // Attention block: xmid = x + o(attn(rope(q), rope(k), v))
    group_backward(l, {P_O}, a.att.data(), a, dcat, ld_o, N, datt_.data(), false);
    const AttnDims ad = attn_dims(l, B, T);
    prof_->mark(PC_ATTN);
    attention_backward(*gemm_, dq_.data(), dk_.data(), dv_.data(), datt_.data(), a.att.data(), a.lse.data(),
                       a.q.data(), a.k.data(), a.v.data(), nullptr, attn_work_.data(), ad);
    prof_->mark(PC_ELEM);
    qk_backward(l, a, B, T, dcat, ld_qkv);   // q/k biases: frozen, their gradient passes through unchanged
    bhtd_to_bthd_f32_to_bf16(dcat + Hd + KVd, dv_.data(), B, T, c.num_kv_heads, c.head_dim, stream_, ld_qkv);
    rmsnorm_forward(xnb_.data(), nullptr, x, D.ln1.data(), N, (int)C, c.rms_norm_eps, gemma_, stream_);
    group_backward(l, {P_Q, P_K, P_V}, xnb_.data(), a, dcat, ld_qkv, N, dxn_.data(), false);
    // dx = dmid + ln1 backward, and its bf16 copy for the layer below (its down_proj's output gradient)
    prof_->mark(PC_ELEM);
    rmsnorm_backward(dx, dxn_.data(), x, D.ln1.data(), a.rstd1.data(), N, (int)C, gemma_, stream_, dmid_.data(),
                     l > 0 ? dcat : nullptr, ld_down);
}

void CudaModel::check_ids(const int32_t* ids, int64_t N) const {
    const int V = cfg().vocab_size;
    for (int64_t i = 0; i < N; i++)
        HQ_CHECK(ids[i] >= 0 && ids[i] < V, "E_TOKENS", "token id " << ids[i] << " at position " << i
                                                                     << " is outside the vocabulary [0, " << V << ")",
                 Where{}, "the token file was made with another tokenizer; prepare the data again for this model");
}

void CudaModel::forward_hidden(const int32_t* ids, int B, int T, bool keep) {
    HQ_CHECK(B > 0 && T > 0, "E_INTERNAL", "empty micro-batch B=" << B << " T=" << T, Where{},
             "micro-batches need at least one token");
    const ModelConfig& c = cfg();
    const int64_t N = (int64_t)B * T, C = c.hidden_size;
    const int nL = c.num_layers;
    check_ids(ids, N);
    if (training_) call_++;
    // Packed rows read the tables at per-document positions 0 .. max(pos) (longrope: chosen by max(pos) + 1, as
    // the CPU model and transformers decide it).
    ensure_rope(packed_ ? pos_len_ : T);
    ensure_scratch(B, T);
    const size_t nx = keep ? (size_t)nL + 1 : 2;
    if (xs_.size() < nx) xs_.resize(nx);
    for (size_t i = 0; i < nx; i++) xs_[i].resize((size_t)N * C);
    const size_t nacts = keep && !ckpt_ ? (size_t)nL : 1;
    if (acts_.size() < nacts) acts_.resize(nacts);
    prof_->mark(PC_ELEM);
    HQ_CUDA(cudaMemcpyAsync(ids_.data(), ids, sizeof(int32_t) * N, cudaMemcpyHostToDevice, stream_));
    embedding_forward(xs_[0].data(), embed_.data(), ids_.data(), N, (int)C, embedding_scale(gemma_, (int)C), stream_);
    for (int l = 0; l < nL; l++) {
        const float* x = keep ? xs_[l].data() : xs_[l % 2].data();
        float* y = keep ? xs_[l + 1].data() : xs_[(l + 1) % 2].data();
        layer_forward(l, x, y, acts_[keep && !ckpt_ ? l : 0], B, T);
    }
    const float* xl = keep ? xs_[nL].data() : xs_[nL % 2].data();
    prof_->mark(PC_ELEM);
    rmsnorm_forward(xf_.data(), rstdf_.data(), xl, norm_.data(), N, (int)C, c.rms_norm_eps, gemma_, stream_);
}

int CudaModel::loss_chunk(int64_t N) const {
    if (loss_chunk_ > 0) return loss_chunk_;
    // At most 64 MiB of fp32 logits per chunk (Gemma's 256k vocab: 64 rows), between 16 and 4096 rows.
    const int64_t rows = ((int64_t)64 << 20) / ((int64_t)4 * cfg().vocab_size);
    return (int)std::max<int64_t>(1, std::min<int64_t>({N, 4096, std::max<int64_t>(16, rows)}));
}

LossOut CudaModel::forward_backward(const int32_t* ids, const int32_t* labels, int B, int T, bool backward,
                                    float grad_scale) {
    const ModelConfig& c = cfg();
    const int64_t N = (int64_t)B * T, C = c.hidden_size;
    const int V = c.vocab_size, nL = c.num_layers;
    forward_hidden(ids, B, T, backward);
    targets_h_.resize(N);
    shift_labels(targets_h_.data(), labels, B, T);
    LossOut res;
    for (int64_t i = 0; i < N; i++) {
        const int32_t y = targets_h_[i];
        if (y == -100) continue;
        HQ_CHECK(y >= 0 && y < V, "E_TOKENS", "label " << y << " at position " << i << " is outside the vocabulary [0, "
                                                       << V << ")",
                 Where{}, "the token file was made with another tokenizer; prepare the data again for this model");
        res.n_tokens++;
    }
    HQ_CUDA(cudaMemcpyAsync(targets_.data(), targets_h_.data(), sizeof(int32_t) * N, cudaMemcpyHostToDevice, stream_));
    const int chunk = loss_chunk(N);
    logits_.resize((size_t)chunk * V);
    if (backward) dlogits_.resize((size_t)chunk * V);
    const bf16* W = out_weight();
    prof_->mark(PC_LOSS);
    for (int64_t r0 = 0; r0 < N; r0 += chunk) {
        const int64_t rows = std::min<int64_t>(chunk, N - r0);
        gemm_->run(false, true, rows, V, C, 1.0f, xf_.data() + r0 * C, C, W, C, 0.0f, logits_.data(), DType::F32, V);
        softcap_inplace(logits_.data(), rows * V, c.final_softcap, stream_);   // Gemma-2; no-op when 0
        cross_entropy_rows(row_loss_.data() + r0, backward ? dlogits_.data() : nullptr, logits_.data(),
                           targets_.data() + r0, rows, V, grad_scale, stream_, c.final_softcap);
        if (backward)
            gemm_->run(false, false, rows, C, V, 1.0f, dlogits_.data(), V, W, C, 0.0f, dxf_.data() + r0 * C,
                       DType::F32, C);
    }
    row_loss_h_.resize(N);
    HQ_CUDA(cudaMemcpyAsync(row_loss_h_.data(), row_loss_.data(), sizeof(float) * N, cudaMemcpyDeviceToHost, stream_));
    if (backward) {
        prof_->mark(PC_ELEM);
        HQ_CUDA(cudaMemsetAsync(dxa_.data(), 0, sizeof(float) * N * C, stream_));
        rmsnorm_backward(dxa_.data(), dxf_.data(), xs_[nL].data(), norm_.data(), rstdf_.data(), N, (int)C, gemma_,
                         stream_, nullptr, dcat_.data(), group_ld({P_DOWN}));
        float* dy = dxa_.data();
        float* dx = dxb_.data();
        for (int l = nL - 1; l >= 0; l--) {
            DevActs& a = acts_[ckpt_ ? 0 : l];
            if (ckpt_ && l != nL - 1) layer_forward(l, xs_[l].data(), ytmp_.data(), a, B, T);
            layer_backward(l, xs_[l].data(), a, dy, dx, B, T);
            grads_ready(l);   // data parallel: this layer's bucket may start on the NCCL stream
            std::swap(dy, dx);
        }
    }
    prof_->flush();
    HQ_CUDA(cudaStreamSynchronize(stream_));
    for (int64_t i = 0; i < N; i++)
        if (targets_h_[i] != -100) res.loss_sum += (double)row_loss_h_[i];
    return res;
}

LossOut CudaModel::forward_backward_packed(const int32_t* ids, const int32_t* labels, const int32_t* seg, int B,
                                           int T, bool backward, float grad_scale) {
    if (!seg) return forward_backward(ids, labels, B, T, backward, grad_scale);
    const int64_t N = (int64_t)B * T;
    pos_h_.resize((size_t)N);
    pos_len_ = positions_from_segments(pos_h_.data(), seg, B, T);   // the CPU model's positions (rope.cpp)
    segd_.resize((size_t)N);
    posd_.resize((size_t)N);
    HQ_CUDA(cudaMemcpyAsync(segd_.data(), seg, sizeof(int32_t) * N, cudaMemcpyHostToDevice, stream_));
    HQ_CUDA(cudaMemcpyAsync(posd_.data(), pos_h_.data(), sizeof(int32_t) * N, cudaMemcpyHostToDevice, stream_));
    struct PackedScope {   // the documents hold for this call only
        bool& p;
        ~PackedScope() { p = false; }
    } scope{packed_};
    packed_ = true;
    return forward_backward(ids, labels, B, T, backward, grad_scale);
}

void CudaModel::forward_logits(const int32_t* ids, int B, int T, float* logits_out) {
    const ModelConfig& c = cfg();
    const int64_t N = (int64_t)B * T, C = c.hidden_size;
    const int V = c.vocab_size;
    forward_hidden(ids, B, T, false);
    const int chunk = loss_chunk(N);
    logits_.resize((size_t)chunk * V);
    for (int64_t r0 = 0; r0 < N; r0 += chunk) {
        const int64_t rows = std::min<int64_t>(chunk, N - r0);
        gemm_->run(false, true, rows, V, C, 1.0f, xf_.data() + r0 * C, C, out_weight(), C, 0.0f, logits_.data(),
                   DType::F32, V);
        softcap_inplace(logits_.data(), rows * V, c.final_softcap, stream_);
        HQ_CUDA(cudaMemcpyAsync(logits_out + r0 * V, logits_.data(), sizeof(float) * rows * V, cudaMemcpyDeviceToHost,
                                stream_));
        HQ_CUDA(cudaStreamSynchronize(stream_));
    }
}

void CudaModel::forward_logits_at(const int32_t* ids, int B, int T, const int32_t* positions, float* logits_out) {
    for (int b = 0; b < B; b++)
        HQ_CHECK(positions[b] >= 0 && positions[b] < T, "E_SHAPE",
                 "logits position " << positions[b] << " of row " << b << " is outside [0, " << T << ")", Where{},
                 "pass one position per row inside the sequence");
    const ModelConfig& c = cfg();
    const int64_t C = c.hidden_size;
    const int V = c.vocab_size;
    forward_hidden(ids, B, T, false);
    // Gather the requested rows of the final hidden state, then logits [B, V] = rows · W_outᵀ.
    rows_.resize((size_t)B * C);
    for (int b = 0; b < B; b++)
        HQ_CUDA(cudaMemcpyAsync(rows_.data() + (int64_t)b * C, xf_.data() + ((int64_t)b * T + positions[b]) * C,
                                sizeof(bf16) * C, cudaMemcpyDeviceToDevice, stream_));
    logits_.resize((size_t)B * V);
    gemm_->run(false, true, B, V, C, 1.0f, rows_.data(), C, out_weight(), C, 0.0f, logits_.data(), DType::F32, V);
    softcap_inplace(logits_.data(), (int64_t)B * V, c.final_softcap, stream_);
    HQ_CUDA(cudaMemcpyAsync(logits_out, logits_.data(), sizeof(float) * B * V, cudaMemcpyDeviceToHost, stream_));
    HQ_CUDA(cudaStreamSynchronize(stream_));
}

float CudaModel::device_clip_grad_norm(float max_norm) {
    prof_->mark(PC_OPT);
    sum_squares(dsum_.data(), g32_.data(), (int64_t)n_params_, stream_);
    double ss = 0.0;
    HQ_CUDA(cudaMemcpyAsync(&ss, dsum_.data(), sizeof(double), cudaMemcpyDeviceToHost, stream_));
    HQ_CUDA(cudaStreamSynchronize(stream_));
    const float norm = static_cast<float>(std::sqrt(ss));
    if (max_norm > 0.0f && std::isfinite(norm)) {
        const float coef = max_norm / (norm + 1e-6f);
        if (coef < 1.0f) scale_inplace(g32_.data(), (int64_t)n_params_, coef, stream_);
    }
    return norm;
}

bool CudaModel::device_adamw_step(AdamW& opt, double lr) {
    const AdamWConfig& cf = opt.config();
    opt.t += 1;
    const double step = static_cast<double>(opt.t);
    AdamWArgs a;
    a.one_minus_lr_wd = cf.weight_decay != 0.0 ? static_cast<float>(1.0 - lr * cf.weight_decay) : 1.0f;
    a.one_minus_b1 = static_cast<float>(1.0 - cf.beta1);
    a.b2 = static_cast<float>(cf.beta2);
    a.one_minus_b2 = static_cast<float>(1.0 - cf.beta2);
    const double bc1 = 1.0 - std::pow(cf.beta1, step);
    const double bc2 = 1.0 - std::pow(cf.beta2, step);
    a.neg_step_size = static_cast<float>(-(lr / bc1));
    a.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
    a.eps = static_cast<float>(cf.eps);
    adamw_step(w32_.data(), g32_.data(), m_.data(), v_.data(), (int64_t)n_params_, a, stream_);
    refresh_shadow();
    count_nonfinite(dcount_.data(), w32_.data(), (int64_t)n_params_, stream_);
    prof_->flush();
    int bad = 0;
    HQ_CUDA(cudaMemcpyAsync(&bad, dcount_.data(), sizeof(int), cudaMemcpyDeviceToHost, stream_));
    HQ_CUDA(cudaStreamSynchronize(stream_));
    return bad == 0;
}

void CudaModel::sync_to_host(AdamW* opt, bool grads) {
    HQ_CUDA(cudaMemcpyAsync(hw_.params_w, w32_.data(), n_params_ * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    if (grads)
        HQ_CUDA(cudaMemcpyAsync(hw_.params_g, g32_.data(), n_params_ * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    if (opt) {
        std::vector<Param>& ps = host_->params();
        size_t off = 0;
        for (size_t i = 0; i < ps.size(); i++) {
            opt->m[i].resize(ps[i].numel);
            opt->v[i].resize(ps[i].numel);
            HQ_CUDA(cudaMemcpyAsync(opt->m[i].data(), m_.data() + off, ps[i].numel * sizeof(float),
                                    cudaMemcpyDeviceToHost, stream_));
            HQ_CUDA(cudaMemcpyAsync(opt->v[i].data(), v_.data() + off, ps[i].numel * sizeof(float),
                                    cudaMemcpyDeviceToHost, stream_));
            off += ps[i].numel;
        }
    }
    HQ_CUDA(cudaStreamSynchronize(stream_));
}

void CudaModel::sync_from_host(const AdamW* opt) {
    HQ_CUDA(cudaMemcpyAsync(w32_.data(), hw_.params_w, n_params_ * sizeof(float), cudaMemcpyHostToDevice, stream_));
    if (opt) {
        std::vector<Param>& ps = host_->params();
        size_t off = 0;
        for (size_t i = 0; i < ps.size(); i++) {
            HQ_ASSERT(opt->m[i].size() == ps[i].numel && opt->v[i].size() == ps[i].numel);
            HQ_CUDA(cudaMemcpyAsync(m_.data() + off, opt->m[i].data(), ps[i].numel * sizeof(float),
                                    cudaMemcpyHostToDevice, stream_));
            HQ_CUDA(cudaMemcpyAsync(v_.data() + off, opt->v[i].data(), ps[i].numel * sizeof(float),
                                    cudaMemcpyHostToDevice, stream_));
            off += ps[i].numel;
        }
    }
    refresh_shadow();
    HQ_CUDA(cudaStreamSynchronize(stream_));
}

size_t CudaModel::memory_bytes() const {
    size_t n = weight_bytes_ + scale_.bytes();
    n += w32_.bytes() + g32_.bytes() + m_.bytes() + v_.bytes() + wbf_.bytes();
    for (const DevActs& a : acts_) {
        for (const auto* b : {&a.q, &a.k, &a.v, &a.att, &a.g, &a.u}) n += b->bytes();
        for (const auto* b : {&a.rstd1, &a.rstd2, &a.xmid}) n += b->bytes();
        for (const auto& z : a.z) n += z.bytes();
        for (const auto* b : {&a.qpre, &a.kpre, &a.rstdq, &a.rstdk, &a.ao, &a.rstd3, &a.mo, &a.rstd4}) n += b->bytes();
    }
    for (const auto& x : xs_) n += x.bytes();
    for (const auto* b : {&wbuf_, &xnb_, &hb_, &xd_, &qraw_, &kraw_, &vraw_, &dcat_, &dus_, &xf_, &rows_,
                          &dlogits_})
        n += b->bytes();
    for (const auto* b : {&zf_, &tf_, &attn_work_, &ytmp_, &dxa_, &dxb_, &dmid_, &dxn_, &dh_, &datt_, &dq_, &dk_, &dv_,
                          &dxf_, &rstdf_, &logits_, &row_loss_, &cos_, &sin_, &cosl_, &sinl_, &qf_, &kf_, &vf_,
                          &postf_, &dqr_, &dkr_, &dqn_, &dkn_, &dao_, &dmo_})
        n += b->bytes();
    return n;
}

bool available(std::string* why) {
    if (!device_available(why)) return false;
    try {
        cublaslt_load();
    } catch (const Error& e) {
        if (why) *why = e.what();
        return false;
    }
    return true;
}

std::unique_ptr<Model> load(const std::string& dir, const QuantSpec& quant, const AdapterSpec& adapter,
                            uint64_t seed) {
    return std::make_unique<CudaModel>(Model::load(dir, quant, adapter, seed));
}

}  // namespace

DeviceBackend cuda_backend() {
    DeviceBackend b;
    b.name = "cuda";
    b.available = &available;
    b.load = &load;
    b.select_device = &select_device;
    b.make_collective = &make_nccl_collective;
    return b;
}

}  // namespace hq::cuda
