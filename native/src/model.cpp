// model.cpp — LLaMA / Gemma decoder on CPU in fp32: weight loading (+ NF4 quantization of the targeted
// projections), hierarchical-LoRA adapters, forward, backward, gradient checkpointing.
//
// Decoder (transformers LlamaModel / GemmaModel, trainer-anchors §5):
//   x0 = embed(ids) (· √C for Gemma)
//   per layer: x = x + o(attn(rope(q(n1)), rope(k(n1)), v(n1))),  n1 = input_layernorm(x)
//              x = x + down(act(gate(n2)) ⊙ up(n2)),              n2 = post_attention_layernorm(x)
//   h = norm(x); loss = CE(h·W_outᵀ) over chunks (loss.h); W_out = lm_head or the tied embedding.
// Backward: only adapter grads (A, B) are produced; every base tensor is frozen. With gradient checkpointing the
// layer inputs are kept and each layer's forward is recomputed right before its backward; the recompute runs the
// same code with the same dropout keys, so the results are bit-identical to the non-checkpointed run.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "attention.h"
#include "embedding.h"
#include "error.h"
#include "loss.h"
#include "mlp.h"
#include "model.h"
#include "model_impl.h"
#include "norm.h"
#include "rope.h"
#include "safetensors.h"

namespace hq {

const char* const kProjNames[P_COUNT] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

std::string proj_module_name(int layer, int proj) {
    return HQ_MSG("model.layers." << layer << (proj <= P_O ? ".self_attn." : ".mlp.") << kProjNames[proj]);
}

size_t LayerActs::bytes() const {
    size_t n = xn1.capacity() + rstd1.capacity() + q.capacity() + k.capacity() + v.capacity() + att.capacity() +
               lse.capacity() + xmid.capacity() + xn2.capacity() + rstd2.capacity() + g.capacity() + u.capacity() +
               h.capacity() + qpre.capacity() + kpre.capacity() + rstdq.capacity() + rstdk.capacity() +
               ao.capacity() + rstd3.capacity() + mo.capacity() + rstd4.capacity();
    for (const auto& zz : z) n += zz.capacity();
    return n * sizeof(float);
}

namespace {

void ensure(std::vector<float>& v, size_t n) {
    if (v.size() < n) v.resize(n);
}

// Validates the run config parts that the model consumes (E_CONFIG naming the run.json key).
void check_specs(const QuantSpec& q, const AdapterSpec& a) {
    const std::string hint_q = "quantization.type is \"nf4\" or \"none\"; blocksize a power of two in [32, 4096]";
    if (q.type != "nf4" && q.type != "none")
        throw Error("E_CONFIG", HQ_MSG("unknown quantization type '" << q.type << "'"),
                    Where{"", "", "quantization.type", -1, -1}, hint_q);
    if (q.type == "nf4" && (q.blocksize < 32 || q.blocksize > 4096 || (q.blocksize & (q.blocksize - 1)) != 0))
        throw Error("E_CONFIG", HQ_MSG("quantization.blocksize " << q.blocksize << " is not supported"),
                    Where{"", "", "quantization.blocksize", -1, -1}, hint_q);
    if (a.levels.empty())
        throw Error("E_CONFIG", "adapter.levels is empty", Where{"", "", "adapter.levels", -1, -1},
                    "give at least one level, e.g. [{rank: 32, alpha: 16}]");
    for (size_t i = 0; i < a.levels.size(); i++) {
        if (a.levels[i].rank <= 0)
            throw Error("E_CONFIG", HQ_MSG("adapter level " << i << " has rank " << a.levels[i].rank),
                        Where{"", "", HQ_MSG("adapter.levels[" << i << "].rank"), -1, -1},
                        "ranks must be positive integers");
        if (!(a.levels[i].alpha > 0) || !std::isfinite(a.levels[i].alpha))
            throw Error("E_CONFIG", HQ_MSG("adapter level " << i << " has alpha " << a.levels[i].alpha),
                        Where{"", "", HQ_MSG("adapter.levels[" << i << "].alpha"), -1, -1},
                        "alpha must be a positive number");
    }
    if (!(a.dropout >= 0.0f && a.dropout < 1.0f))
        throw Error("E_CONFIG", HQ_MSG("adapter.dropout " << a.dropout << " is outside [0, 1)"),
                    Where{"", "", "adapter.dropout", -1, -1}, "typical values are 0, 0.05 or 0.1");
    if (a.init != "kaiming" && a.init != "gaussian")
        throw Error("E_CONFIG", HQ_MSG("unknown adapter init '" << a.init << "'"),
                    Where{"", "", "adapter.init", -1, -1},
                    "use \"kaiming\" (PEFT default) or \"gaussian\"");
    if (a.target_modules.empty())
        throw Error("E_CONFIG", "adapter.target_modules is empty", Where{"", "", "adapter.target_modules", -1, -1},
                    "list projections to adapt, e.g. [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]");
    std::set<std::string> seen;
    for (size_t i = 0; i < a.target_modules.size(); i++) {
        const std::string& t = a.target_modules[i];
        const Where w{"", "", HQ_MSG("adapter.target_modules[" << i << "]")};
        if (std::find(std::begin(kProjNames), std::end(kProjNames), t) == std::end(kProjNames))
            throw Error("E_CONFIG", HQ_MSG("unknown target module '" << t << "'"), w,
                        "targets are q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj");
        if (!seen.insert(t).second) throw Error("E_CONFIG", HQ_MSG("target module '" << t << "' is listed twice"), w,
                                                "list each projection once");
    }
}

class ModelImpl final : public Model {
  public:
    ModelImpl(const std::string& dir, const QuantSpec& quant, const AdapterSpec& adapter, uint64_t seed);

    const ModelConfig& config() const override { return cfg_; }
    const AdapterSpec& adapter_spec() const override { return spec_; }
    std::vector<Param>& params() override { return params_; }
    std::vector<AdaptedModule>& modules() override { return modules_; }
    int64_t base_param_count() const override { return base_params_; }

    LossOut forward_backward(const int32_t* ids, const int32_t* labels, int B, int T, bool backward,
                             float grad_scale) override {
        return forward_backward_packed(ids, labels, nullptr, B, T, backward, grad_scale);
    }
    LossOut forward_backward_packed(const int32_t* ids, const int32_t* labels, const int32_t* seg, int B, int T,
                                    bool backward, float grad_scale) override;
    bool supports_packing() const override { return true; }
    void forward_logits(const int32_t* ids, int B, int T, float* logits_out) override;
    void forward_logits_at(const int32_t* ids, int B, int T, const int32_t* positions, float* logits_out) override;

