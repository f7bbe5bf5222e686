// Split-KV flash-decoding on an FP16 KV cache (the FP16 attention path), and the split
// combine shared with the TurboAttention decode (turbo_decode.cu).
//
// Grid (n_splits, n_kv_heads, batch), 128 threads. One CTA walks a contiguous range of
// 64-token tiles of one sequence and one KV head, for all GMAX >= G query heads that share
// that head (GQA: each K/V byte is read once per CTA, not once per query head). Per tile:
//   B  scores: 2 threads per token, 64 channels each, reduced by one shuffle
//   C  online softmax per query head, exact exp2
//   D  P.V: each thread owns 8 channels and strides over tokens; accumulators stay in
//      registers for the whole split
// The split's (m, l, unnormalized o) go to the workspace; decode_combine merges splits.
#pragma once
#include "cuda_common.cuh"
#include "tandem/turbo_attention.h"

#include <cstdint>

namespace tandem {

constexpr int kDecodeThreads = 128;
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

// 32 key channels (FP16) of a token row, from channel c, as floats.
__device__ __forceinline__ void load32(const void* row, int c, float* f) {
    {
        const uint4* p = (const uint4*)((const __half*)row + c);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const uint4 w = p[k];
            const __half2* h = (const __half2*)&w;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const float2 x = __half22float2(h[i]);
                f[k * 8 + 2 * i] = x.x;
                f[k * 8 + 2 * i + 1] = x.y;
            }
        }
    }
}

// 8 value channels (FP16) of a token row, from channel c, as floats.
__device__ __forceinline__ void load8(const void* row, int c, float* f) {
    {
        const uint4 w = *(const uint4*)((const __half*)row + c);
        const __half2* h = (const __half2*)&w;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 x = __half22float2(h[i]);
            f[2 * i] = x.x;
            f[2 * i + 1] = x.y;
        }
    }
}

template <int D, int GMAX>
struct DecodeSmem {
    float q[GMAX][D + 4];        // query x log2(e)/sqrt(D); +4: the two halves on other banks
    float p[GMAX][kTile];        // scores, then probabilities
    float m[GMAX], l[GMAX], alpha[GMAX];
    float red[GMAX][D];
};

__device__ __forceinline__ int qpad(int d, int D) { return d + (d >= D / 2 ? 4 : 0); }

// B: scores of the tile's tokens (2 threads per token), -inf past n_valid.
template <int D, int GMAX>
__device__ __forceinline__ void tile_scores(DecodeSmem<D, GMAX>& sm, const __half* kbase, int n_valid) {
    const int tid = threadIdx.x, t = tid >> 1, half = tid & 1;
    float acc[GMAX];
#pragma unroll
    for (int g = 0; g < GMAX; ++g) acc[g] = 0.0f;
    if (t < n_valid) {
        const __half* row = kbase + (size_t)t * D;
#pragma unroll
        for (int k = 0; k < D / 64; ++k) {
            const int c = half * (D / 2) + k * 32;
            float f[32];
            load32(row, c, f);
#pragma unroll
            for (int g = 0; g < GMAX; ++g)
#pragma unroll
                for (int i = 0; i < 32; i += 4) {
                    const float4 qv = *(const float4*)&sm.q[g][qpad(c + i, D)];
                    acc[g] += qv.x * f[i] + qv.y * f[i + 1] + qv.z * f[i + 2] + qv.w * f[i + 3];
                }
        }
    }
#pragma unroll
    for (int g = 0; g < GMAX; ++g) acc[g] += __shfl_xor_sync(0xffffffffu, acc[g], 1);
    if (half == 0)
#pragma unroll
        for (int g = 0; g < GMAX; ++g) sm.p[g][t] = t < n_valid ? acc[g] : -INFINITY;
}

// C: online softmax per query head (exact exp2), the rescale factor in alpha.
template <int D, int GMAX>
__device__ __forceinline__ void tile_softmax(DecodeSmem<D, GMAX>& sm, int G) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int g = warp; g < G; g += kDecodeThreads / 32) {
        const float s0 = sm.p[g][lane], s1 = sm.p[g][lane + 32];
        const float m_old = sm.m[g];
        const float m_new = fmaxf(m_old, warp_max(fmaxf(s0, s1)));
        const float p0 = exp2f(s0 - m_new), p1 = exp2f(s1 - m_new);
        const float sum = warp_sum(p0 + p1);
        sm.p[g][lane] = p0;
        sm.p[g][lane + 32] = p1;
        if (lane == 0) {
            const float alpha = m_old == -INFINITY ? 0.0f : exp2f(m_old - m_new);
            sm.l[g] = sm.l[g] * alpha + sum;
            sm.m[g] = m_new;
            sm.alpha[g] = alpha;
        }
    }
}

