// FP16 attention decode on tensor cores: split-KV flash-decoding over the (batch, Hkv,
// max_len, D) FP16 cache, exact exp2 softmax. The GPU engine's default attention path, for
// decode and for prefill chunks (causal: a chunk's query tokens are the batch, each reading
// the one sequence's cache up to its own position).
//
// The layout of turbo_decode.cu without the compression: every warp is one split, a
// contiguous range of 64-token tiles of one (sequence, KV head) for all G <= 8 query heads
// sharing it (each K/V byte read once per GQA group); the grid is flat over (KV head,
// sequence, split), kWarps independent warps a CTA, no block barrier. Query heads sit on the
// M rows of mma.m16n8k16 (rows G..15 compute on zeros): S = q K^T, and the score accumulator
// is the A fragment of P.V (FlashAttention-2's register trick). Splits merge in
// decode_combine_kernel.
//
// Exactness: the cache holds FP16 values, exact as mma operands, but q and p are float. Each
// is split into two FP16 halves, x = hi + lo with lo = x - hi, and multiplied twice (float
// accumulate), so a product keeps ~22 bits: ~6e-6 relative to float64 (test-turbo-cuda bounds
// it at 1e-4).
//
// Operand layout (lane = 4 gid + tig):
//  - scores: n-block nb of a tile is tokens 8 nb .. 8 nb + 7; lane gid loads token 8 nb + gid,
//    the D / 4 channels [tig D/4, (tig + 1) D/4); k-step s takes channels tig D/4 + 4 s + {0, 1}
//    (a0 / b0) and + {2, 3} (a2 / b1), so q and K meet channel for channel.
//  - P.V: k-step kk is tokens 16 kk .. 16 kk + 15, exactly score n-blocks 2 kk and 2 kk + 1.
//    Output n-block vb holds channel vch(vb, n) in column n: lane gid loads 8 consecutive
//    channels (8 gid .. 8 gid + 7, and 64 + those at D = 128) of its 4 tokens, and one PRMT
//    of two tokens' words gives the B pair of a channel.
#include "fp16_decode.cuh"

#include "decode_common.cuh"
#include "mma_fragments.cuh"

#include <algorithm>

