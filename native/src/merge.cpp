// merge.cpp — levels → flat PEFT, adapter → merged model, adapters → one (see merge.h for the math and rules).
#include "merge.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <future>
#include <map>
#include <memory>
#include <set>

#include <sys/mman.h>
#include <unistd.h>

#include <cblas.h>

#include "adapter_source.h"
#include "error.h"
#include "export_verify.h"
#include "fsutil.h"
#include "hlora.h"
#include "lowrank.h"
#include "model_config.h"
#include "nf4.h"
#include "safetensors.h"
#include "st_stream.h"
#include "version.h"

namespace hq {

using nlohmann::json;

void export_check_cancel(const ExportCommon& o, const std::string& item) {
    if (o.cancel && o.cancel->load(std::memory_order_relaxed))
        throw Error("E_CANCELLED", HQ_MSG("export cancelled (at " << item << "); nothing was written to " << o.out_dir),
                    Where{o.out_dir, item, "", -1, -1}, "run the command again to export");
}

void export_report(const ExportCommon& o, const char* phase, int64_t done, int64_t total, const std::string& item) {
    if (o.progress) o.progress(MergeProgress{phase, done, total, item});
}

namespace {

QuantSpec default_quant() { return QuantSpec{}; }

QuantSpec effective_quant(const ExportCommon& o, const AdapterSource& s) {
    if (o.quant_set) return o.quant;
    if (s.has_quant) return s.quant;
    return default_quant();
}

// Asks the kernel to start reading a mapped range (the next tensor) while the current one is processed.
void prefetch_mapped_range(const uint8_t* p, size_t n) {
    if (n == 0) return;
    const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
    const uintptr_t a = uintptr_t(p) & ~(page - 1);
    ::posix_madvise(reinterpret_cast<void*>(a), size_t(uintptr_t(p) + n - a), POSIX_MADV_WILLNEED);
}

// A mapped tensor as fp32, converted in parallel (BF16 / F16 / F32 per element are exact, so the result is the
// same as SafeTensorsFile::convert_f32's).
// `bytes`: the tensor's bytes read ahead (pread_tensor), or empty to read the mapping.
void read_f32_parallel(const SafeTensorsFile& f, const TensorInfo& t, const std::vector<uint8_t>& bytes, float* out) {
    const int64_t n = t.numel();
    if (t.dtype != DType::BF16 && t.dtype != DType::F16) return f.convert_f32(t, out);
    const uint8_t* src = bytes.size() == size_t(t.end - t.begin) ? bytes.data() : f.data(t);
    if (t.dtype == DType::F16) {
#pragma omp parallel for schedule(static) if (n >= kParMinElems)
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            std::memcpy(&h, src + 2 * i, 2);
            out[i] = f16_to_f32(h);
        }
        return;
    }
    // BF16: the high half of the fp32 bits (bf16_to_f32), inline so the loop vectorises.
#pragma omp parallel for schedule(static) if (n >= kParMinElems)
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        const uint32_t u = uint32_t(h) << 16;
        std::memcpy(out + i, &u, 4);
    }
}

