// Causal prefill attention on Hopper (sm_90a: TMA, mbarriers, wgmma; hopper_prefill.cu), for the
// FP16 path and for TurboAttention's INT8 Q.K^T. The code is built for sm_90a only: callers
// check hopper_prefill_available() and say so when another kernel runs instead.
#pragma once
#include "tandem/turbo_attention.h"

#include <cuda_runtime.h>

namespace tandem {

// True when the current device is sm_90 (H100/H200), the only target the kernel is built for.
bool hopper_prefill_available();

// The type of Q and K in S = Q K^T: FP16 (the plain path, exact softmax), or Turbo's blockwise
// INT8 or FP8 e4m3 (one scale per 64 rows of a head) with SAS softmax.
enum class QkType { F16, S8, E4M3 };

// One launch. Element (b, h, r, d) of q sits at (b * Hq + h) * q_head_stride + r * q_row_stride
// + d (so a sequence's heads follow the previous sequence's); k and v alike with the kv strides
// over n_q + q_pos0 keys; out (floats) alike with the out strides.
struct HopperPrefillArgs {
    const void* q = nullptr;           // of type qk (FP16 with quantize_q)
    int64_t q_row_stride = 0, q_head_stride = 0;    // elements
    const void* k = nullptr;           // same type as q
    const void* v = nullptr;           // FP16
    int64_t kv_row_stride = 0, kv_head_stride = 0;  // elements, K and V alike
    const float* q_scales = nullptr;   // S8/E4M3: (batch * Hq, n_q / 64), one per 64-row block
    const float* k_scales = nullptr;   // S8/E4M3: (batch * Hkv, n_keys / 64)
    float* out = nullptr;
    int64_t out_row_stride = 0, out_head_stride = 0;  // floats
    int batch = 0, n_q_heads = 0, n_kv_heads = 0, head_dim = 0;
    int n_q = 0;                       // query rows per head
    int q_pos0 = 0;                    // position of query row 0: row r sees keys 0..q_pos0 + r
    QkType qk = QkType::F16;           // S8/E4M3 need q_pos0 == 0 and n_q % 64 == 0
    // S8/E4M3: the softmax's exponentials by SAS (polynomial of poly_degree on the FMA pipe,
    // scores under threshold dropped) instead of the special-function unit's ex2.approx, as the
    // FP16 path takes them. Off by default: on the H100 SAS made this kernel 19-48% slower at the
    // same error (bench/results/attention-h100.md, session 9).
    bool sas = false;
    int poly_degree = 3;
    float threshold = -16.0f;
    // true: S of tile j is issued with P.V of tile j-1, the two consumer warpgroups taking turns
    // (softmax overlaps the tensor cores); false: S, softmax, P.V in turn (bench-attention's
    // same-run baseline)
    bool pipelined = true;
    // true: launched as a programmatic dependent of the kernel before it in the stream (which
    // wrote q, k or their scales): the blocks start, set up their barriers and prefetch the
    // tensor maps while that kernel finishes, then wait for its results (griddepcontrol.wait)
    bool programmatic = false;
    // qk S8 only: q is FP16 and each consumer warpgroup quantizes its own 64 query rows (one
    // scale block) into shared memory, as turbo_prefill's quantization launch would (q_scales
    // unused). That launch then quantizes K alone: a fifth of the bytes with 32 query and 8 KV
    // heads.
    bool quantize_q = false;
    // Consumer warpgroups of 64 query rows per CTA: 2, or 3 (head_dim 64 only; a K/V tile then
    // serves 192 query rows); 0: default_prefill_warpgroups(*this). The result is the same bits
    // either way.
    int warpgroups = 0;
};
// The consumer warpgroups hopper_prefill_launch runs for h when h.warpgroups is 0: three at
// head_dim 64 where the 192-row blocks still give the current device at least four waves of CTAs
// (batch x query heads x blocks >= 4 x its SMs), else two. Two where no device answers.
int default_prefill_warpgroups(const HopperPrefillArgs& h);
// Throws TurboError naming the field on bad arguments or a non-sm_90 device; checks the launch.
void hopper_prefill_launch(const HopperPrefillArgs& a, cudaStream_t stream);

// Plain FP16 causal prefill (exact exp2 softmax), one Hopper launch. Throws TurboError on bad
// parameters (names the field) or a non-sm_90 device.
void fp16_prefill_cuda(const Fp16PrefillParams& p, cudaStream_t stream);

}  // namespace tandem
