// Portable IEEE binary16 / bfloat16 conversion (the reference; SIMD paths use F16C).
#include "tandem/quant_types.h"

#include <cstring>

namespace tandem {

static uint32_t float_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
static float bits_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

float fp16_to_fp32(half_bits h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f;
    const uint32_t mant = h & 0x3ff;
    if (exp == 0) {
        if (mant == 0) return bits_float(sign);
        // subnormal: value = mant * 2^-24
        float v = (float)mant * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (exp == 31) return bits_float(sign | 0x7f800000u | (mant << 13));  // inf / nan
    return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
}

half_bits fp32_to_fp16(float f) {
    const uint32_t x = float_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000;
    const uint32_t abs = x & 0x7fffffff;
    if (abs > 0x7f800000u) return (half_bits)(sign | 0x7e00);  // nan
    if (abs >= 0x477ff000u) return (half_bits)(sign | 0x7c00);  // overflow (rounds to inf)
    if (abs < 0x38800000u) {                                    // result is subnormal or zero
        // value in units of 2^-24, rounded to nearest even
        const float v = bits_float(abs) * 16777216.0f;
        float r = (float)(int)v;
        const float frac = v - r;
        if (frac > 0.5f || (frac == 0.5f && ((int)r & 1))) r += 1.0f;
        return (half_bits)(sign | (uint32_t)r);
    }
    // normal: drop 13 mantissa bits with round-to-nearest-even
    const uint32_t rounded = abs + 0xfff + ((abs >> 13) & 1);
    return (half_bits)(sign | ((rounded - (112u << 23)) >> 13));
}

float bf16_to_fp32(uint16_t h) { return bits_float((uint32_t)h << 16); }

uint16_t fp32_to_bf16(float f) {
    const uint32_t x = float_bits(f);
    if ((x & 0x7fffffff) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);  // quiet nan
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

}  // namespace tandem
