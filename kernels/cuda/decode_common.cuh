// Split-KV flash-decoding shared by the TurboAttention and FP16 decode paths.
//
// Grid (n_splits, n_kv_heads, batch), 128 threads. One CTA walks a contiguous range of
// 64-token tiles of one sequence and one KV head, for all GMAX >= G query heads that share
// that head (GQA: each K/V byte is read once per CTA, not once per query head). Per tile:
//   A  metadata to shared memory; qs[g][d] = q[g][d] * key channel scale (folded),
//      kbias[g] = sum_d q[g][d] * key zero point (so a score is one dot with the codes)
//   B  scores: 2 threads per token, 64 channels each, reduced by one shuffle
//   C  online softmax per query head with SAS; p is 0 below the threshold, and when every
//      p of the tile is 0 the V phase is skipped (no V bytes read)
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

// Which bytes a tile is made of.
enum TileKind : int { kTileFp16 = 0, kTileInt8 = 1, kTileQ4 = 4, kTileQ2 = 2 };

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
    int n_q_heads = 0, n_kv_heads = 0, max_len = 0, n_splits = 1;
    float threshold = -60.0f;
    int degree = 3;
    float c1 = 0, c2 = 0, c3 = 0;    // SAS coefficients (exact halves)
    TurboCacheLayout layout;
};

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// 32 key channels of token row `row` as floats: codes (Q4/Q2), int8 or half values.
template <int KIND>
__device__ __forceinline__ void load32(const void* row, int c, float* f) {
    if constexpr (KIND == kTileQ4) {
        const uint4 w = *(const uint4*)((const uint8_t*)row + c / 2);
        const uint32_t ws[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int i = 0; i < 32; ++i) f[i] = (float)((ws[i / 8] >> (4 * (i % 8))) & 15u);
    } else if constexpr (KIND == kTileQ2) {
        const uint2 w = *(const uint2*)((const uint8_t*)row + c / 4);
        const uint32_t ws[2] = {w.x, w.y};
#pragma unroll
        for (int i = 0; i < 32; ++i) f[i] = (float)((ws[i / 16] >> (2 * (i % 16))) & 3u);
    } else if constexpr (KIND == kTileInt8) {
        const uint4* p = (const uint4*)((const int8_t*)row + c);
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            const uint4 w = p[k];
            const uint32_t ws[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
            for (int i = 0; i < 16; ++i) f[k * 16 + i] = (float)(int8_t)(ws[i / 4] >> (8 * (i % 4)));
        }
    } else {
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

// 8 value channels starting at c of token row `row`, as floats (codes, int8 or half).
template <int KIND>
__device__ __forceinline__ void load8(const void* row, int c, float* f) {
    if constexpr (KIND == kTileQ4) {
        const uint32_t w = *(const uint32_t*)((const uint8_t*)row + c / 2);
#pragma unroll
        for (int i = 0; i < 8; ++i) f[i] = (float)((w >> (4 * i)) & 15u);
    } else if constexpr (KIND == kTileQ2) {
        const uint32_t w = *(const uint16_t*)((const uint8_t*)row + c / 4);
#pragma unroll
        for (int i = 0; i < 8; ++i) f[i] = (float)((w >> (2 * i)) & 3u);
    } else if constexpr (KIND == kTileInt8) {
        const uint2 w = *(const uint2*)((const int8_t*)row + c);
#pragma unroll
        for (int i = 0; i < 8; ++i) f[i] = (float)(int8_t)((i < 4 ? w.x : w.y) >> (8 * (i % 4)));
    } else {
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
    float q[GMAX][D];            // query, times log2(e)/sqrt(D): scores come out in log2 units
    float qs[GMAX][D + 4];       // q folded with the key channel scales; +4: halves on other banks
    float kbias[GMAX];           // sum_d q * key zero point
    float p[GMAX][kTile];        // scores, then p * value scale
    float tok_ks[kTile], tok_vs[kTile];
    float vsc[kTile * 16], vzp[kTile * 16];  // value scale/zero per (token, group), D/Gv <= 16
    float m[GMAX], l[GMAX], alpha[GMAX];
    float red[GMAX][D];
    int any;
};

__device__ __forceinline__ int qpad(int d, int D) { return d + (d >= D / 2 ? 4 : 0); }

// Phase B and D over one tile of kind KIND; the caller did phase A and handles C.
template <int D, int GMAX, int KIND>
__device__ __forceinline__ void tile_scores(DecodeSmem<D, GMAX>& sm, const void* kbase,
                                            int n_valid, float kscale) {
    constexpr int kRowBytesNum = KIND == kTileFp16 ? 2 * D : KIND == kTileInt8 ? D : D * KIND / 8;
    const int tid = threadIdx.x, t = tid >> 1, half = tid & 1;
    float acc[GMAX];
#pragma unroll
    for (int g = 0; g < GMAX; ++g) acc[g] = 0.0f;
    if (t < n_valid) {
        const uint8_t* row = (const uint8_t*)kbase + (size_t)t * kRowBytesNum;
#pragma unroll
        for (int k = 0; k < D / 64; ++k) {
            const int c = half * (D / 2) + k * 32;
            float f[32];
            load32<KIND>(row, c, f);
#pragma unroll
            for (int g = 0; g < GMAX; ++g)
#pragma unroll
                for (int i = 0; i < 32; i += 4) {
                    const float4 qv = *(const float4*)&sm.qs[g][qpad(c + i, D)];
                    acc[g] += qv.x * f[i] + qv.y * f[i + 1] + qv.z * f[i + 2] + qv.w * f[i + 3];
                }
        }
    }
#pragma unroll
    for (int g = 0; g < GMAX; ++g) acc[g] += __shfl_xor_sync(0xffffffffu, acc[g], 1);
    if (half == 0) {
        const float sc = KIND == kTileInt8 ? (t < n_valid ? sm.tok_ks[t] : 0.0f) : kscale;
#pragma unroll
        for (int g = 0; g < GMAX; ++g)
            sm.p[g][t] = t < n_valid ? (acc[g] + sm.kbias[g]) * sc : -INFINITY;
    }
}

template <int D, int GMAX, int KIND>
__device__ __forceinline__ void tile_pv(DecodeSmem<D, GMAX>& sm, const void* vbase, int n_valid,
                                        int ng, int v_group, float (&o)[GMAX][8]) {
    constexpr int kRowBytes = KIND == kTileFp16 ? 2 * D : KIND == kTileInt8 ? D : D * KIND / 8;
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
        load8<KIND>((const uint8_t*)vbase + (size_t)t * kRowBytes, c8, f);
        if constexpr (KIND == kTileQ4 || KIND == kTileQ2) {
            const int gi = t * ng + c8 / v_group;
            const float sc = sm.vsc[gi], zp = sm.vzp[gi];
#pragma unroll
            for (int i = 0; i < 8; ++i) f[i] = fmaf(f[i], sc, zp);
        }
#pragma unroll
        for (int g = 0; g < GMAX; ++g) {
            const float p = sm.p[g][t];
#pragma unroll
            for (int i = 0; i < 8; ++i) o[g][i] = fmaf(p, f[i], o[g][i]);
        }
    }
}

// Phase C for all query heads; returns through sm.any whether the tile has any p > 0.
// vscale: per-tile value scale (ignored for INT8 tiles, which use tok_vs).
template <int D, int GMAX>
__device__ __forceinline__ void tile_softmax(DecodeSmem<D, GMAX>& sm, const DecodeArgs& a, int G,
                                             bool per_token_vs, float vscale) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const __half c1 = __float2half_rn(a.c1), c2 = __float2half_rn(a.c2), c3 = __float2half_rn(a.c3);
    for (int g = warp; g < G; g += kDecodeThreads / 32) {
        const float s0 = sm.p[g][lane], s1 = sm.p[g][lane + 32];
        const float m_old = sm.m[g];
        const float m_new = fmaxf(m_old, warp_max(fmaxf(s0, s1)));
        // degree 0: the FP16 path, exact exp2 and no threshold
        const float p0 = a.degree == 0 ? exp2f(s0 - m_new) : sas_exp2(s0 - m_new, a.threshold, a.degree, c1, c2, c3);
        const float p1 = a.degree == 0 ? exp2f(s1 - m_new) : sas_exp2(s1 - m_new, a.threshold, a.degree, c1, c2, c3);
        const float sum = warp_sum(p0 + p1);
        const bool nz = __any_sync(0xffffffffu, p0 > 0.0f || p1 > 0.0f);
        const float v0 = per_token_vs ? sm.tok_vs[lane] : vscale;
        const float v1 = per_token_vs ? sm.tok_vs[lane + 32] : vscale;
        sm.p[g][lane] = p0 * v0;
        sm.p[g][lane + 32] = p1 * v1;
        if (lane == 0) {
            const float alpha = m_old == -INFINITY ? 0.0f : exp2f(m_old - m_new);
            sm.l[g] = sm.l[g] * alpha + sum;
            sm.m[g] = m_new;
            sm.alpha[g] = alpha;
            if (nz) sm.any = 1;
        }
    }
}

// The split kernel. TURBO: tiles are compressed records (bits per KV head) and, last, the
// INT8 recent buffer; otherwise FP16 tiles of the (batch, Hkv, max_len, D) cache.
template <int D, int GMAX, bool TURBO>
__global__ void __launch_bounds__(kDecodeThreads) decode_split_kernel(const DecodeArgs a) {
    __shared__ DecodeSmem<D, GMAX> sm;
    const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
    const int G = a.n_q_heads / a.n_kv_heads;
    const int len = a.seq_len[b];
    const int n_comp = TURBO ? len / kTile : 0;
    const int n_rec = TURBO ? len % kTile : 0;
    const int n_tiles = TURBO ? n_comp + (n_rec > 0) : (len + kTile - 1) / kTile;
    const int per = (n_tiles + a.n_splits - 1) / a.n_splits;
    const int j0 = split * per, j1 = min(n_tiles, j0 + per);
    const TurboCacheLayout& L = a.layout;
    const int ng = TURBO ? D / L.v_group : 1;

    const float qscale = kLog2eF * rsqrtf((float)D);
    for (int i = tid; i < GMAX * D; i += kDecodeThreads) {
        const int g = i / D, d = i % D;
        sm.q[g][d] = g < G ? a.q[((size_t)b * a.n_q_heads + h * G + g) * D + d] * qscale : 0.0f;
        sm.red[g][d] = 0.0f;
    }
    if (tid < GMAX) {
        sm.m[tid] = -INFINITY;
        sm.l[tid] = 0.0f;
        sm.alpha[tid] = 1.0f;
        sm.kbias[tid] = 0.0f;
    }
    float o[GMAX][8];
#pragma unroll
    for (int g = 0; g < GMAX; ++g)
#pragma unroll
        for (int i = 0; i < 8; ++i) o[g][i] = 0.0f;
    __syncthreads();

    for (int j = j0; j < j1; ++j) {
        // ---- A: metadata, folded query
        int kind = kTileFp16;
        const void* kb = nullptr;
        const void* vb = nullptr;
        float kscale = 1.0f, vscale = 1.0f;
        int n_valid = min(kTile, len - j * kTile);
        if (tid == 0) sm.any = 0;
        if constexpr (TURBO) {
            if (j < n_comp) {
                kind = L.bits[h];
                const uint8_t* rec = a.blocks + (size_t)b * L.seq_bytes + L.head_off[h] +
                                     (size_t)j * L.rec_bytes[h];
                kscale = ((const float*)rec)[0];
                vscale = ((const float*)rec)[1];
                kb = rec + L.meta_bytes;
                vb = rec + L.meta_bytes + kTile * D * kind / 8;
                {   // one thread per channel; D <= kDecodeThreads
                    const bool act = tid < D;
                    const int d = tid % D;
                    const float sc = act ? (float)rec[8 + d] : 0.0f;
                    const float zp = act ? (float)(int8_t)rec[8 + D + d] : 0.0f;
#pragma unroll
                    for (int g = 0; g < GMAX; ++g) {
                        if (act) sm.qs[g][qpad(d, D)] = sm.q[g][d] * sc;
                        const float v = warp_sum(act ? sm.q[g][d] * zp : 0.0f);
                        if (tid % 32 == 0) atomicAdd(&sm.kbias[g], v);
                    }
                }
                for (int i = tid; i < kTile * ng; i += kDecodeThreads) {
                    sm.vsc[i] = rec[8 + 2 * D + i];
                    sm.vzp[i] = (float)(int8_t)rec[8 + 2 * D + kTile * ng + i];
                }
            } else {
                kind = kTileInt8;
                n_valid = n_rec;
                const size_t row = ((size_t)b * a.n_kv_heads + h) * kTile;
                kb = a.rk + row * D;
                vb = a.rv + row * D;
                for (int t = tid; t < n_valid; t += kDecodeThreads) {
                    sm.tok_ks[t] = a.rks[row + t];
                    sm.tok_vs[t] = a.rvs[row + t];
                }
            }
        } else {
            const size_t row = ((size_t)b * a.n_kv_heads + h) * a.max_len + (size_t)j * kTile;
            kb = a.k16 + row * D;
            vb = a.v16 + row * D;
        }
        if (kind == kTileFp16 || kind == kTileInt8)
            for (int i = tid; i < GMAX * D; i += kDecodeThreads)
                sm.qs[i / D][qpad(i % D, D)] = sm.q[i / D][i % D];
        __syncthreads();
        // ---- B: scores
        if (kind == kTileQ4) tile_scores<D, GMAX, kTileQ4>(sm, kb, n_valid, kscale);
        else if (kind == kTileQ2) tile_scores<D, GMAX, kTileQ2>(sm, kb, n_valid, kscale);
        else if (kind == kTileInt8) tile_scores<D, GMAX, kTileInt8>(sm, kb, n_valid, kscale);
        else tile_scores<D, GMAX, kTileFp16>(sm, kb, n_valid, kscale);
        __syncthreads();
        // ---- C: online softmax with SAS
        tile_softmax<D, GMAX>(sm, a, G, kind == kTileInt8, vscale);
        __syncthreads();
        if (tid < GMAX) sm.kbias[tid] = 0.0f;  // B is done with it; A of the next tile adds
        // ---- D: P.V, skipped when every probability of the tile is zero
        if (sm.any) {
            if (kind == kTileQ4) tile_pv<D, GMAX, kTileQ4>(sm, vb, n_valid, ng, L.v_group, o);
            else if (kind == kTileQ2) tile_pv<D, GMAX, kTileQ2>(sm, vb, n_valid, ng, L.v_group, o);
            else if (kind == kTileInt8) tile_pv<D, GMAX, kTileInt8>(sm, vb, n_valid, ng, L.v_group, o);
            else tile_pv<D, GMAX, kTileFp16>(sm, vb, n_valid, ng, L.v_group, o);
        }
        __syncthreads();
    }
    // ---- reduce the token lanes and write (m, l, o) of this split
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

// Combine: grid (n_q_heads, batch), D threads. ws: (batch, Hq, splits, D + 2): o..., m, l.
template <int D>
__global__ void decode_combine_kernel(const float* __restrict__ ws, float* __restrict__ out,
                                      int n_q_heads, int n_splits) {
    const int hq = blockIdx.x, b = blockIdx.y, d = threadIdx.x;
    const float* base = ws + ((size_t)b * n_q_heads + hq) * n_splits * (D + 2);
    float M = -INFINITY;
    for (int s = 0; s < n_splits; ++s) M = fmaxf(M, base[s * (D + 2) + D]);
    float L = 0.0f, o = 0.0f;
    for (int s = 0; s < n_splits; ++s) {
        const float m = base[s * (D + 2) + D];
        if (m == -INFINITY) continue;  // an empty split
        const float w = exp2f(m - M);
        L += w * base[s * (D + 2) + D + 1];
        o += w * base[s * (D + 2) + d];
    }
    out[((size_t)b * n_q_heads + hq) * D + d] = o / L;
}

// Splits per (sequence, KV head): enough CTAs to fill the GPU a few times over.
inline int decode_pick_splits(int requested, int batch, int n_kv_heads, int max_len, int n_sm) {
    const int tiles = (max_len + kTile - 1) / kTile + 1;
    if (requested > 0) return requested < tiles ? requested : tiles;
    const int want = (4 * n_sm + batch * n_kv_heads - 1) / (batch * n_kv_heads);
    return want < 1 ? 1 : (want < tiles ? want : tiles);
}

}  // namespace tandem
