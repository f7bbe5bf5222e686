// Prefill attention on the CPU (attend_causal, tandem/cpu_attention.h): the kernel of
// attention_causal.h on zmm (AVX-512) or ymm (AVX2) registers, chosen at run time, and the
// per-row attend() loop elsewhere.
#include <immintrin.h>

// GCC 12 warns "__Y may be used uninitialized" inside avx512fintrin.h for intrinsics compiled
// under a target attribute (its _mm512_undefined_* placeholders): a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "tandem/cpu_attention.h"
#include "tandem/cpu_matmul.h"
#include "vec_exp.h"

namespace tandem::cpu_attention {

// ---- AVX2 ----------------------------------------------------------------------------------

namespace avx2 {
#define TGT __attribute__((target("avx2,fma,f16c")))

struct W {
    using F = __m256;
    static constexpr int kLanes = 8;
    // Key blocks of 24 (three vectors): each broadcast query channel serves three key vectors, and
    // a block's softmax steps cover 24 keys. One Zen 5 core, prefill attention against blocks of
    // 8: 1.08-1.16x with 16, another 1.03-1.05x with 24 (bench/results/engine-cpu.md, session 23).
    // The 4 rows' 12 sums, 3 key vectors and a broadcast fill the 16 registers.
    static constexpr int kKeyVecs = 3;
    TGT static F zero() { return _mm256_setzero_ps(); }
    TGT static F set1(float v) { return _mm256_set1_ps(v); }
    TGT static F load(const float* p) { return _mm256_loadu_ps(p); }
    TGT static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
    TGT static F load_kv(const void* base, int64_t off, GgmlType t) {
        if (t == GgmlType::F32) return _mm256_loadu_ps((const float*)base + off);
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)((const half_bits*)base + off)));
    }
    TGT static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
    TGT static F add(F a, F b) { return _mm256_add_ps(a, b); }
    TGT static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
    TGT static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
    TGT static F max(F a, F b) { return _mm256_max_ps(a, b); }
    // Lanes [0, n) of v, the others `fill`.
    TGT static F first_or(int n, F v, float fill) {
        const __m256 lane = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
        return _mm256_blendv_ps(_mm256_set1_ps(fill), v, _mm256_cmp_ps(lane, _mm256_set1_ps((float)n), _CMP_LT_OQ));
    }
    // r[j] lane c -> r[c] lane j (an 8 x 8 transpose).
    TGT static void transpose(F (&r)[8]) {
        __m256 t[8], u[8];
        for (int k = 0; k < 4; k++) {
            t[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]);
            t[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
        }
        for (int k = 0; k < 2; k++) {
            u[4 * k] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], 0x44);
            u[4 * k + 1] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], 0xEE);
            u[4 * k + 2] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
            u[4 * k + 3] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xEE);
        }
        for (int j = 0; j < 4; j++) {
            r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
            r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
        }
    }
    TGT static float hmax(F v) {
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
    }
    TGT static float reduce_add(F v) {
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
    }
    TGT static bool any_gt(F v, float m) { return _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_set1_ps(m), _CMP_GT_OQ)) != 0; }
    TGT static F exp_neg(F x) { return cpu_ops::exp_neg(x); }
};
#include "cpu_attention_causal.h"
#undef TGT
}  // namespace avx2

// ---- AVX-512 -------------------------------------------------------------------------------

