// The Turbo decode tile of one compressed 64-token record, query heads on the mma M rows
// (turbo_decode.cu), in about half the instructions of a plain heads-on-M tile and 1.6-1.8x
// faster on the H100 (docs/turboattention-impl.md, "Decode kernel"). Included by
// turbo_decode.cu only.
//
// Why it is leaner (docs/turboattention-impl.md, "Decode kernel"):
//  - Codes become FP16 by one LOP3 each pair, no subtraction: a code at bits 4j..4j+3 of a
//    half word ORed into the exponent of 2^(10 - 4j) reads as base + code exactly (bases
//    1024 and 64 for 4-bit codes; 1024, 256, 64, 16 for 2-bit). The mma then computes
//    sum a * (base + code); the sum of a * base is a per-(head, record) constant, taken
//    by one extra mma against the bases and subtracted once, not per element.
//  - A lane reads only its own value words (8 bytes of a channel, not all 32), and the
//    per-record scales become FP16 pairs by PRMT/LOP3 and one HSUB2/HMUL2, not I2F each.
//  - The zero-point terms are mma too: keys, sum_c q_c zp_c (q against the zero points as
//    FP16); values, sum_t p_t zp_t per record, accumulated across records (rescaled like the
//    output) and added to the output once, at the end.
//  - SAS on FP16 pairs (sas_exp2_pair: the bits of two sas_exp2 calls).
//  - Score n-block nb = 2kk + o holds, in a lane's column 2t + e, token 16t + tok(kk, o, e):
//    chosen so that a lane's probabilities are exactly the A fragment of P.V k-step kk
//    (FlashAttention-2's register trick) and the value pair one LOP3 yields from the lane's
//    own value words; a lane's 16 tokens are contiguous (its value scales are 2 loads).
#pragma once
#include "cuda_common.cuh"
#include "decode_common.cuh"
#include "mma_fragments.cuh"

