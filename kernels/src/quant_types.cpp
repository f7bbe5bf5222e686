// The type table and the plain reference (de)quantizers for every block format we compute
// with. These are the `_ref` twins: SIMD and CUDA kernels are tested against them.
#include "tandem/quant_types.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace tandem {

// ---- small helpers -----------------------------------------------------------------------

static float h2f(half_bits h) { return fp16_to_fp32(h); }
static int nearest_int(float f) { return (int)std::lrintf(f); }

static void set_scale_min_k4(int j, uint8_t* q, uint8_t ls, uint8_t lm) {
    if (j < 4) {
        q[j] = (uint8_t)((q[j] & 0xC0) | ls);
        q[j + 4] = (uint8_t)((q[j + 4] & 0xC0) | lm);
    } else {
        q[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        q[j - 4] = (uint8_t)((q[j - 4] & 0x3F) | ((ls >> 4) << 6));
        q[j - 0] = (uint8_t)((q[j - 0] & 0x3F) | ((lm >> 4) << 6));
    }
}

// ---- plain float formats -------------------------------------------------------------------

static void f32_to_float(const void* src, float* y, int64_t n) { std::memcpy(y, src, (size_t)n * 4); }
static void f32_from_float(const float* x, void* dst, int64_t n) { std::memcpy(dst, x, (size_t)n * 4); }
static void f16_to_float(const void* src, float* y, int64_t n) {
    const half_bits* x = (const half_bits*)src;
    for (int64_t i = 0; i < n; i++) y[i] = fp16_to_fp32(x[i]);
}
static void f16_from_float(const float* x, void* dst, int64_t n) {
    half_bits* y = (half_bits*)dst;
    for (int64_t i = 0; i < n; i++) y[i] = fp32_to_fp16(x[i]);
}
static void bf16_to_float(const void* src, float* y, int64_t n) {
    const uint16_t* x = (const uint16_t*)src;
    for (int64_t i = 0; i < n; i++) y[i] = bf16_to_fp32(x[i]);
}
static void bf16_from_float(const float* x, void* dst, int64_t n) {
    uint16_t* y = (uint16_t*)dst;
    for (int64_t i = 0; i < n; i++) y[i] = fp32_to_bf16(x[i]);
}

// ---- 32-element block formats --------------------------------------------------------------

static void q4_0_to_float(const void* src, float* y, int64_t n) {
    const block_q4_0* b = (const block_q4_0*)src;
    for (int64_t i = 0; i < n / QK4_0; i++, y += QK4_0) {
        const float d = h2f(b[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = ((b[i].qs[j] & 0x0F) - 8) * d;
            y[j + QK4_0 / 2] = ((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}
static void q4_0_from_float(const float* x, void* dst, int64_t n) {
    block_q4_0* b = (block_q4_0*)dst;
    for (int64_t i = 0; i < n / QK4_0; i++, x += QK4_0) {
        float amax = 0, max = 0;  // max keeps its sign so that the extreme maps to -8 exactly
        for (int j = 0; j < QK4_0; j++)
            if (std::fabs(x[j]) > amax) { amax = std::fabs(x[j]); max = x[j]; }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            const uint8_t q0 = (uint8_t)std::min(15, (int)(x[j] * id + 8.5f));
            const uint8_t q1 = (uint8_t)std::min(15, (int)(x[j + QK4_0 / 2] * id + 8.5f));
            b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void q4_1_to_float(const void* src, float* y, int64_t n) {
    const block_q4_1* b = (const block_q4_1*)src;
    for (int64_t i = 0; i < n / QK4_1; i++, y += QK4_1) {
        const float d = h2f(b[i].d), m = h2f(b[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[j] = (b[i].qs[j] & 0x0F) * d + m;
            y[j + QK4_1 / 2] = (b[i].qs[j] >> 4) * d + m;
        }
    }
}
static void q4_1_from_float(const float* x, void* dst, int64_t n) {
    block_q4_1* b = (block_q4_1*)dst;
    for (int64_t i = 0; i < n / QK4_1; i++, x += QK4_1) {
        float mn = x[0], mx = x[0];
        for (int j = 1; j < QK4_1; j++) { mn = std::min(mn, x[j]); mx = std::max(mx, x[j]); }
        const float d = (mx - mn) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        b[i].m = fp32_to_fp16(mn);
        for (int j = 0; j < QK4_1 / 2; j++) {
            const uint8_t q0 = (uint8_t)std::min(15, (int)((x[j] - mn) * id + 0.5f));
            const uint8_t q1 = (uint8_t)std::min(15, (int)((x[j + QK4_1 / 2] - mn) * id + 0.5f));
            b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

// The fifth bit of element j is bit j of qh (elements 16..31 use bits 16..31).
static int q5_high_bit(uint32_t qh, int j) { return (int)((qh >> j) & 1) << 4; }

static void q5_0_to_float(const void* src, float* y, int64_t n) {
    const block_q5_0* b = (const block_q5_0*)src;
    for (int64_t i = 0; i < n / QK5_0; i++, y += QK5_0) {
        const float d = h2f(b[i].d);
        uint32_t qh;
        std::memcpy(&qh, b[i].qh, 4);
        for (int j = 0; j < QK5_0 / 2; j++) {
            y[j] = (((b[i].qs[j] & 0x0F) | q5_high_bit(qh, j)) - 16) * d;
            y[j + QK5_0 / 2] = (((b[i].qs[j] >> 4) | q5_high_bit(qh, j + 16)) - 16) * d;
        }
    }
}
static void q5_0_from_float(const float* x, void* dst, int64_t n) {
    block_q5_0* b = (block_q5_0*)dst;
    for (int64_t i = 0; i < n / QK5_0; i++, x += QK5_0) {
        float amax = 0, max = 0;
        for (int j = 0; j < QK5_0; j++)
            if (std::fabs(x[j]) > amax) { amax = std::fabs(x[j]); max = x[j]; }
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            const uint32_t q0 = (uint32_t)std::min(31, (int)(x[j] * id + 16.5f));
            const uint32_t q1 = (uint32_t)std::min(31, (int)(x[j + QK5_0 / 2] * id + 16.5f));
            b[i].qs[j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= ((q0 >> 4) & 1u) << j;
            qh |= ((q1 >> 4) & 1u) << (j + 16);
        }
        std::memcpy(b[i].qh, &qh, 4);
    }
}

static void q5_1_to_float(const void* src, float* y, int64_t n) {
    const block_q5_1* b = (const block_q5_1*)src;
    for (int64_t i = 0; i < n / QK5_1; i++, y += QK5_1) {
        const float d = h2f(b[i].d), m = h2f(b[i].m);
        uint32_t qh;
        std::memcpy(&qh, b[i].qh, 4);
        for (int j = 0; j < QK5_1 / 2; j++) {
            y[j] = ((b[i].qs[j] & 0x0F) | q5_high_bit(qh, j)) * d + m;
            y[j + QK5_1 / 2] = ((b[i].qs[j] >> 4) | q5_high_bit(qh, j + 16)) * d + m;
        }
    }
}
static void q5_1_from_float(const float* x, void* dst, int64_t n) {
    block_q5_1* b = (block_q5_1*)dst;
    for (int64_t i = 0; i < n / QK5_1; i++, x += QK5_1) {
        float mn = x[0], mx = x[0];
        for (int j = 1; j < QK5_1; j++) { mn = std::min(mn, x[j]); mx = std::max(mx, x[j]); }
        const float d = (mx - mn) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        b[i].m = fp32_to_fp16(mn);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_1 / 2; j++) {
            const uint32_t q0 = (uint32_t)std::min(31, (int)((x[j] - mn) * id + 0.5f));
            const uint32_t q1 = (uint32_t)std::min(31, (int)((x[j + QK5_1 / 2] - mn) * id + 0.5f));
            b[i].qs[j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= ((q0 >> 4) & 1u) << j;
            qh |= ((q1 >> 4) & 1u) << (j + 16);
        }
        std::memcpy(b[i].qh, &qh, 4);
    }
}

static void q8_0_to_float(const void* src, float* y, int64_t n) {
    const block_q8_0* b = (const block_q8_0*)src;
    for (int64_t i = 0; i < n / QK8_0; i++, y += QK8_0) {
        const float d = h2f(b[i].d);
        for (int j = 0; j < QK8_0; j++) y[j] = b[i].qs[j] * d;
    }
}
static void q8_0_from_float(const float* x, void* dst, int64_t n) {
    block_q8_0* b = (block_q8_0*)dst;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        float amax = 0;
        for (int j = 0; j < QK8_0; j++) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++) b[i].qs[j] = (int8_t)nearest_int(x[j] * id);
    }
}

// ---- 256-element K-quant formats -----------------------------------------------------------

static void q4_K_to_float(const void* src, float* y, int64_t n) {
    const block_q4_K* b = (const block_q4_K*)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        const uint8_t* q = b[i].qs;
        for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, q += 32) {
            uint8_t sc, m;
            get_scale_min_k4(is + 0, b[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            get_scale_min_k4(is + 1, b[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

static void q5_K_to_float(const void* src, float* y, int64_t n) {
    const block_q5_K* b = (const block_q5_K*)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        const uint8_t* ql = b[i].qs;
        const uint8_t* qh = b[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            get_scale_min_k4(is + 0, b[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            get_scale_min_k4(is + 1, b[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

// Shared by the Q4_K and Q5_K reference quantizers: per 32-element sub-block an affine
// (scale, min) with nmax levels, then both quantized to 6 bits against super-block d/dmin.
// Writes d, dmin, the packed scales and the levels L[256] in [0, nmax].
static void quantize_k_affine(const float* x, int nmax, half_bits* d_out, half_bits* dmin_out,
                              uint8_t* scales, uint8_t* L) {
    float scale[QK_K / 32], mins[QK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; j++) {
        float mn = 0, mx = 0;  // the min is clamped to <= 0 as ggml does (mins stored positive)
        for (int l = 0; l < 32; l++) { mn = std::min(mn, x[32 * j + l]); mx = std::max(mx, x[32 * j + l]); }
        scale[j] = (mx - mn) / nmax;
        mins[j] = -mn;
        max_scale = std::max(max_scale, scale[j]);
        max_min = std::max(max_min, mins[j]);
    }
    *d_out = fp32_to_fp16(max_scale / 63);
    *dmin_out = fp32_to_fp16(max_min / 63);
    const float d = h2f(*d_out), dmin = h2f(*dmin_out);
    std::memset(scales, 0, K_SCALE_SIZE);
    for (int j = 0; j < QK_K / 32; j++) {
        const uint8_t ls = (uint8_t)std::clamp(d ? nearest_int(scale[j] / d) : 0, 0, 63);
        const uint8_t lm = (uint8_t)std::clamp(dmin ? nearest_int(mins[j] / dmin) : 0, 0, 63);
        set_scale_min_k4(j, scales, ls, lm);
        const float dl = d * ls, dm = dmin * lm;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)std::clamp(dl ? nearest_int((x[32 * j + l] + dm) / dl) : 0, 0, nmax);
    }
}

static void q4_K_from_float(const float* x, void* dst, int64_t n) {
    block_q4_K* b = (block_q4_K*)dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        uint8_t L[QK_K];
        quantize_k_affine(x, 15, &b[i].d, &b[i].dmin, b[i].scales, L);
        uint8_t* q = b[i].qs;
        for (int j = 0; j < QK_K; j += 64, q += 32)
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

static void q5_K_from_float(const float* x, void* dst, int64_t n) {
    block_q5_K* b = (block_q5_K*)dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        uint8_t L[QK_K];
        quantize_k_affine(x, 31, &b[i].d, &b[i].dmin, b[i].scales, L);
        std::memset(b[i].qh, 0, sizeof(b[i].qh));
        uint8_t* ql = b[i].qs;
        uint8_t m1 = 1, m2 = 2;
        for (int j = 0; j < QK_K; j += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
            for (int l = 0; l < 32; l++) {
                int l1 = L[j + l], l2 = L[j + l + 32];
                if (l1 > 15) { l1 -= 16; b[i].qh[l] |= m1; }
                if (l2 > 15) { l2 -= 16; b[i].qh[l] |= m2; }
                ql[l] = (uint8_t)(l1 | (l2 << 4));
            }
        }
    }
}

static void q6_K_to_float(const void* src, float* y, int64_t n) {
    const block_q6_K* b = (const block_q6_K*)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(b[i].d);
        const uint8_t* ql = b[i].ql;
        const uint8_t* qh = b[i].qh;
        const int8_t* sc = b[i].scales;
        for (int c = 0; c < QK_K; c += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = (int)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = (int)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = (int)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

// Scale g (0..15) covers elements 16g..16g+15; levels are q + 32 with q in [-32, 31].
static void q6_K_from_float(const float* x, void* dst, int64_t n) {
    block_q6_K* b = (block_q6_K*)dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float scale[QK_K / 16];
        float max_abs_scale = 0;
        for (int g = 0; g < QK_K / 16; g++) {
            float amax = 0;
            for (int l = 0; l < 16; l++) amax = std::max(amax, std::fabs(x[16 * g + l]));
            scale[g] = amax / 31;
            max_abs_scale = std::max(max_abs_scale, scale[g]);
        }
        b[i].d = fp32_to_fp16(max_abs_scale / 127);
        const float d = h2f(b[i].d);
        uint8_t L[QK_K];
        for (int g = 0; g < QK_K / 16; g++) {
            const int sc = std::clamp(d ? nearest_int(scale[g] / d) : 0, -128, 127);
            b[i].scales[g] = (int8_t)sc;
            const float dl = d * sc;
            for (int l = 0; l < 16; l++)
                L[16 * g + l] = (uint8_t)(std::clamp(dl ? nearest_int(x[16 * g + l] / dl) : 0, -32, 31) + 32);
        }
        uint8_t* ql = b[i].ql;
        uint8_t* qh = b[i].qh;
        for (int c = 0; c < QK_K; c += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const uint8_t q1 = L[c + l], q2 = L[c + l + 32], q3 = L[c + l + 64], q4 = L[c + l + 96];
                ql[l + 0] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

// ---- the table -----------------------------------------------------------------------------

static TypeTraits make_row(const char* name, int64_t bs, size_t ts, to_float_fn tf = nullptr,
                           from_float_fn ff = nullptr) {
    TypeTraits t;
    t.name = name;
    t.block_size = bs;
    t.type_size = ts;
    t.is_quantized = bs > 1;
    t.to_float = tf;
    t.from_float_ref = ff;
    return t;
}

static const TypeTraits* build_table() {
    static TypeTraits t[kGgmlTypeCount];
    auto row = [](GgmlType id) -> TypeTraits& { return t[static_cast<uint32_t>(id)]; };
    row(GgmlType::F32) = make_row("F32", 1, 4, f32_to_float, f32_from_float);
    row(GgmlType::F16) = make_row("F16", 1, 2, f16_to_float, f16_from_float);
    row(GgmlType::BF16) = make_row("BF16", 1, 2, bf16_to_float, bf16_from_float);
    row(GgmlType::Q4_0) = make_row("Q4_0", QK4_0, sizeof(block_q4_0), q4_0_to_float, q4_0_from_float);
    row(GgmlType::Q4_1) = make_row("Q4_1", QK4_1, sizeof(block_q4_1), q4_1_to_float, q4_1_from_float);
    row(GgmlType::Q5_0) = make_row("Q5_0", QK5_0, sizeof(block_q5_0), q5_0_to_float, q5_0_from_float);
    row(GgmlType::Q5_1) = make_row("Q5_1", QK5_1, sizeof(block_q5_1), q5_1_to_float, q5_1_from_float);
    row(GgmlType::Q8_0) = make_row("Q8_0", QK8_0, sizeof(block_q8_0), q8_0_to_float, q8_0_from_float);
    row(GgmlType::Q4_K) = make_row("Q4_K", QK_K, sizeof(block_q4_K), q4_K_to_float, q4_K_from_float);
    row(GgmlType::Q5_K) = make_row("Q5_K", QK_K, sizeof(block_q5_K), q5_K_to_float, q5_K_from_float);
    row(GgmlType::Q6_K) = make_row("Q6_K", QK_K, sizeof(block_q6_K), q6_K_to_float, q6_K_from_float);
    // Known by size only: enough to validate and describe files that use them.
    row(GgmlType::Q8_1) = make_row("Q8_1", 32, 36);
    row(GgmlType::Q2_K) = make_row("Q2_K", QK_K, 84);
    row(GgmlType::Q3_K) = make_row("Q3_K", QK_K, 110);
    row(GgmlType::Q8_K) = make_row("Q8_K", QK_K, 292);
    row(GgmlType::IQ4_NL) = make_row("IQ4_NL", 32, 18);
    row(GgmlType::IQ4_XS) = make_row("IQ4_XS", QK_K, 136);
    row(GgmlType::I8) = make_row("I8", 1, 1);
    row(GgmlType::I16) = make_row("I16", 1, 2);
    row(GgmlType::I32) = make_row("I32", 1, 4);
    row(GgmlType::I64) = make_row("I64", 1, 8);
    row(GgmlType::F64) = make_row("F64", 1, 8);
    for (auto* r : {&row(GgmlType::I8), &row(GgmlType::I16), &row(GgmlType::I32), &row(GgmlType::I64),
                    &row(GgmlType::F64)})
        r->is_quantized = false;
    return t;
}

const TypeTraits* type_traits(uint32_t type) {
    static const TypeTraits* table = build_table();
    if (type >= kGgmlTypeCount || table[type].name == nullptr) return nullptr;
    return &table[type];
}

size_t row_size(GgmlType t, int64_t n) {
    const TypeTraits& tt = type_traits(t);
    return (size_t)(n / tt.block_size) * tt.type_size;
}

}  // namespace tandem
