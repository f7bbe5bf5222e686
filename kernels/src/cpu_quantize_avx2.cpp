// quantize_act_avx2 (cpu_kernels.h): the activation quantizers of cpu_dot_scalar.cpp on ymm
// registers, for the panel paths (all of which have AVX2). The same arithmetic in the same
// order for every finite input, so the results are bit for bit those of quantize_act: the
// block's |x| maximum (max is exact in any order), d = amax / 127 and 1 / d as scalars,
// x * (1 / d) rounded to nearest even by vcvtps2dq (quantize_act's round_i8 rounds the same way),
// and integer sums. Every function carries the target attribute; only called where the CPU
// has AVX2.
#include <immintrin.h>

#include <cstring>

#include "cpu_kernels.h"

#define TGT __attribute__((target("avx2,fma")))

namespace tandem::cpu::detail {
namespace {

TGT inline __m256 abs_ps(__m256 v) { return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))); }

TGT inline int hsum(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

// The largest |x| of n floats (n a multiple of 32). A NaN is skipped, as in abs_max: max_ps
// returns its second operand when the first is NaN.
TGT inline float abs_max(const float* x, int n) {
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) m = _mm256_max_ps(abs_ps(_mm256_loadu_ps(x + j)), m);
    alignas(32) float lane[8];
    _mm256_store_ps(lane, m);
    float amax = 0;
    for (float v : lane) amax = v > amax ? v : amax;
    return amax;
}

// 32 activations times id, rounded, into qs[32]; the int32 sums of each half (16 values).
// id is infinite only when the block's amax is below 127 * 2^-128 (all of it subnormal or
// zero): then every product is infinite or NaN, which round_i8 turns into 0 and vcvtps2dq into
// INT_MIN, so that case is written as zeros here.
TGT inline void round32(const float* x, float id_s, int8_t* qs, int& sum_lo, int& sum_hi) {
    if (id_s > 3.4e38f) {
        std::memset(qs, 0, 32);
        sum_lo = sum_hi = 0;
        return;
    }
    const __m256 id = _mm256_set1_ps(id_s);
    __m256i i[4];
    for (int k = 0; k < 4; k++) i[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), id));
    sum_lo = hsum(_mm256_add_epi32(i[0], i[1]));
    sum_hi = hsum(_mm256_add_epi32(i[2], i[3]));
    // packs work within 128-bit lanes: bytes come out as 4-value groups 0,2,4,6,1,3,5,7
    const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3]));
    _mm256_storeu_si256((__m256i*)qs, _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

TGT void quantize_q8a(const float* x, block_q8a* y, int64_t n) {
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        const float d = abs_max(x, 32) / 127;
        const float id = d ? 1.0f / d : 0.0f;
        int lo, hi;
        round32(x, id, y[i].qs, lo, hi);
        y[i].d = d;
        y[i].s = d * (float)(lo + hi);
    }
}

TGT void quantize_q8k(const float* x, block_q8k* y, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        const float d = abs_max(x, QK_K) / 127;
        const float id = d ? 1.0f / d : 0.0f;
        for (int c = 0; c < QK_K / 32; c++) {
            int lo, hi;
            round32(x + 32 * c, id, y[i].qs + 32 * c, lo, hi);
            y[i].bsums[2 * c] = (int16_t)lo;
            y[i].bsums[2 * c + 1] = (int16_t)hi;
        }
        y[i].d = d;
    }
}

}  // namespace

void quantize_act_avx2(ActFormat f, const float* x, void* dst, int64_t n) {
    switch (f) {
        case ActFormat::F32: std::memcpy(dst, x, (size_t)n * sizeof(float)); break;
        case ActFormat::Q8A: quantize_q8a(x, (block_q8a*)dst, n); break;
        case ActFormat::Q8K: quantize_q8k(x, (block_q8k*)dst, n); break;
    }
}

}  // namespace tandem::cpu::detail
