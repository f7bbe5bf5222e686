// The TurboAttention KV cache written on the device, in the byte layout of
// tandem/turbo_attention.h (one sequence per cache): RoPE fused with the INT8 store into the
// recent buffer, the compression of a full recent buffer into an INT4/INT2 record, and the
// fan-out that lets one decode launch serve several query tokens of one sequence (prefill).
// CPU twins: TurboKvCache::append (turbo_quant_int8) and turbo_compress_block; for the same
// float K/V the bytes are identical (tests/test-gpu-engine.cpp checks it).
// Positions are read from device memory (pos0) so that a captured CUDA graph stays valid
// across block boundaries. All launchers run on `stream` and check the launch.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "tandem/turbo_attention.h"

namespace tandem {

// One sequence's recent buffer (T = block_tokens, D = head_dim, H = n_kv_heads).
struct TurboRecentDev {
    int8_t* k = nullptr;   // (H, T, D) token-major
    int8_t* v = nullptr;   // (H, D, T) channel-major
    float* ks = nullptr;   // (H, T) one scale per token
    float* vs = nullptr;   // (H, T)
};

struct TurboStoreParams {
    float* qkv = nullptr;        // (n, n_head*hd + 2*n_head_kv*hd): q | k | v of each token; k rotated in place
    float* q_out = nullptr;      // (n, n_head*hd) the rotated queries, packed (turbo_decode's q)
    int64_t n = 0;               // tokens; their slots must be distinct: n <= block_tokens
    const int* pos0 = nullptr;   // device: token t sits at position *pos0 + offset + t
    int offset = 0;
    int n_head = 0, n_head_kv = 0, head_dim = 0, n_rot = 0;
    const float* inv_freq = nullptr;  // (n_rot / 2), device
    bool neox = false;
    int block_tokens = 64;
    TurboRecentDev recent;       // token t goes to slot (position % block_tokens)
};
// Rotates q and k (as rope_store_cuda) and stores k, v as symmetric INT8 with one scale per
// token and head (turbo_quant_int8's arithmetic). Throws CudaError on bad parameters.
void turbo_rope_store_cuda(const TurboStoreParams& p, cudaStream_t stream);

struct TurboCompressParams {
    const int* pos0 = nullptr;   // device: when e = *pos0 + end_offset is a positive multiple of
    int end_offset = 0;          // T, block e/T - 1 is compressed from the recent buffer; else no-op
    TurboCacheLayout layout;
    TurboRecentDev recent;
    uint8_t* blocks = nullptr;   // (layout.seq_bytes) the sequence's records
};
// One block per KV head: re-quantizes the T tokens to one block scale, then to INT4/INT2
// codes with integer scales and zero points (turbo_compress_block's arithmetic). Record
// padding bytes are not written (the cache is zeroed once). T <= 64, D <= 128.
void turbo_compress_cuda(const TurboCompressParams& p, cudaStream_t stream);

struct TurboFanoutParams {
    TurboRecentDev src;          // one sequence
    TurboRecentDev dst;          // (n copies) of src, each (H, ...) as src
    int* seq_len = nullptr;      // (n) written: *pos0 + offset + i + 1
    const int* pos0 = nullptr;
    int offset = 0, n = 0;
    int n_kv_heads = 0, block_tokens = 0, head_dim = 0;
};
// Copies the recent buffer n times and writes the n causal lengths, so that turbo_decode_cuda
// with batch n (and layout.seq_bytes = 0: every "sequence" reads the same records) computes
// the attention of n consecutive query tokens of one sequence.
void turbo_fanout_cuda(const TurboFanoutParams& p, cudaStream_t stream);

}  // namespace tandem
