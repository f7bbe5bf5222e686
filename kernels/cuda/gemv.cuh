// Weight matrices on the GPU: the repacked block layout, decode GEMV (y = W x for one token,
// dequantized on the fly) and row dequantization (for prefill GEMMs and embedding lookups).
//
// Device layout of a (rows, cols) matrix: the GGUF blocks split into regions ("structure of
// arrays") so that every region is 16-byte aligned and a lane loads its quants with 16-byte
// loads. The bytes are the GGUF bytes, regrouped; nothing is requantized.
//
//   type   q region (row-major by block)            s region               d region
//   F32    float[rows*cols]                         -                      -
//   F16    half[rows*cols]                          -                      -
//   Q8_0   i8[rows*cols]                            half d[rows*cols/32]   -
//   Q4_0   u8 qs[rows*cols/32][16]                  half d[rows*cols/32]   -
//   Q4_K   u8 qs[rows*cols/256][128]                {half d, dmin; u8 scales[12]}[...] (16 B)
//   Q6_K   {u8 ql[128]; u8 qh[64]}[rows*cols/256]   i8 scales[...][16]     half d[...]
//
// Other GGUF types are not native here: the engine dequantizes them to F16 at load.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "tandem/quant_types.h"

namespace tandem {

// A matrix in device memory (see the layout above). rows = outputs, cols = inputs.
struct GpuMatrix {
    GgmlType type = GgmlType::F32;
    int64_t rows = 0, cols = 0;
    const void* q = nullptr;
    const void* s = nullptr;
    const void* d = nullptr;
};

// True when `type` has a native device layout (F32 F16 Q8_0 Q4_0 Q4_K Q6_K).
bool gpu_matrix_native(GgmlType type);
// Bytes of the repacked matrix (q, s and d regions, each rounded up to 256 bytes).
size_t gpu_matrix_bytes(GgmlType type, int64_t rows, int64_t cols);
// Host: regroups GGUF rows (src: rows x row_size(type, cols) bytes) into dst
// (gpu_matrix_bytes bytes), and returns the matrix pointing into `dst_device`, the device
// address dst will be copied to. Throws std::invalid_argument for a non-native type or cols
// not a multiple of the block size.
GpuMatrix gpu_matrix_repack(GgmlType type, int64_t rows, int64_t cols, const void* src, uint8_t* dst,
                            const uint8_t* dst_device);

struct GemvParams {
    GpuMatrix w;              // (rows, cols)
    GpuMatrix w2;             // optional (same shape): y = silu(w x) * (w2 x)  (SwiGLU)
    const float* x = nullptr;     // (cols)
    const float* norm = nullptr;  // optional (cols): x is replaced by rmsnorm(x) * norm
    float eps = 1e-5f;
    const float* bias = nullptr;  // optional (rows), added to w x
    float* y = nullptr;           // (rows)
    bool accumulate = false;      // y += result (residual add) instead of y = result
};
// One token: one warp per output row, x (normalized) staged in shared memory. Launches on
// `stream` (graph-capturable: no allocation, no synchronization). Throws CudaError.
void gemv_cuda(const GemvParams& p, cudaStream_t stream);

// out (n_rows, cols) f32 = rows [row0, row0 + n_rows) of w, dequantized.
void dequant_rows_cuda(const GpuMatrix& w, int64_t row0, int64_t n_rows, float* out, cudaStream_t stream);
// The same rows rounded to bfloat16 (round to nearest even): the prefill GEMMs' tensor-core input.
// Quantized types write 8 elements a thread and need `out` 16-byte aligned (CudaError if not).
void dequant_rows_bf16_cuda(const GpuMatrix& w, int64_t row0, int64_t n_rows, __nv_bfloat16* out, cudaStream_t stream);
// out (n, cols) f32 = rows ids[0..n) of w (ids in device memory): the embedding lookup.
void gather_rows_cuda(const GpuMatrix& w, const int32_t* ids, int64_t n, float* out, cudaStream_t stream);

}  // namespace tandem
