// gguf_vocab.cpp — tokenizer.json -> llama.cpp tokenizer metadata (see gguf_vocab.h for the mapping).
#include "gguf_vocab.h"

#include <functional>
#include <map>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "error.h"
#include "fsutil.h"

namespace hq {

using nlohmann::json;

namespace {

// gguf-py TokenType
enum TokType : int32_t { NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6 };

// Pre-tokenizer regex (tokenizer.json Split pattern) -> llama.cpp tokenizer.ggml.pre. One entry per family.
struct PreEntry {
    const char* regex;
    const char* pre;
};
const PreEntry kPreTable[] = {
    // LLaMA-3 / 3.1 / 3.2
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     "llama-bpe"},
    // Qwen2 / Qwen2.5 / Qwen3
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     "qwen2"},
};

json read_json(const std::string& path, bool required) {
    if (!path_exists(path)) {
        HQ_CHECK(!required, "E_CONFIG", path << " not found: the GGUF needs the model's tokenizer",
                 (Where{path, "", "", -1, -1}), "copy the base model's tokenizer.json next to its config.json");
        return json();
    }
    try {
        return json::parse(read_file(path));
    } catch (const json::exception& e) {
        throw Error("E_CONFIG", HQ_MSG(path << " is not valid JSON: " << e.what()), Where{path, "", "", -1, -1},
                    "restore the file from the original model");
    }
}

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the other 68 to U+0100.. in byte order.
std::vector<std::string> byte_to_unicode() {
    std::vector<std::string> m(256);
    int n = 0;
    auto utf8 = [](uint32_t cp) {
        std::string s;
        if (cp < 0x80) s.push_back(char(cp));
        else if (cp < 0x800) s.push_back(char(0xC0 | (cp >> 6))), s.push_back(char(0x80 | (cp & 0x3F)));
        else s.push_back(char(0xE0 | (cp >> 12))), s.push_back(char(0x80 | ((cp >> 6) & 0x3F))), s.push_back(char(0x80 | (cp & 0x3F)));
        return s;
    };
    for (int b = 0; b < 256; b++) {
        const bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        m[size_t(b)] = utf8(keep ? uint32_t(b) : uint32_t(256 + n++));
    }
    return m;
}

std::string map_bytes(const std::string& s, const std::vector<std::string>& tab) {
    std::string o;
    for (unsigned char c : s) o += tab[c];
    return o;
}

bool has_type(const json& node, const char* type) {
    if (!node.is_object()) return false;
    if (node.value("type", std::string()) == type) return true;
    for (const char* k : {"pretokenizers", "decoders", "normalizers"})
        if (node.contains(k) && node[k].is_array())
            for (const json& c : node[k])
                if (has_type(c, type)) return true;
    return false;
}

// The Split regex of a (Sequence) pre-tokenizer, "" when there is none.
std::string split_regex(const json& node) {
    if (!node.is_object()) return "";
    if (node.value("type", std::string()) == "Split" && node.contains("pattern") && node["pattern"].contains("Regex"))
        return node["pattern"]["Regex"].get<std::string>();
    if (node.contains("pretokenizers") && node["pretokenizers"].is_array())
        for (const json& c : node["pretokenizers"]) {
            std::string r = split_regex(c);
            if (!r.empty()) return r;
        }
    return "";
}

// SentencePiece-style space prefix: a Prepend("▁") normalizer, or a Metaspace pre-tokenizer that prepends.
bool space_prefix(const json& tj) {
    const std::string sp = "\xE2\x96\x81";
    std::function<bool(const json&)> norm = [&](const json& n) -> bool {
        if (!n.is_object()) return false;
        if (n.value("type", std::string()) == "Prepend" && n.value("prepend", std::string()) == sp) return true;
        if (n.contains("normalizers") && n["normalizers"].is_array())
            for (const json& c : n["normalizers"])
                if (norm(c)) return true;
        return false;
    };
    std::function<bool(const json&)> meta = [&](const json& n) -> bool {
        if (!n.is_object()) return false;
        if (n.value("type", std::string()) == "Metaspace")
            return n.value("prepend_scheme", std::string(n.value("add_prefix_space", true) ? "always" : "never")) != "never";
        if (n.contains("pretokenizers") && n["pretokenizers"].is_array())
            for (const json& c : n["pretokenizers"])
                if (meta(c)) return true;
        return false;
    };
    return norm(tj.value("normalizer", json())) || meta(tj.value("pre_tokenizer", json()));
}

