// Internal to the x86 panel paths (cpu_gemm_<path>.cpp): the micro-kernels on the panel layout
// (cpu_panels.h), written once over a vector type V that each path supplies:
//
//   V::kLanes         int32/f32 lanes (16 for zmm, 8 for ymm): the rows one vector holds; a
//                     panel is 16 / kLanes row groups (lane0 = the group's first row)
//   V::I, V::F        the integer and float vector types
//   V::kUnsignedDot   dot(acc, w, x) takes w as u8 0..255 (vpdpbusd); false: only 0..127
//                     without i16 saturation (vpmaddubsw + vpmaddwd), so Q8_0's levels go in
//                     as two 4-bit halves (split8, which needs kSums16)
//   V::dot(acc, w, x) acc + per lane the sum of 4 products u8 w x i8 x (x: 4 bytes broadcast)
//   V::kSums16        sums of small levels may run in int16 (vpmaddubsw + vpaddw, no
//                     vpmaddwd per step): V::dot16(acc16, w, x) adds the pairs' products to
//                     int16 lanes, V::widen16(acc16, c) = c + the int32 sums of lane pairs,
//                     V::widen16x16(acc16, c) the same with the sums times 16
//   plus loads, bit operations and float arithmetic named like the intrinsics they wrap.
//
// A micro-kernel computes R row groups x T tokens with R*T accumulators in registers:
//   - quantized types: per subblock, each step (kLanes rows x 4 columns of levels) is dotted
//     with 4 int8 activation bytes of each token into R*T int32 sums (which start at the
//     tile's ncorr: the level offset taken back out); then each sum is converted and added
//     with the row scales times the token's scale (+ the row mins times the token's sums).
//     For the K-quants the token's scale is the same over the record, so the subblock sums
//     go into a float tmp and the scale is applied once per record.
//   - float types: per column, one fma of the rows' weights with each token's value.
// The including file defines TGT (its target attribute) and V first; everything here is in an
// anonymous namespace, so each path gets its own copy compiled for its own target.
#pragma once
#include <algorithm>
#include <cstring>

#include "cpu_panels.h"

#ifndef TGT
#error "define TGT (the target attribute) and the vector type V before including cpu_gemm_kernels.h"
#endif

