// Shared CUDA helpers for the Tandem kernels: error checks and the SAS exp2.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>
#include <utility>

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

// ---- programmatic dependent launch (sm_90) ----------------------------------------------
// Every kernel launched by launch_kernel() starts with griddep_wait() (it then reads nothing
// the previous kernel writes before that kernel has finished) and griddep_launch_dependents()
// (the next kernel may be scheduled now, to wait in its own griddep_wait()). Both are no-ops
// before sm_90 and in a kernel that was not launched that way.
__device__ __forceinline__ void griddep_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void griddep_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void griddep_enter() {
    griddep_wait();
    griddep_launch_dependents();
}

#ifndef TANDEM_PDL
#define TANDEM_PDL 1
#endif

// kernel<<<grid, block, smem, stream>>>(args...), with programmatic dependent launch where it
// is built in (TANDEM_PDL), the device has it (sm_90+) and the stream is not the legacy
// default stream. Checks the launch.
template <class... Params, class... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                   Args&&... args) {
    static const int cc_major = [] {
        int dev = 0, v = 0;
        TANDEM_CHECK_CUDA(cudaGetDevice(&dev));
        TANDEM_CHECK_CUDA(cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, dev));
        return v;
    }();
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = TANDEM_PDL && cc_major >= 9 && stream != nullptr ? 1 : 0;
    TANDEM_CHECK_CUDA(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
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

}  // namespace tandem
