// flash_attention.cu — fused causal attention, FlashAttention-2 style, on bf16 tensor cores (mma.sync m16n8k16, fp32
// accumulation), forward and backward, for head_dim 16, 32, 64, 96, 128 and 256. See gpu_attention.h for the
// layouts and the API.
//
// Forward, one block per (64-query tile, head, batch), 4 warps of 16 query rows each: for each key tile, S = q·kᵀ
// (fp32), the score transform (scale, optional soft-cap), the mask (causal, sliding window, document), the online
// softmax (running max m and sum l per row, base-2 exponentials) and O += P·v with P rounded to bf16 in registers.
// Only O and lse = m + log l (natural log) per row leave the block: no T × T buffer.
// Backward, deterministic (no atomics): D = rowsum(dO ⊙ O) and a bf16 bhtd copy of dO first (flash_bwd_prep), then
//   dk/dv: one block per (64-key tile, kv head, batch, column slice): for every query head of the group and every
//          query tile, P = exp(S − lse) recomputed, dP = dO·vᵀ, dS = P ⊙ (dP − D) (⊙ cap'(S) when soft-capped,
//          times the scale), dV += Pᵀ·dO, dK += dSᵀ·q. head_dim 256 is split into two 128-column slices (each block
//          recomputes S and dP in full and accumulates its slice of dK, dV), so the accumulators stay in registers.
//   dq:    one block per (64-query tile, head, batch), like the forward: dq += dS·k over the key tiles.
// The fragment layouts are PTX's for mma.m16n8k16 (row.col, bf16): with g = lane / 4 and t = lane % 4, A holds rows
// g and g + 8, columns 2t, 2t + 1 (+8); B holds k rows 2t, 2t + 1 (+8) of column g; C holds rows g and g + 8,
// columns 2t and 2t + 1. A C tile of S (two 8-column n-tiles) is therefore the A fragment of P for the next product.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "cuda_util.cuh"
#include "gpu_attention.h"
#include "model_config.h"