namespace tandem::cpu::detail {
namespace {

using I = V::I;
using F = V::F;
constexpr int kLanes = V::kLanes;
constexpr int kGroups = kPanelRows / kLanes;  // row groups per panel

TGT inline int32_t ld32(const uint8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// ---- reading a record: levels and scales ----------------------------------------------------
//
// A record policy P gives, for the rows [lane0, lane0 + kLanes) of record `rec`:
//   P::levels<CC>(rec, j, lane0, lo, hi)  chunk CC of subblock j: its steps 2CC and 2CC+1 as u8
//                                         levels
//   P::Scale s; s.load(rec, lane0)        what the record's subblocks share (super-scales)
//   P::scales(rec, s, j, lane0, dw, mw)   subblock j's row scales dw and (kMin) min coefficients
//                                         mw: value = dw * (L - offset) [+ mw], summed over the
//                                         subblock as dw * dx * (sum(L * q) - offset * sigma)
//                                         [+ mw * dx * sigma]
//   kSub      columns per subblock (32, or 16 for Q6_K); kSubs subblocks per record
//   kShift    log2 of the level offset (the tile's ncorr = -(sigma << kShift)), -1: none
//   kMin      whether the value has a per-row min term (mw)
//   kRecDx    the activation scale is the same for all the record's subblocks (K-quants)
//   kMaxLevel the largest level (bounds the int16 sums: sums16<P>())
//   kPrefetch decode (T = 1) prefetches the record this many ahead, a slice per subblock: for
//             the K-quants, whose subblocks read 3-4 places of a 2.4-3.4 KB record. Q5_K and
//             Q6_K decoded from DRAM at 10 GB/s on one Zen 4 core without it, 15-26 with 2
//             ahead; on a Zen 5 core Q4_K read 12-13 GB/s (avx2, avx-vnni) and 24 (avx512-vnni)
//             without it, 37-48 with 4 ahead, and 4 ahead gave Q5_K and Q6_K up to 11% over 2
//             (the 32-block types measured as fast or faster without, bench/results/cpu-prompt.md
//             section 21). Q6_K on zmm takes 2: an Emerald Rapids core decoded it at 24-26 GB/s
//             with 2 ahead and 20-22 with 4, a Zen 5 core the same with either (section 23)

TGT inline I lo_nib(I v) { return V::and_(v, V::set1_8(0x0F)); }
TGT inline I hi_nib(I v) { return V::and_(V::template srli16<4>(v), V::set1_8(0x0F)); }

// lvl | (the bits of h selected by `mask` after moving h's bit `From` to bit 4).
template <int From>
TGT inline I or_high(I lvl, I h, char mask) {
    I s = h;
    if constexpr (From < 4) s = V::template slli16<4 - From>(h);
    if constexpr (From > 4) s = V::template srli16<From - 4>(h);
    return V::or_and(lvl, s, V::set1_8(mask));
}

template <class Rec>
TGT inline void nib_levels(const Rec& r, int c, int lane0, I& lo, I& hi) {
    const I v = V::load(r.nib[c] + 4 * lane0);
    lo = lo_nib(v);
    hi = hi_nib(v);
}

// The 5th bits of chunk CC of a 32-column subblock (bits 2CC, 2CC+1 of hb1[j]).
template <int CC, class Rec>
TGT inline void add_hb1(const Rec& r, int j, int lane0, I& lo, I& hi) {
    const I h = V::load(r.hb1[j] + 4 * lane0);
    lo = or_high<2 * CC>(lo, h, 0x10);
    hi = or_high<2 * CC + 1>(hi, h, 0x10);
}

struct NoScale {
    template <class Rec> TGT void load(const Rec&, int) {}
};

// Q4_K/Q5_K: d and -dmin; subblock j: dw = d * sc[j], mw = -dmin * mn[j].
struct K4Scale {
    F d, ndmin;
    template <class Rec> TGT void load(const Rec& r, int lane0) {
        d = V::cvt_f16(r.d + lane0);
        ndmin = V::sub(V::zero(), V::cvt_f16(r.dmin + lane0));
    }
};
template <class Rec>
TGT inline void k4_scales(const Rec& r, const K4Scale& s, int j, int lane0, F& dw, F& mw) {
    dw = V::mul(s.d, V::cvt_u8(r.sc[j] + lane0));
    mw = V::mul(s.ndmin, V::cvt_u8(r.mn[j] + lane0));
}

// The 32-block types: one subblock per record, scale d (and min m).
template <class Rec, int Shift, bool Min, int MaxLevel>
struct Q32 {
    using Scale = NoScale;
    static constexpr int kSub = 32, kSubs = 1, kShift = Shift, kMaxLevel = MaxLevel;
    static constexpr bool kMin = Min, kRecDx = false;
    static constexpr int kPrefetch = 0;
    TGT static void scales(const Rec& r, const Scale&, int, int lane0, F& dw, F& mw) {
        dw = V::cvt_f16(r.d + lane0);
        if constexpr (Min) mw = V::cvt_f16(r.m + lane0);
    }
};

struct P_Q4_0 : Q32<pq4_0, 3, false, 15> {
    using Rec = pq4_0;
    template <int CC> TGT static void levels(const Rec& r, int, int l0, I& lo, I& hi) { nib_levels(r, CC, l0, lo, hi); }
};
struct P_Q4_1 : Q32<pq4_1, -1, true, 15> {
    using Rec = pq4_1;
    template <int CC> TGT static void levels(const Rec& r, int, int l0, I& lo, I& hi) { nib_levels(r, CC, l0, lo, hi); }
};
struct P_Q5_0 : Q32<pq5_0, 4, false, 31> {
    using Rec = pq5_0;
    template <int CC> TGT static void levels(const Rec& r, int, int l0, I& lo, I& hi) {
        nib_levels(r, CC, l0, lo, hi);
        add_hb1<CC>(r, 0, l0, lo, hi);
    }
};
struct P_Q5_1 : Q32<pq5_1, -1, true, 31> {
    using Rec = pq5_1;
    template <int CC> TGT static void levels(const Rec& r, int, int l0, I& lo, I& hi) {
        nib_levels(r, CC, l0, lo, hi);
        add_hb1<CC>(r, 0, l0, lo, hi);
    }
};
// The int8 levels q are packed as q + 128 (cpu_panels.h): offset 128.
struct P_Q8_0 : Q32<pq8_0, 7, false, 255> {
    using Rec = pq8_0;
    template <int CC> TGT static void levels(const Rec& r, int, int l0, I& lo, I& hi) {
        lo = V::load(r.lvl[2 * CC] + 4 * l0);
        hi = V::load(r.lvl[2 * CC + 1] + 4 * l0);
    }
};
struct P_Q4_K {
    using Rec = pq4_K;
    using Scale = K4Scale;
    static constexpr int kSub = 32, kSubs = 8, kShift = -1, kPrefetch = 4, kMaxLevel = 15;
    static constexpr bool kMin = true, kRecDx = true;
    template <int CC> TGT static void levels(const Rec& r, int j, int l0, I& lo, I& hi) {
        nib_levels(r, 4 * j + CC, l0, lo, hi);
    }
    TGT static void scales(const Rec& r, const Scale& s, int j, int l0, F& dw, F& mw) { k4_scales(r, s, j, l0, dw, mw); }
};
struct P_Q5_K : P_Q4_K {
    using Rec = pq5_K;
    static constexpr int kPrefetch = 4, kMaxLevel = 31;
    template <int CC> TGT static void levels(const Rec& r, int j, int l0, I& lo, I& hi) {
        nib_levels(r, 4 * j + CC, l0, lo, hi);
        add_hb1<CC>(r, j, l0, lo, hi);
    }
    TGT static void scales(const Rec& r, const Scale& s, int j, int l0, F& dw, F& mw) { k4_scales(r, s, j, l0, dw, mw); }
};
// Subblock g = 16 columns = 4 steps in l6[g][0..2]: steps 0-2 are their vectors' low 6 bits,
// step 3 is the three vectors' top 2 bits, each masked before its 16-bit shift so that no bits
// of the next byte come in. 10 instructions a subblock on zmm (11 on ymm) with one constant,
// where a nibble plane and a 2-bit plane took 13 (17). Prompt GEMM, one Zen 5 core: +2-3% on
// avx512-vnni, +7-8% on avx2, level on avx-vnni (bench/results/cpu-prompt.md, section 34).
struct P_Q6_K {
    using Rec = pq6_K;
    struct Scale {
        F d;
        TGT void load(const Rec& r, int lane0) { d = V::cvt_f16(r.d + lane0); }
    };
    static constexpr int kSub = 16, kSubs = 16, kShift = 5, kPrefetch = kLanes == 16 ? 2 : 4, kMaxLevel = 63;
    static constexpr bool kMin = false, kRecDx = true;
    template <int CC> TGT static void levels(const Rec& r, int g, int l0, I& lo, I& hi) {
        const I m6 = V::set1_8(0x3F);
        if constexpr (CC == 0) {
            lo = V::and_(V::load(r.l6[g][0] + 4 * l0), m6);
            hi = V::and_(V::load(r.l6[g][1] + 4 * l0), m6);
        } else {
            const I c = V::load(r.l6[g][2] + 4 * l0);
            lo = V::and_(c, m6);
            const I a = V::template srli16<6>(V::andnot_(m6, V::load(r.l6[g][0] + 4 * l0)));
            const I b = V::template srli16<4>(V::andnot_(m6, V::load(r.l6[g][1] + 4 * l0)));
            hi = V::or3(a, b, V::template srli16<2>(V::andnot_(m6, c)));
        }
    }
    TGT static void scales(const Rec& r, const Scale& s, int g, int l0, F& dw, F&) { dw = V::mul(s.d, V::cvt_i8(r.sc[g] + l0)); }
};

// Q8_0 on a path without vpdpbusd (avx2), where vpmaddubsw would saturate on its levels L
// (0..255): each L = 16 h + l goes in as its two 4-bit halves, each half summed in int16 like a
// 4-bit type (vpmaddubsw + vpaddw), then widened as sum(l q) + 16 sum(h q). One Zen 4 core:
// 122 GOP/s against 117 for |w| and sign(q, w) through the int32 step (vpsignb twice).
template <class P>
constexpr bool split8() {
    static_assert(V::kUnsignedDot || V::kSums16, "a path without vpdpbusd needs the int16 sums for Q8_0");
    return P::kMaxLevel > 63 && !V::kUnsignedDot;
}

// The level offset the kernel takes back out for P on this V.
template <class P>
constexpr int corr_shift() { return P::kShift; }

// Whether a subblock's sums fit int16 lanes: kSub / 4 steps, each adding two products of a
// level (<= kMaxLevel) and an activation (|q| <= 127) to a lane. True for the 4-bit types
// (8 steps x 2 x 15 x 127 = 30480 <= 32767); Q5 (62992) and Q6_K (64008) would overflow.
template <class P>
constexpr bool sums16() {
    return V::kSums16 && (P::kSub / 4) * 2 * P::kMaxLevel * 127 <= 32767;
}

// ---- quantized micro-kernel ----------------------------------------------------------------

// Keeps an accumulator in its register as it is: without this, GCC reassociates the int16
// sums of a subblock into trees of partial sums and spills them (the avx2 4-bit types ran at
// 146 GOP/s with the trees, 171 without, one Zen 4 core).
TGT inline void keep(I& v) { __asm__("" : "+x"(v)); }

// Row group g of the panels starting at w: its panel and first lane.
struct Group {
    const uint8_t* panel;
    int lane0;
};
TGT inline Group group(const uint8_t* w, size_t pb, int g) { return {w + (g / kGroups) * pb, (g % kGroups) * kLanes}; }

// Chunk CC of subblock j: steps 2CC, 2CC+1 (columns 8CC .. 8CC+7) against each token's 4
// bytes (token t's subblock is q + t * kSub).
template <class P, int R, int T, int CC>
TGT inline void chunk(const typename P::Rec* const (&rec)[R], const int (&l0)[R], int j, const uint8_t* q,
                      I (&si)[R][T], I (&sh)[R][T]) {
    I lo[R], hi[R];
    for (int r = 0; r < R; r++) P::template levels<CC>(*rec[r], j, l0[r], lo[r], hi[r]);
    for (int half = 0; half < 2; half++) {
        I wl[R], wh[R];  // split8: the 4-bit halves of this step's levels
        if constexpr (split8<P>())
            for (int r = 0; r < R; r++) {
                wl[r] = lo_nib(half ? hi[r] : lo[r]);
                wh[r] = hi_nib(half ? hi[r] : lo[r]);
            }
        for (int t = 0; t < T; t++) {
            const I xb = V::set1_32(ld32(q + P::kSub * t + 8 * CC + 4 * half));
            for (int r = 0; r < R; r++) {
                const I w = half ? hi[r] : lo[r];
                if constexpr (split8<P>()) {
                    si[r][t] = V::dot16(si[r][t], wl[r], xb);
                    sh[r][t] = V::dot16(sh[r][t], wh[r], xb);
                    keep(sh[r][t]);
                } else if constexpr (sums16<P>()) {
                    si[r][t] = V::dot16(si[r][t], w, xb);
                } else if constexpr (V::kDotBroadcast && T > 1) {
                    // not in decode (T = 1): Q8_0 decode measured 4-9% slower with it (one Zen 4 core)
                    si[r][t] = V::dot_bcast(si[r][t], w, q + P::kSub * t + 8 * CC + 4 * half);
                } else {
                    si[r][t] = V::dot(si[r][t], w, xb);
                }
                if constexpr (sums16<P>() || split8<P>()) keep(si[r][t]);
            }
        }
    }
}

// Rows [0, n) of one row group's outputs for one token.
TGT inline void store_rows(float* y, F v, int64_t n) {
    if (n >= kLanes) V::store(y, v);
    else if (n > 0) V::store_n(y, v, (int)n);
}

// Unrolled by pragma so that acc stays in registers: with the loop exit at nt, GCC 12 kept a
// copy of every accumulator on the stack and stored it again after each record (8 stores a
// subblock in the Q8_0 8-token tile), which cost 4-9% of the Q8_0 and Q4_0 prompt GEMM on a
// Sapphire Rapids core and 3-6% on an Emerald Rapids one (bench/results/cpu-prompt.md, section 18).
template <int R, int T>
TGT inline void store_tile(const F (&acc)[R][T], float* y, int64_t ldy, int nt, int64_t rows) {
#pragma GCC unroll 16
    for (int t = 0; t < T; t++)
        if (t < nt)
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) store_rows(y + t * ldy + kLanes * r, acc[r][t], rows - kLanes * r);
}

// Prefetches subblock j's share of the record at rec (its kSubs-th part, in 64-byte lines).
template <class P>
TGT inline void prefetch_slice(const typename P::Rec* rec, int j) {
    constexpr size_t kSlice = sizeof(typename P::Rec) / P::kSubs;
#pragma GCC unroll 8
    for (size_t o = 0; o < kSlice; o += 64) _mm_prefetch((const char*)rec + j * kSlice + o, _MM_HINT_T0);
}

// R consecutive row groups from group g0 of the panels at w, against a tile of T tokens.
template <class P, int R, int T>
TGT void tile_q(const uint8_t* w, size_t pb, int g0, int64_t n_recs, const uint8_t* act, float* y, int64_t ldy, int nt,
                int64_t rows) {
    using Rec = typename P::Rec;
    constexpr size_t kSubBytes = act_sub_bytes(P::kSub, T);
    constexpr int kShift = corr_shift<P>();
    // Records prefetched ahead: decode per type (P::kPrefetch); the zmm paths' prompt tiles 6,
    // which measured Q4_0 +6-7%, Q6_K +4%, Q4_K +1-3% and Q8_0 level on an Emerald Rapids core
    // and level on Zen 4, where the avx2 tiles read 1-3% slower with it (bench/results/cpu-prompt.md,
    // section 19).
    constexpr int kAhead = T == 1 ? P::kPrefetch : kLanes == 16 ? 6 : 0;
    F acc[R][T], tmp[R][T];
    int l0[R];
    const uint8_t* base[R];
    for (int r = 0; r < R; r++) {
        const Group gr = group(w, pb, g0 + r);
        base[r] = gr.panel;
        l0[r] = gr.lane0;
        for (int t = 0; t < T; t++) acc[r][t] = V::zero();
    }
    for (int64_t b = 0; b < n_recs; b++) {
        const Rec* rec[R];
        typename P::Scale scale[R];
        for (int r = 0; r < R; r++) {
            rec[r] = (const Rec*)base[r] + b;
            scale[r].load(*rec[r], l0[r]);
        }
        if constexpr (P::kRecDx)
            for (int r = 0; r < R; r++)
                for (int t = 0; t < T; t++) tmp[r][t] = V::zero();
        const float* dx = nullptr;
        for (int j = 0; j < P::kSubs; j++, act += kSubBytes) {
            if constexpr (kAhead > 0)
                for (int r = 0; r < R; r++) prefetch_slice<P>(rec[r] + kAhead, j);
            const auto [dx_j, sx, sg, ncorr] = act_sub_fields(act, P::kSub, T);
            dx = dx_j;
            constexpr bool k16 = sums16<P>() || split8<P>();
            I si[R][T];  // int32 sums from ncorr on, or (k16) int16 sums from 0
            I sh[R][T];  // split8: the int16 sums of the high halves
            for (int r = 0; r < R; r++)
                for (int t = 0; t < T; t++) {
                    si[r][t] = kShift >= 0 && !k16 ? V::set1_32(ncorr[t]) : V::izero();
                    if constexpr (split8<P>()) sh[r][t] = V::izero();
                }
            chunk<P, R, T, 0>(rec, l0, j, act, si, sh);
            chunk<P, R, T, 1>(rec, l0, j, act, si, sh);
            if constexpr (P::kSub == 32) {
                chunk<P, R, T, 2>(rec, l0, j, act, si, sh);
                chunk<P, R, T, 3>(rec, l0, j, act, si, sh);
            }
            if constexpr (k16)
                for (int r = 0; r < R; r++)
                    for (int t = 0; t < T; t++) {
                        si[r][t] = V::widen16(si[r][t], kShift >= 0 ? V::set1_32(ncorr[t]) : V::izero());
                        if constexpr (split8<P>()) si[r][t] = V::widen16x16(sh[r][t], si[r][t]);
                    }
            F dw[R], mw[R];
            for (int r = 0; r < R; r++) {
                mw[r] = V::zero();
                P::scales(*rec[r], scale[r], j, l0[r], dw[r], mw[r]);
            }
            for (int t = 0; t < T; t++)
                for (int r = 0; r < R; r++) {
                    const F s = V::cvt_i32(si[r][t]);
                    if constexpr (P::kRecDx) {  // dx once per record, below
                        tmp[r][t] = V::fmadd(s, dw[r], tmp[r][t]);
                        if constexpr (P::kMin) tmp[r][t] = V::fmadd(mw[r], V::set1(sg[t]), tmp[r][t]);
                    } else {
                        acc[r][t] = V::fmadd(s, V::mul(dw[r], V::set1(dx[t])), acc[r][t]);
                        if constexpr (P::kMin) acc[r][t] = V::fmadd(mw[r], V::set1(sx[t]), acc[r][t]);
                    }
                }
        }
        if constexpr (P::kRecDx)
            for (int t = 0; t < T; t++)
                for (int r = 0; r < R; r++) acc[r][t] = V::fmadd(tmp[r][t], V::set1(dx[t]), acc[r][t]);
    }
    store_tile(acc, y, ldy, nt, rows);
}

// The zmm paths' prompt tile, and the 256-bit vpdpbusd paths' for the types with a high-bit
// plane (quant_tiles): one row group against T tokens (16 on zmm, 8 on ymm), subblock by subblock. The
// subblock's kSub / 4 steps of levels are unpacked once into registers, then the tokens take them G
// at a time (G interleaved vpdpbusd chains), each token's sums scaled by the row scales as soon as
// they are done. No token's int32 sums outlive its group, so T is twice tile_q's and each
// unpacking serves 16 tokens. On an Emerald Rapids core, whose two 512-bit ports run the
// unpacking, the vpdpbusd and the float work alike, that measured Q4_0 +6-13%, Q4_K +9% (median
// of four rounds), Q5_K and Q6_K +11-15%, Q8_0 +1-13%; on Zen 5, Q8_0 +5-10%, Q4_0 +2-5%, Q6_K
// +3-10%, Q5_0 +8-10%, the min-term types level (bench/results/cpu-prompt.md, section 25).
//
// The token's activation scale dx is applied once per kDxRecs records: a K-quant record's
// subblocks share it, and so do each Q8AG group's blocks (a tile of 16 tokens exists only in a
// call of more than one token, whose 32-block types' tiles are Q8AG: act_format). The partial
// sums of those records stay in registers and are added, times dx, to sums in memory. Against a
// scale per block that saves one multiply per token and block (of 8 vpdpbusd and 3 float
// instructions) for the 32-block types (bench/results/cpu-prompt.md, section 27). Tiles of 32
// tokens with every token's sums in memory (loaded and stored once a subblock) measured
// 0.88-0.98x these on an Emerald Rapids core and 0.85-0.90x on Zen 5 (section 26). GCC 12 leaves
// register copies in these tiles (Q4_0: 4 vmovdqa64 a subblock beside 128 vpdpbusd). Compiling
// with -fira-loop-pressure -fsched-pressure -fschedule-insns, which removes them, read level on
// Zen 5 but 5-8% slower on Emerald Rapids (section 26), so they stay.
//
// On ymm (a row group is half a panel; no embedded broadcast, so each activation word is
// broadcast into a register; the min term in floats) 8 tokens, 2 at a time, serve each
// unpacking where tile_q's 4 did. One core of an AMX Xeon (the VEX avx-vnni path): Q6_K
// +8-9% (its engine prompt +7%), Q5_0 +6%, Q5_1 and Q5_K level; 4 tokens at a time, or
// prefetching records as on zmm, read 1-4% slower (bench/results/cpu-prompt.md, section 35).
template <class P, int T, int G>
TGT void tile_qt(const uint8_t* w, size_t pb, int g0, int64_t n_recs, const uint8_t* act, float* y, int64_t ldy, int nt,
                 int64_t rows) {
    static_assert(T % G == 0);
    using Rec = typename P::Rec;
    constexpr int kSteps = P::kSub / 4;
    constexpr size_t kSubBytes = act_sub_bytes(P::kSub, T);
    constexpr int kShift = corr_shift<P>();
    constexpr int kAhead = kLanes == 16 ? 6 : 0;
    constexpr int kDxRecs = P::kRecDx ? 1 : kActGroupBlocks;
    // Q4_K, Q5_K: the record's min term in integers, once per record (below): 4 vpdpwssd, a
    // conversion and an fma a token, where the float min term took 8 fma a token and 8 row-min
    // conversions a record. Prompt GEMM, one core: Q4_K +3% on Zen 5, +1% on Emerald Rapids (the
    // medians of 4-5 alternating rounds), Q5_K +3% on Zen 5, level on Emerald Rapids.
    constexpr bool kIntMins = P::kMin && P::kRecDx && V::kDotBroadcast;
    const Group gr = group(w, pb, g0);
    const Rec* rec = (const Rec*)gr.panel;
    const int l0 = gr.lane0;
    F acc[1][T];  // the partial sums of the records since dx was last applied
    alignas(64) float sums[T * kLanes] = {};
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) acc[0][t] = V::zero();
    int dx_left = kDxRecs;  // records until dx is applied
    for (int64_t b = 0; b < n_recs; b++, rec++) {
        typename P::Scale scale;
        scale.load(*rec, l0);
        const float* dx = nullptr;
        for (int j = 0; j < P::kSubs; j++, act += kSubBytes) {
            if constexpr (kAhead > 0) prefetch_slice<P>(rec + kAhead, j);
            I lv[kSteps];
            P::template levels<0>(*rec, j, l0, lv[0], lv[1]);
            P::template levels<1>(*rec, j, l0, lv[2], lv[3]);
            if constexpr (kSteps == 8) {
                P::template levels<2>(*rec, j, l0, lv[4], lv[5]);
                P::template levels<3>(*rec, j, l0, lv[6], lv[7]);
            }
            F dw, mw;  // mw: set and read only where P::kMin
            P::scales(*rec, scale, j, l0, dw, mw);
            const ActSubFields f = act_sub_fields(act, P::kSub, T);
            dx = f.dx;
            const int32_t* ncorr = f.ncorr;
#pragma GCC unroll 16
            for (int t0 = 0; t0 < T; t0 += G) {
                // The min term (times sigma; dx comes later) first: it does not wait for the sums,
                // and issued after them it cost Q4_K 5-8% on Zen 5.
                if constexpr (P::kMin && !kIntMins)
                    for (int g = 0; g < G; g++) acc[0][t0 + g] = V::fmadd(mw, V::set1(f.sg[t0 + g]), acc[0][t0 + g]);
                I si[G];
                for (int g = 0; g < G; g++) si[g] = kShift >= 0 ? V::set1_32(ncorr[t0 + g]) : V::izero();
                for (int k = 0; k < kSteps; k++)
                    for (int g = 0; g < G; g++) {
                        const uint8_t* x = act + P::kSub * (t0 + g) + 4 * k;
                        if constexpr (V::kDotBroadcast) si[g] = V::dot_bcast(si[g], lv[k], x);
                        else si[g] = V::dot(si[g], lv[k], V::set1_32(ld32(x)));
                    }
                for (int g = 0; g < G; g++) acc[0][t0 + g] = V::fmadd(V::cvt_i32(si[g]), dw, acc[0][t0 + g]);
            }
        }
        if constexpr (kIntMins) {
            // The sum over the record's 8 subblocks of mn[j] * sigma_j (exact in int32: 8 x 63 x
            // 4064), as 4 vpdpwssd on the int16 pairs of both (the tile's sigma pairs, which the
            // zmm paths' act_tile16 writes into every 16-token tile), then times -dmin
            I mp[4];
            for (int i = 0; i < 4; i++) mp[i] = V::u8_pairs(rec->mn[2 * i], rec->mn[2 * i + 1]);
            const uint8_t* rec_act = act - P::kSubs * kSubBytes;
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) {
                I m = V::izero();
                for (int i = 0; i < 4; i++)
                    m = V::dot_i16_bcast(m, mp[i], act_sub_fields(rec_act + i * kSubBytes, P::kSub, T).ncorr + t);
                acc[0][t] = V::fmadd(V::cvt_i32(m), scale.ndmin, acc[0][t]);
            }
        }
        if (P::kRecDx || --dx_left == 0 || b + 1 == n_recs) {
            dx_left = kDxRecs;
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) {
                float* s = sums + t * kLanes;
                __asm__("" : "+r"(s));  // kept in memory: GCC would otherwise carry all T sums through registers
                V::store(s, V::fmadd(acc[0][t], V::set1(dx[t]), V::load_f32(s)));
                acc[0][t] = V::zero();
            }
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) acc[0][t] = V::load_f32(sums + t * kLanes);
    store_tile(acc, y, ldy, nt, rows);
}

