// test_peft_source.cpp — PEFT folders with per-module ranks and alphas (rank_pattern / alpha_pattern) read by
// open_adapter_source as PEFT applies them, and exported / merged exactly from there.
//
// The folder is written here for tiny-llama's 14 modules with random A, B and PEFT's own rule for the patterns
// (the first key K in file order with re.match(rf"(.*\.)?({K})$", module) wins), spelled out per module below
// rather than recomputed, so that the reader is checked against the rule and not against itself.
// Tolerances: ΔW read back vs scale·B·A 1e-6 relative (fp32 products of the same numbers); exports 1e-5 max |Δlogit|.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "adapter_source.h"
#include "adapter_test_util.h"
#include "error.h"
#include "fsutil.h"
#include "golden_adapter.h"
#include "merge.h"
#include "safetensors.h"

using namespace hq;

namespace {

const std::string kRoot = HQ_REPO_ROOT;
const std::string kFixture = kRoot + "/test/fixtures/models/tiny-llama";

struct TmpDir : hq_test::TmpDir {
    TmpDir() : hq_test::TmpDir("hq-peftsrc") {}
};
using hq_test::matmul;

// PEFT's result for the patterns written by write_patterned below, by hand: q_proj matches "q_proj" first (so layer
// 1's q_proj is rank 4, not the 2 of the later full-name key), layer 1's up/down the regex, the rest r = 8;
// alpha 3 on o_proj, 8 on v_proj, else lora_alpha = 16.
int expected_rank(const std::string& m) {
    if (m.find(".q_proj") != std::string::npos) return 4;
    if (m == "model.layers.1.mlp.up_proj" || m == "model.layers.1.mlp.down_proj") return 6;
    return 8;
}
float expected_alpha(const std::string& m) {
    if (m.find(".o_proj") != std::string::npos) return 3.0f;
    if (m.find(".v_proj") != std::string::npos) return 8.0f;
    return 16.0f;
}

struct Written {
    std::vector<SourceModule> modules;            // name, in, out
    std::vector<std::vector<float>> A, B;         // per module, rank expected_rank
};

// A PEFT folder at `dir` for tiny-llama's modules with the patterns in this order (nlohmann's ordered_json keeps it).
Written write_patterned(const std::string& dir, const std::string& scratch, bool rslora) {
    write_adapter_from_golden(kRoot + "/test/golden/tiny-llama.safetensors", kFixture, "", scratch);
    const AdapterSource h = open_adapter_source(scratch);
    Written w;
    SafeTensorsWriter st;
    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.0f, 0.05f);
    for (const SourceModule& m : h.modules) {
        const int r = expected_rank(m.name);
        std::vector<float> a(size_t(r) * m.in), b(size_t(m.out) * r);
        for (float& v : a) v = nd(rng);
        for (float& v : b) v = nd(rng);
        st.add_f32("base_model.model." + m.name + ".lora_A.weight", {r, m.in}, a.data());
        st.add_f32("base_model.model." + m.name + ".lora_B.weight", {m.out, r}, b.data());
        w.modules.push_back(m);
        w.A.push_back(std::move(a));
        w.B.push_back(std::move(b));
    }
    st.set_metadata("format", "pt");
    nlohmann::ordered_json cfg = {
        {"peft_type", "LORA"}, {"r", 8}, {"lora_alpha", 16}, {"use_rslora", rslora},
        {"base_model_name_or_path", kFixture},
        {"target_modules", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}},
        {"rank_pattern", nlohmann::ordered_json::object()}, {"alpha_pattern", nlohmann::ordered_json::object()}};
    cfg["rank_pattern"]["q_proj"] = 4;
    cfg["rank_pattern"]["model.layers.1.self_attn.q_proj"] = 2;
    cfg["rank_pattern"][R"(layers\.1\.mlp\.(up|down)_proj)"] = 6;
    cfg["alpha_pattern"]["o_proj"] = 3;
    cfg["alpha_pattern"]["v_proj"] = 8;
    make_dirs(dir);
    st.write_atomic(path_join(dir, "adapter_model.safetensors"));
    write_file_atomic(path_join(dir, "adapter_config.json"), cfg.dump(2) + "\n");
    return w;
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

}  // namespace

