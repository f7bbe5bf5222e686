// Internal to the x86 SIMD paths: 256-bit unpackers from the weight block formats to u8 levels
// and the row x token-tile driver, shared by cpu_dot_avx2.cpp and cpu_dot_avx512.cpp. The
// including file defines TGT (its target attribute) first; everything here is in an anonymous
// namespace, so each path gets its own copy compiled for its own target and no out-of-line
// copy is shared between them.
#pragma once
#include <immintrin.h>

#include <cstring>

#include "cpu_kernels.h"

#ifndef TGT
#error "define TGT (the target attribute) before including cpu_x86_unpack.h"
#endif

namespace tandem::cpu::detail {
namespace {

TGT inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

TGT inline float h2f(half_bits h) { return _cvtsh_ss(h); }

// Software prefetch of the weight stream kPrefetchBytes ahead of the block being read: decode
// reads each weight byte once, and the hardware prefetcher alone leaves the row-switch and
// page-crossing misses exposed. Reading a little past the end of W is harmless (a prefetch never
// faults).
constexpr int kPrefetchBytes = 1024;
TGT inline void prefetch_ahead(const void* p) {
#ifndef TANDEM_NO_PREFETCH
    _mm_prefetch((const char*)p + kPrefetchBytes, _MM_HINT_T0);
#else
    (void)p;
#endif
}

// 16 bytes of packed nibbles -> 32 u8 levels: low nibbles (elements 0..15) then high (16..31).
TGT inline __m256i nibbles32(const uint8_t* qs) {
    const __m128i v = _mm_loadu_si128((const __m128i*)qs);
    const __m256i both = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// 32 bits -> 32 bytes, 0xFF where the bit is set (bit j -> byte j).
TGT inline __m256i bits32(const uint8_t* p) {
    uint32_t x;
    std::memcpy(&x, p, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}

// ---- 32-block weights x block_q8a ----------------------------------------------------------
//
// Each Unpack gives, per block: q = the 32 levels as u8, dw = the scale, cw = the offset
// coefficient, so that  dot(block, y) = dw * dy * sum(q * qy) + cw * y.s.
// Q8_0 levels are signed: it uses |q| and sign(qy, q) instead (Signed = true).

struct UnpQ4_0 {
    using Block = block_q4_0;
    static constexpr bool Signed = false;
    TGT static __m256i q(const Block& b) { return nibbles32(b.qs); }
    TGT static void dc(const Block& b, float* d, float* c) { *d = h2f(b.d); *c = -8 * *d; }
};
struct UnpQ4_1 {
    using Block = block_q4_1;
    static constexpr bool Signed = false;
    TGT static __m256i q(const Block& b) { return nibbles32(b.qs); }
    TGT static void dc(const Block& b, float* d, float* c) { *d = h2f(b.d); *c = h2f(b.m); }
};
struct UnpQ5_0 {
    using Block = block_q5_0;
    static constexpr bool Signed = false;
    TGT static __m256i q(const Block& b) {
        return _mm256_or_si256(nibbles32(b.qs), _mm256_and_si256(bits32(b.qh), _mm256_set1_epi8(0x10)));
    }
    TGT static void dc(const Block& b, float* d, float* c) { *d = h2f(b.d); *c = -16 * *d; }
};
struct UnpQ5_1 {
    using Block = block_q5_1;
    static constexpr bool Signed = false;
    TGT static __m256i q(const Block& b) {
        return _mm256_or_si256(nibbles32(b.qs), _mm256_and_si256(bits32(b.qh), _mm256_set1_epi8(0x10)));
    }
    TGT static void dc(const Block& b, float* d, float* c) { *d = h2f(b.d); *c = h2f(b.m); }
};
struct UnpQ8_0 {
    using Block = block_q8_0;
    static constexpr bool Signed = true;
    TGT static __m256i q(const Block& b) { return _mm256_loadu_si256((const __m256i*)b.qs); }
    TGT static void dc(const Block& b, float* d, float* c) { *d = h2f(b.d); *c = 0; }
};

// ---- K-quant weights x block_q8k -----------------------------------------------------------
//
// A 256-block unpacks to 8 x 32 u8 levels, an i16 scale per 16 elements (sc[j] covers levels
// q[j]), and for the offset term 16 i16 coefficients against the activation's bsums:
//   dot(block, y) = d * dy * sum_j sum(q_j * qy_j * sc_j) + cmin * dy * sum_g mcoef_g * bsums_g

struct KUnpacked {
    __m256i q[8];
    __m256i sc[8];
    __m256i mcoef;
    float d, cmin;
};

// The 6-bit scale/min pairs of Q4_K/Q5_K as i16 vectors, unpacked with 32-bit masks (the same
// bit layout get_scale_min_k4 reads one pair at a time): ut[0..1] become the 8 scales, ut[2..3]
// the 8 mins, one byte each.
TGT inline void k4_scales(const uint8_t* scales, KUnpacked& u) {
    uint32_t ut[4];
    std::memcpy(ut, scales, 12);
    const uint32_t km1 = 0x3f3f3f3f, km2 = 0x0f0f0f0f, km3 = 0x03030303;
    ut[3] = ((ut[2] >> 4) & km2) | (((ut[1] >> 6) & km3) << 4);
    const uint32_t mins_lo = ut[1] & km1;
    ut[1] = (ut[2] & km2) | (((ut[0] >> 6) & km3) << 4);
    ut[2] = mins_lo;
    ut[0] &= km1;
    const __m128i sm = _mm_set_epi32((int)ut[3], (int)ut[2], (int)ut[1], (int)ut[0]);
    const __m128i sc16 = _mm_cvtepu8_epi16(sm);                    // scale j in i16 lane j
    const __m128i mn16 = _mm_cvtepu8_epi16(_mm_srli_si128(sm, 8));  // min j in i16 lane j
    u.mcoef = _mm256_set_m128i(_mm_unpackhi_epi16(mn16, mn16), _mm_unpacklo_epi16(mn16, mn16));
    const __m256i scb = _mm256_broadcastsi128_si256(sc16);
    for (int j = 0; j < 8; j++)  // broadcast i16 lane j: bytes 2j, 2j+1 into every lane
        u.sc[j] = _mm256_shuffle_epi8(scb, _mm256_set1_epi16((short)(0x0100 + 0x0202 * j)));
}

struct UnpQ4_K {
    using Block = block_q4_K;
    TGT static void unpack(const Block& b, KUnpacked& u) {
        const __m256i m4 = _mm256_set1_epi8(0x0F);
        for (int c = 0; c < 4; c++) {
            const __m256i v = _mm256_loadu_si256((const __m256i*)(b.qs + 32 * c));
            u.q[2 * c] = _mm256_and_si256(v, m4);
            u.q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        }
        k4_scales(b.scales, u);
        u.d = h2f(b.d);
        u.cmin = -h2f(b.dmin);
    }
};

struct UnpQ5_K {
    using Block = block_q5_K;
    TGT static void unpack(const Block& b, KUnpacked& u) {
        const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
        const __m256i h = _mm256_loadu_si256((const __m256i*)b.qh);
        for (int c = 0; c < 4; c++) {
            const __m256i v = _mm256_loadu_si256((const __m256i*)(b.qs + 32 * c));
            const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(h, 2 * c), one);
            const __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(h, 2 * c + 1), one);
            u.q[2 * c] = _mm256_or_si256(_mm256_and_si256(v, m4), _mm256_slli_epi16(h0, 4));
            u.q[2 * c + 1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), _mm256_slli_epi16(h1, 4));
        }
        k4_scales(b.scales, u);
        u.d = h2f(b.d);
        u.cmin = -h2f(b.dmin);
    }
};

struct UnpQ6_K {
    using Block = block_q6_K;
    TGT static void unpack(const Block& b, KUnpacked& u) {
        const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
        for (int c = 0; c < 2; c++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i*)(b.ql + 64 * c));
            const __m256i l1 = _mm256_loadu_si256((const __m256i*)(b.ql + 64 * c + 32));
            const __m256i h = _mm256_loadu_si256((const __m256i*)(b.qh + 32 * c));
            u.q[4 * c + 0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30));
            u.q[4 * c + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30));
            u.q[4 * c + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, m30));
            u.q[4 * c + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                             _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
        }
        const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)b.scales));
        for (int j = 0; j < 8; j++) {
            // lanes 0..7 (elements 0..15 of sub-block j) use scale 2j, lanes 8..15 scale 2j+1
            const __m256i lo = _mm256_set1_epi16(b.scales[2 * j]), hi = _mm256_set1_epi16(b.scales[2 * j + 1]);
            u.sc[j] = _mm256_blend_epi32(lo, hi, 0xF0);
        }
        u.mcoef = s16;
        u.d = h2f(b.d);
        u.cmin = -32 * u.d;
    }
};

