// act_tile_fill_avx512 (cpu_kernels.h): a whole 16-token activation tile (cpu_panels.h) in a
// prompt's formats with one scale per 256-column group (Q8AG, Q8K), on zmm registers, for the
// 512-bit panel paths. The same bytes as the reference (act_tile_row per token, then
// act_sigma_pairs) for every finite input, by the same arithmetic as act_tile_row_avx2: the
// group's |x| maximum (exact in any order), d = amax / 127 and 1 / d (0 where infinite), x * (1 /
// d) rounded to nearest even by vcvtps2dq, and integer sums.
//
// Group by group, each token's 256 values take 16 zmm: one and + max each for the maximum, one
// multiply + conversion for the rounding, packs to bytes, and its 16-column sums from the bytes.
// The scales and sums then go into the group's records for all 16 tokens at once, one vector
// store per field, where the AVX2 row quantizer stores them one token at a time.
// Every function carries the target attribute; only called where the CPU has AVX-512 F/BW.

// GCC 12 warns "__Y may be used uninitialized" inside avx512fintrin.h for masked intrinsics
// compiled under a target attribute (its _mm512_undefined_* placeholders): a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu_kernels.h"
#include "cpu_panels.h"

#define TGT __attribute__((target("avx512f,avx512bw")))

namespace tandem::cpu::detail {
namespace {

constexpr int kGroup = 256;  // columns of one scale: 8 chunks of 32
constexpr int kTokens = 16;  // the tile: one token per lane of the field vectors
static_assert(kGroup == 32 * kActGroupBlocks, "a Q8AG group is one step");

// The largest |x| of the 256 values at x. A NaN is skipped, as in the reference: max_ps returns
// its second operand when the first is NaN, so no lane holds one.
TGT inline float group_abs_max(const float* x) {
    __m512 m[4];
    for (int k = 0; k < 4; k++) m[k] = _mm512_setzero_ps();
    for (int i = 0; i < 16; i++) m[i % 4] = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * i)), m[i % 4]);
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m[0], m[1]), _mm512_max_ps(m[2], m[3])));
}

// Token tt's group of 256 values at x (its first n_chunks chunks of 32 real) times id, rounded:
// the int8 values into the group's records from rec (S columns each, rec_bytes apart) at the
// token's slot, and the sums of the subblocks: lane u of the result for S = 16, lane 2u for S = 32.
TGT inline __m512i put_group_values(const float* x, float id, int n_chunks, int S, uint8_t* rec, size_t rec_bytes,
                                    int tt) {
    const __m512 idv = _mm512_set1_ps(id);
    // packs work within 128-bit lanes: dword 4l + i of the packed pair holds the l-th 4 values of
    // its i-th source vector; this puts the 4 sources' 16 values back in order
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i ones8 = _mm512_set1_epi8(1), ones16 = _mm512_set1_epi16(1);
    __m512i sums[4];  // sums[k]: dword l holds the sum of values 4l..4l+3 of chunks 2k, 2k+1
    for (int k = 0; k < 4; k++) {
        __m512i i[4];
        for (int j = 0; j < 4; j++) i[j] = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 64 * k + 16 * j), idv));
        const __m512i b = _mm512_permutexvar_epi32(
            order, _mm512_packs_epi16(_mm512_packs_epi32(i[0], i[1]), _mm512_packs_epi32(i[2], i[3])));
        sums[k] = _mm512_madd_epi16(_mm512_maddubs_epi16(ones8, b), ones16);
        for (int h = 0; h < 2; h++) {  // chunk 2k + h: bytes 32h .. 32h + 31 of b
            const int c = 2 * k + h;
            if (c >= n_chunks) break;
            const __m256i q = h ? _mm512_extracti64x4_epi64(b, 1) : _mm512_castsi512_si256(b);
            if (S == 32) {
                _mm256_storeu_si256((__m256i*)(rec + c * rec_bytes + 32 * tt), q);
            } else {
                _mm_storeu_si128((__m128i*)(rec + 2 * c * rec_bytes + 16 * tt), _mm256_castsi256_si128(q));
                _mm_storeu_si128((__m128i*)(rec + (2 * c + 1) * rec_bytes + 16 * tt), _mm256_extracti128_si256(q, 1));
            }
        }
    }
    // 128-bit block b of sums[k] holds 16-column subblock 4k + b as 4 partial sums; fold them
    const __m512i x01 = _mm512_add_epi32(_mm512_unpacklo_epi64(sums[0], sums[1]), _mm512_unpackhi_epi64(sums[0], sums[1]));
    const __m512i x23 = _mm512_add_epi32(_mm512_unpacklo_epi64(sums[2], sums[3]), _mm512_unpackhi_epi64(sums[2], sums[3]));
    const __m512i s01 = _mm512_add_epi32(x01, _mm512_shuffle_epi32(x01, _MM_PERM_CDAB));  // lanes 4b, 4b+2: b, 4+b
    const __m512i s23 = _mm512_add_epi32(x23, _mm512_shuffle_epi32(x23, _MM_PERM_CDAB));  // lanes 4b+1, 4b+3: 8+b, 12+b
    const __m512i mixed = _mm512_mask_blend_epi32(0xAAAA, s01, s23);  // lane 4b + {0,1,2,3}: b, 8+b, 4+b, 12+b
    const __m512i sub = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 1, 5, 9, 13, 3, 7, 11, 15), mixed);
    if (S == 16) return sub;
    return _mm512_add_epi32(sub, _mm512_shuffle_epi32(sub, _MM_PERM_CDAB));  // lane 2u: 16-column halves 2u, 2u + 1
}

}  // namespace

