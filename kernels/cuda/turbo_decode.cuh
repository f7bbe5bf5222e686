// TurboAttention decode on the INT4/INT2 cache + INT8 recent buffer (split-KV, GQA-aware).
#pragma once
#include "tandem/turbo_attention.h"

#include <cuda_runtime.h>

namespace tandem {

// Floats of workspace the launch needs for p (with p.n_splits, 0 = automatic). Throws
// TurboError on bad parameters.
size_t turbo_decode_workspace_floats(const TurboDecodeParams& p);
// Runs decode for every sequence: out (batch, Hq, D) = softmax(q K^T / sqrt(D)) V on the
// cache, SAS exponentials, tiles under the threshold skipped. Asserts the parameters
// (throws TurboError naming the field), launches on `stream`, checks the launch. Every
// seq_len must be in [1, max_len]. Not thread-safe on one workspace.
void turbo_decode_cuda(const TurboDecodeParams& p, cudaStream_t stream);

}  // namespace tandem