namespace tandem {

namespace {

constexpr int kWarps = 4;  // warps (independent splits) per CTA

// x as hi + lo FP16 pairs: (x0, x1) -> hi, lo.
__device__ __forceinline__ void split_pair(float x0, float x1, uint32_t& hi, uint32_t& lo) {
    const __half2 h = __floats2half2_rn(x0, x1);
    hi = h2u(h);
    lo = h2u(__floats2half2_rn(x0 - __low2float(h), x1 - __high2float(h)));
}

// Output channel of column n of P.V n-block vb.
__device__ __forceinline__ constexpr int vch(int vb, int n) { return (vb / 8) * 64 + 8 * n + vb % 8; }

// Grid: ceil(n_kv_heads * batch * n_splits / kWarps) CTAs of kWarps warps; warp wi is split
// wi % n_splits of pair wi / n_splits = (KV head, sequence). MINB: CTAs per SM the register
// budget is sized for.
template <int D, int MINB>
__global__ void __launch_bounds__(kWarps * 32, MINB) fp16_decode_kernel(const DecodeArgs a) {
    constexpr int KS = D / 16;       // score k-steps
    constexpr int KW = D / 8;        // words of a key row per lane (D / 4 channels)
    constexpr int VN = D / 8;        // P.V n-blocks
    constexpr int VQ = D / 64;       // 16-byte value loads per token per lane
    const int lane = threadIdx.x % 32, gid = lane >> 2, tig = lane & 3;
    const int wi = blockIdx.x * kWarps + threadIdx.x / 32;
    const int pair = wi / a.n_splits, split = wi % a.n_splits;
    if (pair >= a.batch * a.n_kv_heads) return;
    const int b = pair % a.batch, h = pair / a.batch;
    const int G = a.n_q_heads / a.n_kv_heads;
    const int len = a.causal ? a.seq_len[0] - a.batch + 1 + b : a.seq_len[b];
    const int bkv = a.causal ? 0 : b;  // the sequence whose cache it reads
    const int n_tiles = (len + kTile - 1) / kTile;
    const int j0 = (int)((long long)split * n_tiles / a.n_splits);
    const int j1 = (int)((long long)(split + 1) * n_tiles / a.n_splits);

    // q of head gid (zero rows past G) x log2(e)/sqrt(D), as hi/lo A fragments per k-step
    uint32_t qhi[KS][2], qlo[KS][2];
    {
        const float qscale = kLog2eF * rsqrtf((float)D);
        const float* qrow = a.q + (size_t)b * a.q_stride + (size_t)(h * G + gid) * D + tig * (D / 4);
#pragma unroll
        for (int s = 0; s < KS; ++s) {
            float4 x = gid < G ? *(const float4*)&qrow[4 * s] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            split_pair(x.x * qscale, x.y * qscale, qhi[s][0], qlo[s][0]);
            split_pair(x.z * qscale, x.w * qscale, qhi[s][1], qlo[s][1]);
        }
    }
    const __half* kbase = a.k16 + ((size_t)bkv * a.n_kv_heads + h) * a.max_len * D;
    const __half* vbase = a.v16 + ((size_t)bkv * a.n_kv_heads + h) * a.max_len * D;
    float m = -INFINITY, l = 0.0f;  // head gid's running max (log2 units) and this lane's sum
    float acc[VN][2];
#pragma unroll
    for (int vb = 0; vb < VN; ++vb) acc[vb][0] = acc[vb][1] = 0.0f;

    for (int j = j0; j < j1; ++j) {
        const int t0 = j * kTile;
        // ---- scores, in two halves of 4 n-blocks (half the key words live at a time)
        float sc[8][2];
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            uint32_t kw[4][KW];
#pragma unroll
            for (int i = 0; i < 4; ++i) {  // rows past len read the last token (finite; masked below)
                const int t = min(t0 + 8 * (4 * half + i) + gid, len - 1);
                load_words<KW>((const uint8_t*)(kbase + (size_t)t * D + tig * (D / 4)), kw[i]);
            }
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
                for (int s = 0; s < KS; ++s) {
                    mma16816(c, qhi[s][0], 0u, qhi[s][1], 0u, kw[i][2 * s], kw[i][2 * s + 1]);
                    mma16816(c, qlo[s][0], 0u, qlo[s][1], 0u, kw[i][2 * s], kw[i][2 * s + 1]);
                }
                const int nb = 4 * half + i;
#pragma unroll
                for (int e = 0; e < 2; ++e) sc[nb][e] = t0 + 8 * nb + 2 * tig + e < len ? c[e] : -INFINITY;
            }
        }
        // ---- online softmax of head gid over its 4 lanes (exact exp2)
        float mx = -INFINITY;
#pragma unroll
        for (int nb = 0; nb < 8; ++nb) mx = fmaxf(mx, fmaxf(sc[nb][0], sc[nb][1]));
        mx = quad_max(mx);
        const float m_new = fmaxf(m, mx);  // finite: token t0 < len
        const float alpha = exp2f(m - m_new);  // m = -inf: 0
        float ls = 0.0f;
#pragma unroll
        for (int nb = 0; nb < 8; ++nb)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                sc[nb][e] = exp2f(sc[nb][e] - m_new);
                ls += sc[nb][e];
            }
        l = l * alpha + ls;
        m = m_new;
#pragma unroll
        for (int vb = 0; vb < VN; ++vb) acc[vb][0] *= alpha, acc[vb][1] *= alpha;
        // ---- P.V per k-step of 16 tokens: A = p (hi, lo), B = value pairs by PRMT
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            uint32_t phi[2], plo[2];
            split_pair(sc[2 * kk][0], sc[2 * kk][1], phi[0], plo[0]);
            split_pair(sc[2 * kk + 1][0], sc[2 * kk + 1][1], phi[1], plo[1]);
            // tokens 16 kk + 2 tig + {0, 1, 8, 9}: the B rows k = 2 tig, 2 tig + 1, + 8, + 9
            uint4 vw[4][VQ];
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const int t = min(t0 + 16 * kk + 2 * tig + (r & 1) + 8 * (r >> 1), len - 1);
#pragma unroll
                for (int q = 0; q < VQ; ++q) vw[r][q] = *(const uint4*)(vbase + (size_t)t * D + q * 64 + 8 * gid);
            }
