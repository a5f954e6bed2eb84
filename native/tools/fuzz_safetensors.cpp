// fuzz_safetensors.cpp — libFuzzer entry for the safetensors parser (parse, then read every tensor, like OSS-Fuzz's
// safetensors `deserialize` target). Any outcome other than "parsed" or "threw hq::Error" is a bug.
//
// libFuzzer + sanitizers (clang, e.g. Debian libclang-rt-14-dev):
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -DHQ_LIBFUZZER -Inative/src  (continued:)
//     native/tools/fuzz_safetensors.cpp native/src/safetensors.cpp native/src/dtype.cpp native/src/fsutil.cpp
//     -o fuzz_safetensors
//   ./fuzz_safetensors -max_len=1048576 -rss_limit_mb=2048 -timeout=10 -runs=1000000 corpus/
// Without libFuzzer (this CMake build) the binary replays inputs: fuzz_safetensors FILE|DIR...
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "error.h"
#include "fsutil.h"
#include "safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        auto f = hq::SafeTensorsFile::from_memory(data, size, "fuzz");
        volatile uint32_t sink = 0;
        std::vector<float> buf;
        for (const auto& t : f->tensors()) {
            const uint8_t* p = f->data(t);
            for (uint64_t i = 0; i < t.end - t.begin; i++) sink = sink + p[i];  // every byte must be in bounds
            if (t.dtype == hq::DType::F32 || t.dtype == hq::DType::F16 || t.dtype == hq::DType::BF16 ||
                t.dtype == hq::DType::F64) {
                buf.resize(size_t(t.numel()));
                f->convert_f32(t, buf.data());
            }
        }
        for (const auto& kv : f->metadata()) sink = sink + uint32_t(kv.first.size() + kv.second.size());
    } catch (const hq::Error&) {
        // rejected input: expected
    }
    return 0;
}

#if !(defined(__clang__) && defined(HQ_LIBFUZZER))
int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: fuzz_safetensors FILE|DIR...   (replays inputs through the fuzz target)\n");
        return 2;
    }
    size_t n = 0;
    for (int i = 1; i < argc; i++) {
        std::vector<std::string> files;
        if (hq::is_directory(argv[i])) {
            for (const auto& name : hq::list_dir(argv[i])) files.push_back(hq::path_join(argv[i], name));
        } else {
            files.push_back(argv[i]);
        }
        for (const auto& path : files) {
            std::string bytes = hq::read_file(path);
            LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
            n++;
        }
    }
    std::fprintf(stderr, "replayed %zu inputs, no crash\n", n);
    return 0;
}
#endif
