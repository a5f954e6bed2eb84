// lowrank.cpp — truncated SVD of B·A through thin QR + Jacobi SVD of the R×R core (see lowrank.h).
#include "lowrank.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <cblas.h>

#include "error.h"

namespace hq {

double LowRankSVD::frob_error() const {
    double e = 0.0;
    for (size_t i = size_t(k); i < sigma.size(); i++) e += sigma[i] * sigma[i];
    return std::sqrt(e);
}

namespace {

// Thin QR of X [n, R] (fp64, row-major, columns are the vectors): Q [n, R] with orthonormal (or zero) columns,
// Rm [R, R] upper triangular, X = Q·Rm. Modified Gram-Schmidt applied twice ("twice is enough") for fp64-level
// orthogonality; a column whose remaining norm is below 1e-13 of its original norm is set to zero (rank-deficient
// input, e.g. an untrained level with B = 0) and its diagonal of Rm is 0.
void thin_qr(std::vector<double>& X, int n, int R, std::vector<double>* Rm) {
    Rm->assign(size_t(R) * R, 0.0);
    auto col_dot = [&](int a, int b) {
        double s = 0.0;
        for (int i = 0; i < n; i++) s += X[size_t(i) * R + a] * X[size_t(i) * R + b];
        return s;
    };
    for (int j = 0; j < R; j++) {
        const double n0 = std::sqrt(col_dot(j, j));
        for (int pass = 0; pass < 2; pass++)
            for (int p = 0; p < j; p++) {
                const double d = col_dot(p, j);
                (*Rm)[size_t(p) * R + j] += d;
                for (int i = 0; i < n; i++) X[size_t(i) * R + j] -= d * X[size_t(i) * R + p];
            }
        const double nj = std::sqrt(col_dot(j, j));
        if (n0 == 0.0 || nj <= 1e-13 * n0) {
            for (int i = 0; i < n; i++) X[size_t(i) * R + j] = 0.0;
            (*Rm)[size_t(j) * R + j] = 0.0;
        } else {
            for (int i = 0; i < n; i++) X[size_t(i) * R + j] /= nj;
            (*Rm)[size_t(j) * R + j] = nj;
        }
    }
}

}  // namespace

void jacobi_svd(const double* M, int m, int n, std::vector<double>* U, std::vector<double>* s,
                std::vector<double>* V) {
    HQ_ASSERT(m >= n && n >= 0);
    std::vector<double> W(M, M + size_t(m) * n);   // columns are rotated until mutually orthogonal
    std::vector<double> Vm(size_t(n) * n, 0.0);
    for (int i = 0; i < n; i++) Vm[size_t(i) * n + i] = 1.0;
    for (int sweep = 0; sweep < 60; sweep++) {
        double off = 0.0;
        for (int p = 0; p < n - 1; p++)
            for (int q = p + 1; q < n; q++) {
                double alpha = 0, beta = 0, gamma = 0;
                for (int i = 0; i < m; i++) {
                    const double a = W[size_t(i) * n + p], b = W[size_t(i) * n + q];
                    alpha += a * a;
                    beta += b * b;
                    gamma += a * b;
                }
                if (gamma == 0.0 || std::fabs(gamma) <= 1e-15 * std::sqrt(alpha * beta)) continue;
                off = std::max(off, std::fabs(gamma) / std::sqrt(alpha * beta));
                const double zeta = (beta - alpha) / (2.0 * gamma);
                const double t = (zeta >= 0 ? 1.0 : -1.0) / (std::fabs(zeta) + std::sqrt(1.0 + zeta * zeta));
                const double c = 1.0 / std::sqrt(1.0 + t * t), sn = c * t;
                for (int i = 0; i < m; i++) {
                    const double a = W[size_t(i) * n + p], b = W[size_t(i) * n + q];
                    W[size_t(i) * n + p] = c * a - sn * b;
                    W[size_t(i) * n + q] = sn * a + c * b;
                }
                for (int i = 0; i < n; i++) {
                    const double a = Vm[size_t(i) * n + p], b = Vm[size_t(i) * n + q];
                    Vm[size_t(i) * n + p] = c * a - sn * b;
                    Vm[size_t(i) * n + q] = sn * a + c * b;
                }
            }
        if (off <= 1e-15) break;
    }
    std::vector<double> sv(static_cast<size_t>(n));
    for (int j = 0; j < n; j++) {
        double ss = 0;
        for (int i = 0; i < m; i++) ss += W[size_t(i) * n + j] * W[size_t(i) * n + j];
        sv[size_t(j)] = std::sqrt(ss);
    }
    std::vector<int> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return sv[size_t(a)] > sv[size_t(b)]; });
    U->assign(size_t(m) * n, 0.0);
    V->assign(size_t(n) * n, 0.0);
    s->assign(size_t(n), 0.0);
    for (int jj = 0; jj < n; jj++) {
        const int j = order[size_t(jj)];
        (*s)[size_t(jj)] = sv[size_t(j)];
        for (int i = 0; i < m; i++) (*U)[size_t(i) * n + jj] = sv[size_t(j)] > 0 ? W[size_t(i) * n + j] / sv[size_t(j)] : 0.0;
        for (int i = 0; i < n; i++) (*V)[size_t(i) * n + jj] = Vm[size_t(i) * n + j];
    }
}

