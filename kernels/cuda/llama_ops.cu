// RMSNorm, bias, SwiGLU, RoPE + KV store, plain attention and argmax (see llama_ops.cuh).
// Each mirrors the CPU engine (client_engine/src/context.cpp), which is its reference twin.
#include "llama_ops.cuh"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "cuda_common.cuh"

namespace tandem {

namespace {

__device__ __forceinline__ float wsum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float wmax(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide sum or max for blockDim.x a multiple of 32 (<= 1024); every thread gets it.
template <bool MAX>
__device__ float block_reduce(float v, float* red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = MAX ? wmax(v) : wsum(v);
    __syncthreads();  // red may still be read by a previous reduction
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : (MAX ? -INFINITY : 0.0f);
    return MAX ? wmax(v) : wsum(v);
}

template <typename Out>  // float, or __nv_bfloat16 (rounded to nearest even)
__global__ void rmsnorm_kernel(const float* x, const float* w, Out* y, int64_t d, float eps) {
    __shared__ float red[32];
    const float* xr = x + blockIdx.x * d;
    Out* yr = y + blockIdx.x * d;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_reduce<false>(ss, red);
    const float s = rsqrtf(ss / (float)d + eps);
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        const float v = xr[i] * s * w[i];
        if constexpr (std::is_same_v<Out, float>) yr[i] = v;
        else yr[i] = __float2bfloat16_rn(v);
    }
}

__global__ void add_bias_kernel(float* y, const float* b, int64_t n, int64_t d, int64_t stride) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n * d; i += (int64_t)gridDim.x * blockDim.x)
        y[(i / d) * stride + i % d] += b[i % d];
}

__global__ void swiglu_kernel(float* g, const float* u, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float v = g[i];
        g[i] = v / (1.0f + expf(-v)) * u[i];
    }
}

__global__ void swiglu_bf16_kernel(const float* g, const float* u, __nv_bfloat16* y, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float v = g[i];
        y[i] = __float2bfloat16_rn(v / (1.0f + expf(-v)) * u[i]);
    }
}

__global__ void to_bf16_kernel(const float* x, __nv_bfloat16* y, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = __float2bfloat16_rn(x[i]);
}

// Grid (n tokens, n_head + n_head_kv): one block per head of one token, so that every loop
// below runs once per thread (decode latency). Query heads are rotated in place (and copied to
// q16 as FP16 when set); a KV head is rotated, then its k and v rows are stored to the cache.
__global__ void rope_store_kernel(const RopeStoreParams p) {
    const int t = blockIdx.x, h = blockIdx.y, pos = *p.pos0 + t;
    const int hd = p.head_dim, d = p.n_head * hd, kvd = p.n_head_kv * hd;
    float* row = p.qkv + (int64_t)t * (d + 2 * kvd);
    const bool is_q = h < p.n_head;
    float* v = is_q ? row + h * hd : row + d + (h - p.n_head) * hd;
    rope_head(v, pos, p.inv_freq, p.n_rot, p.neox);
    if (is_q) {
        if (p.q16) {  // (the whole block is one query head: the branch is uniform)
            __syncthreads();
            for (int e = threadIdx.x; e < hd; e += blockDim.x) p.q16[(int64_t)t * d + h * hd + e] = __float2half_rn(v[e]);
        }
        return;
    }
    __syncthreads();
    const int kh = h - p.n_head;
    const float* vv = row + d + kvd + kh * hd;
    for (int e = threadIdx.x; e < hd; e += blockDim.x) {
        const int64_t at = ((int64_t)kh * p.n_ctx + pos) * hd + e;
        p.k_cache[at] = __float2half_rn(v[e]);
        p.v_cache[at] = __float2half_rn(vv[e]);
    }
}

constexpr int kAttnThreads = 128;

