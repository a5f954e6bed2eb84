// lowrank.h — truncated SVD of a low-rank product ΔW = B·A without forming ΔW (for adapter re-compression).
//
// B [out, R], A [R, in] (fp32, row-major). With thin QR factorizations B = Qb·Rb and Aᵀ = Qa·Ra (modified Gram-
// Schmidt, twice, in fp64), ΔW = Qb·(Rb·Raᵀ)·Qaᵀ, and the SVD of the R×R core M = U·S·Vᵀ (one-sided Jacobi, fp64)
// gives ΔW = (Qb·U)·S·(Qa·V)ᵀ. Cost O((out + in)·R² + R³): a 4096×11008 module with R = 64 takes milliseconds,
// where an SVD of ΔW itself would take minutes. The truncation to k follows PEFT's add_weighted_adapter("svd"):
//   B' = (Qb·U_k)·diag(S_k)   [out, k]        A' = (Qa·V_k)ᵀ   [k, in]
#pragma once
#include <cstdint>
#include <vector>

namespace hq {

struct LowRankSVD {
    int k = 0;                       // kept rank (<= R)
    std::vector<float> B;            // [out, k] = Qb·U_k·diag(S_k)
    std::vector<float> A;            // [k, in]  = (Qa·V_k)ᵀ
    std::vector<double> sigma;       // [R] all singular values of ΔW, descending
    double energy_total = 0.0;       // Σ σ_i²  (= ||ΔW||_F²)
    double energy_kept = 0.0;        // Σ_{i<k} σ_i²
    double retained() const { return energy_total > 0 ? energy_kept / energy_total : 1.0; }
    // ||ΔW - B'A'||_F = sqrt(Σ_{i>=k} σ_i²) (Eckart–Young; the best rank-k approximation)
    double frob_error() const;
};

// Truncated SVD of ΔW = B·A (see the file comment). k is clamped to [0, R].
LowRankSVD lowrank_svd(const float* B, const float* A, int out, int in, int R, int k);

// Singular value decomposition of a small dense m×n matrix (fp64, row-major, m >= n) by one-sided Jacobi:
// M = U·diag(s)·Vᵀ with U [m, n], s [n] descending, V [n, n]. Exposed for tests.
void jacobi_svd(const double* M, int m, int n, std::vector<double>* U, std::vector<double>* s, std::vector<double>* V);

// max_ij |(B1·A1 - B2·A2)_ij| computed in row blocks (fp32 sgemm, bounded memory). B1 [out, r1], A1 [r1, in],
// B2 [out, r2], A2 [r2, in]; r2 may be 0. Also returns Σ (ΔW1 - ΔW2)² through *sq (optional) and ||B1A1||_max.
double max_abs_diff_products(const float* B1, const float* A1, int r1, const float* B2, const float* A2, int r2,
                             int out, int in, double* sq = nullptr, double* ref_max = nullptr);

}  // namespace hq
