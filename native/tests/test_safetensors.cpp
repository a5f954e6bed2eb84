// test_safetensors.cpp — writer/reader round trip, every rejection rule of the reference parser, the model-folder
// loader (single + sharded), dtype conversions.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "dtype.h"
#include "error.h"
#include "fsutil.h"
#include "inspect.h"
#include "safetensors.h"

using namespace hq;

namespace {

std::string u64le(uint64_t n) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; i++) s[size_t(i)] = char((n >> (8 * i)) & 0xff);
    return s;
}
// A file from a raw header string and `data_bytes` zero bytes of buffer.
std::string craft(const std::string& header, size_t data_bytes) {
    return u64le(header.size()) + header + std::string(data_bytes, '\0');
}
std::unique_ptr<SafeTensorsFile> parse(const std::string& bytes) {
    return SafeTensorsFile::from_memory(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "mem.safetensors");
}
// Parses and returns the error (fails the test if it parses).
hq::Error reject(const std::string& bytes) {
    try {
        parse(bytes);
    } catch (const hq::Error& e) {
        return e;
    }
    FAIL("expected the parser to reject the input");
    return hq::Error("", "");
}
bool has(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

struct TempDir {
    std::string path;
    TempDir() {
        char buf[] = "/tmp/hq-st-XXXXXX";
        path = ::mkdtemp(buf);
    }
    ~TempDir() { remove_all(path); }
};

}  // namespace

TEST_CASE("dtype: names, bits and conversions") {
    DType t;
    const char* all[] = {"BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
                         "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64",
                         "F64", "I64", "U64"};
    for (const char* n : all) {
        REQUIRE(dtype_from_string(n, &t));
        CHECK(std::string(dtype_name(t)) == n);
    }
    CHECK_FALSE(dtype_from_string("F128", &t));
    CHECK_FALSE(dtype_from_string("f32", &t));
    CHECK(dtype_bits(DType::F4) == 4);
    CHECK(dtype_bits(DType::F6_E2M3) == 6);
    CHECK(dtype_bits(DType::BF16) == 16);
    CHECK(dtype_bits(DType::C64) == 64);
    // bf16 round to nearest even (torch): 1 + 2^-8 is a tie between 1 and 1+2^-7 -> even (1.0)
    CHECK(f32_to_bf16(1.0f + 1.0f / 256) == 0x3f80);
    CHECK(f32_to_bf16(1.0f + 3.0f / 256) == 0x3f82);  // tie, odd lower -> rounds up
    CHECK(f32_to_bf16(1.0f + 1.0f / 256 + 1.0f / 65536) == 0x3f81);
    CHECK(bf16_to_f32(0x3f80) == 1.0f);
    CHECK(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
    CHECK(std::isinf(bf16_to_f32(f32_to_bf16(INFINITY))));
    // f16: exact values, subnormals, overflow, ties
    CHECK(f32_to_f16(1.0f) == 0x3c00);
    CHECK(f32_to_f16(-2.0f) == 0xc000);
    CHECK(f32_to_f16(65504.0f) == 0x7bff);
    CHECK(f32_to_f16(65520.0f) == 0x7c00);
    CHECK(f32_to_f16(std::ldexp(1.0f, -24)) == 0x0001);
    CHECK(f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);             // tie -> even (0)
    CHECK(f32_to_f16(std::ldexp(3.0f, -25)) == 0x0002);             // 1.5 ulp -> 2
    CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);      // tie -> even
    CHECK(f32_to_f16(1.0f + std::ldexp(3.0f, -11)) == 0x3c02);
    for (uint32_t h = 0; h < 0x10000; h++) {  // every finite f16 round-trips through f32
        if ((h & 0x7c00) == 0x7c00) continue;
        REQUIRE(f32_to_f16(f16_to_f32(uint16_t(h))) == h);
    }
    CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));
    CHECK(std::isnan(f16_to_f32(0x7e00)));
}

