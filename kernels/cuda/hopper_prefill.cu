// Causal prefill attention for Hopper (sm_90a), built the way FlashAttention-3 is: TMA tile
// loads into swizzled shared memory completing on mbarriers, a producer warpgroup that keeps
// three stages of K and V in flight, and two or three consumer warpgroups that run both products
// on wgmma and take turns issuing them.
//
//   CTA = one (query block of 64 NW rows, query head, sequence), NW = 2 or 3 consumer warpgroups
//   (Shape<NW>); 128 (NW + 1) threads:
//     warps 0 .. 4 NW - 1  consumer warpgroups, 64 query rows each (240 registers a thread with
//                          NW = 2, 160 with NW = 3)
//     the last 4 warps     producer warpgroup (24 registers): one lane issues every TMA load (Q
//                          once, then K_j and V_j per 128-key tile j into stage j % 3, once every
//                          consumer warpgroup has released the tile that stage held). With
//                          quantize_q the consumer warpgroups write the INT8 Q tile themselves
//                          from FP16 queries.
//   per tile, in each consumer warpgroup:
//     S = Q K_j^T    wgmma, A and B from shared memory: FP16 (k16), or Turbo's INT8 (k32, INT32
//                    sums) or FP8 e4m3 (k32), times the two 64-key blocks' scales
//     online softmax on S in registers: exp2 on the special-function unit (ex2.approx), or
//                    for INT8/FP8 with HopperPrefillArgs::sas SAS's polynomial on the FMA pipe
//     O += P V_j     wgmma, A = P as FP16 registers (the S accumulator layout is the register
//                    A layout), B = V_j from shared memory
//   S_j is issued together with P_{j-1} V_{j-1}, between named barriers that make the warpgroups
//   take turns in a ring: one's softmax runs on the CUDA cores while another's products run.
//   NW = 3 (D = 64 only: 160 registers hold a D = 64 thread's O, S and P) shares each K/V tile
//   among 192 query rows instead of 128, and gives each scheduler three softmax warps to switch
//   between instead of two.
//
// Q and K tiles sit in shared memory K-major (rows along D, as stored), V tiles MN-major (rows
// of D per key, as stored, read by wgmma transposed): both as TMA writes them with 128B (64B
// for 8-bit rows of 64) swizzling, so no pre-pass reorders them. Queries may start at a position
// q_pos0 > 0 (a prefill chunk after cached tokens): row r sees keys 0..q_pos0 + r. A block's
// warpgroups all run its last row's tiles: with 192 rows a tile can be wholly masked for the
// first warpgroup's rows, which leaves their max, sum and O as they were (p = 0, alpha = 1).
// Query blocks run heaviest first, across all heads (the last block of the causal triangle has
// the most tiles).
#include "hopper_prefill.cuh"

#include <cudaTypedefs.h>

#include <atomic>
#include <string>
#include <type_traits>

#include "cuda_common.cuh"
#include "decode_common.cuh"
#include "hopper_ptx.cuh"
#include "mma_fragments.cuh"

