// Tests for the CPU weight matmuls (tandem/cpu_matmul.h) and the thread pool (tandem/thread_pool.h).
//
// Reference: the weights are dequantized with the type table's to_float (the plain reference
// in quant_types.cpp) and multiplied with the *unquantized* activations in double precision.
// Every kernel path this CPU runs (scalar, avx2, avx-vnni, avx512-vnni, amx, amx-bf16 and the
// emulated amx paths) is checked against it, and the SIMD paths (which repack the weights into
// panels) are also checked against the scalar path (the GGUF rows) with a much tighter bound, on
// shapes whose rows and tokens are not multiples of the 16-row panels or the token tiles. The
// amx-bf16 paths' prompts (BF16 tiles) are checked instead against a float64 product of the
// BF16-rounded weights and activations, with the same tight bound (check_bf16).
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tandem/cpu_matmul.h"
#include "tandem/cpu_peak.h"
#include "tandem/thread_pool.h"

// the kernels module's internal header (its own test): the activation quantizers, the scalar
// reference and its AVX2 twin
#include "cpu_kernels.h"
#include "cpu_panels.h"

using namespace tandem;

// ---- error bounds ----------------------------------------------------------------------------
//
// For weight row w (dequantized) and activations x, the kernels compute w . x~ where x~ is x
// quantized per block to 8 bits with scale amax/127 (round to nearest), so
//     |x~_i - x_i| <= amax(block of i) / 254
// and therefore the activation quantization alone adds at most
//     kActHalfStep * sum_i |w_i| * amax(block of i),      kActHalfStep = 0.5 / 127.
// On top of that comes float32 rounding in the accumulation (blocks of 32 or 256 in int32,
// exact; the per-block scale products and the running sum in float). We bound it by
// kFloatRelTol * sum_i |w_i x_i|: with n <= 4096 terms, sqrt(n) * 2^-24 ~ 4e-6 typically and
// the tolerance leaves a margin of 25x over that.
// Float weight types (F32/F16/BF16) keep x unquantized: only the float term applies.
struct TypeCase {
    GgmlType type;
    double act_half_step;   // 0 for the float weight types
    double float_rel_tol;
};
constexpr double kActHalfStep = 0.5 / 127;
constexpr double kFloatRelTol = 1e-4;
// A SIMD path does the same integer arithmetic as the scalar path on the same quantized x,
// so the two differ only by float rounding order: bounded relative to sum |w_i x_i|.
constexpr double kSimdVsScalarRelTol = 2e-5;

static const TypeCase kTypes[] = {
    {GgmlType::F32, 0, kFloatRelTol},          {GgmlType::F16, 0, kFloatRelTol},
    {GgmlType::BF16, 0, kFloatRelTol},         {GgmlType::Q8_0, kActHalfStep, kFloatRelTol},
    {GgmlType::Q4_0, kActHalfStep, kFloatRelTol}, {GgmlType::Q4_1, kActHalfStep, kFloatRelTol},
    {GgmlType::Q5_0, kActHalfStep, kFloatRelTol}, {GgmlType::Q5_1, kActHalfStep, kFloatRelTol},
    {GgmlType::Q4_K, kActHalfStep, kFloatRelTol}, {GgmlType::Q5_K, kActHalfStep, kFloatRelTol},
    {GgmlType::Q6_K, kActHalfStep, kFloatRelTol},
};

static const char* kAllPaths[] = {"scalar", "avx2",         "avx-vnni", "avx512-vnni",
                                  "amx",    "amx-emulated", "amx-bf16", "amx-bf16-emulated"};

// ---- helpers ---------------------------------------------------------------------------------

struct Weights {
    std::vector<uint8_t> bytes;  // (rows, row_size) in the type's layout
    std::vector<double> deq;     // (rows, cols) dequantized with to_float
};

// Random weights with a per-row scale and a few outliers, quantized with from_float_ref.
static Weights make_weights(GgmlType t, int64_t rows, int64_t cols, uint32_t seed) {
    const TypeTraits& tt = type_traits(t);
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> f((size_t)(rows * cols));
    for (int64_t r = 0; r < rows; r++) {
        const float scale = 0.02f * (1.0f + (float)(r % 5));
        for (int64_t c = 0; c < cols; c++) f[(size_t)(r * cols + c)] = nd(rng) * scale * ((c % 97 == 3) ? 6.0f : 1.0f);
    }
    Weights w;
    const size_t rs = row_size(t, cols);
    w.bytes.resize((size_t)rows * rs);  // exact size: ASan catches any read past the end
    std::vector<float> tmp((size_t)cols);
    w.deq.resize((size_t)(rows * cols));
    for (int64_t r = 0; r < rows; r++) {
        tt.from_float_ref(&f[(size_t)(r * cols)], w.bytes.data() + r * rs, cols);
        tt.to_float(w.bytes.data() + r * rs, tmp.data(), cols);
        for (int64_t c = 0; c < cols; c++) w.deq[(size_t)(r * cols + c)] = tmp[(size_t)c];
    }
    return w;
}

static std::vector<float> make_x(int64_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x((size_t)n);
    for (auto& v : x) v = nd(rng);
    if (n > 5) x[5] = 0;  // an exact zero and a block that is all zero exercise d == 0
    if (n >= 96) for (int j = 64; j < 96; j++) x[(size_t)j] = 0;
    return x;
}

struct RefRow {
    double y;      // float64 reference dot
    double bound;  // allowed |error| against it
    double absdot; // sum |w_i x_i|
};

