// test_adapter_io.cpp — hierarchical adapter save/load round trip, PEFT export math and format, atomic folders.
// Uses a small test-only Model (two adapted modules owning their A/B buffers), independent of the real model.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <random>

#include <nlohmann/json.hpp>

#include "adapter_io.h"
#include "golden_files.h"
#include "model.h"
#include "error.h"
#include "fsutil.h"
#include "safetensors.h"

using namespace hq;
using nlohmann::json;

namespace {

class FakeModel : public Model {
  public:
    FakeModel(AdapterSpec spec, uint64_t seed) : spec_(std::move(spec)) {
        cfg_.model_type = "llama";
        const int R = spec_.total_rank();
        struct Dim {
            const char* name;
            int in, out;
        };
        const Dim dims[2] = {{"model.layers.0.self_attn.q_proj", 12, 10}, {"model.layers.0.mlp.down_proj", 20, 12}};
        std::mt19937 rng{uint32_t(seed)};
        std::normal_distribution<float> nd(0.f, 1.f);
        store_.resize(4);
        params_.resize(4);
        for (int i = 0; i < 2; i++) {
            auto& A = params_[size_t(2 * i)];
            auto& B = params_[size_t(2 * i + 1)];
            A.name = std::string(dims[i].name) + ".lora_A";
            A.shape = {R, dims[i].in};
            A.numel = size_t(R) * size_t(dims[i].in);
            B.name = std::string(dims[i].name) + ".lora_B";
            B.shape = {dims[i].out, R};
            B.numel = size_t(dims[i].out) * size_t(R);
            store_[size_t(2 * i)].resize(2 * A.numel);
            store_[size_t(2 * i + 1)].resize(2 * B.numel);
            for (auto& x : store_[size_t(2 * i)]) x = nd(rng);
            for (auto& x : store_[size_t(2 * i + 1)]) x = nd(rng);
            A.w = store_[size_t(2 * i)].data();
            A.g = A.w + A.numel;
            B.w = store_[size_t(2 * i + 1)].data();
            B.g = B.w + B.numel;
        }
        for (int i = 0; i < 2; i++) {
            AdaptedModule m;
            m.name = dims[i].name;
            m.in = dims[i].in;
            m.out = dims[i].out;
            m.A = &params_[size_t(2 * i)];
            m.B = &params_[size_t(2 * i + 1)];
            int off = 0;
            for (const auto& l : spec_.levels) {
                m.level_offset.push_back(off);
                off += l.rank;
            }
            m.level_offset.push_back(off);
            modules_.push_back(m);
        }
    }
    const ModelConfig& config() const override { return cfg_; }
    const AdapterSpec& adapter_spec() const override { return spec_; }
    std::vector<Param>& params() override { return params_; }
    std::vector<AdaptedModule>& modules() override { return modules_; }
    int64_t base_param_count() const override { return 0; }
    LossOut forward_backward(const int32_t*, const int32_t*, int, int, bool, float) override { return {}; }
    void forward_logits(const int32_t*, int, int, float*) override {}
    void forward_logits_at(const int32_t*, int, int, const int32_t*, float*) override {}
    void zero_grad() override {}
    void set_training(bool, uint64_t) override {}
    void skip_dropout_calls(uint64_t) override {}
    float* grad_buffer(size_t* n, void** stream) override {   // the grads are not back to back here: unused
        *n = 0;
        *stream = nullptr;
        return nullptr;
    }
    void set_gradient_checkpointing(bool) override {}
    void set_active_levels(int) override {}
    void set_loss_chunk_rows(int) override {}
    std::vector<float> dequantized_weight(const std::string&) const override { return {}; }
    size_t memory_bytes() const override { return 0; }