namespace tandem {

namespace {

using namespace hopper;

constexpr int kBN = 128;        // keys per tile
constexpr int kStages = 3;      // K/V tiles in flight (FP16, D = 128: 224 KB of shared memory)
constexpr int kProducerRegs = 24;

// The CTA for NW consumer warpgroups.
template <int NW>
struct Shape {
    static_assert(NW == 2 || NW == 3, "two or three consumer warpgroups");
    static constexpr int kBM = 64 * NW;  // query rows per CTA
    static constexpr int kConsumerWarps = 4 * NW;
    static constexpr int kThreads = kConsumerWarps * 32 + 128;  // + the producer warpgroup
    // Registers per thread after setmaxnreg: 128 x 24 + 128 NW x kConsumerRegs <= 65536.
    // Without it every thread of NW = 2 gets 65536 / 384 = 168, and the pipelined loop spills.
    static constexpr int kConsumerRegs = NW == 2 ? 240 : 160;
};

// Shared-memory plan for head size D, Q/K element size E (2: FP16, 1: INT8 or FP8) and NW
// consumer warpgroups.
template <int D, int E, int NW>
struct Plan {
    static constexpr int kBM = Shape<NW>::kBM;
    static constexpr int row_bytes = D * E < 128 ? D * E : 128;  // one swizzled row of Q or K
    static constexpr int col_blocks = D * E / row_bytes;          // Q/K column blocks
    static constexpr int q_bytes = kBM * D * E;
    static constexpr int k_bytes = kBN * D * E;
    static constexpr int v_bytes = kBN * D * 2;                   // V: 128 keys x D FP16, in 64-column blocks
    static constexpr int k_off = q_bytes;
    static constexpr int v_off = k_off + kStages * k_bytes;
    static constexpr int bar_off = v_off + kStages * v_bytes;
    static constexpr int red_off = bar_off + 8 * (1 + 3 * kStages);  // quantize_q: a float per consumer warp
    static constexpr int smem = red_off + 4 * Shape<NW>::kConsumerWarps + 1024;  // + alignment slack
};

struct Args {
    CUtensorMap q, k, v;         // 3-D maps (D, rows, batch * heads): queries; keys and values
    const float* qs = nullptr;   // S8/E4M3: block scales (batch * Hq, n_q / 64); not with q16
    const __half* q16 = nullptr; // HopperPrefillArgs::quantize_q: the FP16 queries (q is not used)
    int64_t q16_row_stride = 0, q16_head_stride = 0;
    const float* ks = nullptr;   // (batch * Hkv, n_keys / 64)
    float* out = nullptr;
    int64_t out_row_stride = 0, out_head_stride = 0;
    int n_q_heads = 0, n_kv_heads = 0;
    int n_q = 0, q_pos0 = 0;     // query rows per head; position of row 0
    float scale = 0;             // log2(e) / sqrt(D)
    float threshold = 0;         // SAS (S8/E4M3)
    float c1 = 0, c2 = 0, c3 = 0;  // turbo_sas_coeffs (c3 = 0 at degree 2)
    bool pipelined = true;       // HopperPrefillArgs::pipelined
};

// What one consumer thread holds: its two query rows' output accumulators, running max and
// sum, the tile's scores and P, and the operand descriptors.
template <int D, QkType QK, bool SAS, int NW>
struct Consumer {
    static constexpr bool kScaled = QK != QkType::F16;  // blockwise Q/K scales (Turbo)
    static_assert(kScaled || !SAS, "SAS runs with the Turbo (INT8/FP8) scores only");
    static constexpr int E = kScaled ? 1 : 2;
    using P = Plan<D, E, NW>;
    static constexpr int kBM = P::kBM;
    float o[D / 2];                        // O rows r0 / r1 (layout: wgmma_ss)
    float sc[kBN / 2];                     // the tile's scores, then its probabilities
    int acc[QK == QkType::S8 ? kBN / 2 : 1];  // INT8: S in INT32 before scaling
    uint32_t pa[kBN / 16][4];              // P as FP16 A fragments, one per 16 keys
    float m0, m1, l0, l1;                  // l: this thread's share of the row sum
    float q_scale;
    const float* k_scales;
    int n_kblocks;                         // 64-key blocks in the sequence
    int r0, r1, t;                         // this thread's rows (block-relative: qb * 128 + ...)
    int q_pos0, mask_from;                 // tiles >= mask_from hold keys after some row
    uint64_t q_desc;
    const uint8_t* sm;
    float y_max;                           // SAS: -threshold
    __half2 c1, c2, c3;

    // q_block_scale: kScaled, the scale of this warpgroup's 64-row block of Q
    __device__ __forceinline__ void init(const Args& a, int qb, int hk, int b, int warp, int lane, const uint8_t* smem,
                                         float q_block_scale) {
        const int wg = warp / 4;
        t = lane % 4;
        r0 = qb * kBM + wg * 64 + (warp % 4) * 16 + lane / 4;
        r1 = r0 + 8;
        q_pos0 = a.q_pos0;
        mask_from = (a.q_pos0 + qb * kBM) / kBN;
        q_scale = a.scale;
        if constexpr (kScaled) q_scale *= q_block_scale;
        n_kblocks = (a.q_pos0 + a.n_q + 63) / 64;
        k_scales = kScaled ? a.ks + (size_t)(b * a.n_kv_heads + hk) * n_kblocks : nullptr;
        y_max = -a.threshold;
        // degree 2 runs as degree 3 with c3 = 0 (fma(0, f, c2) is c2 exactly): the loop has no branch
        c1 = __float2half2_rn(a.c1), c2 = __float2half2_rn(a.c2), c3 = __float2half2_rn(a.c3);
#pragma unroll
        for (int i = 0; i < D / 2; ++i) o[i] = 0.0f;
        m0 = m1 = -INFINITY;
        l0 = l1 = 0.0f;
        sm = smem;
        q_desc = smem_desc(smem + wg * 64 * P::row_bytes, P::row_bytes);
    }

    // S = Q K^T of the tile in stage s (k-steps of 32 bytes along D); the caller fences and commits.
    __device__ __forceinline__ void issue_qk(int s) {
        const uint64_t k_desc = smem_desc(sm + P::k_off + s * P::k_bytes, P::row_bytes);
#pragma unroll
        for (int ks = 0; ks < D * E / 32; ++ks) {
            const int c = ks * 32 / P::row_bytes, off = ks * 32 % P::row_bytes;
            const uint64_t qd = q_desc + ((c * kBM * P::row_bytes + off) >> 4);
            const uint64_t kd = k_desc + ((c * kBN * P::row_bytes + off) >> 4);
            if constexpr (QK == QkType::S8) {
                // NW = 3: the first k-step's D as an output only, so that the INT32 sums are not
                // kept through the softmax beside their float copies (with them the 160 registers
                // spilled 88-112 bytes). NW = 2 has room; with it D = 128 at 16k read 1-2% slower.
                if (NW == 3 && ks == 0) wgmma_s8_ss_first<kBN>(acc, qd, kd);
                else wgmma_s8_ss<kBN>(acc, qd, kd, ks > 0);
            }
            else if constexpr (QK == QkType::E4M3) wgmma_e4m3_ss<kBN>(sc, qd, kd, ks > 0);
            else wgmma_ss<kBN>(sc, qd, kd, ks > 0);
        }
    }

