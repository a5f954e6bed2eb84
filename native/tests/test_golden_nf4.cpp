// test_golden_nf4.cpp — our NF4 + double quantization against the PyTorch re-implementation of bitsandbytes in
// test/reference/make_golden.py (golden files test/golden/<model>.safetensors, tensors "nf4.*").
//
// For every targeted projection weight of each fixture model (read from the fixture folder, exactly the fp32 values
// transformers feeds to the reference), and for all of them flattened and concatenated ("nf4.concat": > 256 blocks,
// so several nested 256-blocks and a partial last one), nf4_quantize(w, rows, cols, 64, double_quant) must give:
//   packed codes        EXACTLY equal (every byte)
//   fp32 block absmax   EXACTLY equal (no double quant; a max is exact)
//   qabsmax             EXACTLY equal
//   offset              within 1 ulp (torch's fp32 mean(): its reduction order is not reproducible)
//   absmax2, scales     within 1 ulp; where our offset differs from torch's by its 1 ulp, the difference propagates:
//                       absmax2 within |d offset| + 1 ulp, scales within 2 |d offset| + ulp(absmax2) + 1 ulp (one
//                       ulp of the offset can be two ulps of a value in a lower binade); counted apart
//   each double-quant step fed with the reference's own inputs: BIT-EXACT (absmax2 from the reference offset,
//                       scales from the reference qabsmax/absmax2/offset, weights lut[code] * reference scale)
// and the 256-entry dynamic map and the 16 NF4 code values must equal the reference bit for bit.
// HQ_GOLDEN_DIR / HQ_FIXTURES_DIR override the golden and fixture folders (for regenerating goldens elsewhere).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dtype.h"
#include "golden_files.h"
#include "model_config.h"
#include "nf4.h"
#include "safetensors.h"

using namespace hq;

