// dtype.h — the safetensors dtypes and the scalar conversions the trainer needs (bf16/f16 <-> f32).
#pragma once
#include <cstdint>
#include <string>

namespace hq {

// Every dtype string of the reference parser (safetensors@24b0b285 `enum Dtype`).
enum class DType {
    BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ,
    I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64
};

// "BF16" -> DType::BF16. Returns false for an unknown string (no throw: the parser builds its own error).
bool dtype_from_string(const std::string& s, DType* out);
const char* dtype_name(DType t);
// Bits per element: F4 = 4, F6_* = 6, BOOL/U8/I8/F8_* = 8, ..., C64 = 64, F64/I64/U64 = 64.
int dtype_bits(DType t);
// Alignment used by the reference writer to order tensors (descending): bytes per element, sub-byte types = 1.
int dtype_alignment(DType t);

// bf16 is the top half of an fp32.
float bf16_to_f32(uint16_t h);
// Round-to-nearest-even like torch (`x.to(torch.bfloat16)`); NaN stays NaN (quiet), ±Inf stays ±Inf.
uint16_t f32_to_bf16(float f);
// IEEE binary16 with subnormals, ±Inf, NaN.
float f16_to_f32(uint16_t h);
// Round-to-nearest-even, overflow -> ±Inf, underflow through subnormals to ±0.
uint16_t f32_to_f16(float f);

}  // namespace hq