    // O += P V of the tile in stage s (V MN-major: 64-column blocks of 128 keys x 128 bytes);
    // the caller fences and commits.
    __device__ __forceinline__ void issue_pv(int s) {
        const uint8_t* sv = sm + P::v_off + s * P::v_bytes;
#pragma unroll
        for (int kk = 0; kk < kBN / 16; ++kk) wgmma_rs<D>(o, pa[kk], smem_desc_mn(sv + kk * 16 * 128, kBN * 128));
    }

    // Tile j's scores (S done) to probabilities at the new running max; returns the factors
    // (alpha) by which the old O and l shrink. Updates m and l. Scores are scaled to log2
    // units inside the exponent's argument (one FFMA); INT8 sums become floats by one add.
    __device__ __forceinline__ float2 softmax(int j, int n_tiles) {
        float s_lo = q_scale, s_hi = q_scale;  // the tile's two 64-key blocks
        if constexpr (kScaled)  // (a last tile with one block inside the sequence: its other block is masked)
            s_lo *= k_scales[2 * j], s_hi *= k_scales[min(2 * j + 1, n_kblocks - 1)];
        // INT8: sc = kBias + acc, exactly (|acc| <= 127^2 D < 2^22), by one integer add; kBias
        // leaves through the per-row constants below
        constexpr float kBias = QK == QkType::S8 ? kIntBias : 0.0f;
        if constexpr (QK == QkType::S8) {
            fence_regs(acc);
#pragma unroll
            for (int i = 0; i < kBN / 2; ++i) sc[i] = int_plus_bias(acc[i]);
        } else {
            fence_regs(sc);
        }
        if (j >= mask_from) {  // tiles reaching past the block's first row: keys after the row are masked
#pragma unroll
            for (int i = 0; i < kBN / 2; ++i) {
                const int key = j * kBN + (i / 4) * 8 + 2 * t + (i % 2);
                if (key > q_pos0 + ((i % 4) < 2 ? r0 : r1)) sc[i] = -INFINITY;
            }
        }
        float lo0 = -INFINITY, lo1 = -INFINITY, hi0 = -INFINITY, hi1 = -INFINITY;  // raw maxima per block
#pragma unroll
        for (int i = 0; i < kBN / 2; i += 4) {
            if (i < kBN / 4) lo0 = fmaxf(lo0, fmaxf(sc[i], sc[i + 1])), lo1 = fmaxf(lo1, fmaxf(sc[i + 2], sc[i + 3]));
            else hi0 = fmaxf(hi0, fmaxf(sc[i], sc[i + 1])), hi1 = fmaxf(hi1, fmaxf(sc[i + 2], sc[i + 3]));
        }
        // the 4 lanes of a quad hold one row; finite from tile 0 on: key 0 is never masked (a
        // later tile may mask a whole row: the max stays)
        const float mx0 = quad_max(fmaxf(m0, fmaxf((lo0 - kBias) * s_lo, (hi0 - kBias) * s_hi)));
        const float mx1 = quad_max(fmaxf(m1, fmaxf((lo1 - kBias) * s_lo, (hi1 - kBias) * s_hi)));
        const float2 alpha = make_float2(ex2_approx(m0 - mx0), ex2_approx(m1 - mx1));  // m = -inf: 0
        m0 = mx0, m1 = mx1;
        float sum0 = 0.0f, sum1 = 0.0f;
        // m - x = (m + s kBias) - s sc: one FFMA an element. Rounding m + s kBias (a few 1e-5
        // in log2 units) shifts every exponent of a row's 64-key block alike: the normalization
        // cancels it within the block; between the two blocks it is a relative weight error of
        // ~1e-4, far under INT8's.
        const float b0_lo = fmaf(s_lo, kBias, mx0), b0_hi = fmaf(s_hi, kBias, mx0);
        const float b1_lo = fmaf(s_lo, kBias, mx1), b1_hi = fmaf(s_hi, kBias, mx1);
#pragma unroll
        for (int i = 0; i < kBN / 2; i += 4) {
            const float sx = i < kBN / 4 ? s_lo : s_hi;
            const float b0 = i < kBN / 4 ? b0_lo : b0_hi, b1 = i < kBN / 4 ? b1_lo : b1_hi;
            if constexpr (SAS) {  // SAS of x - m = -(m - x)
                const float2 p0 = sas_exp2_pair_neg(fmaf(sc[i], -sx, b0), fmaf(sc[i + 1], -sx, b0), y_max, 3, c1, c2, c3);
                const float2 p1 = sas_exp2_pair_neg(fmaf(sc[i + 2], -sx, b1), fmaf(sc[i + 3], -sx, b1), y_max, 3, c1, c2, c3);
                sc[i] = p0.x, sc[i + 1] = p0.y, sc[i + 2] = p1.x, sc[i + 3] = p1.y;
            } else {  // 2^(x - m) on the SFU
                sc[i] = ex2_approx(fmaf(sc[i], sx, -b0)), sc[i + 1] = ex2_approx(fmaf(sc[i + 1], sx, -b0));
                sc[i + 2] = ex2_approx(fmaf(sc[i + 2], sx, -b1)), sc[i + 3] = ex2_approx(fmaf(sc[i + 3], sx, -b1));
            }
            sum0 += sc[i] + sc[i + 1];
            sum1 += sc[i + 2] + sc[i + 3];
        }
        l0 = l0 * alpha.x + sum0;
        l1 = l1 * alpha.y + sum1;
        return alpha;
    }

