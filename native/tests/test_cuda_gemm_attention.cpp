// test_cuda_gemm_attention.cpp — the cuBLASLt GEMM wrapper and the GPU attention against CPU references.
//
// GEMM: every (ta, tb), fp32 and bf16 C, beta 0 and 1, odd sizes, padded leading dimensions, strided batches with
// gaps and pointers misaligned by one element, against an fp64 reference on the same bf16-rounded inputs.
// Tolerance per element, relative to Σ|a·b| + |beta·c|: 1e-4 for fp32 C (fp32 accumulation), 8e-3 for bf16 C (one
// bf16 rounding of the result, 2^-9, plus split-K partial sums kept in the output type).
// Attention: hq::attention_forward / attention_backward (fp32 CPU) on the bf16-rounded q, k, v as the reference, for
// MHA, GQA and MQA, d = 64 and 256, T = 1, 7, 128. The GPU keeps P, dO and dS in bf16, so the tolerance is on the
// whole tensor: ||gpu − cpu|| <= rtol·||cpu|| + 1e-4·sqrt(n), rtol = 1e-2 for out and 2e-2 for dq, dk, dv (the
// absolute term covers T = 1, where dq and dk are 0 up to fp32 rounding on the CPU and exactly 0 on the GPU).
// Every output is poisoned with NaN (all-ones bytes) first; the checks then prove each element was written and that
// padding between rows/batches was not.
//
// Without a GPU or without libcublasLt (CI) each test case prints why and passes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

// Both folders have an attention.h: name each by path (the CPU reference is hq::, the GPU one hq::cuda::).
#include "gpu_attention.h"
#include "attention.h"
#include "cuda_common.h"
#include "dtype.h"
#include "error.h"
#include "gemm.h"

using hq::cuda::bf16;
using hq::cuda::DeviceBuffer;

namespace {

static_assert(sizeof(bf16) == 2, "bf16 is 2 bytes");

// True when cuBLASLt loads; otherwise prints why (the caller returns: the test passes by skipping).
// A GPU and cuBLASLt are there; otherwise the test case says why it is skipped (and passes).
bool cublaslt_ready() {
    std::string why;
    if (!hq::cuda::device_available(&why)) {
        MESSAGE("skipped: " << why);
        return false;
    }
    try {
        const std::string path = hq::cuda::cublaslt_load();
        MESSAGE("cuBLASLt: " << path);
        return true;
    } catch (const hq::Error& e) {
        CHECK(e.code() == "E_CUDA");
        MESSAGE("skipped: " << e.what() << " (hint: " << e.hint() << ")");
        return false;
    }
}

struct Stream {
    cudaStream_t s = nullptr;
    Stream() { HQ_CUDA(cudaStreamCreate(&s)); }
    ~Stream() { cudaStreamDestroy(s); }
};

// n normal(0, 1) values rounded to bf16: bits and their fp32 value.
struct Bf16Data {
    std::vector<uint16_t> bits;
    std::vector<float> f;
};
Bf16Data rand_bf16(size_t n, uint32_t seed, float sd = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, sd);
    Bf16Data d;
    d.bits.resize(n);
    d.f.resize(n);
    for (size_t i = 0; i < n; i++) {
        d.bits[i] = hq::f32_to_bf16(nd(rng));
        d.f[i] = hq::bf16_to_f32(d.bits[i]);
    }
    return d;
}
std::vector<float> randn(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = nd(rng);
    return v;
}

