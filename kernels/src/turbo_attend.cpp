// TurboAttention on the CPU cache, the engine's path (turbo_attend in tandem/turbo_attention.h).
// One task is one KV head and a range of the call's query tokens, with the head's group of query
// heads; by default all the tokens, so that each block is expanded once per KV head:
//   pass 1  scores: each compressed block's keys are expanded (turbo_expand_keys) to floats
//           times the block's scale, channel-major, and each query's T scores are T-wide
//           multiply-adds over the channels; then the recent buffer's keys, times their
//           per-token scales. Queries are pre-multiplied by log2(e) / sqrt(D), as the reference.
//   max     per row and query head over its causal length (SAS needs the global maximum)
//   pass 2  p = SAS(s - max) by TurboSasTable (the reference's bits), then each block's values
//           expanded to floats token-major, o += p_t v_t as D-wide multiply-adds; then the
//           recent values; o /= sum_t p_t
// turbo_decode_ref, its twin, expands the whole cache to floats for every query token; the
// results differ by the order of the float sums (test-turbo-cpu bounds it). The loops are C++ on
// 8-float vectors (GCC's vector extension), compiled twice, for AVX2 + FMA and for the baseline,
// and picked by cpu::ops_isa().
#include "tandem/turbo_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tandem/cpu_matmul.h"
#include "tandem/quant_types.h"
#include "tandem/thread_pool.h"

namespace tandem {

namespace {

constexpr float kLog2e = 1.4426950408889634f;

// What one task reads of the cache for its KV head.
struct HeadView {
    const TurboCacheLayout& L;
    int bits;
    const uint8_t* records;  // block b at records + b * rec_bytes
    size_t rec_bytes;
    const int8_t* rk;        // recent keys (T, D)
    const int8_t* rv;        // recent values (D, T)
    const float* rks;        // (T)
    const float* rvs;        // (T)
};

// The task's buffers: a block's keys as floats channel-major (kc: (D, T), so that a query's T
// scores are T-wide multiply-adds over d) and its values token-major (vt: (T, D), so that P.V
// is D-wide multiply-adds over t), each already times its scale.
struct Work {
    std::vector<float> qf, s, kc, vt, l;
    std::vector<int8_t> x8;
};

template <int D, int T>
__attribute__((always_inline)) inline void keys_to_float(const int8_t* k8, const float* scale, bool per_token, float* kc) {
    for (int t = 0; t < T; t++) {
        const float sc = per_token ? scale[t] : scale[0];
        for (int d = 0; d < D; d++) kc[d * T + t] = sc * (float)k8[t * D + d];
    }
}
template <int D, int T>
__attribute__((always_inline)) inline void values_to_float(const int8_t* v8c, const float* scale, bool per_token, float* vt) {
    for (int t = 0; t < T; t++) {
        const float sc = per_token ? scale[t] : scale[0];
        for (int d = 0; d < D; d++) vt[t * D + d] = sc * (float)v8c[d * T + t];
    }
}
// Eight floats in one vector (GCC vector extension): one ymm under AVX2, two xmm otherwise. The
// accumulators below are arrays of these indexed by unrolled constants, so they stay in registers
// (plain float arrays were kept on the stack: a store and a load per multiply-add).
typedef float v8f __attribute__((vector_size(32)));
__attribute__((always_inline)) inline void load8(v8f& v, const float* p) { std::memcpy(&v, p, sizeof v); }

// s[t] = sum_d q[d] kc[d][t]
template <int D, int T>
__attribute__((always_inline)) inline void scores(const float* q, const float* kc, float* s) {
    constexpr int N = T / 8;
    v8f acc[N] = {};
    for (int d = 0; d < D; d++) {
        const float x = q[d];
        const v8f qd = {x, x, x, x, x, x, x, x};
#pragma GCC unroll 8
        for (int j = 0; j < N; j++) {
            v8f k;
            load8(k, kc + d * T + 8 * j);
            acc[j] += qd * k;
        }
    }
    std::memcpy(s, acc, sizeof acc);
}
// o[d] += sum_{t < n} p[t] vt[t][d], 64 columns at a time (8 accumulators)
template <int D, int T>
__attribute__((always_inline)) inline void weighted_sum(const float* p, int n, const float* vt, float* o) {
    for (int d0 = 0; d0 < D; d0 += 64) {
        v8f acc[8];
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) load8(acc[j], o + d0 + 8 * j);
        for (int t = 0; t < n; t++) {
            const float x = p[t];
            const v8f pt = {x, x, x, x, x, x, x, x};
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                v8f v;
                load8(v, vt + t * D + d0 + 8 * j);
                acc[j] += pt * v;
            }
        }
        std::memcpy(o + d0, acc, sizeof acc);
    }
}

