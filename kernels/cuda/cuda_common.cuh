// Shared CUDA helpers for the Tandem kernels: error checks and the SAS exp2.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace tandem {

struct CudaError : std::runtime_error {
    explicit CudaError(const std::string& m) : std::runtime_error("cuda: " + m) {}
};

#define TANDEM_CHECK_CUDA(expr)                                                              \
    do {                                                                                     \
        cudaError_t e_ = (expr);                                                             \
        if (e_ != cudaSuccess)                                                               \
            throw ::tandem::CudaError(std::string(#expr) + " failed at " + __FILE__ + ":" +  \
                                      std::to_string(__LINE__) + ": " + cudaGetErrorString(e_)); \
    } while (0)

// Multiprocessors of the current device, looked up once (host).
inline int sm_count() {
    static const int n = [] {
        int dev = 0, v = 0;
        TANDEM_CHECK_CUDA(cudaGetDevice(&dev));
        TANDEM_CHECK_CUDA(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
        return v;
    }();
    return n;
}

// SAS: 2^x for x <= 0 as turbo_sas_exp2 (CPU twin): x = -(n + f), 2^-f by Horner in FP16
// (one rounding per __hfma), 2^-n by subtracting n from the float exponent (exact: the
// polynomial lies in [0.5, 1] and n <= 60). Zero below the threshold or for NaN.
__device__ __forceinline__ float sas_exp2(float x, float threshold, int degree, __half c1,
                                          __half c2, __half c3) {
    if (!(x >= threshold)) return 0.0f;
    const float y = -x;
    const float n = floorf(y);
    const __half f = __float2half_rn(y - n);
    __half r = degree == 3 ? __hfma(c3, f, c2) : c2;
    r = __hfma(r, f, c1);
    r = __hfma(r, f, __float2half_rn(1.0f));
    return __int_as_float(__float_as_int(__half2float(r)) - ((int)n << 23));
}

// sas_exp2 of two values at once: the same bits as two sas_exp2 calls (HFMA2 rounds each
// half as HFMA does), in fewer instructions (one pack, Horner on the pair).
__device__ __forceinline__ float2 sas_exp2_pair(float x0, float x1, float threshold, int degree, __half2 c1,
                                                __half2 c2, __half2 c3) {
    const float y0 = -x0, y1 = -x1;
    const float n0 = floorf(y0), n1 = floorf(y1);
    const __half2 f = __floats2half2_rn(y0 - n0, y1 - n1);
    __half2 r = degree == 3 ? __hfma2(c3, f, c2) : c2;
    r = __hfma2(r, f, c1);
    r = __hfma2(r, f, __float2half2_rn(1.0f));
    const float2 rf = __half22float2(r);
    const float p0 = __int_as_float(__float_as_int(rf.x) - ((int)n0 << 23));
    const float p1 = __int_as_float(__float_as_int(rf.y) - ((int)n1 << 23));
    return make_float2(x0 >= threshold ? p0 : 0.0f, x1 >= threshold ? p1 : 0.0f);  // NaN: 0
}

// sas_exp2_pair(-y0, -y1) for y >= 0 (or +inf, NaN: 0), with the same bits, in full-rate
// instructions only: floor(y) is the low bits of y + 1.5 * 2^23 added rounding down (exact for
// y < 2^22; larger y are under any threshold), so neither floorf nor a float-to-int conversion
// (both quarter-rate on sm_90) is needed. y_max = -threshold.
__device__ __forceinline__ float2 sas_exp2_pair_neg(float y0, float y1, float y_max, int degree, __half2 c1, __half2 c2,
                                                    __half2 c3) {
    constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23, bits 0x4B400000
    const float t0 = __fadd_rd(y0, kMagic), t1 = __fadd_rd(y1, kMagic);
    const __half2 f = __floats2half2_rn(y0 - (t0 - kMagic), y1 - (t1 - kMagic));
    __half2 r = degree == 3 ? __hfma2(c3, f, c2) : c2;
    r = __hfma2(r, f, c1);
    const __half one = __ushort_as_half((unsigned short)0x3C00);  // bits, not a per-call conversion
    r = __hfma2(r, f, __halves2half2(one, one));
    const float2 rf = __half22float2(r);
    const float p0 = __int_as_float(__float_as_int(rf.x) - ((__float_as_int(t0) - 0x4B400000) << 23));
    const float p1 = __int_as_float(__float_as_int(rf.y) - ((__float_as_int(t1) - 0x4B400000) << 23));
    return make_float2(y0 <= y_max ? p0 : 0.0f, y1 <= y_max ? p1 : 0.0f);
}

// 2^x by the special-function unit (ex2.approx, flush to zero): 2^-inf = 0.
__device__ __forceinline__ float ex2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// kIntBias + x as a float, exactly, for an INT32 x with |x| < 2^22: x's bits added to those of
// kIntBias = 1.5 * 2^23 (one integer add, no quarter-rate I2F); minus kIntBias it is (float)x.
constexpr float kIntBias = 12582912.0f;
__device__ __forceinline__ float int_plus_bias(int x) { return __int_as_float(x + 0x4B400000); }

// Turbo's blockwise INT8 quantization of FP16 rows, 8 halves (16 bytes) at a time: the block's
// amax, then codes round(x * inv) clamped to +-127 with inv = 127 / amax.
__device__ __forceinline__ float amax_half8(const uint4& v, float amax) {
    const __half2* h2 = (const __half2*)&v;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        const float2 f = __half22float2(h2[e]);
        amax = fmaxf(amax, fmaxf(fabsf(f.x), fabsf(f.y)));
    }
    return amax;
}
__device__ __forceinline__ uint2 quantize_half8_s8(const uint4& v, float inv) {
    const __half2* h2 = (const __half2*)&v;
    uint32_t w[2] = {0, 0};
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        const float2 f = __half22float2(h2[e]);
        const int a0 = max(-127, min(127, __float2int_rn(f.x * inv)));
        const int a1 = max(-127, min(127, __float2int_rn(f.y * inv)));
        w[e / 2] |= ((uint32_t)(a0 & 0xff) | ((uint32_t)(a1 & 0xff) << 8)) << (16 * (e % 2));
    }
    return make_uint2(w[0], w[1]);
}

}  // namespace tandem
