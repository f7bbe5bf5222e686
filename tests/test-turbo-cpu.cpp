// TurboAttention on the CPU: cache formats (bit-exact integer parts) and capacity, SAS error
// bounds and its table form (bit-exact), head-wise mixed precision, bytes per token, the reference
// decode vs float64, and the engine's turbo_attend vs the reference decode.
#include "tandem/turbo_attention.h"
#include "tandem/quant_types.h"
#include "tandem/thread_pool.h"
#include "tandem/cpu_matmul.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

using namespace tandem;

namespace {

// Keys with a few outlier channels (as real models have), values plain normal.
void random_kv(std::mt19937& rng, int H, int D, float* k, float* v) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int h = 0; h < H; ++h)
        for (int d = 0; d < D; ++d) {
            const float boost = (d % 17 == 3) ? 6.0f : 1.0f;
            k[h * D + d] = nd(rng) * boost + (d % 5 == 0 ? 1.5f : 0.0f);
            v[h * D + d] = nd(rng) * (1.0f + 0.5f * h);
        }
}

// n tokens of random_kv: k, v (n, H, D).
void random_kv_tokens(std::mt19937& rng, int n, int H, int D, std::vector<float>& k, std::vector<float>& v) {
    k.resize((size_t)n * H * D);
    v.resize(k.size());
    for (int t = 0; t < n; ++t) random_kv(rng, H, D, &k[(size_t)t * H * D], &v[(size_t)t * H * D]);
}

