// CPU engine end to end: prompt and decode tokens/s and peak memory for stories260K and a
// synthetic ~100M-parameter Llama-shaped model in F16, Q8_0, Q4_0 and Q4_K, with the GB/s of
// weight reads per decoded token against this machine's memory bandwidth measured in the
// same run (a multi-threaded read of a 1 GiB buffer).
//
// usage: bench-engine-cpu [--threads T] [--runs R] [--shared DIR] [--json FILE]
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tandem/context.h"
#include "tandem/cpu_matmul.h"
#include "tandem/speed.h"
#include "tandem/synthetic_model.h"
#include "tandem/thread_pool.h"

using namespace tandem;
using Clock = std::chrono::steady_clock;

static double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Read bandwidth: every thread sums its slice of a 1 GiB buffer with 256-bit loads (AVX2 when
// the CPU has it, as the matmul kernels do), best of 5.
#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint64_t* p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 16 <= n; i += 16) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i*)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i*)(p + i + 4)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i*)(p + i + 8)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i*)(p + i + 12)));
    }
    alignas(32) uint64_t t[4];
    _mm256_store_si256((__m256i*)t, _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
    return t[0] + t[1] + t[2] + t[3];
}
#endif

static uint64_t sum_slice(const uint64_t* p, size_t n) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) return sum_avx2(p, n);
#endif
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= n; i += 4) { s0 += p[i]; s1 += p[i + 1]; s2 += p[i + 2]; s3 += p[i + 3]; }
    return s0 + s1 + s2 + s3;
}

static double measure_read_gbs(int threads) {
    const size_t n = (size_t)1 << 27;  // 1 GiB of uint64, 32-byte aligned slices
    uint64_t* buf = (uint64_t*)std::aligned_alloc(64, n * 8);
    std::fill(buf, buf + n, 1);
    double best = 0;
    for (int r = 0; r < 5; r++) {
        std::vector<uint64_t> sums((size_t)threads);
        const auto t0 = Clock::now();
        std::vector<std::thread> ts;
        for (int t = 0; t < threads; t++)
            ts.emplace_back([&, t] { sums[(size_t)t] = sum_slice(buf + n / threads * t, n / threads); });
        for (auto& t : ts) t.join();
        const double s = seconds_since(t0);
        uint64_t total = 0;
        for (auto v : sums) total += v;
        if (total != n) std::fprintf(stderr, "bandwidth check failed\n");
        best = std::max(best, n * 8.0 / s / 1e9);
    }
    std::free(buf);
    return best;
}

// Resident memory now (the touched weight pages of the mmap, KV cache, scratch), from /proc.
static double rss_mib() {
    long pages = 0, resident = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        std::fclose(f);
    }
    return resident * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

struct Row {
    std::string name;
    double params_m, weight_mib, pp_tps, tg_tps, gbs, rss_mib;
};

static Row bench_model(const std::string& name, const std::string& path, int threads, int runs) {
    auto model = Model::load(path);
    const ModelConfig& c = model->config();
    const int n_prompt = 512, n_decode = 128;
    ContextParams cp;
    cp.n_ctx = n_prompt + n_decode;
    cp.n_batch = n_prompt;
    cp.n_threads = threads;
    InferenceContext ctx(model, cp);
    const SpeedResult sr = measure_speed(ctx, n_prompt, n_decode, runs);
    return {name, c.n_params / 1e6, sr.weight_bytes_per_token / 1048576.0, sr.prompt_tokens_per_s, sr.decode_tokens_per_s,
            sr.decode_weight_gbs(), rss_mib()};
}

int main(int argc, char** argv) {
    int threads = (int)std::max(1u, std::thread::hardware_concurrency()), runs = 5;
    std::string shared = "../shared", json_path;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
        else if (a == "--runs" && i + 1 < argc) runs = std::atoi(argv[++i]);
        else if (a == "--shared" && i + 1 < argc) shared = argv[++i];
        else if (a == "--json" && i + 1 < argc) json_path = argv[++i];
        else { std::fprintf(stderr, "usage: bench-engine-cpu [--threads T] [--runs R] [--shared DIR] [--json FILE]\n"); return 2; }
    }
    std::vector<Row> rows;
    rows.push_back(bench_model("stories260K F32", shared + "/models/stories260K.gguf", threads, runs));
    rows.push_back(bench_model("demo client 12.6M Q8_0", shared + "/models/tandem-demo-client-q8_0.gguf", threads, runs));
    // ~100M parameters: 12 layers, dim 768, ffn 2048, 12 heads / 4 KV heads, 32k vocab, tied
    const std::pair<const char*, GgmlType> types[] = {
        {"F16", GgmlType::F16}, {"Q8_0", GgmlType::Q8_0}, {"Q4_0", GgmlType::Q4_0}, {"Q4_K", GgmlType::Q4_K}};
    for (const auto& [tn, t] : types) {
        const SyntheticModelSpec s = bench_100m_spec(t, true);
        const std::string path = "/tmp/tandem-bench-100m-" + std::string(tn) + ".gguf";
        write_synthetic_model(s, path);
        rows.push_back(bench_model(std::string("synthetic 100M ") + tn, path, threads, runs));
        std::remove(path.c_str());
    }
    // bandwidth last, so its 1 GiB buffer is not in any model's resident memory
    const double bw = measure_read_gbs(threads);
    std::printf("machine read bandwidth (%d threads, 1 GiB, best of 5): %.2f GB/s; CPU kernels: %s\n", threads, bw,
                cpu::kernel_path_name());
    std::printf("\n| model | params (M) | weights read/token (MiB) | prompt tok/s (512) | decode tok/s (128) | decode GB/s | of bandwidth | RSS while running (MiB) |\n");
    std::printf("|---|---|---|---|---|---|---|---|\n");
    for (const Row& r : rows)
        std::printf("| %s | %.1f | %.1f | %.1f | %.1f | %.2f | %.0f%% | %.0f |\n", r.name.c_str(), r.params_m, r.weight_mib,
                    r.pp_tps, r.tg_tps, r.gbs, 100 * r.gbs / bw, r.rss_mib);
    if (!json_path.empty()) {
        std::ofstream j(json_path);
        j << "{\"bandwidth_gbs\": " << bw << ", \"threads\": " << threads << ", \"rows\": [";
        for (size_t i = 0; i < rows.size(); i++)
            j << (i ? "," : "") << "{\"model\": \"" << rows[i].name << "\", \"prompt_tps\": " << rows[i].pp_tps
              << ", \"decode_tps\": " << rows[i].tg_tps << ", \"decode_gbs\": " << rows[i].gbs << "}";
        j << "]}\n";
    }
    return 0;
}
