// Tensor element types and their block layouts, exactly as ggml/GGUF store them.
//
// One type is one row of the table returned by type_traits(): generic code (the GGUF
// reader, the matmul dispatch, `tandem info`) looks a type up there and never switches on
// it. The block structs below are the on-disk layout; each is pinned by a static_assert.
//
//   type   block  bytes  layout (per block)
//   F32        1      4  float
//   F16        1      2  IEEE half
//   BF16       1      2  upper half of an IEEE float
//   Q4_0      32     18  half d; u8 qs[16]            x = (q - 8) * d
//   Q4_1      32     20  half d, m; u8 qs[16]         x = q * d + m
//   Q5_0      32     22  half d; u8 qh[4]; u8 qs[16]  x = (q5 - 16) * d
//   Q5_1      32     24  half d, m; u8 qh[4]; qs[16]  x = q5 * d + m
//   Q8_0      32     34  half d; i8 qs[32]            x = q * d
//   Q4_K     256    144  half d, dmin; u8 scales[12] (8 x 6-bit scale+min); u8 qs[128]
//   Q5_K     256    176  as Q4_K plus u8 qh[32] (the 5th bit)
//   Q6_K     256    210  u8 ql[128]; u8 qh[64]; i8 scales[16]; half d
//
// In the 4-bit formats element j < 16 of a 32-block is the low nibble of qs[j], element
// j + 16 the high nibble. Types without a to_float here (Q2_K, Q3_K, ...) are still known
// by name and size so that `tandem info` can describe a file that uses them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>

// Marks the small helpers below as callable from CUDA kernels too (nvcc defines __CUDACC__).
#if defined(__CUDACC__)
#define TANDEM_HOST_DEVICE __host__ __device__
#else
#define TANDEM_HOST_DEVICE
#endif

namespace tandem {

enum class GgmlType : uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ4_NL = 20, IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, BF16 = 30,
};
constexpr uint32_t kGgmlTypeCount = 40;  // one past the largest id ggml has assigned so far

constexpr int QK4_0 = 32, QK4_1 = 32, QK5_0 = 32, QK5_1 = 32, QK8_0 = 32, QK_K = 256;
constexpr int K_SCALE_SIZE = 12;

using half_bits = uint16_t;  // raw IEEE binary16

struct block_q4_0 { half_bits d; uint8_t qs[QK4_0 / 2]; };
struct block_q4_1 { half_bits d, m; uint8_t qs[QK4_1 / 2]; };
struct block_q5_0 { half_bits d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; };
struct block_q5_1 { half_bits d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; };
struct block_q8_0 { half_bits d; int8_t qs[QK8_0]; };
struct block_q4_K { half_bits d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; };
struct block_q5_K { half_bits d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; };
struct block_q6_K { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; half_bits d; };

static_assert(sizeof(block_q4_0) == 2 + QK4_0 / 2, "wrong q4_0 block size");
static_assert(sizeof(block_q4_1) == 4 + QK4_1 / 2, "wrong q4_1 block size");
static_assert(sizeof(block_q5_0) == 2 + 4 + QK5_0 / 2, "wrong q5_0 block size");
static_assert(sizeof(block_q5_1) == 4 + 4 + QK5_1 / 2, "wrong q5_1 block size");
static_assert(sizeof(block_q8_0) == 2 + QK8_0, "wrong q8_0 block size");
static_assert(sizeof(block_q4_K) == 4 + K_SCALE_SIZE + QK_K / 2, "wrong q4_K block size");
static_assert(sizeof(block_q5_K) == 4 + K_SCALE_SIZE + QK_K / 8 + QK_K / 2, "wrong q5_K block size");
static_assert(sizeof(block_q6_K) == 2 + QK_K / 16 + 3 * QK_K / 4, "wrong q6_K block size");

// The j-th (scale, min) pair (j in 0..7) of a Q4_K/Q5_K block's 12 scale bytes, 6 bits each:
// pairs 0..3 are the low 6 bits of bytes j and j + 4; pairs 4..7 take their low 4 bits from
// byte j + 4 and their top 2 bits from the top bits of bytes j - 4 (scale) and j (min).
// `q` is the scale bytes, or a callable returning byte i (the CUDA GEMV reads them through the
// read-only cache).
template <class Bytes, class T>
TANDEM_HOST_DEVICE inline void get_scale_min_k4(int j, const Bytes& q, T* scale, T* min) {
    auto at = [&q](int i) {
        if constexpr (std::is_invocable_v<const Bytes&, int>) return q(i);
        else return q[i];
    };
    if (j < 4) {
        *scale = (T)(at(j) & 63);
        *min = (T)(at(j + 4) & 63);
    } else {
        *scale = (T)((at(j + 4) & 0xF) | ((at(j - 4) >> 6) << 4));
        *min = (T)((at(j + 4) >> 4) | ((at(j) >> 6) << 4));
    }
}

// Converts n values (n a multiple of block_size) from blocks to floats.
using to_float_fn = void (*)(const void* src, float* dst, int64_t n);
// Plain reference quantizer: n floats (a multiple of block_size) to blocks.
using from_float_fn = void (*)(const float* src, void* dst, int64_t n);

struct TypeTraits {
    const char* name = nullptr;     // ggml's name ("Q4_K"); nullptr: an id we do not know
    int64_t block_size = 0;         // elements per block
    size_t type_size = 0;           // bytes per block
    bool is_quantized = false;
    to_float_fn to_float = nullptr;             // nullptr: known but not computable here
    from_float_fn from_float_ref = nullptr;     // nullptr: we cannot write this type
};

// The row for a raw type id, or nullptr when the id is not a type we know.
const TypeTraits* type_traits(uint32_t type);
inline const TypeTraits& type_traits(GgmlType t) { return *type_traits(static_cast<uint32_t>(t)); }

// Bytes taken by a row of n elements; n must be a multiple of the block size.
size_t row_size(GgmlType t, int64_t n);

// IEEE half <-> float, portable (no F16C needed), round-to-nearest-even.
float fp16_to_fp32(half_bits h);
half_bits fp32_to_fp16(float f);
float bf16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f);  // round-to-nearest-even, NaN kept quiet

}  // namespace tandem
