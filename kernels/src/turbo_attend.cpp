// TurboAttention on the CPU cache, the engine's path (turbo_attend in tandem/turbo_attention.h).
// One task is one KV head and a range of the call's query tokens, with the head's group of query
// heads; by default all the tokens, so that each block is expanded once per KV head:
//   pass 1  scores: each compressed block's keys are expanded (turbo_expand_keys) to floats
//           times the block's scale, channel-major, and each query's T scores are T-wide
//           multiply-adds over the channels; then the recent buffer's keys, times their
//           per-token scales. Queries are pre-multiplied by log2(e) / sqrt(D), as the reference.
//           Each reader's maximum over its causal length (SAS needs the global one) is taken
//           block by block as the scores are written.
//   pass 2  each block's values expanded to floats token-major; per reader, the block's
//           p = SAS(s - max) by TurboSasTable (the reference's bits), then o += p_t v_t as D-wide
//           multiply-adds; then the recent values; o /= sum_t p_t
// With few readers of each block (a decode step: one row and its group of query heads), the
// transposing conversions cost more than the dots they serve: each block is then converted to
// floats in its stored layout (keys token-major, values channel-major; 4-bit records straight
// from their codes, keys4_to_float / values4_to_float), and the dots run along it with
// horizontal sums (scores_rows, weighted_sum_cols).
// turbo_decode_ref, its twin, expands the whole cache to floats for every query token; the
// results differ by the order of the float sums (test-turbo-cpu bounds it). The loops are C++ on
// GCC's vector extension, compiled three times (task_portable, task_avx2, task_avx512: 8-float
// vectors for the baseline and AVX2 + FMA, 16-float ones for AVX-512's float tiles) and picked
// by cpu::ops_isa().
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
// Up to this many (row, query head) readers of a block, turbo_attend reads each block converted
// in its stored layout (scores_rows, weighted_sum_cols); above it, transposing each block into
// float tiles once pays off.
constexpr int kStoredLayoutReaders = 16;

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
// is D-wide multiply-adds over t), each already times its scale; in the stored layout, kc and
// vt hold the block as stored (keys (T, D), values (D, T)), unscaled, and pt a row's recent
// probabilities times the recent values' scales. mx: each reader's largest score; acc: each
// reader's 32 partial sums of its probabilities (TurboSasTable::run); pb: a block's
// probabilities of the readers a step takes.
struct Work {
    std::vector<float> qf, s, kc, vt, l, pt, mx, acc, pb;
    std::vector<int8_t> x8;
    std::vector<float*> qp, sp, op;  // each reader's query, score row and output row
};

// Eight floats in one vector (GCC vector extension): one ymm under AVX2, two xmm otherwise. The
// accumulators below are arrays of these indexed by unrolled constants, so they stay in registers
// (plain float arrays were kept on the stack: a store and a load per multiply-add).
typedef float v8f __attribute__((vector_size(32)));
typedef int8_t v8i8 __attribute__((vector_size(8)));
// v = the vector of floats at p (any alignment), for v8f and the 16-float vectors alike
template <typename V>
__attribute__((always_inline)) inline void load(V& v, const float* p) {
    std::memcpy(&v, p, sizeof v);
}

