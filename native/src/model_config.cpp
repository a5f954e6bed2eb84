// model_config.cpp — parse and check a Hugging Face config.json (LLaMA 1/2/3, Gemma 1, Qwen2/2.5, Qwen3, Mistral,
// Gemma-2, Gemma-3 text, Phi-3).
//
// Accepted keys (transformers 4 and 5): model_type, vocab_size, hidden_size, intermediate_size, num_hidden_layers,
// num_attention_heads, num_key_value_heads, head_dim, rms_norm_eps, rope_theta, rope_scaling (4.x) or
// rope_parameters (5.x: {rope_type, rope_theta, factor, ...}, per layer type for Gemma-3), max_position_embeddings,
// original_max_position_embeddings (Phi-3), tie_word_embeddings, hidden_act / hidden_activation, attention_bias,
// mlp_bias, sliding_window, use_sliding_window / max_window_layers (Qwen), layer_types, sliding_window_pattern,
// attn_logit_softcapping, final_logit_softcapping, query_pre_attn_scalar, rope_local_base_freq, bos/eos/pad_token_id,
// torch_dtype / dtype.
// Defaults for absent keys are those of the family's transformers config class (e.g. Gemma-2 head_dim 256, caps
// 50/30). Anything that would change the math and that we do not implement is an E_CONFIG naming the key.
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "error.h"
#include "fsutil.h"
#include "model_config.h"

namespace hq {

using nlohmann::json;

const char* arch_model_type(Arch a) {
    switch (a) {
        case Arch::Llama: return "llama";
        case Arch::Gemma: return "gemma";
        case Arch::Qwen2: return "qwen2";
        case Arch::Qwen3: return "qwen3";
        case Arch::Mistral: return "mistral";
        case Arch::Gemma2: return "gemma2";
        case Arch::Gemma3: return "gemma3_text";
        case Arch::Phi3: return "phi3";
    }
    return "?";
}

const char* supported_families() {
    return "supported model_type values: llama (LLaMA 1/2/3), gemma (Gemma 1), qwen2 (Qwen2/2.5), qwen3 (Qwen3 "
           "dense), mistral (Mistral), gemma2 (Gemma-2), gemma3_text (Gemma-3 text, Gemma3ForCausalLM), phi3 "
           "(Phi-3/3.5-mini)";
}

float ModelConfig::attn_scale() const {
    const double s = query_pre_attn_scalar > 0 ? (double)query_pre_attn_scalar : (double)head_dim;
    return (float)(1.0 / std::sqrt(s));
}

bool ModelConfig::any_sliding() const {
    for (uint8_t s : layer_sliding)
        if (s) return true;
    return false;
}

std::vector<std::string> ModelConfig::features() const {
    std::vector<std::string> f;
    if (gemma_norm) f.push_back("gemma_norm(1+w),embed_scale");
    if (qkv_bias) f.push_back("qkv_bias");
    if (qk_norm) f.push_back("qk_norm");
    if (sandwich_norm) f.push_back("pre_post_norms");
    if (fused_proj) f.push_back("fused_qkv_gate_up");
    if (any_sliding()) {
        int n = 0;
        for (uint8_t s : layer_sliding) n += s;
        f.push_back(HQ_MSG("sliding_window=" << sliding_window << " (" << n << "/" << num_layers << " layers)"));
    }
    if (attn_softcap > 0) f.push_back(HQ_MSG("attn_softcap=" << attn_softcap));
    if (final_softcap > 0) f.push_back(HQ_MSG("final_softcap=" << final_softcap));
    if (query_pre_attn_scalar > 0) f.push_back(HQ_MSG("query_pre_attn_scalar=" << query_pre_attn_scalar));
    if (rope_local_theta > 0) f.push_back(HQ_MSG("local_rope_theta=" << rope_local_theta));
    if (!rope_scaling.type.empty()) f.push_back("rope_scaling=" + rope_scaling.type);
    return f;
}

std::string ModelConfig::cuda_missing_features() const {
    // native/cuda/cuda_model.cpp implements every family feature: the q/k/v biases, q/k norms, post-attention/feed-
    // forward norms, logit soft-capping, query_pre_attn_scalar, local rope, LongRoPE, and (with the flash attention
    // kernel) the sliding window and attention soft-capping. The flash kernel is built for these head sizes only:
    if (flash_head_dim(head_dim)) return "";
    std::vector<std::string> m;
    if (any_sliding()) m.push_back("sliding-window attention");
    if (attn_softcap > 0) m.push_back("attention logit soft-capping");
    std::string s;
    for (size_t i = 0; i < m.size(); i++) s += (i ? ", " : "") + m[i];
    if (!s.empty()) s += HQ_MSG(" with head_dim " << head_dim << " (the flash kernel: 16, 32, 64, 96, 128 or 256)");
    return s;
}

namespace {

struct ConfigReader {
    const json& j;
    std::string file;

