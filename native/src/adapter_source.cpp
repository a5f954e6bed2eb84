// adapter_source.cpp — hierarchical / PEFT / run-folder adapters opened for streaming reads (see adapter_source.h).
#include "adapter_source.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "error.h"
#include "fsutil.h"
#include "model_config.h"

namespace hq {

using nlohmann::json;

namespace {

const char* const kProj[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

std::string shape_str(const std::vector<int64_t>& s) {
    std::string o = "[";
    for (size_t i = 0; i < s.size(); i++) o += (i ? ", " : "") + std::to_string(s[i]);
    return o + "]";
}

json read_json_file(const std::string& path) {
    const std::string text = read_file(path);
    try {
        return json::parse(text);
    } catch (const json::exception& e) {
        throw Error("E_CONFIG", HQ_MSG(path << " is not valid JSON: " << e.what()), Where{path, "", "", -1, -1},
                    "restore the file from the run that produced it");
    }
}

// (layer, projection index) for ordering; modules without a layer number sort last.
std::pair<long, int> module_order(const std::string& name) {
    static const std::regex re(R"(layers\.(\d+)\..*\.([a-z_]+)$)");
    std::smatch m;
    if (std::regex_search(name, m, re)) return {std::stol(m[1].str()), projection_index(m[2].str())};
    return {1L << 40, 0};
}

std::string short_name(const std::string& module) {
    const size_t p = module.rfind('.');
    return p == std::string::npos ? module : module.substr(p + 1);
}

}  // namespace

int projection_index(const std::string& s) {
    for (int i = 0; i < 7; i++)
        if (s == kProj[i]) return i;
    return -1;
}

void release_mapped_range(const void* p, size_t n) {
    static const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
    uintptr_t b = (uintptr_t(p) + page - 1) & ~(page - 1), e = (uintptr_t(p) + n) & ~(page - 1);
    if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

int AdapterSource::total_rank() const {
    int r = 0;
    for (const LevelSpec& l : levels) r += l.rank;
    return r;
}

const SourceModule* AdapterSource::find(const std::string& module) const {
    for (const SourceModule& m : modules)
        if (m.name == module) return &m;
    return nullptr;
}

static std::string tensor_key(const AdapterSource& s, const std::string& module, int j, char ab) {
    if (s.kind == "peft") return "base_model.model." + module + ".lora_" + ab + ".weight";
    return module + ".levels." + std::to_string(j) + ".lora_" + ab + ".weight";
}

void AdapterSource::read_level(const SourceModule& m, int j, std::vector<float>* A, std::vector<float>* B) const {
    HQ_ASSERT(j >= 0 && j < (int)levels.size());
    const int r = levels[size_t(j)].rank;
    if (kind == "peft") return read_peft(m, A, B);
    A->resize(size_t(r) * m.in);
    B->resize(size_t(m.out) * r);
    for (char ab : {'A', 'B'}) {
        const std::string key = tensor_key(*this, m.name, j, ab);
        const TensorInfo* t = st->find(key);
        HQ_ASSERT(t != nullptr);
        st->read_f32_into(key, ab == 'A' ? A->data() : B->data(), ab == 'A' ? A->size() : B->size());
        release_mapped_range(st->data(*t), size_t(t->end - t->begin));
    }
}

// A PEFT module as level 0: A [R, in], B [out, R] with R = levels[0].rank. Rows [row0, row0 + out) of the stored
// lora_B [stored_out, rank]; with per_module the stored A is scaled by m.scale and both are zero-padded to R.
void AdapterSource::read_peft(const SourceModule& m, std::vector<float>* A, std::vector<float>* B) const {
    const int R = levels[0].rank, r = m.rank;
    HQ_ASSERT(r <= R && (per_module || r == R));
    const std::string ka = tensor_key(*this, m.stored, 0, 'A'), kb = tensor_key(*this, m.stored, 0, 'B');
    const TensorInfo* ta = st->find(ka);
    const TensorInfo* tb = st->find(kb);
    HQ_ASSERT(ta && tb);
    std::vector<float> a(size_t(r) * m.in), b(size_t(m.stored_out) * r);
    st->read_f32_into(ka, a.data(), a.size());
    st->read_f32_into(kb, b.data(), b.size());
    release_mapped_range(st->data(*ta), size_t(ta->end - ta->begin));
    release_mapped_range(st->data(*tb), size_t(tb->end - tb->begin));
    const float s = per_module ? m.scale : 1.0f;
    A->assign(size_t(R) * m.in, 0.0f);
    for (size_t i = 0; i < a.size(); i++) (*A)[i] = s * a[i];
    B->assign(size_t(m.out) * R, 0.0f);
    for (int64_t o = 0; o < m.out; o++)
        std::copy(b.begin() + (m.row0 + o) * r, b.begin() + (m.row0 + o + 1) * r, B->begin() + o * R);
}

void AdapterSource::read_flat(const SourceModule& m, std::vector<float>* A, std::vector<float>* B) const {
    const int R = total_rank();
    A->assign(size_t(R) * m.in, 0.0f);
    B->assign(size_t(m.out) * R, 0.0f);
    std::vector<float> a, b;
    int off = 0;
    for (int j = 0; j < (int)levels.size(); j++) {
        const int r = levels[size_t(j)].rank;
        read_level(m, j, &a, &b);
        const float s = scales[size_t(j)];
        for (size_t i = 0; i < a.size(); i++) (*A)[size_t(off) * m.in + i] = s * a[i];
        for (int o = 0; o < m.out; o++)
            for (int k = 0; k < r; k++) (*B)[size_t(o) * R + off + k] = b[size_t(o) * r + k];
        off += r;
    }
}

void AdapterSource::release_pages() const {
    for (const TensorInfo& t : st->tensors()) release_mapped_range(st->data(t), size_t(t.end - t.begin));
}

namespace {

// Levels (rank, alpha, scale) from the hqlora.levels metadata of a hierarchical adapter file.
void read_hierarchical_levels(AdapterSource& s) {
    const auto& md = s.st->metadata();
    auto it = md.find("hqlora.levels");
    HQ_CHECK(it != md.end(), "E_SAFETENSORS", s.file << " has no hqlora.levels metadata",
             (Where{s.file, "__metadata__", "", -1, -1}),
             "this is not a hierarchical adapter written by hqlora-train (a PEFT adapter needs adapter_config.json)");
    json lv;
    try {
        lv = json::parse(it->second);
    } catch (const json::exception&) {
        throw Error("E_SAFETENSORS", HQ_MSG(s.file << ": metadata hqlora.levels is not valid JSON"),
                    Where{s.file, "__metadata__", "", -1, -1}, "re-save the adapter");
    }
    HQ_CHECK(lv.is_array() && !lv.empty(), "E_SAFETENSORS", s.file << ": hqlora.levels is not a non-empty list",
             (Where{s.file, "__metadata__", "", -1, -1}), "re-save the adapter");
    auto rs = md.find("hqlora.rslora");
    s.rslora = rs != md.end() && rs->second == "true";
    for (size_t j = 0; j < lv.size(); j++) {
        const json& e = lv[j];
        HQ_CHECK(e.is_object() && e.contains("rank") && e["rank"].is_number_integer() && e["rank"].get<int>() > 0 &&
                     e.contains("alpha") && e["alpha"].is_number(),
                 "E_SAFETENSORS", s.file << ": hqlora.levels[" << j << "] is not {rank, alpha}",
                 (Where{s.file, "__metadata__", "", -1, -1}), "re-save the adapter");
        LevelSpec l{e["rank"].get<int>(), e["alpha"].get<float>()};
        s.levels.push_back(l);
        const float sc = s.rslora ? l.alpha / std::sqrt(float(l.rank)) : l.alpha / float(l.rank);
        s.scales.push_back(e.contains("scale") && e["scale"].is_number() ? e["scale"].get<float>() : sc);
    }
}

// A hierarchical adapter: the safetensors `file`, with <dir>/adapter_metadata.json (base model, architecture)
// read when `with_metadata` (the adapter was given as a folder).
void open_hierarchical(AdapterSource& s, const std::string& file, const std::string& dir, bool with_metadata) {
    s.kind = "hierarchical";
    s.file = file;
    s.st = SafeTensorsFile::open(s.file);
    const std::string mp = path_join(dir, "adapter_metadata.json");
    if (with_metadata && path_exists(mp)) {
        const json meta = read_json_file(mp);
        if (meta.contains("base_model") && meta["base_model"].is_object()) {
            const json& b = meta["base_model"];
            if (s.base_model.empty() && b.contains("path") && b["path"].is_string())
                s.base_model = b["path"].get<std::string>();
            if (b.contains("architecture") && b["architecture"].is_string())
                s.architecture = b["architecture"].get<std::string>();
        }
    }
    read_hierarchical_levels(s);
}

// adapter_config.json of a PEFT LoRA folder: the default rank / alpha and the patterns, in file order (PEFT takes
// the first key that matches).
struct PeftConfig {
    std::string file;
    int r = 0;
    float alpha = 0.0f;
    std::vector<std::pair<std::string, double>> rank_pattern, alpha_pattern;
};

// A PEFT LoRA folder: adapter_config.json ({r, lora_alpha}, rank_pattern, alpha_pattern) + adapter_model.safetensors.
PeftConfig open_peft(AdapterSource& s, const std::string& dir) {
    s.kind = "peft";
    PeftConfig pc;
    const std::string cfgp = path_join(dir, "adapter_config.json");
    pc.file = cfgp;
    s.file = path_join(dir, "adapter_model.safetensors");
    const json cfg = read_json_file(cfgp);
    HQ_CHECK(cfg.value("peft_type", std::string()) == "LORA", "E_CONFIG", cfgp << ": peft_type is not LORA",
             (Where{cfgp, "", "peft_type", -1, -1}), "only LoRA adapters can be merged");
    HQ_CHECK(cfg.contains("r") && cfg["r"].is_number_integer() && cfg["r"].get<int>() > 0 &&
                 cfg.contains("lora_alpha") && cfg["lora_alpha"].is_number(),
             "E_CONFIG", cfgp << ": r / lora_alpha missing", (Where{cfgp, "", "r", -1, -1}), "");
    HQ_CHECK(!cfg.value("use_dora", false) && !cfg.value("fan_in_fan_out", false), "E_CONFIG",
             cfgp << ": DoRA / fan_in_fan_out adapters are not supported", (Where{cfgp, "", "use_dora", -1, -1}), "");
    // The patterns again in file order (json sorts object keys).
    const nlohmann::ordered_json ocfg = nlohmann::ordered_json::parse(read_file(cfgp));
    for (const char* k : {"rank_pattern", "alpha_pattern"}) {
        if (!ocfg.contains(k) || ocfg[k].is_null()) continue;
        HQ_CHECK(ocfg[k].is_object(), "E_CONFIG", cfgp << ": " << k << " is not an object",
                 (Where{cfgp, "", k, -1, -1}), HQ_MSG("give " << k << " as {\"module name or regex\": value}"));
        for (const auto& [key, v] : ocfg[k].items()) {
            const bool rank = std::string(k) == "rank_pattern";
            HQ_CHECK(rank ? (v.is_number_integer() && v.get<int>() > 0) : v.is_number(), "E_CONFIG",
                     cfgp << ": " << k << "[\"" << key << "\"] is " << v.dump() << ", not "
                          << (rank ? "a positive integer rank" : "a number"),
                     (Where{cfgp, "", std::string(k) + "." + key, -1, -1}), "fix the adapter's adapter_config.json");
            (rank ? pc.rank_pattern : pc.alpha_pattern).push_back({key, v.get<double>()});
        }
    }
    s.rslora = cfg.value("use_rslora", false);
    pc.r = cfg["r"].get<int>();
    pc.alpha = cfg["lora_alpha"].get<float>();
    s.levels.push_back({pc.r, pc.alpha});
    s.scales.push_back(s.rslora ? pc.alpha / std::sqrt(float(pc.r)) : pc.alpha / float(pc.r));
    if (cfg.contains("base_model_name_or_path") && cfg["base_model_name_or_path"].is_string())
        s.base_model = cfg["base_model_name_or_path"].get<std::string>();
    s.st = SafeTensorsFile::open(s.file);
    return pc;
}

// PEFT's get_pattern_key: the first key K with re.match(rf"(.*\.)?({K})$", module), or nullptr.
const std::pair<std::string, double>* match_pattern(const PeftConfig& pc,
                                                    const std::vector<std::pair<std::string, double>>& pattern,
                                                    const char* what, const std::string& module) {
    for (const auto& e : pattern) {
        std::regex re;
        try {
            re = std::regex("(.*\\.)?(" + e.first + ")");
        } catch (const std::regex_error&) {
            throw Error("E_CONFIG", HQ_MSG(pc.file << ": " << what << " key \"" << e.first << "\" is not a valid regex"),
                        Where{pc.file, "", std::string(what) + "." + e.first, -1, -1}, "fix the adapter's adapter_config.json");
        }
        if (std::regex_match(module, re)) return &e;
    }
    return nullptr;
}

// A run folder: <run>/adapter/ (hierarchical); <run>/run.json, when present, supplies the base model path and the
// quantization.
void open_run_folder(AdapterSource& s, const std::string& run) {
    const std::string rj = path_join(run, "run.json");
    if (path_exists(rj)) {
        const json cfg = read_json_file(rj);
        if (cfg.contains("model") && cfg["model"].contains("path") && cfg["model"]["path"].is_string())
            s.base_model = cfg["model"]["path"].get<std::string>();
        if (cfg.contains("quantization") && cfg["quantization"].is_object()) {
            const json& q = cfg["quantization"];
            s.has_quant = true;
            s.quant.type = q.value("type", std::string("nf4"));
            s.quant.double_quant = q.value("double_quant", true);
            s.quant.blocksize = q.value("blocksize", 64);
        }
    }
    const std::string dir = path_join(run, "adapter");
    open_hierarchical(s, path_join(dir, "adapter.safetensors"), dir, true);
}

// The modules named by the tensors (module -> its keys); every tensor must be a 2-D float LoRA weight of one.
std::map<std::string, std::set<std::string>> group_tensors(const AdapterSource& s) {
    static const std::regex hre(R"(^(.+)\.levels\.(\d+)\.lora_([AB])\.weight$)");
    static const std::regex pre(R"(^base_model\.model\.(.+)\.lora_([AB])\.weight$)");
    std::map<std::string, std::set<std::string>> seen;
    for (const TensorInfo& t : s.st->tensors()) {
        std::smatch m;
        std::string mod;
        if (s.kind == "hierarchical" && std::regex_match(t.name, m, hre)) {
            mod = m[1].str();
            HQ_CHECK(std::stoul(m[2].str()) < s.levels.size(), "E_SHAPE",
                     s.file << ": tensor " << t.name << " is level " << m[2].str() << " but the metadata lists "
                            << s.levels.size() << " levels",
                     (Where{s.file, t.name, "", -1, -1}), "the file was modified after training; re-export it");
        } else if (s.kind == "peft" && std::regex_match(t.name, m, pre)) {
            mod = m[1].str();
        } else {
            throw Error("E_SAFETENSORS", HQ_MSG(s.file << ": tensor " << t.name << " is not a LoRA weight"),
                        Where{s.file, t.name, "", -1, -1},
                        "only lora_A / lora_B weights can be merged (modules_to_save, biases, DoRA are not supported)");
        }
        HQ_CHECK(t.dtype == DType::F32 || t.dtype == DType::BF16 || t.dtype == DType::F16, "E_SAFETENSORS",
                 s.file << ": tensor " << t.name << " has dtype " << dtype_name(t.dtype),
                 (Where{s.file, t.name, "", -1, -1}), "adapter weights must be F32, BF16 or F16");
        HQ_CHECK(t.shape.size() == 2, "E_SHAPE", s.file << ": tensor " << t.name << " has shape " << shape_str(t.shape),
                 (Where{s.file, t.name, "", -1, -1}), "LoRA weights are 2-D");
        seen[mod].insert(t.name);
    }
    HQ_CHECK(!seen.empty(), "E_SAFETENSORS", s.file << " holds no adapter tensors", (Where{s.file, "", "", -1, -1}),
             "the adapter file is empty");
    return seen;
}

// One module with every level's A [r_j, in] and B [out, r_j], on a supported projection.
SourceModule check_module(const AdapterSource& s, const std::string& mod) {
    SourceModule sm;
    sm.name = mod;
    for (int j = 0; j < (int)s.levels.size(); j++) {
        const int r = s.levels[size_t(j)].rank;
        const std::string ka = tensor_key(s, mod, j, 'A'), kb = tensor_key(s, mod, j, 'B');
        const TensorInfo* a = s.st->find(ka);
        const TensorInfo* b = s.st->find(kb);
        HQ_CHECK(a && b, "E_SAFETENSORS",
                 s.file << ": module " << mod << " lacks " << (a ? kb : ka)
                        << (s.kind == "hierarchical" ? " (every module needs every level's A and B)" : ""),
                 (Where{s.file, a ? kb : ka, "", -1, -1}), "the adapter file is incomplete; re-export it");
        if (j == 0) {
            sm.in = int(a->shape[1]);
            sm.out = int(b->shape[0]);
        }
        const std::vector<int64_t> wa{r, sm.in}, wb{sm.out, r};
        HQ_CHECK(a->shape == wa, "E_SHAPE",
                 s.file << ": tensor " << ka << " has shape " << shape_str(a->shape) << ", expected " << shape_str(wa),
                 (Where{s.file, ka, "", -1, -1}), "the level ranks in the metadata do not match the tensors");
        HQ_CHECK(b->shape == wb, "E_SHAPE",
                 s.file << ": tensor " << kb << " has shape " << shape_str(b->shape) << ", expected " << shape_str(wb),
                 (Where{s.file, kb, "", -1, -1}), "the level ranks in the metadata do not match the tensors");
    }
    HQ_CHECK(projection_index(short_name(mod)) >= 0, "E_CONFIG",
             s.file << ": module " << mod << " is not a supported projection",
             (Where{s.file, tensor_key(s, mod, 0, 'A'), "", -1, -1}),
             "supported targets: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj");
    return sm;
}

// Canonical order of the modules (layer, then q..down) and the target short names in it.
void sort_modules(AdapterSource& s, const std::set<std::string>& targets) {
    std::sort(s.modules.begin(), s.modules.end(), [](const SourceModule& a, const SourceModule& b) {
        return module_order(a.name) < module_order(b.name);
    });
    for (const char* p : kProj)
        if (targets.count(p)) s.target_modules.push_back(p);
}

// The target list from the metadata, when present, must match the tensors.
void check_declared_targets(const AdapterSource& s, const std::set<std::string>& targets) {
    auto tm = s.st->metadata().find("hqlora.target_modules");
    if (tm == s.st->metadata().end()) return;
    json t;
    try {
        t = json::parse(tm->second);
    } catch (const json::exception&) {
    }
    if (!t.is_array()) return;
    std::set<std::string> declared;
    for (const json& e : t)
        if (e.is_string()) declared.insert(e.get<std::string>());
    HQ_CHECK(declared == targets, "E_SAFETENSORS",
             s.file << ": hqlora.target_modules " << tm->second << " does not match the modules in the file",
             (Where{s.file, "__metadata__", "", -1, -1}), "the adapter file is incomplete; re-export it");
}

// Modules and target modules from the tensors of an opened hierarchical adapter, in canonical order.
void index_modules(AdapterSource& s) {
    std::set<std::string> targets;
    for (const auto& entry : group_tensors(s)) {
        s.modules.push_back(check_module(s, entry.first));
        s.modules.back().stored = entry.first;
        s.modules.back().rank = s.total_rank();
        targets.insert(short_name(entry.first));
    }
    sort_modules(s, targets);
    check_declared_targets(s, targets);
}

// The base model config that lays out a fused module's rows (loaded once).
const ModelConfig& fused_layout(std::unique_ptr<ModelConfig>& cfg, const AdapterSource& s, const std::string& dir,
                                const std::string& mod, const std::string& key) {
    if (cfg) return *cfg;
    const std::string cj = path_join(dir, "config.json");
    HQ_CHECK(!dir.empty() && path_exists(cj), "E_CONFIG",
             s.file << ": module " << mod << " is a fused Phi-3 projection; the rows of each projection in it come from "
                    << "the base model's config.json, and "
                    << (dir.empty() ? std::string("the base model is unknown") : "there is no " + cj),
             (Where{s.file, key, "", -1, -1}), "pass the base model folder (--base-model DIR)");
    cfg = std::make_unique<ModelConfig>(load_model_config(dir));
    HQ_CHECK(cfg->fused_proj, "E_CONFIG",
             s.file << ": module " << mod << " is a fused projection, but the base model " << dir << " is "
                    << cfg->model_type << ", whose projections are separate tensors",
             (Where{cj, "", "model_type", -1, -1}), "pass the base model the adapter was trained on");
    return *cfg;
}

// Modules of a PEFT adapter: each stored module's rank and alpha (r / lora_alpha or its patterns), its shapes
// checked; Phi-3's fused qkv_proj / gate_up_proj split into their projections' rows (proj_rows).
void index_peft_modules(AdapterSource& s, const PeftConfig& pc, const std::string& base_dir) {
    std::set<std::string> targets;
    std::unique_ptr<ModelConfig> cfg;
    const std::string cfg_dir = !base_dir.empty() ? base_dir : s.base_model;
    int Rmax = 0;
    bool differs = false;
    for (const auto& entry : group_tensors(s)) {
        const std::string& mod = entry.first;
        const auto* rp = match_pattern(pc, pc.rank_pattern, "rank_pattern", mod);
        const auto* ap = match_pattern(pc, pc.alpha_pattern, "alpha_pattern", mod);
        const int r = rp ? int(rp->second) : pc.r;
        const float alpha = ap ? float(ap->second) : pc.alpha;
        differs = differs || r != pc.r || alpha != pc.alpha;
        Rmax = std::max(Rmax, r);
        const std::string ka = tensor_key(s, mod, 0, 'A'), kb = tensor_key(s, mod, 0, 'B');
        const TensorInfo* a = s.st->find(ka);
        const TensorInfo* b = s.st->find(kb);
        HQ_CHECK(a && b, "E_SAFETENSORS", s.file << ": module " << mod << " lacks " << (a ? kb : ka),
                 (Where{s.file, a ? kb : ka, "", -1, -1}), "the adapter file is incomplete; re-export it");
        const std::string rank_from = rp ? "rank_pattern[\"" + rp->first + "\"] in " + pc.file : "r in " + pc.file;
        const std::vector<int64_t> wa{r, a->shape[1]}, wb{b->shape[0], r};
        HQ_CHECK(a->shape == wa, "E_SHAPE",
                 s.file << ": tensor " << ka << " has shape " << shape_str(a->shape) << ", expected " << shape_str(wa)
                        << " (rank " << r << " from " << rank_from << ")",
                 (Where{s.file, ka, "", -1, -1}), "the adapter's rank / rank_pattern do not match its tensors");
        HQ_CHECK(b->shape == wb, "E_SHAPE",
                 s.file << ": tensor " << kb << " has shape " << shape_str(b->shape) << ", expected " << shape_str(wb)
                        << " (rank " << r << " from " << rank_from << ")",
                 (Where{s.file, kb, "", -1, -1}), "the adapter's rank / rank_pattern do not match its tensors");
        SourceModule sm;
        sm.stored = mod;
        sm.in = int(a->shape[1]);
        sm.stored_out = b->shape[0];
        sm.rank = r;
        sm.scale = s.rslora ? alpha / std::sqrt(float(r)) : alpha / float(r);
        const std::string leaf = short_name(mod);
        if (leaf == "qkv_proj" || leaf == "gate_up_proj") {
            const ModelConfig& c = fused_layout(cfg, s, cfg_dir, mod, ka);
            const std::string stem = mod.substr(0, mod.size() - leaf.size());
            int64_t rows = 0;
            for (const char* p : kProj) {
                const ProjRows pr = proj_rows(c, stem + p);
                if (pr.tensor != mod + ".weight") continue;
                sm.name = stem + p;
                sm.row0 = pr.row0;
                sm.out = int(pr.rows);
                rows = std::max(rows, pr.row0 + pr.rows);
                s.modules.push_back(sm);
                targets.insert(p);
            }
            HQ_CHECK(rows == sm.stored_out, "E_SHAPE",
                     s.file << ": tensor " << kb << " has " << sm.stored_out << " rows, the base model's " << leaf
                            << " has " << rows << " (" << path_join(cfg_dir, "config.json") << ")",
                     (Where{s.file, kb, "", -1, -1}), "the adapter belongs to another base model");
            continue;
        }
        HQ_CHECK(projection_index(leaf) >= 0, "E_CONFIG", s.file << ": module " << mod << " is not a supported projection",
                 (Where{s.file, ka, "", -1, -1}),
                 "supported targets: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (Phi-3: qkv_proj, "
                 "gate_up_proj)");
        sm.name = mod;
        sm.out = int(sm.stored_out);
        s.modules.push_back(sm);
        targets.insert(leaf);
    }
    std::set<std::string> names;
    for (const SourceModule& m : s.modules)
        HQ_CHECK(names.insert(m.name).second, "E_SAFETENSORS",
                 s.file << ": projection " << m.name << " is stored twice (on its own and in a fused module)",
                 (Where{s.file, tensor_key(s, m.stored, 0, 'A'), "", -1, -1}), "keep one of the two modules");
    if (differs) {
        s.per_module = true;
        s.levels = {{Rmax, float(Rmax)}};
        s.scales = {1.0f};
        s.rslora = false;
    }
    sort_modules(s, targets);
}

}  // namespace

AdapterSource open_adapter_source(const std::string& path, const std::string& base_dir) {
    AdapterSource s;
    s.path = path;
    HQ_CHECK(path_exists(path), "E_IO", "adapter " << path << " does not exist", (Where{path, "", "", -1, -1}),
             "give a run folder, an adapter folder (adapter.safetensors or adapter_config.json) or an adapter file");
    if (!is_directory(path)) {
        open_hierarchical(s, path, parent_dir(path), false);
    } else if (path_exists(path_join(path, "adapter.safetensors"))) {
        open_hierarchical(s, path_join(path, "adapter.safetensors"), path, true);
    } else if (path_exists(path_join(path, "adapter_model.safetensors")) ||
               path_exists(path_join(path, "adapter_config.json"))) {
        const PeftConfig pc = open_peft(s, path);
        index_peft_modules(s, pc, base_dir);
        return s;
    } else if (path_exists(path_join(path, "adapter/adapter.safetensors"))) {
        open_run_folder(s, path);
    } else {
        throw Error("E_IO", HQ_MSG(path << " holds no adapter"), Where{path, "", "", -1, -1},
                    "expected adapter.safetensors (hierarchical), adapter_config.json + adapter_model.safetensors "
                    "(PEFT) or a run folder with adapter/");
    }
    index_modules(s);
    return s;
}

AdapterSpec source_adapter_spec(const AdapterSource& src) {
    AdapterSpec spec;
    spec.target_modules = src.target_modules;
    spec.levels = src.levels;
    spec.rslora = src.rslora;
    spec.dropout = 0.0f;
    return spec;
}

}  // namespace hq