// Device buffer of `n` elements of T after `offset` leading elements (to misalign on purpose), poisoned with NaN.
template <typename T>
struct Dev {
    DeviceBuffer<T> buf;
    size_t offset = 0, n = 0;
    Dev(size_t n_, size_t off = 0) : buf(n_ + off), offset(off), n(n_) {
        HQ_CUDA(cudaMemset(buf.data(), 0xFF, buf.bytes()));   // all-ones bytes: NaN in fp32 and bf16
    }
    T* p() { return buf.data() + offset; }
    template <typename H>
    void put(const std::vector<H>& h) {
        static_assert(sizeof(H) == sizeof(T), "host/device element size");
        REQUIRE(h.size() == n);
        HQ_CUDA(cudaMemcpy(p(), h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
    }
    template <typename H>
    std::vector<H> get() {
        static_assert(sizeof(H) == sizeof(T), "host/device element size");
        std::vector<H> h(n);
        HQ_CUDA(cudaMemcpy(h.data(), p(), n * sizeof(T), cudaMemcpyDeviceToHost));
        return h;
    }
};

const uint16_t kNaN16 = 0xFFFF;

// ---- GEMM -------------------------------------------------------------------------------------------------------

struct GemmCase {
    int M, N, K;
    bool ta, tb;
    hq::cuda::DType ct;
    float beta;
    int batch = 1;
    size_t offset = 0;   // elements before A, B and C (offset 1: 2-byte (bf16) / 4-byte (fp32) aligned pointers)
};

void check_gemm(hq::cuda::Gemm& g, const GemmCase& c) {
    using hq::cuda::DType;
    const int M = c.M, N = c.N, K = c.K, batch = c.batch;
    const bool f32 = c.ct == DType::F32;
    CAPTURE(M);
    CAPTURE(N);
    CAPTURE(K);
    CAPTURE(c.ta);
    CAPTURE(c.tb);
    CAPTURE(f32);
    CAPTURE(c.beta);
    CAPTURE(batch);
    CAPTURE(c.offset);
    const int64_t pad = 3, gap = batch > 1 ? 5 : 0;
    const int64_t lda = (c.ta ? M : K) + pad, ldb = (c.tb ? K : N) + pad, ldc = N + pad;
    const int64_t rowsA = c.ta ? K : M, rowsB = c.tb ? N : K;
    const int64_t sA = rowsA * lda + gap, sB = rowsB * ldb + gap, sC = int64_t(M) * ldc + gap;
    const size_t nA = size_t(sA) * batch, nB = size_t(sB) * batch, nC = size_t(sC) * batch;
    const Bf16Data A = rand_bf16(nA, 11 + M), B = rand_bf16(nB, 23 + N);
    // C0: inside each [M, N] block random (bf16-rounded when C is bf16) when beta != 0, NaN when beta == 0 (C must
    // not be read); padding columns and batch gaps NaN.
    std::vector<double> c0(nC, std::nan(""));
    std::vector<float> c0f(nC, std::nanf(""));
    std::vector<uint16_t> c0b(nC, kNaN16);
    {
        const std::vector<float> r = randn(nC, 37 + K);
        for (int bt = 0; bt < batch; bt++)
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    const size_t o = size_t(bt) * sC + size_t(i) * ldc + j;
                    if (c.beta == 0.0f) continue;
                    c0b[o] = hq::f32_to_bf16(r[o]);
                    c0f[o] = f32 ? r[o] : hq::bf16_to_f32(c0b[o]);
                    c0[o] = c0f[o];
                }
    }
    Dev<bf16> dA(nA, c.offset), dB(nB, c.offset);
    dA.put(A.bits);
    dB.put(B.bits);
    std::vector<float> outf;
    std::vector<uint16_t> outb;
    std::vector<float> out2f;
    std::vector<uint16_t> out2b;
    // Two runs from the same C0: the second reuses the cached plan and must give identical bits.
    for (int rep = 0; rep < 2; rep++) {
        if (f32) {
            Dev<float> dC(nC, c.offset);
            dC.put(c0f);
            g.run(c.ta, c.tb, M, N, K, 1.0f, dA.p(), lda, dB.p(), ldb, c.beta, dC.p(), c.ct, ldc, batch, sA, sB, sC);
            HQ_CUDA(cudaStreamSynchronize(g.stream()));
            (rep == 0 ? outf : out2f) = dC.get<float>();
        } else {
            Dev<bf16> dC(nC, c.offset);
            dC.put(c0b);
            g.run(c.ta, c.tb, M, N, K, 1.0f, dA.p(), lda, dB.p(), ldb, c.beta, dC.p(), c.ct, ldc, batch, sA, sB, sC);
            HQ_CUDA(cudaStreamSynchronize(g.stream()));
            (rep == 0 ? outb : out2b) = dC.get<uint16_t>();
        }
    }
    // Bitwise (the NaN-poisoned padding compares unequal as floats).
    CHECK((f32 ? outf.size() == out2f.size() && std::memcmp(outf.data(), out2f.data(), outf.size() * sizeof(float)) == 0
               : outb == out2b));
    auto a = [&](int bt, int i, int k) {
        return double(c.ta ? A.f[size_t(bt) * sA + size_t(k) * lda + i] : A.f[size_t(bt) * sA + size_t(i) * lda + k]);
    };
    auto b = [&](int bt, int k, int j) {
        return double(c.tb ? B.f[size_t(bt) * sB + size_t(j) * ldb + k] : B.f[size_t(bt) * sB + size_t(k) * ldb + j]);
    };
    double worst = 0;
    int64_t untouched_bad = 0;
    for (int bt = 0; bt < batch; bt++)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                const size_t o = size_t(bt) * sC + size_t(i) * ldc + j;
                double ref = 0, mag = 0;
                for (int k = 0; k < K; k++) {
                    const double p = a(bt, i, k) * b(bt, k, j);
                    ref += p;
                    mag += std::fabs(p);
                }
                if (c.beta != 0.0f) {
                    ref += double(c.beta) * c0[o];
                    mag += std::fabs(double(c.beta) * c0[o]);
                }
                const double got = f32 ? double(outf[o]) : double(hq::bf16_to_f32(outb[o]));
                worst = std::max(worst, std::isfinite(got) ? std::fabs(got - ref) / (mag + 1e-30) : 1e30);
            }
    // Padding columns and batch gaps keep their NaN.
    for (size_t o = 0; o < nC; o++) {
        const int64_t in_batch = int64_t(o % size_t(sC));
        const bool inside = in_batch < int64_t(M) * ldc && in_batch % ldc < N;
        if (!inside && !(f32 ? std::isnan(outf[o]) : outb[o] == kNaN16)) untouched_bad++;
    }
    CHECK(worst < (f32 ? 1e-4 : 8e-3));
    CHECK(untouched_bad == 0);
}

