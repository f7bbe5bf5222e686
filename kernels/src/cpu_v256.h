// Internal to the 256-bit paths (cpu_gemm_avx2.cpp, cpu_gemm_avx_vnni.cpp): the ymm operations
// of the vector type V that cpu_gemm_kernels.h is written over (its interface is described
// there), all but the int8 dot, which each path adds. The including file defines TGT (a target
// with at least AVX2, FMA, F16C) first.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "tandem/quant_types.h"

#ifndef TGT
#error "define TGT (the target attribute) before including cpu_v256.h"
#endif

namespace tandem::cpu::detail {
namespace {

struct V256Base {
    static constexpr int kLanes = 8;
    using I = __m256i;
    using F = __m256;
    static constexpr int kQuantTiles = 4, kFloatTiles = 6;  // the largest token tiles
    // Q8_0 without vpdpbusd (cpu_gemm_kernels.h split8: one row group, two int16 sums per
    // token) takes 6 tokens, which share each step's split into 4-bit halves: one Zen 4 core,
    // prefill 134-138 GOP/s against 130-132 with 4 and 124-126 with 8 (spills).
    static constexpr int kSplit8Tiles = 6;
    // Row groups (half panels) per micro-kernel, within 16 ymm registers; decode takes one
    // panel (two halves) at a time, one sequential stream of weights. Float decode deals the
    // columns round 4 sums per group (cpu_gemm_kernels.h tile_f1): one Zen 4 core, the F16
    // decode GEMV of bench-cpu-matmul 6.9-8.4 ms against 9.2 for 4 panels at a time with one
    // sum per group (4 streams; 12 groups 12.7-13.4 ms: spills).
    // The float prompt tile, 2 x 6 (12 sums), ran F16 at 107 GFLOP/s against 92-95 for 1 x 8
    // (avx2 and the EVEX avx-vnni path alike).
    // The prompt's quantized tiles: 2 row groups x 4 tokens for the 4- and 8-bit types, so that
    // each broadcast activation word serves 16 rows; GCC then keeps 4 of the 8 float sums in memory
    // (one load and store a token a block). Prefill GOP/s against 1 x 4, one core: avx-vnni (VEX,
    // Zen 5) Q8_0 +18%, Q4_0 +20%, Q4_1 +9%, Q4_K +10%; avx2 (Zen 4) Q4_0 222 against 174, Q4_K 217
    // against 173. The types with a high-bit plane keep 1 x 4, where their unpacking does not
    // spill: 2 x 4 measured avx-vnni Q5_0 -5%, Q5_1 -4%, Q5_K -12%, Q6_K -7%, and avx2 Q6_K -8%,
    // Q5_0 -4%, Q5_1 and Q5_K level (Zen 5). On the vpdpbusd paths their full tiles are 8 tokens
    // on tile_qt instead (cpu_gemm_kernels.h quant_tiles); these tiles take a prompt's last.
    static constexpr int quant_groups(int T, bool high_bit_levels) {
        return T == 1 || (T == 4 && !high_bit_levels) ? 2 : 1;
    }
    static constexpr int float_groups(int) { return 2; }
    static constexpr int kFloatDecodeSums = 4;  // tile_f1's sums per row group (0: tile_f)
    static constexpr bool kDotBroadcast = false;  // dot_bcast: V512 only
    static I dot_bcast(I acc, I w, const uint8_t* x);  // never called where !kDotBroadcast
    static I dot_i16_bcast(I acc, I w, const int32_t* x);  // never called where !kDotBroadcast
    static I u8_pairs(const uint8_t* a, const uint8_t* b);  // never called where !kDotBroadcast
    // int16 subblock sums (cpu_gemm_kernels.h sums16): only the avx2 path's V sets these
    static constexpr bool kSums16 = false;
    static I dot16(I acc16, I w, I x);  // never called where !kSums16
    static I widen16(I acc16, I c);     // never called where !kSums16
    static I widen16x16(I acc16, I c);  // c + the int32 sums of lane pairs x 16; never called where !kSums16

    TGT static I load(const void* p) { return _mm256_loadu_si256((const __m256i*)p); }
    TGT static I and_(I a, I b) { return _mm256_and_si256(a, b); }
    TGT static I or_and(I a, I b, I m) { return _mm256_or_si256(a, _mm256_and_si256(b, m)); }
    TGT static I andnot_(I m, I a) { return _mm256_andnot_si256(m, a); }  // a & ~m
    TGT static I or3(I a, I b, I c) { return _mm256_or_si256(_mm256_or_si256(a, b), c); }
    TGT static I set1_8(char v) { return _mm256_set1_epi8(v); }
    TGT static I set1_32(int32_t v) { return _mm256_set1_epi32(v); }
    TGT static I izero() { return _mm256_setzero_si256(); }
    template <int N> TGT static I srli16(I v) { return _mm256_srli_epi16(v, N); }
    template <int N> TGT static I slli16(I v) { return _mm256_slli_epi16(v, N); }

    TGT static F zero() { return _mm256_setzero_ps(); }
    TGT static F set1(float v) { return _mm256_set1_ps(v); }
    TGT static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
    TGT static F add(F a, F b) { return _mm256_add_ps(a, b); }
    TGT static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
    TGT static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
    TGT static F cvt_i32(I v) { return _mm256_cvtepi32_ps(v); }
    TGT static F load_f32(const float* p) { return _mm256_loadu_ps(p); }
    TGT static F cvt_f16(const half_bits* p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)); }
    TGT static F cvt_bf16(const uint16_t* p) {
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p)), 16));
    }
    TGT static F cvt_u8(const uint8_t* p) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)p))); }
    TGT static F cvt_i8(const int8_t* p) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)p))); }
    TGT static void store(float* y, F v) { _mm256_storeu_ps(y, v); }
    TGT static void store_n(float* y, F v, int n) {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_maskstore_ps(y, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane), v);
    }
};

}  // namespace
}  // namespace tandem::cpu::detail