// n_tokens: of the call, which sets the activations' format (cpu::detail::act_format): a
// prompt quantizes the 32-block types' activations with a scale per 256 columns (Q8AG), a single
// token with one per 32.
static RefRow ref_row(const TypeCase& tc, const double* w, const float* x, int64_t cols, int64_t n_tokens) {
    using cpu::detail::ActFormat;
    const int64_t act_block = cpu::detail::act_format(tc.type, n_tokens) == ActFormat::Q8A ? 32 : QK_K;
    RefRow rr{0, 0, 0};
    double quant_err = 0;
    for (int64_t b = 0; b < cols; b += act_block) {
        double amax = 0;
        for (int64_t i = b; i < b + act_block && i < cols; i++) amax = std::max(amax, (double)std::fabs(x[i]));
        for (int64_t i = b; i < b + act_block && i < cols; i++) {
            rr.y += w[i] * x[i];
            rr.absdot += std::fabs(w[i] * x[i]);
            quant_err += std::fabs(w[i]) * amax;
        }
    }
    rr.bound = tc.act_half_step * quant_err + tc.float_rel_tol * rr.absdot + 1e-30;
    return rr;
}

// x as the kernels quantize it for a call of n_tokens tokens (the reference quantizer,
// cpu::detail::quantize_act), each value d * q.
static std::vector<double> quantized_x(GgmlType t, const float* x, int64_t cols, int64_t n_tokens) {
    using namespace cpu::detail;
    const ActFormat f = act_format(t, n_tokens);
    std::vector<uint8_t> q(act_row_size(f, cols));
    quantize_act(f, x, q.data(), cols);
    std::vector<double> xq((size_t)cols);
    for (int64_t i = 0; i < cols; i++)
        if (f == ActFormat::Q8K) {
            const block_q8k& b = ((const block_q8k*)q.data())[i / QK_K];
            xq[(size_t)i] = (double)b.d * b.qs[i % QK_K];
        } else {
            const block_q8a& b = ((const block_q8a*)q.data())[i / 32];
            xq[(size_t)i] = (double)b.d * b.qs[i % 32];
        }
    return xq;
}

// The product of w with the quantized x~ (quantized_x) in float64. Every int8 path computes
// exactly that in integers and differs from it only by its float rounding (kSimdVsScalarRelTol
// of sum |w x~|); a kernel that applied a wrong scale, or one token's scale to another block,
// fails it.
static RefRow quantized_ref(const double* w, const std::vector<double>& xq) {
    RefRow rr{0, 0, 0};
    for (size_t i = 0; i < xq.size(); i++) {
        rr.y += w[i] * xq[i];
        rr.absdot += std::fabs(w[i] * xq[i]);
    }
    rr.bound = kSimdVsScalarRelTol * rr.absdot + 1e-30;
    return rr;
}

// ---- kernel tests ----------------------------------------------------------------------------

// Whether the current path runs this matmul on BF16 tiles (the amx-bf16 paths: quantized types,
// 16 tokens or more), whose numerics are not the int8 paths'.
static bool bf16_tiles(GgmlType t, int64_t n_tokens) {
    const std::string p = cpu::kernel_path_name();
    return (p == "amx-bf16" || p == "amx-bf16-emulated") && type_traits(t).is_quantized && n_tokens >= 16;
}

// x rounded to the nearest BF16 (ties to even), as a float: plain bit arithmetic, for finite x.
static float round_bf16(float x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000u;
    float r;
    std::memcpy(&r, &u, 4);
    return r;
}

// The BF16 tiles compute with each weight (as to_float gives it) and each activation rounded to
// BF16, summed in FP32: against that, in float64, only the sums' rounding remains
// (kSimdVsScalarRelTol of sum |w x|). A weight whose float value the kernel computes one float
// ulp away from to_float's (an fma where to_float multiplies and adds) may round to the
// neighbouring BF16 value: up to 2 such flips a row are allowed, each 2^-8 of that row's largest
// |w x|.
static void check_bf16(GgmlType type, const Weights& w, const std::vector<float>& X, int64_t rows, int64_t cols,
                       int64_t n_tokens, const std::vector<float>& Y) {
    double worst = 0;
    for (int64_t t = 0; t < n_tokens; t++)
        for (int64_t r = 0; r < rows; r++) {
            double ref = 0, absdot = 0, big = 0;
            for (int64_t c = 0; c < cols; c++) {
                const double p = (double)round_bf16((float)w.deq[(size_t)(r * cols + c)]) *
                                 (double)round_bf16(X[(size_t)(t * cols + c)]);
                ref += p;
                absdot += std::fabs(p);
                big = std::max(big, std::fabs(p));
            }
            const double err = std::fabs(Y[(size_t)(t * rows + r)] - ref);
            worst = std::max(worst, err / (absdot + 1e-30));
            CAPTURE(t);
            CAPTURE(r);
            CHECK(err <= kSimdVsScalarRelTol * absdot + 2 * std::ldexp(big, -8) + 1e-30);
        }
    MESSAGE(std::string(cpu::kernel_path_name()) << " " << std::string(type_traits(type).name)
                                                 << ": worst error against the BF16 reference " << worst
                                                 << " of sum |w x|");
}

