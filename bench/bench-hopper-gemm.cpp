// The prefill GEMMs of bench-gpu-decode's model shapes, alone: the Hopper dequantizing GEMM
// (kernels/cuda/hopper_gemm.cu; tiles of 256, 128 or 64 tokens, or its own choice) against what
// the engine runs without it (dequant_rows_bf16_cuda tiles + cublasGemmEx, BF16 in, FP32 out),
// and the mix with each matrix on the fastest of those (what the engine's HopperGemm::measured
// picks per shape), in the same run; bench/gemm_torch.py gives torch.mm's FP16 rate for the
// same mix.
//
// As gemm_torch.py: per shape, every layer's matrices (q/k/v as one, o, gate, up, down; distinct
// random weights per layer) as y = x W^T with x of TOKENS rows (default 512), captured in a CUDA
// graph; one replay of the mix graph is one prefill chunk's GEMM work. Median of 10 replays after
// 3 warm-ups, each between two events. Per matrix: a graph of that matrix in every layer. Wo and
// Wd accumulate into y (the residual), as in the engine. Weights: random bytes for the codes,
// random FP16 scales of magnitude 2^-10 .. 2^-6; activations normal.
//
// Usage: bench-hopper-gemm [--tokens N] [--json FILE] [--only llama|qwen]
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gemv.cuh"
#include "hopper_gemm.cuh"
#include "tandem/quant_types.h"

using namespace tandem;

namespace {

void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) {
        std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
        std::exit(1);
    }
}
void check_blas(cublasStatus_t s, const char* what) {
    if (s != CUBLAS_STATUS_SUCCESS) {
        std::fprintf(stderr, "%s: cuBLAS status %d\n", what, (int)s);
        std::exit(1);
    }
}

struct Shape {
    const char* name;
    int n_layer, d, n_head, n_head_kv, ff;
};

struct Mat {
    const char* kind;  // qkv, o, gate, up, down
    int64_t rows, cols;
    bool acc;
};

// A (rows, cols) matrix of type t with random codes and scales, on the device.
GpuMatrix random_matrix(GgmlType t, int64_t rows, int64_t cols, std::mt19937& rng, std::vector<void*>& owned) {
    const size_t bs = row_size(t, cols) * (size_t)rows;
    std::vector<uint8_t> blocks((bs + 3) / 4 * 4);
    for (size_t i = 0; i < blocks.size(); i += 4) {
        const uint32_t r = rng();
        std::memcpy(&blocks[i], &r, 4);
    }
    std::uniform_real_distribution<float> ud(-10.0f, -6.0f);
    const size_t block_bytes = t == GgmlType::Q4_0 ? sizeof(block_q4_0) : sizeof(block_q8_0);
    for (size_t i = 0; i < bs; i += block_bytes) {  // each block's leading FP16 scale
        const half_bits d = fp32_to_fp16(std::exp2(ud(rng)) * (rng() % 2 ? 1.0f : -1.0f));
        std::memcpy(&blocks[i], &d, 2);
    }
    const size_t bytes = gpu_matrix_bytes(t, rows, cols);
    std::vector<uint8_t> host(bytes);
    uint8_t* dev = nullptr;
    check(cudaMalloc(&dev, bytes), "cudaMalloc weights");
    owned.push_back(dev);
    GpuMatrix m = gpu_matrix_repack(t, rows, cols, blocks.data(), host.data(), dev);
    check(cudaMemcpy(dev, host.data(), bytes, cudaMemcpyHostToDevice), "copy weights");
    return m;
}