namespace hq::cuda {
namespace {

constexpr int kWarps = 4, kThreads = 32 * kWarps;
constexpr int kPad = 8;        // bf16 elements of padding per shared-memory row: conflict-free fragment loads
constexpr int kQTile = 64;     // query rows per forward / dq block (16 per warp)
constexpr int kKTile = 64;     // key rows per dk/dv block (16 per warp)
constexpr int kBwdQ = 32;      // query rows per step of the dk/dv block
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

struct Params {
    int T, H, KV, G, window;
    float scale, softcap;
    const int32_t* seg;   // [B, T] or nullptr
};

__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two consecutive bf16 of one row (the lower address in the low half).
__device__ __forceinline__ uint32_t ld2(const bf16* p) { return *reinterpret_cast<const uint32_t*>(p); }
// p[0] and p[stride] (two rows of one column), packed as ld2 packs.
__device__ __forceinline__ uint32_t ld2col(const bf16* p, int stride) {
    return (uint32_t)__bfloat16_as_ushort(p[0]) | ((uint32_t)__bfloat16_as_ushort(p[stride]) << 16);
}

using util::pack_bf16x2;

// The A fragment of rows r, r + 8 and columns k0 .. k0 + 15 of a row-major shared tile (leading dimension ld).
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const bf16* s, int ld, int r, int k0, int g, int t) {
    const bf16* p = s + (r + g) * ld + k0 + 2 * t;
    a[0] = ld2(p);
    a[1] = ld2(p + 8 * ld);
    a[2] = ld2(p + 8);
    a[3] = ld2(p + 8 * ld + 8);
}

// C tiles nt = 2kc, 2kc + 1 (fp32, rows g / g + 8) as the bf16 A fragment of the next product (k = 16 columns).
__device__ __forceinline__ void c_to_a(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
    a[0] = pack_bf16x2(c0[0], c0[1]);
    a[1] = pack_bf16x2(c0[2], c0[3]);
    a[2] = pack_bf16x2(c1[0], c1[1]);
    a[3] = pack_bf16x2(c1[2], c1[3]);
}

template <int NT>
__device__ __forceinline__ void zero(float (&acc)[NT][4]) {
#pragma unroll
    for (int n = 0; n < NT; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
}

// acc[n] += rows wr .. wr + 15 of A · (rows n·8 .. n·8 + 7 of B)ᵀ for n < NT, over the D columns of both: row-major
// shared tiles of leading dimension ld (S = q·kᵀ, dP = dO·vᵀ, and Sᵀ, dPᵀ with the operands swapped).
template <int D, int NT>
__device__ __forceinline__ void mma_abt(float (&acc)[NT][4], const bf16* A, const bf16* B, int ld, int wr, int g,
                                        int t) {
#pragma unroll
    for (int kk = 0; kk < D; kk += 16) {
        uint32_t a[4];
        load_a(a, A, ld, wr, kk, g, t);
#pragma unroll
        for (int n = 0; n < NT; n++) {
            const bf16* bp = B + (n * 8 + g) * ld + kk + 2 * t;
            mma16816(acc[n], a, ld2(bp), ld2(bp + 8));
        }
    }
}

// acc[n] += C · B[:, col0 + n·8 .. col0 + n·8 + 7] for n < NT: C the bf16 of the 2·KC C tiles c (KC·16 columns), B a
// row-major shared tile (leading dimension ld) whose rows are C's columns (B: rows 2t, 2t + 1 (+8) of column
// col0 + n·8 + g). O += P·v, dV += Pᵀ·dO, dK += dSᵀ·q, dq += dS·k.
template <int KC, int NT>
__device__ __forceinline__ void mma_cb(float (&acc)[NT][4], const float (&c)[2 * KC][4], const bf16* B, int ld,
                                       int col0, int g, int t) {
#pragma unroll
    for (int kc = 0; kc < KC; kc++) {
        uint32_t a[4];
        c_to_a(a, c[2 * kc], c[2 * kc + 1]);
#pragma unroll
        for (int n = 0; n < NT; n++) {
            const bf16* bp = B + (kc * 16 + 2 * t) * ld + col0 + n * 8 + g;
            mma16816(acc[n], a, ld2col(bp, ld), ld2col(bp + 8 * ld, ld));
        }
    }
}

// rows [r0, r0 + rows) of a [T, D] bf16 matrix into a shared tile [rows][D + kPad]; rows >= T are zero.
template <int D>
__device__ __forceinline__ void load_tile(bf16* s, const bf16* g, int r0, int rows, int T) {
    constexpr int V = D / 8;   // 16-byte vectors per row
    for (int idx = threadIdx.x; idx < rows * V; idx += kThreads) {
        const int r = idx / V, c = (idx % V) * 8;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (r0 + r < T) v = *reinterpret_cast<const uint4*>(g + (int64_t)(r0 + r) * D + c);
        *reinterpret_cast<uint4*>(s + r * (D + kPad) + c) = v;
    }
}

// The transformed score of query i and key j (x = scale·q·k, soft-capped), in base 2, or -inf where masked. th
// receives tanh(x / cap) (for the backward's cap derivative; 0 without a cap).
__device__ __forceinline__ float score2(float acc, int i, int j, int si, int sj, const Params& p, float& th) {
    float x = acc * p.scale;
    th = 0.0f;
    if (p.softcap > 0.0f) {
        th = tanhf(x / p.softcap);
        x = p.softcap * th;
    }
    const bool vis = j <= i && i < p.T && j < p.T && (p.window <= 0 || i - j < p.window) && si == sj;
    return vis ? x * kLog2e : -INFINITY;
}

__device__ __forceinline__ int seg_at(const int32_t* seg, int b, int T, int i) {
    return seg && i < T ? seg[(int64_t)b * T + i] : 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Forward
template <int D, int BC>
__global__ void __launch_bounds__(kThreads) flash_fwd_kernel(bf16* __restrict__ out, float* __restrict__ lse,
                                                             const bf16* __restrict__ q, const bf16* __restrict__ k,
                                                             const bf16* __restrict__ v, Params p) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    constexpr int LD = D + kPad;
    bf16* Qs = reinterpret_cast<bf16*>(smem_raw);
    bf16* Ks = Qs + kQTile * LD;
    bf16* Vs = Ks + BC * LD;
    int* Sk = reinterpret_cast<int*>(Vs + BC * LD);   // [BC] document ids of the key tile

    const int qt = gridDim.x - 1 - blockIdx.x;   // the longest (last) query tiles first
    const int h = blockIdx.y, b = blockIdx.z, kvh = h / p.G;
    const int T = p.T, q0 = qt * kQTile;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int wr = warp * 16;
    const bf16* qg = q + ((int64_t)b * p.H + h) * T * D;
    const bf16* kg = k + ((int64_t)b * p.KV + kvh) * T * D;
    const bf16* vg = v + ((int64_t)b * p.KV + kvh) * T * D;

    load_tile<D>(Qs, qg, q0, kQTile, T);
    const int i0 = q0 + wr + g, i1 = i0 + 8;
    const int s0 = seg_at(p.seg, b, T, i0), s1 = seg_at(p.seg, b, T, i1);

    float o[D / 8][4];
    zero(o);
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

    const int qlast = min(T, q0 + kQTile) - 1;
    const int kt0 = p.window > 0 ? max(0, q0 - p.window + 1) / BC : 0, kt1 = qlast / BC;
    for (int kt = kt0; kt <= kt1; kt++) {
        const int j0 = kt * BC;
        __syncthreads();   // the previous tile's readers are done
        load_tile<D>(Ks, kg, j0, BC, T);
        load_tile<D>(Vs, vg, j0, BC, T);
        for (int idx = threadIdx.x; idx < BC; idx += kThreads) Sk[idx] = seg_at(p.seg, b, T, j0 + idx);
        __syncthreads();

        float s[BC / 8][4];
        zero(s);
        mma_abt<D>(s, Qs, Ks, LD, wr, g, t);   // S = q·kᵀ
        // scores -> base-2 logits (masked: -inf), tile row maxima
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int n = 0; n < BC / 8; n++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int jl = n * 8 + 2 * t + (e & 1), j = j0 + jl;
                float th;
                s[n][e] = score2(s[n][e], e < 2 ? i0 : i1, j, e < 2 ? s0 : s1, Sk[jl], p, th);
            }
            mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
            mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xFFFFFFFFu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xFFFFFFFFu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xFFFFFFFFu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xFFFFFFFFu, mx1, 2));
        const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
        const float u0 = n0 == -INFINITY ? 0.0f : n0, u1 = n1 == -INFINITY ? 0.0f : n1;
        const float a0 = exp2f(m0 - u0), a1 = exp2f(m1 - u1);   // m = -inf: 0
        m0 = n0;
        m1 = n1;
        float r0 = 0.0f, r1 = 0.0f;
#pragma unroll
        for (int n = 0; n < BC / 8; n++) {
            s[n][0] = exp2f(s[n][0] - u0);
            s[n][1] = exp2f(s[n][1] - u0);
            s[n][2] = exp2f(s[n][2] - u1);
            s[n][3] = exp2f(s[n][3] - u1);
            r0 += s[n][0] + s[n][1];
            r1 += s[n][2] + s[n][3];
        }
        l0 = l0 * a0 + r0;
        l1 = l1 * a1 + r1;
#pragma unroll
        for (int n = 0; n < D / 8; n++) {
            o[n][0] *= a0;
            o[n][1] *= a0;
            o[n][2] *= a1;
            o[n][3] *= a1;
        }
        mma_cb<BC / 16>(o, s, Vs, LD, 0, g, t);   // O += P · v   (P: bf16 from the C tiles)
    }
    l0 += __shfl_xor_sync(0xFFFFFFFFu, l0, 1);
    l0 += __shfl_xor_sync(0xFFFFFFFFu, l0, 2);
    l1 += __shfl_xor_sync(0xFFFFFFFFu, l1, 1);
    l1 += __shfl_xor_sync(0xFFFFFFFFu, l1, 2);
    const float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
    // out [B, T, H, D]
    bf16* o0 = out + (((int64_t)b * T + i0) * p.H + h) * D + 2 * t;
    bf16* o1 = out + (((int64_t)b * T + i1) * p.H + h) * D + 2 * t;