// Runs matvec and matmul for one type on the current path; checks against float64; returns
// the outputs (matvec rows then matmul tokens x rows) for cross-path comparison.
static std::vector<float> check_type(const TypeCase& tc, int64_t rows, int64_t cols, int64_t n_tokens,
                                     ThreadPool* pool, std::vector<double>* absdots) {
    const std::string type_name = type_traits(tc.type).name;
    CAPTURE(type_name);
    CAPTURE(rows);
    CAPTURE(cols);
    const std::string path_name = cpu::kernel_path_name();
    CAPTURE(path_name);
    const Weights w = make_weights(tc.type, rows, cols, (uint32_t)(rows * 131 + cols));
    const std::vector<float> X = make_x(cols * n_tokens, (uint32_t)(cols + 7));
    std::vector<float> out;
    absdots->clear();

    const cpu::PackedWeights pw = cpu::pack_weights(tc.type, w.bytes.data(), rows, cols, pool);
    REQUIRE(pw.rows() == rows);
    CHECK(std::string(pw.kernel_path()) == cpu::kernel_path_name());
    std::vector<float> y((size_t)rows, NAN);
    const bool quantized = type_traits(tc.type).is_quantized;
    cpu::matvec(pw, X.data(), y.data(), pool);
    const std::vector<double> xq1 = quantized ? quantized_x(tc.type, X.data(), cols, 1) : std::vector<double>();
    for (int64_t r = 0; r < rows; r++) {
        const RefRow rr = ref_row(tc, &w.deq[(size_t)(r * cols)], X.data(), cols, 1);
        CAPTURE(r);
        CHECK(std::fabs(y[(size_t)r] - rr.y) <= rr.bound);
        if (quantized) {
            const RefRow qr = quantized_ref(&w.deq[(size_t)(r * cols)], xq1);
            CHECK(std::fabs(y[(size_t)r] - qr.y) <= qr.bound);
        }
        out.push_back(y[(size_t)r]);
        absdots->push_back(rr.absdot);
    }

    std::vector<float> Y((size_t)(rows * n_tokens), NAN);
    cpu::matmul(pw, X.data(), n_tokens, Y.data(), pool);
    const bool bf16 = bf16_tiles(tc.type, n_tokens);
    for (int64_t t = 0; t < n_tokens; t++) {
        const std::vector<double> xq =
            quantized && !bf16 ? quantized_x(tc.type, &X[(size_t)(t * cols)], cols, n_tokens) : std::vector<double>();
        for (int64_t r = 0; r < rows; r++) {
            const RefRow rr = ref_row(tc, &w.deq[(size_t)(r * cols)], &X[(size_t)(t * cols)], cols, n_tokens);
            CAPTURE(t);
            CAPTURE(r);
            CHECK(std::fabs(Y[(size_t)(t * rows + r)] - rr.y) <= rr.bound);
            if (!xq.empty()) {
                const RefRow qr = quantized_ref(&w.deq[(size_t)(r * cols)], xq);
                CHECK(std::fabs(Y[(size_t)(t * rows + r)] - qr.y) <= qr.bound);
            }
            out.push_back(Y[(size_t)(t * rows + r)]);
            absdots->push_back(rr.absdot);
        }
    }
    if (bf16) {
        check_bf16(tc.type, w, X, rows, cols, n_tokens, Y);
        return out;
    }
    // Token 0 of matmul is the same computation as matvec where both quantize x alike.
    if (cpu::detail::act_format(tc.type, 1) == cpu::detail::act_format(tc.type, n_tokens))
        for (int64_t r = 0; r < rows; r++)
            CHECK(std::fabs(Y[(size_t)r] - y[(size_t)r]) <= kSimdVsScalarRelTol * (*absdots)[(size_t)r]);
    return out;
}

struct PathGuard {
    ~PathGuard() { cpu::force_kernel_path("best"); }
};

// One shape on the scalar path, then on every SIMD path this CPU runs, each against float64,
// and each SIMD result against the scalar one.
static void check_all_paths(const TypeCase& tc, int64_t rows, int64_t cols, int64_t n_tokens, ThreadPool* pool) {
    cpu::force_kernel_path("scalar");
    std::vector<double> absdots;
    const std::vector<float> ref = check_type(tc, rows, cols, n_tokens, pool, &absdots);
    for (const char* path : kAllPaths) {
        if (!cpu::kernel_path_supported(path) || std::strcmp(path, "scalar") == 0) continue;
        cpu::force_kernel_path(path);
        std::vector<double> ad;
        const std::vector<float> got = check_type(tc, rows, cols, n_tokens, pool, &ad);
        REQUIRE(got.size() == ref.size());
        const std::string path_name = path;
        // BF16 tiles: the matvec only (check_type compared the matmul with its BF16 reference)
        const size_t n_cmp = bf16_tiles(tc.type, n_tokens) ? (size_t)rows : got.size();
        for (size_t i = 0; i < n_cmp; i++) {
            CAPTURE(path_name);
            CAPTURE(type_traits(tc.type).name);
            CAPTURE(cols);
            CAPTURE(i);
            CHECK(std::fabs(got[i] - ref[i]) <= kSimdVsScalarRelTol * absdots[i]);
        }
    }
}

TEST_CASE("matvec and matmul match the float64 reference on every type and path") {
    PathGuard guard;
    ThreadPool pool(2);
    struct Shape { int64_t rows, cols_blocks, n_tokens; };
    // rows: one partial panel, several panels plus a partial one, exact panels; tokens: one
    // tile, full tiles plus a padded one (16 + 1, 16 + 16 + 1 on the zmm paths, 8 + 1 on the
    // 256-bit ones), sizes between the tile sizes (5, 9, 13: the zmm paths' 8 and 16);
    // {40, 9, 33}: two of amx's 16-token tiles over 3 panels, 9 subblocks (stages of 4, 4, 1);
    // {20, 70, 20}: rows longer than amx-bf16's K pieces (kBf16PieceCols), 2 to 9 of them
    const Shape shapes[] = {{1, 1, 1},    {7, 1, 3},   {33, 3, 5},  {67, 8, 9},  {16, 2, 4},
                            {100, 2, 17}, {48, 1, 13}, {130, 1, 2}, {40, 9, 33}, {20, 70, 20}};
    for (const TypeCase& tc : kTypes) {
        const int64_t bs = type_traits(tc.type).block_size == QK_K ? QK_K : 32;
        for (const Shape& s : shapes) check_all_paths(tc, s.rows, s.cols_blocks * bs, s.n_tokens, &pool);
    }
}

