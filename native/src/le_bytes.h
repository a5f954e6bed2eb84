// le_bytes.h — little-endian field access for the project's binary formats (.hqtok, .hqmcq).
// The formats are little-endian; so are all supported hosts (x86-64, aarch64), so these are plain copies.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

namespace hq::le {

inline uint32_t rd_u32(const std::string& b, size_t off) {
    uint32_t v;
    std::memcpy(&v, b.data() + off, 4);
    return v;
}
inline uint64_t rd_u64(const std::string& b, size_t off) {
    uint64_t v;
    std::memcpy(&v, b.data() + off, 8);
    return v;
}
inline void wr_u32(std::string& b, uint32_t v) { b.append(reinterpret_cast<const char*>(&v), 4); }
inline void wr_u64(std::string& b, uint64_t v) { b.append(reinterpret_cast<const char*>(&v), 8); }
inline uint64_t round8(uint64_t x) { return (x + 7) / 8 * 8; }

}  // namespace hq::le
