// test_nf4.cpp — NF4 constants, the dynamic 8-bit map, quantization rounding/packing and dequantization bounds.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "error.h"
#include "nf4.h"

using namespace hq;

namespace {

// trainer-anchors Appendix A (numpy float32 regeneration of bnb create_dynamic_map, printed with 8 digits).
const float kAppendixA[256] = {
    -0.99296874f, -0.97890627f, -0.96484375f, -0.95078123f, -0.93671876f, -0.92265624f, -0.90859377f, -0.89453125f,
    -0.88046873f, -0.86640626f, -0.85234374f, -0.83828127f, -0.82421875f, -0.81015623f, -0.79609376f, -0.78203124f,
    -0.76796877f, -0.75390625f, -0.73984373f, -0.72578126f, -0.7117188f, -0.69765627f, -0.68359375f, -0.66953123f,
    -0.65546876f, -0.6414063f, -0.62734377f, -0.61328125f, -0.59921873f, -0.58515626f, -0.57109374f, -0.55703127f,
    -0.54296875f, -0.52890623f, -0.51484376f, -0.50078124f, -0.48671871f, -0.47265625f, -0.45859373f, -0.44453123f,
    -0.43046874f, -0.41640621f, -0.40234375f, -0.38828123f, -0.37421876f, -0.36015624f, -0.34609371f, -0.33203125f,
    -0.31796873f, -0.30390626f, -0.28984374f, -0.27578124f, -0.26171875f, -0.24765624f, -0.23359375f, -0.21953125f,
    -0.20546874f, -0.19140625f, -0.17734374f, -0.16328125f, -0.14921875f, -0.13515624f, -0.12109375f, -0.10703126f,
    -0.098593749f, -0.095781259f, -0.092968754f, -0.09015625f, -0.087343752f, -0.084531248f, -0.081718758f, -0.078906253f,
    -0.076093748f, -0.073281251f, -0.070468746f, -0.067656256f, -0.064843751f, -0.06203125f, -0.059218753f, -0.056406248f,
    -0.053593755f, -0.05078125f, -0.047968749f, -0.045156248f, -0.042343747f, -0.03953125f, -0.036718752f, -0.033906247f,
    -0.03109375f, -0.028281247f, -0.02546875f, -0.022656251f, -0.01984375f, -0.017031251f, -0.01421875f, -0.01140625f,
    -0.0097187497f, -0.0091562495f, -0.0085937502f, -0.00803125f, -0.0074687498f, -0.00690625f, -0.0063437498f, -0.0057812501f,
    -0.0052187503f, -0.0046562497f, -0.0040937499f, -0.0035312497f, -0.00296875f, -0.00240625f, -0.00184375f, -0.0012812499f,
    -0.00094375008f, -0.00083124998f, -0.00071875006f, -0.00060625008f, -0.00049374998f, -0.00038124999f, -0.00026875004f, -0.00015625001f,
    -8.8749999e-05f, -6.6250002e-05f, -4.3749998e-05f, -2.1249998e-05f, -7.7499999e-06f, -3.2500002e-06f, -5.5000004e-07f, 0.0f,
    5.5000004e-07f, 3.2500002e-06f, 7.7499999e-06f, 2.1249998e-05f, 4.3749998e-05f, 6.6250002e-05f, 8.8749999e-05f, 0.00015625001f,
    0.00026875004f, 0.00038124999f, 0.00049374998f, 0.00060625008f, 0.00071875006f, 0.00083124998f, 0.00094375008f, 0.0012812499f,
    0.00184375f, 0.00240625f, 0.00296875f, 0.0035312497f, 0.0040937499f, 0.0046562497f, 0.0052187503f, 0.0057812501f,
    0.0063437498f, 0.00690625f, 0.0074687498f, 0.00803125f, 0.0085937502f, 0.0091562495f, 0.0097187497f, 0.01140625f,
    0.01421875f, 0.017031251f, 0.01984375f, 0.022656251f, 0.02546875f, 0.028281247f, 0.03109375f, 0.033906247f,
    0.036718752f, 0.03953125f, 0.042343747f, 0.045156248f, 0.047968749f, 0.05078125f, 0.053593755f, 0.056406248f,
    0.059218753f, 0.06203125f, 0.064843751f, 0.067656256f, 0.070468746f, 0.073281251f, 0.076093748f, 0.078906253f,
    0.081718758f, 0.084531248f, 0.087343752f, 0.09015625f, 0.092968754f, 0.095781259f, 0.098593749f, 0.10703126f,
    0.12109375f, 0.13515624f, 0.14921875f, 0.16328125f, 0.17734374f, 0.19140625f, 0.20546874f, 0.21953125f,
    0.23359375f, 0.24765624f, 0.26171875f, 0.27578124f, 0.28984374f, 0.30390626f, 0.31796873f, 0.33203125f,
    0.34609371f, 0.36015624f, 0.37421876f, 0.38828123f, 0.40234375f, 0.41640621f, 0.43046874f, 0.44453123f,
    0.45859373f, 0.47265625f, 0.48671871f, 0.50078124f, 0.51484376f, 0.52890623f, 0.54296875f, 0.55703127f,
    0.57109374f, 0.58515626f, 0.59921873f, 0.61328125f, 0.62734377f, 0.6414063f, 0.65546876f, 0.66953123f,
    0.68359375f, 0.69765627f, 0.7117188f, 0.72578126f, 0.73984373f, 0.75390625f, 0.76796877f, 0.78203124f,
    0.79609376f, 0.81015623f, 0.82421875f, 0.83828127f, 0.85234374f, 0.86640626f, 0.88046873f, 0.89453125f,
    0.90859377f, 0.92265624f, 0.93671876f, 0.95078123f, 0.96484375f, 0.97890627f, 0.99296874f, 1.0f,
};

int32_t ordered_bits(float f) {  // monotone integer image of a float, for ulp distances
    int32_t i;
    std::memcpy(&i, &f, 4);
    return i < 0 ? int32_t(0x80000000u - uint32_t(i)) : i;
}
int64_t ulp_dist(float a, float b) { return std::llabs(int64_t(ordered_bits(a)) - int64_t(ordered_bits(b))); }

float max_half_gap() {
    float g = 0;
    for (int i = 0; i < 15; i++) g = std::max(g, (kNF4Code[i + 1] - kNF4Code[i]) * 0.5f);
    return g;
}

uint8_t code_at(const NF4Tensor& t, int64_t e) {
    uint8_t b = t.packed[size_t(e >> 1)];
    return (e & 1) ? (b & 15) : (b >> 4);
}

}  // namespace

