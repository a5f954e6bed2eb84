// test_tokens.cpp — .hqtok reading/validation (every corruption names file + offset), batching, data cursor.
#include <doctest/doctest.h>

#include <stdlib.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "error.h"
#include "fsutil.h"
#include "tokens.h"

using namespace hq;

namespace {

std::string tmp_dir() {
    char tmpl[] = "/tmp/hq_test_tokens_XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    return tmpl;
}

// Examples: lengths 4, 2, 5 (11 tokens); source tokens masked 0, targets 1.
std::string sample_bytes() {
    std::vector<std::vector<uint32_t>> ex = {{1, 10, 11, 2}, {1, 12}, {1, 13, 14, 15, 2}};
    std::vector<std::vector<uint8_t>> mk = {{0, 0, 1, 1}, {0, 1}, {0, 0, 1, 1, 1}};
    return encode_token_file(ex, mk, {{"vocab_size", 32}, {"bos_id", 1}, {"eos_id", 2}, {"pad_id", 0}});
}

uint64_t u64_at(const std::string& b, size_t off) {
    uint64_t v;
    std::memcpy(&v, b.data() + off, 8);
    return v;
}
void put_u64(std::string& b, size_t off, uint64_t v) { std::memcpy(&b[off], &v, 8); }
void put_u32(std::string& b, size_t off, uint32_t v) { std::memcpy(&b[off], &v, 4); }

// Byte layout of sample_bytes(): P = start of offsets.
size_t offsets_start(const std::string& b) {
    uint32_t H;
    std::memcpy(&H, b.data() + 12, 4);
    return (16 + H + 7) / 8 * 8;
}

// Writes `bytes`, expects read_token_file to throw E_TOKENS at `offset` with `needle` in the message.
void expect_error(const std::string& dir, const std::string& name, const std::string& bytes, int64_t offset,
                  const std::string& needle, int64_t model_vocab = 0) {
    const std::string path = dir + "/" + name;
    write_file_atomic(path, bytes);
    try {
        read_token_file(path, model_vocab);
        FAIL("no error for " << name);
    } catch (const Error& e) {
        CHECK(e.code() == "E_TOKENS");
        CHECK(e.where().file == path);
        CHECK_MESSAGE(e.where().offset == offset, std::string(e.what()));
        CHECK_MESSAGE(std::string(e.what()).find(needle) != std::string::npos, e.what());
        CHECK(std::string(e.what()).find(path) != std::string::npos);
        CHECK(std::string(e.what()).find("byte offset " + std::to_string(offset)) != std::string::npos);
    }
}

}  // namespace

TEST_CASE("a valid token file round-trips") {
    const std::string dir = tmp_dir();
    const std::string b = sample_bytes();
    CHECK(b.size() % 8 == 0);
    CHECK(std::memcmp(b.data(), "HQTOK\0\0\1", 8) == 0);
    write_file_atomic(dir + "/ok.hqtok", b);
    TokenFile f = read_token_file(dir + "/ok.hqtok", 32);
    CHECK(f.n_examples == 3);
    CHECK(f.n_tokens == 11);
    CHECK(f.vocab_size == 32);
    CHECK(f.pad_id == 0);
    CHECK(f.bos_id == 1);
    CHECK(f.offsets == std::vector<uint64_t>{0, 4, 6, 11});
    CHECK(f.ids[6] == 1);
    CHECK(f.ids[10] == 2);
    CHECK(f.length(2) == 5);
    CHECK(f.targets(0) == 2);
    CHECK(f.targets(1) == 1);
    CHECK(f.targets(2) == 3);
    CHECK(f.targets(2, 3) == 1);   // truncated to [1, 13, 14]: only 14 is a target
    CHECK(f.total_targets() == 6);
    CHECK(f.header["format"] == "hqtok");
    remove_all(dir);
}