TEST_CASE("PEFT rank_pattern / alpha_pattern: each module's rank and scale as PEFT applies them") {
    for (const bool rslora : {false, true}) {
        CAPTURE(rslora);
        TmpDir t;
        const Written w = write_patterned(t / "peft", t / "scratch", rslora);
        const AdapterSource s = open_adapter_source(t / "peft");
        CHECK(s.kind == "peft");
        CHECK(s.per_module);
        REQUIRE(s.levels.size() == 1);
        CHECK(s.levels[0].rank == 8);   // the largest rank; smaller modules are zero-padded
        CHECK(s.scales[0] == 1.0f);
        REQUIRE(s.modules.size() == w.modules.size());
        double worst = 0;
        for (size_t i = 0; i < w.modules.size(); i++) {
            const SourceModule& ref = w.modules[i];
            CAPTURE(ref.name);
            const SourceModule* m = s.find(ref.name);
            REQUIRE(m != nullptr);
            const int r = expected_rank(ref.name);
            const float alpha = expected_alpha(ref.name);
            CHECK(m->rank == r);
            const float scale = rslora ? alpha / std::sqrt(float(r)) : alpha / float(r);
            CHECK(m->scale == doctest::Approx(scale).epsilon(1e-6));
            std::vector<float> want = matmul(w.B[i], w.A[i], ref.out, r, ref.in), a, b;
            for (float& v : want) v *= scale;
            s.read_flat(*m, &a, &b);
            const std::vector<float> got = matmul(b, a, ref.out, s.total_rank(), ref.in);
            double mx = 0, d = 0;
            for (size_t e = 0; e < want.size(); e++) {
                mx = std::max(mx, double(std::fabs(want[e])));
                d = std::max(d, double(std::fabs(want[e] - got[e])));
            }
            worst = std::max(worst, d / mx);
        }
        MESSAGE("rslora " << rslora << ": max rel |ΔW read - scale·B·A| = " << worst);
        CHECK(worst <= 1e-6);

        // Exported (flat PEFT, one rank) and merged into the base, both verified against the patterned source.
        MergeLevelsOptions ml;
        ml.source = t / "peft";
        ml.out_dir = t / "flat";
        const nlohmann::json rep = merge_levels(ml);
        MESSAGE(export_summary(rep));
        CHECK(rep["exact"] == true);
        CHECK(rep["verification"]["status"] == "pass");
        CHECK(rep["verification"]["max_abs_diff"].get<double>() <= 1e-5);
        MergeIntoBaseOptions mb;
        mb.source = t / "peft";
        mb.dtype = "fp32";
        mb.out_dir = t / "merged";
        const nlohmann::json mrep = merge_into_base(mb);
        MESSAGE(export_summary(mrep));
        CHECK(mrep["verification"]["status"] == "pass");
        CHECK(mrep["verification"]["max_abs_diff"].get<double>() <= 1e-5);
    }
}

TEST_CASE("PEFT patterns that do not fit the tensors are refused naming the file, key and tensor") {
    TmpDir t;
    write_patterned(t / "peft", t / "scratch", false);
    const std::string cfgp = t / "peft/adapter_config.json";
    const std::string text = read_file(cfgp);
    auto with = [&](const std::string& from, const std::string& to) {
        std::string s = text;
        const size_t p = s.find(from);
        REQUIRE(p != std::string::npos);
        s.replace(p, from.size(), to);
        write_file_atomic(cfgp, s);
        return expect_error([&] { open_adapter_source(t / "peft"); });
    };
    SUBCASE("a rank the tensors do not have") {
        const Error e = with("\"q_proj\": 4", "\"q_proj\": 5");
        CHECK(e.code() == "E_SHAPE");
        CHECK(std::string(e.what()).find("q_proj.lora_A.weight has shape [4, 64], expected [5, 64]") != std::string::npos);
        CHECK(std::string(e.what()).find("rank_pattern[\"q_proj\"]") != std::string::npos);
    }
    SUBCASE("no pattern: the default rank does not fit") {
        const Error e = with("\"q_proj\": 4", "\"nothing_matches\": 4");
        CHECK(e.code() == "E_SHAPE");
        CHECK(std::string(e.what()).find("(rank 8 from r in ") != std::string::npos);
    }
    SUBCASE("a rank that is not a positive integer") {
        const Error e = with("\"q_proj\": 4", "\"q_proj\": 0");
        CHECK(e.code() == "E_CONFIG");
        CHECK(e.where().key == "rank_pattern.q_proj");
    }
    SUBCASE("a key that is not a regex") {
        const Error e = with("\"o_proj\": 3", "\"o_proj(\": 3");
        CHECK(e.code() == "E_CONFIG");
        CHECK(std::string(e.what()).find("alpha_pattern key \"o_proj(\" is not a valid regex") != std::string::npos);
    }
}
