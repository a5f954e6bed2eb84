// test_fuzz_safetensors.cpp — deterministic mutation fuzzing of the safetensors parser (seeded, ~20k inputs).
// Every input must either parse (and then every tensor byte is readable in bounds) or throw hq::Error; anything
// else (crash, other exception, sanitizer report under -DHQ_SANITIZE=ON) fails the test.
#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "dtype.h"
#include "error.h"
#include "safetensors.h"

using namespace hq;

namespace {

std::vector<std::string> seed_files() {
    std::vector<std::string> seeds;
    {
        SafeTensorsWriter w;
        std::vector<float> a(24);
        for (size_t i = 0; i < a.size(); i++) a[i] = float(i) * 0.5f - 3.0f;
        w.add_f32("model.layers.0.self_attn.q_proj.weight", {4, 6}, a.data());
        std::vector<uint16_t> h(6, 0x3c00);
        w.add("model.norm.weight", DType::BF16, {6}, h.data(), 12);
        w.add("f16", DType::F16, {2, 3}, h.data(), 12);
        w.set_metadata("format", "pt");
        seeds.push_back(w.serialize());
    }
    {
        SafeTensorsWriter w;
        float s = 1.0f;
        w.add_f32("scalar", {}, &s);
        w.add("empty", DType::F32, {0, 4}, nullptr, 0);
        uint8_t nib[3] = {0x12, 0x34, 0x56};
        w.add("f4", DType::F4, {6}, nib, 3);
        w.add("f6", DType::F6_E3M2, {4}, nib, 3);
        double d[2] = {1.5, -2.0};
        w.add("d", DType::F64, {2}, d, 16);
        seeds.push_back(w.serialize());
    }
    {
        SafeTensorsWriter w;
        std::vector<int64_t> ids = {1, 2, 3};
        w.add("ids", DType::I64, {3}, ids.data(), 24);
        uint8_t b[5] = {1, 0, 1, 1, 0};
        w.add("mask", DType::BOOL, {5}, b, 5);
        w.set_metadata("hqlora.levels", "[{\"rank\":8}]");
        seeds.push_back(w.serialize());
    }
    return seeds;
}

// Runs the parser the way the fuzz target does. Returns true if it parsed.
bool exercise(const std::string& in, uint64_t* touched) {
    try {
        auto f = SafeTensorsFile::from_memory(reinterpret_cast<const uint8_t*>(in.data()), in.size(), "fuzz");
        std::vector<float> buf;
        for (const auto& t : f->tensors()) {
            REQUIRE(t.end >= t.begin);
            REQUIRE(f->data_start() + t.end <= in.size());
            const uint8_t* p = f->data(t);
            for (uint64_t i = 0; i < t.end - t.begin; i++) *touched += p[i];
            if (t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16 || t.dtype == DType::F64) {
                buf.resize(size_t(t.numel()));
                f->convert_f32(t, buf.data());
            }
        }
        return true;
    } catch (const hq::Error& e) {
        REQUIRE(!e.code().empty());
        return false;
    }
}

const char* kDTypes[] = {"F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "F4", "F6_E2M3", "C64", "F8_E4M3",
                         "X", "", "f32", "F32\"", "I32"};

std::string mutate(const std::string& seed, std::mt19937_64& rng) {
    std::string s = seed;
    auto rnd = [&](uint64_t n) { return n ? uint64_t(rng() % n) : 0; };
    uint64_t n = 0;
    std::memcpy(&n, s.data(), 8);
    const size_t hdr_end = size_t(std::min<uint64_t>(8 + n, s.size()));
    int steps = 1 + int(rnd(3));
    for (int k = 0; k < steps; k++) {
        switch (rnd(9)) {
            case 0:  // bit flip anywhere
                if (!s.empty()) s[rnd(s.size())] ^= char(1 << rnd(8));
                break;
            case 1:  // bit flip inside the header length
                s[rnd(8)] ^= char(1 << rnd(8));
                break;
            case 2:  // truncate
                s.resize(rnd(s.size() + 1));
                break;
            case 3:  // append bytes
                s.append(1 + rnd(16), char(rnd(256)));
                break;
            case 4:  // replace a number in the header (offsets / shape)
            case 5: {
                std::vector<size_t> pos;
                for (size_t i = 8; i < std::min(hdr_end, s.size()); i++)
                    if (s[i] >= '0' && s[i] <= '9' && (s[i - 1] < '0' || s[i - 1] > '9')) pos.push_back(i);
                if (pos.empty()) break;
                size_t p = pos[rnd(pos.size())], e = p;
                while (e < s.size() && s[e] >= '0' && s[e] <= '9') e++;
                const char* repl[] = {"0", "1", "4", "7", "8", "12", "-1", "1.5", "18446744073709551615",
                                      "18446744073709551616", "4294967296", "9223372036854775807", "1e9"};
                std::string r = rnd(3) == 0 ? std::to_string(rng() % 100000) : repl[rnd(13)];
                s.replace(p, e - p, r);
                break;
            }
            case 6: {  // swap a dtype string
                size_t p = s.find("\"dtype\":\"", rnd(hdr_end));
                if (p == std::string::npos || p >= hdr_end) p = s.find("\"dtype\":\"");
                if (p == std::string::npos) break;
                p += 9;
                size_t e = s.find('"', p);
                if (e == std::string::npos) break;
                s.replace(p, e - p, kDTypes[rnd(16)]);
                break;
            }
            case 7: {  // structural header byte edits
                const char chars[] = "{}[],:\" \\\x00\xff";
                if (hdr_end > 8 && hdr_end <= s.size()) s[8 + rnd(hdr_end - 8)] = chars[rnd(sizeof chars - 1)];
                break;
            }
            case 8: {  // fix up N to the new header length after an edit (keeps the input "almost valid")
                size_t close = s.rfind('}', std::min(s.size(), hdr_end + 32));
                if (close == std::string::npos || close < 8) break;
                uint64_t nn = close + 1 - 8;
                std::memcpy(&s[0], &nn, 8);
                break;
            }
        }
        if (s.size() < 8) break;
    }
    return s;
}

}  // namespace

TEST_CASE("fuzz: 20k deterministic mutations never crash; only parse or hq::Error") {
    const auto seeds = seed_files();
    for (const auto& s : seeds) {
        uint64_t t = 0;
        REQUIRE(exercise(s, &t));  // seeds are valid
    }
    std::mt19937_64 rng(0x5AFE7E45u);
    const auto t0 = std::chrono::steady_clock::now();
    int parsed = 0, rejected = 0;
    uint64_t touched = 0;
    const int kRuns = 20000;
    for (int i = 0; i < kRuns; i++) {
        const std::string in = mutate(seeds[size_t(i) % seeds.size()], rng);
        if (exercise(in, &touched))
            parsed++;
        else
            rejected++;
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("fuzz: " << kRuns << " inputs, " << parsed << " parsed, " << rejected << " rejected, " << secs << " s");
    CHECK(parsed + rejected == kRuns);
    CHECK(rejected > kRuns / 2);  // the mutations do reach the rejection paths
    CHECK(parsed > 0);            // and some mutants stay valid (e.g. value bytes flipped)
}
