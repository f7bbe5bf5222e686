// GPU tests of the decode kernels against float64 references on fresh random inputs.
// Outputs are poisoned (NaN) before each launch; every element must be written and finite.
// Without a CUDA device every case is skipped (doctest skip), saying so.
#include "cuda_sas_twins.h"
#include "fp16_decode.cuh"
#include "hopper_prefill.cuh"
#include "turbo_prefill.cuh"
#include "turbo_cache_prefill.cuh"
#include "turbo_decode.cuh"
#include "tandem/quant_types.h"
#include "tandem/turbo_attention.h"
#include "test_util.h"

#include <doctest/doctest.h>
#include <cuda_runtime.h>

#include <cstring>

#include <cmath>
#include <cstring>
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

// A prompt pass of n tokens from pos0 on a cache that already holds pos0 tokens: the kernel
// against the engine's CPU path (turbo_attend per block of the pass, after that block's
// appends), every row. The INT8 slots are the recent buffer after each block's last token of
// the pass, as the GPU engine copies them.
TEST_CASE("cuda: turbo cache prefill vs the CPU twin (turbo_attend)" * doctest::skip(kNoGpu)) {
    std::mt19937 rng(fresh_seed());
    struct Case { int D, Hkv, G; int64_t pos0; int n; float frac; int v_group; };
    const Case cases[] = {
        {128, 2, 4, 0, 200, 0.5f, 64},    // from position 0, two heads of two bit widths
        {128, 2, 4, 70, 190, 0.0f, 64},   // after a cached prefix, across three block ends
        {64, 4, 1, 10, 54, 0.25f, 32},    // one block's rest: its last token reads the record
        {128, 1, 8, 64, 128, 1.0f, 128},  // 8 query heads a KV head, all 2-bit
        {64, 2, 3, 5, 300, 0.5f, 64},     // 3 heads padded to 4 rows
        {128, 2, 2, 127, 2, 0.0f, 32},    // a block's last token, then the next block's first
        {64, 2, 7, 0, 64, 0.5f, 64},      // exactly one block
        {128, 8, 4, 300, 1000, 0.25f, 64},  // the 1B shape's heads, a long pass
    };
    for (const Case& tc : cases) {
        TurboConfig c;
        c.head_dim = tc.D;
        c.v_group = tc.v_group;
        const int Hq = tc.Hkv * tc.G, D = tc.D, T = c.block_tokens;
        const int64_t end = tc.pos0 + tc.n;
        std::vector<double> pr(tc.Hkv);
        for (auto& x : pr) x = std::uniform_real_distribution<double>(0, 1)(rng);
        TurboKvCache cache(c, 1, tc.Hkv, (int)((end + T - 1) / T * T), turbo_choose_bits(pr, tc.frac));
        std::vector<float> k((size_t)tc.Hkv * D), v(k.size());
        for (int64_t t = 0; t < tc.pos0; ++t) {
            token_kv(rng, tc.Hkv, D, k.data(), v.data());
            cache.append(0, k.data(), v.data());
        }
        std::vector<float> q((size_t)tc.n * Hq * D), twin(q.size()), out(q.size(), NAN);
        std::normal_distribution<float> nd;
        for (auto& x : q) x = nd(rng);
        const int slots = turbo_cache_prefill_slots(tc.pos0, tc.n, T);
        const size_t slot_kv = (size_t)tc.Hkv * T * D, slot_sc = (size_t)tc.Hkv * T;
        std::vector<int8_t> sk(slots * slot_kv), sv(sk.size());
        std::vector<float> sks(slots * slot_sc), svs(sks.size());
        for (int64_t a = tc.pos0; a < end;) {  // block by block, as the engine's CPU path
            const int64_t e = std::min<int64_t>(end, (a / T + 1) * T);
            for (int64_t t = a; t < e; ++t) {
                token_kv(rng, tc.Hkv, D, k.data(), v.data());
                cache.append(0, k.data(), v.data());
            }
            const size_t s = (size_t)(a / T - tc.pos0 / T);
            std::copy(cache.recent_k().begin(), cache.recent_k().end(), sk.begin() + s * slot_kv);
            std::copy(cache.recent_v().begin(), cache.recent_v().end(), sv.begin() + s * slot_kv);
            std::copy(cache.recent_k_scale().begin(), cache.recent_k_scale().end(), sks.begin() + s * slot_sc);
            std::copy(cache.recent_v_scale().begin(), cache.recent_v_scale().end(), svs.begin() + s * slot_sc);
            const size_t at = (size_t)(a - tc.pos0) * Hq * D;
            turbo_attend(cache, 0, (int)a, (int)(e - a), q.data() + at, Hq, twin.data() + at, nullptr);
            a = e;
        }
        TurboCachePrefillParams p;
        p.q = upload(q), p.out = upload(out), p.blocks = upload(cache.blocks());
        CK(cudaMalloc(&p.tiles, turbo_cache_prefill_scratch_bytes(tc.pos0, tc.n, cache.layout())));
        p.block_int8 = {upload(sk), upload(sv), upload(sks), upload(svs)};
        p.pos0 = tc.pos0, p.n = tc.n, p.n_q_heads = Hq, p.layout = cache.layout();
        p.poly_degree = c.poly_degree, p.threshold = c.threshold;
        CK(cudaDeviceSynchronize());
        turbo_cache_prefill_cuda(p, nullptr);
        CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(out.data(), p.out, out.size() * 4, cudaMemcpyDeviceToHost));
        CHECK(all_finite(out));
        double worst = 0;
        int64_t worst_pos = -1;
        for (int i = 0; i < tc.n; ++i)
            for (int h = 0; h < Hq; ++h) {
                const size_t o = ((size_t)i * Hq + h) * D;
                std::vector<float> a(out.begin() + o, out.begin() + o + D);
                const double r = rel(a, std::vector<double>(twin.begin() + o, twin.begin() + o + D));
                if (r > worst) worst = r, worst_pos = tc.pos0 + i;
            }
        std::printf("turbo cache prefill D=%d Hkv=%d G=%d pos0=%lld n=%d frac=%.2f v_group=%d: worst row rel err vs "
                    "turbo_attend %.2e (position %lld)\n",
                    D, tc.Hkv, tc.G, (long long)tc.pos0, tc.n, tc.frac, tc.v_group, worst, (long long)worst_pos);
        // FP16 operands (q, the keys' and values' real values, p) and the running maximum, as
        // the decode kernel against the same twin (its bound, 1e-2). A wrong tile (another
        // block's record, a missed mask, the INT8 copy for a block's last token) is O(1).
        CHECK(worst < 1e-2);
        for (const void* ptr : {(const void*)p.q, (const void*)p.out, (const void*)p.tiles, (const void*)p.blocks,
                                (const void*)p.block_int8.k, (const void*)p.block_int8.v, (const void*)p.block_int8.ks,
                                (const void*)p.block_int8.vs})
            CK(cudaFree((void*)ptr));
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

TEST_CASE("cuda: the conversion-free SAS and int-to-float forms give their twins' bits" * doctest::skip(kNoGpu)) {
    std::mt19937 rng(fresh_seed());
    std::uniform_real_distribution<float> u(0.0f, 70.0f);
    std::vector<float> y;
    for (int i = 0; i < 4000; ++i) y.push_back(u(rng));
    for (float e : {0.0f, 1.0f, 15.999999f, 16.0f, 16.000002f, 59.5f, 60.0f, 1e9f, INFINITY, NAN})
        y.push_back(e), y.push_back(std::nextafter(e, 0.0f));
    for (int degree : {2, 3})
        for (float threshold : {-16.0f, -60.0f, -1.0f}) {
            std::vector<float> plain, fast;
            sas_twins_cuda(y, degree, threshold, plain, fast);
            int diff = 0;
            for (size_t i = 0; i < y.size(); ++i) diff += std::memcmp(&plain[i], &fast[i], 4) != 0;
            INFO("degree " << degree << ", threshold " << threshold);
            CHECK(diff == 0);
        }
    std::vector<int> x;
    for (int i = -(1 << 22) + 1; i < (1 << 22); i += 997) x.push_back(i);
    for (int e : {0, 1, -1, 127 * 127 * 128, -127 * 127 * 128, (1 << 22) - 1, -(1 << 22) + 1}) x.push_back(e);
    std::vector<float> plain, fast;
    int_twins_cuda(x, plain, fast);
    CHECK(plain == fast);
}

// Random FP16 Q, K, V of a prefill case and the float64 causal softmax(q k^T / sqrt(D)) v.
struct PrefillCase {
    int B, Hq, Hkv, L, D;
    std::vector<uint16_t> q, k, v;
    std::vector<double> ref;  // (B, Hq, L, D)
};

PrefillCase make_prefill_case(std::mt19937& rng, int B, int Hkv, int G, int L, int D) {
    PrefillCase c{B, Hkv * G, Hkv, L, D, {}, {}, {}, {}};
    std::normal_distribution<float> nd;
    c.q.resize((size_t)B * c.Hq * L * D);
    c.k.resize((size_t)B * Hkv * L * D);
    c.v.resize(c.k.size());
    for (auto& x : c.q) x = fp32_to_fp16(nd(rng));
    for (auto& x : c.k) x = fp32_to_fp16(nd(rng));
    for (auto& x : c.v) x = fp32_to_fp16(nd(rng));
    c.ref.assign(c.q.size(), 0.0);
    std::vector<double> w(L);
    for (int b = 0; b < B; ++b)
        for (int h = 0; h < c.Hq; ++h)
            for (int i = 0; i < L; ++i) {
                const uint16_t* qr = &c.q[(((size_t)b * c.Hq + h) * L + i) * D];
                const size_t kvb = ((size_t)b * Hkv + h / G) * L;
                double m = -1e300, l = 0;
                for (int t = 0; t <= i; ++t) {
                    double acc = 0;
                    for (int d = 0; d < D; ++d) acc += (double)fp16_to_fp32(qr[d]) * fp16_to_fp32(c.k[(kvb + t) * D + d]);
                    w[t] = acc / std::sqrt((double)D);
                    m = std::max(m, w[t]);
                }
                for (int t = 0; t <= i; ++t) l += (w[t] = std::exp(w[t] - m));
                double* o = &c.ref[(((size_t)b * c.Hq + h) * L + i) * D];
                for (int t = 0; t <= i; ++t)
                    for (int d = 0; d < D; ++d) o[d] += w[t] / l * fp16_to_fp32(c.v[(kvb + t) * D + d]);
            }
    return c;
}

// Runs `launch(q, k, v, out, workspace)` on the case's tensors; returns the output (NaN-poisoned
// before the launch).
template <class Launch>
std::vector<float> run_prefill(const PrefillCase& c, size_t ws_bytes, Launch launch) {
    std::vector<float> out(c.q.size(), NAN);
    uint16_t *q = upload(c.q), *k = upload(c.k), *v = upload(c.v);
    float* o = upload(out);
    void* ws = nullptr;
    CK(cudaMalloc(&ws, ws_bytes));
    launch(q, k, v, o, ws);
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(out.data(), o, out.size() * 4, cudaMemcpyDeviceToHost));
    for (void* p : {(void*)q, (void*)k, (void*)v, (void*)o, ws}) CK(cudaFree(p));
    return out;
}

