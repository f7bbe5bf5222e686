// TurboAttention decode: split-KV flash-decoding on the INT4/INT2 cache with the INT8 recent
// buffer, SAS softmax and skipping of tiles under the threshold. Tensor cores do both matmuls.
//
// Every warp is an independent split: it walks a contiguous range of 64-token tiles of one
// (sequence, KV head) for all G <= 8 query heads sharing it (each K/V byte is read once for
// the whole GQA group) and writes its (m, l, o) to the workspace, merged by
// decode_combine_kernel (launched with programmatic dependent launch on sm_90). A CTA holds
// kWarps such warps, which need not share a (sequence, head): the grid is flat over
// (sequence, KV head, split), so any split count fills the GPU. No block barrier at all.
//
// Operands (knob stages): 0 reads each record straight from global memory (the tokens-on-M
// tile may prefetch the next record's keys into L2); 2 stages records in shared memory,
// each warp copying record j + 1 with cp.async (16 B per lane, L2 only) while it computes
// record j. Register budget (knob min_ctas_per_sm, unstaged kernel): __launch_bounds__ for
// 2, 3 or 4 CTAs of 4 warps per SM. Decode here is latency-bound: warps per SM matter more
// than bytes in flight (docs/turboattention-impl.md, run 6).
//
// Two tiles (knob heads_on_m): tile() below puts the 64 tokens on the mma M rows; tile_hm()
// puts the query heads on M, so the score accumulator is the P.V A fragment. tile():
// Per compressed tile (bits = 4 or 2):
//   scores  S (64 tokens x 8 heads) = codes (tokens x D) . qk (D x 8 heads), mma m16n8k16:
//           A = key codes expanded to FP16 by a LOP3 into 0x6400|code minus 1024 (exact),
//           B = q * key channel scale (FP16, per tile), + sum_d q*zero point, x block scale.
//           The channel order inside a k-step is permuted to match what one 32-bit word of
//           codes gives (pairs (j, j + 32/bits/2)); B uses the same permutation.
//   softmax per head over the tile with SAS (FP16 polynomial); p < 2^threshold is 0, and a
//           tile with no p > 0 skips its V bytes.
//   P.V     O (8 heads x D) += P' (heads x 64 tokens) . Vcodes (tokens x D), mma m16n8k16:
//           P' = p * value block scale * the token's group scale (FP16, one per value group),
//           B = value codes, channel-major so one word holds consecutive tokens of a channel;
//           the zero points add sum_t p * scale * zp per (head, group).
// The INT8 recent tile (at most one per sequence) goes through the same code with 8-bit
// "codes" and per-token scales, read straight from global memory.
#include "turbo_decode.cuh"

#include "decode_common.cuh"

#include <algorithm>
#include <mutex>
#include <type_traits>
#include <vector>

