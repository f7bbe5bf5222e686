// CPU attention for one query row over a KV cache held in F16 or F32, and the causal prefill
// over key blocks; used by the engine's CPU forward pass.
#pragma once
#include <cstdint>

#include "tandem/quant_types.h"

namespace tandem::cpu_attention {

// out[0..head_dim) = softmax(scale * q . K[j]) weighted sum of V[j], j in [0, n_kv).
// K and V rows are head_dim elements of kv_type, `stride` elements apart. Online softmax:
// one pass, no scratch. n_kv >= 1.
void attend(const float* q, const void* K, const void* V, int64_t n_kv, int64_t stride, int head_dim,
            float scale, GgmlType kv_type, float* out);

// Prefill: causal attention of n_q query tokens at positions pos0 .. pos0 + n_q - 1 for the
// `group` query heads that share one KV head. Query token t, head i of the group is at
// Q + t * q_stride + i * head_dim; it attends to cache rows [0, pos0 + t] (K, V as for attend)
// and its output goes to out + t * out_stride + i * head_dim. The same as attend() on each
// (token, head) up to float rounding: each block of 16 keys (AVX-512; 8 with AVX2) is converted
// from the cache once for all the n_q * group rows, and the scores, softmax and sums take a
// block at a time. Scratch: n_q * group * (head_dim + 16) floats at most (each row's output and
// denominator lanes; thread-local, grown as needed).
void attend_causal(const float* Q, int64_t q_stride, int n_q, int group, int64_t pos0, const void* K,
                   const void* V, int64_t kv_stride, int head_dim, float scale, GgmlType kv_type, float* out,
                   int64_t out_stride);

// Plain reference twin (scalar, two-pass softmax in double) for the tests.
void attend_ref(const float* q, const void* K, const void* V, int64_t n_kv, int64_t stride, int head_dim,
                float scale, GgmlType kv_type, float* out);

// Stores n floats into a cache row of kv_type: F16 as fp32_to_fp16 rounds, bit for bit (by
// F16C where cpu::ops_isa() allows AVX2).
void store_row(const float* x, void* dst, int n, GgmlType kv_type);

}  // namespace tandem::cpu_attention