// ---- attention --------------------------------------------------------------------------------------------------

// [B, nh, T, d] <-> [B, T, nh, d]
std::vector<float> bhtd_to_bthd(const std::vector<float>& x, int B, int nh, int T, int d) {
    std::vector<float> y(x.size());
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++)
            for (int t = 0; t < T; t++)
                for (int c = 0; c < d; c++)
                    y[((size_t(b) * T + t) * nh + h) * d + c] = x[((size_t(b) * nh + h) * T + t) * d + c];
    return y;
}

struct Cmp {
    double err = 0, ref = 0;
    size_t nonfinite = 0, n = 0;
};
Cmp compare(const std::vector<float>& got, const std::vector<float>& want) {
    Cmp c;
    c.n = want.size();
    double e2 = 0, r2 = 0;
    for (size_t i = 0; i < want.size(); i++) {
        if (!std::isfinite(got[i])) {
            c.nonfinite++;
            continue;
        }
        e2 += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
        r2 += double(want[i]) * want[i];
    }
    c.err = std::sqrt(e2);
    c.ref = std::sqrt(r2);
    return c;
}
// Checks ||got − want|| <= rtol·||want|| + 1e-4·sqrt(n); returns ||got − want|| / ||want|| (0 when want is 0).
double check_close(const char* name, const std::vector<float>& got, const std::vector<float>& want, double rtol) {
    const Cmp c = compare(got, want);
    CAPTURE(name);
    CAPTURE(c.err);
    CAPTURE(c.ref);
    CHECK(c.nonfinite == 0);
    CHECK(c.err <= rtol * c.ref + 1e-4 * std::sqrt(double(c.n)));
    return c.ref > 0 ? c.err / c.ref : 0.0;
}