  private:
    ModelConfig cfg_;
    AdapterSpec spec_;
    std::vector<std::vector<float>> store_;
    std::vector<Param> params_;
    std::vector<AdaptedModule> modules_;
};

AdapterSpec test_spec() {
    AdapterSpec s;
    s.target_modules = {"q_proj", "down_proj"};
    s.levels = {{4, 16}, {2, 16}, {2, 4}};
    return s;
}

struct TempDir {
    std::string path;
    TempDir() {
        char buf[] = "/tmp/hq-ad-XXXXXX";
        path = ::mkdtemp(buf);
    }
    ~TempDir() { remove_all(path); }
};

bool no_temp_entries(const std::string& dir) {
    for (const auto& n : list_dir(dir))
        if (n.rfind(".tmp-", 0) == 0) return false;
    return true;
}

}  // namespace

TEST_CASE("adapter_io: hierarchical save -> load is bit-exact, with keys, shapes and metadata") {
    TempDir td;
    FakeModel a(test_spec(), 1), b(test_spec(), 2);
    const std::string dir = path_join(td.path, "adapter");
    save_hierarchical_adapter(a, dir, json{{"training", {{"steps", 7}, {"final_loss", 1.25}}},
                                           {"base_model", {{"path", "/models/x"}}}});
    CHECK(list_dir(dir) == std::vector<std::string>{"adapter.safetensors", "adapter_metadata.json"});
    CHECK(no_temp_entries(td.path));

    auto f = SafeTensorsFile::open(path_join(dir, "adapter.safetensors"));
    CHECK(f->tensors().size() == 2 * 3 * 2);
    const TensorInfo* t = f->find("model.layers.0.self_attn.q_proj.levels.1.lora_A.weight");
    REQUIRE(t);
    CHECK(t->shape == std::vector<int64_t>{2, 12});
    t = f->find("model.layers.0.mlp.down_proj.levels.0.lora_B.weight");
    REQUIRE(t);
    CHECK(t->shape == std::vector<int64_t>{12, 4});
    CHECK(t->dtype == DType::F32);
    // Level 2 of B is columns [6, 8) of B_cat.
    auto b2 = f->read_f32("model.layers.0.self_attn.q_proj.levels.2.lora_B.weight");
    const AdaptedModule& qa = a.modules()[0];
    for (int o = 0; o < 10; o++)
        for (int k = 0; k < 2; k++) CHECK(b2[size_t(o * 2 + k)] == qa.B->w[o * 8 + 6 + k]);
    CHECK(f->metadata().at("format") == "pt");
    CHECK(f->metadata().at("hqlora.version") == "1");
    CHECK(f->metadata().at("hqlora.rslora") == "false");
    auto lv = json::parse(f->metadata().at("hqlora.levels"));
    CHECK(lv.size() == 3);
    CHECK(lv[0]["rank"] == 4);
    CHECK(lv[2]["scale"].get<double>() == doctest::Approx(2.0));
    CHECK(json::parse(f->metadata().at("hqlora.target_modules")) == json({"q_proj", "down_proj"}));

    json meta = json::parse(read_file(path_join(dir, "adapter_metadata.json")));
    CHECK(meta["format"] == "hqlora-adapter");
    CHECK(meta["version"] == 1);
    CHECK(meta["total_rank"] == 8);
    CHECK(meta["training"]["steps"] == 7);
    CHECK(meta["training"]["final_loss"] == 1.25);
    CHECK(meta["training"].contains("tokens"));
    CHECK(meta["base_model"]["path"] == "/models/x");
    CHECK(meta["base_model"]["architecture"] == "llama");
    CHECK(meta["created"].get<std::string>().size() == 20);

    load_hierarchical_adapter(b, path_join(dir, "adapter.safetensors"));
    for (size_t i = 0; i < a.params().size(); i++)
        CHECK(std::memcmp(a.params()[i].w, b.params()[i].w, a.params()[i].numel * 4) == 0);
    // Loading from the folder works too; overwriting an existing adapter folder replaces it.
    FakeModel c(test_spec(), 3);
    save_hierarchical_adapter(c, dir, json::object());
    load_hierarchical_adapter(b, dir);
    CHECK(std::memcmp(c.params()[3].w, b.params()[3].w, c.params()[3].numel * 4) == 0);
    CHECK(no_temp_entries(td.path));
}