// The launch choices change where Q is quantized (TurboPrefillLaunch::quantize_q_in_attention,
// INT8 only), when the attention starts (programmatic) and, at D = 64, how many consumer
// warpgroups share a CTA (two or three: each row sees the same tiles in the same order, and a
// tile wholly masked for a row leaves it as it was), not the arithmetic: every launch gives
// `out`'s bits.
void check_launches_same_bits(const PrefillCase& c, TurboPrefillParams p, const std::vector<float>& out, const char* what) {
    const std::vector<int> warpgroups = p.head_dim == 64 ? std::vector<int>{2, 3} : std::vector<int>{0};
    for (int w : warpgroups)
        for (bool q_in_attention : {false, true})
            for (bool programmatic : {false, true}) {
                if (q_in_attention && p.qk != PrefillQk::Int8) continue;
                TurboPrefillLaunch how;
                how.warpgroups = w, how.quantize_q_in_attention = q_in_attention, how.programmatic = programmatic;
                const auto again = run_prefill(c, turbo_prefill_workspace_bytes(p), [&](auto q, auto k, auto v, float* o, void* ws) {
                    p.q = q, p.k = k, p.v = v, p.out = o, p.workspace = ws;
                    turbo_prefill_cuda(p, 0, how);
                });
                CAPTURE(what);
                CAPTURE(w);
                CAPTURE(q_in_attention);
                CAPTURE(programmatic);
                CHECK(std::memcmp(again.data(), out.data(), out.size() * sizeof(float)) == 0);
            }
}

