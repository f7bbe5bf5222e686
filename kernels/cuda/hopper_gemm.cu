// Prefill GEMM of Q4_0 / Q8_0 weights for Hopper (sm_90a): y (n, rows) = x (n, K) w^T with the
// weight blocks dequantized in registers as wgmma's A operand (no BF16 copy of the weights).
//
//   CTA = 128 weight rows x BN tokens (64, 128 or 256: tile_tokens, or by the grid's fill);
//   384 threads:
//     warps 0-3, 4-7  consumer warpgroups, 64 weight rows each (240 registers a thread)
//     warps 8-11      producer warpgroup (24 registers): one lane issues the TMA loads of each
//                     K-step (64 columns) into stage k % 4, once all 8 consumer warps released it:
//                       x tile   BN tokens x 64 BF16, 128B-swizzled rows (wgmma's B, K-major)
//                       codes    128 rows x 32 bytes (Q4_0) or 64 bytes (Q8_0, 64B-swizzled)
//   per K-step, in each consumer warpgroup: the thread's A fragments (rows g, g + 8 of its warp's
//   16; columns 2t, 2t+1, 2t+8, 2t+9 of each k16 group; g = lane / 4, t = lane % 4) are built
//   from two 16-bit shared loads per row and k16 group pair, then 4 wgmma m64nBNk16 BF16 with
//   FP32 sums. The next step's fragments are built while this step's wgmmas run (two fragment
//   sets). The block scales come from global memory (L2), loaded a step ahead.
//
// The dequantized BF16 values are those of dequant_rows_bf16_cuda (gemv.cu), which rounds the
// exact float product q * d once to BF16:
//   Q4_0  the pair (n0, n1) of nibbles as bf16x2 bits 0x43nn = 128 + n (exact), minus 136 (exact:
//         n - 8), times d split as dhi (d's top 8 significant bits) + dlo (its last 3): (n - 8) dlo
//         has at most 7 significant bits (exact), and fma(n - 8, dhi, (n - 8) dlo) rounds the
//         exact (n - 8) d once. Three bf16x2 operations a pair.
//   Q8_0  q does not fit that trick (8 bits times dlo's 3 exceed BF16's 8): each q becomes the
//         float 2^23 + (q + 128) by a byte permute (exact), minus 2^23 + 128, times d in FP32
//         (exact: 8 x 11 significant bits), rounded as a pair by cvt.rn.bf16x2.f32.
// A zero product may come out as +0 where the reference has -0; sums are the same.
//
// Rows past `rows` and tokens past n load as zeros (TMA) and are not stored; K-steps past K
// (K % 64 == 32) have zero activations and zero scales.
#include "hopper_gemm.cuh"

#include <cuda_bf16.h>

#include <string>

#include "cuda_common.cuh"
#include "hopper_prefill.cuh"
#include "hopper_ptx.cuh"

