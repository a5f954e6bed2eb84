// adapter_io.cpp — hierarchical adapter save/load and flat PEFT export (see adapter_io.h, CONTRACTS §4).
#include "adapter_io.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <map>
#include <set>

#include "error.h"
#include "fsutil.h"
#include "model_config.h"
#include "safetensors.h"
#include "version.h"

namespace hq {

using nlohmann::json;

namespace {

std::string level_key(const std::string& module, int j, const char* ab) {
    return module + ".levels." + std::to_string(j) + ".lora_" + ab + ".weight";
}

json levels_json(const AdapterSpec& spec) {
    json out = json::array();
    for (int j = 0; j < (int)spec.levels.size(); j++)
        out.push_back({{"rank", spec.levels[size_t(j)].rank}, {"alpha", spec.levels[size_t(j)].alpha},
                       {"scale", spec.scale(j)}});
    return out;
}

// Module consistency with the spec: A [R, in], B [out, R], offsets = prefix sums of the ranks.
void check_module(const AdaptedModule& m, const AdapterSpec& spec) {
    const int L = (int)spec.levels.size();
    HQ_ASSERT(m.A && m.B && m.A->w && m.B->w);
    HQ_ASSERT((int)m.level_offset.size() >= L);
    const int R = spec.total_rank();
    HQ_ASSERT(m.A->numel == size_t(R) * size_t(m.in));
    HQ_ASSERT(m.B->numel == size_t(m.out) * size_t(R));
    int off = 0;
    for (int j = 0; j < L; j++) {
        HQ_ASSERT(m.level_offset[size_t(j)] == off);
        off += spec.levels[size_t(j)].rank;
    }
}

// Copies level j of B_cat [out, R] (cols [off, off+r)) into dst [out, r].
void gather_b(const AdaptedModule& m, int R, int off, int r, float* dst) {
    for (int o = 0; o < m.out; o++)
        for (int k = 0; k < r; k++) dst[size_t(o) * r + k] = m.B->w[size_t(o) * R + off + k];
}

std::string iso_time_utc() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

}  // namespace

void add_hierarchical_tensors(Model& model, SafeTensorsWriter& w) {
    const AdapterSpec& spec = model.adapter_spec();
    const int R = spec.total_rank();
    std::vector<float> buf;
    for (const AdaptedModule& m : model.modules()) {
        check_module(m, spec);
        for (int j = 0; j < (int)spec.levels.size(); j++) {
            const int off = m.level_offset[size_t(j)], r = spec.levels[size_t(j)].rank;
            // A level j = rows [off, off + r) of A_cat [R, in]: contiguous.
            w.add_f32(level_key(m.name, j, "A"), {r, m.in}, m.A->w + size_t(off) * size_t(m.in));
            buf.resize(size_t(m.out) * size_t(r));
            gather_b(m, R, off, r, buf.data());
            w.add_f32(level_key(m.name, j, "B"), {m.out, r}, buf.data());
        }
    }
}

void save_hierarchical_adapter(Model& model, const std::string& dir, const json& extra_metadata) {
    const AdapterSpec& spec = model.adapter_spec();
    SafeTensorsWriter w;
    add_hierarchical_tensors(model, w);
    w.set_metadata("format", "pt");
    w.set_metadata("hqlora.version", "1");
    w.set_metadata("hqlora.levels", levels_json(spec).dump());
    w.set_metadata("hqlora.target_modules", json(spec.target_modules).dump());
    w.set_metadata("hqlora.rslora", spec.rslora ? "true" : "false");

    json meta = {{"format", "hqlora-adapter"},
                 {"version", 1},
                 {"levels", levels_json(spec)},
                 {"rslora", spec.rslora},
                 {"target_modules", spec.target_modules},
                 {"total_rank", spec.total_rank()},
                 {"base_model", {{"path", nullptr}, {"architecture", model.config().model_type}, {"config_sha256", nullptr}}},
                 {"training", {{"steps", 0}, {"final_loss", nullptr}, {"tokens", nullptr}}},
                 {"created", iso_time_utc()},
                 {"trainer_version", HQ_VERSION}};
    if (extra_metadata.is_object()) meta.merge_patch(extra_metadata);
    // merge_patch deletes keys set to null in the patch; keep the documented keys present.
    for (const char* k : {"path", "architecture", "config_sha256"})
        if (!meta["base_model"].contains(k)) meta["base_model"][k] = nullptr;
    for (const char* k : {"steps", "final_loss", "tokens"})
        if (!meta["training"].contains(k)) meta["training"][k] = nullptr;

    write_dir_atomic(dir, [&](const std::string& tmp) {
        w.write_atomic(path_join(tmp, "adapter.safetensors"));
        write_file_atomic(path_join(tmp, "adapter_metadata.json"), meta.dump(2) + "\n");
    });
}

void load_hierarchical_adapter(Model& model, const std::string& file_or_dir) {
    const std::string file =
        is_directory(file_or_dir) ? path_join(file_or_dir, "adapter.safetensors") : file_or_dir;
    auto f = SafeTensorsFile::open(file);
    const AdapterSpec& spec = model.adapter_spec();
    const int L = (int)spec.levels.size(), R = spec.total_rank();
    auto fail = [&](const std::string& code, const std::string& msg, const std::string& tensor, const std::string& hint) {
        throw Error(code, HQ_MSG(file << ": " << msg), Where{file, tensor, "", -1, -1}, hint);
    };
    const std::string hint_cfg =
        "the adapter was trained with different adapter.levels / target_modules or on another base model; "
        "use the run config that produced it";

    // Metadata, when present (final adapters), must agree with the spec on the level ranks.
    auto md = f->metadata().find("hqlora.levels");
    if (md != f->metadata().end()) {
        json lv;
        try {
            lv = json::parse(md->second);
        } catch (const json::exception&) {
            fail("E_SAFETENSORS", "metadata hqlora.levels is not valid JSON", "__metadata__", "re-save the adapter");
        }
        if (!lv.is_array() || (int)lv.size() != L)
            fail("E_SHAPE", HQ_MSG("adapter has " << (lv.is_array() ? lv.size() : 0) << " levels, the run config has " << L),
                 "__metadata__", hint_cfg);
        for (int j = 0; j < L; j++) {
            const json& e = lv[size_t(j)];
            if (!e.is_object() || !e.contains("rank") || !e["rank"].is_number_integer() ||
                e["rank"].get<int>() != spec.levels[size_t(j)].rank)
                fail("E_SHAPE", HQ_MSG("level " << j << " rank in the file is " << (e.is_object() && e.contains("rank") ? e["rank"].dump() : "?")
                                                << ", the run config has " << spec.levels[size_t(j)].rank),
                     "__metadata__", hint_cfg);
            // A different alpha silently changes the function the adapter computes: refuse it too.
            if (e.contains("alpha") && e["alpha"].is_number() &&
                std::fabs(e["alpha"].get<double>() - spec.levels[size_t(j)].alpha) > 1e-6)
                fail("E_CONFIG", HQ_MSG("level " << j << " alpha in the file is " << e["alpha"].dump()
                                                 << ", the run config has " << spec.levels[size_t(j)].alpha),
                     "__metadata__", "set adapter.levels[" + std::to_string(j) + "].alpha to the value used in training");
        }
    }

    // Every module/level tensor must exist with the right shape, and the file must hold nothing else.
    std::set<std::string> used;
    std::vector<float> buf;
    for (AdaptedModule& m : model.modules()) {
        check_module(m, spec);
        for (int j = 0; j < L; j++) {
            const int off = m.level_offset[size_t(j)], r = spec.levels[size_t(j)].rank;
            for (const char* ab : {"A", "B"}) {
                const std::string key = level_key(m.name, j, ab);
                const TensorInfo* t = f->find(key);
                if (!t) {
                    bool any_level = f->find(level_key(m.name, 0, ab)) != nullptr;
                    fail("E_SAFETENSORS",
                         any_level ? HQ_MSG("level " << j << " of module " << m.name << " is missing (tensor " << key << ")")
                                   : HQ_MSG("module " << m.name << " is missing (tensor " << key << ")"),
                         key, hint_cfg);
                }
                const std::vector<int64_t> want = ab[0] == 'A' ? std::vector<int64_t>{r, m.in} : std::vector<int64_t>{m.out, r};
                if (t->shape != want) {
                    std::string got = "[", exp = "[";
                    for (size_t i = 0; i < t->shape.size(); i++) got += (i ? ", " : "") + std::to_string(t->shape[i]);
                    for (size_t i = 0; i < want.size(); i++) exp += (i ? ", " : "") + std::to_string(want[i]);
                    fail("E_SHAPE", HQ_MSG("tensor " << key << " has shape " << got << "], expected " << exp << "]"), key, hint_cfg);
                }
                used.insert(key);
                if (ab[0] == 'A') {
                    f->read_f32_into(key, m.A->w + size_t(off) * size_t(m.in), size_t(r) * size_t(m.in));
                } else {
                    buf.resize(size_t(m.out) * size_t(r));
                    f->read_f32_into(key, buf.data(), buf.size());
                    for (int o = 0; o < m.out; o++)
                        for (int k = 0; k < r; k++) m.B->w[size_t(o) * R + off + k] = buf[size_t(o) * r + k];
                }
            }
        }
    }
    for (const TensorInfo& t : f->tensors())
        if (!used.count(t.name))
            fail("E_SHAPE", HQ_MSG("tensor " << t.name << " does not belong to any adapted module of this model"
                                             << (t.name.find(".levels." + std::to_string(L) + ".") != std::string::npos
                                                     ? " (the file has more levels than the run config)" : "")),
                 t.name, hint_cfg);
}

json peft_adapter_config(Model& model, const std::string& base_model_name_or_path) {
    const int R = model.adapter_spec().total_rank();
    // Only fields every PEFT >= 0.x LoraConfig knows; json's std::map keeps keys sorted like sort_keys=True.
    return json{{"alpha_pattern", json::object()},
                {"base_model_name_or_path", base_model_name_or_path},
                {"bias", "none"},
                {"fan_in_fan_out", false},
                {"inference_mode", true},
                {"init_lora_weights", true},
                {"lora_alpha", R},
                {"lora_dropout", 0},
                {"modules_to_save", nullptr},
                {"peft_type", "LORA"},
                {"r", R},
                {"rank_pattern", json::object()},
                {"target_modules", model.adapter_spec().target_modules},
                {"task_type", "CAUSAL_LM"},
                {"use_rslora", false}};
}

namespace {

// One PEFT module of the export: its HF name (without the .lora_X suffix) and the AdaptedModules it holds, with
// the first row of each in the PEFT module's output (0 and the module's own rows for an unfused projection).
struct PeftGroup {
    std::string name;
    std::vector<std::pair<const AdaptedModule*, int64_t>> parts;
    int64_t out = 0, in = 0;
};

// Phi-3 keeps q/k/v in qkv_proj [(H+2KV)·d, C] and gate/up in gate_up_proj [2F, C] (proj_rows); our adapters are per
// slice. A fused PEFT module of k slices gets rank k·R: lora_A = the slices' scaled A stacked by rows, lora_B the slices'
// B on their rows and their own R columns (block diagonal), so B·A adds each slice's update to its rows only. Every
// other module is a group of its own.
std::vector<PeftGroup> peft_groups(Model& model) {
    const ModelConfig& c = model.config();
    std::vector<PeftGroup> groups;
    std::map<std::string, size_t> at;   // PEFT module name -> index in groups
    for (const AdaptedModule& m : model.modules()) {
        const ProjRows pr = proj_rows(c, m.name);
        const std::string name = pr.tensor.substr(0, pr.tensor.size() - 7);   // without ".weight"
        auto it = at.find(name);
        if (it == at.end()) {
            it = at.emplace(name, groups.size()).first;
            // A projection of its own has its module's rows; a fused one the whole tensor's.
            groups.push_back({name, {}, pr.tensor == m.name + ".weight" ? m.out : proj_tensor_rows(c, m.name), m.in});
        }
        groups[it->second].parts.push_back({&m, pr.row0});
    }
    return groups;
}

std::string leaf(const std::string& name) { return name.substr(name.rfind('.') + 1); }

}  // namespace

void export_peft(Model& model, const std::string& dir, const std::string& base_model_name_or_path) {
    const AdapterSpec& spec = model.adapter_spec();
    const int L = (int)spec.levels.size(), R = spec.total_rank();
    SafeTensorsWriter w;
    std::vector<float> a, bm;
    std::map<std::string, int> fused_rank;   // leaf name -> PEFT rank, where it is not R (Phi-3 fused modules)
    std::vector<std::string> targets;
    for (const PeftGroup& g : peft_groups(model)) {
        const int64_t k = (int64_t)g.parts.size(), rank = k * R;
        // lora_A [k·R, in] = per part concat_rows(s_j * A_j); lora_B [out, k·R] = each part's B_cat on its rows.
        a.assign(size_t(rank * g.in), 0.0f);
        bm.assign(size_t(g.out * rank), 0.0f);
        for (int64_t pi = 0; pi < k; pi++) {
            const AdaptedModule& m = *g.parts[size_t(pi)].first;
            const int64_t row0 = g.parts[size_t(pi)].second;
            check_module(m, spec);
            HQ_ASSERT(m.in == g.in && row0 + m.out <= g.out);
            float* ap = a.data() + size_t(pi * R * g.in);
            std::copy(m.A->w, m.A->w + size_t(R) * size_t(m.in), ap);
            for (int j = 0; j < L; j++) {
                const float s = spec.scale(j);
                const size_t r0 = size_t(m.level_offset[size_t(j)]), r1 = r0 + size_t(spec.levels[size_t(j)].rank);
                for (size_t i = r0 * size_t(m.in); i < r1 * size_t(m.in); i++) ap[i] *= s;
            }
            for (int64_t o = 0; o < m.out; o++)
                std::copy(m.B->w + size_t(o * R), m.B->w + size_t((o + 1) * R),
                          bm.data() + size_t((row0 + o) * rank + pi * R));
        }
        const std::string base = "base_model.model." + g.name;
        w.add_f32(base + ".lora_A.weight", {rank, g.in}, a.data());
        w.add_f32(base + ".lora_B.weight", {g.out, rank}, bm.data());
        const std::string lf = leaf(g.name);
        if (std::find(targets.begin(), targets.end(), lf) == targets.end()) targets.push_back(lf);
        if (rank != R) fused_rank[lf] = (int)rank;
    }
    w.set_metadata("format", "pt");
    json cfg = peft_adapter_config(model, base_model_name_or_path);
    if (model.config().fused_proj) {
        // PEFT names the fused modules; r = lora_alpha per module keeps every scaling at 1.
        cfg["target_modules"] = targets;
        for (const auto& [name, r] : fused_rank) {
            cfg["rank_pattern"][name] = r;
            cfg["alpha_pattern"][name] = r;
        }
    }
    write_dir_atomic(dir, [&](const std::string& tmp) {
        w.write_atomic(path_join(tmp, "adapter_model.safetensors"));
        write_file_atomic(path_join(tmp, "adapter_config.json"), cfg.dump(2) + "\n");
    });
}

}  // namespace hq