// A 2-byte float tensor's bytes read with pread into `b` (one kernel copy instead of a page fault per 4 KiB of the
// mapping; `b` is reused from tensor to tensor, so its pages are faulted in once). `b` is left empty when the file
// cannot be opened (e.g. an in-memory file), in which case the caller uses the mapping.
std::vector<uint8_t> pread_tensor(const SafeTensorsFile& f, const TensorInfo& t, std::vector<uint8_t> b) {
    b.clear();
    const int fd = ::open(f.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return b;
    b.resize(size_t(t.end - t.begin));
    size_t got = 0;
    while (got < b.size()) {
        const ssize_t r = ::pread(fd, b.data() + got, b.size() - got, off_t(f.data_start() + t.begin + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            ::close(fd);
            throw Error("E_IO", HQ_MSG("reading " << f.path() << " (tensor " << t.name << ") failed: "
                                                  << (r < 0 ? std::strerror(errno) : "unexpected end of file")),
                        Where{f.path(), t.name, "", int64_t(f.data_start() + t.begin + got), -1},
                        "check the base model files and the disk");
        }
        got += size_t(r);
    }
    ::close(fd);
    return b;
}

json quant_json(const QuantSpec& q) {
    return {{"type", q.type}, {"double_quant", q.double_quant}, {"blocksize", q.blocksize}};
}

// Builds the output in a temp sibling and publishes it; `fill(tmp)` returns the report, written as verify.json.
template <class F>
json build_dir(const ExportCommon& o, const std::vector<std::string>& inputs, F fill) {
    HQ_CHECK(!o.out_dir.empty(), "E_CONFIG", "no output folder given", (Where{"", "", "out", -1, -1}), "pass --out DIR");
    for (const std::string& in : inputs) {
        const std::string a = in + "/", b = o.out_dir + "/";
        // The output may live inside an input folder (e.g. <run>/peft-merged: we only add a new subfolder there),
        // but an input may not live inside the output, which --force would replace.
        HQ_CHECK(a.compare(0, b.size(), b) != 0, "E_CONFIG",
                 "output folder " << o.out_dir << " contains the input " << in, (Where{o.out_dir, "", "out", -1, -1}),
                 "choose an output folder that does not contain the inputs");
    }
    if (path_exists(o.out_dir) && !o.overwrite)
        throw Error("E_IO", HQ_MSG("output folder " << o.out_dir << " already exists"), Where{o.out_dir, "", "", -1, -1},
                    "choose another --out, or pass --force to replace it");
    make_dirs(parent_dir(o.out_dir));
    const std::string tmp = temp_sibling(o.out_dir);
    try {
        make_dirs(tmp);
        json rep = fill(tmp);
        rep["output"] = o.out_dir;
        write_file_atomic(path_join(tmp, "verify.json"), rep.dump(2) + "\n");
        export_check_cancel(o, "publish");
        export_report(o, "publish", 1, 1, o.out_dir);
        publish_dir(tmp, o.out_dir);
        return rep;
    } catch (...) {
        try {
            remove_all(tmp);
        } catch (...) {
        }
        throw;
    }
}

json peft_config_json(int r, const std::vector<std::string>& targets, const std::string& base) {
    return json{{"alpha_pattern", json::object()}, {"base_model_name_or_path", base}, {"bias", "none"},
                {"fan_in_fan_out", false}, {"inference_mode", true}, {"init_lora_weights", true},
                {"lora_alpha", r}, {"lora_dropout", 0}, {"modules_to_save", nullptr}, {"peft_type", "LORA"},
                {"r", r}, {"rank_pattern", json::object()}, {"target_modules", targets},
                {"task_type", "CAUSAL_LM"}, {"use_rslora", false}};
}

std::string peft_key(const std::string& module, char ab) {
    return "base_model.model." + module + ".lora_" + ab + ".weight";
}

// One module of a flat PEFT export: its HF name and the source modules in it, each with its first row. A module of
// its own, or (Phi-3) one fused qkv_proj / gate_up_proj holding its projections' rows (proj_rows), as PEFT sees
// Phi3Attention / Phi3MLP.
struct PeftModule {
    std::string name;
    int64_t out = 0, in = 0;
    int rank = 0;
    std::vector<std::pair<const SourceModule*, int64_t>> parts;
};

// The export's modules for sources of rank R each. Fused (cfg set): one per fused tensor, of rank parts·R when
// `exact` (lora_A = the parts' A stacked by rows, lora_B = each part's B on its rows and its own R columns: B·A adds
// every projection's update to its rows only) or k (the truncated SVD of the fused update); else one per module.
std::vector<PeftModule> peft_layout(const std::vector<SourceModule>& mods, const ModelConfig* cfg, int R, int k) {
    std::vector<PeftModule> out;
    std::map<std::string, size_t> at;   // fused name -> index in out
    for (const SourceModule& m : mods) {
        const ProjRows pr = cfg ? proj_rows(*cfg, m.name) : ProjRows{m.name + ".weight", 0, m.out};
        const std::string name = pr.tensor.substr(0, pr.tensor.size() - 7);   // without ".weight"
        auto it = at.find(name);
        if (it == at.end()) {
            it = at.emplace(name, out.size()).first;
            out.push_back({name, pr.tensor == m.name + ".weight" ? m.out : proj_tensor_rows(*cfg, m.name), m.in, 0, {}});
        }
        PeftModule& pm = out[it->second];
        HQ_ASSERT(pm.in == m.in && pr.row0 + m.out <= pm.out);
        pm.parts.push_back({&m, pr.row0});
    }
    for (PeftModule& pm : out) pm.rank = k < R ? k : int(pm.parts.size()) * R;
    return out;
}

// Exact flat form of a PeftModule: A [parts·R, in] = the parts' A stacked, B [out, parts·R] block diagonal.
void read_stacked(const AdapterSource& src, const PeftModule& pm, int R, std::vector<float>* A, std::vector<float>* B) {
    const int64_t n = (int64_t)pm.parts.size(), nR = n * R;
    A->assign(size_t(nR * pm.in), 0.0f);
    B->assign(size_t(pm.out * nR), 0.0f);
    std::vector<float> a, b;
    for (int64_t p = 0; p < n; p++) {
        const SourceModule& m = *pm.parts[size_t(p)].first;
        const int64_t row0 = pm.parts[size_t(p)].second;
        src.read_flat(m, &a, &b);
        std::copy(a.begin(), a.end(), A->begin() + p * R * pm.in);
        for (int64_t o = 0; o < m.out; o++)
            std::copy(b.begin() + o * R, b.begin() + (o + 1) * R, B->begin() + (row0 + o) * nR + p * R);
    }
}

// The flat PEFT folder's tensor declarations: per module A [rank, in], B [out, rank].
std::vector<TensorDecl> peft_decls(const std::vector<PeftModule>& mods) {
    std::vector<TensorDecl> d;
    for (const PeftModule& m : mods) {
        d.push_back({peft_key(m.name, 'A'), DType::F32, {m.rank, m.in}});
        d.push_back({peft_key(m.name, 'B'), DType::F32, {m.out, m.rank}});
    }
    return d;
}

// adapter_config.json of an export at rank r: target_modules are the modules' short names; a module of another
// rank gets it in rank_pattern and alpha_pattern (alpha = rank: PEFT's scaling stays 1), keyed by its short name when
// every module of that name has it, else by its full name.
json peft_layout_config(const std::vector<PeftModule>& mods, int r, const std::string& base) {
    std::vector<std::string> targets;
    std::map<std::string, std::set<int>> ranks;
    auto leaf = [](const std::string& n) { return n.substr(n.rfind('.') + 1); };
    for (const PeftModule& m : mods) {
        if (std::find(targets.begin(), targets.end(), leaf(m.name)) == targets.end()) targets.push_back(leaf(m.name));
        ranks[leaf(m.name)].insert(m.rank);
    }
    json cfg = peft_config_json(r, targets, base);
    for (const PeftModule& m : mods) {
        if (m.rank == r) continue;
        const std::string key = ranks[leaf(m.name)].size() == 1 ? leaf(m.name) : m.name;
        cfg["rank_pattern"][key] = m.rank;
        cfg["alpha_pattern"][key] = m.rank;
    }
    return cfg;
}

// The base config when the base model stores fused projections (Phi-3), so the PEFT export names the fused modules;
// nullptr otherwise. A Phi-3 adapter whose base config.json is not at hand is refused (its rows are unknown).
std::unique_ptr<ModelConfig> fused_base_config(const AdapterSource& src, const std::string& base) {
    const std::string cj = path_join(base, "config.json");
    if (!base.empty() && path_exists(cj)) {
        auto cfg = std::make_unique<ModelConfig>(load_model_config(base));
        return cfg->fused_proj ? std::move(cfg) : nullptr;
    }
    HQ_CHECK(src.architecture != "phi3", "E_CONFIG",
             src.file << " is a Phi-3 adapter: its PEFT export holds the fused qkv_proj / gate_up_proj modules, laid "
                      << "out by the base model's config.json, and "
                      << (base.empty() ? std::string("the base model is unknown") : "there is no " + cj),
             (Where{src.file, "", "base_model", -1, -1}), "pass the base model folder (--base-model DIR)");
    return nullptr;
}

std::string resolve_base(const ExportCommon& o, const AdapterSource& s) {
    return !o.base_model.empty() ? o.base_model : s.base_model;
}

// Forward check of a flat PEFT folder at `peft_dir` against the weighted sources.
json verify_peft(const ExportCommon& o, const std::string& base, const QuantSpec& quant,
                 const std::vector<WeightedSource>& refs, const std::string& peft_dir, bool exact) {
    json v = {{"reference", "base + source adapter levels, trainer forward (Model)"},
              {"exported", "flat PEFT adapter read back from disk, trainer forward with one level {r, lora_alpha=r}"},
              {"base_model", base}, {"quantization", quant_json(quant)}, {"exact", exact}};
    if (!o.verify) return v.update({{"status", "skipped"}, {"reason", "verification disabled"}}), v;
    if (base.empty() || !path_exists(path_join(base, "config.json")))
        return v.update({{"status", "skipped"},
                         {"reason", base.empty() ? "the base model is unknown (pass the base model folder)"
                                                 : "base model folder " + base + " not found"}}),
               v;
    export_report(o, "verify", 0, 2, "reference");
    const ModelConfig cfg = load_model_config(base);
    const std::vector<int32_t> ids = verify_ids(cfg.vocab_size, cfg.bos_token_id);
    const std::vector<float> ref = reference_logits(base, quant, refs, ids);
    export_check_cancel(o, "verify");
    export_report(o, "verify", 1, 2, "exported");
    const AdapterSource exported = open_adapter_source(peft_dir, base);
    const std::vector<float> got = reference_logits(base, quant, {{&exported, 1.0}}, ids);
    export_report(o, "verify", 2, 2, "exported");
    // Exact: fp32 rounding only, which grows with the logits' scale, so the bound is relative (the demo run's merges,
    // logits up to 6.7, differ by <= 1.03e-5 against 6.7e-5; a level left out or scaled wrong moves them > 1e-2).
    json c = exact ? compare_logits(ref, got, o.tolerance, true) : compare_logits(ref, got, o.lossy_tolerance);
    v.update(c);
    v["ids_shape"] = {kVerifyBatch, kVerifySeq};
    v["status"] = c["pass"].get<bool>() ? "pass" : "fail";
    return v;
}

}  // namespace

json build_export_dir(const ExportCommon& o, const std::vector<std::string>& inputs,
                      const std::function<json(const std::string& tmp)>& fill) {
    return build_dir(o, inputs, fill);
}

// ---------------------------------------------------------------------------------------------------------------
json merge_levels(const MergeLevelsOptions& o) {
    const auto t0 = std::chrono::steady_clock::now();
    HQ_CHECK(o.rank >= 0, "E_CONFIG", "rank " << o.rank << " < 0", (Where{"", "", "rank", -1, -1}),
             "0 = exact merge, or a positive target rank");
    AdapterSource src = open_adapter_source(o.source, o.base_model);
    const int R = src.total_rank();
    const int k = (o.rank == 0 || o.rank >= R) ? R : o.rank;
    const bool lossy = k < R;
    const std::string base = resolve_base(o, src);
    const std::unique_ptr<ModelConfig> fused = fused_base_config(src, base);
    const std::vector<PeftModule> layout = peft_layout(src.modules, fused.get(), R, k);
    return build_dir(o, {o.source}, [&](const std::string& tmp) {
        const std::string file = path_join(tmp, "adapter_model.safetensors");
        StreamingSafetensorsWriter w(file, peft_decls(layout), {{"format", "pt"}});
        json mods = json::array();
        double min_ret = 1.0, max_err = 0.0;
        std::vector<float> A, B;
        const int64_t n = (int64_t)layout.size();
        for (int64_t i = 0; i < n; i++) {
            const PeftModule& m = layout[size_t(i)];
            export_check_cancel(o, m.name);
            read_stacked(src, m, R, &A, &B);
            const int nR = int(m.parts.size()) * R;
            if (!lossy) {
                w.write_f32(peft_key(m.name, 'A'), A.data(), A.size());
                w.write_f32(peft_key(m.name, 'B'), B.data(), B.size());
            } else {
                const LowRankSVD s = lowrank_svd(B.data(), A.data(), m.out, m.in, nR, k);
                double sq = 0, refmax = 0;
                const double me = max_abs_diff_products(B.data(), A.data(), nR, s.B.data(), s.A.data(), k, m.out, m.in,
                                                        &sq, &refmax);
                w.write_f32(peft_key(m.name, 'A'), s.A.data(), s.A.size());
                w.write_f32(peft_key(m.name, 'B'), s.B.data(), s.B.size());
                min_ret = std::min(min_ret, s.retained());
                max_err = std::max(max_err, me);
                mods.push_back({{"module", m.name}, {"retained_energy", s.retained()}, {"max_abs_error", me},
                                {"frob_error", std::sqrt(sq)}, {"frob_norm", std::sqrt(s.energy_total)},
                                {"delta_max_abs", refmax}});
            }
            export_report(o, "merge", i + 1, n, m.name);
        }
        w.finish();
        write_file_atomic(path_join(tmp, "adapter_config.json"), peft_layout_config(layout, k, base).dump(2) + "\n");
        const QuantSpec q = effective_quant(o, src);
        json rep = {{"operation", "merge_levels"}, {"format", "peft"}, {"source", o.source}, {"source_kind", src.kind},
                    {"levels", json::array()}, {"total_rank", R}, {"rank", k}, {"exact", !lossy},
                    {"n_modules", n}, {"trainer_version", HQ_VERSION}};
        if (fused) rep["fused_modules"] = "qkv_proj = q, k, v; gate_up_proj = gate, up (rank_pattern in adapter_config.json)";
        for (size_t j = 0; j < src.levels.size(); j++)
            rep["levels"].push_back({{"rank", src.levels[j].rank}, {"alpha", src.levels[j].alpha}, {"scale", src.scales[j]}});
        if (lossy) {
            rep["svd"] = {{"min_retained_energy", min_ret}, {"max_abs_error", max_err}};
            rep["modules"] = mods;
        }
        rep["verification"] = verify_peft(o, base, q, {{&src, 1.0}}, tmp, !lossy);
        rep["elapsed_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return rep;
    });
}

// ---------------------------------------------------------------------------------------------------------------
// merge_into_base in its progress phases: plan (check the inputs, lay out the shards; nothing written), merge (one
// adapted weight: NF4 gap and W += B·A), write (every tensor into the shards, the merged ones through merge), verify
// (the merged folder's forward against the trainer's).
namespace {

struct BaseMergePlan {
    DType out_dt = DType::BF16;
    AdapterSource src;
    std::string base;    // base model folder
    ModelConfig cfg;     // its config.json
    ModelWeights mw;
    // Base tensor name -> the src modules merged into it, each with its first row: "<module>.weight" and row 0, or
    // (Phi-3) "...qkv_proj.weight" / "...gate_up_proj.weight" with each projection's rows (proj_rows).
    std::map<std::string, std::vector<std::pair<const SourceModule*, int64_t>>> adapted;
    QuantSpec q;
    bool deq = false;    // merge into the NF4-dequantized weights (--base dequantized with an NF4 run)
    std::vector<std::vector<TensorDecl>> shards;   // output tensors, per shard, in name order
    uint64_t total_bytes = 0;

    std::string shard_name(size_t i) const {
        if (shards.size() == 1) return "model.safetensors";
        char b[64];
        std::snprintf(b, sizeof b, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
        return b;
    }
    // The tensor after shard si's tensor di (this shard or the first of the next one), or nullptr after the last.
    const TensorDecl* next_decl(size_t si, size_t di) const {
        return di + 1 < shards[si].size() ? &shards[si][di + 1] : si + 1 < shards.size() ? &shards[si + 1][0] : nullptr;
    }
    // Tensors converted through fp32 (adapted, or another dtype) are read one ahead in a background thread:
    // the tensor's info when `d` is one of them, else nullptr.
    const TensorInfo* converted(const TensorDecl& d, const SafeTensorsFile** f) const {
        const TensorInfo* t = mw.find(d.name, f);
        const bool fl16 = t->dtype == DType::F16 || t->dtype == DType::BF16;
        return fl16 && (t->dtype != d.dtype || adapted.count(d.name)) ? t : nullptr;
    }
};

bool is_float_dtype(DType d) { return d == DType::F32 || d == DType::F16 || d == DType::BF16 || d == DType::F64; }

DType merge_out_dtype(const std::string& dtype) {
    if (dtype == "fp32") return DType::F32;
    if (dtype == "fp16") return DType::F16;
    HQ_CHECK(dtype == "bf16", "E_CONFIG", "dtype '" << dtype << "' is not bf16, fp16 or fp32",
             (Where{"", "", "dtype", -1, -1}), "--dtype bf16|fp16|fp32");
    return DType::BF16;
}

// Every adapter module's base weight, checked for presence and shape: base tensor -> (module, first row).
std::map<std::string, std::vector<std::pair<const SourceModule*, int64_t>>> match_adapted(
    const AdapterSource& src, const ModelWeights& mw, const ModelConfig& cfg, const std::string& base) {
    std::map<std::string, std::vector<std::pair<const SourceModule*, int64_t>>> adapted;
    for (const SourceModule& m : src.modules) {
        const ProjRows pr = proj_rows(cfg, m.name);
        const std::string& wn = pr.tensor;
        const SafeTensorsFile* f = nullptr;
        const TensorInfo* t = mw.find(wn, &f);
        HQ_CHECK(t != nullptr, "E_SHAPE", "adapter module " << m.name << " (" << src.file << ") has no weight " << wn << " in " << base,
                 (Where{src.file, wn, "", -1, -1}), "the adapter belongs to another base model");
        const bool sliced = pr.row0 > 0 || (t->shape.size() == 2 && pr.rows < t->shape[0]);
        const bool fits = t->shape.size() == 2 && t->shape[1] == m.in && pr.rows == m.out &&
                          pr.row0 + pr.rows <= t->shape[0] && (cfg.fused_proj || !sliced);
        HQ_CHECK(fits, "E_SHAPE",
                 "adapter module " << m.name << " is [" << m.out << ", " << m.in << "] but " << wn << " in " << f->path()
                                   << " is [" << (t->shape.size() > 0 ? t->shape[0] : 0) << ", "
                                   << (t->shape.size() > 1 ? t->shape[1] : 0) << "]"
                                   << (cfg.fused_proj ? HQ_MSG(" (its rows " << pr.row0 << ".." << pr.row0 + pr.rows << ")")
                                                      : std::string()),
                 (Where{f->path(), wn, "", -1, -1}), "the adapter belongs to another base model");
        adapted[wn].push_back({&m, pr.row0});
    }
    return adapted;
}

// Phase "plan". The returned plan's `adapted` points into its own src.modules (a vector: moving keeps the
// elements in place).
BaseMergePlan plan_base_merge(const MergeIntoBaseOptions& o) {
    HQ_CHECK(o.base == "original" || o.base == "dequantized", "E_CONFIG",
             "base '" << o.base << "' is not original or dequantized", (Where{"", "", "base", -1, -1}),
             "--base original (the checkpoint's weights) or --base dequantized (the NF4 weights the adapter saw)");
    BaseMergePlan p;
    p.out_dt = merge_out_dtype(o.dtype);
    HQ_CHECK(o.max_shard_bytes >= (1u << 16), "E_CONFIG", "max shard size " << o.max_shard_bytes << " is too small",
             (Where{"", "", "max_shard_bytes", -1, -1}), "use at least 64 KiB");
    p.src = open_adapter_source(o.source, o.base_model);
    p.base = resolve_base(o, p.src);
    HQ_CHECK(!p.base.empty(), "E_CONFIG", "the base model of " << o.source << " is unknown", (Where{p.src.file, "", "base_model", -1, -1}),
             "pass the base model folder (--base-model DIR)");
    p.cfg = load_model_config(p.base);
    HQ_CHECK(p.src.architecture.empty() || p.src.architecture == p.cfg.model_type, "E_CONFIG",
             "the adapter was trained on a " << p.src.architecture << " model, " << p.base << " is " << p.cfg.model_type,
             (Where{path_join(p.base, "config.json"), "", "model_type", -1, -1}), "pass the base model the adapter was trained on");
    p.mw = ModelWeights::open_dir(p.base);
    p.adapted = match_adapted(p.src, p.mw, p.cfg, p.base);
    p.q = effective_quant(o, p.src);
    p.deq = o.base == "dequantized" && p.q.type == "nf4";

    // Output plan: every base tensor (rotary inv_freq buffers are recomputed by every loader) in name order,
    // float tensors in the chosen dtype, packed greedily into shards of at most max_shard_bytes.
    p.shards.resize(1);
    uint64_t cur = 0;
    for (const std::string& name : p.mw.names()) {
        if (name.size() >= 19 && name.compare(name.size() - 19, 19, "rotary_emb.inv_freq") == 0) continue;
        const TensorInfo* t = p.mw.find(name);
        TensorDecl d{name, is_float_dtype(t->dtype) ? p.out_dt : t->dtype, t->shape};
        if (cur > 0 && cur + d.bytes() > o.max_shard_bytes) {
            p.shards.emplace_back();
            cur = 0;
        }
        cur += d.bytes();
        p.total_bytes += d.bytes();
        p.shards.back().push_back(d);
    }
    return p;
}

// Seconds per phase (reported as "timing"; bench_merge prints them).
struct MergeTiming {
    double copy = 0, read = 0, read_wait = 0, quant = 0, deq = 0, gap = 0, adapter = 0, gemm = 0, write = 0, finish = 0;

    static std::chrono::steady_clock::time_point tick() { return std::chrono::steady_clock::now(); }
    static double secs(std::chrono::steady_clock::time_point a) {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
    }
    json to_json() const {
        return {{"copy_s", copy}, {"read_convert_s", read}, {"read_wait_s", read_wait}, {"nf4_quantize_s", quant},
                {"nf4_dequantize_s", deq}, {"nf4_gap_s", gap}, {"adapter_read_s", adapter},
                {"delta_gemm_s", gemm}, {"convert_write_s", write}, {"fsync_s", finish}};
    }
};

// max and sum of |W - Wq| over fixed 64 Ki-element chunks, the chunk sums added in order: the same result for any
// thread count.
void nf4_gap(const float* pw, const float* pq, int64_t N, double* max_abs, double* sum_abs) {
    double mx = 0, sum = 0;
    const int64_t CH = int64_t(1) << 16, nch = (N + CH - 1) / CH;
    std::vector<double> cmax(size_t(nch), 0.0), csum(size_t(nch), 0.0);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nch; c++) {
        // 8 interleaved lanes (vectorisable), added in lane order.
        double cm[8] = {}, cs[8] = {};
        const int64_t i0 = c * CH, e = std::min(N, i0 + CH);
        int64_t i = i0;
        for (; i + 8 <= e; i += 8)
            for (int l = 0; l < 8; l++) {
                const double dd = std::fabs(double(pw[i + l]) - double(pq[i + l]));
                cm[l] = cm[l] > dd ? cm[l] : dd;
                cs[l] += dd;
            }
        for (; i < e; i++) {
            const double dd = std::fabs(double(pw[i]) - double(pq[i]));
            cm[0] = cm[0] > dd ? cm[0] : dd;
            cs[0] += dd;
        }
        double m = 0, t = 0;
        for (int l = 0; l < 8; l++) m = std::max(m, cm[l]), t += cs[l];
        cmax[size_t(c)] = m;
        csum[size_t(c)] = t;
    }
    for (int64_t c = 0; c < nch; c++) {
        mx = std::max(mx, cmax[size_t(c)]);
        sum += csum[size_t(c)];
    }
    *max_abs = mx;
    *sum_abs = sum;
}

// Reused buffers of the write phase: the weight being converted W, its NF4 round trip Wq, the adapter's flat A, B.
struct MergeBuffers {
    std::vector<float> W, Wq, A, Bm;
};

// Phase "merge", one adapted module: rows [row0, row0 + m.out) of the weight `buf.W` [rows, in] (fp32; all of it,
// or a Phi-3 projection's rows of its fused tensor, quantized on their own as the trainer does): measures their NF4
// gap, swaps in the dequantized rows when plan.deq, then W_rows += B·A. Returns the module's nf4_gap entry; raises
// *gap_max to its max.
json merge_module(const BaseMergePlan& plan, const SourceModule& m, int64_t row0, MergeBuffers& buf, MergeTiming& tm,
                  double* gap_max) {
    const size_t n = size_t(m.out) * size_t(m.in);
    HQ_ASSERT((size_t(row0) * size_t(m.in)) + n <= buf.W.size());
    float* W = buf.W.data() + size_t(row0) * size_t(m.in);
    std::vector<float>& Wq = buf.Wq;
    // Difference between the original and the NF4-dequantized weight (what QLoRA merges lose).
    auto tp = MergeTiming::tick();
    const NF4Tensor nq = nf4_quantize(W, m.out, m.in, plan.q.blocksize, plan.q.double_quant);
    tm.quant += MergeTiming::secs(tp);
    tp = MergeTiming::tick();
    Wq.resize(n);
    nf4_dequantize(nq, Wq.data());
    tm.deq += MergeTiming::secs(tp);
    tp = MergeTiming::tick();
    double mx = 0, sum = 0;
    nf4_gap(W, Wq.data(), int64_t(n), &mx, &sum);
    *gap_max = std::max(*gap_max, mx);
    if (plan.deq) std::copy(Wq.begin(), Wq.end(), W);
    tm.gap += MergeTiming::secs(tp);
    tp = MergeTiming::tick();
    plan.src.read_flat(m, &buf.A, &buf.Bm);
    tm.adapter += MergeTiming::secs(tp);
    tp = MergeTiming::tick();
    const int R = plan.src.total_rank();
    // W [out, in] += B [out, R] · A [R, in], split over the OpenMP team (OpenBLAS single-threaded).
    {
        BlasThreadScope blas;
        par_sgemm(false, false, m.out, m.in, R, 1.0f, buf.Bm.data(), R, buf.A.data(), m.in, 1.0f, W, m.in);
    }
    tm.gemm += MergeTiming::secs(tp);
    return {{"module", m.name}, {"nf4_gap_max_abs", mx}, {"nf4_gap_mean_abs", sum / double(n)}};
}

struct WrittenShards {
    json mods = json::array(), weight_map = json::object();
    double gap_max = 0.0;
    MergeTiming timing;
};

// Phase "write": every planned tensor into its shard under `tmp`. Same-dtype tensors without an adapter are copied
// as bytes; the others are read (one ahead, in the background), converted to fp32, merged when adapted, and
// written in the output dtype.
WrittenShards write_merged_shards(const MergeIntoBaseOptions& o, const BaseMergePlan& plan, const std::string& tmp) {
    WrittenShards out;
    MergeTiming& tm = out.timing;
    MergeBuffers buf;
    int64_t done = 0, ntensors = 0;
    for (const auto& s : plan.shards) ntensors += (int64_t)s.size();
    std::future<std::vector<uint8_t>> ahead;
    std::string ahead_name;
    for (size_t si = 0; si < plan.shards.size(); si++) {
        const std::string file = path_join(tmp, plan.shard_name(si));
        StreamingSafetensorsWriter w(file, plan.shards[si], {{"format", "pt"}});
        for (size_t di = 0; di < plan.shards[si].size(); di++) {
            const TensorDecl& d = plan.shards[si][di];
            const TensorDecl* nx = plan.next_decl(si, di);
            {
                // Next tensor: start its read-ahead now.
                const SafeTensorsFile* nf = nullptr;
                const TensorInfo* nt = nx ? plan.mw.find(nx->name, &nf) : nullptr;
                if (nt && plan.converted(*nx, &nf) == nullptr) prefetch_mapped_range(nf->data(*nt), size_t(nt->end - nt->begin));
            }
            export_check_cancel(o, d.name);
            const SafeTensorsFile* f = nullptr;
            const TensorInfo* t = plan.mw.find(d.name, &f);
            if (!is_float_dtype(t->dtype) || (t->dtype == d.dtype && !plan.adapted.count(d.name))) {
                // Same dtype and no adapter (embeddings, norms, lm_head, untargeted projections), or non-float:
                // the bytes are copied as they are, chunk by chunk, dropping each chunk's mapped pages.
                auto tc = MergeTiming::tick();
                w.write_chunked(d.name, f->data(*t), size_t(t->end - t->begin), release_mapped_range);
                tm.copy += MergeTiming::secs(tc);
            } else {
                auto tp = MergeTiming::tick();
                buf.W.resize(size_t(t->numel()));
                std::vector<uint8_t> bytes;
                if (ahead.valid() && ahead_name == d.name) bytes = ahead.get();
                else if (plan.converted(d, &f)) bytes = pread_tensor(*f, *t, std::move(bytes));
                tm.read_wait += MergeTiming::secs(tp);
                read_f32_parallel(*f, *t, bytes, buf.W.data());
                {
                    // Start reading the next converted tensor while this one is processed.
                    const SafeTensorsFile* nf = nullptr;
                    const TensorInfo* nt = nx ? plan.converted(*nx, &nf) : nullptr;
                    if (nt) {
                        ahead_name = nx->name;
                        ahead = std::async(std::launch::async, [nf, nt, b = std::move(bytes)]() mutable {
                            return pread_tensor(*nf, *nt, std::move(b));
                        });
                    }
                }
                tm.read += MergeTiming::secs(tp);
                auto it = plan.adapted.find(d.name);
                if (it != plan.adapted.end())
                    for (const auto& [m, row0] : it->second)
                        out.mods.push_back(merge_module(plan, *m, row0, buf, tm, &out.gap_max));
                tp = MergeTiming::tick();
                w.write_f32(d.name, buf.W.data(), buf.W.size());
                tm.write += MergeTiming::secs(tp);
            }
            release_mapped_range(f->data(*t), size_t(t->end - t->begin));
            out.weight_map[d.name] = plan.shard_name(si);
            export_report(o, "write", ++done, ntensors, d.name);
        }
        const auto tf = MergeTiming::tick();
        w.finish();
        tm.finish += MergeTiming::secs(tf);
        buf.W.clear(); buf.W.shrink_to_fit(); buf.Wq.clear(); buf.Wq.shrink_to_fit();
    }
    return out;
}

// The rest of the model folder: the shard index, config.json with the new dtype, the tokenizer and generation
// files copied unchanged. Returns the names copied.
json write_model_files(const BaseMergePlan& plan, const std::string& tmp, const json& weight_map) {
    if (plan.shards.size() > 1)
        write_file_atomic(path_join(tmp, "model.safetensors.index.json"),
                          json{{"metadata", {{"total_size", plan.total_bytes}}}, {"weight_map", weight_map}}.dump(2) + "\n");
    json c = json::parse(read_file(path_join(plan.base, "config.json")));
    const char* tname = plan.out_dt == DType::F32 ? "float32" : plan.out_dt == DType::F16 ? "float16" : "bfloat16";
    c["torch_dtype"] = tname;
    if (c.contains("dtype")) c["dtype"] = tname;
    write_file_atomic(path_join(tmp, "config.json"), c.dump(2) + "\n");
    json copied = json::array();
    for (const std::string& name : list_dir(plan.base)) {
        const std::string p = path_join(plan.base, name);
        if (is_directory(p) || name[0] == '.' || name == "config.json" || name == "model.safetensors.index.json" ||
            (name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0) || name == "verify.json")
            continue;
        write_file_atomic(path_join(tmp, name), read_file(p));
        copied.push_back(name);
    }
    return copied;
}

// Phase "verify": the merged folder (quant none, no adapter) vs the trainer forward on the chosen base.
json verify_merged(const MergeIntoBaseOptions& o, const BaseMergePlan& plan, const std::string& tmp) {
    const DType out_dt = plan.out_dt;
    const bool exact = out_dt == DType::F32;   // fp32: the bound is relative to the logits' scale (compare_logits)
    const double tol = exact ? o.tolerance : out_dt == DType::F16 ? 2e-2 : 1e-1;
    QuantSpec ref_q = plan.q;
    if (o.base == "original") ref_q.type = "none";
    json v = {{"reference", "base (" + std::string(plan.deq ? "NF4-dequantized" : "original") +
                                ") + hierarchical adapter, trainer forward (Model)"},
              {"exported", "merged model read back from disk (quantization none, no adapter)"},
              {"quantization", quant_json(ref_q)}, {"exact", exact},
              {"tolerance_note", "fp32: 1e-5 x max(1, max |reference logit|); fp16: 2e-2; bf16: 1e-1 (8-bit mantissa "
                                 "rounding of every weight)"}};
    if (!o.verify) {
        v["status"] = "skipped";
        v["reason"] = "verification disabled";
        return v;
    }
    const std::vector<int32_t> ids = verify_ids(plan.cfg.vocab_size, plan.cfg.bos_token_id);
    export_report(o, "verify", 0, 2, "reference");
    const std::vector<float> ref = reference_logits(plan.base, ref_q, {{&plan.src, 1.0}}, ids);
    export_check_cancel(o, "verify");
    export_report(o, "verify", 1, 2, "exported");
    const std::vector<float> got = plain_logits(tmp, ids);
    export_report(o, "verify", 2, 2, "exported");
    v.update(compare_logits(ref, got, tol, exact));
    v["ids_shape"] = {kVerifyBatch, kVerifySeq};
    v["status"] = v["pass"].get<bool>() ? "pass" : "fail";
    if (!plan.deq && plan.q.type == "nf4") {
        // What a user of the original-base merge sees against the model that was actually trained.
        const std::vector<float> tr = reference_logits(plan.base, plan.q, {{&plan.src, 1.0}}, ids);
        json g = compare_logits(tr, got, 0.0);
        v["vs_trainer_nf4"] = {{"max_abs_diff", g["max_abs_diff"]}, {"mean_abs_diff", g["mean_abs_diff"]}};
    }
    return v;
}

}  // namespace

json merge_into_base(const MergeIntoBaseOptions& o) {
    const auto t0 = std::chrono::steady_clock::now();
    const BaseMergePlan plan = plan_base_merge(o);
    return build_dir(o, {o.source, plan.base}, [&](const std::string& tmp) {
        WrittenShards ws = write_merged_shards(o, plan, tmp);
        plan.src.release_pages();
        const json copied = write_model_files(plan, tmp, ws.weight_map);
        json rep = {{"operation", "merge_into_base"}, {"format", "hf-model"}, {"source", o.source},
                    {"base_model", plan.base}, {"base", o.base}, {"dtype", o.dtype}, {"quantization", quant_json(plan.q)},
                    {"shards", plan.shards.size()}, {"total_bytes", plan.total_bytes}, {"copied_files", copied},
                    {"nf4_gap", {{"max_abs", ws.gap_max}, {"modules", ws.mods}}}, {"trainer_version", HQ_VERSION},
                    {"timing", ws.timing.to_json()}};
        rep["verification"] = verify_merged(o, plan, tmp);
        rep["elapsed_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return rep;
    });
}

// ---------------------------------------------------------------------------------------------------------------
json combine_adapters(const CombineOptions& o) {
    const auto t0 = std::chrono::steady_clock::now();
    HQ_CHECK(o.sources.size() >= 1, "E_CONFIG", "no adapters to combine", (Where{"", "", "sources", -1, -1}),
             "give two or more adapter folders");
    HQ_CHECK(o.mode == "concat" || o.mode == "linear" || o.mode == "svd", "E_CONFIG",
             "combine mode '" << o.mode << "' is not concat, linear or svd", (Where{"", "", "mode", -1, -1}),
             "--mode concat|linear|svd");
    std::vector<double> wts = o.weights.empty() ? std::vector<double>(o.sources.size(), 1.0) : o.weights;
    HQ_CHECK(wts.size() == o.sources.size(), "E_CONFIG",
             wts.size() << " weights for " << o.sources.size() << " adapters", (Where{"", "", "weights", -1, -1}),
             "give one weight per adapter");
    for (double w : wts)
        HQ_CHECK(std::isfinite(w), "E_CONFIG", "weight " << w << " is not finite", (Where{"", "", "weights", -1, -1}), "");
    std::vector<AdapterSource> srcs;
    for (const std::string& p : o.sources) srcs.push_back(open_adapter_source(p, o.base_model));
    const AdapterSource& s0 = srcs[0];
    for (size_t i = 1; i < srcs.size(); i++) {
        const AdapterSource& s = srcs[i];
        HQ_CHECK(s0.architecture.empty() || s.architecture.empty() || s.architecture == s0.architecture, "E_CONFIG",
                 s.file << " was trained on " << s.architecture << ", " << s0.file << " on " << s0.architecture,
                 (Where{s.file, "", "architecture", -1, -1}), "combine adapters of the same base model");
        for (const SourceModule& m : s0.modules) {
            const SourceModule* o2 = s.find(m.name);
            HQ_CHECK(o2 != nullptr, "E_SHAPE", s.file << " has no module " << m.name << " (present in " << s0.file << ")",
                     (Where{s.file, m.name, "", -1, -1}), "combine adapters with the same target modules");
            HQ_CHECK(o2->in == m.in && o2->out == m.out, "E_SHAPE",
                     s.file << ": module " << m.name << " is [" << o2->out << ", " << o2->in << "], in " << s0.file
                            << " it is [" << m.out << ", " << m.in << "]",
                     (Where{s.file, m.name, "", -1, -1}), "the adapters belong to different base models");
        }
        for (const SourceModule& m : s.modules)
            HQ_CHECK(s0.find(m.name) != nullptr, "E_SHAPE", s0.file << " has no module " << m.name << " (present in " << s.file << ")",
                     (Where{s0.file, m.name, "", -1, -1}), "combine adapters with the same target modules");
    }
    int Rsum = 0, Rmax = 0;
    for (const AdapterSource& s : srcs) Rsum += s.total_rank(), Rmax = std::max(Rmax, s.total_rank());
    int k = Rsum;
    bool exact = true;
    if (o.mode == "linear") {
        for (const AdapterSource& s : srcs)
            HQ_CHECK(s.total_rank() == s0.total_rank(), "E_CONFIG",
                     "linear combination needs equal ranks: " << s.file << " has " << s.total_rank() << ", " << s0.file
                                                              << " has " << s0.total_rank(),
                     (Where{s.file, "", "mode", -1, -1}), "use --mode concat or --mode svd");
        for (double w : wts)
            HQ_CHECK(w >= 0, "E_CONFIG", "linear combination needs weights >= 0 (got " << w << ")",
                     (Where{"", "", "weights", -1, -1}), "use --mode concat or svd for negative weights");
        k = s0.total_rank();
        exact = srcs.size() == 1;
    } else if (o.mode == "svd") {
        HQ_CHECK(o.rank >= 0, "E_CONFIG", "rank " << o.rank << " < 0", (Where{"", "", "rank", -1, -1}), "");
        k = std::min(Rsum, o.rank > 0 ? o.rank : Rmax);
        exact = false;   // decided per module below: exact iff all discarded singular values are 0
    }
    const std::string base = !o.base_model.empty() ? o.base_model : s0.base_model;
    std::vector<std::string> inputs = o.sources;
    // Phi-3: each fused module holds its projections' results side by side (rank parts·k, block diagonal).
    const std::unique_ptr<ModelConfig> fused = fused_base_config(s0, base);
    const std::vector<PeftModule> layout = peft_layout(s0.modules, fused.get(), k, k);
    return build_dir(o, inputs, [&](const std::string& tmp) {
        StreamingSafetensorsWriter w(path_join(tmp, "adapter_model.safetensors"), peft_decls(layout), {{"format", "pt"}});
        json mods = json::array();
        double max_err = 0.0, min_ret = 1.0;
        std::vector<float> a, b, Acat, Bcat, Ao, Bo, FA, FB;
        const int64_t n = (int64_t)s0.modules.size();
        int64_t mi = 0;
        for (const PeftModule& pm : layout) {
            FA.assign(size_t(pm.rank) * size_t(pm.in), 0.0f);
            FB.assign(size_t(pm.out) * size_t(pm.rank), 0.0f);
            for (size_t part = 0; part < pm.parts.size(); part++, mi++) {
                const SourceModule& m = *pm.parts[part].first;
                const int64_t row0 = pm.parts[part].second;
                // This projection's A [k, in] and B [out, k] into rows [part·k, (part+1)·k) of lora_A and rows
                // [row0, row0 + out) × columns [part·k, (part+1)·k) of lora_B.
                auto place = [&](const std::vector<float>& A, const std::vector<float>& B) {
                    std::copy(A.begin(), A.end(), FA.begin() + int64_t(part) * k * pm.in);
                    for (int64_t r = 0; r < m.out; r++)
                        std::copy(B.begin() + r * k, B.begin() + (r + 1) * k,
                                  FB.begin() + (row0 + r) * pm.rank + int64_t(part) * k);
                };
                export_check_cancel(o, m.name);
                // Exact weighted sum as one product: Acat [Rsum, in] = concat_rows(w_i·A_i), Bcat [out, Rsum].
                Acat.assign(size_t(Rsum) * m.in, 0.0f);
                Bcat.assign(size_t(m.out) * Rsum, 0.0f);
                if (o.mode == "linear") {
                    Ao.assign(size_t(k) * m.in, 0.0f);
                    Bo.assign(size_t(m.out) * k, 0.0f);
                }
                int off = 0;
                for (size_t i = 0; i < srcs.size(); i++) {
                    const SourceModule* sm = srcs[i].find(m.name);
                    const int Ri = srcs[i].total_rank();
                    srcs[i].read_flat(*sm, &a, &b);
                    for (size_t e = 0; e < a.size(); e++) Acat[size_t(off) * m.in + e] = float(wts[i]) * a[e];
                    for (int r = 0; r < m.out; r++)
                        for (int c = 0; c < Ri; c++) Bcat[size_t(r) * Rsum + off + c] = b[size_t(r) * Ri + c];
                    if (o.mode == "linear") {
                        const float sw = float(std::sqrt(wts[i]));
                        for (size_t e = 0; e < a.size(); e++) Ao[e] += sw * a[e];
                        for (size_t e = 0; e < b.size(); e++) Bo[e] += sw * b[e];
                    }
                    off += Ri;
                }
                json ms = {{"module", m.name}};
                if (o.mode == "concat") {
                    place(Acat, Bcat);
                } else {
                    double sq = 0, refmax = 0;
                    if (o.mode == "svd") {
                        LowRankSVD s = lowrank_svd(Bcat.data(), Acat.data(), m.out, m.in, Rsum, k);
                        ms["retained_energy"] = s.retained();
                        min_ret = std::min(min_ret, s.retained());
                        Ao = std::move(s.A);
                        Bo = std::move(s.B);
                    }
                    const double me = max_abs_diff_products(Bcat.data(), Acat.data(), Rsum, Bo.data(), Ao.data(), k, m.out,
                                                            m.in, &sq, &refmax);
                    ms["max_abs_error"] = me;
                    ms["frob_error"] = std::sqrt(sq);
                    ms["delta_max_abs"] = refmax;
                    max_err = std::max(max_err, me);
                    place(Ao, Bo);
                    mods.push_back(ms);
                }
                export_report(o, "merge", mi + 1, n, m.name);
            }
            w.write_f32(peft_key(pm.name, 'A'), FA.data(), FA.size());
            w.write_f32(peft_key(pm.name, 'B'), FB.data(), FB.size());
        }
        w.finish();
        write_file_atomic(path_join(tmp, "adapter_config.json"), peft_layout_config(layout, k, base).dump(2) + "\n");
        if (o.mode == "svd") exact = min_ret >= 1.0 - 1e-9;
        json rep = {{"operation", "combine"}, {"format", "peft"}, {"mode", o.mode}, {"sources", o.sources},
                    {"weights", wts}, {"rank", k}, {"exact", exact}, {"n_modules", n}, {"trainer_version", HQ_VERSION}};
        if (o.mode != "concat") {
            rep["error_vs_weighted_sum"] = {{"max_abs_error", max_err}};
            if (o.mode == "svd") rep["error_vs_weighted_sum"]["min_retained_energy"] = min_ret;
            rep["modules"] = mods;
        }
        std::vector<WeightedSource> refs;
        for (size_t i = 0; i < srcs.size(); i++) refs.push_back({&srcs[i], wts[i]});
        rep["verification"] = verify_peft(o, base, effective_quant(o, s0), refs, tmp, exact);
        rep["elapsed_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return rep;
    });
}

std::string export_summary(const json& r) {
    std::ostringstream os;
    os << r.value("operation", std::string("export")) << " -> " << r.value("output", std::string("?"));
    if (r.contains("svd")) os << "; svd rank " << r["rank"] << ": min retained energy " << r["svd"]["min_retained_energy"]
                              << ", max |ΔW error| " << r["svd"]["max_abs_error"];
    if (r.contains("nf4_gap")) os << "; NF4 gap max |W - deq(W)| " << r["nf4_gap"]["max_abs"];
    if (r.contains("verification")) {
        const json& v = r["verification"];
        const std::string st = v.value("status", std::string("?"));
        os << "\nverify: " << (st == "pass" ? "PASS" : st == "fail" ? "FAIL" : "SKIPPED");
        if (v.contains("max_abs_diff"))
            os << " max |Δlogit| " << v["max_abs_diff"].get<double>() << " mean " << v["mean_abs_diff"].get<double>()
               << " (tolerance " << v["tolerance"].get<double>() << (v.value("exact", true) ? "" : ", lossy export") << ")";
        if (v.contains("reason")) os << " (" << v["reason"].get<std::string>() << ")";
        if (v.contains("vs_trainer_nf4"))
            os << "\n        vs the NF4 model the adapter was trained on: max |Δlogit| "
               << v["vs_trainer_nf4"]["max_abs_diff"].get<double>() << " (the original-vs-dequantized gap)";
    }
    return os.str();
}

}  // namespace hq