// Every level at its largest against activations at full scale (all +127 or all -127): the
// largest sums a subblock can make, which the avx2 path adds up in int16 for the 4-bit types
// (cpu_gemm_kernels.h sums16) and for both 4-bit halves of Q8_0's levels (split8; +127 is
// 0xFF in both), and which would overflow int16 for the 5- and 6-bit ones.
TEST_CASE("largest levels against full-scale activations on every path") {
    PathGuard guard;
    struct Layout {
        GgmlType type;
        std::vector<int> f16_at;  // offsets of the block's f16 scales
        uint8_t fill = 0xFF;      // every other byte of the block
    };
    const Layout layouts[] = {{GgmlType::Q4_0, {0}}, {GgmlType::Q4_1, {0, 2}}, {GgmlType::Q5_0, {0}},
                              {GgmlType::Q5_1, {0, 2}}, {GgmlType::Q4_K, {0, 2}}, {GgmlType::Q5_K, {0, 2}},
                              {GgmlType::Q6_K, {208}}, {GgmlType::Q8_0, {0}, 0x7F}};
    const int64_t rows = 20, ntok = 17;  // 17: one tile of 16 (amx's) and one of 1
    for (const Layout& l : layouts) {
        const TypeTraits& tt = type_traits(l.type);
        const int64_t cols = 2 * QK_K;
        const size_t bs = tt.type_size, rs = row_size(l.type, cols);
        std::vector<uint8_t> w((size_t)rows * rs, l.fill);  // 0xFF: every level and sub-scale bit set
        for (size_t b = 0; b < w.size(); b += bs)
            for (int at : l.f16_at) {
                const half_bits h = fp32_to_fp16(0.01f);
                std::memcpy(&w[b + (size_t)at], &h, 2);
            }
        std::vector<double> deq((size_t)(rows * cols));
        std::vector<float> tmp((size_t)cols);
        for (int64_t r = 0; r < rows; r++) {
            tt.to_float(&w[(size_t)r * rs], tmp.data(), cols);
            for (int64_t c = 0; c < cols; c++) deq[(size_t)(r * cols + c)] = tmp[(size_t)c];
        }
        std::vector<float> X((size_t)(cols * ntok));
        for (int64_t t = 0; t < ntok; t++)
            for (int64_t c = 0; c < cols; c++) X[(size_t)(t * cols + c)] = t % 2 ? -1.0f : 1.0f;
        const TypeCase tc{l.type, kActHalfStep, kFloatRelTol};
        for (const char* path : kAllPaths) {
            if (!cpu::kernel_path_supported(path)) continue;
            cpu::force_kernel_path(path);
            const cpu::PackedWeights pw = cpu::pack_weights(l.type, w.data(), rows, cols, nullptr);
            std::vector<float> Y((size_t)(rows * ntok), NAN);
            cpu::matmul(pw, X.data(), ntok, Y.data(), nullptr);
            const std::string path_name = path;
            CAPTURE(path_name);
            CAPTURE(tt.name);
            for (int64_t t = 0; t < ntok; t++)
                for (int64_t r = 0; r < rows; r++) {
                    const RefRow rr = ref_row(tc, &deq[(size_t)(r * cols)], &X[(size_t)(t * cols)], cols, ntok);
                    CAPTURE(t);
                    CAPTURE(r);
                    CHECK(std::fabs(Y[(size_t)(t * rows + r)] - rr.y) <= rr.bound);
                }
        }
    }
}

