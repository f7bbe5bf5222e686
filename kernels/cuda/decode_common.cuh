// What the two split-KV decode kernels share (turbo_decode.cu on the Turbo cache,
// fp16_decode.cu on the FP16 cache): their arguments, the split count rule, and the combine
// that merges the splits' (m, l, unnormalized o) from the workspace.
#pragma once
#include "cuda_common.cuh"
#include "tandem/turbo_attention.h"

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <vector>

namespace tandem {

constexpr int kTile = 64;  // tokens per tile (= TurboConfig::block_tokens on the GPU)
constexpr float kLog2eF = 1.4426950408889634f;

// Everything both paths pass to the kernel (the launchers fill the part they use).
struct DecodeArgs {
    const float* q = nullptr;        // (batch, Hq, D)
    float* ws = nullptr;             // (batch, Hq, n_splits, D + 2)
    const int* seq_len = nullptr;    // (batch)
    const __half* k16 = nullptr;     // FP16 path: (batch, Hkv, max_len, D)
    const __half* v16 = nullptr;
    const uint8_t* blocks = nullptr; // Turbo path: see tandem/turbo_attention.h
    const int8_t* rk = nullptr;
    const int8_t* rv = nullptr;
    const float* rks = nullptr;
    const float* rvs = nullptr;
    int batch = 0, n_q_heads = 0, n_kv_heads = 0, max_len = 0, n_splits = 1;
    bool causal = false;             // FP16 path: Fp16DecodeParams::causal
    int64_t q_stride = 0;            // FP16 path: floats between batch elements' q
    float threshold = -60.0f;        // Turbo path: SAS parameters
    int degree = 3;
    float c1 = 0, c2 = 0, c3 = 0;    // SAS coefficients (exact halves)
    TurboCacheLayout layout;
    uint8_t head_order[kTurboMaxKvHeads] = {};  // Turbo lean kernel: KV heads, 4-bit ones first
};

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
// Max over the 4 lanes of a quad: one query head's lanes in the heads-on-M mma layout of the
// decode kernels (a head's row max of a tile).
__device__ __forceinline__ float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}

// Combine: grid (n_q_heads, batch), D * NG threads (NG = blockDim.x / D groups of D).
// ws: (batch, Hq, n_splits, D + 2): o..., m, l of each split (m = -inf: an empty split).
// Thread (g, d) merges splits s = g mod NG, then thread d merges the NG groups through shared
// memory; out (batch, Hq, D) = O / L. Latency decides (batch 1: only Hq CTAs, ~130 splits):
// the thread loads kCombineChunk splits' (m, l, o) at once, all in flight, and only then
// merges them, one round trip per chunk. (One split per step waits on a load per split: 5.1
// of the 14.4 us of a batch-1 x 16k decode at D = 64 on the H100.)
constexpr int kCombineChunk = 8;

template <int D>
__global__ void __launch_bounds__(1024) decode_combine_kernel(const float* __restrict__ ws, float* __restrict__ out,
                                                              int n_q_heads, int n_splits) {
    __shared__ float gm[1024 / D], gl[1024 / D];
    __shared__ float part[1024];
    const int hq = blockIdx.x, b = blockIdx.y, tid = threadIdx.x;
    const int ng = blockDim.x / D, g = tid / D, d = tid % D;
    const float* base = ws + ((size_t)b * n_q_heads + hq) * n_splits * (D + 2);
    float M = -INFINITY, L = 0.0f, O = 0.0f;
    for (int s0 = g; s0 < n_splits; s0 += ng * kCombineChunk) {
        float ms[kCombineChunk], ls[kCombineChunk], os[kCombineChunk];
#pragma unroll
        for (int i = 0; i < kCombineChunk; ++i) {
            const int s = s0 + i * ng;
            const float* p = base + (size_t)min(s, n_splits - 1) * (D + 2);
            ms[i] = s < n_splits ? p[D] : -INFINITY;
            ls[i] = p[D + 1];
            os[i] = p[d];
        }
        float mn = M;
#pragma unroll
        for (int i = 0; i < kCombineChunk; ++i) mn = fmaxf(mn, ms[i]);
        if (mn == -INFINITY) continue;  // only empty splits so far
        const float old = exp2f(M - mn);  // M = -inf: 0
        L *= old;
        O *= old;
#pragma unroll
        for (int i = 0; i < kCombineChunk; ++i) {
            const bool real = ms[i] != -INFINITY;  // an empty split adds nothing, whatever it holds
            const float c = exp2f(ms[i] - mn);
            L += real ? ls[i] * c : 0.0f;
            O += real ? os[i] * c : 0.0f;
        }
        M = mn;
    }
    part[tid] = O;
    if (d == 0) gm[g] = M, gl[g] = L;
    __syncthreads();
    if (tid < D) {
        float Mx = -INFINITY;
        for (int i = 0; i < ng; ++i) Mx = fmaxf(Mx, gm[i]);
        float Ls = 0.0f, sum = 0.0f;
        for (int i = 0; i < ng; ++i) {
            if (gm[i] == -INFINITY) continue;
            const float c = exp2f(gm[i] - Mx);
            Ls += gl[i] * c;
            sum += part[i * D + tid] * c;
        }
        out[((size_t)b * n_q_heads + hq) * D + tid] = sum / Ls;
    }
}

