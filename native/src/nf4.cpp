// nf4.cpp — NF4 quantization, double quantization and dequantization (bitsandbytes semantics, see nf4.h).
#include "nf4.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "error.h"

// The scale reconstruction code*absmax2 + offset must round twice like bnb (dequantize_blockwise, then += offset);
// forbid FMA contraction in this file's hot functions (GCC contracts by default in gnu++ mode with -march=native).
#if defined(__clang__)
#define HQ_NO_CONTRACT
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#define HQ_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define HQ_NO_CONTRACT
#endif

namespace hq {

// bnb csrc/kernels.cu nf4_dequantization_lut (== functional.get_4bit_type("nf4")).
const float kNF4Code[16] = {
    -1.0f,                 -0.6961928009986877f,  -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f,  0.16093020141124725f,  0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f,  0.5626170039176941f,   0.7229568362236023f,  1.0f};

namespace {

// dQuantizeNF4 thresholds, verbatim from the decision tree in bnb csrc/kernels.cu (sorted ascending). They are the
// midpoints of neighbouring codes printed as double literals; note that computing them as float32 (a+b)/2 (the
// CPU backend's torch.bucketize) can differ by 1 ulp where the exact midpoint is a float32 tie (e.g. 0|1), so the
// literals are the reference here.
const float kNF4Thresholds[15] = {
    -0.8480964004993439f,  -0.6106329262256622f,  -0.4599952697753906f,   -0.33967943489551544f,
    -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
    0.1202552504837513f,   0.2035212516784668f,   0.2920137718319893f,    0.3893125355243683f,
    0.5016634166240692f,   0.6427869200706482f,   0.8614784181118011f};

// torch.linspace(start, end, steps, dtype=float32) on CPU (aten RangeFactoriesKernel): step = (end-start)/(steps-1)
// in float; i < steps/2: start + step*i; otherwise end - step*(steps-1-i). The vectorised x86 kernels torch ships
// (AVX2/AVX512, what bitsandbytes users run) evaluate these with a fused multiply-add, so we do too: the golden map
// produced by test/reference/make_golden.py on the GPU machine matches this bit for bit (test_golden_nf4), while the
// unfused form differs by 1 ulp in 42 of 256 entries.
HQ_NO_CONTRACT void linspace_f32(float start, float end, int steps, float* out) {
    float step = (end - start) / float(steps - 1);
    int halfway = steps / 2;
    for (int i = 0; i < steps; i++) {
        if (i < halfway) {
            out[i] = std::fmaf(step, float(i), start);
        } else {
            out[i] = std::fmaf(-step, float(steps - 1 - i), end);
        }
    }
}

// Σ x in the order of ATen's CPU sum kernel (aten/src/ATen/native/cpu/SumKernel.cpp, cascade_sum for a contiguous
// float reduction) with 8-lane float vectors: the vectorised part is split into 4 interleaved accumulator rows
// (ILP), each summed with a 4-level cascade (level step 2^max(4, ceil(log2(rows))/4)); the leftover vectors are added
// to row 0, rows 1..3 are added to row 0, then the scalar tail is summed first and the 8 lanes are added in order.
// All arithmetic is float32, unfused.
HQ_NO_CONTRACT float torch_cascade_sum_f32(const float* x, int64_t n) {
    constexpr int V = 8, ILP = 4, LEVELS = 4;
    const int64_t nvec = n / V;
    const int64_t rows = nvec / ILP;   // vector rows of ILP vectors each
    auto ceil_log2 = [](int64_t v) { int r = 0; while ((int64_t(1) << r) < v) r++; return v <= 1 ? 0 : r; };
    const int level_power = std::max(4, ceil_log2(rows) / LEVELS);
    const int64_t level_step = int64_t(1) << level_power, level_mask = level_step - 1;
    float acc[LEVELS][ILP][V] = {};
    int64_t i = 0;
    auto add_row = [&](float (&dst)[ILP][V], int64_t row) {
        for (int k = 0; k < ILP; k++)
            for (int l = 0; l < V; l++) dst[k][l] = dst[k][l] + x[(row * ILP + k) * V + l];
    };
    while (i + level_step <= rows) {
        for (int64_t j = 0; j < level_step; j++, i++) add_row(acc[0], i);
        for (int j = 1; j < LEVELS; j++) {
            for (int k = 0; k < ILP; k++)
                for (int l = 0; l < V; l++) { acc[j][k][l] = acc[j][k][l] + acc[j - 1][k][l]; acc[j - 1][k][l] = 0.0f; }
            if ((i & (level_mask << (j * level_power))) != 0) break;
        }
    }
    for (; i < rows; i++) add_row(acc[0], i);
    for (int j = 1; j < LEVELS; j++)
        for (int k = 0; k < ILP; k++)
            for (int l = 0; l < V; l++) acc[0][k][l] = acc[0][k][l] + acc[j][k][l];
    float p0[V];
    for (int l = 0; l < V; l++) p0[l] = acc[0][0][l];
    for (int64_t r = rows * ILP; r < nvec; r++)
        for (int l = 0; l < V; l++) p0[l] = p0[l] + x[r * V + l];
    for (int k = 1; k < ILP; k++)
        for (int l = 0; l < V; l++) p0[l] = p0[l] + acc[0][k][l];
    float total = 0.0f;
    for (int64_t k = nvec * V; k < n; k++) total = total + x[k];
    for (int l = 0; l < V; l++) total = total + p0[l];
    return total;
}

std::array<float, 256> make_dynamic_map() {
    // bnb functional.create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)
    std::vector<float> data;
    for (int i = 0; i < 7; i++) {
        int fraction_items = (1 << i) + 1;  // 2**(i + 7 - 7) + 1
        float b[65];
        linspace_f32(0.1f, 1.0f, fraction_items, b);
        // 10 ** (-6 + i) is a Python float; torch multiplies the float32 tensor by the scalar cast to float32.
        float decade = float(std::pow(10.0, double(-6 + i)));
        for (int k = 0; k + 1 < fraction_items; k++) {
            float mean = (b[k] + b[k + 1]) / 2.0f;
            float v = decade * mean;
            data.push_back(v);
            data.push_back(-v);  // -(10**e) * means == -(10**e * means) exactly
        }
    }
    data.push_back(0.0f);
    data.push_back(1.0f);
    HQ_ASSERT(data.size() == 256);
    std::sort(data.begin(), data.end());
    std::array<float, 256> out;
    std::copy(data.begin(), data.end(), out.begin());
    return out;
}

void check_spec(int64_t rows, int64_t cols, int blocksize) {
    HQ_CHECK(rows >= 0 && cols >= 0, "E_SHAPE", "nf4: negative shape [" << rows << ", " << cols << "]", Where{},
             "this is a bug in the caller");
    bool pow2 = blocksize > 0 && (blocksize & (blocksize - 1)) == 0;
    HQ_CHECK(pow2 && blocksize >= 32 && blocksize <= 4096, "E_CONFIG",
             "quantization.blocksize " << blocksize << " is not a power of two in [32, 4096]",
             (Where{"", "", "quantization.blocksize", -1, -1}), "use 64 (the QLoRA default)");
}

}  // namespace

const std::array<float, 256>& dynamic_map_signed8() {
    static const std::array<float, 256> m = make_dynamic_map();
    return m;
}

uint8_t nf4_code(float x) {
    // Equivalent to dQuantizeNF4's decision tree: the code is the number of thresholds strictly below x
    // (strict '>' => a value exactly on a midpoint goes to the lower code; NaN -> 0 like the tree).
    int c = 0;
    for (int i = 0; i < 15; i++) c += (x > kNF4Thresholds[i]);
    return uint8_t(c);
}

uint8_t dynamic8_code(float x) {
    // bnb kernels.cu dQuantize<0>(smem_code, 0, x): 7-step binary search from pivot 127, then round to the nearer
    // of `pivot` and the last bracketing pivot by a midpoint compare. Ties: when x > code[pivot] and x equals the
    // midpoint, `pivot` (the lower) wins; when x <= code[pivot] and x equals the midpoint, `pivot` (the upper) wins.
    const float* code = dynamic_map_signed8().data();
    int pivot = 127, upper_pivot = 255, lower_pivot = 0;
    float lower = -1.0f, upper = 1.0f;
    float val = code[pivot];
    for (int i = 64; i > 0; i >>= 1) {
        if (x > val) {
            lower_pivot = pivot;
            lower = val;
            pivot += i;
        } else {
            upper_pivot = pivot;
            upper = val;
            pivot -= i;
        }
        val = code[pivot];
    }
    if (upper_pivot == 255) upper = code[upper_pivot];
    if (lower_pivot == 0) lower = code[lower_pivot];
    if (x > val) {
        float midpoint = (upper + val) * 0.5f;
        return uint8_t(x > midpoint ? upper_pivot : pivot);
    }
    float midpoint = (lower + val) * 0.5f;
    return uint8_t(x < midpoint ? lower_pivot : pivot);
}

NF4Tensor nf4_quantize(const float* w, int64_t rows, int64_t cols, int blocksize, bool double_quant) {
    check_spec(rows, cols, blocksize);
    NF4Tensor t;
    t.rows = rows;
    t.cols = cols;
    t.blocksize = blocksize;
    t.double_quant = double_quant;
    const int64_t n = rows * cols;
    const int64_t nb = t.nblocks();
    t.packed.assign(size_t((n + 1) / 2), 0);
    t.absmax.assign(size_t(nb), 0.0f);
    uint8_t* packed = t.packed.data();
    float* absmax = t.absmax.data();

    // Blocks start at even element indices (blocksize is even), so every block owns whole bytes.
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        const int64_t e0 = b * blocksize, e1 = std::min<int64_t>(e0 + blocksize, n);
        float amax = 0.0f;
        for (int64_t e = e0; e < e1; e++) amax = std::max(amax, std::fabs(w[e]));
        absmax[b] = amax;
        // bnb multiplies by the fp32 reciprocal. An all-zero block would give 0*inf = NaN there (code 0, value
        // -1*0 = -0); we store code 7 (exact 0.0) instead: same dequantized value up to the sign of zero, no NaN.
        const float inv = amax > 0.0f ? 1.0f / amax : 0.0f;
        for (int64_t e = e0; e < e1; e += 2) {
            uint8_t hi = nf4_code(w[e] * inv);
            // Past the end bnb loads 0.0 and quantizes it: code 7 in the low nibble of an odd-length tail.
            uint8_t lo = e + 1 < e1 ? nf4_code(w[e + 1] * inv) : uint8_t(7);
            packed[e >> 1] = uint8_t((hi << 4) | lo);
        }
    }