    __device__ __forceinline__ void rescale(float2 alpha) {
#pragma unroll
        for (int i = 0; i < D / 2; i += 4) o[i] *= alpha.x, o[i + 1] *= alpha.x, o[i + 2] *= alpha.y, o[i + 3] *= alpha.y;
    }

    // P to FP16 A fragments: k-step kk (keys 16kk..16kk+15) = score blocks 2kk and 2kk+1. All of P
    // is packed before the P.V wgmmas: registers written between two wgmmas make ptxas insert a
    // warpgroup wait there.
    __device__ __forceinline__ void pack_p() {
#pragma unroll
        for (int kk = 0; kk < kBN / 16; ++kk)
#pragma unroll
            for (int r = 0; r < 4; ++r) pa[kk][r] = pack_h2(sc[8 * kk + 2 * r], sc[8 * kk + 2 * r + 1]);
    }

    // out = O / l for the rows that exist.
    __device__ __forceinline__ void store(const Args& a, int z) const {
        float s0 = l0, s1 = l1;
        s0 += __shfl_xor_sync(0xffffffffu, s0, 1);
        s0 += __shfl_xor_sync(0xffffffffu, s0, 2);
        s1 += __shfl_xor_sync(0xffffffffu, s1, 1);
        s1 += __shfl_xor_sync(0xffffffffu, s1, 2);
        const float i0 = 1.0f / s0, i1 = 1.0f / s1;
        float* out = a.out + (size_t)z * a.out_head_stride;
#pragma unroll
        for (int i = 0; i < D / 2; i += 4) {
            const int d = (i / 4) * 8 + 2 * t;
            if (r0 < a.n_q) *(float2*)(out + (size_t)r0 * a.out_row_stride + d) = make_float2(o[i] * i0, o[i + 1] * i0);
            if (r1 < a.n_q) *(float2*)(out + (size_t)r1 * a.out_row_stride + d) = make_float2(o[i + 2] * i1, o[i + 3] * i1);
        }
    }
};

// Named barriers: 0 is __syncthreads', 1 .. NW the consumer warpgroups' turns (turn_bar),
// NW + 1 .. 2 NW each warpgroup's own (own_bar: quantize_q).
__device__ __forceinline__ int turn_bar(int wg) { return 1 + wg; }
template <int NW>
__device__ __forceinline__ int own_bar(int wg) { return 1 + NW + wg; }

// HopperPrefillArgs::quantize_q: one consumer warpgroup's 64 query rows (from row0; all past
// n_q or none, as n_q % 64 == 0) from FP16 in global memory to INT8 in its part of the Q tile
// (sq_wg), laid out as the TMA writes a tile (16-byte chunks of a row XORed with address bits
// 7+, the 64B or 128B swizzle of Plan's INT8 rows of D bytes). The arithmetic is
// turbo_prefill.cu's quant_qk_kernel's (amax_half8, quantize_half8_s8; scale = amax / 127).
// Returns the scale (0 for rows past n_q, which are zeros and not stored).
template <int D, int NW>
__device__ __forceinline__ float quantize_q(const Args& a, int z, int row0, uint8_t* sq_wg, float* red, int warp, int lane) {
    constexpr int kRowChunks = D / 8;                // 16-byte chunks (8 halves) of a row
    constexpr int kPerThread = 64 * kRowChunks / 128;
    const int wg = warp / 4, tid = (warp % 4) * 32 + lane;
    const bool in = row0 < a.n_q;
    const __half* q = a.q16 + (size_t)z * a.q16_head_stride + (size_t)row0 * a.q16_row_stride;
    uint4 v[kPerThread];
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
        const int c = tid + 128 * i, r = c / kRowChunks, cc = c % kRowChunks;
        v[i] = in ? *(const uint4*)(q + (size_t)r * a.q16_row_stride + cc * 8) : make_uint4(0, 0, 0, 0);
        amax = amax_half8(v[i], amax);
    }
    amax = warp_max(amax);
    if (lane == 0) red[warp] = amax;
    named_bar_sync(own_bar<NW>(wg), 128);
    amax = fmaxf(fmaxf(red[4 * wg], red[4 * wg + 1]), fmaxf(red[4 * wg + 2], red[4 * wg + 3]));
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
        const int c = tid + 128 * i, r = c / kRowChunks, cc = c % kRowChunks;
        const int off = r * D + cc * 8;
        *(uint2*)(sq_wg + (off ^ (((off >> 7) & (D / 16 - 1)) << 4))) = quantize_half8_s8(v[i], inv);
    }
    fence_proxy_async_smem();
    named_bar_sync(own_bar<NW>(wg), 128);
    return amax / 127.0f;
}

