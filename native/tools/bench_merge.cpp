// bench_merge.cpp — `npm run bench:merge` (issue 6): merge-into-base throughput on a generated 7B-shaped model
// (LLaMA-2-7B shapes: hidden 4096, intermediate 11008, 32 heads, vocab 32000; random BF16 weights written as
// safetensors; --layers of them, default 2 to fit small disks), beside a plain copy of the same bytes measured in
// the same run, with the peak resident memory of each phase.
//   bench_merge [--layers N] [--dir DIR] [--dtype bf16|fp16|fp32] [--base dequantized|original] [--keep]
// Adapter: levels 32,8,8,8,8 (R = 64, alpha 16) on all seven projections, random A and B.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "error.h"
#include "fsutil.h"
#include "merge.h"
#include "safetensors.h"
#include "st_stream.h"

using namespace hq;

static size_t vm_hwm_mb() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::stoul(line.substr(6)) / 1024;
    return 0;
}
static void reset_hwm() {
    std::ofstream cr("/proc/self/clear_refs");
    cr << "5";
}
static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Plain copy: read + write + fsync in 8 MiB chunks (what a merge must at least do).
static uint64_t copy_file(const std::string& from, const std::string& to) {
    const int in = ::open(from.c_str(), O_RDONLY), out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    HQ_CHECK(in >= 0 && out >= 0, "E_IO", "cannot copy " << from << " to " << to, (Where{from, "", "", -1, -1}), "");
    std::vector<char> buf(size_t(8) << 20);
    uint64_t n = 0;
    for (ssize_t r; (r = ::read(in, buf.data(), buf.size())) > 0; n += uint64_t(r))
        HQ_CHECK(::write(out, buf.data(), size_t(r)) == r, "E_IO", "write " << to, (Where{to, "", "", -1, -1}), "disk full?");
    ::fsync(out);
    ::close(in);
    ::close(out);
    return n;
}

