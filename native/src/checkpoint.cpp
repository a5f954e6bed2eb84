// checkpoint.cpp — temp folder + fsync + rename checkpoints, keep-K pruning, resume discovery and loading.
#include "checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "adapter_io.h"
#include "error.h"
#include "fsutil.h"
#include "safetensors.h"

namespace hq {

namespace {

const char* kCkptHint = "delete this checkpoint folder to resume from an older one, or start a new run";

// "step-000123" -> 123; -1 when the name is not a checkpoint folder name.
int64_t parse_step_name(const std::string& name) {
    if (name.size() < 6 || name.compare(0, 5, "step-") != 0) return -1;
    int64_t s = 0;
    for (size_t i = 5; i < name.size(); ++i) {
        if (name[i] < '0' || name[i] > '9') return -1;
        s = s * 10 + (name[i] - '0');
        if (s > (int64_t(1) << 50)) return -1;
    }
    return s;
}

[[noreturn]] void ckpt_fail(const std::string& file, const std::string& tensor, const std::string& msg) {
    Where w;
    w.file = file;
    w.tensor = tensor;
    throw Error("E_CHECKPOINT", msg, w, kCkptHint);
}

}  // namespace

std::string checkpoint_dir_name(int64_t step) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "step-%06lld", static_cast<long long>(step));
    return buf;
}

std::vector<CheckpointRef> list_checkpoints(const std::string& ckpt_dir) {
    std::vector<CheckpointRef> out;
    if (!is_directory(ckpt_dir)) return out;
    for (const std::string& name : list_dir(ckpt_dir)) {
        int64_t step = parse_step_name(name);
        std::string p = path_join(ckpt_dir, name);
        if (step < 0 || !is_directory(p) || !path_exists(path_join(p, "state.json"))) continue;
        out.push_back({step, p});
    }
    std::sort(out.begin(), out.end(), [](const CheckpointRef& a, const CheckpointRef& b) { return a.step < b.step; });
    return out;
}

std::optional<CheckpointRef> find_resume_checkpoint(const std::string& ckpt_dir) {
    if (!is_directory(ckpt_dir)) return std::nullopt;
    for (const std::string& name : list_dir(ckpt_dir))
        if (name.compare(0, 5, ".tmp-") == 0) remove_all(path_join(ckpt_dir, name));
    auto all = list_checkpoints(ckpt_dir);
    if (all.empty()) return std::nullopt;
    return all.back();
}

SavedCheckpoint save_checkpoint(const std::string& ckpt_dir, int64_t step, Model& model, const AdamW& opt,
                                nlohmann::json state, int keep) {
    HQ_ASSERT(!opt.sharded());   // ZeRO-1: the trainer gathers the full optimizer state first
    make_dirs(ckpt_dir);
    const std::string name = checkpoint_dir_name(step);
    const std::string final_dir = path_join(ckpt_dir, name);
    // Built in a ".tmp-*" sibling (ignored and removed by find_resume_checkpoint) and renamed into place; a failure
    // (a full disk, say) removes the partial folder.
    write_dir_atomic(final_dir, [&](const std::string& tmp) {
        // adapter.safetensors: hierarchical layout, loadable by load_hierarchical_adapter and `inspect`.
        SafeTensorsWriter aw;
        add_hierarchical_tensors(model, aw);
        aw.set_metadata("format", "pt");
        aw.set_metadata("hqlora.checkpoint_step", std::to_string(step));
        aw.write_atomic(path_join(tmp, "adapter.safetensors"));

        // optimizer.safetensors: exact fp32 m/v of every trainable tensor.
        SafeTensorsWriter ow;
        std::vector<Param>& params = const_cast<AdamW&>(opt).params();
        for (size_t i = 0; i < params.size(); ++i) {
            ow.add_f32("m." + params[i].name, params[i].shape, opt.m[i].data());
            ow.add_f32("v." + params[i].name, params[i].shape, opt.v[i].data());
        }
        ow.set_metadata("format", "pt");
        ow.set_metadata("adam_t", std::to_string(opt.t));
        ow.write_atomic(path_join(tmp, "optimizer.safetensors"));

        state["step"] = step;
        state["optimizer"] = {{"t", opt.t}, {"type", "adamw"}};
        state["files"] = {"adapter.safetensors", "optimizer.safetensors"};
        write_file_atomic(path_join(tmp, "state.json"), state.dump(2) + "\n");  // last: marks completeness
    });

    SavedCheckpoint out;
    out.path = final_dir;
    for (const std::string& f : list_dir(final_dir)) out.bytes += file_size(path_join(final_dir, f));

    // Keep-K counts and prunes the checkpoints written on their own; "requested" ones (save now) stay until the user
    // removes them.
    std::vector<CheckpointRef> all;
    const std::vector<CheckpointRef> listed = list_checkpoints(ckpt_dir);
    for (const CheckpointRef& c : listed) {
        bool requested = false;
        try {
            requested = read_checkpoint_state(c.path).value("reason", "") == "requested";
        } catch (...) {   // unreadable state: treat as an ordinary checkpoint
        }
        if (!requested) all.push_back(c);
    }
    size_t n_remove = (keep > 0 && all.size() > static_cast<size_t>(keep)) ? all.size() - keep : 0;
    for (size_t i = 0; i < all.size(); ++i) {
        if (i < n_remove && all[i].path != final_dir) {
            const std::string doomed = path_join(ckpt_dir, ".tmp-del-" + base_name(all[i].path));
            remove_all(doomed);
            rename_atomic(all[i].path, doomed);
            remove_all(doomed);
            out.removed.push_back(all[i].path);
        }
    }
    for (const CheckpointRef& c : listed)   // in step order, the requested ones included
        if (std::find(out.removed.begin(), out.removed.end(), c.path) == out.removed.end()) out.kept.push_back(c.path);
    return out;
}

