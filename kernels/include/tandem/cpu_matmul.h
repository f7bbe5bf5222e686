// Weight matmuls on the CPU: y = W x for one token (decode) and Y = X W^T for many (prefill).
//
// A weight matrix is first packed (pack_weights) into the layout of the kernel path in use:
// the SIMD paths interleave 16 rows into "panels" (kernels/src/cpu_panels.h) so that one
// vector instruction works on 16 rows at once, keeping the GGUF block's bits (the packed
// matrix is the size of the GGUF one: +2-3% for Q4_K/Q5_K, whose scales are unpacked to bytes);
// the scalar path keeps the GGUF rows. Both decode and prefill read the packed matrix, so the
// GGUF original is not needed afterwards.
//
// As in ggml, the activations are quantized once per call for the quantized weight types and
// the inner products are integer:
//
//   weight type                  activation format (internal)        inner product
//   F32, F16, BF16               f32 (unchanged)                     float FMA
//   Q4_0 Q4_1 Q5_0 Q5_1 Q8_0     32-blocks: f32 scale + i8[32]       u8 x i8 -> i32
//                                (prompts: the scale shared by each
//                                256 columns)
//   Q4_K Q5_K Q6_K               256-blocks: f32 scale + i8[256]     u8 x i8 -> i32, the per-
//                                + i16 sums of each 16               sub-block mins via the sums
//
// The activation scale is amax/127, so each activation is off by at most amax/254 of its block.
// A call of more than one token (a prompt) takes amax over 256 columns for the 32-block types
// too, the granularity of the K-quants' activations here and in ggml, so that the prompt
// kernels apply each token's scale once per 8 blocks; one token (decode) keeps one scale per 32.
// On the demo pair that costs 0.03-0.07% of perplexity (bench/results/cpu-prompt.md, section
// 27; the error bounds: tests/test-cpu-matmul.cpp).
//
// Kernel paths, chosen once at run time from cpuid/xgetbv (best first):
//   "amx-bf16"      AMX-BF16 + AVX512-BF16 (Sapphire Rapids and later, where the OS grants the
//                   tile state): prompts of 16 tokens or more of the quantized types on BF16
//                   tiles, the weights dequantized to BF16 once per call, the activations rounded
//                   to BF16, FP32 sums (other numerics than the int8 paths': each weight and
//                   activation is off by at most 2^-9 of itself, where the int8 paths round each
//                   activation to 1/254 of its block's largest); decode and shorter prompts as
//                   avx512-vnni. The demo pair's perplexity on it equals that of the same
//                   weights in F32 to 4 digits, the int8 paths' is 0.03-0.07% higher
//                   (bench/results/cpu-prompt.md, section 35)
//   "avx512-vnni"   AVX-512 F/BW/VL + VNNI: 512-bit vpdpbusd / fma micro-kernels
//   "avx-vnni"      256-bit vpdpbusd micro-kernels: VEX-encoded on CPUs with AVX-VNNI (Alder
//                   Lake, Zen 5), else the same kernels EVEX-encoded where AVX512-VL + VNNI exist
//   "avx2"          AVX2 + FMA + F16C: 256-bit vpmaddubsw micro-kernels (fallback)
//   "scalar"        plain C++ reference twins on the GGUF rows (always available)
// and three that are never chosen automatically:
//   "amx"           AMX-INT8 tiles for 16-token tiles of the quantized types, avx512-vnni for
//                   the rest; measured slower than avx512-vnni so far (bench/results/cpu-prompt.md)
//   "amx-emulated", "amx-bf16-emulated"
//                   the amx paths' kernels with the tile instructions done in software: for
//                   testing them on CPUs without AMX
// The best supported path is used unless force_kernel_path() picks another.
//
// Performance: bench/results/cpu-prompt.md.
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
// amx_int8: the CPU has AMX-TILE + AMX-INT8 and the OS granted this process the tile state
// (arch_prctl(ARCH_REQ_XCOMP_PERM), asked for during detection); amx_bf16: that, and AMX-BF16.
struct CpuFeatures {
    bool avx2 = false, fma = false, f16c = false;
    bool avx512f = false, avx512bw = false, avx512vl = false, avx512vnni = false, avx512bf16 = false;
    bool avx_vnni = false;
    bool amx_int8 = false, amx_bf16 = false;
    // The CPU has AMX-TILE + AMX-INT8 but the OS did not grant the tile state (XCR0, or the
    // arch_prctl request refused): the amx paths are then unsupported.
    bool amx_refused = false;
};
const CpuFeatures& cpu_features();

// Name of the path pack_weights uses now ("scalar", "avx2", ...). Static string.
const char* kernel_path_name();

