// The "scalar" path: plain reference twins of every CPU matmul kernel, and the activation
// quantizers every path shares. Written for obviousness, not speed: each weight element is
// decoded to its integer level exactly as the format table in quant_types.h describes, then
// multiplied with the quantized activation in int32 arithmetic, one block at a time.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu_kernels.h"

namespace tandem::cpu::detail {

static float h2f(half_bits h) { return fp16_to_fp32(h); }

// ---- activation quantizers -----------------------------------------------------------------
//
// These run once per matvec over the whole activation vector on one thread, so they must not
// cost more than a small fraction of the matvec: no libm calls in the loops. round_i8 is
// round-to-nearest-even (as lrintf in the default mode) for |v| <= 127.5: adding 1.5 * 2^23
// puts the rounded integer in the low mantissa bits.

static inline int8_t round_i8(float v) {
    float f = v + 12582912.0f;
    int32_t i;
    std::memcpy(&i, &f, 4);
    return (int8_t)((i & 0x007fffff) - 0x00400000);
}

static inline float abs_max(const float* x, int n) {
    float amax = 0;
    for (int j = 0; j < n; j++) {
        const float a = std::fabs(x[j]);
        amax = a > amax ? a : amax;
    }
    return amax;
}

// One block_q8a of the 32 values at x with scale d.
static void put_q8a(const float* x, float d, block_q8a& y) {
    const float id = d ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        y.qs[j] = round_i8(x[j] * id);
        sum += y.qs[j];
    }
    y.d = d;
    y.s = d * (float)sum;
}

// group_blocks = 1: Q8A; kActGroupBlocks: Q8AG (the last group of a row may be shorter).
static void quantize_q8a(const float* x, block_q8a* y, int64_t n, int64_t group_blocks) {
    const int64_t n_blocks = n / 32;
    for (int64_t g = 0; g < n_blocks; g += group_blocks) {
        const int64_t nb = std::min(group_blocks, n_blocks - g);
        const float d = abs_max(x + 32 * g, (int)(32 * nb)) / 127;
        for (int64_t i = g; i < g + nb; i++) put_q8a(x + 32 * i, d, y[i]);
    }
}

static void quantize_q8k(const float* x, block_q8k* y, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        const float d = abs_max(x, QK_K) / 127;
        const float id = d ? 1.0f / d : 0.0f;
        for (int j = 0; j < QK_K; j++) y[i].qs[j] = round_i8(x[j] * id);
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += y[i].qs[16 * g + l];
            y[i].bsums[g] = (int16_t)sum;
        }
        y[i].d = d;
    }
}

void quantize_act(ActFormat f, const float* x, void* dst, int64_t n) {
    switch (f) {
        case ActFormat::F32: std::memcpy(dst, x, (size_t)n * sizeof(float)); break;
        case ActFormat::Q8A: quantize_q8a(x, (block_q8a*)dst, n, 1); break;
        case ActFormat::Q8AG: quantize_q8a(x, (block_q8a*)dst, n, kActGroupBlocks); break;
        case ActFormat::Q8K: quantize_q8k(x, (block_q8k*)dst, n); break;
    }
}

size_t act_row_size(ActFormat f, int64_t n) {
    switch (f) {
        case ActFormat::F32: return (size_t)n * sizeof(float);
        case ActFormat::Q8A:
        case ActFormat::Q8AG: return (size_t)(n / 32) * sizeof(block_q8a);
        case ActFormat::Q8K: return (size_t)(n / QK_K) * sizeof(block_q8k);
    }
    return 0;
}

// ---- float weights -------------------------------------------------------------------------

// Double accumulation: the reference should not be the least accurate path.
static float dot_f32(int64_t n, const void* w, const void* x) {
    const float* a = (const float*)w;
    const float* b = (const float*)x;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return (float)s;
}
static float dot_f16(int64_t n, const void* w, const void* x) {
    const half_bits* a = (const half_bits*)w;
    const float* b = (const float*)x;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)fp16_to_fp32(a[i]) * b[i];
    return (float)s;
}
static float dot_bf16(int64_t n, const void* w, const void* x) {
    const uint16_t* a = (const uint16_t*)w;
    const float* b = (const float*)x;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)bf16_to_fp32(a[i]) * b[i];
    return (float)s;
}