TEST_CASE("nf4: code table equals bnb nf4_dequantization_lut") {
    const float expect[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                              -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                              0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f,
                              0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
                              0.7229568362236023f, 1.0f};
    for (int i = 0; i < 16; i++) CHECK(kNF4Code[i] == expect[i]);
    // Thresholds of dQuantizeNF4 are the literals of kernels.cu; each is within 1 ulp of the float32 midpoint.
    for (int i = 0; i < 15; i++) {
        float mid = (kNF4Code[i] + kNF4Code[i + 1]) / 2.0f;
        int lo = nf4_code(std::nextafter(mid, -2.f)), hi = nf4_code(std::nextafter(mid, 2.f));
        CHECK(lo <= i + 1);
        CHECK(hi >= i);
        CHECK(nf4_code(std::nextafter(std::nextafter(mid, 2.f), 2.f)) == i + 1);
        CHECK(nf4_code(std::nextafter(std::nextafter(mid, -2.f), -2.f)) == i);
    }
    CHECK(nf4_code(0.03979014977812767f) == 7);                   // exactly the 7|8 midpoint -> lower
    CHECK(nf4_code(std::nextafter(0.03979014977812767f, 1.f)) == 8);
    CHECK(nf4_code(0.3893125355243683f) == 11);
    CHECK(nf4_code(std::nextafter(0.3893125355243683f, 1.f)) == 12);
    CHECK(nf4_code(-0.8480964004993439f) == 0);
    CHECK(nf4_code(std::nextafter(-0.8480964004993439f, 1.f)) == 1);
    CHECK(nf4_code(1.0f) == 15);
    CHECK(nf4_code(-1.0f) == 0);
    CHECK(nf4_code(0.0f) == 7);
}

// Appendix A was regenerated with numpy (no fused multiply-add) and printed with 8 significant digits, so it is a
// sanity bound only (<= 2 ulp). The authoritative, bit-exact check is against torch's own map in
// test_golden_nf4.cpp (golden files made by test/reference/make_golden.py).
TEST_CASE("nf4: dynamic 8-bit map matches Appendix A within 2 ulp") {
    const auto& m = dynamic_map_signed8();
    int exact = 0;
    int64_t worst = 0;
    for (int i = 0; i < 256; i++) {
        int64_t d = ulp_dist(m[size_t(i)], kAppendixA[i]);
        worst = std::max(worst, d);
        exact += d == 0;
        CHECK_MESSAGE(d <= 2, "index " << i << ": " << m[size_t(i)] << " vs " << kAppendixA[i]);
    }
    MESSAGE("dynamic map: " << exact << "/256 exactly equal to Appendix A, worst " << worst << " ulp");
    CHECK(m[127] == 0.0f);
    CHECK(m[255] == 1.0f);
    for (int i = 0; i < 255; i++) CHECK(m[size_t(i)] < m[size_t(i + 1)]);
    for (int i = 0; i < 127; i++) CHECK(m[size_t(i)] == -m[size_t(254 - i)]);  // symmetric except 1.0
}