TEST_CASE("each corruption is an E_TOKENS error naming the file and byte offset") {
    const std::string dir = tmp_dir();
    const std::string good = sample_bytes();
    const size_t P = offsets_start(good), ids = P + 8 * 4, mask = ids + 4 * 11;

    std::string b = good;
    b[3] = 'X';
    expect_error(dir, "magic.hqtok", b, 0, "bad magic");

    b = good;
    put_u32(b, 8, 3);
    expect_error(dir, "version.hqtok", b, 8, "version 3");

    b = good;
    put_u32(b, 8, 2);   // a version 2 preamble on a version 1 header
    expect_error(dir, "version12.hqtok", b, 16, "\"version\" is not 2");

    expect_error(dir, "short.hqtok", good.substr(0, 10), 10, "shorter than");

    b = good;
    put_u32(b, 12, 1u << 20);
    expect_error(dir, "hlen.hqtok", b, 12, "runs past the end");

    b = good;
    b[16] = '[';
    expect_error(dir, "json.hqtok", b, 25, "not valid JSON");   // where the parser stopped: {"format" -> [format"

    // Truncated: the last 8 bytes (mask tail + padding) are missing.
    expect_error(dir, "trunc.hqtok", good.substr(0, good.size() - 8), static_cast<int64_t>(good.size() - 8),
                 "truncated");
    expect_error(dir, "trailing.hqtok", good + std::string(8, '\0'), static_cast<int64_t>(good.size()),
                 "trailing bytes");

    b = good;
    put_u64(b, P, 1);
    expect_error(dir, "first.hqtok", b, static_cast<int64_t>(P), "first example offset");

    b = good;
    put_u64(b, P + 16, 3);   // offsets 0, 4, 3, 11: decreases after example 1
    expect_error(dir, "decr.hqtok", b, static_cast<int64_t>(P + 16), "offsets decrease at example 1");

    b = good;
    put_u64(b, P + 16, 12);  // beyond n_tokens
    expect_error(dir, "beyond.hqtok", b, static_cast<int64_t>(P + 16), "beyond n_tokens");

    b = good;
    put_u64(b, P + 24, 10);  // last offset != n_tokens
    expect_error(dir, "last.hqtok", b, static_cast<int64_t>(P + 24), "must equal n_tokens");

    b = good;
    put_u32(b, ids + 4 * 7, 40);  // token 7 lies in example 2
    expect_error(dir, "vocab.hqtok", b, static_cast<int64_t>(ids + 28), "example 2");

    // In range of the file's vocab (32) but not the model's (12).
    expect_error(dir, "model_vocab.hqtok", good, static_cast<int64_t>(ids + 20), "id 12 at position 5 of example 1", 12);

    b = good;
    b[mask + 5] = 7;
    expect_error(dir, "mask.hqtok", b, static_cast<int64_t>(mask + 5), "of example 1 is not 0 or 1");

    b = good;
    b[good.size() - 1] = 1;
    expect_error(dir, "pad.hqtok", b, static_cast<int64_t>(good.size() - 1), "padding byte");

    // Header without n_tokens.
    std::string nohdr = encode_token_file({{1, 2}}, {{0, 1}}, {{"vocab_size", 4}});
    std::string key = "\"n_tokens\"";
    size_t at = nohdr.find(key);
    REQUIRE(at != std::string::npos);
    nohdr.replace(at, key.size(), "\"n_tokenZ\"");
    expect_error(dir, "nokey.hqtok", nohdr, 16, "\"n_tokens\"");
    CHECK(u64_at(good, P + 24) == 11);
    remove_all(dir);
}

TEST_CASE("micro-batches are right-padded with pad_id; labels -100 on source and padding") {
    const std::string dir = tmp_dir();
    write_file_atomic(dir + "/t.hqtok", sample_bytes());
    TokenFile f = read_token_file(dir + "/t.hqtok");
    MicroBatch mb = make_micro_batch(f, {1, 0}, 0);
    CHECK(mb.B == 2);
    CHECK(mb.T == 4);
    CHECK(mb.ids == std::vector<int32_t>{1, 12, 0, 0, 1, 10, 11, 2});
    CHECK(mb.labels == std::vector<int32_t>{-100, 12, -100, -100, -100, -100, 11, 2});
    CHECK(mb.n_targets == 3);
    CHECK(mb.n_real_tokens == 6);
    MicroBatch tr = make_micro_batch(f, {2}, 3);
    CHECK(tr.T == 3);
    CHECK(tr.ids == std::vector<int32_t>{1, 13, 14});
    CHECK(tr.labels == std::vector<int32_t>{-100, -100, 14});
    CHECK(tr.n_targets == 1);
    remove_all(dir);
}