namespace tandem {

namespace {

constexpr int kWarps = 4;      // warps (independent splits) per CTA

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

// Copies one record (bytes % 16 == 0, both ends 16-aligned) to shared memory, 16 B a lane.
__device__ __forceinline__ void stage_record(uint8_t* dst, const uint8_t* src, int bytes) {
    for (int off = (threadIdx.x % 32) * 16; off < bytes; off += 32 * 16) cp_async16(dst + off, src + off);
}

// N consecutive 32-bit words from p (16-byte aligned when N % 4 == 0, 8 when N == 2).
template <int N>
__device__ __forceinline__ void load_words(const uint8_t* p, uint32_t (&w)[N]) {
    if constexpr (N % 4 == 0) {
#pragma unroll
        for (int i = 0; i < N / 4; ++i) {
            const uint4 x = ((const uint4*)p)[i];
            w[4 * i] = x.x, w[4 * i + 1] = x.y, w[4 * i + 2] = x.z, w[4 * i + 3] = x.w;
        }
    } else if constexpr (N == 2) {
        const uint2 x = *(const uint2*)p;
        w[0] = x.x, w[1] = x.y;
    } else {
        w[0] = *(const uint32_t*)p;
    }
}

__device__ __forceinline__ void mma16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t h2u(__half2 h) { return *reinterpret_cast<uint32_t*>(&h); }

// Codes j and j + 16/BITS of a 32-bit word of BITS-bit codes as an exact FP16 pair
// (1024 + code built by bit operations, minus 1024). BITS = 8: signed bytes j and j + 2.
template <int BITS>
__device__ __forceinline__ uint32_t code_pair(uint32_t w, int j) {
    uint32_t x;
    float off;
    if constexpr (BITS == 8) {
        x = __byte_perm(w ^ 0x80808080u, 0x64646464u, j == 0 ? 0x4240 : 0x4341);
        off = 1152.0f;  // 1024 + the 128 that made the bytes unsigned
    } else {
        constexpr uint32_t mask = BITS == 4 ? 0x000F000Fu : 0x00030003u;
        x = ((w >> (BITS * j)) & mask) | 0x64006400u;
        off = 1024.0f;
    }
    return h2u(__hsub2(*reinterpret_cast<__half2*>(&x), __float2half2_rn(off)));
}

// One warp's scratch (the record ring follows all kWarps of these in dynamic shared memory).
template <int D>
struct __align__(16) WarpSmem {
    float q[8][D];               // query x log2(e)/sqrt(D); heads >= G are zero
    float s[8][kTile + 4];       // scores, then probabilities (+4: score stores hit 32 banks)
    __half ph[D / 32][8][kTile]; // P' per value group (v_group >= 32)
    float tks[kTile], tvs[kTile];
};

struct WarpState {
    float m[8], l[8], alpha[8];
};

// Online softmax over the warp's tile for heads g < G; returns whether any p > 0.
template <class W>
__device__ __forceinline__ bool warp_softmax(W& w, WarpState& st, const DecodeArgs& a, int G) {
    const int lane = threadIdx.x % 32;
    const __half c1 = __float2half_rn(a.c1), c2 = __float2half_rn(a.c2), c3 = __float2half_rn(a.c3);
    bool any = false;
#pragma unroll
    for (int g = 0; g < 8; ++g) {
        if (g >= G) break;
        const float s0 = w.s[g][lane], s1 = w.s[g][lane + 32];
        const float m_new = fmaxf(st.m[g], warp_max(fmaxf(s0, s1)));
        const float p0 = sas_exp2(s0 - m_new, a.threshold, a.degree, c1, c2, c3);
        const float p1 = sas_exp2(s1 - m_new, a.threshold, a.degree, c1, c2, c3);
        any |= __any_sync(0xffffffffu, p0 > 0.0f || p1 > 0.0f);
        const float alpha = st.m[g] == -INFINITY ? 0.0f : exp2f(st.m[g] - m_new);
        st.l[g] = st.l[g] * alpha + warp_sum(p0 + p1);
        st.m[g] = m_new;
        st.alpha[g] = alpha;
        w.s[g][lane] = p0;
        w.s[g][lane + 32] = p1;
    }
    __syncwarp();
    return any;
}

__device__ __forceinline__ float pick(const float (&v)[8], int i) {
    float r = 0.0f;
#pragma unroll
    for (int g = 0; g < 8; ++g) r = g == i ? v[g] : r;
    return r;
}

// The INT8 recent tile's per-token key and value scales into the warp's scratch (zero past
// n_valid, so padded tokens contribute nothing).
template <class W>
__device__ __forceinline__ void stage_recent_scales(W& w, const float* rks, const float* rvs, int n_valid, int lane) {
    w.tks[lane] = lane < n_valid ? rks[lane] : 0.0f;
    w.tks[lane + 32] = lane + 32 < n_valid ? rks[lane + 32] : 0.0f;
    w.tvs[lane] = lane < n_valid ? rvs[lane] : 0.0f;
    w.tvs[lane + 32] = lane + 32 < n_valid ? rvs[lane + 32] : 0.0f;
}

// Query fragments of head gid for the key codes of one record: for each of this lane's NCH
// code words, the FP16 pairs q_d x (key channel scale)_d in the permuted channel order of the
// code word (CPW codes per word), and kbias = sum over this lane's channels of q_d x zp_d
// (the key zero points; the caller reduces it over the 4 lanes of a row). INT8 recent tiles
// (BITS = 8) have no channel scales or zero points.
template <int D, int BITS, class W>
__device__ __forceinline__ void query_fragments(const W& w, const uint8_t* rec, int gid, int tig,
                                                uint32_t (&frag)[D * BITS / 128][16 / BITS], float& kbias) {
    constexpr bool kInt8 = BITS == 8;
    constexpr int CPW = 32 / BITS;
    constexpr int NCH = D / (4 * CPW);
    kbias = 0.0f;
#pragma unroll
    for (int c = 0; c < NCH; ++c) {
        const int base = (tig * NCH + c) * CPW;
        float qv[CPW], sc[CPW], zp[CPW];
#pragma unroll
        for (int i = 0; i < CPW; i += 4) {
            const float4 x = *(const float4*)&w.q[gid][base + i];
            qv[i] = x.x, qv[i + 1] = x.y, qv[i + 2] = x.z, qv[i + 3] = x.w;
        }
#pragma unroll
        for (int i = 0; i < CPW; ++i) sc[i] = 1.0f, zp[i] = 0.0f;
        if constexpr (!kInt8) {
#pragma unroll
            for (int i = 0; i < CPW; i += 8) {
                const uint2 s2 = *(const uint2*)(rec + 8 + base + i);
                const uint2 z2 = *(const uint2*)(rec + 8 + D + base + i);
#pragma unroll
                for (int k = 0; k < 8; ++k) {
                    sc[i + k] = (float)(((k < 4 ? s2.x : s2.y) >> (8 * (k % 4))) & 0xff);
                    zp[i + k] = (float)(int8_t)((k < 4 ? z2.x : z2.y) >> (8 * (k % 4)));
                }
            }
        }
#pragma unroll
        for (int j = 0; j < CPW / 2; ++j) {
            const int j1 = j + CPW / 2;
            frag[c][j] = h2u(__floats2half2_rn(qv[j] * sc[j], qv[j1] * sc[j1]));
            kbias += qv[j] * zp[j] + qv[j1] * zp[j1];
        }
    }
}

// One tile of 64 tokens. BITS = 4 or 2: a compressed record; BITS = 8: the INT8 recent
// buffer (per-token scales, no zero points, n_valid <= 64 tokens).
// acc[nb][0..1]: head gid, channels nb*8 + tig*2 + {0, 1}.
template <int D, int BITS>
__device__ __forceinline__ void tile(const uint8_t* kc, const uint8_t* vc, const uint8_t* rec,
                                     const float* rks, const float* rvs, int n_valid,
                                     WarpSmem<D>& w, WarpState& st,
                                     const DecodeArgs& a, int G, float (&acc)[D / 8][2]) {
    constexpr bool kInt8 = BITS == 8;
    constexpr int CPW = 32 / BITS;          // codes per 32-bit word
    constexpr int NCH = D / (4 * CPW);      // k-chunks: 4 lanes x one word each
    constexpr int MPC = CPW / 4;            // mma per chunk
    constexpr int ROW = D * BITS / 8;       // bytes of one token's key codes
    const int lane = threadIdx.x % 32, gid = lane >> 2, tig = lane & 3;
    const int ng = kInt8 ? 1 : D / a.layout.v_group;
    const float kscale = kInt8 ? 1.0f : ((const float*)rec)[0];
    const float vscale = kInt8 ? 1.0f : ((const float*)rec)[1];

    // ---- key codes: all words of the tile first (loads in flight), then the q fragments.
    // Lane (gid, tig) holds words tig*NCH .. tig*NCH + NCH - 1 of rows gid (+8, +16, ...):
    // one vector load per row; k-chunk c takes word tig*NCH + c (B uses the same order).
    uint32_t kw[4][2][NCH];
#pragma unroll
    for (int mb = 0; mb < 4; ++mb)
#pragma unroll
        for (int r = 0; r < 2; ++r) load_words<NCH>(kc + (mb * 16 + gid + 8 * r) * ROW + tig * NCH * 4, kw[mb][r]);
    if (kInt8) stage_recent_scales(w, rks, rvs, n_valid, lane);
    uint32_t qb[NCH][CPW / 2];
    float kbias;
    query_fragments<D, BITS>(w, rec, gid, tig, qb, kbias);
    kbias += __shfl_xor_sync(0xffffffffu, kbias, 1);
    kbias += __shfl_xor_sync(0xffffffffu, kbias, 2);
    const float kb0 = __shfl_sync(0xffffffffu, kbias, (tig * 2) * 4);
    const float kb1 = __shfl_sync(0xffffffffu, kbias, (tig * 2 + 1) * 4);
    __syncwarp();  // tks visible
#pragma unroll
    for (int mb = 0; mb < 4; ++mb) {
        float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int ch = 0; ch < NCH; ++ch)
#pragma unroll
            for (int m = 0; m < MPC; ++m)
                mma16816(c, code_pair<BITS>(kw[mb][0][ch], 2 * m), code_pair<BITS>(kw[mb][1][ch], 2 * m),
                         code_pair<BITS>(kw[mb][0][ch], 2 * m + 1), code_pair<BITS>(kw[mb][1][ch], 2 * m + 1),
                         qb[ch][2 * m], qb[ch][2 * m + 1]);
        const int t = mb * 16 + gid;
        const float s0 = kInt8 ? w.tks[t] : kscale, s8 = kInt8 ? w.tks[t + 8] : kscale;
        const bool v0 = t < n_valid, v8 = t + 8 < n_valid;
        w.s[tig * 2][t] = v0 ? (c[0] + kb0) * s0 : -INFINITY;
        w.s[tig * 2 + 1][t] = v0 ? (c[1] + kb1) * s0 : -INFINITY;
        w.s[tig * 2][t + 8] = v8 ? (c[2] + kb0) * s8 : -INFINITY;
        w.s[tig * 2 + 1][t + 8] = v8 ? (c[3] + kb1) * s8 : -INFINITY;
    }
    __syncwarp();
    if (!warp_softmax(w, st, a, G)) return;  // every p is 0: no V bytes read

