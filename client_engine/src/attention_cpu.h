// CPU attention for one query row over a KV cache held in F16 or F32 (internal header).
#pragma once
#include <cstdint>

#include "tandem/quant_types.h"

namespace tandem::cpu_attention {

// out[0..head_dim) = softmax(scale * q . K[j]) weighted sum of V[j], j in [0, n_kv).
// K and V rows are head_dim elements of kv_type, `stride` elements apart. Online softmax:
// one pass, no scratch. n_kv >= 1.
void attend(const float* q, const void* K, const void* V, int64_t n_kv, int64_t stride, int head_dim,
            float scale, GgmlType kv_type, float* out);

// Plain reference twin (scalar, two-pass softmax in double) for the tests.
void attend_ref(const float* q, const void* K, const void* V, int64_t n_kv, int64_t stride, int head_dim,
                float scale, GgmlType kv_type, float* out);

// Stores n floats into a cache row of kv_type.
void store_row(const float* x, void* dst, int n, GgmlType kv_type);

}  // namespace tandem::cpu_attention