template <int D, QkType QK, bool SAS, bool QF, int NW>
__global__ void __launch_bounds__(Shape<NW>::kThreads, 1) prefill_kernel(const __grid_constant__ Args a) {
    static_assert(!QF || QK == QkType::S8, "quantize_q: INT8 only");
    static_assert(NW == 2 || D == 64, "three consumer warpgroups at D = 64 only");
    constexpr int E = QK == QkType::F16 ? 2 : 1;
    using P = Plan<D, E, NW>;
    constexpr int kBM = P::kBM, kConsumerWarps = Shape<NW>::kConsumerWarps;
    extern __shared__ uint8_t smem_raw[];
    uint8_t* sm = (uint8_t*)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    uint8_t* sq = sm;
    uint64_t* bar = (uint64_t*)(sm + P::bar_off);
    uint64_t* q_full = bar;
    uint64_t* k_full = bar + 1;
    uint64_t* v_full = bar + 1 + kStages;
    uint64_t* empty = bar + 1 + 2 * kStages;

    const int n_qblocks = (a.n_q + kBM - 1) / kBM;
    // grid (heads, query blocks, batch): the x index runs fastest, so every head's last (heaviest)
    // block is launched before any head's next one
    const int hq = blockIdx.x, qb = n_qblocks - 1 - (int)blockIdx.y, b = blockIdx.z;
    const int hk = hq / (a.n_q_heads / a.n_kv_heads);
    // key tiles up to the block's last row's position
    const int n_tiles = (a.q_pos0 + min((qb + 1) * kBM, a.n_q) - 1) / kBN + 1;
    // warp index read from lane 0: provably warp-uniform, so ptxas keeps the wgmma batches
    // asynchronous (it serializes them inside a branch it sees as divergent)
    const int warp = __shfl_sync(0xffffffffu, (int)threadIdx.x / 32, 0), lane = threadIdx.x % 32;

    if (threadIdx.x == 0) {
        mbar_init(q_full, 1);
        for (int s = 0; s < kStages; ++s) {
            mbar_init(&k_full[s], 1);
            mbar_init(&v_full[s], 1);
            mbar_init(&empty[s], kConsumerWarps);
        }
        mbar_init_fence();
    }
    __syncthreads();

    if (warp >= kConsumerWarps) {  // producer warpgroup: one lane issues every load
        setmaxnreg_dec<kProducerRegs>();
        if (warp != kConsumerWarps || lane != 0) return;
        if constexpr (!QF) tma_prefetch_map(&a.q);
        tma_prefetch_map(&a.k);
        tma_prefetch_map(&a.v);
        grid_dependency_wait();
        const int zq = b * a.n_q_heads + hq, zk = b * a.n_kv_heads + hk;
        if constexpr (!QF) {
            mbar_arrive_expect_tx(q_full, P::q_bytes);
            for (int c = 0; c < P::col_blocks; ++c)
                tma_load_3d(sq + c * kBM * P::row_bytes, &a.q, c * P::row_bytes / E, qb * kBM, zq, q_full);
        }
        for (int j = 0; j < n_tiles; ++j) {
            const int s = j % kStages;
            if (j >= kStages) mbar_wait(&empty[s], (j / kStages - 1) & 1);
            uint8_t* sk = sm + P::k_off + s * P::k_bytes;
            uint8_t* sv = sm + P::v_off + s * P::v_bytes;
            mbar_arrive_expect_tx(&k_full[s], P::k_bytes);
            for (int c = 0; c < P::col_blocks; ++c)
                tma_load_3d(sk + c * kBN * P::row_bytes, &a.k, c * P::row_bytes / E, j * kBN, zk, &k_full[s]);
            mbar_arrive_expect_tx(&v_full[s], P::v_bytes);
            for (int c = 0; c < D / 64; ++c)
                tma_load_3d(sv + c * kBN * 128, &a.v, c * 64, j * kBN, zk, &v_full[s]);
        }
        return;
    }

    // consumers: warpgroup wg owns query rows qb*kBM + wg*64 + [0, 64); this thread rows r0, r0+8
    setmaxnreg_inc<Shape<NW>::kConsumerRegs>();
    const int wg_row0 = qb * kBM + (warp / 4) * 64;
    float q_block_scale = 1.0f;
    // quantize_q reads only the FP16 queries, which no earlier kernel writes: it runs before the wait
    if constexpr (QF)
        q_block_scale = quantize_q<D, NW>(a, b * a.n_q_heads + hq, wg_row0, sq + (warp / 4) * 64 * P::row_bytes,
                                      (float*)(sm + P::red_off), warp, lane);
    grid_dependency_wait();
    if constexpr (QK != QkType::F16 && !QF) {  // (a warpgroup past the last row reads the last block; its rows are not stored)
        const int n_qblocks64 = (a.n_q + 63) / 64;
        q_block_scale = a.qs[(size_t)(b * a.n_q_heads + hq) * n_qblocks64 + min(wg_row0 / 64, n_qblocks64 - 1)];
    }
    Consumer<D, QK, SAS, NW> c;
    c.init(a, qb, hk, b, warp, lane, sm, q_block_scale);
    if constexpr (!QF) mbar_wait(q_full, 0);
    if (a.pipelined) {
        // S_j = Q K_j^T is issued together with O += P_{j-1} V_{j-1}, and the warpgroups take
        // turns issuing, in a ring (warpgroup wg waits on its turn barrier, then opens the next
        // one's): one warpgroup's softmax runs on the CUDA cores while another's products run
        // on the tensor cores.
        const int wg = warp / 4, mine = turn_bar(wg), next = turn_bar((wg + 1) % NW);
        if (wg == NW - 1) named_bar_arrive(turn_bar(0), 256);  // warpgroup 0 issues first
        mbar_wait(&k_full[0], 0);
        named_bar_sync(mine, 256);
        wgmma_fence();
        c.issue_qk(0);
        wgmma_commit();
        named_bar_arrive(next, 256);
        wgmma_wait<0>();
        c.softmax(0, n_tiles);
        c.pack_p();
        for (int j = 1; j < n_tiles; ++j) {
            const int s = j % kStages, sp = (j - 1) % kStages;
            mbar_wait(&k_full[s], (j / kStages) & 1);
            mbar_wait(&v_full[sp], ((j - 1) / kStages) & 1);
            named_bar_sync(mine, 256);
            wgmma_fence();
            c.issue_qk(s);
            wgmma_commit();
            c.issue_pv(sp);
            wgmma_commit();
            named_bar_arrive(next, 256);
            wgmma_wait<1>();  // S_j is done; P_{j-1} V_{j-1} may still run
            const float2 alpha = c.softmax(j, n_tiles);
            wgmma_wait<0>();
            fence_regs(c.o);
            if (lane == 0) mbar_arrive(&empty[sp]);
            c.rescale(alpha);
            c.pack_p();
        }
        const int sl = (n_tiles - 1) % kStages;
        mbar_wait(&v_full[sl], ((n_tiles - 1) / kStages) & 1);
        named_bar_sync(mine, 256);
        wgmma_fence();
        c.issue_pv(sl);
        wgmma_commit();
        if (wg != NW - 1) named_bar_arrive(next, 256);  // (the last warpgroup's last turn needs no answer)
        wgmma_wait<0>();
        fence_regs(c.o);
    } else {
        for (int j = 0; j < n_tiles; ++j) {  // S, softmax, P.V in turn
            const int s = j % kStages;
            const uint32_t phase = (j / kStages) & 1;
            mbar_wait(&k_full[s], phase);
            wgmma_fence();
            c.issue_qk(s);
            wgmma_commit();
            wgmma_wait<0>();
            c.rescale(c.softmax(j, n_tiles));
            c.pack_p();
            mbar_wait(&v_full[s], phase);
            wgmma_fence();
            c.issue_pv(s);
            wgmma_commit();
            wgmma_wait<0>();
            fence_regs(c.o);
            if (lane == 0) mbar_arrive(&empty[s]);
        }
    }
    c.store(a, b * a.n_q_heads + hq);
}

}  // namespace

