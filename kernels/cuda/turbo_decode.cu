// TurboAttention decode: split-KV flash-decoding on the INT4/INT2 cache with the INT8 recent
// buffer, SAS softmax and skipping of tiles under the threshold. Tensor cores do both matmuls.
//
// Every warp is an independent split: it walks a contiguous range of 64-token records of one
// (sequence, KV head) for all G <= 8 query heads sharing it (each K/V byte is read once for
// the whole GQA group) and writes its (m, l, o) to the workspace, merged by
// decode_combine_kernel. A CTA holds kWarps such warps, which need not share a (sequence,
// head): the grid is flat over (KV head, sequence, split), so any split count fills the GPU.
// No block barrier at all.
//
// Query heads sit on the M rows of mma.m16n8k16 (rows G..15 compute on zeros): S^T = q' .
// codes^T, and the score accumulator is the A fragment of P.V (FlashAttention-2's register
// trick): probabilities stay in registers and a head's softmax needs its 4 lanes. The
// compressed records go through lean::tile (turbo_decode_lean.cuh: the codes, scales and
// zero points in few instructions); the INT8 recent tile through recent_tile() below.
// Design and measurements: docs/turboattention-impl.md.
#include "turbo_decode.cuh"

#include "decode_common.cuh"
#include "mma_fragments.cuh"
#include "turbo_decode_lean.cuh"

#include <algorithm>

namespace tandem {

namespace {

constexpr int kWarps = 4;  // warps (independent splits) per CTA

// Signed bytes j and j + 2 of a word as an exact FP16 pair (1152 + byte built by PRMT,
// minus 1152).
__device__ __forceinline__ uint32_t int8_pair(uint32_t w, int j) {
    const uint32_t x = __byte_perm(w ^ 0x80808080u, 0x64646464u, j == 0 ? 0x4240 : 0x4341);
    return h2u(__hsub2(*reinterpret_cast<const __half2*>(&x), __float2half2_rn(1152.0f)));
}

// Prefetches a byte range into L2 (one 128-byte line per lane and step).
__device__ __forceinline__ void prefetch_l2(const uint8_t* p, int bytes) {
    for (int off = (threadIdx.x % 32) * 128; off < bytes; off += 32 * 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(p + off));
}

// ---- the INT8 recent tile (at most one per sequence, n_valid <= 64 tokens) ----------------
// Keys token-major with one scale per token, values channel-major with one scale per token.
// Column n = 2t + e of score n-block nb (8 tokens) is token recent_tok(nb, t, e), chosen so
// that a lane's two tokens (t = tig) are the signed-byte pair int8_pair() takes from one word
// of a channel-major value row (word 2 nb + tig / 2, pair tig % 2).
__device__ __forceinline__ int recent_tok(int nb, int t, int e) { return 8 * nb + 4 * (t / 2) + (t % 2) + 2 * e; }

// w: the warp's lean::Smem (q and the recent scales). acc: as lean::tile.
template <int D, class W>
__device__ __forceinline__ void recent_tile(const int8_t* rk, const int8_t* rv, const float* rks, const float* rvs,
                                            int n_valid, W& w, HeadState& st, const DecodeArgs& a, int G,
                                            float (&acc)[D / 8][2]) {
    constexpr int NCH = D / 16;  // words of a key row per lane
    const int lane = threadIdx.x % 32, gid = lane >> 2, tig = lane & 3;
    const uint8_t* kc = (const uint8_t*)rk;
    const uint8_t* vc = (const uint8_t*)rv;
    w.tks[lane] = lane < n_valid ? rks[lane] : 0.0f;  // zero past n_valid: padded tokens add nothing
    w.tks[lane + 32] = lane + 32 < n_valid ? rks[lane + 32] : 0.0f;
    w.tvs[lane] = lane < n_valid ? rvs[lane] : 0.0f;
    w.tvs[lane + 32] = lane + 32 < n_valid ? rvs[lane + 32] : 0.0f;
    // A fragments: q of head gid as FP16, channels (tig NCH + c) 4 + {j, j + 2}
    uint32_t qa[NCH][2];
#pragma unroll
    for (int c = 0; c < NCH; ++c) {
        const float4 x = *(const float4*)&w.q[gid][(tig * NCH + c) * 4];
        qa[c][0] = h2u(__floats2half2_rn(x.x, x.z));
        qa[c][1] = h2u(__floats2half2_rn(x.y, x.w));
    }
    __syncwarp();  // tks, tvs visible
    // scores in two halves of 4 n-blocks (half the key words live at a time: no spills);
    // key words of n-block nb: this lane's token row recent_tok(nb, gid / 2, gid % 2)
    float p[8][2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        uint32_t kw[4][NCH];
#pragma unroll
        for (int i = 0; i < 4; ++i)
            load_words<NCH>(kc + recent_tok(4 * half + i, gid >> 1, gid & 1) * D + tig * NCH * 4, kw[i]);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int nb = 4 * half + i;
            float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int ch = 0; ch < NCH; ++ch)
                mma16816(c, qa[ch][0], 0u, qa[ch][1], 0u, int8_pair(kw[i][ch], 0), int8_pair(kw[i][ch], 1));
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int t = recent_tok(nb, tig, e);
                p[nb][e] = t < n_valid ? c[e] * w.tks[t] : -INFINITY;
            }
        }
    }
    // online softmax of head gid over its 4 lanes
    float mx = -INFINITY;
