// The "avx512-vnni" path: AVX-512 F/BW + VNNI kernels (Intel Ice Lake / Sapphire Rapids, AMD
// Zen 4 and later). Same structure as cpu_dot_avx2.cpp (one weight row x T <= 4 tokens; see
// there), twice the width:
//   - Q8_0: two blocks per zmm; vpdpbusd multiplies the weights made unsigned (q ^ 0x80) with
//     the i8 activations and sums groups of 4 straight into i32; the +128 is taken back with
//     the activation sums. (The q32 kernel is generic over the 32-block unpackers.)
//   - float types: 16 lanes, masked tail.
//   - the 4/5-bit and K-quant types use the AVX2 kernels (see kUseAvx2 below for why).
// Every function carries the target attribute; nothing runs unless cpu_features() said yes.
#include <immintrin.h>

#include "cpu_kernels.h"

// GCC 12 warns "__Y may be used uninitialized" inside avx512fintrin.h for every masked intrinsic
// compiled under a target attribute (its _mm512_undefined_* placeholders): a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#define TGT __attribute__((target("avx512f,avx512bw,avx512vnni,avx2,fma,f16c")))
#include "cpu_x86_unpack.h"

namespace tandem::cpu::detail {
namespace {

TGT inline __m512i combine(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// ---- float weights x f32 activations -------------------------------------------------------

struct LoadF32 {
    static constexpr int kBytes = 4;
    TGT static __m512 load16(const void* w, int64_t i) { return _mm512_loadu_ps((const float*)w + i); }
    TGT static __m512 loadm(const void* w, int64_t i, __mmask16 m) { return _mm512_maskz_loadu_ps(m, (const float*)w + i); }
};
struct LoadF16 {
    static constexpr int kBytes = 2;
    TGT static __m512 load16(const void* w, int64_t i) {
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)((const half_bits*)w + i)));
    }
    TGT static __m512 loadm(const void* w, int64_t i, __mmask16 m) {
        return _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_maskz_loadu_epi16(m, (const half_bits*)w + i)));
    }
};
struct LoadBF16 {
    static constexpr int kBytes = 2;
    TGT static __m512 widen(__m256i v) {
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
    }
    TGT static __m512 load16(const void* w, int64_t i) {
        return widen(_mm256_loadu_si256((const __m256i*)((const uint16_t*)w + i)));
    }
    TGT static __m512 loadm(const void* w, int64_t i, __mmask16 m) {
        return widen(_mm512_castsi512_si256(_mm512_maskz_loadu_epi16(m, (const uint16_t*)w + i)));
    }
};

template <class L, int T>
TGT void dot_float(int64_t n, const void* w, const void* const* xv, float* out) {
    constexpr int U = T == 1 ? 4 : 2;
    const float* x[T];
    for (int t = 0; t < T; t++) x[t] = (const float*)xv[t];
    __m512 acc[U][T];
    for (int u = 0; u < U; u++)
        for (int t = 0; t < T; t++) acc[u][t] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 * U <= n; i += 16 * U) {
        for (int off = 0; off < 16 * U * L::kBytes; off += 64) prefetch_ahead((const char*)w + i * L::kBytes + off);
        for (int u = 0; u < U; u++) {
            const __m512 wv = L::load16(w, i + 16 * u);
            for (int t = 0; t < T; t++) acc[u][t] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x[t] + i + 16 * u), acc[u][t]);
        }
    }
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 wv = L::loadm(w, i, m);
        for (int t = 0; t < T; t++) acc[0][t] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x[t] + i), acc[0][t]);
    }
    for (int t = 0; t < T; t++) {
        __m512 s = acc[0][t];
        for (int u = 1; u < U; u++) s = _mm512_add_ps(s, acc[u][t]);
        out[t] = _mm512_reduce_add_ps(s);
    }
}

// ---- 32-block weights x block_q8a: two blocks per zmm ---------------------------------------

