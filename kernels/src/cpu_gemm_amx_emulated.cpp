// The "amx-emulated" path: the amx path's kernels (cpu_gemm_amx.h) with its tile instructions
// done in plain C++, for testing them on CPUs without AMX. Slow; never chosen automatically.
#define AMX_EMULATED
#include "cpu_gemm_amx.h"

namespace tandem::cpu::detail {

const KernelSet& kernels_amx_emulated() {
    static const KernelSet k = make_amx("amx-emulated");
    return k;
}

}  // namespace tandem::cpu::detail
