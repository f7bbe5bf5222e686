// Decode attention benchmark: TurboAttention (INT4/INT2 cache + INT8 recent buffer, SAS) and
// our FP16 path, at KV length 1k/4k/16k/32k, batch 1/8/32, head dim 128 and 64, GQA 4:1
// (32 query heads, 8 KV heads). Each time is the median over CUDA-graph replays (10 launches
// per graph), after 25 ms of replays. Rooflines: bytes of KV read / measured device-to-device
// copy bandwidth.
// Every decode shape also times the Turbo kernel at other split counts in the same run, as
// A/B against the launcher's choice: t1 = one 64-token record per warp, t2 = two (an earlier
// rule), t4 = four; "combine" = the split combine alone at the launcher's split count
// (its share of the Turbo time).
// Usage: bench-attention OUT.json [D BATCH KVLEN | --prefill]   (bench/attention_sdpa.py adds
// PyTorch SDPA and the table; with D BATCH KVLEN only that decode shape runs, no prefill: for a
// profiler; with --prefill only the prefill shapes run)
#include "fp16_decode.cuh"
#include "hopper_prefill.cuh"
#include "turbo_prefill.cuh"
#include "turbo_decode.cuh"
#include "tandem/turbo_attention.h"
#include "cuda_common.cuh"
#include "decode_common.cuh"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using namespace tandem;

// Fills n bytes with a hash of the index (not zeros: zeros can time faster than real data).
static __global__ void fill_bytes(uint8_t* p, size_t n, uint32_t salt) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t x = (uint32_t)i * 2654435761u ^ salt;
        x ^= x >> 15; x *= 2246822519u; x ^= x >> 13;
        p[i] = (uint8_t)x;
    }
}
// Random halves in [-2, 2): sane FP16 values.
static __global__ void fill_half(__half* p, size_t n, uint32_t salt) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t x = (uint32_t)i * 2654435761u ^ salt;
        x ^= x >> 15; x *= 2246822519u; x ^= x >> 13;
        p[i] = __float2half((float)(x & 0xffff) / 16384.0f - 2.0f);
    }
}
// Random floats in [-1, 1) (queries).
static __global__ void fill_randf(float* p, size_t n, uint32_t salt) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t x = (uint32_t)i * 2654435761u ^ salt;
        x ^= x >> 15; x *= 2246822519u; x ^= x >> 13;
        p[i] = (float)(x & 0xffff) / 32768.0f - 1.0f;
    }
}
static __global__ void fill_float(float* p, size_t n, float v) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) p[i] = v;
}
// Sets the two float scales at the start of every record to sane values.
static __global__ void fix_scales(uint8_t* blocks, TurboCacheLayout L, int batch) {
    const int b = blockIdx.z, h = blockIdx.y;
    for (int j = threadIdx.x + blockIdx.x * blockDim.x; j < L.max_blocks; j += blockDim.x * gridDim.x) {
        float* r = (float*)(blocks + (size_t)b * L.seq_bytes + L.head_off[h] + (size_t)j * L.rec_bytes[h]);
        r[0] = 0.02f;
        r[1] = 0.02f;
    }
}