#pragma unroll
    for (int n = 0; n < D / 8; n++) {
        if (i0 < T) *reinterpret_cast<uint32_t*>(o0 + n * 8) = pack_bf16x2(o[n][0] * inv0, o[n][1] * inv0);
        if (i1 < T) *reinterpret_cast<uint32_t*>(o1 + n * 8) = pack_bf16x2(o[n][2] * inv1, o[n][3] * inv1);
    }
    if (t == 0) {
        float* lr = lse + ((int64_t)b * p.H + h) * T;
        if (i0 < T) lr[i0] = (m0 + log2f(l0)) * kLn2;
        if (i1 < T) lr[i1] = (m1 + log2f(l1)) * kLn2;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Backward, step 1: dO [B, H, T, D] bf16 from dout [B, T, H, D] fp32, and Dsum [B, H, T] = Σ_c dO·out (fp32).
// One warp per (b, t, h) row.
__global__ void flash_bwd_prep_kernel(float* __restrict__ Dsum, bf16* __restrict__ dO, const float* __restrict__ dout,
                                      const bf16* __restrict__ out, int64_t rows, int T, int H, int D) {
    const int lane = threadIdx.x & 31;
    for (int64_t r = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5); r < rows;
         r += (int64_t)gridDim.x * (blockDim.x / 32)) {
        // r = (b·T + i)·H + h
        const int h = int(r % H);
        const int64_t bi = r / H;
        const int i = int(bi % T);
        const int64_t b = bi / T;
        const float* dr = dout + r * D;
        const bf16* orow = out + r * D;
        bf16* dst = dO + ((b * H + h) * T + i) * D;
        float acc = 0.0f;
        for (int c = lane; c < D; c += 32) {
            // D from the same bf16 dO that dP = dO·vᵀ uses: then Σ_j dS_ij = Σ_j P_ij (dP_ij − D_i) = 0 as the
            // softmax's gradient must be, and a query that sees one key (T 1, window 1) gets dq = dk = 0; with the
            // fp32 dout here the rounding of dO left a bias dO_fp32·O − dO_bf16·O in every dS of the row.
            const bf16 xb = __float2bfloat16_rn(dr[c]);
            acc += __bfloat162float(xb) * __bfloat162float(orow[c]);
            dst[c] = xb;
        }
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xFFFFFFFFu, acc, o);
        if (lane == 0) Dsum[(b * H + h) * T + i] = acc;
    }
}

