// turbo_cache_prefill_cuda (turbo_cache_prefill.cuh): two launches a pass.
//
// 1. Expansion, grid (tiles, KV heads): each CTA writes one 64-token tile of one KV head into
//    the FP16 scratch as real values (scale x q8, q8 = code x sc + zp for a record: the CPU
//    twin's values rounded to FP16), keys token-major (T, D) then values channel-major (D, T).
//    Tiles 0 .. n_rec - 1 are the records of the complete blocks, then one a block of the pass
//    from its INT8 copy. Every tile is expanded once a pass instead of once by every CTA that
//    reads it (16 CTAs a KV head in a pass of 512 tokens with 4 query heads a KV head).
// 2. Attention, grid (query tiles, KV heads). A CTA takes CT consecutive positions of one
//    64-token block (CT divides 64) and the G query heads of its KV head: each warp holds TPW
//    tokens x GP head rows (GP = G rounded up to a power of two, at least 2; TPW = 16 / GP) as
//    the M = 16 rows of mma.sync. The CTA streams its key tiles through shared memory with
//    cp.async in two stages (the next tile's copy in flight while the warps compute on this
//    one); each warp computes S = Q K^T, the online softmax (SAS against the running maximum;
//    exp2 rescales the sums when it moves) and O += P V (P rounded to FP16, as the decode
//    kernel's tensor-core P.V). Tiles: the records of the blocks before the CTA's block, the
//    block's INT8 copy (causal; not for its last token), then, where the CTA holds the block's
//    last token, the block's own record for that token alone.
#include "cuda_common.cuh"
#include "decode_common.cuh"
#include "mma_fragments.cuh"
#include "turbo_cache_prefill.cuh"