// ---- float micro-kernel --------------------------------------------------------------------

struct LoadF32 {
    static constexpr int kBytes = 64;  // one column of a panel
    TGT static F load(const uint8_t* p) { return V::load_f32((const float*)p); }
};
struct LoadF16 {
    static constexpr int kBytes = 32;
    TGT static F load(const uint8_t* p) { return V::cvt_f16((const half_bits*)p); }
};
struct LoadBF16 {
    static constexpr int kBytes = 32;
    TGT static F load(const uint8_t* p) { return V::cvt_bf16((const uint16_t*)p); }
};

// Column 0 of row groups g0 .. g0 + R - 1 of the panels at w, for the float loader L.
template <class L, int R>
TGT inline void float_cols(const uint8_t* w, size_t pb, int g0, const uint8_t* (&col)[R]) {
    for (int r = 0; r < R; r++) {
        const Group gr = group(w, pb, g0 + r);
        col[r] = gr.panel + gr.lane0 * L::kBytes / kPanelRows;
    }
}

template <int R, int N>
TGT inline void zero(F (&acc)[R][N]) {
    for (int r = 0; r < R; r++)
        for (int i = 0; i < N; i++) acc[r][i] = V::zero();
}

// Float decode on zmm reads 4 panels' streams (32 or 64 bytes a column each): prefetched 64
// columns ahead, F16 decode read 32.5-33.8 GB/s on a Zen 5 core against 27.3-29.4 without (16
// or 32 ahead: less; the ymm paths' 2 streams: level or slower, so they take none).
constexpr int kF1Ahead = kLanes == 16 ? 64 : 0;
template <class L, int R, int T>
TGT void tile_f(const uint8_t* w, size_t pb, int g0, int64_t cols, const uint8_t* act, float* y, int64_t ldy, int nt,
                int64_t rows) {
    const float* x = (const float*)act;
    F acc[R][T];
    const uint8_t* col[R];
    float_cols<L>(w, pb, g0, col);
    zero(acc);
    for (int64_t k = 0; k < cols; k++, x += T) {
        F wv[R];
        if constexpr (T == 1 && kF1Ahead > 0)
            if (k % (64 / L::kBytes) == 0)
                for (int r = 0; r < R; r++) _mm_prefetch((const char*)col[r] + (k + kF1Ahead) * L::kBytes, _MM_HINT_T0);
        for (int r = 0; r < R; r++) wv[r] = L::load(col[r] + k * L::kBytes);
        for (int t = 0; t < T; t++) {
            const F xb = V::set1(x[t]);
            for (int r = 0; r < R; r++) acc[r][t] = V::fmadd(wv[r], xb, acc[r][t]);
        }
    }
    store_tile(acc, y, ldy, nt, rows);
}

