// CPU attention over the F16/F32 KV cache: an AVX2/F16C path chosen at run time, a portable
// path, and a double-precision reference twin.
#include "tandem/cpu_attention.h"

#include "tandem/cpu_matmul.h"

#include <cmath>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace tandem::cpu_attention {

// ---- portable path ---------------------------------------------------------------------

// f16 -> f32 through a 64K-entry table (256 KiB, built once): branch-free in the hot loop.
static const float* f16_table() {
    static const std::vector<float> t = [] {
        std::vector<float> v(65536);
        for (uint32_t i = 0; i < 65536; i++) v[i] = fp16_to_fp32((half_bits)i);
        return v;
    }();
    return t.data();
}

static void load_row(const void* base, int64_t idx, int64_t stride, int n, GgmlType t, float* out) {
    if (t == GgmlType::F32) {
        std::memcpy(out, (const float*)base + idx * stride, (size_t)n * 4);
    } else {
        const float* tab = f16_table();
        const half_bits* p = (const half_bits*)base + idx * stride;
        for (int i = 0; i < n; i++) out[i] = tab[p[i]];
    }
}

static void attend_portable(const float* q, const void* K, const void* V, int64_t n_kv, int64_t stride,
                            int hd, float scale, GgmlType t, float* out) {
    float krow[512], vrow[512];
    float m = -INFINITY, l = 0;
    for (int i = 0; i < hd; i++) out[i] = 0;
    for (int64_t j = 0; j < n_kv; j++) {
        load_row(K, j, stride, hd, t, krow);
        float s = 0;
        for (int i = 0; i < hd; i++) s += q[i] * krow[i];
        s *= scale;
        if (s > m) {
            const float c = std::exp(m - s);
            l *= c;
            for (int i = 0; i < hd; i++) out[i] *= c;
            m = s;
        }
        const float p = std::exp(s - m);
        l += p;
        load_row(V, j, stride, hd, t, vrow);
        for (int i = 0; i < hd; i++) out[i] += p * vrow[i];
    }
    for (int i = 0; i < hd; i++) out[i] /= l;
}

// ---- AVX2 + F16C path ------------------------------------------------------------------

#if defined(__x86_64__)
__attribute__((target("avx2,fma,f16c"))) static inline __m256 load8(const void* base, int64_t off, GgmlType t) {
    if (t == GgmlType::F32) return _mm256_loadu_ps((const float*)base + off);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)((const half_bits*)base + off)));
}

__attribute__((target("avx2,fma,f16c"))) static float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// head_dim must be a multiple of 8 and at most 256.
__attribute__((target("avx2,fma,f16c"))) static void attend_avx2(const float* q, const void* K, const void* V,
                                                                int64_t n_kv, int64_t stride, int hd,
                                                                float scale, GgmlType t, float* out) {
    const int nv = hd / 8;
    __m256 acc[32], qv[32];
    for (int i = 0; i < nv; i++) { acc[i] = _mm256_setzero_ps(); qv[i] = _mm256_loadu_ps(q + 8 * i); }
    float m = -INFINITY, l = 0;
    for (int64_t j = 0; j < n_kv; j++) {
        __m256 sv = _mm256_setzero_ps();
        for (int i = 0; i < nv; i++) sv = _mm256_fmadd_ps(qv[i], load8(K, j * stride + 8 * i, t), sv);
        const float s = hsum(sv) * scale;
        if (s > m) {
            const __m256 c = _mm256_set1_ps(std::exp(m - s));
            l *= std::exp(m - s);
            for (int i = 0; i < nv; i++) acc[i] = _mm256_mul_ps(acc[i], c);
            m = s;
        }
        const float p = std::exp(s - m);
        l += p;
        const __m256 pv = _mm256_set1_ps(p);
        for (int i = 0; i < nv; i++) acc[i] = _mm256_fmadd_ps(pv, load8(V, j * stride + 8 * i, t), acc[i]);
    }
    const __m256 inv = _mm256_set1_ps(1.0f / l);
    for (int i = 0; i < nv; i++) _mm256_storeu_ps(out + 8 * i, _mm256_mul_ps(acc[i], inv));
}

// The first n - n % 8 of n floats to F16 by vcvtps2ph, rounding to nearest even as
// fp32_to_fp16 does (infinities, overflow to infinity and subnormal results alike). A block of 8
// holding a NaN goes through fp32_to_fp16, whose NaN is sign | 0x7e00 where the instruction
// keeps the payload's top bits. Returns the count done.
__attribute__((target("avx2,fma,f16c"))) static int store_f16_avx2(const float* x, half_bits* y, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)))
            for (int j = i; j < i + 8; j++) y[j] = fp32_to_fp16(x[j]);
        else
            _mm_storeu_si128((__m128i*)(y + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    return i;
}

#endif

void attend(const float* q, const void* K, const void* V, int64_t n_kv, int64_t stride, int hd, float scale,
            GgmlType t, float* out) {
#if defined(__x86_64__)
    if (hd % 8 == 0 && hd <= 256 && cpu::ops_isa() >= cpu::OpsIsa::Avx2) return attend_avx2(q, K, V, n_kv, stride, hd, scale, t, out);
#endif
    attend_portable(q, K, V, n_kv, stride, hd, scale, t, out);
}

// ---- reference -------------------------------------------------------------------------

void attend_ref(const float* q, const void* K, const void* V, int64_t n_kv, int64_t stride, int hd, float scale,
                GgmlType t, float* out) {
    std::vector<double> s((size_t)n_kv);
    std::vector<float> row((size_t)hd);
    double mx = -INFINITY;
    for (int64_t j = 0; j < n_kv; j++) {
        const void* base = K;
        const int64_t off = j * stride;
        for (int i = 0; i < hd; i++)
            row[i] = t == GgmlType::F32 ? ((const float*)base)[off + i] : fp16_to_fp32(((const half_bits*)base)[off + i]);
        double d = 0;
        for (int i = 0; i < hd; i++) d += (double)q[i] * row[i];
        s[j] = d * scale;
        mx = std::max(mx, s[j]);
    }
    double sum = 0;
    for (auto& x : s) { x = std::exp(x - mx); sum += x; }
    std::vector<double> acc((size_t)hd, 0.0);
    for (int64_t j = 0; j < n_kv; j++) {
        const int64_t off = j * stride;
        for (int i = 0; i < hd; i++) {
            const float v = t == GgmlType::F32 ? ((const float*)V)[off + i] : fp16_to_fp32(((const half_bits*)V)[off + i]);
            acc[i] += s[j] / sum * v;
        }
    }
    for (int i = 0; i < hd; i++) out[i] = (float)acc[i];
}

void store_row(const float* x, void* dst, int n, GgmlType t) {
    if (t == GgmlType::F32) return (void)std::memcpy(dst, x, (size_t)n * 4);
    half_bits* y = (half_bits*)dst;
    int i = 0;
#if defined(__x86_64__)
    if (cpu::ops_isa() >= cpu::OpsIsa::Avx2) i = store_f16_avx2(x, y, n);
#endif
    for (; i < n; i++) y[i] = fp32_to_fp16(x[i]);
}

}  // namespace tandem::cpu_attention
