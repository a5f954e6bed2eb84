// test_backend.cpp — hardware.device selection (backend.h): cpu, cuda and auto, with and without a usable GPU.
// Runs everywhere: on a machine without a GPU (CI) "cuda" must fail with E_CUDA naming the reason and the fix, and
// "auto" must fall back to the CPU with a warning; with a GPU, "auto" picks CUDA.
#include <doctest/doctest.h>

#include <string>

#include "backend.h"
#include "error.h"
#include "run_config.h"
#ifdef HQ_WITH_CUDA
#include "cuda_common.h"
#include "cuda_model.h"
#endif

using namespace hq;

namespace {

const std::string kFixture = std::string(HQ_REPO_ROOT) + "/test/fixtures/models/tiny-llama";

bool gpu_usable(std::string* why) {
    const DeviceBackend* b = device_backend();
    if (!b) {
        *why = "no CUDA backend";   // a substring of the trainer's wording: "... has no CUDA backend (...)"
        return false;
    }
    return b->available(why);
}

}  // namespace

TEST_CASE("backend: cpu loads the CPU model") {
    LoadedModel m = load_model_on("cpu", kFixture, QuantSpec{}, AdapterSpec{}, 0, "run.json");
    REQUIRE(m.model);
    CHECK(m.backend == "cpu");
    CHECK(m.model->backend() == "cpu");
    CHECK_FALSE(m.model->device_resident());
    CHECK(m.warning.empty());
}

TEST_CASE("backend: an unknown device is a config error naming the key") {
    try {
        load_model_on("tpu", kFixture, QuantSpec{}, AdapterSpec{}, 0, "run.json");
        FAIL("expected E_CONFIG");
    } catch (const Error& e) {
        CHECK(e.code() == "E_CONFIG");
        CHECK(e.where().key == "hardware.device");
        CHECK(e.where().file == "run.json");
    }
}

TEST_CASE("backend: cuda and auto with and without a usable GPU") {
#ifdef HQ_WITH_CUDA
    register_device_backend(cuda::cuda_backend());
#endif
    std::string why;
    const bool gpu = gpu_usable(&why);
    if (!gpu) {
        MESSAGE("no usable GPU here: " << why);
        CHECK_FALSE(why.empty());
        try {
            load_model_on("cuda", kFixture, QuantSpec{}, AdapterSpec{}, 0, "run.json");
            FAIL("expected E_CUDA");
        } catch (const Error& e) {
            CHECK(e.code() == "E_CUDA");
            CHECK(e.where().key == "hardware.device");
            CHECK(std::string(e.what()).find(why) != std::string::npos);
            CHECK(e.hint().find("cpu") != std::string::npos);
        }
        LoadedModel m = load_model_on("auto", kFixture, QuantSpec{}, AdapterSpec{}, 0, "run.json");
        REQUIRE(m.model);
        CHECK(m.backend == "cpu");
        CHECK(m.warning.find(why) != std::string::npos);
    } else {
        LoadedModel m = load_model_on("auto", kFixture, QuantSpec{}, AdapterSpec{}, 0, "run.json");
        REQUIRE(m.model);
        CHECK(m.backend == "cuda");
        CHECK(m.model->backend() == "cuda");
        CHECK(m.model->device_resident());
        CHECK(m.warning.empty());
    }
}

TEST_CASE("backend: run.json accepts hardware.device cpu, cuda and auto, and compute_dtype auto, bfloat16, float32") {
    auto cfg = [](const char* dev) {
        return nlohmann::json{{"model", {{"path", kFixture}}},
                              {"data", {{"train_tokens", "/tmp/x.hqtok"}}},
                              {"output", {{"dir", "/tmp"}, {"run_name", "r"}}},
                              {"hardware", {{"device", dev}}}};
    };
    for (const char* d : {"cpu", "cuda", "auto"}) CHECK(parse_run_config(cfg(d), "run.json").device == d);
    nlohmann::json dt = cfg("cuda");
    for (const char* d : {"auto", "bfloat16", "float32"}) {
        dt["quantization"] = {{"compute_dtype", d}};
        CHECK(parse_run_config(dt, "run.json").compute_dtype == d);
    }
    dt["quantization"] = {{"compute_dtype", "fp8"}};
    try {
        parse_run_config(dt, "run.json");
        FAIL("expected E_CONFIG");
    } catch (const Error& e) {
        CHECK(e.code() == "E_CONFIG");
        CHECK(e.where().key == "quantization.compute_dtype");
        CHECK(std::string(e.what()).find("fp8") != std::string::npos);
    }
    try {
        parse_run_config(cfg("gpu"), "run.json");
        FAIL("expected E_CONFIG");
    } catch (const Error& e) {
        CHECK(e.code() == "E_CONFIG");
        CHECK(e.where().key == "hardware.device");
    }
}

TEST_CASE("backend: compute_dtype float32 selects the CPU under auto and is an error under cuda") {
    LoadedModel m = load_model_on("auto", kFixture, QuantSpec{}, AdapterSpec{}, 0, "run.json", "float32");
    REQUIRE(m.model);
    CHECK(m.backend == "cpu");
    try {
        load_model_on("cuda", kFixture, QuantSpec{}, AdapterSpec{}, 0, "run.json", "float32");
        FAIL("expected E_CONFIG");
    } catch (const Error& e) {
        CHECK(e.code() == "E_CONFIG");
        CHECK(e.where().key == "quantization.compute_dtype");
    }
}


TEST_CASE("run.json: sequences up to 16384 tokens (source_max_len + target_max_len), a longer sum names the key") {
    auto cfg = [](int64_t src, int64_t tgt) {
        return nlohmann::json{{"model", {{"path", kFixture}}},
                              {"data", {{"train_tokens", "/tmp/x.hqtok"}, {"source_max_len", src}, {"target_max_len", tgt}}},
                              {"output", {{"dir", "/tmp"}, {"run_name", "r"}}}};
    };
    CHECK(parse_run_config(cfg(16000, 384), "run.json").data.max_len() == kMaxSeqLen);
    CHECK(parse_run_config(cfg(8192, 8192), "run.json").data.max_len() == 16384);
    for (const auto& [src, tgt] : {std::pair<int64_t, int64_t>{16000, 385}, {16385, 1}}) {
        try {
            parse_run_config(cfg(src, tgt), "run.json");
            FAIL("expected E_CONFIG");
        } catch (const Error& e) {
            CHECK(e.code() == "E_CONFIG");
            CHECK(e.where().key.rfind("data.", 0) == 0);
            CHECK(std::string(e.what()).find("16384") != std::string::npos);
        }
    }
}
