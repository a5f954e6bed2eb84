// test_model.cpp — config parsing, weight loading, NF4 targeting, adapter layout, and the model-level invariants
// (concatenated == per-level LoRA, logits vs chunked loss, checkpointing bit-exact, active levels, determinism).
// Uses the committed fixtures in test/fixtures/models and tiny synthetic checkpoints written to /tmp.
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "error.h"
#include "fsutil.h"
#include "hlora.h"
#include "model.h"
#include "model_config.h"
#include "nf4.h"
#include "safetensors.h"

using namespace hq;
using nlohmann::json;

namespace {

const std::string kFixtures = std::string(HQ_REPO_ROOT) + "/test/fixtures/models";

std::vector<float> randu(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
    std::mt19937_64 g(seed);
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    return v;
}

// ---- tiny synthetic checkpoints -----------------------------------------------------------------------------------

struct Synth {
    bool gemma = false;
    int V = 23, C = 16, F = 24, L = 2, H = 4, KV = 2, d = 4;
};
using Tensors = std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>;

json synth_config(const Synth& s) {
    return {{"model_type", s.gemma ? "gemma" : "llama"}, {"vocab_size", s.V}, {"hidden_size", s.C},
            {"intermediate_size", s.F}, {"num_hidden_layers", s.L}, {"num_attention_heads", s.H},
            {"num_key_value_heads", s.KV}, {"head_dim", s.d}, {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0},
            {"tie_word_embeddings", s.gemma}, {"hidden_act", s.gemma ? "gelu_pytorch_tanh" : "silu"}};
}

Tensors synth_tensors(const Synth& s, uint64_t seed) {
    Tensors t;
    auto add = [&](const std::string& name, std::vector<int64_t> shape, float lo, float hi) {
        size_t n = 1;
        for (int64_t x : shape) n *= (size_t)x;
        t[name] = {shape, randu(n, seed++, lo, hi)};
    };
    const float nlo = s.gemma ? -0.3f : 0.7f, nhi = s.gemma ? 0.3f : 1.3f;
    add("model.embed_tokens.weight", {s.V, s.C}, -1, 1);
    add("model.norm.weight", {s.C}, nlo, nhi);
    if (!s.gemma) add("lm_head.weight", {s.V, s.C}, -0.5f, 0.5f);
    for (int l = 0; l < s.L; l++) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        add(p + "input_layernorm.weight", {s.C}, nlo, nhi);
        add(p + "post_attention_layernorm.weight", {s.C}, nlo, nhi);
        add(p + "self_attn.q_proj.weight", {s.H * s.d, s.C}, -0.4f, 0.4f);
        add(p + "self_attn.k_proj.weight", {s.KV * s.d, s.C}, -0.4f, 0.4f);
        add(p + "self_attn.v_proj.weight", {s.KV * s.d, s.C}, -0.4f, 0.4f);
        add(p + "self_attn.o_proj.weight", {s.C, s.H * s.d}, -0.4f, 0.4f);
        add(p + "mlp.gate_proj.weight", {s.F, s.C}, -0.4f, 0.4f);
        add(p + "mlp.up_proj.weight", {s.F, s.C}, -0.4f, 0.4f);
        add(p + "mlp.down_proj.weight", {s.C, s.F}, -0.3f, 0.3f);
    }
    return t;
}

void write_model(const std::string& dir, const json& cfg, const Tensors& t) {
    remove_all(dir);
    make_dirs(dir);
    write_file_atomic(path_join(dir, "config.json"), cfg.dump(2));
    SafeTensorsWriter w;
    for (const auto& [name, st] : t) w.add_f32(name, st.first, st.second.data());
    w.write_atomic(path_join(dir, "model.safetensors"));
}

std::string synth_dir(const std::string& tag) { return "/tmp/hq_test_model_" + tag; }

// Writes a synthetic model and returns its folder.
std::string make_synth(const std::string& tag, const Synth& s = {}, uint64_t seed = 1) {
    const std::string dir = synth_dir(tag);
    write_model(dir, synth_config(s), synth_tensors(s, seed));
    return dir;
}

void write_config(const std::string& dir, const json& cfg) {
    remove_all(dir);
    make_dirs(dir);
    write_file_atomic(path_join(dir, "config.json"), cfg.dump(2));
}

// Runs f, requires an hq::Error with `code`, returns it.
Error expect_error(const std::function<void()>& f, const std::string& code) {
    try {
        f();
    } catch (const Error& e) {
        CHECK_MESSAGE(e.code() == code, "got " << e.code() << ": " << e.what());
        CHECK(!e.hint().empty());
        return e;
    }
    FAIL("expected hq::Error " << code);
    return Error("", "");
}

void set_random_B(Model& m, uint64_t seed) {
    for (Param& p : m.params())
        if (p.name.size() > 7 && p.name.compare(p.name.size() - 7, 7, ".lora_B") == 0) {
            const std::vector<float> v = randu(p.numel, seed++, -0.3f, 0.3f);
            std::copy(v.begin(), v.end(), p.w);
        }
}

std::vector<float> grads(Model& m) {
    std::vector<float> g;
    for (Param& p : m.params()) g.insert(g.end(), p.g, p.g + p.numel);
    return g;
}

AdapterSpec three_levels() {
    AdapterSpec a;
    a.levels = {{4, 8}, {2, 2}, {2, 6}};   // scales 2, 1, 3
    return a;
}

QuantSpec quant(const std::string& type) {
    QuantSpec q;
    q.type = type;
    return q;
}

const std::vector<int32_t> kIds = {1, 5, 9, 22, 3, 7, 7, 0, 14, 2, 11, 4};       // [2, 6]
const std::vector<int32_t> kLabels = {1, 5, -100, 22, 3, 7, 7, 0, -100, 2, 11, 4};

}  // namespace

// ---- config -----------------------------------------------------------------------------------------------------