// The float types have no block: any cols, so the SIMD tails (scalar in avx2, masked in
// avx512) and the unrolled main loops are all exercised.
// The panel paths quantize the activations into their tiles with act_tile_row_avx2, which must
// write the reference act_tile_row's bytes exactly (so every path sees the same quantized
// values): blocks at many scales (ties of the rounding come up at the small ones), all-zero
// blocks, one large value among small ones, subnormals; every subblock size and tile layout.
TEST_CASE("the AVX2 activation tile quantizer matches the reference bit for bit") {
    if (!cpu::cpu_features().avx2) {
        MESSAGE("skipped: this CPU has no AVX2");
        return;
    }
    using namespace cpu::detail;
    const int64_t n = 8 * QK_K;
    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    struct Layout {
        ActFormat f;
        int S, corr_shift;
    };
    const Layout layouts[] = {{ActFormat::Q8A, 32, 7},  {ActFormat::Q8A, 32, -1}, {ActFormat::Q8AG, 32, 7},
                              {ActFormat::Q8AG, 32, -1}, {ActFormat::Q8K, 32, -1}, {ActFormat::Q8K, 16, 5}};
    std::vector<uint8_t> scratch(act_row_size(ActFormat::Q8A, n) + act_row_size(ActFormat::Q8K, n));
    for (int round = 0; round < 64; round++) {
        std::vector<float> x((size_t)n);
        for (int64_t j = 0; j < n; j++) {
            const int64_t blk = j / 32;
            const float scale = std::ldexp(1.0f, (int)(blk % 13) * 4 - 24 + round % 5);
            x[(size_t)j] = nd(rng) * scale;
        }
        for (int j = 32; j < 64; j++) x[(size_t)j] = 0;                      // an all-zero block
        x[(size_t)(100 + round)] = 1e6f;                                    // one value far above its block
        for (int j = 320; j < 352; j++) x[(size_t)j] = (float)(j - 336) * 1e-40f;  // subnormals: a 32-block
        if (round % 3 == 0)
            for (int j = 3 * QK_K; j < 4 * QK_K; j++) x[(size_t)j] = (float)(j % 64 - 32) * 1e-41f;  // and a 256-block
        if (round % 2) for (int j = 0; j < 32; j++) x[(size_t)(512 + j)] = (float)(j - 16) * 0.5f;  // ties
        // Q8A and Q8AG rows also of a length that ends inside the AVX2 code's 256-column group
        const int64_t q8a_cols = n - 32 * (1 + round % 7);
        for (const Layout& l : layouts)
            for (int T : {1, 8, 16}) {
                const int64_t cols = l.f != ActFormat::Q8K && round % 2 ? q8a_cols : n;
                const int tt = round % T;
                const size_t bytes = (size_t)(cols / l.S) * act_sub_bytes(l.S, T);
                std::vector<uint8_t> ref(bytes, 0xAA), got(bytes, 0xAA);
                act_tile_row(l.f, l.S, x.data(), cols, T, tt, l.corr_shift, ref.data(), scratch.data());
                act_tile_row_avx2(l.f, l.S, x.data(), cols, T, tt, l.corr_shift, got.data(), nullptr);
                CAPTURE(round);
                CAPTURE((int)l.f);
                CAPTURE(l.S);
                CAPTURE(T);
                CAPTURE(cols);
                CHECK(std::memcmp(ref.data(), got.data(), bytes) == 0);
            }
    }
}

// The zmm paths fill their 16-token prompt tiles (Q8AG, Q8K) with act_tile_fill_avx512, a tile
// at a time: the same bytes as the reference per token (act_tile_row, then act_sigma_pairs for
// Q4_K / Q5_K), for every subblock size, level offset, token count and a row ending inside a
// 256-column group.
TEST_CASE("the AVX-512 tile quantizer matches the reference bit for bit") {
    if (!cpu::cpu_features().avx512bw) {
        MESSAGE("skipped: this CPU has no AVX-512 BW");
        return;
    }
    using namespace cpu::detail;
    constexpr int T = 16;
    const int64_t n = 8 * QK_K, ldx = n + 48;
    std::mt19937 rng(12);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    struct Layout {
        ActFormat f;
        int S, corr_shift;
        bool sigma_pairs;
    };
    const Layout layouts[] = {{ActFormat::Q8AG, 32, 7, false}, {ActFormat::Q8AG, 32, 3, false}, {ActFormat::Q8AG, 32, 4, false},
                              {ActFormat::Q8AG, 32, -1, false}, {ActFormat::Q8K, 32, -1, true}, {ActFormat::Q8K, 16, 5, false}};
    std::vector<uint8_t> scratch(act_row_size(ActFormat::Q8K, n) + act_row_size(ActFormat::Q8A, n));
    for (int round = 0; round < 24; round++) {
        std::vector<float> X((size_t)(T * ldx));
        for (int tt = 0; tt < T; tt++) {
            float* x = X.data() + tt * ldx;
            for (int64_t j = 0; j < n; j++)
                x[j] = nd(rng) * std::ldexp(1.0f, (int)((j / 32 + tt) % 13) * 4 - 24 + round % 5);
            for (int j = 32 * tt; j < 32 * tt + 32; j++) x[j] = 0;  // an all-zero block
            x[100 + round + tt] = 1e6f;                          // one value far above its group
            if ((round + tt) % 3 == 0)
                for (int j = 3 * QK_K; j < 4 * QK_K; j++) x[j] = (float)(j % 64 - 32) * 1e-41f;  // a subnormal group
            if ((round + tt) % 2)
                for (int j = 0; j < 32; j++) x[512 + j] = (float)(j - 16) * 0.5f;  // ties
        }
        const int nt = 1 + (round * 5) % T;
        // Q8AG rows may end inside a group, or be shorter than one
        const int64_t q8ag_cols = round % 4 == 1 ? n - 32 * (1 + round % 7) : round % 4 == 3 ? 32 * (1 + round % 7) : n;
        for (const Layout& l : layouts) {
            const int64_t cols = l.f == ActFormat::Q8AG ? q8ag_cols : n;
            const size_t bytes = (size_t)(cols / l.S) * act_sub_bytes(l.S, T);
            std::vector<uint8_t> ref(bytes, 0), got(bytes, 0);
            for (int tt = 0; tt < nt; tt++)
                act_tile_row(l.f, l.S, X.data() + tt * ldx, cols, T, tt, l.corr_shift, ref.data(), scratch.data());
            if (l.sigma_pairs) act_sigma_pairs(cols, nt, T, ref.data());
            act_tile_fill_avx512(l.S, X.data(), ldx, cols, nt, l.corr_shift, l.sigma_pairs, got.data());
            CAPTURE(round);
            CAPTURE((int)l.f);
            CAPTURE(l.S);
            CAPTURE(l.corr_shift);
            CAPTURE(nt);
            CAPTURE(cols);
            size_t first_diff = 0;
            while (first_diff < bytes && ref[first_diff] == got[first_diff]) first_diff++;
            CAPTURE(first_diff);
            CHECK(first_diff == bytes);
        }
    }
}

