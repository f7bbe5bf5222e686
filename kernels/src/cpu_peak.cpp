// Register-only loops that measure the int8 dot and fp32 fma peaks (tandem/cpu_peak.h).
#include "tandem/cpu_peak.h"

#include <immintrin.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "cpu_kernels.h"
#include "tandem/cpu_matmul.h"

namespace tandem::cpu {

double thread_cpu_seconds() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

using detail::amx_bf16_peak_loop;
using detail::amx_peak_loop;

namespace {

// 12 accumulators, each updated once per iteration by OP(acc); the empty asm statements keep
// the compiler from folding or hoisting the chains (and, through a and b, any part of OP that
// does not read the accumulator). Returns the instructions executed.
#define PEAK_LOOP(VEC, ZERO, OP)                                                                   \
    VEC c0 = ZERO, c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0, \
        c10 = c0, c11 = c0;                                                                        \
    for (long i = 0; i < iters; i++) {                                                             \
        c0 = OP(c0); c1 = OP(c1); c2 = OP(c2); c3 = OP(c3); c4 = OP(c4); c5 = OP(c5);               \
        c6 = OP(c6); c7 = OP(c7); c8 = OP(c8); c9 = OP(c9); c10 = OP(c10); c11 = OP(c11);           \
        __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5), "+v"(c6), \
                         "+v"(c7), "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11));                      \
        __asm__ volatile("" : "+v"(a), "+v"(b));                                                   \
    }                                                                                              \
    return 12.0 * (double)iters;

#define TGT512 __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define TGT256 __attribute__((target("avx2,fma,avx512f,avx512vl,avx512vnni")))

TGT512 double loop_vpdpbusd_zmm(long iters) {
    __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(5);
#define OP(c) _mm512_dpbusd_epi32(c, a, b)
    PEAK_LOOP(__m512i, _mm512_setzero_si512(), OP)
#undef OP
}
TGT512 double loop_fma_zmm(long iters) {
    __m512 a = _mm512_set1_ps(1.0f), b = _mm512_set1_ps(1e-9f);
#define OP(c) _mm512_fmadd_ps(c, a, b)
    PEAK_LOOP(__m512, _mm512_setzero_ps(), OP)
#undef OP
}
// The EVEX form of the 256-bit vpdpbusd (on AVX-VNNI CPUs without AVX-512, the VEX form runs at
// the same rate; this loop is only timed where AVX512-VL + VNNI exist).
TGT256 double loop_vpdpbusd_ymm(long iters) {
    __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(5);
#define OP(c) _mm256_dpbusd_epi32(c, a, b)
    PEAK_LOOP(__m256i, _mm256_setzero_si256(), OP)
#undef OP
}
__attribute__((target("avxvnni"))) double loop_vpdpbusd_ymm_vex(long iters) {
    __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(5);
#define OP(c) _mm256_dpbusd_avx_epi32(c, a, b)
    PEAK_LOOP(__m256i, _mm256_setzero_si256(), OP)
#undef OP
}
// The avx2 kernels' int8 dot into int32: vpmaddubsw + vpmaddwd (with ones) + vpaddd, 32
// multiply-adds. The accumulator's bytes are its u8 operand, so that no part of a chain is
// common to the others.
__attribute__((target("avx2"))) double loop_maddubs_dot_ymm(long iters) {
    __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(5);
    const __m256i ones = _mm256_set1_epi16(1);
#define OP(c) _mm256_add_epi32(c, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_or_si256(c, a), b), ones))
    PEAK_LOOP(__m256i, _mm256_setzero_si256(), OP)
#undef OP
}
__attribute__((target("avx2,fma"))) double loop_fma_ymm(long iters) {
    __m256 a = _mm256_set1_ps(1.0f), b = _mm256_set1_ps(1e-9f);
#define OP(c) _mm256_fmadd_ps(c, a, b)
    PEAK_LOOP(__m256, _mm256_setzero_ps(), OP)
#undef OP
}

// ops/s of `loop` (ops_per_instr each) run on every thread at once, best of 3: instructions
// over the wall time, or (cpu_time) the sum of each thread's instructions over its CPU time.
double timed(ThreadPool& pool, double (*loop)(long), double ops_per_instr, bool cpu_time) {
    const long iters = 2000000;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        std::vector<double> instrs((size_t)pool.size(), 0), rate((size_t)pool.size(), 0);
        const auto t0 = std::chrono::steady_clock::now();
        pool.parallel_for(pool.size(), [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; i++) {
                const double c0 = thread_cpu_seconds();
                instrs[(size_t)i] = loop(iters);
                rate[(size_t)i] = instrs[(size_t)i] / (thread_cpu_seconds() - c0);
            }
        }, 1);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        double total = 0, total_rate = 0;
        for (size_t i = 0; i < instrs.size(); i++) total += instrs[i], total_rate += rate[i];
        best = std::max(best, (cpu_time ? total_rate : total / s) * ops_per_instr / 1e9);
    }
    return best;
}

}  // namespace

ComputePeak measure_compute_peak(ThreadPool& pool, bool cpu_time) {
    auto rate = [&](double (*loop)(long), double ops_per_instr) { return timed(pool, loop, ops_per_instr, cpu_time); };
    ComputePeak p;
    const std::string path = kernel_path_name();
    if (path == "amx" || path == "amx-emulated") {
        // tdpbsud: 16 x 16 int32 outputs x 64 bytes each = 16384 multiply-adds
        p.int8_instr = path == "amx" ? "tdpbsud" : "vpdpbusd zmm (amx-emulated: no tiles here)";
        p.int8_gops = path == "amx" ? rate(amx_peak_loop, 2 * 16384.0) : rate(loop_vpdpbusd_zmm, 128);
        p.fp32_gflops = rate(loop_fma_zmm, 32);
    } else if (path == "amx-bf16" || path == "amx-bf16-emulated") {
        p.int8_instr = "vpdpbusd zmm";
        p.int8_gops = rate(loop_vpdpbusd_zmm, 128);
        p.fp32_gflops = rate(loop_fma_zmm, 32);
        if (path == "amx-bf16") {
            // tdpbf16ps: 16 x 16 fp32 outputs x 32 BF16 products each = 8192 multiply-adds
            p.bf16_instr = "tdpbf16ps";
            p.bf16_gflops = rate(amx_bf16_peak_loop, 2 * 8192.0);
        }
    } else if (path == "avx512-vnni") {
        p.int8_instr = "vpdpbusd zmm";
        p.int8_gops = rate(loop_vpdpbusd_zmm, 128);
        p.fp32_gflops = rate(loop_fma_zmm, 32);
    } else if (path == "avx-vnni") {
        p.int8_instr = avx_vnni_is_vex() ? "vpdpbusd ymm (VEX)" : "vpdpbusd ymm (EVEX)";
        p.int8_gops = rate(avx_vnni_is_vex() ? loop_vpdpbusd_ymm_vex : loop_vpdpbusd_ymm, 64);
        p.fp32_gflops = rate(loop_fma_ymm, 16);
    } else if (path == "avx2") {
        p.int8_instr = "vpmaddubsw+vpmaddwd+vpaddd ymm";
        p.int8_gops = rate(loop_maddubs_dot_ymm, 64);
        p.fp32_gflops = rate(loop_fma_ymm, 16);
    } else {
        p.int8_instr = "none (scalar path)";
    }
    return p;
}

}  // namespace tandem::cpu
