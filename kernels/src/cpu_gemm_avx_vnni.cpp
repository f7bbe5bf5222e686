// The "avx-vnni" path, VEX-encoded: the 256-bit panel micro-kernels (cpu_gemm_kernels.h) with
// vpdpbusd ymm from AVX-VNNI (Intel Alder Lake and later client CPUs, AMD Zen 5), 8 rows per
// vector. cpu_gemm_avx512vl_vnni.cpp compiles the same kernels EVEX-encoded for CPUs that have
// AVX512-VL + VNNI instead (where this file's instructions would fault): the path takes this
// build only where cpuid reports AVX-VNNI.
// Every function carries the target attribute; nothing here runs unless cpu_features() said so.
#define TGT __attribute__((target("avx2,fma,f16c,avxvnni")))
#include "cpu_v256.h"

namespace tandem::cpu::detail {
namespace {

struct V256Vnni : V256Base {
    static constexpr bool kUnsignedDot = true;
    TGT static I dot(I acc, I w, I x) { return _mm256_dpbusd_avx_epi32(acc, w, x); }
};

}  // namespace
}  // namespace tandem::cpu::detail

using V = tandem::cpu::detail::V256Vnni;
#include "cpu_gemm_kernels.h"

namespace tandem::cpu::detail {

const KernelSet& kernels_avx_vnni() {
    static const KernelSet k = make_kernel_set("avx-vnni");
    return k;
}

}  // namespace tandem::cpu::detail