// Launches the combine. Threads: D per group of splits, enough groups that one chunk covers
// every split where 1024 threads allow. A plain launch: programmatic dependent launch of the
// attention and engine kernels measured up to 14% slower at batch 1 x 16k and 1-3% slower end
// to end on the H100 (docs/turboattention-impl.md, "Decode kernel").
inline void launch_decode_combine(const float* ws, float* out, int batch, int n_q_heads, int n_splits, int D,
                                  cudaStream_t stream) {
    int ng = 1;
    while (ng * kCombineChunk < n_splits && ng * 2 * D <= 1024) ng *= 2;
    if (D == 128) decode_combine_kernel<128><<<dim3(n_q_heads, batch), D * ng, 0, stream>>>(ws, out, n_q_heads, n_splits);
    else decode_combine_kernel<64><<<dim3(n_q_heads, batch), D * ng, 0, stream>>>(ws, out, n_q_heads, n_splits);
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

using DecodeKernel = void (*)(DecodeArgs);

// Raises fn's dynamic shared memory limit to at least smem and returns how many of its CTAs
// fit on one SM (CTAs of `threads`). Cached per (kernel, bytes, device): the decode runs per
// layer per token. The limit is one attribute per kernel, so it only ever goes up: lowering
// it for a smaller scratch would make a later launch of the same kernel with a cached larger
// one fail with "invalid argument".
inline int resident_ctas(DecodeKernel fn, size_t smem, int dev, int threads) {
    struct Entry { DecodeKernel fn; size_t smem; int dev, per_sm; };
    struct Limit { DecodeKernel fn; int dev; size_t smem; };
    static std::mutex mu;
    static std::vector<Entry> cache;
    static std::vector<Limit> limits;
    std::lock_guard<std::mutex> lock(mu);
    for (const Entry& e : cache)
        if (e.fn == fn && e.smem == smem && e.dev == dev) return e.per_sm;
    Limit* lim = nullptr;
    for (Limit& l : limits)
        if (l.fn == fn && l.dev == dev) lim = &l;
    if (!lim || lim->smem < smem) {
        TANDEM_CHECK_CUDA(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        if (lim) lim->smem = smem;
        else limits.push_back({fn, dev, smem});
    }
    int per_sm = 0;
    TANDEM_CHECK_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, threads, smem));
    cache.push_back({fn, smem, dev, per_sm});
    return per_sm;
}

// Splits per (sequence, KV head) of the warp-per-split decode kernels (turbo_decode.cu,
// fp16_decode.cu): as many as one wave of resident warps allows (batch 1: one 64-token tile
// a warp where they fit), the tiles dealt evenly: k = ceil(tiles / wave) tiles a warp,
// ceil(tiles / k) splits. Past 128 tiles at least 2 a warp: at batch 1 x 16k one a warp was
// 1.2x slower on the H100 (the combine of 257 splits), at <= 4k 1.2-1.3x faster than two.
inline int decode_warp_splits(int tiles, int wave) {
    const int per_warp = std::max((tiles + wave - 1) / wave, tiles > 128 ? 2 : 1);
    return (tiles + per_warp - 1) / per_warp;
}

}  // namespace tandem