namespace tandem {
namespace {

template <int D, int GP>
struct Cfg {
    static constexpr int TPW = 16 / GP;                       // tokens a warp
    static constexpr int WARPS = 8;
    static constexpr int CT = WARPS * TPW;                     // tokens a CTA: 64, 32 or 16
    static_assert(GP >= 2 && kTile % CT == 0, "a CTA's positions lie in one block");
    static constexpr int KS = D + 8;                           // row strides (halves) of the
    static constexpr int VS = kTile + 8;                       // tiles: no bank conflicts
    static constexpr int STAGE = kTile * KS + D * VS;          // halves of one stage (K, V)
    static constexpr size_t SMEM = 2 * STAGE * sizeof(__half);
};

// Asynchronous 16-byte copies global -> shared (cp.async, L2 only) and their groups.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Eight FP16 values as one 16-byte word (a shared-memory store).
__device__ __forceinline__ uint4 pack8(const float (&f)[8]) {
    return make_uint4(pack_h2(f[0], f[1]), pack_h2(f[2], f[3]), pack_h2(f[4], f[5]), pack_h2(f[6], f[7]));
}

// A record's keys (token-major, (T, D)) and values (channel-major, (D, T)) as FP16 real values,
// by NT threads. The code words load in rounds of up to 4 a thread before any is used
// (compile-time trip counts), the values' with the keys' when that is all of them, so that
// their round trips overlap; each 8 codes become one 16-byte store.
template <int D, int BITS, int NT>
__device__ __forceinline__ void expand_record(const uint8_t* rec, const TurboCacheLayout& L, __half* Ks, __half* Vs) {
    constexpr int T = kTile, PER = 32 / BITS, WORDS = T * D / PER, IT = WORDS / NT, R = IT < 4 ? IT : 4;
    constexpr int KS = D, VS = T;
    static_assert(WORDS % NT == 0 && IT % R == 0, "whole rounds of words");
    constexpr uint32_t kMask = (1u << BITS) - 1;
    const float kscale = ((const float*)rec)[0], vscale = ((const float*)rec)[1];
    const uint8_t* ksc = rec + 8;
    const int8_t* kzp = (const int8_t*)(rec + 8 + D);
    const int ng = D / L.v_group;
    const uint8_t* vsc = rec + 8 + 2 * D;
    const int8_t* vzp = (const int8_t*)(rec + 8 + 2 * D + T * ng);
    const uint32_t* kc = (const uint32_t*)(rec + L.meta_bytes);
    const uint32_t* vc = kc + WORDS;
    uint32_t vx[R];
#pragma unroll
    for (int i0 = 0; i0 < IT; i0 += R) {
        uint32_t kx[R];
#pragma unroll
        for (int i = 0; i < R; ++i) kx[i] = kc[threadIdx.x + (i0 + i) * NT];
        if constexpr (IT == R)
#pragma unroll
            for (int i = 0; i < R; ++i) vx[i] = vc[threadIdx.x + i * NT];
#pragma unroll
        for (int i = 0; i < R; ++i) {
            const int w = threadIdx.x + (i0 + i) * NT, t = w * PER / D, c0 = w * PER % D;
#pragma unroll
            for (int h8 = 0; h8 < PER / 8; ++h8) {
                float f[8];
#pragma unroll
                for (int j = 0; j < 8; ++j) {
                    const int c = c0 + 8 * h8 + j;
                    f[j] = kscale * (float)((int)((kx[i] >> (BITS * (8 * h8 + j))) & kMask) * ksc[c] + kzp[c]);
                }
                *(uint4*)(Ks + t * KS + c0 + 8 * h8) = pack8(f);
            }
        }
    }
#pragma unroll
    for (int i0 = 0; i0 < IT; i0 += R) {
        if constexpr (IT != R)
#pragma unroll
            for (int i = 0; i < R; ++i) vx[i] = vc[threadIdx.x + (i0 + i) * NT];
#pragma unroll
        for (int i = 0; i < R; ++i) {
            const int w = threadIdx.x + (i0 + i) * NT, c = w * PER / T, t0 = w * PER % T, g = c / L.v_group;
#pragma unroll
            for (int h8 = 0; h8 < PER / 8; ++h8) {
                float f[8];
#pragma unroll
                for (int j = 0; j < 8; ++j) {
                    const int t = t0 + 8 * h8 + j;
                    f[j] = vscale * (float)((int)((vx[i] >> (BITS * (8 * h8 + j))) & kMask) * vsc[t * ng + g] + vzp[t * ng + g]);
                }
                *(uint4*)(Vs + c * VS + t0 + 8 * h8) = pack8(f);
            }
        }
    }
}

// One KV head of an INT8 block copy (keys (T, D) with a scale per token, values (D, T)) as FP16
// real values in the same layouts; 8 bytes a thread and round, in rounds as in expand_record.
template <int D, int NT>
__device__ __forceinline__ void expand_int8(const int8_t* k8, const float* ks, const int8_t* v8, const float* vs, __half* Ks,
                                            __half* Vs) {
    constexpr int T = kTile, WORDS = T * D / 8, IT = WORDS / NT, R = IT < 4 ? IT : 4, KS = D, VS = T;
    static_assert(WORDS % NT == 0 && IT % R == 0, "whole rounds of words");
    uint2 vx[R];
#pragma unroll
    for (int i0 = 0; i0 < IT; i0 += R) {
        uint2 kx[R];
#pragma unroll
        for (int i = 0; i < R; ++i) kx[i] = ((const uint2*)k8)[threadIdx.x + (i0 + i) * NT];
        if constexpr (IT == R)
#pragma unroll
            for (int i = 0; i < R; ++i) vx[i] = ((const uint2*)v8)[threadIdx.x + i * NT];
#pragma unroll
        for (int i = 0; i < R; ++i) {
            const int w = threadIdx.x + (i0 + i) * NT, t = 8 * w / D, c0 = 8 * w % D;
            const float s = ks[t];
            float f[8];
#pragma unroll
            for (int j = 0; j < 8; ++j) f[j] = s * (float)(int8_t)((j < 4 ? kx[i].x : kx[i].y) >> (8 * (j % 4)));
            *(uint4*)(Ks + t * KS + c0) = pack8(f);
        }
    }
#pragma unroll
    for (int i0 = 0; i0 < IT; i0 += R) {
        if constexpr (IT != R)
#pragma unroll
            for (int i = 0; i < R; ++i) vx[i] = ((const uint2*)v8)[threadIdx.x + (i0 + i) * NT];
#pragma unroll
        for (int i = 0; i < R; ++i) {
            const int w = threadIdx.x + (i0 + i) * NT, c = 8 * w / T, t0 = 8 * w % T;
            float f[8];
#pragma unroll
            for (int j = 0; j < 8; ++j) f[j] = vs[t0 + j] * (float)(int8_t)((j < 4 ? vx[i].x : vx[i].y) >> (8 * (j % 4)));
            *(uint4*)(Vs + c * VS + t0) = pack8(f);
        }
    }
}

// Where tile j of KV head h sits in the scratch: keys (T, D), then values (D, T).
template <int D>
__device__ __forceinline__ size_t tile_offset(int64_t j, int h, int H) {
    return ((size_t)j * H + h) * 2 * kTile * D;
}

constexpr int kExpandThreads = 256;

template <int D>
__global__ void __launch_bounds__(kExpandThreads) turbo_cache_expand_kernel(const TurboCachePrefillParams p, int n_rec) {
    const TurboCacheLayout& L = p.layout;
    const int j = blockIdx.x, h = blockIdx.y, H = L.n_kv_heads, T = kTile;
    __half* Kt = p.tiles + tile_offset<D>(j, h, H);
    __half* Vt = Kt + T * D;
    if (j < n_rec) {
        const uint8_t* rec = p.blocks + L.head_off[h] + (size_t)j * L.rec_bytes[h];
        if (L.bits[h] == 4) expand_record<D, 4, kExpandThreads>(rec, L, Kt, Vt);
        else expand_record<D, 2, kExpandThreads>(rec, L, Kt, Vt);
    } else {
        const size_t slot = (size_t)(j - n_rec), kv = (slot * H + h) * T * D, sc = (slot * H + h) * T;
        expand_int8<D, kExpandThreads>(p.block_int8.k + kv, p.block_int8.ks + sc, p.block_int8.v + kv, p.block_int8.vs + sc,
                                       Kt, Vt);
    }
}

template <int D, int GP>
__global__ void __launch_bounds__(Cfg<D, GP>::WARPS * 32) turbo_cache_prefill_kernel(const TurboCachePrefillParams p,
                                                                                                float c1f, float c2f, float c3f) {
    using C = Cfg<D, GP>;
    constexpr int T = kTile, NT = C::WARPS * 32;
    extern __shared__ __align__(16) __half smem[];  // two stages of (K (T, KS), V (D, VS))
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane >> 2, tig = lane & 3;
    const int h = blockIdx.y, H = p.layout.n_kv_heads, G = p.n_q_heads / H;
    const int64_t base = p.pos0 - p.pos0 % C::CT + (int64_t)blockIdx.x * C::CT;  // the CTA's first position
    const int64_t blk = base / T;

    // this lane's rows gid and gid + 8: token warp * TPW + r / GP, query head h * G + r % GP
    int64_t pos[2];
    bool valid[2];
    const float* qrow[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
        const int r = gid + 8 * e, hh = r % GP;
        pos[e] = base + warp * C::TPW + r / GP;
        valid[e] = hh < G && pos[e] >= p.pos0 && pos[e] < p.pos0 + p.n;
        qrow[e] = valid[e] ? p.q + ((pos[e] - p.pos0) * p.n_q_heads + h * G + hh) * D : nullptr;
    }
    // Q x log2(e) / sqrt(D) as the A fragments of the D / 16 k-steps
    const float qscale = kLog2eF * rsqrtf((float)D);
    uint32_t qa[D / 16][4];
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks)
#pragma unroll
        for (int x = 0; x < 4; ++x) {
            const int e = x & 1, c = ks * 16 + 2 * tig + 8 * (x >> 1);  // a0 a1 a2 a3: rows 0 1 0 1, cols +0 +0 +8 +8
            float2 v = make_float2(0.0f, 0.0f);
            if (valid[e]) v = *(const float2*)(qrow[e] + c);
            qa[ks][x] = pack_h2(v.x * qscale, v.y * qscale);
        }

    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    float o[D / 8][4];
#pragma unroll
    for (int nb = 0; nb < D / 8; ++nb) o[nb][0] = o[nb][1] = o[nb][2] = o[nb][3] = 0.0f;
    const __half2 c1 = __float2half2_rn(c1f), c2 = __float2half2_rn(c2f), c3 = __float2half2_rn(c3f);  // exact halves