LowRankSVD lowrank_svd(const float* B, const float* A, int out, int in, int R, int k) {
    LowRankSVD res;
    res.k = std::max(0, std::min(k, R));
    // Qb [out, R], Rb [R, R] from B; Qa [in, R], Ra [R, R] from Aᵀ.
    std::vector<double> Qb(size_t(out) * R), Qa(size_t(in) * R), Rb, Ra;
    for (size_t i = 0; i < Qb.size(); i++) Qb[i] = B[i];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < in; c++) Qa[size_t(c) * R + r] = A[size_t(r) * in + c];
    thin_qr(Qb, out, R, &Rb);
    thin_qr(Qa, in, R, &Ra);
    // M [R, R] = Rb · Raᵀ
    std::vector<double> M(size_t(R) * R, 0.0);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < R; j++) {
            double acc = 0;
            for (int t = 0; t < R; t++) acc += Rb[size_t(i) * R + t] * Ra[size_t(j) * R + t];
            M[size_t(i) * R + j] = acc;
        }
    std::vector<double> U, V;
    jacobi_svd(M.data(), R, R, &U, &res.sigma, &V);
    for (int i = 0; i < R; i++) {
        const double e = res.sigma[size_t(i)] * res.sigma[size_t(i)];
        res.energy_total += e;
        if (i < res.k) res.energy_kept += e;
    }
    const int kk = res.k;
    res.B.assign(size_t(out) * kk, 0.0f);
    res.A.assign(size_t(kk) * in, 0.0f);
    for (int o = 0; o < out; o++)
        for (int j = 0; j < kk; j++) {
            double acc = 0;
            for (int t = 0; t < R; t++) acc += Qb[size_t(o) * R + t] * U[size_t(t) * R + j];
            res.B[size_t(o) * kk + j] = float(acc * res.sigma[size_t(j)]);
        }
    for (int j = 0; j < kk; j++)
        for (int c = 0; c < in; c++) {
            double acc = 0;
            for (int t = 0; t < R; t++) acc += Qa[size_t(c) * R + t] * V[size_t(t) * R + j];
            res.A[size_t(j) * in + c] = float(acc);
        }
    return res;
}

double max_abs_diff_products(const float* B1, const float* A1, int r1, const float* B2, const float* A2, int r2,
                             int out, int in, double* sq, double* ref_max) {
    const int rows = std::max(1, std::min(out, int((size_t(8) << 20) / std::max(1, in))));   // ≤ 32 MiB per block
    std::vector<float> d1(size_t(rows) * in), d2(size_t(rows) * in);
    double mx = 0.0, s2 = 0.0, rm = 0.0;
    for (int o0 = 0; o0 < out; o0 += rows) {
        const int n = std::min(rows, out - o0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, r1, 1.0f, B1 + size_t(o0) * r1, r1, A1, in,
                    0.0f, d1.data(), in);
        if (r2 > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, r2, 1.0f, B2 + size_t(o0) * r2, r2, A2, in,
                        0.0f, d2.data(), in);
        else
            std::fill(d2.begin(), d2.end(), 0.0f);
        for (size_t i = 0; i < size_t(n) * in; i++) {
            const double d = double(d1[i]) - double(d2[i]);
            mx = std::max(mx, std::fabs(d));
            s2 += d * d;
            rm = std::max(rm, std::fabs(double(d1[i])));
        }
    }
    if (sq) *sq = s2;
    if (ref_max) *ref_max = rm;
    return mx;
}

}  // namespace hq