namespace tandem {

namespace {

using namespace hopper;

constexpr int kBM = 128;        // weight rows per CTA, 64 per consumer warpgroup
constexpr int kBK = 64;         // K per stage: two 32-blocks, one 128-byte BF16 row of x
constexpr int kStages = 4;
constexpr int kConsumerWarps = 8;
constexpr int kThreads = kConsumerWarps * 32 + 128;  // + the producer warpgroup
// 128 x 24 + 256 x 240 <= 65536 (as hopper_prefill.cu)
constexpr int kProducerRegs = 24, kConsumerRegs = 240;

template <GgmlType TY, int BN>
struct Plan {
    static constexpr int code_row = TY == GgmlType::Q4_0 ? kBK / 2 : kBK;  // code bytes of a row per stage
    static constexpr int x_bytes = BN * kBK * 2;
    static constexpr int w_bytes = kBM * code_row;
    static constexpr int w_off = kStages * x_bytes;
    static constexpr int bar_off = w_off + kStages * w_bytes;
    static constexpr int smem = bar_off + 16 * kStages + 1024;  // + alignment slack
};

struct Args {
    CUtensorMap x, w;                 // 3-D maps: (K, n, 1) BF16; (code bytes of a row, rows, 1)
    const uint16_t* scales = nullptr; // (rows, K / 32) FP16 bits
    float* y = nullptr;
    int64_t ldy = 0;
    int rows = 0, n = 0, k_blocks = 0, k_steps = 0;
    bool accumulate = false;
};

__device__ __forceinline__ uint32_t bf16x2_bits(__nv_bfloat162 v) { return *reinterpret_cast<uint32_t*>(&v); }
__device__ __forceinline__ __nv_bfloat162 bits_bf16x2(uint32_t b) { return *reinterpret_cast<__nv_bfloat162*>(&b); }

// A block scale d as BF16 pairs dhi (d's top 8 significant bits) and dlo = d - dhi, both exact.
struct SplitScale {
    __nv_bfloat162 hi, lo;
};
__device__ __forceinline__ SplitScale split_scale(uint16_t d_bits) {
    const float d = __half2float(__ushort_as_half(d_bits));
    const float hi = __uint_as_float(__float_as_uint(d) & 0xFFFF0000u);
    return {__float2bfloat162_rn(hi), __float2bfloat162_rn(d - hi)};
}

// Q4_0: bf16x2 bits (128 + n0, 128 + n1) -> round((n - 8) d) in BF16 (see the top of the file).
__device__ __forceinline__ uint32_t q4_pair(uint32_t bits, SplitScale s) {
    const __nv_bfloat162 q = __hsub2(bits_bf16x2(bits), bits_bf16x2(0x43084308u));  // 136 = 0x4308
    return bf16x2_bits(__hfma2(q, s.hi, __hmul2(q, s.lo)));
}

// Q8_0: byte i of w (q + 128) -> q * d in FP32, exact.
template <int I>
__device__ __forceinline__ float q8_value(uint32_t w, float d) {
    return (__uint_as_float(__byte_perm(w, 0x4B000000u, 0x7540 | I)) - 8388736.0f) * d;  // 2^23 + 128
}

// The two 16-bit words at byte offsets 2t and 2t + 8 of a 16-byte group: columns (2t, 2t+1,
// 2t+8, 2t+9) of a k16 group's A fragment, or (Q4_0) of both k16 groups of a 32-block.
__device__ __forceinline__ uint32_t fragment_bytes(const uint8_t* group16, int t) {
    const uint16_t* p = (const uint16_t*)group16;
    return (uint32_t)p[t] | ((uint32_t)p[t + 4] << 16);
}

// One consumer thread: its rows' fragments, scales and the accumulator.
template <GgmlType TY, int BN>
struct Consumer {
    using P = Plan<TY, BN>;
    float acc[BN / 2];              // layout: wgmma_ss in hopper_ptx.cuh (rows lr0 / lr0 + 8)
    const uint16_t* srow[2];        // scales of rows lr0, lr0 + 8 (row 0 for rows past the end)
    bool row_ok[2];
    int lr0, t, k_blocks;

    // raw scales of K-step kt: [row][block]; zero (d = 0) past the matrix
    __device__ __forceinline__ void load_scales(uint16_t (&s)[2][2], int kt) const {
#pragma unroll
        for (int r = 0; r < 2; ++r)
#pragma unroll
            for (int b = 0; b < 2; ++b) {
                const int kb = 2 * kt + b;
                s[r][b] = row_ok[r] && kb < k_blocks ? __ldg(srow[r] + kb) : (uint16_t)0;
            }
    }