// The special token that the post-processor's single-sequence template puts first/last, "" if none.
std::string template_edge(const json& tj, bool first) {
    const json pp = tj.value("post_processor", json());
    std::function<std::string(const json&)> find = [&](const json& p) -> std::string {
        if (!p.is_object()) return "";
        if (p.value("type", std::string()) == "TemplateProcessing" && p.contains("single") && p["single"].is_array() &&
            !p["single"].empty()) {
            const json& e = first ? p["single"].front() : p["single"].back();
            if (e.contains("SpecialToken")) return e["SpecialToken"].value("id", std::string());
            return "";
        }
        if (p.contains("processors") && p["processors"].is_array())
            for (const json& c : p["processors"]) {
                std::string s = find(c);
                if (!s.empty()) return s;
            }
        return "";
    };
    return find(pp);
}

// tokenizer_config.json token field: a string or {"content": ...}.
std::string token_field(const json& cfg, const char* key) {
    if (!cfg.is_object() || !cfg.contains(key)) return "";
    const json& v = cfg[key];
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
    return "";
}

// The merges of tokenizer.json's model: "a b" strings or [a, b] pairs.
std::vector<std::pair<std::string, std::string>> read_merges(const json& model, const std::string& tpath) {
    std::vector<std::pair<std::string, std::string>> merges;
    if (model.contains("merges") && model["merges"].is_array())
        for (const json& m : model["merges"]) {
            if (m.is_string()) {
                const std::string s = m.get<std::string>();
                const size_t sp = s.find(' ', 1);
                HQ_CHECK(sp != std::string::npos, "E_CONFIG", tpath << ": merge \"" << s << "\" has no space",
                         (Where{tpath, "", "model.merges", -1, -1}), "restore tokenizer.json from the original model");
                merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
            } else if (m.is_array() && m.size() == 2) {
                merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
            }
        }
    return merges;
}

// The chat template: chat_template.jinja, else tokenizer_config's string (or the "default" of a named list);
// "" when there is none.
std::string read_chat_template(const std::string& dir, const json& tcfg) {
    std::string tmpl;
    const std::string jinja = path_join(dir, "chat_template.jinja");
    if (path_exists(jinja)) tmpl = read_file(jinja);
    else if (tcfg.is_object() && tcfg.contains("chat_template")) {
        const json& c = tcfg["chat_template"];
        if (c.is_string()) tmpl = c.get<std::string>();
        else if (c.is_array())
            for (const json& e : c)
                if (e.is_object() && (tmpl.empty() || e.value("name", std::string()) == "default"))
                    tmpl = e.value("template", std::string());
    }
    return tmpl;
}

}  // namespace