namespace {

using hq_test::fixtures_dir;
using hq_test::golden_dir;

// Distance in units in the last place between two finite floats (0 for +0 / -0).
int64_t ulps(float a, float b) {
    auto ord = [](float f) -> int64_t {
        int32_t i;
        std::memcpy(&i, &f, 4);
        return i >= 0 ? int64_t(i) : -int64_t(i & 0x7fffffff);
    };
    int64_t d = ord(a) - ord(b);
    return d < 0 ? -d : d;
}

struct UlpStats {
    int64_t n = 0, exact = 0, one = 0, worse = 0;
    void add(float a, float b) {
        int64_t u = ulps(a, b);
        n++;
        if (u == 0) exact++;
        else if (u == 1) one++;
        else worse++;
    }
};

struct ModelStats {
    int64_t tensors = 0, code_bytes = 0, code_mismatch = 0, absmax_mismatch = 0, q8 = 0, q8_mismatch = 0;
    int64_t step_mismatch = 0;
    UlpStats offset, absmax2, scales;           // tensors whose offset equals the reference bit for bit
    UlpStats absmax2_off, scales_off;           // tensors whose offset differs by 1 ulp
    double deq_max_rel = 0.0;                   // end-to-end dequantized weight vs reference, max relative
};

// Compares one quantized tensor (prefix "nf4.<module>" or "nf4.concat") with the golden.
void check_tensor(const SafeTensorsFile& g, const std::string& prefix, const std::vector<float>& w, int64_t rows,
                  int64_t cols, ModelStats& st) {
    CAPTURE(prefix);
    const std::vector<uint8_t> g_packed = hq_test::gu8(g, prefix + ".packed");
    const std::vector<uint8_t> g_q = hq_test::gu8(g, prefix + ".qabsmax");
    const std::vector<float> g_absmax = hq_test::gf32(g, prefix + ".absmax");
    const std::vector<float> g_absmax2 = hq_test::gf32(g, prefix + ".absmax2");
    const std::vector<float> g_offset = hq_test::gf32(g, prefix + ".offset");
    const std::vector<float> g_scales = hq_test::gf32(g, prefix + ".scales");
    REQUIRE(g_offset.size() == 1);

    // Without double quant: the codes and the fp32 absmax.
    NF4Tensor plain = nf4_quantize(w.data(), rows, cols, 64, false);
    REQUIRE(plain.packed.size() == g_packed.size());
    REQUIRE(plain.absmax.size() == g_absmax.size());
    int64_t absmax_bad = 0;
    for (size_t b = 0; b < g_absmax.size(); b++) absmax_bad += ulps(plain.absmax[b], g_absmax[b]) != 0;
    CHECK_MESSAGE(absmax_bad == 0, absmax_bad << " fp32 block absmax values differ");
    st.absmax_mismatch += absmax_bad;

    // With double quant (what the trainer uses).
    NF4Tensor t = nf4_quantize(w.data(), rows, cols, 64, true);
    REQUIRE(t.packed.size() == g_packed.size());
    REQUIRE(t.qabsmax.size() == g_q.size());
    REQUIRE(t.absmax2.size() == g_absmax2.size());
    int64_t code_bad = 0, first_bad = -1;
    for (size_t i = 0; i < g_packed.size(); i++) {
        if (t.packed[i] != g_packed[i] || plain.packed[i] != g_packed[i]) {
            code_bad++;
            if (first_bad < 0) first_bad = int64_t(i);
        }
    }
    CHECK_MESSAGE(code_bad == 0, code_bad << " packed bytes differ; first at byte " << first_bad);
    st.code_bytes += int64_t(g_packed.size());
    st.code_mismatch += code_bad;

    int64_t q_bad = 0;
    for (size_t b = 0; b < g_q.size(); b++) q_bad += t.qabsmax[b] != g_q[b];
    CHECK_MESSAGE(q_bad == 0, q_bad << " qabsmax codes differ");
    st.q8 += int64_t(g_q.size());
    st.q8_mismatch += q_bad;

    // Each double-quant step exactly, fed with the reference's inputs:
    //   absmax2 = max |absmax - offset| per 256 blocks (with the reference offset)      -> bit-exact
    //   scales  = nf4_block_scales(reference qabsmax, absmax2, offset)                  -> bit-exact
    //   weight  = lut[code] * reference scale (nf4_dequantize_rows_scaled)               -> bit-exact
    int64_t step_bad = 0;
    for (size_t k = 0; k < g_absmax2.size(); k++) {
        float amax2 = 0.0f;
        for (size_t b = k * 256; b < std::min(g_absmax.size(), (k + 1) * 256); b++)
            amax2 = std::max(amax2, std::fabs(plain.absmax[b] - g_offset[0]));
        step_bad += ulps(amax2, g_absmax2[k]) != 0;
    }
    CHECK_MESSAGE(step_bad == 0, step_bad << " absmax2 values differ given the reference offset");
    NF4Tensor fed = t;
    fed.offset = g_offset[0];
    fed.absmax2 = g_absmax2;
    fed.qabsmax = g_q;
    const std::vector<float> fed_scales = nf4_block_scales(fed);
    REQUIRE(fed_scales.size() == g_scales.size());
    int64_t fed_bad = 0;
    for (size_t b = 0; b < g_scales.size(); b++) fed_bad += ulps(fed_scales[b], g_scales[b]) != 0;
    CHECK_MESSAGE(fed_bad == 0, fed_bad << " block scales differ given the reference qabsmax/absmax2/offset");
    std::vector<float> deq(size_t(rows * cols));
    nf4_dequantize_rows_scaled(t, g_scales.data(), 0, rows, deq.data());
    int64_t deq_bad = 0;
    for (int64_t i = 0; i < rows * cols; i++) {
        const uint8_t byte = g_packed[size_t(i >> 1)];
        const int code = (i & 1) ? (byte & 15) : (byte >> 4);
        const float want = kNF4Code[code] * g_scales[size_t(i / 64)];
        deq_bad += ulps(deq[size_t(i)], want) != 0;
    }
    CHECK_MESSAGE(deq_bad == 0, deq_bad << " dequantized weights differ given the reference scales");
    st.step_mismatch += step_bad + fed_bad + deq_bad;

    // End to end (our offset, absmax2, scales, weights). offset = torch's fp32 mean(): nf4.cpp reproduces ATen's CPU
    // cascade-sum order, so it must be bit-exact. absmax2 and scales must be within 1 ulp; should the offset differ,
    // the offset's difference propagates unchanged into absmax - offset and into the scales, and one ulp of the
    // offset can be two ulps of a value in a lower binade, so there the bound is |d offset| + 1 ulp (counted apart).
    CHECK_MESSAGE(ulps(t.offset, g_offset[0]) == 0, "offset " << t.offset << " vs " << g_offset[0]);
    st.offset.add(t.offset, g_offset[0]);
    const bool offset_equal = ulps(t.offset, g_offset[0]) == 0;
    const double d_off = std::fabs(double(t.offset) - double(g_offset[0]));
    auto within = [&](float a, float b) {
        if (ulps(a, b) <= 1) return true;
        if (offset_equal) return false;
        return std::fabs(double(a) - double(b)) <= d_off + std::fabs(std::nextafter(b, 2.0f * b) - b);
    };
    for (size_t k = 0; k < g_absmax2.size(); k++) {
        CHECK_MESSAGE(within(t.absmax2[k], g_absmax2[k]),
                      "absmax2[" << k << "] " << t.absmax2[k] << " vs " << g_absmax2[k]);
        (offset_equal ? st.absmax2 : st.absmax2_off).add(t.absmax2[k], g_absmax2[k]);
    }
    // scale = dyn[q] * absmax2 + offset: absmax2 moves by -+d_offset, so the scale moves by (1 -+ dyn[q]) d_offset,
    // at most 2 |d offset|, plus the ulp of absmax2 carried by dyn[q] and the final rounding.
    auto within_scale = [&](float a, float b, float a2) {
        if (ulps(a, b) <= 1) return true;
        if (offset_equal) return false;
        return std::fabs(double(a) - double(b)) <=
               2.0 * d_off + std::fabs(std::nextafter(a2, 2.0f * a2) - a2) + std::fabs(std::nextafter(b, 2.0f * b) - b);
    };
    const std::vector<float> scales = nf4_block_scales(t);
    REQUIRE(scales.size() == g_scales.size());
    int64_t scale_bad = 0;
    for (size_t b = 0; b < scales.size(); b++) {
        scale_bad += !within_scale(scales[b], g_scales[b], g_absmax2[b / 256]);
        (offset_equal ? st.scales : st.scales_off).add(scales[b], g_scales[b]);
    }
    CHECK_MESSAGE(scale_bad == 0, scale_bad << " block scales differ by more than the bound");
    std::vector<float> ours(size_t(rows * cols));
    nf4_dequantize(t, ours.data());
    for (int64_t i = 0; i < rows * cols; i++) {
        const double d = std::fabs(double(ours[size_t(i)]) - double(deq[size_t(i)]));
        st.deq_max_rel = std::max(st.deq_max_rel, d / std::max(1e-30, double(std::fabs(deq[size_t(i)]))));
    }
    st.tensors++;
}

void check_model(const std::string& model) {
    const std::string gpath = golden_dir() + "/" + model + ".safetensors";
    CAPTURE(gpath);
    auto g = SafeTensorsFile::open(gpath);
    const std::string fdir = fixtures_dir() + "/" + model;
    ModelWeights weights = ModelWeights::open_dir(fdir);
    const ModelConfig cfg = load_model_config(fdir);

    // The tables.
    const std::vector<float> g_map = hq_test::gf32(*g, "nf4.dynamic_map");
    REQUIRE(g_map.size() == 256);
    const std::array<float, 256>& map = dynamic_map_signed8();
    int map_bad = 0;
    for (int i = 0; i < 256; i++) {
        if (ulps(map[size_t(i)], g_map[size_t(i)]) != 0 || std::signbit(map[size_t(i)]) != std::signbit(g_map[size_t(i)])) {
            map_bad++;
            MESSAGE("dynamic map [" << i << "] ours " << map[size_t(i)] << " reference " << g_map[size_t(i)]);
        }
    }
    CHECK(map_bad == 0);
    const std::vector<float> g_code = hq_test::gf32(*g, "nf4.code");
    REQUIRE(g_code.size() == 16);
    for (int i = 0; i < 16; i++) CHECK(ulps(kNF4Code[i], g_code[size_t(i)]) == 0);

    REQUIRE(g->metadata().count("golden.modules") == 1);
    const auto modules = nlohmann::json::parse(g->metadata().at("golden.modules"));
    REQUIRE(modules.is_array());
    REQUIRE(!modules.empty());

    ModelStats st;
    std::vector<float> concat;
    for (const auto& mj : modules) {
        const std::string m = mj.get<std::string>();
        // The module's rows of its checkpoint tensor (Phi-3: a row slice of qkv_proj / gate_up_proj, quantized on
        // its own as the trainer and the reference do).
        const ProjRows pr = proj_rows(cfg, m);
        const TensorInfo* info = weights.find(pr.tensor);
        REQUIRE_MESSAGE(info != nullptr, "fixture " << fdir << " has no " << pr.tensor);
        REQUIRE(info->shape.size() == 2);
        REQUIRE(pr.row0 + pr.rows <= info->shape[0]);
        const int64_t cols = info->shape[1];
        const std::vector<float> all = weights.read_f32(pr.tensor);
        std::vector<float> w(all.begin() + pr.row0 * cols, all.begin() + (pr.row0 + pr.rows) * cols);
        check_tensor(*g, "nf4." + m, w, pr.rows, cols, st);
        concat.insert(concat.end(), w.begin(), w.end());
    }
    check_tensor(*g, "nf4.concat", concat, 1, int64_t(concat.size()), st);

    auto u = [](const UlpStats& x) { return std::to_string(x.exact) + "/" + std::to_string(x.one) + "/" +
                                             std::to_string(x.worse); };
    MESSAGE(model << ": " << st.tensors << " tensors; packed bytes " << st.code_bytes << " (" << st.code_mismatch
                  << " differ); fp32 absmax differ " << st.absmax_mismatch << "; qabsmax " << st.q8 << " ("
                  << st.q8_mismatch << " differ); steps fed with reference inputs: " << st.step_mismatch
                  << " differ; offset exact/1ulp/worse " << u(st.offset) << "; with equal offset: absmax2 "
                  << u(st.absmax2) << ", scales " << u(st.scales) << "; with a 1-ulp offset: absmax2 "
                  << u(st.absmax2_off) << ", scales " << u(st.scales_off) << "; dequantized weight max rel "
                  << st.deq_max_rel);
    CHECK(st.code_mismatch == 0);
    CHECK(st.q8_mismatch == 0);
    CHECK(st.step_mismatch == 0);
    CHECK(st.offset.worse == 0);
    CHECK(st.absmax2.worse == 0);
    CHECK(st.scales.worse == 0);
}

}  // namespace

TEST_CASE("golden nf4: tiny-llama (F32, sharded) codes and scales match the bitsandbytes reference") {
    check_model("tiny-llama");
}

TEST_CASE("golden nf4: tiny-llama3 (BF16) codes and scales match the bitsandbytes reference") {
    check_model("tiny-llama3");
}

TEST_CASE("golden nf4: tiny-gemma (BF16, H*d != hidden) codes and scales match the bitsandbytes reference") {
    check_model("tiny-gemma");
}

TEST_CASE("golden nf4: the family fixtures (qwen2, qwen2-tied, qwen3, mistral, gemma2, gemma3, phi3 fused rows)") {
    for (const char* m : {"tiny-qwen2", "tiny-qwen2-tied", "tiny-qwen3", "tiny-mistral", "tiny-gemma2", "tiny-gemma3",
                          "tiny-phi3"}) {
        CAPTURE(std::string(m));
        check_model(m);
    }
}
