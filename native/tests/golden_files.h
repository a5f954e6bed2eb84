// golden_files.h — where the golden files and the tiny fixtures are, and typed reads of golden tensors with a
// doctest failure naming the tensor that is missing or of another dtype. Shared by test_golden.cpp and
// test_golden_nf4.cpp (include after doctest).
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dtype.h"
#include "safetensors.h"

namespace hq_test {

// test/golden (HQ_GOLDEN_DIR overrides) and test/fixtures/models (HQ_FIXTURES_DIR overrides).
inline std::string golden_dir() {
    const char* e = std::getenv("HQ_GOLDEN_DIR");
    return e && *e ? std::string(e) : std::string(HQ_REPO_ROOT) + "/test/golden";
}
inline std::string fixtures_dir() {
    const char* e = std::getenv("HQ_FIXTURES_DIR");
    return e && *e ? std::string(e) : std::string(HQ_REPO_ROOT) + "/test/fixtures/models";
}

// Any floating-point golden tensor as fp32.
inline std::vector<float> gf32(const hq::SafeTensorsFile& g, const std::string& name) {
    REQUIRE_MESSAGE(g.find(name) != nullptr, "golden tensor missing: " << name);
    return g.read_f32(name);
}

// The raw elements of an integer golden tensor of dtype `want` (T of the same size); its shape into *shape.
template <typename T>
std::vector<T> graw(const hq::SafeTensorsFile& g, const std::string& name, hq::DType want,
                    std::vector<int64_t>* shape = nullptr) {
    const hq::TensorInfo* t = g.find(name);
    REQUIRE_MESSAGE(t != nullptr, "golden tensor missing: " << name);
    REQUIRE_MESSAGE(t->dtype == want, name << " has dtype " << hq::dtype_name(t->dtype) << ", expected "
                                           << hq::dtype_name(want));
    std::vector<T> out(size_t(t->numel()));
    if (!out.empty()) std::memcpy(out.data(), g.data(*t), out.size() * sizeof(T));
    if (shape) *shape = t->shape;
    return out;
}
inline std::vector<int32_t> gi32(const hq::SafeTensorsFile& g, const std::string& name,
                                 std::vector<int64_t>* shape = nullptr) {
    return graw<int32_t>(g, name, hq::DType::I32, shape);
}
inline std::vector<uint8_t> gu8(const hq::SafeTensorsFile& g, const std::string& name) {
    return graw<uint8_t>(g, name, hq::DType::U8);
}

}  // namespace hq_test
