// The non-matmul pieces of a Llama-family layer on the GPU: RMSNorm, bias, SwiGLU, RoPE with
// the KV-cache store, plain causal attention over an FP16 cache, and greedy argmax.
// Positions are read from device memory (pos0) so that a captured CUDA graph can be
// replayed for every decode step. All launchers run on `stream` and check the launch.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace tandem {

// y[t] = x[t] * rsqrt(mean(x[t]^2) + eps) * w, for t < n; rows are d floats. y may be x.
void rmsnorm_rows_cuda(const float* x, const float* w, float* y, int64_t n, int64_t d, float eps, cudaStream_t stream);
// The same, y rounded to bfloat16: the input of the prefill GEMMs on BF16 tensor cores.
void rmsnorm_rows_bf16_cuda(const float* x, const float* w, __nv_bfloat16* y, int64_t n, int64_t d, float eps,
                            cudaStream_t stream);
// y[t*stride + i] += bias[i], t < n, i < d.
void add_bias_rows_cuda(float* y, const float* bias, int64_t n, int64_t d, int64_t stride, cudaStream_t stream);
// g[i] = silu(g[i]) * u[i], i < count.
void swiglu_cuda(float* g, const float* u, int64_t count, cudaStream_t stream);
// y[i] = silu(g[i]) * u[i] rounded to bfloat16, i < count (g is not written).
void swiglu_bf16_cuda(const float* g, const float* u, __nv_bfloat16* y, int64_t count, cudaStream_t stream);
// y[i] = x[i] rounded to bfloat16 (round to nearest even), i < count: the prefill GEMMs' activations.
void to_bf16_cuda(const float* x, __nv_bfloat16* y, int64_t count, cudaStream_t stream);

struct RopeStoreParams {
    float* qkv = nullptr;        // (n, n_head*hd + 2*n_head_kv*hd): q | k | v of each token
    int64_t n = 0;
    const int* pos0 = nullptr;   // device: position of token 0
    int n_head = 0, n_head_kv = 0, head_dim = 0, n_rot = 0;
    const float* inv_freq = nullptr;  // (n_rot / 2), device
    bool neox = false;           // pairs (i, i + n_rot/2) instead of (2i, 2i + 1)
    __half* q16 = nullptr;       // when set: the rotated queries also as FP16, (n, n_head*hd)
    __half* k_cache = nullptr;   // (n_head_kv, n_ctx, hd)
    __half* v_cache = nullptr;   // (n_head_kv, n_ctx, hd)
    int64_t n_ctx = 0;
};
// Rotates q and k in place and stores k, v (as FP16) at positions pos0 .. pos0 + n - 1.
void rope_store_cuda(const RopeStoreParams& p, cudaStream_t stream);

#ifdef __CUDACC__
// RoPE on one head x[0..head_dim) of the token at `pos`, in place, the block's threads
// striding over the n_rot / 2 pairs (the caller syncs before reading x). The CPU twin is
// rope() in client_engine/src/context.cpp. Used by rope_store and turbo_rope_store.
__device__ __forceinline__ void rope_head(float* x, int pos, const float* inv_freq, int n_rot, bool neox) {
    const int half = n_rot / 2;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const float theta = (float)pos * inv_freq[i];
        const float c = cosf(theta), s = sinf(theta);
        const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        const float x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}
#endif

struct AttentionParams {
    const float* q = nullptr;      // token t's heads at q + t * q_stride: (n_head, hd)
    int64_t q_stride = 0;
    const __half* k_cache = nullptr;  // (n_head_kv, n_ctx, hd)
    const __half* v_cache = nullptr;
    int64_t n_ctx = 0;
    const int* pos0 = nullptr;     // device: token t sees cache positions [0, pos0 + t]
    int64_t n = 0;
    int n_head = 0, n_head_kv = 0, head_dim = 0;
    float scale = 1.0f;
    float* out = nullptr;          // (n, n_head * hd), row stride out_stride
    int64_t out_stride = 0;
};
// Plain causal attention, one block per (head, token): scores in shared memory, exact
// softmax. head_dim <= 256. Throws CudaError when n_ctx does not fit shared memory.
void attention_cuda(const AttentionParams& p, cudaStream_t stream);

// *out = the lowest index of the largest of x[0..n) (one block).
void argmax_cuda(const float* x, int64_t n, int32_t* out, cudaStream_t stream);

}  // namespace tandem
