// Compute peaks of this CPU, measured by register-only loops of the instructions the matmul
// kernels use: the roofline the CPU matmul benchmarks report their GEMM speed against.
//
// Each loop keeps 12 independent accumulators (no loads, no stores) on every thread of the
// pool at once; the result is operations per second summed over the threads (one
// multiply-add = 2 operations), best of 3 runs of about 0.1 s. With cpu_time, each thread's
// rate is taken over its own CPU time (CLOCK_THREAD_CPUTIME_ID) instead of the wall clock: the
// core's rate even while other processes share it.
#pragma once
#include "tandem/thread_pool.h"

namespace tandem::cpu {

struct ComputePeak {
    const char* int8_instr = "";  // the int8 dot instruction timed: "vpdpbusd zmm", "tdpbsud", ...
    double int8_gops = 0;         // u8 x i8 multiply-adds x 2 per second / 1e9
    double fp32_gflops = 0;       // fp32 fma x 2 per second / 1e9 ("vfmadd zmm" or "ymm")
    const char* bf16_instr = "";  // amx-bf16: "tdpbf16ps"; "" where the path has no BF16 tiles
    double bf16_gflops = 0;       // BF16 multiply-adds x 2 per second / 1e9
};

// The peak of the kernel path in use (kernel_path_name()): amx -> tdpbsud, amx-bf16 -> tdpbf16ps
// (bf16_gflops) and vpdpbusd zmm (int8_gops: the avx512-vnni peak it is set against), avx512-vnni ->
// vpdpbusd zmm, avx-vnni -> vpdpbusd ymm, avx2 -> vpmaddubsw + vpmaddwd + vpaddd ymm (the
// avx2 kernels' 32 multiply-adds into int32; their 4-bit types sum a subblock in int16 with
// vpmaddubsw + vpaddw instead, which runs faster than this), scalar -> 0. Takes about 1 s.
ComputePeak measure_compute_peak(ThreadPool& pool, bool cpu_time = false);

// Seconds of CPU time the calling thread has used (CLOCK_THREAD_CPUTIME_ID): the clock of every
// "--cpu-time" measurement.
double thread_cpu_seconds();

}  // namespace tandem::cpu