TEST_CASE("nf4: dynamic8_code is the nearest entry (midpoint compare)") {
    const auto& m = dynamic_map_signed8();
    for (int i = 0; i < 256; i++) CHECK(dynamic8_code(m[size_t(i)]) == i);
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    for (int k = 0; k < 20000; k++) {
        float x = u(rng);
        if (k % 3 == 0) x *= 1e-3f;
        int q = dynamic8_code(x);
        float best = 1e30f;
        for (int i = 0; i < 256; i++) best = std::min(best, std::fabs(m[size_t(i)] - x));
        REQUIRE(std::fabs(m[size_t(q)] - x) == best);
    }
}

TEST_CASE("nf4: hand-made block — ties go to the lower code, high nibble first") {
    // One block of 64: absmax = 1 (element 0), so scaled values are the values themselves.
    std::vector<float> w(64, 0.0f);
    w[0] = 1.0f;                          // code 15
    w[1] = -1.0f;                         // code 0
    w[2] = 0.03979014977812767f;          // exactly on the 7|8 midpoint -> 7
    w[3] = std::nextafter(w[2], 1.0f);    // just above -> 8
    const float mid_01 = -0.8480964004993439f;  // kernels.cu threshold between codes 0 and 1
    w[4] = mid_01;                        // on the 0|1 midpoint -> 0
    w[5] = std::nextafter(mid_01, 0.0f);  // above it -> 1
    w[6] = 0.5626170039176941f;           // exact code 13
    w[7] = -0.09105003625154495f;         // exact code 6
    NF4Tensor t = nf4_quantize(w.data(), 1, 64, 64, false);
    REQUIRE(t.packed.size() == 32);
    CHECK(t.absmax[0] == 1.0f);
    CHECK(t.packed[0] == 0xF0);  // (15 << 4) | 0
    CHECK(t.packed[1] == 0x78);  // 7 high, 8 low
    CHECK(t.packed[2] == 0x01);
    CHECK(t.packed[3] == 0xD6);
    CHECK(t.packed[4] == 0x77);  // zeros -> code 7
    std::vector<float> d(64);
    nf4_dequantize(t, d.data());
    CHECK(d[0] == 1.0f);
    CHECK(d[1] == -1.0f);
    CHECK(d[6] == 0.5626170039176941f);
    CHECK(d[10] == 0.0f);
}

TEST_CASE("nf4: scaling multiplies by the fp32 reciprocal of absmax") {
    // absmax 3: x * (1/3.0f) vs x / 3.0f differ for some x; the code must follow the reciprocal product.
    std::vector<float> w(64, 0.0f);
    w[0] = 3.0f;
    for (int i = 1; i < 64; i++) w[size_t(i)] = -3.0f + 6.0f * float(i) / 64.0f;
    NF4Tensor t = nf4_quantize(w.data(), 1, 64, 64, false);
    const float inv = 1.0f / 3.0f;
    for (int i = 0; i < 64; i++) CHECK(code_at(t, i) == nf4_code(w[size_t(i)] * inv));
}

TEST_CASE("nf4: all-zero block gives zeros, no NaN, with and without double quant") {
    std::vector<float> w(256, 0.0f);
    for (int i = 128; i < 256; i++) w[size_t(i)] = 0.01f * float(i - 128) - 0.6f;
    for (bool dq : {false, true}) {
        NF4Tensor t = nf4_quantize(w.data(), 4, 64, 64, dq);
        std::vector<float> d(256);
        nf4_dequantize(t, d.data());
        for (int i = 0; i < 256; i++) REQUIRE(std::isfinite(d[size_t(i)]));
        for (int i = 0; i < 128; i++) CHECK(std::fabs(d[size_t(i)]) <= (dq ? 1e-3f : 0.0f));
        auto s = nf4_block_scales(t);
        for (float x : s) CHECK(std::isfinite(x));
    }
    // A tensor whose block absmaxes are all equal: absmax2 == 0, scales reconstruct exactly the offset.
    std::vector<float> c(128, 0.25f);
    NF4Tensor t = nf4_quantize(c.data(), 2, 64, 64, true);
    CHECK(t.absmax2[0] == 0.0f);
    auto s = nf4_block_scales(t);
    CHECK(s[0] == 0.25f);
    CHECK(s[1] == 0.25f);
}