    // the 4 k16 groups' A fragments of the stage's codes
    __device__ __forceinline__ void dequant(const uint8_t* sw, const uint16_t (&s)[2][2], uint32_t (&a)[4][4]) const {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int row = lr0 + 8 * r;
            if constexpr (TY == GgmlType::Q4_0) {
#pragma unroll
                for (int b = 0; b < 2; ++b) {
                    const SplitScale d = split_scale(s[r][b]);
                    const uint32_t w = fragment_bytes(sw + row * P::code_row + b * 16, t);
                    const uint32_t lo = w & 0x0F0F0F0Fu, hi = (w >> 4) & 0x0F0F0F0Fu;
                    // bytes 0, 1 -> columns 2t, 2t+1; bytes 2, 3 -> 2t+8, 2t+9; high nibbles: group 2b+1
                    a[2 * b][r] = q4_pair(__byte_perm(lo, 0x43u, 0x4140), d);
                    a[2 * b][r + 2] = q4_pair(__byte_perm(lo, 0x43u, 0x4342), d);
                    a[2 * b + 1][r] = q4_pair(__byte_perm(hi, 0x43u, 0x4140), d);
                    a[2 * b + 1][r + 2] = q4_pair(__byte_perm(hi, 0x43u, 0x4342), d);
                }
            } else {
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    const float d = __half2float(__ushort_as_half(s[r][j / 2]));
                    // 64B swizzle: 16-byte chunk j of row `row` sits at chunk j ^ ((row / 2) % 4)
                    const uint8_t* g = sw + row * P::code_row + ((j ^ ((row >> 1) & 3)) << 4);
                    const uint32_t w = fragment_bytes(g, t) ^ 0x80808080u;  // q + 128
                    a[j][r] = bf16x2_bits(__floats2bfloat162_rn(q8_value<0>(w, d), q8_value<1>(w, d)));
                    a[j][r + 2] = bf16x2_bits(__floats2bfloat162_rn(q8_value<2>(w, d), q8_value<3>(w, d)));
                }
            }
        }
    }
};

template <GgmlType TY, int BN>
__global__ void __launch_bounds__(kThreads, 1) gemm_kernel(const __grid_constant__ Args a) {
    using P = Plan<TY, BN>;
    extern __shared__ uint8_t smem_raw[];
    uint8_t* sm = (uint8_t*)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    uint64_t* full = (uint64_t*)(sm + P::bar_off);
    uint64_t* empty = full + kStages;
    const int n0 = blockIdx.x * BN, m0 = blockIdx.y * kBM;  // tokens fastest: a weight tile's CTAs run together
    // warp index read from lane 0: provably warp-uniform (see hopper_prefill.cu)
    const int warp = __shfl_sync(0xffffffffu, (int)threadIdx.x / 32, 0), lane = threadIdx.x % 32;

    if (threadIdx.x == 0) {
        for (int s = 0; s < kStages; ++s) {
            mbar_init(&full[s], 1);
            mbar_init(&empty[s], kConsumerWarps);
        }
        mbar_init_fence();
    }
    __syncthreads();

    if (warp >= kConsumerWarps) {  // producer warpgroup: one lane issues every load
        setmaxnreg_dec<kProducerRegs>();
        if (warp != kConsumerWarps || lane != 0) return;
        tma_prefetch_map(&a.x);
        tma_prefetch_map(&a.w);
        for (int kt = 0; kt < a.k_steps; ++kt) {
            const int s = kt % kStages;
            if (kt >= kStages) mbar_wait(&empty[s], (kt / kStages - 1) & 1);
            mbar_arrive_expect_tx(&full[s], P::x_bytes + P::w_bytes);
            tma_load_3d(sm + s * P::x_bytes, &a.x, kt * kBK, n0, 0, &full[s]);
            tma_load_3d(sm + P::w_off + s * P::w_bytes, &a.w, kt * P::code_row, m0, 0, &full[s]);
        }
        return;
    }

    setmaxnreg_inc<kConsumerRegs>();
    Consumer<TY, BN> c;
    const int wg = warp / 4;
    c.t = lane % 4;
    c.lr0 = wg * 64 + (warp % 4) * 16 + lane / 4;
    c.k_blocks = a.k_blocks;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int row = m0 + c.lr0 + 8 * r;
        c.row_ok[r] = row < a.rows;
        c.srow[r] = a.scales + (size_t)(c.row_ok[r] ? row : 0) * a.k_blocks;
    }
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) c.acc[i] = 0.0f;

    uint32_t fa[4][4], fb[4][4];  // fragments of even / odd K-steps
    uint16_t s_cur[2][2], s_next[2][2];
    c.load_scales(s_cur, 0);
    c.load_scales(s_next, 1);
    mbar_wait(&full[0], 0);
    c.dequant(sm + P::w_off, s_cur, fa);

    // Issues step kt's wgmmas with `cur`, then (its wgmmas running) builds step kt + 1's
    // fragments in `next`, whose last wgmmas (step kt - 1) are done by then.
    auto step = [&](int kt, const uint32_t (&cur)[4][4], uint32_t (&next)[4][4]) {
        const uint64_t xd = smem_desc(sm + (kt % kStages) * P::x_bytes, 128);
        wgmma_fence();
#pragma unroll
        for (int j = 0; j < 4; ++j) wgmma_rs_bf16<BN>(c.acc, cur[j], xd + 2 * j);  // + 32 bytes a k16 group
        wgmma_commit();
        wgmma_wait<1>();
        if (kt > 0 && lane == 0) mbar_arrive(&empty[(kt - 1) % kStages]);
        if (kt + 1 < a.k_steps) {
#pragma unroll
            for (int r = 0; r < 2; ++r)
#pragma unroll
                for (int b = 0; b < 2; ++b) s_cur[r][b] = s_next[r][b];
            c.load_scales(s_next, kt + 2);
            const int s = (kt + 1) % kStages;
            mbar_wait(&full[s], ((kt + 1) / kStages) & 1);
            c.dequant(sm + P::w_off + s * P::w_bytes, s_cur, next);
        }
    };
    for (int kt = 0; kt < a.k_steps; kt += 2) {
        step(kt, fa, fb);
        if (kt + 1 < a.k_steps) step(kt + 1, fb, fa);
    }
    wgmma_wait<0>();
    fence_regs(c.acc);

    // y[token][row]: per n8 block i, (row lr0, tokens 8i + 2t, +1) and (row lr0 + 8, same)
    const int r0 = m0 + c.lr0, r1 = r0 + 8;
