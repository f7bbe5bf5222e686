// The Turbo KV cache written on the device (see turbo_cache.cuh). Every integer step copies
// its CPU twin in kernels/src/turbo_quant.cpp line for line; the float steps use the same
// IEEE operations with round-to-nearest (__fdiv_rn, __fmul_rn, __float2int_rn = lrintf).
#include "turbo_cache.cuh"

#include <string>

#include "cuda_common.cuh"
#include "llama_ops.cuh"

namespace tandem {

namespace {

constexpr int kStoreThreads = 128;   // >= head_dim
constexpr int kMaxT = 64, kMaxD = 128;

__device__ __forceinline__ float block_amax(float v, float* red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float m = 0.0f;
    for (int w = 0; w < (int)(blockDim.x >> 5); ++w) m = fmaxf(m, red[w]);
    return m;
}

// turbo_quant_int8 of one head row x[0..D), element e owned by thread e; returns the scale.
__device__ float quant_row(float x, bool mine, float* red, int8_t* q) {
    const float amax = block_amax(mine ? fabsf(x) : 0.0f, red);
    if (amax == 0.0f) {
        if (mine) *q = 0;
        return 0.0f;
    }
    const float inv = __fdiv_rn(127.0f, amax);
    if (mine) *q = (int8_t)min(127, max(-127, __float2int_rn(__fmul_rn(x, inv))));
    return __fdiv_rn(amax, 127.0f);
}

// Grid (n tokens, n_head + n_head_kv), kStoreThreads threads: one block per head of a token.
__global__ void __launch_bounds__(kStoreThreads) turbo_rope_store_kernel(const TurboStoreParams p) {
    __shared__ float red[kStoreThreads / 32];
    const int t = blockIdx.x, h = blockIdx.y, pos = *p.pos0 + p.offset + t;
    const int hd = p.head_dim, d = p.n_head * hd, kvd = p.n_head_kv * hd;
    float* row = p.qkv + (int64_t)t * (d + 2 * kvd);
    const bool is_q = h < p.n_head;
    float* x = is_q ? row + h * hd : row + d + (h - p.n_head) * hd;
    rope_head(x, pos, p.inv_freq, p.n_rot, p.neox);
    __syncthreads();
    const int e = threadIdx.x;
    const bool mine = e < hd;
    if (is_q) {
        if (mine) p.q_out[(int64_t)t * d + h * hd + e] = x[e];
        return;
    }
    const int kh = h - p.n_head, T = p.block_tokens, slot = pos % T;
    const float kx = mine ? x[e] : 0.0f;
    const float vx = mine ? row[d + kvd + kh * hd + e] : 0.0f;
    int8_t kq = 0, vq = 0;
    const float ks = quant_row(kx, mine, red, &kq);
    const float vs = quant_row(vx, mine, red, &vq);
    if (mine) {
        p.recent.k[((int64_t)kh * T + slot) * hd + e] = kq;
        p.recent.v[((int64_t)kh * hd + e) * T + slot] = vq;
    }
    if (e == 0) p.recent.ks[kh * T + slot] = ks, p.recent.vs[kh * T + slot] = vs;
}

// turbo_quant_group: n INT8 values x[i*stride] -> codes[i*cstride], integer scale and zero point.
__device__ void quant_group(const int8_t* x, int n, int stride, int bits, uint8_t* codes, int cstride,
                            uint8_t* sc_out, int8_t* zp_out) {
    int mn = 127, mx = -127;
    for (int i = 0; i < n; ++i) mn = min(mn, (int)x[i * stride]), mx = max(mx, (int)x[i * stride]);
    if (mn > mx) mn = mx = 0;
    const int qmax = (1 << bits) - 1;
    const int sc = max(1, (mx - mn + qmax - 1) / qmax);
    const int cap = min(qmax, (127 - mn) / sc);
    for (int i = 0; i < n; ++i) codes[i * cstride] = (uint8_t)min((x[i * stride] - mn + sc / 2) / sc, cap);
    *sc_out = (uint8_t)sc;
    *zp_out = (int8_t)mn;
}

// One block per KV head. Shared: k8 (T, D), v8 (D, T), codes likewise.
__global__ void __launch_bounds__(256) turbo_compress_kernel(const TurboCompressParams p) {
    const TurboCacheLayout& L = p.layout;
    const int T = L.block_tokens, D = L.head_dim, G = L.v_group, ng = D / G;
    const int end = *p.pos0 + p.end_offset;
    if (end <= 0 || end % T != 0 || end / T > L.max_blocks) return;
    const int blk = end / T - 1, h = blockIdx.x, bits = L.bits[h], tid = threadIdx.x, nt = blockDim.x;
    __shared__ __align__(16) int8_t k8[kMaxT * kMaxD], v8[kMaxT * kMaxD];
    __shared__ __align__(16) uint8_t kc[kMaxT * kMaxD], vc[kMaxT * kMaxD];
    __shared__ float ks[kMaxT], vs[kMaxT];
    const int8_t* rk = p.recent.k + (size_t)h * T * D;
    const int8_t* rv = p.recent.v + (size_t)h * D * T;
    for (int i = tid; i < T * D; i += nt) k8[i] = rk[i], v8[i] = rv[i];
    for (int i = tid; i < T; i += nt) ks[i] = p.recent.ks[h * T + i], vs[i] = p.recent.vs[h * T + i];
    __syncthreads();
    // to one INT8 scale per block (to_block_int8): the max token scale, ratios <= 1
    float sk = 0.0f, sv = 0.0f;
    for (int t = 0; t < T; ++t) sk = fmaxf(sk, ks[t]), sv = fmaxf(sv, vs[t]);
    for (int i = tid; i < T * D; i += nt) {
        const int tk = i / D, tv = i % T;  // k8 is token-major, v8 channel-major
        const float rk_ = sk > 0.0f ? __fdiv_rn(ks[tk], sk) : 0.0f;
        const float rv_ = sv > 0.0f ? __fdiv_rn(vs[tv], sv) : 0.0f;
        k8[i] = (int8_t)__float2int_rn(__fmul_rn((float)k8[i], rk_));
        v8[i] = (int8_t)__float2int_rn(__fmul_rn((float)v8[i], rv_));
    }
    __syncthreads();
    uint8_t* rec = p.blocks + L.head_off[h] + (size_t)blk * L.rec_bytes[h];
    uint8_t* k_sc = rec + 8;
    int8_t* k_zp = (int8_t*)(rec + 8 + D);
    uint8_t* v_sc = rec + 8 + 2 * D;
    int8_t* v_zp = (int8_t*)(rec + 8 + 2 * D + T * ng);
    for (int d = tid; d < D; d += nt)  // keys: one group per channel over the tokens
        quant_group(k8 + d, T, D, bits, kc + d, D, &k_sc[d], &k_zp[d]);
    for (int i = tid; i < T * ng; i += nt) {  // values: groups of G channels within a token
        const int t = i / ng, g = i % ng;
        quant_group(v8 + (size_t)g * G * T + t, G, T, bits, vc + (size_t)g * G * T + t, T, &v_sc[i], &v_zp[i]);
    }
    __syncthreads();
    const int per = 8 / bits, nbytes = T * D / per;
    uint8_t* kq = rec + L.meta_bytes;
    uint8_t* vq = kq + nbytes;
    for (int j = tid; j < nbytes; j += nt) {
        uint32_t a = 0, b = 0;
        for (int e = 0; e < per; ++e) a |= (uint32_t)kc[j * per + e] << (bits * e), b |= (uint32_t)vc[j * per + e] << (bits * e);
        kq[j] = (uint8_t)a;
        vq[j] = (uint8_t)b;
    }
    if (tid == 0) ((float*)rec)[0] = sk, ((float*)rec)[1] = sv;
}

// Grid (n): block i writes copy i.
__global__ void turbo_fanout_kernel(const TurboFanoutParams p) {
    const int i = blockIdx.x;
    const size_t words = (size_t)p.n_kv_heads * p.block_tokens * p.head_dim / 16, nsc = (size_t)p.n_kv_heads * p.block_tokens;
    const uint4* sk = (const uint4*)p.src.k;
    const uint4* sv = (const uint4*)p.src.v;
    uint4* dk = (uint4*)p.dst.k + i * words;
    uint4* dv = (uint4*)p.dst.v + i * words;
    for (size_t w = threadIdx.x; w < words; w += blockDim.x) dk[w] = sk[w], dv[w] = sv[w];
    for (size_t w = threadIdx.x; w < nsc; w += blockDim.x)
        p.dst.ks[i * nsc + w] = p.src.ks[w], p.dst.vs[i * nsc + w] = p.src.vs[w];
    if (threadIdx.x == 0) p.seq_len[i] = *p.pos0 + p.offset + i + 1;
}

}  // namespace

void turbo_rope_store_cuda(const TurboStoreParams& p, cudaStream_t stream) {
    if (p.n_rot > p.head_dim || p.n_rot % 2 != 0) throw CudaError("turbo_rope_store: n_rot must be even and <= head_dim");
    if (p.head_dim > kStoreThreads) throw CudaError("turbo_rope_store: head_dim must be <= 128");
    if (p.n < 1 || p.n > p.block_tokens) throw CudaError("turbo_rope_store: n must be in [1, block_tokens]");
    if (!p.qkv || !p.q_out || !p.pos0 || !p.inv_freq || !p.recent.k || !p.recent.v || !p.recent.ks || !p.recent.vs)
        throw CudaError("turbo_rope_store: a pointer is null");
    turbo_rope_store_kernel<<<dim3((unsigned)p.n, (unsigned)(p.n_head + p.n_head_kv)), kStoreThreads, 0, stream>>>(p);
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

void turbo_compress_cuda(const TurboCompressParams& p, cudaStream_t stream) {
    const TurboCacheLayout& L = p.layout;
    if (L.block_tokens > kMaxT || L.head_dim > kMaxD || L.n_kv_heads < 1 || L.v_group < 1)
        throw CudaError("turbo_compress: block_tokens must be <= 64 and head_dim <= 128");
    if (!p.pos0 || !p.blocks || !p.recent.k || !p.recent.v || !p.recent.ks || !p.recent.vs)
        throw CudaError("turbo_compress: a pointer is null");
    turbo_compress_kernel<<<(unsigned)L.n_kv_heads, 256, 0, stream>>>(p);
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

void turbo_fanout_cuda(const TurboFanoutParams& p, cudaStream_t stream) {
    if (p.n < 1 || (p.n_kv_heads * p.block_tokens * p.head_dim) % 16 != 0)
        throw CudaError("turbo_fanout: n must be >= 1 and the buffer a multiple of 16 bytes");
    turbo_fanout_kernel<<<(unsigned)p.n, 256, 0, stream>>>(p);
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

}  // namespace tandem