    const int64_t n_rec = (p.pos0 + p.n) / T, slot_tile = n_rec + (blk - p.pos0 / T);
    // the CTA holds the block's last position, and it is a query of this pass
    const bool has_last = base % T + C::CT == T && base + C::CT - 1 < p.pos0 + p.n;
    const int n_tiles = (int)blk + 1 + (has_last ? 1 : 0);
    // tile it: a record before the block (it < blk), the block's INT8 copy, the block's record
    auto load_tile = [&](int it) {
        const __half* src = p.tiles + tile_offset<D>(it < blk ? it : it == blk ? slot_tile : blk, h, H);
        __half* Ks = smem + (it & 1) * C::STAGE;
        __half* Vs = Ks + T * C::KS;
        static_assert(T * D / 8 % NT == 0, "whole rounds of 16-byte copies");
#pragma unroll
        for (int r = 0; r < T * D / 8 / NT; ++r) {
            const int i = threadIdx.x + r * NT;
            cp_async16(Ks + i / (D / 8) * C::KS + i % (D / 8) * 8, src + 8 * i);
            cp_async16(Vs + i / (T / 8) * C::VS + i % (T / 8) * 8, src + T * D + 8 * i);
        }
    };
    load_tile(0);
    cp_async_commit();
    for (int it = 0; it < n_tiles; ++it) {
        const int kind = it < blk ? 0 : it == blk ? 1 : 2;  // 0 record before, 1 INT8 copy, 2 own record
        if (it + 1 < n_tiles) load_tile(it + 1);  // into the stage every warp left at the end of it - 1
        cp_async_commit();
        cp_async_wait<1>();  // this thread's copies of tile it have landed
        __syncthreads();     // and every thread's
        const __half* Ks = smem + (it & 1) * C::STAGE;
        const __half* Vs = Ks + T * C::KS;

        // S = Q K^T: s[nb] holds keys nb * 8 + 2 tig + {0, 1} of rows gid (0, 1) and gid + 8 (2, 3)
        float s[8][4];
#pragma unroll
        for (int nb = 0; nb < 8; ++nb) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks)
#pragma unroll
            for (int nb = 0; nb < 8; ++nb) {
                const __half* kr = Ks + (nb * 8 + gid) * C::KS + ks * 16 + 2 * tig;
                mma16816(s[nb], qa[ks][0], qa[ks][1], qa[ks][2], qa[ks][3], *(const uint32_t*)kr, *(const uint32_t*)(kr + 8));
            }
        // which keys each row sees in this tile
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int in_blk = (int)(pos[e] % T);
            const bool last_tok = in_blk == T - 1;
#pragma unroll
            for (int nb = 0; nb < 8; ++nb)
#pragma unroll
                for (int x = 0; x < 2; ++x) {
                    const int key = nb * 8 + 2 * tig + x;
                    const bool seen = valid[e] && (kind == 0 || (kind == 1 && !last_tok && key <= in_blk) || (kind == 2 && last_tok));
                    if (!seen) s[nb][2 * e + x] = -INFINITY;
                }
        }
        // online softmax of rows gid and gid + 8 (each over its quad), SAS probabilities
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            float mx = -INFINITY;
#pragma unroll
            for (int nb = 0; nb < 8; ++nb) mx = fmaxf(mx, fmaxf(s[nb][2 * e], s[nb][2 * e + 1]));
            mx = quad_max(mx);
            const float m_new = fmaxf(m[e], mx);
            const float alpha = m[e] == -INFINITY ? 0.0f : exp2f(m[e] - m_new);
            float ls = 0.0f;
#pragma unroll
            for (int nb = 0; nb < 8; ++nb) {
                // m_new = -inf (no key seen yet): NaN arguments, which SAS maps to 0
                const float2 pe = sas_exp2_pair(s[nb][2 * e] - m_new, s[nb][2 * e + 1] - m_new, p.threshold, p.poly_degree,
                                                c1, c2, c3);
                s[nb][2 * e] = pe.x, s[nb][2 * e + 1] = pe.y;
                ls += pe.x + pe.y;
            }
            l[e] = l[e] * alpha + ls;
            m[e] = m_new;
#pragma unroll
            for (int nb = 0; nb < D / 8; ++nb) o[nb][2 * e] *= alpha, o[nb][2 * e + 1] *= alpha;
        }
        // O += P V: P as the A fragments of the 4 key steps (FlashAttention-2's register reuse)
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            const uint32_t a0 = pack_h2(s[2 * kk][0], s[2 * kk][1]), a1 = pack_h2(s[2 * kk][2], s[2 * kk][3]);
            const uint32_t a2 = pack_h2(s[2 * kk + 1][0], s[2 * kk + 1][1]), a3 = pack_h2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int nb = 0; nb < D / 8; ++nb) {
                const __half* vr = Vs + (nb * 8 + gid) * C::VS + kk * 16 + 2 * tig;
                mma16816(o[nb], a0, a1, a2, a3, *(const uint32_t*)vr, *(const uint32_t*)(vr + 8));
            }
        }
        __syncthreads();  // every warp is done with this stage before tile it + 2 is copied into it
    }

    // out = O / (the quad's sum of l)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
        float lt = l[e];
        lt += __shfl_xor_sync(0xffffffffu, lt, 1);
        lt += __shfl_xor_sync(0xffffffffu, lt, 2);
        if (!valid[e]) continue;
        const int r = gid + 8 * e;
        float* orow = p.out + ((pos[e] - p.pos0) * p.n_q_heads + h * G + r % GP) * D;
        const float inv = 1.0f / lt;
