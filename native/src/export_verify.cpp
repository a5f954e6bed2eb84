// export_verify.cpp — forward checks for exports (see export_verify.h).
#include "export_verify.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "adapter_io.h"
#include "error.h"
#include "model_config.h"

namespace hq {

std::vector<int32_t> verify_ids(int vocab, int bos) {
    std::vector<int32_t> ids(size_t(kVerifyBatch) * kVerifySeq);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < ids.size(); i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ids[i] = int32_t(x % uint64_t(vocab));
    }
    if (bos >= 0 && bos < vocab)
        for (int b = 0; b < kVerifyBatch; b++) ids[size_t(b) * kVerifySeq] = bos;
    return ids;
}

std::vector<float> reference_logits(const std::string& base_dir, const QuantSpec& quant,
                                    const std::vector<WeightedSource>& sources, const std::vector<int32_t>& ids) {
    HQ_ASSERT(!sources.empty());
    const ModelConfig cfg = load_model_config(base_dir);
    std::vector<float> logits(ids.size() * size_t(cfg.vocab_size));
    if (sources.size() == 1 && sources[0].weight == 1.0 && sources[0].src->kind == "hierarchical") {
        // The trainer's own loader, independent of the exporter's reader.
        auto model = Model::load(base_dir, quant, source_adapter_spec(*sources[0].src), 0);
        load_hierarchical_adapter(*model, sources[0].src->file);
        model->forward_logits(ids.data(), kVerifyBatch, kVerifySeq, logits.data());
        return logits;
    }
    // Every (source, level) becomes one level of the reference model with scale |w_i|·s_j (alpha = scale·rank, no
    // rsLoRA) and B negated for w_i < 0; modules a source lacks keep B = 0.
    AdapterSpec spec;
    spec.levels.clear();
    spec.target_modules.clear();
    spec.dropout = 0.0f;
    std::set<std::string> targets;
    struct Blk { const AdapterSource* src; int level; float sign; };
    std::vector<Blk> blocks;
    for (const WeightedSource& ws : sources) {
        if (ws.weight == 0.0) continue;
        for (const std::string& t : ws.src->target_modules) targets.insert(t);
        for (int j = 0; j < (int)ws.src->levels.size(); j++) {
            const int r = ws.src->levels[size_t(j)].rank;
            spec.levels.push_back({r, float(std::fabs(ws.weight) * ws.src->scales[size_t(j)] * r)});
            blocks.push_back({ws.src, j, ws.weight < 0 ? -1.0f : 1.0f});
        }
    }
    for (const char* p : {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
        if (targets.count(p)) spec.target_modules.push_back(p);
    if (spec.levels.empty()) {   // all weights zero: the base alone
        spec.levels = {{1, 1.0f}};
        spec.target_modules = {"q_proj"};
    }
    auto model = Model::load(base_dir, quant, spec, 0);
    const int R = spec.total_rank();
    std::vector<float> a, b;
    for (AdaptedModule& m : model->modules()) {
        std::fill(m.B->w, m.B->w + m.B->numel, 0.0f);
        for (size_t g = 0; g < blocks.size(); g++) {
            const SourceModule* sm = blocks[g].src->find(m.name);
            if (!sm) continue;
            HQ_CHECK(sm->in == m.in && sm->out == m.out, "E_SHAPE",
                     blocks[g].src->file << ": module " << m.name << " is [" << sm->out << ", " << sm->in
                                         << "], the base model's is [" << m.out << ", " << m.in << "]",
                     (Where{blocks[g].src->file, m.name, "", -1, -1}), "the adapter belongs to another base model");
            blocks[g].src->read_level(*sm, blocks[g].level, &a, &b);
            const int off = m.level_offset[g], r = spec.levels[g].rank;
            std::copy(a.begin(), a.end(), m.A->w + size_t(off) * m.in);
            for (int o = 0; o < m.out; o++)
                for (int k = 0; k < r; k++) m.B->w[size_t(o) * R + off + k] = blocks[g].sign * b[size_t(o) * r + k];
        }
    }
    model->forward_logits(ids.data(), kVerifyBatch, kVerifySeq, logits.data());
    return logits;
}

std::vector<float> plain_logits(const std::string& model_dir, const std::vector<int32_t>& ids) {
    AdapterSpec spec;
    spec.levels = {{1, 1.0f}};
    spec.target_modules = {"q_proj"};
    QuantSpec none;
    none.type = "none";
    auto model = Model::load(model_dir, none, spec, 0);
    for (AdaptedModule& m : model->modules()) std::fill(m.B->w, m.B->w + m.B->numel, 0.0f);
    std::vector<float> logits(ids.size() * size_t(model->config().vocab_size));
    model->forward_logits(ids.data(), kVerifyBatch, kVerifySeq, logits.data());
    return logits;
}

nlohmann::json compare_logits(const std::vector<float>& ref, const std::vector<float>& got, double tolerance,
                              bool relative) {
    HQ_ASSERT(ref.size() == got.size() && !ref.empty());
    double mx = 0.0, sum = 0.0, rm = 0.0;
    bool finite = true;
    for (size_t i = 0; i < ref.size(); i++) {
        if (!std::isfinite(got[i]) || !std::isfinite(ref[i])) finite = false;
        const double d = std::fabs(double(ref[i]) - double(got[i]));
        mx = std::max(mx, d);
        sum += d;
        rm = std::max(rm, std::fabs(double(ref[i])));
    }
    if (relative) tolerance *= std::max(1.0, rm);
    return {{"max_abs_diff", mx}, {"mean_abs_diff", sum / double(ref.size())}, {"ref_max_abs", rm},
            {"tolerance", tolerance}, {"pass", finite && mx <= tolerance}};
}

}  // namespace hq
