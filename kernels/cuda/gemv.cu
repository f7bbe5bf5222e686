// Weight GEMV (decode) and row dequantization on the GPU; the layout is in gemv.cuh.
//
// gemv_kernel: 256 threads = 8 warps, a grid-stride loop over groups of 8 rows (one warp per
// row). Each block first stages x in shared memory (rmsnorm-ed and scaled by the norm weight
// when asked) with 4 floats of padding after every 32, so that lanes reading different
// 32-blocks hit different banks. Per lane, per type:
//   F32/F16  4 or 8 consecutive values per 16-byte load, lanes contiguous
//   Q8_0     one 32-block: two 16-byte loads of quants + its half scale
//   Q4_0     one 32-block: one 16-byte load (element j < 16 low nibble of byte j, j+16 high)
//   Q4_K     a quarter of a 256-block (64 elements: 32 bytes of nibbles + 2 scale/min pairs)
//   Q6_K     a quarter of a 256-block (2 x 16 bytes of low bits, 16 bytes of high bits)
// Accumulation is in f32; the warp reduces with shuffles and lane 0 applies bias, SwiGLU and
// the residual add.
//
// Per type, everything lives in one place: Layout<TY> (the device regions, the host repack,
// the dequantization of one element) and row_dot<TY> (the GEMV's inner loop); the table
// gpu_type_ops() holds one row per native type with its launchers, like the CPU's KernelSet
// (kernels/src/cpu_kernels.h). The entry points look the type up there and never switch on it.
#include "gemv.cuh"

#include <cuda_fp16.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cuda_common.cuh"

