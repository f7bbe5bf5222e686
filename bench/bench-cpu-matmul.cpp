// bench-cpu-matmul: decode (matvec) weight-read bandwidth and prefill (matmul) GOP/s of the
// CPU kernels on a ~110M-parameter Llama-shaped set of matrices, per weight type and kernel
// path, against this machine's memory read bandwidth and each path's compute peak (a
// register-only loop of its int8 dot / fp32 fma instruction, tandem/cpu_peak.h), all measured
// in the same run.
//
//   bench-cpu-matmul [--threads N] [--tokens N] [--types F16,Q8_0,...] [--paths scalar,avx2,...] [--cpu-time]
//                    [--dim N --ffn N]
//
// --cpu-time: one thread, every time (bandwidth, peak loops, decode, prefill) taken from the
// thread's own CPU time instead of the wall clock, so that the ratios hold on a machine other
// processes share (memory bandwidth then is still shared).
//
// Model shape: dim 768, ffn 2048, 12 layers (wq wk wv wo: 768x768; w1 w3: 2048x768; w2: 768x2048)
// plus the output matrix 32000x768: 109.6M weights. --dim / --ffn change the layers' width (the
// 1B shapes' 2048 / 8192, say: 870M weights, a 8192-column w2). Every matrix is its own allocation, so a
// decode step reads ~62 MB (Q4_0) to ~219 MB (F16): far more than the caches.
// Each path packs the matrices first (cpu::pack_weights, not timed).
// Decode: one step = all 85 matvecs in sequence (what a forward pass does); median of steps.
// Prefill: --tokens (512) tokens through one layer's 7 matrices with matmul, the best of 12 such
// calls (one lasts 5-12 ms; with the best of 3, two threads on a shared VM read 52-71% of their
// peak from run to run); ops = 2*params*tokens, reported against the path's int8 peak
// (quantized types) or fp32 fma peak (float types).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tandem/cpu_matmul.h"
#include "tandem/cpu_peak.h"
#include "tandem/thread_pool.h"

using namespace tandem;
using Clock = std::chrono::steady_clock;

static bool g_cpu_time = false;  // --cpu-time

// Seconds on the clock the measurements use: the wall clock, or (--cpu-time) this thread's CPU time.
static double now_s() {
    if (g_cpu_time) return cpu::thread_cpu_seconds();
    return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}


static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

static std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    size_t b = 0;
    while (b <= s.size()) {
        const size_t e = std::min(s.find(',', b), s.size());
        if (e > b) out.push_back(s.substr(b, e - b));
        b = e + 1;
    }
    return out;
}

// ---- memory bandwidth -----------------------------------------------------------------------

// Read bandwidth: every thread sums its share of a 1 GiB buffer (best of 5 passes).
static double measure_read_gbs(ThreadPool& pool) {
    const size_t n = (size_t)1 << 27;  // 2^27 uint64 = 1 GiB
    std::vector<uint64_t> buf(n);
    pool.parallel_for((int64_t)n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; i++) buf[(size_t)i] = (uint64_t)i * 2654435761u;
    }, (int64_t)n / pool.size());
    double best = 1e30;
    volatile uint64_t sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        std::vector<uint64_t> partial((size_t)pool.size() * 8, 0);
        const double t0 = now_s();
        pool.parallel_for((int64_t)n, [&](int64_t b, int64_t e) {
            uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int64_t i = b;
            for (; i + 4 <= e; i += 4) {
                s0 += buf[(size_t)i]; s1 += buf[(size_t)i + 1]; s2 += buf[(size_t)i + 2]; s3 += buf[(size_t)i + 3];
            }
            for (; i < e; i++) s0 += buf[(size_t)i];
            sink = sink + s0 + s1 + s2 + s3;
        }, (int64_t)n / (4 * pool.size()));
        best = std::min(best, now_s() - t0);
    }
    return (double)n * 8 / best / 1e9;
}

