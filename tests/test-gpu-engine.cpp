// GpuContext (the CUDA engine backend) against the CPU InferenceContext, its reference.
//
// Each case evaluates a random prompt with all_logits on both backends (prefill: cuBLAS SGEMM
// over dequantized tiles, split in n_batch chunks), then decodes tokens one at a time (GEMV
// kernels, CUDA graph replay from the second step), then truncates and evaluates again; every
// row of logits must match within the weight type's tolerance (relative L2 per row):
//
//   type          tolerance  why
//   F32, F16      2e-3       same math; F32 sums in another order (F32 stays F32 on the GPU)
//   quantized     5e-2       the CPU quantizes activations to 8 bits per block (cpu_matmul.h:
//                            each activation off by up to amax/254 of its block), the GPU
//                            multiplies by f32 activations; a wrong scale or nibble is O(1)
//
// The greedy story from "Once upon a time" on stories260K must be token-identical.
// The GEMV and row-dequantization kernels alone are checked per type against float64 sums
// over the CPU's dequantized weights (relative L2 <= 1e-4: f32 accumulation only).
// Without a CUDA device every case prints "skipped: no CUDA device" and is skipped.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "gemv.cuh"
#include "tandem/context.h"
#include "tandem/engine.h"
#include "tandem/gpu_context.h"
#include "tandem/synthetic_model.h"
#include "test_util.h"

using namespace tandem;

namespace {

constexpr double kTolFloat = 2e-3;
constexpr double kTolQuant = 5e-2;

bool no_gpu(const char* name) {
    static const GpuDeviceInfo info = gpu_device_info();
    if (!info.present) std::printf("%s: skipped: no CUDA device\n", name);
    return !info.present;
}

double rel_l2(const float* a, const float* ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!std::isfinite(a[i])) return INFINITY;
        num += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    return std::sqrt(num / (den > 0 ? den : 1));
}

int32_t host_argmax(const float* l, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (l[i] > l[best]) best = i;
    return (int32_t)best;
}

// Compares CPU and GPU on prompt + decode + truncate; returns the worst row error.
double compare(const std::string& path, const GpuParams& gp = {}, int n_prompt = 21, int n_decode = 6) {
    auto m = Model::load(path);
    const int64_t nv = m->config().n_vocab;
    ContextParams cp;
    cp.n_ctx = 96;
    cp.n_batch = 16;  // the 21-token prompt runs as 16 + 5
    cp.n_threads = 2;
    InferenceContext cpu(m, cp);
    GpuContext gpu(m, cp, gp);
    const uint32_t seed = std::random_device{}();
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> tok(0, (int32_t)nv - 1);
    std::vector<int32_t> prompt((size_t)n_prompt);
    for (auto& t : prompt) t = tok(rng);

    double worst = 0;
    auto check_rows = [&](int64_t rows, const char* what) {
        for (int64_t r = 0; r < rows; r++) {
            const double e = rel_l2(gpu.logits() + r * nv, cpu.logits() + r * nv, nv);
            worst = std::max(worst, e);
            if (!(e < 1.0)) FAIL(what << " row " << r << " rel error " << e << " (seed " << seed << ")");
        }
        CHECK(gpu.argmax() == host_argmax(gpu.logits() + (rows - 1) * nv, nv));
    };
    cpu.eval(prompt.data(), n_prompt, true);
    gpu.eval(prompt.data(), n_prompt, true);
    check_rows(n_prompt, "prefill");
    for (int i = 0; i < n_decode; i++) {
        const int32_t next = host_argmax(cpu.logits(), nv);
        cpu.eval(&next, 1);
        gpu.eval(&next, 1);
        check_rows(1, "decode");
    }
    CHECK(gpu.n_past() == n_prompt + n_decode);
    cpu.truncate(n_prompt / 2);
    gpu.truncate(n_prompt / 2);
    cpu.eval(prompt.data(), 3, false);
    gpu.eval(prompt.data(), 3, false);
    check_rows(1, "after truncate");
    for (int i = 0; i < 3; i++) {
        const int32_t next = tok(rng);
        cpu.eval(&next, 1);
        gpu.eval(&next, 1);
        check_rows(1, "decode after truncate");
    }
    std::printf("%-48s worst row rel error %.3g (seed %u)\n", path.substr(path.rfind('/') + 1).c_str(), worst, seed);
    return worst;
}