#pragma unroll
    for (int nb = 0; nb < 8; ++nb) mx = fmaxf(mx, fmaxf(p[nb][0], p[nb][1]));
    mx = quad_max(mx);
    const float m_new = fmaxf(st.m, mx);
    const __half c1 = __float2half_rn(a.c1), c2 = __float2half_rn(a.c2), c3 = __float2half_rn(a.c3);
    float ls = 0.0f;
#pragma unroll
    for (int nb = 0; nb < 8; ++nb)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            p[nb][e] = sas_exp2(p[nb][e] - m_new, a.threshold, a.degree, c1, c2, c3);
            ls += p[nb][e];
        }
    const float alpha = st.m == -INFINITY ? 0.0f : exp2f(st.m - m_new);
    st.l = st.l * alpha + ls;
    st.m = m_new;
    // P.V: A = p x the token's value scale (FP16), B = value bytes of channel nb2*8 + gid
    uint32_t pa[4][2];
#pragma unroll
    for (int nb = 0; nb < 8; ++nb) {
        const int t0 = recent_tok(nb, tig, 0), t1 = recent_tok(nb, tig, 1);
        pa[nb / 2][nb % 2] = h2u(__floats2half2_rn(p[nb][0] * w.tvs[t0], p[nb][1] * w.tvs[t1]));
    }
#pragma unroll
    for (int nb2 = 0; nb2 < D / 8; ++nb2) {
        const uint8_t* row = vc + (nb2 * 8 + gid) * kTile;
        float c[4] = {acc[nb2][0] * alpha, acc[nb2][1] * alpha, 0.0f, 0.0f};
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            const uint32_t w0 = *(const uint32_t*)(row + (4 * kk + tig / 2) * 4);
            const uint32_t w1 = *(const uint32_t*)(row + (4 * kk + 2 + tig / 2) * 4);
            mma16816(c, pa[kk][0], 0u, pa[kk][1], 0u, int8_pair(w0, tig % 2), int8_pair(w1, tig % 2));
        }
        acc[nb2][0] = c[0];
        acc[nb2][1] = c[1];
    }
}

// MERGE (n_splits a multiple of kWarps, so a CTA's warps are consecutive splits of one
// pair): the CTA merges its warps' partials, left in their scratch (o in q, m in tks, l in
// tvs), into partial `part` of n_splits / kWarps, and the combine reads a quarter as many
// (batch 1: ~130 splits a head; docs/turboattention-impl.md, "Decode kernel").
template <int D>
__device__ __forceinline__ void merge_warps(const lean::Smem<D>* w, const DecodeArgs& a, int b, int h, int G, int part) {
    const int n_parts = a.n_splits / kWarps;
    for (int e = threadIdx.x; e < G * D; e += kWarps * 32) {
        const int g = e / D, d = e % D;
        float M = -INFINITY;
#pragma unroll
        for (int x = 0; x < kWarps; ++x) M = fmaxf(M, w[x].tks[g]);
        float Ls = 0.0f, O = 0.0f;
#pragma unroll
        for (int x = 0; x < kWarps; ++x) {
            const float m = w[x].tks[g];
            const float c = m == -INFINITY ? 0.0f : exp2f(m - M);  // an empty split adds nothing
            Ls += c * w[x].tvs[g];
            O += c * w[x].q[g][d];
        }
        float* o = a.ws + (((size_t)b * a.n_q_heads + h * G + g) * n_parts + part) * (D + 2);
        o[d] = O;
        if (d == 0) o[D] = M, o[D + 1] = Ls;
    }
}