// D: o[g][0..7] (this thread's 8 channels) = o * alpha + sum_t p v.
template <int D, int GMAX>
__device__ __forceinline__ void tile_pv(DecodeSmem<D, GMAX>& sm, const __half* vbase, int n_valid,
                                        float (&o)[GMAX][8]) {
    constexpr int kLanes = kDecodeThreads / (D / 8);
    const int tid = threadIdx.x, c8 = (tid % (D / 8)) * 8, tl = tid / (D / 8);
#pragma unroll
    for (int g = 0; g < GMAX; ++g) {
        const float a = sm.alpha[g];
#pragma unroll
        for (int i = 0; i < 8; ++i) o[g][i] *= a;
    }
    for (int t = tl; t < n_valid; t += kLanes) {
        float f[8];
        load8(vbase + (size_t)t * D, c8, f);
#pragma unroll
        for (int g = 0; g < GMAX; ++g) {
            const float p = sm.p[g][t];
#pragma unroll
            for (int i = 0; i < 8; ++i) o[g][i] = fmaf(p, f[i], o[g][i]);
        }
    }
}

// The FP16 split kernel over the (batch, Hkv, max_len, D) cache.
template <int D, int GMAX>
__global__ void __launch_bounds__(kDecodeThreads) fp16_split_kernel(const DecodeArgs a) {
    __shared__ __align__(16) DecodeSmem<D, GMAX> sm;
    const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
    const int G = a.n_q_heads / a.n_kv_heads;
    const int len = a.seq_len[b];
    const int n_tiles = (len + kTile - 1) / kTile;
    const int per = (n_tiles + a.n_splits - 1) / a.n_splits;
    const int j0 = split * per, j1 = min(n_tiles, j0 + per);
    const float qscale = kLog2eF * rsqrtf((float)D);
    for (int i = tid; i < GMAX * D; i += kDecodeThreads) {
        const int g = i / D, d = i % D;
        sm.q[g][qpad(d, D)] = g < G ? a.q[((size_t)b * a.n_q_heads + h * G + g) * D + d] * qscale : 0.0f;
        sm.red[g][d] = 0.0f;
    }
    if (tid < GMAX) {
        sm.m[tid] = -INFINITY;
        sm.l[tid] = 0.0f;
        sm.alpha[tid] = 1.0f;
    }
    float o[GMAX][8];
#pragma unroll
    for (int g = 0; g < GMAX; ++g)
#pragma unroll
        for (int i = 0; i < 8; ++i) o[g][i] = 0.0f;
    __syncthreads();
    for (int j = j0; j < j1; ++j) {
        const size_t row = ((size_t)b * a.n_kv_heads + h) * a.max_len + (size_t)j * kTile;
        const int n_valid = min(kTile, len - j * kTile);
        tile_scores<D, GMAX>(sm, a.k16 + row * D, n_valid);
        __syncthreads();
        tile_softmax<D, GMAX>(sm, G);
        __syncthreads();
        tile_pv<D, GMAX>(sm, a.v16 + row * D, n_valid, o);
        __syncthreads();
    }
    // reduce the token lanes and write (m, l, o) of this split
    const int c8 = (tid % (D / 8)) * 8;
#pragma unroll
    for (int g = 0; g < GMAX; ++g)
        if (g < G)
#pragma unroll
            for (int i = 0; i < 8; ++i) atomicAdd(&sm.red[g][c8 + i], o[g][i]);
    __syncthreads();
    for (int i = tid; i < G * (D + 2); i += kDecodeThreads) {
        const int g = i / (D + 2), d = i % (D + 2);
        const float v = d < D ? sm.red[g][d] : d == D ? sm.m[g] : sm.l[g];
        a.ws[(((size_t)b * a.n_q_heads + h * G + g) * a.n_splits + split) * (D + 2) + d] = v;
    }
}

// Combine: grid (n_q_heads, batch), D * NG threads (NG = blockDim.x / D groups of D).
// ws: (batch, Hq, n_splits, D + 2): o..., m, l of each split (m = -inf: an empty split).
// Thread (g, d) merges splits s = g mod NG, then thread d merges the NG groups through shared
// memory; out (batch, Hq, D) = O / L. Latency decides (batch 1: only Hq CTAs, ~130 splits):
// the thread loads kCombineChunk splits' (m, l, o) at once, all in flight, and only then
// merges them, one round trip per chunk. (The loop before, one split per step, waited on a
// load per split: 5.1 of the 14.4 us of a batch-1 x 16k decode at D = 64; run 19.)
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
// to end (run 12, bench/results/attention-h100.md).
inline void launch_decode_combine(const float* ws, float* out, int batch, int n_q_heads, int n_splits, int D,
                                  cudaStream_t stream) {
    int ng = 1;
    while (ng * kCombineChunk < n_splits && ng * 2 * D <= 1024) ng *= 2;
    if (D == 128) decode_combine_kernel<128><<<dim3(n_q_heads, batch), D * ng, 0, stream>>>(ws, out, n_q_heads, n_splits);
    else decode_combine_kernel<64><<<dim3(n_q_heads, batch), D * ng, 0, stream>>>(ws, out, n_q_heads, n_splits);
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

// Splits per (sequence, KV head): enough CTAs to fill the GPU a few times over.
inline int decode_pick_splits(int requested, int batch, int n_kv_heads, int max_len, int n_sm) {
    const int tiles = (max_len + kTile - 1) / kTile + 1;
    if (requested > 0) return requested < tiles ? requested : tiles;
    const int want = (4 * n_sm + batch * n_kv_heads - 1) / (batch * n_kv_heads);
    return want < 1 ? 1 : (want < tiles ? want : tiles);
}

}  // namespace tandem