// P (fp32, in s) and the scaled dS (in dp) of a C tile element, from the raw products.
__device__ __forceinline__ void p_ds(float& s, float& dp, int i, int j, int si, int sj, float lse2, float Di,
                                     const Params& p) {
    float th;
    const float x2 = score2(s, i, j, si, sj, p, th);
    const float pr = x2 == -INFINITY ? 0.0f : exp2f(x2 - lse2);
    float ds = pr * (dp - Di);
    if (p.softcap > 0.0f) ds *= 1.0f - th * th;
    s = pr;
    dp = ds * p.scale;
}

// Backward, step 2: dk, dv of one 64-key tile (16 keys per warp), columns [slice·DS, slice·DS + DS).
template <int D, int DS>
__global__ void __launch_bounds__(kThreads) flash_bwd_dkdv_kernel(float* __restrict__ dk, float* __restrict__ dv,
                                                                  const bf16* __restrict__ q,
                                                                  const bf16* __restrict__ k,
                                                                  const bf16* __restrict__ v,
                                                                  const bf16* __restrict__ dO,
                                                                  const float* __restrict__ lse,
                                                                  const float* __restrict__ Dsum, Params p) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    constexpr int LD = D + kPad, NS = D / DS, BQ = kBwdQ;
    bf16* Ks = reinterpret_cast<bf16*>(smem_raw);
    bf16* Vs = Ks + kKTile * LD;
    bf16* Qs = Vs + kKTile * LD;
    bf16* dOs = Qs + BQ * LD;
    float* Ls = reinterpret_cast<float*>(dOs + BQ * LD);   // [BQ] lse · log2 e
    float* Dd = Ls + BQ;                                   // [BQ] Dsum
    int* Sq = reinterpret_cast<int*>(Dd + BQ);             // [BQ] document ids

    const int kt = blockIdx.x, kvh = blockIdx.y / NS, slice = blockIdx.y % NS, b = blockIdx.z;
    const int T = p.T, k0 = kt * kKTile;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int wr = warp * 16;
    const int64_t kvoff = ((int64_t)b * p.KV + kvh) * T * D;
    load_tile<D>(Ks, k + kvoff, k0, kKTile, T);
    load_tile<D>(Vs, v + kvoff, k0, kKTile, T);
    const int j0 = k0 + wr + g, j1 = j0 + 8;
    const int sj0 = seg_at(p.seg, b, T, j0), sj1 = seg_at(p.seg, b, T, j1);

    float ak[DS / 8][4], av[DS / 8][4];
    zero(ak);
    zero(av);

    const int klast = min(T, k0 + kKTile) - 1;
    const int qt0 = k0 / BQ;
    const int qt1 = (p.window > 0 ? min(T - 1, klast + p.window - 1) : T - 1) / BQ;
    const int c0 = slice * DS;
    for (int hg = 0; hg < p.G; hg++) {
        const int h = kvh * p.G + hg;
        const int64_t qoff = ((int64_t)b * p.H + h) * T;
        for (int qt = qt0; qt <= qt1; qt++) {
            const int q0 = qt * BQ;
            __syncthreads();
            load_tile<D>(Qs, q + qoff * D, q0, BQ, T);
            load_tile<D>(dOs, dO + qoff * D, q0, BQ, T);
            for (int idx = threadIdx.x; idx < BQ; idx += kThreads) {
                const int i = q0 + idx;
                Ls[idx] = i < T ? lse[qoff + i] * kLog2e : 0.0f;
                Dd[idx] = i < T ? Dsum[qoff + i] : 0.0f;
                Sq[idx] = seg_at(p.seg, b, T, i);
            }
            __syncthreads();
            // Sᵀ [16 keys, BQ] = K_w · Qᵀ and dPᵀ = V_w · dOᵀ
            float s[BQ / 8][4], dp[BQ / 8][4];
            zero(s);
            zero(dp);
            mma_abt<D>(s, Ks, Qs, LD, wr, g, t);
            mma_abt<D>(dp, Vs, dOs, LD, wr, g, t);
            // element (row = key j, column = query i)
#pragma unroll
            for (int n = 0; n < BQ / 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int il = n * 8 + 2 * t + (e & 1);
                    p_ds(s[n][e], dp[n][e], q0 + il, e < 2 ? j0 : j1, Sq[il], e < 2 ? sj0 : sj1, Ls[il], Dd[il], p);
                }
            // dV += Pᵀ · dO[:, slice], dK += dSᵀ · Q[:, slice]
            mma_cb<BQ / 16>(av, s, dOs, LD, c0, g, t);
            mma_cb<BQ / 16>(ak, dp, Qs, LD, c0, g, t);
        }
    }
    // dk, dv [B, KV, T, D] fp32