// Grid: ceil(n_kv_heads * batch * n_splits / kWarps) CTAs of kWarps warps; warp wi is split
// wi % n_splits of pair wi / n_splits, pairs dealt head-major in a.head_order (4-bit heads
// first, so an SM's warps mostly run the same tile code). Dynamic shared memory:
// lean::Smem<D>[kWarps]. NG = D / v_group value groups. MINB: CTAs per SM the register
// budget is sized for (3: 168 registers, 12 warps; 4: 128, 16 warps). MERGE: merge_warps
// (a separate instance: as a branch it cost the other kernels 5-10% at batch 8-32 on the H100).
template <int D, int NG, int MINB, bool MERGE>
__global__ void __launch_bounds__(kWarps * 32, MINB) turbo_decode_kernel(const DecodeArgs a) {
    extern __shared__ __align__(16) uint8_t smem[];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane >> 2, tig = lane & 3;
    const int wi = blockIdx.x * kWarps + warp;
    const int pair = wi / a.n_splits, split = wi % a.n_splits;
    if (pair >= a.batch * a.n_kv_heads) return;
    const int b = pair % a.batch, h = a.head_order[pair / a.batch];
    const int G = a.n_q_heads / a.n_kv_heads;
    // the query's loads go out first: they need only h, not the sequence length, so their
    // round trip overlaps the length's and the key prefetch below
    constexpr int QV = 8 * D / 4 / 32;  // 16-byte query loads per lane (rows >= G are zero)
    const float4* qg = (const float4*)(a.q + ((size_t)b * a.n_q_heads + h * G) * D);
    float4 qv[QV];
#pragma unroll
    for (int k = 0; k < QV; ++k) {
        const int i = lane + 32 * k;
        qv[k] = i / (D / 4) < G ? qg[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
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
    // a short range (batch 1: 1-2 records a warp): its keys go to L2 at once, so no record
    // waits for a DRAM round trip of its own (values only once a record's scores say they are
    // needed); a long range would only evict other warps' lines
    if (jc1 - j0 <= 4)
        for (int j = j0; j < jc1; ++j) prefetch_l2(recs + (size_t)j * rb, L.meta_bytes + kTile * D * bits / 8);
    const float qscale = kLog2eF * rsqrtf((float)D);
#pragma unroll
    for (int k = 0; k < QV; ++k) {
        const int i = lane + 32 * k;
        float4 v = qv[k];
        v.x *= qscale, v.y *= qscale, v.z *= qscale, v.w *= qscale;
        *(float4*)&w.q[i / (D / 4)][(i % (D / 4)) * 4] = v;
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
        recent_tile<D>(a.rk + rrow * D, a.rv + rrow * D, a.rks + rrow, a.rvs + rrow, n_rec, w, st.hs, a, G, acc);
    float l_out = st.hs.l + __shfl_xor_sync(0xffffffffu, st.hs.l, 1);
    l_out += __shfl_xor_sync(0xffffffffu, l_out, 2);
    if constexpr (MERGE) {  // the warp's partial into its scratch (recent_tile is done with it)
        __syncwarp();
        if (gid < G) {
#pragma unroll
            for (int nb = 0; nb < D / 8; ++nb) *(float2*)&w.q[gid][nb * 8 + tig * 2] = make_float2(acc[nb][0], acc[nb][1]);
            if (tig == 0) w.tks[gid] = st.hs.m, w.tvs[gid] = l_out;
        }
        __syncthreads();
        merge_warps<D>((const lean::Smem<D>*)smem, a, b, h, G, split / kWarps);
    } else if (gid < G) {
        float* o = a.ws + (((size_t)b * a.n_q_heads + h * G + gid) * a.n_splits + split) * (D + 2);
#pragma unroll
        for (int nb = 0; nb < D / 8; ++nb) *(float2*)&o[nb * 8 + tig * 2] = make_float2(acc[nb][0], acc[nb][1]);
        if (tig == 0) {
            o[D] = st.hs.m;
            o[D + 1] = l_out;
        }
    }
}

// Register budget, the best of 8, 12 and 16 warps per SM on the H100
// (docs/turboattention-impl.md, "Decode kernel"): 12 at D = 128 (16 spill 800 bytes), 16 at D = 64.
template <int D, int NG>
DecodeKernel decode_kernel(bool merge) {
    return merge ? turbo_decode_kernel<D, NG, D == 128 ? 3 : 4, true> : turbo_decode_kernel<D, NG, D == 128 ? 3 : 4, false>;
}

struct Plan {
    DecodeKernel fn;
    int splits;
    bool merge;  // merge_warps: the combine gets splits / kWarps partials
    size_t smem;
    int parts() const { return merge ? splits / kWarps : splits; }
};

Plan make_plan(const TurboDecodeParams& p) {
    const TurboCacheLayout& L = p.layout;
    const int D = L.head_dim, ng = D / L.v_group;
    int dev = 0, n_sm = 0;
    TANDEM_CHECK_CUDA(cudaGetDevice(&dev));
    TANDEM_CHECK_CUDA(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev));
    auto kernel = [&](bool merge) {
        if (D == 128) return ng == 1 ? decode_kernel<128, 1>(merge) : ng == 2 ? decode_kernel<128, 2>(merge) : decode_kernel<128, 4>(merge);
        return ng == 1 ? decode_kernel<64, 1>(merge) : decode_kernel<64, 2>(merge);
    };
    Plan pl;
    pl.fn = kernel(false);
    pl.smem = kWarps * (D == 128 ? sizeof(lean::Smem<128>) : sizeof(lean::Smem<64>));
    const int per_sm = resident_ctas(pl.fn, pl.smem, dev, kWarps * 32);  // the merging instance: the same bounds
    // Splits per (sequence, KV head): decode_warp_splits over one wave of resident warps (the
    // records and the recent tile).
    const int pairs = p.batch * L.n_kv_heads, tiles = p.max_len / kTile + 1;
    const int wave = std::max(1, n_sm * std::max(per_sm, 1) * kWarps / pairs);
    pl.splits = p.n_splits > 0 ? p.n_splits : decode_warp_splits(tiles, wave);
    // Many splits (batch 1-2): a CTA merges its warps' splits (merge_warps) where rounding the
    // count up to a multiple of kWarps keeps one wave and puts no SM more CTAs than before
    // (batch 1 x 4k at D = 128 on the H100: 130 -> 136 CTAs doubled 4 SMs' load, cost 7%);
    // with fewer than 16 the combine is short anyway.
    const int s4 = (pl.splits + kWarps - 1) / kWarps * kWarps;
    auto ctas_per_sm = [&](int splits) { return (((long long)pairs * splits + kWarps - 1) / kWarps + n_sm - 1) / n_sm; };
    pl.merge = pl.splits >= 16 && (p.n_splits > 0 ? s4 == pl.splits : s4 <= wave && ctas_per_sm(s4) == ctas_per_sm(pl.splits));
    if (pl.merge) {
        pl.splits = s4;
        pl.fn = kernel(true);
        resident_ctas(pl.fn, pl.smem, dev, kWarps * 32);  // its shared memory limit
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
    if (p.n_splits < 0 || p.n_splits > (1 << 20)) throw TurboError("turbo_decode: n_splits must be in [0, 2^20]");
}

void check(const TurboDecodeParams& p) {
    if (!p.q || !p.out || !p.blocks || !p.recent_k || !p.recent_v || !p.recent_ks ||
        !p.recent_vs || !p.seq_len || !p.workspace)
        throw TurboError("turbo_decode: a pointer is null");
    if ((reinterpret_cast<uintptr_t>(p.blocks) | reinterpret_cast<uintptr_t>(p.recent_k) |
         reinterpret_cast<uintptr_t>(p.recent_v) | reinterpret_cast<uintptr_t>(p.q)) % 16 != 0)
        throw TurboError("turbo_decode: q, blocks, recent_k and recent_v must be 16-byte aligned");
    check_config(p);
}

}  // namespace

size_t turbo_decode_workspace_floats(const TurboDecodeParams& p) {
    check_config(p);
    const Plan pl = make_plan(p);
    return (size_t)p.batch * p.n_q_heads * pl.parts() * (p.layout.head_dim + 2);
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
    int n_order = 0;  // 4-bit heads first: neighbouring warps run the same tile code
    for (int bits : {4, 2})
        for (int h = 0; h < a.n_kv_heads; ++h)
            if (p.layout.bits[h] == bits) a.head_order[n_order++] = (uint8_t)h;
    const long long warps = (long long)p.batch * a.n_kv_heads * pl.splits;
    pl.fn<<<(unsigned)((warps + kWarps - 1) / kWarps), kWarps * 32, pl.smem, stream>>>(a);
    TANDEM_CHECK_CUDA(cudaGetLastError());
    launch_decode_combine(a.ws, p.out, p.batch, p.n_q_heads, pl.parts(), p.layout.head_dim, stream);
}

}  // namespace tandem