__global__ void __launch_bounds__(kAttnThreads) attention_kernel(const AttentionParams p) {
    extern __shared__ float sm[];  // q[hd], scores[n_ctx]
    __shared__ float red[32];
    __shared__ float part[kAttnThreads];
    const int h = blockIdx.x, t = blockIdx.y, hd = p.head_dim;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nw = kAttnThreads / 32;
    const int kvh = h / (p.n_head / p.n_head_kv);
    const int n_kv = *p.pos0 + t + 1;
    float* qs = sm;
    float* sc = sm + hd;
    const float* q = p.q + t * p.q_stride + (int64_t)h * hd;
    for (int i = tid; i < hd; i += kAttnThreads) qs[i] = q[i];
    __syncthreads();
    const __half* K = p.k_cache + (int64_t)kvh * p.n_ctx * hd;
    const __half* V = p.v_cache + (int64_t)kvh * p.n_ctx * hd;
    for (int j = warp; j < n_kv; j += nw) {
        float s = 0.0f;
        for (int i = lane; i < hd; i += 32) s += qs[i] * __half2float(K[(int64_t)j * hd + i]);
        s = wsum(s);
        if (lane == 0) sc[j] = s * p.scale;
    }
    __syncthreads();
    float m = -INFINITY;
    for (int j = tid; j < n_kv; j += kAttnThreads) m = fmaxf(m, sc[j]);
    m = block_reduce<true>(m, red);
    float l = 0.0f;
    for (int j = tid; j < n_kv; j += kAttnThreads) {
        const float e = expf(sc[j] - m);
        sc[j] = e;
        l += e;
    }
    l = block_reduce<false>(l, red);  // its barriers also publish sc
    float* out = p.out + t * p.out_stride + (int64_t)h * hd;
    if (hd <= kAttnThreads) {
        const int parts = kAttnThreads / hd, e = tid % hd, pi = tid / hd;
        if (pi < parts) {
            float o = 0.0f;
            for (int j = pi; j < n_kv; j += parts) o += sc[j] * __half2float(V[(int64_t)j * hd + e]);
            part[pi * hd + e] = o;
        }
        __syncthreads();
        if (tid < hd) {
            float o = 0.0f;
            for (int k = 0; k < parts; ++k) o += part[k * hd + tid];
            out[tid] = o / l;
        }
    } else {
        for (int e = tid; e < hd; e += kAttnThreads) {
            float o = 0.0f;
            for (int j = 0; j < n_kv; ++j) o += sc[j] * __half2float(V[(int64_t)j * hd + e]);
            out[e] = o / l;
        }
    }
}

__global__ void argmax_kernel(const float* x, int64_t n, int32_t* out) {
    __shared__ float rv[32];
    __shared__ int64_t ri[32];
    float bv = -INFINITY;
    int64_t bi = n;  // "none yet": loses every tie
    // Each thread sees its indices in increasing order, so strict > keeps the first maximum.
    // float4 loads, 8 in flight per thread: one block reads 128K logits in a few latencies.
    int64_t head = 0;
    if (((uintptr_t)x & 15) == 0) {
        const int64_t n4 = n / 4;
        const float4* x4 = (const float4*)x;
#pragma unroll 8
        for (int64_t i = threadIdx.x; i < n4; i += blockDim.x) {
            const float4 v = __ldg(x4 + i);
            const float e[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int k = 0; k < 4; ++k)
                if (e[k] > bv || (bi == n && !(e[k] < bv))) bv = e[k], bi = 4 * i + k;
        }
        head = n4 * 4;
    }
    for (int64_t i = head + threadIdx.x; i < n; i += blockDim.x)
        if (x[i] > bv || (bi == n && !(x[i] < bv))) bv = x[i], bi = i;
    for (int o = 16; o > 0; o >>= 1) {
        const float v = __shfl_xor_sync(0xffffffffu, bv, o);
        const int64_t i = __shfl_xor_sync(0xffffffffu, bi, o);
        if (v > bv || (v == bv && i < bi)) bv = v, bi = i;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) rv[warp] = bv, ri[warp] = bi;
    __syncthreads();
    if (warp == 0) {
        const int nw = blockDim.x >> 5;
        bv = lane < nw ? rv[lane] : -INFINITY;
        bi = lane < nw ? ri[lane] : n;
        for (int o = 16; o > 0; o >>= 1) {
            const float v = __shfl_xor_sync(0xffffffffu, bv, o);
            const int64_t i = __shfl_xor_sync(0xffffffffu, bi, o);
            if (v > bv || (v == bv && i < bi)) bv = v, bi = i;
        }
        if (lane == 0) *out = (int32_t)(bi < n ? bi : 0);
    }
}