nlohmann::json read_checkpoint_state(const std::string& path) {
    const std::string file = path_join(path, "state.json");
    if (!path_exists(file)) ckpt_fail(file, "", HQ_MSG(path << " is not a complete checkpoint (no state.json)"));
    try {
        nlohmann::json s = nlohmann::json::parse(read_file(file));
        if (!s.is_object() || !s.contains("step") || !s["step"].is_number_integer())
            ckpt_fail(file, "", HQ_MSG(file << " has no integer \"step\""));
        return s;
    } catch (const nlohmann::json::exception& e) {
        ckpt_fail(file, "", HQ_MSG(file << " is not valid JSON: " << e.what()));
    }
}

void check_checkpoint_compat(const nlohmann::json& state, const nlohmann::json& expected,
                             const std::string& checkpoint_path) {
    static const std::pair<const char*, const char*> kKeys[] = {{"model", "model.path"},
                                                                {"quantization", "quantization"},
                                                                {"levels", "adapter.levels"},
                                                                {"target_modules", "adapter.target_modules"},
                                                                {"rslora", "adapter.rslora"}};
    const std::string file = path_join(checkpoint_path, "state.json");
    const nlohmann::json got = state.value("compat", nlohmann::json::object());
    for (const auto& [k, cfg_key] : kKeys) {
        const nlohmann::json want = expected.value(k, nlohmann::json());
        const nlohmann::json have = got.value(k, nlohmann::json());
        if (want != have) {
            Where w;
            w.file = file;
            w.key = cfg_key;
            throw Error("E_CHECKPOINT",
                        HQ_MSG("checkpoint " << checkpoint_path << " was made with " << cfg_key << " = " << have.dump()
                                             << " but run.json has " << want.dump()),
                        w, "resume with the configuration the run was started with, or start a new run (new run_name)");
        }
    }
}

nlohmann::json load_checkpoint(const std::string& path, Model& model, AdamW& opt) {
    nlohmann::json state = read_checkpoint_state(path);
    load_hierarchical_adapter(model, path_join(path, "adapter.safetensors"));

    const std::string ofile = path_join(path, "optimizer.safetensors");
    auto f = SafeTensorsFile::open(ofile);
    std::vector<Param>& params = opt.params();
    for (size_t i = 0; i < params.size(); ++i) {
        for (int which = 0; which < 2; ++which) {
            const std::string name = (which ? "v." : "m.") + params[i].name;
            const TensorInfo* t = f->find(name);
            if (!t) ckpt_fail(ofile, name, HQ_MSG(ofile << " has no tensor " << name));
            if (t->shape != params[i].shape || t->dtype != DType::F32)
                ckpt_fail(ofile, name, HQ_MSG(ofile << ": tensor " << name << " has another shape/dtype than the "
                                                    "parameter (dtype " << dtype_name(t->dtype) << ")"));
            f->read_f32_into(name, (which ? opt.v[i] : opt.m[i]).data(), params[i].numel);
        }
    }
    auto it = f->metadata().find("adam_t");
    int64_t t = state.value("optimizer", nlohmann::json::object()).value("t", int64_t(-1));
    if (it == f->metadata().end() || std::to_string(t) != it->second)
        ckpt_fail(ofile, "", HQ_MSG(ofile << ": optimizer step count (adam_t) is missing or disagrees with state.json"));
    opt.t = t;
    return state;
}

}  // namespace hq