// A bf16 device buffer's values as fp32.
std::vector<float> bf16_values(Dev<bf16>& d) {
    const std::vector<uint16_t> b = d.get<uint16_t>();
    std::vector<float> f(b.size());
    for (size_t i = 0; i < b.size(); i++) f[i] = hq::bf16_to_f32(b[i]);
    return f;
}

// chunk: kv groups per chunk (0: the default budget); recompute: the backward recomputes P instead of reading it.
void check_attention(hq::cuda::Gemm& g, int B, int T, int H, int KV, int d, int chunk = 0, bool recompute = false) {
    CAPTURE(chunk);
    CAPTURE(recompute);
    CAPTURE(B);
    CAPTURE(T);
    CAPTURE(H);
    CAPTURE(KV);
    CAPTURE(d);
    const size_t nq = size_t(B) * H * T * d, nk = size_t(B) * KV * T * d, nP = size_t(B) * H * T * T;
    // GPU layouts: q [B, H, T, d], k, v [B, KV, T, d] (bhtd); dout [B, T, H, d].
    const Bf16Data q = rand_bf16(nq, 101 + T), k = rand_bf16(nk, 202 + d), v = rand_bf16(nk, 303 + H);
    const std::vector<float> dout = randn(nq, 404 + KV);

    // CPU reference in [B, T, heads, d].
    hq::AttnShape s;
    s.B = B;
    s.T = T;
    s.H = H;
    s.KV = KV;
    s.d = d;
    const std::vector<float> qc = bhtd_to_bthd(q.f, B, H, T, d), kc = bhtd_to_bthd(k.f, B, KV, T, d),
                             vc = bhtd_to_bthd(v.f, B, KV, T, d);
    std::vector<float> out_ref(nq), lse(size_t(B) * H * T), dq_ref(nq), dk_ref(nk), dv_ref(nk);
    hq::attention_forward(out_ref.data(), lse.data(), qc.data(), kc.data(), vc.data(), s);
    hq::attention_backward(dq_ref.data(), dk_ref.data(), dv_ref.data(), dout.data(), qc.data(), kc.data(), vc.data(),
                           out_ref.data(), lse.data(), s);

    hq::cuda::AttnDims a;
    a.B = B;
    a.T = T;
    a.H = H;
    a.KV = KV;
    a.d = d;
    a.scale = float(1.0 / std::sqrt(double(d)));   // the CPU reference's scale
    a.chunk = chunk;
    a.kernel = hq::cuda::AttnKernel::Gemm;
    Dev<bf16> dq_in(nq), dk_in(nk), dv_in(nk), out(nq), P(nP);
    Dev<float> work(hq::cuda::attention_workspace_floats(a)), ddout(nq), dq(nq), dk(nk), dv(nk);
    dq_in.put(q.bits);
    dk_in.put(k.bits);
    dv_in.put(v.bits);
    ddout.put(dout);
    hq::cuda::attention_forward(g, out.p(), nullptr, P.p(), dq_in.p(), dk_in.p(), dv_in.p(), work.p(), a);
    hq::cuda::attention_backward(g, dq.p(), dk.p(), dv.p(), ddout.p(), nullptr, nullptr, dq_in.p(), dk_in.p(),
                                 dv_in.p(), recompute ? nullptr : P.p(), work.p(), a);
    HQ_CUDA(cudaStreamSynchronize(g.stream()));

    const std::vector<float> outf = bf16_values(out);
    check_close("out", outf, out_ref, 1e-2);
    // P [B, H, T, T]: every element written, zero above the diagonal, rows summing to 1 (bf16).
    {
        const std::vector<uint16_t> pb = P.get<uint16_t>();
        size_t bad = 0;
        double worst_sum = 0;
        for (size_t r = 0; r < size_t(B) * H * T; r++) {
            const int i = int(r % T);
            double sum = 0;
            for (int j = 0; j < T; j++) {
                const float p = hq::bf16_to_f32(pb[r * T + j]);
                if (!std::isfinite(p) || (j > i && p != 0.0f) || p < 0.0f) bad++;
                sum += p;
            }
            worst_sum = std::max(worst_sum, std::fabs(sum - 1.0));
        }
        CHECK(bad == 0);
        CHECK(worst_sum < 2e-2);
    }
    check_close("dq", bhtd_to_bthd(dq.get<float>(), B, H, T, d), dq_ref, 2e-2);
    check_close("dk", bhtd_to_bthd(dk.get<float>(), B, KV, T, d), dk_ref, 2e-2);
    check_close("dv", bhtd_to_bthd(dv.get<float>(), B, KV, T, d), dv_ref, 2e-2);
}