std::string synth(const tandem_test::TempDir& dir, SyntheticModelSpec s, const std::string& name) {
    const std::string path = dir.file(name + ".gguf");
    write_synthetic_model(s, path);
    return path;
}

SyntheticModelSpec spec(GgmlType t, const char* arch = "llama") {
    SyntheticModelSpec s;
    s.architecture = arch;
    s.n_layer = 2, s.n_embd = 256, s.n_head = 4, s.n_head_kv = 2, s.n_ff = 512, s.n_vocab = 384, s.n_ctx = 256;
    s.weight_type = t;
    s.embd_type = t;
    return s;
}

}  // namespace

TEST_CASE("gpu engine: stories260K (F32 weights, kept F32 on the GPU) matches the CPU" * doctest::skip(no_gpu("stories260K logits"))) {
    CHECK(compare(tandem_test::shared_path("models/stories260K.gguf")) < kTolFloat);
}

TEST_CASE("gpu engine: llama-2-tiny-random (F16) matches the CPU" * doctest::skip(no_gpu("llama-2-tiny-random logits"))) {
    CHECK(compare(tandem_test::shared_path("models/llama-2-tiny-random.gguf")) < kTolFloat);
}

TEST_CASE("gpu engine: synthetic quantized models match the CPU" * doctest::skip(no_gpu("synthetic models"))) {
    tandem_test::TempDir dir;
    SUBCASE("Q8_0, head_dim 64 (FP16 split-KV decode)") { CHECK(compare(synth(dir, spec(GgmlType::Q8_0), "q8_0")) < kTolQuant); }
    SUBCASE("Q8_0, plain attention, no graph") {
        GpuParams gp;
        gp.use_graph = false, gp.fp16_decode_kernel = false;
        CHECK(compare(synth(dir, spec(GgmlType::Q8_0), "q8_0-plain"), gp) < kTolQuant);
    }
    SUBCASE("Q4_0, tied embeddings, Llama 3 rope factors, head_dim 32") {
        SyntheticModelSpec s = spec(GgmlType::Q4_0);
        s.n_head = 8, s.n_head_kv = 2, s.tied_embeddings = true, s.llama3_rope = true;
        CHECK(compare(synth(dir, s, "q4_0")) < kTolQuant);
    }
    SUBCASE("Q4_K") { CHECK(compare(synth(dir, spec(GgmlType::Q4_K), "q4_k")) < kTolQuant); }
    SUBCASE("Q6_K, F16 embeddings") {
        SyntheticModelSpec s = spec(GgmlType::Q6_K);
        s.embd_type = GgmlType::F16, s.n_ff = 768;
        CHECK(compare(synth(dir, s, "q6_k")) < kTolQuant);
    }
    SUBCASE("qwen2 Q8_0 (NEOX RoPE, QKV bias, GQA 4:1)") {
        SyntheticModelSpec s = spec(GgmlType::Q8_0, "qwen2");
        s.n_head_kv = 1;
        CHECK(compare(synth(dir, s, "qwen2-q8_0")) < kTolQuant);
    }
    SUBCASE("qwen2 Q4_K, head_dim 128") {
        SyntheticModelSpec s = spec(GgmlType::Q4_K, "qwen2");
        s.n_head = 2, s.n_head_kv = 1, s.tied_embeddings = true;
        CHECK(compare(synth(dir, s, "qwen2-q4_k")) < kTolQuant);
    }
    SUBCASE("Q5_0 weights are dequantized to F16 at load") {
        SyntheticModelSpec s = spec(GgmlType::Q5_0);
        s.embd_type = GgmlType::F32;
        CHECK(compare(synth(dir, s, "q5_0")) < kTolQuant);
    }
}