TEST_CASE("float weight types with cols that are not a multiple of the SIMD width") {
    PathGuard guard;
    ThreadPool pool(2);
    for (const TypeCase& tc : kTypes) {
        if (type_traits(tc.type).is_quantized) continue;
        for (int64_t cols : {1, 7, 13, 37, 100, 129}) check_all_paths(tc, 5, cols, 6, &pool);
    }
}

TEST_CASE("results do not depend on the thread count") {
    PathGuard guard;
    for (const char* path : kAllPaths) {
        if (!cpu::kernel_path_supported(path)) continue;
        cpu::force_kernel_path(path);
        for (GgmlType t : {GgmlType::F16, GgmlType::Q4_0, GgmlType::Q4_K}) {
            for (int64_t ntok : {11, 37}) {  // 37: the amx-bf16 paths' BF16 tiles
                const int64_t rows = 131, cols = 512;
                const Weights w = make_weights(t, rows, cols, 5);
                const std::vector<float> X = make_x(cols * ntok, 9);
                const cpu::PackedWeights pw = cpu::pack_weights(t, w.bytes.data(), rows, cols, nullptr);
                std::vector<float> y1((size_t)rows), Y1((size_t)(rows * ntok));
                cpu::matvec(pw, X.data(), y1.data(), nullptr);
                cpu::matmul(pw, X.data(), ntok, Y1.data(), nullptr);
                for (int n : {1, 2, 3, 4}) {
                    ThreadPool pool(n);
                    std::vector<float> y((size_t)rows), Y((size_t)(rows * ntok));
                    cpu::matvec(pw, X.data(), y.data(), &pool);
                    cpu::matmul(pw, X.data(), ntok, Y.data(), &pool);
                    const std::string path_name = path;
                    CAPTURE(path_name);
                    CAPTURE(n);
                    CHECK(std::memcmp(y.data(), y1.data(), y.size() * 4) == 0);
                    CHECK(std::memcmp(Y.data(), Y1.data(), Y.size() * 4) == 0);
                }
            }
        }
    }
}

// matmul_group (the engine's wq, wk, wv) gives each matrix what matmul gives it, bit for bit,
// with the matrices' panels shared out over the pool together.
TEST_CASE("matmul_group equals one matmul per matrix on every path") {
    PathGuard guard;
    ThreadPool pool(3);
    for (const char* path : kAllPaths) {
        if (!cpu::kernel_path_supported(path)) continue;
        cpu::force_kernel_path(path);
        for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_K}) {
            const int64_t cols = 512, ntok = 37, rows[3] = {40, 8, 100};
            const std::vector<float> X = make_x(cols * ntok, 3);
            std::vector<cpu::PackedWeights> pw;
            std::vector<std::vector<float>> one(3), grouped(3);
            for (int m = 0; m < 3; m++) {
                const Weights w = make_weights(t, rows[m], cols, (uint32_t)(17 + m));
                pw.push_back(cpu::pack_weights(t, w.bytes.data(), rows[m], cols, &pool));
                one[(size_t)m].resize((size_t)(rows[m] * ntok));
                grouped[(size_t)m].assign((size_t)(rows[m] * ntok), NAN);
                cpu::matmul(pw.back(), X.data(), ntok, one[(size_t)m].data(), &pool);
            }
            const cpu::PackedWeights* ws[3] = {&pw[0], &pw[1], &pw[2]};
            float* ys[3] = {grouped[0].data(), grouped[1].data(), grouped[2].data()};
            cpu::matmul_group(ws, ys, 3, X.data(), ntok, &pool);
            const std::string path_name = path;
            CAPTURE(path_name);
            CAPTURE(type_traits(t).name);
            for (int m = 0; m < 3; m++) CHECK(std::memcmp(one[(size_t)m].data(), grouped[(size_t)m].data(), one[(size_t)m].size() * 4) == 0);
        }
    }
}

TEST_CASE("bad arguments give CpuKernelError") {
    std::vector<uint8_t> w(4096);
    std::vector<float> x(1024), y(64);
    // cols not a multiple of the block
    CHECK_THROWS_AS(cpu::pack_weights(GgmlType::Q4_0, w.data(), 2, 48, nullptr), CpuKernelError);
    CHECK_THROWS_AS(cpu::pack_weights(GgmlType::Q4_K, w.data(), 2, 128, nullptr), CpuKernelError);
    CHECK_THROWS_AS(cpu::pack_weights(GgmlType::Q8_0, w.data(), 2, 33, nullptr), CpuKernelError);
    CHECK_THROWS_AS(cpu::pack_weights(GgmlType::F32, w.data(), 2, 0, nullptr), CpuKernelError);
    CHECK_THROWS_AS(cpu::pack_weights(GgmlType::F32, w.data(), -1, 8, nullptr), CpuKernelError);
    CHECK_THROWS_AS(cpu::pack_weights(GgmlType::F32, nullptr, 2, 8, nullptr), CpuKernelError);
    const cpu::PackedWeights pw = cpu::pack_weights(GgmlType::F32, w.data(), 1, 8, nullptr);
    CHECK_THROWS_AS(cpu::matmul(pw, x.data(), -2, y.data(), nullptr), CpuKernelError);
    CHECK_THROWS_AS(cpu::matvec(pw, nullptr, y.data(), nullptr), CpuKernelError);
    CHECK_THROWS_AS(cpu::matvec(cpu::PackedWeights(), x.data(), y.data(), nullptr), CpuKernelError);
    // types without kernels
    CHECK_THROWS_AS(cpu::pack_weights(GgmlType::Q2_K, w.data(), 1, 256, nullptr), CpuKernelError);
    CHECK_THROWS_AS(cpu::pack_weights((GgmlType)999, w.data(), 1, 256, nullptr), CpuKernelError);
    CHECK_FALSE(cpu::matmul_supports(GgmlType::Q3_K));
    CHECK(cpu::matmul_supports(GgmlType::Q6_K));
    try {
        cpu::pack_weights(GgmlType::Q5_1, w.data(), 2, 40, nullptr);
        FAIL("no throw");
    } catch (const CpuKernelError& e) {
        const std::string msg = e.what();
        CHECK(msg.find("Q5_1") != std::string::npos);
        CHECK(msg.find("40") != std::string::npos);
    }
    // zero rows / tokens: nothing to do, no error
    const cpu::PackedWeights empty_rows = cpu::pack_weights(GgmlType::Q4_0, nullptr, 0, 32, nullptr);
    CHECK(empty_rows);
    CHECK_NOTHROW(cpu::matvec(empty_rows, nullptr, nullptr, nullptr));
    const cpu::PackedWeights q4 = cpu::pack_weights(GgmlType::Q4_0, w.data(), 4, 32, nullptr);
    CHECK_NOTHROW(cpu::matmul(q4, nullptr, 0, nullptr, nullptr));
}

