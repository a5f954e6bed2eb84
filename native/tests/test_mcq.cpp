// test_mcq.cpp — multiple-choice scoring (native/src/mcq.{h,cpp}) against transformers, and the .hqmcq file.
//
//   golden       test/golden/mcq-tiny-llama.json (test/reference/make_mcq_golden.py): tiny-llama, NF4 (double quant,
//                blocksize 64) with the golden adapter init of test/golden/tiny-llama.safetensors, 5 prompts of
//                different lengths scored with 0..L levels active. We score the same ids in ONE right-padded batch
//                (choice_logits, max_batch 5) and require max |ours - ref| <= 1e-4 over all letter logits; level 0
//                is the NF4 base alone (AdapterOff, exactly how `hqlora-train eval` computes its base row).
//   batching     the letter logits do not depend on the batch size (1 vs 5: right padding is invisible).
//   score_mcq    accuracy / per-subject / macro numbers follow from the predictions.
//   file         encode_mcq_file -> read_mcq_file round trip; corrupt files fail with E_MCQ naming file + offset.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "error.h"
#include "fsutil.h"
#include "mcq.h"
#include "model.h"
#include "safetensors.h"

using namespace hq;

namespace {

std::string repo(const std::string& rel) { return std::string(HQ_REPO_ROOT) + "/" + rel; }

std::string tmp_path(const std::string& name) {
    const char* t = std::getenv("TMPDIR");
    return std::string(t && *t ? t : "/tmp") + "/hq_test_mcq_" + std::to_string(::getpid()) + "_" + name;
}

// The golden model: tiny-llama with the level spec and adapter init of test/golden/tiny-llama.safetensors, loaded
// exactly as test_golden.cpp does (NF4, double quant, blocksize 64; A_j = rows, B_j = columns of the concatenation).
std::unique_ptr<Model> golden_model(const nlohmann::json& g) {
    std::unique_ptr<SafeTensorsFile> st = SafeTensorsFile::open(repo("test/golden/tiny-llama.safetensors"));
    const auto& md = st->metadata();
    AdapterSpec spec;
    spec.levels.clear();
    for (const auto& lv : nlohmann::json::parse(md.at("hqlora.levels")))
        spec.levels.push_back(LevelSpec{lv.at("rank").get<int>(), lv.at("alpha").get<float>()});
    spec.target_modules = nlohmann::json::parse(md.at("hqlora.target_modules")).get<std::vector<std::string>>();
    spec.rslora = md.at("hqlora.rslora") == "true";
    spec.dropout = 0.0f;
    spec.init = "kaiming";
    // The golden JSON was made from this very adapter spec.
    REQUIRE(g.at("levels").size() == spec.levels.size());
    for (size_t j = 0; j < spec.levels.size(); j++) {
        CHECK(g["levels"][j].at("rank").get<int>() == spec.levels[j].rank);
        CHECK(g["levels"][j].at("alpha").get<float>() == spec.levels[j].alpha);
    }
    QuantSpec quant;
    quant.type = "nf4";
    quant.double_quant = true;
    quant.blocksize = 64;
    std::unique_ptr<Model> model = Model::load(repo("test/fixtures/models/tiny-llama"), quant, spec, 1234);
    const int R = model->adapter_spec().total_rank();
    for (const AdaptedModule& m : model->modules()) {
        CAPTURE(m.name);
        REQUIRE(m.level_offset.size() == spec.levels.size());
        for (size_t j = 0; j < spec.levels.size(); j++) {
            const int off = m.level_offset[j], r = spec.levels[j].rank;
            const std::string key = m.name + ".levels." + std::to_string(j) + ".lora_";
            const std::vector<float> A = st->read_f32(key + "A.weight"), B = st->read_f32(key + "B.weight");
            REQUIRE(A.size() == size_t(r) * m.in);
            REQUIRE(B.size() == size_t(m.out) * r);
            std::copy(A.begin(), A.end(), m.A->w + size_t(off) * m.in);
            for (int o = 0; o < m.out; o++)
                for (int c = 0; c < r; c++) m.B->w[size_t(o) * R + off + c] = B[size_t(o) * r + c];
        }
    }
    model->set_training(false, 0);
    return model;
}

// Letter logits of every golden prompt with `levels` active (0 = the NF4 base alone), batched as `max_batch`.
std::vector<float> score(Model& model, const std::vector<std::vector<int32_t>>& prompts, const std::vector<int32_t>& ids,
                         int levels, int max_batch) {
    std::vector<float> out;
    McqOptions opt;
    opt.max_batch = max_batch;
    int forwards = 0;
    opt.progress = [&](int64_t, int64_t) { ++forwards; };
    if (levels == 0) {
        AdapterOff off(model);
        model.set_active_levels(0);
        CHECK(choice_logits(model, prompts, ids, opt, out) == 0);
    } else {
        model.set_active_levels(levels);
        CHECK(choice_logits(model, prompts, ids, opt, out) == 0);
    }
    model.set_active_levels(0);
    const int n = static_cast<int>(prompts.size());
    CHECK(forwards == (n + max_batch - 1) / max_batch);
    return out;
}

Error expect_error(const std::string& path, const std::string& bytes, int64_t vocab = 0) {
    write_file_atomic(path, bytes);
    try {
        read_mcq_file(path, vocab);
    } catch (const Error& e) {
        std::remove(path.c_str());
        return e;
    }
    std::remove(path.c_str());
    FAIL("read_mcq_file accepted a corrupt file");
    return Error("", "");
}

void check_error(const Error& e, const std::string& path, int64_t offset, const std::string& what) {
    CAPTURE(e.what());
    CHECK(e.code() == "E_MCQ");
    CHECK(e.where().file == path);
    CHECK(e.where().offset == offset);
    const std::string msg = e.what();
    CHECK(msg.find(path) != std::string::npos);
    CHECK(msg.find("byte offset " + std::to_string(offset)) != std::string::npos);
    CHECK(msg.find(what) != std::string::npos);
    CHECK(!e.hint().empty());
}

uint64_t round8(uint64_t x) { return (x + 7) / 8 * 8; }

}  // namespace

