// bench_cpu.cpp — CPU throughput of the trainer against the machine's sgemm ceiling.
//
// Prints (1) OpenBLAS sgemm GFLOP/s for shapes the trainer uses (threads = all cores), (2) trainer tokens/s for
// fwd+bwd micro-batches (B=1, seq 256, NF4 base, hierarchical ranks 32,8,8,8,8, gradient checkpointing) on
// (a) test/fixtures/models/tiny-llama and (b) a ~100M-parameter LLaMA shape (hidden 768, 12 layers, 12 heads,
// intermediate 2048, vocab 32000, tied embeddings) with random bf16 weights written to a temp folder.
// Model FLOPs per token (frozen base: forward 2·N + input-gradient 2·N; adapters: forward 2, input-grad 2,
// weight-grad 2): F = 4·N_base + 6·N_adapter, N_base = Σ projection weights + vocab·hidden (lm_head);
// attention-score FLOPs and the NF4 dequantization are not counted. Reported: achieved F·tokens/s and its ratio
// to the best sgemm GFLOP/s. The last line is one JSON object with every number.
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dtype.h"
#include "error.h"
#include "fsutil.h"
#include "model.h"
#include "safetensors.h"

using namespace hq;
using Clock = std::chrono::steady_clock;

namespace {

double secs(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void usage() {
    std::fprintf(stderr,
                 "usage: bench_cpu [--threads N] [--steps N] [--seq N] [--fixture DIR] [--skip-100m]\n"
                 "  --threads N   BLAS/OpenMP threads            (default: all cores)\n"
                 "  --steps N     timed fwd+bwd steps per model   (default: 2, after 1 warm-up)\n"
                 "  --seq N       tokens per micro-batch          (default: 256; capped by the model)\n"
                 "  --fixture DIR tiny model folder               (default: test/fixtures/models/tiny-llama,\n"
                 "                relative to the current directory: run from the repository root)\n"
                 "  --skip-100m   only sgemm and the tiny fixture (default: off)\n");
}

// GFLOP/s of C[M,N] = A[M,K]·B[N,K]ᵀ (the layout of x·Wᵀ), repeated for at least ~0.4 s.
double sgemm_gflops(int M, int N, int K) {
    std::vector<float> A(size_t(M) * K, 0.01f), B(size_t(N) * K, 0.02f), C(size_t(M) * N);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, C.data(), N);
    int reps = 0;
    auto t0 = Clock::now();
    do {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, C.data(), N);
        ++reps;
    } while (secs(t0) < 0.4);
    return 2.0 * M * N * K * reps / secs(t0) / 1e9;
}

// Writes a LLaMA model folder with random bf16 weights (std 0.02, norms 1).
void write_llama(const std::string& dir, int hidden, int layers, int heads, int inter, int vocab) {
    make_dirs(dir);
    nlohmann::json cfg = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", hidden},
                          {"intermediate_size", inter}, {"num_hidden_layers", layers}, {"num_attention_heads", heads},
                          {"num_key_value_heads", heads}, {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0},
                          {"max_position_embeddings", 2048}, {"tie_word_embeddings", true}, {"hidden_act", "silu"},
                          {"vocab_size", vocab}, {"bos_token_id", 1}, {"eos_token_id", 2}, {"torch_dtype", "bfloat16"}};
    write_file_atomic(path_join(dir, "config.json"), cfg.dump(2));
    std::mt19937 rng(1234);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    SafeTensorsWriter w;
    auto add = [&](const std::string& name, int64_t rows, int64_t cols, bool ones) {
        std::vector<uint16_t> v(size_t(rows) * cols);
        for (auto& x : v) x = f32_to_bf16(ones ? 1.0f : nd(rng));
        std::vector<int64_t> shape = cols == 1 ? std::vector<int64_t>{rows} : std::vector<int64_t>{rows, cols};
        w.add(name, DType::BF16, shape, v.data(), v.size() * 2);
    };
    add("model.embed_tokens.weight", vocab, hidden, false);
    add("model.norm.weight", hidden, 1, true);
    for (int l = 0; l < layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        add(p + "input_layernorm.weight", hidden, 1, true);
        add(p + "post_attention_layernorm.weight", hidden, 1, true);
        for (const char* m : {"q_proj", "k_proj", "v_proj", "o_proj"}) add(p + "self_attn." + m + ".weight", hidden, hidden, false);
        add(p + "mlp.gate_proj.weight", inter, hidden, false);
        add(p + "mlp.up_proj.weight", inter, hidden, false);
        add(p + "mlp.down_proj.weight", hidden, inter, false);
    }
    w.write_atomic(path_join(dir, "model.safetensors"));
}

struct ModelBench {
    std::string name;
    int64_t n_base = 0, n_adapter = 0;
    int seq = 0;
    double tokens_per_s = 0, model_gflops = 0, load_s = 0;
};