// The packed matrix is the size of the GGUF one, rounded up to whole 16-row panels, on every
// path (the K-quants' unpacked scales add 64 bytes per 16 blocks).
TEST_CASE("packed sizes") {
    PathGuard guard;
    std::vector<uint8_t> w(row_size(GgmlType::F16, 512) * 40);  // the largest of the types below
    for (const char* path : kAllPaths) {
        if (!cpu::kernel_path_supported(path)) continue;
        cpu::force_kernel_path(path);
        const bool rows_layout = std::string(path) == "scalar";
        for (GgmlType t : {GgmlType::F16, GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q6_K, GgmlType::Q4_K}) {
            const int64_t rows = 40, cols = 512;
            const cpu::PackedWeights pw = cpu::pack_weights(t, w.data(), rows, cols, nullptr);
            const size_t gguf = row_size(t, cols) * (size_t)rows;
            const size_t panels = row_size(t, cols) * 48;  // 3 panels of 16 rows
            const size_t extra = (t == GgmlType::Q4_K ? 64 * 2 * 3 : 0);
            const std::string path_name = path;
            CAPTURE(path_name);
            CAPTURE(type_traits(t).name);
            CHECK(pw.bytes() == (rows_layout ? gguf : panels + extra));
        }
    }
}

// The peak loops change the thread's state the kernels rely on (amx: the tile configuration):
// each path's loop must run, and its kernels must stay exact on the same thread after it.
TEST_CASE("each path's compute peak loop runs, and its kernels stay exact after it") {
    PathGuard guard;
    ThreadPool pool(1);
    for (const char* path : kAllPaths) {
        if (!cpu::kernel_path_supported(path)) continue;
        CAPTURE(std::string(path));
        cpu::force_kernel_path(path);
        const cpu::ComputePeak peak = cpu::measure_compute_peak(pool, true);
        if (std::strcmp(path, "scalar") != 0) {
            CHECK(peak.int8_gops > 0);
            CHECK(peak.fp32_gflops > 0);
        }
        std::vector<double> absdots;
        for (const TypeCase& tc : kTypes)
            if (tc.type == GgmlType::Q4_0 || tc.type == GgmlType::Q6_K)
                check_type(tc, 40, 9 * type_traits(tc.type).block_size, 33, &pool, &absdots);
    }
}

TEST_CASE("kernel paths: detection and forcing") {
    PathGuard guard;
    const cpu::CpuFeatures& f = cpu::cpu_features();
    MESSAGE("cpu: avx2=" << f.avx2 << " fma=" << f.fma << " f16c=" << f.f16c << " avx512f=" << f.avx512f
                         << " avx512bw=" << f.avx512bw << " avx512vl=" << f.avx512vl << " avx512vnni=" << f.avx512vnni
                         << " avx512bf16=" << f.avx512bf16 << " avx_vnni=" << f.avx_vnni << " amx_int8=" << f.amx_int8
                         << " amx_bf16=" << f.amx_bf16 << " amx_refused=" << f.amx_refused
                         << "; best path: " << std::string(cpu::kernel_path_name())
                         << "; avx-vnni encoding: " << std::string(cpu::avx_vnni_is_vex() ? "VEX" : "EVEX"));
    std::string here;  // the paths the kernel tests above ran on this CPU
    for (const char* p : kAllPaths)
        if (cpu::kernel_path_supported(p)) here += std::string(here.empty() ? "" : ", ") + p;
    MESSAGE("paths tested against the reference on this CPU: " << here);
    CHECK(cpu::kernel_path_supported("scalar"));
    CHECK(cpu::kernel_path_supported("avx2") == (f.avx2 && f.fma && f.f16c));
    CHECK(cpu::kernel_path_supported("amx") == (cpu::kernel_path_supported("avx512-vnni") && f.amx_int8));
    CHECK(cpu::kernel_path_supported("amx-bf16") ==
          (cpu::kernel_path_supported("avx512-vnni") && f.amx_bf16 && f.avx512bf16));
    CHECK(cpu::kernel_path_supported("amx-bf16-emulated") == cpu::kernel_path_supported("avx512-vnni"));
    CHECK_FALSE((f.amx_refused && f.amx_int8));  // refused means no amx path
    // the automatic choice is the first supported of amx-bf16, avx512-vnni, avx-vnni, avx2, scalar
    for (const char* p : {"amx-bf16", "avx512-vnni", "avx-vnni", "avx2", "scalar"})
        if (cpu::kernel_path_supported(p)) {
            CHECK(std::string(cpu::kernel_path_name()) == p);
            break;
        }
    CHECK_FALSE(cpu::kernel_path_supported("sse9"));
    CHECK_THROWS_AS(cpu::force_kernel_path("sse9"), CpuKernelError);
    CHECK_THROWS_AS(cpu::force_kernel_path(nullptr), CpuKernelError);
    for (const char* p : kAllPaths) {
        if (cpu::kernel_path_supported(p)) {
            cpu::force_kernel_path(p);
            CHECK(std::string(cpu::kernel_path_name()) == p);
        } else {
            CHECK_THROWS_AS(cpu::force_kernel_path(p), CpuKernelError);
        }
    }
    // a forced path also caps the other ops at what a CPU with that best path has
    const cpu::OpsIsa widest = f.avx512f && cpu::kernel_path_supported("avx2") ? cpu::OpsIsa::Avx512
                               : cpu::kernel_path_supported("avx2")           ? cpu::OpsIsa::Avx2
                                                                               : cpu::OpsIsa::Scalar;
    cpu::force_kernel_path("best");
    CHECK(cpu::ops_isa() == widest);
    cpu::force_kernel_path("scalar");
    CHECK(cpu::ops_isa() == cpu::OpsIsa::Scalar);
    if (cpu::kernel_path_supported("avx2")) {
        cpu::force_kernel_path("avx2");
        CHECK(cpu::ops_isa() == cpu::OpsIsa::Avx2);
    }
    if (cpu::kernel_path_supported("avx512-vnni")) {
        cpu::force_kernel_path("avx512-vnni");
        CHECK(cpu::ops_isa() == cpu::OpsIsa::Avx512);
    }
    cpu::force_kernel_path("best");
    CHECK(cpu::ops_isa() == widest);
}