    // ---- P' per value group and the zero-point bias of each (head, group)
    float vbias[D / 32];
#pragma unroll
    for (int i = 0; i < D / 32; ++i) vbias[i] = 0.0f;
#pragma unroll
    for (int grp = 0; grp < D / 32; ++grp) {
        if (grp >= ng) break;
        const int t0 = lane, t1 = lane + 32;
        float f0, f1, z0 = 0.0f, z1 = 0.0f;
        if (kInt8) {
            f0 = w.tvs[t0];
            f1 = w.tvs[t1];
        } else {
            f0 = vscale * rec[8 + 2 * D + t0 * ng + grp];
            f1 = vscale * rec[8 + 2 * D + t1 * ng + grp];
            z0 = vscale * (int8_t)rec[8 + 2 * D + kTile * ng + t0 * ng + grp];
            z1 = vscale * (int8_t)rec[8 + 2 * D + kTile * ng + t1 * ng + grp];
        }
#pragma unroll
        for (int g = 0; g < 8; ++g) {
            if (g >= G) break;
            const float p0 = w.s[g][t0], p1 = w.s[g][t1];
            w.ph[grp][g][t0] = __float2half_rn(p0 * f0);
            w.ph[grp][g][t1] = __float2half_rn(p1 * f1);
            if (!kInt8) {
                const float bsum = warp_sum(p0 * z0 + p1 * z1);
                if (g == gid) vbias[grp] = bsum;
            }
        }
    }
    __syncwarp();
    const float alpha = pick(st.alpha, gid);
    // ---- P.V on tensor cores. A lane's words of a channel row and the 4 mma of 16 tokens:
    //   4-bit: words k*4 + tig (k < 2) hold tokens k*32 + tig*8 + 0..7, 2 mma each
    //   2-bit: word tig holds tokens tig*16 + 0..15, 4 mma
    //   8-bit: words m*4 + tig (m < 4) hold tokens m*16 + tig*4 + 0..3, 1 mma each
    constexpr int VW = BITS == 4 ? 2 : BITS == 2 ? 1 : 4;
    constexpr int VROW = kTile * BITS / 8;  // bytes of one channel's value codes
    int cur_grp = -1;
    uint32_t pa[4][2];
#pragma unroll
    for (int nb = 0; nb < D / 8; ++nb) {
        const int ch = nb * 8 + gid;
        uint32_t vw[VW];
#pragma unroll
        for (int k = 0; k < VW; ++k)
            vw[k] = *(const uint32_t*)(vc + ch * VROW + (BITS == 2 ? tig : k * 4 + tig) * 4);
        const int grp = kInt8 ? 0 : nb * 8 / a.layout.v_group;
        if (grp != cur_grp) {  // A fragments of P' for this group
            cur_grp = grp;
            if constexpr (BITS == 4) {
#pragma unroll
                for (int kb = 0; kb < 2; ++kb) {
                    const uint4 x = *(const uint4*)&w.ph[grp][gid][kb * 32 + tig * 8];
                    pa[kb * 2 + 0][0] = __byte_perm(x.x, x.z, 0x5410);
                    pa[kb * 2 + 0][1] = __byte_perm(x.x, x.z, 0x7632);
                    pa[kb * 2 + 1][0] = __byte_perm(x.y, x.w, 0x5410);
                    pa[kb * 2 + 1][1] = __byte_perm(x.y, x.w, 0x7632);
                }
            } else if constexpr (BITS == 2) {
                const uint4 x = *(const uint4*)&w.ph[grp][gid][tig * 16];
                const uint4 y = *(const uint4*)&w.ph[grp][gid][tig * 16 + 8];
                const uint32_t xs[4] = {x.x, x.y, x.z, x.w}, ys[4] = {y.x, y.y, y.z, y.w};
#pragma unroll
                for (int m = 0; m < 4; ++m) {
                    pa[m][0] = __byte_perm(xs[m], ys[m], 0x5410);
                    pa[m][1] = __byte_perm(xs[m], ys[m], 0x7632);
                }
            } else {
#pragma unroll
                for (int m = 0; m < 4; ++m) {
                    const uint2 x = *(const uint2*)&w.ph[0][gid][m * 16 + tig * 4];
                    pa[m][0] = __byte_perm(x.x, x.y, 0x5410);
                    pa[m][1] = __byte_perm(x.x, x.y, 0x7632);
                }
            }
        }
        float c[4] = {acc[nb][0] * alpha, acc[nb][1] * alpha, 0.0f, 0.0f};
#pragma unroll
        for (int m = 0; m < 4; ++m) {
            const uint32_t word = vw[BITS == 4 ? m / 2 : BITS == 2 ? 0 : m];
            const int j = BITS == 4 ? 2 * (m % 2) : BITS == 2 ? 2 * m : 0;
            mma16816(c, pa[m][0], 0u, pa[m][1], 0u, code_pair<BITS>(word, j), code_pair<BITS>(word, j + 1));
        }
        float vb = 0.0f;
#pragma unroll
        for (int i = 0; i < D / 32; ++i) vb = i == grp ? vbias[i] : vb;
        acc[nb][0] = c[0] + vb;
        acc[nb][1] = c[1] + vb;
    }
}

// ---- heads on the mma M rows (HM): S^T = (q x key scale) . codes^T, then O += P' . V ----------
// The score accumulator (rows = heads, columns = tokens) is already the A fragment of the
// P.V mma (the FlashAttention-2 register trick), so probabilities never go through shared
// memory and the softmax needs only the 4 lanes of a head (2 shuffles), not a whole warp.
// Rows 8..15 of M are unused (G <= 8): twice the Q.K^T mma of the tokens-on-M tile, which
// the tensor cores have to spare; the per-lane math has 16 independent tokens of ILP.
//
// Column n = 2t + e of score n-block nb (8 tokens) is token tok_of(nb, t, e), chosen so
// that a lane's two tokens (t = tig, e = 0/1) are the pair code_pair<BITS> extracts from one
// word of a channel-major value row: word vword(nb, tig), pair index vj(nb, tig).
template <int BITS>
__device__ __forceinline__ int tok_of(int nb, int t, int e) {
    if constexpr (BITS == 4) return 8 * nb + t + 4 * e;
    else if constexpr (BITS == 2) return 16 * (nb / 2) + 4 * (nb % 2) + t + 8 * e;
    else return 8 * nb + 4 * (t / 2) + (t % 2) + 2 * e;
}
template <int BITS>
__device__ __forceinline__ int vword(int nb, int t) {
    return BITS == 4 ? nb : BITS == 2 ? nb / 2 : 2 * nb + t / 2;
}
template <int BITS>
__device__ __forceinline__ int vj(int nb, int t) {
    return BITS == 4 ? t : BITS == 2 ? 4 * (nb % 2) + t : t % 2;
}

// One warp's scratch for the HM tile (the record ring follows all kWarps of these).
template <int D>
struct __align__(16) HmSmem {
    float q[8][D];  // query x log2(e)/sqrt(D); heads >= G are zero
    float tks[kTile], tvs[kTile];
};

struct HeadState {
    float m, l;  // running max (log2 units) of head gid; this lane's part of the sum
};

// One tile of 64 tokens for head gid (rows gid < G matter; the others compute on zeros).
// acc[nb][0..1]: head gid, channels nb*8 + tig*2 + {0, 1} (the same layout as tile()).
template <int D, int BITS, class W>
__device__ __forceinline__ void tile_hm(const uint8_t* kc, const uint8_t* vc, const uint8_t* rec,
                                        const float* rks, const float* rvs, int n_valid,
                                        W& w, HeadState& st, const DecodeArgs& a, int G,
                                        float (&acc)[D / 8][2]) {
    constexpr bool kInt8 = BITS == 8;
    constexpr int CPW = 32 / BITS;          // codes per 32-bit word
    constexpr int NCH = D / (4 * CPW);      // words of a key row per lane
    constexpr int MPC = CPW / 4;            // mma per word
    constexpr int ROW = D * BITS / 8;       // bytes of one token's key codes
    constexpr int VROW = kTile * BITS / 8;  // bytes of one channel's value codes
    const int lane = threadIdx.x % 32, gid = lane >> 2, tig = lane & 3;
    const int ng = kInt8 ? 1 : D / a.layout.v_group;
    const float kscale = kInt8 ? 1.0f : ((const float*)rec)[0];
    const float vscale = kInt8 ? 1.0f : ((const float*)rec)[1];

    // ---- key words: n-block nb, this lane's token row tok_of(nb, gid / 2, gid % 2)
    uint32_t kw[8][NCH];
#pragma unroll
    for (int nb = 0; nb < 8; ++nb)
        load_words<NCH>(kc + tok_of<BITS>(nb, gid >> 1, gid & 1) * ROW + tig * NCH * 4, kw[nb]);
    if (kInt8) stage_recent_scales(w, rks, rvs, n_valid, lane);
    // ---- A fragments: q x key channel scale of head gid (FP16), + the zero-point bias
    uint32_t qa[NCH][CPW / 2];
    float kbias;
    query_fragments<D, BITS>(w, rec, gid, tig, qa, kbias);
    kbias += __shfl_xor_sync(0xffffffffu, kbias, 1);
    kbias += __shfl_xor_sync(0xffffffffu, kbias, 2);
    if (kInt8) __syncwarp();  // tks, tvs visible
    // ---- scores of head gid: p[nb][e] = token tok_of(nb, tig, e)
    float p[8][2];
#pragma unroll
    for (int nb = 0; nb < 8; ++nb) {
        float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int ch = 0; ch < NCH; ++ch)
#pragma unroll
            for (int m = 0; m < MPC; ++m)
                mma16816(c, qa[ch][2 * m], 0u, qa[ch][2 * m + 1], 0u, code_pair<BITS>(kw[nb][ch], 2 * m),
                         code_pair<BITS>(kw[nb][ch], 2 * m + 1));
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int t = tok_of<BITS>(nb, tig, e);
            p[nb][e] = t < n_valid ? (c[e] + kbias) * (kInt8 ? w.tks[t] : kscale) : -INFINITY;
        }
    }
    // ---- online softmax of head gid over its 4 lanes
    float mx = -INFINITY;
