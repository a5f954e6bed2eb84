// test_merge.cpp — adapter export (merge.h): exactness, SVD bounds, merged models, combine, bad input, memory, and
// the PEFT/transformers compatibility proof (test/golden/peft/*.safetensors from test/reference/peft_check.py).
//
// Adapters come from the golden files (golden_adapter.h): the initial adapter (B != 0) and the one after the golden
// 20-step trajectory ("final."), levels 4/2/2 with scales 2/1/3 on all seven projections.
// Tolerances: exact fp32 exports 1e-5 max |Δlogit| (measured ~1e-6); bf16 merged model 1e-1, fp16 2e-2 (weight
// rounding); PEFT proof 1e-5.
#include <doctest/doctest.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "adapter_source.h"
#include "adapter_test_util.h"
#include "error.h"
#include "export_verify.h"
#include "fsutil.h"
#include "golden_adapter.h"
#include "lowrank.h"
#include "merge.h"
#include "model.h"
#include "safetensors.h"
#include "st_stream.h"

using namespace hq;
using nlohmann::json;

namespace {

const std::string kRoot = HQ_REPO_ROOT;
std::string fixture(const std::string& m) { return kRoot + "/test/fixtures/models/" + m; }
std::string golden(const std::string& m) { return kRoot + "/test/golden/" + m + ".safetensors"; }

struct TmpDir : hq_test::TmpDir {
    TmpDir() : hq_test::TmpDir("hq-merge") {}
};
using hq_test::matmul;

// No ".tmp-*" folder and no `name` left in `dir`.
void require_clean(const std::string& dir, const std::string& name) {
    for (const std::string& e : list_dir(dir)) {
        CHECK_MESSAGE(e.rfind(".tmp-", 0) != 0, "temp folder left behind: " << e);
        CHECK_MESSAGE(e != name, "partial output left under the target name: " << e);
    }
}

template <class F>
Error expect_error(F f) {
    try {
        f();
    } catch (const Error& e) {
        return e;
    }
    FAIL("expected an hq::Error");
    return Error("", "");
}

double max_abs(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    double d = 0;
    for (size_t i = 0; i < a.size(); i++) d = std::max(d, std::fabs(double(a[i]) - double(b[i])));
    return d;
}

}  // namespace

TEST_CASE("jacobi_svd and lowrank_svd reconstruct and truncate optimally") {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int out = 40, in = 30, R = 6;
    std::vector<float> B(size_t(out) * R), A(size_t(R) * in);
    for (float& v : B) v = nd(rng);
    for (float& v : A) v = nd(rng);
    B[5] = 0;   // irrelevant zero entry; a fully zero column (rank deficiency) below
    for (int o = 0; o < out; o++) B[size_t(o) * R + 3] = 0.0f;
    const std::vector<float> dW = matmul(B, A, out, R, in);

    LowRankSVD full = lowrank_svd(B.data(), A.data(), out, in, R, R);
    CHECK(full.retained() == doctest::Approx(1.0).epsilon(1e-12));
    CHECK(full.sigma[5] < 1e-9 * full.sigma[0]);   // the zero column makes ΔW rank 5
    double mx = 0;
    for (float v : dW) mx = std::max(mx, double(std::fabs(v)));
    CHECK(max_abs(matmul(full.B, full.A, out, R, in), dW) <= 1e-5 * mx);

    for (int k = 1; k < 5; k++) {
        LowRankSVD t = lowrank_svd(B.data(), A.data(), out, in, R, k);
        double sq = 0;
        const double me = max_abs_diff_products(B.data(), A.data(), R, t.B.data(), t.A.data(), k, out, in, &sq);
        // Eckart–Young: ||ΔW - ΔW_k||_F = sqrt(Σ_{i>=k} σ_i²); max entry <= spectral norm σ_k.
        CHECK(std::sqrt(sq) == doctest::Approx(t.frob_error()).epsilon(1e-4));
        CHECK(me <= t.sigma[size_t(k)] * (1 + 1e-5));
        CHECK(t.retained() < 1.0);
        CHECK(t.retained() > 0.0);
    }
    // Jacobi on a known matrix: singular values of diag(3, 1) rotated.
    const double c = std::cos(0.3), s = std::sin(0.3);
    const double M[4] = {3 * c, -1 * s, 3 * s, 1 * c};
    std::vector<double> U, S, V;
    jacobi_svd(M, 2, 2, &U, &S, &V);
    CHECK(S[0] == doctest::Approx(3.0).epsilon(1e-14));
    CHECK(S[1] == doctest::Approx(1.0).epsilon(1e-14));
}

