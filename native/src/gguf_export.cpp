// gguf_export.cpp — merged model, base and LoRA adapter as GGUF (see gguf_export.h for the files and the math).
#include "gguf_export.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>

#include "adapter_source.h"
#include "error.h"
#include "export_verify.h"
#include "fsutil.h"
#include "gguf_vocab.h"
#include "gguf_writer.h"
#include "hlora.h"
#include "dtype.h"
#include "model_config.h"
#include "model_impl.h"
#include "nf4.h"
#include "safetensors.h"
#include "version.h"

namespace hq {

using nlohmann::json;

namespace {

// ---- the architecture table: one entry per model family -------------------------------------------------------
// Names, keys and layouts as llama.cpp's converter writes them (conversion/{llama,qwen,gemma,phi}.py of the llama.cpp
// that node-llama-cpp 3.21.1 bundles) and as its loader reads them (src/models/<arch>.cpp).
struct TensorName {
    const char* hf;     // suffix after "model.layers.{i}." (per layer) or the full HF name (global)
    const char* gguf;   // name after "blk.{i}." (per layer) or the full GGUF name, without ".weight" / ".bias"
};

const TensorName kLlamaLayer[] = {
    {"input_layernorm", "attn_norm"},      {"self_attn.q_proj", "attn_q"},   {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},        {"self_attn.o_proj", "attn_output"},
    {"post_attention_layernorm", "ffn_norm"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
};
// Qwen3: RMSNorm over head_dim on q and k before RoPE.
const TensorName kQwen3Layer[] = {
    {"input_layernorm", "attn_norm"},      {"self_attn.q_proj", "attn_q"},   {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},        {"self_attn.o_proj", "attn_output"},
    {"self_attn.q_norm", "attn_q_norm"},   {"self_attn.k_norm", "attn_k_norm"},
    {"post_attention_layernorm", "ffn_norm"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
};
// Gemma-2: post_attention_layernorm is the norm AFTER attention (post_attention_norm); the MLP's input norm is
// pre_feedforward_layernorm (ffn_norm), its output norm post_feedforward_layernorm (post_ffw_norm).
const TensorName kGemma2Layer[] = {
    {"input_layernorm", "attn_norm"},      {"self_attn.q_proj", "attn_q"},   {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},        {"self_attn.o_proj", "attn_output"},
    {"post_attention_layernorm", "post_attention_norm"}, {"pre_feedforward_layernorm", "ffn_norm"},
    {"post_feedforward_layernorm", "post_ffw_norm"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
};
// Gemma-3: Gemma-2's layer plus q/k norms.
const TensorName kGemma3Layer[] = {
    {"input_layernorm", "attn_norm"},      {"self_attn.q_proj", "attn_q"},   {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},        {"self_attn.o_proj", "attn_output"},
    {"self_attn.q_norm", "attn_q_norm"},   {"self_attn.k_norm", "attn_k_norm"},
    {"post_attention_layernorm", "post_attention_norm"}, {"pre_feedforward_layernorm", "ffn_norm"},
    {"post_feedforward_layernorm", "post_ffw_norm"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
};
// Phi-3: fused qkv_proj [q (H·d); k (KV·d); v (KV·d)] -> attn_qkv and gate_up_proj [gate (F); up (F)] -> ffn_up
// (llama.cpp's phi3 graph splits ffn_up's output in halves: silu(first) · second).
const TensorName kPhi3Layer[] = {
    {"input_layernorm", "attn_norm"},      {"self_attn.qkv_proj", "attn_qkv"}, {"self_attn.o_proj", "attn_output"},
    {"post_attention_layernorm", "ffn_norm"}, {"mlp.gate_up_proj", "ffn_up"}, {"mlp.down_proj", "ffn_down"},
};
const TensorName kLlamaGlobal[] = {
    {"model.embed_tokens", "token_embd"}, {"model.norm", "output_norm"}, {"lm_head", "output"},
};

struct GgufArch {
    const char* model_type;        // HF config.json model_type
    const char* arch;              // llama.cpp general.architecture
    const TensorName* layer;       // per-layer names
    size_t n_layer;
    bool permute_qk;               // HF rotate-half -> llama.cpp interleaved RoPE rows (LLaMA, Mistral)
    float norm_add;                // added to every norm weight (Gemma stores scale - 1)
    bool drop_lm_head;             // the converter never writes output.weight (Gemma 1/2: always tied)
    bool swa;                      // llama.cpp runs this architecture's sliding-window layers
};

#define HQ_LAYERS(t) t, std::size(t)
const GgufArch kGgufArchs[] = {
    {"llama", "llama", HQ_LAYERS(kLlamaLayer), true, 0.0f, false, false},
    {"gemma", "gemma", HQ_LAYERS(kLlamaLayer), false, 1.0f, true, false},
    // Mistral converts as llama (conversion/llama.py registers MistralForCausalLM), q/k permuted alike.
    {"mistral", "llama", HQ_LAYERS(kLlamaLayer), true, 0.0f, false, false},
    {"qwen2", "qwen2", HQ_LAYERS(kLlamaLayer), false, 0.0f, false, false},
    {"qwen3", "qwen3", HQ_LAYERS(kQwen3Layer), false, 0.0f, false, false},
    {"gemma2", "gemma2", HQ_LAYERS(kGemma2Layer), false, 1.0f, true, true},
    {"gemma3_text", "gemma3", HQ_LAYERS(kGemma3Layer), false, 1.0f, false, true},
    // llama.cpp reads phi3's sliding_window but disables it ("Phi SWA is currently disabled", src/models/phi3.cpp).
    {"phi3", "phi3", HQ_LAYERS(kPhi3Layer), false, 0.0f, false, false},
};
#undef HQ_LAYERS

const GgufArch& gguf_arch(const ModelConfig& cfg, const std::string& config_path) {
    for (const GgufArch& a : kGgufArchs)
        if (cfg.model_type == a.model_type) return a;
    std::string known;
    for (const GgufArch& a : kGgufArchs) known += std::string(known.empty() ? "" : ", ") + a.model_type;
    throw Error("E_CONFIG", HQ_MSG("GGUF export does not support model_type '" << cfg.model_type << "' (" << config_path << ")"),
                Where{config_path, "", "model_type", -1, -1}, "supported: " + known + "; export the Hugging Face model instead");
}

// "model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight" (".bias" alike: Qwen2's q/k/v biases); "" for
// tensors that are not written, "?" for tensors the architecture has no name for.
std::string gguf_name(const GgufArch& a, const std::string& hf, bool* is_norm) {
    *is_norm = false;
    std::string sfx;
    for (const char* s : {".weight", ".bias"}) {
        const size_t n = std::strlen(s);
        if (hf.size() > n && hf.compare(hf.size() - n, n, s) == 0) sfx = s;
    }
    if (sfx.empty()) return "?";
    const bool weight = sfx == ".weight";
    const std::string stem = hf.substr(0, hf.size() - sfx.size());
    const std::string lp = "model.layers.";
    if (stem.compare(0, lp.size(), lp) == 0) {
        const size_t dot = stem.find('.', lp.size());
        if (dot == std::string::npos) return "?";
        const std::string idx = stem.substr(lp.size(), dot - lp.size()), rest = stem.substr(dot + 1);
        for (size_t i = 0; i < a.n_layer; i++)
            if (rest == a.layer[i].hf) {
                *is_norm = weight && rest.find("norm") != std::string::npos;
                if (!weight && rest.find("norm") != std::string::npos) return "?";
                return "blk." + idx + "." + a.layer[i].gguf + sfx;
            }
        return "?";
    }
    if (!weight) return "?";
    for (const TensorName& g : kLlamaGlobal)
        if (stem == g.hf) {
            if (stem == "lm_head" && a.drop_lm_head) return "";
            *is_norm = stem.find("norm") != std::string::npos;
            return std::string(g.gguf) + sfx;
        }
    return "?";
}

// llama.cpp's gemma2/gemma3 graphs scale q by 1/sqrt(head_dim) (1/sqrt(n_embd/n_head) for the 27B shapes, 46 / 62
// layers) and read no key for query_pre_attn_scalar; the model's scale is query_pre_attn_scalar^-1/2. RoPE and the
// attention soft-cap come after a linear q, so the ratio sqrt(llama's / ours) is folded into q: into attn_q's rows
// (Gemma-2) or into attn_q_norm's scale (Gemma-3, whose q is RMS-normalised first). 1 for the published checkpoints.
float gemma_q_fold(const GgufArch& a, const ModelConfig& c) {
    const std::string arch = a.arch;
    if ((arch != "gemma2" && arch != "gemma3") || !(c.query_pre_attn_scalar > 0)) return 1.0f;
    const bool big = c.num_layers == (arch == "gemma2" ? 46 : 62);
    const double llama_s = big ? double(c.hidden_size / c.num_heads) : double(c.head_dim);
    return float(std::sqrt(llama_s / double(c.query_pre_attn_scalar)));
}

// The period p of llama.cpp's sliding-window pattern (layer l slides iff l % p < p - 1; set_swa_pattern) that gives
// the config's layer types; 0 when none does. p = 1: no layer slides.
int swa_period(const ModelConfig& c) {
    for (int p = 1; p <= std::max(1, c.num_layers); p++) {
        bool ok = true;
        for (int l = 0; l < c.num_layers && ok; l++) ok = (c.layer_sliding[size_t(l)] != 0) == (l % p < p - 1);
        if (ok) return p;
    }
    return 0;
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
    if (!name.empty()) w.add_string("general.name", name);
    w.add_u32("general.quantization_version", 2);
    w.add_u32("general.file_type", llama_file_type(t));
}

// The {arch}.* keys. Common ones as conversion/base.py writes them, then each family's own (conversion/gemma.py,
// phi.py). `warnings` gets what llama.cpp will run differently from the model (sliding windows it lacks).
void add_hparams(GgufWriter& w, const GgufArch& a, const ModelConfig& c, const std::string& cfg_path,
                 std::vector<std::string>* warnings) {
    const std::string p = std::string(a.arch) + ".", arch = a.arch;
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
    // Linear RoPE scaling (Gemma-3's global layers; any family's "linear"): llama.cpp's freq_scale = 1 / factor.
    if (c.rope_scaling.type == "linear") {
        w.add_string(p + "rope.scaling.type", "linear");
        w.add_f32(p + "rope.scaling.factor", c.rope_scaling.factor);
    }
    auto refuse = [&](const std::string& key, const std::string& msg, const std::string& hint) {
        throw Error("E_CONFIG", msg, Where{cfg_path, "", key, -1, -1}, hint);
    };
    if (arch == "gemma2") {
        // llama.cpp's gemma2 always caps both (a 0 cap would divide by zero).
        if (!(c.attn_softcap > 0) || !(c.final_softcap > 0))
            refuse(c.attn_softcap > 0 ? "final_logit_softcapping" : "attn_logit_softcapping",
                   "llama.cpp's gemma2 architecture always applies attention and final logit soft-capping; this "
                   "config turns one off",
                   "export the Hugging Face model instead (published Gemma-2 checkpoints cap both)");
        w.add_f32(p + "attn_logit_softcapping", c.attn_softcap);
        w.add_f32(p + "final_logit_softcapping", c.final_softcap);
    }
    if (arch == "gemma3" && c.final_softcap > 0) w.add_f32(p + "final_logit_softcapping", c.final_softcap);
    if (arch == "gemma3") w.add_f32(p + "rope.freq_base_swa", c.rope_local_theta > 0 ? c.rope_local_theta : c.rope_theta);
    if (a.swa && (c.any_sliding() || arch == "gemma2")) {
        // Which layers slide: llama.cpp's period p (layer l slides iff l % p < p - 1), defaults 2 (gemma2) and
        // 6 (gemma3) when absent; written always so that configs with another pattern run as trained.
        const int period = swa_period(c);
        if (period == 0)
            refuse("layer_types", "the sliding/full layer pattern of this config is not periodic as llama.cpp needs "
                                  "(layer l slides iff l % p < p - 1)",
                   "export the Hugging Face model instead");
        w.add_u32(p + "attention.sliding_window", uint32_t(c.any_sliding() ? c.sliding_window : 4096));
        w.add_u32(p + "attention.sliding_window_pattern", uint32_t(period));
    }
    if (arch == "phi3") {
        w.add_u32(p + "attention.sliding_window", uint32_t(c.any_sliding() ? c.sliding_window : 0));
        if (c.rope_scaling.type == "longrope") {
            w.add_u32(p + "rope.scaling.original_context_length", uint32_t(c.rope_scaling.original_max_position_embeddings));
            w.add_f32(p + "rope.scaling.attn_factor", c.rope_scaling.attention_factor);
        }
    }
    if (!a.swa && c.any_sliding() && c.sliding_window < c.max_position_embeddings)
        warnings->push_back(HQ_MSG("llama.cpp's " << arch << " architecture has no sliding-window attention (its converter "
                                   "writes none): beyond " << c.sliding_window << " tokens (" << cfg_path
                                   << " sliding_window) llama.cpp attends to keys the model never saw; within "
                                   << c.sliding_window << " tokens the two are the same"));
}

// general.name. llama.cpp's vocabulary loader sets token attributes by model name: a name containing "phi3" or
// "phi-3" makes it look up </s>, <unk>, <s> and <|endoftext|> (llama-vocab.cpp) and fail to load ("_Map_base::at")
// when one is missing. Such a name, over such a vocabulary, gets "phi3" spelled "phi_3".
std::string model_name(const GgufArch& a, const GgufVocabInfo& vi, std::string name) {
    if (std::string(a.arch) != "phi3") return name;
    bool all = true;
    for (const char* t : {"</s>", "<unk>", "<s>", "<|endoftext|>"}) all = all && vi.texts.count(t);
    if (all) return name;
    std::string low = name;
    for (char& ch : low) ch = char(std::tolower((unsigned char)ch));
    for (const std::string pat : {"phi3", "phi-3"})
        for (size_t at = low.find(pat); at != std::string::npos; at = low.find(pat, at + 1)) {
            name.replace(at, pat.size(), name.substr(at, 3) + "_3");
            low.replace(at, pat.size(), "phi_3");
        }
    return name;
}

struct Plan {
    std::string hf, gguf;
    std::vector<int64_t> shape;
    bool norm = false;
    // The source's modules merged into this tensor, each with its first row: one at row 0, or (Phi-3) q/k/v in
    // attn_qkv and gate/up in ffn_up (proj_rows).
    std::vector<std::pair<const SourceModule*, int64_t>> mods;
    int permute_heads = 0;   // > 0: permute rows (q: num_heads, k: num_kv_heads)
    float scale = 1.0f;      // every value times this (gemma_q_fold on attn_q / attn_q_norm)
};

// The output plan, in llama.cpp's usual order: token_embd, blocks, output_norm, output; each of the source's
// modules matched to its base weight (and rows) by name and shape.
std::vector<Plan> plan_tensors(const AdapterSource& src, const ModelWeights& mw, const GgufArch& arch,
                               const ModelConfig& cfg, const std::string& base) {
    std::map<std::string, std::vector<std::pair<const SourceModule*, int64_t>>> adapted;
    for (const SourceModule& m : src.modules) {
        const ProjRows pr = proj_rows(cfg, m.name);
        const TensorInfo* t = mw.find(pr.tensor);
        HQ_CHECK(t != nullptr, "E_SHAPE", "adapter module " << m.name << " has no weight " << pr.tensor << " in " << base,
                 (Where{src.file, pr.tensor, "", -1, -1}), "the adapter belongs to another base model");
        const bool fits = t->shape.size() == 2 && t->shape[1] == m.in && pr.rows == m.out && pr.row0 + pr.rows <= t->shape[0] &&
                          (cfg.fused_proj || t->shape[0] == m.out);
        HQ_CHECK(fits, "E_SHAPE",
                 "adapter module " << m.name << " is [" << m.out << ", " << m.in << "] but " << pr.tensor << " in " << base
                                   << " differs" << (cfg.fused_proj ? HQ_MSG(" (its rows " << pr.row0 << ".." << pr.row0 + pr.rows << ")") : ""),
                 (Where{src.file, pr.tensor, "", -1, -1}), "the adapter belongs to another base model");
        adapted[pr.tensor].push_back({&m, pr.row0});
    }
    const float fold = gemma_q_fold(arch, cfg);
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
        if (it != adapted.end()) p.mods = it->second;
        const bool w = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
        if (arch.permute_qk && name.find("self_attn.q_proj.") != std::string::npos) p.permute_heads = cfg.num_heads;
        if (arch.permute_qk && name.find("self_attn.k_proj.") != std::string::npos) p.permute_heads = cfg.num_kv_heads;
        if (fold != 1.0f && std::string(arch.arch) == "gemma2" && w && name.find("self_attn.q_proj.") != std::string::npos) p.scale = fold;
        if (fold != 1.0f && std::string(arch.arch) == "gemma3" && name.find("self_attn.q_norm.") != std::string::npos) p.scale = fold;
        plan.push_back(p);
    }
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

// The LoRA pair of one tensor: A [R_t, in], B [out, R_t] with R_t = R · (modules in it). A fused tensor (Phi-3)
// stacks its modules' A rows and places each B in its own rows and columns (block-diagonal: exact). llama.cpp scales
// each tensor by alpha / R_t with the file's one alpha = R, so a tensor of k modules has its A times k.
int lora_pair(const AdapterSource& src, const Plan& p, int levels, int R, std::vector<float>* A, std::vector<float>* B,
              std::vector<float>& a, std::vector<float>& b) {
    const int k = int(p.mods.size());
    const int64_t in = p.shape[1], out = p.shape[0], Rt = int64_t(R) * k;
    A->assign(size_t(Rt * in), 0.0f);
    B->assign(size_t(out * Rt), 0.0f);
    for (int i = 0; i < k; i++) {
        const SourceModule& m = *p.mods[size_t(i)].first;
        const int64_t row0 = p.mods[size_t(i)].second;
        read_flat_levels(src, m, levels, &a, &b);
        for (int64_t e = 0; e < int64_t(R) * in; e++) (*A)[size_t(int64_t(i) * R * in + e)] = float(k) * a[size_t(e)];
        for (int64_t o = 0; o < m.out; o++)
            for (int r = 0; r < R; r++) (*B)[size_t((row0 + o) * Rt + int64_t(i) * R + r)] = p.scale * b[size_t(o * R + r)];
    }
    return int(Rt);
}

// export_gguf in its phases: plan (check the options and inputs, name the files, lay out the tensors; nothing
// written), write (the model GGUFs, merged and/or base, then the LoRA GGUF and the Modelfile; progress phase "write",
// each file's metadata then its tensors), report (what was written; llama.cpp's verification runs after, in the
// extension).
struct GgufExportPlan {
    GgmlType type = GgmlType::F32;   // --type of the model GGUFs
    GgmlType lora_type = GgmlType::F32;   // f32 for --type f32, else f16
    AdapterSource src;
    std::string base;       // base model folder
    std::string cfg_path;   // its config.json
    ModelConfig cfg;
    const GgufArch* arch = nullptr;
    QuantSpec q;
    bool deq = false;       // merge into the NF4-dequantized weights (--base dequantized with an NF4 run)
    ModelWeights mw;
    std::vector<Plan> tensors;   // in llama.cpp's usual order: token_embd, blocks, output_norm, output
    bool rope_freqs = false;     // Llama-3 RoPE scaling: rope_freqs.weight
    // Phi-3 LongRoPE: the per-frequency divisors as llama.cpp's rope_factors_long / _short tensors [d/2] (phi.py
    // generate_extra_tensors); llama.cpp picks long when the context is longer than original_context_length.
    bool rope_long_short = false;
    std::string f_merged, f_base, f_lora;   // file names
};

// Phase "plan". The returned plan's tensors point into its own src.modules (a vector: moving keeps the elements in
// place).
GgufExportPlan plan_gguf_export(const GgufExportOptions& o) {
    HQ_CHECK(o.base == "original" || o.base == "dequantized", "E_CONFIG", "base '" << o.base << "' is not original or dequantized",
             (Where{"", "", "base", -1, -1}), "--base original | dequantized");
    GgufExportPlan p;
    HQ_CHECK(ggml_type_from_name(o.type, &p.type), "E_CONFIG", "GGUF type '" << o.type << "' is not f32, f16, bf16 or q8_0",
             (Where{"", "", "type", -1, -1}), "--type f32|f16|bf16|q8_0");
    HQ_CHECK(o.write_merged || o.write_base || o.write_lora, "E_CONFIG", "nothing to write (no merged, base or LoRA GGUF)",
             (Where{"", "", "parts", -1, -1}), "ask for at least one of the merged model, the base or the LoRA adapter");
    p.src = open_adapter_source(o.source);
    p.base = !o.base_model.empty() ? o.base_model : p.src.base_model;
    HQ_CHECK(!p.base.empty(), "E_CONFIG", "the base model of " << o.source << " is unknown", (Where{p.src.file, "", "base_model", -1, -1}),
             "pass the base model folder (--base-model DIR)");
    p.cfg_path = path_join(p.base, "config.json");
    p.cfg = load_model_config(p.base);
    p.arch = &gguf_arch(p.cfg, p.cfg_path);
    HQ_CHECK(p.src.architecture.empty() || p.src.architecture == p.cfg.model_type, "E_CONFIG",
             "the adapter was trained on a " << p.src.architecture << " model, " << p.base << " is " << p.cfg.model_type,
             (Where{p.cfg_path, "", "model_type", -1, -1}), "pass the base model the adapter was trained on");
    HQ_CHECK(o.levels >= 0 && o.levels <= int(p.src.levels.size()), "E_CONFIG",
             "levels " << o.levels << " is outside 0.." << p.src.levels.size() << " (" << p.src.file << ")",
             (Where{p.src.file, "", "levels", -1, -1}), "0 = all levels, n = the first n levels");
    p.q = o.quant_set ? o.quant : p.src.has_quant ? p.src.quant : QuantSpec{};
    p.deq = o.base == "dequantized" && p.q.type == "nf4";
    p.mw = ModelWeights::open_dir(p.base);
    p.tensors = plan_tensors(p.src, p.mw, *p.arch, p.cfg, p.base);
    p.rope_freqs = p.cfg.rope_scaling.type == "llama3";
    p.rope_long_short = p.cfg.rope_scaling.type == "longrope";
    p.lora_type = p.type == GgmlType::F32 ? GgmlType::F32 : GgmlType::F16;
    const std::string sfx = o.levels > 0 && o.levels < int(p.src.levels.size()) ? "-L" + std::to_string(o.levels) : "";
    p.f_merged = "model" + sfx + "-" + o.type + ".gguf";
    p.f_base = "base-" + o.type + ".gguf";
    p.f_lora = "adapter" + sfx + "-" + ggml_type_name(p.lora_type) + ".gguf";
    return p;
}

// A model GGUF's type for one tensor: f32 for norms and 1-D tensors, f16 for q8_0 rows not a multiple of its
// 32-element blocks, else --type.
GgmlType model_tensor_type(const Plan& t, GgmlType type) {
    if (t.norm || t.shape.size() < 2) return GgmlType::F32;
    if (type == GgmlType::Q8_0 && t.shape.back() % 32 != 0) return GgmlType::F16;
    return type;
}

// A model GGUF's metadata: general.*, the {arch}.* keys, the vocabulary and every tensor's info (the RoPE factor
// tensors first). `warnings` gets add_hparams' warnings.
GgufVocabInfo add_model_metadata(GgufWriter& w, const GgufExportOptions& o, const GgufExportPlan& p, bool merged,
                                 std::vector<std::string>* warnings) {
    const GgufArch& arch = *p.arch;
    const std::string name = base_name(p.base);
    add_general(w, arch, "model", "", p.type);
    warnings->clear();
    add_hparams(w, arch, p.cfg, p.cfg_path, warnings);
    const GgufVocabInfo vi = add_gguf_vocab(w, p.base, p.cfg.vocab_size);
    w.add_string("general.name", model_name(arch, vi, merged ? name + " + H-QLoRA " + base_name(o.source) : name));
    if (p.rope_freqs) w.add_tensor("rope_freqs.weight", {p.cfg.head_dim / 2}, GgmlType::F32);
    if (p.rope_long_short) {
        w.add_tensor("rope_factors_long.weight", {p.cfg.head_dim / 2}, GgmlType::F32);
        w.add_tensor("rope_factors_short.weight", {p.cfg.head_dim / 2}, GgmlType::F32);
    }
    for (const Plan& t : p.tensors) w.add_tensor(t.gguf, t.shape, model_tensor_type(t, p.type));
    return vi;
}

// One model tensor as the GGUF stores it, in fp32 in `W`: the base weight, each adapted projection's rows
// dequantized (plan.deq) and, when `merged`, W_rows += B·A; then the family's norm offset, scale and RoPE row order.
void model_tensor_f32(const GgufExportOptions& o, const GgufExportPlan& p, const Plan& t, bool merged,
                      std::vector<float>& W, std::vector<float>& A, std::vector<float>& B) {
    const TensorInfo* ti = p.mw.find(t.hf);
    W.resize(size_t(ti->numel()));
    p.mw.read_f32_into(t.hf, W.data(), W.size());
    for (const auto& [m, row0] : t.mods) {
        // Each projection's rows on their own (a Phi-3 fused tensor holds several), as the trainer
        // quantizes them: dequantized, then W_rows += B·A.
        float* Wm = W.data() + size_t(row0) * size_t(m->in);
        if (p.deq) {
            const NF4Tensor nq = nf4_quantize(Wm, m->out, m->in, p.q.blocksize, p.q.double_quant);
            nf4_dequantize(nq, Wm);
        }
        if (merged) {
            const int R = read_flat_levels(p.src, *m, o.levels, &A, &B);
            BlasThreadScope blas;
            par_sgemm(false, false, m->out, m->in, R, 1.0f, B.data(), R, A.data(), m->in, 1.0f, Wm, m->in);
        }
    }
    if (t.norm && p.arch->norm_add != 0.0f)
        for (float& v : W) v += p.arch->norm_add;
    if (t.scale != 1.0f)
        for (float& v : W) v *= t.scale;
    if (t.permute_heads > 0) permute_rows(W, t.permute_heads, t.shape[0], t.shape[1]);
}

// Phase "write", one model GGUF (merged or base) under `tmp`: one pass over the base tensors. Adds its entry to
// `files`; returns its vocabulary's info.
GgufVocabInfo write_model_gguf(const GgufExportOptions& o, const GgufExportPlan& p, const std::string& tmp,
                               const std::string& file, bool merged, std::vector<std::string>* warnings, json* files) {
    GgufWriter w(path_join(tmp, file));
    const GgufVocabInfo vi = add_model_metadata(w, o, p, merged, warnings);
    w.begin_data();
    if (p.rope_freqs) {
        const std::vector<float> f = llama3_rope_factors(p.cfg);
        w.write_tensor_f32("rope_freqs.weight", f.data(), int64_t(f.size()));
    }
    if (p.rope_long_short) {
        const RopeScaling& rs = p.cfg.rope_scaling;
        w.write_tensor_f32("rope_factors_long.weight", rs.long_factor.data(), int64_t(rs.long_factor.size()));
        w.write_tensor_f32("rope_factors_short.weight", rs.short_factor.data(), int64_t(rs.short_factor.size()));
    }
    std::vector<float> W, A, B;
    int64_t done = 0;
    for (const Plan& t : p.tensors) {
        export_check_cancel(o, t.hf);
        model_tensor_f32(o, p, t, merged, W, A, B);
        w.write_tensor_f32(t.gguf, W.data(), int64_t(W.size()));
        export_report(o, "write", ++done, int64_t(p.tensors.size()), file + ": " + t.gguf);
    }
    w.finish();
    (*files)[merged ? "merged" : "base"] = {{"file", file}, {"bytes", file_size(w.path())}, {"type", o.type}};
    return vi;
}

// The LoRA GGUF's rank per module: the source's total rank, or the first o.levels levels' (0 without modules).
int lora_rank(const GgufExportOptions& o, const AdapterSource& src) {
    if (src.modules.empty()) return 0;
    int R = o.levels > 0 && o.levels < int(src.levels.size()) ? 0 : src.total_rank();
    if (R == 0)
        for (int j = 0; j < o.levels; j++) R += src.levels[size_t(j)].rank;
    return R;
}

// Phase "write", the LoRA GGUF under `tmp`: metadata, then each adapted tensor's lora_a / lora_b. Adds its entry
// to `files`.
void write_lora_gguf(const GgufExportOptions& o, const GgufExportPlan& p, const std::string& tmp, json* files) {
    GgufWriter w(path_join(tmp, p.f_lora));
    add_general(w, *p.arch, "adapter", base_name(o.source), p.lora_type);
    const int R_lora = lora_rank(o, p.src);
    w.add_string("adapter.type", "lora");
    w.add_f32("adapter.lora.alpha", float(R_lora));
    for (const Plan& t : p.tensors)
        if (!t.mods.empty()) {
            const int64_t Rt = int64_t(R_lora) * int64_t(t.mods.size());
            w.add_tensor(t.gguf + ".lora_a", {Rt, t.shape[1]}, p.lora_type);
            w.add_tensor(t.gguf + ".lora_b", {t.shape[0], Rt}, p.lora_type);
        }
    w.begin_data();
    int64_t done = 0, n = 0;
    for (const Plan& t : p.tensors) n += t.mods.empty() ? 0 : 1;
    std::vector<float> A, B, a, b;
    for (const Plan& t : p.tensors) {
        if (t.mods.empty()) continue;
        export_check_cancel(o, t.hf);
        const int Rt = lora_pair(p.src, t, o.levels, R_lora, &A, &B, a, b);
        // llama.cpp's RoPE layout applies to B's output rows only (convert_lora_to_gguf's LoraTorchTensor).
        if (t.permute_heads > 0) permute_rows(B, t.permute_heads, t.shape[0], Rt);
        w.write_tensor_f32(t.gguf + ".lora_a", A.data(), int64_t(A.size()));
        w.write_tensor_f32(t.gguf + ".lora_b", B.data(), int64_t(B.size()));
        export_report(o, "write", ++done, n, p.f_lora + ": " + t.gguf);
    }
    w.finish();
    (*files)["lora"] = {{"file", p.f_lora}, {"bytes", file_size(w.path())}, {"type", ggml_type_name(p.lora_type)},
                        {"rank", R_lora}, {"alpha", R_lora}};
}

// Phase "report": the files written, the source's levels, the tokenizer (`vi`, when a model GGUF was written) and
// the warnings; verification is left "pending" for the llama.cpp checks.
json gguf_export_report(const GgufExportOptions& o, const GgufExportPlan& p, const json& files,
                        const std::vector<std::string>& warnings, const GgufVocabInfo& vi,
                        std::chrono::steady_clock::time_point t0) {
    json levels = json::array();
    for (size_t j = 0; j < p.src.levels.size(); j++)
        levels.push_back({{"rank", p.src.levels[j].rank}, {"alpha", p.src.levels[j].alpha}, {"scale", p.src.scales[j]}});
    json rep = {{"operation", "export_gguf"}, {"format", "gguf"}, {"source", o.source}, {"base_model", p.base},
                {"base", o.base}, {"type", o.type}, {"architecture", p.arch->arch}, {"quantization", {{"type", p.q.type},
                {"double_quant", p.q.double_quant}, {"blocksize", p.q.blocksize}}}, {"levels", levels},
                {"levels_used", o.levels == 0 ? int(p.src.levels.size()) : o.levels}, {"files", files},
                {"trainer_version", HQ_VERSION}};
    if (!warnings.empty()) rep["warnings"] = warnings;
    if (o.write_merged || o.write_base)
        rep["tokenizer"] = {{"kind", vi.kind}, {"ggml_model", vi.ggml_model}, {"pre", vi.pre}, {"bos", vi.bos},
                            {"eos", vi.eos}, {"unk", vi.unk}, {"pad", vi.pad}, {"add_bos", vi.add_bos},
                            {"add_eos", vi.add_eos}, {"add_space_prefix", vi.add_space_prefix},
                            {"chat_template", vi.has_chat_template}, {"byte_complete", vi.byte_complete}};
    rep["verification"] = {{"status", "pending"}, {"reason", "the llama.cpp checks run after the files are written"}};
    rep["elapsed_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return rep;
}

}  // namespace

json export_gguf(const GgufExportOptions& o) {
    const auto t0 = std::chrono::steady_clock::now();
    GgufExportPlan p = plan_gguf_export(o);
    return build_export_dir(o, {o.source, p.base}, [&](const std::string& tmp) {
        json files = json::object();
        std::vector<std::string> warnings;   // the last model GGUF's
        GgufVocabInfo vi;
        if (o.write_merged) vi = write_model_gguf(o, p, tmp, p.f_merged, true, &warnings, &files);
        if (o.write_base) vi = write_model_gguf(o, p, tmp, p.f_base, false, &warnings, &files);
        if (o.write_lora) write_lora_gguf(o, p, tmp, &files);
        if (o.write_base && o.write_lora)
            write_file_atomic(path_join(tmp, "Modelfile"),
                              "# Ollama: ollama create <name> -f Modelfile (written by H-QLoRA " HQ_VERSION ")\n"
                              "FROM ./" + p.f_base + "\nADAPTER ./" + p.f_lora + "\n");
        p.src.release_pages();
        return gguf_export_report(o, p, files, warnings, vi, t0);
    });
}

namespace {

// The GGUF's contents under our fp32 forward: the base (its NF4 targets dequantized for "dequantized"), the adapter
// merged (W + B·A, every level), then every 2-D weight rounded to `round` (f16 | bf16) as write_model stores it;
// norms, biases and the adapter-free remainder stay f32, as in the file. What this differs from the unrounded forward
// is the part of a f16 / bf16 export's difference that the rounding of its weights explains (extension/gguf/verify.ts).
std::vector<float> rounded_logits(const AdapterSource& src, const std::string& base, const QuantSpec& q, bool with_adapter,
                                  const std::string& round, const std::vector<int32_t>& ids) {
    HQ_CHECK(round == "f16" || round == "bf16", "E_CONFIG", "rounding '" << round << "' is not f16 or bf16",
             (Where{"", "", "round", -1, -1}), "round: f16 | bf16");
    QuantSpec none;
    none.type = "none";
    auto model = Model::load(base, none, source_adapter_spec(src), 0);
    for (AdaptedModule& m : model->modules()) std::fill(m.B->w, m.B->w + m.B->numel, 0.0f);
    const HostWeights hw = host_weights(*model);
    // The model is this function's own: its frozen weights are rewritten in place before its only forward.
    auto rounded = [&](const std::vector<float>& cv) {
        std::vector<float>& v = const_cast<std::vector<float>&>(cv);
        for (float& x : v) x = round == "f16" ? f16_to_f32(f32_to_f16(x)) : bf16_to_f32(f32_to_bf16(x));
    };
    const bool deq = q.type == "nf4";
    std::vector<float> A, B;
    for (const DecoderLayer& layer : *hw.layers)
        for (const HLoraLinear& p : layer.proj) {
            std::vector<float>& w = const_cast<std::vector<float>&>(p.w);
            HQ_ASSERT(!p.quantized && w.size() == size_t(p.out) * size_t(p.in));
            const SourceModule* m = src.find(p.name);
            if (m && deq) {
                const NF4Tensor nq = nf4_quantize(w.data(), p.out, p.in, q.blocksize, q.double_quant);
                nf4_dequantize(nq, w.data());
            }
            if (m && with_adapter) {
                src.read_flat(*m, &A, &B);
                const int R = src.total_rank();
                BlasThreadScope blas;
                par_sgemm(false, false, p.out, p.in, R, 1.0f, B.data(), R, A.data(), p.in, 1.0f, w.data(), p.in);
            }
            rounded(p.w);
        }
    rounded(*hw.embed);
    rounded(*hw.lm_head);
    std::vector<float> lg(ids.size() * size_t(model->config().vocab_size));
    model->forward_logits(ids.data(), kVerifyBatch, kVerifySeq, lg.data());
    return lg;
}

}  // namespace

json gguf_reference_logits(const std::string& source, const std::string& base_model, const std::string& base_kind,
                           bool with_adapter, const std::string& round) {
    AdapterSource src = open_adapter_source(source);
    const std::string base = !base_model.empty() ? base_model : src.base_model;
    HQ_CHECK(!base.empty(), "E_CONFIG", "the base model of " << source << " is unknown", (Where{src.file, "", "base_model", -1, -1}),
             "pass the base model folder");
    const ModelConfig cfg = load_model_config(base);
    QuantSpec q = src.has_quant ? src.quant : QuantSpec{};
    if (base_kind == "original") q.type = "none";
    const std::vector<int32_t> ids = verify_ids(cfg.vocab_size, cfg.bos_token_id);
    std::vector<float> lg;
    if (!round.empty()) {
        lg = rounded_logits(src, base, q, with_adapter, round, ids);
    } else if (with_adapter) {
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
