// The "avx512-vnni" path: the panel micro-kernels (cpu_gemm_kernels.h) on zmm registers with
// AVX-512 F/BW/VL + VNNI, for Intel Ice Lake / Sapphire Rapids and AMD Zen 4 and later:
// vpdpbusd for the quantized types (16 rows x 4 columns x 1 token per instruction), fma for
// the float types. Prefill tiles of 16 tokens reuse each unpacked step 16 times; decode (T = 1)
// streams one panel at a time (cpu_v512.h).
// Every function carries the target attribute; nothing here runs unless cpu_features() said so.

// GCC 12 warns "__Y may be used uninitialized" inside avx512fintrin.h for every masked intrinsic
// compiled under a target attribute (its _mm512_undefined_* placeholders): a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#include "cpu_v512.h"
using V = tandem::cpu::detail::V512;
#include "cpu_gemm_kernels.h"

namespace tandem::cpu::detail {

const KernelSet& kernels_avx512() {
    static const KernelSet k = make_kernel_set("avx512-vnni");
    return k;
}

}  // namespace tandem::cpu::detail
