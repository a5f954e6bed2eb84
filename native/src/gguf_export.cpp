// gguf_export.cpp — merged model, base and LoRA adapter as GGUF (see gguf_export.h for the files and the math).
#include "gguf_export.h"

#include <chrono>
#include <cmath>
#include <map>

#include "adapter_source.h"
#include "error.h"
#include "export_verify.h"
#include "fsutil.h"
#include "gguf_vocab.h"
#include "gguf_writer.h"
#include "hlora.h"
#include "model_config.h"
#include "nf4.h"
#include "safetensors.h"
#include "version.h"

namespace hq {

using nlohmann::json;

namespace {

// ---- the architecture table: one entry per model family -------------------------------------------------------
struct TensorName {
    const char* hf;     // suffix after "model.layers.{i}." (per layer) or the full HF name (global)
    const char* gguf;   // name after "blk.{i}." (per layer) or the full GGUF name, without ".weight"
};

const TensorName kLlamaLayer[] = {
    {"input_layernorm", "attn_norm"},      {"self_attn.q_proj", "attn_q"},   {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},        {"self_attn.o_proj", "attn_output"},
    {"post_attention_layernorm", "ffn_norm"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
};
const TensorName kLlamaGlobal[] = {
    {"model.embed_tokens", "token_embd"}, {"model.norm", "output_norm"}, {"lm_head", "output"},
};

struct GgufArch {
    const char* model_type;        // HF config.json model_type
    const char* arch;              // llama.cpp general.architecture
    const TensorName* layer;       // per-layer names
    size_t n_layer;
    const TensorName* global;
    size_t n_global;
    bool permute_qk;               // HF rotate-half -> llama.cpp interleaved RoPE rows (LLaMA, Mistral)
    float norm_add;                // added to every norm weight (Gemma stores scale - 1)
    bool drop_lm_head;             // the converter never writes output.weight (Gemma: always tied)
};

const GgufArch kGgufArchs[] = {
    {"llama", "llama", kLlamaLayer, std::size(kLlamaLayer), kLlamaGlobal, std::size(kLlamaGlobal), true, 0.0f, false},
    {"gemma", "gemma", kLlamaLayer, std::size(kLlamaLayer), kLlamaGlobal, std::size(kLlamaGlobal), false, 1.0f, true},
};

const GgufArch& gguf_arch(const ModelConfig& cfg, const std::string& config_path) {
    for (const GgufArch& a : kGgufArchs)
        if (cfg.model_type == a.model_type) return a;
    std::string known;
    for (const GgufArch& a : kGgufArchs) known += std::string(known.empty() ? "" : ", ") + a.model_type;
    throw Error("E_CONFIG", HQ_MSG("GGUF export does not support model_type '" << cfg.model_type << "' (" << config_path << ")"),
                Where{config_path, "", "model_type", -1, -1}, "supported: " + known + "; export the Hugging Face model instead");
}

// "model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight"; "" for tensors that are not written.
std::string gguf_name(const GgufArch& a, const std::string& hf, bool* is_norm) {
    *is_norm = false;
    const std::string w = ".weight";
    if (hf.size() < w.size() || hf.compare(hf.size() - w.size(), w.size(), w) != 0) return "?";
    const std::string stem = hf.substr(0, hf.size() - w.size());
    const std::string lp = "model.layers.";
    if (stem.compare(0, lp.size(), lp) == 0) {
        const size_t dot = stem.find('.', lp.size());
        if (dot == std::string::npos) return "?";
        const std::string idx = stem.substr(lp.size(), dot - lp.size()), rest = stem.substr(dot + 1);
        for (size_t i = 0; i < a.n_layer; i++)
            if (rest == a.layer[i].hf) {
                *is_norm = rest.find("norm") != std::string::npos;
                return "blk." + idx + "." + a.layer[i].gguf + w;
            }
        return "?";
    }
    for (size_t i = 0; i < a.n_global; i++)
        if (stem == a.global[i].hf) {
            if (stem == "lm_head" && a.drop_lm_head) return "";
            *is_norm = stem.find("norm") != std::string::npos;
            return std::string(a.global[i].gguf) + w;
        }
    return "?";
}

// HF rotate-half rows -> llama.cpp interleaved rows, per head of d rows (convert_hf_to_gguf LlamaModel.permute):
// out row h·d + 2j + k = in row h·d + k·d/2 + j. `w` [rows = heads·d, cols].
void permute_rows(std::vector<float>& w, int heads, int64_t rows, int64_t cols) {
    HQ_ASSERT(rows % heads == 0 && (rows / heads) % 2 == 0);
    const int64_t d = rows / heads, half = d / 2;
    std::vector<float> out(w.size());
    for (int h = 0; h < heads; h++)
        for (int64_t j = 0; j < half; j++)
            for (int k = 0; k < 2; k++) {
                const float* src = w.data() + (h * d + k * half + j) * cols;
                std::copy(src, src + cols, out.data() + (h * d + 2 * j + k) * cols);
            }
    w.swap(out);
}

// llama3 rope scaling as llama.cpp's rope_freqs factors (inverse-frequency divisors), [head_dim / 2].
std::vector<float> llama3_rope_factors(const ModelConfig& c) {
    const RopeScaling& s = c.rope_scaling;
    const double pi2 = 2.0 * M_PI, orig = s.original_max_position_embeddings;
    const double low = orig / s.low_freq_factor, high = orig / s.high_freq_factor;
    std::vector<float> f;
    for (int i = 0; i < c.head_dim; i += 2) {
        const double freq = 1.0 / std::pow(double(c.rope_theta), double(i) / c.head_dim);
        const double wl = pi2 / freq;
        if (wl < high) f.push_back(1.0f);
        else if (wl > low) f.push_back(s.factor);
        else {
            const double sm = (orig / wl - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
            f.push_back(float(1.0 / ((1.0 - sm) / s.factor + sm)));
        }
    }
    return f;
}

// Flat form of the first n levels (n = 0: all): A [R_n, in] = concat_rows(s_j·A_j), B [out, R_n].
int read_flat_levels(const AdapterSource& src, const SourceModule& m, int n, std::vector<float>* A, std::vector<float>* B) {
    const int L = int(src.levels.size());
    if (n <= 0 || n >= L) {
        src.read_flat(m, A, B);
        return src.total_rank();
    }
    int R = 0;
    for (int j = 0; j < n; j++) R += src.levels[size_t(j)].rank;
    A->assign(size_t(R) * m.in, 0.0f);
    B->assign(size_t(m.out) * R, 0.0f);
    std::vector<float> a, b;
    int off = 0;
    for (int j = 0; j < n; j++) {
        const int r = src.levels[size_t(j)].rank;
        src.read_level(m, j, &a, &b);
        const float s = src.scales[size_t(j)];
        for (size_t e = 0; e < a.size(); e++) (*A)[size_t(off) * m.in + e] = s * a[e];
        for (int o = 0; o < m.out; o++)
            for (int k = 0; k < r; k++) (*B)[size_t(o) * R + off + k] = b[size_t(o) * r + k];
        off += r;
    }
    return R;
}

void add_general(GgufWriter& w, const GgufArch& a, const std::string& type, const std::string& name, GgmlType t) {
    w.add_string("general.architecture", a.arch);
    w.add_string("general.type", type);
    w.add_string("general.name", name);
    w.add_u32("general.quantization_version", 2);
    w.add_u32("general.file_type", llama_file_type(t));
}

void add_hparams(GgufWriter& w, const GgufArch& a, const ModelConfig& c) {
    const std::string p = std::string(a.arch) + ".";
    w.add_u32(p + "context_length", uint32_t(c.max_position_embeddings));
    w.add_u32(p + "embedding_length", uint32_t(c.hidden_size));
    w.add_u32(p + "block_count", uint32_t(c.num_layers));
    w.add_u32(p + "feed_forward_length", uint32_t(c.intermediate_size));
    w.add_u32(p + "attention.head_count", uint32_t(c.num_heads));
    w.add_u32(p + "attention.head_count_kv", uint32_t(c.num_kv_heads));
    w.add_f32(p + "attention.layer_norm_rms_epsilon", c.rms_norm_eps);
    w.add_f32(p + "rope.freq_base", c.rope_theta);
    w.add_u32(p + "rope.dimension_count", uint32_t(c.head_dim));
    w.add_u32(p + "attention.key_length", uint32_t(c.head_dim));
    w.add_u32(p + "attention.value_length", uint32_t(c.head_dim));
    w.add_u32(p + "vocab_size", uint32_t(c.vocab_size));
}

struct Plan {
    std::string hf, gguf;
    std::vector<int64_t> shape;
    bool norm = false;
    const SourceModule* module = nullptr;
    int permute_heads = 0;   // > 0: permute rows (q: num_heads, k: num_kv_heads)
};

// The output plan, in llama.cpp's usual order: token_embd, blocks, output_norm, output; each of the source's
// modules matched to its base weight by name and shape.
std::vector<Plan> plan_tensors(const AdapterSource& src, const ModelWeights& mw, const GgufArch& arch,
                               const ModelConfig& cfg, const std::string& base) {
    std::map<std::string, const SourceModule*> adapted;
    for (const SourceModule& m : src.modules) adapted[m.name + ".weight"] = &m;
    std::vector<Plan> plan;
    for (const std::string& name : mw.names()) {
        if (name.size() >= 19 && name.compare(name.size() - 19, 19, "rotary_emb.inv_freq") == 0) continue;
        Plan p;
        p.hf = name;
        p.gguf = gguf_name(arch, name, &p.norm);
        if (p.gguf.empty()) continue;
        HQ_CHECK(p.gguf != "?", "E_CONFIG",
                 "tensor " << name << " of " << base << " has no llama.cpp name for architecture " << arch.arch,
                 (Where{base, name, "", -1, -1}), "this checkpoint has tensors llama.cpp's " + std::string(arch.arch) +
                                                      " architecture cannot run; export the Hugging Face model instead");
        p.shape = mw.find(name)->shape;
        auto it = adapted.find(name);
        if (it != adapted.end()) {
            p.module = it->second;
            HQ_CHECK(p.shape == (std::vector<int64_t>{p.module->out, p.module->in}), "E_SHAPE",
                     "adapter module " << p.module->name << " is [" << p.module->out << ", " << p.module->in << "] but " << name
                                       << " in " << base << " differs",
                     (Where{src.file, name, "", -1, -1}), "the adapter belongs to another base model");
        }
        if (arch.permute_qk && name.find("self_attn.q_proj.") != std::string::npos) p.permute_heads = cfg.num_heads;
        if (arch.permute_qk && name.find("self_attn.k_proj.") != std::string::npos) p.permute_heads = cfg.num_kv_heads;
        plan.push_back(p);
    }
    for (const auto& kv : adapted)
        HQ_CHECK(mw.has(kv.first), "E_SHAPE", "adapter module " << kv.second->name << " has no weight " << kv.first << " in " << base,
                 (Where{src.file, kv.first, "", -1, -1}), "the adapter belongs to another base model");
    auto rank_of = [](const Plan& p) {
        if (p.gguf == "token_embd.weight") return 0;
        if (p.gguf.compare(0, 4, "blk.") == 0) return 1;
        return p.gguf == "output_norm.weight" ? 2 : 3;
    };
    std::stable_sort(plan.begin(), plan.end(), [&](const Plan& a, const Plan& b) {
        if (rank_of(a) != rank_of(b)) return rank_of(a) < rank_of(b);
        if (rank_of(a) != 1) return false;
        const int la = std::stoi(a.gguf.substr(4)), lb = std::stoi(b.gguf.substr(4));
        return la < lb;
    });
    return plan;
}

}  // namespace

json export_gguf(const GgufExportOptions& o) {
    const auto t0 = std::chrono::steady_clock::now();
    HQ_CHECK(o.base == "original" || o.base == "dequantized", "E_CONFIG", "base '" << o.base << "' is not original or dequantized",
             (Where{"", "", "base", -1, -1}), "--base original | dequantized");
    GgmlType T;
    HQ_CHECK(ggml_type_from_name(o.type, &T), "E_CONFIG", "GGUF type '" << o.type << "' is not f32, f16, bf16 or q8_0",
             (Where{"", "", "type", -1, -1}), "--type f32|f16|bf16|q8_0");
    HQ_CHECK(o.write_merged || o.write_base || o.write_lora, "E_CONFIG", "nothing to write (no merged, base or LoRA GGUF)",
             (Where{"", "", "parts", -1, -1}), "ask for at least one of the merged model, the base or the LoRA adapter");
    AdapterSource src = open_adapter_source(o.source);
    const std::string base = !o.base_model.empty() ? o.base_model : src.base_model;
    HQ_CHECK(!base.empty(), "E_CONFIG", "the base model of " << o.source << " is unknown", (Where{src.file, "", "base_model", -1, -1}),
             "pass the base model folder (--base-model DIR)");
    const std::string cfg_path = path_join(base, "config.json");
    const ModelConfig cfg = load_model_config(base);
    const GgufArch& arch = gguf_arch(cfg, cfg_path);
    HQ_CHECK(src.architecture.empty() || src.architecture == cfg.model_type, "E_CONFIG",
             "the adapter was trained on a " << src.architecture << " model, " << base << " is " << cfg.model_type,
             (Where{cfg_path, "", "model_type", -1, -1}), "pass the base model the adapter was trained on");
    HQ_CHECK(o.levels >= 0 && o.levels <= int(src.levels.size()), "E_CONFIG",
             "levels " << o.levels << " is outside 0.." << src.levels.size() << " (" << src.file << ")",
             (Where{src.file, "", "levels", -1, -1}), "0 = all levels, n = the first n levels");
    const QuantSpec q = o.quant_set ? o.quant : src.has_quant ? src.quant : QuantSpec{};
    const bool deq = o.base == "dequantized" && q.type == "nf4";
    ModelWeights mw = ModelWeights::open_dir(base);

    // Output plan, in llama.cpp's usual order: token_embd, blocks, output_norm, output.
    const std::vector<Plan> plan = plan_tensors(src, mw, arch, cfg, base);
    const bool rope_freqs = cfg.rope_scaling.type == "llama3";
    const GgmlType lora_t = T == GgmlType::F32 ? GgmlType::F32 : GgmlType::F16;
    const std::string tn = o.type;
    const std::string sfx = o.levels > 0 && o.levels < int(src.levels.size()) ? "-L" + std::to_string(o.levels) : "";
    const std::string f_merged = "model" + sfx + "-" + tn + ".gguf", f_base = "base-" + tn + ".gguf",
                      f_lora = "adapter" + sfx + "-" + ggml_type_name(lora_t) + ".gguf";

    return build_export_dir(o, {o.source, base}, [&](const std::string& tmp) {
        json files = json::object();
        std::vector<float> W, A, B;
        const std::string name = base_name(base);
        // ---- model GGUFs (merged and/or base): one pass each over the base tensors ----
        auto write_model = [&](const std::string& file, bool merged) {
            GgufWriter w(path_join(tmp, file));
            add_general(w, arch, "model", merged ? name + " + H-QLoRA " + base_name(o.source) : name, T);
            add_hparams(w, arch, cfg);
            const GgufVocabInfo vi = add_gguf_vocab(w, base, cfg.vocab_size);
            auto type_of = [&](const Plan& p) {
                if (p.norm || p.shape.size() < 2) return GgmlType::F32;
                if (T == GgmlType::Q8_0 && p.shape.back() % 32 != 0) return GgmlType::F16;
                return T;
            };
            if (rope_freqs) w.add_tensor("rope_freqs.weight", {cfg.head_dim / 2}, GgmlType::F32);
            for (const Plan& p : plan) w.add_tensor(p.gguf, p.shape, type_of(p));
            w.begin_data();
            if (rope_freqs) {
                const std::vector<float> f = llama3_rope_factors(cfg);
                w.write_tensor_f32("rope_freqs.weight", f.data(), int64_t(f.size()));
            }
            int64_t done = 0;
            for (const Plan& p : plan) {
                export_check_cancel(o, p.hf);
                const TensorInfo* t = mw.find(p.hf);
                W.resize(size_t(t->numel()));
                mw.read_f32_into(p.hf, W.data(), W.size());
                if (p.module && deq) {
                    const NF4Tensor nq = nf4_quantize(W.data(), p.module->out, p.module->in, q.blocksize, q.double_quant);
                    nf4_dequantize(nq, W.data());
                }
                if (p.module && merged) {
                    const int R = read_flat_levels(src, *p.module, o.levels, &A, &B);
                    BlasThreadScope blas;
                    par_sgemm(false, false, p.module->out, p.module->in, R, 1.0f, B.data(), R, A.data(), p.module->in, 1.0f,
                              W.data(), p.module->in);
                }
                if (p.norm && arch.norm_add != 0.0f)
                    for (float& v : W) v += arch.norm_add;
                if (p.permute_heads > 0) permute_rows(W, p.permute_heads, p.shape[0], p.shape[1]);
                w.write_tensor_f32(p.gguf, W.data(), int64_t(W.size()));
                export_report(o, "write", ++done, int64_t(plan.size()), file + ": " + p.gguf);
            }
            w.finish();
            files[merged ? "merged" : "base"] = {{"file", file}, {"bytes", file_size(w.path())}, {"type", tn}};
            return vi;
        };
        GgufVocabInfo vi;
        if (o.write_merged) vi = write_model(f_merged, true);
        if (o.write_base) vi = write_model(f_base, false);
        int R_lora = 0;
        if (o.write_lora) {
            GgufWriter w(path_join(tmp, f_lora));
            add_general(w, arch, "adapter", base_name(o.source), lora_t);
            for (const Plan& p : plan)
                if (p.module) {
                    R_lora = o.levels > 0 && o.levels < int(src.levels.size()) ? 0 : src.total_rank();
                    if (R_lora == 0)
                        for (int j = 0; j < o.levels; j++) R_lora += src.levels[size_t(j)].rank;
                    break;
                }
            w.add_string("adapter.type", "lora");
            w.add_f32("adapter.lora.alpha", float(R_lora));
            for (const Plan& p : plan)
                if (p.module) {
                    w.add_tensor(p.gguf + ".lora_a", {R_lora, p.module->in}, lora_t);
                    w.add_tensor(p.gguf + ".lora_b", {p.module->out, R_lora}, lora_t);
                }
            w.begin_data();
            int64_t done = 0, n = int64_t(src.modules.size());
            for (const Plan& p : plan) {
                if (!p.module) continue;
                export_check_cancel(o, p.module->name);
                read_flat_levels(src, *p.module, o.levels, &A, &B);
                // llama.cpp's RoPE layout applies to B's output rows only (convert_lora_to_gguf's LoraTorchTensor).
                if (p.permute_heads > 0) permute_rows(B, p.permute_heads, p.module->out, R_lora);
                w.write_tensor_f32(p.gguf + ".lora_a", A.data(), int64_t(A.size()));
                w.write_tensor_f32(p.gguf + ".lora_b", B.data(), int64_t(B.size()));
                export_report(o, "write", ++done, n, f_lora + ": " + p.gguf);
            }
            w.finish();
            files["lora"] = {{"file", f_lora}, {"bytes", file_size(w.path())}, {"type", ggml_type_name(lora_t)},
                             {"rank", R_lora}, {"alpha", R_lora}};
        }
        if (o.write_base && o.write_lora)
            write_file_atomic(path_join(tmp, "Modelfile"),
                              "# Ollama: ollama create <name> -f Modelfile (written by H-QLoRA " HQ_VERSION ")\n"
                              "FROM ./" + f_base + "\nADAPTER ./" + f_lora + "\n");
        src.release_pages();
        json levels = json::array();
        for (size_t j = 0; j < src.levels.size(); j++)
            levels.push_back({{"rank", src.levels[j].rank}, {"alpha", src.levels[j].alpha}, {"scale", src.scales[j]}});
        json rep = {{"operation", "export_gguf"}, {"format", "gguf"}, {"source", o.source}, {"base_model", base},
                    {"base", o.base}, {"type", tn}, {"architecture", arch.arch}, {"quantization", {{"type", q.type},
                    {"double_quant", q.double_quant}, {"blocksize", q.blocksize}}}, {"levels", levels},
                    {"levels_used", o.levels == 0 ? int(src.levels.size()) : o.levels}, {"files", files},
                    {"trainer_version", HQ_VERSION}};
        if (o.write_merged || o.write_base)
            rep["tokenizer"] = {{"kind", vi.kind}, {"ggml_model", vi.ggml_model}, {"pre", vi.pre}, {"bos", vi.bos},
                                {"eos", vi.eos}, {"unk", vi.unk}, {"pad", vi.pad}, {"add_bos", vi.add_bos},
                                {"add_eos", vi.add_eos}, {"add_space_prefix", vi.add_space_prefix},
                                {"chat_template", vi.has_chat_template}, {"byte_complete", vi.byte_complete}};
        rep["verification"] = {{"status", "pending"}, {"reason", "the llama.cpp checks run after the files are written"}};
        rep["elapsed_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return rep;
    });
}

json gguf_reference_logits(const std::string& source, const std::string& base_model, const std::string& base_kind,
                           bool with_adapter) {
    AdapterSource src = open_adapter_source(source);
    const std::string base = !base_model.empty() ? base_model : src.base_model;
    HQ_CHECK(!base.empty(), "E_CONFIG", "the base model of " << source << " is unknown", (Where{src.file, "", "base_model", -1, -1}),
             "pass the base model folder");
    const ModelConfig cfg = load_model_config(base);
    QuantSpec q = src.has_quant ? src.quant : QuantSpec{};
    if (base_kind == "original") q.type = "none";
    const std::vector<int32_t> ids = verify_ids(cfg.vocab_size, cfg.bos_token_id);
    std::vector<float> lg;
    if (with_adapter) {
        lg = reference_logits(base, q, {{&src, 1.0}}, ids);
    } else {
        // The base alone, with the same projections quantized as in training: the adapter's targets, B = 0.
        auto model = Model::load(base, q, source_adapter_spec(src), 0);
        for (AdaptedModule& m : model->modules()) std::fill(m.B->w, m.B->w + m.B->numel, 0.0f);
        lg.resize(ids.size() * size_t(cfg.vocab_size));
        model->forward_logits(ids.data(), kVerifyBatch, kVerifySeq, lg.data());
    }
    return {{"ids", ids}, {"vocab", cfg.vocab_size}, {"batch", kVerifyBatch}, {"seq", kVerifySeq}, {"logits", lg}};
}

}  // namespace hq