double rel_err(const std::vector<float>& a, const std::vector<double>& ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        num += (a[i] - ref[i]) * (a[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return std::sqrt(num / den);
}

// Independent reader of the documented record layout (not the library's expansion).
int read_code(const uint8_t* p, int i, int bits) {
    return bits == 4 ? (p[i / 2] >> (4 * (i % 2))) & 15 : (p[i / 4] >> (2 * (i % 4))) & 3;
}

}  // namespace

TEST_CASE("turbo: symmetric INT8 round trip and the all-zero row") {
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    std::vector<float> x(128);
    for (auto& e : x) e = nd(rng);
    std::vector<int8_t> q(128);
    const float s = turbo_quant_int8(x.data(), 128, q.data());
    for (int i = 0; i < 128; ++i) CHECK(std::fabs(x[i] - s * q[i]) <= 0.5f * s * 1.0001f);
    std::fill(x.begin(), x.end(), 0.0f);
    CHECK(turbo_quant_int8(x.data(), 128, q.data()) == 0.0f);
    CHECK(std::all_of(q.begin(), q.end(), [](int8_t e) { return e == 0; }));
}

TEST_CASE("turbo: integer group quantization stays in INT8 and within one step") {
    std::mt19937 rng(2);
    for (int bits : {4, 2}) {
        for (int trial = 0; trial < 2000; ++trial) {
            std::uniform_int_distribution<int> lo(-127, 127);
            int a = lo(rng), b = lo(rng);
            if (a > b) std::swap(a, b);
            std::uniform_int_distribution<int> in(a, b);
            int8_t x[64];
            for (auto& e : x) e = (int8_t)in(rng);
            x[0] = (int8_t)a;
            x[1] = (int8_t)b;
            uint8_t codes[64], sc;
            int8_t zp;
            turbo_quant_group(x, 64, 1, bits, codes, &sc, &zp);
            REQUIRE(sc >= 1);
            const int cap = std::min((1 << bits) - 1, (127 - zp) / sc);
            for (int i = 0; i < 64; ++i) {
                REQUIRE(codes[i] == std::min((x[i] - zp + sc / 2) / sc, cap));  // the documented rounding
                REQUIRE(codes[i] < (1 << bits));
                const int e = turbo_expand(codes[i], sc, zp);
                REQUIRE(e >= -127);
                REQUIRE(e <= 127);
                REQUIRE(std::abs(e - x[i]) <= sc);  // half a step, one where capped at 127
            }
        }
    }
}

TEST_CASE("turbo: compressed records expand bit-exactly by the documented layout") {
    TurboConfig c;
    std::mt19937 rng(3);
    for (int D : {64, 128})
        for (int bits : {4, 2}) {
            c.head_dim = D;
            const int T = c.block_tokens, ng = D / c.v_group;
            TurboCacheLayout L = turbo_make_layout(c, 1, T, {(uint8_t)bits});
            std::vector<int8_t> k8((size_t)T * D), v8((size_t)T * D), ek((size_t)T * D), ev((size_t)T * D);
            std::vector<float> ks(T), vs(T);
            std::uniform_int_distribution<int> u(-127, 127);
            std::uniform_real_distribution<float> us(0.01f, 0.1f);
            for (auto& e : k8) e = (int8_t)u(rng);
            for (auto& e : v8) e = (int8_t)u(rng);
            for (int t = 0; t < T; ++t) ks[t] = us(rng), vs[t] = us(rng);
            std::vector<uint8_t> rec(L.rec_bytes[0]), rec2(L.rec_bytes[0]);
            turbo_compress_block(L, bits, k8.data(), ks.data(), v8.data(), vs.data(), rec.data());
            turbo_compress_block(L, bits, k8.data(), ks.data(), v8.data(), vs.data(), rec2.data());
            CHECK(rec == rec2);  // deterministic
            float kscale, vscale;
            turbo_expand_block(L, bits, rec.data(), ek.data(), ev.data(), &kscale, &vscale);
            float s0;
            std::memcpy(&s0, rec.data(), 4);
            CHECK(s0 == kscale);
            CHECK(kscale == *std::max_element(ks.begin(), ks.end()));
            const uint8_t* kq = rec.data() + L.meta_bytes;
            const uint8_t* vq = kq + T * D * bits / 8;
            int mismatches = 0;
            for (int t = 0; t < T; ++t)
                for (int d = 0; d < D; ++d) {
                    const int i = t * D + d;
                    const int kx = read_code(kq, i, bits) * rec[8 + d] + (int8_t)rec[8 + D + d];
                    const int g = t * ng + d / c.v_group;
                    const int vx = read_code(vq, d * T + t, bits) * rec[8 + 2 * D + g] +
                                   (int8_t)rec[8 + 2 * D + T * ng + g];
                    mismatches += (kx != ek[i]) + (vx != ev[i]);
                }
            CHECK(mismatches == 0);
            CHECK(L.rec_bytes[0] % 16 == 0);
        }
}

TEST_CASE("turbo: SAS exp2 polynomial error, measured") {
    for (int degree : {2, 3}) {
        double worst = 0.0;
        for (int i = 0; i <= 200000; ++i) {
            const float x = -12.0f * (float)i / 200000.0f;
            const double exact = std::exp2((double)x);
            worst = std::max(worst, std::fabs(turbo_sas_exp2(x, degree, -12.0f) - exact) / exact);
        }
        std::printf("SAS degree %d: max relative error of 2^x on [-12, 0] = %.3g\n", degree, worst);
        CHECK(worst < (degree == 2 ? 4.5e-3 : 2.0e-3));  // FP16 rounding included
    }
    CHECK(turbo_sas_exp2(0.0f, 3, -12.0f) == 1.0f);
    CHECK(turbo_sas_exp2(-12.0001f, 3, -12.0f) == 0.0f);
    CHECK(turbo_sas_exp2(-12.0f, 3, -12.0f) > 0.0f);
    CHECK(turbo_sas_exp2(NAN, 3, -12.0f) == 0.0f);
    // continuous across integer boundaries: p(-n) and p(-(n - 1e-4)) differ by < 0.2%
    for (int n = 1; n <= 11; ++n) {
        const float a = turbo_sas_exp2(-(float)n, 3, -12.0f);
        const float b = turbo_sas_exp2(-(float)n + 1e-4f, 3, -12.0f);
        CHECK(std::fabs(a - b) / a < 2e-3);
    }
}

TEST_CASE("turbo: head priorities pick the flattest heads for 2 bits") {
    std::vector<double> pr = {5.0, 1.0, 3.0, 0.5, 9.0, 2.0, 7.0, 4.0};
    auto b = turbo_choose_bits(pr, 0.25f);
    CHECK(b == std::vector<uint8_t>{4, 2, 4, 2, 4, 4, 4, 4});
    CHECK(turbo_choose_bits(pr, 0.0f) == std::vector<uint8_t>(8, 4));
    CHECK_THROWS_AS(turbo_choose_bits(pr, 1.5f), TurboError);
    std::vector<float> small(256, 0.0f), big(256);
    std::mt19937 rng(4);
    std::normal_distribution<float> nd;
    for (auto& e : small) e = 0.1f * nd(rng);
    for (auto& e : big) e = 4.0f * nd(rng);
    CHECK(turbo_head_priority(small.data(), small.data(), 256) <
          turbo_head_priority(big.data(), big.data(), 256));
}

TEST_CASE("turbo: KV bytes per token vs FP16 at the default mix") {
    TurboConfig c;
    const int H = 8, n = 4096;
    for (float frac : {0.0f, 0.25f, 0.375f, 0.5f}) {
        auto bits = turbo_choose_bits(std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8}, frac);
        TurboKvCache cache(c, 1, H, n, bits);
        const double fp16 = 2.0 * 2.0 * c.head_dim * H * n;
        const double ratio = fp16 / (double)cache.bytes_for(n);
        std::printf("KV bytes at 4096 tokens, D=128, 2-bit fraction %.3f: %.2fx smaller than FP16\n",
                    frac, ratio);
        if (frac == c.frac_2bit) CHECK(ratio >= 3.5);
    }
}