// ---- levels (cpu_kernels.h) -------------------------------------------------------------------

void levels_q4(const uint8_t qs[16], uint8_t L[32]) {
    for (int j = 0; j < 16; j++) {
        L[j] = qs[j] & 0xF;
        L[j + 16] = qs[j] >> 4;
    }
}

void levels_q5(const uint8_t qs[16], const uint8_t qh[4], uint8_t L[32]) {
    uint32_t h;
    std::memcpy(&h, qh, 4);
    levels_q4(qs, L);
    for (int j = 0; j < 32; j++) L[j] |= (uint8_t)(((h >> j) & 1) << 4);
}

void levels_q4_K(const block_q4_K& b, uint8_t L[QK_K]) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            L[64 * c + l] = b.qs[32 * c + l] & 0xF;
            L[64 * c + 32 + l] = b.qs[32 * c + l] >> 4;
        }
}

void levels_q5_K(const block_q5_K& b, uint8_t L[QK_K]) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            const int h = b.qh[l];
            L[64 * c + l] = (uint8_t)((b.qs[32 * c + l] & 0xF) | (((h >> (2 * c)) & 1) << 4));
            L[64 * c + 32 + l] = (uint8_t)((b.qs[32 * c + l] >> 4) | (((h >> (2 * c + 1)) & 1) << 4));
        }
}

void levels_q6_K(const block_q6_K& b, uint8_t L[QK_K]) {
    for (int c = 0; c < 2; c++) {
        const uint8_t* ql = b.ql + 64 * c;
        const uint8_t* qh = b.qh + 32 * c;
        for (int l = 0; l < 32; l++) {
            L[128 * c + l + 0] = (uint8_t)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4));
            L[128 * c + l + 32] = (uint8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
            L[128 * c + l + 64] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
            L[128 * c + l + 96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
        }
    }
}

// ---- 32-block weights x block_q8a ----------------------------------------------------------

static float dot_q4_0(int64_t n, const void* w, const void* x) {
    const block_q4_0* a = (const block_q4_0*)w;
    const block_q8a* b = (const block_q8a*)x;
    float s = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        uint8_t L[32];
        levels_q4(a[i].qs, L);
        int sumi = 0;
        for (int j = 0; j < 32; j++) sumi += (L[j] - 8) * b[i].qs[j];
        s += h2f(a[i].d) * b[i].d * (float)sumi;
    }
    return s;
}
static float dot_q4_1(int64_t n, const void* w, const void* x) {
    const block_q4_1* a = (const block_q4_1*)w;
    const block_q8a* b = (const block_q8a*)x;
    float s = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        uint8_t L[32];
        levels_q4(a[i].qs, L);
        int sumi = 0;
        for (int j = 0; j < 32; j++) sumi += L[j] * b[i].qs[j];
        s += h2f(a[i].d) * b[i].d * (float)sumi + h2f(a[i].m) * b[i].s;  // (q*d + m) . y
    }
    return s;
}
static float dot_q5_0(int64_t n, const void* w, const void* x) {
    const block_q5_0* a = (const block_q5_0*)w;
    const block_q8a* b = (const block_q8a*)x;
    float s = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        uint8_t L[32];
        levels_q5(a[i].qs, a[i].qh, L);
        int sumi = 0;
        for (int j = 0; j < 32; j++) sumi += (L[j] - 16) * b[i].qs[j];
        s += h2f(a[i].d) * b[i].d * (float)sumi;
    }
    return s;
}
static float dot_q5_1(int64_t n, const void* w, const void* x) {
    const block_q5_1* a = (const block_q5_1*)w;
    const block_q8a* b = (const block_q8a*)x;
    float s = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        uint8_t L[32];
        levels_q5(a[i].qs, a[i].qh, L);
        int sumi = 0;
        for (int j = 0; j < 32; j++) sumi += L[j] * b[i].qs[j];
        s += h2f(a[i].d) * b[i].d * (float)sumi + h2f(a[i].m) * b[i].s;
    }
    return s;
}
static float dot_q8_0(int64_t n, const void* w, const void* x) {
    const block_q8_0* a = (const block_q8_0*)w;
    const block_q8a* b = (const block_q8a*)x;
    float s = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        int sumi = 0;
        for (int j = 0; j < 32; j++) sumi += a[i].qs[j] * b[i].qs[j];
        s += h2f(a[i].d) * b[i].d * (float)sumi;
    }
    return s;
}