#pragma unroll
    for (int n = 0; n < DS / 8; n++) {
        const int col = c0 + n * 8 + 2 * t;
        if (j0 < T) {
            *reinterpret_cast<float2*>(dk + kvoff + (int64_t)j0 * D + col) = make_float2(ak[n][0], ak[n][1]);
            *reinterpret_cast<float2*>(dv + kvoff + (int64_t)j0 * D + col) = make_float2(av[n][0], av[n][1]);
        }
        if (j1 < T) {
            *reinterpret_cast<float2*>(dk + kvoff + (int64_t)j1 * D + col) = make_float2(ak[n][2], ak[n][3]);
            *reinterpret_cast<float2*>(dv + kvoff + (int64_t)j1 * D + col) = make_float2(av[n][2], av[n][3]);
        }
    }
}

// Backward, step 3: dq of one 64-query tile (16 rows per warp) over the key tiles it sees.
template <int D, int BC>
__global__ void __launch_bounds__(kThreads) flash_bwd_dq_kernel(float* __restrict__ dq, const bf16* __restrict__ q,
                                                                const bf16* __restrict__ k,
                                                                const bf16* __restrict__ v,
                                                                const bf16* __restrict__ dO,
                                                                const float* __restrict__ lse,
                                                                const float* __restrict__ Dsum, Params p) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    constexpr int LD = D + kPad;
    bf16* Qs = reinterpret_cast<bf16*>(smem_raw);
    bf16* dOs = Qs + kQTile * LD;
    bf16* Ks = dOs + kQTile * LD;
    bf16* Vs = Ks + BC * LD;
    int* Sk = reinterpret_cast<int*>(Vs + BC * LD);

    const int qt = gridDim.x - 1 - blockIdx.x;
    const int h = blockIdx.y, b = blockIdx.z, kvh = h / p.G;
    const int T = p.T, q0 = qt * kQTile;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int wr = warp * 16;
    const int64_t qoff = ((int64_t)b * p.H + h) * T;
    const bf16* kg = k + ((int64_t)b * p.KV + kvh) * T * D;
    const bf16* vg = v + ((int64_t)b * p.KV + kvh) * T * D;
    load_tile<D>(Qs, q + qoff * D, q0, kQTile, T);
    load_tile<D>(dOs, dO + qoff * D, q0, kQTile, T);
    const int i0 = q0 + wr + g, i1 = i0 + 8;
    const int s0 = seg_at(p.seg, b, T, i0), s1 = seg_at(p.seg, b, T, i1);
    const float L0 = i0 < T ? lse[qoff + i0] * kLog2e : 0.0f, L1 = i1 < T ? lse[qoff + i1] * kLog2e : 0.0f;
    const float D0 = i0 < T ? Dsum[qoff + i0] : 0.0f, D1 = i1 < T ? Dsum[qoff + i1] : 0.0f;

    float acc[D / 8][4];
    zero(acc);

    const int qlast = min(T, q0 + kQTile) - 1;
    const int kt0 = p.window > 0 ? max(0, q0 - p.window + 1) / BC : 0, kt1 = qlast / BC;
    for (int kt = kt0; kt <= kt1; kt++) {
        const int j0 = kt * BC;
        __syncthreads();
        load_tile<D>(Ks, kg, j0, BC, T);
        load_tile<D>(Vs, vg, j0, BC, T);
        for (int idx = threadIdx.x; idx < BC; idx += kThreads) Sk[idx] = seg_at(p.seg, b, T, j0 + idx);
        __syncthreads();
        float s[BC / 8][4], dp[BC / 8][4];
        zero(s);
        zero(dp);
        mma_abt<D>(s, Qs, Ks, LD, wr, g, t);     // S = q·kᵀ
        mma_abt<D>(dp, dOs, Vs, LD, wr, g, t);   // dP = dO·vᵀ
#pragma unroll
        for (int n = 0; n < BC / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int jl = n * 8 + 2 * t + (e & 1);
                p_ds(s[n][e], dp[n][e], e < 2 ? i0 : i1, j0 + jl, e < 2 ? s0 : s1, Sk[jl], e < 2 ? L0 : L1,
                     e < 2 ? D0 : D1, p);
            }
        mma_cb<BC / 16>(acc, dp, Ks, LD, 0, g, t);   // dq += dS · k
    }
    // dq [B, H, T, D] fp32
    float* d0 = dq + (qoff + i0) * D + 2 * t;
    float* d1 = dq + (qoff + i1) * D + 2 * t;
