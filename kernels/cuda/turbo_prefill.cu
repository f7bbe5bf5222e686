// TurboAttention prefill (causal, one chunk from position 0), FlashAttention-2 style.
//
//   1 quantize: Q and K to symmetric INT8 per (head, 64-token block), one FP32 scale each (one
//     launch for both); V transposed to (D, len) FP16 so a P.V operand pair is one 32-bit load
//     (the portable kernel only: on sm_90 the attention step is hopper_prefill.cu's kernel,
//     which reads V as it is, and with INT8 quantizes Q itself: this launch then does K alone).
//   2 attention: grid (len/64, Hq, batch), 4 warps x 16 query rows. Per 64-token KV tile:
//     S = Q8 K8^T with mma.sync m16n8k32 s8 (INT32 accumulate), times s_q * s_k; causal mask
//     on the diagonal tile; online softmax with SAS (p = 0 under the threshold, and the P.V
//     of a tile whose p are all 0 in the warp is skipped); O += P V with mma m16n8k16 on FP16
//     P (the S accumulator layout is the A layout: no shuffles) and FP16 V.
// Operands come straight from global memory (L1/L2), no shared-memory staging yet: see
// docs/turboattention-impl.md for what that costs.
#include "turbo_prefill.cuh"

#include <cuda_fp8.h>

#include "decode_common.cuh"
#include "hopper_prefill.cuh"
#include "mma_fragments.cuh"

namespace tandem {

namespace {

constexpr int kBlk = 64;

// One launch for Q and K (Hq = 0: K alone): grid (len/64, Hq + Hkv, batch), 128 threads; block
// (blk, y, b) quantizes rows [64 blk, 64 blk + 64) of Q head y (y < Hq) or K head y - Hq: x (B, H, len, D)
// half -> x8 (same shape, INT8 or FP8 e4m3) + one scale per block (amax / 127 or amax / 448).
// Each thread keeps its 64 * D / 128 halves in registers (16-byte loads) between the block's
// amax and the rounding.
template <int D, bool kFp8>
__global__ void __launch_bounds__(128) quant_qk_kernel(const __half* __restrict__ q, const __half* __restrict__ k,
                                                       int8_t* __restrict__ q8, int8_t* __restrict__ k8,
                                                       float* __restrict__ q_scales, float* __restrict__ k_scales,
                                                       int Hq, int Hkv, int len) {
    constexpr int kVec = kBlk * D / 8 / 128;  // 16-byte vectors per thread
    __shared__ float red[4];
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    // the attention kernel launched after this one (programmatic, on sm_90) may start its
    // blocks now: they wait for this grid's results in griddepcontrol.wait
    asm volatile("griddepcontrol.launch_dependents;\n");
#endif
    const int blk = blockIdx.x, b = blockIdx.z, tid = threadIdx.x;
    const bool is_q = (int)blockIdx.y < Hq;
    const int h = is_q ? blockIdx.y : blockIdx.y - Hq, H = is_q ? Hq : Hkv;
    const size_t base = (((size_t)b * H + h) * len + (size_t)blk * kBlk) * D;
    const uint4* src = (const uint4*)((is_q ? q : k) + base);
    uint4 v[kVec];
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
        v[i] = src[tid + 128 * i];
        amax = amax_half8(v[i], amax);
    }
    amax = warp_max(amax);
    if (tid % 32 == 0) red[tid / 32] = amax;
    __syncthreads();
    amax = fmaxf(fmaxf(red[0], red[1]), fmaxf(red[2], red[3]));
    const float top = kFp8 ? 448.0f : 127.0f;  // the largest code
    const float inv = amax > 0.0f ? top / amax : 0.0f;
    uint2* dst = (uint2*)((is_q ? q8 : k8) + base);
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
        if constexpr (kFp8) {
            const __half2* h2 = (const __half2*)&v[i];
            uint32_t w[2] = {0, 0};
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const float2 f = __half22float2(h2[e]);
                const uint32_t pair = __nv_cvt_float2_to_fp8x2(make_float2(f.x * inv, f.y * inv), __NV_SATFINITE, __NV_E4M3);
                w[e / 2] |= pair << (16 * (e % 2));
            }
            dst[tid + 128 * i] = make_uint2(w[0], w[1]);
        } else {
            dst[tid + 128 * i] = quantize_half8_s8(v[i], inv);
        }
    }
    if (tid == 0) (is_q ? q_scales : k_scales)[((size_t)b * H + h) * (len / kBlk) + blk] = amax / top;
}