namespace tandem {

namespace {

constexpr int kWarps = 8, kThreads = 32 * kWarps;

__host__ __device__ inline int64_t pad_idx(int64_t c) { return c + (c >> 5) * 4; }
size_t round256(size_t b) { return (b + 255) & ~size_t(255); }

struct Regions {
    size_t q = 0, s = 0, d = 0;  // bytes of the q, s and d regions
};

__device__ __forceinline__ float warp_sum32(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float h2f(const void* p, int64_t i) { return __half2float(((const __half*)p)[i]); }

// ---- per-type partial dot of row r with the staged x (one lane's share) ----------------------

template <GgmlType TY>
__device__ __forceinline__ float row_dot(const GpuMatrix& w, int64_t r, const float* __restrict__ xs, int lane) {
    const int64_t K = w.cols;
    float acc = 0.0f;
    if constexpr (TY == GgmlType::F32) {
        const float* row = (const float*)w.q + r * K;
        if ((K & 3) == 0) {
#pragma unroll 4
            for (int64_t c = lane * 4; c < K; c += 128) {
                const float4 a = __ldg((const float4*)(row + c));
                const float4 b = *(const float4*)&xs[pad_idx(c)];
                acc += a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
            }
        } else {
            for (int64_t c = lane; c < K; c += 32) acc += __ldg(row + c) * xs[pad_idx(c)];
        }
    } else if constexpr (TY == GgmlType::F16) {
        const __half* row = (const __half*)w.q + r * K;
        if ((K & 7) == 0) {
#pragma unroll 4
            for (int64_t c = lane * 8; c < K; c += 256) {
                const uint4 a = __ldg((const uint4*)(row + c));
                const __half2* h = (const __half2*)&a;
                const float* xb = &xs[pad_idx(c)];
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const float2 f = __half22float2(h[i]);
                    acc += f.x * xb[2 * i] + f.y * xb[2 * i + 1];
                }
            }
        } else {
            for (int64_t c = lane; c < K; c += 32) acc += __half2float(row[c]) * xs[pad_idx(c)];
        }
    } else if constexpr (TY == GgmlType::Q8_0) {
        const int64_t nb = K / 32;
        const int8_t* q = (const int8_t*)w.q + r * K;
#pragma unroll 2
        for (int64_t b = lane; b < nb; b += 32) {
            const uint4 v0 = __ldg((const uint4*)(q + b * 32));
            const uint4 v1 = __ldg((const uint4*)(q + b * 32 + 16));
            const float d = h2f(w.s, r * nb + b);
            const int8_t* a0 = (const int8_t*)&v0;
            const int8_t* a1 = (const int8_t*)&v1;
            const float* xb = &xs[pad_idx(b * 32)];
            float s = 0.0f;
#pragma unroll
            for (int i = 0; i < 16; ++i) s += (float)a0[i] * xb[i] + (float)a1[i] * xb[16 + i];
            acc += d * s;
        }
    } else if constexpr (TY == GgmlType::Q4_0) {
        const int64_t nb = K / 32;
        const uint8_t* q = (const uint8_t*)w.q + r * nb * 16;
#pragma unroll 2
        for (int64_t b = lane; b < nb; b += 32) {
            const uint4 v = __ldg((const uint4*)(q + b * 16));
            const float d = h2f(w.s, r * nb + b);
            const uint8_t* a = (const uint8_t*)&v;
            const float* xb = &xs[pad_idx(b * 32)];
            float s = 0.0f;
#pragma unroll
            for (int i = 0; i < 16; ++i)
                s += (float)((int)(a[i] & 15) - 8) * xb[i] + (float)((int)(a[i] >> 4) - 8) * xb[16 + i];
            acc += d * s;
        }
    } else if constexpr (TY == GgmlType::Q4_K) {
        const int64_t nsb = K / 256, units = nsb * 4;
        for (int64_t u = lane; u < units; u += 32) {
            const int64_t sb = u >> 2, gsb = r * nsb + sb;
            const int c = (int)(u & 3);
            const uint8_t* qp = (const uint8_t*)w.q + gsb * 128 + c * 32;
            const uint4 v0 = __ldg((const uint4*)qp);
            const uint4 v1 = __ldg((const uint4*)(qp + 16));
            const uint8_t* meta = (const uint8_t*)w.s + gsb * 16;
            const float d = h2f(meta, 0), dmin = h2f(meta, 1);
            const uint8_t* sc = meta + 4;
            int s1, m1, s2, m2;
            const int j = 2 * c;  // sub-blocks j (low nibbles) and j + 1 (high nibbles)
            // get_scale_min_k4 (quant_types.h) for pairs j and j + 1, decoded in one branch
            // (j is even, so both pairs are < 4 or both >= 4) through the read-only cache.
            // Calling get_scale_min_k4 twice costs this kernel a second branch and ~13 more
            // instructions per unit (PTX, sm_90); the dequantization below does call it.
            if (j < 4) {
                s1 = __ldg(sc + j) & 63, m1 = __ldg(sc + j + 4) & 63;
                s2 = __ldg(sc + j + 1) & 63, m2 = __ldg(sc + j + 5) & 63;
            } else {
                s1 = (__ldg(sc + j + 4) & 0xF) | ((__ldg(sc + j - 4) >> 6) << 4);
                m1 = (__ldg(sc + j + 4) >> 4) | ((__ldg(sc + j) >> 6) << 4);
                s2 = (__ldg(sc + j + 5) & 0xF) | ((__ldg(sc + j - 3) >> 6) << 4);
                m2 = (__ldg(sc + j + 5) >> 4) | ((__ldg(sc + j + 1) >> 6) << 4);
            }
            const uint8_t* a0 = (const uint8_t*)&v0;
            const uint8_t* a1 = (const uint8_t*)&v1;
            const float* xl = &xs[pad_idx(sb * 256 + c * 64)];
            const float* xh = &xs[pad_idx(sb * 256 + c * 64 + 32)];
            float sl = 0, sh = 0, xsl = 0, xsh = 0;
#pragma unroll
            for (int i = 0; i < 16; ++i) {
                sl += (float)(a0[i] & 15) * xl[i] + (float)(a1[i] & 15) * xl[16 + i];
                sh += (float)(a0[i] >> 4) * xh[i] + (float)(a1[i] >> 4) * xh[16 + i];
                xsl += xl[i] + xl[16 + i];
                xsh += xh[i] + xh[16 + i];
            }
            acc += d * ((float)s1 * sl + (float)s2 * sh) - dmin * ((float)m1 * xsl + (float)m2 * xsh);
        }
    } else if constexpr (TY == GgmlType::Q6_K) {
        const int64_t nsb = K / 256, units = nsb * 4;
        for (int64_t u = lane; u < units; u += 32) {
            const int64_t sb = u >> 2, gsb = r * nsb + sb;
            const int n = (int)((u >> 1) & 1), l0 = (int)(u & 1) * 16;
            const uint8_t* base = (const uint8_t*)w.q + gsb * 192;
            const uint4 vl = __ldg((const uint4*)(base + 64 * n + l0));
            const uint4 vl2 = __ldg((const uint4*)(base + 64 * n + 32 + l0));
            const uint4 vh = __ldg((const uint4*)(base + 128 + 32 * n + l0));
            const int8_t* sc = (const int8_t*)w.s + gsb * 16 + 8 * n + l0 / 16;
            const float d = h2f(w.d, gsb);
            const uint8_t* ql = (const uint8_t*)&vl;
            const uint8_t* ql2 = (const uint8_t*)&vl2;
            const uint8_t* qh = (const uint8_t*)&vh;
            const float* xb = &xs[pad_idx(sb * 256 + 128 * n + l0)];
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma unroll
            for (int i = 0; i < 16; ++i) {
                const int h = qh[i];
                s0 += (float)((int)((ql[i] & 15) | ((h & 3) << 4)) - 32) * xb[i];
                s1 += (float)((int)((ql2[i] & 15) | (((h >> 2) & 3) << 4)) - 32) * xb[36 + i];
                s2 += (float)((int)((ql[i] >> 4) | (((h >> 4) & 3) << 4)) - 32) * xb[72 + i];
                s3 += (float)((int)((ql2[i] >> 4) | (((h >> 6) & 3) << 4)) - 32) * xb[108 + i];
            }
            acc += d * ((float)__ldg(sc) * s0 + (float)__ldg(sc + 2) * s1 + (float)__ldg(sc + 4) * s2 +
                        (float)__ldg(sc + 6) * s3);
        }
    }
    return acc;
}

template <GgmlType TY, bool SWIGLU>
__global__ void __launch_bounds__(kThreads) gemv_kernel(const GemvParams p) {
    extern __shared__ float xs[];  // pad_idx(cols)
    __shared__ float red[kWarps];
    __shared__ float s_scale;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int64_t K = p.w.cols;
    // Stage x * norm in one pass with every load in flight at once (latency, not bandwidth,
    // bounds this prologue); the rmsnorm scale is a scalar applied to the finished dot.
    float ss = 0.0f;
    if ((K & 3) == 0) {
        const float4* x4 = (const float4*)p.x;
        const float4* w4 = (const float4*)p.norm;
#pragma unroll 4
        for (int64_t i = tid; i < (K >> 2); i += kThreads) {
            const float4 v = __ldg(x4 + i);
            const float4 w = p.norm ? __ldg(w4 + i) : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
            ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
            *(float4*)&xs[pad_idx(4 * i)] = make_float4(v.x * w.x, v.y * w.y, v.z * w.z, v.w * w.w);
        }
    } else {
        for (int64_t c = tid; c < K; c += kThreads) {
            const float v = p.x[c];
            ss += v * v;
            xs[pad_idx(c)] = p.norm ? v * p.norm[c] : v;
        }
    }
    float scale = 1.0f;
    if (p.norm) {
        ss = warp_sum32(ss);
        if (lane == 0) red[warp] = ss;
        __syncthreads();
        if (warp == 0) {
            float v = lane < kWarps ? red[lane] : 0.0f;
            v = warp_sum32(v);
            if (lane == 0) s_scale = rsqrtf(v / (float)K + p.eps);
        }
    }
    __syncthreads();
    if (p.norm) scale = s_scale;
    for (int64_t r = (int64_t)blockIdx.x * kWarps + warp; r < p.w.rows; r += (int64_t)gridDim.x * kWarps) {
        const float a = warp_sum32(row_dot<TY>(p.w, r, xs, lane)) * scale;
        float b = 0.0f;
        if constexpr (SWIGLU) b = warp_sum32(row_dot<TY>(p.w2, r, xs, lane)) * scale;
        if (lane == 0) {
            float v = a + (p.bias ? p.bias[r] : 0.0f);
            if constexpr (SWIGLU) v = v / (1.0f + expf(-v)) * b;
            p.y[r] = p.accumulate ? p.y[r] + v : v;
        }
    }
}

template <GgmlType TY>
void launch_gemv(const GemvParams& p, cudaStream_t stream) {
    const size_t smem = (size_t)pad_idx(p.w.cols + 31) * sizeof(float);
    const int64_t groups = (p.w.rows + kWarps - 1) / kWarps;
    const int grid = (int)std::min<int64_t>(groups, (int64_t)sm_count() * 8);
    if (p.w2.q) {
        if (smem > 48 * 1024)
            TANDEM_CHECK_CUDA(cudaFuncSetAttribute(gemv_kernel<TY, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        gemv_kernel<TY, true><<<grid, kThreads, smem, stream>>>(p);
    } else {
        if (smem > 48 * 1024)
            TANDEM_CHECK_CUDA(cudaFuncSetAttribute(gemv_kernel<TY, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        gemv_kernel<TY, false><<<grid, kThreads, smem, stream>>>(p);
    }
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

// ---- per-type layout: regions, host repack, one element dequantized -------------------------
//
// regions(n): bytes of each region for n elements. repack(src, n_blocks, q, s, d): n_blocks GGUF
// blocks -> the regions. at(w, r, c): element (r, c) as f32 (embeddings and the F32 tiles:
// simple, one element per thread; the reference twin of at8). Quantized types also have
// at8(w, e, v): the 8 elements e .. e+7 of the matrix in row-major order (e a multiple of 8, so
// they share one block and one scale), with the same arithmetic as at(): the BF16 prefill tiles.

template <GgmlType TY>
struct Layout;

template <>
struct Layout<GgmlType::F32> {
    static Regions regions(size_t n) { return {n * 4, 0, 0}; }
    static void repack(const uint8_t* in, size_t n_blocks, uint8_t* q, uint8_t*, uint8_t*) { std::memcpy(q, in, n_blocks * 4); }
    static __device__ float at(const GpuMatrix& w, int64_t r, int64_t c) { return ((const float*)w.q)[r * w.cols + c]; }
};

template <>
struct Layout<GgmlType::F16> {
    static Regions regions(size_t n) { return {n * 2, 0, 0}; }
    static void repack(const uint8_t* in, size_t n_blocks, uint8_t* q, uint8_t*, uint8_t*) { std::memcpy(q, in, n_blocks * 2); }
    static __device__ float at(const GpuMatrix& w, int64_t r, int64_t c) { return h2f(w.q, r * w.cols + c); }
};

template <>
struct Layout<GgmlType::Q8_0> {
    static Regions regions(size_t n) { return {n, n / 32 * 2, 0}; }
    static void repack(const uint8_t* in, size_t n_blocks, uint8_t* q, uint8_t* s, uint8_t*) {
        for (size_t i = 0; i < n_blocks; i++) {
            const block_q8_0& b = ((const block_q8_0*)in)[i];
            std::memcpy(q + i * 32, b.qs, 32);
            std::memcpy(s + i * 2, &b.d, 2);
        }
    }
    static __device__ float at(const GpuMatrix& w, int64_t r, int64_t c) {
        const int64_t K = w.cols;
        return (float)((const int8_t*)w.q)[r * K + c] * h2f(w.s, (r * K + c) / 32);
    }
    static __device__ void at8(const GpuMatrix& w, int64_t e, float* v) {
        const uint2 raw = __ldg((const uint2*)((const int8_t*)w.q + e));
        const int8_t* q = (const int8_t*)&raw;
        const float d = h2f(w.s, e >> 5);
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = (float)q[k] * d;
    }
};

template <>
struct Layout<GgmlType::Q4_0> {
    static Regions regions(size_t n) { return {n / 2, n / 32 * 2, 0}; }
    static void repack(const uint8_t* in, size_t n_blocks, uint8_t* q, uint8_t* s, uint8_t*) {
        for (size_t i = 0; i < n_blocks; i++) {
            const block_q4_0& b = ((const block_q4_0*)in)[i];
            std::memcpy(q + i * 16, b.qs, 16);
            std::memcpy(s + i * 2, &b.d, 2);
        }
    }
    static __device__ float at(const GpuMatrix& w, int64_t r, int64_t c) {
        const int64_t b = (r * w.cols + c) / 32;
        const int j = (int)(c & 31);
        const uint8_t byte = ((const uint8_t*)w.q)[b * 16 + (j & 15)];
        return (float)((int)(j < 16 ? byte & 15 : byte >> 4) - 8) * h2f(w.s, b);
    }
    static __device__ void at8(const GpuMatrix& w, int64_t e, float* v) {
        const int64_t b = e >> 5;
        const int j = (int)(e & 31);  // 0, 8: low nibbles of bytes j..j+7; 16, 24: high nibbles of j-16..
        const uint2 raw = __ldg((const uint2*)((const uint8_t*)w.q + b * 16 + (j & 15)));
        const uint8_t* q = (const uint8_t*)&raw;
        const float d = h2f(w.s, b);
        const int shift = j < 16 ? 0 : 4;
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = (float)((int)((q[k] >> shift) & 15) - 8) * d;
    }
};

template <>
struct Layout<GgmlType::Q4_K> {
    static Regions regions(size_t n) { return {n / 256 * 128, n / 256 * 16, 0}; }
    static void repack(const uint8_t* in, size_t n_blocks, uint8_t* q, uint8_t* s, uint8_t*) {
        for (size_t i = 0; i < n_blocks; i++) {  // d, dmin, scales[12] are the block's first 16 bytes
            const block_q4_K& b = ((const block_q4_K*)in)[i];
            std::memcpy(s + i * 16, &b, 16);
            std::memcpy(q + i * 128, b.qs, 128);
        }
    }
    static __device__ float at(const GpuMatrix& w, int64_t r, int64_t c) {
        const int64_t gsb = (r * w.cols + c) / 256;
        const int j = (int)(c & 255), chunk = j / 64, l = j % 64;
        const uint8_t byte = ((const uint8_t*)w.q)[gsb * 128 + chunk * 32 + (l & 31)];
        const uint8_t* meta = (const uint8_t*)w.s + gsb * 16;
        const uint8_t* sc = meta + 4;
        const int is = 2 * chunk + (l >= 32);
        int s, m;
        get_scale_min_k4(is, sc, &s, &m);
        const int q = l < 32 ? byte & 15 : byte >> 4;
        return h2f(meta, 0) * (float)s * (float)q - h2f(meta, 1) * (float)m;
    }
    static __device__ void at8(const GpuMatrix& w, int64_t e, float* v) {
        const int64_t gsb = e >> 8;
        const int j = (int)(e & 255), chunk = j >> 6, l = j & 63;
        const uint2 raw = __ldg((const uint2*)((const uint8_t*)w.q + gsb * 128 + chunk * 32 + (l & 31)));
        const uint8_t* q = (const uint8_t*)&raw;
        const uint8_t* meta = (const uint8_t*)w.s + gsb * 16;
        int s, m;
        get_scale_min_k4(2 * chunk + (l >= 32), meta + 4, &s, &m);
        const float d = h2f(meta, 0), dmin = h2f(meta, 1);
        const int shift = l < 32 ? 0 : 4;
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = d * (float)s * (float)((q[k] >> shift) & 15) - dmin * (float)m;
    }
};

template <>
struct Layout<GgmlType::Q6_K> {
    static Regions regions(size_t n) { return {n / 256 * 192, n / 256 * 16, n / 256 * 2}; }
    static void repack(const uint8_t* in, size_t n_blocks, uint8_t* q, uint8_t* s, uint8_t* d) {
        for (size_t i = 0; i < n_blocks; i++) {  // ql[128] then qh[64] are the block's first 192 bytes
            const block_q6_K& b = ((const block_q6_K*)in)[i];
            std::memcpy(q + i * 192, &b, 192);
            std::memcpy(s + i * 16, b.scales, 16);
            std::memcpy(d + i * 2, &b.d, 2);
        }
    }
    static __device__ float at(const GpuMatrix& w, int64_t r, int64_t c) {
        const int64_t gsb = (r * w.cols + c) / 256;
        const int j = (int)(c & 255), n = j / 128, quad = (j % 128) / 32, l = j % 32;
        const uint8_t* base = (const uint8_t*)w.q + gsb * 192;
        const uint8_t lb = base[64 * n + (quad & 1) * 32 + l];
        const int lo = quad < 2 ? lb & 15 : lb >> 4;
        const int hi = (base[128 + 32 * n + l] >> (2 * quad)) & 3;
        const int8_t sc = ((const int8_t*)w.s)[gsb * 16 + 8 * n + l / 16 + 2 * quad];
        return h2f(w.d, gsb) * (float)sc * (float)((lo | (hi << 4)) - 32);
    }
    static __device__ void at8(const GpuMatrix& w, int64_t e, float* v) {
        const int64_t gsb = e >> 8;
        const int j = (int)(e & 255), n = j >> 7, quad = (j & 127) >> 5, l = j & 31;
        const uint8_t* base = (const uint8_t*)w.q + gsb * 192;
        const uint2 lraw = __ldg((const uint2*)(base + 64 * n + (quad & 1) * 32 + l));
        const uint2 hraw = __ldg((const uint2*)(base + 128 + 32 * n + l));
        const uint8_t* lb = (const uint8_t*)&lraw;
        const uint8_t* hb = (const uint8_t*)&hraw;
        const int8_t sc = ((const int8_t*)w.s)[gsb * 16 + 8 * n + l / 16 + 2 * quad];
        const float d = h2f(w.d, gsb);
        const int lshift = quad < 2 ? 0 : 4;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const int lo = (lb[k] >> lshift) & 15, hi = (hb[k] >> (2 * quad)) & 3;
            v[k] = d * (float)sc * (float)((lo | (hi << 4)) - 32);
        }
    }
};

__device__ inline void store_as(float* p, float v) { *p = v; }
__device__ inline void store_as(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

template <GgmlType TY, typename Out>
__global__ void dequant_rows_kernel(const GpuMatrix w, int64_t row0, int64_t n_rows, Out* out) {
    const int64_t n = n_rows * w.cols;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        store_as(out + i, Layout<TY>::at(w, row0 + i / w.cols, i % w.cols));
}

// BF16 tiles of a quantized matrix: 8 elements a thread (one 16-byte store) through at8, for
// kDequantItems groups a loop step, loaded before any is stored (more loads in flight). Rows
// row0 .. are the contiguous elements from row0 * cols on, so no index is divided.
constexpr int kDequantItems = 4;

template <GgmlType TY>
__global__ void dequant_rows_bf16_kernel(const GpuMatrix w, int64_t e0, int64_t n8, uint4* __restrict__ out) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i0 < n8; i0 += kDequantItems * stride) {
        uint4 o[kDequantItems];
#pragma unroll
        for (int u = 0; u < kDequantItems; ++u) {
            const int64_t i = i0 + u * stride;
            if (i >= n8) break;
            float v[8];
            Layout<TY>::at8(w, e0 + 8 * i, v);
            __nv_bfloat162* h = (__nv_bfloat162*)&o[u];
#pragma unroll
            for (int k = 0; k < 4; ++k) h[k] = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
        }
#pragma unroll
        for (int u = 0; u < kDequantItems; ++u) {
            const int64_t i = i0 + u * stride;
            if (i >= n8) break;
            out[i] = o[u];
        }
    }
}

template <GgmlType TY>
__global__ void gather_rows_kernel(const GpuMatrix w, const int32_t* ids, int64_t n_rows, float* out) {
    const int64_t n = n_rows * w.cols;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = Layout<TY>::at(w, ids[i / w.cols], i % w.cols);
}

int grid_for(int64_t n) { return (int)std::max<int64_t>(1, std::min<int64_t>((n + 255) / 256, (int64_t)sm_count() * 16)); }

template <GgmlType TY, typename Out>
void launch_dequant_rows(const GpuMatrix& w, int64_t row0, int64_t n_rows, Out* out, cudaStream_t stream) {
    dequant_rows_kernel<TY, Out><<<grid_for(n_rows * w.cols), 256, 0, stream>>>(w, row0, n_rows, out);
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

// Quantized types: at8, 8 elements a thread (cols is a multiple of the block size, so of 32;
// `out` is 16-byte aligned). F32 and F16: one element a thread (any cols).
template <GgmlType TY>
void launch_dequant_rows_bf16(const GpuMatrix& w, int64_t row0, int64_t n_rows, __nv_bfloat16* out, cudaStream_t stream) {
    if constexpr (TY == GgmlType::F32 || TY == GgmlType::F16) {
        launch_dequant_rows<TY, __nv_bfloat16>(w, row0, n_rows, out, stream);
    } else {
        if ((uintptr_t)out % 16 != 0) throw CudaError("dequant_rows_bf16: the output is not 16-byte aligned");
        const int64_t n8 = n_rows * w.cols / 8;
        const int grid = grid_for((n8 + kDequantItems - 1) / kDequantItems);
        dequant_rows_bf16_kernel<TY><<<grid, 256, 0, stream>>>(w, row0 * w.cols, n8, (uint4*)out);
        TANDEM_CHECK_CUDA(cudaGetLastError());
    }
}

template <GgmlType TY>
void launch_gather_rows(const GpuMatrix& w, const int32_t* ids, int64_t n, float* out, cudaStream_t stream) {
    gather_rows_kernel<TY><<<grid_for(n * w.cols), 256, 0, stream>>>(w, ids, n, out);
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

// ---- the per-type table ----------------------------------------------------------------------

struct GpuTypeOps {
    Regions (*regions)(size_t n_elements);
    void (*repack)(const uint8_t* src, size_t n_blocks, uint8_t* q, uint8_t* s, uint8_t* d);
    void (*gemv)(const GemvParams& p, cudaStream_t stream);
    void (*dequant_rows)(const GpuMatrix& w, int64_t row0, int64_t n_rows, float* out, cudaStream_t stream);
    void (*dequant_rows_bf16)(const GpuMatrix& w, int64_t row0, int64_t n_rows, __nv_bfloat16* out, cudaStream_t stream);
    void (*gather_rows)(const GpuMatrix& w, const int32_t* ids, int64_t n, float* out, cudaStream_t stream);
};

template <GgmlType TY>
constexpr GpuTypeOps ops_for() {
    return {&Layout<TY>::regions,           &Layout<TY>::repack,
            &launch_gemv<TY>,                &launch_dequant_rows<TY, float>,
            &launch_dequant_rows_bf16<TY>,   &launch_gather_rows<TY>};
}

// Indexed by GgmlType; a row of nullptrs for the types that are not native on the GPU.
struct GpuTypeTable {
    GpuTypeOps row[kGgmlTypeCount] = {};
};

constexpr GpuTypeTable make_gpu_type_table() {
    GpuTypeTable t;
    t.row[(int)GgmlType::F32] = ops_for<GgmlType::F32>();
    t.row[(int)GgmlType::F16] = ops_for<GgmlType::F16>();
    t.row[(int)GgmlType::Q8_0] = ops_for<GgmlType::Q8_0>();
    t.row[(int)GgmlType::Q4_0] = ops_for<GgmlType::Q4_0>();
    t.row[(int)GgmlType::Q4_K] = ops_for<GgmlType::Q4_K>();
    t.row[(int)GgmlType::Q6_K] = ops_for<GgmlType::Q6_K>();
    return t;
}
constexpr GpuTypeTable kGpuTypes = make_gpu_type_table();

// The type's row, or nullptr when the type has no native device layout.
const GpuTypeOps* gpu_type_ops(GgmlType type) {
    const uint32_t i = (uint32_t)type;
    return i < kGgmlTypeCount && kGpuTypes.row[i].gemv ? &kGpuTypes.row[i] : nullptr;
}

std::string not_native(GgmlType type) { return std::string("type ") + type_traits(type).name + " is not native on the GPU"; }

}  // namespace

bool gpu_matrix_native(GgmlType t) { return gpu_type_ops(t) != nullptr; }

size_t gpu_matrix_bytes(GgmlType type, int64_t rows, int64_t cols) {
    const GpuTypeOps* ops = gpu_type_ops(type);
    if (!ops) throw std::invalid_argument("gpu matrix: " + not_native(type));
    const Regions g = ops->regions((size_t)rows * (size_t)cols);
    return round256(g.q) + round256(g.s) + round256(g.d);
}

GpuMatrix gpu_matrix_repack(GgmlType type, int64_t rows, int64_t cols, const void* src, uint8_t* dst,
                            const uint8_t* dst_device) {
    const GpuTypeOps* ops = gpu_type_ops(type);
    if (!ops) throw std::invalid_argument("gpu matrix: " + not_native(type));
    const int64_t bs = type_traits(type).block_size;
    if (cols % bs != 0)
        throw std::invalid_argument("gpu matrix: " + std::to_string(cols) + " columns are not a multiple of the " +
                                    type_traits(type).name + " block size " + std::to_string(bs));
    const Regions g = ops->regions((size_t)rows * (size_t)cols);
    uint8_t* q = dst;
    uint8_t* s = dst + round256(g.q);
    uint8_t* d = s + round256(g.s);
    ops->repack((const uint8_t*)src, (size_t)rows * (size_t)(cols / bs), q, s, d);
    GpuMatrix m;
    m.type = type;
    m.rows = rows;
    m.cols = cols;
    m.q = dst_device;
    m.s = dst_device + (s - dst);
    m.d = dst_device + (d - dst);
    return m;
}

void gemv_cuda(const GemvParams& p, cudaStream_t stream) {
    if (!p.x || !p.y || !p.w.q) throw CudaError("gemv: a pointer is null");
    if (p.w2.q && (p.w2.type != p.w.type || p.w2.rows != p.w.rows || p.w2.cols != p.w.cols))
        throw CudaError("gemv: the SwiGLU pair must have one type and shape");
    const GpuTypeOps* ops = gpu_type_ops(p.w.type);
    if (!ops) throw CudaError("gemv: " + not_native(p.w.type));
    ops->gemv(p, stream);
}

void dequant_rows_cuda(const GpuMatrix& w, int64_t row0, int64_t n_rows, float* out, cudaStream_t stream) {
    const GpuTypeOps* ops = gpu_type_ops(w.type);
    if (!ops) throw CudaError("dequant_rows: " + not_native(w.type));
    ops->dequant_rows(w, row0, n_rows, out, stream);
}

void dequant_rows_bf16_cuda(const GpuMatrix& w, int64_t row0, int64_t n_rows, __nv_bfloat16* out, cudaStream_t stream) {
    const GpuTypeOps* ops = gpu_type_ops(w.type);
    if (!ops) throw CudaError("dequant_rows_bf16: " + not_native(w.type));
    ops->dequant_rows_bf16(w, row0, n_rows, out, stream);
}

void gather_rows_cuda(const GpuMatrix& w, const int32_t* ids, int64_t n, float* out, cudaStream_t stream) {
    const GpuTypeOps* ops = gpu_type_ops(w.type);
    if (!ops) throw CudaError("gather_rows: " + not_native(w.type));
    ops->gather_rows(w, ids, n, out, stream);
}

}  // namespace tandem