// Rows [r0, r1) of the call (positions pos0 + r), KV head h: out rows as documented.
template <int D, int T>
__attribute__((always_inline)) inline void attend_task(const HeadView& hv, const TurboSasTable& sas, int pos0, int r0,
                                                       int r1, int h, int group, const float* q, int n_q_heads,
                                                       float* out, Work& w) {
    const int rows = r1 - r0, nq = rows * group;
    const int max_len = pos0 + r1;                  // the last row's length
    const size_t stride = (size_t)(max_len / T + 1) * T;  // a row's scores, whole blocks
    const float qscale = kLog2e / std::sqrt((float)D);
    w.qf.resize((size_t)nq * D);
    w.s.resize((size_t)nq * stride);
    w.kc.resize((size_t)T * D);
    w.vt.resize((size_t)T * D);
    w.x8.resize((size_t)T * D);
    w.l.resize((size_t)nq);
    auto len_of = [&](int i) { return pos0 + r0 + i + 1; };
    auto qrow = [&](int i, int g) { return &w.qf[((size_t)i * group + g) * D]; };
    auto srow = [&](int i, int g) { return &w.s[((size_t)i * group + g) * stride]; };
    auto orow = [&](int i, int g) { return out + ((size_t)(r0 + i) * n_q_heads + (size_t)h * group + g) * D; };
    auto each_reader = [&](int b, auto fn) {  // fn(i, g) for every row and query head that reads block b
        for (int i = 0; i < rows; i++)
            if (len_of(i) / T > b)
                for (int g = 0; g < group; g++) fn(i, g);
    };
    for (int i = 0; i < rows; i++)
        for (int g = 0; g < group; g++) {
            const float* src = q + ((size_t)(r0 + i) * n_q_heads + (size_t)h * group + g) * D;
            for (int d = 0; d < D; d++) qrow(i, g)[d] = src[d] * qscale;
        }
    const int n_blocks = max_len / T;               // blocks some row reads

    // pass 1: scores, block by block, then the recent keys (rows of the last block only)
    for (int b = 0; b < n_blocks; b++) {
        float ks;
        turbo_expand_keys(hv.L, hv.bits, hv.records + (size_t)b * hv.rec_bytes, w.x8.data(), &ks);
        keys_to_float<D, T>(w.x8.data(), &ks, false, w.kc.data());
        each_reader(b, [&](int i, int g) { scores<D, T>(qrow(i, g), w.kc.data(), srow(i, g) + (size_t)b * T); });
    }
    bool recent = false;
    for (int i = 0; i < rows; i++) recent |= len_of(i) % T != 0;
    if (recent) {
        keys_to_float<D, T>(hv.rk, hv.rks, true, w.kc.data());
        for (int i = 0; i < rows; i++)
            if (len_of(i) % T != 0)  // scores of slots past the row's length are computed, then ignored
                for (int g = 0; g < group; g++) scores<D, T>(qrow(i, g), w.kc.data(), srow(i, g) + (size_t)(len_of(i) / T) * T);
    }

    // max, probabilities (TurboSasTable::row: the reference's bits), their sums
    for (int i = 0; i < rows; i++)
        for (int g = 0; g < group; g++) {
            float* sr = srow(i, g);
            const int len = len_of(i);
            float m = -std::numeric_limits<float>::infinity();
            for (int t = 0; t < len; t++) m = std::max(m, sr[t]);
            w.l[(size_t)i * group + g] = sas.row(sr, len, m);
        }

    // pass 2: o = sum p v / l, accumulated in the output rows
    for (int i = 0; i < rows; i++)
        for (int g = 0; g < group; g++) std::fill(orow(i, g), orow(i, g) + D, 0.0f);
    for (int b = 0; b < n_blocks; b++) {
        float vs;
        turbo_expand_values(hv.L, hv.bits, hv.records + (size_t)b * hv.rec_bytes, w.x8.data(), &vs);
        values_to_float<D, T>(w.x8.data(), &vs, false, w.vt.data());
        each_reader(b, [&](int i, int g) { weighted_sum<D, T>(srow(i, g) + (size_t)b * T, T, w.vt.data(), orow(i, g)); });
    }
    if (recent) values_to_float<D, T>(hv.rv, hv.rvs, true, w.vt.data());
    for (int i = 0; i < rows; i++) {
        const int nb = len_of(i) / T, nr = len_of(i) % T;
        for (int g = 0; g < group; g++) {
            if (nr > 0) weighted_sum<D, T>(srow(i, g) + (size_t)nb * T, nr, w.vt.data(), orow(i, g));
            const float inv = 1.0f / w.l[(size_t)i * group + g];
            for (int d = 0; d < D; d++) orow(i, g)[d] *= inv;
        }
    }
}