    void zero_grad() override { std::fill(pg_.begin(), pg_.end(), 0.0f); }
    void set_training(bool training, uint64_t dropout_seed) override {
        training_ = training;
        dropout_seed_ = dropout_seed;
        call_ = 0;
    }
    void skip_dropout_calls(uint64_t n) override { call_ += n; }
    float* grad_buffer(size_t* n, void** stream) override {
        *n = pg_.size();
        *stream = nullptr;
        return pg_.data();
    }
    void set_gradient_checkpointing(bool on) override {
        ckpt_ = on;
        if (on && acts_.size() > 1) acts_.resize(1);   // free the per-layer caches: one layer is recomputed at a time
    }
    void set_active_levels(int n) override {
        const int L = (int)spec_.levels.size();
        HQ_CHECK(n >= 0 && n <= L, "E_CONFIG", "active levels " << n << " outside [0, " << L << "]",
                 (Where{"", "", "active_levels", -1, -1}), "0 means all levels");
        active_levels_ = n == 0 ? L : n;
    }
    void set_loss_chunk_rows(int rows) override {
        HQ_CHECK(rows >= 0, "E_CONFIG", "loss chunk rows " << rows << " < 0", Where{}, "0 means automatic");
        loss_chunk_ = rows;
    }
    std::vector<float> dequantized_weight(const std::string& module) const override;
    size_t memory_bytes() const override;
    void layer_rope(int layer, int T, std::vector<float>* cos, std::vector<float>* sin) override {
        HQ_ASSERT(layer >= 0 && layer < cfg_.num_layers && T > 0);
        ensure_rope(T);
        const size_t n = (size_t)T * (cfg_.head_dim / 2);
        cos->assign(rope_cos(layer), rope_cos(layer) + n);
        sin->assign(rope_sin(layer), rope_sin(layer) + n);
    }
    AttnShape layer_attention(int layer, int B, int T) const override {
        HQ_ASSERT(layer >= 0 && layer < cfg_.num_layers);
        return attn_shape(layer, B, T);
    }

    HostWeights host_view() {
        HostWeights h;
        h.cfg = &cfg_;
        h.gemma = gemma_;
        h.act = act_;
        h.embed = &embed_;
        h.lm_head = &lm_head_;
        h.norm = &norm_;
        h.layers = &layers_;
        h.inv_freq = &inv_freq_;
        h.params_w = pw_.data();
        h.params_g = pg_.data();
        h.params_numel = pw_.size();
        return h;
    }

  private:
    void load_weights(const std::string& dir);
    void build_adapters(uint64_t seed);
    HLoraRun run_for(int layer, int proj) const;
    void ensure_rope(int T);
    void ensure_acts(LayerActs& a, int B, int T);
    void layer_forward(int l, const float* x, float* y, LayerActs& a, int B, int T);
    void layer_backward(int l, const float* x, LayerActs& a, const float* dy, float* dx, int B, int T);
    // Embedding + all layers + final norm into xf_. keep = cache what the backward needs.
    void forward_hidden(const int32_t* ids, int B, int T, bool keep);
    const float* out_weight() const { return cfg_.tie_word_embeddings ? embed_.data() : lm_head_.data(); }
    int loss_chunk(int64_t N) const;
    // OpenMP threads worth using for a call on N tokens (BlasThreadScope cap).
    int call_threads(int64_t N) const;
    static constexpr size_t kLayerCacheBytes = (size_t)512 << 20;
    static constexpr double kCallFlopsPerThread = 32e6;

    ModelConfig cfg_;
    AdapterSpec spec_;
    QuantSpec quant_;
    bool gemma_ = false;
    Act act_ = Act::SiLU;
    int64_t base_params_ = 0;
    std::vector<float> embed_;     // [V, C]
    std::vector<float> lm_head_;   // [V, C] (empty when tied)
    std::vector<float> norm_;      // [C]
    std::vector<DecoderLayer> layers_;
    std::vector<float> pw_, pg_;   // adapter weights / grads, all params back to back
    std::vector<Param> params_;
    std::vector<AdaptedModule> modules_;
    std::vector<float> inv_freq_;  // [d/2] (longrope: of the current rope_T_)
    std::vector<float> cos_, sin_; // [rope_T_, d/2]
    std::vector<float> inv_freq_local_, cosl_, sinl_;   // Gemma-3 sliding layers (rope_local_theta); else empty
    int rope_T_ = 0;
    const float* rope_cos(int l) const { return layers_[l].sliding && !cosl_.empty() ? cosl_.data() : cos_.data(); }
    const float* rope_sin(int l) const { return layers_[l].sliding && !sinl_.empty() ? sinl_.data() : sin_.data(); }
    AttnShape attn_shape(int l, int B, int T) const {
        AttnShape s{B, T, cfg_.num_heads, cfg_.num_kv_heads, cfg_.head_dim};
        s.scale = cfg_.attn_scale();
        s.window = layers_[l].sliding ? cfg_.sliding_window : 0;
        s.softcap = cfg_.attn_softcap;
        s.seg = seg_;
        return s;
    }
    // Packed rows of the current forward_backward_packed call (nullptr otherwise): documents [B, T] and the RoPE
    // position of each token [B, T] (empty: t).
    const int32_t* seg_ = nullptr;
    std::vector<int32_t> pos_;
    int pos_len_ = 0;   // max(pos_) + 1
    const int32_t* rope_pos() const { return seg_ ? pos_.data() : nullptr; }

    bool training_ = false, ckpt_ = false;
    uint64_t dropout_seed_ = 0, call_ = 0;
    int active_levels_ = 0;
    int loss_chunk_ = 0;