TEST_CASE("merge levels -> flat PEFT is exact and verifies against the hierarchical forward") {
    for (const std::string m : {"tiny-llama", "tiny-llama3", "tiny-gemma"}) {
        CAPTURE(m);
        TmpDir t;
        const std::string adapter = t / "adapter";
        write_adapter_from_golden(golden(m), fixture(m), "", adapter);
        MergeLevelsOptions o;
        o.source = adapter;
        o.out_dir = t / "peft";
        std::vector<MergeProgress> prog;
        o.progress = [&](const MergeProgress& p) { prog.push_back(p); };
        const json rep = merge_levels(o);
        MESSAGE(m << ": " << export_summary(rep));
        CHECK(rep["exact"] == true);
        CHECK(rep["rank"] == 8);
        CHECK(rep["verification"]["status"] == "pass");
        CHECK(rep["verification"]["max_abs_diff"].get<double>() <= 1e-5);
        CHECK(!prog.empty());
        CHECK(prog.back().phase == "publish");
        CHECK(path_exists(t / "peft/verify.json"));
        const json cfg = json::parse(read_file(t / "peft/adapter_config.json"));
        CHECK(cfg["r"] == 8);
        CHECK(cfg["lora_alpha"] == 8);
        CHECK(cfg["peft_type"] == "LORA");
        // B_flat·A_flat == Σ s_j B_j A_j per module, from the files.
        const AdapterSource h = open_adapter_source(adapter), p = open_adapter_source(t / "peft");
        CHECK(p.kind == "peft");
        CHECK(p.scales[0] == 1.0f);
        REQUIRE(h.modules.size() == p.modules.size());
        REQUIRE(h.modules.size() == 14);
        double worst = 0;
        for (const SourceModule& sm : h.modules) {
            std::vector<float> ref(size_t(sm.out) * sm.in, 0.0f), a, b;
            for (int j = 0; j < 3; j++) {
                h.read_level(sm, j, &a, &b);
                const std::vector<float> d = matmul(b, a, sm.out, h.levels[size_t(j)].rank, sm.in);
                for (size_t i = 0; i < ref.size(); i++) ref[i] += h.scales[size_t(j)] * d[i];
            }
            p.read_level(*p.find(sm.name), 0, &a, &b);
            worst = std::max(worst, max_abs(matmul(b, a, sm.out, 8, sm.in), ref));
        }
        MESSAGE(m << ": max |B_flat A_flat - Σ s_j B_j A_j| = " << worst);
        CHECK(worst <= 1e-6);
    }
}