using TaskFn = void (*)(const HeadView&, const TurboSasTable&, int, int, int, int, int, const float*, int, float*, Work&);

template <int D, int T>
void task_portable(const HeadView& hv, const TurboSasTable& sas, int pos0, int r0, int r1, int h, int group,
                   const float* q, int n_q_heads, float* out, Work& w) {
    attend_task<D, T>(hv, sas, pos0, r0, r1, h, group, q, n_q_heads, out, w);
}

#if defined(__x86_64__)
template <int D, int T>
__attribute__((target("avx2,fma"))) void task_avx2(const HeadView& hv, const TurboSasTable& sas, int pos0, int r0,
                                                   int r1, int h, int group, const float* q, int n_q_heads, float* out,
                                                   Work& w) {
    attend_task<D, T>(hv, sas, pos0, r0, r1, h, group, q, n_q_heads, out, w);
}
#endif

template <int D, int T>
TaskFn pick_task() {
#if defined(__x86_64__)
    if (cpu::ops_isa() >= cpu::OpsIsa::Avx2) return task_avx2<D, T>;
#endif
    return task_portable<D, T>;
}

TaskFn pick_task(int D, int T) {
    if (D == 64) return T == 32 ? pick_task<64, 32>() : pick_task<64, 64>();
    return T == 32 ? pick_task<128, 32>() : pick_task<128, 64>();
}

}  // namespace

void turbo_attend(const TurboKvCache& cache, int seq, int pos0, int n, const float* q, int n_q_heads, float* out,
                  ThreadPool* pool) {
    const TurboCacheLayout& L = cache.layout();
    const int H = L.n_kv_heads, D = L.head_dim, T = L.block_tokens;
    if (seq < 0 || seq >= cache.n_seqs()) throw TurboError("attend: seq " + std::to_string(seq) + " out of range");
    if (n < 1 || pos0 < 0 || pos0 + n != cache.length(seq))
        throw TurboError("attend: rows " + std::to_string(pos0) + " .. " + std::to_string(pos0 + n - 1) +
                         " must end at the sequence's last position (length " + std::to_string(cache.length(seq)) + ")");
    if (pos0 / T != (pos0 + n - 1) / T) throw TurboError("attend: the rows must lie in one block of " + std::to_string(T));
    if (n_q_heads < H || n_q_heads % H != 0) throw TurboError("n_q_heads must be a multiple of n_kv_heads");
    const TurboConfig& c = cache.config();
    // one table per (degree, threshold) in use; built on first use (about 15K evaluations)
    thread_local std::map<std::pair<int, float>, TurboSasTable> tables;
    const TurboSasTable& sas =
        tables.try_emplace({c.poly_degree, c.threshold}, c.poly_degree, c.threshold).first->second;
    const TaskFn task_fn = pick_task(D, T);
    // rows per task: all of them (each block expanded once per KV head) unless the pool has
    // threads to spare beyond the KV heads
    const int threads = pool ? pool->size() : 1;
    const int chunks = std::max(1, std::min((n + 7) / 8, threads / H)), rows = (n + chunks - 1) / chunks;
    const int group = n_q_heads / H;
    auto run = [&](int64_t begin, int64_t end) {
        thread_local Work w;
        for (int64_t task = begin; task < end; task++) {
            const int h = (int)(task % H), r0 = (int)(task / H) * rows, r1 = std::min(n, r0 + rows);
            const size_t row = ((size_t)seq * H + h) * T;
            const HeadView hv{L,
                              L.bits[h],
                              cache.blocks().data() + (size_t)seq * L.seq_bytes + L.head_off[h],
                              L.rec_bytes[h],
                              cache.recent_k().data() + row * D,
                              cache.recent_v().data() + row * D,
                              cache.recent_k_scale().data() + row,
                              cache.recent_v_scale().data() + row};
            task_fn(hv, sas, pos0, r0, r1, h, group, q, n_q_heads, out, w);
        }
    };
    const int64_t n_tasks = (int64_t)H * ((n + rows - 1) / rows);
    if (pool) pool->parallel_for(n_tasks, run, 1);
    else run(0, n_tasks);
}

}  // namespace tandem
