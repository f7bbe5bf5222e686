// Tests for the engine's CPU ops: the attention over the F16/F32 KV cache
// (tandem/cpu_attention.h), the decode row (attend) and the causal prefill
// (attend_causal), against the scalar double-precision reference twin (attend_ref); the cache
// rows' F16 store (store_row) against fp32_to_fp16; and the SwiGLU gate (tandem/cpu_ops.h
// silu_mul) against the plain formula in double.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tandem/cpu_attention.h"
#include "tandem/cpu_matmul.h"
#include "tandem/cpu_ops.h"

using namespace tandem;

// Runs body once on every vector path of the ops this CPU has (cpu::cap_ops_isa), widest first,
// and says which ran; restores the automatic choice.
template <class Body>
static void on_every_ops_isa(Body body) {
    const char* names[] = {"scalar", "avx2", "avx512"};
    std::string ran;
    for (cpu::OpsIsa isa : {cpu::OpsIsa::Avx512, cpu::OpsIsa::Avx2, cpu::OpsIsa::Scalar}) {
        cpu::cap_ops_isa(isa);
        if (cpu::ops_isa() != isa) continue;  // this CPU lacks it
        CAPTURE(names[(int)isa]);
        body();
        ran += std::string(ran.empty() ? "" : ", ") + names[(int)isa];
    }
    cpu::cap_ops_isa(cpu::OpsIsa::Avx512);
    MESSAGE("vector paths tested on this CPU: " << ran);
}

// float32 dot products and sums over up to a few hundred keys: relative error ~1e-6; the
// bound leaves a margin for the polynomial exp (2e-7) and the F16 cache (values rounded the
// same way on both sides).
constexpr double kAttnTol = 2e-5;

struct Case {
    int n_q, group, hd;
    int64_t pos0;
    GgmlType t;
};

static void check_causal(const Case& c) {
    CAPTURE(c.n_q);
    CAPTURE(c.group);
    CAPTURE(c.hd);
    CAPTURE(c.pos0);
    const int64_t n_kv = c.pos0 + c.n_q, kv_stride = 3 * c.hd;  // 3 KV heads interleaved, use head 1
    std::mt19937 rng((uint32_t)(c.n_q * 131 + c.hd * 7 + c.pos0));
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const size_t es = c.t == GgmlType::F32 ? 4 : 2;
    std::vector<uint8_t> K((size_t)(n_kv * kv_stride) * es), V(K.size());
    std::vector<float> row((size_t)kv_stride);
    for (int64_t j = 0; j < n_kv; j++) {
        for (auto& v : row) v = 2.0f * nd(rng);  // scores of a few units: a peaked softmax
        cpu_attention::store_row(row.data(), K.data() + (size_t)(j * kv_stride) * es, (int)kv_stride, c.t);
        for (auto& v : row) v = nd(rng);
        cpu_attention::store_row(row.data(), V.data() + (size_t)(j * kv_stride) * es, (int)kv_stride, c.t);
    }
    const int64_t q_stride = (int64_t)(c.group + 1) * c.hd, out_stride = q_stride + 5;
    std::vector<float> Q((size_t)(c.n_q * q_stride)), out((size_t)(c.n_q * out_stride), NAN);
    for (auto& v : Q) v = nd(rng);
    const float scale = 1.0f / std::sqrt((float)c.hd);
    const uint8_t* Kh = K.data() + (size_t)c.hd * es;
    const uint8_t* Vh = V.data() + (size_t)c.hd * es;
    cpu_attention::attend_causal(Q.data(), q_stride, c.n_q, c.group, c.pos0, Kh, Vh, kv_stride, c.hd, scale, c.t, out.data(),
                                 out_stride);
    std::vector<float> ref((size_t)c.hd), one((size_t)c.hd);
    for (int tq = 0; tq < c.n_q; tq++)
        for (int g = 0; g < c.group; g++) {
            const float* q = Q.data() + tq * q_stride + g * c.hd;
            cpu_attention::attend_ref(q, Kh, Vh, c.pos0 + tq + 1, kv_stride, c.hd, scale, c.t, ref.data());
            cpu_attention::attend(q, Kh, Vh, c.pos0 + tq + 1, kv_stride, c.hd, scale, c.t, one.data());
            for (int i = 0; i < c.hd; i++) {
                CAPTURE(tq);
                CAPTURE(g);
                CAPTURE(i);
                CHECK(std::fabs(out[(size_t)(tq * out_stride + g * c.hd + i)] - ref[(size_t)i]) <= kAttnTol);
                CHECK(std::fabs(one[(size_t)i] - ref[(size_t)i]) <= kAttnTol);
            }
        }
}

