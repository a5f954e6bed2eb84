// test_checkpoint.cpp — atomic checkpoints: layout, exact restore, keep-K, resume discovery, config mismatch.
#include <doctest/doctest.h>

#include <stdlib.h>

#include <string>
#include <vector>

#include "checkpoint.h"
#include "error.h"
#include "fsutil.h"
#include "model.h"
#include "optimizer.h"
#include "safetensors.h"

using namespace hq;

namespace {

const std::string kModel = std::string(HQ_REPO_ROOT) + "/test/fixtures/models/tiny-llama";

std::string tmp_dir() {
    char tmpl[] = "/tmp/hq_test_ckpt_XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    return tmpl;
}

AdapterSpec small_spec() {
    AdapterSpec s;
    s.levels = {{4, 8}, {2, 8}};
    s.target_modules = {"q_proj", "v_proj", "down_proj"};
    return s;
}

std::unique_ptr<Model> load_model(uint64_t seed) {
    REQUIRE_MESSAGE(path_exists(kModel + "/config.json"), "fixture missing: " << kModel);
    QuantSpec q;
    q.type = "none";
    return Model::load(kModel, q, small_spec(), seed);
}

// Distinct, non-trivial values in weights, grads and optimizer state.
void scramble(Model& m, AdamW& opt, float base) {
    for (size_t i = 0; i < m.params().size(); ++i) {
        Param& p = m.params()[i];
        for (size_t k = 0; k < p.numel; ++k) {
            p.w[k] = base + 0.001f * static_cast<float>((k * 7 + i * 13) % 101) - 0.05f;
            opt.m[i][k] = 1e-3f * static_cast<float>((k + i) % 17);
            opt.v[i][k] = 1e-6f * static_cast<float>((k * 3 + i) % 23);
        }
    }
    opt.t = 42;
}

nlohmann::json compat_of(const std::string& model) {
    return {{"model", model},
            {"quantization", {{"type", "none"}, {"double_quant", true}, {"blocksize", 64}}},
            {"levels", {{{"rank", 4}, {"alpha", 8.0}}, {{"rank", 2}, {"alpha", 8.0}}}},
            {"target_modules", {"q_proj", "v_proj", "down_proj"}},
            {"rslora", false}};
}

bool has_tmp(const std::string& dir) {
    for (const auto& n : list_dir(dir))
        if (n.rfind(".tmp-", 0) == 0) return true;
    return false;
}

}  // namespace

TEST_CASE("a checkpoint is published complete and restores weights and AdamW state exactly") {
    const std::string dir = tmp_dir() + "/checkpoints";
    auto model = load_model(1);
    AdamW opt(model->params(), {});
    scramble(*model, opt, 0.25f);
    nlohmann::json state = {{"data_cursor", {{"epoch", 1}, {"position", 3}, {"seed", "7"}}}, {"compat", compat_of(kModel)}};
    SavedCheckpoint sc = save_checkpoint(dir, 3, *model, opt, state, 3);
    CHECK(sc.path == dir + "/step-000003");
    CHECK(sc.kept == std::vector<std::string>{sc.path});
    CHECK_FALSE(has_tmp(dir));
    CHECK(list_dir(sc.path) == std::vector<std::string>{"adapter.safetensors", "optimizer.safetensors", "state.json"});
    CHECK(sc.bytes == file_size(sc.path + "/adapter.safetensors") + file_size(sc.path + "/optimizer.safetensors") +
                          file_size(sc.path + "/state.json"));
    nlohmann::json st = read_checkpoint_state(sc.path);
    CHECK(st["step"] == 3);
    CHECK(st["optimizer"]["t"] == 42);
    CHECK(st["data_cursor"]["position"] == 3);

    // Hierarchical names in adapter.safetensors; m./v. names in optimizer.safetensors.
    auto af = SafeTensorsFile::open(sc.path + "/adapter.safetensors");
    CHECK(af->find("model.layers.0.self_attn.q_proj.levels.1.lora_B.weight") != nullptr);
    auto of = SafeTensorsFile::open(sc.path + "/optimizer.safetensors");
    CHECK(of->find("m." + model->params()[0].name) != nullptr);
    CHECK(of->find("v." + model->params().back().name) != nullptr);

    auto fresh = load_model(99);
    AdamW opt2(fresh->params(), {});
    nlohmann::json back = load_checkpoint(sc.path, *fresh, opt2);
    CHECK(back["step"] == 3);
    CHECK(opt2.t == 42);
    for (size_t i = 0; i < model->params().size(); ++i) {
        const Param& a = model->params()[i];
        const Param& b = fresh->params()[i];
        REQUIRE(a.numel == b.numel);
        CHECK(std::equal(a.w, a.w + a.numel, b.w));
        CHECK(opt.m[i] == opt2.m[i]);
        CHECK(opt.v[i] == opt2.v[i]);
    }
    remove_all(parent_dir(dir));
}