int grid_for(int64_t n) { return (int)std::max<int64_t>(1, std::min<int64_t>((n + 255) / 256, 4096)); }

}  // namespace

void rmsnorm_rows_cuda(const float* x, const float* w, float* y, int64_t n, int64_t d, float eps, cudaStream_t stream) {
    if (n <= 0) return;
    rmsnorm_kernel<float><<<(unsigned)n, 256, 0, stream>>>(x, w, y, d, eps);
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

void rmsnorm_rows_bf16_cuda(const float* x, const float* w, __nv_bfloat16* y, int64_t n, int64_t d, float eps,
                            cudaStream_t stream) {
    if (n <= 0) return;
    rmsnorm_kernel<__nv_bfloat16><<<(unsigned)n, 256, 0, stream>>>(x, w, y, d, eps);
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

void add_bias_rows_cuda(float* y, const float* bias, int64_t n, int64_t d, int64_t stride, cudaStream_t stream) {
    add_bias_kernel<<<grid_for(n * d), 256, 0, stream>>>(y, bias, n, d, stride);
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

void swiglu_cuda(float* g, const float* u, int64_t count, cudaStream_t stream) {
    swiglu_kernel<<<grid_for(count), 256, 0, stream>>>(g, u, count);
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

void swiglu_bf16_cuda(const float* g, const float* u, __nv_bfloat16* y, int64_t count, cudaStream_t stream) {
    swiglu_bf16_kernel<<<grid_for(count), 256, 0, stream>>>(g, u, y, count);
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

void to_bf16_cuda(const float* x, __nv_bfloat16* y, int64_t count, cudaStream_t stream) {
    to_bf16_kernel<<<grid_for(count), 256, 0, stream>>>(x, y, count);
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

void rope_store_cuda(const RopeStoreParams& p, cudaStream_t stream) {
    if (p.n_rot > p.head_dim || p.n_rot % 2 != 0) throw CudaError("rope_store: n_rot must be even and <= head_dim");
    rope_store_kernel<<<dim3((unsigned)p.n, (unsigned)(p.n_head + p.n_head_kv)), 64, 0, stream>>>(p);
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

void attention_cuda(const AttentionParams& p, cudaStream_t stream) {
    if (p.head_dim > 256 || p.n_head % p.n_head_kv != 0) throw CudaError("attention: head_dim > 256 or n_head not a multiple of n_head_kv");
    const size_t smem = (size_t)(p.head_dim + p.n_ctx) * sizeof(float);
    if (smem > 48 * 1024) {
        int dev = 0, max_optin = 0;
        TANDEM_CHECK_CUDA(cudaGetDevice(&dev));
        TANDEM_CHECK_CUDA(cudaDeviceGetAttribute(&max_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
        if (smem + 2 * kAttnThreads * sizeof(float) > (size_t)max_optin)
            throw CudaError("attention: n_ctx " + std::to_string(p.n_ctx) + " needs " + std::to_string(smem) +
                            " bytes of shared memory; the device allows " + std::to_string(max_optin));
        TANDEM_CHECK_CUDA(cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    }
    attention_kernel<<<dim3((unsigned)p.n_head, (unsigned)p.n), kAttnThreads, smem, stream>>>(p);
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

void argmax_cuda(const float* x, int64_t n, int32_t* out, cudaStream_t stream) {
    argmax_kernel<<<1, 1024, 0, stream>>>(x, n, out);
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

}  // namespace tandem