TEST_CASE("mcq golden: letter logits of padded batches match transformers for 0..L active levels") {
    const nlohmann::json g = nlohmann::json::parse(read_file(repo("test/golden/mcq-tiny-llama.json")));
    std::unique_ptr<Model> model = golden_model(g);
    const std::vector<int32_t> letter_ids = g.at("letter_ids").get<std::vector<int32_t>>();
    REQUIRE(letter_ids.size() == 4);
    std::vector<std::vector<int32_t>> prompts;
    size_t shortest = SIZE_MAX, longest = 0;
    for (const auto& p : g.at("prompts")) {
        prompts.push_back(p.at("ids").get<std::vector<int32_t>>());
        REQUIRE(prompts.back().front() == g.at("bos_id").get<int32_t>());
        shortest = std::min(shortest, prompts.back().size());
        longest = std::max(longest, prompts.back().size());
    }
    REQUIRE(prompts.size() == 5);
    REQUIRE(shortest < longest);   // the batch really is padded
    REQUIRE(longest <= size_t(model->config().max_position_embeddings));
    const int L = static_cast<int>(model->adapter_spec().levels.size());
    REQUIRE(g.at("letter_logits").size() == size_t(L + 1));

    double worst = 0.0;
    for (int n = 0; n <= L; n++) {
        CAPTURE(n);
        std::vector<float> ref;
        for (const auto& row : g["letter_logits"].at(std::to_string(n)))
            for (const auto& x : row) ref.push_back(x.get<float>());
        const std::vector<float> got = score(*model, prompts, letter_ids, n, 5);   // one forward, padded to `longest`
        REQUIRE(got.size() == ref.size());
        double d = 0.0;
        for (size_t i = 0; i < got.size(); i++) d = std::max(d, std::fabs(double(got[i]) - double(ref[i])));
        MESSAGE("levels " << n << ": letter logits max-abs vs transformers " << d);
        CHECK(d <= 1e-4);
        worst = std::max(worst, d);
        // Unbatched (no padding at all) agrees with the padded batch.
        const std::vector<float> one = score(*model, prompts, letter_ids, n, 1);
        double db = 0.0;
        for (size_t i = 0; i < got.size(); i++) db = std::max(db, std::fabs(double(got[i]) - double(one[i])));
        CHECK(db <= 1e-5);
    }
    // The levels change the logits (the comparison above is not vacuous) and AdapterOff restored the adapter.
    const std::vector<float> all = score(*model, prompts, letter_ids, L, 5);
    const std::vector<float> base = score(*model, prompts, letter_ids, 0, 5);
    double spread = 0.0;
    for (size_t i = 0; i < all.size(); i++) spread = std::max(spread, std::fabs(double(all[i]) - double(base[i])));
    CHECK(spread > 1e-2);
    std::vector<float> ref_all;
    for (const auto& row : g["letter_logits"].at(std::to_string(L)))
        for (const auto& x : row) ref_all.push_back(x.get<float>());
    for (size_t i = 0; i < all.size(); i++) CHECK(std::fabs(double(all[i]) - double(ref_all[i])) <= 1e-4);
    MESSAGE("worst letter-logit difference over all levels: " << worst);
}