TEST_CASE("safetensors: writer -> reader round trip for every dtype, 0-rank and zero-size tensors") {
    SafeTensorsWriter w;
    const char* all[] = {"BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
                         "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64",
                         "F64", "I64", "U64"};
    std::vector<std::string> payload;
    for (const char* n : all) {
        DType t;
        REQUIRE(dtype_from_string(n, &t));
        // 8 elements: a whole number of bytes for every dtype (F4: 4 bytes, F6: 6 bytes)
        size_t bytes = size_t(8 * dtype_bits(t) / 8);
        std::string data;
        for (size_t i = 0; i < bytes; i++) data.push_back(char((i * 37 + std::strlen(n)) & 0xff));
        payload.push_back(data);
        w.add(std::string("t.") + n, t, {2, 4}, data.data(), data.size());
    }
    float scalar = 3.5f;
    w.add_f32("scalar", {}, &scalar);
    w.add("empty", DType::BF16, {0, 7}, nullptr, 0);
    w.set_metadata("format", "pt");
    w.set_metadata("note", "ünïcödé \"quoted\"");
    std::string bytes = w.serialize();
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    CHECK(n % 8 == 0);  // header padded to 8
    auto f = parse(bytes);
    CHECK(f->tensors().size() == 24);
    CHECK(f->metadata().at("format") == "pt");
    CHECK(f->metadata().at("note") == "ünïcödé \"quoted\"");
    for (size_t i = 0; i < 22; i++) {
        const TensorInfo* t = f->find(std::string("t.") + all[i]);
        REQUIRE(t);
        CHECK(t->shape == std::vector<int64_t>{2, 4});
        CHECK(std::string(reinterpret_cast<const char*>(f->data(*t)), t->end - t->begin) == payload[i]);
    }
    // Layout: alignment descending, then name.
    int prev_align = 1 << 30;
    std::string prev_name;
    for (const auto& t : f->tensors()) {
        int a = dtype_alignment(t.dtype);
        CHECK(a <= prev_align);
        if (a == prev_align) CHECK(prev_name < t.name);
        prev_align = a;
        prev_name = t.name;
    }
    const TensorInfo* s = f->find("scalar");
    REQUIRE(s);
    CHECK(s->shape.empty());
    CHECK(s->numel() == 1);
    CHECK(f->read_f32("scalar") == std::vector<float>{3.5f});
    const TensorInfo* e = f->find("empty");
    REQUIRE(e);
    CHECK(e->numel() == 0);
    CHECK(e->begin == e->end);
    CHECK(f->read_f32("empty").empty());
}

TEST_CASE("safetensors: read_f32 converts F16/BF16/F64 and names missing tensors") {
    SafeTensorsWriter w;
    std::vector<float> v = {1.0f, -2.5f, 0.15625f, 65504.0f};
    std::vector<uint16_t> h, b;
    std::vector<double> d;
    for (float x : v) {
        h.push_back(f32_to_f16(x));
        b.push_back(f32_to_bf16(x));
        d.push_back(double(x));
    }
    w.add("h", DType::F16, {4}, h.data(), 8);
    w.add("b", DType::BF16, {2, 2}, b.data(), 8);
    w.add("d", DType::F64, {4}, d.data(), 32);
    w.add("i", DType::I32, {1}, h.data(), 4);
    w.add_f32("model.layers.0.self_attn.q_proj.weight", {4}, v.data());
    TempDir td;
    std::string path = path_join(td.path, "x.safetensors");
    w.write_atomic(path);
    auto f = SafeTensorsFile::open(path);
    CHECK(f->read_f32("h") == v);
    CHECK(f->read_f32("d") == v);
    auto bb = f->read_f32("b");
    CHECK(bb[0] == 1.0f);
    CHECK(bb[1] == -2.5f);
    CHECK(bb[3] == 65536.0f);  // bf16 rounding of 65504
    std::vector<float> into(4);
    f->read_f32_into("h", into.data(), 4);
    CHECK(into == v);
    try {
        f->read_f32_into("h", into.data(), 3);
        FAIL("numel mismatch accepted");
    } catch (const hq::Error& e) {
        CHECK(e.where().tensor == "h");
    }
    try {
        f->read_f32("i");
        FAIL("I32 read as float");
    } catch (const hq::Error& e) {
        CHECK(e.code() == "E_SAFETENSORS");
        CHECK(e.where().tensor == "i");
        CHECK(has(e.what(), "I32"));
    }
    try {
        f->read_f32("model.layers.0.self_attn.k_proj.weight");
        FAIL("missing tensor accepted");
    } catch (const hq::Error& e) {
        CHECK(e.code() == "E_SAFETENSORS");
        CHECK(e.where().tensor == "model.layers.0.self_attn.k_proj.weight");
        CHECK(e.where().file == path);
        CHECK(has(e.hint(), "model.layers.0.self_attn.q_proj.weight"));  // similar name suggested
    }
    // No temp files left behind.
    CHECK(list_dir(td.path) == std::vector<std::string>{"x.safetensors"});
}

