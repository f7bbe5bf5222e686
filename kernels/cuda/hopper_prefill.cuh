// Causal prefill attention on Hopper (sm_90a: TMA, mbarriers, wgmma; hopper_prefill.cu), for the
// FP16 path and for TurboAttention's INT8 Q.K^T. The code is built for sm_90a only: callers
// check hopper_prefill_available() and say so when another kernel runs instead.
#pragma once
#include "tandem/turbo_attention.h"

#include <cuda_runtime.h>

namespace tandem {

// True when the current device is sm_90 (H100/H200), the only target the kernel is built for.
bool hopper_prefill_available();

// One launch over prepared operands; len % 64 == 0, head_dim 64 or 128.
struct HopperPrefillArgs {
    const void* q = nullptr;           // (batch, Hq, len, D): FP16, or INT8 when int8_qk
    const void* k = nullptr;           // (batch, Hkv, len, D): same type as q
    const void* vt = nullptr;          // (batch, Hkv, D, len) FP16: V transposed
    const float* q_scales = nullptr;   // int8_qk: (batch * Hq, len / 64), one per 64-row block
    const float* k_scales = nullptr;   // int8_qk: (batch * Hkv, len / 64)
    float* out = nullptr;              // (batch, Hq, len, D)
    int batch = 0, n_q_heads = 0, n_kv_heads = 0, head_dim = 0, len = 0;
    bool int8_qk = false;              // Turbo: INT8 Q.K^T with block scales, SAS softmax
    int poly_degree = 3;               // SAS (int8_qk only)
    float threshold = -16.0f;
    // true: S of tile j is issued with P.V of tile j-1 (softmax overlaps the tensor cores);
    // false: S, softmax, P.V in turn (the same-run baseline of bench-attention)
    bool pipelined = true;
};
// Throws TurboError when the device is not sm_90; checks the launch.
void hopper_prefill_launch(const HopperPrefillArgs& a, cudaStream_t stream);

// Plain FP16 causal prefill (exact exp2 softmax): V is transposed into the workspace, then one
// Hopper launch. Throws TurboError on bad parameters (names the field) or a non-sm_90 device.
size_t fp16_prefill_workspace_bytes(const Fp16PrefillParams& p);
void fp16_prefill_cuda(const Fp16PrefillParams& p, cudaStream_t stream);

}  // namespace tandem