#pragma unroll
    for (int i = 0; i < BN / 8; ++i) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int tok = n0 + 8 * i + 2 * c.t + e;
            if (tok >= a.n) continue;
            float* yr = a.y + (size_t)tok * a.ldy;
            if (c.row_ok[0]) yr[r0] = a.accumulate ? yr[r0] + c.acc[4 * i + e] : c.acc[4 * i + e];
            if (c.row_ok[1]) yr[r1] = a.accumulate ? yr[r1] + c.acc[4 * i + 2 + e] : c.acc[4 * i + 2 + e];
        }
    }
}

// A 3-D map (d0 contiguous, d1 rows of `stride1` bytes, d2 = 1) with box (box0, box1, 1).
CUtensorMap make_map(const void* base, CUtensorMapDataType type, uint64_t d0, uint64_t d1, uint64_t stride1,
                     uint32_t box0, uint32_t box1, CUtensorMapSwizzle swizzle) {
    CUtensorMap m;
    const cuuint64_t dims[3] = {d0, d1, 1};
    const cuuint64_t strides[2] = {stride1, stride1 * d1};
    const cuuint32_t box[3] = {box0, box1, 1};
    const cuuint32_t step[3] = {1, 1, 1};
    const CUresult r = tensor_map_encoder()(&m, type, 3, const_cast<void*>(base), dims, strides, box, step,
                                            CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) throw CudaError("hopper_gemm: cuTensorMapEncodeTiled failed with CUresult " + std::to_string((int)r));
    return m;
}