TEST_CASE("keep-K prunes the oldest only after the new checkpoint exists; re-saving a step replaces it") {
    const std::string dir = tmp_dir() + "/checkpoints";
    auto model = load_model(1);
    AdamW opt(model->params(), {});
    SavedCheckpoint last;
    for (int s = 1; s <= 5; ++s) last = save_checkpoint(dir, s * 10, *model, opt, {}, 2);
    CHECK(last.kept == std::vector<std::string>{dir + "/step-000040", dir + "/step-000050"});
    CHECK(last.removed == std::vector<std::string>{dir + "/step-000030"});
    CHECK(list_dir(dir) == std::vector<std::string>{"step-000040", "step-000050"});

    scramble(*model, opt, 0.5f);
    SavedCheckpoint again = save_checkpoint(dir, 50, *model, opt, {}, 2);
    CHECK(again.path == dir + "/step-000050");
    CHECK(read_checkpoint_state(again.path)["optimizer"]["t"] == 42);
    CHECK(list_dir(dir) == std::vector<std::string>{"step-000040", "step-000050"});

    SavedCheckpoint all = save_checkpoint(dir, 60, *model, opt, {}, 0);   // keep 0 = keep all
    CHECK(all.kept.size() == 3);

    // A "requested" checkpoint (save now) is neither counted nor pruned by keep-K; it is listed as kept.
    save_checkpoint(dir, 65, *model, opt, {{"reason", "requested"}}, 2);
    for (int s = 7; s <= 9; ++s) last = save_checkpoint(dir, s * 10, *model, opt, {{"reason", "periodic"}}, 2);
    CHECK(list_dir(dir) == std::vector<std::string>{"step-000065", "step-000080", "step-000090"});
    CHECK(last.kept == std::vector<std::string>{dir + "/step-000065", dir + "/step-000080", dir + "/step-000090"});
    CHECK(find_resume_checkpoint(dir)->step == 90);
    remove_all(parent_dir(dir));
}

TEST_CASE("resume picks the newest complete checkpoint; temp and incomplete folders are ignored") {
    const std::string dir = tmp_dir() + "/checkpoints";
    CHECK_FALSE(find_resume_checkpoint(dir).has_value());   // no folder at all
    auto model = load_model(1);
    AdamW opt(model->params(), {});
    save_checkpoint(dir, 5, *model, opt, {}, 0);
    save_checkpoint(dir, 2, *model, opt, {}, 0);
    // A crash mid-save leaves a temp folder (even a full one); a folder without state.json is not complete.
    make_dirs(dir + "/.tmp-step-000009");
    write_file_atomic(dir + "/.tmp-step-000009/state.json", "{\"step\": 9}");
    make_dirs(dir + "/step-000007");
    write_file_atomic(dir + "/step-000007/adapter.safetensors", "partial");
    make_dirs(dir + "/notes");

    auto refs = list_checkpoints(dir);
    REQUIRE(refs.size() == 2);
    CHECK(refs[0].step == 2);
    CHECK(refs[1].step == 5);
    auto r = find_resume_checkpoint(dir);
    REQUIRE(r.has_value());
    CHECK(r->step == 5);
    CHECK(r->path == dir + "/step-000005");
    CHECK_FALSE(path_exists(dir + "/.tmp-step-000009"));   // leftovers removed
    remove_all(parent_dir(dir));
}

TEST_CASE("a checkpoint made with another model, levels or modules is refused naming the config key") {
    const nlohmann::json state = {{"step", 4}, {"compat", compat_of("/models/a")}};
    CHECK_NOTHROW(check_checkpoint_compat(state, compat_of("/models/a"), "/r/checkpoints/step-000004"));

    auto expect_key = [&](const nlohmann::json& want, const std::string& key) {
        try {
            check_checkpoint_compat(state, want, "/r/checkpoints/step-000004");
            FAIL("no error for " << key);
        } catch (const Error& e) {
            CHECK(e.code() == "E_CHECKPOINT");
            CHECK(e.where().key == key);
            CHECK(e.where().file == "/r/checkpoints/step-000004/state.json");
            CHECK(std::string(e.what()).find(key) != std::string::npos);
        }
    };
    nlohmann::json c = compat_of("/models/b");
    expect_key(c, "model.path");
    c = compat_of("/models/a");
    c["levels"][1]["rank"] = 4;
    expect_key(c, "adapter.levels");
    c = compat_of("/models/a");
    c["target_modules"] = {"q_proj"};
    expect_key(c, "adapter.target_modules");
    c = compat_of("/models/a");
    c["quantization"]["type"] = "nf4";
    expect_key(c, "quantization");
    c = compat_of("/models/a");
    c["rslora"] = true;
    expect_key(c, "adapter.rslora");
}

TEST_CASE("a damaged checkpoint is an E_CHECKPOINT error naming the file and tensor") {
    const std::string dir = tmp_dir() + "/checkpoints";
    auto model = load_model(1);
    AdamW opt(model->params(), {});
    SavedCheckpoint sc = save_checkpoint(dir, 1, *model, opt, {}, 0);
    // Optimizer file without the v. tensors.
    SafeTensorsWriter w;
    for (const Param& p : model->params()) {
        std::vector<float> z(p.numel, 0.0f);
        w.add_f32("m." + p.name, p.shape, z.data());
    }
    w.set_metadata("adam_t", "0");
    w.write_atomic(sc.path + "/optimizer.safetensors");
    try {
        load_checkpoint(sc.path, *model, opt);
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(e.code() == "E_CHECKPOINT");
        CHECK(e.where().file == sc.path + "/optimizer.safetensors");
        CHECK(e.where().tensor == "v." + model->params()[0].name);
    }
    write_file_atomic(sc.path + "/state.json", "{\"step\": ");
    CHECK_THROWS_AS(read_checkpoint_state(sc.path), Error);
    remove_all(parent_dir(dir));
}