TEST_CASE("adapter_io: load rejects mismatched levels, shapes and missing modules, naming file and tensor") {
    TempDir td;
    FakeModel a(test_spec(), 1);
    const std::string dir = path_join(td.path, "ad");
    save_hierarchical_adapter(a, dir, json::object());
    const std::string file = path_join(dir, "adapter.safetensors");

    SUBCASE("different ranks") {
        AdapterSpec s = test_spec();
        s.levels = {{4, 16}, {3, 16}, {1, 4}};
        FakeModel m(s, 5);
        try {
            load_hierarchical_adapter(m, file);
            FAIL("rank mismatch accepted");
        } catch (const hq::Error& e) {
            CHECK(e.code() == "E_SHAPE");
            CHECK(e.where().file == file);
            CHECK(std::string(e.what()).find("level 1") != std::string::npos);
        }
    }
    SUBCASE("different alpha") {
        AdapterSpec s = test_spec();
        s.levels[2].alpha = 8;
        FakeModel m(s, 5);
        try {
            load_hierarchical_adapter(m, file);
            FAIL("alpha mismatch accepted");
        } catch (const hq::Error& e) {
            CHECK(e.code() == "E_CONFIG");
            CHECK(std::string(e.what()).find("level 2 alpha") != std::string::npos);
        }
    }
    SUBCASE("fewer levels in the model") {
        AdapterSpec s = test_spec();
        s.levels = {{4, 16}, {2, 16}};
        FakeModel m(s, 5);
        CHECK_THROWS_AS(load_hierarchical_adapter(m, file), hq::Error);
    }
    SUBCASE("missing module, wrong shape, extra tensor (no metadata, like checkpoint files)") {
        auto src = SafeTensorsFile::open(file);
        auto copy_except = [&](const std::string& skip, const std::string& out) {
            SafeTensorsWriter w;
            for (const auto& t : src->tensors())
                if (t.name.find(skip) == std::string::npos)
                    w.add(t.name, t.dtype, t.shape, src->data(t), t.end - t.begin);
            w.write_atomic(out);
        };
        const std::string missing = path_join(td.path, "missing.safetensors");
        copy_except("down_proj", missing);
        FakeModel m(test_spec(), 5);
        try {
            load_hierarchical_adapter(m, missing);
            FAIL("missing module accepted");
        } catch (const hq::Error& e) {
            CHECK(e.code() == "E_SAFETENSORS");
            CHECK(e.where().file == missing);
            CHECK(e.where().tensor == "model.layers.0.mlp.down_proj.levels.0.lora_A.weight");
            CHECK(std::string(e.what()).find("module model.layers.0.mlp.down_proj is missing") != std::string::npos);
        }
        const std::string bad = path_join(td.path, "bad.safetensors");
        {
            SafeTensorsWriter w;
            for (const auto& t : src->tensors()) {
                if (t.name == "model.layers.0.self_attn.q_proj.levels.0.lora_A.weight") {
                    std::vector<float> z(4 * 11, 0.f);
                    w.add_f32(t.name, {4, 11}, z.data());
                } else {
                    w.add(t.name, t.dtype, t.shape, src->data(t), t.end - t.begin);
                }
            }
            w.write_atomic(bad);
        }
        try {
            load_hierarchical_adapter(m, bad);
            FAIL("wrong shape accepted");
        } catch (const hq::Error& e) {
            CHECK(e.code() == "E_SHAPE");
            CHECK(e.where().tensor == "model.layers.0.self_attn.q_proj.levels.0.lora_A.weight");
            CHECK(std::string(e.what()).find("[4, 11]") != std::string::npos);
        }
        const std::string extra = path_join(td.path, "extra.safetensors");
        {
            SafeTensorsWriter w;
            for (const auto& t : src->tensors()) w.add(t.name, t.dtype, t.shape, src->data(t), t.end - t.begin);
            std::vector<float> z(2 * 12, 0.f);
            w.add_f32("model.layers.0.self_attn.q_proj.levels.3.lora_A.weight", {2, 12}, z.data());
            w.write_atomic(extra);
        }
        try {
            load_hierarchical_adapter(m, extra);
            FAIL("extra level accepted");
        } catch (const hq::Error& e) {
            CHECK(e.where().tensor == "model.layers.0.self_attn.q_proj.levels.3.lora_A.weight");
            CHECK(std::string(e.what()).find("more levels") != std::string::npos);
        }
    }
}

