// adapter_test_util.h — what test_merge.cpp and test_peft_source.cpp share: a temporary folder removed at scope exit,
// and the dense product B·A of a LoRA pair (include after doctest).
#pragma once
#include <stdlib.h>

#include <string>
#include <vector>

#include <cblas.h>

#include "fsutil.h"

namespace hq_test {

// A fresh folder /tmp/<prefix>-XXXXXX, removed with everything in it when the object goes.
struct TmpDir {
    std::string path;
    explicit TmpDir(const std::string& prefix) {
        std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TmpDir() { hq::remove_all(path); }
    std::string operator/(const std::string& s) const { return hq::path_join(path, s); }
};

// C [out, in] = B [out, R] · A [R, in], row-major fp32 (all zeros when R is 0).
inline std::vector<float> matmul(const std::vector<float>& B, const std::vector<float>& A, int out, int R, int in) {
    std::vector<float> C(size_t(out) * in, 0.0f);
    if (R > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, R, 1.0f, B.data(), R, A.data(), in, 0.0f,
                    C.data(), in);
    return C;
}

}  // namespace hq_test