TEST_CASE("mcq golden: score_mcq on an .hqmcq of the golden prompts gives the reference predictions") {
    const nlohmann::json g = nlohmann::json::parse(read_file(repo("test/golden/mcq-tiny-llama.json")));
    std::unique_ptr<Model> model = golden_model(g);
    std::vector<std::vector<uint32_t>> prompts;
    std::vector<uint32_t> answers, subjects;
    std::vector<std::string> names;
    for (const auto& p : g.at("prompts")) {
        prompts.push_back(p.at("ids").get<std::vector<uint32_t>>());
        answers.push_back(p.at("answer").get<uint32_t>());
        const std::string s = p.at("subject").get<std::string>();
        auto it = std::find(names.begin(), names.end(), s);
        if (it == names.end()) names.push_back(s), it = names.end() - 1;
        subjects.push_back(static_cast<uint32_t>(it - names.begin()));
    }
    nlohmann::json header = {{"vocab_size", model->config().vocab_size}, {"pad_id", 0}, {"bos_id", 1},
                             {"choice_labels", g.at("letters")}, {"choice_ids", g.at("letter_ids")}, {"subjects", names},
                             {"shots", nullptr}};
    const std::string path = tmp_path("golden.hqmcq");
    write_file_atomic(path, encode_mcq_file(prompts, answers, subjects, header));
    const McqFile f = read_mcq_file(path, model->config().vocab_size);
    std::remove(path.c_str());
    const int L = static_cast<int>(model->adapter_spec().levels.size());
    model->set_active_levels(L);
    McqOptions opt;
    opt.max_batch = 2;
    const McqResult r = score_mcq(*model, f, opt);
    model->set_active_levels(0);
    REQUIRE(r.n == 5);
    REQUIRE(r.predictions.size() == 5);
    int64_t correct = 0;
    for (size_t i = 0; i < 5; i++) {
        const auto& ref = g["letter_logits"].at(std::to_string(L))[i];
        int want = 0;
        for (int k = 1; k < 4; k++)
            if (ref[k].get<float>() > ref[want].get<float>()) want = k;
        CHECK(r.predictions[i] == want);
        correct += want == static_cast<int>(answers[i]);
    }
    CHECK(r.correct == correct);
    CHECK(r.accuracy == doctest::Approx(double(correct) / 5.0));
    REQUIRE(r.subjects.size() == names.size());
    double macro = 0.0;
    int64_t total = 0;
    for (const SubjectScore& s : r.subjects) {
        total += s.n;
        CHECK(s.accuracy == doctest::Approx(double(s.correct) / double(s.n)));
        macro += s.accuracy;
    }
    CHECK(total == 5);
    CHECK(r.macro_accuracy == doctest::Approx(macro / double(names.size())));
    const nlohmann::json sum = r.summary();
    CHECK(sum.at("n") == 5);
    CHECK(sum.at("subjects").size() == names.size());
}

TEST_CASE("hqmcq: encode / read round trip and the exact layout") {
    const std::vector<std::vector<uint32_t>> prompts = {{1, 40, 41, 42}, {1, 7}, {1, 9, 9, 9, 9, 9, 9}};
    const std::vector<uint32_t> answers = {3, 0, 1}, subjects = {0, 1, 1};
    const nlohmann::json header = {{"vocab_size", 105}, {"pad_id", 0}, {"bos_id", 1},
                                   {"choice_labels", {"A", "B", "C", "D"}}, {"choice_ids", {38, 39, 40, 41}},
                                   {"subjects", {"alpha", "beta_gamma"}}, {"shots", 5}};
    const std::string bytes = encode_mcq_file(prompts, answers, subjects, header);
    CHECK(bytes.size() % 8 == 0);
    CHECK(std::memcmp(bytes.data(), kHqmcqMagic, 8) == 0);
    const std::string path = tmp_path("rt.hqmcq");
    write_file_atomic(path, bytes);
    const McqFile f = read_mcq_file(path, 105);
    std::remove(path.c_str());
    CHECK(f.path == path);
    CHECK(f.n_questions == 3);
    CHECK(f.n_tokens == 13);
    CHECK(f.vocab_size == 105);
    CHECK(f.choice_labels == std::vector<std::string>{"A", "B", "C", "D"});
    CHECK(f.choice_ids == std::vector<int32_t>{38, 39, 40, 41});
    CHECK(f.subjects == std::vector<std::string>{"alpha", "beta_gamma"});
    CHECK(f.offsets == std::vector<uint64_t>{0, 4, 6, 13});
    CHECK(f.length(2) == 7);
    CHECK(f.answer == answers);
    CHECK(f.subject == subjects);
    CHECK(f.header.at("shots") == 5);
    CHECK(f.header.at("format") == "hqmcq");
    std::vector<uint32_t> flat;
    for (const auto& p : prompts) flat.insert(flat.end(), p.begin(), p.end());
    CHECK(f.ids == flat);
    // Re-encoding what was read gives the same bytes.
    std::vector<std::vector<uint32_t>> again;
    for (int64_t i = 0; i < f.n_questions; i++)
        again.emplace_back(f.ids.begin() + int64_t(f.offsets[i]), f.ids.begin() + int64_t(f.offsets[i + 1]));
    CHECK(encode_mcq_file(again, f.answer, f.subject, header) == bytes);
}