TEST_CASE("adapter_io: PEFT export reproduces sum_i s_i B_i A_i with PEFT names and config") {
    TempDir td;
    AdapterSpec spec = test_spec();
    for (bool rs : {false, true}) {
        spec.rslora = rs;
        FakeModel a(spec, 11);
        const std::string dir = path_join(td.path, rs ? "peft-rs" : "peft");
        export_peft(a, dir, "meta-llama/Llama-2-7b-hf");
        CHECK(list_dir(dir) == std::vector<std::string>{"adapter_config.json", "adapter_model.safetensors"});
        auto f = SafeTensorsFile::open(path_join(dir, "adapter_model.safetensors"));
        CHECK(f->metadata() == std::map<std::string, std::string>{{"format", "pt"}});
        CHECK(f->tensors().size() == 4);
        for (const AdaptedModule& m : a.modules()) {
            const std::string base = "base_model.model." + m.name;
            const TensorInfo* ta = f->find(base + ".lora_A.weight");
            const TensorInfo* tb = f->find(base + ".lora_B.weight");
            REQUIRE(ta);
            REQUIRE(tb);
            CHECK(ta->shape == std::vector<int64_t>{8, m.in});
            CHECK(tb->shape == std::vector<int64_t>{m.out, 8});
            auto A = f->read_f32(base + ".lora_A.weight");
            auto B = f->read_f32(base + ".lora_B.weight");
            // delta_peft = B A (scaling r/alpha = 1) vs sum_i s_i B_i A_i from the model's own buffers, fp64.
            for (int o = 0; o < m.out; o++)
                for (int c = 0; c < m.in; c++) {
                    double peft = 0, ref = 0;
                    for (int k = 0; k < 8; k++) peft += double(B[size_t(o * 8 + k)]) * A[size_t(k * m.in + c)];
                    for (int j = 0; j < 3; j++) {
                        const double s = rs ? spec.levels[size_t(j)].alpha / std::sqrt(double(spec.levels[size_t(j)].rank))
                                            : double(spec.levels[size_t(j)].alpha) / spec.levels[size_t(j)].rank;
                        for (int k = m.level_offset[size_t(j)]; k < m.level_offset[size_t(j)] + spec.levels[size_t(j)].rank; k++)
                            ref += s * double(m.B->w[o * 8 + k]) * m.A->w[k * m.in + c];
                    }
                    REQUIRE(std::fabs(peft - ref) <= 1e-6 * (1.0 + std::fabs(ref)));
                }
        }
        const std::string cfg_text = read_file(path_join(dir, "adapter_config.json"));
        json cfg = json::parse(cfg_text);
        CHECK(cfg["peft_type"] == "LORA");
        CHECK(cfg["task_type"] == "CAUSAL_LM");
        CHECK(cfg["r"] == 8);
        CHECK(cfg["lora_alpha"] == 8);
        CHECK(cfg["use_rslora"] == false);  // scales are folded into lora_A
        CHECK(cfg["bias"] == "none");
        CHECK(cfg["lora_dropout"] == 0);
        CHECK(cfg["target_modules"] == json({"q_proj", "down_proj"}));
        CHECK(cfg["base_model_name_or_path"] == "meta-llama/Llama-2-7b-hf");
        CHECK(cfg["rank_pattern"] == json::object());
        CHECK(cfg["alpha_pattern"] == json::object());
        CHECK(cfg_text == cfg.dump(2) + "\n");  // sorted keys, indent 2
        CHECK(cfg_text.find("  \"alpha_pattern\"") < cfg_text.find("  \"bias\""));
    }
}

