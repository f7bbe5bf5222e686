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
void turbo_prefill_cuda(const TurboPrefillParams& p, cudaStream_t stream);

}  // namespace tandem