#pragma unroll
    for (int nb = 0; nb < 8; ++nb) mx = fmaxf(mx, fmaxf(p[nb][0], p[nb][1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(st.m, mx);
    const __half c1 = __float2half_rn(a.c1), c2 = __float2half_rn(a.c2), c3 = __float2half_rn(a.c3);
    float ls = 0.0f;
    bool any = false;
#pragma unroll
    for (int nb = 0; nb < 8; ++nb)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const float pe = sas_exp2(p[nb][e] - m_new, a.threshold, a.degree, c1, c2, c3);
            any |= pe > 0.0f;
            ls += pe;
            p[nb][e] = pe;
        }
    // every p of every real head is 0: m did not move (alpha = 1), no V bytes are needed
    if (!__any_sync(0xffffffffu, any && gid < G)) return;
    const float alpha = st.m == -INFINITY ? 0.0f : exp2f(st.m - m_new);
    st.l = st.l * alpha + ls;
    st.m = m_new;

    // ---- P.V: per value group, A = P' = p x value block scale x the token's group scale
    // (FP16) and the zero-point bias sum_t P' zp of head gid; B = value codes of channel
    // nb2*8 + gid, the same word/pair order as the scores.
    int cur_grp = -1;
    uint32_t pa[4][2];
    float vb = 0.0f;
#pragma unroll
    for (int nb2 = 0; nb2 < D / 8; ++nb2) {
        const int ch = nb2 * 8 + gid;
        uint32_t vw[8];
        if constexpr (kInt8) {
#pragma unroll
            for (int nb = 0; nb < 8; ++nb) vw[nb] = *(const uint32_t*)(vc + ch * VROW + vword<8>(nb, tig) * 4);
        } else if constexpr (VROW / 4 == 8) {
            load_words<8>(vc + ch * VROW, vw);
        } else {
            uint32_t v4[4];
            load_words<4>(vc + ch * VROW, v4);
#pragma unroll
            for (int i = 0; i < 4; ++i) vw[i] = v4[i];
        }
        const int grp = kInt8 ? 0 : nb2 * 8 / a.layout.v_group;
        if (grp != cur_grp) {
            cur_grp = grp;
            float bsum = 0.0f;
#pragma unroll
            for (int nb = 0; nb < 8; ++nb) {
                const int t0 = tok_of<BITS>(nb, tig, 0), t1 = tok_of<BITS>(nb, tig, 1);
                float f0, f1;
                if (kInt8) {
                    f0 = w.tvs[t0];
                    f1 = w.tvs[t1];
                } else {
                    f0 = vscale * rec[8 + 2 * D + t0 * ng + grp];
                    f1 = vscale * rec[8 + 2 * D + t1 * ng + grp];
                    bsum += p[nb][0] * (vscale * (int8_t)rec[8 + 2 * D + kTile * ng + t0 * ng + grp]) +
                            p[nb][1] * (vscale * (int8_t)rec[8 + 2 * D + kTile * ng + t1 * ng + grp]);
                }
                pa[nb / 2][nb % 2] = h2u(__floats2half2_rn(p[nb][0] * f0, p[nb][1] * f1));
            }
            bsum += __shfl_xor_sync(0xffffffffu, bsum, 1);
            bsum += __shfl_xor_sync(0xffffffffu, bsum, 2);
            vb = bsum;
        }
        float c[4] = {acc[nb2][0] * alpha, acc[nb2][1] * alpha, 0.0f, 0.0f};
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            const int n0 = 2 * kk, n1 = 2 * kk + 1;
            const uint32_t w0 = kInt8 ? vw[n0] : vw[vword<BITS>(n0, 0)];
            const uint32_t w1 = kInt8 ? vw[n1] : vw[vword<BITS>(n1, 0)];
            mma16816(c, pa[kk][0], 0u, pa[kk][1], 0u, code_pair<BITS>(w0, vj<BITS>(n0, tig)),
                     code_pair<BITS>(w1, vj<BITS>(n1, tig)));
        }
        acc[nb2][0] = c[0] + vb;
        acc[nb2][1] = c[1] + vb;
    }
}