// memcpy bandwidth (bytes read + written) with each thread copying its share, best of 5.
static double measure_memcpy_gbs(ThreadPool& pool) {
    const size_t n = (size_t)1 << 28;  // 256 MiB each way
    std::vector<char> a(n, 1), b(n, 2);
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        const double t0 = now_s();
        pool.parallel_for((int64_t)n, [&](int64_t s, int64_t e) { std::memcpy(b.data() + s, a.data() + s, (size_t)(e - s)); },
                          (int64_t)n / pool.size());
        best = std::min(best, now_s() - t0);
    }
    return 2.0 * (double)n / best / 1e9;
}

// ---- the model's matrices ------------------------------------------------------------------

struct Mat {
    int64_t rows, cols;
    std::vector<uint8_t> w;
};

// Random weights: a pool of quantized random rows, tiled over the matrix (the values do not
// matter for speed; the bytes must be real blocks of the type).
static Mat make_mat(GgmlType t, int64_t rows, int64_t cols, std::mt19937& rng) {
    Mat m{rows, cols, {}};
    const size_t rs = row_size(t, cols);
    m.w.resize(rs * (size_t)rows);
    const int64_t pool_rows = std::min<int64_t>(rows, 64);
    std::normal_distribution<float> nd(0, 0.02f);
    std::vector<float> f((size_t)cols);
    for (int64_t r = 0; r < pool_rows; r++) {
        for (auto& v : f) v = nd(rng);
        type_traits(t).from_float_ref(f.data(), m.w.data() + r * rs, cols);
    }
    for (int64_t r = pool_rows; r < rows; r++) std::memcpy(m.w.data() + r * rs, m.w.data() + (r % pool_rows) * rs, rs);
    return m;
}

struct Model {
    std::vector<Mat> mats;  // 12 x (wq wk wv wo w1 w3 w2), then output
    size_t bytes = 0;
    int64_t params = 0;
};

static int64_t g_dim = 768, g_ffn = 2048;

static Model make_model(GgmlType t) {
    const int64_t dim = g_dim, ffn = g_ffn, layers = 12, vocab = 32000;
    std::mt19937 rng(42);
    Model m;
    for (int l = 0; l < layers; l++) {
        for (int k = 0; k < 4; k++) m.mats.push_back(make_mat(t, dim, dim, rng));
        m.mats.push_back(make_mat(t, ffn, dim, rng));
        m.mats.push_back(make_mat(t, ffn, dim, rng));
        m.mats.push_back(make_mat(t, dim, ffn, rng));
    }
    m.mats.push_back(make_mat(t, vocab, dim, rng));
    for (const Mat& x : m.mats) {
        m.bytes += x.w.size();
        m.params += x.rows * x.cols;
    }
    return m;
}

// ---- measurements --------------------------------------------------------------------------

static std::vector<cpu::PackedWeights> pack_model(GgmlType t, const Model& m, ThreadPool& pool) {
    std::vector<cpu::PackedWeights> p;
    for (const Mat& x : m.mats) p.push_back(cpu::pack_weights(t, x.w.data(), x.rows, x.cols, &pool));
    return p;
}

// Median seconds of one decode step (every matrix once, in order).
static double time_decode(const std::vector<cpu::PackedWeights>& m, ThreadPool& pool, int steps) {
    std::vector<float> x(32000, 0.5f), y(32000);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0, 1);
    for (auto& v : x) v = nd(rng);
    std::vector<double> times;
    for (int s = 0; s < steps + 1; s++) {
        const double t0 = now_s();
        for (const cpu::PackedWeights& w : m) cpu::matvec(w, x.data(), y.data(), &pool);
        if (s > 0) times.push_back(now_s() - t0);  // the first step warms up
    }
    return median(times);
}

