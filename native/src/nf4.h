// nf4.h — bitsandbytes-exact NF4 4-bit blockwise quantization with double quantization of the block scales.
//
// Facts implemented (trainer-anchors §1.1–1.6, bnb@HEAD):
//   - the weight W[rows, cols] is a flat row-major array; block b = elements [b*blocksize, (b+1)*blocksize)
//   - absmax[b] = max|x| (fp32); x is scaled as x * (1.0f/absmax) and coded by dQuantizeNF4: strict '>' against
//     the midpoints of neighbouring codes, so a value exactly on a midpoint goes to the LOWER code
//   - packing: two codes per byte, the even (first) element in the HIGH nibble; ceil(n/2) bytes
//   - double quant: offset = mean(absmax); y = absmax - offset; per 256 blocks absmax2 = max|y| (fp32);
//     qabsmax = nearest code of y * (1/absmax2) in the signed dynamic 8-bit map (dQuantize<0>)
//   - dequant: scale[b] = dyn[qabsmax[b]] * absmax2[b/256] + offset; w = nf4[code] * scale[b]  (fp32)
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace hq {

extern const float kNF4Code[16];   // bnb nf4_dequantization_lut, index = 4-bit code

// bnb create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), sorted ascending, float32[256].
const std::array<float, 256>& dynamic_map_signed8();

struct NF4Tensor {
    int64_t rows = 0, cols = 0;            // logical shape [rows, cols]
    int blocksize = 64;
    std::vector<uint8_t> packed;           // [ceil(n/2)] codes, first element of each pair in the high nibble
    bool double_quant = true;
    std::vector<float> absmax;             // [nblocks] fp32 block absmax (used when !double_quant)
    std::vector<uint8_t> qabsmax;          // [nblocks] 8-bit dynamic-map code of (absmax - offset) (double quant)
    std::vector<float> absmax2;            // [ceil(nblocks/256)] fp32 absmax of (absmax - offset) per 256 blocks
    float offset = 0.0f;                   // mean of absmax over all blocks
    int nested_blocksize = 256;
    int64_t numel() const { return rows * cols; }
    int64_t nblocks() const { return (numel() + blocksize - 1) / blocksize; }
};

// Quantizes w [rows, cols] (fp32, row-major). blocksize must be a power of two in [32, 4096] (bnb's range).
NF4Tensor nf4_quantize(const float* w, int64_t rows, int64_t cols, int blocksize, bool double_quant);

// The NF4 code (0..15) of a scaled value x in [-1, 1] (dQuantizeNF4 decision tree; ties -> lower code).
uint8_t nf4_code(float x);
// Index (0..255) of the nearest dynamic-map entry to x in [-1, 1] (dQuantize<0>: binary search + midpoint).
uint8_t dynamic8_code(float x);

// Per-block fp32 scales as the dequantization uses them ([nblocks]): absmax, or the double-quant reconstruction.
std::vector<float> nf4_block_scales(const NF4Tensor& t);
// out [rows, cols] fp32 = lut[code] * scale[block]. OpenMP over blocks.
void nf4_dequantize(const NF4Tensor& t, float* out);
// Rows [row0, row0 + nrows) only: out [nrows, cols]. Identical values to nf4_dequantize.
void nf4_dequantize_rows(const NF4Tensor& t, int64_t row0, int64_t nrows, float* out);
// Same, with precomputed scales (from nf4_block_scales) to avoid recomputing them on every forward.
void nf4_dequantize_rows_scaled(const NF4Tensor& t, const float* scales, int64_t row0, int64_t nrows, float* out);
// Resident bytes of the quantized representation (packed + statistics).
size_t nf4_bytes(const NF4Tensor& t);

}  // namespace hq