// ---- flash attention ---------------------------------------------------------------------------------------------

struct FlashCase {
    int B, T, H, KV, d;
    int window = 0;
    float softcap = 0.0f;
    std::vector<std::vector<int>> docs;   // per batch row: document lengths summing to T (empty: no document mask)
    FlashCase(int B_, int T_, int H_, int KV_, int d_, int window_ = 0, float softcap_ = 0.0f)
        : B(B_), T(T_), H(H_), KV(KV_), d(d_), window(window_), softcap(softcap_) {}
};

// rows [t0, t0 + n) of batch b of x [B, T, nh, d] as [1, n, nh, d].
std::vector<float> slice_bthd(const std::vector<float>& x, int b, int T, int nh, int d, int t0, int n) {
    const size_t row = size_t(nh) * d;
    return std::vector<float>(x.begin() + (size_t(b) * T + t0) * row, x.begin() + (size_t(b) * T + t0 + n) * row);
}
void put_bthd(std::vector<float>& x, const std::vector<float>& part, int b, int T, int nh, int d, int t0) {
    std::copy(part.begin(), part.end(), x.begin() + (size_t(b) * T + t0) * size_t(nh) * d);
}

// The flash kernel against the CPU reference (fp32, on the same bf16 inputs), each document of each batch row run on
// its own through the reference, so the document mask is checked against separate sequences. Tolerances as
// check_attention's (P, dO and dS are bf16 on the GPU). Returns the worst relative error (printed by the caller).
double check_flash(hq::cuda::Gemm& g, const FlashCase& fc) {
    const int B = fc.B, T = fc.T, H = fc.H, KV = fc.KV, d = fc.d;
    CAPTURE(B);
    CAPTURE(T);
    CAPTURE(H);
    CAPTURE(KV);
    CAPTURE(d);
    CAPTURE(fc.window);
    CAPTURE(fc.softcap);
    CAPTURE(fc.docs.size());
    const size_t nq = size_t(B) * H * T * d, nk = size_t(B) * KV * T * d;
    const Bf16Data q = rand_bf16(nq, 111 + T + d), k = rand_bf16(nk, 222 + H), v = rand_bf16(nk, 333 + KV);
    const std::vector<float> dout = randn(nq, 444 + T);
    const std::vector<float> qc = bhtd_to_bthd(q.f, B, H, T, d), kc = bhtd_to_bthd(k.f, B, KV, T, d),
                             vc = bhtd_to_bthd(v.f, B, KV, T, d);
    std::vector<float> out_ref(nq), dq_ref(nq), dk_ref(nk), dv_ref(nk);
    std::vector<int32_t> seg(size_t(B) * T, 0);
    for (int b = 0; b < B; b++) {
        const std::vector<int> docs = fc.docs.empty() ? std::vector<int>{T} : fc.docs[b];
        int t0 = 0, id = 0;
        for (int n : docs) {
            for (int t = t0; t < t0 + n; t++) seg[size_t(b) * T + t] = id;
            hq::AttnShape s;
            s.B = 1;
            s.T = n;
            s.H = H;
            s.KV = KV;
            s.d = d;
            s.window = fc.window;
            s.softcap = fc.softcap;
            const auto qs = slice_bthd(qc, b, T, H, d, t0, n), ks = slice_bthd(kc, b, T, KV, d, t0, n),
                       vs = slice_bthd(vc, b, T, KV, d, t0, n), dos = slice_bthd(dout, b, T, H, d, t0, n);
            std::vector<float> o(qs.size()), lse(size_t(H) * n), dqs(qs.size()), dks(ks.size()), dvs(vs.size());
            hq::attention_forward(o.data(), lse.data(), qs.data(), ks.data(), vs.data(), s);
            hq::attention_backward(dqs.data(), dks.data(), dvs.data(), dos.data(), qs.data(), ks.data(), vs.data(),
                                   o.data(), lse.data(), s);
            put_bthd(out_ref, o, b, T, H, d, t0);
            put_bthd(dq_ref, dqs, b, T, H, d, t0);
            put_bthd(dk_ref, dks, b, T, KV, d, t0);
            put_bthd(dv_ref, dvs, b, T, KV, d, t0);
            t0 += n;
            id++;
        }
        REQUIRE(t0 == T);
    }

    Dev<int32_t> dseg(seg.size());
    dseg.put(seg);
    hq::cuda::AttnDims a;
    a.B = B;
    a.T = T;
    a.H = H;
    a.KV = KV;
    a.d = d;
    a.scale = float(1.0 / std::sqrt(double(d)));
    a.window = fc.window;
    a.softcap = fc.softcap;
    a.seg = fc.docs.empty() ? nullptr : dseg.p();
    a.kernel = hq::cuda::AttnKernel::Flash;
    REQUIRE(hq::cuda::attention_kernel(a) == hq::cuda::AttnKernel::Flash);
    // O(T) workspace: dO (bf16) and one float per row, nothing of T × T.
    CHECK(hq::cuda::attention_workspace_floats(a) <= (nq + 1) / 2 + size_t(B) * H * T + 64);
    Dev<bf16> q_in(nq), k_in(nk), v_in(nk), out(nq);
    Dev<float> lse(size_t(B) * H * T), work(hq::cuda::attention_workspace_floats(a)), ddout(nq), dq(nq), dk(nk),
        dv(nk);
    q_in.put(q.bits);
    k_in.put(k.bits);
    v_in.put(v.bits);
    ddout.put(dout);
    hq::cuda::attention_forward(g, out.p(), lse.p(), nullptr, q_in.p(), k_in.p(), v_in.p(), work.p(), a);
    hq::cuda::attention_backward(g, dq.p(), dk.p(), dv.p(), ddout.p(), out.p(), lse.p(), q_in.p(), k_in.p(), v_in.p(),
                                 nullptr, work.p(), a);
    HQ_CUDA(cudaStreamSynchronize(g.stream()));
    const std::vector<float> outf = bf16_values(out);
    const std::vector<float> dqf = bhtd_to_bthd(dq.get<float>(), B, H, T, d),
                             dkf = bhtd_to_bthd(dk.get<float>(), B, KV, T, d),
                             dvf = bhtd_to_bthd(dv.get<float>(), B, KV, T, d);
    return std::max({check_close("out", outf, out_ref, 1e-2), check_close("dq", dqf, dq_ref, 2e-2),
                     check_close("dk", dkf, dk_ref, 2e-2), check_close("dv", dvf, dv_ref, 2e-2)});
}

}  // namespace

