// gemm.h — row-major GEMMs on cuBLASLt, which is loaded at run time (dlopen), so the backend compiles where the
// toolkit has no cuBLAS (CI) and fails with a clear error where the library is missing at run time.
//
//   C [M, N] = alpha · op(A) · op(B) + beta · C        op(A) [M, K], op(B) [K, N]
//   (with Cin: C = alpha · op(A) · op(B) + beta · Cin, Cin laid out as C, e.g. a residual added on the way)
//   A is stored [M, K] (ta = false, lda >= K) or [K, M] (ta = true, lda >= M); likewise B: [K, N] or [N, K].
// Types: A and B bf16; C (and D = C) bf16 or fp32; compute in fp32 (CUBLAS_COMPUTE_32F). Strided batches: element
// i of the batch uses A + i·strideA, B + i·strideB, C + i·strideC (in elements).
// Row-major is mapped to cuBLASLt's column-major as Cᵀ = op(B)ᵀ·op(A)ᵀ. Descriptors and the heuristic's algorithm are
// cached per shape, so repeated calls of a training step do not query the heuristic again.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "cuda_common.h"

namespace hq::cuda {

enum class DType { F32, BF16 };

// Loads libcublasLt (HQ_CUBLASLT, then libcublasLt.so.13 / .so.12 / .so on the loader path, then the CUDA toolkit
// and Python 'nvidia-cublas' wheel folders). Throws E_CUDA naming what was tried and how to point at the library.
// Returns the path or soname that loaded. Thread-safe, idempotent.
std::string cublaslt_load();

class Gemm {
  public:
    explicit Gemm(cudaStream_t stream, size_t workspace_bytes = size_t(64) << 20);
    ~Gemm();
    Gemm(const Gemm&) = delete;
    Gemm& operator=(const Gemm&) = delete;

    void run(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const bf16* A, int64_t lda,
             const bf16* B, int64_t ldb, float beta, void* C, DType ct, int64_t ldc, int batch = 1,
             int64_t strideA = 0, int64_t strideB = 0, int64_t strideC = 0, const void* Cin = nullptr);
    cudaStream_t stream() const { return stream_; }

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    cudaStream_t stream_;
};

}  // namespace hq::cuda