TEST_CASE("turbo: reference decode vs float64 attention, per 2-bit fraction") {
    std::mt19937 rng(5);
    const int H = 4, G = 4, Hq = H * G, len = 64 * 32 + 23;  // 32 blocks + 23 recent tokens
    for (int D : {64, 128})
        for (float frac : {0.0f, 0.25f, 0.5f}) {
            TurboConfig c;
            c.head_dim = D;
            auto bits = turbo_choose_bits(std::vector<double>{4, 3, 2, 1}, frac);
            TurboKvCache cache(c, 2, H, 4096, bits);
            std::vector<float> kall((size_t)H * len * D), vall((size_t)H * len * D), k(H * D), v(H * D);
            for (int t = 0; t < len; ++t) {
                random_kv(rng, H, D, k.data(), v.data());
                for (int h = 0; h < H; ++h)
                    for (int d = 0; d < D; ++d) {
                        kall[((size_t)h * len + t) * D + d] = k[h * D + d];
                        vall[((size_t)h * len + t) * D + d] = v[h * D + d];
                    }
                cache.append(1, k.data(), v.data());
            }
            REQUIRE(cache.length(1) == len);
            REQUIRE(cache.length(0) == 0);
            std::vector<float> q((size_t)Hq * D), out((size_t)Hq * D, NAN);
            std::normal_distribution<float> nd(0.0f, 1.0f);
            for (auto& e : q) e = nd(rng);
            turbo_decode_ref(cache, 1, q.data(), Hq, out.data());
            std::vector<float> kd(kall.size()), vd(vall.size());
            cache.dequantize(1, kd.data(), vd.data());
            std::vector<double> ref_deq((size_t)Hq * D), ref_orig((size_t)Hq * D);
            attention_exact_f64(q.data(), kd.data(), vd.data(), Hq, H, len, D, ref_deq.data());
            attention_exact_f64(q.data(), kall.data(), vall.data(), Hq, H, len, D, ref_orig.data());
            const double e_sas = rel_err(out, ref_deq), e_all = rel_err(out, ref_orig);
            std::printf("D=%d frac_2bit=%.2f: SAS error %.2e, total error vs float K/V %.2e\n", D,
                        frac, e_sas, e_all);
            double kn = 0, kd2 = 0;
            for (size_t i = 0; i < kall.size(); ++i) {
                kn += (kd[i] - kall[i]) * (kd[i] - kall[i]) + (vd[i] - vall[i]) * (vd[i] - vall[i]);
                kd2 += kall[i] * kall[i] + vall[i] * vall[i];
            }
            std::printf("   K/V element error %.3f\n", std::sqrt(kn / kd2));
            // INT4 min-max on Gaussian data costs ~0.1 per element by itself
            CHECK(e_sas < 2e-3);  // measured 2.5e-4..6e-4 at the default threshold -16
            CHECK(std::sqrt(kn / kd2) < (frac == 0.0f ? 0.15 : 0.4));
            // the output of random Gaussian attention is an average of random values, so its
            // relative error vs float K/V is large (0.2 at INT4, ~0.8 with 2-bit heads) and
            // only the all-4-bit case gets a bound; the element error above bounds the rest
            if (frac == 0.0f) CHECK(e_all < 0.3);
        }
}