namespace tandem {

// One head's online-softmax state in a decode warp (lean::tile and recent_tile).
struct HeadState {
    float m, l;  // running max (log2 units) of head gid; this lane's part of the sum
};

namespace lean {

__device__ __forceinline__ __half2 u2h(uint32_t x) { return *reinterpret_cast<__half2*>(&x); }

// Local token (0..15, within the lane's 16) of P.V k-step kk, A half o (a0/a2), element e.
template <int BITS>
__device__ __forceinline__ constexpr int tok(int kk, int o, int e) {
    return BITS == 4 ? 8 * o + kk + 4 * e : 2 * kk + o + 8 * e;
}

// Pair j of a 32-bit word of codes: codes (j, j + PPW) (PPW = 16 / BITS pairs per word) as
// an FP16 pair of base_j + code, by one LOP3 (plus one shift per word for the upper half).
template <int BITS>
__device__ __forceinline__ constexpr uint32_t pair_base(int j) {
    return BITS == 4 ? (j % 2 == 0 ? 0x64006400u : 0x54005400u)
                     : (j % 4 == 0 ? 0x64006400u : j % 4 == 1 ? 0x5C005C00u : j % 4 == 2 ? 0x54005400u : 0x4C004C00u);
}
template <int BITS>
__device__ __forceinline__ void word_pairs(uint32_t w, uint32_t (&p)[16 / BITS]) {
    constexpr int PPW = 16 / BITS;
    const uint32_t w8 = w >> 8;
#pragma unroll
    for (int j = 0; j < PPW; ++j) {
        const uint32_t mask = BITS == 4 ? (j % 2 == 0 ? 0x000F000Fu : 0x00F000F0u) : 0x00030003u << (2 * (j % 4));
        p[j] = ((j < PPW / 2 ? w : w8) & mask) | pair_base<BITS>(j);
    }
}

// Bytes ia and ib of a little-endian byte array held in words, as the FP16 pair
// (1024 + byte ia, 1024 + byte ib). PRMT gathers, one LOP3 sets the exponents.
template <int N>
__device__ __forceinline__ uint32_t byte_pair(const uint32_t (&w)[N], int ia, int ib) {
    const uint32_t t = __byte_perm(w[ia / 4], w[ib / 4], (ia % 4) | ((4 + ib % 4) << 8));
    return (t & 0x00FF00FFu) | 0x64006400u;
}

// N words (N even) from an 8-byte aligned address.
template <int N>
__device__ __forceinline__ void load_words8(const uint8_t* p, uint32_t (&w)[N]) {
#pragma unroll
    for (int i = 0; i < N / 2; ++i) {
        const uint2 x = ((const uint2*)p)[i];
        w[2 * i] = x.x, w[2 * i + 1] = x.y;
    }
}

// One warp's scratch: q for the INT8 recent tile (recent_tile), its scales, and the lane's
// query pairs: qh[P / 4][lane] component P % 4 = (q[c0], q[c1]) of head gid, in the channel
// order of this warp's bit width (pair_channel).
template <int D>
struct __align__(16) Smem {
    float q[8][D];  // query x log2(e)/sqrt(D); heads >= G are zero
    float tks[kTile], tvs[kTile];
    uint4 qh[D / 32][32];
};

template <int NG>
struct State {
    HeadState hs;     // running max and this lane's part of the denominator
    float vb[NG];     // the head's value zero-point term per group (the same on its 4 lanes)
    float q1152;      // 1152 x the sum of head gid's query halves (the zero-point pairs' base)
};

// Channel of element e of the lane's query pair P (D / 8 pairs per lane): the lane (tig)
// owns channels [tig D/4, (tig + 1) D/4), NW words of a key row; pair j of word i holds
// channels (j, j + PPW) of the word's CPW.
template <int D, int BITS>
__device__ __forceinline__ constexpr int pair_channel(int tig, int P, int e) {
    constexpr int CPW = 32 / BITS, PPW = CPW / 2, NW = D * BITS / 128;
    return (tig * NW + P / PPW) * CPW + P % PPW + PPW * e;
}

// The lane's query pairs into w.qh (after w.q is written) and 1152 x their sum per head.
template <int D, int BITS, int NG>
__device__ __forceinline__ void prepare_query(Smem<D>& w, State<NG>& st) {
    const int lane = threadIdx.x % 32, gid = lane >> 2, tig = lane & 3;
    uint32_t qp[D / 8];
#pragma unroll
    for (int P = 0; P < D / 8; ++P)
        qp[P] = h2u(__floats2half2_rn(w.q[gid][pair_channel<D, BITS>(tig, P, 0)], w.q[gid][pair_channel<D, BITS>(tig, P, 1)]));
#pragma unroll
    for (int x = 0; x < D / 32; ++x) w.qh[x][lane] = make_uint4(qp[4 * x], qp[4 * x + 1], qp[4 * x + 2], qp[4 * x + 3]);
    float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) mma16816(c, qp[2 * ks], 0u, qp[2 * ks + 1], 0u, 0x64806480u, 0x64806480u);
    st.q1152 = c[0];
}

// One compressed record (BITS = 4 or 2, NG value groups) for head gid.
// acc[nb][0..1]: head gid, channels nb*8 + tig*2 + {0, 1} (the P.V accumulator layout).
template <int D, int BITS, int NG>
__device__ __forceinline__ void tile(const uint8_t* rec, const uint8_t* kc, const uint8_t* vc, const Smem<D>& w,
                                     State<NG>& st, const DecodeArgs& a, int G, float (&acc)[D / 8][2]) {
    constexpr int CPW = 32 / BITS, PPW = CPW / 2, NW = D * BITS / 128;
    constexpr int ROW = D * BITS / 8, VROW = kTile * BITS / 8, VW = BITS == 4 ? 2 : 1;
    const int lane = threadIdx.x % 32, gid = lane >> 2, tig = lane & 3;
    const float kscale = ((const float*)rec)[0], vscale = ((const float*)rec)[1];

    // ---- loads: key words (n-block nb: token 16 (gid / 2) + tok(nb / 2, nb % 2, gid % 2)),
    // the lane's key channel scales and zero points
    uint32_t kw[8][NW];
#pragma unroll
    for (int nb = 0; nb < 8; ++nb)
        load_words<NW>(kc + (16 * (gid >> 1) + tok<BITS>(nb >> 1, nb & 1, gid & 1)) * ROW + tig * NW * 4, kw[nb]);
    uint32_t scw[D / 16], zpw[D / 16];
    load_words8<D / 16>(rec + 8 + tig * (D / 4), scw);
    load_words8<D / 16>(rec + 8 + D + tig * (D / 4), zpw);
#pragma unroll
    for (int i = 0; i < D / 16; ++i) zpw[i] ^= 0x80808080u;  // signed -> 128 + zp

    // ---- scores: c[nb] = (q x sc) . (base + code); cb = (q x sc) . base; cz = q . (1152 + zp)
    float c[8][4], cb[4] = {0.0f, 0.0f, 0.0f, 0.0f}, cz[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int nb = 0; nb < 8; ++nb) c[nb][0] = c[nb][1] = c[nb][2] = c[nb][3] = 0.0f;
#pragma unroll
    for (int i = 0; i < NW; ++i) {
        uint32_t qh[PPW], qs[PPW], zp[PPW];
#pragma unroll
        for (int x = 0; x < PPW / 4; ++x) {
            const uint4 v = w.qh[(i * PPW) / 4 + x][lane];
            qh[4 * x] = v.x, qh[4 * x + 1] = v.y, qh[4 * x + 2] = v.z, qh[4 * x + 3] = v.w;
        }
#pragma unroll
        for (int j = 0; j < PPW; ++j) {
            const int lo = i * CPW + j, hi = lo + PPW;  // byte of the lane's channel array
            qs[j] = h2u(__hmul2(__hsub2(u2h(byte_pair(scw, lo, hi)), __float2half2_rn(1024.0f)), u2h(qh[j])));
            zp[j] = byte_pair(zpw, lo, hi);
        }
#pragma unroll
        for (int s = 0; s < PPW / 2; ++s) {
            mma16816(cb, qs[2 * s], 0u, qs[2 * s + 1], 0u, pair_base<BITS>(2 * s), pair_base<BITS>(2 * s + 1));
            mma16816(cz, qh[2 * s], 0u, qh[2 * s + 1], 0u, zp[2 * s], zp[2 * s + 1]);
        }
#pragma unroll
        for (int nb = 0; nb < 8; ++nb) {
            uint32_t kp[PPW];
            word_pairs<BITS>(kw[nb][i], kp);
#pragma unroll
            for (int s = 0; s < PPW / 2; ++s) mma16816(c[nb], qs[2 * s], 0u, qs[2 * s + 1], 0u, kp[2 * s], kp[2 * s + 1]);
        }
    }
    const float kb = cz[0] - st.q1152 - cb[0];  // sum_c q_c zp_c - the bases' share
    float p[8][2];
#pragma unroll
    for (int nb = 0; nb < 8; ++nb)
#pragma unroll
        for (int e = 0; e < 2; ++e) p[nb][e] = (c[nb][e] + kb) * kscale;

    // ---- online softmax of head gid over its 4 lanes (SAS)
    float mx = -INFINITY;
#pragma unroll
    for (int nb = 0; nb < 8; ++nb) mx = fmaxf(mx, fmaxf(p[nb][0], p[nb][1]));
    mx = quad_max(mx);
    const float m_new = fmaxf(st.hs.m, mx);
    const __half2 c1 = __float2half2_rn(a.c1), c2 = __float2half2_rn(a.c2), c3 = __float2half2_rn(a.c3);
    float ls = 0.0f;
    bool any = false;
#pragma unroll
    for (int nb = 0; nb < 8; ++nb) {
        const float2 pe = sas_exp2_pair(p[nb][0] - m_new, p[nb][1] - m_new, a.threshold, a.degree, c1, c2, c3);
        any |= pe.x > 0.0f || pe.y > 0.0f;
        ls += pe.x + pe.y;
        p[nb][0] = pe.x, p[nb][1] = pe.y;
    }
    // every p of every real head is 0: m did not move, no value bytes are read
    if (!__any_sync(0xffffffffu, any && gid < G)) return;
    const float alpha = st.hs.m == -INFINITY ? 0.0f : exp2f(st.hs.m - m_new);
    st.hs.l = st.hs.l * alpha + ls;
    st.hs.m = m_new;
    if (__any_sync(0xffffffffu, alpha != 1.0f)) {  // the max moved: rescale (rare after the first records)
#pragma unroll
        for (int nb = 0; nb < D / 8; ++nb) acc[nb][0] *= alpha, acc[nb][1] *= alpha;
#pragma unroll
        for (int g = 0; g < NG; ++g) st.vb[g] *= alpha;
    }

    // ---- value loads: the lane's words of channel cb*8 + gid; scales and zero points of its
    // 16 tokens (16 tig + 0..15) for all groups
    uint32_t vw[D / 8][VW];
#pragma unroll
    for (int cbk = 0; cbk < D / 8; ++cbk) load_words<VW>(vc + (cbk * 8 + gid) * VROW + tig * VW * 4, vw[cbk]);
    uint32_t vsw[4 * NG], vzw[4 * NG];
    load_words8<4 * NG>(rec + 8 + 2 * D + 16 * tig * NG, vsw);
    load_words8<4 * NG>(rec + 8 + 2 * D + kTile * NG + 16 * tig * NG, vzw);
#pragma unroll
    for (int i = 0; i < 4 * NG; ++i) vzw[i] ^= 0x80808080u;  // signed -> 128 + zp
    // p as FP16 pairs in the A fragment order: ph[kk][o] (the block scale goes with the
    // token scales below: p x block scale alone would be FP16 subnormal for small p)
    uint32_t ph[4][2];
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
#pragma unroll
        for (int o = 0; o < 2; ++o) ph[kk][o] = h2u(__floats2half2_rn(p[2 * kk + o][0], p[2 * kk + o][1]));
    const __half2 vs2 = __float2half2_rn(vscale);

    // ---- P.V per value group: A = P' = p x vscale x the token's group scale, B = base + code
#pragma unroll
    for (int g = 0; g < NG; ++g) {
        // pa = P'; zb: B of the zero-point mma, (1152 + zp) pairs in the even columns and
        // ones in the odd ones, so that cz[0] = sum p (1152 + zp) and cz[1] = sum p per head
        uint32_t pa[4][2];
        float cv[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // P' . base: the bases' share of this group
        float cz[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            uint32_t zb[2];
#pragma unroll
            for (int o = 0; o < 2; ++o) {
                const int b0 = tok<BITS>(kk, o, 0) * NG + g, b1 = tok<BITS>(kk, o, 1) * NG + g;
                const __half2 sv = __hmul2(__hsub2(u2h(byte_pair(vsw, b0, b1)), __float2half2_rn(1024.0f)), vs2);
                pa[kk][o] = h2u(__hmul2(sv, u2h(ph[kk][o])));
                zb[o] = gid & 1 ? 0x3C003C00u : byte_pair(vzw, b0, b1);
            }
            const uint32_t base0 = BITS == 4 ? pair_base<4>(kk) : pair_base<2>(2 * kk);
            const uint32_t base1 = BITS == 4 ? pair_base<4>(kk) : pair_base<2>(2 * kk + 1);
            mma16816(cv, pa[kk][0], 0u, pa[kk][1], 0u, base0, base1);
            mma16816(cz, ph[kk][0], 0u, ph[kk][1], 0u, zb[0], zb[1]);
        }
        st.vb[g] += vscale * (cz[0] - 1152.0f * cz[1]);  // the head's sum_t p_t zp_t x vscale
        constexpr int CB = D / 8 / NG;            // channel blocks of one group
#pragma unroll
        for (int cbk = g * CB; cbk < (g + 1) * CB; ++cbk) {
            uint32_t vp[8];
            if constexpr (BITS == 4) {
                uint32_t x[4], y[4];
                word_pairs<4>(vw[cbk][0], x);
                word_pairs<4>(vw[cbk][VW - 1], y);
#pragma unroll
                for (int kk = 0; kk < 4; ++kk) vp[2 * kk] = x[kk], vp[2 * kk + 1] = y[kk];
            } else {
                word_pairs<2>(vw[cbk][0], vp);
            }
            // the bases' share leaves here, not at the end: a running sum of base x P' over many
            // records would be ~1000x the output and cost it its low bits (measured: 4e-2 at
            // 3000 tokens in one split)
            float d[4] = {acc[cbk][0] - cv[0], acc[cbk][1] - cv[0], 0.0f, 0.0f};
#pragma unroll
            for (int kk = 0; kk < 4; ++kk) mma16816(d, pa[kk][0], 0u, pa[kk][1], 0u, vp[2 * kk], vp[2 * kk + 1]);
            acc[cbk][0] = d[0];
            acc[cbk][1] = d[1];
        }
    }
}

// Adds the value zero-point terms to the output and clears them.
template <int D, int NG>
__device__ __forceinline__ void flush(State<NG>& st, float (&acc)[D / 8][2]) {
#pragma unroll
    for (int g = 0; g < NG; ++g) {
        const float v = st.vb[g];
#pragma unroll
        for (int nb = g * (D / 8 / NG); nb < (g + 1) * (D / 8 / NG); ++nb) acc[nb][0] += v, acc[nb][1] += v;
        st.vb[g] = 0.0f;
    }
}

}  // namespace lean
}  // namespace tandem
