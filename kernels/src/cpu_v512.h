// Internal to the 512-bit paths (cpu_gemm_avx512.cpp, cpu_gemm_amx.cpp): the zmm vector type V
// that cpu_gemm_kernels.h is written over (its interface is described there). The including
// file defines TGT (a target with AVX-512 F/BW/VL/VNNI, FMA, F16C) first.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "tandem/quant_types.h"

#ifndef TGT
#error "define TGT (the target attribute) before including cpu_v512.h"
#endif

namespace tandem::cpu::detail {
namespace {

struct V512 {
    static constexpr int kLanes = 16;
    using I = __m512i;
    using F = __m512;
    static constexpr bool kUnsignedDot = true;
    // The largest token tiles, and the row groups (panels) per micro-kernel, within the 32 zmm
    // registers: quantized T = 16 (tile_qt) keeps 16 sums + a subblock's 8 steps of levels + 4 int
    // sums, and T = 8 (tile_q, the prompt's last tile) 8 int sums + 8 sums + 8 K-quant partials +
    // levels; float T = 16 one panel (one f16 -> f32 conversion per 16 fma: F16 prefill 106 GFLOP/s
    // against 91 with 8 tokens x 2 panels, one Zen 4 core). Quantized decode (T = 1) takes one
    // panel at a time, so the weights are one sequential stream: with 4 panels (4 streams) the
    // engine's single-thread Q4_K decode measured 1.2-1.5x slower.
    // The float prompt tile: 2 row groups x 8 tokens, each broadcast activation serving both
    // groups. One core of an AMX Xeon: F16 prompt GEMM 141-142 GFLOP/s (66-67% of the fma peak)
    // against 122-123 (57-58%) for 1 x 16, whose every fma broadcast its activation from memory;
    // the engine's F16 prompt 1.11x (bench/results/cpu-prompt.md, section 35; not measured on
    // an AMD core).
    static constexpr int kQuantTiles = 16, kFloatTiles = 8;
    static constexpr int kSplit8Tiles = 8;  // unused: vpdpbusd takes Q8_0 levels whole (no split8)
    static constexpr int quant_groups(int T, bool) { return T == 1 ? 1 : T <= 4 ? 2 : 1; }
    static constexpr int float_groups(int T) { return T == 1 ? 4 : 2; }
    // Float decode stays on tile_f over 4 panels: tile_f1 on one panel with 4 or 8 sums measured
    // within the noise of it (F16 GEMV 7.7-8.7 ms against 8.4-8.6, one Zen 4 core).
    static constexpr int kFloatDecodeSums = 0;

    TGT static I load(const void* p) { return _mm512_loadu_si512(p); }
    TGT static I and_(I a, I b) { return _mm512_and_si512(a, b); }
    TGT static I or_and(I a, I b, I m) { return _mm512_ternarylogic_epi32(a, b, m, 0xF8); }  // a | (b & m)
    TGT static I andnot_(I m, I a) { return _mm512_andnot_si512(m, a); }  // a & ~m
    TGT static I or3(I a, I b, I c) { return _mm512_ternarylogic_epi32(a, b, c, 0xFE); }
    TGT static I set1_8(char v) { return _mm512_set1_epi8(v); }
    TGT static I set1_32(int32_t v) { return _mm512_set1_epi32(v); }
    // izero and zero: a zeroing idiom each time, which the register renamer executes. For
    // _mm512_setzero GCC zeroes one register and copies it to every chain the zero starts (the
    // K-quants' prompt tiles: 16 vmovdqa64 a subblock beside its 128 vpdpbusd), and a copy may
    // take a slot of the two ports that an Intel core's 512-bit work shares. With both idioms and
    // the integer min term (tile_qt), the prompt GEMM on an Emerald Rapids core read Q4_K, Q5_K
    // and Q8_0 1.03x, Q4_0 and Q6_K level (medians of 5 alternating rounds), and on a quiet
    // Sapphire Rapids core Q8_0 1.02x, Q4_0 1.02x, Q4_K 1.03x, Q5_K 1.04x (4 rounds;
    // bench/results/cpu-prompt.md, section 26).
    TGT static I izero() {
        I z;
        __asm__ volatile("vpxord %x0, %x0, %x0" : "=v"(z));
        return z;
    }
    template <int N> TGT static I srli16(I v) { return _mm512_srli_epi16(v, N); }
    template <int N> TGT static I slli16(I v) { return _mm512_slli_epi16(v, N); }
    TGT static I dot(I acc, I w, I x) { return _mm512_dpbusd_epi32(acc, w, x); }
    // dot(acc, w, the 4 bytes at x broadcast), as one vpdpbusd with an embedded broadcast: one
    // fused instruction where GCC emits a separate vpbroadcastd for the intrinsics.
    static constexpr bool kDotBroadcast = true;
    TGT static I dot_bcast(I acc, I w, const uint8_t* x) {
        typedef int32_t __attribute__((may_alias)) i32a;
        __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const i32a*)x));
        return acc;
    }
    // acc + per lane the sum of 2 products i16 w x i16 x (the 2 int16 at x broadcast): vpdpwssd
    TGT static I dot_i16_bcast(I acc, I w, const int32_t* x) {
        __asm__("vpdpwssd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*x));
        return acc;
    }
    // 32-bit lane i: the u8 a[i] and b[i] (16 bytes each) as an int16 pair (a low, b high).
    TGT static I u8_pairs(const uint8_t* a, const uint8_t* b) {
        const __m512i v = _mm512_cvtepu8_epi16(_mm256_set_m128i(_mm_loadu_si128((const __m128i*)b),
                                                                _mm_loadu_si128((const __m128i*)a)));
        const __m512i idx = _mm512_setr_epi32(0x100000, 0x110001, 0x120002, 0x130003, 0x140004, 0x150005, 0x160006,
                                              0x170007, 0x180008, 0x190009, 0x1A000A, 0x1B000B, 0x1C000C, 0x1D000D,
                                              0x1E000E, 0x1F000F);  // word 2i: a[i] (word i), 2i + 1: b[i] (16 + i)
        return _mm512_permutexvar_epi16(idx, v);
    }
    static constexpr bool kSums16 = false;  // vpdpbusd sums in int32 at no extra cost
    static I dot16(I acc16, I w, I x);      // never called: !kSums16
    static I widen16(I acc16, I c);         // never called: !kSums16
    static I widen16x16(I acc16, I c);      // never called: !kSums16

    TGT static F zero() {
        F z;
        __asm__ volatile("vxorps %x0, %x0, %x0" : "=v"(z));
        return z;
    }
    TGT static F set1(float v) { return _mm512_set1_ps(v); }
    TGT static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
    TGT static F add(F a, F b) { return _mm512_add_ps(a, b); }
    TGT static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
    TGT static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
    TGT static F cvt_i32(I v) { return _mm512_cvtepi32_ps(v); }
    TGT static F load_f32(const float* p) { return _mm512_loadu_ps(p); }
    TGT static F cvt_f16(const half_bits* p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p)); }
    TGT static F cvt_bf16(const uint16_t* p) {
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16));
    }
    TGT static F cvt_u8(const uint8_t* p) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)p))); }
    TGT static F cvt_i8(const int8_t* p) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)p))); }
    TGT static void store(float* y, F v) { _mm512_storeu_ps(y, v); }
    TGT static void store_n(float* y, F v, int n) { _mm512_mask_storeu_ps(y, (__mmask16)((1u << n) - 1), v); }
};

}  // namespace
}  // namespace tandem::cpu::detail