// Median ms of one replay of a graph capturing calls() on stream s.
double graph_ms(cudaStream_t s, const std::function<void()>& calls) {
    calls();  // first launches (function attributes) outside the capture
    check(cudaStreamSynchronize(s), "warm-up");
    cudaGraph_t g;
    cudaGraphExec_t ge;
    check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "begin capture");
    calls();
    check(cudaStreamEndCapture(s, &g), "end capture");
    check(cudaGraphInstantiate(&ge, g, 0), "instantiate");
    for (int i = 0; i < 3; i++) check(cudaGraphLaunch(ge, s), "replay");
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    std::vector<double> t;
    for (int i = 0; i < 10; i++) {
        cudaEventRecord(a, s);
        check(cudaGraphLaunch(ge, s), "replay");
        cudaEventRecord(b, s);
        check(cudaEventSynchronize(b), "sync");
        float ms = 0;
        cudaEventElapsedTime(&ms, a, b);
        t.push_back(ms);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    int64_t tokens = 512;
    std::string json_path, only;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "--tokens" && i + 1 < argc) tokens = std::atol(argv[++i]);
        else if (a == "--json" && i + 1 < argc) json_path = argv[++i];
        else if (a == "--only" && i + 1 < argc) only = argv[++i];
        else {
            std::fprintf(stderr, "usage: bench-hopper-gemm [--tokens N] [--json FILE] [--only llama|qwen]\n");
            return 2;
        }
    }
    if (!hopper_gemm_available()) {
        std::printf("skipped: not an sm_90 GPU\n");
        return 0;
    }
    cudaDeviceProp prop;
    check(cudaGetDeviceProperties(&prop, 0), "device");
    cudaStream_t s;
    check(cudaStreamCreate(&s), "stream");
    cublasHandle_t blas;
    check_blas(cublasCreate(&blas), "cublasCreate");
    check_blas(cublasSetStream(blas, s), "cublasSetStream");
    void* blas_ws = nullptr;
    const size_t ws_bytes = 32u << 20;
    check(cudaMalloc(&blas_ws, ws_bytes), "cuBLAS workspace");
    check_blas(cublasSetWorkspace(blas, blas_ws, ws_bytes), "cublasSetWorkspace");

    const Shape shapes[] = {{"Llama-3.2-1B-shaped", 16, 2048, 32, 8, 8192}, {"Qwen2.5-0.5B-shaped", 24, 896, 14, 2, 4864}};
    std::mt19937 rng(1234);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::string json = "{\"device\": \"" + std::string(prop.name) + "\", \"tokens\": " + std::to_string(tokens) + ", \"rows\": [";
    bool first = true;
    std::printf("device %s, %lld tokens\n", prop.name, (long long)tokens);
    std::printf("| model | weights | matrix | TFLOP | fused auto ms | fused 256 ms | fused 128 ms | fused 64 ms | cuBLAS tiles ms | "
                "TFLOP/s | best of each ms | TFLOP/s | best vs tiles |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const Shape& sh : shapes) {
        if (!only.empty() && std::string(sh.name).find(only == "llama" ? "Llama" : "Qwen") == std::string::npos) continue;
        const int64_t kvd = sh.d / sh.n_head * sh.n_head_kv;
        const std::vector<Mat> mats = {{"qkv", sh.d + 2 * kvd, sh.d, false},
                                       {"o", sh.d, sh.d, true},
                                       {"gate", sh.ff, sh.d, false},
                                       {"up", sh.ff, sh.d, false},
                                       {"down", sh.d, sh.ff, true}};
        // activations (BF16, the largest input) and outputs (FP32, the largest output)
        const int64_t max_cols = sh.ff, max_rows = sh.ff;
        std::vector<uint16_t> xh((size_t)(tokens * max_cols));
        for (auto& v : xh) v = fp32_to_bf16(nd(rng));
        uint16_t* x = nullptr;
        float* y = nullptr;
        __nv_bfloat16* tile = nullptr;
        check(cudaMalloc(&x, xh.size() * 2), "x");
        check(cudaMemcpy(x, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice), "copy x");
        check(cudaMalloc(&y, (size_t)(tokens * max_rows) * 4), "y");
        check(cudaMemset(y, 0, (size_t)(tokens * max_rows) * 4), "y zero");
        check(cudaMalloc(&tile, (size_t)(max_rows * max_cols) * 2), "BF16 tile");
        for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q8_0}) {
            std::vector<void*> owned;
            std::vector<std::vector<GpuMatrix>> w(mats.size());  // [matrix][layer]
            for (int l = 0; l < sh.n_layer; l++)
                for (size_t m = 0; m < mats.size(); m++) w[m].push_back(random_matrix(t, mats[m].rows, mats[m].cols, rng, owned));
            auto fused = [&](size_t m, int l, int tile_tokens) {
                HopperGemmArgs h;
                h.w = w[m][(size_t)l], h.x = (const __nv_bfloat16*)x, h.ldx = mats[m].cols, h.n = tokens, h.y = y;
                h.ldy = mats[m].rows, h.accumulate = mats[m].acc, h.tile_tokens = tile_tokens;
                hopper_gemm_launch(h, s);
            };
            auto tiles = [&](size_t m, int l) {  // GpuContext::Impl::gemm without the fused kernel
                const GpuMatrix& g = w[m][(size_t)l];
                dequant_rows_bf16_cuda(g, 0, g.rows, tile, s);
                const float one = 1.0f, beta = mats[m].acc ? 1.0f : 0.0f;
                check_blas(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)g.rows, (int)tokens, (int)g.cols, &one, tile,
                                        CUDA_R_16BF, (int)g.cols, x, CUDA_R_16BF, (int)g.cols, &beta, y, CUDA_R_32F,
                                        (int)g.rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                           "cublasGemmEx");
            };
            // best[m]: the fastest of tiles (0) and the fused tiles 64/128/256 for matrix m alone,
            // which the mix's "best of each" run then uses for every matrix (as the engine's
            // HopperGemm::measured does per shape)
            std::vector<int> best(mats.size(), 0);
            auto chosen = [&](size_t m, int l) { best[m] ? fused(m, l, best[m]) : tiles(m, l); };
            // mats.size() = the mix (every layer's matrices in the model's order), else one matrix
            for (size_t which = 0; which <= mats.size(); which++) {
                auto run = [&](const std::function<void(size_t, int)>& call) {
                    return graph_ms(s, [&] {
                        for (int l = 0; l < sh.n_layer; l++)
                            for (size_t m = 0; m < mats.size(); m++)
                                if (which == mats.size() || which == m) call(m, l);
                    });
                };
                double flop = 0;
                for (size_t m = 0; m < mats.size(); m++)
                    if (which == mats.size() || which == m) flop += 2.0 * tokens * mats[m].rows * mats[m].cols * sh.n_layer;
                const double ms_auto = run([&](size_t m, int l) { fused(m, l, 0); });
                const double ms_256 = run([&](size_t m, int l) { fused(m, l, 256); });
                const double ms_128 = run([&](size_t m, int l) { fused(m, l, 128); });
                const double ms_64 = run([&](size_t m, int l) { fused(m, l, 64); });
                const double ms_tiles = run(tiles);
                double ms_best = ms_tiles;
                if (which < mats.size()) {
                    for (const auto& [ms, tokens_a_tile] : {std::pair<double, int>{ms_64, 64}, {ms_128, 128}, {ms_256, 256}})
                        if (ms < ms_best) ms_best = ms, best[which] = tokens_a_tile;
                } else {
                    ms_best = run(chosen);
                }
                const char* kind = which == mats.size() ? "mix" : mats[which].kind;
                auto tflops = [&](double ms) { return flop / (ms * 1e-3) / 1e12; };
                std::printf("| %s | %s | %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.0f | %.3f | %.0f | %.2fx |\n", sh.name,
                            type_traits(t).name, kind, flop / 1e12, ms_auto, ms_256, ms_128, ms_64, ms_tiles, tflops(ms_tiles),
                            ms_best, tflops(ms_best), ms_tiles / ms_best);
                json += std::string(first ? "" : ", ") + "{\"model\": \"" + sh.name + "\", \"type\": \"" + type_traits(t).name +
                        "\", \"matrix\": \"" + kind + "\", \"tflop\": " + std::to_string(flop / 1e12) +
                        ", \"ms_fused_auto\": " + std::to_string(ms_auto) + ", \"ms_fused_256\": " + std::to_string(ms_256) +
                        ", \"ms_fused_128\": " + std::to_string(ms_128) + ", \"ms_fused_64\": " + std::to_string(ms_64) +
                        ", \"ms_cublas_tiles\": " + std::to_string(ms_tiles) + ", \"ms_best_of_each\": " + std::to_string(ms_best) + "}";
                first = false;
            }
            for (void* p : owned) cudaFree(p);
        }
        cudaFree(x);
        cudaFree(y);
        cudaFree(tile);
    }
    json += "]}";
    if (!json_path.empty()) std::ofstream(json_path) << json << "\n";
    cublasDestroy(blas);
    cudaFree(blas_ws);
    return 0;
}
