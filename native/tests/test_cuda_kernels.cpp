// test_cuda_kernels.cpp — every kernel of native/cuda/kernels.h against its CPU reference in native/src.
//
// Inputs are random (fixed seeds, no zeros); where the GPU input is bf16 the CPU reference runs on the same
// bf16-rounded values in fp32. Outputs are poisoned (0xFF bytes = NaN in fp32 and bf16) before each kernel, so an
// element the kernel forgot to write fails the comparison. Tolerances:
//   - exact (bit for bit): conversions, NF4 dequant, embedding, layout copies, scale/dropout, AdamW, scale_inplace,
//     count_nonfinite, the exact zeros of masked / ignored entries;
//   - bf16 outputs (RMSNorm y, RoPE, GLU, softmax P / dS, dlogits) against the unrounded fp32 reference:
//     ‖gpu − cpu‖/‖cpu‖ <= 4e-3 and every element |gpu − cpu| <= 1e-2·|cpu| + 1e-3·max|cpu| (bf16 keeps 8
//     significant bits: rounding alone is <= 2^-9 relative, a 1-ulp fp32 difference at a rounding boundary <= 2^-8);
//   - fp32 outputs (RMSNorm f32 / rstd / dx, row losses): relative norm <= 1e-5 and every element
//     |gpu − cpu| <= 1e-5·|cpu| + 1e-5·max|cpu| (different summation orders, expf/tanhf within 2 ulp);
//   - sum_squares (fp64): relative 1e-12 to the CPU's sequential sum, and identical bits run to run.
// Without a GPU (CI) every case prints "[test_cuda_kernels] skipped: <why>" and passes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda_common.h"
#include "dtype.h"
#include "embedding.h"
#include "hlora.h"
#include "kernels.h"
#include "loss.h"
#include "mlp.h"
#include "model_config.h"
#include "nf4.h"
#include "norm.h"
#include "optimizer.h"
#include "rope.h"

using hq::cuda::bf16;
using hq::cuda::DeviceBuffer;

#define SKIP_WITHOUT_GPU()                                                 \
    do {                                                                   \
        std::string why_;                                                  \
        if (!hq::cuda::device_available(&why_)) {                          \
            MESSAGE("[test_cuda_kernels] skipped: " << why_);              \
            return;                                                        \
        }                                                                  \
    } while (0)

namespace {

// ---- host data ----------------------------------------------------------------------------------------------------
std::vector<float> randn(size_t n, uint64_t seed, float sd = 1.0f, float mean = 0.0f) {
    std::mt19937_64 g(seed);
    std::normal_distribution<float> d(mean, sd);
    std::vector<float> v(n);
    for (auto& x : v) {
        x = d(g);
        if (x == 0.0f) x = sd * 1e-3f;   // never exactly zero
    }
    return v;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& x) {
    std::vector<uint16_t> h(x.size());
    for (size_t i = 0; i < x.size(); i++) h[i] = hq::f32_to_bf16(x[i]);
    return h;
}
std::vector<float> from_bf16(const std::vector<uint16_t>& h) {
    std::vector<float> x(h.size());
    for (size_t i = 0; i < h.size(); i++) x[i] = hq::bf16_to_f32(h[i]);
    return x;
}

// [B, T, nh, d] <-> [B, nh, T, d]
template <typename T>
std::vector<T> bthd_to_bhtd_host(const std::vector<T>& x, int B, int Tn, int nh, int d) {
    std::vector<T> y(x.size());
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Tn; t++)
            for (int h = 0; h < nh; h++)
                for (int i = 0; i < d; i++)
                    y[(((size_t)b * nh + h) * Tn + t) * d + i] = x[(((size_t)b * Tn + t) * nh + h) * d + i];
    return y;
}
template <typename T>
std::vector<T> bhtd_to_bthd_host(const std::vector<T>& x, int B, int Tn, int nh, int d) {
    std::vector<T> y(x.size());
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Tn; t++)
            for (int h = 0; h < nh; h++)
                for (int i = 0; i < d; i++)
                    y[(((size_t)b * Tn + t) * nh + h) * d + i] = x[(((size_t)b * nh + h) * Tn + t) * d + i];
    return y;
}

// ---- device transfers -----------------------------------------------------------------------------------------------
template <typename D, typename H>
DeviceBuffer<D> upload(const std::vector<H>& h) {
    static_assert(sizeof(D) == sizeof(H), "host and device element sizes differ");
    DeviceBuffer<D> d(h.size());
    if (!h.empty()) HQ_CUDA(cudaMemcpy(d.data(), h.data(), h.size() * sizeof(H), cudaMemcpyHostToDevice));
    return d;
}
template <typename H, typename D>
std::vector<H> download(const D* d, size_t n) {
    static_assert(sizeof(D) == sizeof(H), "host and device element sizes differ");
    HQ_CUDA(cudaDeviceSynchronize());   // surfaces kernel faults as E_CUDA here
    std::vector<H> h(n);
    if (n) HQ_CUDA(cudaMemcpy(h.data(), d, n * sizeof(H), cudaMemcpyDeviceToHost));
    return h;
}
// 0xFF bytes: NaN in fp32 and bf16 (and -1 as int).
template <typename T>
void poison(DeviceBuffer<T>& d) {
    HQ_CUDA(cudaMemset(d.data(), 0xFF, d.bytes()));
}
std::vector<float> download_bf16(const bf16* d, size_t n) { return from_bf16(download<uint16_t>(d, n)); }

// ---- comparisons ----------------------------------------------------------------------------------------------------
struct Tol {
    double norm;   // ‖gpu − cpu‖ / ‖cpu‖
    double rtol;   // per element: |gpu − cpu| <= rtol·|cpu| + atol·max|cpu|
    double atol;
};
constexpr Tol kBf16Tol{4e-3, 1e-2, 1e-3};
constexpr Tol kF32Tol{1e-5, 1e-5, 1e-5};

void check_close(const std::string& what, const std::vector<float>& gpu, const std::vector<float>& cpu, Tol tol) {
    REQUIRE(gpu.size() == cpu.size());
    double num = 0.0, den = 0.0, cmax = 0.0;
    for (size_t i = 0; i < cpu.size(); i++) cmax = std::max(cmax, (double)std::fabs(cpu[i]));
    size_t bad = 0, unwritten = 0, first_bad = 0;
    double worst = 0.0;
    for (size_t i = 0; i < cpu.size(); i++) {
        if (!std::isfinite(gpu[i])) {
            if (unwritten++ == 0 && bad == 0) first_bad = i;
            continue;
        }
        const double e = std::fabs((double)gpu[i] - (double)cpu[i]);
        num += e * e;
        den += (double)cpu[i] * cpu[i];
        const double lim = tol.rtol * std::fabs((double)cpu[i]) + tol.atol * cmax;
        worst = std::max(worst, e / (lim > 0 ? lim : 1e-300));
        if (e > lim && bad++ == 0 && unwritten == 0) first_bad = i;
    }
    const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
    INFO(what << ": n " << cpu.size() << ", rel-norm err " << rel << " (tol " << tol.norm << "), worst element at "
              << worst << " of its limit, " << bad << " over the limit, " << unwritten << " non-finite; first "
              << "offending index " << first_bad << ": gpu " << gpu[first_bad] << " cpu " << cpu[first_bad]);
    CHECK(unwritten == 0);
    CHECK(bad == 0);
    CHECK(rel <= tol.norm);
}

