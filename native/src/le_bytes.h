// le_bytes.h — little-endian field access for the project's binary formats (.hqtok, .hqmcq).
// The formats are little-endian; so are all supported hosts (x86-64, aarch64), so these are plain copies.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

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
inline void wr_u32_at(std::string& b, size_t off, uint32_t v) { std::memcpy(&b[off], &v, 4); }
inline uint64_t round8(uint64_t x) { return (x + 7) / 8 * 8; }

// The start both formats share: the 8-byte magic, version 1, the header length, the JSON header padded with spaces
// to a multiple of 8 bytes, then the rows.size() + 1 start offsets (u64 prefix sums) and every row's u32 ids back to
// back. Each format appends its own per-row arrays and the final zero padding after this.
inline std::string frame_rows(const char* magic, const std::string& header_json,
                              const std::vector<std::vector<uint32_t>>& rows) {
    std::string b(magic, 8);
    wr_u32(b, 1);
    wr_u32(b, static_cast<uint32_t>(header_json.size()));
    b += header_json;
    b.append(round8(b.size()) - b.size(), ' ');
    uint64_t o = 0;
    wr_u64(b, 0);
    for (const auto& r : rows) wr_u64(b, o += r.size());
    for (const auto& r : rows)
        for (uint32_t id : r) wr_u32(b, id);
    return b;
}

}  // namespace hq::le