TEST_CASE("cuda gemm: every transpose, fp32/bf16 C, beta 0/1, odd sizes, padded leading dims") {
    if (!cublaslt_ready()) return;
    Stream st;
    hq::cuda::Gemm g(st.s);
    for (hq::cuda::DType ct : {hq::cuda::DType::F32, hq::cuda::DType::BF16})
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (float beta : {0.0f, 1.0f}) check_gemm(g, {37, 53, 29, bool(ta), bool(tb), ct, beta});
    // One larger shape that the heuristic serves with tensor-core tiles.
    check_gemm(g, {200, 300, 256, false, true, hq::cuda::DType::F32, 0.0f});
    check_gemm(g, {200, 300, 256, true, false, hq::cuda::DType::BF16, 1.0f});
}

TEST_CASE("cuda gemm: strided batches with gaps, and pointers misaligned by one element") {
    if (!cublaslt_ready()) return;
    Stream st;
    hq::cuda::Gemm g(st.s);
    for (hq::cuda::DType ct : {hq::cuda::DType::F32, hq::cuda::DType::BF16})
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                check_gemm(g, {37, 53, 29, bool(ta), bool(tb), ct, 1.0f, 3});
                check_gemm(g, {37, 53, 29, bool(ta), bool(tb), ct, 0.0f, 2, 1});
            }
}

