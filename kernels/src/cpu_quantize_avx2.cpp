// act_tile_row_avx2 (cpu_kernels.h): one token's activations quantized on ymm registers
// straight into its slots of an activation tile (cpu_panels.h), for the panel paths (all of
// which have AVX2). The same arithmetic as the reference act_tile_row (quantize_act, then
// copied) for every finite input, so the tile's bytes are the same: each block's |x| maximum
// (max is exact in any order), d = amax / 127 and 1 / d (vdivps rounds as the scalar division
// does), x * (1 / d) rounded to nearest even by vcvtps2dq (quantize_act's round_i8 rounds the
// same way), and integer sums.
//
// The work goes in groups of 256 columns, 8 chunks of 32, so that the 8 chunks' maxima, scales
// and sums are reduced side by side in the lanes of one vector instead of one chunk at a time
// through a chain of horizontal steps and scalar divisions. Quantizing a row and then copying
// it into the tile with a scalar sum per subblock cost 13-15% of the Q8_0 prompt GEMM's time
// on one Zen 5 core (bench/results/cpu-prompt.md, section 23).
// Every function carries the target attribute; only called where the CPU has AVX2.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu_kernels.h"
#include "cpu_panels.h"

#define TGT __attribute__((target("avx2,fma")))

namespace tandem::cpu::detail {
namespace {

constexpr int kGroup = 256;  // columns a step: 8 chunks of 32
static_assert(kGroup == 32 * kActGroupBlocks, "a Q8AG group is one step");

// Lane c of the result is op over the 8 lanes of v[c] (op: max_ps or hadd-style add_epi32),
// by pairwise steps across the 8 vectors.
TGT inline __m256 lane_max8(const __m256 (&v)[8]) {
    __m256 p[4];
    for (int i = 0; i < 4; i++)  // per 128-bit half: [v2i 01, v2i 23, v2i+1 01, v2i+1 23]
        p[i] = _mm256_max_ps(_mm256_shuffle_ps(v[2 * i], v[2 * i + 1], 0x88), _mm256_shuffle_ps(v[2 * i], v[2 * i + 1], 0xDD));
    __m256 q[2];
    for (int i = 0; i < 2; i++)  // per half: [v4i, v4i+1, v4i+2, v4i+3] over that half's 4 lanes
        q[i] = _mm256_max_ps(_mm256_shuffle_ps(p[2 * i], p[2 * i + 1], 0x88), _mm256_shuffle_ps(p[2 * i], p[2 * i + 1], 0xDD));
    return _mm256_max_ps(_mm256_permute2f128_ps(q[0], q[1], 0x20), _mm256_permute2f128_ps(q[0], q[1], 0x31));
}
TGT inline __m256i lane_sum8(const __m256i (&v)[8]) {
    const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    const __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}

// The chunk's 32 values x * id as int8 in order, and the int32 vectors whose lanes sum to its
// first and second 16 values.
TGT inline __m256i round32(const float* x, __m256 id, __m256i& lo, __m256i& hi) {
    __m256i i[4];
    for (int k = 0; k < 4; k++) i[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), id));
    lo = _mm256_add_epi32(i[0], i[1]);
    hi = _mm256_add_epi32(i[2], i[3]);
    // packs work within 128-bit lanes: bytes come out as 4-value groups 0,2,4,6,1,3,5,7
    const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3]));
    return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// The largest |x| of each of the group's 8 chunks, lane c for chunk c. A NaN is skipped, as in
// the reference: max_ps returns its second operand when the first is NaN, so no lane holds one.
TGT inline __m256 chunk_abs_max(const float* x) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m[8];
    for (int c = 0; c < 8; c++) {
        m[c] = _mm256_setzero_ps();
        for (int k = 0; k < 32; k += 8) m[c] = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + 32 * c + k), abs_mask), m[c]);
    }
    return lane_max8(m);
}

// The scale of a block whose |x| maximum is amax, and the multiplier of its values: 1 / d, or 0
// where that is infinite (d = 0, or a subnormal d whose reciprocal overflows; the reference
// writes zeros there too, its round_i8 turning the infinite or NaN products into 0).
TGT inline __m256 scale_of(__m256 amax) { return _mm256_div_ps(amax, _mm256_set1_ps(127.0f)); }
TGT inline __m256 inverse_of(__m256 d) {
    const __m256 id = _mm256_div_ps(_mm256_set1_ps(1.0f), d);
    return _mm256_and_ps(id, _mm256_cmp_ps(id, _mm256_set1_ps(INFINITY), _CMP_LT_OQ));
}

// The 8 (S = 32) or 16 (S = 16) subblocks of one group, whose records start at rec: scales d
// (lane c: chunk c's) and sums sigma (S = 32: lane c; S = 16: sig[0] lane c the chunk's first
// half, sig[1] its second).
template <int S>
TGT inline void put_group_scales(uint8_t* rec, size_t rec_bytes, int T, int tt, int corr_shift, __m256 d,
                                 const __m256i (&sig)[2], int n_chunks) {
    alignas(32) float dv[8];
    alignas(32) int32_t sv[2][8];
    _mm256_store_ps(dv, d);
    _mm256_store_si256((__m256i*)sv[0], sig[0]);
    _mm256_store_si256((__m256i*)sv[1], sig[1]);
    for (int c = 0; c < n_chunks; c++)
        for (int h = 0; h < 32 / S; h++, rec += rec_bytes) act_tile_scales(rec, S, T, tt, dv[c], sv[h][c], corr_shift);
}

