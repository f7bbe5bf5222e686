// The type table and the reference (de)quantizers, checked against blocks whose values are
// computed by hand from ggml's layouts.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include <doctest/doctest.h>

#include "tandem/quant_types.h"

using namespace tandem;

TEST_CASE("fp16 conversion: exact values, rounding, subnormals, inf/nan") {
    CHECK(fp16_to_fp32(0x3C00) == 1.0f);
    CHECK(fp16_to_fp32(0xC000) == -2.0f);
    CHECK(fp16_to_fp32(0x7BFF) == 65504.0f);
    CHECK(fp16_to_fp32(0x0001) == std::ldexp(1.0f, -24));
    CHECK(std::isinf(fp16_to_fp32(0x7C00)));
    CHECK(std::isnan(fp16_to_fp32(0x7E00)));
    CHECK(fp32_to_fp16(1.0f) == 0x3C00);
    CHECK(fp32_to_fp16(65504.0f) == 0x7BFF);
    CHECK(fp32_to_fp16(1e6f) == 0x7C00);
    CHECK(fp32_to_fp16(std::ldexp(1.0f, -24)) == 0x0001);
    CHECK(fp32_to_fp16(std::ldexp(1.0f, -26)) == 0x0000);  // rounds to zero
    // 1 + 2^-11 is halfway between 1 and 1+2^-10: ties to even -> 1.0
    CHECK(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);
    CHECK(fp32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);
    // every half round-trips
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF)) continue;  // nan payloads
        REQUIRE(fp32_to_fp16(fp16_to_fp32((half_bits)h)) == h);
    }
    CHECK(bf16_to_fp32(0x3F80) == 1.0f);
    CHECK(fp32_to_bf16(1.0f) == 0x3F80);
    CHECK(fp32_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3F80);  // tie to even
}

TEST_CASE("type table: sizes and names match ggml") {
    struct Row { GgmlType t; const char* name; int64_t bs; size_t ts; };
    const Row rows[] = {{GgmlType::F32, "F32", 1, 4},       {GgmlType::F16, "F16", 1, 2},
                        {GgmlType::BF16, "BF16", 1, 2},     {GgmlType::Q4_0, "Q4_0", 32, 18},
                        {GgmlType::Q4_1, "Q4_1", 32, 20},   {GgmlType::Q5_0, "Q5_0", 32, 22},
                        {GgmlType::Q5_1, "Q5_1", 32, 24},   {GgmlType::Q8_0, "Q8_0", 32, 34},
                        {GgmlType::Q4_K, "Q4_K", 256, 144}, {GgmlType::Q5_K, "Q5_K", 256, 176},
                        {GgmlType::Q6_K, "Q6_K", 256, 210}, {GgmlType::Q2_K, "Q2_K", 256, 84},
                        {GgmlType::Q3_K, "Q3_K", 256, 110}};
    for (const Row& r : rows) {
        const TypeTraits* t = type_traits(static_cast<uint32_t>(r.t));
        REQUIRE(t != nullptr);
        CHECK(std::string(t->name) == r.name);
        CHECK(t->block_size == r.bs);
        CHECK(t->type_size == r.ts);
    }
    CHECK(type_traits(4u) == nullptr);  // Q4_2 was removed from ggml
    CHECK(type_traits(999u) == nullptr);
    CHECK(row_size(GgmlType::Q4_K, 512) == 288);
}

TEST_CASE("Q4_0 block by hand") {
    block_q4_0 b{};
    b.d = fp32_to_fp16(0.5f);
    for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    float y[32];
    type_traits(GgmlType::Q4_0).to_float(&b, y, 32);
    for (int j = 0; j < 16; j++) {
        CHECK(y[j] == (j - 8) * 0.5f);
        CHECK(y[j + 16] == ((15 - j) - 8) * 0.5f);
    }
}

TEST_CASE("Q4_1 block by hand") {
    block_q4_1 b{};
    b.d = fp32_to_fp16(0.25f);
    b.m = fp32_to_fp16(-1.0f);
    for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | (3 << 4));
    float y[32];
    type_traits(GgmlType::Q4_1).to_float(&b, y, 32);
    CHECK(y[0] == -1.0f);
    CHECK(y[15] == 15 * 0.25f - 1.0f);
    CHECK(y[16] == 3 * 0.25f - 1.0f);
}

TEST_CASE("Q5_0 and Q5_1 blocks by hand: the fifth bit comes from qh") {
    block_q5_0 b{};
    b.d = fp32_to_fp16(1.0f);
    for (int j = 0; j < 16; j++) b.qs[j] = 0x21;   // low nibble 1, high nibble 2
    const uint32_t qh = (1u << 3) | (1u << 20);    // element 3 and element 20 get +16
    std::memcpy(b.qh, &qh, 4);
    float y[32];
    type_traits(GgmlType::Q5_0).to_float(&b, y, 32);
    CHECK(y[0] == 1 - 16);
    CHECK(y[3] == 17 - 16);
    CHECK(y[16] == 2 - 16);
    CHECK(y[20] == 18 - 16);

    block_q5_1 c{};
    c.d = fp32_to_fp16(2.0f);
    c.m = fp32_to_fp16(0.5f);
    for (int j = 0; j < 16; j++) c.qs[j] = 0xF0;
    const uint32_t qh1 = 0xFFFF0000u;  // all high elements get the 5th bit
    std::memcpy(c.qh, &qh1, 4);
    type_traits(GgmlType::Q5_1).to_float(&c, y, 32);
    CHECK(y[0] == 0.5f);
    CHECK(y[31] == 31 * 2.0f + 0.5f);
}