PFN_cuTensorMapEncodeTiled_v12000 hopper::tensor_map_encoder() {
    static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
        void* p = nullptr;
        cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
        TANDEM_CHECK_CUDA(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q));
        if (q != cudaDriverEntryPointSuccess || !p)
            throw TurboError("hopper prefill: the driver has no cuTensorMapEncodeTiled");
        return (PFN_cuTensorMapEncodeTiled_v12000)p;
    }();
    return fn;
}

namespace {

// A 3-D map over (d2, d1, d0) elements of `elt` bytes, d0 contiguous, strides s1 and s2 (in
// elements) for d1 and d2; box (box0, box1, 1). Rows outside d1 read as zeros.
CUtensorMap make_map(const void* base, int elt, uint64_t d0, uint64_t d1, uint64_t d2, int64_t s1, int64_t s2,
                     uint32_t box0, uint32_t box1) {
    CUtensorMap m;
    const cuuint64_t dims[3] = {d0, d1, d2};
    const cuuint64_t strides[2] = {(cuuint64_t)s1 * elt, (cuuint64_t)s2 * elt};
    const cuuint32_t box[3] = {box0, box1, 1};
    const cuuint32_t step[3] = {1, 1, 1};
    const CUresult r = tensor_map_encoder()(
        &m, elt == 2 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_UINT8, 3, const_cast<void*>(base), dims,
        strides, box, step, CU_TENSOR_MAP_INTERLEAVE_NONE,
        box0 * elt == 128 ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_64B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) throw TurboError("hopper prefill: cuTensorMapEncodeTiled failed with CUresult " + std::to_string((int)r));
    return m;
}

template <int D, QkType QK, bool SAS, bool QF, int NW>
void launch(const HopperPrefillArgs& h, cudaStream_t st) {
    constexpr int E = QK == QkType::F16 ? 2 : 1;
    using P = Plan<D, E, NW>;
    constexpr int kBM = P::kBM;
    const uint64_t n_keys = (uint64_t)h.q_pos0 + h.n_q;
    Args a;
    if constexpr (QF) {
        a.q16 = (const __half*)h.q;
        a.q16_row_stride = h.q_row_stride, a.q16_head_stride = h.q_head_stride;
    } else {
        a.q = make_map(h.q, E, D, h.n_q, (uint64_t)h.batch * h.n_q_heads, h.q_row_stride, h.q_head_stride, P::row_bytes / E, kBM);
    }
    a.k = make_map(h.k, E, D, n_keys, (uint64_t)h.batch * h.n_kv_heads, h.kv_row_stride, h.kv_head_stride, P::row_bytes / E, kBN);
    a.v = make_map(h.v, 2, D, n_keys, (uint64_t)h.batch * h.n_kv_heads, h.kv_row_stride, h.kv_head_stride, 64, kBN);
    a.qs = h.q_scales;
    a.ks = h.k_scales;
    a.out = h.out;
    a.out_row_stride = h.out_row_stride;
    a.out_head_stride = h.out_head_stride;
    a.n_q_heads = h.n_q_heads;
    a.n_kv_heads = h.n_kv_heads;
    a.n_q = h.n_q;
    a.q_pos0 = h.q_pos0;
    a.scale = kLog2eF / sqrtf((float)D);
    a.threshold = h.threshold;
    float c[4];
    turbo_sas_coeffs(h.poly_degree, c);
    a.c1 = c[1], a.c2 = c[2], a.c3 = c[3];
    a.pipelined = h.pipelined;
    static const cudaError_t attr =
        cudaFuncSetAttribute(prefill_kernel<D, QK, SAS, QF, NW>, cudaFuncAttributeMaxDynamicSharedMemorySize, P::smem);
    TANDEM_CHECK_CUDA(attr);
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(h.n_q_heads, (h.n_q + kBM - 1) / kBM, h.batch);
    cfg.blockDim = dim3(Shape<NW>::kThreads);
    cfg.dynamicSmemBytes = P::smem;
    cfg.stream = st;
    cudaLaunchAttribute programmatic;
    programmatic.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    programmatic.val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = &programmatic;
    cfg.numAttrs = h.programmatic ? 1 : 0;
    TANDEM_CHECK_CUDA(cudaLaunchKernelEx(&cfg, prefill_kernel<D, QK, SAS, QF, NW>, a));
}

}  // namespace