// Forces a path by name; "best" restores the automatic choice. Throws CpuKernelError for an
// unknown name or one this CPU cannot run. Applies to matrices packed afterwards (a packed
// matrix keeps the kernels it was packed for). Also caps ops_isa() at what a CPU whose best path
// this is would run ("avx2" and "avx-vnni": Avx2, "scalar": Scalar; "best": no cap), so a
// forced path measures the engine as that CPU would run it. Not thread-safe against
// pack_weights or running ops.
void force_kernel_path(const char* name);

// Whether the named path can run here (false for unknown names).
bool kernel_path_supported(const char* name);

// For "avx-vnni": whether its kernels run VEX-encoded (AVX-VNNI) here, rather than EVEX.
bool avx_vnni_is_vex();

// The vector code of the engine's other CPU ops (attention: cpu_attention.h; SwiGLU: cpu_ops.h):
// the widest this CPU has (Avx2 needs AVX2 + FMA + F16C; Avx512 AVX-512F as well), at most the
// cap. Tests lower the cap to reach each path on one CPU; force_kernel_path sets it too.
enum class OpsIsa { Scalar, Avx2, Avx512 };
OpsIsa ops_isa();
// Caps ops_isa() (OpsIsa::Avx512: no cap). Not thread-safe against running ops.
void cap_ops_isa(OpsIsa cap);

// True when pack_weights accepts `type` (F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K).
bool matmul_supports(GgmlType type);

// A weight matrix (rows, cols) packed for one kernel path. Owns its bytes; movable, not
// copyable. A default-constructed one is empty (rows() == 0, !*this).
class PackedWeights {
public:
    PackedWeights();
    ~PackedWeights();
    PackedWeights(PackedWeights&&) noexcept;
    PackedWeights& operator=(PackedWeights&&) noexcept;

    GgmlType type() const { return type_; }
    int64_t rows() const { return rows_; }
    int64_t cols() const { return cols_; }
    size_t bytes() const { return bytes_; }     // bytes of packed data held
    const char* kernel_path() const;            // the path it was packed for ("" when empty)
    explicit operator bool() const { return kernels_ != nullptr; }

private:
    friend PackedWeights pack_weights(GgmlType, const void*, int64_t, int64_t, ThreadPool*);
    friend void matvec(const PackedWeights&, const float*, float*, ThreadPool*);
    friend void matmul_group(const PackedWeights* const[], float* const[], int, const float*, int64_t, ThreadPool*);
    GgmlType type_ = GgmlType::F32;
    int64_t rows_ = 0, cols_ = 0;
    size_t bytes_ = 0;
    size_t panel_bytes_ = 0;        // panels layout: bytes per 16-row panel
    const void* kernels_ = nullptr;  // the path's kernel table
    uint8_t* data_ = nullptr;        // 64-byte aligned, freed by the destructor
};

// Packs W (rows, cols) of `type`, GGUF rows of row_size(type, cols) bytes, for the path in use.
// The result does not refer to W. cols must be a positive multiple of the type's block size
// and rows >= 0, else throws CpuKernelError (so does an unsupported type or a null W with
// rows > 0). pool may be nullptr (packs on the caller).
PackedWeights pack_weights(GgmlType type, const void* W, int64_t rows, int64_t cols, ThreadPool* pool);

// Decode: y[r] = dot(W row r, x) for r in [0, rows).  x (cols) f32, y (rows) f32; y must not
// alias x. Throws CpuKernelError for an empty w or null pointers (rows > 0). pool may be
// nullptr. Thread-safe for distinct outputs.
void matvec(const PackedWeights& w, const float* x, float* y, ThreadPool* pool);

// Prefill: Y[t*rows + r] = dot(W row r, X[t*cols ...]) for t in [0, n_tokens), r in [0, rows).
//   X  (n_tokens, cols) f32;  Y  (n_tokens, rows) f32, not aliasing X.
// The activations are quantized once, in tiles of up to 16 tokens, and every tile runs
// against the panels of each thread's share while they sit in cache.
// Same checks and threading as matvec; n_tokens >= 0.
void matmul(const PackedWeights& w, const float* X, int64_t n_tokens, float* Y, ThreadPool* pool);

// Y[i] = X W[i]^T for n matrices (1..8) that read the same activations (wq, wk, wv): X is
// quantized once and the panels of all of them are shared out over the pool together. The
// matrices must have the same type, cols and kernel path (else CpuKernelError); otherwise as
// matmul. n_tokens == 1 is a matvec of each.
void matmul_group(const PackedWeights* const w[], float* const Y[], int n, const float* X, int64_t n_tokens,
                  ThreadPool* pool);

}  // namespace cpu
}  // namespace tandem