TEST_CASE("turbo: SAS threshold drops only what it promises") {
    // Output with threshold t vs no threshold (-60): each dropped probability is < 2^t of the
    // max, so the relative change is at most about 2 * len * 2^t.
    std::mt19937 rng(6);
    TurboConfig c;
    const int H = 1, len = 512, D = 128;
    TurboKvCache cache(c, 1, H, len, {4});
    std::vector<float> k(D), v(D);
    for (int t = 0; t < len; ++t) {
        random_kv(rng, H, D, k.data(), v.data());
        for (auto& e : k) e *= 2.0f;  // peaky scores, so the threshold matters
        cache.append(0, k.data(), v.data());
    }
    std::vector<float> q(D), a(D), b(D);
    std::normal_distribution<float> nd;
    for (auto& e : q) e = nd(rng);
    for (float thr : {-8.0f, -10.0f, -12.0f, -16.0f}) {
        std::vector<float> kd((size_t)len * D), vd((size_t)len * D);
        cache.dequantize(0, kd.data(), vd.data());
        // reference with threshold in double: drop exactly the terms the rule drops
        double num = 0, den = 0, worst_drop = 0;
        std::vector<double> s(len), o1(D, 0.0), o2(D, 0.0);
        double m = -1e300, l1 = 0, l2 = 0;
        for (int t = 0; t < len; ++t) {
            double acc = 0;
            for (int d = 0; d < D; ++d) acc += q[d] * kd[(size_t)t * D + d];
            s[t] = acc / std::sqrt((double)D) * 1.4426950408889634;
            m = std::max(m, s[t]);
        }
        for (int t = 0; t < len; ++t) {
            const double p = std::exp2(s[t] - m);
            l2 += p;
            for (int d = 0; d < D; ++d) o2[d] += p * vd[(size_t)t * D + d];
            if (s[t] - m < thr) { worst_drop = std::max(worst_drop, p); continue; }
            l1 += p;
            for (int d = 0; d < D; ++d) o1[d] += p * vd[(size_t)t * D + d];
        }
        for (int d = 0; d < D; ++d) {
            num += (o1[d] / l1 - o2[d] / l2) * (o1[d] / l1 - o2[d] / l2);
            den += (o2[d] / l2) * (o2[d] / l2);
        }
        const double err = std::sqrt(num / den);
        std::printf("threshold %.0f: relative output change %.2e (bound %.2e)\n", thr, err,
                    2.0 * len * std::exp2((double)thr));
        CHECK(worst_drop < std::exp2((double)thr));
        CHECK(err <= 2.0 * len * std::exp2((double)thr));
    }
}

TEST_CASE("turbo: truncate keeps what a fresh cache of the kept prefix holds") {
    std::mt19937 rng(11);
    TurboConfig c;
    c.head_dim = 64;
    const int H = 2, D = 64, N = 200;
    std::vector<float> k, v;
    random_kv_tokens(rng, N, H, D, k, v);
    const std::vector<uint8_t> bits = {4, 2};
    auto filled = [&](int n) {
        TurboKvCache cache(c, 1, H, 256, bits);
        for (int t = 0; t < n; ++t) cache.append(0, &k[(size_t)t * H * D], &v[(size_t)t * H * D]);
        return cache;
    };
    auto contents = [&](const TurboKvCache& cache) {
        const int len = cache.length(0);
        std::vector<float> kd((size_t)H * len * D), vd(kd.size());
        cache.dequantize(0, kd.data(), vd.data());
        kd.insert(kd.end(), vd.begin(), vd.end());
        return kd;
    };
    // (n, n_past) -> kept: inside the last block (its INT8 slots intact), a block boundary,
    // the partial block of an earlier block (rounded down), 0, past the end
    const int cases[][3] = {{195, 200, 195}, {192, 200, 192}, {170, 200, 128}, {10, 200, 0},
                            {10, 64, 10},    {64, 64, 64},    {0, 200, 0},     {250, 200, 200}};
    for (const auto& cs : cases) {
        TurboKvCache a = filled(cs[1]);
        CHECK(a.truncate(0, cs[0]) == cs[2]);
        CHECK(a.length(0) == cs[2]);
        CHECK(contents(a) == contents(filled(cs[2])));  // bit-exact: the kept state is a fresh prefix's
        for (int t = cs[2]; t < N; ++t) a.append(0, &k[(size_t)t * H * D], &v[(size_t)t * H * D]);
        const TurboKvCache b = filled(N);
        CHECK(contents(a) == contents(b));  // appending the rest again gives the full cache
        CHECK(a.blocks() == b.blocks());
    }
    TurboKvCache a = filled(10);
    CHECK_THROWS_WITH_AS(a.truncate(1, 0), doctest::Contains("seq 1 out of range"), TurboError);
}

