// GPU tests of the decode kernels against float64 references on fresh random inputs.
// Outputs are poisoned (NaN) before each launch; every element must be written and finite.
// Without a CUDA device every case is skipped (doctest skip), saying so.
#include "fp16_decode.cuh"
#include "turbo_prefill.cuh"
#include "turbo_decode.cuh"
#include "tandem/quant_types.h"
#include "tandem/turbo_attention.h"
#include "test_util.h"

#include <doctest/doctest.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

using namespace tandem;

namespace {

bool has_gpu() {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}
const bool kNoGpu = !has_gpu();

#define CK(x) REQUIRE((x) == cudaSuccess)

template <class T>
T* upload(const std::vector<T>& v) {
    T* d = nullptr;
    CK(cudaMalloc(&d, v.size() * sizeof(T) + 16));
    CK(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

double rel(const std::vector<float>& a, const std::vector<double>& r) {
    double n = 0, d = 0;
    for (size_t i = 0; i < a.size(); ++i) n += (a[i] - r[i]) * (a[i] - r[i]), d += r[i] * r[i];
    return std::sqrt(n / d);
}

bool all_finite(const std::vector<float>& a) {
    for (float x : a)
        if (!std::isfinite(x)) return false;
    return true;
}

uint32_t fresh_seed() {
    const uint32_t s = tandem_test::test_seed();
    std::printf("seed %u\n", s);
    return s;
}

// Random K/V for one token: keys with outlier channels, as in the CPU test.
void token_kv(std::mt19937& rng, int H, int D, float* k, float* v, float peak = 1.0f) {
    std::normal_distribution<float> nd;
    for (int i = 0; i < H * D; ++i) {
        k[i] = nd(rng) * ((i % D) % 17 == 3 ? 6.0f : 1.0f) * peak;
        v[i] = nd(rng);
    }
}

// peak >= 0: token `peak` of every sequence gets keys = 4 x the group's summed queries, so
// every other tile
// falls under the SAS threshold and is skipped (V not read).
struct TurboCase { int D, Hkv, G; std::vector<int> lens; float frac; int splits; int peak = -1; int v_group = 64; };

}  // namespace

TEST_CASE("cuda: device present" * doctest::skip(false)) {
    if (kNoGpu) {
        std::printf("skipped: no CUDA device\n");
        MESSAGE("skipped: no CUDA device");
    }
}

TEST_CASE("cuda: turbo decode vs CPU twin and float64" * doctest::skip(kNoGpu)) {
    std::mt19937 rng(fresh_seed());
    const TurboCase cases[] = {
        {128, 2, 4, {1, 64, 1000, 2077}, 0.25f, 0},
        {128, 2, 7, {130, 777}, 0.5f, 0},
        {64, 4, 4, {63, 1500, 64 * 9}, 0.25f, 0},
        {128, 1, 8, {3000}, 0.0f, 1},
        {64, 2, 1, {333}, 1.0f, 0},
        {128, 2, 4, {4000, 1999}, 0.25f, 0, 1500},
        {64, 4, 4, {700, 64}, 0.0f, 0},
        // every kernel instance: 1, 2 or 4 value groups
        {128, 2, 4, {1000, 77}, 0.25f, 0, -1, 32},
        {128, 2, 4, {1000, 77}, 0.25f, 0, -1, 128},
        {64, 2, 4, {900, 130}, 0.5f, 0, -1, 32},
    };
    for (const auto& tc : cases) {
        TurboConfig c;
        c.head_dim = tc.D;
        c.v_group = tc.v_group;
        const int B = (int)tc.lens.size(), Hq = tc.Hkv * tc.G, D = tc.D;
        int max_len = 0;
        for (int l : tc.lens) max_len = std::max(max_len, l);
        max_len = (max_len + 63) / 64 * 64;
        std::vector<double> pr(tc.Hkv);
        for (auto& x : pr) x = std::uniform_real_distribution<double>(0, 1)(rng);
        TurboKvCache cache(c, B, tc.Hkv, max_len, turbo_choose_bits(pr, tc.frac));
        std::vector<float> q((size_t)B * Hq * D), out(q.size(), NAN);
        std::normal_distribution<float> nd;
        for (auto& x : q) x = nd(rng);
        std::vector<float> k((size_t)tc.Hkv * D), v((size_t)tc.Hkv * D);
        for (int b = 0; b < B; ++b)
            for (int t = 0; t < tc.lens[b]; ++t) {
                token_kv(rng, tc.Hkv, D, k.data(), v.data());
                if (t == tc.peak)
                    for (int h = 0; h < tc.Hkv; ++h)
                        for (int d = 0; d < D; ++d) {  // 4 x the sum of the group's queries
                            float sum = 0.0f;
                            for (int g = 0; g < tc.G; ++g) sum += q[((size_t)b * Hq + h * tc.G + g) * D + d];
                            k[h * D + d] = 4.0f * sum;
                        }
                cache.append(b, k.data(), v.data());
            }
        // references once per case: the CPU twin and float64 on the dequantized cache
        std::vector<std::vector<double>> twin(B), f64(B);
        for (int b = 0; b < B; ++b) {
            const int L = tc.lens[b];
            std::vector<float> r((size_t)Hq * D), kd((size_t)tc.Hkv * L * D), vd(kd.size());
            turbo_decode_ref(cache, b, q.data() + (size_t)b * Hq * D, Hq, r.data());
            twin[b].assign(r.begin(), r.end());
            f64[b].resize((size_t)Hq * D);
            cache.dequantize(b, kd.data(), vd.data());
            attention_exact_f64(q.data() + (size_t)b * Hq * D, kd.data(), vd.data(), Hq, tc.Hkv, L, D, f64[b].data());
        }
        TurboDecodeParams p;
        p.q = upload(q);
        p.blocks = upload(cache.blocks());
        p.recent_k = upload(cache.recent_k());
        p.recent_v = upload(cache.recent_v());
        p.recent_ks = upload(cache.recent_k_scale());
        p.recent_vs = upload(cache.recent_v_scale());
        p.seq_len = upload(tc.lens);
        p.batch = B;
        p.n_q_heads = Hq;
        p.max_len = max_len;
        p.layout = cache.layout();
        p.poly_degree = c.poly_degree;
        p.threshold = c.threshold;
        // the case's split count (0: the launcher's), an odd one larger than most sequences'
        // tile count (empty splits), 20 (a multiple of 4 warps: the CTA merges its warps'
        // splits), and 300 (merged too, past a combine chunk at either head size: the
        // combine's several rounds, some all empty)
        const int split_counts[] = {tc.splits, 37, 20, 300};
        // a stream of its own (not the legacy default stream)
        cudaStream_t stream;
        CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
        for (int splits : split_counts) {
            p.n_splits = splits;
            std::fill(out.begin(), out.end(), NAN);
            p.out = upload(out);  // poison
            std::vector<float> ws(turbo_decode_workspace_floats(p), NAN);
            p.workspace = upload(ws);
            CK(cudaDeviceSynchronize());  // the uploads (legacy stream) are done
            turbo_decode_cuda(p, stream);
            CK(cudaStreamSynchronize(stream));
            CK(cudaMemcpy(out.data(), p.out, out.size() * 4, cudaMemcpyDeviceToHost));
            CHECK(all_finite(out));
            double worst_twin = 0, worst_f64 = 0;
            for (int b = 0; b < B; ++b) {
                std::vector<float> o(out.begin() + (size_t)b * Hq * D, out.begin() + (size_t)(b + 1) * Hq * D);
                worst_twin = std::max(worst_twin, rel(o, twin[b]));
                worst_f64 = std::max(worst_f64, rel(o, f64[b]));
            }
            std::printf("turbo decode D=%d Hkv=%d G=%d frac=%.2f peak=%d v_group=%d splits=%d: rel err "
                        "vs CPU twin %.2e, vs float64 on the cache %.2e\n",
                        D, tc.Hkv, tc.G, tc.frac, tc.peak, tc.v_group, splits, worst_twin, worst_f64);
            // The twin thresholds against the global max, the kernel against its running max
            // (keeping a few more terms); both use the same SAS polynomial. FP16 tensor-core
            // operands (q x key scale, p x value scale, each rounded twice) add ~2e-3.
            CHECK(worst_twin < 1e-2);
            CHECK(worst_f64 < 1e-2);
            CK(cudaFree(p.out));
            CK(cudaFree(p.workspace));
        }
        CK(cudaStreamDestroy(stream));
        for (void* ptr : {(void*)p.q, (void*)p.blocks, (void*)p.recent_k, (void*)p.recent_v,
                          (void*)p.recent_ks, (void*)p.recent_vs, (void*)p.seq_len})
            CK(cudaFree(ptr));
    }
}

TEST_CASE("cuda: fp16 decode vs float64, any split count" * doctest::skip(kNoGpu)) {
    std::mt19937 rng(fresh_seed());
    for (int D : {128, 64})
        for (int G : {1, 4, 7, 8}) {
            const int B = 3, Hkv = 2, Hq = Hkv * G, max_len = 2100;
            const std::vector<int> lens = {2100, 1, 777};
            std::vector<uint16_t> k16((size_t)B * Hkv * max_len * D), v16(k16.size());
            std::normal_distribution<float> nd;
            for (size_t i = 0; i < k16.size(); ++i) k16[i] = fp32_to_fp16(nd(rng)), v16[i] = fp32_to_fp16(nd(rng));
            std::vector<float> q((size_t)B * Hq * D);
            for (auto& x : q) x = nd(rng);
            Fp16DecodeParams p;
            p.q = upload(q);
            p.k = upload(k16);
            p.v = upload(v16);
            p.seq_len = upload(lens);
            p.batch = B, p.n_q_heads = Hq, p.n_kv_heads = Hkv, p.head_dim = D, p.max_len = max_len;
            // Runs x at each split count (outputs and workspace poisoned) and checks each of its n
            // batch elements b against float64 attention of its q (qh + b * qs) over the first
            // len(b) tokens of sequence kv_seq(b)'s cache.
            auto check = [&](Fp16DecodeParams x, const float* qh, size_t qs, int n, auto len, auto kv_seq,
                             std::initializer_list<int> split_counts, const char* what) {
                for (int splits : split_counts) {
                    x.n_splits = splits;
                    std::vector<float> out((size_t)n * Hq * D, NAN), ws(fp16_decode_workspace_floats(x), NAN);
                    x.out = upload(out);
                    x.workspace = upload(ws);
                    fp16_decode_cuda(x, 0);
                    CK(cudaDeviceSynchronize());
                    CK(cudaMemcpy(out.data(), x.out, out.size() * 4, cudaMemcpyDeviceToHost));
                    CHECK(all_finite(out));
                    double worst = 0;
                    for (int b = 0; b < n; ++b) {
                        const int L = len(b), sb = kv_seq(b);
                        std::vector<float> kf((size_t)Hkv * L * D), vf(kf.size());
                        for (int h = 0; h < Hkv; ++h)
                            for (int t = 0; t < L; ++t)
                                for (int d = 0; d < D; ++d) {
                                    const size_t src = (((size_t)sb * Hkv + h) * max_len + t) * D + d;
                                    kf[((size_t)h * L + t) * D + d] = fp16_to_fp32(k16[src]);
                                    vf[((size_t)h * L + t) * D + d] = fp16_to_fp32(v16[src]);
                                }
                        std::vector<double> e((size_t)Hq * D);
                        attention_exact_f64(qh + (size_t)b * qs, kf.data(), vf.data(), Hq, Hkv, L, D, e.data());
                        std::vector<float> o(out.begin() + (size_t)b * Hq * D, out.begin() + (size_t)(b + 1) * Hq * D);
                        worst = std::max(worst, rel(o, e));
                    }
                    std::printf("fp16 %s D=%d G=%d splits=%d: rel err vs float64 %.2e\n", what, D, G, splits, worst);
                    CHECK(worst < 1e-4);  // exact FP16 K/V, q and p as hi + lo halves, float accumulation
                    CK(cudaFree(x.out));
                    CK(cudaFree(x.workspace));
                }
            };
            // 100 splits: empty ones, several combine rounds
            check(p, q.data(), (size_t)Hq * D, B, [&](int b) { return lens[b]; }, [](int b) { return b; }, {0, 1, 7, 100},
                  "decode");
            // causal (a prefill chunk): the last 40 tokens of sequence 0's first 777 as the
            // batch, q rows 8 floats apart beyond their Hq x D (as in the engine's QKV rows)
            const int NQ = 40, last = 777, qs = Hq * D + 8;
            std::vector<float> qc((size_t)NQ * qs, NAN);
            for (int b = 0; b < NQ; ++b)
                for (int i = 0; i < Hq * D; ++i) qc[(size_t)b * qs + i] = nd(rng);
            const std::vector<int> last_len = {last};
            Fp16DecodeParams c = p;
            c.q = upload(qc);
            c.seq_len = upload(last_len);
            c.batch = NQ, c.causal = true, c.q_stride = qs;
            check(c, qc.data(), (size_t)qs, NQ, [&](int b) { return last - NQ + 1 + b; }, [](int) { return 0; }, {0, 3},
                  "causal");
            CK(cudaFree((void*)c.q)); CK(cudaFree((void*)c.seq_len));
            CK(cudaFree((void*)p.q)); CK(cudaFree((void*)p.k)); CK(cudaFree((void*)p.v)); CK(cudaFree((void*)p.seq_len));
        }
}

TEST_CASE("cuda: turbo prefill (INT8 Q.K^T, SAS, causal) vs float64" * doctest::skip(kNoGpu)) {
    std::mt19937 rng(fresh_seed());
    for (int D : {128, 64}) {
        const int B = 2, Hkv = 2, G = 4, Hq = Hkv * G, L = 256;
        std::normal_distribution<float> nd;
        std::vector<uint16_t> q16((size_t)B * Hq * L * D), k16((size_t)B * Hkv * L * D), v16(k16.size());
        for (auto& x : q16) x = fp32_to_fp16(nd(rng));
        for (auto& x : k16) x = fp32_to_fp16(nd(rng));
        for (auto& x : v16) x = fp32_to_fp16(nd(rng));
        std::vector<float> out(q16.size(), NAN);
        TurboPrefillParams p;
        p.q = upload(q16);
        p.k = upload(k16);
        p.v = upload(v16);
        p.out = upload(out);
        p.batch = B, p.n_q_heads = Hq, p.n_kv_heads = Hkv, p.head_dim = D, p.len = L;
        void* ws = nullptr;
        CK(cudaMalloc(&ws, turbo_prefill_workspace_bytes(p)));
        p.workspace = ws;
        turbo_prefill_cuda(p, 0);
        CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(out.data(), p.out, out.size() * 4, cudaMemcpyDeviceToHost));
        CHECK(all_finite(out));
        // float64 causal reference
        double num = 0, den = 0;
        std::vector<double> sc(L);
        for (int b = 0; b < B; ++b)
            for (int h = 0; h < Hq; ++h)
                for (int i = 0; i < L; ++i) {
                    const uint16_t* qr = &q16[(((size_t)b * Hq + h) * L + i) * D];
                    const size_t kvb = ((size_t)b * Hkv + h / G) * L;
                    double m = -1e300, l = 0;
                    for (int t = 0; t <= i; ++t) {
                        double acc = 0;
                        for (int d = 0; d < D; ++d) acc += (double)fp16_to_fp32(qr[d]) * fp16_to_fp32(k16[(kvb + t) * D + d]);
                        sc[t] = acc / std::sqrt((double)D);
                        m = std::max(m, sc[t]);
                    }
                    for (int d = 0; d < D; ++d) {
                        double o = 0;
                        if (d == 0) l = 0;
                        for (int t = 0; t <= i; ++t) {
                            const double w = std::exp(sc[t] - m);
                            if (d == 0) l += w;
                            o += w * fp16_to_fp32(v16[(kvb + t) * D + d]);
                        }
                        // l is complete after d == 0's pass
                        const double ref = o / l;
                        const double got = out[(((size_t)b * Hq + h) * L + i) * D + d];
                        num += (got - ref) * (got - ref);
                        den += ref * ref;
                    }
                }
        const double err = std::sqrt(num / den);
        std::printf("turbo prefill D=%d L=%d: rel err vs float64 %.2e\n", D, L, err);
        CHECK(err < 2e-2);  // blockwise INT8 Q and K, FP16 P, SAS
        CK(cudaFree((void*)p.q)); CK(cudaFree((void*)p.k)); CK(cudaFree((void*)p.v)); CK(cudaFree(p.out)); CK(cudaFree(ws));
    }
}

TEST_CASE("cuda: bad parameters are refused with a message" * doctest::skip(kNoGpu)) {
    TurboDecodeParams p;
    CHECK_THROWS_WITH_AS(turbo_decode_cuda(p, 0), doctest::Contains("null"), TurboError);
    float* dummy = nullptr;
    CK(cudaMalloc(&dummy, 1024));
    p.q = p.out = p.workspace = dummy;
    p.recent_ks = p.recent_vs = dummy;
    p.blocks = (const uint8_t*)dummy;
    p.recent_k = p.recent_v = (const int8_t*)dummy;
    p.seq_len = (const int*)dummy;
    p.batch = 1, p.n_q_heads = 8, p.max_len = 128;
    p.layout = turbo_make_layout(TurboConfig{}, 2, 128, {4, 4});
    p.n_splits = -1;
    CHECK_THROWS_WITH_AS(turbo_decode_cuda(p, 0), doctest::Contains("n_splits"), TurboError);
    CHECK_THROWS_WITH_AS(turbo_decode_workspace_floats(p), doctest::Contains("n_splits"), TurboError);
    p.n_splits = 0;
    p.layout.v_group = 16;
    CHECK_THROWS_WITH_AS(turbo_decode_cuda(p, 0), doctest::Contains("v_group"), TurboError);
    p.layout = turbo_make_layout(TurboConfig{}, 2, 128, {4, 4});
    p.n_q_heads = 18;
    CHECK_THROWS_WITH_AS(turbo_decode_cuda(p, 0), doctest::Contains("n_q_heads"), TurboError);
    p.n_q_heads = 8;
    p.blocks = (const uint8_t*)dummy + 4;
    CHECK_THROWS_WITH_AS(turbo_decode_cuda(p, 0), doctest::Contains("aligned"), TurboError);
    Fp16DecodeParams f;
    f.q = f.out = f.workspace = dummy;
    f.k = f.v = (const uint16_t*)dummy;
    f.seq_len = (const int*)dummy;
    f.batch = 1, f.n_q_heads = 18, f.n_kv_heads = 2, f.head_dim = 128, f.max_len = 10;
    CHECK_THROWS_WITH_AS(fp16_decode_cuda(f, 0), doctest::Contains("n_q_heads"), TurboError);
    f.n_q_heads = 8, f.head_dim = 96;
    CHECK_THROWS_WITH_AS(fp16_decode_cuda(f, 0), doctest::Contains("head_dim"), TurboError);
    f.head_dim = 128, f.q_stride = 8 * 128 - 4;  // shorter than a token's heads
    CHECK_THROWS_WITH_AS(fp16_decode_cuda(f, 0), doctest::Contains("q_stride"), TurboError);
    f.q_stride = 8 * 128 + 2;  // rows would lose 16-byte alignment
    CHECK_THROWS_WITH_AS(fp16_decode_cuda(f, 0), doctest::Contains("q_stride"), TurboError);
    CK(cudaFree(dummy));
}