// Prefetches a byte range into L2 (one 128-byte line per lane and step).
__device__ __forceinline__ void prefetch_l2(const uint8_t* p, int bytes) {
    for (int off = (threadIdx.x % 32) * 128; off < bytes; off += 32 * 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(p + off));
}

// One compressed record (bits 4 or 2) through the tile variant HM selects.
template <int D, bool HM, class W, class S>
__device__ __forceinline__ void run_tile(int bits, const uint8_t* kc, const uint8_t* vc, const uint8_t* rec, W& w,
                                         S& st, const DecodeArgs& a, int G, float (&acc)[D / 8][2]) {
    if constexpr (HM) {
        if (bits == 4) tile_hm<D, 4>(kc, vc, rec, nullptr, nullptr, kTile, w, st, a, G, acc);
        else tile_hm<D, 2>(kc, vc, rec, nullptr, nullptr, kTile, w, st, a, G, acc);
    } else {
        if (bits == 4) tile<D, 4>(kc, vc, rec, nullptr, nullptr, kTile, w, st, a, G, acc);
        else tile<D, 2>(kc, vc, rec, nullptr, nullptr, kTile, w, st, a, G, acc);
    }
}

// Grid: ceil(batch * n_kv_heads * n_splits / kWarps) CTAs of kWarps warps; warp wi is split
// wi % n_splits of pair wi / n_splits = (sequence, KV head). Dynamic shared memory:
// WarpSmem<D>[kWarps], then per warp STAGES record buffers of ring_stride bytes.
// MINB: CTAs per SM the register budget is sized for (65536 / (MINB * 128) registers per
// thread at most): 2 -> 255, 3 -> 168 (12 warps per SM), 4 -> 128 (16 warps).
template <int D, int STAGES, bool PREFETCH, bool HM, int MINB>
__global__ void __launch_bounds__(kWarps * 32, MINB) turbo_split_kernel(const DecodeArgs a) {
    using Smem = std::conditional_t<HM, HmSmem<D>, WarpSmem<D>>;
    using State = std::conditional_t<HM, HeadState, WarpState>;
    extern __shared__ __align__(16) uint8_t smem[];
    griddep_launch_dependents();  // the combine may be scheduled now; it waits for our results
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane >> 2, tig = lane & 3;
    const int wi = blockIdx.x * kWarps + warp;
    const int pair = wi / a.n_splits, split = wi % a.n_splits;
    if (pair >= a.batch * a.n_kv_heads) return;
    const int b = pair / a.n_kv_heads, h = pair % a.n_kv_heads;
    const int G = a.n_q_heads / a.n_kv_heads;
    const int len = a.seq_len[b];
    const int n_comp = len / kTile, n_rec = len % kTile, n_tiles = n_comp + (n_rec > 0);
    const int j0 = (int)((long long)split * n_tiles / a.n_splits);
    const int j1 = (int)((long long)(split + 1) * n_tiles / a.n_splits);
    const int jc1 = min(j1, n_comp);  // compressed tiles [j0, jc1); the recent one is n_comp
    const TurboCacheLayout& L = a.layout;
    const uint8_t* recs = a.blocks + (size_t)b * L.seq_bytes + L.head_off[h];
    const int rb = (int)L.rec_bytes[h], bits = L.bits[h];
    Smem& w = ((Smem*)smem)[warp];
    uint8_t* ring = smem + kWarps * sizeof(Smem) + (size_t)warp * STAGES * a.ring_stride;
    if constexpr (STAGES > 0) {  // the first STAGES - 1 records start moving before anything else
#pragma unroll
        for (int s = 0; s < STAGES - 1; ++s) {
            if (j0 + s < jc1) stage_record(ring + s * a.ring_stride, recs + (size_t)(j0 + s) * rb, rb);
            cp_async_commit();
        }
    }
    if (j0 <= n_comp && n_comp < j1) {  // the INT8 recent tile comes last: start it towards L2 now
        const size_t row = ((size_t)b * a.n_kv_heads + h) * kTile;
        prefetch_l2((const uint8_t*)(a.rk + row * D), kTile * D);
        prefetch_l2((const uint8_t*)(a.rv + row * D), kTile * D);
        prefetch_l2((const uint8_t*)(a.rks + row), kTile * 4);
        prefetch_l2((const uint8_t*)(a.rvs + row), kTile * 4);
    }
    const float qscale = kLog2eF * rsqrtf((float)D);
    for (int i = lane; i < 8 * D; i += 32) {
        const int g = i / D, d = i % D;
        w.q[g][d] = g < G ? a.q[((size_t)b * a.n_q_heads + h * G + g) * D + d] * qscale : 0.0f;
    }
    State st;
    if constexpr (HM) {
        st.m = -INFINITY;
        st.l = 0.0f;
    } else {
#pragma unroll
        for (int g = 0; g < 8; ++g) st.m[g] = -INFINITY, st.l[g] = 0.0f, st.alpha[g] = 1.0f;
    }
    float acc[D / 8][2];
#pragma unroll
    for (int nb = 0; nb < D / 8; ++nb) acc[nb][0] = acc[nb][1] = 0.0f;
    __syncwarp();
    if constexpr (STAGES > 0) {
        int slot = 0;  // ring slot of record j
        for (int j = j0; j < jc1; ++j) {
            const int jn = j + STAGES - 1;
            if (jn < jc1) {
                const int sn = slot + STAGES - 1 < STAGES ? slot + STAGES - 1 : slot - 1;
                stage_record(ring + sn * a.ring_stride, recs + (size_t)jn * rb, rb);
            }
            cp_async_commit();
            cp_async_wait<STAGES - 1>();  // record j has landed (this lane's part)
            __syncwarp();                 // ... and every lane's
            const uint8_t* rec = ring + slot * a.ring_stride;
            const uint8_t* kc = rec + L.meta_bytes;
            const uint8_t* vc = kc + kTile * D * bits / 8;
            run_tile<D, HM>(bits, kc, vc, rec, w, st, a, G, acc);
            __syncwarp();  // every lane is done with the slot before it is refilled
            slot = slot + 1 == STAGES ? 0 : slot + 1;
        }
    } else {
        for (int j = j0; j < jc1; ++j) {
            const uint8_t* rec = recs + (size_t)j * rb;
            const uint8_t* kc = rec + L.meta_bytes;
            const uint8_t* vc = kc + kTile * D * bits / 8;
            if (PREFETCH && j + 1 < jc1) prefetch_l2(rec + rb, L.meta_bytes + kTile * D * bits / 8);
            run_tile<D, HM>(bits, kc, vc, rec, w, st, a, G, acc);
            __syncwarp();
        }
    }
    if (j0 <= n_comp && n_comp < j1) {  // the INT8 recent tile (n_rec > 0 tokens)
        const size_t row = ((size_t)b * a.n_kv_heads + h) * kTile;
        if constexpr (HM)
            tile_hm<D, 8>((const uint8_t*)(a.rk + row * D), (const uint8_t*)(a.rv + row * D), nullptr, a.rks + row,
                          a.rvs + row, n_rec, w, st, a, G, acc);
        else
            tile<D, 8>((const uint8_t*)(a.rk + row * D), (const uint8_t*)(a.rv + row * D), nullptr, a.rks + row,
                       a.rvs + row, n_rec, w, st, a, G, acc);
    }
    float m_out, l_out;
    if constexpr (HM) {
        m_out = st.m;
        l_out = st.l + __shfl_xor_sync(0xffffffffu, st.l, 1);
        l_out += __shfl_xor_sync(0xffffffffu, l_out, 2);
    } else {
        m_out = pick(st.m, gid);
        l_out = pick(st.l, gid);
    }
    if (gid < G) {
        float* o = a.ws + (((size_t)b * a.n_q_heads + h * G + gid) * a.n_splits + split) * (D + 2);
#pragma unroll
        for (int nb = 0; nb < D / 8; ++nb) *(float2*)&o[nb * 8 + tig * 2] = make_float2(acc[nb][0], acc[nb][1]);
        if (tig == 0) {
            o[D] = m_out;
            o[D + 1] = l_out;
        }
    }
}

}  // namespace
}  // namespace tandem