// One group of 256 columns at x (its first n_chunks chunks real) into the records from rec.
// d8 / id8: the chunks' scales and multipliers.
template <int S>
TGT inline void tile_group(const float* x, __m256 d8, __m256 id8, int n_chunks, uint8_t* rec, size_t rec_bytes, int T,
                           int tt, int corr_shift) {
    alignas(32) float idv[8];
    _mm256_store_ps(idv, id8);
    __m256i lo[8], hi[8];
    uint8_t* q = rec + S * tt;
    for (int c = 0; c < 8; c++) {
        const __m256i b = round32(x + 32 * c, _mm256_set1_ps(idv[c]), lo[c], hi[c]);
        if (c >= n_chunks) continue;
        if constexpr (S == 32) {
            _mm256_storeu_si256((__m256i*)q, b);
            q += rec_bytes;
        } else {
            _mm_storeu_si128((__m128i*)q, _mm256_castsi256_si128(b));
            _mm_storeu_si128((__m128i*)(q + rec_bytes), _mm256_extracti128_si256(b, 1));
            q += 2 * rec_bytes;
        }
    }
    __m256i sig[2];
    if constexpr (S == 32) {
        for (int c = 0; c < 8; c++) lo[c] = _mm256_add_epi32(lo[c], hi[c]);
        sig[0] = lane_sum8(lo);
        sig[1] = sig[0];  // unused
    } else {
        sig[0] = lane_sum8(lo);
        sig[1] = lane_sum8(hi);
    }
    put_group_scales<S>(rec, rec_bytes, T, tt, corr_shift, d8, sig, n_chunks);
}

// The maximum of m's 8 lanes, in every lane.
TGT inline __m256 all_lanes_max(__m256 m) {
    m = _mm256_max_ps(m, _mm256_permute2f128_ps(m, m, 0x01));
    m = _mm256_max_ps(m, _mm256_shuffle_ps(m, m, 0x4E));
    return _mm256_max_ps(m, _mm256_shuffle_ps(m, m, 0xB1));
}

// Group g0 of the row x (cols long): its columns, or the zero-padded copy in pad for a short
// last group, in xg; returns its chunks' maxima (Grouped: the group's, in every lane).
template <bool Grouped>
TGT inline __m256 group_maxima(const float* x, int64_t cols, int64_t g0, float* pad, const float*& xg) {
    xg = x + g0;
    const int n_chunks = (int)std::min<int64_t>(8, (cols - g0) / 32);
    if (n_chunks < 8) {
        std::memset(pad, 0, kGroup * sizeof(float));
        std::memcpy(pad, xg, (size_t)n_chunks * 32 * sizeof(float));
        xg = pad;
    }
    const __m256 m = chunk_abs_max(xg);
    return Grouped ? all_lanes_max(m) : m;
}

// Q8A: a scale per 32-column chunk; Q8AG (Grouped): one per group. A last group of fewer than
// 8 chunks is read from a zero-padded copy (its padding chunks are not written; their zeros
// do not change a group's maximum). Each group's maxima are taken before the previous group's
// values are rounded, which wait for their scales through two divisions: with each group in
// turn a Zen 5 core took 4.5 ns per token and 32 columns for Q8_0 (Q8AG), 4.9 for Q4_K (Q8K),
// against 3.4 and 3.7 so.
template <bool Grouped>
TGT void tile_row_q8a(const float* x, int64_t cols, int T, int tt, int corr_shift, uint8_t* tile) {
    const size_t rec_bytes = act_sub_bytes(32, T);
    alignas(32) float pad[kGroup];  // only the last group can be short: one copy serves
    const float* xg;
    __m256 m = group_maxima<Grouped>(x, cols, 0, pad, xg);
    for (int64_t g0 = 0; g0 < cols; g0 += kGroup) {
        const float* cur = xg;
        const int n_chunks = (int)std::min<int64_t>(8, (cols - g0) / 32);
        const __m256 d = scale_of(m);
        if (g0 + kGroup < cols) m = group_maxima<Grouped>(x, cols, g0 + kGroup, pad, xg);
        tile_group<32>(cur, d, inverse_of(d), n_chunks, tile + (size_t)(g0 / 32) * rec_bytes, rec_bytes, T, tt, corr_shift);
    }
}

// Q8K: one scale per 256 columns (a group), subblocks of S = 32 or 16; maxima a group ahead, as
// above.
template <int S>
TGT void tile_row_q8k(const float* x, int64_t cols, int T, int tt, int corr_shift, uint8_t* tile) {
    const size_t rec_bytes = act_sub_bytes(S, T);
    __m256 m = cols > 0 ? all_lanes_max(chunk_abs_max(x)) : _mm256_setzero_ps();
    for (int64_t g0 = 0; g0 < cols; g0 += kGroup) {
        const __m256 d = scale_of(m);
        if (g0 + kGroup < cols) m = all_lanes_max(chunk_abs_max(x + g0 + kGroup));
        tile_group<S>(x + g0, d, inverse_of(d), 8, tile + (size_t)(g0 / S) * rec_bytes, rec_bytes, T, tt, corr_shift);
    }
}

}  // namespace

TGT void act_tile_row_avx2(ActFormat f, int S, const float* x, int64_t cols, int T, int tt, int corr_shift,
                           uint8_t* tile, void*) {
    if (f == ActFormat::Q8A) tile_row_q8a<false>(x, cols, T, tt, corr_shift, tile);
    else if (f == ActFormat::Q8AG) tile_row_q8a<true>(x, cols, T, tt, corr_shift, tile);
    else if (S == 32) tile_row_q8k<32>(x, cols, T, tt, corr_shift, tile);
    else tile_row_q8k<16>(x, cols, T, tt, corr_shift, tile);
}

}  // namespace tandem::cpu::detail