#pragma unroll
            for (int vb = 0; vb < VN; ++vb) {
                const int q = vb / 8, w = (vb % 8) / 2;
                const uint32_t sel = vb % 2 == 0 ? 0x5410u : 0x7632u;  // low or high halves
                auto word = [&](int r) {
                    const uint4 x = vw[r][q];
                    return w == 0 ? x.x : w == 1 ? x.y : w == 2 ? x.z : x.w;
                };
                const uint32_t b0 = __byte_perm(word(0), word(1), sel), b1 = __byte_perm(word(2), word(3), sel);
                float c[4] = {acc[vb][0], acc[vb][1], 0.0f, 0.0f};
                mma16816(c, phi[0], 0u, phi[1], 0u, b0, b1);
                mma16816(c, plo[0], 0u, plo[1], 0u, b0, b1);
                acc[vb][0] = c[0];
                acc[vb][1] = c[1];
            }
        }
    }
    float l_out = l + __shfl_xor_sync(0xffffffffu, l, 1);
    l_out += __shfl_xor_sync(0xffffffffu, l_out, 2);
    if (gid < G) {
        float* o = a.ws + (((size_t)b * a.n_q_heads + h * G + gid) * a.n_splits + split) * (D + 2);
#pragma unroll
        for (int vb = 0; vb < VN; ++vb) o[vch(vb, 2 * tig)] = acc[vb][0], o[vch(vb, 2 * tig + 1)] = acc[vb][1];
        if (tig == 0) o[D] = m, o[D + 1] = l_out;
    }
}

// D = 128: 8 warps per SM (248 registers, none spilled; at 12 warps the key words spilled
// ~380 bytes); D = 64: 12 (168).
DecodeKernel pick_kernel(int D) { return D == 128 ? fp16_decode_kernel<128, 2> : fp16_decode_kernel<64, 3>; }

// Splits per (sequence, KV head): decode_warp_splits over one wave of resident warps.
int plan_splits(const Fp16DecodeParams& p) {
    if (p.n_splits > 0) return p.n_splits;
    int dev = 0, n_sm = 0;
    TANDEM_CHECK_CUDA(cudaGetDevice(&dev));
    TANDEM_CHECK_CUDA(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev));
    const int per_sm = resident_ctas(pick_kernel(p.head_dim), 0, dev, kWarps * 32);
    const int pairs = p.batch * p.n_kv_heads, tiles = (p.max_len + kTile - 1) / kTile;
    return decode_warp_splits(tiles, std::max(1, n_sm * std::max(per_sm, 1) * kWarps / pairs));
}

void check_config(const Fp16DecodeParams& p) {
    if (p.head_dim != 64 && p.head_dim != 128) throw TurboError("fp16_decode: head_dim must be 64 or 128");
    if (p.n_kv_heads < 1 || p.n_q_heads % p.n_kv_heads != 0 || p.n_q_heads / p.n_kv_heads > 8)
        throw TurboError("fp16_decode: n_q_heads must be 1..8 times n_kv_heads");
    if (p.batch < 1 || p.max_len < 1) throw TurboError("fp16_decode: batch and max_len must be >= 1");
    if (p.n_splits < 0 || p.n_splits > (1 << 20)) throw TurboError("fp16_decode: n_splits must be in [0, 2^20]");
    if (p.q_stride != 0 && (p.q_stride < (int64_t)p.n_q_heads * p.head_dim || p.q_stride % 4 != 0))
        throw TurboError("fp16_decode: q_stride must be 0 or a multiple of 4 of at least n_q_heads * head_dim");
}

}  // namespace

size_t fp16_decode_workspace_floats(const Fp16DecodeParams& p) {
    check_config(p);
    return (size_t)p.batch * p.n_q_heads * plan_splits(p) * (p.head_dim + 2);
}

void fp16_decode_cuda(const Fp16DecodeParams& p, cudaStream_t stream) {
    if (!p.q || !p.out || !p.k || !p.v || !p.seq_len || !p.workspace)
        throw TurboError("fp16_decode: a pointer is null");
    if ((reinterpret_cast<uintptr_t>(p.q) | reinterpret_cast<uintptr_t>(p.k) | reinterpret_cast<uintptr_t>(p.v)) % 16 != 0)
        throw TurboError("fp16_decode: q, k and v must be 16-byte aligned");
    check_config(p);
    DecodeArgs a;
    a.q = p.q;
    a.ws = p.workspace;
    a.seq_len = p.seq_len;
    a.k16 = (const __half*)p.k;
    a.v16 = (const __half*)p.v;
    a.batch = p.batch;
    a.n_q_heads = p.n_q_heads;
    a.n_kv_heads = p.n_kv_heads;
    a.max_len = p.max_len;
    a.causal = p.causal;
    a.q_stride = p.q_stride ? p.q_stride : (int64_t)p.n_q_heads * p.head_dim;
    a.n_splits = plan_splits(p);
    const long long warps = (long long)p.batch * p.n_kv_heads * a.n_splits;
    pick_kernel(p.head_dim)<<<(unsigned)((warps + kWarps - 1) / kWarps), kWarps * 32, 0, stream>>>(a);
    TANDEM_CHECK_CUDA(cudaGetLastError());
    launch_decode_combine(a.ws, p.out, p.batch, p.n_q_heads, a.n_splits, p.head_dim, stream);
}

}  // namespace tandem