// Decode (one token) on R row groups with the columns dealt round U accumulators each, so that
// few groups (one panel: one sequential stream of weights) still keep R * U fma chains going.
template <class L, int R, int U>
TGT void tile_f1(const uint8_t* w, size_t pb, int g0, int64_t cols, const uint8_t* act, float* y, int64_t ldy, int nt,
                 int64_t rows) {
    const float* x = (const float*)act;
    F acc[R][U];
    const uint8_t* col[R];
    float_cols<L>(w, pb, g0, col);
    zero(acc);
    int64_t k = 0;
    for (; k + U <= cols; k += U)
        for (int u = 0; u < U; u++) {
            const F xb = V::set1(x[k + u]);
            for (int r = 0; r < R; r++) acc[r][u] = V::fmadd(L::load(col[r] + (k + u) * L::kBytes), xb, acc[r][u]);
        }
    for (; k < cols; k++) {
        const F xb = V::set1(x[k]);
        for (int r = 0; r < R; r++) acc[r][0] = V::fmadd(L::load(col[r] + k * L::kBytes), xb, acc[r][0]);
    }
    F sum[R][1];
    for (int r = 0; r < R; r++) {
        sum[r][0] = acc[r][0];
        for (int u = 1; u < U; u++) sum[r][0] = V::add(sum[r][0], acc[r][u]);
    }
    store_tile(sum, y, ldy, nt, rows);
}