TEST_CASE("cuda attention: forward and backward vs the CPU reference (MHA, GQA, MQA; d 64/256; T 1/7/128; chunked)") {
    if (!cublaslt_ready()) return;
    Stream st;
    hq::cuda::Gemm g(st.s);
    const int heads[3][2] = {{4, 4}, {8, 2}, {4, 1}};   // MHA, GQA (G = 4), MQA
    for (const auto& hk : heads)
        for (int d : {64, 256}) {
            for (int T : {1, 7, 128}) check_attention(g, 2, T, hk[0], hk[1], d);
            // chunked over kv groups (uneven last chunk), with P recomputed in the backward as training does
            check_attention(g, 3, 37, hk[0], hk[1], d, 2, true);
            check_attention(g, 3, 37, hk[0], hk[1], d, 1, false);
        }
}

TEST_CASE("cuda flash attention: forward and backward vs the CPU reference (MHA, GQA, MQA; d 16..256; odd T)") {
    if (!cublaslt_ready()) return;
    Stream st;
    hq::cuda::Gemm g(st.s);
    const int heads[3][2] = {{4, 4}, {8, 2}, {4, 1}};
    double worst = 0;
    for (const auto& hk : heads)
        for (int d : {16, 32, 64, 96, 128, 256})
            for (int T : {1, 7, 64, 65, 130}) worst = std::max(worst, check_flash(g, {2, T, hk[0], hk[1], d}));
    MESSAGE("flash, T <= 130, d 16/32/64/96/128/256, MHA/GQA/MQA: worst relative L2 error " << worst);
}

TEST_CASE("cuda flash attention: sliding window, soft-capping that clips, and a document mask (packing)") {
    if (!cublaslt_ready()) return;
    Stream st;
    hq::cuda::Gemm g(st.s);
    double worst = 0;
    for (int d : {16, 64, 128, 256}) {
        for (int w : {1, 5, 37, 64, 200}) worst = std::max(worst, check_flash(g, {2, 130, 8, 2, d, w}));
        // q·k/sqrt(d) ~ N(0, 1): a cap of 1 clips most scores
        for (float cap : {1.0f, 5.0f}) worst = std::max(worst, check_flash(g, {2, 97, 4, 2, d, 0, cap}));
        worst = std::max(worst, check_flash(g, {2, 130, 4, 2, d, 37, 2.0f}));   // Gemma-2: both
        FlashCase packed{2, 150, 4, 2, d};
        packed.docs = {{40, 1, 63, 46}, {150}};
        worst = std::max(worst, check_flash(g, packed));
        packed.window = 20;
        worst = std::max(worst, check_flash(g, packed));
    }
    MESSAGE("flash, window / soft-cap / documents: worst relative L2 error " << worst);
}

TEST_CASE("cuda flash attention: long sequences (T 512, 2047, 4096; window 1024 at 4096)") {
    if (!cublaslt_ready()) return;
    Stream st;
    hq::cuda::Gemm g(st.s);
    for (int T : {512, 2047, 4096}) {
        const double e = check_flash(g, {1, T, 4, 2, 128});
        MESSAGE("flash, T " << T << ", d 128, GQA 4/2: worst relative L2 error " << e);
    }
    MESSAGE("flash, T 4096, window 1024: worst relative L2 error " << check_flash(g, {1, 4096, 4, 2, 128, 1024}));
    MESSAGE("flash, T 2048, d 256, MQA: worst relative L2 error " << check_flash(g, {1, 2048, 4, 1, 256}));
}