TEST_CASE("nf4: dequantization error bound and double-quant scale accuracy") {
    std::mt19937 rng(1234);
    std::normal_distribution<float> nd(0.f, 0.02f);
    const int64_t rows = 96, cols = 320;  // 30720 elements, 480 blocks (> 256: two nested groups)
    std::vector<float> w(size_t(rows * cols));
    for (auto& x : w) x = nd(rng);
    for (int k = 0; k < 50; k++) w[size_t(rng() % w.size())] *= 20.0f;  // outliers
    const float hg = max_half_gap();

    NF4Tensor t = nf4_quantize(w.data(), rows, cols, 64, false);
    REQUIRE(t.nblocks() == 480);
    std::vector<float> d(w.size());
    nf4_dequantize(t, d.data());
    for (size_t e = 0; e < w.size(); e++) {
        float amax = t.absmax[e / 64];
        REQUIRE(std::fabs(w[e] - d[e]) <= amax * hg * (1 + 1e-6f) + 1e-12f);
    }

    NF4Tensor tq = nf4_quantize(w.data(), rows, cols, 64, true);
    REQUIRE(tq.absmax2.size() == 2);
    REQUIRE(tq.qabsmax.size() == 480);
    CHECK(tq.packed == t.packed);  // the 4-bit codes do not depend on DQ
    auto s = nf4_block_scales(tq);
    // |scale - absmax| <= absmax2 * (largest half gap of the dynamic map = 0.00703125) + rounding.
    const auto& dm = dynamic_map_signed8();
    float dm_half_gap = 0;
    for (int i = 0; i < 255; i++) dm_half_gap = std::max(dm_half_gap, (dm[size_t(i + 1)] - dm[size_t(i)]) / 2);
    double worst = 0, mean_rel = 0;
    for (size_t b = 0; b < s.size(); b++) {
        double err = std::fabs(double(s[b]) - t.absmax[b]);
        REQUIRE(err <= tq.absmax2[b / 256] * dm_half_gap * 1.001 + 1e-7);
        worst = std::max(worst, err / t.absmax[b]);
        mean_rel += err / t.absmax[b] / double(s.size());
    }
    MESSAGE("double-quant scale relative error: mean " << mean_rel << ", worst " << worst);
    CHECK(mean_rel < 0.02);  // outliers make absmax2 large relative to typical blocks (~1% here)
    std::vector<float> dq(w.size());
    nf4_dequantize(tq, dq.data());
    for (size_t e = 0; e < w.size(); e++) REQUIRE(std::fabs(w[e] - dq[e]) <= s[e / 64] * hg * 1.0001f + std::fabs(s[e / 64] - t.absmax[e / 64]));
    // Scales follow bnb's formula exactly.
    const auto& m = dynamic_map_signed8();
    for (size_t b = 0; b < s.size(); b++) {
        float p = m[tq.qabsmax[b]] * tq.absmax2[b / 256];
        CHECK(s[b] == p + tq.offset);
    }
    CHECK(nf4_bytes(tq) == size_t(rows * cols / 2 + 480 + 2 * 4 + 4));
}

TEST_CASE("nf4: row-range dequant equals full dequant, incl. odd cols and blocks crossing rows") {
    std::mt19937 rng(99);
    std::uniform_real_distribution<float> u(-2.f, 2.f);
    for (auto rc : {std::pair<int64_t, int64_t>{7, 33}, {16, 128}, {5, 97}, {3, 1}}) {
        const int64_t rows = rc.first, cols = rc.second;
        std::vector<float> w(size_t(rows * cols));
        for (auto& x : w) x = u(rng);
        NF4Tensor t = nf4_quantize(w.data(), rows, cols, 32, true);
        CHECK(t.packed.size() == size_t((rows * cols + 1) / 2));
        if ((rows * cols) % 2) CHECK((t.packed.back() & 15) == 7);  // padding nibble like bnb (quantized 0.0)
        std::vector<float> full(w.size());
        nf4_dequantize(t, full.data());
        for (int64_t r0 = 0; r0 < rows; r0++)
            for (int64_t nr = 1; r0 + nr <= rows; nr += 2) {
                std::vector<float> part(size_t(nr * cols));
                nf4_dequantize_rows(t, r0, nr, part.data());
                REQUIRE(std::memcmp(part.data(), full.data() + r0 * cols, part.size() * 4) == 0);
            }
        auto s = nf4_block_scales(t);
        for (int64_t e = 0; e < rows * cols; e++)
            REQUIRE(full[size_t(e)] == kNF4Code[code_at(t, e)] * s[size_t(e / 32)]);
    }
}

TEST_CASE("nf4: invalid blocksize is a config error") {
    std::vector<float> w(64, 1.0f);
    CHECK_THROWS_AS(nf4_quantize(w.data(), 1, 64, 48, true), hq::Error);
    try {
        nf4_quantize(w.data(), 1, 64, 16, true);
        FAIL("expected an error");
    } catch (const hq::Error& e) {
        CHECK(e.code() == "E_CONFIG");
        CHECK(e.where().key == "quantization.blocksize");
    }
}
