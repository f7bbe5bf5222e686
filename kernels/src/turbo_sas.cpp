// SAS (softmax approximation) and head-wise mixed precision: the CPU twins.
#include "tandem/turbo_attention.h"
#include "tandem/quant_types.h"
#include "tandem/cpu_matmul.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#if defined(__x86_64__)
#include <immintrin.h>
// GCC 12 warns "__Y may be used uninitialized" inside avx512fintrin.h for intrinsics compiled
// under a target attribute (its _mm512_undefined_* placeholders): a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#endif

namespace tandem {

// ---- FP16 arithmetic as the GPU does it ----------------------------------------------------

// Rounds a double to the nearest binary16 (ties to even) in one step. The inputs here are
// exact in double (products of halves plus a half), so this is one rounding, as __hfma.
static float round_half(double x) {
    if (x == 0.0 || !std::isfinite(x)) return (float)x;
    int e;
    (void)std::frexp(x, &e);                 // |x| = m * 2^e, m in [0.5, 1)
    const int q = std::max(e - 11, -24);     // quantum: 11 significant bits, subnormals at 2^-24
    const double r = std::nearbyint(std::ldexp(x, -q));  // default rounding mode: to even
    return (float)std::ldexp(r, q);
}

// Polynomial fits of 2^-f on [0, 1] with p(0) = 1, p(1) = 1/2 (continuous across integers),
// minimax relative error 2.7e-3 (degree 2) and 1.2e-4 (degree 3) before FP16 rounding.
void turbo_sas_coeffs(int degree, float c[4]) {
    if (degree == 2) {
        c[0] = 1.0f; c[1] = -0.66988f; c[2] = 0.16988f; c[3] = 0.0f;
    } else {
        c[0] = 1.0f; c[1] = -0.69122f; c[2] = 0.22990f; c[3] = -0.03868f;
    }
    for (int i = 0; i < 4; ++i) c[i] = round_half(c[i]);  // what the kernel holds as __half
}

// 2^-f for a fraction f in [0, 1] that is already an FP16 value, by the polynomial in FP16.
static float sas_poly(float f, int degree) {
    float c[4];
    turbo_sas_coeffs(degree, c);
    double r = degree == 3 ? c[3] : c[2];
    if (degree == 3) r = round_half(r * f + c[2]);
    r = round_half(r * f + c[1]);
    r = round_half(r * f + c[0]);
    return (float)r;
}

float turbo_sas_exp2(float x, int degree, float threshold) {
    if (!(x >= threshold)) return 0.0f;      // below the threshold (or NaN): exactly zero
    const float y = -x;                       // >= 0
    const float n = std::floor(y);
    const float f = round_half(y - n);        // the fraction, rounded to half like the GPU
    return std::ldexp(sas_poly(f, degree), -(int)n);
}

TurboSasTable::TurboSasTable(int degree, float threshold) : threshold_(threshold), degree_(degree), poly_(0x3C01) {
    turbo_sas_coeffs(degree, coeffs_);
    for (uint32_t hb = 0; hb <= 0x3C00; ++hb) poly_[hb] = sas_poly(fp16_to_fp32((half_bits)hb), degree);
}

float TurboSasTable::operator()(float x) const {
    if (!(x >= threshold_)) return 0.0f;
    const float y = -x;
    const float n = std::floor(y);
    const float r = poly_[fp32_to_fp16(y - n)];  // y - n is exact; one rounding to FP16, as round_half
    if (n > 126.0f) return std::ldexp(r, -(int)n);
    uint32_t bits = (uint32_t)(127 - (int)n) << 23;  // 2^-n, exact
    float p;
    std::memcpy(&p, &bits, 4);
    return r * p;
}

#if defined(__x86_64__)
// run()'s vector paths, 8 lanes (AVX2) or 16 (AVX-512) a step; each adds p[t] into acc[t % 32],
// as the portable loop does, so all three give the same sums.

// On 8 lanes: the fraction's FP16 bits by vcvtps2ph (round to nearest even, as fp32_to_fp16),
// the table gathered, 2^-n from the exponent bits; 0 where `valid` is not set.
__attribute__((target("avx2,fma,f16c"))) static __m256 sas8_avx2(const float* poly, __m256 vth, __m256 vm, __m256 sc,
                                                                  __m256 valid) {
    const __m256 x = _mm256_sub_ps(sc, vm);
    const __m256 keep = _mm256_and_ps(_mm256_cmp_ps(x, vth, _CMP_GE_OQ), valid);  // false for NaN
    const __m256 y = _mm256_sub_ps(_mm256_setzero_ps(), _mm256_and_ps(x, keep));
    const __m256 fl = _mm256_floor_ps(y);
    const __m128i hb = _mm256_cvtps_ph(_mm256_sub_ps(y, fl), _MM_FROUND_TO_NEAREST_INT);
    const __m256 r = _mm256_i32gather_ps(poly, _mm256_cvtepu16_epi32(hb), 4);
    const __m256i e = _mm256_slli_epi32(_mm256_sub_epi32(_mm256_set1_epi32(127), _mm256_cvtps_epi32(fl)), 23);
    return _mm256_and_ps(_mm256_mul_ps(r, _mm256_castsi256_ps(e)), keep);
}
// lanes i < k set
__attribute__((target("avx2"))) static __m256i first_lanes8(int k) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
__attribute__((target("avx2,fma,f16c"))) static void sas_run_avx2(const float* poly, float th, const float* s, int n,
                                                                 int n_pad, float m, float* p, float* acc) {
    const __m256 vm = _mm256_set1_ps(m), vth = _mm256_set1_ps(th), all = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    __m256 a[4];
    for (int k = 0; k < 4; k++) a[k] = _mm256_loadu_ps(acc + 8 * k);
    int t = 0;
    for (; t + 32 <= n; t += 32)
        for (int k = 0; k < 4; k++) {
            const __m256 pk = sas8_avx2(poly, vth, vm, _mm256_loadu_ps(s + t + 8 * k), all);
            _mm256_storeu_ps(p + t + 8 * k, pk);
            a[k] = _mm256_add_ps(a[k], pk);
        }
    for (; t < n_pad; t += 8) {  // up to the last valid score and the padding: masked
        const __m256i valid = first_lanes8(n - t);
        const __m256 pk = sas8_avx2(poly, vth, vm, _mm256_maskload_ps(s + t, valid), _mm256_castsi256_ps(valid));
        _mm256_maskstore_ps(p + t, first_lanes8(n_pad - t), pk);
        a[t / 8 % 4] = _mm256_add_ps(a[t / 8 % 4], pk);
    }
    for (int k = 0; k < 4; k++) _mm256_storeu_ps(acc + 8 * k, a[k]);
}

// On 16 lanes without the table: the polynomial in FP16 as turbo_sas_exp2 evaluates it, each
// Horner step rounded once to FP16. The step's exact value r f + c is rounded to float to odd
// (of its round-down and round-up, the one whose last bit is 1; both are it when exact), then to
// FP16 to nearest even: rounding to odd with at least two more bits than the target, then to
// nearest, is rounding to nearest once (Boldo and Melquiond, 2008).
#define TANDEM_AVX512_INLINE __attribute__((target("avx512f,avx512vl,f16c"), always_inline)) static inline
TANDEM_AVX512_INLINE __m512 round_half_step(__m512 r, __m512 f, __m512 c) {
    const __m512 lo = _mm512_fmadd_round_ps(r, f, c, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m512 hi = _mm512_fmadd_round_ps(r, f, c, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
    const __mmask16 odd = _mm512_test_epi32_mask(_mm512_castps_si512(lo), _mm512_set1_epi32(1));
    const __m512 r_odd = _mm512_mask_blend_ps(odd, hi, lo);
    return _mm512_cvtph_ps(_mm512_cvtps_ph(r_odd, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
// p[i] for the 16 scores sc[i] of each of N vectors (0 where valid[i] is not set); the N are
// taken a step at a time, since one alone is a long chain of dependent steps.
template <int Degree, int N>
TANDEM_AVX512_INLINE void sas16_avx512(const float* c, __m512 vth, __m512 vm, const __m512 (&sc)[N],
                                       const __mmask16 (&valid)[N], __m512 (&p)[N]) {
    __m512 fl[N], f[N], r[N];
    __mmask16 keep[N];
#pragma GCC unroll 4
    for (int i = 0; i < N; i++) {
        const __m512 x = _mm512_sub_ps(sc[i], vm);
        keep[i] = _mm512_mask_cmp_ps_mask(valid[i], x, vth, _CMP_GE_OQ);  // false for NaN
        const __m512 y = _mm512_maskz_sub_ps(keep[i], _mm512_setzero_ps(), x);
        fl[i] = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        f[i] = _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_sub_ps(y, fl[i]), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        r[i] = _mm512_set1_ps(c[Degree]);
    }
#pragma GCC unroll 3
    for (int k = Degree - 1; k >= 0; k--)
#pragma GCC unroll 4
        for (int i = 0; i < N; i++) r[i] = round_half_step(r[i], f[i], _mm512_set1_ps(c[k]));
#pragma GCC unroll 4
    for (int i = 0; i < N; i++) {
        const __m512i e = _mm512_slli_epi32(_mm512_sub_epi32(_mm512_set1_epi32(127), _mm512_cvtps_epi32(fl[i])), 23);
        p[i] = _mm512_maskz_mul_ps(keep[i], r[i], _mm512_castsi512_ps(e));
    }
}
// lanes i < k set
static __mmask16 first_lanes16(int k) { return k >= 16 ? 0xFFFF : k <= 0 ? 0 : (__mmask16)((1u << k) - 1); }
template <int Degree>
__attribute__((target("avx512f,avx512vl,f16c"))) static void sas_run_avx512(const float* c, float th, const float* s,
                                                                           int n, int n_pad, float m, float* p,
                                                                           float* acc) {
    const __m512 vm = _mm512_set1_ps(m), vth = _mm512_set1_ps(th);
    __m512 a01 = _mm512_loadu_ps(acc), a23 = _mm512_loadu_ps(acc + 16);  // acc[t % 32] of t % 32 < 16, >= 16
    int t = 0;
    for (; t + 64 <= n; t += 64) {
        __m512 sc[4], pk[4];
        const __mmask16 all[4] = {0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF};
        for (int i = 0; i < 4; i++) sc[i] = _mm512_loadu_ps(s + t + 16 * i);
        sas16_avx512<Degree, 4>(c, vth, vm, sc, all, pk);
        for (int i = 0; i < 4; i++) _mm512_storeu_ps(p + t + 16 * i, pk[i]);
        a01 = _mm512_add_ps(_mm512_add_ps(a01, pk[0]), pk[2]);
        a23 = _mm512_add_ps(_mm512_add_ps(a23, pk[1]), pk[3]);
    }
    // up to the last valid score and the padding: masked (lanes past n_pad add +0.0, which
    // leaves a sum of non-negative terms as it is)
    for (; t < n_pad; t += 16) {
        const __mmask16 valid[1] = {first_lanes16(n - t)};
        const __m512 sc[1] = {_mm512_maskz_loadu_ps(valid[0], s + t)};
        __m512 pk[1];
        sas16_avx512<Degree, 1>(c, vth, vm, sc, valid, pk);
        _mm512_mask_storeu_ps(p + t, first_lanes16(n_pad - t), pk[0]);
        if (t % 32 == 0) a01 = _mm512_add_ps(a01, pk[0]);
        else a23 = _mm512_add_ps(a23, pk[0]);
    }
    _mm512_storeu_ps(acc, a01);
    _mm512_storeu_ps(acc + 16, a23);
}
#undef TANDEM_AVX512_INLINE
#endif

void TurboSasTable::run(const float* s, int n, int n_pad, float m, float* p, float* acc) const {
    if (n < 0 || n > n_pad) throw TurboError("SAS run: n must be in [0, n_pad]");
#if defined(__x86_64__)
    // 2^-n is built from exponent bits: n <= 120 keeps it normal
    if (threshold_ >= -120.0f && cpu::ops_isa() >= cpu::OpsIsa::Avx512) {
        if (degree_ == 2) sas_run_avx512<2>(coeffs_, threshold_, s, n, n_pad, m, p, acc);
        else sas_run_avx512<3>(coeffs_, threshold_, s, n, n_pad, m, p, acc);
        return;
    }
    if (threshold_ >= -120.0f && cpu::ops_isa() >= cpu::OpsIsa::Avx2) {
        sas_run_avx2(poly_.data(), threshold_, s, n, n_pad, m, p, acc);
        return;
    }
#endif
    for (int t = 0; t < n_pad; t++) {
        p[t] = t < n ? (*this)(s[t] - m) : 0.0f;
        acc[t % 32] += p[t];
    }
}

float TurboSasTable::total(const float* acc) {
    float b[8];
    for (int i = 0; i < 8; i++) b[i] = (acc[i] + acc[16 + i]) + (acc[8 + i] + acc[24 + i]);
    return ((b[0] + b[4]) + (b[1] + b[5])) + ((b[2] + b[6]) + (b[3] + b[7]));
}

float TurboSasTable::row(float* s, int n, float m) const {
    float acc[32] = {};
    run(s, n, n, m, s, acc);
    return total(acc);
}

// ---- head-wise mixed precision -------------------------------------------------------------

static double range_times_std(const float* x, size_t n) {
    if (n == 0) return 0.0;
    double mn = x[0], mx = x[0], s = 0.0, s2 = 0.0;
    for (size_t i = 0; i < n; ++i) {
        mn = std::min(mn, (double)x[i]);
        mx = std::max(mx, (double)x[i]);
        s += x[i];
        s2 += (double)x[i] * x[i];
    }
    const double mean = s / n, var = std::max(0.0, s2 / n - mean * mean);
    return (mx - mn) * std::sqrt(var);
}

double turbo_head_priority(const float* k, const float* v, size_t n) {
    return range_times_std(k, n) + range_times_std(v, n);
}

std::vector<uint8_t> turbo_choose_bits(const std::vector<double>& priority, float frac_2bit) {
    if (!(frac_2bit >= 0.0f && frac_2bit <= 1.0f)) throw TurboError("frac_2bit must be in [0, 1]");
    const size_t H = priority.size();
    std::vector<size_t> order(H);
    std::iota(order.begin(), order.end(), 0);
    // ascending priority; ties broken by head index so the choice is deterministic
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return priority[a] < priority[b]; });
    const size_t n2 = (size_t)std::lround(frac_2bit * (double)H);
    std::vector<uint8_t> bits(H, 4);
    for (size_t i = 0; i < n2; ++i) bits[order[i]] = 2;
    return bits;
}

}  // namespace tandem