int main(int argc, char** argv) {
    int layers = 2;
    std::string dir = "/tmp", dtype = "bf16", base = "dequantized";
    bool keep = false;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        auto val = [&]() { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
        if (a == "--layers") layers = std::atoi(val().c_str());
        else if (a == "--dir") dir = val();
        else if (a == "--dtype") dtype = val();
        else if (a == "--base") base = val();
        else if (a == "--keep") keep = true;
        else {
            std::fprintf(stderr, "usage: bench_merge [--layers N (2)] [--dir DIR (/tmp)] [--dtype bf16|fp16|fp32 (bf16)] "
                                 "[--base dequantized|original (dequantized)] [--keep]\n");
            return 2;
        }
    }
    const int C = 4096, F = 11008, H = 32, V = 32000, R = 64;
    const std::string root = path_join(dir, "hq-bench-merge-" + std::to_string(::getpid()));
    try {
        const std::string md = path_join(root, "model"), ad = path_join(root, "adapter");
        make_dirs(md);
        make_dirs(ad);
        nlohmann::json cfg = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", C},
                              {"intermediate_size", F}, {"num_hidden_layers", layers}, {"num_attention_heads", H},
                              {"num_key_value_heads", H}, {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0},
                              {"max_position_embeddings", 4096}, {"tie_word_embeddings", false}, {"hidden_act", "silu"},
                              {"vocab_size", V}, {"bos_token_id", 1}, {"eos_token_id", 2}, {"torch_dtype", "bfloat16"}};
        write_file_atomic(path_join(md, "config.json"), cfg.dump(2));
        std::vector<TensorDecl> decls;
        auto add = [&](const std::string& n, std::vector<int64_t> s) { decls.push_back({n, DType::BF16, s}); };
        add("model.embed_tokens.weight", {V, C});
        add("lm_head.weight", {V, C});
        add("model.norm.weight", {C});
        const char* attn[] = {"q_proj", "k_proj", "v_proj", "o_proj"};
        for (int l = 0; l < layers; l++) {
            const std::string p = "model.layers." + std::to_string(l) + ".";
            add(p + "input_layernorm.weight", {C});
            add(p + "post_attention_layernorm.weight", {C});
            for (const char* a : attn) add(p + "self_attn." + a + ".weight", {C, C});
            add(p + "mlp.gate_proj.weight", {F, C});
            add(p + "mlp.up_proj.weight", {F, C});
            add(p + "mlp.down_proj.weight", {C, F});
        }
        std::fprintf(stderr, "bench_merge: generating a 7B-shaped model with %d layers in %s ...\n", layers, md.c_str());
        std::mt19937 rng(1);
        std::normal_distribution<float> nd(0.0f, 0.02f);
        {
            StreamingSafetensorsWriter w(path_join(md, "model.safetensors"), decls, {{"format", "pt"}});
            std::vector<float> buf;
            for (const TensorDecl& d : decls) {
                buf.resize(d.bytes() / 2);
                // A cheap deterministic pattern (a normal draw per 4096 values, then a linear walk) keeps generation fast.
                for (size_t i = 0; i < buf.size(); i++) buf[i] = (i % 4096 == 0 ? nd(rng) : buf[i - 1] * 0.999f + 1e-5f * float(i % 7));
                w.write_f32(d.name, buf.data(), buf.size());
            }
            w.finish();
        }
        SafeTensorsWriter aw;
        std::uniform_real_distribution<float> ud(-0.01f, 0.01f);
        for (const TensorDecl& d : decls) {
            const size_t p = d.name.find("_proj.weight");
            if (p == std::string::npos) continue;
            const std::string mod = d.name.substr(0, p + 5);
            int off = 0;
            for (int j = 0; j < 5; j++) {
                const int r = j == 0 ? 32 : 8;
                std::vector<float> a(size_t(r) * d.shape[1]), b(size_t(d.shape[0]) * r);
                for (float& v : a) v = ud(rng);
                for (float& v : b) v = ud(rng);
                aw.add_f32(mod + ".levels." + std::to_string(j) + ".lora_A.weight", {r, d.shape[1]}, a.data());
                aw.add_f32(mod + ".levels." + std::to_string(j) + ".lora_B.weight", {d.shape[0], r}, b.data());
                off += r;
            }
        }
        aw.set_metadata("hqlora.levels", R"([{"rank":32,"alpha":16},{"rank":8,"alpha":16},{"rank":8,"alpha":16},{"rank":8,"alpha":16},{"rank":8,"alpha":16}])");
        aw.set_metadata("hqlora.rslora", "false");
        aw.write_atomic(path_join(ad, "adapter.safetensors"));
        const uint64_t in_bytes = file_size(path_join(md, "model.safetensors"));

        ::sync();
        reset_hwm();
        double t0 = now();
        const uint64_t copied = copy_file(path_join(md, "model.safetensors"), path_join(root, "copy.safetensors"));
        const double t_copy = now() - t0;
        const size_t rss_copy = vm_hwm_mb();
        remove_all(path_join(root, "copy.safetensors"));

        ::sync();
        reset_hwm();
        MergeIntoBaseOptions o;
        o.source = ad;
        o.base_model = md;
        o.base = base;
        o.dtype = dtype;
        o.out_dir = path_join(root, "merged");
        o.verify = false;
        t0 = now();
        const nlohmann::json rep = merge_into_base(o);
        const double t_merge = now() - t0;
        const size_t rss_merge = vm_hwm_mb();
        const double out_bytes = rep["total_bytes"].get<double>();
        const double copy_mbs = double(copied) / 1e6 / t_copy, merge_mbs = out_bytes / 1e6 / t_merge;
        std::printf("bench_merge: 7B-shaped model, %d layers, %.0f MB BF16 in, adapter R=%d on all 7 projections, "
                    "base=%s, out %s\n", layers, double(in_bytes) / 1e6, R, base.c_str(), dtype.c_str());
        std::printf("  plain copy : %8.1f MB/s  (%.0f MB in %.2f s, peak RSS %zu MiB)\n", copy_mbs, double(copied) / 1e6,
                    t_copy, rss_copy);
        std::printf("  merge      : %8.1f MB/s  (%.0f MB written in %.2f s, %d shards, peak RSS %zu MiB)\n", merge_mbs,
                    out_bytes / 1e6, t_merge, rep["shards"].get<int>(), rss_merge);
        std::printf("  ratio merge/copy: %.2f (goal >= 0.8)\n", merge_mbs / copy_mbs);
        if (rep.contains("timing")) {
            std::printf("  merge phases (s):");
            for (auto it = rep["timing"].begin(); it != rep["timing"].end(); ++it)
                std::printf(" %s %.2f", it.key().c_str(), it.value().get<double>());
            std::printf("\n");
        }
    } catch (const Error& e) {
        std::fprintf(stderr, "bench_merge: %s [%s] %s\n", e.what(), e.code().c_str(), e.hint().c_str());
        if (!keep) remove_all(root);
        return 1;
    }
    if (!keep) remove_all(root);
    return 0;
}