#pragma unroll
    for (int n = 0; n < D / 8; n++) {
        if (i0 < T) *reinterpret_cast<float2*>(d0 + n * 8) = make_float2(acc[n][0], acc[n][1]);
        if (i1 < T) *reinterpret_cast<float2*>(d1 + n * 8) = make_float2(acc[n][2], acc[n][3]);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Launchers
template <int D>
constexpr int fwd_bc() {
    return D >= 256 ? 32 : 64;
}
template <int D>
constexpr int bwd_slice() {
    return D > 128 ? 128 : D;
}

template <int D>
size_t fwd_smem() {
    return sizeof(bf16) * (kQTile + 2 * fwd_bc<D>()) * (D + kPad) + sizeof(int) * fwd_bc<D>();
}
template <int D>
size_t dq_smem() {
    return sizeof(bf16) * (2 * kQTile + 2 * fwd_bc<D>()) * (D + kPad) + sizeof(int) * fwd_bc<D>();
}
template <int D>
size_t dkdv_smem() {
    return sizeof(bf16) * (2 * kKTile + 2 * kBwdQ) * (D + kPad) + 3 * sizeof(float) * kBwdQ;
}

template <class K>
void set_smem(K kernel, size_t bytes) {
    HQ_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

Params params(const AttnDims& a) {
    return Params{a.T, a.H, a.KV, a.H / a.KV, a.window, a.scale, a.softcap, a.seg};
}

template <int D>
void fwd(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const AttnDims& a, cudaStream_t s) {
    constexpr int BC = fwd_bc<D>();
    const size_t sm = fwd_smem<D>();
    static bool once = (set_smem(flash_fwd_kernel<D, BC>, sm), true);
    (void)once;
    const dim3 grid((a.T + kQTile - 1) / kQTile, a.H, a.B);
    flash_fwd_kernel<D, BC><<<grid, kThreads, sm, s>>>(out, lse, q, k, v, params(a));
    HQ_CUDA_LAUNCH("flash_fwd_kernel");
}

template <int D>
void bwd(float* dq, float* dk, float* dv, const bf16* dO, const float* Dsum, const float* lse, const bf16* q,
         const bf16* k, const bf16* v, const AttnDims& a, cudaStream_t s) {
    constexpr int BC = fwd_bc<D>(), DS = bwd_slice<D>();
    const size_t sm_kv = dkdv_smem<D>(), sm_q = dq_smem<D>();
    static bool once =
        (set_smem(flash_bwd_dkdv_kernel<D, DS>, sm_kv), set_smem(flash_bwd_dq_kernel<D, BC>, sm_q), true);
    (void)once;
    const dim3 gkv((a.T + kKTile - 1) / kKTile, a.KV * (D / DS), a.B);
    flash_bwd_dkdv_kernel<D, DS><<<gkv, kThreads, sm_kv, s>>>(dk, dv, q, k, v, dO, lse, Dsum, params(a));
    HQ_CUDA_LAUNCH("flash_bwd_dkdv_kernel");
    const dim3 gq((a.T + kQTile - 1) / kQTile, a.H, a.B);
    flash_bwd_dq_kernel<D, BC><<<gq, kThreads, sm_q, s>>>(dq, q, k, v, dO, lse, Dsum, params(a));
    HQ_CUDA_LAUNCH("flash_bwd_dq_kernel");
}

}  // namespace

bool flash_supported(const AttnDims& a) { return flash_head_dim(a.d); }

size_t flash_workspace_floats(const AttnDims& a) {
    const size_t rows = size_t(a.B) * a.H * a.T;
    const size_t nO = (rows * a.d + 1) / 2;   // dO bf16
    return (nO + 63) / 64 * 64 + rows;        // then Dsum fp32
}

void flash_attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const AttnDims& a,
                             cudaStream_t s) {
    switch (a.d) {
        case 16: return fwd<16>(out, lse, q, k, v, a, s);
        case 32: return fwd<32>(out, lse, q, k, v, a, s);
        case 96: return fwd<96>(out, lse, q, k, v, a, s);
        case 64: return fwd<64>(out, lse, q, k, v, a, s);
        case 128: return fwd<128>(out, lse, q, k, v, a, s);
        case 256: return fwd<256>(out, lse, q, k, v, a, s);
        default:
            throw Error("E_INTERNAL",
                        HQ_MSG("flash attention: head_dim " << a.d << " is not 16, 32, 64, 96, 128 or 256"), Where{},
                        "flash_supported() is checked before this call");
    }
}