template <typename T>
void check_bits(const std::string& what, const std::vector<T>& gpu, const std::vector<T>& cpu) {
    REQUIRE(gpu.size() == cpu.size());
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < cpu.size(); i++)
        if (std::memcmp(&gpu[i], &cpu[i], sizeof(T)) != 0 && bad++ == 0) first = i;
    INFO(what << ": " << bad << " of " << cpu.size() << " elements differ; first at " << first << ": gpu "
              << +gpu[first] << " cpu " << +cpu[first]);
    CHECK(bad == 0);
}

uint32_t f32_bits(float x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    return u;
}
std::vector<uint32_t> bits_of(const std::vector<float>& x) {
    std::vector<uint32_t> u(x.size());
    for (size_t i = 0; i < x.size(); i++) u[i] = f32_bits(x[i]);
    return u;
}

}  // namespace

// ---- conversions --------------------------------------------------------------------------------------------------
TEST_CASE("cuda f32_to_bf16 / bf16_to_f32 round to nearest even exactly like dtype.cpp") {
    SKIP_WITHOUT_GPU();
    const size_t n = 1000003;
    std::vector<float> x = randn(n, 11, 3.0f);
    x[0] = INFINITY;
    x[1] = -INFINITY;
    x[2] = 1e-40f;          // subnormal
    x[3] = -0.0f;
    x[4] = 3.4028235e38f;    // FLT_MAX rounds up to +Inf in bf16
    x[5] = 1.00390625f;     // exact tie 1 + 2^-8 -> even (1.0)
    x[6] = 1.01171875f;     // exact tie 1 + 3·2^-8 -> even (1 + 2^-6)
    const std::vector<uint16_t> want = to_bf16(x);
    DeviceBuffer<float> dx = upload<float>(x);
    DeviceBuffer<bf16> dy(n);
    for (int offset : {0, 1}) {   // 0: vector path; 1: unaligned pointers (element path)
        CAPTURE(offset);
        poison(dy);
        hq::cuda::f32_to_bf16(dy.data() + offset, dx.data() + offset, (int64_t)(n - offset), nullptr);
        std::vector<uint16_t> got = download<uint16_t>(dy.data() + offset, n - offset);
        check_bits("f32_to_bf16", got, std::vector<uint16_t>(want.begin() + offset, want.end()));
    }
    DeviceBuffer<bf16> dh = upload<bf16>(want);
    DeviceBuffer<float> dback(n);
    for (int offset : {0, 1}) {
        CAPTURE(offset);
        poison(dback);
        hq::cuda::bf16_to_f32(dback.data() + offset, dh.data() + offset, (int64_t)(n - offset), nullptr);
        std::vector<float> got = download<float>(dback.data() + offset, n - offset);
        std::vector<float> ref = from_bf16(std::vector<uint16_t>(want.begin() + offset, want.end()));
        check_bits("bf16_to_f32", bits_of(got), bits_of(ref));
    }
}

// ---- NF4 ----------------------------------------------------------------------------------------------------------
namespace {

// Uploads t, dequantizes on the GPU into a bf16 buffer at element offset `out_offset` (1 = unaligned output: the
// element path) and compares every bit with nf4_dequantize rounded to bf16.
void check_nf4(const std::string& what, const hq::NF4Tensor& t, int out_offset) {
    const int64_t n = t.numel();
    DeviceBuffer<uint8_t> packed = upload<uint8_t>(t.packed);
    DeviceBuffer<uint8_t> qabsmax = upload<uint8_t>(t.qabsmax);
    DeviceBuffer<float> absmax2 = upload<float>(t.absmax2);
    DeviceBuffer<float> absmax = upload<float>(t.absmax);
    hq::cuda::NF4View v;
    v.packed = packed.data();
    v.qabsmax = t.double_quant ? qabsmax.data() : nullptr;
    v.absmax2 = t.double_quant ? absmax2.data() : nullptr;
    v.absmax = t.double_quant ? nullptr : absmax.data();
    v.offset = t.offset;
    v.n = n;
    v.blocksize = t.blocksize;
    v.nested_blocksize = t.nested_blocksize;
    v.double_quant = t.double_quant;
    DeviceBuffer<bf16> out((size_t)n + out_offset);
    poison(out);
    hq::cuda::nf4_dequantize_bf16(out.data() + out_offset, v, nullptr);
    std::vector<uint16_t> got = download<uint16_t>(out.data() + out_offset, (size_t)n);
    std::vector<float> ref((size_t)n);
    hq::nf4_dequantize(t, ref.data());
    std::vector<uint16_t> want(ref.size());
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) want[(size_t)i] = hq::f32_to_bf16(ref[(size_t)i]);
    check_bits(what, got, want);
}

// A 7B-shaped tensor with random storage (any bytes are valid NF4 storage; quantizing 45M weights on the CPU
// would dominate the test's run time). Scales are positive, like real absmax.
hq::NF4Tensor random_nf4(int64_t rows, int64_t cols, int blocksize, bool double_quant, uint64_t seed) {
    hq::NF4Tensor t;
    t.rows = rows;
    t.cols = cols;
    t.blocksize = blocksize;
    t.double_quant = double_quant;
    std::mt19937_64 g(seed);
    t.packed.resize((size_t)((t.numel() + 1) / 2));
    for (size_t i = 0; i < t.packed.size(); i += 8) {
        const uint64_t r = g();
        std::memcpy(t.packed.data() + i, &r, std::min<size_t>(8, t.packed.size() - i));
    }
    const int64_t nb = t.nblocks();
    std::uniform_real_distribution<float> u(0.01f, 0.2f);
    if (double_quant) {
        t.qabsmax.resize((size_t)nb);
        for (auto& q : t.qabsmax) q = (uint8_t)(g() >> 56);
        t.absmax2.resize((size_t)((nb + t.nested_blocksize - 1) / t.nested_blocksize));
        for (auto& a : t.absmax2) a = u(g);
        t.offset = 0.0613f;
    } else {
        t.absmax.resize((size_t)nb);
        for (auto& a : t.absmax) a = u(g);
    }
    return t;
}

}  // namespace

TEST_CASE("cuda nf4_dequantize_bf16 is bit-exact with nf4_dequantize on 7B-shaped and odd-sized tensors") {
    SKIP_WITHOUT_GPU();
    hq::cuda::nf4_init_tables();
    hq::cuda::nf4_init_tables();   // idempotent
    // 7B MLP shape (11008 x 4096, 45M weights), with and without double quant
    check_nf4("nf4 11008x4096 dq", random_nf4(11008, 4096, 64, true, 21), 0);
    check_nf4("nf4 11008x4096", random_nf4(11008, 4096, 64, false, 22), 0);
    // Quantized from real weights: n = 3737 is odd and not a multiple of the blocksize (partial last block, a
    // last byte with one weight); offset 1 runs the unaligned element path.
    const std::vector<float> w = randn(37 * 101, 23, 0.02f);
    for (bool dq : {true, false}) {
        const hq::NF4Tensor t = hq::nf4_quantize(w.data(), 37, 101, 64, dq);
        for (int off : {0, 1})
            check_nf4(std::string("nf4 37x101 ") + (dq ? "dq" : "") + " offset " + std::to_string(off), t, off);
    }
    // blocksize 128 and several nested groups (336 blocks > 256), 32 with n % 32 != 0.
    const std::vector<float> w2 = randn(333 * 129, 24, 0.05f);
    check_nf4("nf4 333x129 bs128 dq", hq::nf4_quantize(w2.data(), 333, 129, 128, true), 0);
    check_nf4("nf4 333x129 bs32 dq", hq::nf4_quantize(w2.data(), 333, 129, 32, true), 0);
    check_nf4("nf4 333x129 bs32", hq::nf4_quantize(w2.data(), 333, 129, 32, false), 0);
}

