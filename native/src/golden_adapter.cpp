// golden_adapter.cpp — hierarchical adapter folder from a golden file (see golden_adapter.h).
#include "golden_adapter.h"

#include <nlohmann/json.hpp>

#include "error.h"
#include "fsutil.h"
#include "model_config.h"
#include "safetensors.h"

namespace hq {

std::string write_adapter_from_golden(const std::string& golden_file, const std::string& base_dir,
                                      const std::string& prefix, const std::string& out_dir) {
    auto g = SafeTensorsFile::open(golden_file);
    SafeTensorsWriter w;
    const std::string marker = ".levels.";
    for (const TensorInfo& t : g->tensors()) {
        if (t.name.compare(0, prefix.size(), prefix) != 0) continue;
        const std::string rest = t.name.substr(prefix.size());
        if (rest.compare(0, 13, "model.layers.") != 0 || rest.find(marker) == std::string::npos) continue;
        const std::vector<float> v = g->read_f32(t.name);
        w.add_f32(rest, t.shape, v.data());
    }
    HQ_CHECK(w.size() > 0, "E_SAFETENSORS", golden_file << " has no adapter tensors with prefix '" << prefix << "'",
             (Where{golden_file, "", "", -1, -1}), "regenerate the golden files");
    for (const char* k : {"hqlora.levels", "hqlora.target_modules", "hqlora.rslora"}) {
        auto it = g->metadata().find(k);
        HQ_CHECK(it != g->metadata().end(), "E_SAFETENSORS", golden_file << " lacks metadata " << k,
                 (Where{golden_file, "__metadata__", "", -1, -1}), "regenerate the golden files");
        w.set_metadata(k, it->second);
    }
    w.set_metadata("format", "pt");
    w.set_metadata("hqlora.version", "1");
    const ModelConfig cfg = load_model_config(base_dir);
    nlohmann::json meta = {
        {"format", "hqlora-adapter"}, {"version", 1},
        {"levels", nlohmann::json::parse(g->metadata().at("hqlora.levels"))},
        {"target_modules", nlohmann::json::parse(g->metadata().at("hqlora.target_modules"))},
        {"rslora", g->metadata().at("hqlora.rslora") == "true"},
        {"base_model", {{"path", base_dir}, {"architecture", cfg.model_type}, {"config_sha256", nullptr}}},
        {"training", {{"steps", prefix.empty() ? 0 : 20}, {"final_loss", nullptr}, {"tokens", nullptr}}},
        {"created", "golden"}, {"trainer_version", "golden"}};
    make_dirs(parent_dir(out_dir));
    const std::string tmp = temp_sibling(out_dir);
    try {
        make_dirs(tmp);
        w.write_atomic(path_join(tmp, "adapter.safetensors"));
        write_file_atomic(path_join(tmp, "adapter_metadata.json"), meta.dump(2) + "\n");
        publish_dir(tmp, out_dir);
    } catch (...) {
        remove_all(tmp);
        throw;
    }
    return path_join(out_dir, "adapter.safetensors");
}

}  // namespace hq