// ---- thread pool -----------------------------------------------------------------------------

TEST_CASE("ThreadPool covers every index exactly once") {
    CHECK_THROWS_AS(ThreadPool(0), std::invalid_argument);
    for (int n_threads : {1, 2, 3, 5}) {
        ThreadPool pool(n_threads);
        CHECK(pool.size() == n_threads);
        for (int64_t n : {0, 1, 2, 7, 100, 1001}) {
            for (int64_t grain : {0, 1, 3, 64}) {
                std::vector<std::atomic<int>> hits((size_t)n);
                pool.parallel_for(n, [&](int64_t b, int64_t e) {
                    REQUIRE(0 <= b);
                    REQUIRE(b < e);
                    REQUIRE(e <= n);
                    for (int64_t i = b; i < e; i++) hits[(size_t)i]++;
                }, grain);
                for (int64_t i = 0; i < n; i++) CHECK(hits[(size_t)i].load() == 1);
            }
        }
        // many small jobs in a row (the decode pattern)
        std::atomic<int64_t> total{0};
        for (int rep = 0; rep < 2000; rep++)
            pool.parallel_for(8, [&](int64_t b, int64_t e) { total += e - b; }, 1);
        CHECK(total.load() == 16000);
    }
}

// Back-to-back jobs of different sizes: a worker that wakes late for job k must not claim or
// count items of job k+1 (this caught a real race in an earlier version).
TEST_CASE("ThreadPool: back-to-back jobs of varying size stay exact") {
    for (int n_threads : {2, 3, 4}) {
        ThreadPool pool(n_threads);
        std::vector<std::atomic<int>> hits(64);
        for (int rep = 0; rep < 20000; rep++) {
            const int64_t n = 1 + (rep * 7919) % 63;
            for (int64_t i = 0; i < n; i++) hits[(size_t)i] = 0;
            pool.parallel_for(n, [&](int64_t b, int64_t e) { for (int64_t i = b; i < e; i++) hits[(size_t)i]++; }, 1 + rep % 3);
            bool ok = true;
            for (int64_t i = 0; i < n; i++) ok = ok && hits[(size_t)i].load() == 1;
            if (!ok) {
                CAPTURE(rep);
                FAIL("an index was run zero or two times");
            }
        }
    }
}

TEST_CASE("ThreadPool: nested and concurrent calls run, exceptions propagate") {
    ThreadPool pool(3);
    // nested: the inner call runs serially on the calling thread
    std::atomic<int64_t> inner{0};
    pool.parallel_for(6, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; i++)
            pool.parallel_for(10, [&](int64_t b2, int64_t e2) { inner += e2 - b2; });
    }, 1);
    CHECK(inner.load() == 60);

    // an exception stops the job and reaches the caller; the pool keeps working afterwards
    std::atomic<int> ran{0};
    CHECK_THROWS_WITH_AS(pool.parallel_for(1000, [&](int64_t b, int64_t e) {
        ran++;
        if (b <= 500 && 500 < e) throw std::runtime_error("boom at 500");
    }, 1), "boom at 500", std::runtime_error);
    CHECK(ran.load() <= 1000);
    std::atomic<int64_t> after{0};
    pool.parallel_for(100, [&](int64_t b, int64_t e) { after += e - b; });
    CHECK(after.load() == 100);

    // two threads sharing one pool
    std::atomic<int64_t> sum_a{0}, sum_b{0};
    std::thread ta([&] { for (int k = 0; k < 300; k++) pool.parallel_for(50, [&](int64_t b, int64_t e) { sum_a += e - b; }); });
    std::thread tb([&] { for (int k = 0; k < 300; k++) pool.parallel_for(70, [&](int64_t b, int64_t e) { sum_b += e - b; }); });
    ta.join();
    tb.join();
    CHECK(sum_a.load() == 300 * 50);
    CHECK(sum_b.load() == 300 * 70);
}