TEST_CASE("safetensors: header whitespace (leading and trailing) is accepted") {
    std::string hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    CHECK_NOTHROW(parse(craft(hdr + "        ", 4)));
    CHECK_NOTHROW(parse(craft(" \t\r\n" + hdr + " \n\t\r", 4)));
    auto f = parse(craft("\n\n" + hdr + "  ", 4));
    CHECK(f->find("a"));
    CHECK(f->header_size() == hdr.size() + 4);
    // An empty header object is a valid (empty) file.
    CHECK(parse(craft("{}", 0))->tensors().empty());
}

TEST_CASE("safetensors: every rejection rule") {
    const std::string ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                           "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
    REQUIRE_NOTHROW(parse(craft(ok, 12)));

    SUBCASE("too small") {
        auto e = reject(std::string(7, '\0'));
        CHECK(e.code() == "E_SAFETENSORS");
        CHECK(has(e.what(), "too small"));
        CHECK(e.where().file == "mem.safetensors");
        CHECK(e.where().offset == 0);
    }
    SUBCASE("header too large") {
        auto e = reject(u64le(100000001) + std::string(64, ' '));
        CHECK(has(e.what(), "too large"));
    }
    SUBCASE("N + 8 > file length") {
        auto e = reject(u64le(1000) + "{}");
        CHECK(has(e.what(), "invalid header length"));
        auto e2 = reject(u64le(~uint64_t(0)) + "{}");  // overflow-safe
        CHECK(e2.code() == "E_SAFETENSORS");
    }
    SUBCASE("bad UTF-8") {
        std::string h = "{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}";
        auto e = reject(craft(h, 0));
        CHECK(has(e.what(), "UTF-8"));
        CHECK(e.where().offset == 8 + 3);
        reject(craft("{\"a\xc0\x80\":{}}", 0));  // overlong encoding
        reject(craft("{\"\xed\xa0\x80\":{}}", 0));  // surrogate
    }
    SUBCASE("bad JSON") {
        auto e = reject(craft("{\"a\":{\"dtype\":\"F32\",", 0));
        CHECK(has(e.what(), "invalid header JSON"));
        CHECK(e.where().offset >= 8);
        reject(craft("[]", 0));
        reject(craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4));
        reject(craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4));                       // missing field
        reject(craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4));  // negative
        reject(craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4)); // float
        reject(craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4));
        reject(craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}" + std::string(2, '\0'), 4));  // NUL padding
    }
    SUBCASE("unknown dtype") {
        auto e = reject(craft("{\"a\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}", 16));
        CHECK(has(e.what(), "unknown dtype"));
        CHECK(e.where().tensor == "a");
    }
    SUBCASE("non-string metadata") {
        auto e = reject(craft("{\"__metadata__\":{\"n\":1}}", 0));
        CHECK(has(e.what(), "not a string"));
        reject(craft("{\"__metadata__\":[\"x\"]}", 0));
        CHECK_NOTHROW(parse(craft("{\"__metadata__\":{\"n\":\"1\"}}", 0)));
    }
    SUBCASE("gap") {
        auto e = reject(craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                              "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12));
        CHECK(has(e.what(), "invalid offset"));
        CHECK(e.where().tensor == "b");
        CHECK(e.where().offset > 8);
        auto e2 = reject(craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8));  // not from 0
        CHECK(e2.where().tensor == "a");
    }
    SUBCASE("overlap") {
        auto e = reject(craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                              "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8));
        CHECK(has(e.what(), "invalid offset"));
        CHECK(e.where().tensor == "b");
        // Two tensors aliasing the same bytes.
        auto e2 = reject(craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4));
        CHECK(has(e2.what(), "invalid offset"));
        // END < BEGIN
        reject(craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                     "\"c\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4));
    }
    SUBCASE("size mismatch") {
        auto e = reject(craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8));
        CHECK(has(e.what(), "mismatch"));
        CHECK(e.where().tensor == "a");
        CHECK(e.where().offset == int64_t(8 + std::string("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}").size()));
    }
    SUBCASE("misaligned sub-byte slice") {
        auto e = reject(craft("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2));
        CHECK(has(e.what(), "misaligned"));
        CHECK(e.where().tensor == "a");
        CHECK_NOTHROW(parse(craft("{\"a\":{\"dtype\":\"F6_E2M3\",\"shape\":[4],\"data_offsets\":[0,3]}}", 3)));
    }
    SUBCASE("trailing bytes") {
        auto e = reject(craft(ok, 13));
        CHECK(has(e.what(), "not fully covered"));
    }
    SUBCASE("missing bytes") {
        auto e = reject(craft(ok, 11));
        CHECK(has(e.what(), "not fully covered"));
        CHECK(e.where().tensor == "b");
    }
    SUBCASE("duplicate key") {
        auto e = reject(craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                              "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8));
        CHECK(has(e.what(), "duplicate"));
        CHECK(e.where().tensor == "a");
    }
    SUBCASE("overflowing shape") {
        auto e = reject(craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4));
        CHECK(has(e.what(), "overflow"));
        CHECK(e.where().tensor == "a");
        auto e2 = reject(craft("{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,8]}}", 8));
        CHECK(has(e2.what(), "overflow"));
        // 1e15 elements claimed in a tiny file: rejected without allocating.
        reject(craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[1000000000000000],\"data_offsets\":[0,4000000000000000]}}", 4));
        reject(craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551615]}}", 4));
    }
}

