// truncation.cpp — see truncation.h.
#include "truncation.h"

#include <algorithm>
#include <cstdio>

#include "error.h"

namespace hq {

TruncationStats truncation_stats(const TokenFile& f, int64_t max_len) {
    TruncationStats s;
    for (int64_t i = 0; i < f.n_examples; ++i) {
        const int64_t over = f.length(i) - max_len;
        if (over <= 0) continue;
        ++s.rows;
        s.tokens += over;
        s.max_row = std::max(s.max_row, over);
        s.targets += f.targets(i) - f.targets(i, max_len);
    }
    return s;
}

namespace {

// A factor as config.json would carry it: up to 4 decimals, no trailing zeros ("8", "1.5", "2.6667").
std::string factor_text(double f) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4f", f);
    std::string s = buf;
    while (!s.empty() && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
}

}  // namespace

std::string rope_extension_advice(const ModelConfig& mc, int64_t want) {
    const int64_t have = mc.max_position_embeddings;
    const double grow = static_cast<double>(want) / static_cast<double>(have);
    const RopeScaling& r = mc.rope_scaling;
    const std::string& at = mc.rope_key;
    if (r.type.empty()) {
        const std::string what =
            at == "rope_scaling"
                ? HQ_MSG("\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": " << factor_text(grow) << "}")
                : HQ_MSG(at << ".rope_type \"linear\" with " << at << ".factor " << factor_text(grow));
        return HQ_MSG("set max_position_embeddings to " << want << " and " << what << " in the model's config.json "
                      "(linear position interpolation; the fine-tune then learns the longer context)");
    }
    if (r.type == "linear" || r.type == "llama3")
        return HQ_MSG("set max_position_embeddings to " << want << " and " << at << ".factor from "
                      << factor_text(r.factor) << " to " << factor_text(r.factor * grow) << " in the model's "
                      "config.json (" << r.type << " rope scaling)");
    return "";   // longrope: its per-frequency factors were fitted to this checkpoint's context
}

std::string truncation_message(const TruncationStats& s, int64_t n_examples, int64_t max_len, int64_t config_len,
                               const ModelConfig& mc, const std::string& model_dir, const std::string& tokens_path) {
    std::string m = HQ_MSG(s.rows << " of " << n_examples << " training examples are longer than " << max_len
                           << " tokens and are truncated: " << s.tokens << " tokens are dropped (up to " << s.max_row
                           << " per example, " << s.targets << " of them loss targets). ");
    if (max_len < config_len) {
        m += HQ_MSG(max_len << " is the model's max_position_embeddings (" << model_dir << "/config.json), below "
                    "data.source_max_len + data.target_max_len = " << config_len << ". Lower source_max_len / "
                    "target_max_len to a sum of at most " << max_len);
        const std::string rope = rope_extension_advice(mc, config_len);
        if (!rope.empty()) m += ", or " + rope;
        else
            m += HQ_MSG("; this model's " << mc.rope_scaling.type << " rope scaling was fitted to " << max_len
                        << " positions and cannot be stretched (use a longer-context checkpoint)");
    } else {
        m += HQ_MSG(max_len << " is data.source_max_len + data.target_max_len, but " << tokens_path << " holds "
                    "longer rows: prepare the data again with these lengths, or raise them (the model takes up to "
                    << mc.max_position_embeddings << " positions)");
    }
    return m;
}

}  // namespace hq