TEST_CASE("a packed (version 2) file: document offsets, segments, and no label on a document's first token") {
    // Example 0 packs two documents, [1 10 11 2] and [1 12] (all tokens targets), example 1 is one document of 5.
    const std::vector<std::vector<uint32_t>> ex = {{1, 10, 11, 2, 1, 12}, {1, 13, 14, 15, 2}};
    const std::vector<std::vector<uint8_t>> mk = {{1, 1, 1, 1, 1, 1}, {0, 0, 1, 1, 1}};
    const nlohmann::json hdr = {{"vocab_size", 32}, {"bos_id", 1}, {"eos_id", 2}, {"pad_id", 0}};
    const std::string good = encode_token_file(ex, mk, hdr, {{4, 2}, {5}});
    CHECK(good.size() % 8 == 0);
    const std::string dir = tmp_dir();
    write_file_atomic(dir + "/p.hqtok", good);
    TokenFile f = read_token_file(dir + "/p.hqtok", 32);
    CHECK(f.packed);
    CHECK(f.header["version"] == 2);
    CHECK(f.header["n_documents"] == 3);
    CHECK(f.documents == std::vector<uint64_t>{0, 4, 6, 11});
    CHECK(f.targets(0) == 4);        // tokens 1..5 are targets but 4 starts the second document
    CHECK(f.targets(0, 4) == 3);     // cut before the second document
    CHECK(f.total_targets() == 7);
    MicroBatch mb = make_micro_batch(f, {0, 1}, 0);
    CHECK(mb.T == 6);
    CHECK(mb.seg == std::vector<int32_t>{0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1});   // row 1's padding: a document of its own
    CHECK(mb.labels == std::vector<int32_t>{1, 10, 11, 2, -100, 12, -100, -100, 14, 15, 2, -100});   // label 0 is never read (HF shift)
    CHECK(mb.n_targets == 7);
    CHECK(make_micro_batch(read_token_file(dir + "/p.hqtok"), {1}, 0).seg == std::vector<int32_t>{0, 0, 0, 0, 0});

    // Version 1 files read as before: not packed, no segments.
    write_file_atomic(dir + "/v1.hqtok", encode_token_file(ex, mk, hdr));
    TokenFile v1 = read_token_file(dir + "/v1.hqtok");
    CHECK(!v1.packed);
    CHECK(make_micro_batch(v1, {0}, 0).seg.empty());
    CHECK(v1.targets(0) == 5);

    // Corruptions of the document offsets name the byte offset.
    const size_t docs = good.size() - 8 * 4;
    std::string b = good;
    put_u64(b, docs + 8, 5);   // document 0 ends at 5: example 1 (at 6) still fine, but 4 .. 6 is now 5 .. 6
    put_u64(b, docs + 16, 7);  // 7 > 6: example 1 starts inside document 1
    expect_error(dir, "span.hqtok", b, static_cast<int64_t>(docs + 16), "a document spans two examples");
    b = good;
    put_u64(b, docs + 16, 3);
    expect_error(dir, "ddecr.hqtok", b, static_cast<int64_t>(docs + 16), "document offsets decrease at document 1");
    b = good;
    put_u64(b, docs + 24, 10);
    expect_error(dir, "dlast.hqtok", b, static_cast<int64_t>(docs + 24), "last document offset is 10");
    expect_error(dir, "dtrunc.hqtok", good.substr(0, docs + 16), static_cast<int64_t>(docs + 16), "n_documents=3");
    remove_all(dir);
}

TEST_CASE("epoch permutations are deterministic permutations that depend on seed and epoch") {
    auto p = epoch_permutation(100, 7, 0);
    auto s = p;
    std::sort(s.begin(), s.end());
    for (int i = 0; i < 100; ++i) CHECK(s[i] == i);
    CHECK(epoch_permutation(100, 7, 0) == p);
    CHECK(epoch_permutation(100, 8, 0) != p);
    CHECK(epoch_permutation(100, 7, 1) != p);
    CHECK(epoch_permutation(1, 7, 3) == std::vector<int64_t>{0});
}

TEST_CASE("the batcher crosses epochs and a restored cursor replays the stream exactly") {
    const std::string dir = tmp_dir();
    std::vector<std::vector<uint32_t>> ex;
    std::vector<std::vector<uint8_t>> mk;
    for (uint32_t i = 0; i < 7; ++i) {
        ex.push_back({1, 3 + i, 3 + i});
        mk.push_back({0, 1, 1});
    }
    write_file_atomic(dir + "/b.hqtok", encode_token_file(ex, mk, {{"vocab_size", 16}, {"pad_id", 0}}));
    TokenFile f = read_token_file(dir + "/b.hqtok", 16);

    Batcher a(f, 2, 0, true, 42);
    std::vector<int64_t> first_epoch;
    for (int k = 0; k < 3; ++k)
        for (int64_t e : a.next().examples) first_epoch.push_back(e);
    MicroBatch straddle = a.next();   // example 7 of epoch 0 + example 1 of epoch 1
    first_epoch.push_back(straddle.examples[0]);
    std::vector<int64_t> sorted = first_epoch;
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6});
    CHECK(first_epoch == epoch_permutation(7, 42, 0));
    CHECK(straddle.examples[1] == epoch_permutation(7, 42, 1)[0]);
    CHECK(a.cursor().epoch == 1);
    CHECK(a.cursor().position == 1);
    CHECK(a.epoch_progress() == doctest::Approx(1.0 + 1.0 / 7.0));

    DataCursor saved = DataCursor::from_json(a.cursor().to_json());
    CHECK(saved == a.cursor());
    std::vector<std::vector<int32_t>> expect;
    for (int k = 0; k < 6; ++k) expect.push_back(a.next().ids);

    Batcher b(f, 2, 0, true, 999);   // constructed with another seed: the cursor's seed wins
    b.restore(saved);
    for (int k = 0; k < 6; ++k) CHECK(b.next().ids == expect[k]);

    Batcher plain(f, 3, 0, false, 42);
    CHECK(plain.next().examples == std::vector<int64_t>{0, 1, 2});

    DataCursor bad = saved;
    bad.position = 7;
    CHECK_THROWS_AS(b.restore(bad), Error);
    CHECK_THROWS_AS(DataCursor::from_json(nlohmann::json{{"epoch", 1}}), Error);
    remove_all(dir);
}
