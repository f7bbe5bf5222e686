// bench-cpu-attention: the CPU prefill attention kernel (cpu_attention::attend_causal) alone,
// one thread timed by its own CPU time, against the fp32 fma peak measured in the same run
// (tandem/cpu_peak.h).
//
//   bench-cpu-attention [--hd N] [--group N] [--tokens N] [--pos0 N] [--isa avx2|avx512] [--reps N]
//                       [--decode | --turbo]
//
// --decode: one token (after --pos0 keys), its --group query heads, both ways the CPU context
// can take them: attend once per head, and attend_causal once for the group.
// One call: --tokens query tokens (default 100) x --group query heads sharing a KV head (5),
// head size --hd (64), after --pos0 cached keys (924: 1,024 keys at the last token), F16 keys
// and values; random inputs. FLOP = 4 hd per (row, visible key): Q.K and P.V. Best of --reps.
// --turbo: the same rows through turbo_attend on a Turbo cache (tandem/turbo_attention.h) of one
// KV head at 4 bits holding the same keys and values (the engine's call for one segment, so the
// rows must lie in one block of 64 tokens: pos0 % 64 + tokens <= 64); its expansion of the
// records and SAS are in the time, the FLOP count is the same.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tandem/cpu_attention.h"
#include "tandem/cpu_matmul.h"
#include "tandem/cpu_peak.h"
#include "tandem/quant_types.h"
#include "tandem/thread_pool.h"
#include "tandem/turbo_attention.h"

using namespace tandem;

int main(int argc, char** argv) {
    int hd = 64, group = 5, n_q = 100, reps = 30;
    int64_t pos0 = 924;
    std::string isa;
    bool decode = false, turbo = false;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "--decode" || a == "--turbo") {
            (a == "--decode" ? decode : turbo) = true;
            continue;
        }
        if (i + 1 >= argc) { std::fprintf(stderr, "%s needs a value\n", a.c_str()); return 2; }
        const char* v = argv[++i];
        if (a == "--hd") hd = std::atoi(v);
        else if (a == "--group") group = std::atoi(v);
        else if (a == "--tokens") n_q = std::atoi(v);
        else if (a == "--pos0") pos0 = std::atoll(v);
        else if (a == "--reps") reps = std::atoi(v);
        else if (a == "--isa") isa = v;
        else {
            std::fprintf(stderr, "usage: %s [--hd N] [--group N] [--tokens N] [--pos0 N] [--isa avx2|avx512] [--reps N] "
                                 "[--decode | --turbo]\n", argv[0]);
            return 2;
        }
    }
    if (hd < 8 || hd > 256 || hd % 8 || group < 1 || n_q < 1 || pos0 < 0 || reps < 1) {
        std::fprintf(stderr, "--hd: a multiple of 8 up to 256; --group, --tokens, --reps >= 1; --pos0 >= 0\n");
        return 2;
    }
    if (turbo && (decode || (hd != 64 && hd != 128) || pos0 % 64 + n_q > 64)) {
        std::fprintf(stderr, "--turbo: not with --decode; --hd 64 or 128; the rows in one block (pos0 %% 64 + tokens <= 64)\n");
        return 2;
    }
    if (isa == "avx2") cpu::cap_ops_isa(cpu::OpsIsa::Avx2);
    else if (!isa.empty() && isa != "avx512") { std::fprintf(stderr, "--isa: avx2 or avx512\n"); return 2; }
    const cpu::OpsIsa used = cpu::ops_isa();
    const char* used_name = used == cpu::OpsIsa::Avx512 ? "avx512" : used == cpu::OpsIsa::Avx2 ? "avx2" : "scalar";
    if (!isa.empty() && isa != used_name) std::printf("note: --isa %s asked, this CPU runs %s\n", isa.c_str(), used_name);

    if (decode) n_q = 1;
    const int64_t n_keys = pos0 + n_q, stride = (int64_t)group * hd;
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    std::vector<float> Q((size_t)(n_q * stride)), out(Q.size());
    std::vector<half_bits> K((size_t)(n_keys * hd)), V(K.size());
    for (auto& x : Q) x = nd(rng);
    for (auto& x : K) x = fp32_to_fp16(nd(rng));
    for (auto& x : V) x = fp32_to_fp16(nd(rng));
    const float scale = 1.0f / std::sqrt((float)hd);
    if (decode) {
        std::vector<float> out1(out.size());
        double per_head = 1e30, grouped = 1e30;
        for (int r = 0; r < reps; r++) {
            double t0 = cpu::thread_cpu_seconds();
            for (int g = 0; g < group; g++)
                cpu_attention::attend(Q.data() + g * hd, K.data(), V.data(), n_keys, hd, hd, scale, GgmlType::F16,
                                      out1.data() + g * hd);
            per_head = std::min(per_head, cpu::thread_cpu_seconds() - t0);
            t0 = cpu::thread_cpu_seconds();
            cpu_attention::attend_causal(Q.data(), stride, 1, group, pos0, K.data(), V.data(), hd, hd, scale,
                                         GgmlType::F16, out.data(), stride);
            grouped = std::min(grouped, cpu::thread_cpu_seconds() - t0);
        }
        std::printf("decode (%s): hd %d, group %d, %lld keys: attend per head %.1f us, attend_causal for the group "
                    "%.1f us (%.2fx); out[7] %g / %g\n",
                    used_name, hd, group, (long long)n_keys, per_head * 1e6, grouped * 1e6, per_head / grouped, out1[7],
                    out[7]);
        return 0;
    }
    double best = 1e30;
    std::unique_ptr<TurboKvCache> cache;
    if (turbo) {
        TurboConfig c;
        c.head_dim = hd;
        cache = std::make_unique<TurboKvCache>(c, 1, 1, (int)n_keys, std::vector<uint8_t>{4});
        std::vector<float> k((size_t)hd), v((size_t)hd);
        for (int64_t t = 0; t < n_keys; t++) {
            for (int d = 0; d < hd; d++) {
                k[(size_t)d] = fp16_to_fp32(K[(size_t)(t * hd + d)]);
                v[(size_t)d] = fp16_to_fp32(V[(size_t)(t * hd + d)]);
            }
            cache->append(0, k.data(), v.data());
        }
    }
    for (int r = 0; r < reps; r++) {
        const double t0 = cpu::thread_cpu_seconds();
        if (turbo) turbo_attend(*cache, 0, (int)pos0, n_q, Q.data(), group, out.data(), nullptr);
        else
            cpu_attention::attend_causal(Q.data(), stride, n_q, group, pos0, K.data(), V.data(), hd, hd, scale,
                                         GgmlType::F16, out.data(), stride);
        best = std::min(best, cpu::thread_cpu_seconds() - t0);
    }
    const double flops = 4.0 * hd * group * ((double)n_q * (double)pos0 + n_q * (n_q + 1) / 2.0);
    ThreadPool pool(1);
    cpu::force_kernel_path(used == cpu::OpsIsa::Avx512 ? "avx512-vnni" : "avx2");
    const cpu::ComputePeak peak = cpu::measure_compute_peak(pool, true);
    std::printf("%s (%s): hd %d, group %d, %d tokens after %lld: %.3f ms, %.1f GFLOP/s = %.0f%% of the fp32 "
                "fma peak (%.1f GFLOP/s, same run); out[7] = %g\n",
                turbo ? "turbo_attend" : "attend_causal", used_name, hd, group, n_q, (long long)pos0, best * 1e3,
                flops / best / 1e9,
                100 * flops / best / 1e9 / peak.fp32_gflops, peak.fp32_gflops, out[7]);
    return 0;
}