    HLoraWorkspace hws_;
    LossWorkspace lws_;
    std::vector<LayerActs> acts_;               // [L] (no checkpointing) or [1]
    std::vector<std::vector<float>> xs_;        // [L+1][N, C] layer inputs; xs_[L] = last layer output
    std::vector<float> xf_, rstdf_;             // [N, C], [N] final norm output and rstd
    std::vector<float> tmpC_, ytmp_, dxa_, dxb_, dmid_, dxn_, dxf_;   // [N, C]
    std::vector<float> dg_, du_, dh_;           // [N, F]
    std::vector<float> dq_, datt_;              // [N, H·d]
    std::vector<float> dk_, dv_;                // [N, KV·d]
    std::vector<float> dqn_, dkn_;              // [N, H·d], [N, KV·d] grads before q_norm / k_norm
    std::vector<float> dao_, dmo_;              // [N, C] grads of the o_proj / down_proj outputs (Gemma-2/3)
    std::vector<int32_t> targets_;              // [N]
};

ModelImpl::ModelImpl(const std::string& dir, const QuantSpec& quant, const AdapterSpec& adapter, uint64_t seed)
    : spec_(adapter), quant_(quant) {
    check_specs(quant, adapter);
    cfg_ = load_model_config(dir);
    gemma_ = cfg_.gemma_norm;
    act_ = gemma_ ? Act::GeluTanh : Act::SiLU;
    active_levels_ = (int)spec_.levels.size();
    inv_freq_ = rope_inv_freq(cfg_.head_dim, cfg_.rope_theta, cfg_.rope_scaling);
    if (cfg_.rope_local_theta > 0) inv_freq_local_ = rope_inv_freq(cfg_.head_dim, cfg_.rope_local_theta, RopeScaling{});
    load_weights(dir);
    build_adapters(seed);
    // Keep one decoder layer of dequantized NF4 weights (7 projections) when that fits kLayerCacheBytes: the
    // backward of a layer then reuses what its forward / checkpoint recompute dequantized just before.
    size_t layer_bytes = 0;
    bool any_nf4 = false;
    if (!layers_.empty())
        for (const HLoraLinear& P : layers_[0].proj) {
            layer_bytes += (size_t)P.out * P.in * sizeof(float);
            any_nf4 = any_nf4 || P.quantized;
        }
    if (any_nf4 && layer_bytes <= kLayerCacheBytes) hws_.cache_slots = P_COUNT;
}

int ModelImpl::call_threads(int64_t N) const {
    // ≈ forward FLOPs of this call; below kCallFlopsPerThread per thread the extra threads cost more than they give.
    double w = (double)cfg_.vocab_size * cfg_.hidden_size;
    if (!layers_.empty())
        for (const HLoraLinear& P : layers_[0].proj) w += (double)cfg_.num_layers * P.out * P.in;
    const double flops = 2.0 * (double)N * w;
    return (int)std::max(1.0, std::min(1e6, flops / kCallFlopsPerThread));
}

using TensorShapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

// Every base tensor config.json implies, with its shape (pshape: the projections' [out, in]; Phi-3's q/k/v and
// gate/up come fused).
TensorShapes expected_base_tensors(const ModelConfig& c, const std::vector<int64_t> (&pshape)[P_COUNT]) {
    const int64_t C = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
    const int64_t Hd = (int64_t)c.num_heads * c.head_dim, KVd = (int64_t)c.num_kv_heads * c.head_dim;
    TensorShapes expected;
    expected.push_back({"model.embed_tokens.weight", {V, C}});
    expected.push_back({"model.norm.weight", {C}});
    if (!c.tie_word_embeddings) expected.push_back({"lm_head.weight", {V, C}});
    const int64_t d = c.head_dim;
    for (int l = 0; l < c.num_layers; l++) {
        const std::string p = HQ_MSG("model.layers." << l << ".");
        expected.push_back({p + "input_layernorm.weight", {C}});
        expected.push_back({p + "post_attention_layernorm.weight", {C}});
        if (c.sandwich_norm) {
            expected.push_back({p + "pre_feedforward_layernorm.weight", {C}});
            expected.push_back({p + "post_feedforward_layernorm.weight", {C}});
        }
        if (c.qk_norm) {
            expected.push_back({p + "self_attn.q_norm.weight", {d}});
            expected.push_back({p + "self_attn.k_norm.weight", {d}});
        }
        if (c.qkv_bias) {
            expected.push_back({p + "self_attn.q_proj.bias", {Hd}});
            expected.push_back({p + "self_attn.k_proj.bias", {KVd}});
            expected.push_back({p + "self_attn.v_proj.bias", {KVd}});
        }
        if (c.fused_proj) {
            expected.push_back({p + "self_attn.qkv_proj.weight", {Hd + 2 * KVd, C}});
            expected.push_back({p + "self_attn.o_proj.weight", pshape[P_O]});
            expected.push_back({p + "mlp.gate_up_proj.weight", {2 * F, C}});
            expected.push_back({p + "mlp.down_proj.weight", pshape[P_DOWN]});
        } else {
            for (int j = 0; j < P_COUNT; j++) expected.push_back({proj_module_name(l, j) + ".weight", pshape[j]});
        }
    }
    return expected;
}

// Checked before anything is read: every expected tensor is there with a base-weight dtype and its shape, and
// nothing else is (but rotary inv_freq buffers and a tied lm_head).
void check_base_tensors(const ModelConfig& c, const ModelWeights& mw, const std::string& listing,
                        const TensorShapes& expected) {
    auto shape_str = [](const std::vector<int64_t>& s) {
        std::ostringstream os;
        os << "[";
        for (size_t i = 0; i < s.size(); i++) os << (i ? ", " : "") << s[i];
        os << "]";
        return os.str();
    };
    std::set<std::string> expected_names;
    for (const auto& [name, shape] : expected) {
        expected_names.insert(name);
        const SafeTensorsFile* file = nullptr;
        const TensorInfo* ti = mw.find(name, &file);
        if (!ti) {
            std::string hint = "the checkpoint does not match config.json (num_hidden_layers, model_type)";
            if (name == "lm_head.weight")
                hint = "config.json says tie_word_embeddings=false but there is no lm_head.weight; set it to true "
                       "if the model ties lm_head to the embeddings";
            throw Error("E_SAFETENSORS", HQ_MSG("tensor " << name << " is missing from " << listing),
                        Where{listing, name, "", -1, -1}, hint);
        }
        if (ti->dtype != DType::F32 && ti->dtype != DType::BF16 && ti->dtype != DType::F16)
            throw Error("E_SAFETENSORS", HQ_MSG("tensor " << name << " has dtype " << dtype_name(ti->dtype)),
                        Where{file->path(), name, "", -1, -1},
                        "base weights must be F32, BF16 or F16 (pre-quantized checkpoints are not supported)");
        if (ti->shape != shape)
            throw Error("E_SHAPE", HQ_MSG("tensor " << name << " has shape " << shape_str(ti->shape) << ", expected "
                                                    << shape_str(shape) << " from config.json"),
                        Where{file->path(), name, "", -1, -1},
                        "the checkpoint does not match config.json (hidden_size, intermediate_size, heads, "
                        "head_dim, vocab_size)");
    }
    for (const std::string& name : mw.names()) {
        if (expected_names.count(name)) continue;
        const bool inv_freq = name.size() >= 19 && name.compare(name.size() - 19, 19, "rotary_emb.inv_freq") == 0;
        if (inv_freq || (c.tie_word_embeddings && name == "lm_head.weight")) continue;   // recomputed / tied
        const SafeTensorsFile* file = nullptr;
        mw.find(name, &file);
        throw Error("E_SAFETENSORS", HQ_MSG("unexpected tensor " << name << " for a " << c.model_type << " model"),
                    Where{file ? file->path() : listing, name, "", -1, -1},
                    "biases, extra modules or pre-quantized weights are not supported; check model_type and that the "
                    "folder holds an unmodified Hugging Face checkpoint of a supported family");
    }

}

void ModelImpl::load_weights(const std::string& dir) {
    const ModelConfig& c = cfg_;
    const int64_t C = c.hidden_size, F = c.intermediate_size;
    const int64_t Hd = (int64_t)c.num_heads * c.head_dim, KVd = (int64_t)c.num_kv_heads * c.head_dim;
    ModelWeights mw = ModelWeights::open_dir(dir);
    std::string listing = mw.index_path();
    if (listing.empty()) listing = mw.files().size() == 1 ? mw.files()[0]->path() : dir;

    // Every expected tensor with its shape, checked before anything is read.
    const std::vector<int64_t> pshape[P_COUNT] = {{Hd, C}, {KVd, C}, {KVd, C}, {C, Hd}, {F, C}, {F, C}, {C, F}};
    check_base_tensors(c, mw, listing, expected_base_tensors(c, pshape));

    const int64_t d = c.head_dim;
    embed_ = mw.read_f32("model.embed_tokens.weight");
    norm_ = mw.read_f32("model.norm.weight");
    if (!c.tie_word_embeddings) lm_head_ = mw.read_f32("lm_head.weight");
    base_params_ = (int64_t)embed_.size() + (int64_t)norm_.size() + (int64_t)lm_head_.size();
    std::set<std::string> targets(spec_.target_modules.begin(), spec_.target_modules.end());
    layers_.resize(c.num_layers);
    std::vector<float> stage;
    std::vector<float> fqkv, fgu;   // Phi-3 fused [(H+2KV)·d, C] and [2F, C] of the current layer
    for (int l = 0; l < c.num_layers; l++) {
        DecoderLayer& L = layers_[l];
        const std::string p = HQ_MSG("model.layers." << l << ".");
        L.sliding = c.layer_sliding.empty() ? false : c.layer_sliding[l] != 0;
        L.ln1 = mw.read_f32(p + "input_layernorm.weight");
        if (c.sandwich_norm) {
            // Gemma-2/3: x + post_attn_norm(attn(input_norm(x))), then + post_ff_norm(mlp(pre_ff_norm(x))).
            L.ln_post_attn = mw.read_f32(p + "post_attention_layernorm.weight");
            L.ln2 = mw.read_f32(p + "pre_feedforward_layernorm.weight");
            L.ln_post_ff = mw.read_f32(p + "post_feedforward_layernorm.weight");
            base_params_ += 2 * C;
        } else {
            L.ln2 = mw.read_f32(p + "post_attention_layernorm.weight");
        }
        base_params_ += 2 * C;
        if (c.qk_norm) {
            L.q_norm = mw.read_f32(p + "self_attn.q_norm.weight");
            L.k_norm = mw.read_f32(p + "self_attn.k_norm.weight");
            base_params_ += 2 * d;
        }
        if (c.qkv_bias) {
            const char* bn[3] = {"q_proj", "k_proj", "v_proj"};
            for (int j = 0; j < 3; j++) {
                L.bias[j] = mw.read_f32(p + "self_attn." + bn[j] + ".bias");
                base_params_ += (int64_t)L.bias[j].size();
            }
        }
        if (c.fused_proj) {
            fqkv = mw.read_f32(p + "self_attn.qkv_proj.weight");
            fgu = mw.read_f32(p + "mlp.gate_up_proj.weight");
        }
        for (int j = 0; j < P_COUNT; j++) {
            HLoraLinear& P = L.proj[j];
            P.name = proj_module_name(l, j);
            P.out = (int)pshape[j][0];
            P.in = (int)pshape[j][1];
            base_params_ += (int64_t)P.out * P.in;
            const size_t numel = (size_t)P.out * P.in;
            // Source rows [out, in]: the projection's own tensor, or (Phi-3) its rows of the fused tensor:
            // qkv_proj = [q (H·d); k (KV·d); v (KV·d)], gate_up_proj = [gate (F); up (F)] (Phi3Attention/Phi3MLP).
            const float* src = nullptr;
            if (c.fused_proj && j != P_O && j != P_DOWN) {
                const int64_t row0 = j == P_Q ? 0 : j == P_K ? Hd : j == P_V ? Hd + KVd : j == P_GATE ? 0 : F;
                src = (j <= P_V ? fqkv.data() : fgu.data()) + row0 * P.in;
            }
            const bool quantize = targets.count(kProjNames[j]) && quant_.type == "nf4";
            if (!src) {
                if (quantize) {
                    // One reused fp32 staging buffer for every quantized projection: no allocation and zero-fill
                    // per tensor (7B: 6.5B weights pass through it).
                    if (stage.size() < numel) stage.resize(numel);
                    mw.read_f32_into(P.name + ".weight", stage.data(), numel);   // [out, in]
                    src = stage.data();
                } else {
                    P.w = mw.read_f32(P.name + ".weight");
                    continue;
                }
            }
            if (quantize) {
                P.quantized = true;
                P.wq = nf4_quantize(src, P.out, P.in, quant_.blocksize, quant_.double_quant);
            } else {
                P.w.assign(src, src + numel);
            }
        }
    }
}

void ModelImpl::build_adapters(uint64_t seed) {
    const int nlev = (int)spec_.levels.size();
    const int R = spec_.total_rank();
    std::vector<int> rank(nlev), offset(nlev + 1, 0);
    std::vector<float> scale(R);
    for (int j = 0; j < nlev; j++) {
        rank[j] = spec_.levels[j].rank;
        offset[j + 1] = offset[j] + rank[j];
        for (int i = offset[j]; i < offset[j + 1]; i++) scale[i] = spec_.scale(j);
    }
    // Order: layer by layer, modules in the order of target_modules, A then B.
    std::vector<HLoraLinear*> adapted;
    for (auto& L : layers_)
        for (const std::string& t : spec_.target_modules) {
            const int j = (int)(std::find(std::begin(kProjNames), std::end(kProjNames), t) - std::begin(kProjNames));
            adapted.push_back(&L.proj[j]);
        }
    size_t total = 0;
    for (HLoraLinear* P : adapted) total += (size_t)R * P->in + (size_t)P->out * R;
    pw_.assign(total, 0.0f);
    pg_.assign(total, 0.0f);
    params_.reserve(2 * adapted.size());
    modules_.reserve(adapted.size());
    size_t off = 0;
    for (size_t m = 0; m < adapted.size(); m++) {
        HLoraLinear& P = *adapted[m];
        P.R = R;
        P.rank = rank;
        P.offset = offset;
        P.scale = scale;
        P.A = pw_.data() + off;
        P.dA = pg_.data() + off;
        params_.push_back(Param{P.name + ".lora_A", {R, P.in}, P.A, P.dA, (size_t)R * P.in});
        off += (size_t)R * P.in;
        P.B = pw_.data() + off;
        P.dB = pg_.data() + off;
        params_.push_back(Param{P.name + ".lora_B", {P.out, R}, P.B, P.dB, (size_t)P.out * R});
        off += (size_t)P.out * R;
        AdaptedModule am;
        am.name = P.name;
        am.in = P.in;
        am.out = P.out;
        am.A = &params_[params_.size() - 2];
        am.B = &params_[params_.size() - 1];
        am.level_offset.assign(offset.begin(), offset.end() - 1);
        modules_.push_back(std::move(am));
        hlora_init(P, spec_.init, seed, (uint64_t)m);
    }
}

HLoraRun ModelImpl::run_for(int layer, int proj) const {
    HLoraRun r;
    r.levels = active_levels_;
    r.dropout = training_ ? spec_.dropout : 0.0f;
    r.mask_key = rng_key(rng_key(dropout_seed_, call_), (uint64_t)layer * P_COUNT + proj);
    return r;
}

void ModelImpl::ensure_rope(int T) {
    // Tables of positions 0..T'-1 serve any T <= T', except for longrope whose frequencies depend on T itself.
    const bool by_length = rope_depends_on_length(cfg_.rope_scaling);
    if (by_length ? T == rope_T_ : T <= rope_T_) return;
    const int h = cfg_.head_dim / 2;
    if (by_length) inv_freq_ = rope_inv_freq(cfg_.head_dim, cfg_.rope_theta, cfg_.rope_scaling, T);
    cos_.assign((size_t)T * h, 0.0f);
    sin_.assign((size_t)T * h, 0.0f);
    rope_tables(cos_.data(), sin_.data(), inv_freq_.data(), T, cfg_.head_dim, rope_attention_scale(cfg_.rope_scaling));
    if (!inv_freq_local_.empty()) {
        cosl_.assign((size_t)T * h, 0.0f);
        sinl_.assign((size_t)T * h, 0.0f);
        rope_tables(cosl_.data(), sinl_.data(), inv_freq_local_.data(), T, cfg_.head_dim);
    }
    rope_T_ = T;
}

void ModelImpl::ensure_acts(LayerActs& a, int B, int T) {
    const size_t N = (size_t)B * T, C = cfg_.hidden_size, F = cfg_.intermediate_size;
    const size_t Hd = (size_t)cfg_.num_heads * cfg_.head_dim, KVd = (size_t)cfg_.num_kv_heads * cfg_.head_dim;
    ensure(a.xn1, N * C);
    ensure(a.rstd1, N);
    ensure(a.q, N * Hd);
    ensure(a.k, N * KVd);
    ensure(a.v, N * KVd);
    ensure(a.att, N * Hd);
    ensure(a.lse, (size_t)B * cfg_.num_heads * T);
    ensure(a.xmid, N * C);
    ensure(a.xn2, N * C);
    ensure(a.rstd2, N);
    ensure(a.g, N * F);
    ensure(a.u, N * F);
    ensure(a.h, N * F);
    for (int j = 0; j < P_COUNT; j++) {
        const HLoraLinear& P = layers_[0].proj[j];
        if (P.R > 0) ensure(a.z[j], N * (size_t)P.offset[active_levels_]);
    }
    if (cfg_.qk_norm) {
        ensure(a.qpre, N * Hd);
        ensure(a.kpre, N * KVd);
        ensure(a.rstdq, N * cfg_.num_heads);
        ensure(a.rstdk, N * cfg_.num_kv_heads);
    }
    if (cfg_.sandwich_norm) {
        ensure(a.ao, N * C);
        ensure(a.rstd3, N);
        ensure(a.mo, N * C);
        ensure(a.rstd4, N);
    }
}

// Adds a bias [n] to every row of y [N, n] (Qwen2's frozen q/k/v biases).
static void add_bias(float* y, const std::vector<float>& bias, int64_t N) {
    const int64_t n = (int64_t)bias.size();
    const float* bp = bias.data();
#pragma omp parallel for schedule(static) if (N * n >= kParMinElems)
    for (int64_t r = 0; r < N; r++)
        for (int64_t i = 0; i < n; i++) y[r * n + i] += bp[i];
}

void ModelImpl::layer_forward(int l, const float* x, float* y, LayerActs& a, int B, int T) {
    const ModelConfig& c = cfg_;
    const int64_t N = (int64_t)B * T, C = c.hidden_size;
    const int64_t Hd = (int64_t)c.num_heads * c.head_dim, KVd = (int64_t)c.num_kv_heads * c.head_dim;
    DecoderLayer& L = layers_[l];
    ensure_acts(a, B, T);
    ensure(tmpC_, (size_t)N * C);
    rmsnorm_forward(a.xn1.data(), a.rstd1.data(), x, L.ln1.data(), N, (int)C, c.rms_norm_eps, gemma_);
    hlora_forward(L.proj[P_Q], run_for(l, P_Q), a.xn1.data(), N, a.q.data(), a.z[P_Q].data(), hws_);
    hlora_forward(L.proj[P_K], run_for(l, P_K), a.xn1.data(), N, a.k.data(), a.z[P_K].data(), hws_);
    hlora_forward(L.proj[P_V], run_for(l, P_V), a.xn1.data(), N, a.v.data(), a.z[P_V].data(), hws_);
    if (c.qkv_bias) {
        add_bias(a.q.data(), L.bias[0], N);
        add_bias(a.k.data(), L.bias[1], N);
        add_bias(a.v.data(), L.bias[2], N);
    }
    if (c.qk_norm) {
        // Qwen3 / Gemma-3: RMSNorm over each head's d values (weight [d]), before RoPE.
        std::memcpy(a.qpre.data(), a.q.data(), sizeof(float) * N * Hd);
        std::memcpy(a.kpre.data(), a.k.data(), sizeof(float) * N * KVd);
        rmsnorm_forward(a.q.data(), a.rstdq.data(), a.qpre.data(), L.q_norm.data(), N * c.num_heads, c.head_dim,
                        c.rms_norm_eps, gemma_);
        rmsnorm_forward(a.k.data(), a.rstdk.data(), a.kpre.data(), L.k_norm.data(), N * c.num_kv_heads, c.head_dim,
                        c.rms_norm_eps, gemma_);
    }
    rope_forward(a.q.data(), rope_cos(l), rope_sin(l), B, T, c.num_heads, c.head_dim, rope_pos());
    rope_forward(a.k.data(), rope_cos(l), rope_sin(l), B, T, c.num_kv_heads, c.head_dim, rope_pos());
    const AttnShape as = attn_shape(l, B, T);
    attention_forward(a.att.data(), a.lse.data(), a.q.data(), a.k.data(), a.v.data(), as);
    const float* t = tmpC_.data();
    if (c.sandwich_norm) {
        hlora_forward(L.proj[P_O], run_for(l, P_O), a.att.data(), N, a.ao.data(), a.z[P_O].data(), hws_);
        rmsnorm_forward(tmpC_.data(), a.rstd3.data(), a.ao.data(), L.ln_post_attn.data(), N, (int)C, c.rms_norm_eps,
                        gemma_);
    } else {
        hlora_forward(L.proj[P_O], run_for(l, P_O), a.att.data(), N, tmpC_.data(), a.z[P_O].data(), hws_);
    }
    float* xmid = a.xmid.data();
#pragma omp parallel for schedule(static) if (N * C >= kParMinElems)
    for (int64_t i = 0; i < N * C; i++) xmid[i] = x[i] + t[i];
    rmsnorm_forward(a.xn2.data(), a.rstd2.data(), xmid, L.ln2.data(), N, (int)C, c.rms_norm_eps, gemma_);
    hlora_forward(L.proj[P_GATE], run_for(l, P_GATE), a.xn2.data(), N, a.g.data(), a.z[P_GATE].data(), hws_);
    hlora_forward(L.proj[P_UP], run_for(l, P_UP), a.xn2.data(), N, a.u.data(), a.z[P_UP].data(), hws_);
    glu_forward(a.h.data(), a.g.data(), a.u.data(), N * c.intermediate_size, act_);
    if (c.sandwich_norm) {
        hlora_forward(L.proj[P_DOWN], run_for(l, P_DOWN), a.h.data(), N, a.mo.data(), a.z[P_DOWN].data(), hws_);
        rmsnorm_forward(tmpC_.data(), a.rstd4.data(), a.mo.data(), L.ln_post_ff.data(), N, (int)C, c.rms_norm_eps,
                        gemma_);
    } else {
        hlora_forward(L.proj[P_DOWN], run_for(l, P_DOWN), a.h.data(), N, tmpC_.data(), a.z[P_DOWN].data(), hws_);
    }
#pragma omp parallel for schedule(static) if (N * C >= kParMinElems)
    for (int64_t i = 0; i < N * C; i++) y[i] = xmid[i] + t[i];
}

void ModelImpl::layer_backward(int l, const float* x, LayerActs& a, const float* dy, float* dx, int B, int T) {
    const ModelConfig& c = cfg_;
    const int64_t N = (int64_t)B * T, C = c.hidden_size, F = c.intermediate_size;
    const int64_t Hd = (int64_t)c.num_heads * c.head_dim, KVd = (int64_t)c.num_kv_heads * c.head_dim;
    DecoderLayer& L = layers_[l];
    ensure(dmid_, N * C);
    ensure(dxn_, N * C);
    ensure(dg_, N * F);
    ensure(du_, N * F);
    ensure(dh_, N * F);
    ensure(dq_, N * Hd);
    ensure(datt_, N * Hd);
    ensure(dk_, N * KVd);
    ensure(dv_, N * KVd);
    // MLP block: y = xmid + down(act(g) ⊙ u)   (Gemma-2/3: y = xmid + post_ff_norm(down(...)))
    std::memcpy(dmid_.data(), dy, sizeof(float) * N * C);
    const float* ddown = dy;
    if (c.sandwich_norm) {
        ensure(dmo_, N * C);
        std::fill(dmo_.begin(), dmo_.begin() + N * C, 0.0f);
        rmsnorm_backward(dmo_.data(), dy, a.mo.data(), L.ln_post_ff.data(), a.rstd4.data(), N, (int)C, gemma_);
        ddown = dmo_.data();
    }
    hlora_backward(L.proj[P_DOWN], run_for(l, P_DOWN), a.h.data(), a.z[P_DOWN].data(), ddown, N, dh_.data(), false,
                   hws_);
    glu_backward(dg_.data(), du_.data(), dh_.data(), a.g.data(), a.u.data(), N * F, act_);
    hlora_backward(L.proj[P_GATE], run_for(l, P_GATE), a.xn2.data(), a.z[P_GATE].data(), dg_.data(), N, dxn_.data(),
                   false, hws_);
    hlora_backward(L.proj[P_UP], run_for(l, P_UP), a.xn2.data(), a.z[P_UP].data(), du_.data(), N, dxn_.data(), true,
                   hws_);
    rmsnorm_backward(dmid_.data(), dxn_.data(), a.xmid.data(), L.ln2.data(), a.rstd2.data(), N, (int)C, gemma_);
    // Attention block: xmid = x + o(attn(rope(q), rope(k), v))   (Gemma-2/3: x + post_attn_norm(o(...)))
    const float* dout = dmid_.data();
    if (c.sandwich_norm) {
        ensure(dao_, N * C);
        std::fill(dao_.begin(), dao_.begin() + N * C, 0.0f);
        rmsnorm_backward(dao_.data(), dmid_.data(), a.ao.data(), L.ln_post_attn.data(), a.rstd3.data(), N, (int)C,
                         gemma_);
        dout = dao_.data();
    }
    hlora_backward(L.proj[P_O], run_for(l, P_O), a.att.data(), a.z[P_O].data(), dout, N, datt_.data(), false, hws_);
    const AttnShape as = attn_shape(l, B, T);
    attention_backward(dq_.data(), dk_.data(), dv_.data(), datt_.data(), a.q.data(), a.k.data(), a.v.data(),
                       a.att.data(), a.lse.data(), as);
    rope_backward(dq_.data(), rope_cos(l), rope_sin(l), B, T, c.num_heads, c.head_dim, rope_pos());
    rope_backward(dk_.data(), rope_cos(l), rope_sin(l), B, T, c.num_kv_heads, c.head_dim, rope_pos());
    const float* dqp = dq_.data();
    const float* dkp = dk_.data();
    if (c.qk_norm) {
        ensure(dqn_, N * Hd);
        ensure(dkn_, N * KVd);
        std::fill(dqn_.begin(), dqn_.begin() + N * Hd, 0.0f);
        std::fill(dkn_.begin(), dkn_.begin() + N * KVd, 0.0f);
        rmsnorm_backward(dqn_.data(), dq_.data(), a.qpre.data(), L.q_norm.data(), a.rstdq.data(), N * c.num_heads,
                         c.head_dim, gemma_);
        rmsnorm_backward(dkn_.data(), dk_.data(), a.kpre.data(), L.k_norm.data(), a.rstdk.data(),
                         N * c.num_kv_heads, c.head_dim, gemma_);
        dqp = dqn_.data();
        dkp = dkn_.data();
    }
    hlora_backward(L.proj[P_Q], run_for(l, P_Q), a.xn1.data(), a.z[P_Q].data(), dqp, N, dxn_.data(), false, hws_);
    hlora_backward(L.proj[P_K], run_for(l, P_K), a.xn1.data(), a.z[P_K].data(), dkp, N, dxn_.data(), true, hws_);
    hlora_backward(L.proj[P_V], run_for(l, P_V), a.xn1.data(), a.z[P_V].data(), dv_.data(), N, dxn_.data(), true,
                   hws_);
    std::memcpy(dx, dmid_.data(), sizeof(float) * N * C);
    rmsnorm_backward(dx, dxn_.data(), x, L.ln1.data(), a.rstd1.data(), N, (int)C, gemma_);
}

void ModelImpl::forward_hidden(const int32_t* ids, int B, int T, bool keep) {
    HQ_CHECK(B > 0 && T > 0, "E_INTERNAL", "empty micro-batch B=" << B << " T=" << T, Where{},
             "micro-batches need at least one token");
    const ModelConfig& c = cfg_;
    const int64_t N = (int64_t)B * T, C = c.hidden_size;
    const int nL = c.num_layers;
    if (training_) call_++;   // fresh dropout masks per call; backward and recompute reuse this call's keys
    // Packed rows read the tables at per-document positions 0 .. max(pos) (longrope: chosen by max(pos) + 1, as
    // transformers decides by max(position_ids) + 1).
    ensure_rope(seg_ ? pos_len_ : T);
    // keep: xs_[0..L] all kept (layer inputs for the backward); otherwise two ping-pong buffers.
    const size_t nx = keep ? (size_t)nL + 1 : 2;
    if (xs_.size() < nx) xs_.resize(nx);
    for (size_t i = 0; i < nx; i++) ensure(xs_[i], (size_t)N * C);
    const size_t nacts = keep && !ckpt_ ? (size_t)nL : 1;
    if (acts_.size() < nacts) acts_.resize(nacts);
    embedding_forward(xs_[0].data(), embed_.data(), ids, N, (int)C, c.vocab_size, embedding_scale(gemma_, (int)C));
    for (int l = 0; l < nL; l++) {
        const float* x = keep ? xs_[l].data() : xs_[l % 2].data();
        float* y = keep ? xs_[l + 1].data() : xs_[(l + 1) % 2].data();
        layer_forward(l, x, y, acts_[keep && !ckpt_ ? l : 0], B, T);
    }
    const float* xl = keep ? xs_[nL].data() : xs_[nL % 2].data();
    ensure(xf_, (size_t)N * C);
    ensure(rstdf_, (size_t)N);
    rmsnorm_forward(xf_.data(), rstdf_.data(), xl, norm_.data(), N, (int)C, c.rms_norm_eps, gemma_);
}

int ModelImpl::loss_chunk(int64_t N) const {
    if (loss_chunk_ > 0) return loss_chunk_;
    // Automatic: at most 64 MiB of fp32 logits per chunk, between 8 and 1024 rows.
    const int64_t rows = ((int64_t)64 << 20) / ((int64_t)4 * cfg_.vocab_size);
    return (int)std::max<int64_t>(1, std::min<int64_t>({N, 1024, std::max<int64_t>(8, rows)}));
}

LossOut ModelImpl::forward_backward_packed(const int32_t* ids, const int32_t* labels, const int32_t* seg, int B,
                                           int T, bool backward, float grad_scale) {
    const ModelConfig& c = cfg_;
    const int64_t N = (int64_t)B * T, C = c.hidden_size;
    const int nL = c.num_layers;
    BlasThreadScope threads(call_threads(N));
    struct SegScope {   // the documents hold for this call only
        const int32_t*& p;
        ~SegScope() { p = nullptr; }
    } seg_scope{seg_};
    seg_ = seg;
    if (seg) {
        pos_.resize((size_t)N);
        pos_len_ = positions_from_segments(pos_.data(), seg, B, T);
    }
    forward_hidden(ids, B, T, backward);
    targets_.resize(N);
    shift_labels(targets_.data(), labels, B, T);
    if (backward) ensure(dxf_, (size_t)N * C);
    const LossOut res = cross_entropy_chunked(xf_.data(), out_weight(), targets_.data(), N, (int)C, c.vocab_size,
                                              loss_chunk(N), grad_scale, backward ? dxf_.data() : nullptr, lws_,
                                              c.final_softcap);
    if (!backward) return res;
    ensure(dxa_, (size_t)N * C);
    ensure(dxb_, (size_t)N * C);
    std::fill(dxa_.begin(), dxa_.begin() + N * C, 0.0f);
    rmsnorm_backward(dxa_.data(), dxf_.data(), xs_[nL].data(), norm_.data(), rstdf_.data(), N, (int)C, gemma_);
    float* dy = dxa_.data();
    float* dx = dxb_.data();
    for (int l = nL - 1; l >= 0; l--) {
        LayerActs& a = acts_[ckpt_ ? 0 : l];
        if (ckpt_ && l != nL - 1) {   // the last layer's cache is still in acts_[0] from the forward
            // Recompute this layer's cache from its kept input; the output (== xs_[l+1]) goes to scratch.
            ensure(ytmp_, (size_t)N * C);
            layer_forward(l, xs_[l].data(), ytmp_.data(), a, B, T);
        }
        layer_backward(l, xs_[l].data(), a, dy, dx, B, T);
        grads_ready(l);
        std::swap(dy, dx);
    }
    return res;
}

void ModelImpl::forward_logits(const int32_t* ids, int B, int T, float* logits_out) {
    const int64_t N = (int64_t)B * T;
    BlasThreadScope threads(call_threads(N));
    forward_hidden(ids, B, T, false);
    // logits [N, V] = xf · W_outᵀ
    par_sgemm(false, true, (int)N, cfg_.vocab_size, cfg_.hidden_size, 1.0f, xf_.data(), cfg_.hidden_size,
              out_weight(), cfg_.hidden_size, 0.0f, logits_out, cfg_.vocab_size);
    softcap_logits(logits_out, N * cfg_.vocab_size, cfg_.final_softcap);
}

void ModelImpl::forward_logits_at(const int32_t* ids, int B, int T, const int32_t* positions, float* logits_out) {
    for (int b = 0; b < B; b++)
        HQ_CHECK(positions[b] >= 0 && positions[b] < T, "E_SHAPE",
                 "logits position " << positions[b] << " of row " << b << " is outside [0, " << T << ")", Where{},
                 "pass one position per row inside the sequence");
    const int64_t N = (int64_t)B * T, C = cfg_.hidden_size;
    BlasThreadScope threads(call_threads(N));
    forward_hidden(ids, B, T, false);
    // The final hidden state of each requested position, then logits [B, V] = rows · W_outᵀ (the same values as
    // the matching rows of forward_logits up to the GEMM's blocking).
    ensure(ytmp_, (size_t)B * C);
    for (int b = 0; b < B; b++)
        std::memcpy(ytmp_.data() + (int64_t)b * C, xf_.data() + ((int64_t)b * T + positions[b]) * C, sizeof(float) * C);
    par_sgemm(false, true, B, cfg_.vocab_size, (int)C, 1.0f, ytmp_.data(), (int)C, out_weight(), (int)C, 0.0f,
              logits_out, cfg_.vocab_size);
    softcap_logits(logits_out, (int64_t)B * cfg_.vocab_size, cfg_.final_softcap);
}

std::vector<float> ModelImpl::dequantized_weight(const std::string& module) const {
    for (const DecoderLayer& L : layers_)
        for (const HLoraLinear& P : L.proj)
            if (P.name == module) {
                std::vector<float> w((size_t)P.out * P.in);
                hlora_base_weight(P, w.data());
                return w;
            }
    throw Error("E_CONFIG", HQ_MSG("no projection named " << module), Where{"", "", "module", -1, -1},
                "names look like model.layers.0.self_attn.q_proj or model.layers.0.mlp.down_proj");
}

size_t ModelImpl::memory_bytes() const {
    auto cap = [](const std::vector<float>& v) { return v.capacity() * sizeof(float); };
    size_t n = cap(embed_) + cap(lm_head_) + cap(norm_);
    for (const DecoderLayer& L : layers_) {
        n += cap(L.ln1) + cap(L.ln2) + cap(L.ln_post_attn) + cap(L.ln_post_ff) + cap(L.q_norm) + cap(L.k_norm);
        for (const auto& b : L.bias) n += cap(b);
        for (const HLoraLinear& P : L.proj) n += P.base_bytes();
    }
    n += cap(pw_) + cap(pg_);
    n += hws_.bytes() + lws_.bytes() + cap(cos_) + cap(sin_) + cap(cosl_) + cap(sinl_);
    for (const LayerActs& a : acts_) n += a.bytes();
    for (const auto& x : xs_) n += cap(x);
    for (const auto* v : {&xf_, &rstdf_, &tmpC_, &ytmp_, &dxa_, &dxb_, &dmid_, &dxn_, &dxf_, &dg_, &du_, &dh_, &dq_,
                          &datt_, &dk_, &dv_, &dqn_, &dkn_, &dao_, &dmo_})
        n += cap(*v);
    return n;
}

}  // namespace

HostWeights host_weights(Model& m) {
    auto* impl = dynamic_cast<ModelImpl*>(&m);
    HQ_ASSERT(impl != nullptr);
    return impl->host_view();
}

LossOut Model::forward_backward_packed(const int32_t* ids, const int32_t* labels, const int32_t* seg, int B, int T,
                                       bool backward, float grad_scale) {
    if (!seg) return forward_backward(ids, labels, B, T, backward, grad_scale);
    throw Error("E_CONFIG", "the " + backend() + " backend does not support packed sequences (document masks)",
                Where{"", "", "data.packing", -1, -1},
                "set data.packing to false, or train on the CPU backend (hardware.device: cpu)");
}

void Model::grads_ready(int layer) {
    if (!grads_ready_) return;
    if (layer_grad_off_.empty()) {
        const std::vector<Param>& ps = params();
        const int nL = config().num_layers;
        HQ_ASSERT(nL > 0 && ps.size() % static_cast<size_t>(nL) == 0);
        const size_t per = ps.size() / static_cast<size_t>(nL);
        layer_grad_off_.assign(static_cast<size_t>(nL) + 1, 0);
        for (size_t i = 0; i < ps.size(); ++i) layer_grad_off_[i / per + 1] += ps[i].numel;
        for (int l = 0; l < nL; ++l) layer_grad_off_[l + 1] += layer_grad_off_[l];
    }
    const size_t lo = layer_grad_off_[static_cast<size_t>(layer)];
    grads_ready_(layer, lo, layer_grad_off_[static_cast<size_t>(layer) + 1] - lo);
}

float Model::device_clip_grad_norm(float) {
    throw Error("E_INTERNAL", "device_clip_grad_norm called on the " + backend() + " backend", Where{},
                "please report this as a bug with the trainer log");
}

void Model::layer_rope(int, int, std::vector<float>*, std::vector<float>*) {
    throw Error("E_INTERNAL", "layer_rope is not exposed by the " + backend() + " backend", Where{},
                "the family probes run on the CPU backend");
}

AttnShape Model::layer_attention(int, int, int) const {
    throw Error("E_INTERNAL", "layer_attention is not exposed by the " + backend() + " backend", Where{},
                "the family probes run on the CPU backend");
}

bool Model::device_adamw_step(AdamW&, double) {
    throw Error("E_INTERNAL", "device_adamw_step called on the " + backend() + " backend", Where{},
                "please report this as a bug with the trainer log");
}

std::unique_ptr<Model> Model::load(const std::string& dir, const QuantSpec& quant, const AdapterSpec& adapter,
                                   uint64_t seed) {
    return std::make_unique<ModelImpl>(dir, quant, adapter, seed);
}

}  // namespace hq