#include "turbo_decode_lean.cuh"

namespace tandem {
namespace {

// The lean kernel (heads_on_m = 2): the heads-on-M layout with lean::tile for the compressed
// records (NG value groups), tile_hm<D, 8> for the INT8 recent tile, no ring. Warps are
// dealt to (KV head, sequence) pairs head-major in a.head_order (4-bit heads first), so an
// SM's warps mostly run the same tile code.
template <int D, int NG, int MINB>
__global__ void __launch_bounds__(kWarps * 32, MINB) turbo_lean_kernel(const DecodeArgs a) {
    extern __shared__ __align__(16) uint8_t smem[];
    griddep_launch_dependents();  // the combine may be scheduled now; it waits for our results
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane >> 2, tig = lane & 3;
    const int wi = blockIdx.x * kWarps + warp;
    const int pair = wi / a.n_splits, split = wi % a.n_splits;
    if (pair >= a.batch * a.n_kv_heads) return;
    const int b = pair % a.batch, h = a.head_order[pair / a.batch];
    const int G = a.n_q_heads / a.n_kv_heads;
    const int len = a.seq_len[b];
    const int n_comp = len / kTile, n_rec = len % kTile, n_tiles = n_comp + (n_rec > 0);
    const int j0 = (int)((long long)split * n_tiles / a.n_splits);
    const int j1 = (int)((long long)(split + 1) * n_tiles / a.n_splits);
    const int jc1 = min(j1, n_comp);
    const TurboCacheLayout& L = a.layout;
    const uint8_t* recs = a.blocks + (size_t)b * L.seq_bytes + L.head_off[h];
    const int rb = (int)L.rec_bytes[h], bits = L.bits[h];
    lean::Smem<D>& w = ((lean::Smem<D>*)smem)[warp];
    const bool has_recent = j0 <= n_comp && n_comp < j1;
    const size_t rrow = ((size_t)b * a.n_kv_heads + h) * kTile;
    if (has_recent) {  // the INT8 recent tile comes last: start it towards L2 now
        prefetch_l2((const uint8_t*)(a.rk + rrow * D), kTile * D);
        prefetch_l2((const uint8_t*)(a.rv + rrow * D), kTile * D);
    }
    const float qscale = kLog2eF * rsqrtf((float)D);
    for (int i = lane; i < 8 * D; i += 32) {
        const int g = i / D, d = i % D;
        w.q[g][d] = g < G ? a.q[((size_t)b * a.n_q_heads + h * G + g) * D + d] * qscale : 0.0f;
    }
    __syncwarp();
    lean::State<NG> st;
    st.hs.m = -INFINITY;
    st.hs.l = 0.0f;
#pragma unroll
    for (int g = 0; g < NG; ++g) st.vb[g] = 0.0f;
    float acc[D / 8][2];
#pragma unroll
    for (int nb = 0; nb < D / 8; ++nb) acc[nb][0] = acc[nb][1] = 0.0f;
    // a short range (batch 1: 2 records a warp) goes to L2 at once, so its later records do
    // not wait for a DRAM round trip each; a long one would only evict other warps' lines
    if (jc1 - j0 <= 4) prefetch_l2(recs + (size_t)j0 * rb, (jc1 - j0) * rb);
    if (j0 < jc1) {
        const uint32_t code_bytes = kTile * D * bits / 8;
        if (bits == 4) {
            lean::prepare_query<D, 4>(w, st);
            __syncwarp();
            for (int j = j0; j < jc1; ++j) {
                const uint8_t* rec = recs + (size_t)j * rb;
                lean::tile<D, 4, NG>(rec, rec + L.meta_bytes, rec + L.meta_bytes + code_bytes, w, st, a, G, acc);
            }
        } else {
            lean::prepare_query<D, 2>(w, st);
            __syncwarp();
            for (int j = j0; j < jc1; ++j) {
                const uint8_t* rec = recs + (size_t)j * rb;
                lean::tile<D, 2, NG>(rec, rec + L.meta_bytes, rec + L.meta_bytes + code_bytes, w, st, a, G, acc);
            }
        }
        lean::flush<D>(st, acc);
    }
    if (has_recent)  // the INT8 recent tile (n_rec > 0 tokens)
        tile_hm<D, 8>((const uint8_t*)(a.rk + rrow * D), (const uint8_t*)(a.rv + rrow * D), nullptr, a.rks + rrow,
                      a.rvs + rrow, n_rec, w, st.hs, a, G, acc);
    float l_out = st.hs.l + __shfl_xor_sync(0xffffffffu, st.hs.l, 1);
    l_out += __shfl_xor_sync(0xffffffffu, l_out, 2);
    if (gid < G) {
        float* o = a.ws + (((size_t)b * a.n_q_heads + h * G + gid) * a.n_splits + split) * (D + 2);
#pragma unroll
        for (int nb = 0; nb < D / 8; ++nb) *(float2*)&o[nb * 8 + tig * 2] = make_float2(acc[nb][0], acc[nb][1]);
        if (tig == 0) {
            o[D] = st.hs.m;
            o[D + 1] = l_out;
        }
    }
}

using SplitKernel = void (*)(DecodeArgs);

// Register budget (CTAs per SM) of the ring kernels: 2 at D = 128 (~185 registers; shared
// memory allows no more), 3 at D = 64. The unstaged kernel's default is kDefaultMinCtas.
template <int D>
constexpr int ring_min_ctas() { return D == 128 ? 2 : 3; }
constexpr int kDefaultMinCtas = 3;

// The instantiated variants: tokens-on-M (hm = 0) or heads-on-M (hm = 1) tile; ring depth 0
// at register budgets for 2, 3 or 4 CTAs per SM (tokens-on-M also with the L2 prefetch), or
// depth 2 at the default budget. check() refuses the other combinations.
template <int D>
SplitKernel split_kernel(int stages, bool prefetch, bool hm, int min_ctas) {
    constexpr int M = ring_min_ctas<D>();
    if (stages == 2) return hm ? turbo_split_kernel<D, 2, false, true, M> : turbo_split_kernel<D, 2, false, false, M>;
    if (prefetch && !hm) return turbo_split_kernel<D, 0, true, false, M>;
    switch (min_ctas <= 0 ? kDefaultMinCtas : min_ctas) {
    case 2: return hm ? turbo_split_kernel<D, 0, false, true, 2> : turbo_split_kernel<D, 0, false, false, 2>;
    case 3: return hm ? turbo_split_kernel<D, 0, false, true, 3> : turbo_split_kernel<D, 0, false, false, 3>;
    default: return hm ? turbo_split_kernel<D, 0, false, true, 4> : turbo_split_kernel<D, 0, false, false, 4>;
    }
}

// The lean kernel at a register budget for min_ctas (2..4) CTAs per SM.
// Instantiated for value groups of 64 channels (the default v_group) only.
template <int D>
SplitKernel lean_kernel(int min_ctas) {
    constexpr int NG = D / 64;
    return min_ctas == 2 ? turbo_lean_kernel<D, NG, 2> : min_ctas == 3 ? turbo_lean_kernel<D, NG, 3> : turbo_lean_kernel<D, NG, 4>;
}

template <int D>
size_t warp_smem_bytes(int tile) {
    return tile == 2 ? sizeof(lean::Smem<D>) : tile == 1 ? sizeof(HmSmem<D>) : sizeof(WarpSmem<D>);
}

// Defaults, chosen from the A/B columns of run 6 (bench/results/attention-h100.md):
// D = 128: tokens-on-M tile, no ring, registers for 12 warps per SM (occupancy is what moves
// it: 8 -> 12 warps gave 1.19x at batch 32 x 16k; the ring and the heads-on-M tile, both at
// 8 warps, did not); D = 64: heads-on-M tile with a ring of 2 records per warp.
int default_stages(int D) { return D == 64 ? 2 : 0; }
// The tile a launch uses: p.heads_on_m, or the lean one (run 7: 1.6-1.8x faster than the
// others at 16k) unless the layout or an explicit ring / L2 prefetch asks for an older one.
int chosen_tile(const TurboDecodeParams& p) {
    if (p.heads_on_m >= 0) return p.heads_on_m;
    if (p.layout.v_group == 64 && p.stages <= 0 && !p.prefetch_l2) return 2;
    return p.layout.head_dim == 64 ? 1 : 0;
}
// Register budget of the lean kernel: 12 warps per SM at D = 128, 16 at D = 64 (run 7).
int default_lean_min_ctas(int D) { return D == 128 ? 3 : 4; }

// Everything the launch and the workspace size depend on, decided once per call.
struct Plan {
    SplitKernel fn;
    int stages, splits;
    int tile;  // heads_on_m: 0 tokens on M, 1 heads on M, 2 lean
    size_t smem;
};

// Raises fn's dynamic shared memory limit to at least smem and returns how many of its CTAs
// fit on one SM. Cached per (kernel, bytes, device): the decode runs per layer per token. The
// limit is one attribute per kernel, so it only ever goes up: lowering it for a smaller ring
// (a model whose widest head has fewer bits) would make a later launch of the same kernel
// with a cached larger ring fail with "invalid argument".
int resident_ctas(SplitKernel fn, size_t smem, int dev) {
    struct Entry { SplitKernel fn; size_t smem; int dev, per_sm; };
    struct Limit { SplitKernel fn; int dev; size_t smem; };
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
    TANDEM_CHECK_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, kWarps * 32, smem));
    cache.push_back({fn, smem, dev, per_sm});
    return per_sm;
}

