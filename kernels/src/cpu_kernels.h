// Internal to kernels/src/cpu_*.cpp: the activation block formats, the kernel-table shape that
// every path (scalar, avx2, avx512-vnni) fills in, and small helpers they share.
#pragma once
#include <cstddef>
#include <cstdint>

#include "tandem/quant_types.h"

namespace tandem::cpu::detail {

// ---- activation formats ------------------------------------------------------------------

// Activations for the 32-block weight types: x[j] ~= d * qs[j], |qs| <= 127.
// s = d * sum(qs) serves the weight formats with an offset (Q4_0's -8, Q4_1's min, ...).
struct block_q8a {
    float d;
    float s;
    int8_t qs[32];
};
static_assert(sizeof(block_q8a) == 40, "block_q8a must stay packed");

// Activations for the K-quant weight types: x[j] ~= d * qs[j]; bsums[g] = sum of qs[16g..16g+15].
struct block_q8k {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
};
static_assert(sizeof(block_q8k) == 4 + QK_K + QK_K / 8, "block_q8k must stay packed");

enum class ActFormat { F32, Q8A, Q8K };

// Which activation format a weight type's kernels take (only the types matmul supports).
ActFormat act_format(GgmlType t);

// Bytes of one token's activation row of n elements in format f.
size_t act_row_size(ActFormat f, int64_t n);

// x (n) f32 -> activation row in format f. n is a multiple of that format's block.
// Plain scalar code, shared by every path so that all paths see the same quantized values.
void quantize_act(ActFormat f, const float* x, void* dst, int64_t n);

// ---- kernel tables -------------------------------------------------------------------------

// Y[t*ldy + r] = dot(W row r, activation row t) for r in [0, nr), t in [0, nt).
//   n    elements per row (cols), a multiple of the block size
//   W    nr rows of ldw bytes in the weight type's layout
//   X    nt activation rows of ldx bytes in act_format(type)
//   Y    f32, row t of the output at Y + t*ldy
using gemm_fn = void (*)(int64_t n, const void* W, size_t ldw, int64_t nr, const void* X, size_t ldx,
                         int64_t nt, float* Y, int64_t ldy);

struct KernelSet {
    const char* name = nullptr;
    gemm_fn gemm[kGgmlTypeCount] = {};  // nullptr: this path does not do the type
};

// Each returns a fully filled table for its path. Only call the SIMD ones on a CPU that has the
// instructions (cpu_matmul.cpp checks cpu_features() first).
const KernelSet& kernels_scalar();
const KernelSet& kernels_avx2();
const KernelSet& kernels_avx512();

// ---- shared helpers ------------------------------------------------------------------------

// The 8 (scale, min) pairs of a Q4_K/Q5_K block, unpacked (get_scale_min_k4: quant_types.h).
inline void unpack_scales_k4(const uint8_t* q, uint8_t sc[8], uint8_t mn[8]) {
    for (int j = 0; j < 8; j++) get_scale_min_k4(j, q, &sc[j], &mn[j]);
}

}  // namespace tandem::cpu::detail