bool hopper_prefill_available() {
    static std::atomic<int> known[64] = {};  // per device: 0 not asked yet, 1 no, 2 sm_90
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    const bool cached = dev >= 0 && dev < 64;
    if (cached && known[dev].load() != 0) return known[dev].load() == 2;
    int major = 0, minor = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) return false;
    const bool sm90 = major == 9 && minor == 0;
    if (cached) known[dev].store(sm90 ? 2 : 1);
    return sm90;
}

void hopper_prefill_launch(const HopperPrefillArgs& h, cudaStream_t stream) {
    auto fail = [](const char* what) { throw TurboError(std::string("hopper prefill: ") + what); };
    if (!h.q || !h.k || !h.v || !h.out) fail("a pointer is null");
    if (h.head_dim != 64 && h.head_dim != 128) fail("head_dim must be 64 or 128");
    if (h.batch < 1 || h.n_q < 1 || h.q_pos0 < 0) fail("batch and n_q must be >= 1, q_pos0 >= 0");
    if (h.n_kv_heads < 1 || h.n_q_heads % h.n_kv_heads != 0) fail("n_q_heads must be a multiple of n_kv_heads");
    const bool scaled = h.qk != QkType::F16;
    const int align = scaled ? 16 : 8;  // elements in 16 bytes (TMA: strides and bases 16-byte aligned)
    for (int64_t st : {h.q_row_stride, h.q_head_stride, h.kv_row_stride, h.kv_head_stride})
        if (st < h.head_dim || st % align != 0) fail("strides must cover a row and keep 16-byte alignment");
    if (scaled && ((!h.q_scales && !h.quantize_q) || !h.k_scales || h.q_pos0 != 0 || h.n_q % 64 != 0))
        fail("qk S8/E4M3 needs block scales, q_pos0 == 0 and n_q % 64 == 0");
    if (h.quantize_q && (h.qk != QkType::S8 || h.q_row_stride % 8 != 0 || h.q_head_stride % 8 != 0 || (uintptr_t)h.q % 16 != 0))
        fail("quantize_q needs qk S8 and FP16 queries with 16-byte aligned rows");
    if (h.warpgroups != 0 && h.warpgroups != 2 && h.warpgroups != 3) fail("warpgroups must be 0 (the default), 2 or 3");
    if (h.warpgroups == 3 && h.head_dim != 64) fail("warpgroups 3 needs head_dim 64");
    if (!hopper_prefill_available()) fail("needs an sm_90 GPU (H100/H200)");
    if (h.sas && !scaled) fail("sas needs qk S8 or E4M3");
    const int nw = h.warpgroups != 0 ? h.warpgroups : default_prefill_warpgroups(h);
    auto run = [&](auto d, auto w) {
        constexpr int D = decltype(d)::value, NW = decltype(w)::value;
        auto scaled_launch = [&](auto qk) {
            constexpr QkType QK = decltype(qk)::value;
            if constexpr (QK == QkType::S8) {
                if (h.quantize_q) {
                    if (h.sas) launch<D, QK, true, true, NW>(h, stream);
                    else launch<D, QK, false, true, NW>(h, stream);
                    return;
                }
            }
            if (h.sas) launch<D, QK, true, false, NW>(h, stream);
            else launch<D, QK, false, false, NW>(h, stream);
        };
        if (h.qk == QkType::S8) scaled_launch(std::integral_constant<QkType, QkType::S8>{});
        else if (h.qk == QkType::E4M3) scaled_launch(std::integral_constant<QkType, QkType::E4M3>{});
        else launch<D, QkType::F16, false, false, NW>(h, stream);
    };
    using Two = std::integral_constant<int, 2>;
    if (h.head_dim == 128) run(std::integral_constant<int, 128>{}, Two{});
    else if (nw == 3) run(std::integral_constant<int, 64>{}, std::integral_constant<int, 3>{});
    else run(std::integral_constant<int, 64>{}, Two{});
}

