// bench-cpu-attention: the CPU prefill attention kernel (cpu_attention::attend_causal) alone,
// one thread timed by its own CPU time, against the fp32 fma peak measured in the same run
// (tandem/cpu_peak.h).
//
//   bench-cpu-attention [--hd N] [--group N] [--tokens N] [--pos0 N] [--isa avx2|avx512] [--reps N]
//
// One call: --tokens query tokens (default 100) x --group query heads sharing a KV head (5),
// head size --hd (64), after --pos0 cached keys (924: 1,024 keys at the last token), F16 keys
// and values; random inputs. FLOP = 4 hd per (row, visible key): Q.K and P.V. Best of --reps.
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "tandem/cpu_attention.h"
#include "tandem/cpu_matmul.h"
#include "tandem/cpu_peak.h"
#include "tandem/quant_types.h"
#include "tandem/thread_pool.h"

using namespace tandem;

static double cpu_s() {
    timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char** argv) {
    int hd = 64, group = 5, n_q = 100, reps = 30;
    int64_t pos0 = 924;
    std::string isa;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (i + 1 >= argc) { std::fprintf(stderr, "%s needs a value\n", a.c_str()); return 2; }
        const char* v = argv[++i];
        if (a == "--hd") hd = std::atoi(v);
        else if (a == "--group") group = std::atoi(v);
        else if (a == "--tokens") n_q = std::atoi(v);
        else if (a == "--pos0") pos0 = std::atoll(v);
        else if (a == "--reps") reps = std::atoi(v);
        else if (a == "--isa") isa = v;
        else {
            std::fprintf(stderr, "usage: %s [--hd N] [--group N] [--tokens N] [--pos0 N] [--isa avx2|avx512] [--reps N]\n", argv[0]);
            return 2;
        }
    }
    if (hd < 8 || hd > 256 || hd % 8 || group < 1 || n_q < 1 || pos0 < 0 || reps < 1) {
        std::fprintf(stderr, "--hd: a multiple of 8 up to 256; --group, --tokens, --reps >= 1; --pos0 >= 0\n");
        return 2;
    }
    if (isa == "avx2") cpu::cap_ops_isa(cpu::OpsIsa::Avx2);
    else if (!isa.empty() && isa != "avx512") { std::fprintf(stderr, "--isa: avx2 or avx512\n"); return 2; }
    const cpu::OpsIsa used = cpu::ops_isa();
    const char* used_name = used == cpu::OpsIsa::Avx512 ? "avx512" : used == cpu::OpsIsa::Avx2 ? "avx2" : "scalar";
    if (!isa.empty() && isa != used_name) std::printf("note: --isa %s asked, this CPU runs %s\n", isa.c_str(), used_name);

    const int64_t n_keys = pos0 + n_q, stride = (int64_t)group * hd;
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    std::vector<float> Q((size_t)(n_q * stride)), out(Q.size());
    std::vector<half_bits> K((size_t)(n_keys * hd)), V(K.size());
    for (auto& x : Q) x = nd(rng);
    for (auto& x : K) x = fp32_to_fp16(nd(rng));
    for (auto& x : V) x = fp32_to_fp16(nd(rng));
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const double t0 = cpu_s();
        cpu_attention::attend_causal(Q.data(), stride, n_q, group, pos0, K.data(), V.data(), hd, hd,
                                     1.0f / std::sqrt((float)hd), GgmlType::F16, out.data(), stride);
        best = std::min(best, cpu_s() - t0);
    }
    const double flops = 4.0 * hd * group * ((double)n_q * (double)pos0 + n_q * (n_q + 1) / 2.0);
    ThreadPool pool(1);
    cpu::force_kernel_path(used == cpu::OpsIsa::Avx512 ? "avx512-vnni" : "avx2");
    const cpu::ComputePeak peak = cpu::measure_compute_peak(pool, true);
    std::printf("attend_causal (%s): hd %d, group %d, %d tokens after %lld: %.3f ms, %.1f GFLOP/s = %.0f%% of the fp32 "
                "fma peak (%.1f GFLOP/s, same run); out[7] = %g\n",
                used_name, hd, group, n_q, (long long)pos0, best * 1e3, flops / best / 1e9,
                100 * flops / best / 1e9 / peak.fp32_gflops, peak.fp32_gflops, out[7]);
    return 0;
}