// ---- entry points --------------------------------------------------------------------------

// Every row group of a task: in steps of R with TileR, then one at a time with Tile1.
using tile_fn = void (*)(const uint8_t*, size_t, int, int64_t, const uint8_t*, float*, int64_t, int, int64_t);
template <int R, tile_fn TileR, tile_fn Tile1>
TGT void run_groups(const PanelTask& a) {
    const int n = (int)(a.n_panels * kGroups);
    int g = 0;
    for (; g + R <= n; g += R) TileR(a.w, a.panel_bytes, g, a.n_recs, a.act, a.y + kLanes * g, a.ldy, a.nt, a.rows - kLanes * g);
    for (; g < n; g++) Tile1(a.w, a.panel_bytes, g, a.n_recs, a.act, a.y + kLanes * g, a.ldy, a.nt, a.rows - kLanes * g);
}

// Whether P's levels are put together from more than one plane (hb1 beside nib, or Q6_K's l6):
// the Q5 types and Q6_K. Those take more registers per step, which bounds how many row groups a
// tile can hold.
template <class P>
constexpr bool high_bit_levels() { return P::kMaxLevel == 31 || P::kMaxLevel == 63; }

template <class P, int T>
struct Quant {
    // split8 keeps two sums per tile entry: one row group, or they would not fit the registers
    static constexpr int R = split8<P>() && T > 1 ? 1 : V::quant_groups(T, high_bit_levels<P>());
    TGT static void run(const PanelTask& a) {
        if constexpr (T == 16 && kLanes == 16) run_groups<1, tile_qt<P, 16, 4>, tile_qt<P, 16, 4>>(a);
        else if constexpr (T == 8 && kLanes == 8) run_groups<1, tile_qt<P, 8, 2>, tile_qt<P, 8, 2>>(a);
        else run_groups<R, tile_q<P, R, T>, tile_q<P, 1, T>>(a);
    }
};

