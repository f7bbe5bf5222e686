// Element-wise ops of the CPU forward pass (tandem/cpu_ops.h).
#include "tandem/cpu_ops.h"

// GCC 12 warns "__Y may be used uninitialized" inside avx512fintrin.h for intrinsics compiled
// under a target attribute (its _mm512_undefined_* placeholders): a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include <cmath>

#include "tandem/cpu_matmul.h"
#include "vec_exp.h"

namespace tandem::cpu_ops {

static float silu_mul_one(float g, float u) { return g / (1.0f + std::exp(-g)) * u; }

// sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0, with e = exp(-|x|) <= 1.
__attribute__((target("avx512f,avx2,fma"))) static int64_t silu_mul_avx512(float* g, const float* u, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 x = _mm512_loadu_ps(g + i);
        const __m512 e = exp_neg(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(x)));
        const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
        const __m512 num = _mm512_mask_blend_ps(neg, _mm512_set1_ps(1.0f), e);
        const __m512 sig = _mm512_div_ps(num, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
        _mm512_storeu_ps(g + i, _mm512_mul_ps(_mm512_mul_ps(x, sig), _mm512_loadu_ps(u + i)));
    }
    return i;
}

__attribute__((target("avx2,fma"))) static int64_t silu_mul_avx2(float* g, const float* u, int64_t n) {
    int64_t i = 0;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 e = exp_neg(_mm256_or_ps(x, sign));  // -|x|
        const __m256 num = _mm256_blendv_ps(_mm256_set1_ps(1.0f), e, x);  // x's sign bit picks e
        const __m256 sig = _mm256_div_ps(num, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_mul_ps(x, sig), _mm256_loadu_ps(u + i)));
    }
    return i;
}

void silu_mul(float* g, const float* u, int64_t n) {
    const cpu::OpsIsa isa = cpu::ops_isa();
    int64_t i = 0;
    if (isa == cpu::OpsIsa::Avx512) i = silu_mul_avx512(g, u, n);
    else if (isa == cpu::OpsIsa::Avx2) i = silu_mul_avx2(g, u, n);
    for (; i < n; i++) g[i] = silu_mul_one(g[i], u[i]);
}

}  // namespace tandem::cpu_ops