// head_dim 8 (stories260K), 64 and 128; groups 1, 3, 4; the first tokens of a prompt (pos0 0)
// and a chunk after cached ones; key counts that end mid-block of 8 and 16.
TEST_CASE("attend_causal matches the reference on every row, on every vector path") {
    on_every_ops_isa([] {
        for (GgmlType t : {GgmlType::F16, GgmlType::F32})
            for (const Case& c : {Case{8, 1, 8, 0, t}, Case{8, 2, 8, 0, t}, Case{2, 2, 8, 8, t}, Case{5, 3, 64, 0, t}, Case{8, 3, 64, 37, t},
                                  Case{3, 4, 128, 100, t}, Case{1, 2, 64, 16, t}, Case{7, 2, 24, 9, t}, Case{8, 2, 80, 3, t}})
                check_causal(c);
    });
}

// Every float class the cache can be given: normal values at every F16 exponent and past its
// range (overflow to infinity, the 65504/65520 boundary), F16 subnormal results and their
// rounding ties, zeros of both signs, infinities and NaNs (alone and beside finite values in a
// block of 8); lengths with a tail.
TEST_CASE("store_row's F16 rows are fp32_to_fp16's bits, on every vector path") {
    std::mt19937 rng(5);
    std::vector<float> x;
    for (int e = -30; e <= 17; e++)
        for (int k = 0; k < 40; k++) {
            const float m = std::uniform_real_distribution<float>(1.0f, 2.0f)(rng);
            x.push_back((k % 2 ? -1.0f : 1.0f) * std::ldexp(m, e));
        }
    for (float v : {65504.0f, 65519.0f, 65520.0f, 65536.0f, 1e30f, 0.0f, -0.0f, INFINITY, -INFINITY})
        x.push_back(v);
    for (int k = 0; k < 64; k++) x.push_back(std::ldexp((float)k + 0.5f, -24));  // ties of the subnormal rounding
    x.push_back(std::ldexp(1.0f, -25)), x.push_back(std::ldexp(1.0f, -26)), x.push_back(std::nextafter(std::ldexp(1.0f, -25), 1.0f));
    for (uint32_t bits : {0x7fffffffu, 0xff812345u, 0x7f800001u}) {  // NaNs with payloads (F16C keeps their top bits)
        float v;
        std::memcpy(&v, &bits, 4);
        x.push_back(v);
    }
    x.push_back(NAN), x.push_back(-NAN), x.push_back(1.5f);
    for (int k = 0; k < 5; k++) x.push_back((float)k);
    on_every_ops_isa([&] {
        for (int n : {(int)x.size(), 1, 7, 8, 9, 17}) {
            std::vector<half_bits> got((size_t)n, 0x5555);
            cpu_attention::store_row(x.data(), got.data(), n, GgmlType::F16);
            int diff = 0;
            for (int i = 0; i < n; i++) diff += got[(size_t)i] != fp32_to_fp16(x[(size_t)i]);
            CAPTURE(n);
            CHECK(diff == 0);
        }
    });
}

// Lengths with a vector tail; inputs from -100 to 100 (exp(-|x|) flushes to 0 past 87.3) and
// around 0. The polynomial exp is within 2e-7 relative; silu's value within 5e-7 relative.
TEST_CASE("silu_mul matches x * u / (1 + exp(-x)), on every vector path") {
    on_every_ops_isa([] {
        std::mt19937 rng(7);
        std::uniform_real_distribution<float> wide(-100.0f, 100.0f), narrow(-4.0f, 4.0f);
        for (int64_t n : {1, 7, 8, 15, 16, 17, 100, 1000}) {
            std::vector<float> g((size_t)n), u((size_t)n);
            for (int64_t i = 0; i < n; i++) {
                g[(size_t)i] = i % 3 == 0 ? wide(rng) : narrow(rng);
                u[(size_t)i] = narrow(rng);
            }
            if (n > 2) g[1] = 0.0f, g[2] = -0.0f;
            std::vector<float> out = g;
            cpu_ops::silu_mul(out.data(), u.data(), n);
            for (int64_t i = 0; i < n; i++) {
                const double x = g[(size_t)i], want = x / (1.0 + std::exp(-x)) * u[(size_t)i];
                CAPTURE(n);
                CAPTURE(x);
                CHECK(std::fabs(out[(size_t)i] - want) <= 5e-7 * std::fabs(want) + 1e-30);
            }
        }
    });
}
