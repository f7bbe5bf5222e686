// The "amx-emulated" and "amx-bf16-emulated" paths: the amx paths' kernels (cpu_gemm_amx.h,
// cpu_gemm_amx_bf16.h) with their tile instructions (and the BF16 rounding) done in plain C++,
// for testing them on CPUs without AMX. Slow; never chosen automatically.
#define AMX_EMULATED
#include "cpu_gemm_amx.h"
#include "cpu_gemm_amx_bf16.h"

namespace tandem::cpu::detail {

const KernelSet& kernels_amx_emulated() {
    static const KernelSet k = make_amx("amx-emulated");
    return k;
}

const KernelSet& kernels_amx_bf16_emulated() {
    static const KernelSet k = make_amx_bf16("amx-bf16-emulated");
    return k;
}

}  // namespace tandem::cpu::detail