void flash_attention_backward(float* dq, float* dk, float* dv, const float* dout, const bf16* out, const float* lse,
                              const bf16* q, const bf16* k, const bf16* v, float* work, const AttnDims& a,
                              cudaStream_t s) {
    const size_t rows = size_t(a.B) * a.H * a.T;
    bf16* dO = reinterpret_cast<bf16*>(work);
    float* Dsum = work + (((rows * a.d + 1) / 2) + 63) / 64 * 64;
    const int64_t nrows = (int64_t)rows;
    flash_bwd_prep_kernel<<<util::grid_for(nrows * 32, 256, int64_t(1) << 16), 256, 0, s>>>(Dsum, dO, dout, out,
                                                                                          nrows, a.T, a.H, a.d);
    HQ_CUDA_LAUNCH("flash_bwd_prep_kernel");
    switch (a.d) {
        case 16: return bwd<16>(dq, dk, dv, dO, Dsum, lse, q, k, v, a, s);
        case 32: return bwd<32>(dq, dk, dv, dO, Dsum, lse, q, k, v, a, s);
        case 96: return bwd<96>(dq, dk, dv, dO, Dsum, lse, q, k, v, a, s);
        case 64: return bwd<64>(dq, dk, dv, dO, Dsum, lse, q, k, v, a, s);
        case 128: return bwd<128>(dq, dk, dv, dO, Dsum, lse, q, k, v, a, s);
        case 256: return bwd<256>(dq, dk, dv, dO, Dsum, lse, q, k, v, a, s);
        default:
            throw Error("E_INTERNAL",
                        HQ_MSG("flash attention: head_dim " << a.d << " is not 16, 32, 64, 96, 128 or 256"), Where{},
                        "flash_supported() is checked before this call");
    }
}

}  // namespace hq::cuda
