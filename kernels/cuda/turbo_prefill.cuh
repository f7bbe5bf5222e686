// TurboAttention prefill: blockwise INT8 Q/K, INT8 tensor-core Q.K^T, SAS, FP16 P.V (causal).
#pragma once
#include "tandem/turbo_attention.h"

#include <cuda_runtime.h>

namespace tandem {

// Bytes of workspace for p on the current device: INT8 Q and K, their block scales, and V
// transposed to (D, len) where the portable kernel runs.
size_t turbo_prefill_workspace_bytes(const TurboPrefillParams& p);
// out = causal softmax(q k^T / sqrt(D)) v for every sequence and query head, on `stream`:
// quantize Q and K (one launch), then the attention (TurboPrefillParams::kernel: the Hopper
// kernel on sm_90 by default; the portable one transposes V first, one more launch). Throws
// TurboError on bad parameters (names the field); checks each launch.
// On sm_90 the Hopper kernel starts as a programmatic dependent launch, and at D = 128 with
// INT8 Q.K^T it quantizes Q itself (the first launch does K): see TurboPrefillLaunch.
void turbo_prefill_cuda(const TurboPrefillParams& p, cudaStream_t stream);

// The two launch choices turbo_prefill_cuda makes on sm_90, for bench-attention's same-run A/B
// (neither changes the result: same INT8 codes, same scales). Measured on the H100 (32 query /
// 8 KV heads, 1k-16k tokens; bench/results/attention-h100.md, session 11): the programmatic
// launch made D = 64 0-6% faster; Q quantized in the attention kernel made D = 128 at 4k-16k
// 2-5% faster than Q quantized apart, and D = 64 3-10% slower (each CTA quantizes before its
// first tile, and at D = 64 a CTA has little work to hide that behind).
struct TurboPrefillLaunch {
    // each consumer warpgroup of the Hopper kernel quantizes its 64 query rows into shared
    // memory (HopperPrefillArgs::quantize_q); INT8 only. turbo_prefill_cuda: at D = 128
    bool quantize_q_in_attention = true;
    // the Hopper kernel's blocks start and set up while the quantization launch finishes, and
    // wait for its results (HopperPrefillArgs::programmatic)
    bool programmatic = true;
    // the Hopper kernel's consumer warpgroups (HopperPrefillArgs::warpgroups; 0: its default)
    int warpgroups = 0;
};
void turbo_prefill_cuda(const TurboPrefillParams& p, cudaStream_t stream, TurboPrefillLaunch how);

}  // namespace tandem
