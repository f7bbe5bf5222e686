// TurboAttention prefill on the quantized cache: the queries of a prompt pass attend to the
// INT4/INT2 records and, for their own block, to the block's INT8 recent-buffer copy, on FP16
// tensor cores (mma.sync), two launches a layer (the tiles' expansion into an FP16 scratch,
// then the attention) instead of one decode launch a 64-token segment.
// The CPU twin is turbo_attend: row p sees the records of the blocks before its own and the
// INT8 tokens of its block up to itself; the last token of a block sees that block as its
// record (it was compressed by that token's append). Scores in log2 units, SAS probabilities
// against a running maximum, as turbo_decode_cuda.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "tandem/turbo_attention.h"
#include "turbo_cache.cuh"

namespace tandem {

struct TurboCachePrefillParams {
    const float* q = nullptr;      // (n, n_q_heads, D) the rotated queries (turbo_rope_store's q_out)
    float* out = nullptr;          // (n, n_q_heads, D)
    const uint8_t* blocks = nullptr;  // the sequence's records: block j of KV head h at
                                      // head_off[h] + j * rec_bytes[h]; every block before
                                      // (pos0 + n) / T must be written (compressed)
    // Slot i: the recent buffer as it stood after the last token of block pos0 / T + i in this
    // pass was stored, each slot (H, T, D) keys, (H, D, T) values, (H, T) scales (the layout of
    // TurboRecentDev; turbo_fanout_cuda with n = 1 writes one)
    TurboRecentDev block_int8;
    // FP16 scratch of turbo_cache_prefill_scratch_bytes(pos0, n, layout): every record and INT8
    // copy the pass reads, expanded once by the first launch
    __half* tiles = nullptr;
    int64_t pos0 = 0;              // position of query 0
    int n = 0;                     // query tokens, positions pos0 .. pos0 + n - 1
    int n_q_heads = 0;             // a multiple of layout.n_kv_heads, at most 8 per KV head
    TurboCacheLayout layout;       // head_dim 64 or 128, block_tokens 64
    int poly_degree = 3;
    float threshold = -16.0f;
};

// The INT8 slots a pass of n tokens from pos0 needs: one per block it touches.
inline int turbo_cache_prefill_slots(int64_t pos0, int n, int block_tokens) {
    return (int)((pos0 + n - 1) / block_tokens - pos0 / block_tokens + 1);
}

// Bytes of TurboCachePrefillParams::tiles for that pass: 2 x T x D halves (keys, values) per KV
// head for each record of a complete block and each INT8 slot. That is the size of one
// layer's FP16 cache for the positions up to the pass's end.
inline size_t turbo_cache_prefill_scratch_bytes(int64_t pos0, int n, const TurboCacheLayout& L) {
    const int64_t tiles = (pos0 + n) / L.block_tokens + turbo_cache_prefill_slots(pos0, n, L.block_tokens);
    return (size_t)tiles * L.n_kv_heads * 2 * L.block_tokens * L.head_dim * sizeof(__half);
}

// Throws CudaError on parameters it does not support (names the field); checks the launch.
void turbo_cache_prefill_cuda(const TurboCachePrefillParams& p, cudaStream_t stream);

}  // namespace tandem