GgufVocabInfo add_gguf_vocab(GgufWriter& w, const std::string& dir, int vocab_size) {
    const std::string tpath = path_join(dir, "tokenizer.json");
    const json tj = read_json(tpath, true);
    const json tcfg = read_json(path_join(dir, "tokenizer_config.json"), false);
    const json mcfg = read_json(path_join(dir, "config.json"), false);
    HQ_CHECK(tj.contains("model") && tj["model"].is_object() && tj["model"].value("type", std::string()) == "BPE" &&
                 tj["model"].contains("vocab") && tj["model"]["vocab"].is_object(),
             "E_CONFIG", tpath << ": only BPE tokenizers can be written to GGUF (model.type is "
                               << (tj.contains("model") ? tj["model"].value("type", std::string("?")) : "missing") << ")",
             (Where{tpath, "", "model.type", -1, -1}), "use a model with a BPE tokenizer.json (LLaMA, Gemma, Qwen ...)");
    const json& model = tj["model"];
    GgufVocabInfo info;
    const bool bytelevel = has_type(tj.value("pre_tokenizer", json()), "ByteLevel") || has_type(tj.value("decoder", json()), "ByteLevel");
    const bool fallback = model.value("byte_fallback", false);
    info.kind = bytelevel ? "bytelevel" : fallback ? "spm" : "chars";
    info.ggml_model = info.kind == "spm" ? "llama" : "gpt2";

    // id -> token text and type
    std::map<int, std::string> by_id;
    for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) by_id[it.value().get<int>()] = it.key();
    std::map<int, int32_t> added_type;
    if (tj.contains("added_tokens") && tj["added_tokens"].is_array())
        for (const json& a : tj["added_tokens"]) {
            const int id = a.value("id", -1);
            if (id < 0) continue;
            by_id[id] = a.value("content", std::string());
            added_type[id] = a.value("special", false) ? CONTROL : USER_DEFINED;
        }
    const int n_tok = by_id.empty() ? 0 : by_id.rbegin()->first + 1;
    HQ_CHECK(n_tok <= vocab_size, "E_CONFIG",
             tpath << " has " << n_tok << " tokens but the model's embedding has " << vocab_size << " rows",
             (Where{tpath, "", "model.vocab", -1, -1}), "use the tokenizer that belongs to this model");
    info.n_tokens = vocab_size;
    const std::string unk_str = model.value("unk_token", json()).is_string() ? model["unk_token"].get<std::string>() : "";

    const std::vector<std::pair<std::string, std::string>> merges = read_merges(model, tpath);

    const std::vector<std::string> b2u = byte_to_unicode();
    std::vector<std::string> tokens(static_cast<size_t>(vocab_size));
    std::vector<int32_t> types(size_t(vocab_size), NORMAL);
    std::vector<float> scores(size_t(vocab_size), 0.0f);
    std::unordered_map<std::string, int> rank_of;   // spm: merged piece -> first merge rank
    if (info.kind == "spm")
        for (size_t r = 0; r < merges.size(); r++) rank_of.emplace(merges[r].first + merges[r].second, int(r));
    for (int id = 0; id < vocab_size; id++) {
        auto it = by_id.find(id);
        if (it == by_id.end()) {
            tokens[size_t(id)] = "[PAD" + std::to_string(id) + "]";
            types[size_t(id)] = UNUSED;
            continue;
        }
        std::string t = it->second;
        info.texts.insert(t);
        int32_t ty = NORMAL;
        auto at = added_type.find(id);
        if (at != added_type.end()) ty = at->second;
        else if (!unk_str.empty() && t == unk_str) ty = UNKNOWN;
        else if (info.kind == "spm" && t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') ty = BYTE;
        if (!unk_str.empty() && t == unk_str) ty = UNKNOWN;
        if (info.kind == "chars" && (ty == NORMAL || ty == UNKNOWN)) t = map_bytes(t, b2u);
        if (info.kind == "spm" && ty == NORMAL && t.size() > 1) {
            auto r = rank_of.find(t);
            // A piece no merge makes can still be matched by llama.cpp: give it the lowest priority.
            scores[size_t(id)] = r != rank_of.end() ? -float(r->second) : -1e9f;
        }
        if (info.kind == "spm" && ty != NORMAL) scores[size_t(id)] = ty == USER_DEFINED || ty == CONTROL ? -1000.0f : 0.0f;
        tokens[size_t(id)] = t;
        types[size_t(id)] = ty;
    }

    w.add_string("tokenizer.ggml.model", info.ggml_model);
    if (info.ggml_model == "gpt2") {
        const std::string rx = split_regex(tj.value("pre_tokenizer", json()));
        info.pre = "default";
        for (const PreEntry& e : kPreTable)
            if (rx == e.regex) info.pre = e.pre;
        HQ_CHECK(info.kind != "bytelevel" || rx.empty() || info.pre != "default", "E_CONFIG",
                 tpath << ": the pre-tokenizer regex is not one llama.cpp knows (no tokenizer.ggml.pre for it)",
                 (Where{tpath, "", "pre_tokenizer", -1, -1}),
                 "this tokenizer family is not supported for GGUF export yet; export the Hugging Face model instead");
        w.add_string("tokenizer.ggml.pre", info.pre);
    } else {
        w.add_string("tokenizer.ggml.pre", "default");
    }
    w.add_strings("tokenizer.ggml.tokens", tokens);
    if (info.ggml_model == "llama") w.add_f32s("tokenizer.ggml.scores", scores);
    w.add_i32s("tokenizer.ggml.token_type", types);
    if (info.ggml_model == "gpt2") {
        std::vector<std::string> ms;
        ms.reserve(merges.size());
        for (const auto& m : merges)
            ms.push_back(info.kind == "chars" ? map_bytes(m.first, b2u) + " " + map_bytes(m.second, b2u)
                                              : m.first + " " + m.second);
        w.add_strings("tokenizer.ggml.merges", ms);
    }

    // special ids: the tokenizer_config's strings, else config.json's ids
    std::unordered_map<std::string, int> id_of;
    for (const auto& kv : by_id) id_of.emplace(kv.second, kv.first);
    auto special = [&](const char* tkey, const char* ckey) {
        const std::string s = token_field(tcfg, tkey);
        if (!s.empty() && id_of.count(s)) return id_of[s];
        if (mcfg.is_object() && mcfg.contains(ckey)) {
            const json& v = mcfg[ckey];
            if (v.is_number_integer()) return v.get<int>();
            if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int>();
        }
        return -1;
    };
    info.bos = special("bos_token", "bos_token_id");
    info.eos = special("eos_token", "eos_token_id");
    info.pad = special("pad_token", "pad_token_id");
    info.unk = !unk_str.empty() && id_of.count(unk_str) ? id_of[unk_str] : special("unk_token", "unk_token_id");
    if (info.bos >= 0) w.add_u32("tokenizer.ggml.bos_token_id", uint32_t(info.bos));
    if (info.eos >= 0) w.add_u32("tokenizer.ggml.eos_token_id", uint32_t(info.eos));
    if (info.unk >= 0) w.add_u32("tokenizer.ggml.unknown_token_id", uint32_t(info.unk));
    if (info.pad >= 0) w.add_u32("tokenizer.ggml.padding_token_id", uint32_t(info.pad));
    const std::string first = template_edge(tj, true), last = template_edge(tj, false);
    (void)first;
    // BOS exactly as H-QLoRA trains: the data preparation puts BOS first whenever the tokenizer has one
    // (extension/data/prepare.ts buildExample), so the model was tuned on prompts that start with it.
    info.add_bos = info.bos >= 0;
    info.add_eos = tcfg.is_object() && tcfg.contains("add_eos_token") && tcfg["add_eos_token"].is_boolean()
                       ? tcfg["add_eos_token"].get<bool>()
                       : !last.empty() && info.eos >= 0 && last == by_id[info.eos] && last != first;
    w.add_bool("tokenizer.ggml.add_bos_token", info.add_bos);
    w.add_bool("tokenizer.ggml.add_eos_token", info.add_eos);
    if (info.ggml_model == "llama") {
        info.add_space_prefix = space_prefix(tj);
        w.add_bool("tokenizer.ggml.add_space_prefix", info.add_space_prefix);
    }
    info.byte_complete = info.kind != "chars";

    const std::string tmpl = read_chat_template(dir, tcfg);
    if (!tmpl.empty()) w.add_string("tokenizer.chat_template", tmpl);
    info.has_chat_template = !tmpl.empty();
    return info;
}

}  // namespace hq