    if (double_quant && nb > 0) {
        // offset = torch fp32 absmax.mean() = torch_cascade_sum(absmax) / float(n), reproducing ATen's CPU reduction
        // order (see torch_cascade_sum_f32) so the offset, and with it absmax2 and the scales, match the reference
        // bit for bit (test_golden_nf4). bitsandbytes on CUDA reduces in yet another order; any order is within an
        // ulp or two of the exact mean.
        t.offset = torch_cascade_sum_f32(absmax, nb) / float(nb);
        const int64_t nb2 = (nb + t.nested_blocksize - 1) / t.nested_blocksize;
        t.qabsmax.assign(size_t(nb), 0);
        t.absmax2.assign(size_t(nb2), 0.0f);
        // Groups are independent (the offset above is the only reduction and stays serial).
#pragma omp parallel for schedule(static)
        for (int64_t g = 0; g < nb2; g++) {
            const int64_t b0 = g * t.nested_blocksize, b1 = std::min<int64_t>(b0 + t.nested_blocksize, nb);
            float amax2 = 0.0f;
            for (int64_t b = b0; b < b1; b++) amax2 = std::max(amax2, std::fabs(absmax[b] - t.offset));
            t.absmax2[size_t(g)] = amax2;
            // kQuantizeBlockwise<General8bit>: q = dQuantize<0>(code, y * (1/absmax2)). A group whose absmax
            // all equal the offset (amax2 == 0) gets code 127 (0.0), reconstructing exactly `offset`.
            const float inv2 = amax2 > 0.0f ? 1.0f / amax2 : 0.0f;
            for (int64_t b = b0; b < b1; b++)
                t.qabsmax[size_t(b)] = amax2 > 0.0f ? dynamic8_code((absmax[b] - t.offset) * inv2) : uint8_t(127);
        }
        t.absmax.clear();
        t.absmax.shrink_to_fit();
    }
    return t;
}