Plan make_plan(const TurboDecodeParams& p) {
    const TurboCacheLayout& L = p.layout;
    const int D = L.head_dim;
    int dev = 0, n_sm = 0, smem_max = 0;
    TANDEM_CHECK_CUDA(cudaGetDevice(&dev));
    TANDEM_CHECK_CUDA(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev));
    TANDEM_CHECK_CUDA(cudaDeviceGetAttribute(&smem_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    uint32_t stride = 0;
    for (int h = 0; h < L.n_kv_heads; ++h) stride = std::max(stride, L.rec_bytes[h]);
    Plan pl;
    pl.tile = chosen_tile(p);
    const size_t warp_bytes = D == 128 ? warp_smem_bytes<128>(pl.tile) : warp_smem_bytes<64>(pl.tile);
    pl.stages = pl.tile == 2 ? 0 : p.stages < 0 ? default_stages(D) : p.stages;
    // a ring that does not fit this device's shared memory gets shallower (0 always fits)
    while (pl.stages > 0 && kWarps * (warp_bytes + (size_t)pl.stages * stride) > (size_t)smem_max)
        pl.stages = pl.stages > 2 ? pl.stages - 1 : 0;
    pl.smem = kWarps * (warp_bytes + (size_t)pl.stages * stride);
    if (pl.tile == 2) {
        const int m = p.min_ctas_per_sm > 0 ? p.min_ctas_per_sm : default_lean_min_ctas(D);
        pl.fn = D == 128 ? lean_kernel<128>(m) : lean_kernel<64>(m);
    } else {
        pl.fn = D == 128 ? split_kernel<128>(pl.stages, p.prefetch_l2, pl.tile == 1, p.min_ctas_per_sm)
                         : split_kernel<64>(pl.stages, p.prefetch_l2, pl.tile == 1, p.min_ctas_per_sm);
    }
    const int per_sm = resident_ctas(pl.fn, pl.smem, dev);
    // Splits per (sequence, KV head): one wave of warps over the whole GPU (every warp
    // resident, none waiting for a slot), at least 2 tiles per warp.
    const int pairs = p.batch * L.n_kv_heads, tiles = p.max_len / kTile + 1;
    pl.splits = p.n_splits;
    if (pl.splits <= 0) {
        pl.splits = std::max(1, n_sm * std::max(per_sm, 1) * kWarps / pairs);
        pl.splits = std::min(pl.splits, (tiles + 1) / 2);
    }
    return pl;
}

// The parameters the plan depends on (not the pointers: the workspace size is asked first).
void check_config(const TurboDecodeParams& p) {
    const TurboCacheLayout& L = p.layout;
    if (L.head_dim != 64 && L.head_dim != 128) throw TurboError("turbo_decode: head_dim must be 64 or 128");
    if (L.block_tokens != kTile) throw TurboError("turbo_decode: block_tokens must be 64 on the GPU");
    if (L.v_group < 32 || L.head_dim % L.v_group != 0)
        throw TurboError("turbo_decode: v_group must be >= 32 on the GPU (at most 4 value groups)");
    if (L.n_kv_heads < 1 || p.n_q_heads % L.n_kv_heads != 0 || p.n_q_heads / L.n_kv_heads > 8)
        throw TurboError("turbo_decode: n_q_heads must be 1..8 times n_kv_heads");
    if (p.batch < 1 || p.max_len < 1) throw TurboError("turbo_decode: batch and max_len must be >= 1");
    if (p.poly_degree != 2 && p.poly_degree != 3) throw TurboError("turbo_decode: poly_degree must be 2 or 3");
    if (!(p.threshold <= -1.0f && p.threshold >= -60.0f)) throw TurboError("turbo_decode: threshold must be in [-60, -1]");
    if (p.heads_on_m < -1 || p.heads_on_m > 2) throw TurboError("turbo_decode: heads_on_m must be -1, 0, 1 or 2");
    if (p.heads_on_m == 2 && L.v_group != 64)
        throw TurboError("turbo_decode: heads_on_m = 2 (lean) needs v_group = 64");
    if (p.heads_on_m == 2 && (p.stages > 0 || p.prefetch_l2))
        throw TurboError("turbo_decode: heads_on_m = 2 (lean) has no ring and no L2 prefetch (stages 0, prefetch_l2 off)");
    if (p.stages != -1 && p.stages != 0 && p.stages != 2)
        throw TurboError("turbo_decode: stages must be -1 (automatic), 0 or 2");
    if (p.min_ctas_per_sm != 0 && (p.min_ctas_per_sm < 2 || p.min_ctas_per_sm > 4))
        throw TurboError("turbo_decode: min_ctas_per_sm must be 0 (automatic) or 2..4");
    if (p.min_ctas_per_sm != 0 && chosen_tile(p) != 2 && (p.stages < 0 ? default_stages(L.head_dim) : p.stages) != 0)
        throw TurboError("turbo_decode: min_ctas_per_sm needs stages = 0");
    if (p.n_splits < 0 || p.n_splits > (1 << 20)) throw TurboError("turbo_decode: n_splits must be in [0, 2^20]");
}

void check(const TurboDecodeParams& p) {
    if (!p.q || !p.out || !p.blocks || !p.recent_k || !p.recent_v || !p.recent_ks ||
        !p.recent_vs || !p.seq_len || !p.workspace)
        throw TurboError("turbo_decode: a pointer is null");
    if ((reinterpret_cast<uintptr_t>(p.blocks) | reinterpret_cast<uintptr_t>(p.recent_k) |
         reinterpret_cast<uintptr_t>(p.recent_v)) % 16 != 0)
        throw TurboError("turbo_decode: blocks, recent_k and recent_v must be 16-byte aligned");
    check_config(p);
}

}  // namespace