TEST_CASE("turbo: append_tokens stores what one append per token stores") {
    std::mt19937 rng(12);
    TurboConfig c;
    c.head_dim = 64;
    const int H = 3, D = 64, N = 200;
    std::vector<float> k, v;
    random_kv_tokens(rng, N, H, D, k, v);
    TurboKvCache one(c, 2, H, 256, {4, 2, 4}), many(c, 2, H, 256, {4, 2, 4});
    for (int t = 0; t < N; ++t) one.append(1, &k[(size_t)t * H * D], &v[(size_t)t * H * D]);
    ThreadPool pool(2);
    // runs within a block, across one and across several, and an empty one
    const int runs[] = {5, 59, 1, 70, 0, 65};
    int t = 0;
    for (int n : runs) {
        many.append_tokens(1, n, &k[(size_t)t * H * D], &v[(size_t)t * H * D], t % 2 ? &pool : nullptr);
        t += n;
    }
    CHECK(t == N);
    CHECK(many.length(1) == N);
    CHECK(many.length(0) == 0);
    CHECK(many.blocks() == one.blocks());
    CHECK(many.recent_k() == one.recent_k());
    CHECK(many.recent_v() == one.recent_v());
    CHECK(many.recent_k_scale() == one.recent_k_scale());
    CHECK(many.recent_v_scale() == one.recent_v_scale());
    // a run that does not fit is refused whole
    CHECK_THROWS_WITH_AS(many.append_tokens(1, 57, k.data(), v.data(), &pool),
                         doctest::Contains("full (256 tokens)"), TurboError);
    CHECK(many.length(1) == N);
    CHECK(many.blocks() == one.blocks());
    CHECK_NOTHROW(many.append_tokens(1, 56, k.data(), v.data(), &pool));
    CHECK(many.length(1) == 256);
}

TEST_CASE("turbo: bad configurations and overflow give clear errors") {
    TurboConfig c;
    c.head_dim = 96;
    CHECK_THROWS_WITH_AS(turbo_validate(c), doctest::Contains("head_dim"), TurboError);
    c = TurboConfig{};
    c.poly_degree = 5;
    CHECK_THROWS_AS(turbo_validate(c), TurboError);
    c = TurboConfig{};
    CHECK_THROWS_WITH_AS(turbo_make_layout(c, 2, 64, {4, 3}), doctest::Contains("head_bits[1]"), TurboError);
    CHECK_THROWS_AS(turbo_make_layout(c, 2, 64, {4}), TurboError);
    TurboKvCache cache(c, 1, 1, 64, {4});
    std::vector<float> k(128, 1.0f), v(128, -1.0f);
    for (int i = 0; i < 64; ++i) cache.append(0, k.data(), v.data());
    CHECK_THROWS_WITH_AS(cache.append(0, k.data(), v.data()), doctest::Contains("full"), TurboError);
    CHECK_THROWS_AS(cache.append(3, k.data(), v.data()), TurboError);
    // a capacity that ends inside a block holds exactly that many tokens (the last block never fills)
    TurboKvCache odd(c, 1, 1, 100, {4});
    for (int i = 0; i < 100; ++i) CHECK_NOTHROW(odd.append(0, k.data(), v.data()));
    CHECK(odd.length(0) == 100);
    CHECK_THROWS_WITH_AS(odd.append(0, k.data(), v.data()), doctest::Contains("full (100 tokens)"), TurboError);
}

