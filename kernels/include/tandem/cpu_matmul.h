// Weight matmuls on the CPU: y = W x for one token (decode) and Y = X W^T for many (prefill),
// with W left in its GGUF block format and read in place (typically straight from the mmap).
//
// As in ggml, the activations are quantized once per call for the quantized weight types and
// the inner products are integer:
//
//   weight type                  activation format (internal)        inner product
//   F32, F16, BF16               f32 (unchanged)                     float FMA
//   Q4_0 Q4_1 Q5_0 Q5_1 Q8_0     32-blocks: f32 scale + i8[32]       u8/i8 x i8 -> i32
//   Q4_K Q5_K Q6_K               256-blocks: f32 scale + i8[256]     u8 x i8 -> i32, the per-
//                                + i16 sums of each 16               sub-block mins via the sums
//
// The activation scale is amax/127, so each activation is off by at most amax/254 of its block
// (see the error bounds in tests/test-cpu-matmul.cpp).
//
// Kernel paths ("tiers"), chosen once at run time from cpuid/xgetbv:
//   "scalar"       plain C++ reference twins (always available, obviously correct)
//   "avx2"         AVX2 + FMA + F16C
//   "avx512-vnni"  AVX-512 F/BW + VNNI: 512-bit kernels for F32/F16/BF16 and Q8_0 (vpdpbusd);
//                  the AVX2 kernels for the other types, which measured faster at decode
// The best supported path is used unless force_kernel_path() picks another. AVX-VNNI (the
// 256-bit VNNI of recent client CPUs) is detected but has no kernels of its own yet.
//
// Performance (bench/results/cpu-matmul.md, 2 threads of a Xeon): decode reads the weights at
// 66-95% of the measured memory bandwidth; prefill reaches 36-105 GFLOP/s.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#include "tandem/quant_types.h"
#include "tandem/thread_pool.h"

namespace tandem {

// Bad arguments to a CPU kernel (unsupported type, cols not a multiple of the block, unknown
// or unsupported kernel path). The message names the function, the type and the reason.
class CpuKernelError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

namespace cpu {

// What the running CPU (and OS, via XCR0) supports. Detected once, on first use; thread-safe.
struct CpuFeatures {
    bool avx2 = false, fma = false, f16c = false;
    bool avx512f = false, avx512bw = false, avx512vl = false, avx512vnni = false;
    bool avx_vnni = false;
};
const CpuFeatures& cpu_features();

// Name of the path matvec/matmul use now ("scalar", "avx2", "avx512-vnni"). Static string.
const char* kernel_path_name();

// Forces a path by name; "best" restores the automatic choice. Throws CpuKernelError for an
// unknown name or one this CPU cannot run. For tests and benchmarks: not thread-safe against
// matvec/matmul running at the same time.
void force_kernel_path(const char* name);

// Whether the named path can run here (false for unknown names).
bool kernel_path_supported(const char* name);

// True when matvec/matmul accept `type` (F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K).
bool matmul_supports(GgmlType type);

// Decode: y[r] = dot(W row r, x) for r in [0, rows).
//   W  (rows, cols) in `type`'s block layout, rows contiguous, row stride row_size(type, cols)
//   x  (cols) f32,  y (rows) f32; y must not alias W or x.
// cols must be a positive multiple of the type's block size and rows >= 0, else throws
// CpuKernelError (so does an unsupported type). pool may be nullptr (runs on the caller).
// Thread-safe for distinct outputs; uses a per-thread scratch buffer for the quantized x.
void matvec(GgmlType type, const void* W, int64_t rows, int64_t cols, const float* x, float* y,
            ThreadPool* pool);

// Prefill: Y[t*rows + r] = dot(W row r, X[t*cols ...]) for t in [0, n_tokens), r in [0, rows).
//   W  (rows, cols) as for matvec;  X  (n_tokens, cols) f32;  Y  (n_tokens, rows) f32.
// Each weight block is unpacked once per group of tokens and row tiles stay in cache while the
// tokens stream past, so this is much faster per token than n_tokens calls to matvec.
// Same argument checks and threading as matvec; n_tokens >= 0.
void matmul(GgmlType type, const void* W, int64_t rows, int64_t cols, const float* X,
            int64_t n_tokens, float* Y, ThreadPool* pool);

}  // namespace cpu
}  // namespace tandem