// grid (len/64, H, batch), 128 threads: v (B, H, len, D) -> vt (B, H, D, len).
template <int D>
__global__ void transpose_kernel(const __half* __restrict__ v, __half* __restrict__ vt, int H, int len) {
    __shared__ __half tileh[kBlk][D + 2];
    const int blk = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
    const size_t bh = (size_t)b * H + h;
    for (int i = tid; i < kBlk * D; i += 128) tileh[i / D][i % D] = v[(bh * len + (size_t)blk * kBlk) * D + i];
    __syncthreads();
    for (int i = tid; i < kBlk * D; i += 128) {
        const int d = i / kBlk, t = i % kBlk;
        vt[(bh * D + d) * len + (size_t)blk * kBlk + t] = tileh[t][d];
    }
}

struct PrefillArgs {
    const int8_t* q8;
    const float* qs;
    const int8_t* k8;
    const float* ks;
    const __half* vt;
    float* out;
    int n_q_heads, n_kv_heads, len;
    float threshold;
    int degree;
    float c1, c2, c3;
};

template <int D>
__global__ void __launch_bounds__(128) prefill_kernel(const PrefillArgs a) {
    const int qb = blockIdx.x, hq = blockIdx.y, b = blockIdx.z;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane >> 2, tig = lane & 3;
    const int hk = hq / (a.n_q_heads / a.n_kv_heads), nblk = a.len / kBlk;
    const int row0 = qb * kBlk + warp * 16 + gid, row1 = row0 + 8;  // this lane's two query rows
    const int8_t* q8 = a.q8 + ((size_t)b * a.n_q_heads + hq) * a.len * D;
    const int8_t* k8 = a.k8 + ((size_t)b * a.n_kv_heads + hk) * a.len * D;
    const __half* vt = a.vt + ((size_t)b * a.n_kv_heads + hk) * D * a.len;
    const __half c1 = __float2half_rn(a.c1), c2 = __float2half_rn(a.c2), c3 = __float2half_rn(a.c3);
    uint32_t qa[D / 32][4];
#pragma unroll
    for (int ks = 0; ks < D / 32; ++ks) {
        qa[ks][0] = *(const uint32_t*)(q8 + (size_t)row0 * D + ks * 32 + tig * 4);
        qa[ks][1] = *(const uint32_t*)(q8 + (size_t)row1 * D + ks * 32 + tig * 4);
        qa[ks][2] = *(const uint32_t*)(q8 + (size_t)row0 * D + ks * 32 + 16 + tig * 4);
        qa[ks][3] = *(const uint32_t*)(q8 + (size_t)row1 * D + ks * 32 + 16 + tig * 4);
    }
    const float sq = a.qs[((size_t)b * a.n_q_heads + hq) * nblk + qb] * kLog2eF * rsqrtf((float)D);
    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    for (int j = 0; j <= qb; ++j) {
        const float sc = sq * a.ks[((size_t)b * a.n_kv_heads + hk) * nblk + j];
        float s[8][4];
#pragma unroll
        for (int nb = 0; nb < 8; ++nb) {
            int c[4] = {0, 0, 0, 0};
            const int8_t* krow = k8 + (size_t)(j * kBlk + nb * 8 + gid) * D;
#pragma unroll
            for (int ks = 0; ks < D / 32; ++ks)
                mma_s8(c, qa[ks][0], qa[ks][1], qa[ks][2], qa[ks][3],
                       *(const uint32_t*)(krow + ks * 32 + tig * 4), *(const uint32_t*)(krow + ks * 32 + 16 + tig * 4));
            const int t = j * kBlk + nb * 8 + tig * 2;
            s[nb][0] = t <= row0 ? c[0] * sc : -INFINITY;
            s[nb][1] = t + 1 <= row0 ? c[1] * sc : -INFINITY;
            s[nb][2] = t <= row1 ? c[2] * sc : -INFINITY;
            s[nb][3] = t + 1 <= row1 ? c[3] * sc : -INFINITY;
        }
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int nb = 0; nb < 8; ++nb) mx0 = fmaxf(mx0, fmaxf(s[nb][0], s[nb][1])), mx1 = fmaxf(mx1, fmaxf(s[nb][2], s[nb][3]));
#pragma unroll
        for (int o2 = 1; o2 <= 2; o2 <<= 1) {
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, o2));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, o2));
        }
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);  // finite: column 0 is never masked
        float sum0 = 0.0f, sum1 = 0.0f;
        bool any = false;
#pragma unroll
        for (int nb = 0; nb < 8; ++nb) {
            s[nb][0] = sas_exp2(s[nb][0] - mn0, a.threshold, a.degree, c1, c2, c3);
            s[nb][1] = sas_exp2(s[nb][1] - mn0, a.threshold, a.degree, c1, c2, c3);
            s[nb][2] = sas_exp2(s[nb][2] - mn1, a.threshold, a.degree, c1, c2, c3);
            s[nb][3] = sas_exp2(s[nb][3] - mn1, a.threshold, a.degree, c1, c2, c3);
            sum0 += s[nb][0] + s[nb][1];
            sum1 += s[nb][2] + s[nb][3];
            any |= (s[nb][0] + s[nb][1] + s[nb][2] + s[nb][3]) > 0.0f;
        }