template <class F>
static float time_graph(F launch, cudaStream_t st) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    for (int i = 0; i < 3; ++i) launch(st);  // warm-up outside the graph
    TANDEM_CHECK_CUDA(cudaStreamSynchronize(st));
    TANDEM_CHECK_CUDA(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < 10; ++i) launch(st);
    TANDEM_CHECK_CUDA(cudaStreamEndCapture(st, &g));
    TANDEM_CHECK_CUDA(cudaGraphInstantiate(&ge, g, 0));
    cudaEvent_t a, b;
    TANDEM_CHECK_CUDA(cudaEventCreate(&a));
    TANDEM_CHECK_CUDA(cudaEventCreate(&b));
    // Replays for about kWarmMs first: the same 1k-token launch read 15% slower as the first
    // timing of its shape than when timed again later (H100, attention-h100.md, session 18).
    // attention_sdpa.py warms up the same way.
    constexpr float kWarmMs = 25.0f;
    for (float warm = 0.0f; warm < kWarmMs;) {
        float t;
        TANDEM_CHECK_CUDA(cudaEventRecord(a, st));
        TANDEM_CHECK_CUDA(cudaGraphLaunch(ge, st));
        TANDEM_CHECK_CUDA(cudaEventRecord(b, st));
        TANDEM_CHECK_CUDA(cudaEventSynchronize(b));
        TANDEM_CHECK_CUDA(cudaEventElapsedTime(&t, a, b));
        warm += t;
    }
    std::vector<float> ms;
    for (int r = 0; r < 15; ++r) {
        TANDEM_CHECK_CUDA(cudaEventRecord(a, st));
        TANDEM_CHECK_CUDA(cudaGraphLaunch(ge, st));
        TANDEM_CHECK_CUDA(cudaEventRecord(b, st));
        TANDEM_CHECK_CUDA(cudaEventSynchronize(b));
        float t;
        TANDEM_CHECK_CUDA(cudaEventElapsedTime(&t, a, b));
        ms.push_back(t / 10.0f);
    }
    TANDEM_CHECK_CUDA(cudaGraphExecDestroy(ge));
    TANDEM_CHECK_CUDA(cudaGraphDestroy(g));
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}

