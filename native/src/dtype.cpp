// dtype.cpp — dtype names/sizes and fp16/bf16 conversions.
#include "dtype.h"

#include <cstring>

namespace hq {

namespace {
struct DTypeRow {
    DType t;
    const char* name;
    int bits;
};
const DTypeRow kRows[] = {
    {DType::BOOL, "BOOL", 8},          {DType::F4, "F4", 4},
    {DType::F6_E2M3, "F6_E2M3", 6},    {DType::F6_E3M2, "F6_E3M2", 6},
    {DType::U8, "U8", 8},              {DType::I8, "I8", 8},
    {DType::F8_E5M2, "F8_E5M2", 8},    {DType::F8_E4M3, "F8_E4M3", 8},
    {DType::F8_E8M0, "F8_E8M0", 8},    {DType::F8_E4M3FNUZ, "F8_E4M3FNUZ", 8},
    {DType::F8_E5M2FNUZ, "F8_E5M2FNUZ", 8},
    {DType::I16, "I16", 16},           {DType::U16, "U16", 16},
    {DType::F16, "F16", 16},           {DType::BF16, "BF16", 16},
    {DType::I32, "I32", 32},           {DType::U32, "U32", 32},
    {DType::F32, "F32", 32},           {DType::C64, "C64", 64},
    {DType::F64, "F64", 64},           {DType::I64, "I64", 64},
    {DType::U64, "U64", 64},
};
const DTypeRow& row(DType t) {
    for (const auto& r : kRows)
        if (r.t == t) return r;
    return kRows[0];
}
}  // namespace

bool dtype_from_string(const std::string& s, DType* out) {
    for (const auto& r : kRows)
        if (s == r.name) {
            *out = r.t;
            return true;
        }
    return false;
}
const char* dtype_name(DType t) { return row(t).name; }
int dtype_bits(DType t) { return row(t).bits; }
int dtype_alignment(DType t) {
    int b = row(t).bits;
    return b < 8 ? 1 : b / 8;
}

float bf16_to_f32(uint16_t h) {
    uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);  // NaN: keep sign, force quiet
    uint32_t lsb = (u >> 16) & 1u;  // round to nearest even (torch c10::round_to_nearest_even)
    u += 0x7fffu + lsb;
    return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = uint32_t(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else {  // subnormal: normalize
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while ((man & 0x400u) == 0);
            man &= 0x3ffu;
            u = sign | (uint32_t(127 - 15 - e) << 23) | (man << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_f16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    uint16_t sign = uint16_t((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // NaN (quiet)
    if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 rounds to Inf (incl. Inf)
    if (a < 0x38800000u) {                                    // below 2^-14: subnormal or zero
        if (a < 0x33000000u) return sign;                     // < 2^-25: rounds to 0 (2^-25 ties to even 0)
        uint32_t e = a >> 23;                                 // 102..112
        uint32_t m = (a & 0x7fffffu) | 0x800000u;             // 24-bit mantissa with implicit 1
        int shift = int(126 - e);                             // result = m >> (shift) in units of 2^-24
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return uint16_t(sign | q);
    }
    // normal: rebias exponent, round mantissa 23 -> 10 bits to nearest even (carry may bump exponent: correct)
    uint32_t r = a - ((127u - 15u) << 23);
    uint32_t lsb = (r >> 13) & 1u;
    r += 0xfffu + lsb;
    return uint16_t(sign | (r >> 13));
}

}  // namespace hq