// a[i] lane k -> a[k] lane i: an 8 x 8 transpose (pairs, then pairs of pairs, then halves).
__attribute__((always_inline)) inline void transpose8(v8f (&a)[8]) {
    v8f b[8], c[8];
#pragma GCC unroll 4
    for (int k = 0; k < 8; k += 2) {
        b[k] = __builtin_shufflevector(a[k], a[k + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        b[k + 1] = __builtin_shufflevector(a[k], a[k + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
#pragma GCC unroll 2
    for (int k = 0; k < 8; k += 4) {
        c[k] = __builtin_shufflevector(b[k], b[k + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        c[k + 1] = __builtin_shufflevector(b[k], b[k + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        c[k + 2] = __builtin_shufflevector(b[k + 1], b[k + 3], 0, 1, 8, 9, 4, 5, 12, 13);
        c[k + 3] = __builtin_shufflevector(b[k + 1], b[k + 3], 2, 3, 10, 11, 6, 7, 14, 15);
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        a[k] = __builtin_shufflevector(c[k], c[k + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        a[k + 4] = __builtin_shufflevector(c[k], c[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}

// Which scale an element of an INT8 tile takes: one for the whole tile, its row's, or its column's.
enum class TileScale { One, PerRow, PerCol };

// The INT8 tile m (Rows x Cols, row-major) times its scales, transposed into out (Cols x Rows):
// out[c * Rows + r] = scale * (float)m[r * Cols + c], 8 x 8 at a time.
template <int Rows, int Cols, TileScale S>
__attribute__((always_inline)) inline void int8_to_float_transposed(const int8_t* m, const float* scale, float* out) {
    static_assert(Rows % 8 == 0 && Cols % 8 == 0, "8 x 8 tiles");
    for (int r0 = 0; r0 < Rows; r0 += 8)
        for (int c0 = 0; c0 < Cols; c0 += 8) {
            v8f col_scale = {};
            if constexpr (S == TileScale::PerCol) load(col_scale, scale + c0);
            v8f a[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                v8i8 b;
                std::memcpy(&b, m + (size_t)(r0 + i) * Cols + c0, sizeof b);
                const v8f f = __builtin_convertvector(b, v8f);
                if constexpr (S == TileScale::PerCol) a[i] = f * col_scale;
                else a[i] = f * (S == TileScale::PerRow ? scale[r0 + i] : scale[0]);
            }
            transpose8(a);
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) std::memcpy(out + (size_t)(c0 + k) * Rows + r0, &a[k], sizeof a[k]);
        }
}

// keys (T, D) token-major to kc (D, T) channel-major; values (D, T) channel-major to vt (T, D)
// token-major; each times its scale (one per token, or one for the block).
template <int D, int T>
__attribute__((always_inline)) inline void keys_to_float(const int8_t* k8, const float* scale, bool per_token, float* kc) {
    if (per_token) int8_to_float_transposed<T, D, TileScale::PerRow>(k8, scale, kc);
    else int8_to_float_transposed<T, D, TileScale::One>(k8, scale, kc);
}
template <int D, int T>
__attribute__((always_inline)) inline void values_to_float(const int8_t* v8c, const float* scale, bool per_token, float* vt) {
    if (per_token) int8_to_float_transposed<D, T, TileScale::PerCol>(v8c, scale, vt);
    else int8_to_float_transposed<D, T, TileScale::One>(v8c, scale, vt);
}

// The float-tile path's dots, for R readers at once: out_r[off + j] (+)= sum_{k < K} a_r[k] *
// M[k * ldm + j] for the NV * lanes(V) columns j of one chunk. Scores are this with a_r a query
// and M a block's keys channel-major (K = D); P.V with a_r a row's probabilities and M the
// values token-major (K = tokens). Each vector of M is loaded once for the R readers; each
// reader's sums run over k in order, whatever R, so the bits do not depend on how readers
// are grouped (or split over threads).
template <typename V>
constexpr int lanes() {
    return (int)(sizeof(V) / sizeof(float));
}
template <typename V, int NV, int R, bool Add>
__attribute__((always_inline)) inline void rows_by_matrix(float* const* a, int a_off, float* const* out, int out_off,
                                                          int K, const float* M, int ldm) {
    constexpr int L = lanes<V>();
    V acc[R][NV];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NV; c++) {
            if constexpr (Add) load(acc[r][c], out[r] + out_off + c * L);
            else acc[r][c] = V{};
        }
    for (int k = 0; k < K; k++) {
        V m[NV];
#pragma GCC unroll 4
        for (int c = 0; c < NV; c++) load(m[c], M + (size_t)k * ldm + c * L);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const V x = a[r][a_off + k] - V{};  // a broadcast (x - 0 is x, -0 included: folded away)
#pragma GCC unroll 4
            for (int c = 0; c < NV; c++) acc[r][c] += x * m[c];
        }
    }
    // one vector at a time: a copy of the whole acc[r] makes GCC keep acc in memory throughout
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NV; c++) std::memcpy(out[r] + out_off + c * L, &acc[r][c], sizeof(V));
}

// The three paths the task is compiled for: 8-float vectors with the baseline ISA (one reader a
// step: 16 xmm registers), with AVX2 + FMA (2 readers), and 16-float vectors with AVX-512 (4
// readers). Each has its rows_by_matrix out of line, compiled for its ISA, so that its
// accumulators get registers whatever the task around it holds: inlined into the task, GCC kept
// the AVX2 ones on the stack (a store and a load per multiply-add).
#define TANDEM_ROWS_ARGS float *const *a, int a_off, float *const *out, int out_off, int K, const float *M, int ldm
struct PathPortable {
    using V = v8f;
    static constexpr int R = 1;
    template <int NV, int RR, bool Add>
    __attribute__((noinline)) static void rows(TANDEM_ROWS_ARGS) {
        rows_by_matrix<V, NV, RR, Add>(a, a_off, out, out_off, K, M, ldm);
    }
};
#if defined(__x86_64__)
typedef float v16f __attribute__((vector_size(64)));
struct PathAvx2 {
    using V = v8f;
    static constexpr int R = 2;
    template <int NV, int RR, bool Add>
    __attribute__((target("avx2,fma"), noinline)) static void rows(TANDEM_ROWS_ARGS) {
        rows_by_matrix<V, NV, RR, Add>(a, a_off, out, out_off, K, M, ldm);
    }
};
struct PathAvx512 {
    using V = v16f;
    static constexpr int R = 4;
    template <int NV, int RR, bool Add>
    __attribute__((target("avx512f,avx512vl,avx2,fma"), noinline)) static void rows(TANDEM_ROWS_ARGS) {
        rows_by_matrix<V, NV, RR, Add>(a, a_off, out, out_off, K, M, ldm);
    }
};
#endif
#undef TANDEM_ROWS_ARGS

// rows_by_matrix for n readers and C columns, P::R readers a step.
template <class P, int C, bool Add>
__attribute__((always_inline)) inline void readers_by_matrix(float* const* a, int a_off, float* const* out,
                                                             int out_off, int n, int K, const float* M, int ldm) {
    constexpr int NV = std::min(4, C / lanes<typename P::V>()), W = NV * lanes<typename P::V>();
    static_assert(C % W == 0, "C must be a multiple of the vector width");
    for (int c0 = 0; c0 < C; c0 += W) {
        int r = 0;
        for (; r + P::R <= n; r += P::R)
            P::template rows<NV, P::R, Add>(a + r, a_off, out + r, out_off + c0, K, M + c0, ldm);
        for (; r < n; r++) P::template rows<NV, 1, Add>(a + r, a_off, out + r, out_off + c0, K, M + c0, ldm);
    }
}

// The stored-layout path, for few readers (decode): each block converted to floats in its
// stored layout (keys token-major, values channel-major: a contiguous conversion, which
// vectorizes), and each reader's dots taken along it with horizontal sums, instead of the
// transposing conversion to float tiles, whose cost only many readers amortize.
template <int N>
__attribute__((always_inline)) inline void codes_to_float(const int8_t* x8, float* xf) {
    for (int i = 0; i < N; i++) xf[i] = (float)x8[i];
}
// A 4-bit record straight to floats in its stored layout, without the INT8 expansion
// (turbo_expand_keys / turbo_expand_values, then codes_to_float): each float is code * sc + zp,
// small integers, so exactly the floats of the INT8 path. Codes are two a byte, low nibble
// first, so code j of a little-endian 32-bit word w is (w >> 4j) & 15: 8 lanes of w, each
// shifted by its own count. out[i] = code_i * sc[i] + zp[i] for 32 codes.
typedef int32_t v8i __attribute__((vector_size(32)));
__attribute__((always_inline)) inline void nibbles_to_float(const uint8_t* codes, const float* sc, const float* zp,
                                                            float* out) {
    const v8i shift = {0, 4, 8, 12, 16, 20, 24, 28};
    for (int k = 0; k < 4; k++) {
        int32_t w;
        std::memcpy(&w, codes + 4 * k, 4);
        const v8i c = ((v8i{} + w) >> shift) & 15;
        v8f s, z;
        load(s, sc + 8 * k);
        load(z, zp + 8 * k);
        const v8f f = __builtin_convertvector(c, v8f) * s + z;
        std::memcpy(out + 8 * k, &f, sizeof f);
    }
}
// The keys of a 4-bit record, token-major (kf: (T, D)), unscaled; *ks their block scale. The
// layout is turbo_expand_keys': scale, then per channel sc (u8) and zp (i8), codes from meta_bytes.
template <int D, int T>
__attribute__((always_inline)) inline void keys4_to_float(const TurboCacheLayout& L, const uint8_t* rec, float* kf,
                                                          float* ks) {
    std::memcpy(ks, rec, 4);
    alignas(64) float sc[D], zp[D];
    for (int d = 0; d < D; d++) {
        sc[d] = (float)rec[8 + d];
        zp[d] = (float)(int8_t)rec[8 + D + d];
    }
    const uint8_t* kq = rec + L.meta_bytes;
    for (int t = 0; t < T; t++)
        for (int d = 0; d < D; d += 32) nibbles_to_float(kq + t * D / 2 + d / 2, sc + d, zp + d, kf + t * D + d);
}
// The values of a 4-bit record, channel-major (vf: (D, T)), unscaled; *vs their block scale.
// turbo_expand_values' layout: sc (u8) and zp (i8) per token and group of v_group channels.
template <int D, int T>
__attribute__((always_inline)) inline void values4_to_float(const TurboCacheLayout& L, const uint8_t* rec, float* vf,
                                                            float* vs) {
    const int G = L.v_group, ng = D / G;
    std::memcpy(vs, rec + 4, 4);
    const uint8_t* v_sc = rec + 8 + 2 * D;
    const uint8_t* v_zp = v_sc + T * ng;
    const uint8_t* vq = rec + L.meta_bytes + T * D / 2;
    alignas(64) float sc[T], zp[T];
    for (int d = 0; d < D; d++) {
        if (d % G == 0)
            for (int t = 0; t < T; t++) {
                sc[t] = (float)v_sc[t * ng + d / G];
                zp[t] = (float)(int8_t)v_zp[t * ng + d / G];
            }
        for (int t = 0; t < T; t += 32) nibbles_to_float(vq + d * T / 2 + t / 2, sc + t, zp + t, vf + d * T + t);
    }
}

// r = the 8 horizontal sums of a[0..7] (lane k: the sum of a[k]'s lanes). (Vectors go out
// through references: a v8f return value changes the portable build's ABI, and GCC warns.)
__attribute__((always_inline)) inline void hsum8(const v8f (&a)[8], v8f& r) {
    v8f b[4], c[2];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
        b[k] = __builtin_shufflevector(a[2 * k], a[2 * k + 1], 0, 8, 2, 10, 4, 12, 6, 14) +
               __builtin_shufflevector(a[2 * k], a[2 * k + 1], 1, 9, 3, 11, 5, 13, 7, 15);
#pragma GCC unroll 2
    for (int k = 0; k < 2; k++)
        c[k] = __builtin_shufflevector(b[2 * k], b[2 * k + 1], 0, 1, 8, 9, 4, 5, 12, 13) +
               __builtin_shufflevector(b[2 * k], b[2 * k + 1], 2, 3, 10, 11, 6, 7, 14, 15);
    r = __builtin_shufflevector(c[0], c[1], 0, 1, 2, 3, 8, 9, 10, 11) +
        __builtin_shufflevector(c[0], c[1], 4, 5, 6, 7, 12, 13, 14, 15);
}
// r[k] = sum_j x[j] m[k * N + j] for the 8 rows k of m (N floats each, N a multiple of 8).
template <int N>
__attribute__((always_inline)) inline void dot8_rows(const float* x, const float* m, v8f& r) {
    v8f acc[8] = {};
    for (int j = 0; j < N; j += 8) {
        v8f xj;
        load(xj, x + j);
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            v8f mk;
            load(mk, m + k * N + j);
            acc[k] += xj * mk;
        }
    }
    hsum8(acc, r);
}
// s[t] = scale_t * sum_d q[d] kf[t][d] for the T tokens of kf (token-major); scale_t is
// scale[t] (per_token) or scale[0].
template <int D, int T>
__attribute__((always_inline)) inline void scores_rows(const float* q, const float* kf, const float* scale,
                                                       bool per_token, float* s) {
    for (int t0 = 0; t0 < T; t0 += 8) {
        v8f sc, r;
        dot8_rows<D>(q, kf + t0 * D, r);
        if (per_token) load(sc, scale + t0);
        else sc = v8f{} + scale[0];
        r *= sc;
        std::memcpy(s + t0, &r, sizeof r);
    }
}
// o[d] += scale * sum_t p[t] vf[d][t] for the T tokens of vf (channel-major); p is zero past
// the tokens that count.
template <int D, int T>
__attribute__((always_inline)) inline void weighted_sum_cols(const float* p, const float* vf, float scale, float* o) {
    for (int d0 = 0; d0 < D; d0 += 8) {
        v8f od, r;
        dot8_rows<T>(p, vf + d0 * T, r);
        load(od, o + d0);
        od += r * scale;
        std::memcpy(o + d0, &od, sizeof od);
    }
}

// The largest of s[0..n) (NaNs skipped, as std::max(m, x) skips them), 8 lanes at a time in
// four independent maxima (one chain of compares would run at the compare's latency). The
// largest value is the same in any order; only a zero's sign could differ, which the SAS of
// s - m does not see.
__attribute__((always_inline)) inline float row_max(const float* s, int n) {
    constexpr float kInf = std::numeric_limits<float>::infinity();
    v8f m8 = {-kInf, -kInf, -kInf, -kInf, -kInf, -kInf, -kInf, -kInf}, m4[4] = {m8, m8, m8, m8};
    int t = 0;
    for (; t + 32 <= n; t += 32)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            v8f x;
            load(x, s + t + 8 * k);
            m4[k] = x > m4[k] ? x : m4[k];
        }
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) m8 = m4[k] > m8 ? m4[k] : m8;
    for (; t + 8 <= n; t += 8) {
        v8f x;
        load(x, s + t);
        m8 = x > m8 ? x : m8;
    }
    float m = -kInf;
    for (int k = 0; k < 8; k++) m = std::max(m, m8[k]);
    for (; t < n; t++) m = std::max(m, s[t]);
    return m;
}

// Rows [r0, r1) of the call (positions pos0 + r), KV head h: out rows as documented. Float
// tiles: the readers of a block are a run of rows' query heads (rows, and so lengths, ascend),
// taken P::R at a time by P::rows over P::V vectors; with `stored`, each block is
// converted in its stored layout and read by scores_rows and weighted_sum_cols instead.
template <class P, int D, int T>
__attribute__((always_inline)) inline void attend_task(const HeadView& hv, const TurboSasTable& sas, int pos0, int r0,
                                                       int r1, int h, int group, const float* q, int n_q_heads,
                                                       float* out, bool stored, Work& w) {
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
    w.pt.resize((size_t)T);
    w.qp.resize((size_t)nq);
    w.sp.resize((size_t)nq);
    w.op.resize((size_t)nq);
    auto len_of = [&](int i) { return pos0 + r0 + i + 1; };
    // reader j = (row j / group, query head j % group)
    for (int i = 0; i < rows; i++)
        for (int g = 0; g < group; g++) {
            const size_t j = (size_t)i * group + g;
            w.qp[j] = &w.qf[j * D];
            w.sp[j] = &w.s[j * stride];
            w.op[j] = out + ((size_t)(r0 + i) * n_q_heads + (size_t)h * group + g) * D;
            const float* src = q + ((size_t)(r0 + i) * n_q_heads + (size_t)h * group + g) * D;
            for (int d = 0; d < D; d++) w.qp[j][d] = src[d] * qscale;
        }
    // the first reader of block b: row max(0, (b + 1) T - pos0 - r0 - 1), its first head
    auto first_reader = [&](int b) { return std::max(0, (b + 1) * T - pos0 - r0 - 1) * group; };
    const int n_blocks = max_len / T;               // blocks some row reads
    // rows [0, rows_recent) also read the recent buffer (the last row does not if it ends a block)
    const int rows_recent = len_of(rows - 1) % T != 0 ? rows : rows - 1;
    const int recent_off = len_of(0) / T * T;       // their recent scores' offset in the score rows

    // the largest score of each reader, block by block as its scores are written (while they are
    // in L1), over the positions within its length
    w.mx.assign((size_t)nq, -std::numeric_limits<float>::infinity());
    auto update_max = [&](int j0, int j1, int off) {
        for (int j = j0; j < j1; j++) {
            const int valid = std::min(T, len_of(j / group) - off);
            w.mx[(size_t)j] = std::max(w.mx[(size_t)j], row_max(w.sp[(size_t)j] + off, valid));
        }
    };

    // pass 1: scores, block by block, then the recent keys
    for (int b = 0; b < n_blocks; b++) {
        float ks;
        const uint8_t* rec = hv.records + (size_t)b * hv.rec_bytes;
        if (stored && hv.bits == 4) keys4_to_float<D, T>(hv.L, rec, w.kc.data(), &ks);
        else turbo_expand_keys(hv.L, hv.bits, rec, w.x8.data(), &ks);
        const int j0 = first_reader(b);
        if (stored) {
            if (hv.bits != 4) codes_to_float<D * T>(w.x8.data(), w.kc.data());
            for (int j = j0; j < nq; j++) scores_rows<D, T>(w.qp[j], w.kc.data(), &ks, false, w.sp[j] + (size_t)b * T);
        } else {
            keys_to_float<D, T>(w.x8.data(), &ks, false, w.kc.data());
            readers_by_matrix<P, T, false>(&w.qp[j0], 0, &w.sp[j0], b * T, nq - j0, D, w.kc.data(), T);
        }
        update_max(j0, nq, b * T);
    }
    if (rows_recent > 0) {  // scores of slots past a row's length are computed, then ignored
        const int nr = rows_recent * group;
        if (stored) {
            codes_to_float<D * T>(hv.rk, w.kc.data());
            for (int j = 0; j < nr; j++) scores_rows<D, T>(w.qp[j], w.kc.data(), hv.rks, true, w.sp[j] + recent_off);
        } else {
            keys_to_float<D, T>(hv.rk, hv.rks, true, w.kc.data());
            readers_by_matrix<P, T, false>(w.qp.data(), 0, w.sp.data(), recent_off, nr, D, w.kc.data(), T);
        }
        update_max(0, nr, recent_off);
    }

    // pass 2: o = sum p v / l, accumulated in the output rows
    for (int j = 0; j < nq; j++) std::fill(w.op[j], w.op[j] + D, 0.0f);
    if (stored) {
        // probabilities (TurboSasTable::row: the reference's bits) and their sums; zeros past each
        // row's length to its block's end, which the recent P.V reads
        for (int j = 0; j < nq; j++) {
            float* sr = w.sp[(size_t)j];
            const int len = len_of(j / group);
            w.l[(size_t)j] = sas.row(sr, len, w.mx[(size_t)j]);
            std::fill(sr + len, sr + (len + T - 1) / T * T, 0.0f);
        }
        for (int b = 0; b < n_blocks; b++) {
            float vs;
            const uint8_t* rec = hv.records + (size_t)b * hv.rec_bytes;
            if (hv.bits == 4) values4_to_float<D, T>(hv.L, rec, w.vt.data(), &vs);
            else {
                turbo_expand_values(hv.L, hv.bits, rec, w.x8.data(), &vs);
                codes_to_float<D * T>(w.x8.data(), w.vt.data());
            }
            for (int j = first_reader(b); j < nq; j++) weighted_sum_cols<D, T>(w.sp[j] + (size_t)b * T, w.vt.data(), vs, w.op[j]);
        }
        if (rows_recent > 0) {  // the recent values' per-token scales go into p (zero past the row's length)
            codes_to_float<D * T>(hv.rv, w.vt.data());
            for (int j = 0; j < rows_recent * group; j++) {
                for (int t = 0; t < T; t++) w.pt[(size_t)t] = w.sp[j][recent_off + t] * hv.rvs[t];
                weighted_sum_cols<D, T>(w.pt.data(), w.vt.data(), 1.0f, w.op[j]);
            }
        }
    } else {
        // Float tiles: each reader's probabilities of a block are computed (TurboSasTable::run: the
        // reference's bits) just before its P.V, into pb, so that the score rows are read once
        // here; their sums go into acc, a row's 32 partial sums.
        w.acc.assign((size_t)nq * 32, 0.0f);
        // readers [j0, j1) times the K x D values vt (token-major) of positions off .. off + K
        auto pv = [&](int j0, int j1, int off, int K) {
            constexpr int R = P::R, NV = std::min(4, D / lanes<typename P::V>()), W = NV * lanes<typename P::V>();
            for (int j = j0; j < j1;) {
                const int step = j1 - j >= R ? R : 1;
                float* pp[R];
                for (int r = 0; r < step; r++) {
                    pp[r] = &w.pb[(size_t)r * T];
                    const int valid = std::min(K, len_of((j + r) / group) - off);
                    const size_t jr = (size_t)(j + r);
                    sas.run(w.sp[jr] + off, valid, K, w.mx[jr], pp[r], &w.acc[jr * 32]);
                }
                for (int c0 = 0; c0 < D; c0 += W) {
                    if (step == R) P::template rows<NV, R, true>(pp, 0, &w.op[(size_t)j], c0, K, w.vt.data() + c0, D);
                    else P::template rows<NV, 1, true>(pp, 0, &w.op[(size_t)j], c0, K, w.vt.data() + c0, D);
                }
                j += step;
            }
        };
        w.pb.resize((size_t)P::R * T);
        for (int b = 0; b < n_blocks; b++) {
            float vs;
            turbo_expand_values(hv.L, hv.bits, hv.records + (size_t)b * hv.rec_bytes, w.x8.data(), &vs);
            values_to_float<D, T>(w.x8.data(), &vs, false, w.vt.data());
            pv(first_reader(b), nq, b * T, T);
        }
        if (rows_recent > 0) {  // up to the last recent row's length; the earlier rows' p are 0 past theirs
            values_to_float<D, T>(hv.rv, hv.rvs, true, w.vt.data());
            pv(0, rows_recent * group, recent_off, len_of(rows_recent - 1) % T);
        }
        for (int j = 0; j < nq; j++) w.l[(size_t)j] = TurboSasTable::total(&w.acc[(size_t)j * 32]);
    }
    for (int j = 0; j < nq; j++) {
        const float inv = 1.0f / w.l[(size_t)j];
        for (int d = 0; d < D; d++) w.op[j][d] *= inv;
    }
}

using TaskFn = void (*)(const HeadView&, const TurboSasTable&, int, int, int, int, int, const float*, int, float*, bool,
                        Work&);

template <int D, int T>
void task_portable(const HeadView& hv, const TurboSasTable& sas, int pos0, int r0, int r1, int h, int group,
                   const float* q, int n_q_heads, float* out, bool stored, Work& w) {
    attend_task<PathPortable, D, T>(hv, sas, pos0, r0, r1, h, group, q, n_q_heads, out, stored, w);
}

#if defined(__x86_64__)
template <int D, int T>
__attribute__((target("avx2,fma"))) void task_avx2(const HeadView& hv, const TurboSasTable& sas, int pos0, int r0,
                                                   int r1, int h, int group, const float* q, int n_q_heads, float* out,
                                                   bool stored, Work& w) {
    attend_task<PathAvx2, D, T>(hv, sas, pos0, r0, r1, h, group, q, n_q_heads, out, stored, w);
}
template <int D, int T>
__attribute__((target("avx512f,avx512vl,avx2,fma"))) void task_avx512(const HeadView& hv, const TurboSasTable& sas,
                                                                      int pos0, int r0, int r1, int h, int group,
                                                                      const float* q, int n_q_heads, float* out,
                                                                      bool stored, Work& w) {
    attend_task<PathAvx512, D, T>(hv, sas, pos0, r0, r1, h, group, q, n_q_heads, out, stored, w);
}
#endif

template <int D, int T>
TaskFn pick_task() {
#if defined(__x86_64__)
    if (cpu::ops_isa() >= cpu::OpsIsa::Avx512) return task_avx512<D, T>;
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
    // Few readers of each block (decode: one row, its group of query heads): the stored layout.
    // Chosen from the call alone, not from the split over threads, so results do not depend on
    // the thread count.
    const bool stored = n * group <= kStoredLayoutReaders;
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
            task_fn(hv, sas, pos0, r0, r1, h, group, q, n_q_heads, out, stored, w);
        }
    };
    const int64_t n_tasks = (int64_t)H * ((n + rows - 1) / rows);
    if (pool) pool->parallel_for(n_tasks, run, 1);
    else run(0, n_tasks);
}

}  // namespace tandem