TEST_CASE("safetensors: open() of a missing file is E_IO naming the path") {
    try {
        SafeTensorsFile::open("/nonexistent/x.safetensors");
        FAIL("opened a missing file");
    } catch (const hq::Error& e) {
        CHECK(e.code() == "E_IO");
        CHECK(e.where().file == "/nonexistent/x.safetensors");
    }
}

TEST_CASE("safetensors: write_atomic into an unwritable location fails cleanly") {
    SafeTensorsWriter w;
    float x = 1;
    w.add_f32("x", {1}, &x);
    CHECK_THROWS_AS(w.write_atomic("/nonexistent-dir/a.safetensors"), hq::Error);
    TempDir td;
    std::string target = path_join(td.path, "a.safetensors");
    make_dirs(target);  // a directory in the way: rename fails, temp file removed
    try {
        w.write_atomic(target);
        FAIL("rename over a directory succeeded");
    } catch (const hq::Error& e) {
        CHECK(e.code() == "E_IO");
        CHECK(e.where().file == target);
    }
    CHECK(list_dir(td.path) == std::vector<std::string>{"a.safetensors"});
}

TEST_CASE("ModelWeights: single file, sharded index, missing shard, tensor absent from shard, no weights") {
    TempDir td;
    std::vector<float> a = {1, 2, 3, 4}, b = {5, 6};
    SUBCASE("single") {
        SafeTensorsWriter w;
        w.add_f32("a", {2, 2}, a.data());
        w.add_f32("b", {2}, b.data());
        w.write_atomic(path_join(td.path, "model.safetensors"));
        auto mw = ModelWeights::open_dir(td.path);
        CHECK(mw.names() == std::vector<std::string>{"a", "b"});
        CHECK(mw.read_f32("a") == a);
        CHECK(mw.has("b"));
        CHECK_FALSE(mw.has("c"));
        CHECK(mw.index_path().empty());
        CHECK_THROWS_AS(mw.read_f32("c"), hq::Error);
    }
    SUBCASE("sharded") {
        SafeTensorsWriter w1, w2;
        w1.add_f32("a", {2, 2}, a.data());
        w2.add_f32("b", {2}, b.data());
        w1.write_atomic(path_join(td.path, "model-00001-of-00002.safetensors"));
        w2.write_atomic(path_join(td.path, "model-00002-of-00002.safetensors"));
        std::string idx = path_join(td.path, "model.safetensors.index.json");
        write_file_atomic(idx, R"({"metadata":{"total_size":24},"weight_map":{"a":"model-00001-of-00002.safetensors",
                                   "b":"model-00002-of-00002.safetensors"}})");
        auto mw = ModelWeights::open_dir(td.path);
        CHECK(mw.files().size() == 2);
        CHECK(mw.read_f32("b") == b);
        const SafeTensorsFile* f = nullptr;
        REQUIRE(mw.find("a", &f));
        CHECK(has(f->path(), "00001"));
        CHECK(mw.index_path() == idx);

        // Missing shard.
        write_file_atomic(idx, R"({"weight_map":{"a":"model-00001-of-00002.safetensors",
                                   "c":"model-00003-of-00003.safetensors"}})");
        try {
            ModelWeights::open_dir(td.path);
            FAIL("missing shard accepted");
        } catch (const hq::Error& e) {
            CHECK(e.code() == "E_SAFETENSORS");
            CHECK(e.where().file == idx);
            CHECK(e.where().tensor == "c");
            CHECK(has(e.what(), "model-00003-of-00003.safetensors"));
        }
        // Tensor mapped to a shard that does not contain it.
        write_file_atomic(idx, R"({"weight_map":{"b":"model-00001-of-00002.safetensors"}})");
        try {
            ModelWeights::open_dir(td.path);
            FAIL("wrong shard accepted");
        } catch (const hq::Error& e) {
            CHECK(e.where().tensor == "b");
            CHECK(has(e.what(), "does not contain"));
        }
        // Path traversal in the index.
        write_file_atomic(idx, R"({"weight_map":{"b":"../x.safetensors"}})");
        CHECK_THROWS_AS(ModelWeights::open_dir(td.path), hq::Error);
    }
    SUBCASE("no weights") {
        write_file_atomic(path_join(td.path, "pytorch_model.bin"), "x");
        try {
            ModelWeights::open_dir(td.path);
            FAIL("empty folder accepted");
        } catch (const hq::Error& e) {
            CHECK(e.code() == "E_SAFETENSORS");
            CHECK(has(e.hint(), "safe_serialization=True"));
        }
    }
}