TEST_CASE("cuda: turbo prefill (INT8 Q.K^T, SAS, causal) vs float64, portable and Hopper kernels" * doctest::skip(kNoGpu)) {
    std::mt19937 rng(fresh_seed());
    std::vector<PrefillKernel> kernels = {PrefillKernel::Portable};
    if (hopper_prefill_available()) kernels.push_back(PrefillKernel::Hopper);
    else MESSAGE("Hopper prefill kernel skipped: the device is not sm_90");
    for (int D : {128, 64})
        for (int L : {256, 320}) {  // 320: a last query block of 64 rows (the Hopper kernel's blocks are 128)
            const PrefillCase c = make_prefill_case(rng, 2, 2, 4, L, D);
            const int degree = L == 320 ? 2 : 3;  // both SAS polynomials
            // the CPU twin (same INT8 blocks, integer dots, SAS or exact exp2, FP16 P), per sequence
            auto twin_of = [&](bool sas) {
                std::vector<double> twin(c.ref.size());
                const size_t nq = (size_t)c.Hq * L * D, nk = (size_t)c.Hkv * L * D;
                std::vector<float> q(nq), k(nk), v(nk), o(nq);
                for (int b = 0; b < c.B; ++b) {
                    for (size_t i = 0; i < nq; ++i) q[i] = fp16_to_fp32(c.q[b * nq + i]);
                    for (size_t i = 0; i < nk; ++i) k[i] = fp16_to_fp32(c.k[b * nk + i]), v[i] = fp16_to_fp32(c.v[b * nk + i]);
                    turbo_prefill_ref(q.data(), k.data(), v.data(), c.Hq, c.Hkv, L, D, degree, -16.0f, o.data(), sas);
                    for (size_t i = 0; i < nq; ++i) twin[b * nq + i] = o[i];
                }
                return twin;
            };
            const std::vector<double> twin = twin_of(true);
            for (PrefillKernel kern : kernels)  // SAS on both kernels
                for (PrefillQk qk : {PrefillQk::Int8, PrefillQk::Fp8}) {
                    TurboPrefillParams p;
                    p.batch = c.B, p.n_q_heads = c.Hq, p.n_kv_heads = c.Hkv, p.head_dim = D, p.len = L, p.kernel = kern, p.qk = qk;
                    p.poly_degree = degree, p.exp = PrefillExp::Sas;
                    if (qk == PrefillQk::Fp8 && kern == PrefillKernel::Portable) {  // refused, not run as INT8
                        run_prefill(c, turbo_prefill_workspace_bytes(p), [&](auto q, auto k, auto v, float* o, void* ws) {
                            p.q = q, p.k = k, p.v = v, p.out = o, p.workspace = ws;
                            CHECK_THROWS_WITH_AS(turbo_prefill_cuda(p, 0), doctest::Contains("Fp8"), TurboError);
                        });
                        continue;
                    }
                    const auto out = run_prefill(c, turbo_prefill_workspace_bytes(p), [&](auto q, auto k, auto v, float* o, void* ws) {
                        p.q = q, p.k = k, p.v = v, p.out = o, p.workspace = ws;
                        turbo_prefill_cuda(p, 0);
                    });
                    CHECK(all_finite(out));
                    const double err = rel(out, c.ref), err_twin = rel(out, twin);
                    std::printf("turbo prefill (%s, %s, SAS degree %d) D=%d L=%d: rel err vs float64 %.2e, vs the CPU twin %.2e\n",
                                kern == PrefillKernel::Hopper ? "hopper" : "portable", qk == PrefillQk::Fp8 ? "FP8" : "INT8", degree,
                                D, L, err, err_twin);
                    CHECK(err < (qk == PrefillQk::Fp8 ? 5e-2 : 2e-2));  // blockwise INT8 (FP8) Q and K, FP16 P, SAS
                    if (qk == PrefillQk::Int8) CHECK(err_twin < 2e-3);  // the twin's arithmetic, summed in another order
                    if (kern == PrefillKernel::Hopper) check_launches_same_bits(c, p, out, qk == PrefillQk::Fp8 ? "FP8, SAS" : "INT8, SAS");
                }
            // the exponentials on the SFU: the Hopper kernel's default (Auto), against the twin with
            // exact exp2; the portable kernel refuses it
            const std::vector<double> twin_exp2 = twin_of(false);
            for (PrefillKernel kern : kernels)
                for (PrefillQk qk : {PrefillQk::Int8, PrefillQk::Fp8}) {
                    if (qk == PrefillQk::Fp8 && kern == PrefillKernel::Portable) continue;  // refused above
                    TurboPrefillParams p;
                    p.batch = c.B, p.n_q_heads = c.Hq, p.n_kv_heads = c.Hkv, p.head_dim = D, p.len = L, p.kernel = kern, p.qk = qk;
                    p.exp = kern == PrefillKernel::Hopper ? PrefillExp::Auto : PrefillExp::Sfu;
                    const auto out = run_prefill(c, turbo_prefill_workspace_bytes(p), [&](auto q, auto k, auto v, float* o, void* ws) {
                        p.q = q, p.k = k, p.v = v, p.out = o, p.workspace = ws;
                        if (kern == PrefillKernel::Portable) CHECK_THROWS_WITH_AS(turbo_prefill_cuda(p, 0), doctest::Contains("Sfu"), TurboError);
                        else turbo_prefill_cuda(p, 0);
                    });
                    if (kern == PrefillKernel::Portable) continue;
                    CHECK(all_finite(out));
                    const double err = rel(out, c.ref), err_twin = rel(out, twin_exp2), err_sas = rel(out, twin);
                    std::printf("turbo prefill (hopper, %s, exp2 on the SFU) D=%d L=%d: rel err vs float64 %.2e, vs the CPU twin "
                                "%.2e (vs the SAS twin %.2e)\n",
                                qk == PrefillQk::Fp8 ? "FP8" : "INT8", D, L, err, err_twin, err_sas);
                    CHECK(err < (qk == PrefillQk::Fp8 ? 5e-2 : 2e-2));
                    if (qk == PrefillQk::Int8) CHECK(err_twin < 2e-3);
                    check_launches_same_bits(c, p, out, qk == PrefillQk::Fp8 ? "FP8, exp2 on the SFU" : "INT8, exp2 on the SFU");
                }
        }
}