TEST_CASE("gpu engine: greedy story on stories260K is token-identical to the CPU" * doctest::skip(no_gpu("greedy stories260K"))) {
    const std::string path = tandem_test::shared_path("models/stories260K.gguf");
    GenerateParams g;
    g.max_tokens = 200;
    g.sampling.temperature = 0;
    auto cpu = Engine::load(path);
    EngineParams ep;
    ep.make_context = [](std::shared_ptr<const Model> m, const ContextParams& cp) -> std::unique_ptr<ComputeContext> {
        return std::make_unique<GpuContext>(std::move(m), cp);
    };
    auto gpu = Engine::load(path, ep);
    REQUIRE(std::string(gpu->context().backend_name()) == "cuda");
    const Generation a = cpu->generate("Once upon a time", g);
    const Generation b = gpu->generate("Once upon a time", g);
    std::printf("greedy: %zu tokens, GPU text: %s\n", b.tokens.size(), b.text.c_str());
    REQUIRE(a.tokens.size() > 20);
    CHECK(a.tokens == b.tokens);
    CHECK(a.text == b.text);
    // the same engine again with the sampler (full logits copied back): same tokens
    g.sampling.logit_bias = {{0, 0.0f}};
    const Generation c = gpu->generate("Once upon a time", g);
    CHECK(c.tokens == a.tokens);
}

TEST_CASE("gpu engine: bad input and too little memory give clear errors" * doctest::skip(no_gpu("errors"))) {
    tandem_test::TempDir dir;
    SyntheticModelSpec s = spec(GgmlType::Q8_0);
    s.n_ctx = 1 << 30;  // a KV cache of 2 layers x 2^30 tokens x 128 x 2 x 2 bytes = 1 TiB
    const std::string path = synth(dir, s, "huge-ctx");
    auto m = Model::load(path);
    ContextParams cp;
    cp.n_ctx = 1 << 30;
    try {
        GpuContext g(m, cp);
        FAIL("a 1 TiB KV cache was accepted");
    } catch (const GpuError& e) {
        const std::string msg = e.what();
        std::printf("expected error: %s\n", msg.c_str());
        CHECK(msg.find("needs") != std::string::npos);
        CHECK(msg.find("MiB free") != std::string::npos);
    }
    cp.n_ctx = 8;
    GpuContext g(m, cp);
    const int32_t bad = 100000;
    CHECK_THROWS_AS(g.eval(&bad, 1), std::invalid_argument);
    std::vector<int32_t> nine(9, 1);
    CHECK_THROWS_AS(g.eval(nine.data(), 9), ContextFull);
    CHECK(g.n_past() == 0);
}

namespace {

template <class T>
T* to_device(const std::vector<T>& v) {
    T* d = nullptr;
    REQUIRE(cudaMalloc(&d, v.size() * sizeof(T) + 256) == cudaSuccess);
    REQUIRE(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
    return d;
}

std::vector<float> from_device(const float* d, size_t n) {
    std::vector<float> v(n);
    REQUIRE(cudaMemcpy(v.data(), d, n * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
    return v;
}

// A random (rows, cols) matrix of type t: its device copy and its dequantized floats.
struct TestMatrix {
    GpuMatrix m;
    std::vector<float> deq;  // (rows, cols) what the CPU reads from the blocks
    uint8_t* dev = nullptr;
};
TestMatrix make_matrix(GgmlType t, int64_t rows, int64_t cols, std::mt19937& rng) {
    const TypeTraits& tt = type_traits(t);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> f((size_t)(rows * cols));
    for (auto& x : f) x = nd(rng);
    std::vector<uint8_t> blocks(row_size(t, cols) * (size_t)rows);
    tt.from_float_ref(f.data(), blocks.data(), rows * cols);
    TestMatrix tm;
    tm.deq.resize(f.size());
    tt.to_float(blocks.data(), tm.deq.data(), rows * cols);
    const size_t bytes = gpu_matrix_bytes(t, rows, cols);
    std::vector<uint8_t> host(bytes);
    REQUIRE(cudaMalloc(&tm.dev, bytes) == cudaSuccess);
    tm.m = gpu_matrix_repack(t, rows, cols, blocks.data(), host.data(), tm.dev);
    REQUIRE(cudaMemcpy(tm.dev, host.data(), bytes, cudaMemcpyHostToDevice) == cudaSuccess);
    return tm;
}

double rel_l2d(const std::vector<float>& a, const std::vector<double>& r) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); i++) {
        if (!std::isfinite(a[i])) return INFINITY;
        num += (a[i] - r[i]) * (a[i] - r[i]);
        den += r[i] * r[i];
    }
    return std::sqrt(num / den);
}

}  // namespace