// ---- K-quant weights x block_q8k -----------------------------------------------------------

// Q4_K/Q5_K: x = d*sc_j*L - dmin*m_j for sub-block j of 32; the min term uses the bsums.
static float dot_k4_levels(const uint8_t L[QK_K], half_bits dh, half_bits dminh, const uint8_t* scales,
                           const block_q8k& b) {
    uint8_t sc[8], mn[8];
    unpack_scales_k4(scales, sc, mn);
    int sumi = 0, summ = 0;
    for (int j = 0; j < 8; j++) {
        int s32 = 0;
        for (int l = 0; l < 32; l++) s32 += L[32 * j + l] * b.qs[32 * j + l];
        sumi += sc[j] * s32;
        summ += mn[j] * (b.bsums[2 * j] + b.bsums[2 * j + 1]);
    }
    return b.d * (h2f(dh) * (float)sumi - h2f(dminh) * (float)summ);
}

static float dot_q4_K(int64_t n, const void* w, const void* x) {
    const block_q4_K* a = (const block_q4_K*)w;
    const block_q8k* b = (const block_q8k*)x;
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t L[QK_K];
        levels_q4_K(a[i], L);
        s += dot_k4_levels(L, a[i].d, a[i].dmin, a[i].scales, b[i]);
    }
    return s;
}

static float dot_q5_K(int64_t n, const void* w, const void* x) {
    const block_q5_K* a = (const block_q5_K*)w;
    const block_q8k* b = (const block_q8k*)x;
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t L[QK_K];
        levels_q5_K(a[i], L);
        s += dot_k4_levels(L, a[i].d, a[i].dmin, a[i].scales, b[i]);
    }
    return s;
}

// Q6_K: x = d * sc_g * (L - 32) for group g of 16 elements.
static float dot_q6_K(int64_t n, const void* w, const void* x) {
    const block_q6_K* a = (const block_q6_K*)w;
    const block_q8k* b = (const block_q8k*)x;
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t L[QK_K];
        levels_q6_K(a[i], L);
        int sumi = 0;
        for (int g = 0; g < QK_K / 16; g++) {
            int s16 = 0;
            for (int l = 0; l < 16; l++) s16 += (L[16 * g + l] - 32) * b[i].qs[16 * g + l];
            sumi += a[i].scales[g] * s16;
        }
        s += h2f(a[i].d) * b[i].d * (float)sumi;
    }
    return s;
}

// ---- the table -----------------------------------------------------------------------------

template <float (*Dot)(int64_t, const void*, const void*)>
static void gemm_rows(int64_t n, const void* W, size_t ldw, int64_t nr, const void* X, size_t ldx,
                      int64_t nt, float* Y, int64_t ldy) {
    for (int64_t t = 0; t < nt; t++)
        for (int64_t r = 0; r < nr; r++)
            Y[t * ldy + r] = Dot(n, (const char*)W + r * ldw, (const char*)X + t * ldx);
}

static KernelSet make_scalar() {
    KernelSet k;
    k.name = "scalar";
    k.layout = Layout::Rows;
    auto set = [&](GgmlType t, gemm_fn f) { k.k[(uint32_t)t].rows = f; };
    set(GgmlType::F32, gemm_rows<dot_f32>);
    set(GgmlType::F16, gemm_rows<dot_f16>);
    set(GgmlType::BF16, gemm_rows<dot_bf16>);
    set(GgmlType::Q4_0, gemm_rows<dot_q4_0>);
    set(GgmlType::Q4_1, gemm_rows<dot_q4_1>);
    set(GgmlType::Q5_0, gemm_rows<dot_q5_0>);
    set(GgmlType::Q5_1, gemm_rows<dot_q5_1>);
    set(GgmlType::Q8_0, gemm_rows<dot_q8_0>);
    set(GgmlType::Q4_K, gemm_rows<dot_q4_K>);
    set(GgmlType::Q5_K, gemm_rows<dot_q5_K>);
    set(GgmlType::Q6_K, gemm_rows<dot_q6_K>);
    return k;
}

const KernelSet& kernels_scalar() {
    static const KernelSet k = make_scalar();
    return k;
}

}  // namespace tandem::cpu::detail