TEST_CASE("hqmcq: corrupt files fail with E_MCQ naming the file and the byte offset") {
    const std::vector<std::vector<uint32_t>> prompts = {{1, 40, 41}, {1, 7, 8, 9}};
    const std::vector<uint32_t> answers = {2, 1}, subjects = {0, 0};
    const nlohmann::json header = {{"vocab_size", 105}, {"pad_id", 0}, {"choice_labels", {"A", "B", "C", "D"}},
                                   {"choice_ids", {38, 39, 40, 41}}, {"subjects", {"s"}}};
    const std::string good = encode_mcq_file(prompts, answers, subjects, header);
    uint32_t H = 0;
    std::memcpy(&H, good.data() + 12, 4);
    const uint64_t P = round8(16 + H), ids_at = P + 8 * 3, ans_at = ids_at + 4 * 7, subj_at = ans_at + 4 * 2;
    const std::string path = tmp_path("bad.hqmcq");
    auto put_u32 = [](std::string b, uint64_t at, uint32_t v) {
        std::memcpy(&b[at], &v, 4);
        return b;
    };
    auto put_u64 = [](std::string b, uint64_t at, uint64_t v) {
        std::memcpy(&b[at], &v, 8);
        return b;
    };

    SUBCASE("bad magic") {
        std::string b = good;
        b[3] = 'X';
        check_error(expect_error(path, b), path, 0, "bad magic");
    }
    SUBCASE("shorter than the preamble") { check_error(expect_error(path, good.substr(0, 10)), path, 10, "shorter than"); }
    SUBCASE("unsupported version") { check_error(expect_error(path, put_u32(good, 8, 2)), path, 8, "unsupported format version 2"); }
    SUBCASE("header length past the end") {
        check_error(expect_error(path, put_u32(good, 12, 1u << 20)), path, 12, "runs past the end");
    }
    SUBCASE("header not JSON") {
        std::string b = good;
        b[16] = '[';
        check_error(expect_error(path, b), path, 16, "not valid JSON");
    }
    SUBCASE("truncated body") {
        check_error(expect_error(path, good.substr(0, good.size() - 8)), path, int64_t(good.size() - 8), "implies");
    }
    SUBCASE("offsets not increasing") {
        check_error(expect_error(path, put_u64(good, P + 8, 0)), path, int64_t(P + 8), "offset of question 1");
    }
    SUBCASE("token id not below vocab_size") {
        check_error(expect_error(path, put_u32(good, ids_at + 4 * 4, 105)), path, int64_t(ids_at + 16),
                    "token id 105 is not below vocab_size 105");
    }
    SUBCASE("answer not below n_choices") {
        check_error(expect_error(path, put_u32(good, ans_at + 4, 4)), path, int64_t(ans_at + 4), "answer 4 of question 1");
    }
    SUBCASE("subject index out of range") {
        check_error(expect_error(path, put_u32(good, subj_at, 1)), path, int64_t(subj_at), "subject 1 of question 0");
    }
    SUBCASE("trailing padding not zero") {
        REQUIRE(subj_at + 8 < good.size());   // 4 bytes of padding follow the subjects
        std::string b = good;
        b[subj_at + 8] = 1;
        check_error(expect_error(path, b), path, int64_t(subj_at + 8), "trailing padding");
    }
    SUBCASE("questions tokenized for a larger vocabulary than the model") {
        check_error(expect_error(path, good, 64), path, 16, "another tokenizer");
    }
}