TEST_CASE("cuda: fp16 prefill (Hopper kernel, exact softmax) vs float64" * doctest::skip(kNoGpu)) {
    if (!hopper_prefill_available()) {
        MESSAGE("skipped: the FP16 prefill kernel needs an sm_90 device");
        return;
    }
    std::mt19937 rng(fresh_seed());
    for (int D : {128, 64})
        for (int L : {128, 320, 640, 77}) {
            const PrefillCase c = make_prefill_case(rng, 2, 2, 4, L, D);
            Fp16PrefillParams p;
            p.batch = c.B, p.n_q_heads = c.Hq, p.n_kv_heads = c.Hkv, p.head_dim = D, p.len = L;
            const auto out = run_prefill(c, 16, [&](auto q, auto k, auto v, float* o, void*) {
                p.q = q, p.k = k, p.v = v, p.out = o;
                fp16_prefill_cuda(p, 0);
            });
            CHECK(all_finite(out));
            const double err = rel(out, c.ref);
            std::printf("fp16 prefill D=%d L=%d: rel err vs float64 %.2e\n", D, L, err);
            CHECK(err < 4e-3);  // FP16 P and V on the tensor cores, FP32 sums
            if (D == 64)  // two or three consumer warpgroups, pipelined: the same bits
                for (int w : {2, 3}) {
                    const auto again = run_prefill(c, 16, [&](auto q, auto k, auto v, float* o, void*) {
                        HopperPrefillArgs h;
                        h.q = q, h.k = k, h.v = v, h.out = o;
                        h.q_row_stride = h.kv_row_stride = h.out_row_stride = D;
                        h.q_head_stride = h.kv_head_stride = h.out_head_stride = (int64_t)L * D;
                        h.batch = c.B, h.n_q_heads = c.Hq, h.n_kv_heads = c.Hkv, h.head_dim = D, h.n_q = L, h.warpgroups = w;
                        hopper_prefill_launch(h, 0);
                    });
                    CAPTURE(L);
                    CAPTURE(w);
                    CHECK(std::memcmp(again.data(), out.data(), out.size() * sizeof(float)) == 0);
                }
            if (L % 64 != 0) continue;
            // the kernel's plain loop (S, softmax, P.V in turn: bench-attention's baseline), FP16
            // and INT8 Q.K^T; at D = 64 with three consumer warpgroups too (the same bits as two)
            for (bool int8 : {false, true}) {
                std::vector<int8_t> q8(c.q.size()), k8(c.k.size());
                std::vector<float> qs(c.q.size() / D / 64), ks(c.k.size() / D / 64);
                std::vector<float> blk(64 * D);
                auto quant = [&](const std::vector<uint16_t>& x, std::vector<int8_t>& x8, std::vector<float>& sc) {
                    for (size_t bl = 0; bl < sc.size(); ++bl) {
                        for (int i = 0; i < 64 * D; ++i) blk[i] = fp16_to_fp32(x[bl * 64 * D + i]);
                        sc[bl] = turbo_quant_int8(blk.data(), 64 * D, &x8[bl * 64 * D]);
                    }
                };
                quant(c.q, q8, qs);
                quant(c.k, k8, ks);
                auto plain_run = [&](int warpgroups) {
                    return run_prefill(c, 16, [&](auto q, auto k, auto v, float* o, void*) {
                        HopperPrefillArgs h;
                        h.q = int8 ? (const void*)upload(q8) : q, h.k = int8 ? (const void*)upload(k8) : k, h.v = v, h.out = o;
                        h.q_row_stride = h.kv_row_stride = h.out_row_stride = D;
                        h.q_head_stride = h.kv_head_stride = h.out_head_stride = (int64_t)L * D;
                        if (int8) h.q_scales = upload(qs), h.k_scales = upload(ks);
                        h.batch = c.B, h.n_q_heads = c.Hq, h.n_kv_heads = c.Hkv, h.head_dim = D, h.n_q = L;
                        h.qk = int8 ? QkType::S8 : QkType::F16, h.pipelined = false, h.warpgroups = warpgroups;
                        hopper_prefill_launch(h, 0);
                        CK(cudaDeviceSynchronize());
                        if (int8) {
                            for (const void* ptr : {h.q, h.k, (const void*)h.q_scales, (const void*)h.k_scales}) CK(cudaFree((void*)ptr));
                        }
                    });
                };
                const auto plain = plain_run(2);
                if (D == 64) {
                    const auto plain3 = plain_run(3);
                    CAPTURE(int8);
                    CHECK(std::memcmp(plain3.data(), plain.data(), plain.size() * sizeof(float)) == 0);
                }
                const double err_plain = rel(plain, c.ref);
                std::printf("hopper prefill, plain loop, %s Q.K^T, D=%d L=%d: rel err vs float64 %.2e\n", int8 ? "INT8" : "FP16", D, L, err_plain);
                CHECK(all_finite(plain));
                CHECK(err_plain < (int8 ? 2e-2 : 4e-3));
            }
        }
}