// ---- embedding ----------------------------------------------------------------------------------------------------
TEST_CASE("cuda embedding_forward equals embedding_forward on the bf16 table (exact)") {
    SKIP_WITHOUT_GPU();
    const int V = 1000;
    const int64_t N = 300;
    for (int C : {640, 100}) {        // 640: 16-byte path; 100: element path
        for (bool gemma : {false, true}) {
            CAPTURE(C);
            CAPTURE(gemma);
            const std::vector<uint16_t> Eh = to_bf16(randn((size_t)V * C, 31, 0.5f));
            const std::vector<float> E = from_bf16(Eh);
            std::vector<int32_t> ids((size_t)N);
            std::mt19937 g(32);
            for (auto& id : ids) id = (int32_t)(g() % V);
            ids[0] = 0;
            ids[1] = V - 1;
            const float scale = hq::embedding_scale(gemma, C);
            std::vector<float> ref((size_t)N * C);
            hq::embedding_forward(ref.data(), E.data(), ids.data(), N, C, V, scale);
            DeviceBuffer<bf16> dE = upload<bf16>(Eh);
            DeviceBuffer<int32_t> dids = upload<int32_t>(ids);
            DeviceBuffer<float> dx((size_t)N * C);
            poison(dx);
            hq::cuda::embedding_forward(dx.data(), dE.data(), dids.data(), N, C, scale, nullptr);
            check_bits("embedding", bits_of(download<float>(dx.data(), (size_t)N * C)), bits_of(ref));
        }
    }
}

// ---- RMSNorm ------------------------------------------------------------------------------------------------------
TEST_CASE("cuda rmsnorm forward (bf16 / fp32) and backward match norm.cpp") {
    SKIP_WITHOUT_GPU();
    struct Shape {
        int64_t N;
        int C;
    };
    for (Shape sh : {Shape{64, 4096}, Shape{9, 8196}, Shape{17, 1001}, Shape{5, 64}}) {
        for (bool gemma : {false, true}) {
            const int64_t N = sh.N;
            const int C = sh.C;
            CAPTURE(N);
            CAPTURE(C);
            CAPTURE(gemma);
            const float eps = gemma ? 1e-6f : 1e-5f;
            const size_t n = (size_t)N * C;
            const std::vector<float> x = randn(n, 41, 2.0f, 0.1f);
            const std::vector<float> w = gemma ? randn((size_t)C, 42, 0.1f) : randn((size_t)C, 42, 0.1f, 1.0f);
            std::vector<float> y(n), rstd((size_t)N);
            hq::rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, C, eps, gemma);

            DeviceBuffer<float> dx_in = upload<float>(x), dw = upload<float>(w);
            DeviceBuffer<bf16> dy16(n);
            DeviceBuffer<float> dy32(n), drstd((size_t)N);
            poison(dy16);
            poison(drstd);
            hq::cuda::rmsnorm_forward(dy16.data(), drstd.data(), dx_in.data(), dw.data(), N, C, eps, gemma, nullptr);
            check_close("rmsnorm y bf16", download_bf16(dy16.data(), n), y, kBf16Tol);
            check_close("rmsnorm rstd", download<float>(drstd.data(), (size_t)N), rstd, kF32Tol);
            poison(dy32);
            poison(drstd);
            hq::cuda::rmsnorm_forward_f32(dy32.data(), nullptr, dx_in.data(), dw.data(), N, C, eps, gemma, nullptr);
            check_close("rmsnorm y fp32", download<float>(dy32.data(), n), y, kF32Tol);
            const std::vector<float> untouched = download<float>(drstd.data(), (size_t)N);   // rstd == nullptr
            CHECK(std::all_of(untouched.begin(), untouched.end(), [](float v) { return std::isnan(v); }));

            // backward: dx (random, accumulated into) += dL/dx, with the CPU's rstd on both sides
            const std::vector<float> g = randn(n, 43, 1.0f);
            std::vector<float> dx = randn(n, 44, 0.5f);
            DeviceBuffer<float> ddx = upload<float>(dx), dg = upload<float>(g), drs = upload<float>(rstd);
            hq::rmsnorm_backward(dx.data(), g.data(), x.data(), w.data(), rstd.data(), N, C, gemma);
            hq::cuda::rmsnorm_backward(ddx.data(), dg.data(), dx_in.data(), dw.data(), drs.data(), N, C, gemma,
                                       nullptr);
            check_close("rmsnorm dx", download<float>(ddx.data(), n), dx, kF32Tol);
        }
    }
}

// ---- RoPE and layouts -----------------------------------------------------------------------------------------------
TEST_CASE("cuda rope forward/backward with the bthd <-> bhtd layout change match rope.cpp") {
    SKIP_WITHOUT_GPU();
    const int B = 2, T = 37, nh = 3;
    for (int d : {128, 12, 6, 256}) {   // d/2 = 64 (4-wide), 6 (2-wide), 3 (1-wide), 128
        CAPTURE(d);
        const size_t n = (size_t)B * T * nh * d;
        const std::vector<float> inv = hq::rope_inv_freq(d, 10000.0f, hq::RopeScaling{});
        std::vector<float> cs((size_t)T * (d / 2)), sn((size_t)T * (d / 2));
        hq::rope_tables(cs.data(), sn.data(), inv.data(), T, d);
        DeviceBuffer<float> dcos = upload<float>(cs), dsin = upload<float>(sn);

        // forward: in bthd bf16 -> out bhtd bf16
        const std::vector<uint16_t> xh = to_bf16(randn(n, 51, 1.5f));
        std::vector<float> ref = from_bf16(xh);
        hq::rope_forward(ref.data(), cs.data(), sn.data(), B, T, nh, d);
        ref = bthd_to_bhtd_host(ref, B, T, nh, d);
        DeviceBuffer<bf16> din = upload<bf16>(xh), dout(n);
        poison(dout);
        hq::cuda::rope_forward_to_bhtd(dout.data(), din.data(), dcos.data(), dsin.data(), B, T, nh, d, nullptr);
        check_close("rope forward", download_bf16(dout.data(), n), ref, kBf16Tol);

        // backward: dy bhtd fp32 -> dx bthd bf16
        const std::vector<float> dy = randn(n, 52, 0.7f);
        std::vector<float> dref = bhtd_to_bthd_host(dy, B, T, nh, d);
        hq::rope_backward(dref.data(), cs.data(), sn.data(), B, T, nh, d);
        DeviceBuffer<float> ddy = upload<float>(dy);
        DeviceBuffer<bf16> ddx(n);
        poison(ddx);
        hq::cuda::rope_backward_from_bhtd(ddx.data(), ddy.data(), dcos.data(), dsin.data(), B, T, nh, d, nullptr);
        check_close("rope backward", download_bf16(ddx.data(), n), dref, kBf16Tol);

        // plain layout changes (exact)
        poison(dout);
        hq::cuda::bthd_to_bhtd(dout.data(), din.data(), B, T, nh, d, nullptr);
        check_bits("bthd_to_bhtd", download<uint16_t>(dout.data(), n), bthd_to_bhtd_host(xh, B, T, nh, d));
        poison(ddx);
        hq::cuda::bhtd_to_bthd_f32_to_bf16(ddx.data(), ddy.data(), B, T, nh, d, nullptr);
        check_bits("bhtd_to_bthd_f32_to_bf16", download<uint16_t>(ddx.data(), n),
                   to_bf16(bhtd_to_bthd_host(dy, B, T, nh, d)));
    }
    // odd head_dim for the plain copy (1-wide path)
    const int d = 5;
    const size_t n = (size_t)B * T * nh * d;
    const std::vector<uint16_t> xh = to_bf16(randn(n, 53));
    DeviceBuffer<bf16> din = upload<bf16>(xh), dout(n);
    poison(dout);
    hq::cuda::bthd_to_bhtd(dout.data(), din.data(), B, T, nh, d, nullptr);
    check_bits("bthd_to_bhtd d=5", download<uint16_t>(dout.data(), n), bthd_to_bhtd_host(xh, B, T, nh, d));
}