    Error fail(const std::string& key, const std::string& msg, const std::string& hint) const {
        return Error("E_CONFIG", msg, Where{file, "", key, -1, -1}, hint);
    }
    bool present(const json& obj, const char* key) const { return obj.contains(key) && !obj.at(key).is_null(); }

    int64_t get_int(const json& obj, const std::string& path, const char* key, bool required, int64_t dflt) const {
        if (!present(obj, key)) {
            if (required) throw fail(path, HQ_MSG("config.json has no '" << path << "'"),
                                     "a Hugging Face LLaMA/Gemma config.json always has it; is this a model folder?");
            return dflt;
        }
        const json& v = obj.at(key);
        if (!v.is_number_integer())
            throw fail(path, HQ_MSG("'" << path << "' must be an integer, got " << v.dump()), "fix config.json");
        return v.get<int64_t>();
    }
    int get_pos_int(const json& obj, const char* key, bool required, int dflt) const {
        const int64_t v = get_int(obj, key, key, required, dflt);
        if (v <= 0 || v > (int64_t)1 << 30)
            throw fail(key, HQ_MSG("'" << key << "' must be a positive integer, got " << v), "fix config.json");
        return (int)v;
    }
    double get_num(const json& obj, const std::string& path, const char* key, double dflt) const {
        if (!present(obj, key)) return dflt;
        const json& v = obj.at(key);
        if (!v.is_number())
            throw fail(path, HQ_MSG("'" << path << "' must be a number, got " << v.dump()), "fix config.json");
        return v.get<double>();
    }
    bool get_bool(const json& obj, const char* key, bool dflt) const {
        if (!present(obj, key)) return dflt;
        const json& v = obj.at(key);
        if (!v.is_boolean())
            throw fail(key, HQ_MSG("'" << key << "' must be true/false, got " << v.dump()), "fix config.json");
        return v.get<bool>();
    }
    std::string get_str(const json& obj, const std::string& path, const char* key, const std::string& dflt) const {
        if (!present(obj, key)) return dflt;
        const json& v = obj.at(key);
        if (!v.is_string())
            throw fail(path, HQ_MSG("'" << path << "' must be a string, got " << v.dump()), "fix config.json");
        return v.get<std::string>();
    }
    // Token ids may be an int, a list (first entry is used) or null.
    int get_token_id(const char* key) const {
        if (!present(j, key)) return -1;
        const json& v = j.at(key);
        if (v.is_number_integer()) return v.get<int>();
        if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int>();
        throw fail(key, HQ_MSG("'" << key << "' must be an integer or a list of integers, got " << v.dump()),
                   "fix config.json");
    }