// Blocks i and i+1 (or i alone, upper half zero, when `pair` is false).
template <class U, int T>
TGT inline void q32_pair(const typename U::Block* b, const block_q8a* const* x, int64_t i, bool pair,
                         __m512 (&acc)[T], float (&off)[T]) {
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    __m256i q0 = U::q(b[i]);
    __m256i q1 = pair ? U::q(b[i + 1]) : _mm256_setzero_si256();
    float d0, c0, d1 = 0, c1 = 0;
    U::dc(b[i], &d0, &c0);
    if (pair) U::dc(b[i + 1], &d1, &c1);
    if (U::Signed) {  // q + 128 as u8; the +128 comes back out through the activation sums
        q0 = _mm256_xor_si256(q0, flip);
        c0 = -128 * d0;
        if (pair) {
            q1 = _mm256_xor_si256(q1, flip);
            c1 = -128 * d1;
        }
    }
    const __m512i q = combine(q0, q1);
    for (int t = 0; t < T; t++) {
        const block_q8a& y0 = x[t][i];
        const __m256i y0v = _mm256_loadu_si256((const __m256i*)y0.qs);
        const __m256i y1v = pair ? _mm256_loadu_si256((const __m256i*)x[t][i + 1].qs) : _mm256_setzero_si256();
        const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, combine(y0v, y1v));
        const float s1 = pair ? d1 * x[t][i + 1].d : 0.0f;
        const __m512 scale = _mm512_mask_blend_ps((__mmask16)0xFF00, _mm512_set1_ps(d0 * y0.d), _mm512_set1_ps(s1));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[t]);
        off[t] += c0 * y0.s + (pair ? c1 * x[t][i + 1].s : 0.0f);
    }
}

template <class U, int T>
TGT void dot_q32(int64_t n, const void* w, const void* const* xv, float* out) {
    const typename U::Block* b = (const typename U::Block*)w;
    const block_q8a* x[T];
    for (int t = 0; t < T; t++) x[t] = (const block_q8a*)xv[t];
    const int64_t nb = n / 32;
    __m512 acc0[T], acc1[T];
    float off0[T], off1[T];  // two chains each, so consecutive pairs do not wait on each other
    for (int t = 0; t < T; t++) { acc0[t] = acc1[t] = _mm512_setzero_ps(); off0[t] = off1[t] = 0; }
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        prefetch_ahead(b + i);
        prefetch_ahead(b + i + 2);
        q32_pair<U, T>(b, x, i, true, acc0, off0);
        q32_pair<U, T>(b, x, i + 2, true, acc1, off1);
    }
    for (; i + 2 <= nb; i += 2) q32_pair<U, T>(b, x, i, true, acc0, off0);
    if (i < nb) q32_pair<U, T>(b, x, i, false, acc1, off1);
    for (int t = 0; t < T; t++)
        out[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[t], acc1[t])) + (off0[t] + off1[t]);
}

template <class L> struct KFloat { template <int T> struct K { TGT static void run(int64_t n, const void* w, const void* const* x, float* o) { dot_float<L, T>(n, w, x, o); } }; };
template <class U> struct KQ32 { template <int T> struct K { TGT static void run(int64_t n, const void* w, const void* const* x, float* o) { dot_q32<U, T>(n, w, x, o); } }; };

// Types where the 512-bit kernels measured slower than the AVX2 ones for decode (T = 1) on a
// Sapphire Rapids class Xeon (bench/results/cpu-matmul.md): unpacking two 18-22 byte blocks into
// one zmm costs more shuffles than the wider dot saves, and the K-quants' work is dominated by
// the 256-bit unpack either way. This path runs the AVX2 kernels for them (the CPU has AVX2).
static const GgmlType kUseAvx2[] = {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                                    GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

KernelSet make_avx512() {
    KernelSet k;
    k.name = "avx512-vnni";
    auto set = [&](GgmlType t, gemm_fn f) { k.gemm[(uint32_t)t] = f; };
    set(GgmlType::F32, gemm<KFloat<LoadF32>::K>);
    set(GgmlType::F16, gemm<KFloat<LoadF16>::K>);
    set(GgmlType::BF16, gemm<KFloat<LoadBF16>::K>);
    set(GgmlType::Q8_0, gemm<KQ32<UnpQ8_0>::K>);
    for (GgmlType t : kUseAvx2) set(t, kernels_avx2().gemm[(uint32_t)t]);
    return k;
}

}  // namespace

const KernelSet& kernels_avx512() {
    static const KernelSet k = make_avx512();
    return k;
}

}  // namespace tandem::cpu::detail