// ---- gated MLP ----------------------------------------------------------------------------------------------------
TEST_CASE("cuda glu forward/backward (SiLU, tanh-GELU) match mlp.cpp") {
    SKIP_WITHOUT_GPU();
    const int64_t n = 100003;   // not a multiple of 4: vector steps plus a tail
    const std::vector<uint16_t> gh = to_bf16(randn((size_t)n, 61, 2.5f)), uh = to_bf16(randn((size_t)n, 62, 1.0f));
    const std::vector<float> gate = from_bf16(gh), up = from_bf16(uh), dh = randn((size_t)n, 63, 0.3f);
    DeviceBuffer<bf16> dgate_in = upload<bf16>(gh), dup_in = upload<bf16>(uh), dhout((size_t)n);
    DeviceBuffer<bf16> ddgate((size_t)n), ddup((size_t)n);
    DeviceBuffer<float> ddh = upload<float>(dh);
    for (int act : {0, 1}) {
        CAPTURE(act);
        const hq::Act a = act == 0 ? hq::Act::SiLU : hq::Act::GeluTanh;
        std::vector<float> h((size_t)n), rg((size_t)n), ru((size_t)n);
        hq::glu_forward(h.data(), gate.data(), up.data(), n, a);
        hq::glu_backward(rg.data(), ru.data(), dh.data(), gate.data(), up.data(), n, a);
        poison(dhout);
        hq::cuda::glu_forward(dhout.data(), dgate_in.data(), dup_in.data(), n, act, nullptr);
        check_close("glu forward", download_bf16(dhout.data(), (size_t)n), h, kBf16Tol);
        poison(ddgate);
        poison(ddup);
        hq::cuda::glu_backward(ddgate.data(), ddup.data(), ddh.data(), dgate_in.data(), dup_in.data(), n, act,
                               nullptr);
        check_close("glu dgate", download_bf16(ddgate.data(), (size_t)n), rg, kBf16Tol);
        check_close("glu dup", download_bf16(ddup.data(), (size_t)n), ru, kBf16Tol);
    }
}

// ---- hierarchical-LoRA helpers ------------------------------------------------------------------------------------
TEST_CASE("cuda scale_cols_to_bf16 and dropout_bf16 reproduce hlora.cpp exactly") {
    SKIP_WITHOUT_GPU();
    const int64_t N = 257;
    for (int R : {64, 10}) {   // 64 = 32+8+8+8+8 (4-wide path), 10 (element path)
        CAPTURE(R);
        const std::vector<float> z = randn((size_t)N * R, 71, 0.8f);
        const std::vector<float> s = randn((size_t)R, 72, 0.5f, 2.0f);
        std::vector<float> ref((size_t)N * R);
        for (int64_t i = 0; i < N; i++)
            for (int c = 0; c < R; c++) ref[(size_t)(i * R + c)] = z[(size_t)(i * R + c)] * s[(size_t)c];
        DeviceBuffer<float> dz = upload<float>(z), ds = upload<float>(s);
        DeviceBuffer<bf16> out((size_t)N * R);
        poison(out);
        hq::cuda::scale_cols_to_bf16(out.data(), dz.data(), N, R, ds.data(), nullptr);
        check_bits("scale_cols_to_bf16", download<uint16_t>(out.data(), (size_t)N * R), to_bf16(ref));
    }
    // dropout: the CPU mask of dropout_input (hlora.cpp): rng_uniform(key, i) >= p ? x·keep : 0
    const int64_t n = 4096 * 33 + 3;
    const std::vector<uint16_t> xh = to_bf16(randn((size_t)n, 73));
    const std::vector<float> x = from_bf16(xh);
    DeviceBuffer<bf16> dxin = upload<bf16>(xh), dout((size_t)n);
    for (float p : {0.1f, 0.05f}) {
        CAPTURE(p);
        const uint64_t key = hq::rng_key(hq::rng_key(1234, 5), 2);
        const float keep = 1.0f / (1.0f - p);
        std::vector<float> ref((size_t)n);
        int64_t dropped = 0;
        for (int64_t i = 0; i < n; i++) {
            const bool kept = hq::rng_uniform(key, (uint64_t)i) >= p;
            ref[(size_t)i] = kept ? x[(size_t)i] * keep : 0.0f;
            dropped += !kept;
        }
        CHECK(std::fabs((double)dropped / n - p) < 0.01);
        for (int off : {0, 1}) {   // 1: unaligned (element path); the mask index is relative to the pointer
            CAPTURE(off);
            poison(dout);
            hq::cuda::dropout_bf16(dout.data() + off, dxin.data() + off, n - off, p, key, nullptr);
            std::vector<float> ref_off((size_t)(n - off));
            for (int64_t i = 0; i < n - off; i++) {
                const bool kept = hq::rng_uniform(key, (uint64_t)i) >= p;
                ref_off[(size_t)i] = kept ? x[(size_t)(i + off)] * keep : 0.0f;
            }
            check_bits("dropout_bf16", download<uint16_t>(dout.data() + off, (size_t)(n - off)),
                       off == 0 ? to_bf16(ref) : to_bf16(ref_off));
        }
    }
}

// ---- row-strided outputs (group_backward's gradient matrix) --------------------------------------------------------
// Each strided variant must write the contiguous variant's bits into its column block [off, off + cols) of a wider
// [rows, ld] matrix and leave every other column alone.
void check_block(const char* what, const std::vector<uint16_t>& wide, const std::vector<uint16_t>& want, int64_t rows,
                 int64_t cols, int64_t ld, int64_t off) {
    CAPTURE(what);
    size_t bad = 0, outside = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < ld; c++) {
            const uint16_t v = wide[(size_t)(r * ld + c)];
            if (c >= off && c < off + cols)
                bad += v != want[(size_t)(r * cols + c - off)];
            else
                outside += v != 0xFFFF;
        }
    CHECK(bad == 0);
    CHECK(outside == 0);
}