TEST_CASE("turbo: prefill twin (blockwise INT8 Q.K, SAS, FP16 P) vs float64, causal") {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd;
    const int Hq = 4, Hkv = 2, L = 128, D = 64;
    std::vector<float> q((size_t)Hq * L * D), k((size_t)Hkv * L * D), v(k.size()), out(q.size(), NAN);
    for (auto& x : q) x = nd(rng);
    for (auto& x : k) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    turbo_prefill_ref(q.data(), k.data(), v.data(), Hq, Hkv, L, D, 3, -16.0f, out.data());
    // float64 causal reference, row by row through attention_exact_f64 on the prefix
    std::vector<double> ref(q.size());
    for (int h = 0; h < Hq; ++h)
        for (int i = 0; i < L; ++i) {
            std::vector<float> kp((size_t)(i + 1) * D), vp(kp.size());
            const size_t kv = (size_t)(h / (Hq / Hkv)) * L * D;
            std::copy(k.begin() + kv, k.begin() + kv + (size_t)(i + 1) * D, kp.begin());
            std::copy(v.begin() + kv, v.begin() + kv + (size_t)(i + 1) * D, vp.begin());
            attention_exact_f64(&q[((size_t)h * L + i) * D], kp.data(), vp.data(), 1, 1, i + 1, D, &ref[((size_t)h * L + i) * D]);
        }
    auto rel = [&](const std::vector<float>& a, auto& b) {
        double num = 0, den = 0;
        for (size_t i = 0; i < a.size(); ++i) num += (a[i] - b[i]) * (a[i] - b[i]), den += (double)b[i] * b[i];
        return std::sqrt(num / den);
    };
    const double err = rel(out, ref);
    std::printf("prefill twin: rel err vs float64 %.2e\n", err);
    CHECK(err < 2e-2);  // the CUDA prefill measured 1.0e-2 on the H100 (same rounding steps)
    CHECK(err > 1e-4);  // INT8 Q/K really are quantized: the twin is not the exact path
    // exact exp2 instead of SAS (the Hopper kernel's default): the same INT8 error, a small change
    std::vector<float> exact(q.size(), NAN);
    turbo_prefill_ref(q.data(), k.data(), v.data(), Hq, Hkv, L, D, 3, -16.0f, exact.data(), false);
    std::printf("prefill twin, exact exp2: rel err vs float64 %.2e, vs SAS %.2e\n", rel(exact, ref), rel(exact, out));
    CHECK(rel(exact, ref) < 2e-2);
    CHECK(rel(exact, out) > 1e-6);  // it really takes another exponential
    CHECK(rel(exact, out) < 3e-3);
    CHECK_THROWS_AS(turbo_prefill_ref(q.data(), k.data(), v.data(), Hq, Hkv, 100, D, 3, -16.0f, out.data()), TurboError);
}