int default_prefill_warpgroups(const HopperPrefillArgs& h) {
    if (h.head_dim != 64) return 2;
    // H100, 32 query heads, batch 1 (bench/results/attention-h100.md, session 18): three
    // warpgroups ran 1.07-1.10x two at 4k and 16k tokens (704 and 2,816 CTAs of 192 rows on 132
    // SMs) and 0.86x at 1k (192 CTAs: 1.5 waves, against 256 CTAs of 128 rows)
    static std::atomic<int> sms[64] = {};  // per device: 0 not asked yet
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return 2;
    if (sms[dev].load() == 0) {
        int n = 0;
        if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n < 1) return 2;
        sms[dev].store(n);
    }
    constexpr int kBM3 = Shape<3>::kBM;
    const int64_t ctas = (int64_t)h.batch * h.n_q_heads * ((h.n_q + kBM3 - 1) / kBM3);
    return ctas >= 4 * (int64_t)sms[dev].load() ? 3 : 2;
}

void fp16_prefill_cuda(const Fp16PrefillParams& p, cudaStream_t stream) {
    if (!p.q || !p.k || !p.v || !p.out) throw TurboError("fp16_prefill: a pointer is null");
    if (p.head_dim != 64 && p.head_dim != 128) throw TurboError("fp16_prefill: head_dim must be 64 or 128");
    if (p.len < 1) throw TurboError("fp16_prefill: len must be >= 1");
    if (p.n_kv_heads < 1 || p.n_q_heads % p.n_kv_heads != 0)
        throw TurboError("fp16_prefill: n_q_heads must be a multiple of n_kv_heads");
    if (p.batch < 1) throw TurboError("fp16_prefill: batch must be >= 1");
    if (!hopper_prefill_available())
        throw TurboError("fp16_prefill: needs an sm_90 GPU (H100/H200); use fp16_decode_cuda's causal mode elsewhere");
    HopperPrefillArgs h;
    h.q = p.q, h.k = p.k, h.v = p.v, h.out = p.out;
    h.q_row_stride = h.kv_row_stride = h.out_row_stride = p.head_dim;
    h.q_head_stride = h.kv_head_stride = h.out_head_stride = (int64_t)p.len * p.head_dim;
    h.batch = p.batch, h.n_q_heads = p.n_q_heads, h.n_kv_heads = p.n_kv_heads, h.head_dim = p.head_dim, h.n_q = p.len;
    hopper_prefill_launch(h, stream);
}

}  // namespace tandem