TEST_CASE("cuda kernels with row-strided bf16 outputs write the contiguous bits into a column block only") {
    SKIP_WITHOUT_GPU();
    for (int64_t pad : {0, 24, 7}) {   // 24: 4-wide paths; 7: an odd stride forces the element paths
        CAPTURE(pad);
        // rope backward and the dv layout change, as the q and v blocks of a [N, q | k | v] matrix
        {
            const int B = 2, T = 9, nh = 3, d = 16;
            const int64_t N = (int64_t)B * T, cols = (int64_t)nh * d, ld = 3 * cols + pad;
            const size_t n = (size_t)(N * cols);
            std::vector<float> cs((size_t)T * d / 2), sn((size_t)T * d / 2);
            for (size_t i = 0; i < cs.size(); i++) {
                cs[i] = std::cos(0.1f * (float)i);
                sn[i] = std::sin(0.1f * (float)i);
            }
            const std::vector<float> dy = randn(n, 82, 0.7f);
            DeviceBuffer<float> ddy = upload<float>(dy), dcos = upload<float>(cs), dsin = upload<float>(sn);
            DeviceBuffer<bf16> flat(n), wide((size_t)(N * ld));
            hq::cuda::rope_backward_from_bhtd(flat.data(), ddy.data(), dcos.data(), dsin.data(), B, T, nh, d, nullptr);
            poison(wide);
            hq::cuda::rope_backward_from_bhtd(wide.data(), ddy.data(), dcos.data(), dsin.data(), B, T, nh, d, nullptr,
                                              ld);
            check_block("rope_backward_from_bhtd", download<uint16_t>(wide.data(), wide.size()),
                        download<uint16_t>(flat.data(), n), N, cols, ld, 0);
            hq::cuda::bhtd_to_bthd_f32_to_bf16(flat.data(), ddy.data(), B, T, nh, d, nullptr);
            poison(wide);
            hq::cuda::bhtd_to_bthd_f32_to_bf16(wide.data() + 2 * cols, ddy.data(), B, T, nh, d, nullptr, ld);
            check_block("bhtd_to_bthd_f32_to_bf16", download<uint16_t>(wide.data(), wide.size()),
                        download<uint16_t>(flat.data(), n), N, cols, ld, 2 * cols);
        }
        // glu backward: dgate and dup as the two column blocks of [N, F | F | pad]
        {
            const int64_t N = 21, F = 40, ld = 2 * F + pad;
            const size_t n = (size_t)(N * F);
            const std::vector<uint16_t> gh = to_bf16(randn(n, 83, 2.0f)), uh = to_bf16(randn(n, 84));
            const std::vector<float> dh = randn(n, 85, 0.3f);
            DeviceBuffer<bf16> dg = upload<bf16>(gh), du = upload<bf16>(uh), fg(n), fu(n), wide((size_t)(N * ld));
            DeviceBuffer<float> ddh = upload<float>(dh);
            for (int act : {0, 1}) {
                CAPTURE(act);
                hq::cuda::glu_backward(fg.data(), fu.data(), ddh.data(), dg.data(), du.data(), (int64_t)n, act, nullptr);
                poison(wide);
                hq::cuda::glu_backward(wide.data(), wide.data() + F, ddh.data(), dg.data(), du.data(), (int64_t)n, act,
                                       nullptr, F, ld);
                const std::vector<uint16_t> w = download<uint16_t>(wide.data(), wide.size()),
                                            wg = download<uint16_t>(fg.data(), n), wu = download<uint16_t>(fu.data(), n);
                std::vector<uint16_t> both((size_t)(N * 2 * F));
                for (int64_t r = 0; r < N; r++)
                    for (int64_t c = 0; c < F; c++) {
                        both[(size_t)(r * 2 * F + c)] = wg[(size_t)(r * F + c)];
                        both[(size_t)(r * 2 * F + F + c)] = wu[(size_t)(r * F + c)];
                    }
                check_block("glu_backward", w, both, N, 2 * F, ld, 0);
            }
        }
        // scale_cols_to_bf16: the adapter's du block after the projections' columns
        {
            const int64_t N = 19, off = 64;
            for (int R : {24, 10}) {
                CAPTURE(R);
                const int64_t ld = off + R + pad;
                const std::vector<float> z = randn((size_t)(N * R), 86), sc = randn((size_t)R, 87, 0.5f, 2.0f);
                DeviceBuffer<float> dz = upload<float>(z), ds = upload<float>(sc);
                DeviceBuffer<bf16> flat((size_t)(N * R)), wide((size_t)(N * ld));
                hq::cuda::scale_cols_to_bf16(flat.data(), dz.data(), N, R, ds.data(), nullptr);
                poison(wide);
                hq::cuda::scale_cols_to_bf16(wide.data() + off, dz.data(), N, R, ds.data(), nullptr, ld);
                check_block("scale_cols_to_bf16", download<uint16_t>(wide.data(), wide.size()),
                            download<uint16_t>(flat.data(), (size_t)(N * R)), N, R, ld, off);
            }
        }
    }
}

TEST_CASE("cuda rmsnorm_backward with a residual input and a bf16 copy equals copy-then-accumulate") {
    SKIP_WITHOUT_GPU();
    const int64_t N = 17;
    for (int C : {256, 30}) {
        CAPTURE(C);
        const size_t n = (size_t)(N * C);
        const std::vector<float> x = randn(n, 91), w = randn((size_t)C, 92, 0.5f, 1.5f), g = randn(n, 93),
                                 res = randn(n, 94, 0.5f);
        std::vector<float> rstd((size_t)N);
        for (int64_t r = 0; r < N; r++) {
            double ss = 0;
            for (int c = 0; c < C; c++) ss += (double)x[(size_t)(r * C + c)] * x[(size_t)(r * C + c)];
            rstd[(size_t)r] = (float)(1.0 / std::sqrt(ss / C + 1e-6));
        }
        DeviceBuffer<float> dx_ = upload<float>(x), dw = upload<float>(w), dg = upload<float>(g),
                            dres = upload<float>(res), drs = upload<float>(rstd);
        // reference: dx = res (copied), then accumulated into
        DeviceBuffer<float> acc = upload<float>(res), out(n);
        hq::cuda::rmsnorm_backward(acc.data(), dg.data(), dx_.data(), dw.data(), drs.data(), N, C, false, nullptr);
        const int64_t ld = C + 8;
        DeviceBuffer<bf16> wide((size_t)(N * ld));
        poison(out);
        poison(wide);
        hq::cuda::rmsnorm_backward(out.data(), dg.data(), dx_.data(), dw.data(), drs.data(), N, C, false, nullptr,
                                   dres.data(), wide.data(), ld);
        const std::vector<float> want = download<float>(acc.data(), n), got = download<float>(out.data(), n);
        CHECK(std::memcmp(want.data(), got.data(), n * sizeof(float)) == 0);
        check_block("rmsnorm_backward bf16 copy", download<uint16_t>(wide.data(), wide.size()), to_bf16(want), N, C, ld,
                    0);
    }
}