#pragma unroll
        for (int nb = 0; nb < D / 8; ++nb)
            *(float2*)(orow + nb * 8 + 2 * tig) = make_float2(o[nb][2 * e] * inv, o[nb][2 * e + 1] * inv);
    }
}

template <int D, int GP>
void launch(const TurboCachePrefillParams& p, const float (&c)[4], cudaStream_t stream) {
    using C = Cfg<D, GP>;
    const int64_t first = p.pos0 - p.pos0 % C::CT;
    const unsigned tiles = (unsigned)((p.pos0 + p.n - first + C::CT - 1) / C::CT);
    TANDEM_CHECK_CUDA(cudaFuncSetAttribute(turbo_cache_prefill_kernel<D, GP>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           (int)C::SMEM));
    turbo_cache_prefill_kernel<D, GP>
        <<<dim3(tiles, (unsigned)p.layout.n_kv_heads), C::WARPS * 32, C::SMEM, stream>>>(p, c[1], c[2], c[3]);
}

template <int D>
void launch_d(const TurboCachePrefillParams& p, int gp, const float (&c)[4], cudaStream_t stream) {
    const int64_t n_rec = (p.pos0 + p.n) / kTile;
    const int slots = turbo_cache_prefill_slots(p.pos0, p.n, kTile);
    turbo_cache_expand_kernel<D><<<dim3((unsigned)(n_rec + slots), (unsigned)p.layout.n_kv_heads), kExpandThreads, 0, stream>>>(
        p, (int)n_rec);
    TANDEM_CHECK_CUDA(cudaGetLastError());
    if (gp == 2) launch<D, 2>(p, c, stream);
    else if (gp == 4) launch<D, 4>(p, c, stream);
    else launch<D, 8>(p, c, stream);
}

}  // namespace