// tiny-llama rewritten as Phi-3 stores it: qkv_proj = [q; k; v] and gate_up_proj = [gate; up] by rows.
static void write_fused_copy(const std::string& src, const std::string& dst) {
    json cfg = json::parse(read_file(path_join(src, "config.json")));
    cfg["model_type"] = "phi3";
    cfg["architectures"] = {"Phi3ForCausalLM"};
    make_dirs(dst);
    write_file_atomic(path_join(dst, "config.json"), cfg.dump(2));
    ModelWeights mw = ModelWeights::open_dir(src);
    SafeTensorsWriter w;
    std::vector<std::vector<float>> keep;
    for (const std::string& n : mw.names()) {
        auto cat = [&](std::initializer_list<const char*> parts, const std::string& out) {
            std::vector<float> all;
            for (const char* p : parts) {
                auto v = mw.read_f32(n.substr(0, n.find("q_proj")) + p);
                all.insert(all.end(), v.begin(), v.end());
            }
            const int64_t in = mw.find(n)->shape[1];
            keep.push_back(std::move(all));
            w.add_f32(out, {int64_t(keep.back().size()) / in, in}, keep.back().data());
        };
        if (n.find("self_attn.q_proj.weight") != std::string::npos) {
            cat({"q_proj.weight", "k_proj.weight", "v_proj.weight"}, n.substr(0, n.find("q_proj")) + "qkv_proj.weight");
        } else if (n.find("mlp.gate_proj.weight") != std::string::npos) {
            const std::string p = n.substr(0, n.find("gate_proj"));
            auto g = mw.read_f32(p + "gate_proj.weight"), u = mw.read_f32(p + "up_proj.weight");
            g.insert(g.end(), u.begin(), u.end());
            const int64_t in = mw.find(n)->shape[1];
            keep.push_back(std::move(g));
            w.add_f32(p + "gate_up_proj.weight", {int64_t(keep.back().size()) / in, in}, keep.back().data());
        } else if (n.find("k_proj") == std::string::npos && n.find("v_proj") == std::string::npos &&
                   n.find("up_proj") == std::string::npos) {
            keep.push_back(mw.read_f32(n));
            w.add_f32(n, mw.find(n)->shape, keep.back().data());
        }
    }
    w.set_metadata("format", "pt");
    w.write_atomic(path_join(dst, "model.safetensors"));
}

