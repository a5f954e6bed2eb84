// make_peft_inputs.cpp — inputs of the PEFT compatibility proof (test/reference/peft_check.py), written by OUR
// export code so that the proof covers it:
//   <out>/<model>/peft/       flat PEFT adapter (merge_levels, exact) of the golden adapter (B != 0)
//   <out>/<model>/merged/     fp32 HF model: NF4-dequantized base + that adapter (merge_into_base --base dequantized)
//   <out>/<model>/base-deq/   fp32 HF model: NF4-dequantized base alone (merge of an all-zero adapter)
//   <out>/<model>/ids.json    the token ids (verify_ids) the script runs
// usage: make_peft_inputs <repo-root> <out-dir> [model,...]   (default tiny-llama,tiny-llama3,tiny-gemma)
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "error.h"
#include "export_verify.h"
#include "fsutil.h"
#include "golden_adapter.h"
#include "merge.h"
#include "model_config.h"
#include "safetensors.h"

using namespace hq;

static void zero_adapter(const std::string& adapter_dir, const std::string& out_dir) {
    auto f = SafeTensorsFile::open(path_join(adapter_dir, "adapter.safetensors"));
    SafeTensorsWriter w;
    for (const TensorInfo& t : f->tensors()) {
        std::vector<float> v(size_t(t.numel()), 0.0f);
        w.add_f32(t.name, t.shape, v.data());
    }
    for (const auto& [k, v] : f->metadata()) w.set_metadata(k, v);
    make_dirs(out_dir);
    w.write_atomic(path_join(out_dir, "adapter.safetensors"));
    write_file_atomic(path_join(out_dir, "adapter_metadata.json"), read_file(path_join(adapter_dir, "adapter_metadata.json")));
}

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: make_peft_inputs <repo-root> <out-dir> [model,...]\n");
        return 2;
    }
    const std::string root = argv[1], out = argv[2];
    std::vector<std::string> models = {"tiny-llama", "tiny-llama3", "tiny-gemma"};
    if (argc > 3) {
        models.clear();
        std::stringstream ss(argv[3]);
        for (std::string m; std::getline(ss, m, ',');) models.push_back(m);
    }
    try {
        remove_all(out);
        for (const std::string& m : models) {
            const std::string fixture = path_join(root, "test/fixtures/models/" + m);
            const std::string d = path_join(out, m);
            const std::string adapter = path_join(d, "work/adapter");
            write_adapter_from_golden(path_join(root, "test/golden/" + m + ".safetensors"), fixture, "", adapter);
            MergeLevelsOptions ml;
            ml.source = adapter;
            ml.out_dir = path_join(d, "peft");
            std::printf("%s\n", export_summary(merge_levels(ml)).c_str());
            MergeIntoBaseOptions mb;
            mb.source = adapter;
            mb.base = "dequantized";
            mb.dtype = "fp32";
            mb.out_dir = path_join(d, "merged");
            std::printf("%s\n", export_summary(merge_into_base(mb)).c_str());
            zero_adapter(adapter, path_join(d, "work/zero"));
            mb.source = path_join(d, "work/zero");
            mb.out_dir = path_join(d, "base-deq");
            std::printf("%s\n", export_summary(merge_into_base(mb)).c_str());
            remove_all(path_join(d, "work"));
            const ModelConfig cfg = load_model_config(fixture);
            nlohmann::json ids = {{"shape", {kVerifyBatch, kVerifySeq}}, {"ids", verify_ids(cfg.vocab_size, cfg.bos_token_id)}};
            write_file_atomic(path_join(d, "ids.json"), ids.dump() + "\n");
        }
    } catch (const Error& e) {
        std::fprintf(stderr, "make_peft_inputs: %s [%s] %s\n", e.what(), e.code().c_str(), e.hint().c_str());
        return 1;
    }
    return 0;
}