void turbo_cache_prefill_cuda(const TurboCachePrefillParams& p, cudaStream_t stream) {
    const TurboCacheLayout& L = p.layout;
    if (L.head_dim != 64 && L.head_dim != 128) throw CudaError("turbo_cache_prefill: head_dim must be 64 or 128");
    if (L.block_tokens != kTile) throw CudaError("turbo_cache_prefill: block_tokens must be 64");
    if (L.n_kv_heads < 1 || p.n_q_heads % L.n_kv_heads != 0 || p.n_q_heads / L.n_kv_heads > 8)
        throw CudaError("turbo_cache_prefill: n_q_heads must be 1 to 8 times n_kv_heads");
    if (L.v_group < 1 || L.head_dim % L.v_group != 0) throw CudaError("turbo_cache_prefill: v_group must divide head_dim");
    for (int h = 0; h < L.n_kv_heads; ++h)
        if (L.bits[h] != 4 && L.bits[h] != 2) throw CudaError("turbo_cache_prefill: bits must be 4 or 2");
    if (p.n < 1 || p.pos0 < 0) throw CudaError("turbo_cache_prefill: n must be >= 1 and pos0 >= 0");
    if (!p.q || !p.out || !p.tiles || !p.blocks || !p.block_int8.k || !p.block_int8.v || !p.block_int8.ks || !p.block_int8.vs)
        throw CudaError("turbo_cache_prefill: a pointer is null");
    float c[4];
    turbo_sas_coeffs(p.poly_degree, c);
    // rows per token: G rounded up to a power of two, at least 2 (one head a token, 16 tokens a
    // warp, spilled registers at D = 128)
    const int g = p.n_q_heads / L.n_kv_heads, gp = g <= 2 ? 2 : g <= 4 ? 4 : 8;
    if (L.head_dim == 128) launch_d<128>(p, gp, c, stream);
    else launch_d<64>(p, gp, c, stream);
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

}  // namespace tandem
