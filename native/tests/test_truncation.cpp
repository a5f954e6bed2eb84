// test_truncation.cpp — the W_TRUNCATED wording: the rows, tokens and loss targets that the trainer's cut drops,
// why the cut is where it is (the model's max_position_embeddings or the configured lengths), and the rope scaling
// advice per scaling kind; then the real hqlora-train binary emitting that warning on a tiny model.
#include <doctest/doctest.h>

#include <stdlib.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fsutil.h"
#include "model_config.h"
#include "tokens.h"
#include "trainer_child.h"
#include "truncation.h"

using namespace hq;
using json = nlohmann::json;

namespace {

const std::string kRepo = HQ_REPO_ROOT;
const std::string kLlama = kRepo + "/test/fixtures/models/tiny-llama";     // max_position_embeddings 256, no scaling
const std::string kLlama3 = kRepo + "/test/fixtures/models/tiny-llama3";   // 256, llama3 scaling factor 8

// Rows of the given lengths; the first `prompt` tokens of each are masked out (no loss), the rest are targets.
TokenFile rows_file(const std::string& path, const std::vector<uint32_t>& lengths, uint32_t prompt) {
    std::vector<std::vector<uint32_t>> ex;
    std::vector<std::vector<uint8_t>> mk;
    for (uint32_t n : lengths) {
        std::vector<uint32_t> e(n);
        std::vector<uint8_t> m(n, 1);
        for (uint32_t k = 0; k < n; ++k) e[k] = 3 + (k * 7) % 90;
        for (uint32_t k = 0; k < prompt && k < n; ++k) m[k] = 0;
        ex.push_back(e);
        mk.push_back(m);
    }
    write_file_atomic(path, encode_token_file(ex, mk, {{"vocab_size", 105}, {"bos_id", 1}, {"eos_id", 2}, {"pad_id", 0}}));
    return read_token_file(path);
}

std::string tmp_dir() {
    char tmpl[] = "/tmp/hq_test_trunc_XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    return tmpl;
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("truncation_stats counts the rows, tokens and loss targets past the cut") {
    const std::string d = tmp_dir();
    // 300 and 260 tokens are 44 and 4 past a cut at 256; 270 prompt tokens make 14 of the first row's 44 prompt.
    TokenFile f = rows_file(d + "/a.hqtok", {300, 260, 100, 256}, 270);
    TruncationStats s = truncation_stats(f, 256);
    CHECK(s.rows == 2);
    CHECK(s.tokens == 48);
    CHECK(s.max_row == 44);
    CHECK(s.targets == 30 + 0);   // row 0: positions 270..299 are targets; row 1 (260 < 270 prompt) has none
    CHECK(truncation_stats(f, 300).rows == 0);
    remove_all(d);
}

TEST_CASE("the message names both limits and the fixes, per rope scaling kind") {
    TruncationStats s{2, 48, 44, 30};
    ModelConfig plain = load_model_config(kLlama);
    std::string m = truncation_message(s, 4, 256, 512, plain, kLlama, "t.hqtok");
    CHECK(has(m, "2 of 4 training examples are longer than 256 tokens and are truncated: 48 tokens are dropped "
                 "(up to 44 per example, 30 of them loss targets)"));
    CHECK(has(m, "256 is the model's max_position_embeddings (" + kLlama + "/config.json), below "
                 "data.source_max_len + data.target_max_len = 512"));
    CHECK(has(m, "Lower source_max_len / target_max_len to a sum of at most 256"));
    CHECK(has(m, "or set max_position_embeddings to 512 and \"rope_scaling\": {\"rope_type\": \"linear\", "
                 "\"factor\": 2} in the model's config.json"));

    ModelConfig l3 = load_model_config(kLlama3);
    CHECK(rope_extension_advice(l3, 640) ==
          "set max_position_embeddings to 640 and rope_scaling.factor from 8 to 20 in the model's config.json "
          "(llama3 rope scaling)");
    ModelConfig lin = plain;
    lin.rope_scaling.type = "linear";
    lin.rope_scaling.factor = 2;
    CHECK(has(rope_extension_advice(lin, 384), "rope_scaling.factor from 2 to 3 in"));
    CHECK(has(rope_extension_advice(plain, 300), "\"factor\": 1.1719}"));

    // transformers 5: rope_parameters {"rope_type": "default", ...} is what the trainer reads (last).
    const std::string d = tmp_dir();
    json j = json::parse(read_file(kLlama + "/config.json"));
    j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 10000}};
    write_file_atomic(d + "/config.json", j.dump());
    ModelConfig tf5 = load_model_config(d);
    CHECK(tf5.rope_key == "rope_parameters");
    CHECK(plain.rope_key == "rope_scaling");
    remove_all(d);
    CHECK(has(rope_extension_advice(tf5, 512), "and rope_parameters.rope_type \"linear\" with rope_parameters.factor 2 in"));

    ModelConfig phi = plain;
    phi.rope_scaling.type = "longrope";
    CHECK(rope_extension_advice(phi, 512).empty());
    m = truncation_message(s, 4, 256, 512, phi, kLlama, "t.hqtok");
    CHECK(has(m, "this model's longrope rope scaling was fitted to 256 positions and cannot be stretched"));
    CHECK_FALSE(has(m, "rope_type"));

    // The cut is the configured length: the token file was prepared with longer rows.
    m = truncation_message(s, 4, 200, 200, plain, kLlama, "t.hqtok");
    CHECK(has(m, "200 is data.source_max_len + data.target_max_len, but t.hqtok holds longer rows"));
    CHECK(has(m, "the model takes up to 256 positions"));
}

TEST_CASE("hqlora-train warns W_TRUNCATED with the numbers when the lengths exceed max_position_embeddings") {
    const std::string d = tmp_dir();
    const std::string train = d + "/train.hqtok";
    rows_file(train, {300, 260, 100, 40}, 10);   // cut at 256: 44 + 4 tokens past it, every one a target
    json cfg = {{"model", {{"path", kLlama}}},
                {"quantization", {{"type", "nf4"}}},
                {"adapter", {{"levels", {{{"rank", 2}, {"alpha", 4}}}}}},
                {"data", {{"train_tokens", train}, {"source_max_len", 500}, {"target_max_len", 12}}},
                {"training", {{"max_steps", 1}, {"micro_batch_size", 1}, {"gradient_accumulation_steps", 1}}},
                {"eval", {{"every_steps", 0}}},
                {"checkpoints", {{"every_steps", 0}}},
                {"output", {{"dir", d + "/runs"}, {"run_name", "trunc"}}}};
    write_file_atomic(d + "/run.json", cfg.dump(2));
    hq_test::Child c = hq_test::spawn({"--config", d + "/run.json", "--threads", "2"}, d + "/out");
    REQUIRE(hq_test::wait_child(c) == 0);
    auto warnings = hq_test::of_type(hq_test::read_events(c.out_path), "warning");
    std::string msg;
    for (const auto& w : warnings)
        if (w.value("code", "") == "W_TRUNCATED") msg = w.value("message", "");
    REQUIRE_MESSAGE(!msg.empty(), "no W_TRUNCATED warning");
    CHECK(has(msg, "2 of 4 training examples are longer than 256 tokens and are truncated: 48 tokens are dropped "
                   "(up to 44 per example, 48 of them loss targets)"));
    CHECK(has(msg, "256 is the model's max_position_embeddings (" + kLlama + "/config.json), below "
                   "data.source_max_len + data.target_max_len = 512"));
    CHECK(has(msg, "\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2}"));
    remove_all(d);
}