// ---- causal softmax -----------------------------------------------------------------------------------------------
namespace {
// The per-row loop of attention_forward (attention.cpp): scale, max, exp, fp32 sum, one reciprocal.
std::vector<float> softmax_ref(const std::vector<float>& S, int64_t rows, int T, float scale) {
    std::vector<float> P(S.size(), 0.0f);
    for (int64_t r = 0; r < rows; r++) {
        const int nvis = (int)(r % T) + 1;
        std::vector<float> row(S.begin() + r * T, S.begin() + r * T + nvis);
        float m = -INFINITY;
        for (auto& v : row) {
            v *= scale;
            m = std::max(m, v);
        }
        float sum = 0.0f;
        for (auto& v : row) {
            v = std::exp(v - m);
            sum += v;
        }
        const float inv = 1.0f / sum;
        for (int j = 0; j < nvis; j++) P[(size_t)(r * T + j)] = row[(size_t)j] * inv;
    }
    return P;
}
// attention_backward's dS = P ⊙ (dP − D) · scale with D = Σ_{j<=i} P·dP (fp64 here: the reference value).
std::vector<float> softmax_bwd_ref(const std::vector<float>& P, const std::vector<float>& dP, int64_t rows, int T,
                                   float scale) {
    std::vector<float> dS(P.size(), 0.0f);
    for (int64_t r = 0; r < rows; r++) {
        const int nvis = (int)(r % T) + 1;
        double D = 0.0;
        for (int j = 0; j < nvis; j++) D += (double)P[(size_t)(r * T + j)] * dP[(size_t)(r * T + j)];
        for (int j = 0; j < nvis; j++) {
            const size_t k = (size_t)(r * T + j);
            dS[k] = P[k] * (dP[k] - (float)D) * scale;
        }
    }
    return dS;
}
}  // namespace

TEST_CASE("cuda causal_softmax forward/backward match attention.cpp's row loops, exact zeros above the diagonal") {
    SKIP_WITHOUT_GPU();
    const float scale = 1.0f / std::sqrt(64.0f);
    struct Shape {
        int BH, T;
    };
    for (Shape sh : {Shape{3, 129}, Shape{2, 256}, Shape{1, 2048}}) {   // 129: 1-wide path
        const int64_t rows = (int64_t)sh.BH * sh.T;
        const int T = sh.T;
        CAPTURE(T);
        const size_t n = (size_t)rows * T;
        const std::vector<float> S = randn(n, 81, 8.0f);
        const std::vector<float> Pref = softmax_ref(S, rows, T, scale);
        DeviceBuffer<float> dS_in = upload<float>(S);
        DeviceBuffer<bf16> dP(n);
        poison(dP);
        hq::cuda::causal_softmax_forward(dP.data(), dS_in.data(), rows, T, scale, nullptr);
        const std::vector<uint16_t> Pbits = download<uint16_t>(dP.data(), n);
        const std::vector<float> Pgpu = from_bf16(Pbits);
        check_close("softmax P", Pgpu, Pref, kBf16Tol);
        size_t nonzero_masked = 0;
        for (int64_t r = 0; r < rows; r++)
            for (int j = (int)(r % T) + 1; j < T; j++) nonzero_masked += Pbits[(size_t)(r * T + j)] != 0;
        CHECK(nonzero_masked == 0);

        // backward on the GPU's own bf16 P
        const std::vector<float> dPgrad = randn(n, 82, 1.0f);
        const std::vector<float> dSref = softmax_bwd_ref(Pgpu, dPgrad, rows, T, scale);
        DeviceBuffer<float> ddP = upload<float>(dPgrad);
        DeviceBuffer<bf16> ddS(n);
        poison(ddS);
        hq::cuda::causal_softmax_backward(ddS.data(), dP.data(), ddP.data(), rows, T, scale, nullptr);
        const std::vector<uint16_t> dSbits = download<uint16_t>(ddS.data(), n);
        check_close("softmax dS", from_bf16(dSbits), dSref, kBf16Tol);
        nonzero_masked = 0;
        for (int64_t r = 0; r < rows; r++)
            for (int j = (int)(r % T) + 1; j < T; j++) nonzero_masked += dSbits[(size_t)(r * T + j)] != 0;
        CHECK(nonzero_masked == 0);
    }
}

// ---- cross-entropy ------------------------------------------------------------------------------------------------
TEST_CASE("cuda cross_entropy_rows matches cross_entropy_chunked (identity projection) and a 256k vocabulary") {
    SKIP_WITHOUT_GPU();
    // logits = h·Iᵀ and dh = dlogits·I are exact, so cross_entropy_chunked with W = I exposes its per-row loss
    // (ws.row_loss, in target-row order) and its dlogits (dh, grad_scale applied, zero on ignored rows).
    for (int V : {1000, 999}) {   // 999: element path
        CAPTURE(V);
        const int64_t rows = 40;
        const std::vector<float> logits = randn((size_t)rows * V, 91, 3.0f);
        std::vector<int32_t> tg((size_t)rows);
        std::mt19937 g(92);
        for (int64_t r = 0; r < rows; r++) tg[(size_t)r] = r % 7 == 3 ? -100 : (int32_t)(g() % V);
        tg[0] = 0;
        tg[1] = V - 1;
        std::vector<float> W((size_t)V * V, 0.0f);
        for (int k = 0; k < V; k++) W[(size_t)k * V + k] = 1.0f;
        const float gs = 1.0f / 33.0f;
        std::vector<float> dref((size_t)rows * V);
        hq::LossWorkspace ws;
        const hq::LossOut lo =
            hq::cross_entropy_chunked(logits.data(), W.data(), tg.data(), rows, V, V, 16, gs, dref.data(), ws);
        std::vector<float> lref((size_t)rows, 0.0f);
        for (size_t m = 0; m < ws.rows.size(); m++) lref[(size_t)ws.rows[m]] = (float)ws.row_loss[m];
        CHECK(lo.n_tokens == (int64_t)ws.rows.size());

        DeviceBuffer<float> dl = upload<float>(logits), dloss((size_t)rows);
        DeviceBuffer<int32_t> dt = upload<int32_t>(tg);
        DeviceBuffer<bf16> dd((size_t)rows * V);
        poison(dloss);
        poison(dd);
        hq::cuda::cross_entropy_rows(dloss.data(), dd.data(), dl.data(), dt.data(), rows, V, gs, nullptr);
        const std::vector<float> lgpu = download<float>(dloss.data(), (size_t)rows);
        check_close("ce row_loss", lgpu, lref, kF32Tol);
        const std::vector<uint16_t> dbits = download<uint16_t>(dd.data(), (size_t)rows * V);
        check_close("ce dlogits", from_bf16(dbits), dref, kBf16Tol);
        size_t ignored_nonzero = 0;
        for (int64_t r = 0; r < rows; r++) {
            if (tg[(size_t)r] != -100) continue;
            ignored_nonzero += lgpu[(size_t)r] != 0.0f;
            for (int j = 0; j < V; j++) ignored_nonzero += dbits[(size_t)(r * V + j)] != 0;
        }
        CHECK(ignored_nonzero == 0);
        // loss only (dlogits == nullptr): the same losses
        poison(dloss);
        hq::cuda::cross_entropy_rows(dloss.data(), nullptr, dl.data(), dt.data(), rows, V, gs, nullptr);
        check_bits("ce row_loss without dlogits", bits_of(download<float>(dloss.data(), (size_t)rows)),
                   bits_of(lgpu));
    }

    // Gemma's 256k vocabulary on a few rows, against the same formulas in fp64 (loss.cpp's row loop).
    const int V = 256000;
    const int64_t rows = 6;
    const std::vector<float> logits = randn((size_t)rows * V, 93, 4.0f);
    const std::vector<int32_t> tg = {5, 255999, -100, 128000, 0, 77777};
    const float gs = 0.25f;
    std::vector<float> lref((size_t)rows, 0.0f), dref((size_t)rows * V, 0.0f);
    for (int64_t r = 0; r < rows; r++) {
        if (tg[(size_t)r] == -100) continue;
        const float* l = logits.data() + r * V;
        float m = -INFINITY;
        for (int j = 0; j < V; j++) m = std::max(m, l[j]);
        double sum = 0.0;
        for (int j = 0; j < V; j++) sum += (double)std::exp(l[j] - m);
        const double lse = (double)m + std::log(sum);
        lref[(size_t)r] = (float)(lse - (double)l[tg[(size_t)r]]);
        const float flse = (float)lse;
        for (int j = 0; j < V; j++) dref[(size_t)(r * V + j)] = std::exp(l[j] - flse) * gs;
        dref[(size_t)(r * V + tg[(size_t)r])] -= gs;
    }
    DeviceBuffer<float> dl = upload<float>(logits), dloss((size_t)rows);
    DeviceBuffer<int32_t> dt = upload<int32_t>(tg);
    DeviceBuffer<bf16> dd((size_t)rows * V);
    poison(dloss);
    poison(dd);
    hq::cuda::cross_entropy_rows(dloss.data(), dd.data(), dl.data(), dt.data(), rows, V, gs, nullptr);
    check_close("ce 256k row_loss", download<float>(dloss.data(), (size_t)rows), lref, kF32Tol);
    check_close("ce 256k dlogits", download_bf16(dd.data(), (size_t)rows * V), dref, kBf16Tol);
}

