// The "avx2" path: AVX2 + FMA + F16C kernels. Every function here carries the target attribute
// (TGT) instead of the whole file being compiled with -mavx2, so that nothing in this file can
// leak AVX2 instructions into code the rest of the library runs on older CPUs; only
// kernels_avx2() is called from outside, and only after cpu_features() said yes.
//
// Shape of every kernel: one weight row against T <= 4 tokens at once. A weight block is
// loaded and unpacked to u8 levels once and then multiplied with the T activation blocks
// (vpmaddubsw u8 x i8 -> i16 pairs, vpmaddwd -> i32), so prefill reuses each unpacked block
// T times; decode (T = 1) streams the row with two independent accumulators.
#include <immintrin.h>

#include <cstring>

#include "cpu_kernels.h"

#define TGT __attribute__((target("avx2,fma,f16c")))
#include "cpu_x86_unpack.h"

namespace tandem::cpu::detail {
namespace {

// ---- float weights x f32 activations -------------------------------------------------------

struct LoadF32 {
    static constexpr int kBytes = 4;
    TGT static __m256 load8(const void* w, int64_t i) { return _mm256_loadu_ps((const float*)w + i); }
    static float load1(const void* w, int64_t i) { return ((const float*)w)[i]; }
};
struct LoadF16 {
    static constexpr int kBytes = 2;
    TGT static __m256 load8(const void* w, int64_t i) {
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)((const half_bits*)w + i)));
    }
    TGT static float load1(const void* w, int64_t i) { return h2f(((const half_bits*)w)[i]); }
};
struct LoadBF16 {
    static constexpr int kBytes = 2;
    TGT static __m256 load8(const void* w, int64_t i) {
        const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)((const uint16_t*)w + i)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    }
    static float load1(const void* w, int64_t i) { return bf16_to_fp32(((const uint16_t*)w)[i]); }
};

// out[t] = dot(w, x[t]) for n floats; U independent accumulator sets hide the FMA latency.
template <class L, int T>
TGT void dot_float(int64_t n, const void* w, const void* const* xv, float* out) {
    constexpr int U = T == 1 ? 4 : 2;
    const float* x[T];
    for (int t = 0; t < T; t++) x[t] = (const float*)xv[t];
    __m256 acc[U][T];
    for (int u = 0; u < U; u++)
        for (int t = 0; t < T; t++) acc[u][t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 * U <= n; i += 8 * U) {
        for (int off = 0; off < 8 * U * L::kBytes; off += 64) prefetch_ahead((const char*)w + i * L::kBytes + off);
        for (int u = 0; u < U; u++) {
            const __m256 wv = L::load8(w, i + 8 * u);
            for (int t = 0; t < T; t++) acc[u][t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[t] + i + 8 * u), acc[u][t]);
        }
    }
    for (; i + 8 <= n; i += 8) {
        const __m256 wv = L::load8(w, i);
        for (int t = 0; t < T; t++) acc[0][t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[t] + i), acc[0][t]);
    }
    for (int t = 0; t < T; t++) {
        __m256 s = acc[0][t];
        for (int u = 1; u < U; u++) s = _mm256_add_ps(s, acc[u][t]);
        out[t] = hsum(s);
    }
    for (; i < n; i++) {
        const float wv = L::load1(w, i);
        for (int t = 0; t < T; t++) out[t] += wv * x[t][i];
    }
}

// ---- 32-block weights x block_q8a (unpackers in cpu_x86_unpack.h) -----------------------

template <class U, int T>
TGT inline void q32_step(const typename U::Block& b, const block_q8a* const* x, int64_t i, __m256 (&acc)[T],
                         float (&off)[T]) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i q = U::q(b);
    float dw, cw;
    U::dc(b, &dw, &cw);
    const __m256i aq = U::Signed ? _mm256_sign_epi8(q, q) : q;
    for (int t = 0; t < T; t++) {
        const block_q8a& y = x[t][i];
        __m256i qy = _mm256_loadu_si256((const __m256i*)y.qs);
        if (U::Signed) qy = _mm256_sign_epi8(qy, q);
        const __m256i s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(aq, qy), ones);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), _mm256_set1_ps(dw * y.d), acc[t]);
        if (!U::Signed) off[t] += cw * y.s;
    }
}

