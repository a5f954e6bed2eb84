// inspect.cpp — `hqlora-train inspect`: validates a safetensors file or a model folder and describes it as JSON.
#include "inspect.h"

#include "error.h"
#include "fsutil.h"
#include "model_config.h"
#include "safetensors.h"

namespace hq {

using nlohmann::json;

namespace {

json tensor_json(const SafeTensorsFile& f, const TensorInfo& t) {
    return json{{"name", t.name},
                {"dtype", dtype_name(t.dtype)},
                {"shape", t.shape},
                {"offset", f.data_start() + t.begin},  // absolute byte offset of the data in the file
                {"bytes", t.end - t.begin}};
}

json file_json(const SafeTensorsFile& f) {
    json tensors = json::array();
    for (const auto& t : f.tensors()) tensors.push_back(tensor_json(f, t));
    return json{{"file", f.path()}, {"header_bytes", f.header_size()}, {"metadata", f.metadata()},
                {"tensors", tensors}};
}

const char* family_name(Arch a) {
    switch (a) {
        case Arch::Llama: return "LLaMA 1/2/3";
        case Arch::Gemma: return "Gemma 1";
        case Arch::Qwen2: return "Qwen2/2.5";
        case Arch::Qwen3: return "Qwen3 (dense)";
        case Arch::Mistral: return "Mistral";
        case Arch::Gemma2: return "Gemma-2";
        case Arch::Gemma3: return "Gemma-3 (text)";
        case Arch::Phi3: return "Phi-3";
    }
    return "?";
}

json config_summary(const ModelConfig& c) {
    return json{{"architecture", arch_model_type(c.arch)},
                {"model_type", c.model_type},
                {"family", family_name(c.arch)},
                {"features", c.features()},
                {"cuda", c.cuda_missing_features().empty() ? json("supported")
                                                           : json("not yet: " + c.cuda_missing_features())},
                {"vocab_size", c.vocab_size},
                {"hidden_size", c.hidden_size},
                {"intermediate_size", c.intermediate_size},
                {"num_layers", c.num_layers},
                {"num_heads", c.num_heads},
                {"num_kv_heads", c.num_kv_heads},
                {"head_dim", c.head_dim},
                {"rms_norm_eps", c.rms_norm_eps},
                {"rope_theta", c.rope_theta},
                {"rope_scaling", c.rope_scaling.type.empty() ? json(nullptr) : json(c.rope_scaling.type)},
                {"max_position_embeddings", c.max_position_embeddings},
                {"tie_word_embeddings", c.tie_word_embeddings},
                {"hidden_act", c.hidden_act},
                {"torch_dtype", c.torch_dtype}};
}

}  // namespace

json inspect_path(const std::string& path) {
    if (!is_directory(path)) return file_json(*SafeTensorsFile::open(path));

    json out = {{"dir", path}};
    const std::string cfg_path = path_join(path, "config.json");
    if (path_exists(cfg_path)) {
        // Supported architectures get the parsed summary; anything else still gets listed, with the raw config and
        // the reason it would not train.
        try {
            out["config"] = config_summary(load_model_config(path));
            out["supported"] = true;
        } catch (const Error& e) {
            try {
                out["config"] = json::parse(read_file(cfg_path));
            } catch (const json::exception&) {
                out["config"] = nullptr;
            }
            out["supported"] = false;
            out["config_error"] = {{"code", e.code()}, {"message", e.what()}, {"hint", e.hint()}};
        }
    } else {
        out["config"] = nullptr;
        out["supported"] = false;
    }
    ModelWeights mw = ModelWeights::open_dir(path);
    out["index"] = mw.index_path().empty() ? json(nullptr) : json(mw.index_path());
    json shards = json::array(), tensors = json::array();
    uint64_t total = 0;
    for (const auto& f : mw.files()) {
        shards.push_back({{"file", f->path()}, {"header_bytes", f->header_size()}, {"metadata", f->metadata()},
                          {"n_tensors", f->tensors().size()}, {"bytes", f->file_size()}});
        for (const auto& t : f->tensors()) {
            json tj = tensor_json(*f, t);
            tj["file"] = base_name(f->path());
            tensors.push_back(std::move(tj));
            total += t.end - t.begin;
        }
    }
    out["shards"] = shards;
    out["n_tensors"] = tensors.size();
    out["total_bytes"] = total;
    out["tensors"] = tensors;
    return out;
}

}  // namespace hq