#pragma unroll
        for (int o2 = 1; o2 <= 2; o2 <<= 1) {
            sum0 += __shfl_xor_sync(0xffffffffu, sum0, o2);
            sum1 += __shfl_xor_sync(0xffffffffu, sum1, o2);
        }
        const float al0 = m0 == -INFINITY ? 0.0f : exp2f(m0 - mn0), al1 = m1 == -INFINITY ? 0.0f : exp2f(m1 - mn1);
        l0 = l0 * al0 + sum0;
        l1 = l1 * al1 + sum1;
        m0 = mn0;
        m1 = mn1;
#pragma unroll
        for (int i = 0; i < D / 8; ++i) o[i][0] *= al0, o[i][1] *= al0, o[i][2] *= al1, o[i][3] *= al1;
        if (!__any_sync(0xffffffffu, any)) continue;  // the whole warp's tile is under threshold
        uint32_t pa[4][4];  // P as FP16 A fragments: the S accumulator layout is the A layout
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            pa[kk][0] = pack_h2(s[2 * kk][0], s[2 * kk][1]);
            pa[kk][1] = pack_h2(s[2 * kk][2], s[2 * kk][3]);
            pa[kk][2] = pack_h2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[kk][3] = pack_h2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
        }
#pragma unroll
        for (int nd = 0; nd < D / 8; ++nd) {
            const __half* vrow = vt + (size_t)(nd * 8 + gid) * a.len + (size_t)j * kBlk + tig * 2;
#pragma unroll
            for (int kk = 0; kk < 4; ++kk)
                mma16816(o[nd], pa[kk][0], pa[kk][1], pa[kk][2], pa[kk][3], *(const uint32_t*)(vrow + kk * 16),
                        *(const uint32_t*)(vrow + kk * 16 + 8));
        }
    }
    float* out = a.out + ((size_t)b * a.n_q_heads + hq) * a.len * D;
    const float i0 = 1.0f / l0, i1 = 1.0f / l1;
#pragma unroll
    for (int nd = 0; nd < D / 8; ++nd) {
        const int d = nd * 8 + tig * 2;
        *(float2*)(out + (size_t)row0 * D + d) = make_float2(o[nd][0] * i0, o[nd][1] * i0);
        *(float2*)(out + (size_t)row1 * D + d) = make_float2(o[nd][2] * i1, o[nd][3] * i1);
    }
}

struct Layout {
    size_t q8, qs, k8, ks, vt, total;
};

// Whether p runs on the Hopper kernel (on the current device).
bool runs_hopper(const TurboPrefillParams& p) { return p.kernel != PrefillKernel::Portable && hopper_prefill_available(); }

// The workspace: INT8 Q and K with their scales, and V transposed where the portable kernel runs
// (the Hopper kernel reads V as it is).
Layout layout_of(const TurboPrefillParams& p) {
    auto al = [](size_t x) { return (x + 255) / 256 * 256; };
    Layout L;
    const size_t nq = (size_t)p.batch * p.n_q_heads * p.len, nk = (size_t)p.batch * p.n_kv_heads * p.len;
    L.q8 = 0;
    L.qs = al(L.q8 + nq * p.head_dim);
    L.k8 = al(L.qs + nq / kBlk * 4);
    L.ks = al(L.k8 + nk * p.head_dim);
    L.vt = al(L.ks + nk / kBlk * 4);
    L.total = runs_hopper(p) ? L.vt : al(L.vt + nk * p.head_dim * 2);
    return L;
}