TEST_CASE("config: every supported field is read (transformers 4 keys)") {
    const std::string dir = synth_dir("cfg_full");
    write_config(dir, {{"model_type", "llama"}, {"architectures", {"LlamaForCausalLM"}}, {"vocab_size", 128256},
                       {"hidden_size", 4096}, {"intermediate_size", 14336}, {"num_hidden_layers", 32},
                       {"num_attention_heads", 32}, {"num_key_value_heads", 8}, {"head_dim", 128},
                       {"rms_norm_eps", 1e-5}, {"rope_theta", 500000.0},
                       {"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                                         {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}}},
                       {"max_position_embeddings", 131072}, {"tie_word_embeddings", false}, {"hidden_act", "silu"},
                       {"attention_bias", false}, {"mlp_bias", false}, {"bos_token_id", 128000},
                       {"eos_token_id", {128001, 128008, 128009}}, {"pad_token_id", nullptr},
                       {"torch_dtype", "bfloat16"}, {"attention_dropout", 0.0}, {"pretraining_tp", 1}});
    const ModelConfig c = load_model_config(dir);
    CHECK(c.arch == Arch::Llama);
    CHECK(c.model_type == "llama");
    CHECK(c.vocab_size == 128256);
    CHECK(c.hidden_size == 4096);
    CHECK(c.intermediate_size == 14336);
    CHECK(c.num_layers == 32);
    CHECK(c.num_heads == 32);
    CHECK(c.num_kv_heads == 8);
    CHECK(c.head_dim == 128);
    CHECK(c.rms_norm_eps == 1e-5f);
    CHECK(c.rope_theta == 500000.0f);
    CHECK(c.rope_scaling.type == "llama3");
    CHECK(c.rope_scaling.factor == 8.0f);
    CHECK(c.rope_scaling.low_freq_factor == 1.0f);
    CHECK(c.rope_scaling.high_freq_factor == 4.0f);
    CHECK(c.rope_scaling.original_max_position_embeddings == 8192);
    CHECK(c.max_position_embeddings == 131072);
    CHECK(!c.tie_word_embeddings);
    CHECK(c.hidden_act == "silu");
    CHECK(c.bos_token_id == 128000);
    CHECK(c.eos_token_id == 128001);   // a list: the first id
    CHECK(c.pad_token_id == -1);
    CHECK(c.torch_dtype == "bfloat16");
    remove_all(dir);
}

TEST_CASE("config: transformers 5 rope_parameters, defaults, and Gemma") {
    const std::string dir = synth_dir("cfg_v5");
    write_config(dir, {{"model_type", "llama"}, {"vocab_size", 100}, {"hidden_size", 64}, {"intermediate_size", 128},
                       {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"dtype", "float32"},
                       {"rope_parameters", {{"rope_type", "llama3"}, {"rope_theta", 500000.0}, {"factor", 32.0},
                                            {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                                            {"original_max_position_embeddings", 8192}}}});
    ModelConfig c = load_model_config(dir);
    CHECK(c.rope_theta == 500000.0f);
    CHECK(c.rope_scaling.type == "llama3");
    CHECK(c.rope_scaling.factor == 32.0f);
    CHECK(c.num_kv_heads == 4);            // default: num_attention_heads
    CHECK(c.head_dim == 16);               // default: hidden / heads
    CHECK(c.rms_norm_eps == 1e-6f);
    CHECK(c.max_position_embeddings == 2048);
    CHECK(!c.tie_word_embeddings);         // LlamaConfig default
    CHECK(c.hidden_act == "silu");
    CHECK(c.torch_dtype == "float32");
    CHECK(c.bos_token_id == -1);

    write_config(dir, {{"model_type", "llama"}, {"vocab_size", 100}, {"hidden_size", 64}, {"intermediate_size", 128},
                       {"num_hidden_layers", 2}, {"num_attention_heads", 4},
                       {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", 20000.0}}}});
    c = load_model_config(dir);
    CHECK(c.rope_theta == 20000.0f);
    CHECK(c.rope_scaling.type.empty());

    // Gemma: "gelu" means tanh-GELU, tie defaults to true, head_dim · heads may differ from hidden
    write_config(dir, {{"model_type", "gemma"}, {"vocab_size", 256000}, {"hidden_size", 3072},
                       {"intermediate_size", 24576}, {"num_hidden_layers", 28}, {"num_attention_heads", 16},
                       {"num_key_value_heads", 16}, {"head_dim", 256}, {"hidden_act", "gelu"},
                       {"rope_scaling", nullptr}, {"bos_token_id", 2}, {"eos_token_id", 1}, {"pad_token_id", 0}});
    c = load_model_config(dir);
    CHECK(c.arch == Arch::Gemma);
    CHECK(c.hidden_act == "gelu_pytorch_tanh");
    CHECK(c.tie_word_embeddings);
    CHECK(c.head_dim * c.num_heads == 4096);
    CHECK(c.rope_scaling.type.empty());
    CHECK(c.pad_token_id == 0);
    remove_all(dir);
}

TEST_CASE("config: unsupported architectures and fields are E_CONFIG naming the field") {
    const std::string dir = synth_dir("cfg_bad");
    const json base = {{"model_type", "llama"}, {"vocab_size", 100}, {"hidden_size", 64}, {"intermediate_size", 128},
                       {"num_hidden_layers", 2}, {"num_attention_heads", 4}};
    struct Case {
        std::function<void(json&)> edit;
        std::string key;
    };
    const std::vector<Case> cases = {
        {[](json& j) { j["model_type"] = "mixtral"; }, "model_type"},
        {[](json& j) { j["model_type"] = "gemma3"; }, "model_type"},
        {[](json& j) { j.erase("model_type"); }, "model_type"},
        {[](json& j) { j["model_type"] = "qwen3"; j["num_experts"] = 8; }, "num_experts"},
        {[](json& j) { j["model_type"] = "mistral"; j["num_local_experts"] = 8; }, "num_local_experts"},
        {[](json& j) { j["rope_scaling"] = {{"type", "longrope"}, {"short_factor", {1, 1, 1, 1, 1, 1, 1, 1}},
                                            {"long_factor", {1, 1, 1, 1, 1, 1, 1, 1}}};
                       j["original_max_position_embeddings"] = 64; }, "rope_scaling"},
        {[](json& j) { j["model_type"] = "phi3"; j["rope_scaling"] = {{"type", "longrope"},
                                                                       {"short_factor", {1, 1}},
                                                                       {"long_factor", {1, 1}}}; },
         "rope_scaling.short_factor"},
        {[](json& j) { j["model_type"] = "mistral"; j["sliding_window"] = 0; j["layer_types"] =
                           {"sliding_attention", "full_attention"}; }, "sliding_window"},
        {[](json& j) { j["model_type"] = "gemma2"; j["layer_types"] = {"sliding_attention", "chunked"}; },
         "layer_types[1]"},
        {[](json& j) { j["model_type"] = "gemma2"; j["attn_logit_softcapping"] = -1.0; }, "attn_logit_softcapping"},
        {[](json& j) { j["attention_bias"] = true; }, "attention_bias"},
        {[](json& j) { j["mlp_bias"] = true; }, "mlp_bias"},
        {[](json& j) { j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}}; }, "rope_scaling.type"},
        {[](json& j) { j["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}}; }, "rope_scaling.rope_type"},
        {[](json& j) { j["rope_parameters"] = {{"rope_type", "dynamic"}, {"factor", 2.0}}; },
         "rope_parameters.rope_type"},
        {[](json& j) { j["hidden_act"] = "gelu"; }, "hidden_act"},
        {[](json& j) { j["num_key_value_heads"] = 3; }, "num_key_value_heads"},
        {[](json& j) { j.erase("hidden_size"); }, "hidden_size"},
        {[](json& j) { j["hidden_size"] = "64"; }, "hidden_size"},
        {[](json& j) { j["num_hidden_layers"] = 0; }, "num_hidden_layers"},
        {[](json& j) { j["head_dim"] = 15; }, "head_dim"},
        {[](json& j) { j["quantization_config"] = {{"load_in_4bit", true}}; }, "quantization_config"},
        {[](json& j) { j["model_type"] = "gemma"; j["hidden_activation"] = "relu"; }, "hidden_activation"},
    };
    for (const Case& cs : cases) {
        CAPTURE(cs.key);
        json j = base;
        cs.edit(j);
        write_config(dir, j);
        const Error e = expect_error([&] { load_model_config(dir); }, "E_CONFIG");
        CHECK(e.where().key == cs.key);
        CHECK(e.where().file == path_join(dir, "config.json"));
    }
    write_config(dir, base);
    write_file_atomic(path_join(dir, "config.json"), "{\"model_type\": \"llama\",");
    expect_error([&] { load_model_config(dir); }, "E_CONFIG");
    remove_all(dir);
    expect_error([&] { load_model_config(dir); }, "E_CONFIG");   // no config.json
}

TEST_CASE("config: the families' features (Qwen2/3, Mistral, Gemma-2/3, Phi-3) and the refusal naming them") {
    const std::string dir = synth_dir("cfg_families");
    const json base = {{"vocab_size", 100}, {"hidden_size", 64}, {"intermediate_size", 128}, {"num_hidden_layers", 6},
                       {"num_attention_heads", 4}, {"num_key_value_heads", 2}};
    auto load = [&](json j) {
        write_config(dir, j);
        return load_model_config(dir);
    };
    {
        json j = base;
        j["model_type"] = "qwen2";
        j["use_sliding_window"] = false;
        j["sliding_window"] = 4096;
        const ModelConfig c = load(j);
        CHECK(c.arch == Arch::Qwen2);
        CHECK(c.qkv_bias);
        CHECK_FALSE(c.any_sliding());
        CHECK_FALSE(c.tie_word_embeddings);
        j["use_sliding_window"] = true;
        j["max_window_layers"] = 4;
        const ModelConfig c2 = load(j);
        CHECK(c2.layer_sliding == std::vector<uint8_t>{0, 0, 0, 0, 1, 1});
        CHECK(c2.sliding_window == 4096);
    }
    {
        json j = base;
        j["model_type"] = "qwen3";
        const ModelConfig c = load(j);
        CHECK(c.qk_norm);
        CHECK(c.head_dim == 128);   // Qwen3Config's default, not hidden / heads
        CHECK_FALSE(c.qkv_bias);
    }
    {
        json j = base;
        j["model_type"] = "mistral";
        j["sliding_window"] = nullptr;
        CHECK_FALSE(load(j).any_sliding());
        j["sliding_window"] = 7;
        const ModelConfig c = load(j);
        CHECK(c.layer_sliding == std::vector<uint8_t>(6, 1));
        CHECK(c.sliding_window == 7);
    }
    {
        json j = base;
        j["model_type"] = "gemma2";
        j["head_dim"] = 16;
        const ModelConfig c = load(j);
        CHECK(c.gemma_norm);
        CHECK(c.sandwich_norm);
        CHECK(c.tie_word_embeddings);
        CHECK(c.hidden_act == "gelu_pytorch_tanh");
        CHECK(c.layer_sliding == std::vector<uint8_t>{1, 0, 1, 0, 1, 0});
        CHECK(c.sliding_window == 4096);
        CHECK(c.attn_softcap == 50.0f);
        CHECK(c.final_softcap == 30.0f);
        CHECK(c.attn_scale() == doctest::Approx(1.0 / 16.0));   // query_pre_attn_scalar default 256
        j["final_logit_softcapping"] = nullptr;
        CHECK(load(j).final_softcap == 0.0f);
    }
    {
        json j = base;
        j["model_type"] = "gemma3_text";
        j["head_dim"] = 16;
        j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 8.0}};
        const ModelConfig c = load(j);
        CHECK(c.qk_norm);
        CHECK(c.layer_sliding == std::vector<uint8_t>{1, 1, 1, 1, 1, 0});   // 5 local : 1 global
        CHECK(c.rope_theta == 1000000.0f);
        CHECK(c.rope_local_theta == 10000.0f);
        CHECK(c.rope_scaling.type == "linear");
        CHECK(c.attn_softcap == 0.0f);
        j["layer_types"] = {"sliding_attention", "full_attention", "sliding_attention", "full_attention",
                            "sliding_attention", "full_attention"};
        j.erase("rope_scaling");
        j["rope_parameters"] = {{"full_attention", {{"rope_type", "linear"}, {"factor", 4.0}, {"rope_theta", 5e5}}},
                                {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 2e4}}}};
        const ModelConfig c5 = load(j);   // the transformers 5 form
        CHECK(c5.layer_sliding == std::vector<uint8_t>{1, 0, 1, 0, 1, 0});
        CHECK(c5.rope_theta == 5e5f);
        CHECK(c5.rope_local_theta == 2e4f);
        CHECK(c5.rope_scaling.factor == 4.0f);
    }
    {
        json j = base;
        j["model_type"] = "phi3";
        j["max_position_embeddings"] = 131072;
        j["original_max_position_embeddings"] = 4096;
        const std::vector<double> f(8, 1.5);
        j["rope_scaling"] = {{"type", "longrope"}, {"short_factor", f}, {"long_factor", f}};
        const ModelConfig c = load(j);
        CHECK(c.fused_proj);
        CHECK(c.rope_scaling.type == "longrope");
        CHECK(c.rope_scaling.original_max_position_embeddings == 4096);
        // sqrt(1 + ln(32) / ln(4096)), as transformers' _compute_longrope_parameters
        CHECK(c.rope_scaling.attention_factor == doctest::Approx(std::sqrt(1.0 + std::log(32.0) / std::log(4096.0))));
    }
    json j = base;
    j["model_type"] = "qwen3_moe";
    write_config(dir, j);
    const Error e = expect_error([&] { load_model_config(dir); }, "E_CONFIG");
    CHECK(e.where().key == "model_type");
    for (const char* fam : {"llama", "gemma", "qwen2", "qwen3", "mistral", "gemma2", "gemma3_text", "phi3"})
        CHECK(e.hint().find(fam) != std::string::npos);
    remove_all(dir);
}

// ---- loading ----------------------------------------------------------------------------------------------------

TEST_CASE("fixtures load: sharded F32 LLaMA, BF16 tied llama3, BF16 tied Gemma (H·d != hidden)") {
    for (const char* name : {"tiny-llama", "tiny-llama3", "tiny-gemma"}) {
        CAPTURE(name);
        const std::string dir = kFixtures + "/" + name;
        if (!path_exists(path_join(dir, "config.json"))) {
            MESSAGE("fixture " << dir << " missing; skipped");
            continue;
        }
        auto m = Model::load(dir, quant("none"), three_levels(), 0);
        const ModelConfig& c = m->config();
        const ModelWeights w = ModelWeights::open_dir(dir);
        int64_t total = 0;
        for (const std::string& t : w.names())
            if (!(c.tie_word_embeddings && t == "lm_head.weight")) total += w.find(t)->numel();
        CHECK(m->base_param_count() == total);
        if (std::string(name) == "tiny-llama") {
            CHECK(!w.index_path().empty());   // sharded
            CHECK(!c.tie_word_embeddings);
            CHECK(c.num_kv_heads == 2);
        } else if (std::string(name) == "tiny-llama3") {
            CHECK(c.tie_word_embeddings);
            CHECK(c.rope_scaling.type == "llama3");
            CHECK(c.rope_theta == 500000.0f);
        } else {
            CHECK(c.arch == Arch::Gemma);
            CHECK(c.num_heads * c.head_dim != c.hidden_size);
            CHECK(c.num_kv_heads == 1);
        }
        // quant "none": the forward uses exactly the checkpoint values (BF16 -> fp32 is exact)
        for (const char* mod : {"model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"})
            CHECK(m->dequantized_weight(mod) == w.read_f32(std::string(mod) + ".weight"));
        const int B = 2, T = 6;
        std::vector<int32_t> ids(B * T);
        for (int i = 0; i < B * T; i++) ids[i] = (i * 37 + 3) % c.vocab_size;
        std::vector<float> logits((size_t)B * T * c.vocab_size);
        m->forward_logits(ids.data(), B, T, logits.data());
        for (float x : logits) REQUIRE(std::isfinite(x));
        m->zero_grad();
        const LossOut lo = m->forward_backward(ids.data(), ids.data(), B, T, true, 1.0f);
        CHECK(lo.n_tokens == B * (T - 1));
        CHECK(std::isfinite(lo.loss_sum));
        // with B = 0 only the lora_B grads are nonzero (dA = (dy·B)ᵀ x = 0)
        for (Param& p : m->params()) {
            double s = 0;
            for (size_t i = 0; i < p.numel; i++) s += std::fabs(p.g[i]);
            if (p.name.find("lora_A") != std::string::npos) CHECK(s == 0.0);
            else CHECK(s > 0.0);
        }
    }
}

TEST_CASE("load errors name the file and the tensor") {
    const Synth s;
    const Tensors good = synth_tensors(s, 3);
    const std::string dir = synth_dir("load_err");
    {   // missing tensor
        Tensors t = good;
        t.erase("model.layers.1.mlp.up_proj.weight");
        write_model(dir, synth_config(s), t);
        const Error e = expect_error([&] { Model::load(dir, quant("nf4"), three_levels(), 0); }, "E_SAFETENSORS");
        CHECK(e.where().tensor == "model.layers.1.mlp.up_proj.weight");
        CHECK(e.where().file == path_join(dir, "model.safetensors"));
        CHECK(std::string(e.what()).find("model.layers.1.mlp.up_proj.weight") != std::string::npos);
    }
    {   // wrong shape
        Tensors t = good;
        t["model.layers.0.self_attn.k_proj.weight"] = {{8, 15}, std::vector<float>(120, 0.1f)};
        write_model(dir, synth_config(s), t);
        const Error e = expect_error([&] { Model::load(dir, quant("nf4"), three_levels(), 0); }, "E_SHAPE");
        CHECK(e.where().tensor == "model.layers.0.self_attn.k_proj.weight");
        CHECK(std::string(e.what()).find("[8, 15]") != std::string::npos);
        CHECK(std::string(e.what()).find("[8, 16]") != std::string::npos);
    }
    {   // untied without lm_head
        Tensors t = good;
        t.erase("lm_head.weight");
        write_model(dir, synth_config(s), t);
        const Error e = expect_error([&] { Model::load(dir, quant("nf4"), three_levels(), 0); }, "E_SAFETENSORS");
        CHECK(e.where().tensor == "lm_head.weight");
        CHECK(e.hint().find("tie_word_embeddings") != std::string::npos);
    }
    {   // an unexpected bias tensor
        Tensors t = good;
        t["model.layers.0.self_attn.q_proj.bias"] = {{16}, std::vector<float>(16, 0.0f)};
        write_model(dir, synth_config(s), t);
        const Error e = expect_error([&] { Model::load(dir, quant("nf4"), three_levels(), 0); }, "E_SAFETENSORS");
        CHECK(e.where().tensor == "model.layers.0.self_attn.q_proj.bias");
    }
    {   // rotary_emb.inv_freq is ignored; a tied model may still carry lm_head.weight
        Tensors t = good;
        t["model.layers.0.self_attn.rotary_emb.inv_freq"] = {{2}, {1.0f, 0.01f}};
        write_model(dir, synth_config(s), t);
        CHECK_NOTHROW(Model::load(dir, quant("nf4"), three_levels(), 0));
        json cfg = synth_config(s);
        cfg["tie_word_embeddings"] = true;
        write_model(dir, cfg, t);
        CHECK_NOTHROW(Model::load(dir, quant("nf4"), three_levels(), 0));
    }
    {   // run-config errors name the run.json key
        write_model(dir, synth_config(s), good);
        AdapterSpec a = three_levels();
        a.levels[1].rank = 0;
        CHECK(expect_error([&] { Model::load(dir, quant("nf4"), a, 0); }, "E_CONFIG").where().key ==
              "adapter.levels[1].rank");
        a = three_levels();
        a.target_modules = {"q_proj", "lm_head"};
        CHECK(expect_error([&] { Model::load(dir, quant("nf4"), a, 0); }, "E_CONFIG").where().key ==
              "adapter.target_modules[1]");
        a = three_levels();
        a.dropout = 1.0f;
        CHECK(expect_error([&] { Model::load(dir, quant("nf4"), a, 0); }, "E_CONFIG").where().key == "adapter.dropout");
        a = three_levels();
        a.init = "pissa";
        CHECK(expect_error([&] { Model::load(dir, quant("nf4"), a, 0); }, "E_CONFIG").where().key == "adapter.init");
        CHECK(expect_error([&] { Model::load(dir, quant("fp4"), three_levels(), 0); }, "E_CONFIG").where().key ==
              "quantization.type");
    }
    remove_all(dir);
}

TEST_CASE("NF4 quantization is applied to the target modules only") {
    const Synth s{false, 23, 64, 128, 2, 4, 2, 16};   // in-features multiple of 64
    const Tensors t = synth_tensors(s, 4);
    const std::string dir = synth_dir("nf4");
    write_model(dir, synth_config(s), t);
    AdapterSpec a = three_levels();
    a.target_modules = {"q_proj", "down_proj"};
    QuantSpec q = quant("nf4");
    auto m = Model::load(dir, q, a, 0);
    auto m32 = Model::load(dir, quant("none"), a, 0);
    for (int l = 0; l < s.L; l++) {
        const std::string p = "model.layers." + std::to_string(l);
        for (const char* proj : {"self_attn.q_proj", "mlp.down_proj"}) {
            const std::string mod = p + "." + proj;
            const auto& w = t.at(mod + ".weight");
            const NF4Tensor nf = nf4_quantize(w.second.data(), w.first[0], w.first[1], q.blocksize, q.double_quant);
            std::vector<float> ref(w.second.size());
            nf4_dequantize(nf, ref.data());
            const std::vector<float> got = m->dequantized_weight(mod);
            CHECK(got == ref);
            CHECK(got != w.second);
            CHECK(m32->dequantized_weight(mod) == w.second);
        }
        for (const char* proj : {"self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                                 "mlp.up_proj"}) {
            const std::string mod = p + "." + proj;
            CHECK(m->dequantized_weight(mod) == t.at(mod + ".weight").second);   // untouched fp32
        }
    }
    CHECK(m->memory_bytes() < m32->memory_bytes());
    CHECK_THROWS_AS(m->dequantized_weight("model.layers.0.self_attn.x_proj"), hq::Error);
    remove_all(dir);
}

TEST_CASE("adapter params: order, names, shapes, per-level counts, init") {
    const Synth s{false, 23, 64, 96, 2, 4, 2, 16};
    const std::string dir = make_synth("params", s);
    AdapterSpec a = three_levels();
    a.target_modules = {"v_proj", "q_proj", "down_proj"};   // order of target_modules is the param order
    auto m = Model::load(dir, quant("nf4"), a, 11);
    std::vector<Param>& ps = m->params();
    std::vector<AdaptedModule>& ms = m->modules();
    REQUIRE(ps.size() == 2 * 3 * (size_t)s.L);
    REQUIRE(ms.size() == 3 * (size_t)s.L);
    const int R = 8;
    CHECK(a.total_rank() == R);
    CHECK(a.scale(0) == 2.0f);
    CHECK(a.scale(1) == 1.0f);
    CHECK(a.scale(2) == 3.0f);
    const std::vector<std::pair<std::string, std::pair<int, int>>> order = {
        {"self_attn.v_proj", {64, 32}}, {"self_attn.q_proj", {64, 64}}, {"mlp.down_proj", {96, 64}}};
    size_t i = 0;
    for (int l = 0; l < s.L; l++)
        for (const auto& [mod, io] : order) {
            const std::string name = "model.layers." + std::to_string(l) + "." + mod;
            const AdaptedModule& am = ms[i / 2];
            CHECK(am.name == name);
            CHECK(am.in == io.first);
            CHECK(am.out == io.second);
            CHECK(am.level_offset == std::vector<int>{0, 4, 6});
            CHECK(am.A == &ps[i]);
            CHECK(am.B == &ps[i + 1]);
            CHECK(ps[i].name == name + ".lora_A");
            CHECK(ps[i].shape == std::vector<int64_t>{R, io.first});
            CHECK(ps[i + 1].name == name + ".lora_B");
            CHECK(ps[i + 1].shape == std::vector<int64_t>{io.second, R});
            // per level j: r_j·(in + out) params
            size_t per_level_sum = 0;
            for (const LevelSpec& lv : a.levels) per_level_sum += (size_t)lv.rank * (io.first + io.second);
            CHECK(ps[i].numel + ps[i + 1].numel == per_level_sum);
            // init: A ~ U(-1/√in, 1/√in) (kaiming_uniform a=√5), B = 0
            const float bound = 1.0f / std::sqrt((float)io.first);
            float amax = 0;
            for (size_t k = 0; k < ps[i].numel; k++) amax = std::max(amax, std::fabs(ps[i].w[k]));
            CHECK(amax <= bound);
            CHECK(amax > 0.8f * bound);
            for (size_t k = 0; k < ps[i + 1].numel; k++) REQUIRE(ps[i + 1].w[k] == 0.0f);
            i += 2;
        }
    // gaussian init: A_j ~ N(0, 1/r_j): check the per-level std of the (largest) down_proj A
    a.init = "gaussian";
    a.levels = {{16, 16}, {4, 16}};
    auto mg = Model::load(dir, quant("nf4"), a, 11);
    const Param& A = *mg->modules()[2].A;   // [20, 96]
    for (int j = 0; j < 2; j++) {
        const int r = a.levels[j].rank, off = j == 0 ? 0 : 16;
        double ss = 0;
        for (int row = off; row < off + r; row++)
            for (int c = 0; c < 96; c++) ss += (double)A.w[row * 96 + c] * A.w[row * 96 + c];
        const double sd = std::sqrt(ss / (r * 96));
        CHECK(sd == doctest::Approx(1.0 / r).epsilon(0.15));
    }
    remove_all(dir);
}

// ---- numerics invariants ----------------------------------------------------------------------------------------

TEST_CASE("concatenated-rank forward equals the sum of per-level forwards (1e-5)") {
    const int in = 128, out = 24, N = 7;
    const std::vector<int> ranks = {32, 8, 8, 8, 8};
    const std::vector<float> alphas = {16, 16, 4, 32, 8};
    HLoraLinear L;
    L.in = in, L.out = out;
    const std::vector<float> w = randu((size_t)out * in, 30, -0.2f, 0.2f);
    L.quantized = true;
    L.wq = nf4_quantize(w.data(), out, in, 64, true);
    std::vector<float> wd((size_t)out * in);
    nf4_dequantize(L.wq, wd.data());
    L.rank = ranks;
    L.offset = {0};
    for (size_t j = 0; j < ranks.size(); j++) {
        L.offset.push_back(L.offset.back() + ranks[j]);
        for (int r = 0; r < ranks[j]; r++) L.scale.push_back(alphas[j] / ranks[j]);
    }
    L.R = L.offset.back();
    std::vector<float> A = randu((size_t)L.R * in, 31, -0.1f, 0.1f), B = randu((size_t)out * L.R, 32, -0.1f, 0.1f);
    std::vector<float> dA(A.size()), dB(B.size());
    L.A = A.data(), L.B = B.data(), L.dA = dA.data(), L.dB = dB.data();
    const std::vector<float> x = randu((size_t)N * in, 33);
    HLoraWorkspace ws;
    for (int levels = 1; levels <= 5; levels++) {
        CAPTURE(levels);
        HLoraRun run;
        run.levels = levels;
        std::vector<float> y((size_t)N * out), z((size_t)N * L.R);
        hlora_forward(L, run, x.data(), N, y.data(), z.data(), ws);
        double max_err = 0;
        for (int n = 0; n < N; n++)
            for (int o = 0; o < out; o++) {
                double ref = 0;
                for (int c = 0; c < in; c++) ref += (double)x[n * in + c] * wd[o * in + c];
                for (int j = 0; j < levels; j++) {   // naive Σ_j s_j (x·A_jᵀ)·B_jᵀ, one level at a time
                    const double sj = (double)alphas[j] / ranks[j];
                    for (int r = 0; r < ranks[j]; r++) {
                        const int row = L.offset[j] + r;
                        double xa = 0;
                        for (int c = 0; c < in; c++) xa += (double)x[n * in + c] * A[(size_t)row * in + c];
                        ref += sj * xa * B[(size_t)o * L.R + row];
                    }
                }
                max_err = std::max(max_err, std::fabs(ref - y[n * out + o]));
            }
        CHECK(max_err < 1e-5);
    }
}

TEST_CASE("forward_logits agrees with the chunked loss for every chunk size") {
    for (bool gemma : {false, true}) {
        CAPTURE(gemma);
        Synth s;
        s.gemma = gemma;
        const std::string dir = make_synth(gemma ? "logits_g" : "logits_l", s, 5);
        auto m = Model::load(dir, quant("nf4"), three_levels(), 3);
        set_random_B(*m, 40);
        const int B = 2, T = 6, V = s.V;
        std::vector<float> logits((size_t)B * T * V);
        m->forward_logits(kIds.data(), B, T, logits.data());
        double ref = 0;
        int cnt = 0;
        for (int b = 0; b < B; b++)
            for (int t = 0; t + 1 < T; t++) {
                const int32_t y = kLabels[b * T + t + 1];
                if (y == -100) continue;
                const float* l = logits.data() + ((size_t)b * T + t) * V;
                double mx = -1e300, se = 0;
                for (int v = 0; v < V; v++) mx = std::max(mx, (double)l[v]);
                for (int v = 0; v < V; v++) se += std::exp(l[v] - mx);
                ref += mx + std::log(se) - l[y];
                cnt++;
            }
        for (int chunk : {1, 4, 0}) {
            CAPTURE(chunk);
            m->set_loss_chunk_rows(chunk);
            const LossOut lo = m->forward_backward(kIds.data(), kLabels.data(), B, T, false, 0.0f);
            CHECK(lo.n_tokens == cnt);
            CHECK(lo.loss_sum == doctest::Approx(ref).epsilon(1e-5));
        }
        remove_all(dir);
    }
}

TEST_CASE("gradient checkpointing on == off, bit-exact (with dropout in training mode)") {
    for (bool gemma : {false, true}) {
        CAPTURE(gemma);
        Synth s;
        s.gemma = gemma;
        const std::string dir = make_synth(gemma ? "ckpt_g" : "ckpt_l", s, 6);
        AdapterSpec a = three_levels();
        a.dropout = 0.1f;
        std::vector<float> g[2];
        double loss[2];
        for (int on = 0; on < 2; on++) {
            auto m = Model::load(dir, quant("nf4"), a, 9);
            set_random_B(*m, 50);
            m->set_training(true, 1234);
            m->set_gradient_checkpointing(on == 1);
            m->zero_grad();
            loss[on] = m->forward_backward(kIds.data(), kLabels.data(), 2, 6, true, 0.25f).loss_sum;
            loss[on] += m->forward_backward(kIds.data(), kLabels.data(), 2, 6, true, 0.25f).loss_sum;   // new masks
            g[on] = grads(*m);
        }
        CHECK(loss[0] == loss[1]);
        REQUIRE(g[0].size() == g[1].size());
        CHECK(std::memcmp(g[0].data(), g[1].data(), g[0].size() * sizeof(float)) == 0);
        double s1 = 0;
        for (float x : g[0]) s1 += std::fabs(x);
        CHECK(s1 > 0);
        remove_all(dir);
    }
}

TEST_CASE("set_active_levels: only the first n levels act and get gradients") {
    const std::string dir = make_synth("levels");
    auto m = Model::load(dir, quant("nf4"), three_levels(), 2);
    auto ref = Model::load(dir, quant("nf4"), three_levels(), 2);
    set_random_B(*m, 60);
    set_random_B(*ref, 60);
    // ref: the same adapters with the B columns of levels 1, 2 zeroed == m with only level 0 active
    for (AdaptedModule& am : ref->modules()) {
        const int R = (int)am.B->shape[1];
        for (int o = 0; o < am.out; o++)
            for (int c = am.level_offset[1]; c < R; c++) am.B->w[(size_t)o * R + c] = 0.0f;
    }
    const int B = 2, T = 6, V = m->config().vocab_size;
    std::vector<float> l_all((size_t)B * T * V), l_one(l_all.size()), l_ref(l_all.size());
    m->forward_logits(kIds.data(), B, T, l_all.data());
    m->set_active_levels(1);
    m->forward_logits(kIds.data(), B, T, l_one.data());
    ref->forward_logits(kIds.data(), B, T, l_ref.data());
    double d_ref = 0, d_all = 0;
    for (size_t i = 0; i < l_one.size(); i++) {
        d_ref = std::max(d_ref, (double)std::fabs(l_one[i] - l_ref[i]));
        d_all = std::max(d_all, (double)std::fabs(l_one[i] - l_all[i]));
    }
    CHECK(d_ref < 1e-5);
    CHECK(d_all > 1e-3);
    m->zero_grad();
    m->forward_backward(kIds.data(), kLabels.data(), B, T, true, 1.0f);
    for (AdaptedModule& am : m->modules()) {
        const int R = (int)am.B->shape[1];
        for (size_t k = (size_t)am.level_offset[1] * am.in; k < am.A->numel; k++) REQUIRE(am.A->g[k] == 0.0f);
        for (int o = 0; o < am.out; o++)
            for (int c = am.level_offset[1]; c < R; c++) REQUIRE(am.B->g[(size_t)o * R + c] == 0.0f);
    }
    m->set_active_levels(0);   // back to all
    std::vector<float> l_back(l_all.size());
    m->forward_logits(kIds.data(), B, T, l_back.data());
    CHECK(l_back == l_all);
    CHECK_THROWS_AS(m->set_active_levels(4), hq::Error);
    remove_all(dir);
}

TEST_CASE("determinism: same seed same init, repeated runs and thread counts give bit-identical grads") {
    const std::string dir = make_synth("determinism");
    auto params_of = [](Model& m) {
        std::vector<float> w;
        for (Param& p : m.params()) w.insert(w.end(), p.w, p.w + p.numel);
        return w;
    };
    auto m1 = Model::load(dir, quant("nf4"), three_levels(), 42);
    auto m2 = Model::load(dir, quant("nf4"), three_levels(), 42);
    auto m3 = Model::load(dir, quant("nf4"), three_levels(), 43);
    CHECK(params_of(*m1) == params_of(*m2));
    CHECK(params_of(*m1) != params_of(*m3));
    set_random_B(*m1, 70);
    set_random_B(*m2, 70);
    const int threads = omp_get_max_threads();
    std::vector<float> g[3];
    for (int run = 0; run < 3; run++) {
        Model& m = run == 1 ? *m2 : *m1;
        if (run == 2) omp_set_num_threads(threads > 1 ? 1 : 2);   // a different thread count
        m.zero_grad();
        m.forward_backward(kIds.data(), kLabels.data(), 2, 6, true, 0.1f);
        g[run] = grads(m);
    }
    omp_set_num_threads(threads);
    CHECK(std::memcmp(g[0].data(), g[1].data(), g[0].size() * sizeof(float)) == 0);
    CHECK(std::memcmp(g[0].data(), g[2].data(), g[0].size() * sizeof(float)) == 0);
    // grads accumulate across calls until zero_grad
    m1->forward_backward(kIds.data(), kLabels.data(), 2, 6, true, 0.1f);
    const std::vector<float> g2 = grads(*m1);
    for (size_t i = 0; i < g2.size(); i += 97) CHECK(g2[i] == doctest::Approx(2.0f * g[0][i]).epsilon(1e-5));
    remove_all(dir);
}

TEST_CASE("memory_bytes counts weights, adapters and workspace") {
    const std::string dir = make_synth("memory");
    auto m = Model::load(dir, quant("none"), three_levels(), 0);
    size_t adapters = 0;
    for (Param& p : m->params()) adapters += 2 * p.numel * sizeof(float);   // weights + grads
    const size_t before = m->memory_bytes();
    CHECK(before >= (size_t)m->base_param_count() * sizeof(float) + adapters);
    m->forward_backward(kIds.data(), kLabels.data(), 2, 6, true, 1.0f);
    const size_t after_nockpt = m->memory_bytes();
    CHECK(after_nockpt > before);   // activation cache + workspaces
    // gradient checkpointing keeps one layer's cache instead of L
    auto mc = Model::load(dir, quant("none"), three_levels(), 0);
    mc->set_gradient_checkpointing(true);
    mc->forward_backward(kIds.data(), kLabels.data(), 2, 6, true, 1.0f);
    CHECK(mc->memory_bytes() < after_nockpt);
    m->set_gradient_checkpointing(true);
    CHECK(m->memory_bytes() < after_nockpt);
    remove_all(dir);
}

TEST_CASE("packed rows (document mask + per-document positions) give each document its own loss and gradients") {
    // Padding-free equivalence: row 0 packs documents of 5, 4 and 3 tokens, row 1 one of 7 plus 5 padding tokens
    // (a document of its own, no labels). Each document's loss in the packed batch (labels kept on it only) equals
    // the loss of that document run alone (B = 1, T = its length), and the packed batch's gradients equal the sum
    // of the documents' gradients. Not bit-exact: the GEMMs see other shapes (N = 24 vs 3..7 rows, attention over
    // 12 keys with the other documents' probabilities exactly 0), so sums are blocked differently; 1e-5 relative on
    // the losses and 1e-4 on the gradients are fp32 rounding, while attention across documents (no seg) moves the
    // loss by > 1e-2 (checked: the test is not vacuous).
    const int T = 12, V = 23;
    const std::vector<std::vector<int>> docs = {{5, 4, 3}, {7}};
    std::vector<int32_t> ids(2 * T), labels(2 * T, -100), seg(2 * T);
    std::vector<std::vector<int32_t>> doc_ids, doc_labels;
    uint64_t r = 77;
    for (int b = 0; b < 2; b++) {
        int t = 0;
        for (size_t n = 0; n < docs[b].size(); n++) {
            std::vector<int32_t> di, dl;
            for (int k = 0; k < docs[b][n]; k++, t++) {
                r = r * 6364136223846793005ull + 1442695040888963407ull;
                const int32_t id = (int32_t)((r >> 33) % V);
                ids[b * T + t] = id;
                seg[b * T + t] = (int32_t)n;
                const bool target = k > 0 && (k + (int)n) % 4 != 0;   // some tokens are not targets
                labels[b * T + t] = target ? id : -100;
                di.push_back(id);
                dl.push_back(target ? id : -100);
            }
            doc_ids.push_back(di);
            doc_labels.push_back(dl);
        }
        for (; t < T; t++) ids[b * T + t] = 0, seg[b * T + t] = (int32_t)docs[b].size();
    }
    for (const bool gemma : {false, true}) {
        for (const bool ckpt : {false, true}) {
            CAPTURE(gemma);
            CAPTURE(ckpt);
            Synth s;
            s.gemma = gemma;
            const std::string dir = make_synth(gemma ? "pack_g" : "pack_l", s, 12);
            auto m = Model::load(dir, quant("nf4"), three_levels(), 3);
            set_random_B(*m, 90);
            m->set_gradient_checkpointing(ckpt);
            // Alone: each document's loss, and the sum of their gradients.
            std::vector<double> alone;
            m->zero_grad();
            for (size_t n = 0; n < doc_ids.size(); n++)
                alone.push_back(m->forward_backward(doc_ids[n].data(), doc_labels[n].data(), 1,
                                                    (int)doc_ids[n].size(), true, 1.0f).loss_sum);
            const std::vector<float> g_alone = grads(*m);
            // Packed: one document's labels at a time, then all of them with the backward.
            size_t n = 0;
            for (int b = 0; b < 2; b++)
                for (size_t k = 0; k < docs[b].size(); k++, n++) {
                    std::vector<int32_t> only(2 * T, -100);
                    for (int t = 0; t < T; t++)
                        if (seg[b * T + t] == (int32_t)k) only[b * T + t] = labels[b * T + t];
                    const double l = m->forward_backward_packed(ids.data(), only.data(), seg.data(), 2, T, false, 0)
                                         .loss_sum;
                    CHECK(l == doctest::Approx(alone[n]).epsilon(1e-5));
                }
            m->zero_grad();
            const LossOut packed = m->forward_backward_packed(ids.data(), labels.data(), seg.data(), 2, T, true, 1.0f);
            double sum_alone = 0;
            for (double x : alone) sum_alone += x;
            CHECK(packed.loss_sum == doctest::Approx(sum_alone).epsilon(1e-5));
            const std::vector<float> g_packed = grads(*m);
            REQUIRE(g_packed.size() == g_alone.size());
            int bad = 0;
            double gmax = 0;
            for (size_t i = 0; i < g_packed.size(); i++) {
                gmax = std::max(gmax, (double)std::fabs(g_alone[i]));
                if (std::fabs(g_packed[i] - g_alone[i]) > 1e-4 * (1.0 + std::fabs(g_alone[i]))) bad++;
            }
            CHECK(bad == 0);
            CHECK(gmax > 1e-3);
            // Without the documents the same batch attends across them: a different loss.
            const double leaky = m->forward_backward(ids.data(), labels.data(), 2, T, false, 0).loss_sum;
            CHECK(std::fabs(leaky - sum_alone) > 1e-2);
            remove_all(dir);
        }
    }
}