TEST_CASE("gpu engine: GEMV (norm, bias, residual, SwiGLU) and dequantization per type vs float64" *
          doctest::skip(no_gpu("gemv kernels"))) {
    const uint32_t seed = std::random_device{}();
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const float eps = 1e-5f;
    for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K}) {
        const bool plain = t == GgmlType::F32 || t == GgmlType::F16;
        for (int64_t cols : {plain ? (int64_t)172 : (int64_t)512, (int64_t)4096}) {
            const int64_t rows = 37;  // not a multiple of the 8 rows a block takes
            CAPTURE(type_traits(t).name);
            CAPTURE(cols);
            TestMatrix a = make_matrix(t, rows, cols, rng), b = make_matrix(t, rows, cols, rng);
            std::vector<float> x((size_t)cols), nw((size_t)cols), bias((size_t)rows), y0((size_t)rows);
            for (auto& v : x) v = nd(rng);
            for (auto& v : nw) v = 1.0f + 0.1f * nd(rng);
            for (auto& v : bias) v = nd(rng);
            for (auto& v : y0) v = nd(rng);
            double ss = 0;
            for (float v : x) ss += (double)v * v;
            const double sc = 1.0 / std::sqrt(ss / (double)cols + eps);
            std::vector<double> ref_acc((size_t)rows), ref_glu((size_t)rows);
            for (int64_t r = 0; r < rows; r++) {
                double da = 0, db = 0;
                for (int64_t c = 0; c < cols; c++) {
                    const double xn = x[(size_t)c] * sc * nw[(size_t)c];
                    da += a.deq[(size_t)(r * cols + c)] * xn;
                    db += b.deq[(size_t)(r * cols + c)] * xn;
                }
                ref_acc[(size_t)r] = y0[(size_t)r] + da + bias[(size_t)r];
                ref_glu[(size_t)r] = da / (1.0 + std::exp(-da)) * db;
            }
            float* dx = to_device(x);
            float* dnw = to_device(nw);
            float* dbias = to_device(bias);
            float* dy = to_device(y0);
            GemvParams p;
            p.w = a.m, p.x = dx, p.norm = dnw, p.eps = eps, p.bias = dbias, p.y = dy, p.accumulate = true;
            gemv_cuda(p, nullptr);
            REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
            const double e_acc = rel_l2d(from_device(dy, (size_t)rows), ref_acc);
            REQUIRE(cudaMemset(dy, 0xff, (size_t)rows * 4) == cudaSuccess);  // NaN: every row must be written
            GemvParams g;
            g.w = a.m, g.w2 = b.m, g.x = dx, g.norm = dnw, g.eps = eps, g.y = dy;
            gemv_cuda(g, nullptr);
            REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
            const double e_glu = rel_l2d(from_device(dy, (size_t)rows), ref_glu);
            // rows 3.. dequantized (the prefill path) must equal the CPU's floats
            float* dq = nullptr;
            REQUIRE(cudaMalloc(&dq, (size_t)(rows * cols) * 4) == cudaSuccess);
            dequant_rows_cuda(a.m, 3, rows - 3, dq, nullptr);
            REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
            const std::vector<float> got = from_device(dq, (size_t)((rows - 3) * cols));
            std::vector<double> want(a.deq.begin() + 3 * cols, a.deq.end());
            const double e_deq = rel_l2d(got, want);
            std::printf("gemv %-5s cols %5lld: residual+bias rel %.2e, SwiGLU rel %.2e, dequant rel %.2e (seed %u)\n",
                        type_traits(t).name, (long long)cols, e_acc, e_glu, e_deq, seed);
            CHECK(e_acc < 1e-4);
            CHECK(e_glu < 1e-4);
            CHECK(e_deq < 1e-6);
            for (void* d : {(void*)dx, (void*)dnw, (void*)dbias, (void*)dy, (void*)dq, (void*)a.dev, (void*)b.dev}) cudaFree(d);
        }
    }
}