template <class L, int T>
struct Float {
    static constexpr int R = V::float_groups(T);
    static constexpr int U = V::kFloatDecodeSums;
    TGT static void run(const PanelTask& a) {
        if constexpr (T == 1 && U > 0) run_groups<R, tile_f1<L, R, U>, tile_f1<L, 1, U>>(a);
        else run_groups<R, tile_f<L, R, T>, tile_f<L, 1, T>>(a);
    }
};

// Tile sizes {1, 2, 4, TMax}, and 8 where TMax is 16: V::kQuantTiles for the quantized types
// (V::kSplit8Tiles where split8), V::kFloatTiles for the float types (which, with one fma per
// weight and token, take larger tiles). A prompt's last tile takes the smallest that holds it.
template <template <class, int> class K, class P, int TMax>
TGT void dispatch(const PanelTask& a) {
    switch (a.T) {
        case 1: K<P, 1>::run(a); break;
        case 2: K<P, 2>::run(a); break;
        case 4: K<P, 4>::run(a); break;
        case 8:
            if constexpr (TMax > 8) {
                K<P, 8>::run(a);
                break;
            }
            [[fallthrough]];
        default: K<P, TMax>::run(a); break;
    }
}

template <template <class, int> class K, class P, int TMax>
TypeKernel type_kernel(int corr_shift) {
    TypeKernel k{nullptr, dispatch<K, P, TMax>, corr_shift};
    int last = 0;
    for (int t : {1, 2, 4, 8, TMax})
        if (t > last && t <= TMax) k.tile_sizes[k.n_tile_sizes++] = last = t;
    return k;
}

