// The "avx2" path (AVX2 + FMA + F16C, the fallback for x86 CPUs without VNNI): the panel
// micro-kernels (cpu_gemm_kernels.h) on ymm registers, 8 rows per vector. The int8 dot is
// vpmaddubsw (u8 x i8 -> saturating i16 pairs; levels up to 63 cannot saturate) + vpmaddwd
// with ones; the 4-bit levels and both 4-bit halves of Q8_0's levels + 128 are summed in int16
// over a subblock (cpu_gemm_kernels.h sums16, split8) and widened once.
// Every function carries the target attribute; nothing here runs unless cpu_features() said so.
#define TGT __attribute__((target("avx2,fma,f16c")))
#include "cpu_v256.h"

namespace tandem::cpu::detail {
namespace {

struct V256Maddubs : V256Base {
    static constexpr bool kUnsignedDot = false;
    TGT static I dot(I acc, I w, I x) {
        return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1)));
    }
    // 4-bit levels (cpu_gemm_kernels.h sums16): a subblock's 8 steps summed in int16, widened once
    static constexpr bool kSums16 = true;
    TGT static I dot16(I acc16, I w, I x) { return _mm256_add_epi16(acc16, _mm256_maddubs_epi16(w, x)); }
    TGT static I widen16(I acc16, I c) { return _mm256_add_epi32(c, _mm256_madd_epi16(acc16, _mm256_set1_epi16(1))); }
    TGT static I widen16x16(I acc16, I c) { return _mm256_add_epi32(c, _mm256_madd_epi16(acc16, _mm256_set1_epi16(16))); }
};

}  // namespace
}  // namespace tandem::cpu::detail

using V = tandem::cpu::detail::V256Maddubs;
#include "cpu_gemm_kernels.h"

namespace tandem::cpu::detail {

const KernelSet& kernels_avx2() {
    static const KernelSet k = make_kernel_set("avx2");
    return k;
}

}  // namespace tandem::cpu::detail