TGT void act_tile_fill_avx512(int S, const float* X, int64_t ldx, int64_t cols, int nt, int corr_shift,
                              bool sigma_pairs, uint8_t* tile) {
    const size_t rec_bytes = act_sub_bytes(S, kTokens);
    alignas(64) float d[kTokens];
    alignas(64) int32_t sums[kTokens][16];  // token t's subblock sums (put_group_values' lanes)
    alignas(64) float pad[kTokens][kGroup];
    std::memset(d, 0, sizeof d);  // tokens nt.. stay zero: their fields are zero
    std::memset(sums, 0, sizeof sums);
    // lane t: the start of token t's row of `sums`
    const __m512i token_rows = _mm512_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240);
    for (int64_t g0 = 0; g0 < cols; g0 += kGroup) {
        // Q8AG rows may end inside a group (Q8K rows are whole groups): its padding reads as zeros,
        // which do not change the maximum, and its chunks are not stored
        const int n_chunks = (int)std::min<int64_t>(8, (cols - g0) / 32);
        const float* xg = X + g0;
        int64_t ld = ldx;
        if (n_chunks < 8) {
            std::memset(pad, 0, sizeof pad);
            for (int tt = 0; tt < nt; tt++) std::memcpy(pad[tt], xg + tt * ldx, (size_t)n_chunks * 32 * sizeof(float));
            xg = pad[0];
            ld = kGroup;
        }
        // Token tt + 1's maximum is taken before token tt's values: the values wait for their
        // scale through two divisions, and with each token's maximum, scale and values in turn a
        // Zen 5 core took 3.1 ns per token and 32 columns against 2.1
        uint8_t* rec = tile + (size_t)(g0 / S) * rec_bytes;
        float amax = nt > 0 ? group_abs_max(xg) : 0.0f;
        for (int tt = 0; tt < nt; tt++) {
            d[tt] = amax / 127.0f;
            const float inv = 1.0f / d[tt];
            if (tt + 1 < nt) amax = group_abs_max(xg + (tt + 1) * ld);
            _mm512_store_si512(sums[tt], put_group_values(xg + tt * ld, inv < INFINITY ? inv : 0.0f, n_chunks, S, rec,
                                                          rec_bytes, tt));
        }
        const __m512 dv = _mm512_load_ps(d);
        // The fields of the group's subblocks, 16 tokens a vector: subblock u's sums are lane
        // u (S = 16) or 2u (S = 32) of every token's row of `sums`
        const int n_sub = n_chunks * 32 / S;
        __m512i sig[8];
        for (int u = 0; u < n_sub; u++) {
            const __m512i s = _mm512_i32gather_epi32(_mm512_add_epi32(token_rows, _mm512_set1_epi32(S == 32 ? 2 * u : u)),
                                                     &sums[0][0], 4);
            if (u < 8) sig[u] = s;
            float* fields = (float*)(rec + u * rec_bytes + S * kTokens);
            const __m512 sf = _mm512_cvtepi32_ps(s);
            _mm512_storeu_ps(fields, dv);
            _mm512_storeu_ps(fields + kTokens, _mm512_mul_ps(dv, sf));
            _mm512_storeu_ps(fields + 2 * kTokens, sf);
            __m512i ncorr = _mm512_setzero_si512();
            if (corr_shift >= 0) ncorr = _mm512_sub_epi32(ncorr, _mm512_sll_epi32(s, _mm_cvtsi32_si128(corr_shift)));
            _mm512_storeu_si512(fields + 3 * kTokens, ncorr);
        }
        // Q4_K / Q5_K (act_sigma_pairs): subblock j < 4's ncorr holds the int16 pair (sigma of
        // subblock 2j, of 2j + 1). Their rows (Q8K) are whole groups, so all 8 sig are set.
        if (sigma_pairs)
            for (int j = 0; j < 4; j++) {
                const __m512i pair = _mm512_or_si512(_mm512_and_si512(sig[2 * j], _mm512_set1_epi32(0xFFFF)),
                                                     _mm512_slli_epi32(sig[2 * j + 1], 16));
                _mm512_storeu_si512(rec + j * rec_bytes + S * kTokens + 12 * kTokens, pair);
            }
    }
}

}  // namespace tandem::cpu::detail
