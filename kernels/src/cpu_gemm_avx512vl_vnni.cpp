// The "avx-vnni" path, EVEX-encoded: the same 256-bit kernels as cpu_gemm_avx_vnni.cpp with the
// AVX512-VL form of vpdpbusd ymm, for CPUs with AVX512-VL + VNNI but no AVX-VNNI (Ice Lake,
// Sapphire Rapids, AMD Zen 4), so that the avx-vnni kernels run and are tested there too.
// Every function carries the target attribute; nothing here runs unless cpu_features() said so.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#define TGT __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni")))
#include "cpu_v256.h"

namespace tandem::cpu::detail {
namespace {

struct V256VnniEvex : V256Base {
    static constexpr bool kUnsignedDot = true;
    TGT static I dot(I acc, I w, I x) { return _mm256_dpbusd_epi32(acc, w, x); }
};

}  // namespace
}  // namespace tandem::cpu::detail

using V = tandem::cpu::detail::V256VnniEvex;
#include "cpu_gemm_kernels.h"

namespace tandem::cpu::detail {

const KernelSet& kernels_avx512vl_vnni() {
    static const KernelSet k = make_kernel_set("avx-vnni");
    return k;
}

}  // namespace tandem::cpu::detail