template <class U, int T>
TGT void dot_q32(int64_t n, const void* w, const void* const* xv, float* out) {
    const typename U::Block* b = (const typename U::Block*)w;
    const block_q8a* x[T];
    for (int t = 0; t < T; t++) x[t] = (const block_q8a*)xv[t];
    const int64_t nb = n / 32;
    __m256 acc0[T], acc1[T];
    float off0[T], off1[T];  // two chains each, so consecutive blocks do not wait on each other
    for (int t = 0; t < T; t++) { acc0[t] = acc1[t] = _mm256_setzero_ps(); off0[t] = off1[t] = 0; }
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        prefetch_ahead(b + i);
        q32_step<U, T>(b[i], x, i, acc0, off0);
        q32_step<U, T>(b[i + 1], x, i + 1, acc1, off1);
    }
    if (i < nb) q32_step<U, T>(b[i], x, i, acc0, off0);
    for (int t = 0; t < T; t++) out[t] = hsum(_mm256_add_ps(acc0[t], acc1[t])) + (off0[t] + off1[t]);
}

// ---- K-quant weights x block_q8k (unpackers in cpu_x86_unpack.h) -------------------------

template <class U, int T>
TGT void dot_qk(int64_t n, const void* w, const void* const* xv, float* out) {
    const typename U::Block* b = (const typename U::Block*)w;
    const block_q8k* x[T];
    for (int t = 0; t < T; t++) x[t] = (const block_q8k*)xv[t];
    __m256 acc[T];
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    KUnpacked u;
    for (int64_t i = 0; i < n / QK_K; i++) {
        prefetch_ahead(b + i);
        prefetch_ahead((const char*)(b + i) + 64);
        U::unpack(b[i], u);
        for (int t = 0; t < T; t++) {
            const block_q8k& y = x[t][i];
            __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
            for (int j = 0; j < 8; j += 2) {
                const __m256i y0 = _mm256_loadu_si256((const __m256i*)(y.qs + 32 * j));
                const __m256i y1 = _mm256_loadu_si256((const __m256i*)(y.qs + 32 * j + 32));
                s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(u.q[j], y0), u.sc[j]));
                s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_maddubs_epi16(u.q[j + 1], y1), u.sc[j + 1]));
            }
            const __m256i m = _mm256_madd_epi16(u.mcoef, _mm256_loadu_si256((const __m256i*)y.bsums));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)), _mm256_set1_ps(u.d * y.d), acc[t]);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m), _mm256_set1_ps(u.cmin * y.d), acc[t]);
        }
    }
    for (int t = 0; t < T; t++) out[t] = hsum(acc[t]);
}

template <class L> struct KFloat { template <int T> struct K { TGT static void run(int64_t n, const void* w, const void* const* x, float* o) { dot_float<L, T>(n, w, x, o); } }; };
template <class U> struct KQ32 { template <int T> struct K { TGT static void run(int64_t n, const void* w, const void* const* x, float* o) { dot_q32<U, T>(n, w, x, o); } }; };
template <class U> struct KQK { template <int T> struct K { TGT static void run(int64_t n, const void* w, const void* const* x, float* o) { dot_qk<U, T>(n, w, x, o); } }; };

KernelSet make_avx2() {
    KernelSet k;
    k.name = "avx2";
    auto set = [&](GgmlType t, gemm_fn f) { k.gemm[(uint32_t)t] = f; };
    set(GgmlType::F32, gemm<KFloat<LoadF32>::K>);
    set(GgmlType::F16, gemm<KFloat<LoadF16>::K>);
    set(GgmlType::BF16, gemm<KFloat<LoadBF16>::K>);
    set(GgmlType::Q4_0, gemm<KQ32<UnpQ4_0>::K>);
    set(GgmlType::Q4_1, gemm<KQ32<UnpQ4_1>::K>);
    set(GgmlType::Q5_0, gemm<KQ32<UnpQ5_0>::K>);
    set(GgmlType::Q5_1, gemm<KQ32<UnpQ5_1>::K>);
    set(GgmlType::Q8_0, gemm<KQ32<UnpQ8_0>::K>);
    set(GgmlType::Q4_K, gemm<KQK<UnpQ4_K>::K>);
    set(GgmlType::Q5_K, gemm<KQK<UnpQ5_K>::K>);
    set(GgmlType::Q6_K, gemm<KQK<UnpQ6_K>::K>);
    return k;
}

}  // namespace

const KernelSet& kernels_avx2() {
    static const KernelSet k = make_avx2();
    return k;
}

}  // namespace tandem::cpu::detail