TEST_CASE("merge levels -> flat PEFT for Phi-3 names the fused qkv_proj / gate_up_proj and is exact") {
    // PEFT wraps Phi3Attention.qkv_proj and Phi3MLP.gate_up_proj, so the export holds those: lora_A = the q, k, v (or
    // gate, up) flat A's stacked [3R, C], lora_B block diagonal [(H+2KV)·d, 3R]; r = lora_alpha = R = 8 with
    // rank_pattern = alpha_pattern = {qkv_proj: 24, gate_up_proj: 16} keeps PEFT's scaling at 1.
    TmpDir t;
    write_adapter_from_golden(golden("tiny-phi3"), fixture("tiny-phi3"), "", t / "adapter");
    MergeLevelsOptions o;
    o.source = t / "adapter";
    o.out_dir = t / "peft";
    const json rep = merge_levels(o);
    MESSAGE("tiny-phi3: " << export_summary(rep));
    CHECK(rep["exact"] == true);
    CHECK(rep["verification"]["status"] == "pass");
    CHECK(rep["verification"]["max_abs_diff"].get<double>() <= 1e-5);
    const json cfg = json::parse(read_file(t / "peft/adapter_config.json"));
    CHECK(cfg["r"] == 8);
    CHECK(cfg["lora_alpha"] == 8);
    CHECK(cfg["target_modules"] == json({"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}));
    CHECK(cfg["rank_pattern"] == json({{"qkv_proj", 24}, {"gate_up_proj", 16}}));
    CHECK(cfg["alpha_pattern"] == cfg["rank_pattern"]);

    // The file, read raw as PEFT reads it: exactly the fused keys, and each fused B·A is the projections' Σ s_j B_j A_j
    // on their rows (H·d = 64, KV·d = 32, F = 128 in tiny-phi3).
    auto f = SafeTensorsFile::open(t / "peft/adapter_model.safetensors");
    CHECK(f->tensors().size() == 2 * 4 * 2);
    const AdapterSource h = open_adapter_source(t / "adapter");
    struct Fused { const char* name; int64_t out, in; int rank; std::vector<std::pair<const char*, int64_t>> parts; };
    const std::vector<Fused> layout = {{"self_attn.qkv_proj", 128, 64, 24, {{"self_attn.q_proj", 0}, {"self_attn.k_proj", 64}, {"self_attn.v_proj", 96}}},
                                       {"self_attn.o_proj", 64, 64, 8, {{"self_attn.o_proj", 0}}},
                                       {"mlp.gate_up_proj", 256, 64, 16, {{"mlp.gate_proj", 0}, {"mlp.up_proj", 128}}},
                                       {"mlp.down_proj", 64, 128, 8, {{"mlp.down_proj", 0}}}};
    double worst = 0;
    for (int l = 0; l < 2; l++) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        for (const Fused& fm : layout) {
            const std::string key = "base_model.model." + p + fm.name;
            const TensorInfo* ta = f->find(key + ".lora_A.weight");
            const TensorInfo* tb = f->find(key + ".lora_B.weight");
            REQUIRE_MESSAGE((ta && tb), key);
            CHECK(ta->shape == std::vector<int64_t>{fm.rank, fm.in});
            CHECK(tb->shape == std::vector<int64_t>{fm.out, fm.rank});
            const std::vector<float> dW = matmul(f->read_f32(key + ".lora_B.weight"), f->read_f32(key + ".lora_A.weight"),
                                                 int(fm.out), fm.rank, int(fm.in));
            std::vector<float> ref(dW.size(), 0.0f), a, b;
            for (const auto& [part, row0] : fm.parts) {
                const SourceModule* sm = h.find(p + part);
                REQUIRE(sm != nullptr);
                for (int j = 0; j < 3; j++) {
                    h.read_level(*sm, j, &a, &b);
                    const std::vector<float> d = matmul(b, a, sm->out, h.levels[size_t(j)].rank, sm->in);
                    for (size_t i = 0; i < d.size(); i++) ref[size_t(row0) * fm.in + i] += h.scales[size_t(j)] * d[i];
                }
            }
            worst = std::max(worst, max_abs(dW, ref));
        }
    }
    MESSAGE("tiny-phi3: max |B_fused A_fused - Σ s_j B_j A_j on the rows| = " << worst);
    CHECK(worst <= 1e-6);

    // Our reader splits the fused modules back into the projections (rows from the base config.json) with the
    // same updates; without a base config it refuses, naming the module and what to pass.
    const AdapterSource back = open_adapter_source(t / "peft", fixture("tiny-phi3"));
    REQUIRE(back.modules.size() == 14);
    CHECK(back.per_module);
    CHECK(back.target_modules == h.target_modules);
    double worst_back = 0;
    for (const SourceModule& sm : h.modules) {
        std::vector<float> a, b, a2, b2;
        h.read_flat(sm, &a, &b);
        const SourceModule* bm = back.find(sm.name);
        REQUIRE(bm != nullptr);
        back.read_flat(*bm, &a2, &b2);
        worst_back = std::max(worst_back, max_abs(matmul(b, a, sm.out, 8, sm.in), matmul(b2, a2, sm.out, back.total_rank(), sm.in)));
    }
    MESSAGE("tiny-phi3: max |ΔW read back - ΔW hierarchical| = " << worst_back);
    CHECK(worst_back <= 1e-6);
    json nobase = cfg;
    nobase["base_model_name_or_path"] = "microsoft/Phi-3-mini-4k-instruct";
    write_file_atomic(t / "peft/adapter_config.json", nobase.dump(2));
    const Error e = expect_error([&] { open_adapter_source(t / "peft"); });
    CHECK(e.code() == "E_CONFIG");
    CHECK(std::string(e.what()).find("is a fused Phi-3 projection") != std::string::npos);
    CHECK(e.hint().find("--base-model") != std::string::npos);
    // ... and merges into base given the base: the same model as from the hierarchical adapter.
    MergeIntoBaseOptions mb;
    mb.source = t / "peft";
    mb.base_model = fixture("tiny-phi3");
    mb.dtype = "fp32";
    mb.out_dir = t / "merged";
    const json mrep = merge_into_base(mb);
    MESSAGE("tiny-phi3 peft -> merged: " << export_summary(mrep));
    CHECK(mrep["verification"]["status"] == "pass");
    CHECK(mrep["verification"]["max_abs_diff"].get<double>() <= 1e-5);

    // The Phi-3 export without a base config.json is refused before anything is written.
    write_adapter_from_golden(golden("tiny-phi3"), fixture("tiny-phi3"), "", t / "adapter2");
    json meta = json::parse(read_file(t / "adapter2/adapter_metadata.json"));
    meta["base_model"]["path"] = t / "no-such-base";
    write_file_atomic(t / "adapter2/adapter_metadata.json", meta.dump(2));
    o.source = t / "adapter2";
    o.out_dir = t / "peft2";
    const Error e2 = expect_error([&] { merge_levels(o); });
    CHECK(e2.code() == "E_CONFIG");
    CHECK(std::string(e2.what()).find("Phi-3 adapter") != std::string::npos);
    CHECK(!path_exists(t / "peft2"));
}

TEST_CASE("combine for Phi-3 writes the fused modules too (concat, and svd per projection to full rank: both exact)") {
    TmpDir t;
    write_adapter_from_golden(golden("tiny-phi3"), fixture("tiny-phi3"), "", t / "a");
    write_adapter_from_golden(golden("tiny-phi3"), fixture("tiny-phi3"), "final.", t / "b");
    for (const std::string mode : {"concat", "svd"}) {
        CAPTURE(mode);
        CombineOptions o;
        o.sources = {t / "a", t / "b"};
        o.weights = {0.5, 1.5};
        o.mode = mode;
        o.rank = mode == "svd" ? 16 : 0;
        o.out_dir = t / mode;
        const json rep = combine_adapters(o);
        MESSAGE("tiny-phi3 combine " << mode << ": " << export_summary(rep));
        CHECK(rep["verification"]["status"] == "pass");
        const int k = 16;   // 8 + 8
        CHECK(rep["verification"]["max_abs_diff"].get<double>() <= 1e-5);
        const json cfg = json::parse(read_file(t / (mode + "/adapter_config.json")));
        CHECK(cfg["r"] == k);
        CHECK(cfg["target_modules"] == json({"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}));
        CHECK(cfg["rank_pattern"] == json({{"qkv_proj", 3 * k}, {"gate_up_proj", 2 * k}}));
        auto f = SafeTensorsFile::open(t / (mode + "/adapter_model.safetensors"));
        const TensorInfo* b = f->find("base_model.model.model.layers.1.self_attn.qkv_proj.lora_B.weight");
        REQUIRE(b != nullptr);
        CHECK(b->shape == std::vector<int64_t>{128, 3 * k});
        CHECK(f->find("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight") == nullptr);
    }
}

TEST_CASE("merge levels with SVD re-compression reports energy and error within the Eckart-Young bounds") {
    TmpDir t;
    write_adapter_from_golden(golden("tiny-llama"), fixture("tiny-llama"), "final.", t / "adapter");
    MergeLevelsOptions o;
    o.source = t / "adapter";
    o.out_dir = t / "svd4";
    o.rank = 4;
    const json rep = merge_levels(o);
    MESSAGE(export_summary(rep));
    CHECK(rep["exact"] == false);
    CHECK(rep["rank"] == 4);
    REQUIRE(rep["modules"].size() == 14);
    for (const json& m : rep["modules"]) {
        CHECK(m["retained_energy"].get<double>() > 0.0);
        CHECK(m["retained_energy"].get<double>() <= 1.0 + 1e-12);
        // max entry error <= Frobenius error = sqrt(1 - retained) * ||ΔW||_F
        const double bound = std::sqrt(std::max(0.0, 1.0 - m["retained_energy"].get<double>())) * m["frob_norm"].get<double>();
        CHECK(m["max_abs_error"].get<double>() <= bound * 1.001 + 1e-6);
        CHECK(m["frob_error"].get<double>() == doctest::Approx(bound).epsilon(1e-3));
    }
    const json cfg = json::parse(read_file(t / "svd4/adapter_config.json"));
    CHECK(cfg["r"] == 4);
    CHECK(rep["verification"]["status"] != "skipped");
    // Full-rank "SVD" is exact again.
    o.out_dir = t / "svd8";
    o.rank = 8;
    CHECK(merge_levels(o)["exact"] == true);
}

TEST_CASE("merge into base: every family (Phi-3: each projection's rows of qkv_proj / gate_up_proj) verifies in fp32") {
    for (const std::string m : {"tiny-qwen2", "tiny-qwen2-tied", "tiny-qwen3", "tiny-mistral", "tiny-gemma2", "tiny-gemma3",
                                "tiny-phi3"}) {
        CAPTURE(m);
        TmpDir t;
        write_adapter_from_golden(golden(m), fixture(m), "", t / "adapter");
        for (const std::string base : {"dequantized", "original"}) {
            CAPTURE(base);
            MergeIntoBaseOptions o;
            o.source = t / "adapter";
            o.base = base;
            o.dtype = "fp32";
            o.out_dir = t / ("merged-" + base);
            const json rep = merge_into_base(o);
            MESSAGE(m << " " << base << ": " << export_summary(rep));
            CHECK(rep["verification"]["status"] == "pass");
            CHECK(rep["verification"]["max_abs_diff"].get<double>() <= 1e-5);
            CHECK(rep["nf4_gap"]["modules"].size() == 14);
        }
    }
}

TEST_CASE("merge into base: fp32 exact for both bases, bf16/fp16 within the stated tolerance, sharded output") {
    for (const std::string m : {"tiny-llama", "tiny-gemma"}) {
        CAPTURE(m);
        TmpDir t;
        write_adapter_from_golden(golden(m), fixture(m), "", t / "adapter");
        for (const std::string base : {"dequantized", "original"}) {
            for (const std::string dt : {"fp32", "bf16", "fp16"}) {
                CAPTURE(base);
                CAPTURE(dt);
                MergeIntoBaseOptions o;
                o.source = t / "adapter";
                o.base = base;
                o.dtype = dt;
                o.out_dir = t / ("merged-" + base + "-" + dt);
                o.max_shard_bytes = 150000;   // forces several shards on the tiny models
                const json rep = merge_into_base(o);
                MESSAGE(m << " " << base << " " << dt << ": " << export_summary(rep));
                const json& v = rep["verification"];
                CHECK(v["status"] == "pass");
                CHECK(v["max_abs_diff"].get<double>() <= (dt == "fp32" ? 1e-5 : dt == "fp16" ? 2e-2 : 1e-1));
                CHECK(rep["shards"].get<int>() >= 2);
                CHECK(path_exists(o.out_dir + "/model.safetensors.index.json"));
                CHECK(path_exists(o.out_dir + "/tokenizer.json"));
                CHECK(path_exists(o.out_dir + "/verify.json"));
                const json cfg = json::parse(read_file(o.out_dir + "/config.json"));
                CHECK(cfg["torch_dtype"] == (dt == "fp32" ? "float32" : dt == "fp16" ? "float16" : "bfloat16"));
                CHECK(rep["nf4_gap"]["max_abs"].get<double>() > 0.0);
                CHECK(rep["nf4_gap"]["modules"].size() == 14);
                if (base == "original") CHECK(v.contains("vs_trainer_nf4"));
                ModelWeights mw = ModelWeights::open_dir(o.out_dir);
                CHECK(mw.files().size() >= 2);
            }
        }
    }
}

TEST_CASE("combine adapters: concat exact, svd to full rank exact, linear and low-rank svd report their error") {
    TmpDir t;
    write_adapter_from_golden(golden("tiny-llama"), fixture("tiny-llama"), "", t / "a0");
    write_adapter_from_golden(golden("tiny-llama"), fixture("tiny-llama"), "final.", t / "a1");
    CombineOptions o;
    o.sources = {t / "a0", t / "a1"};
    o.weights = {0.7, -0.4};
    o.mode = "concat";
    o.out_dir = t / "concat";
    json rep = combine_adapters(o);
    MESSAGE("concat: " << export_summary(rep));
    CHECK(rep["rank"] == 16);
    CHECK(rep["exact"] == true);
    CHECK(rep["verification"]["status"] == "pass");
    CHECK(rep["verification"]["max_abs_diff"].get<double>() <= 1e-5);

    o.mode = "svd";
    o.rank = 16;
    o.out_dir = t / "svd16";
    rep = combine_adapters(o);
    MESSAGE("svd16: " << export_summary(rep));
    CHECK(rep["exact"] == true);
    CHECK(rep["verification"]["status"] == "pass");

    o.rank = 3;
    o.out_dir = t / "svd3";
    rep = combine_adapters(o);
    MESSAGE("svd3: " << export_summary(rep));
    CHECK(rep["exact"] == false);
    CHECK(rep["error_vs_weighted_sum"]["min_retained_energy"].get<double>() < 1.0);
    CHECK(rep["error_vs_weighted_sum"]["max_abs_error"].get<double>() > 0.0);

    o.mode = "linear";
    o.weights = {0.5, 0.5};
    o.out_dir = t / "linear";
    rep = combine_adapters(o);
    MESSAGE("linear: " << export_summary(rep));
    CHECK(rep["rank"] == 8);
    CHECK(rep["exact"] == false);
    CHECK(rep["error_vs_weighted_sum"]["max_abs_error"].get<double>() > 0.0);
    // Linear with negative weights is refused (sqrt), naming the option.
    o.weights = {1.0, -1.0};
    o.out_dir = t / "linear-neg";
    Error e = expect_error([&] { combine_adapters(o); });
    CHECK(e.code() == "E_CONFIG");
    CHECK(e.where().key == "weights");
    require_clean(t.path, "linear-neg");
}

TEST_CASE("bad inputs name the file and tensor and leave no partial output") {
    TmpDir t;
    write_adapter_from_golden(golden("tiny-llama"), fixture("tiny-llama"), "", t / "adapter");
    const std::string file = t / "adapter/adapter.safetensors";

    SUBCASE("truncated adapter file") {
        make_dirs(t / "trunc");
        const std::string bytes = read_file(file);
        write_file_atomic(t / "trunc/adapter.safetensors", bytes.substr(0, bytes.size() - 100));
        MergeLevelsOptions o;
        o.source = t / "trunc";
        o.out_dir = t / "out";
        Error e = expect_error([&] { merge_levels(o); });
        CHECK(e.code() == "E_SAFETENSORS");
        CHECK(e.where().file == t / "trunc/adapter.safetensors");
        require_clean(t.path, "out");
    }
    SUBCASE("missing module tensor") {
        auto f = SafeTensorsFile::open(file);
        SafeTensorsWriter w;
        for (const TensorInfo& ti : f->tensors())
            if (ti.name != "model.layers.1.mlp.up_proj.levels.2.lora_B.weight") w.add_f32(ti.name, ti.shape, f->read_f32(ti.name).data());
        for (const auto& [k, v] : f->metadata()) w.set_metadata(k, v);
        make_dirs(t / "miss");
        w.write_atomic(t / "miss/adapter.safetensors");
        MergeIntoBaseOptions o;
        o.source = t / "miss";
        o.base_model = fixture("tiny-llama");
        o.out_dir = t / "out";
        Error e = expect_error([&] { merge_into_base(o); });
        CHECK(e.code() == "E_SAFETENSORS");
        CHECK(e.where().tensor == "model.layers.1.mlp.up_proj.levels.2.lora_B.weight");
        CHECK(std::string(e.what()).find("model.layers.1.mlp.up_proj") != std::string::npos);
        require_clean(t.path, "out");
    }
    SUBCASE("adapter and base do not match") {
        MergeIntoBaseOptions o;
        o.source = t / "adapter";
        o.base_model = fixture("tiny-gemma");
        o.out_dir = t / "out";
        Error e = expect_error([&] { merge_into_base(o); });
        CHECK(e.code() == "E_CONFIG");   // llama adapter, gemma base: architecture named
        CHECK(std::string(e.what()).find("gemma") != std::string::npos);
        // Same architecture, other shapes: an adapter whose metadata does not name the architecture.
        remove_all(t / "adapter/adapter_metadata.json");
        e = expect_error([&] { merge_into_base(o); });
        CHECK(e.code() == "E_SHAPE");
        CHECK(e.where().tensor.find("model.layers.0.self_attn.q_proj.weight") == 0);
        CHECK(e.where().file.find("tiny-gemma") != std::string::npos);
        require_clean(t.path, "out");
    }
    SUBCASE("unwritable target") {
        write_file_atomic(t / "afile", "x");
        MergeLevelsOptions o;
        o.source = t / "adapter";
        o.out_dir = t / "afile/sub/out";   // parent is a regular file: mkdir fails
        Error e = expect_error([&] { merge_levels(o); });
        CHECK(e.code() == "E_IO");
        CHECK(e.where().file.find(t / "afile") == 0);
        require_clean(t.path, "out");
    }
    SUBCASE("existing target is not overwritten without overwrite") {
        make_dirs(t / "out");
        write_file_atomic(t / "out/keep.txt", "keep");
        MergeLevelsOptions o;
        o.source = t / "adapter";
        o.out_dir = t / "out";
        Error e = expect_error([&] { merge_levels(o); });
        CHECK(e.code() == "E_IO");
        CHECK(read_file(t / "out/keep.txt") == "keep");
        o.overwrite = true;
        merge_levels(o);
        CHECK(!path_exists(t / "out/keep.txt"));
        CHECK(path_exists(t / "out/adapter_model.safetensors"));
    }
    SUBCASE("cancellation midway") {
        std::atomic<bool> cancel{false};
        MergeIntoBaseOptions o;
        o.source = t / "adapter";
        o.dtype = "fp32";
        o.out_dir = t / "out";
        o.cancel = &cancel;
        int calls = 0;
        o.progress = [&](const MergeProgress& p) {
            if (p.phase == "write" && ++calls == 5) cancel = true;
        };
        Error e = expect_error([&] { merge_into_base(o); });
        CHECK(e.code() == "E_CANCELLED");
        CHECK(calls == 5);
        require_clean(t.path, "out");
    }
}

TEST_CASE("PEFT compatibility proof: PEFT-loaded flat export and transformers-loaded merged model match our forward") {
    // test/golden/peft/<model>.safetensors: logits from test/reference/peft_check.py (torch + transformers + peft) on
    // inputs written by make_peft_inputs (our exports of the golden adapter). Our side: the hierarchical forward,
    // i.e. Model(fixture, NF4) + the golden adapter's levels, on the same ids. The families' files come from
    // make_peft_inputs ... tiny-qwen2,...,tiny-gemma3 and peft_check.py on the H100 (peft_check_families.log), Phi-3's
    // (the fused qkv_proj / gate_up_proj export) likewise (peft_check_phi3.log).
    for (const std::string m : {"tiny-llama", "tiny-llama3", "tiny-gemma", "tiny-qwen2", "tiny-qwen2-tied", "tiny-qwen3",
                                "tiny-mistral", "tiny-gemma2", "tiny-gemma3", "tiny-phi3"}) {
        CAPTURE(m);
        const std::string gp = kRoot + "/test/golden/peft/" + m + ".safetensors";
        REQUIRE_MESSAGE(path_exists(gp), gp << " is missing: run test/reference/peft_check.py (see its docstring)");
        auto g = SafeTensorsFile::open(gp);
        const TensorInfo* ti = g->find("ids");
        REQUIRE(ti != nullptr);
        REQUIRE(ti->shape == std::vector<int64_t>{kVerifyBatch, kVerifySeq});
        std::vector<int32_t> ids(size_t(ti->numel()));
        std::memcpy(ids.data(), g->data(*ti), ids.size() * 4);
        TmpDir t;
        write_adapter_from_golden(golden(m), fixture(m), "", t / "adapter");
        const AdapterSource src = open_adapter_source(t / "adapter");
        const std::vector<float> ours = reference_logits(fixture(m), QuantSpec{}, {{&src, 1.0}}, ids);
        for (const char* k : {"logits_peft", "logits_merged", "logits_peft_merged"}) {
            const std::vector<float> ref = g->read_f32(k);
            const double d = max_abs(ours, ref);
            MESSAGE(m << ": max |ours(hierarchical) - " << std::string(k) << "| = " << d);
            CHECK(d <= 1e-5);
        }
        // And the adapter matters: the base alone is far away.
        CHECK(max_abs(ours, g->read_f32("logits_base")) > 1e-3);
    }
}

namespace {
size_t vm_hwm_kb() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::stoul(line.substr(6));
    return 0;
}
}  // namespace

TEST_CASE("merge into base is memory-bounded: a ~200 MB model merges with peak RSS far below its size") {
    // Synthetic LLaMA: hidden 1024, intermediate 2816, 5 layers, vocab 8192, untied, fp32 = ~226 MB on disk; the
    // largest tensor (embed / lm_head) is 32 MiB. Bound: 120 MiB above the RSS before the merge (≈ 3.5 × the largest
    // tensor), about half the model size.
    TmpDir t;
    const int C = 1024, F = 2816, L = 5, V = 8192, H = 16, KV = 4, D = 64;
    const std::string md = t / "big";
    make_dirs(md);
    json cfg = json::parse(read_file(fixture("tiny-llama") + "/config.json"));
    cfg["hidden_size"] = C;
    cfg["intermediate_size"] = F;
    cfg["num_hidden_layers"] = L;
    cfg["num_attention_heads"] = H;
    cfg["num_key_value_heads"] = KV;
    cfg["head_dim"] = D;
    cfg["vocab_size"] = V;
    write_file_atomic(md + "/config.json", cfg.dump(2));
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> ud(-0.05f, 0.05f);
    std::vector<TensorDecl> decls;
    auto add = [&](const std::string& n, std::vector<int64_t> s) { decls.push_back({n, DType::F32, s}); };
    add("model.embed_tokens.weight", {V, C});
    add("lm_head.weight", {V, C});
    add("model.norm.weight", {C});
    for (int l = 0; l < L; l++) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        add(p + "input_layernorm.weight", {C});
        add(p + "post_attention_layernorm.weight", {C});
        add(p + "self_attn.q_proj.weight", {H * D, C});
        add(p + "self_attn.k_proj.weight", {KV * D, C});
        add(p + "self_attn.v_proj.weight", {KV * D, C});
        add(p + "self_attn.o_proj.weight", {C, H * D});
        add(p + "mlp.gate_proj.weight", {F, C});
        add(p + "mlp.up_proj.weight", {F, C});
        add(p + "mlp.down_proj.weight", {C, F});
    }
    uint64_t model_bytes = 0;
    {
        StreamingSafetensorsWriter w(md + "/model.safetensors", decls, {{"format", "pt"}});
        std::vector<float> buf;
        for (const TensorDecl& d : decls) {
            buf.resize(d.bytes() / 4);
            for (float& v : buf) v = ud(rng);
            w.write_f32(d.name, buf.data(), buf.size());
            model_bytes += d.bytes();
        }
        w.finish();
    }
    // A rank-16 single-level adapter on all projections.
    SafeTensorsWriter aw;
    for (const TensorDecl& d : decls) {
        const size_t p = d.name.find("_proj.weight");
        if (p == std::string::npos) continue;
        const std::string mod = d.name.substr(0, p + 5);
        std::vector<float> a(size_t(16) * d.shape[1]), b(size_t(d.shape[0]) * 16);
        for (float& v : a) v = ud(rng);
        for (float& v : b) v = ud(rng);
        aw.add_f32(mod + ".levels.0.lora_A.weight", {16, d.shape[1]}, a.data());
        aw.add_f32(mod + ".levels.0.lora_B.weight", {d.shape[0], 16}, b.data());
    }
    aw.set_metadata("hqlora.levels", R"([{"rank":16,"alpha":32,"scale":2}])");
    aw.set_metadata("hqlora.rslora", "false");
    make_dirs(t / "big-adapter");
    aw.write_atomic(t / "big-adapter/adapter.safetensors");

    {   // reset the peak-RSS watermark (Linux >= 4.0); fall back to the current watermark otherwise
        std::ofstream cr("/proc/self/clear_refs");
        cr << "5";
    }
    const size_t before = vm_hwm_kb();
    MergeIntoBaseOptions o;
    o.source = t / "big-adapter";
    o.base_model = md;
    o.base = "dequantized";
    o.dtype = "bf16";
    o.out_dir = t / "big-merged";
    o.verify = false;
    o.max_shard_bytes = 40u << 20;
    const auto t0 = std::chrono::steady_clock::now();
    const json rep = merge_into_base(o);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const size_t peak = vm_hwm_kb();
    const double grew_mb = double(peak - std::min(peak, before)) / 1024.0;
    MESSAGE("synthetic model " << model_bytes / 1e6 << " MB -> " << rep["total_bytes"].get<double>() / 1e6 << " MB bf16 in "
                               << rep["shards"] << " shards, " << secs << " s; peak RSS " << peak / 1024 << " MiB (was "
                               << before / 1024 << " MiB before, +" << grew_mb << " MiB)");
    CHECK(model_bytes > 200e6);
    CHECK(rep["shards"].get<int>() >= 3);
    CHECK(grew_mb < 120.0);
}