TEST_CASE("turbo: the SAS table gives turbo_sas_exp2's bits") {
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> ud(-20.0f, 0.0f);
    for (int degree : {2, 3})
        for (float threshold : {-16.0f, -8.0f}) {
            const TurboSasTable sas(degree, threshold);
            long mismatches = 0, checked = 0;
            auto check = [&](float x) {
                const float a = sas(x), b = turbo_sas_exp2(x, degree, threshold);
                checked++;
                if (std::memcmp(&a, &b, 4) != 0 && mismatches++ < 5)
                    std::printf("x=%.9g: table %.9g, turbo_sas_exp2 %.9g\n", x, a, b);
            };
            for (int i = 0; i < 2000000; ++i) check(ud(rng));
            // every fraction's FP16 rounding boundary, just below and above, at several integers
            for (int n = 0; n <= 17; ++n)
                for (uint32_t hb = 0; hb <= 0x3C00; hb += 7) {
                    const float f = fp16_to_fp32((half_bits)hb);
                    for (float x : {-(n + f), std::nextafter(-(n + f), 0.0f), std::nextafter(-(n + f), -1.0f)}) check(x);
                }
            check(0.0f);
            check(threshold);
            check(std::nextafter(threshold, -100.0f));
            check(NAN);
            INFO("degree " << degree << ", threshold " << threshold << ": " << mismatches << " of " << checked);
            CHECK(mismatches == 0);
            // row(): the same bits on the vector paths and the portable one (lengths not a
            // multiple of 8 or 32), the sum of what it wrote, and the same sum on all three;
            // once on random scores, once on every fraction's FP16 rounding boundary
            std::vector<float> random(1003), boundaries;
            for (auto& e : random) e = ud(rng);
            random[5] = NAN;
            for (int n = 0; n <= 17; ++n)
                for (uint32_t hb = 0; hb <= 0x3C00; hb++) {
                    const float f = fp16_to_fp32((half_bits)hb);
                    for (float x : {-(n + f), std::nextafter(-(n + f), 0.0f), std::nextafter(-(n + f), -1.0f)})
                        boundaries.push_back(x);
                }
            boundaries.resize(boundaries.size() / 32 * 32 + 29);
            for (const auto& [x, m] : {std::make_pair(random, 0.75f), std::make_pair(boundaries, 0.0f)}) {
                std::vector<float> sums;
                for (cpu::OpsIsa isa : {cpu::OpsIsa::Avx512, cpu::OpsIsa::Avx2, cpu::OpsIsa::Scalar}) {
                    cpu::cap_ops_isa(isa);
                    std::vector<float> r = x;
                    const float sum = sas.row(r.data(), (int)r.size(), m);
                    cpu::cap_ops_isa(cpu::OpsIsa::Avx512);
                    long bad = 0;
                    double want_sum = 0;
                    for (size_t i = 0; i < x.size(); ++i) {
                        const float want = turbo_sas_exp2(x[i] - m, degree, threshold);
                        bad += std::memcmp(&want, &r[i], 4) != 0;
                        want_sum += want;
                    }
                    INFO("isa " << (int)isa << ", " << x.size() << " scores");
                    CHECK(bad == 0);
                    // a float sum of N terms in any order is within about N float epsilons
                    CHECK(std::fabs(sum - want_sum) <= 1.2e-7 * (double)x.size() * want_sum);
                    sums.push_back(sum);
                }
                CHECK(std::memcmp(&sums[0], &sums[1], 4) == 0);
                CHECK(std::memcmp(&sums[0], &sums[2], 4) == 0);
            }
            // run() a block of 64 at a time, the last block padded: the row's bits, zeros past
            // its end, and row()'s sum
            std::vector<float> row_p = random;
            const float row_sum = sas.row(row_p.data(), (int)row_p.size(), 0.75f);
            for (cpu::OpsIsa isa : {cpu::OpsIsa::Avx512, cpu::OpsIsa::Avx2, cpu::OpsIsa::Scalar}) {
                cpu::cap_ops_isa(isa);
                std::vector<float> p(random.size() / 64 * 64 + 64, NAN);
                float acc[32] = {};
                for (size_t b = 0; b < p.size(); b += 64)
                    sas.run(&random[b], (int)std::min<size_t>(64, random.size() - b), 64, 0.75f, &p[b], acc);
                cpu::cap_ops_isa(cpu::OpsIsa::Avx512);
                INFO("isa " << (int)isa);
                CHECK(std::memcmp(p.data(), row_p.data(), row_p.size() * 4) == 0);
                CHECK(std::count(p.begin() + (long)random.size(), p.end(), 0.0f) == (long)(p.size() - random.size()));
                const float sum = TurboSasTable::total(acc);
                CHECK(std::memcmp(&sum, &row_sum, 4) == 0);
            }
        }
}