    // rope_scaling (4.x) or rope_parameters (5.x). `obj` is the object, `path` its key for errors. Fills `theta`
    // (when the object carries rope_theta) and `out`.
    void parse_rope(const json& obj, const std::string& path, const ModelConfig& c, float& theta,
                    RopeScaling& out) const {
        if (!obj.is_object())
            throw fail(path, HQ_MSG("'" << path << "' must be an object or null, got " << obj.dump()),
                       "fix config.json");
        std::string type = get_str(obj, path + ".rope_type", "rope_type", "");
        if (type.empty()) type = get_str(obj, path + ".type", "type", "default");
        if (present(obj, "rope_theta")) theta = (float)get_num(obj, path + ".rope_theta", "rope_theta", 10000.0);
        if (type == "default") {
            out = RopeScaling{};
            return;
        }
        RopeScaling& s = out;
        if (type == "linear") {
            s.type = "linear";
            s.factor = (float)get_num(obj, path + ".factor", "factor", 1.0);
            if (!(s.factor > 0)) throw fail(path + ".factor", "linear rope scaling needs factor > 0", "fix config.json");
            return;
        }
        if (type == "longrope" || type == "su") {
            s.type = "longrope";
            const int half = c.head_dim / 2;
            auto factors = [&](const char* key) {
                const std::string kp = path + "." + key;
                if (!present(obj, key) || !obj.at(key).is_array())
                    throw fail(kp, HQ_MSG("longrope needs '" << kp << "', a list of head_dim/2 = " << half
                                                              << " numbers"), "fix config.json");
                std::vector<float> f;
                for (const json& v : obj.at(key)) {
                    if (!v.is_number() || !(v.get<double>() > 0))
                        throw fail(kp, HQ_MSG("'" << kp << "' holds " << v.dump() << "; factors must be > 0"),
                                   "fix config.json");
                    f.push_back(v.get<float>());
                }
                if ((int)f.size() != half)
                    throw fail(kp, HQ_MSG("'" << kp << "' has " << f.size() << " factors, head_dim/2 is " << half),
                               "fix config.json");
                return f;
            };
            s.short_factor = factors("short_factor");
            s.long_factor = factors("long_factor");
            int64_t orig = get_int(j, "original_max_position_embeddings", "original_max_position_embeddings", false, 0);
            if (present(obj, "original_max_position_embeddings"))
                orig = get_int(obj, path + ".original_max_position_embeddings", "original_max_position_embeddings",
                               true, 0);
            if (orig <= 0)
                throw fail("original_max_position_embeddings",
                           "longrope needs original_max_position_embeddings > 0 (top level or in " + path + ")",
                           "Phi-3 config.json files carry it at the top level");
            s.original_max_position_embeddings = (int)orig;
            // transformers _compute_longrope_parameters: factor = max_position_embeddings / original; the default
            // attention factor is sqrt(1 + ln(factor) / ln(original)) (1 when factor <= 1).
            const double factor = (double)c.max_position_embeddings / (double)orig;
            s.factor = (float)factor;
            double att = factor <= 1.0 ? 1.0 : std::sqrt(1.0 + std::log(factor) / std::log((double)orig));
            att = get_num(obj, path + ".attention_factor", "attention_factor", att);
            s.attention_factor = (float)att;
            return;
        }
        if (type != "llama3")
            throw fail(path + (present(obj, "rope_type") ? ".rope_type" : ".type"),
                       HQ_MSG("rope scaling type '" << type << "' is not supported"),
                       HQ_MSG("supported: none/default, \"linear\", \"llama3\" (Llama 3.1+) and \"longrope\" "
                              "(Phi-3); dynamic and yarn are not. " << supported_families()));
        s.type = "llama3";
        s.factor = (float)get_num(obj, path + ".factor", "factor", 8.0);
        s.low_freq_factor = (float)get_num(obj, path + ".low_freq_factor", "low_freq_factor", 1.0);
        s.high_freq_factor = (float)get_num(obj, path + ".high_freq_factor", "high_freq_factor", 4.0);
        s.original_max_position_embeddings = (int)get_int(obj, path + ".original_max_position_embeddings",
                                                          "original_max_position_embeddings", false, 8192);
        if (!(s.factor > 0) || !(s.low_freq_factor > 0) || !(s.high_freq_factor > s.low_freq_factor) ||
            s.original_max_position_embeddings <= 0)
            throw fail(path, HQ_MSG("invalid llama3 rope scaling " << obj.dump()),
                       "need factor > 0, 0 < low_freq_factor < high_freq_factor, original_max_position_embeddings > 0");
    }
};

// config.json as a JSON object, or an error naming the file (missing, not JSON, not an object).
json read_config_json(const std::string& dir, const std::string& file) {
    if (!path_exists(file))
        throw Error("E_CONFIG", HQ_MSG("no config.json in model folder " << dir), Where{file, "", "", -1, -1},
                    "model.path must be a Hugging Face model folder (config.json + *.safetensors)");
    json j;
    try {
        j = json::parse(read_file(file));
    } catch (const json::parse_error& e) {
        throw Error("E_CONFIG", HQ_MSG("config.json is not valid JSON: " << e.what()),
                    Where{file, "", "", (int64_t)e.byte, -1},
                    "fix or re-download config.json");
    }
    if (!j.is_object())
        throw Error("E_CONFIG", "config.json is not a JSON object", Where{file, "", "", -1, -1}, "fix config.json");
    return j;
}

// model_type (one of the supported families), the refusals that come before any shape (pre-quantized and
// mixture-of-experts checkpoints), and what the family implies (norms, biases, fused projections).
void read_family(const ConfigReader& r, ModelConfig& c) {
    const json& j = r.j;
    c.model_type = r.get_str(j, "model_type", "model_type", "");
    static const Arch kArchs[] = {Arch::Llama, Arch::Gemma,   Arch::Qwen2,  Arch::Qwen3,
                                  Arch::Mistral, Arch::Gemma2, Arch::Gemma3, Arch::Phi3};
    bool known = false;
    for (Arch a : kArchs)
        if (c.model_type == arch_model_type(a)) {
            c.arch = a;
            known = true;
        }
    if (!known) {
        std::string hint = supported_families();
        if (c.model_type == "gemma3")
            hint = "this is the multimodal Gemma-3 config (Gemma3ForConditionalGeneration); text-only fine-tuning "
                   "needs a gemma3_text checkpoint (Gemma3ForCausalLM, e.g. gemma-3-1b). " + hint;
        throw r.fail("model_type",
                     c.model_type.empty() ? std::string("config.json has no 'model_type'")
                                          : HQ_MSG("model_type '" << c.model_type << "' is not supported"),
                     hint);
    }
    if (r.present(j, "quantization_config"))
        throw r.fail("quantization_config", "pre-quantized checkpoints (quantization_config) are not supported",
                     "point model.path at the original fp16/bf16/fp32 model; H-QLoRA quantizes it to NF4 at load");
    // Mixture-of-experts configs (Qwen3-MoE, Mixtral, Qwen2-MoE ... carry these) are refused before any weight.
    for (const char* key : {"num_experts", "num_local_experts", "n_routed_experts", "moe_intermediate_size"}) {
        if (!r.present(j, key)) continue;
        const json& v = j.at(key);
        if (v.is_number() && v.get<double>() <= 0) continue;
        throw r.fail(key, HQ_MSG("mixture-of-experts models ('" << key << "' = " << v.dump() << ") are not supported"),
                     HQ_MSG("only dense decoders are; " << supported_families()));
    }
    const Arch A = c.arch;
    const bool g2 = A == Arch::Gemma2, g3 = A == Arch::Gemma3;
    c.gemma_norm = A == Arch::Gemma || g2 || g3;
    c.qkv_bias = A == Arch::Qwen2;
    c.qk_norm = A == Arch::Qwen3 || g3;
    c.sandwich_norm = g2 || g3;
    c.fused_proj = A == Arch::Phi3;
}

// Sizes: vocabulary, hidden, MLP, layers, heads (grouped-query) and head_dim.
void read_shape(const ConfigReader& r, ModelConfig& c) {
    const json& j = r.j;
    const Arch A = c.arch;
    const bool g2 = A == Arch::Gemma2, g3 = A == Arch::Gemma3;
    c.vocab_size = r.get_pos_int(j, "vocab_size", true, 0);
    c.hidden_size = r.get_pos_int(j, "hidden_size", true, 0);
    c.intermediate_size = r.get_pos_int(j, "intermediate_size", true, 0);
    c.num_layers = r.get_pos_int(j, "num_hidden_layers", true, 0);
    c.num_heads = r.get_pos_int(j, "num_attention_heads", true, 0);
    c.num_kv_heads = r.get_pos_int(j, "num_key_value_heads", false, c.num_heads);
    if (c.num_heads % c.num_kv_heads != 0)
        throw r.fail("num_key_value_heads",
                     HQ_MSG("num_attention_heads " << c.num_heads << " is not a multiple of num_key_value_heads "
                                                   << c.num_kv_heads),
                     "grouped-query attention needs num_attention_heads % num_key_value_heads == 0");
    if (r.present(j, "head_dim")) {
        c.head_dim = r.get_pos_int(j, "head_dim", true, 0);
    } else if (g2 || g3 || A == Arch::Qwen3) {
        c.head_dim = A == Arch::Qwen3 ? 128 : 256;   // the config classes' defaults (not hidden / heads)
    } else {
        if (c.hidden_size % c.num_heads != 0)
            throw r.fail("head_dim",
                         HQ_MSG("hidden_size " << c.hidden_size << " is not divisible by num_attention_heads "
                                               << c.num_heads << " and head_dim is not given"),
                         "add head_dim to config.json");
        c.head_dim = c.hidden_size / c.num_heads;
    }
    if (c.head_dim % 2 != 0)
        throw r.fail("head_dim", HQ_MSG("head_dim " << c.head_dim << " is odd"),
                     "rotary embeddings need an even head_dim");
}

// The norm epsilon, the context length and the rotary embedding (theta, scaling; Gemma-3's per layer type).
void read_norm_and_rope(const ConfigReader& r, ModelConfig& c) {
    const json& j = r.j;
    const Arch A = c.arch;
    const bool g3 = A == Arch::Gemma3;
    c.rms_norm_eps = (float)r.get_num(j, "rms_norm_eps", "rms_norm_eps", 1e-6);
    if (!(c.rms_norm_eps > 0)) throw r.fail("rms_norm_eps", "rms_norm_eps must be > 0", "fix config.json");
    c.max_position_embeddings = r.get_pos_int(j, "max_position_embeddings", false, 2048);
    c.rope_theta = (float)r.get_num(j, "rope_theta", "rope_theta", g3 ? 1000000.0 : 10000.0);
    if (g3) {
        // Gemma-3: rope_scaling and rope_theta are the global layers'; the sliding layers use default RoPE with
        // rope_local_base_freq. transformers 5 writes rope_parameters per layer type instead.
        c.rope_local_theta = (float)r.get_num(j, "rope_local_base_freq", "rope_local_base_freq", 10000.0);
        if (r.present(j, "rope_scaling")) r.parse_rope(j.at("rope_scaling"), "rope_scaling", c, c.rope_theta,
                                                       c.rope_scaling);
        if (r.present(j, "rope_parameters")) {
            const json& rp = j.at("rope_parameters");
            if (rp.is_object() && (rp.contains("full_attention") || rp.contains("sliding_attention"))) {
                if (rp.contains("full_attention")) {
                    r.parse_rope(rp.at("full_attention"), "rope_parameters.full_attention", c, c.rope_theta,
                                 c.rope_scaling);
                    c.rope_key = "rope_parameters.full_attention";
                }
                if (rp.contains("sliding_attention")) {
                    RopeScaling local;
                    r.parse_rope(rp.at("sliding_attention"), "rope_parameters.sliding_attention", c,
                                 c.rope_local_theta, local);
                    if (!local.type.empty())
                        throw r.fail("rope_parameters.sliding_attention.rope_type",
                                     "rope scaling on Gemma-3's sliding layers is not supported",
                                     "published Gemma-3 checkpoints scale only the global layers");
                }
            } else {
                r.parse_rope(rp, "rope_parameters", c, c.rope_theta, c.rope_scaling);
                c.rope_key = "rope_parameters";
            }
        }
        if (!(c.rope_local_theta > 0))
            throw r.fail("rope_local_base_freq", "rope_local_base_freq must be > 0", "fix config.json");
    } else {
        if (r.present(j, "rope_scaling"))
            r.parse_rope(j.at("rope_scaling"), "rope_scaling", c, c.rope_theta, c.rope_scaling);
        if (r.present(j, "rope_parameters")) {
            r.parse_rope(j.at("rope_parameters"), "rope_parameters", c, c.rope_theta, c.rope_scaling);
            c.rope_key = "rope_parameters";
        }
    }
    if (!(c.rope_theta > 0)) throw r.fail("rope_theta", "rope_theta must be > 0", "fix config.json");
    if (r.get_num(j, "partial_rotary_factor", "partial_rotary_factor", 1.0) != 1.0)
        throw r.fail("partial_rotary_factor", "partial rotary embeddings are not supported",
                     HQ_MSG("every supported family uses 1.0; " << supported_families()));
    if (c.rope_scaling.type == "longrope" && A != Arch::Phi3)
        throw r.fail("rope_scaling", HQ_MSG("longrope scaling on a " << c.model_type << " model is not supported"),
                     "longrope is implemented for phi3 only");
}

// Refused biases and bidirectional attention, tied embeddings, and the MLP activation.
void read_biases_and_activation(const ConfigReader& r, ModelConfig& c) {
    const json& j = r.j;
    if (r.get_bool(j, "attention_bias", false))
        throw r.fail("attention_bias", "attention_bias=true (biased q/k/v/o projections) is not supported",
                     "Qwen2's q/k/v biases are implied by model_type qwen2; other families use attention_bias=false");
    if (r.get_bool(j, "mlp_bias", false))
        throw r.fail("mlp_bias", "mlp_bias=true (biased MLP projections) is not supported",
                     "the supported families use mlp_bias=false");
    if (r.get_bool(j, "use_bidirectional_attention", false))
        throw r.fail("use_bidirectional_attention", "bidirectional attention is not supported",
                     "causal-LM fine-tuning needs causal attention");

    c.tie_word_embeddings = r.get_bool(j, "tie_word_embeddings", c.gemma_norm);

    // Activation.
    if (c.gemma_norm) {
        // Gemma: hidden_activation wins when set; "gelu" means the tanh approximation (transformers PR #29402).
        const bool has_ha = r.present(j, "hidden_activation");
        const char* key = has_ha ? "hidden_activation" : "hidden_act";
        const std::string act = r.get_str(j, key, key, "gelu_pytorch_tanh");
        if (act != "gelu" && act != "gelu_pytorch_tanh" && act != "gelu_new")
            throw r.fail(key, HQ_MSG(key << " '" << act << "' is not supported for " << c.model_type),
                         "Gemma uses tanh-approximated GELU (\"gelu_pytorch_tanh\"; \"gelu\" is read as the same)");
        c.hidden_act = "gelu_pytorch_tanh";
    } else {
        const std::string act = r.get_str(j, "hidden_act", "hidden_act", "silu");
        if (act != "silu" && act != "swish")
            throw r.fail("hidden_act", HQ_MSG("hidden_act '" << act << "' is not supported for " << c.model_type),
                         "LLaMA, Qwen, Mistral and Phi-3 use \"silu\" (SwiGLU)");
        c.hidden_act = "silu";
    }
}

void read_sliding_window(const ConfigReader& r, ModelConfig& c) {
    const json& j = r.j;
    const Arch A = c.arch;
    const bool g2 = A == Arch::Gemma2, g3 = A == Arch::Gemma3;
    // Which layers slide, and the window. transformers 5 configs may list layer_types explicitly.
    const int L = c.num_layers;
    c.layer_sliding.assign(L, 0);
    int64_t window = 0;
    auto window_key = [&](int64_t dflt) {
        if (!r.present(j, "sliding_window")) return dflt;
        return r.get_int(j, "sliding_window", "sliding_window", true, 0);
    };
    if (A == Arch::Mistral || A == Arch::Phi3) {
        window = window_key(0);
        for (int l = 0; l < L; l++) c.layer_sliding[l] = window > 0;
    } else if (A == Arch::Qwen2 || A == Arch::Qwen3) {
        if (r.get_bool(j, "use_sliding_window", false)) {
            window = window_key(4096);
            const int64_t mwl = r.get_int(j, "max_window_layers", "max_window_layers", false, L);
            for (int l = 0; l < L; l++) c.layer_sliding[l] = l >= mwl;
        }
    } else if (g2) {
        window = window_key(4096);
        for (int l = 0; l < L; l++) c.layer_sliding[l] = l % 2 == 0;
    } else if (g3) {
        window = window_key(4096);
        const int64_t pat = r.get_int(j, "sliding_window_pattern", "sliding_window_pattern", false, 6);
        if (pat <= 0) throw r.fail("sliding_window_pattern", "sliding_window_pattern must be > 0", "fix config.json");
        for (int l = 0; l < L; l++) c.layer_sliding[l] = (l + 1) % pat != 0;
    } else if (r.present(j, "sliding_window") && A == Arch::Llama) {
        // LlamaConfig has no sliding window; a stray key is ignored by transformers too.
    }
    if (r.present(j, "layer_types") && (A != Arch::Llama && A != Arch::Gemma)) {
        const json& lt = j.at("layer_types");
        if (!lt.is_array() || (int)lt.size() != L)
            throw r.fail("layer_types", HQ_MSG("'layer_types' must list " << L << " layer types"), "fix config.json");
        for (int l = 0; l < L; l++) {
            const std::string t = lt[l].is_string() ? lt[l].get<std::string>() : "";
            if (t != "sliding_attention" && t != "full_attention")
                throw r.fail(HQ_MSG("layer_types[" << l << "]"),
                             HQ_MSG("layer type " << lt[l].dump() << " is not supported"),
                             "use \"sliding_attention\" or \"full_attention\"");
            c.layer_sliding[l] = t == "sliding_attention";
        }
        if (window == 0 && c.any_sliding()) window = window_key(4096);
    }
    if (c.any_sliding()) {
        if (window <= 0)
            throw r.fail("sliding_window", HQ_MSG("sliding layers need sliding_window > 0, got " << window),
                         "fix config.json (null means no sliding window)");
        c.sliding_window = (int)std::min<int64_t>(window, 1 << 30);
    }
}

void read_gemma_attention(const ConfigReader& r, ModelConfig& c) {
    const json& j = r.j;
    const bool g2 = c.arch == Arch::Gemma2, g3 = c.arch == Arch::Gemma3;
    // Gemma-2/3 attention scale and soft-capping (Gemma2Config defaults 50 / 30; Gemma-3 has none by default).
    if (g2 || g3) {
        c.query_pre_attn_scalar = (float)r.get_num(j, "query_pre_attn_scalar", "query_pre_attn_scalar", 256.0);
        if (!(c.query_pre_attn_scalar > 0))
            throw r.fail("query_pre_attn_scalar", "query_pre_attn_scalar must be > 0", "fix config.json");
        auto cap = [&](const char* key, double dflt) {
            if (!j.contains(key)) return (float)dflt;
            if (j.at(key).is_null()) return 0.0f;
            const double v = r.get_num(j, key, key, dflt);
            if (!(v > 0)) throw r.fail(key, HQ_MSG("'" << key << "' must be > 0 or null"), "fix config.json");
            return (float)v;
        };
        c.attn_softcap = cap("attn_logit_softcapping", g2 ? 50.0 : 0.0);
        c.final_softcap = cap("final_logit_softcapping", g2 ? 30.0 : 0.0);
    }
}

}  // namespace

ProjRows proj_rows(const ModelConfig& c, const std::string& module) {
    const int64_t Hd = (int64_t)c.num_heads * c.head_dim, KVd = (int64_t)c.num_kv_heads * c.head_dim;
    const int64_t F = c.intermediate_size, C = c.hidden_size;
    const size_t dot = module.rfind('.');
    const std::string leaf = dot == std::string::npos ? module : module.substr(dot + 1);
    const std::string stem = dot == std::string::npos ? "" : module.substr(0, dot + 1);   // "model.layers.3.self_attn."
    struct Row { const char* leaf; const char* fused; int64_t row0, rows; };
    const Row rows[] = {
        {"q_proj", "qkv_proj", 0, Hd},        {"k_proj", "qkv_proj", Hd, KVd}, {"v_proj", "qkv_proj", Hd + KVd, KVd},
        {"o_proj", nullptr, 0, C},            {"gate_proj", "gate_up_proj", 0, F}, {"up_proj", "gate_up_proj", F, F},
        {"down_proj", nullptr, 0, C},
    };
    for (const Row& r : rows) {
        if (leaf != r.leaf) continue;
        if (c.fused_proj && r.fused) return {stem + r.fused + ".weight", r.row0, r.rows};
        return {module + ".weight", 0, r.rows};
    }
    throw Error("E_INTERNAL", HQ_MSG("proj_rows: " << module << " is not a projection"), Where{},
                "please report this as a bug");
}

int64_t proj_tensor_rows(const ModelConfig& c, const std::string& module) {
    const ProjRows pr = proj_rows(c, module);
    const size_t dot = module.rfind('.');
    const std::string stem = dot == std::string::npos ? "" : module.substr(0, dot + 1);
    int64_t rows = 0;
    for (const char* leaf : {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}) {
        const ProjRows q = proj_rows(c, stem + leaf);
        if (q.tensor == pr.tensor) rows = std::max(rows, q.row0 + q.rows);
    }
    return rows;
}

ModelConfig load_model_config(const std::string& dir) {
    const std::string file = path_join(dir, "config.json");
    const json j = read_config_json(dir, file);
    ConfigReader r{j, file};
    ModelConfig c;
    read_family(r, c);
    read_shape(r, c);
    read_norm_and_rope(r, c);
    read_biases_and_activation(r, c);
    read_sliding_window(r, c);
    read_gemma_attention(r, c);
    c.bos_token_id = r.get_token_id("bos_token_id");
    c.eos_token_id = r.get_token_id("eos_token_id");
    c.pad_token_id = r.get_token_id("pad_token_id");
    c.torch_dtype = r.get_str(j, "torch_dtype", "torch_dtype", "");
    if (c.torch_dtype.empty()) c.torch_dtype = r.get_str(j, "dtype", "dtype", "");
    return c;
}

}  // namespace hq