static double copy_bandwidth(cudaStream_t st) {
    const size_t n = (size_t)1 << 30;
    void *x, *y;
    TANDEM_CHECK_CUDA(cudaMalloc(&x, n));
    TANDEM_CHECK_CUDA(cudaMalloc(&y, n));
    fill_bytes<<<1024, 256, 0, st>>>((uint8_t*)x, n, 7);
    const float ms = time_graph([&](cudaStream_t s) { TANDEM_CHECK_CUDA(cudaMemcpyAsync(y, x, n, cudaMemcpyDeviceToDevice, s)); }, st);
    cudaFree(x);
    cudaFree(y);
    return 2.0 * n / (ms * 1e-3);  // bytes read + written per second
}

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: bench-attention OUT.json\n");
        return 2;
    }
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        std::printf("skipped: no CUDA device\n");
        return 0;
    }
    try {
        cudaDeviceProp prop;
        TANDEM_CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
        cudaStream_t st;
        TANDEM_CHECK_CUDA(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
        const double bw = copy_bandwidth(st);
        std::printf("device %s, copy bandwidth %.0f GB/s\n", prop.name, bw / 1e9);
        FILE* f = std::fopen(argv[1], "w");
        if (!f) throw std::runtime_error(std::string("cannot write ") + argv[1]);
        std::fprintf(f, "{\"device\": \"%s\", \"copy_gbps\": %.1f, \"rows\": [\n", prop.name, bw / 1e9);
        const int Hq = 32, Hkv = 8;
        bool first = true;
        const bool one = argc >= 5, prefill_only = argc == 3 && std::string(argv[2]) == "--prefill";
        const int only_D = one ? std::atoi(argv[2]) : 0, only_B = one ? std::atoi(argv[3]) : 0,
                  only_L = one ? std::atoi(argv[4]) : 0;
        for (int D : {128, 64})
            for (int B : {1, 8, 32})
                for (int L : {1024, 4096, 16384, 32768}) {
                    if (prefill_only || (one && (D != only_D || B != only_B || L != only_L))) continue;
                    TurboConfig c;
                    c.head_dim = D;
                    std::vector<double> pr(Hkv);
                    for (int h = 0; h < Hkv; ++h) pr[h] = h;
                    const int len = L - 5;  // a partly filled recent buffer, as in real decoding
                    TurboCacheLayout lay = turbo_make_layout(c, Hkv, L, turbo_choose_bits(pr, c.frac_2bit));
                    std::vector<int> lens(B, len);
                    uint8_t* blocks; int8_t *rk, *rv; float *rks, *rvs, *q, *out, *ws; int* dl; __half *k16, *v16;
                    const size_t rec_n = (size_t)B * Hkv * 64 * D, kv16 = (size_t)B * Hkv * L * D;
                    TANDEM_CHECK_CUDA(cudaMalloc(&blocks, lay.seq_bytes * B));
                    TANDEM_CHECK_CUDA(cudaMalloc(&rk, rec_n));
                    TANDEM_CHECK_CUDA(cudaMalloc(&rv, rec_n));
                    TANDEM_CHECK_CUDA(cudaMalloc(&rks, rec_n / D * 4));
                    TANDEM_CHECK_CUDA(cudaMalloc(&rvs, rec_n / D * 4));
                    TANDEM_CHECK_CUDA(cudaMalloc(&q, (size_t)B * Hq * D * 4));
                    TANDEM_CHECK_CUDA(cudaMalloc(&out, (size_t)B * Hq * D * 4));
                    TANDEM_CHECK_CUDA(cudaMalloc(&dl, B * 4));
                    TANDEM_CHECK_CUDA(cudaMalloc(&k16, kv16 * 2));
                    TANDEM_CHECK_CUDA(cudaMalloc(&v16, kv16 * 2));
                    fill_bytes<<<1024, 256, 0, st>>>(blocks, lay.seq_bytes * B, 1);
                    fix_scales<<<dim3(4, Hkv, B), 128, 0, st>>>(blocks, lay, B);
                    fill_bytes<<<1024, 256, 0, st>>>((uint8_t*)rk, rec_n, 2);
                    fill_bytes<<<1024, 256, 0, st>>>((uint8_t*)rv, rec_n, 3);
                    fill_float<<<64, 256, 0, st>>>(rks, rec_n / D, 0.02f);
                    fill_float<<<64, 256, 0, st>>>(rvs, rec_n / D, 0.02f);
                    fill_half<<<1024, 256, 0, st>>>(k16, kv16, 4);
                    fill_half<<<1024, 256, 0, st>>>(v16, kv16, 5);
                    fill_randf<<<64, 256, 0, st>>>(q, (size_t)B * Hq * D, 6);
                    TANDEM_CHECK_CUDA(cudaMemcpyAsync(dl, lens.data(), B * 4, cudaMemcpyHostToDevice, st));
                    TurboDecodeParams tp;
                    tp.q = q; tp.out = out; tp.blocks = blocks; tp.recent_k = rk; tp.recent_v = rv;
                    tp.recent_ks = rks; tp.recent_vs = rvs; tp.seq_len = dl; tp.batch = B; tp.n_q_heads = Hq;
                    tp.max_len = L; tp.layout = lay; tp.poly_degree = c.poly_degree; tp.threshold = c.threshold;
                    Fp16DecodeParams fp;
                    fp.q = q; fp.out = out; fp.k = (const uint16_t*)k16; fp.v = (const uint16_t*)v16; fp.seq_len = dl;
                    fp.batch = B; fp.n_q_heads = Hq; fp.n_kv_heads = Hkv; fp.head_dim = D; fp.max_len = L;
                    // A/B split counts of the Turbo kernel (same inputs, same run)
                    const int tiles = L / 64 + 1;
                    struct Variant { const char* name; int splits; };
                    const Variant variants[] = {{"t1", tiles}, {"t2", (tiles + 1) / 2}, {"t4", (tiles + 3) / 4}};
                    size_t ws_floats = std::max(turbo_decode_workspace_floats(tp), fp16_decode_workspace_floats(fp));
                    for (const Variant& v : variants) {
                        TurboDecodeParams vp = tp;
                        vp.n_splits = v.splits;
                        ws_floats = std::max(ws_floats, turbo_decode_workspace_floats(vp));
                    }
                    TANDEM_CHECK_CUDA(cudaMalloc(&ws, ws_floats * 4));
                    tp.workspace = ws;
                    fp.workspace = ws;
                    const int splits = (int)(turbo_decode_workspace_floats(tp) / ((size_t)B * Hq * (D + 2)));
                    const float t_turbo = time_graph([&](cudaStream_t s) { turbo_decode_cuda(tp, s); }, st);
                    std::string var_json;
                    auto report = [&](const char* name, float t) {  // to stdout and the row's "variants"
                        std::printf(" %s %.4f", name, t);
                        char buf[64];
                        std::snprintf(buf, sizeof buf, "%s\"%s\": %.5f", var_json.empty() ? "" : ", ", name, t);
                        var_json += buf;
                    };
                    std::printf("D=%3d B=%2d L=%5d  variants:", D, B, L);
                    for (const Variant& v : variants) {
                        TurboDecodeParams vp = tp;
                        vp.n_splits = v.splits;
                        report(v.name, time_graph([&](cudaStream_t s) { turbo_decode_cuda(vp, s); }, st));
                    }
                    report("combine", time_graph([&](cudaStream_t s) { launch_decode_combine(ws, out, B, Hq, splits, D, s); }, st));
                    std::printf("\n");
                    const float t_fp16 = time_graph([&](cudaStream_t s) { fp16_decode_cuda(fp, s); }, st);
                    // bytes each path must read: the KV cache of `len` tokens
                    double turbo_bytes = 0;
                    for (int h = 0; h < Hkv; ++h)
                        turbo_bytes += (double)(len / 64) * lay.rec_bytes[h] + (double)(len % 64) * 2 * (D + 4);
                    turbo_bytes *= B;
                    const double fp16_bytes = (double)B * Hkv * len * D * 2 * 2;
                    std::printf("D=%3d B=%2d L=%5d  turbo %8.4f ms (roof %.4f, splits %d)  fp16 %8.4f ms (roof %.4f)\n",
                                D, B, L, t_turbo, turbo_bytes / bw * 1e3, splits, t_fp16, fp16_bytes / bw * 1e3);
                    std::fprintf(f, "%s{\"D\": %d, \"batch\": %d, \"kv_len\": %d, \"n_q_heads\": %d, \"n_kv_heads\": %d, "
                                 "\"turbo_ms\": %.5f, \"fp16_ms\": %.5f, \"turbo_bytes\": %.0f, \"fp16_bytes\": %.0f, "
                                 "\"turbo_roof_ms\": %.5f, \"fp16_roof_ms\": %.5f, \"splits\": %d, "
                                 "\"variants\": {%s}}",
                                 first ? "" : ",\n", D, B, len, Hq, Hkv, t_turbo, t_fp16, turbo_bytes, fp16_bytes,
                                 turbo_bytes / bw * 1e3, fp16_bytes / bw * 1e3, splits, var_json.c_str());
                    first = false;
                    TANDEM_CHECK_CUDA(cudaStreamSynchronize(st));
                    for (void* ptr : {(void*)blocks, (void*)rk, (void*)rv, (void*)rks, (void*)rvs, (void*)q, (void*)out,
                                      (void*)dl, (void*)k16, (void*)v16, (void*)ws})
                        TANDEM_CHECK_CUDA(cudaFree(ptr));
                }
        // ---- prefill (causal, one chunk from position 0). Turbo = INT8 Q.K^T + FP16 P.V with its
        // quantize launches included, on the kernel Auto picks (the Hopper one on sm_90, exp2 on
        // the SFU) and on the portable one (which also transposes V; SAS); on sm_90 also the Hopper
        // kernel with SAS and with FP8 Q.K^T; FP16 = the Hopper FP16 kernel, one launch.
        std::fprintf(f, "\n], \"prefill\": [\n");
        first = true;
        const bool hopper = hopper_prefill_available();
        if (!hopper) std::printf("prefill: the device is not sm_90, so the Hopper kernels are not timed\n");
        for (int D : {128, 64})
            for (int L : {1024, 4096, 16384}) {
                if (one) break;
                const int B = 1;
                const size_t nq = (size_t)B * Hq * L * D, nk = (size_t)B * Hkv * L * D;
                __half *q, *k, *v;
                float* out;
                TANDEM_CHECK_CUDA(cudaMalloc(&q, nq * 2));
                TANDEM_CHECK_CUDA(cudaMalloc(&k, nk * 2));
                TANDEM_CHECK_CUDA(cudaMalloc(&v, nk * 2));
                TANDEM_CHECK_CUDA(cudaMalloc(&out, nq * 4));
                fill_half<<<1024, 256, 0, st>>>(q, nq, 11);
                fill_half<<<1024, 256, 0, st>>>(k, nk, 12);
                fill_half<<<1024, 256, 0, st>>>(v, nk, 13);
                TurboPrefillParams pp;
                pp.q = (const uint16_t*)q; pp.k = (const uint16_t*)k; pp.v = (const uint16_t*)v; pp.out = out;
                pp.batch = B; pp.n_q_heads = Hq; pp.n_kv_heads = Hkv; pp.head_dim = D; pp.len = L;
                void* ws;  // sized for the portable kernel (it also holds V transposed): both run in it
                pp.kernel = PrefillKernel::Portable;
                TANDEM_CHECK_CUDA(cudaMalloc(&ws, turbo_prefill_workspace_bytes(pp)));
                pp.kernel = PrefillKernel::Auto;
                pp.workspace = ws;
                const float t_auto = time_graph([&](cudaStream_t s) { turbo_prefill_cuda(pp, s); }, st);
                // A/B of the launch choices (TurboPrefillLaunch): Q quantized in the attention kernel,
                // or by the first launch (with K); the attention a programmatic launch, or in plain
                // stream order (serial: the launches before TurboPrefillLaunch)
                const float t_q_in_attention = time_graph([&](cudaStream_t s) { turbo_prefill_cuda(pp, s, TurboPrefillLaunch{}); }, st);
                TurboPrefillLaunch separate_q;
                separate_q.quantize_q_in_attention = false;
                const float t_separate_q = time_graph([&](cudaStream_t s) { turbo_prefill_cuda(pp, s, separate_q); }, st);
                TurboPrefillLaunch serial = separate_q;
                serial.programmatic = false;
                const float t_serial = time_graph([&](cudaStream_t s) { turbo_prefill_cuda(pp, s, serial); }, st);
                pp.kernel = PrefillKernel::Portable;
                const float t_portable = time_graph([&](cudaStream_t s) { turbo_prefill_cuda(pp, s); }, st);
                float t_fp16 = -1.0f, t_fp16_plain = -1.0f, t_fp8 = -1.0f, t_sas = -1.0f;
                float t_turbo_w2 = -1.0f, t_turbo_w3 = -1.0f, t_fp16_w2 = -1.0f, t_fp16_w3 = -1.0f;
                if (hopper) {
                    pp.kernel = PrefillKernel::Hopper;
                    pp.exp = PrefillExp::Sas;  // A/B: the exponentials by SAS on the FMA pipe
                    t_sas = time_graph([&](cudaStream_t s) { turbo_prefill_cuda(pp, s); }, st);
                    pp.exp = PrefillExp::Auto;
                    pp.qk = PrefillQk::Fp8;  // A/B: FP8 e4m3 Q.K^T
                    t_fp8 = time_graph([&](cudaStream_t s) { turbo_prefill_cuda(pp, s); }, st);
                    Fp16PrefillParams fp;
                    fp.q = pp.q, fp.k = pp.k, fp.v = pp.v, fp.out = out;
                    fp.batch = B, fp.n_q_heads = Hq, fp.n_kv_heads = Hkv, fp.head_dim = D, fp.len = L;
                    t_fp16 = time_graph([&](cudaStream_t s) { fp16_prefill_cuda(fp, s); }, st);
                    // A/B: the same launch with the kernel's plain loop (S, softmax, P.V in turn)
                    HopperPrefillArgs h;
                    h.q = q, h.k = k, h.v = v, h.out = out;
                    h.q_row_stride = h.kv_row_stride = h.out_row_stride = D;
                    h.q_head_stride = h.kv_head_stride = h.out_head_stride = (int64_t)L * D;
                    h.batch = B, h.n_q_heads = Hq, h.n_kv_heads = Hkv, h.head_dim = D, h.n_q = L, h.pipelined = false;
                    t_fp16_plain = time_graph([&](cudaStream_t s) { hopper_prefill_launch(h, s); }, st);
                    if (D == 64) {  // A/B: two or three consumer warpgroups, alternating, best of two each
                        h.pipelined = true;
                        TurboPrefillLaunch how;
                        how.quantize_q_in_attention = false;  // turbo_prefill_cuda's choice at D = 64
                        pp.qk = PrefillQk::Int8;
                        for (int round = 0; round < 2; ++round)
                            for (int w : {2, 3}) {
                                how.warpgroups = h.warpgroups = w;
                                const float tt = time_graph([&](cudaStream_t s) { turbo_prefill_cuda(pp, s, how); }, st);
                                const float tf16 = time_graph([&](cudaStream_t s) { hopper_prefill_launch(h, s); }, st);
                                float& bt = w == 2 ? t_turbo_w2 : t_turbo_w3;
                                float& bf = w == 2 ? t_fp16_w2 : t_fp16_w3;
                                bt = bt < 0 ? tt : std::min(bt, tt);
                                bf = bf < 0 ? tf16 : std::min(bf, tf16);
                            }
                    }
                }
                const double flops = 4.0 * B * Hq * (double)L * L * D / 2;  // causal
                auto tf = [&](float ms) { return ms > 0 ? flops / (ms * 1e-3) / 1e12 : 0.0; };
                auto ms_json = [](float ms) { return ms > 0 ? std::to_string(ms) : std::string("null"); };  // -1: not timed
                std::printf("prefill D=%3d B=%d L=%5d  turbo (%s) %8.4f ms %5.0f TFLOP/s  Q in the kernel %8.4f ms  Q quantized apart %8.4f ms  and serial launch %8.4f ms  portable %8.4f ms %5.0f  turbo SAS %8.4f ms %5.0f  "
                            "turbo FP8 %8.4f ms %5.0f  fp16 %8.4f ms %5.0f  fp16 plain loop %8.4f ms %5.0f\n",
                            D, B, L, hopper ? "hopper" : "portable", t_auto, tf(t_auto), t_q_in_attention, t_separate_q, t_serial, t_portable, tf(t_portable), t_sas, tf(t_sas),
                            t_fp8, tf(t_fp8), t_fp16, tf(t_fp16), t_fp16_plain, tf(t_fp16_plain));
                if (t_turbo_w2 > 0)
                    std::printf("prefill D=%3d B=%d L=%5d  consumer warpgroups 2 / 3: turbo %8.4f / %8.4f ms  fp16 %8.4f / %8.4f ms\n", D, B, L,
                                t_turbo_w2, t_turbo_w3, t_fp16_w2, t_fp16_w3);
                std::fprintf(f, "%s{\"D\": %d, \"batch\": %d, \"len\": %d, \"n_q_heads\": %d, \"n_kv_heads\": %d, "
                             "\"kernel\": \"%s\", \"turbo_ms\": %.5f, \"turbo_q_in_attention_ms\": %.5f, \"turbo_separate_q_ms\": %.5f, \"turbo_serial_ms\": %.5f, \"turbo_portable_ms\": %.5f, \"turbo_sas_ms\": %s, \"turbo_fp8_ms\": %s, \"fp16_ms\": %s, \"fp16_plain_ms\": %s, "
                             "\"turbo_w2_ms\": %s, \"turbo_w3_ms\": %s, \"fp16_w2_ms\": %s, \"fp16_w3_ms\": %s, \"flops\": %.0f}",
                             first ? "" : ",\n", D, B, L, Hq, Hkv, hopper ? "hopper" : "portable", t_auto, t_q_in_attention, t_separate_q, t_serial, t_portable,
                             ms_json(t_sas).c_str(), ms_json(t_fp8).c_str(), ms_json(t_fp16).c_str(), ms_json(t_fp16_plain).c_str(),
                             ms_json(t_turbo_w2).c_str(), ms_json(t_turbo_w3).c_str(), ms_json(t_fp16_w2).c_str(), ms_json(t_fp16_w3).c_str(), flops);
                first = false;
                TANDEM_CHECK_CUDA(cudaStreamSynchronize(st));
                for (void* ptr : {(void*)q, (void*)k, (void*)v, (void*)out, ws}) TANDEM_CHECK_CUDA(cudaFree(ptr));
            }
        std::fprintf(f, "\n]}\n");
        std::fclose(f);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench-attention: %s\n", e.what());
        return 1;
    }
    return 0;
}