namespace avx512 {
#define TGT __attribute__((target("avx512f,avx2,fma,f16c")))

struct W {
    using F = __m512;
    static constexpr int kLanes = 16;
    // Key blocks of 64 (four vectors; AVX2 takes three): one Zen 5 core, prefill attention against
    // blocks of 16: 1.13-1.15x with 32 at 924-1,968 cached keys, another 1.03-1.08x with 64; decode
    // level (bench/results/engine-cpu.md, session 23).
    static constexpr int kKeyVecs = 4;
    TGT static F zero() { return _mm512_setzero_ps(); }
    TGT static F set1(float v) { return _mm512_set1_ps(v); }
    TGT static F load(const float* p) { return _mm512_loadu_ps(p); }
    TGT static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
    TGT static F load_kv(const void* base, int64_t off, GgmlType t) {
        if (t == GgmlType::F32) return _mm512_loadu_ps((const float*)base + off);
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)((const half_bits*)base + off)));
    }
    TGT static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
    TGT static F add(F a, F b) { return _mm512_add_ps(a, b); }
    TGT static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
    TGT static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
    TGT static F max(F a, F b) { return _mm512_max_ps(a, b); }
    // Lanes [0, n) of v, the others `fill` (n may be below 0 or above 16: a block's second vector).
    TGT static F first_or(int n, F v, float fill) {
        const __mmask16 m = n <= 0 ? 0 : n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1);
        return _mm512_mask_blend_ps(m, _mm512_set1_ps(fill), v);
    }
    // r[j] lane c -> r[c] lane j (a 16 x 16 transpose: pairs of floats, of doubles, then 128-bit
    // lanes twice).
    TGT static void transpose(F (&r)[16]) {
        __m512 t[16], u[16], v[16];
        for (int k = 0; k < 8; k++) {
            t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
            t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
        }
        for (int k = 0; k < 4; k++) {
            const __m512d a = _mm512_castps_pd(t[4 * k]), b = _mm512_castps_pd(t[4 * k + 2]);
            const __m512d c = _mm512_castps_pd(t[4 * k + 1]), d = _mm512_castps_pd(t[4 * k + 3]);
            u[4 * k] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
            u[4 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
            u[4 * k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
            u[4 * k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
        }
        for (int k = 0; k < 2; k++)
            for (int j = 0; j < 4; j++) {
                v[8 * k + j] = _mm512_shuffle_f32x4(u[8 * k + j], u[8 * k + 4 + j], 0x88);
                v[8 * k + 4 + j] = _mm512_shuffle_f32x4(u[8 * k + j], u[8 * k + 4 + j], 0xdd);
            }
        for (int j = 0; j < 8; j++) {
            r[j] = _mm512_shuffle_f32x4(v[j], v[8 + j], 0x88);
            r[8 + j] = _mm512_shuffle_f32x4(v[j], v[8 + j], 0xdd);
        }
    }
    TGT static float hmax(F v) { return _mm512_reduce_max_ps(v); }
    TGT static float reduce_add(F v) { return _mm512_reduce_add_ps(v); }
    TGT static bool any_gt(F v, float m) { return _mm512_cmp_ps_mask(v, _mm512_set1_ps(m), _CMP_GT_OQ) != 0; }
    TGT static F exp_neg(F x) { return cpu_ops::exp_neg(x); }
};
#include "cpu_attention_causal.h"
#undef TGT
}  // namespace avx512

// ---- dispatch ------------------------------------------------------------------------------

void attend_causal(const float* Q, int64_t q_stride, int n_q, int group, int64_t pos0, const void* K,
                   const void* V, int64_t kv_stride, int hd, float scale, GgmlType t, float* out,
                   int64_t out_stride) {
    const cpu::OpsIsa isa = cpu::ops_isa();
    const bool fits = hd <= 256 && n_q * group <= avx2::kMaxRows;
    if (fits && hd % 16 == 0 && isa == cpu::OpsIsa::Avx512)
        return avx512::attend_causal_w(Q, q_stride, n_q, group, pos0, K, V, kv_stride, hd, scale, t, out, out_stride);
    if (fits && hd % 8 == 0 && isa >= cpu::OpsIsa::Avx2)
        return avx2::attend_causal_w(Q, q_stride, n_q, group, pos0, K, V, kv_stride, hd, scale, t, out, out_stride);
    for (int tq = 0; tq < n_q; tq++)
        for (int g = 0; g < group; g++)
            attend(Q + tq * q_stride + g * hd, K, V, pos0 + tq + 1, kv_stride, hd, scale, t, out + tq * out_stride + g * hd);
}

}  // namespace tandem::cpu_attention