TEST_CASE("Phi-3 fused qkv_proj / gate_up_proj: split by rows at load (same logits as unfused), block-diagonal PEFT "
          "export on the fused modules") {
    TempDir td;
    const std::string llama = path_join(hq_test::fixtures_dir(), "tiny-llama"), phi = path_join(td.path, "tiny-phi-fused");
    write_fused_copy(llama, phi);
    AdapterSpec spec;
    spec.levels = {{4, 8.0f}, {2, 2.0f}};
    spec.target_modules = {"q_proj", "v_proj", "o_proj", "up_proj", "down_proj"};   // k and gate not adapted
    spec.init = "gaussian";
    QuantSpec q;   // NF4: each slice is quantized on its own, exactly like the separate tensors
    auto a = Model::load(llama, q, spec, 5), b = Model::load(phi, q, spec, 5);
    CHECK(b->config().fused_proj);
    REQUIRE(a->params().size() == b->params().size());
    for (size_t i = 0; i < a->params().size(); i++) {   // nonzero B, identical in both
        Param& pa = a->params()[i];
        for (size_t k = 0; k < pa.numel; k++) pa.w[k] = 0.01f * float((k * 7 + i) % 13) - 0.06f;
        std::copy(pa.w, pa.w + pa.numel, b->params()[i].w);
    }
    const std::vector<int32_t> ids = {5, 9, 17, 33, 2, 60, 61, 7, 8, 99, 4, 12};
    const int V = a->config().vocab_size;
    std::vector<float> la(ids.size() * V), lb(ids.size() * V);
    a->forward_logits(ids.data(), 2, 6, la.data());
    b->forward_logits(ids.data(), 2, 6, lb.data());
    CHECK(la == lb);   // bit-identical: the same weights, the same code
    const std::string dir = path_join(td.path, "peft");
    export_peft(*b, dir, "phi");
    json cfg = json::parse(read_file(path_join(dir, "adapter_config.json")));
    CHECK(cfg["target_modules"] == json({"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}));
    CHECK(cfg["r"] == 6);
    CHECK(cfg["rank_pattern"] == json({{"qkv_proj", 12}}));   // q and v: 2 slices of rank 6
    CHECK(cfg["alpha_pattern"] == json({{"qkv_proj", 12}}));
    auto f = SafeTensorsFile::open(path_join(dir, "adapter_model.safetensors"));
    const ModelConfig& c = b->config();
    const int64_t Hd = c.num_heads * c.head_dim, KVd = c.num_kv_heads * c.head_dim, C = c.hidden_size;
    const std::string p = "base_model.model.model.layers.1.self_attn.qkv_proj.";
    auto A = f->read_f32(p + "lora_A.weight"), B = f->read_f32(p + "lora_B.weight");
    REQUIRE(f->find(p + "lora_B.weight")->shape == std::vector<int64_t>{Hd + 2 * KVd, 12});
    // B·A on the fused rows equals each slice's Σ s_j B_j A_j (q rows, v rows) and zero on the k rows.
    auto delta = [&](const std::string& m, int64_t o, int64_t col) {
        for (const AdaptedModule& am : b->modules()) {
            if (am.name != m) continue;
            double d = 0;
            for (int j = 0; j < 2; j++)
                for (int k = am.level_offset[j]; k < am.level_offset[j] + spec.levels[j].rank; k++)
                    d += spec.scale(j) * double(am.B->w[o * 6 + k]) * am.A->w[k * C + col];
            return d;
        }
        return 0.0;
    };
    for (int64_t o = 0; o < Hd + 2 * KVd; o += 3)
        for (int64_t col = 0; col < C; col += 5) {
            double got = 0;
            for (int k = 0; k < 12; k++) got += double(B[o * 12 + k]) * A[k * C + col];
            const double want = o < Hd ? delta("model.layers.1.self_attn.q_proj", o, col)
                              : o < Hd + KVd ? 0.0 : delta("model.layers.1.self_attn.v_proj", o - Hd - KVd, col);
            REQUIRE(std::fabs(got - want) <= 1e-6 * (1 + std::fabs(want)));
        }
    CHECK(f->find("base_model.model.model.layers.0.mlp.gate_up_proj.lora_A.weight")->shape ==
          std::vector<int64_t>{6, C});   // up alone: rank R, B on the up rows only
}

TEST_CASE("adapter_io: a failed write leaves no partial folder and keeps the previous one") {
    TempDir td;
    FakeModel a(test_spec(), 1), b(test_spec(), 2);
    const std::string dir = path_join(td.path, "adapter");
    const std::string peft = path_join(td.path, "peft");
    save_hierarchical_adapter(a, dir, json::object());
    const std::string before = read_file(path_join(dir, "adapter.safetensors"));

    // Simulate a full disk: cap the file size below the adapter size (writes fail with EFBIG, not a signal).
    struct rlimit old;
    REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
    auto old_handler = signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = old;
    lim.rlim_cur = 512;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    bool threw_save = false, threw_peft = false;
    std::string code;
    try {
        save_hierarchical_adapter(b, dir, json::object());
    } catch (const hq::Error& e) {
        threw_save = true;
        code = e.code();
    }
    try {
        export_peft(b, peft, "x");
    } catch (const hq::Error& e) {
        threw_peft = true;
    }
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);

    CHECK(threw_save);
    CHECK(threw_peft);
    CHECK(code == "E_IO");
    CHECK(read_file(path_join(dir, "adapter.safetensors")) == before);  // old adapter intact
    CHECK_FALSE(path_exists(peft));                                       // never a partial folder
    CHECK(no_temp_entries(td.path));
    CHECK(list_dir(td.path) == std::vector<std::string>{"adapter"});
}