ModelBench bench_model(const std::string& name, const std::string& dir, int seq, int steps) {
    ModelBench r;
    r.name = name;
    AdapterSpec spec;   // ranks 32,8,8,8,8, alpha 16, all seven projections
    QuantSpec quant;    // nf4 + double quant, blocksize 64
    auto t0 = Clock::now();
    std::unique_ptr<Model> m = Model::load(dir, quant, spec, 0);
    r.load_s = secs(t0);
    const ModelConfig& c = m->config();
    r.seq = std::min(seq, c.max_position_embeddings);
    const int64_t C = c.hidden_size, F = c.intermediate_size, hd = c.head_dim;
    r.n_base = c.num_layers * (C * c.num_heads * hd * 2 + C * c.num_kv_heads * hd * 2 + 3 * C * F) +
               int64_t(c.vocab_size) * C;
    for (const Param& p : m->params()) r.n_adapter += static_cast<int64_t>(p.numel);
    m->set_gradient_checkpointing(true);
    m->set_training(true, 0);
    std::mt19937 rng(7);
    std::vector<int32_t> ids(r.seq), labels(r.seq);
    for (int t = 0; t < r.seq; ++t) ids[t] = labels[t] = 3 + static_cast<int32_t>(rng() % (c.vocab_size - 3));
    const float scale = 1.0f / static_cast<float>(r.seq - 1);
    m->zero_grad();
    m->forward_backward(ids.data(), labels.data(), 1, r.seq, true, scale);   // warm-up
    auto t1 = Clock::now();
    for (int s = 0; s < steps; ++s) {
        m->zero_grad();
        m->forward_backward(ids.data(), labels.data(), 1, r.seq, true, scale);
    }
    const double dt = secs(t1);
    r.tokens_per_s = static_cast<double>(r.seq) * steps / dt;
    r.model_gflops = (4.0 * r.n_base + 6.0 * r.n_adapter) * r.tokens_per_s / 1e9;
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    int threads = omp_get_num_procs(), steps = 2, seq = 256;
    bool skip_big = false;
    std::string tiny = "test/fixtures/models/tiny-llama";
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
        else if (a == "--steps" && i + 1 < argc) steps = std::atoi(argv[++i]);
        else if (a == "--seq" && i + 1 < argc) seq = std::atoi(argv[++i]);
        else if (a == "--fixture" && i + 1 < argc) tiny = argv[++i];
        else if (a == "--skip-100m") skip_big = true;
        else { usage(); return a == "--help" || a == "-h" ? 0 : 2; }
    }
    if (threads < 1 || steps < 1 || seq < 2) { usage(); return 2; }
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    nlohmann::json out = {{"threads", threads}, {"flops_formula", "4*N_base + 6*N_adapter per token"}};
    try {
        std::printf("sgemm (OpenBLAS, %d threads), C[M,N] = A[M,K]·B[N,K]^T\n", threads);
        const int shapes[][3] = {{256, 768, 768}, {256, 2048, 768}, {256, 768, 2048}, {256, 4096, 4096}, {1024, 1024, 1024}};
        double best = 0;
        nlohmann::json sg = nlohmann::json::array();
        for (const auto& s : shapes) {
            double g = sgemm_gflops(s[0], s[1], s[2]);
            best = std::max(best, g);
            std::printf("  M=%5d N=%5d K=%5d : %8.1f GFLOP/s\n", s[0], s[1], s[2], g);
            sg.push_back({{"M", s[0]}, {"N", s[1]}, {"K", s[2]}, {"gflops", g}});
        }
        out["sgemm"] = sg;
        out["sgemm_best_gflops"] = best;

        std::vector<ModelBench> runs;
        if (path_exists(tiny + "/config.json")) runs.push_back(bench_model("tiny-llama (fixture)", tiny, seq, steps));
        else std::printf("(fixture %s missing: skipped)\n", tiny.c_str());
        std::string tmp;
        if (!skip_big) {
            char tmpl[] = "/tmp/hq_bench_XXXXXX";
            if (!mkdtemp(tmpl)) throw Error("E_IO", "cannot create a temp folder under /tmp", {}, "check /tmp");
            tmp = tmpl;
            auto t0 = Clock::now();
            write_llama(tmp, 768, 12, 12, 2048, 32000);
            std::printf("wrote random 100M-class LLaMA to %s in %.1f s\n", tmp.c_str(), secs(t0));
            runs.push_back(bench_model("llama-100m (random, hidden 768, 12 layers, vocab 32000)", tmp, seq, steps));
            remove_all(tmp);
        }
        nlohmann::json mj = nlohmann::json::array();
        std::printf("trainer fwd+bwd, B=1, NF4 base, ranks 32,8,8,8,8, gradient checkpointing\n");
        for (const auto& r : runs) {
            std::printf("  %-58s seq %4d | N_base %.1fM N_adapter %.2fM | %8.1f tok/s | %7.2f GFLOP/s = %5.1f%% of sgemm\n",
                        r.name.c_str(), r.seq, r.n_base / 1e6, r.n_adapter / 1e6, r.tokens_per_s, r.model_gflops,
                        100.0 * r.model_gflops / best);
            mj.push_back({{"model", r.name}, {"seq", r.seq}, {"n_base", r.n_base}, {"n_adapter", r.n_adapter},
                          {"load_s", r.load_s}, {"tokens_per_s", r.tokens_per_s}, {"model_gflops", r.model_gflops},
                          {"ratio_to_sgemm", r.model_gflops / best}});
        }
        out["models"] = mj;
        std::printf("%s\n", out.dump().c_str());
    } catch (const Error& e) {
        std::fprintf(stderr, "bench_cpu: %s: %s\n", e.code().c_str(), e.what());
        return 1;
    }
    return 0;
}