TEST_CASE("cuda: hopper prefill of a chunk after cached tokens, engine layouts" * doctest::skip(kNoGpu)) {
    if (!hopper_prefill_available()) {
        MESSAGE("skipped: the Hopper prefill kernel needs an sm_90 device");
        return;
    }
    // Queries at positions pos0..pos0+n-1 of a causal sequence of pos0+n tokens, as the engine
    // lays them out: q and out (n, Hq * D), the cache (Hkv, n_ctx, D) with NaN past the keys
    // (stale cache rows must not leak in). Reference: rows pos0.. of the whole sequence's attention.
    std::mt19937 rng(fresh_seed());
    for (int D : {128, 64})
        for (auto [pos0, n] : {std::pair{200, 57}, std::pair{64, 128}, std::pair{300, 300}, std::pair{0, 130}}) {
            const int L = pos0 + n, Hkv = 2, G = 4, Hq = Hkv * G, n_ctx = L + 100;
            const PrefillCase c = make_prefill_case(rng, 1, Hkv, G, L, D);
            std::vector<uint16_t> q((size_t)n * Hq * D), kc((size_t)Hkv * n_ctx * D, 0x7e00), vc(kc.size(), 0x7e00);  // NaN
            for (int h = 0; h < Hq; ++h)
                for (int r = 0; r < n; ++r)
                    for (int d = 0; d < D; ++d) q[((size_t)r * Hq + h) * D + d] = c.q[((size_t)h * L + pos0 + r) * D + d];
            for (int h = 0; h < Hkv; ++h)
                for (int t = 0; t < L; ++t)
                    for (int d = 0; d < D; ++d) {
                        kc[((size_t)h * n_ctx + t) * D + d] = c.k[((size_t)h * L + t) * D + d];
                        vc[((size_t)h * n_ctx + t) * D + d] = c.v[((size_t)h * L + t) * D + d];
                    }
            std::vector<float> out((size_t)n * Hq * D, NAN);
            HopperPrefillArgs h;
            h.q = upload(q), h.k = upload(kc), h.v = upload(vc), h.out = upload(out);
            h.q_row_stride = Hq * D, h.q_head_stride = D;
            h.kv_row_stride = D, h.kv_head_stride = (int64_t)n_ctx * D;
            h.out_row_stride = Hq * D, h.out_head_stride = D;
            h.batch = 1, h.n_q_heads = Hq, h.n_kv_heads = Hkv, h.head_dim = D, h.n_q = n, h.q_pos0 = pos0;
            for (bool pipelined : {true, false}) {
                h.pipelined = pipelined;
                std::vector<float> out3;  // D = 64: three consumer warpgroups, the same bits as two
                if (D == 64) {
                    h.warpgroups = 3;
                    hopper_prefill_launch(h, 0);
                    CK(cudaDeviceSynchronize());
                    out3.resize(out.size());
                    CK(cudaMemcpy(out3.data(), h.out, out.size() * 4, cudaMemcpyDeviceToHost));
                }
                h.warpgroups = 2;
                hopper_prefill_launch(h, 0);
                CK(cudaDeviceSynchronize());
                CK(cudaMemcpy(out.data(), h.out, out.size() * 4, cudaMemcpyDeviceToHost));
                if (D == 64) {
                    CAPTURE(pos0);
                    CAPTURE(n);
                    CAPTURE(pipelined);
                    CHECK(std::memcmp(out3.data(), out.data(), out.size() * sizeof(float)) == 0);
                }
                std::vector<double> ref(out.size());
                for (int hh = 0; hh < Hq; ++hh)
                    for (int r = 0; r < n; ++r)
                        for (int d = 0; d < D; ++d) ref[((size_t)r * Hq + hh) * D + d] = c.ref[((size_t)hh * L + pos0 + r) * D + d];
                CHECK(all_finite(out));
                const double err = rel(out, ref);
                std::printf("hopper prefill chunk D=%d pos0=%d n=%d %s: rel err vs float64 %.2e\n", D, pos0, n,
                            pipelined ? "pipelined" : "plain", err);
                CHECK(err < 4e-3);
            }
            for (const void* ptr : {h.q, h.k, h.v, (const void*)h.out}) CK(cudaFree((void*)ptr));
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
    Fp16PrefillParams fp;
    CHECK_THROWS_WITH_AS(fp16_prefill_cuda(fp, 0), doctest::Contains("null"), TurboError);
    fp.q = fp.k = fp.v = (const uint16_t*)dummy;
    fp.out = dummy;
    fp.batch = 1, fp.n_q_heads = 8, fp.n_kv_heads = 2, fp.head_dim = 96, fp.len = 128;
    CHECK_THROWS_WITH_AS(fp16_prefill_cuda(fp, 0), doctest::Contains("head_dim"), TurboError);
    fp.head_dim = 128, fp.len = 0;
    CHECK_THROWS_WITH_AS(fp16_prefill_cuda(fp, 0), doctest::Contains("len"), TurboError);
    fp.len = 128, fp.n_q_heads = 7;
    CHECK_THROWS_WITH_AS(fp16_prefill_cuda(fp, 0), doctest::Contains("n_q_heads"), TurboError);
    if (!hopper_prefill_available()) {  // no silent fallback: the Hopper-only paths say why
        fp.n_q_heads = 8;
        CHECK_THROWS_WITH_AS(fp16_prefill_cuda(fp, 0), doctest::Contains("sm_90"), TurboError);
    }
    HopperPrefillArgs h;
    h.q = h.k = h.v = dummy, h.out = dummy;
    h.batch = 1, h.n_q_heads = 8, h.n_kv_heads = 2, h.head_dim = 128, h.n_q = 64;
    h.q_row_stride = h.kv_row_stride = h.out_row_stride = 128, h.q_head_stride = h.kv_head_stride = h.out_head_stride = 128 * 64;
    h.q_row_stride = 100;  // 200 bytes: not 16-byte aligned, and shorter than a row
    CHECK_THROWS_WITH_AS(hopper_prefill_launch(h, 0), doctest::Contains("strides"), TurboError);
    h.q_row_stride = 128, h.qk = QkType::S8;  // no scales
    CHECK_THROWS_WITH_AS(hopper_prefill_launch(h, 0), doctest::Contains("block scales"), TurboError);
    if (hopper_prefill_available()) {  // (elsewhere the sm_90 check answers first)
        h.qk = QkType::F16, h.sas = true;  // SAS needs the Turbo scores
        CHECK_THROWS_WITH_AS(hopper_prefill_launch(h, 0), doctest::Contains("sas"), TurboError);
    }
    CK(cudaFree(dummy));
}

// FP16 prefill arguments over a static buffer, for the refusals below (never launched).
HopperPrefillArgs refusal_args(const uint8_t* fake) {
    HopperPrefillArgs h;
    h.q = h.k = h.v = fake, h.out = (float*)const_cast<uint8_t*>(fake);
    h.batch = 1, h.n_q_heads = 8, h.n_kv_heads = 2, h.head_dim = 128, h.n_q = 64;
    h.q_row_stride = h.kv_row_stride = h.out_row_stride = 128, h.q_head_stride = h.kv_head_stride = h.out_head_stride = 128 * 64;
    return h;
}

// hopper_prefill_launch checks its arguments before it touches the device, so these refusals
// hold on machines without a GPU too. quantize_q (Q quantized inside the kernel) reads FP16
// queries and writes INT8 tiles: any other qk, or queries whose rows are not 16-byte aligned,
// must be refused by name.
TEST_CASE("cuda: hopper prefill refuses quantize_q without INT8 scores or with misaligned queries") {
    alignas(16) static uint8_t fake[256];
    HopperPrefillArgs h = refusal_args(fake);
    h.k_scales = (const float*)fake;
    h.quantize_q = true;
    h.qk = QkType::F16;
    CHECK_THROWS_WITH_AS(hopper_prefill_launch(h, 0), doctest::Contains("quantize_q"), TurboError);
    h.qk = QkType::E4M3;
    CHECK_THROWS_WITH_AS(hopper_prefill_launch(h, 0), doctest::Contains("quantize_q"), TurboError);
    h.qk = QkType::S8, h.q = fake + 8;  // FP16 rows off a 16-byte boundary
    CHECK_THROWS_WITH_AS(hopper_prefill_launch(h, 0), doctest::Contains("quantize_q"), TurboError);
    h.q = fake, h.k_scales = nullptr;  // INT8 scores still need K's block scales (Q's come from the kernel)
    CHECK_THROWS_WITH_AS(hopper_prefill_launch(h, 0), doctest::Contains("block scales"), TurboError);
}

// Three consumer warpgroups exist for head_dim 64 only; other counts are refused by name, before
// the device is asked, so on machines without a GPU too.
TEST_CASE("cuda: hopper prefill refuses a consumer warpgroup count it has no kernel for") {
    alignas(16) static uint8_t fake[256];
    HopperPrefillArgs h = refusal_args(fake);
    h.warpgroups = 3;
    CHECK_THROWS_WITH_AS(hopper_prefill_launch(h, 0), doctest::Contains("warpgroups 3 needs head_dim 64"), TurboError);
    for (int w : {1, 4, -1}) {
        h.warpgroups = w, h.head_dim = 64;
        CHECK_THROWS_WITH_AS(hopper_prefill_launch(h, 0), doctest::Contains("warpgroups must be"), TurboError);
    }
    h.warpgroups = 0, h.head_dim = 128, h.n_q = 1 << 20;
    CHECK(default_prefill_warpgroups(h) == 2);
    h.head_dim = 64, h.n_q = 64;  // 8 CTAs: under four waves of any GPU
    CHECK(default_prefill_warpgroups(h) == 2);
}