TEST_CASE("Q8_0 block by hand") {
    block_q8_0 b{};
    b.d = fp32_to_fp16(0.125f);
    for (int j = 0; j < 32; j++) b.qs[j] = (int8_t)(j - 16);
    float y[32];
    type_traits(GgmlType::Q8_0).to_float(&b, y, 32);
    for (int j = 0; j < 32; j++) CHECK(y[j] == (j - 16) * 0.125f);
}

TEST_CASE("Q4_K block by hand: 6-bit scales and mins, both packings") {
    block_q4_K b{};
    b.d = fp32_to_fp16(1.0f);
    b.dmin = fp32_to_fp16(0.5f);
    // sub-block j: scale j+1 (j<4 direct, j>=4 packed), min 2j; high bits exercised with scale 40+j
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; j++) { sc[j] = (uint8_t)(j < 4 ? j + 1 : 40 + j); mn[j] = (uint8_t)(2 * j + (j >= 4 ? 20 : 0)); }
    for (int j = 0; j < 4; j++) { b.scales[j] = sc[j] | ((sc[j + 4] >> 4) << 6); b.scales[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6); }
    for (int j = 4; j < 8; j++) b.scales[j + 4] = (uint8_t)((sc[j] & 0xF) | ((mn[j] & 0xF) << 4));
    for (int l = 0; l < 128; l++) b.qs[l] = (uint8_t)((l % 16) | ((15 - l % 16) << 4));
    float y[256];
    type_traits(GgmlType::Q4_K).to_float(&b, y, 256);
    for (int e = 0; e < 256; e++) {
        const int sub = e / 32;              // 32-element sub-block
        const int chunk = e / 64, l = e % 32;
        const uint8_t byte = b.qs[chunk * 32 + l];
        const int q = (sub % 2 == 0) ? (byte & 0xF) : (byte >> 4);
        const float expect = 1.0f * sc[sub] * q - 0.5f * mn[sub];
        REQUIRE(y[e] == doctest::Approx(expect));
    }
}

TEST_CASE("Q6_K block by hand") {
    block_q6_K b{};
    b.d = fp32_to_fp16(0.5f);
    for (int g = 0; g < 16; g++) b.scales[g] = (int8_t)(g - 8);
    // element e has level (e % 64): low 4 bits in ql, high 2 bits in qh
    std::memset(b.ql, 0, sizeof b.ql);
    std::memset(b.qh, 0, sizeof b.qh);
    for (int e = 0; e < 256; e++) {
        const int level = e % 64;
        const int c = e / 128, k = (e % 128) / 32, l = e % 32;
        uint8_t& qlb = b.ql[c * 64 + l + (k % 2) * 32];
        qlb |= (uint8_t)((level & 0xF) << (k >= 2 ? 4 : 0));
        b.qh[c * 32 + l] |= (uint8_t)((level >> 4) << (2 * k));
    }
    float y[256];
    type_traits(GgmlType::Q6_K).to_float(&b, y, 256);
    for (int e = 0; e < 256; e++) REQUIRE(y[e] == 0.5f * (e / 16 - 8) * (e % 64 - 32));
}

TEST_CASE("Q5_K block by hand") {
    block_q5_K b{};
    b.d = fp32_to_fp16(1.0f);
    b.dmin = fp32_to_fp16(0.0f);
    for (int j = 0; j < 4; j++) { b.scales[j] = 1; b.scales[j + 4] = 0; }
    for (int j = 4; j < 8; j++) b.scales[j + 4] = 1;
    // element e: level e % 32; sub-block s = e/32 uses qs nibble (s even: low) and qh bit s
    for (int e = 0; e < 256; e++) {
        const int s = e / 32, l = e % 32, level = e % 32;
        b.qs[(s / 2) * 32 + l] |= (uint8_t)((level & 0xF) << ((s % 2) ? 4 : 0));
        if (level & 16) b.qh[l] |= (uint8_t)(1 << s);
    }
    float y[256];
    type_traits(GgmlType::Q5_K).to_float(&b, y, 256);
    for (int e = 0; e < 256; e++) REQUIRE(y[e] == (float)(e % 32));
}

TEST_CASE("reference quantizers round-trip within each format's resolution") {
    std::mt19937 rng(42);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int n = 1024;
    std::vector<float> x(n), y(n);
    for (auto& v : x) v = nd(rng);
    struct Case { GgmlType t; double max_rel_rms; };
    // rms error / rms signal bounds: ~ step / sqrt(12) / sigma for each format's levels
    const Case cases[] = {{GgmlType::F16, 1e-3}, {GgmlType::BF16, 5e-3}, {GgmlType::Q8_0, 0.01},
                          {GgmlType::Q5_0, 0.06}, {GgmlType::Q5_1, 0.06}, {GgmlType::Q4_0, 0.12},
                          {GgmlType::Q4_1, 0.12}, {GgmlType::Q6_K, 0.03}, {GgmlType::Q5_K, 0.06},
                          {GgmlType::Q4_K, 0.12}};
    for (const Case& c : cases) {
        const TypeTraits& tt = type_traits(c.t);
        std::vector<uint8_t> buf(row_size(c.t, n));
        tt.from_float_ref(x.data(), buf.data(), n);
        tt.to_float(buf.data(), y.data(), n);
        double err = 0, sig = 0;
        for (int i = 0; i < n; i++) { err += (x[i] - y[i]) * (x[i] - y[i]); sig += x[i] * x[i]; }
        INFO(tt.name);
        CHECK(std::sqrt(err / sig) < c.max_rel_rms);
    }
}