// The largest token tile of P on this V: V::kSplit8Tiles where split8, 8 (tile_qt) for the types
// with a high-bit plane on the 256-bit vpdpbusd paths, else V::kQuantTiles.
template <class P>
constexpr int quant_tiles() {
    if constexpr (split8<P>()) return V::kSplit8Tiles;
    if constexpr (kLanes == 8 && V::kUnsignedDot && high_bit_levels<P>()) return 8;
    return V::kQuantTiles;
}

template <class P>
TypeKernel quant_kernel() {
    return type_kernel<Quant, P, quant_tiles<P>()>(corr_shift<P>());
}

template <class L>
TypeKernel float_kernel() {
    return type_kernel<Float, L, V::kFloatTiles>(-1);
}

// The path's table: every type on these kernels.
KernelSet make_kernel_set(const char* name) {
    KernelSet k;
    k.name = name;
    k.layout = Layout::Panels;
    k.act_row = act_tile_row_avx2;  // every panel path has AVX2
    if constexpr (kLanes == 16) k.act_tile16 = act_tile_fill_avx512;  // and the zmm ones AVX-512 F/BW
    k.k[(uint32_t)GgmlType::F32] = float_kernel<LoadF32>();
    k.k[(uint32_t)GgmlType::F16] = float_kernel<LoadF16>();
    k.k[(uint32_t)GgmlType::BF16] = float_kernel<LoadBF16>();
    k.k[(uint32_t)GgmlType::Q4_0] = quant_kernel<P_Q4_0>();
    k.k[(uint32_t)GgmlType::Q4_1] = quant_kernel<P_Q4_1>();
    k.k[(uint32_t)GgmlType::Q5_0] = quant_kernel<P_Q5_0>();
    k.k[(uint32_t)GgmlType::Q5_1] = quant_kernel<P_Q5_1>();
    k.k[(uint32_t)GgmlType::Q8_0] = quant_kernel<P_Q8_0>();
    k.k[(uint32_t)GgmlType::Q4_K] = quant_kernel<P_Q4_K>();
    k.k[(uint32_t)GgmlType::Q5_K] = quant_kernel<P_Q5_K>();
    k.k[(uint32_t)GgmlType::Q6_K] = quant_kernel<P_Q6_K>();
    return k;
}

}  // namespace
}  // namespace tandem::cpu::detail