// ---- the row x token-tile driver (both paths) ----------------------------------------------

constexpr int kMaxT = 4;  // tokens per tile

// Kern<T>(n, w_row, x_rows[T], out[T]). Tokens go in tiles of kMaxT; within a tile every row of
// W is visited, so the tile's activations stay in L1 while the rows stream past.
template <template <int> class Kern>
TGT void gemm(int64_t n, const void* W, size_t ldw, int64_t nr, const void* X, size_t ldx, int64_t nt, float* Y,
              int64_t ldy) {
    for (int64_t t0 = 0; t0 < nt; t0 += kMaxT) {
        const int tt = (int)(nt - t0 < kMaxT ? nt - t0 : kMaxT);
        const void* xs[kMaxT];
        for (int k = 0; k < tt; k++) xs[k] = (const char*)X + (t0 + k) * ldx;
        for (int64_t r = 0; r < nr; r++) {
            const void* w = (const char*)W + r * ldw;
            float out[kMaxT];
            switch (tt) {
                case 1: Kern<1>::run(n, w, xs, out); break;
                case 2: Kern<2>::run(n, w, xs, out); break;
                case 3: Kern<3>::run(n, w, xs, out); break;
                default: Kern<4>::run(n, w, xs, out); break;
            }
            for (int k = 0; k < tt; k++) Y[(t0 + k) * ldy + r] = out[k];
        }
    }
}

}  // namespace
}  // namespace tandem::cpu::detail