// ---- the issue-15 families' extra layers (family_ops.cu) ------------------------------------------------------------
TEST_CASE("cuda family ops: bias rows, fp32 add, strided bf16 copy, fp32 rope backward, soft-capping, capped CE") {
    SKIP_WITHOUT_GPU();
    // add_bias_rows / add_f32: one fp32 add per element, as model.cpp's loops (exact).
    const int64_t N = 37;
    const int n = 48;
    const std::vector<float> y = randn((size_t)N * n, 201), bias = randn((size_t)n, 202), z = randn((size_t)N * n, 203);
    std::vector<float> yref = y, sref((size_t)N * n);
    for (int64_t r = 0; r < N; r++)
        for (int i = 0; i < n; i++) yref[(size_t)(r * n + i)] += bias[(size_t)i];
    for (size_t i = 0; i < sref.size(); i++) sref[i] = y[i] + z[i];
    DeviceBuffer<float> dy = upload<float>(y), db = upload<float>(bias), dz = upload<float>(z), dsum((size_t)N * n);
    hq::cuda::add_bias_rows(dy.data(), db.data(), N, n, nullptr);
    check_bits("add_bias_rows", bits_of(download<float>(dy.data(), (size_t)N * n)), bits_of(yref));
    DeviceBuffer<float> dy0 = upload<float>(y);
    poison(dsum);
    hq::cuda::add_f32(dsum.data(), dy0.data(), dz.data(), N * n, nullptr);
    check_bits("add_f32", bits_of(download<float>(dsum.data(), (size_t)N * n)), bits_of(sref));
    hq::cuda::add_f32(dy0.data(), dy0.data(), dz.data(), N * n, nullptr);   // in place (out == a)
    check_bits("add_f32 in place", bits_of(download<float>(dy0.data(), (size_t)N * n)), bits_of(sref));

    // f32_to_bf16_rows: a column block [N, 24] of rows 40 apart; the other columns untouched (still poison).
    {
        const int cols = 24;
        const int64_t ldo = 40;
        const std::vector<float> in = randn((size_t)N * cols, 204);
        const std::vector<uint16_t> rb = to_bf16(in);
        DeviceBuffer<float> din = upload<float>(in);
        DeviceBuffer<bf16> dout((size_t)N * ldo);
        poison(dout);
        hq::cuda::f32_to_bf16_rows(dout.data(), ldo, din.data(), N, cols, nullptr);
        const std::vector<uint16_t> got = download<uint16_t>(dout.data(), (size_t)N * ldo);
        std::vector<uint16_t> ref((size_t)N * ldo, 0xFFFF);
        for (int64_t r = 0; r < N; r++)
            for (int c = 0; c < cols; c++) ref[(size_t)(r * ldo + c)] = rb[(size_t)(r * cols + c)];
        check_bits("f32_to_bf16_rows", got, ref);
    }

    // rope_backward_from_bhtd_f32: dy bhtd fp32 -> dx bthd fp32 against rope_backward on the bthd copy.
    {
        const int B = 2, T = 19, nh = 3;
        for (int d : {32, 6}) {
            CAPTURE(d);
            const size_t m = (size_t)B * T * nh * d;
            const std::vector<float> inv = hq::rope_inv_freq(d, 10000.0f, hq::RopeScaling{});
            std::vector<float> cs((size_t)T * (d / 2)), sn((size_t)T * (d / 2));
            hq::rope_tables(cs.data(), sn.data(), inv.data(), T, d, 1.25f);
            const std::vector<float> g = randn(m, 205, 0.7f);
            std::vector<float> ref = bhtd_to_bthd_host(g, B, T, nh, d);
            hq::rope_backward(ref.data(), cs.data(), sn.data(), B, T, nh, d);
            DeviceBuffer<float> dcos = upload<float>(cs), dsin = upload<float>(sn), dg = upload<float>(g), dx(m);
            poison(dx);
            hq::cuda::rope_backward_from_bhtd_f32(dx.data(), dg.data(), dcos.data(), dsin.data(), B, T, nh, d,
                                                  nullptr);
            check_close("rope backward f32", download<float>(dx.data(), m), ref, kF32Tol);
        }
    }

    // softcap_inplace against softcap_logits, and the capped cross-entropy against cross_entropy_chunked's
    // softcap path (identity projection: logits = h, dh = dlogits).
    const int V = 1000;
    const int64_t rows = 40;
    const float cap = 2.0f;   // N(0, 3) logits: most are clipped hard
    const std::vector<float> raw = randn((size_t)rows * V, 206, 3.0f);
    std::vector<float> capped = raw;
    hq::softcap_logits(capped.data(), (int64_t)capped.size(), cap);
    DeviceBuffer<float> dl = upload<float>(raw);
    hq::cuda::softcap_inplace(dl.data(), rows * V, cap, nullptr);
    check_close("softcap_inplace", download<float>(dl.data(), (size_t)rows * V), capped, kF32Tol);

    std::vector<int32_t> tg((size_t)rows);
    std::mt19937 gen(207);
    for (int64_t r = 0; r < rows; r++) tg[(size_t)r] = r % 9 == 4 ? -100 : (int32_t)(gen() % V);
    std::vector<float> W((size_t)V * V, 0.0f);
    for (int k = 0; k < V; k++) W[(size_t)k * V + k] = 1.0f;
    const float gs = 1.0f / 29.0f;
    std::vector<float> dref((size_t)rows * V);
    hq::LossWorkspace ws;
    hq::cross_entropy_chunked(raw.data(), W.data(), tg.data(), rows, V, V, 16, gs, dref.data(), ws, cap);
    std::vector<float> lref((size_t)rows, 0.0f);
    for (size_t m = 0; m < ws.rows.size(); m++) lref[(size_t)ws.rows[m]] = (float)ws.row_loss[m];
    // the GPU path of cuda_model.cpp: cap in place, then the capped CE
    DeviceBuffer<float> dcap = upload<float>(capped), dloss((size_t)rows);
    DeviceBuffer<int32_t> dt = upload<int32_t>(tg);
    DeviceBuffer<bf16> dd((size_t)rows * V);
    poison(dloss);
    poison(dd);
    hq::cuda::cross_entropy_rows(dloss.data(), dd.data(), dcap.data(), dt.data(), rows, V, gs, nullptr, cap);
    check_close("capped ce row_loss", download<float>(dloss.data(), (size_t)rows), lref, kF32Tol);
    check_close("capped ce dlogits", download_bf16(dd.data(), (size_t)rows * V), dref, kBf16Tol);
}

