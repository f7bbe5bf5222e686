// FP16 attention decode (split-KV, GQA-aware): the baseline and the user-selectable path.
#pragma once
#include "tandem/turbo_attention.h"

#include <cuda_runtime.h>

namespace tandem {

size_t fp16_decode_workspace_floats(const Fp16DecodeParams& p);
// out (batch, Hq, D) = softmax(q K^T / sqrt(D)) V with exact exp2 (no SAS, no threshold).
// Throws TurboError on bad parameters; launches on `stream` and checks the launch.
void fp16_decode_cuda(const Fp16DecodeParams& p, cudaStream_t stream);

}  // namespace tandem
