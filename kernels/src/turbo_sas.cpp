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

TurboSasTable::TurboSasTable(int degree, float threshold) : threshold_(threshold), poly_(0x3C01) {
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
// row() on 8 lanes: the fraction's FP16 bits by vcvtps2ph (round to nearest even, as
// fp32_to_fp16), the table gathered, 2^-n from the exponent bits.
__attribute__((target("avx2,fma,f16c"))) static float sas_row_avx2(const float* poly, float th, float* s, int n,
                                                                  float m, int* done) {
    const __m256 vm = _mm256_set1_ps(m), vth = _mm256_set1_ps(th);
    __m256 vsum = _mm256_setzero_ps();
    int t = 0;
    for (; t + 8 <= n; t += 8) {
        const __m256 x = _mm256_sub_ps(_mm256_loadu_ps(s + t), vm);
        const __m256 keep = _mm256_cmp_ps(x, vth, _CMP_GE_OQ);  // false for NaN, as the scalar test
        const __m256 y = _mm256_sub_ps(_mm256_setzero_ps(), _mm256_and_ps(x, keep));
        const __m256 fl = _mm256_floor_ps(y);
        const __m128i hb = _mm256_cvtps_ph(_mm256_sub_ps(y, fl), _MM_FROUND_TO_NEAREST_INT);
        const __m256 r = _mm256_i32gather_ps(poly, _mm256_cvtepu16_epi32(hb), 4);
        const __m256i e = _mm256_slli_epi32(_mm256_sub_epi32(_mm256_set1_epi32(127), _mm256_cvtps_epi32(fl)), 23);
        const __m256 p = _mm256_and_ps(_mm256_mul_ps(r, _mm256_castsi256_ps(e)), keep);
        _mm256_storeu_ps(s + t, p);
        vsum = _mm256_add_ps(vsum, p);
    }
    float b[8];
    _mm256_storeu_ps(b, vsum);
    *done = t;
    return ((b[0] + b[4]) + (b[1] + b[5])) + ((b[2] + b[6]) + (b[3] + b[7]));
}
#endif

float TurboSasTable::row(float* s, int n, float m) const {
    float sum = 0.0f;
    int t = 0;
#if defined(__x86_64__)
    // 2^-n is built from exponent bits: n <= 120 keeps it normal
    if (threshold_ >= -120.0f && cpu::ops_isa() >= cpu::OpsIsa::Avx2) sum = sas_row_avx2(poly_.data(), threshold_, s, n, m, &t);
#endif
    for (; t < n; t++) {
        s[t] = (*this)(s[t] - m);
        sum += s[t];
    }
    return sum;
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