// ---- optimizer ----------------------------------------------------------------------------------------------------
TEST_CASE("cuda adamw_step is bit-exact with hq::AdamW::step over 3 steps, with and without weight decay") {
    SKIP_WITHOUT_GPU();
    for (double wd : {0.01, 0.0}) {
        CAPTURE(wd);
        const std::vector<size_t> sizes = {1000, 4099, 3};   // 4099: vector steps + tail; 3: tail only
        std::vector<std::vector<float>> w, g;
        for (size_t i = 0; i < sizes.size(); i++) {
            w.push_back(randn(sizes[i], 101 + i, 0.05f));
            g.push_back(std::vector<float>(sizes[i]));
        }
        std::vector<hq::Param> params(sizes.size());
        for (size_t i = 0; i < sizes.size(); i++) {
            params[i].name = "p" + std::to_string(i);
            params[i].shape = {(int64_t)sizes[i]};
            params[i].w = w[i].data();
            params[i].g = g[i].data();
            params[i].numel = sizes[i];
        }
        const hq::AdamWConfig cfg{2e-4, 0.9, 0.999, 1e-8, wd};
        hq::AdamW opt(params, cfg);
        std::vector<DeviceBuffer<float>> dw, dg, dm, dv;
        for (size_t i = 0; i < sizes.size(); i++) {
            dw.push_back(upload<float>(w[i]));
            dg.push_back(DeviceBuffer<float>(sizes[i]));
            dm.push_back(upload<float>(std::vector<float>(sizes[i], 0.0f)));
            dv.push_back(upload<float>(std::vector<float>(sizes[i], 0.0f)));
        }
        for (int step = 0; step < 3; step++) {
            const double lr = 1e-3 * (step + 1);
            for (size_t i = 0; i < sizes.size(); i++) {
                const std::vector<float> gi = randn(sizes[i], 200 + 10 * step + i, step == 1 ? 1e-3f : 0.1f);
                std::copy(gi.begin(), gi.end(), g[i].begin());   // in place: params[i].g points into g[i]
                HQ_CUDA(cudaMemcpy(dg[i].data(), g[i].data(), sizes[i] * 4, cudaMemcpyHostToDevice));
            }
            opt.step(lr);
            // AdamWArgs as kernels.h documents them: optimizer.cpp's fp64 hyper-parameters cast to fp32.
            const double t = (double)opt.t;
            hq::cuda::AdamWArgs a;
            a.one_minus_lr_wd = (float)(1.0 - lr * cfg.weight_decay);
            a.one_minus_b1 = (float)(1.0 - cfg.beta1);
            a.b2 = (float)cfg.beta2;
            a.one_minus_b2 = (float)(1.0 - cfg.beta2);
            a.bc2_sqrt = (float)std::sqrt(1.0 - std::pow(cfg.beta2, t));
            a.eps = (float)cfg.eps;
            a.neg_step_size = (float)(-(lr / (1.0 - std::pow(cfg.beta1, t))));
            for (size_t i = 0; i < sizes.size(); i++)
                hq::cuda::adamw_step(dw[i].data(), dg[i].data(), dm[i].data(), dv[i].data(), (int64_t)sizes[i], a,
                                     nullptr);
            for (size_t i = 0; i < sizes.size(); i++) {
                CAPTURE(step);
                CAPTURE(i);
                check_bits("adamw w", bits_of(download<float>(dw[i].data(), sizes[i])), bits_of(w[i]));
                check_bits("adamw m", bits_of(download<float>(dm[i].data(), sizes[i])), bits_of(opt.m[i]));
                check_bits("adamw v", bits_of(download<float>(dv[i].data(), sizes[i])), bits_of(opt.v[i]));
            }
        }
    }
}

TEST_CASE("cuda sum_squares (fp64, deterministic), scale_inplace and count_nonfinite") {
    SKIP_WITHOUT_GPU();
    for (size_t n : {size_t(3000001), size_t(5), size_t(1)}) {
        CAPTURE(n);
        const std::vector<float> g = randn(n, 111, 0.01f);
        double ref = 0.0;
        for (float v : g) ref += (double)v * (double)v;
        DeviceBuffer<float> dg = upload<float>(g);
        DeviceBuffer<double> out(2);
        poison(out);
        hq::cuda::sum_squares(out.data(), dg.data(), (int64_t)n, nullptr);
        hq::cuda::sum_squares(out.data() + 1, dg.data(), (int64_t)n, nullptr);
        const std::vector<double> got = download<double>(out.data(), 2);
        CHECK(std::fabs(got[0] - ref) <= 1e-12 * ref);
        CHECK(std::memcmp(&got[0], &got[1], sizeof(double)) == 0);   // run to run
        if (n > 1) {   // unaligned start (element path)
            double ref1 = 0.0;
            for (size_t i = 1; i < n; i++) ref1 += (double)g[i] * (double)g[i];
            hq::cuda::sum_squares(out.data(), dg.data() + 1, (int64_t)n - 1, nullptr);
            CHECK(std::fabs(download<double>(out.data(), 1)[0] - ref1) <= 1e-12 * ref1);
        }
        // scale_inplace: g·c, exact
        const float c = 0.37f;
        hq::cuda::scale_inplace(dg.data(), (int64_t)n, c, nullptr);
        std::vector<float> want(g);
        for (auto& v : want) v = v * c;
        check_bits("scale_inplace", bits_of(download<float>(dg.data(), n)), bits_of(want));
    }
    // count_nonfinite over a vector with 5 NaN, 3 +Inf, 2 -Inf (largest finite values are not counted)
    const size_t n = 100003;
    std::vector<float> x = randn(n, 121);
    for (size_t i : {size_t(0), size_t(17), size_t(4096), size_t(50001), n - 1}) x[i] = NAN;
    for (size_t i : {size_t(3), size_t(9999), size_t(100000)}) x[i] = INFINITY;
    for (size_t i : {size_t(5), size_t(77777)}) x[i] = -INFINITY;
    x[6] = 3.4028235e38f;
    x[7] = -3.4028235e38f;
    DeviceBuffer<float> dx = upload<float>(x);
    DeviceBuffer<int> cnt(1);
    poison(cnt);
    hq::cuda::count_nonfinite(cnt.data(), dx.data(), (int64_t)n, nullptr);
    CHECK(download<int>(cnt.data(), 1)[0] == 10);
    poison(cnt);
    hq::cuda::count_nonfinite(cnt.data(), dx.data() + 1, (int64_t)n - 1, nullptr);   // unaligned: loses x[0]
    CHECK(download<int>(cnt.data(), 1)[0] == 9);
    std::vector<float> finite = randn(1000, 122);
    DeviceBuffer<float> df = upload<float>(finite);
    poison(cnt);
    hq::cuda::count_nonfinite(cnt.data(), df.data(), 1000, nullptr);
    CHECK(download<int>(cnt.data(), 1)[0] == 0);
}