TEST_CASE("fsutil: atomic write replaces, list/remove, publish_dir") {
    TempDir td;
    std::string p = path_join(td.path, "f.txt");
    write_file_atomic(p, "one");
    write_file_atomic(p, "two");
    CHECK(read_file(p) == "two");
    CHECK(file_size(p) == 3);
    make_dirs(path_join(td.path, "a/b/c"));
    CHECK(is_directory(path_join(td.path, "a/b/c")));
    std::string tmp = path_join(td.path, ".tmp-out");
    make_dirs(tmp);
    write_file_atomic(path_join(tmp, "x"), "new");
    std::string fin = path_join(td.path, "out");
    make_dirs(fin);
    write_file_atomic(path_join(fin, "old"), "old");
    publish_dir(tmp, fin);
    CHECK(list_dir(fin) == std::vector<std::string>{"x"});
    CHECK(list_dir(td.path) == std::vector<std::string>{"a", "f.txt", "out"});
    remove_all(path_join(td.path, "a"));
    CHECK_FALSE(path_exists(path_join(td.path, "a")));
    CHECK(parent_dir("/x/y/z.json") == "/x/y");
    CHECK(parent_dir("z.json") == ".");
    CHECK(base_name("/x/y/") == "y");
    CHECK_THROWS_AS(read_file(path_join(td.path, "missing")), hq::Error);
}

TEST_CASE("inspect: file and folder descriptions") {
    TempDir td;
    std::vector<float> a = {1, 2, 3, 4, 5, 6};
    SafeTensorsWriter w;
    w.add_f32("model.embed_tokens.weight", {2, 3}, a.data());
    w.set_metadata("format", "pt");
    const std::string file = path_join(td.path, "model.safetensors");
    w.write_atomic(file);
    auto j = inspect_path(file);
    CHECK(j["file"] == file);
    CHECK(j["metadata"]["format"] == "pt");
    REQUIRE(j["tensors"].size() == 1);
    CHECK(j["tensors"][0]["name"] == "model.embed_tokens.weight");
    CHECK(j["tensors"][0]["dtype"] == "F32");
    CHECK(j["tensors"][0]["shape"] == nlohmann::json({2, 3}));
    CHECK(j["tensors"][0]["bytes"] == 24);
    CHECK(j["tensors"][0]["offset"].get<uint64_t>() == 8 + j["header_bytes"].get<uint64_t>());
    // Folder with an unsupported config: still listed, raw config and the reason included.
    write_file_atomic(path_join(td.path, "config.json"), R"({"model_type":"gpt2","n_layer":2})");
    auto d = inspect_path(td.path);
    CHECK(d["supported"] == false);
    CHECK(d["config"]["model_type"] == "gpt2");
    CHECK(d["config_error"]["code"] == "E_CONFIG");
    CHECK(d["n_tensors"] == 1);
    CHECK(d["tensors"][0]["file"] == "model.safetensors");
    CHECK(d["total_bytes"] == 24);
    // Invalid file: hq::Error, not a crash.
    write_file_atomic(path_join(td.path, "bad.safetensors"), "12345678");
    CHECK_THROWS_AS(inspect_path(path_join(td.path, "bad.safetensors")), hq::Error);
}