size_t turbo_decode_workspace_floats(const TurboDecodeParams& p) {
    check_config(p);
    const Plan pl = make_plan(p);
    return (size_t)p.batch * p.n_q_heads * pl.splits * (p.layout.head_dim + 2);
}

int turbo_decode_heads_on_m(const TurboDecodeParams& p) {
    check_config(p);
    return make_plan(p).tile;
}

int turbo_decode_stages(const TurboDecodeParams& p) {
    check_config(p);
    return make_plan(p).stages;
}

void turbo_decode_cuda(const TurboDecodeParams& p, cudaStream_t stream) {
    check(p);
    const Plan pl = make_plan(p);
    DecodeArgs a;
    a.q = p.q;
    a.ws = p.workspace;
    a.seq_len = p.seq_len;
    a.blocks = p.blocks;
    a.rk = p.recent_k;
    a.rv = p.recent_v;
    a.rks = p.recent_ks;
    a.rvs = p.recent_vs;
    a.batch = p.batch;
    a.n_q_heads = p.n_q_heads;
    a.n_kv_heads = p.layout.n_kv_heads;
    a.max_len = p.max_len;
    a.n_splits = pl.splits;
    a.threshold = p.threshold;
    a.degree = p.poly_degree;
    float c[4];
    turbo_sas_coeffs(p.poly_degree, c);
    a.c1 = c[1];
    a.c2 = c[2];
    a.c3 = c[3];
    a.layout = p.layout;
    int n_order = 0;  // 4-bit heads first (lean kernel): neighbouring warps run the same tile code
    for (int bits : {4, 2})
        for (int h = 0; h < a.n_kv_heads; ++h)
            if (p.layout.bits[h] == bits) a.head_order[n_order++] = (uint8_t)h;
    uint32_t stride = 0;
    for (int h = 0; h < a.n_kv_heads; ++h) stride = std::max(stride, p.layout.rec_bytes[h]);
    a.ring_stride = (int)stride;
    const long long warps = (long long)p.batch * a.n_kv_heads * pl.splits;
    pl.fn<<<(unsigned)((warps + kWarps - 1) / kWarps), kWarps * 32, pl.smem, stream>>>(a);
    TANDEM_CHECK_CUDA(cudaGetLastError());
    launch_decode_combine(a.ws, p.out, p.batch, p.n_q_heads, a.n_splits, p.layout.head_dim, stream);
}

}  // namespace tandem