HQ_NO_CONTRACT std::vector<float> nf4_block_scales(const NF4Tensor& t) {
    if (!t.double_quant) return t.absmax;
    const float* code = dynamic_map_signed8().data();
    std::vector<float> s(t.qabsmax.size());
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < s.size(); b++) {
        // Two roundings like bnb: dequantize_blockwise (code * absmax2), then absmax += offset.
        volatile float p = code[t.qabsmax[b]] * t.absmax2[b / size_t(t.nested_blocksize)];
        s[b] = p + t.offset;
    }
    return s;
}

void nf4_dequantize_rows_scaled(const NF4Tensor& t, const float* scales, int64_t row0, int64_t nrows, float* out) {
    HQ_CHECK(row0 >= 0 && nrows >= 0 && row0 + nrows <= t.rows, "E_SHAPE",
             "nf4 dequantize rows [" << row0 << ", " << row0 + nrows << ") outside [0, " << t.rows << ")", Where{},
             "this is a bug in the caller");
    const int64_t start = row0 * t.cols, end = (row0 + nrows) * t.cols;
    if (end <= start) return;
    const int bs = t.blocksize;
    const int64_t b_first = start / bs, b_last = (end - 1) / bs;
    const uint8_t* packed = t.packed.data();
#pragma omp parallel for schedule(static)
    for (int64_t b = b_first; b <= b_last; b++) {
        float slut[16];  // lut[code] * scale: the same single fp32 product as bnb's kernel
        const float s = scales[b];
        for (int c = 0; c < 16; c++) slut[c] = kNF4Code[c] * s;
        const int64_t e0 = std::max<int64_t>(b * bs, start), e1 = std::min<int64_t>((b + 1) * bs, end);
        float* o = out - start;
        int64_t e = e0;
        if (e & 1) {  // odd start (odd cols): low nibble of the first byte
            o[e] = slut[packed[e >> 1] & 15];
            e++;
        }
        for (; e + 1 < e1; e += 2) {
            const uint8_t q = packed[e >> 1];
            o[e] = slut[q >> 4];
            o[e + 1] = slut[q & 15];
        }
        if (e < e1) o[e] = slut[packed[e >> 1] >> 4];  // odd end: high nibble of the last byte
    }
}

void nf4_dequantize_rows(const NF4Tensor& t, int64_t row0, int64_t nrows, float* out) {
    std::vector<float> s = nf4_block_scales(t);
    nf4_dequantize_rows_scaled(t, s.data(), row0, nrows, out);
}

void nf4_dequantize(const NF4Tensor& t, float* out) { nf4_dequantize_rows(t, 0, t.rows, out); }

size_t nf4_bytes(const NF4Tensor& t) {
    return t.packed.size() + t.absmax.size() * sizeof(float) + t.qabsmax.size() + t.absmax2.size() * sizeof(float) +
           sizeof(float);
}

}  // namespace hq