template <int D>
void launch(const TurboPrefillParams& p, bool use_hopper, TurboPrefillLaunch how, cudaStream_t st) {
    const Layout L = layout_of(p);
    uint8_t* ws = (uint8_t*)p.workspace;
    const int nblk = p.len / kBlk;
    const bool fp8 = p.qk == PrefillQk::Fp8;
    const bool q_in_attention = use_hopper && !fp8 && how.quantize_q_in_attention;
    const int hq = q_in_attention ? 0 : p.n_q_heads;  // 0: the launch quantizes K alone
    (fp8 ? quant_qk_kernel<D, true> : quant_qk_kernel<D, false>)<<<dim3(nblk, hq + p.n_kv_heads, p.batch), 128, 0, st>>>(
        (const __half*)p.q, (const __half*)p.k, (int8_t*)(ws + L.q8), (int8_t*)(ws + L.k8), (float*)(ws + L.qs),
        (float*)(ws + L.ks), hq, p.n_kv_heads, p.len);
    TANDEM_CHECK_CUDA(cudaGetLastError());
    if (use_hopper) {  // reads V as it is: no transpose
        HopperPrefillArgs h;
        h.q = ws + L.q8, h.k = ws + L.k8, h.v = p.v;
        h.q_row_stride = h.kv_row_stride = h.out_row_stride = D;
        h.q_head_stride = h.kv_head_stride = h.out_head_stride = (int64_t)p.len * D;
        h.q_scales = (const float*)(ws + L.qs), h.k_scales = (const float*)(ws + L.ks), h.out = p.out;
        h.batch = p.batch, h.n_q_heads = p.n_q_heads, h.n_kv_heads = p.n_kv_heads, h.head_dim = D, h.n_q = p.len;
        h.qk = fp8 ? QkType::E4M3 : QkType::S8, h.poly_degree = p.poly_degree, h.threshold = p.threshold;
        h.sas = p.exp == PrefillExp::Sas;
        h.programmatic = how.programmatic;
        h.warpgroups = how.warpgroups;
        if (q_in_attention) h.q = p.q, h.q_scales = nullptr, h.quantize_q = true;
        hopper_prefill_launch(h, st);
        return;
    }
    transpose_kernel<D><<<dim3(nblk, p.n_kv_heads, p.batch), 128, 0, st>>>((const __half*)p.v, (__half*)(ws + L.vt), p.n_kv_heads, p.len);
    TANDEM_CHECK_CUDA(cudaGetLastError());
    PrefillArgs a;
    a.q8 = (const int8_t*)(ws + L.q8);
    a.qs = (const float*)(ws + L.qs);
    a.k8 = (const int8_t*)(ws + L.k8);
    a.ks = (const float*)(ws + L.ks);
    a.vt = (const __half*)(ws + L.vt);
    a.out = p.out;
    a.n_q_heads = p.n_q_heads;
    a.n_kv_heads = p.n_kv_heads;
    a.len = p.len;
    a.threshold = p.threshold;
    a.degree = p.poly_degree;
    float c[4];
    turbo_sas_coeffs(p.poly_degree, c);
    a.c1 = c[1];
    a.c2 = c[2];
    a.c3 = c[3];
    prefill_kernel<D><<<dim3(nblk, p.n_q_heads, p.batch), 128, 0, st>>>(a);
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

void launch_checked(const TurboPrefillParams& p, TurboPrefillLaunch how, cudaStream_t stream) {
    if (!p.q || !p.k || !p.v || !p.out || !p.workspace) throw TurboError("turbo_prefill: a pointer is null");
    if (p.head_dim != 64 && p.head_dim != 128) throw TurboError("turbo_prefill: head_dim must be 64 or 128");
    if (p.len < kBlk || p.len % kBlk != 0) throw TurboError("turbo_prefill: len must be a positive multiple of 64");
    if (p.n_kv_heads < 1 || p.n_q_heads % p.n_kv_heads != 0) throw TurboError("turbo_prefill: n_q_heads must be a multiple of n_kv_heads");
    if (p.batch < 1) throw TurboError("turbo_prefill: batch must be >= 1");
    if (p.poly_degree != 2 && p.poly_degree != 3) throw TurboError("turbo_prefill: poly_degree must be 2 or 3");
    if (!(p.threshold <= -1.0f && p.threshold >= -60.0f)) throw TurboError("turbo_prefill: threshold must be in [-60, -1]");
    const bool hopper = runs_hopper(p);
    if (p.kernel == PrefillKernel::Hopper && !hopper) throw TurboError("turbo_prefill: the Hopper kernel needs an sm_90 GPU (H100/H200)");
    if (p.exp == PrefillExp::Sfu && !hopper) throw TurboError("turbo_prefill: exp Sfu runs on the Hopper kernel only (sm_90)");
    if (p.qk == PrefillQk::Fp8 && !hopper) throw TurboError("turbo_prefill: qk Fp8 runs on the Hopper kernel only (sm_90)");
    if (p.head_dim == 128) launch<128>(p, hopper, how, stream);
    else launch<64>(p, hopper, how, stream);
}

}  // namespace

size_t turbo_prefill_workspace_bytes(const TurboPrefillParams& p) { return layout_of(p).total; }

void turbo_prefill_cuda(const TurboPrefillParams& p, cudaStream_t stream) {
    TurboPrefillLaunch how;
    how.quantize_q_in_attention = p.head_dim == 128;  // where it measured faster (TurboPrefillLaunch)
    launch_checked(p, how, stream);
}
void turbo_prefill_cuda(const TurboPrefillParams& p, cudaStream_t stream, TurboPrefillLaunch how) { launch_checked(p, how, stream); }

}  // namespace tandem