// Seconds for n_tokens through layer 0's 7 matrices (best of `reps`).
static double time_prefill(const std::vector<cpu::PackedWeights>& m, ThreadPool& pool, int64_t n_tokens, int reps,
                           int64_t* flops) {
    const int64_t width = std::max(g_dim, g_ffn);
    std::vector<float> X((size_t)(n_tokens * width)), Y((size_t)(n_tokens * width));
    std::mt19937 rng(2);
    std::normal_distribution<float> nd(0, 1);
    for (auto& v : X) v = nd(rng);
    *flops = 0;
    for (int k = 0; k < 7; k++) *flops += 2 * m[(size_t)k].rows() * m[(size_t)k].cols() * n_tokens;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const double t0 = now_s();
        for (int k = 0; k < 7; k++) cpu::matmul(m[(size_t)k], X.data(), n_tokens, Y.data(), &pool);
        best = std::min(best, now_s() - t0);
    }
    return best;
}

int main(int argc, char** argv) {
    int threads = 2;
    int64_t n_tokens = 512;
    std::vector<std::string> types = {"F16", "Q8_0", "Q4_0", "Q4_K"};
    std::vector<std::string> paths = {"scalar", "avx2", "avx-vnni", "avx512-vnni", "amx", "amx-bf16"};
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) { std::fprintf(stderr, "%s needs a value\n", a.c_str()); std::exit(2); }
            return argv[++i];
        };
        if (a == "--threads") threads = std::atoi(next().c_str());
        else if (a == "--tokens") n_tokens = std::atoll(next().c_str());
        else if (a == "--types") types = split(next());
        else if (a == "--paths") paths = split(next());
        else if (a == "--cpu-time") g_cpu_time = true;
        else if (a == "--dim") g_dim = std::atoll(next().c_str());
        else if (a == "--ffn") g_ffn = std::atoll(next().c_str());
        else {
            std::fprintf(stderr, "usage: %s [--threads N] [--tokens N] [--types F16,Q8_0,...] [--paths scalar,avx2,...] [--cpu-time] "
                                 "[--dim N --ffn N]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || n_tokens < 1) { std::fprintf(stderr, "--threads and --tokens must be >= 1\n"); return 2; }
    if (g_dim < 256 || g_ffn < 256 || g_dim % 256 || g_ffn % 256 || g_dim > 16384 || g_ffn > 16384) {
        std::fprintf(stderr, "--dim and --ffn must be multiples of 256 from 256 to 16384\n");
        return 2;
    }
    if (g_cpu_time) threads = 1;
    ThreadPool pool(threads);
    const cpu::CpuFeatures& f = cpu::cpu_features();
    std::printf("%sthreads %d; cpu avx2=%d fma=%d f16c=%d avx512f=%d avx512bw=%d avx512vl=%d avx512vnni=%d "
                "avx512bf16=%d avx_vnni=%d amx_int8=%d amx_bf16=%d; best path %s\n",
                g_cpu_time ? "times: this thread's CPU time; " : "", threads, f.avx2, f.fma, f.f16c, f.avx512f, f.avx512bw,
                f.avx512vl, f.avx512vnni, f.avx512bf16, f.avx_vnni, f.amx_int8, f.amx_bf16, cpu::kernel_path_name());
    const double read_gbs = measure_read_gbs(pool);
    const double copy_gbs = measure_memcpy_gbs(pool);
    std::printf("memory: read %.1f GB/s, memcpy %.1f GB/s (read+write), %d threads\n\n", read_gbs, copy_gbs, threads);

    // each path's compute peak, measured once, before the matrices take the caches
    struct PathPeak { std::string path; cpu::ComputePeak peak; };
    std::vector<PathPeak> peaks;
    for (const std::string& p : paths) {
        if (!cpu::kernel_path_supported(p.c_str())) continue;
        cpu::force_kernel_path(p.c_str());
        peaks.push_back({p, cpu::measure_compute_peak(pool, g_cpu_time)});
        const cpu::ComputePeak& pk = peaks.back().peak;
        std::printf("peak %-12s int8 %7.1f GOP/s (%s), fp32 %6.1f GFLOP/s", p.c_str(), pk.int8_gops, pk.int8_instr,
                    pk.fp32_gflops);
        if (pk.bf16_gflops > 0) std::printf(", bf16 %7.1f GFLOP/s (%s)", pk.bf16_gflops, pk.bf16_instr);
        std::printf("\n");
    }
    cpu::force_kernel_path("best");
    std::printf("\n%-5s %-12s %9s %11s %9s %6s | %9s %9s %13s %8s\n", "type", "path", "MB/step", "decode ms", "GB/s",
                "%read", "prefill s", "GOP/s", "% of peak", "x scalar");
    int64_t params = 0;
    for (const std::string& tn : types) {
        GgmlType t = GgmlType::F32;
        bool found = false;
        for (uint32_t id = 0; id < kGgmlTypeCount; id++) {
            const TypeTraits* tt = type_traits(id);
            if (tt && tn == tt->name && cpu::matmul_supports((GgmlType)id)) { t = (GgmlType)id; found = true; }
        }
        if (!found) { std::fprintf(stderr, "unknown or unsupported type %s\n", tn.c_str()); return 2; }
        const bool quant = type_traits(t).is_quantized;
        const Model m = make_model(t);
        params = m.params;
        double scalar_gflops = 0, scalar_gbs = 0;
        for (const PathPeak& pp : peaks) {
            const std::string& p = pp.path;
            cpu::force_kernel_path(p.c_str());
            const std::vector<cpu::PackedWeights> packed = pack_model(t, m, pool);
            const bool slow = p == "scalar";
            const double dec = time_decode(packed, pool, slow ? 3 : 20);
            int64_t flops = 0;
            const int64_t ntok = slow ? std::min<int64_t>(n_tokens, 64) : n_tokens;
            const double pre = time_prefill(packed, pool, ntok, slow ? 1 : 12, &flops);
            const double gbs = (double)m.bytes / dec / 1e9, gflops = (double)flops / pre / 1e9;
            if (slow) { scalar_gflops = gflops; scalar_gbs = gbs; }
            char ratio[32] = "-", roof[32] = "-";
            if (!slow && scalar_gflops > 0) std::snprintf(ratio, sizeof ratio, "%.1f/%.1f", gbs / scalar_gbs, gflops / scalar_gflops);
            const double peak = quant ? pp.peak.int8_gops : pp.peak.fp32_gflops;
            if (peak > 0) std::snprintf(roof, sizeof roof, "%.0f%% %s", 100 * gflops / peak, quant ? "int8" : "fp32");
            if (quant && pp.peak.bf16_gflops > 0)  // amx-bf16: against the BF16 tiles' peak as well
                std::snprintf(roof, sizeof roof, "%.0f%% int8 %.0f%% bf16", 100 * gflops / peak, 100 * gflops / pp.peak.bf16_gflops);
            std::printf("%-5s %-12s %9.1f %11.2f %9.2f %5.0f%% | %9.3f %9.1f %13s %8s%s\n", tn.c_str(), p.c_str(), m.bytes / 1e6,
                        dec * 1e3, gbs, 100 * gbs / read_gbs, pre, gflops, roof, ratio, slow ? "  (prefill: 64 tokens)" : "");
            std::fflush(stdout);
        }
        cpu::force_kernel_path("best");
    }
    std::printf("\nparams %.1fM (dim %lld, ffn %lld); decode = all 85 matrices once (median step); prefill = layer 0's 7 matrices x %lld tokens;\n"
                "%% of peak = prefill GOP/s / the path's int8 (quantized types) or fp32 fma (float types) peak\n"
                "(amx-bf16: also / its tdpbf16ps peak);\n"
                "x scalar = decode GB/s ratio / prefill GOP/s ratio against the scalar path\n",
                (double)params / 1e6, (long long)g_dim, (long long)g_ffn, (long long)n_tokens);
    return 0;
}