template <GgmlType TY, int BN>
void launch(const HopperGemmArgs& h, cudaStream_t st) {
    using P = Plan<TY, BN>;
    const uint64_t K = (uint64_t)h.w.cols, rows = (uint64_t)h.w.rows;
    const uint64_t row_bytes = TY == GgmlType::Q4_0 ? K / 2 : K;
    Args a;
    a.x = make_map(h.x, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, K, (uint64_t)h.n, (uint64_t)h.ldx * 2, kBK, BN,
                   CU_TENSOR_MAP_SWIZZLE_128B);
    a.w = make_map(h.w.q, CU_TENSOR_MAP_DATA_TYPE_UINT8, row_bytes, rows, row_bytes, P::code_row, kBM,
                   TY == GgmlType::Q8_0 ? CU_TENSOR_MAP_SWIZZLE_64B : CU_TENSOR_MAP_SWIZZLE_NONE);
    a.scales = (const uint16_t*)h.w.s;
    a.y = h.y;
    a.ldy = h.ldy;
    a.rows = (int)rows;
    a.n = (int)h.n;
    a.k_blocks = (int)(K / 32);
    a.k_steps = (int)((K + kBK - 1) / kBK);
    a.accumulate = h.accumulate;
    static const cudaError_t attr =
        cudaFuncSetAttribute(gemm_kernel<TY, BN>, cudaFuncAttributeMaxDynamicSharedMemorySize, P::smem);
    TANDEM_CHECK_CUDA(attr);
    const dim3 grid((unsigned)((h.n + BN - 1) / BN), (unsigned)((rows + kBM - 1) / kBM));
    gemm_kernel<TY, BN><<<grid, kThreads, P::smem, st>>>(a);
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

// The tokens a CTA takes when the caller leaves it open: 128, unless the 128 x 128 tiles fill at
// most half the SMs (one CTA an SM): then 64, twice the CTAs. A 64-token tile spends twice the
// dequantization per MMA, so it pays only where the SMs would otherwise idle (the 1B shape's Wo
// and Wd at 512 tokens: 64 tiles). 256 is taken only when asked for: it halves the
// dequantization per MMA again, which paid where its tiles alone fill the GPU (the 1B shape's
// gate and up at 512 tokens: 128 CTAs) and lost elsewhere (bench/results/gpu-prefill-h100.md).
int tile_tokens(const HopperGemmArgs& h) {
    if (h.tile_tokens != 0) return h.tile_tokens;
    const int64_t tiles = (h.w.rows + kBM - 1) / kBM * ((h.n + 127) / 128);
    return 2 * tiles <= sm_count() ? 64 : 128;
}

}  // namespace

bool hopper_gemm_available() { return hopper_prefill_available(); }

bool hopper_gemm_supports(GgmlType type) { return type == GgmlType::Q4_0 || type == GgmlType::Q8_0; }

void hopper_gemm_launch(const HopperGemmArgs& h, cudaStream_t stream) {
    auto fail = [](const std::string& what) { throw CudaError("hopper_gemm: " + what); };
    if (!hopper_gemm_supports(h.w.type)) fail("w.type must be Q4_0 or Q8_0");
    if (!h.w.q || !h.w.s || !h.x || !h.y) fail("a pointer is null (w.q, w.s, x or y)");
    if (h.w.rows < 1 || h.w.rows > (1 << 30)) fail("w.rows must be in [1, 2^30]");
    if (h.w.cols < 32 || h.w.cols % 32 != 0 || h.w.cols > (1 << 24)) fail("w.cols must be a multiple of 32 in [32, 2^24]");
    if (h.n < 1 || h.n > (1 << 30)) fail("n must be in [1, 2^30]");
    if (h.ldx < h.w.cols || h.ldx % 8 != 0) fail("ldx must be >= w.cols and a multiple of 8 (16-byte rows)");
    if ((uintptr_t)h.x % 16 != 0 || (uintptr_t)h.w.q % 16 != 0) fail("x and w.q must be 16-byte aligned");
    if (h.ldy < h.w.rows) fail("ldy must be >= w.rows");
    if (h.tile_tokens != 0 && h.tile_tokens != 64 && h.tile_tokens != 128 && h.tile_tokens != 256)
        fail("tile_tokens must be 0, 64, 128 or 256");
    if (!hopper_gemm_available()) fail("needs an sm_90 GPU (H100/H200)");
    const bool q4 = h.w.type == GgmlType::Q4_0;
    switch (tile_tokens(h)) {
    case 64: q4 ? launch<GgmlType::Q4_0, 64>(h, stream) : launch<GgmlType::Q8_0, 64>(h, stream); break;
    case 128: q4 ? launch<GgmlType::Q4_0, 128>(h, stream) : launch<GgmlType::Q8_0, 128>(h, stream); break;
    default: q4 ? launch<GgmlType::Q4_0, 256>(h, stream) : launch<GgmlType::Q8_0, 256>(h, stream);
    }
}

}  // namespace tandem
