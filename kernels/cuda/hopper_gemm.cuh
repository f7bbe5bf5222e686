// Prefill GEMM of quantized weights on Hopper (sm_90a: TMA, mbarriers, wgmma; hopper_gemm.cu):
// the weight blocks are dequantized in registers straight into wgmma's A operand, so no BF16
// copy of the weights is written. Built for sm_90a only: callers check
// hopper_gemm_available() and say which GEMM runs.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "gemv.cuh"

namespace tandem {

// True when the current device is sm_90 (H100/H200), the only target the kernel is built for.
bool hopper_gemm_available();
// True for the weight types the kernel reads (Q4_0, Q8_0).
bool hopper_gemm_supports(GgmlType type);

// y (n, ldy) = x (n, K) w^T, or y += that with accumulate; K = w.cols. The weights are
// dequantized to the same BF16 values as dequant_rows_bf16_cuda gives, the products are
// summed in FP32 (in another order than cuBLAS does).
struct HopperGemmArgs {
    GpuMatrix w;                        // (rows, K), Q4_0 or Q8_0 (gemv.cuh's device layout)
    const __nv_bfloat16* x = nullptr;   // (n, ldx) row-major, 16-byte aligned
    int64_t ldx = 0;                    // elements, >= K, a multiple of 8
    int64_t n = 0;                      // rows of x and y (tokens)
    float* y = nullptr;                 // (n, ldy): y[t * ldy + r] for weight row r
    int64_t ldy = 0;                    // >= w.rows
    bool accumulate = false;
    int tile_tokens = 0;                // tokens per CTA: 64, 128 or 256, or 0 (64 or 128 by the grid's fill)
};
// Throws CudaError naming the field on bad arguments or a non-sm_90 device; launches on
// `stream` (no allocation, no synchronization: graph-capturable) and checks the launch.
void hopper_gemm_launch(const HopperGemmArgs& a, cudaStream_t stream);

}  // namespace tandem