// The engine's Turbo attention: turbo_attend per segment against turbo_decode_ref after each
// append, on two caches fed the same tokens, on the vector paths and the portable one, with many
// readers of each block (float tiles) and few (the stored layout); and the same bits however the
// rows are split over threads.
TEST_CASE("turbo: turbo_attend per segment matches the reference decode after each append") {
    std::mt19937 rng(21);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    ThreadPool pool(8);  // more threads than KV heads: the rows are split over tasks
    for (int D : {64, 128})
        for (int T : {32, 64}) {
            TurboConfig c;
            c.head_dim = D;
            c.block_tokens = T;
            const int H = 2, G = 3, Hq = H * G, prompt = 5 * T + 7, decode = T + 3;
            TurboKvCache fast(c, 1, H, 1024, {4, 2}), ref(c, 1, H, 1024, {4, 2});
            double worst = 0;
            int rows = 0;
            auto feed = [&](int n) {
                std::vector<float> q((size_t)n * Hq * D), want((size_t)n * Hq * D), got((size_t)n * Hq * D, NAN),
                    got1((size_t)n * Hq * D, NAN), got2((size_t)n * Hq * D, NAN), got3((size_t)n * Hq * D, NAN);
                std::vector<float> ks((size_t)n * H * D), vs((size_t)n * H * D);
                for (auto& e : q) e = 2.0f * nd(rng);
                for (int t = 0; t < n; ++t) {
                    random_kv(rng, H, D, &ks[(size_t)t * H * D], &vs[(size_t)t * H * D]);
                    ref.append(0, &ks[(size_t)t * H * D], &vs[(size_t)t * H * D]);
                    turbo_decode_ref(ref, 0, &q[(size_t)t * Hq * D], Hq, &want[(size_t)t * Hq * D]);
                }
                for (int o = 0; o < n;) {
                    const int pos0 = fast.length(0), seg = std::min(n - o, T - pos0 % T);
                    for (int t = o; t < o + seg; ++t) fast.append(0, &ks[(size_t)t * H * D], &vs[(size_t)t * H * D]);
                    turbo_attend(fast, 0, pos0, seg, &q[(size_t)o * Hq * D], Hq, &got[(size_t)o * Hq * D], &pool);
                    turbo_attend(fast, 0, pos0, seg, &q[(size_t)o * Hq * D], Hq, &got1[(size_t)o * Hq * D], nullptr);
                    cpu::cap_ops_isa(cpu::OpsIsa::Scalar);  // the portable path
                    turbo_attend(fast, 0, pos0, seg, &q[(size_t)o * Hq * D], Hq, &got2[(size_t)o * Hq * D], nullptr);
                    cpu::cap_ops_isa(cpu::OpsIsa::Avx2);  // 8-float vectors, 2 readers a step
                    turbo_attend(fast, 0, pos0, seg, &q[(size_t)o * Hq * D], Hq, &got3[(size_t)o * Hq * D], nullptr);
                    cpu::cap_ops_isa(cpu::OpsIsa::Avx512);
                    o += seg;
                }
                CHECK(std::memcmp(got.data(), got1.data(), got.size() * 4) == 0);  // same bits on 8 threads
                // AVX2 and AVX-512 run the same FMAs per lane, R readers at a time: the same bits
                if (cpu::ops_isa() == cpu::OpsIsa::Avx512)
                    CHECK(std::memcmp(got.data(), got3.data(), got.size() * 4) == 0);
                for (int t = 0; t < n; ++t)
                    for (int h = 0; h < Hq; ++h) {
                        for (const std::vector<float>* g : {&got, &got2, &got3}) {
                            double num = 0, den = 0;
                            for (int d = 0; d < D; ++d) {
                                const size_t i = ((size_t)t * Hq + h) * D + d;
                                num += ((double)(*g)[i] - want[i]) * ((double)(*g)[i] - want[i]);
                                den += (double)want[i] * want[i];
                            }
                            worst = std::max(worst, std::sqrt(num / den));
                        }
                        rows++;
                    }
            };
            feed(prompt);                                     // segments of T and 7 rows: float tiles
            for (int i = 0; i < decode; ++i) feed(1);         // 3 readers a block: the stored layout
            for (int i = 0; i < T / 5 + 1; ++i) feed(5);     // 15 readers, across a block's end: stored
            std::printf("turbo_attend D=%d T=%d: worst row relative error vs turbo_decode_ref %.2e (%d rows)\n", D, T,
                        worst, rows);
            // the scores are summed in another order (differences ~1e-6); where that moves a
            // fraction across an FP16 rounding boundary, SAS's probability moves by one FP16 step
            // (2^-11 relative)
            CHECK(worst < 2e-3);
        }
}

TEST_CASE("turbo: turbo_attend refuses rows that are not the last ones of one block") {
    TurboConfig c;
    c.head_dim = 64;
    TurboKvCache cache(c, 1, 1, 512, {4});
    std::vector<float> k(64, 0.5f), v(64, 0.25f), q(8 * 64, 1.0f), out(8 * 64);
    for (int t = 0; t < 70; ++t) cache.append(0, k.data(), v.data());
    CHECK_NOTHROW(turbo_attend(cache, 0, 66, 4, q.data(), 1, out.data(), nullptr));
    CHECK_NOTHROW(turbo_attend(cache, 0, 64, 6, q.data(), 1, out.data(), nullptr));
    CHECK_THROWS_WITH_AS(turbo_attend(cache, 0, 65, 4, q.data(), 1, out.data(), nullptr),
                         doctest::Contains("must end at the sequence's last position"), TurboError);
    CHECK_THROWS_WITH_AS(turbo_attend(cache, 0, 62, 8, q.data(), 1, out.data(), nullptr),
                         doctest::Contains("one block"), TurboError);
    CHECK_THROWS_AS(turbo_attend(cache, 1, 69, 1, q.data(), 1, out.data(), nullptr), TurboError);
    CHECK_THROWS_AS(turbo_attend(cache, 0, 69, 1, q.data(), 0, out.data(), nullptr), TurboError);
}
