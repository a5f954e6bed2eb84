// model_config.cpp — parse and check a Hugging Face config.json (LLaMA 1/2/3, Gemma 1).
//
// Accepted keys (transformers 4 and 5): model_type, vocab_size, hidden_size, intermediate_size, num_hidden_layers,
// num_attention_heads, num_key_value_heads, head_dim, rms_norm_eps, rope_theta, rope_scaling (4.x) or
// rope_parameters (5.x: {rope_type, rope_theta, factor, ...}), max_position_embeddings, tie_word_embeddings,
// hidden_act / hidden_activation (Gemma), attention_bias, mlp_bias, bos/eos/pad_token_id, torch_dtype / dtype.
// Anything that would change the math and that we do not implement is an E_CONFIG naming the key.
#include <cmath>
#include <nlohmann/json.hpp>

#include "error.h"
#include "fsutil.h"
#include "model_config.h"

namespace hq {

using nlohmann::json;

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

    // rope_scaling (4.x) or rope_parameters (5.x). `obj` is the object, `path` its key for errors.
    void parse_rope(const json& obj, const std::string& path, ModelConfig& c) const {
        if (!obj.is_object())
            throw fail(path, HQ_MSG("'" << path << "' must be an object or null, got " << obj.dump()),
                       "fix config.json");
        std::string type = get_str(obj, path + ".rope_type", "rope_type", "");
        if (type.empty()) type = get_str(obj, path + ".type", "type", "default");
        if (present(obj, "rope_theta")) c.rope_theta = (float)get_num(obj, path + ".rope_theta", "rope_theta", 10000.0);
        if (type == "default") {
            c.rope_scaling = RopeScaling{};
            return;
        }
        if (type != "llama3")
            throw fail(path + ".rope_type", HQ_MSG("rope scaling type '" << type << "' is not supported"),
                       "supported: none/default and \"llama3\" (Llama 3.1+); linear, dynamic, yarn, longrope are not");
        RopeScaling& s = c.rope_scaling;
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

}  // namespace

ModelConfig load_model_config(const std::string& dir) {
    const std::string file = path_join(dir, "config.json");
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
    ConfigReader r{j, file};
    ModelConfig c;

    c.model_type = r.get_str(j, "model_type", "model_type", "");
    if (c.model_type == "llama") {
        c.arch = Arch::Llama;
    } else if (c.model_type == "gemma") {
        c.arch = Arch::Gemma;
    } else {
        throw r.fail("model_type",
                     c.model_type.empty() ? std::string("config.json has no 'model_type'")
                                          : HQ_MSG("model_type '" << c.model_type << "' is not supported"),
                     "supported architectures: llama (LLaMA 1/2/3, LlamaForCausalLM) and gemma (Gemma 1)");
    }
    if (r.present(j, "quantization_config"))
        throw r.fail("quantization_config", "pre-quantized checkpoints (quantization_config) are not supported",
                     "point model.path at the original fp16/bf16/fp32 model; H-QLoRA quantizes it to NF4 at load");

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

    c.rms_norm_eps = (float)r.get_num(j, "rms_norm_eps", "rms_norm_eps", 1e-6);
    if (!(c.rms_norm_eps > 0)) throw r.fail("rms_norm_eps", "rms_norm_eps must be > 0", "fix config.json");
    c.max_position_embeddings = r.get_pos_int(j, "max_position_embeddings", false, 2048);
    c.rope_theta = (float)r.get_num(j, "rope_theta", "rope_theta", 10000.0);
    if (r.present(j, "rope_scaling")) r.parse_rope(j.at("rope_scaling"), "rope_scaling", c);
    if (r.present(j, "rope_parameters")) r.parse_rope(j.at("rope_parameters"), "rope_parameters", c);
    if (!(c.rope_theta > 0)) throw r.fail("rope_theta", "rope_theta must be > 0", "fix config.json");
    if (r.get_num(j, "partial_rotary_factor", "partial_rotary_factor", 1.0) != 1.0)
        throw r.fail("partial_rotary_factor", "partial rotary embeddings are not supported", "LLaMA/Gemma use 1.0");

    if (r.get_bool(j, "attention_bias", false))
        throw r.fail("attention_bias", "attention_bias=true (biased q/k/v/o projections) is not supported",
                     "LLaMA and Gemma checkpoints use attention_bias=false");
    if (r.get_bool(j, "mlp_bias", false))
        throw r.fail("mlp_bias", "mlp_bias=true (biased MLP projections) is not supported",
                     "LLaMA and Gemma checkpoints use mlp_bias=false");
    if (r.get_bool(j, "use_bidirectional_attention", false))
        throw r.fail("use_bidirectional_attention", "bidirectional attention is not supported",
                     "causal-LM fine-tuning needs causal attention");

    c.tie_word_embeddings = r.get_bool(j, "tie_word_embeddings", c.arch == Arch::Gemma);

    if (c.arch == Arch::Llama) {
        const std::string act = r.get_str(j, "hidden_act", "hidden_act", "silu");
        if (act != "silu" && act != "swish")
            throw r.fail("hidden_act", HQ_MSG("hidden_act '" << act << "' is not supported for LLaMA"),
                         "LLaMA uses \"silu\" (SwiGLU)");
        c.hidden_act = "silu";
    } else {
        // Gemma: hidden_activation wins when set; "gelu" means the tanh approximation (transformers PR #29402).
        const bool has_ha = r.present(j, "hidden_activation");
        const char* key = has_ha ? "hidden_activation" : "hidden_act";
        const std::string act = r.get_str(j, key, key, "gelu_pytorch_tanh");
        if (act != "gelu" && act != "gelu_pytorch_tanh" && act != "gelu_new")
            throw r.fail(key, HQ_MSG(key << " '" << act << "' is not supported for Gemma"),
                         "Gemma uses tanh-approximated GELU (\"gelu_pytorch_tanh\"; \"gelu\" is read as the same)");
        c.hidden_act = "gelu_pytorch_tanh";
    }
    c.bos_token_id = r.get_token_id("bos_token_id");
    c.eos_token_id = r.get_token_id("eos_token_id");
    c.pad_token_id = r.get_token_id("pad_token_id");
    c.torch_dtype = r.get_str(j, "torch_dtype", "torch_dtype", "");
    if (c.torch_dtype.empty()) c.torch_dtype = r.get_str(j, "dtype", "dtype", "");
    return c;
}

}  // namespace hq
