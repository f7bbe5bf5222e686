// End-to-end decode on the GPU (GpuContext) at batch 1: tokens/s and achieved weight
// bandwidth against the card's device-to-device copy bandwidth, measured in the same run.
//
// Models: random weights written by write_synthetic_model to $TMPDIR (default /tmp) in this
// run, shaped like Llama-3.2-1B (16 layers, 2048, 32/8 heads, ff 8192, vocab 128256, tied,
// Llama 3 rope) and Qwen2.5-0.5B (24 layers, 896, 14/2 heads, ff 4864, vocab 151936, qwen2,
// tied), each in Q4_0 and Q8_0.
//
// The four files are written in parallel first. Per model: a 32-token prompt, 16 warm-up decode steps, then `steps` timed decode steps
// (greedy: each step feeds back the argmax, as generation does). Time per token is the median
// of host wall-clock times around eval() (which ends synchronized). GB/s = weight bytes read
// per token (every layer matrix and the output matrix) / median time. The copy bandwidth is
// a 1 GiB cudaMemcpy device-to-device, bytes read + written, median of 20. After the timed
// steps, one more step runs with an event after every stage and prints where the time goes.
//
// Long context, FP16 vs Turbo KV cache (the Llama-3.2-1B shape, Q4_0, batch 1): for each
// length in --long-ctx (default 4096,16384) the cache is filled by one prefill of that many
// tokens (n_batch 512, timed once), then 16 warm-up and `steps` timed decode steps as above,
// with the CUDA graph; --kv picks fp16, turbo (all heads 4-bit and 2 of 8 KV heads per layer
// at 2 bits) or both (default). The attention stage's device ms comes from one profiled step.
// Turbo 4-bit runs twice: its prefill on turbo_cache_prefill_cuda (the default) and, as the
// same-run baseline, on one decode launch per 64-token segment (GpuParams::turbo_prefill_kernel
// off); their decode is the same code.
//
// Prefill (every model above, FP16 KV cache): prompts of --prefill lengths (default
// 512,1200,4096,16384) in n_batch 512 chunks, timed with the quantized weights' GEMMs in each
// GpuParams::prefill_gemm mode (BF16 and TF32 tensor cores, FP32 SGEMM: the baseline) in the
// same run: median of 3 evaluations after a warm-up. TFLOP/s counts the layer matrices only
// (2 x tokens x their parameters), so it is a lower bound on the GEMMs' own rate. Then, BF16,
// the prompt's last chunk (up to 512 tokens) is profiled with an event between stages
// (GpuContext::profile_eval): the GEMMs' own rate is that chunk's layer FLOPs over its to_bf16,
// dequant and gemm stages. BF16 runs twice, profiled alike: with GpuParams::hopper_gemm as it
// defaults (measured: on sm_90, the faster of the Hopper dequantizing GEMM and dequantized tiles
// + cuBLAS per matrix shape, as the context timed them; printed once per model), and with
// `never` (tiles + cuBLAS alone; GpuContext::prefill_gemm_kernel() names each run's GEMM).
// --bf16-only skips the split-KV, TF32 and FP32 runs.
//
// Usage: bench-gpu-decode [--steps N] [--json FILE] [--only llama|qwen] [--kv fp16|turbo|both]
//                         [--long-ctx N,N,... | --long-ctx 0] [--prefill N,N,... | --prefill 0] [--no-short]
//                         [--bf16-only]
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tandem/gpu_context.h"
#include "tandem/synthetic_model.h"

using namespace tandem;

namespace {

#define CK(x)                                                                              \
    do {                                                                                   \
        cudaError_t e_ = (x);                                                              \
        if (e_ != cudaSuccess) {                                                           \
            std::fprintf(stderr, "%s failed: %s\n", #x, cudaGetErrorString(e_));           \
            std::exit(1);                                                                  \
        }                                                                                  \
    } while (0)

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Device-to-device copy bandwidth in GB/s (bytes read + bytes written).
double copy_bandwidth() {
    const size_t bytes = 1ull << 30;
    void *a = nullptr, *b = nullptr;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    CK(cudaMemset(a, 1, bytes));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<double> t;
    for (int i = 0; i < 23; i++) {
        CK(cudaEventRecord(e0));
        CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 3) t.push_back(ms);
    }
    CK(cudaFree(a));
    CK(cudaFree(b));
    return 2.0 * (double)bytes / (median(t) * 1e-3) / 1e9;
}

struct Row {
    std::vector<std::pair<std::string, double>> stages;  // one decode step, ms per stage
    std::string model, type;
    double weight_mib = 0, ms_graph = 0, ms_nograph = 0, gbs = 0, pct = 0;
};

// Decode timing after a prompt of n_prompt tokens (ContextParams from `base`, n_ctx sized to fit).
double time_decode(const std::shared_ptr<const Model>& m, const GpuParams& gp, int steps, uint64_t* bytes_per_token,
                   std::vector<std::pair<std::string, double>>* stages = nullptr, const ContextParams& base = {},
                   int64_t n_prompt = 32, double* prefill_ms = nullptr, uint64_t* device_bytes = nullptr,
                   uint64_t* kv_bytes = nullptr) {
    ContextParams cp = base;
    cp.n_ctx = std::max<int64_t>(512, n_prompt + 16 + steps + 64);
    cp.n_batch = n_prompt > 64 ? 512 : 64;
    GpuContext ctx(m, cp, gp);
    *bytes_per_token = ctx.weight_bytes_per_token();
    if (device_bytes) *device_bytes = ctx.device_bytes();
    if (kv_bytes) *kv_bytes = ctx.kv_bytes();
    std::vector<int32_t> prompt((size_t)n_prompt);
    for (size_t i = 0; i < prompt.size(); i++) prompt[i] = (int32_t)((i * 7919 + 13) % (size_t)m->config().n_vocab);
    const auto p0 = std::chrono::steady_clock::now();
    ctx.eval(prompt.data(), (int64_t)prompt.size());
    if (prefill_ms) *prefill_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - p0).count();
    int32_t tok = ctx.argmax();
    std::vector<double> t;
    for (int i = 0; i < 16 + steps; i++) {
        const auto t0 = std::chrono::steady_clock::now();
        ctx.eval(&tok, 1);
        tok = ctx.argmax();
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (i >= 16) t.push_back(ms);
    }
    if (stages) *stages = ctx.profile_decode_step(tok);
    return median(t);
}

// ---- prefill: TF32 vs FP32 GEMMs ---------------------------------------------------------------

struct PrefillRow {
    std::string model, type;
    int64_t tokens = 0;
    double ms_bf16 = 0, ms_tf32 = 0, ms_fp32 = 0, linear_tflop = 0;
    double ms_bf16_splitkv = 0;    // BF16 GEMMs, attention on the split-KV kernel's causal mode (A/B)
    double ms_bf16_other = 0;      // BF16, GpuParams::hopper_gemm never (A/B; always if that is the default)
    std::string attention;         // the prefill attention of the BF16 run (prefill_attention())
    std::string gemm_kernel, gemm_kernel_other;  // their GEMMs (prefill_gemm_kernel())
    std::vector<std::pair<std::string, double>> stages;  // BF16: the last chunk, device ms per stage
    std::vector<std::pair<std::string, double>> stages_other;  // the same with the other hopper_gemm
    int64_t chunk = 0;                                   // that chunk's tokens
    double gemm_tflop = 0;                               // that chunk's layer-matrix TFLOP
    // The chunk's GEMM stages (activations to BF16, weight tiles, cuBLAS or the fused GEMM).
    static double gemm_ms(const std::vector<std::pair<std::string, double>>& st) {
        double ms = 0;
        for (const auto& s : st)
            if (s.first == "to_bf16" || s.first == "dequant" || s.first == "gemm") ms += s.second;
        return ms;
    }
    double gemm_ms() const { return gemm_ms(stages); }
    double gemm_tflops() const { return gemm_ms() > 0 ? gemm_tflop / (gemm_ms() * 1e-3) : 0.0; }
    double gemm_tflops_other() const { return gemm_ms(stages_other) > 0 ? gemm_tflop / (gemm_ms(stages_other) * 1e-3) : 0.0; }
};

// Median wall time of evaluating an n-token prompt from an empty cache (n_batch 512), after a
// warm-up. With `stages`: then the prompt once more, its last chunk profiled (profile_eval).
double time_prefill(const std::shared_ptr<const Model>& m, GpuParams::PrefillGemm mode, int64_t n,
                    std::vector<std::pair<std::string, double>>* stages = nullptr, int64_t* chunk = nullptr,
                    bool hopper_prefill = true, std::string* attention = nullptr,
                    GpuParams::HopperGemm hopper_gemm = GpuParams{}.hopper_gemm, std::string* gemm_kernel = nullptr,
                    std::string* gemm_choices = nullptr) {
    ContextParams cp;
    cp.n_ctx = n + 64;
    cp.n_batch = 512;
    GpuParams gp;
    gp.prefill_gemm = mode;
    gp.hopper_prefill = hopper_prefill;
    gp.hopper_gemm = hopper_gemm;
    GpuContext ctx(m, cp, gp);
    if (attention) *attention = ctx.prefill_attention();
    if (gemm_kernel) *gemm_kernel = ctx.prefill_gemm_kernel();
    if (gemm_choices) *gemm_choices = ctx.prefill_gemm_choices();
    std::vector<int32_t> prompt((size_t)n);
    for (size_t i = 0; i < prompt.size(); i++) prompt[i] = (int32_t)((i * 7919 + 13) % (size_t)m->config().n_vocab);
    std::vector<double> t;
    for (int i = 0; i < 4; i++) {
        ctx.truncate(0);
        const auto t0 = std::chrono::steady_clock::now();
        ctx.eval(prompt.data(), n);
        if (i > 0) t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    if (stages) {
        const int64_t c = std::min<int64_t>(n, cp.n_batch);
        ctx.truncate(0);
        if (n > c) ctx.eval(prompt.data(), n - c);
        *stages = ctx.profile_eval(prompt.data() + (n - c), c);
        *chunk = c;
    }
    return median(t);
}

// Parameters of the layer matrices (q, k, v, o, gate, up, down) of every layer.
double layer_matrix_params(const SyntheticModelSpec& s) {
    const double d = (double)s.n_embd, kvd = d / s.n_head * s.n_head_kv, ff = (double)s.n_ff;
    return (double)s.n_layer * (d * (d + 2 * kvd) + d * d + 3 * d * ff);
}

void run_prefill(const std::shared_ptr<const Model>& m, const char* name, const SyntheticModelSpec& spec,
                 const std::vector<long>& lengths, bool bf16_only, std::vector<PrefillRow>& out) {
    using Mode = GpuParams::PrefillGemm;
    for (long n : lengths) {
        PrefillRow r;
        r.model = name, r.type = type_traits(spec.weight_type).name, r.tokens = n;
        using HG = GpuParams::HopperGemm;
        const HG hg = GpuParams{}.hopper_gemm, other = hg == HG::never ? HG::always : HG::never;
        std::string choices;
        r.ms_bf16 = time_prefill(m, Mode::bf16, n, &r.stages, &r.chunk, true, &r.attention, hg, &r.gemm_kernel, &choices);
        if (n == lengths.front() && !choices.empty())
            std::printf("prefill %s %s: GEMM per matrix shape, as the context measured it at 512 tokens (kept first):\n%s", name,
                        r.type.c_str(), choices.c_str());
        r.ms_bf16_other = time_prefill(m, Mode::bf16, n, &r.stages_other, &r.chunk, true, nullptr, other, &r.gemm_kernel_other);
        if (!bf16_only) {
            r.ms_bf16_splitkv = time_prefill(m, Mode::bf16, n, nullptr, nullptr, false);
            r.ms_tf32 = time_prefill(m, Mode::tf32, n);
            r.ms_fp32 = time_prefill(m, Mode::fp32, n);
        }
        r.linear_tflop = 2.0 * (double)n * layer_matrix_params(spec) / 1e12;
        r.gemm_tflop = 2.0 * (double)r.chunk * layer_matrix_params(spec) / 1e12;
        std::printf("prefill %s %s %ld tokens: BF16 %.1f ms (%.0f tok/s, GEMM %s, attention %s; GEMM %s %.1f ms; "
                    "split-KV causal attention %.1f ms), TF32 %.1f ms, FP32 %.1f ms\n",
                    name, r.type.c_str(), n, r.ms_bf16, n / (r.ms_bf16 * 1e-3), r.gemm_kernel.c_str(), r.attention.c_str(),
                    r.gemm_kernel_other.c_str(), r.ms_bf16_other, r.ms_bf16_splitkv, r.ms_tf32, r.ms_fp32);
        for (const auto* st : {&r.stages, &r.stages_other}) {
            double all = 0;
            std::printf("  stages of the last %ld-token chunk (BF16, %s, device ms, events between stages):", (long)r.chunk,
                        st == &r.stages ? r.gemm_kernel.c_str() : r.gemm_kernel_other.c_str());
            for (const auto& x : *st) {
                std::printf(" %s %.3f", x.first.c_str(), x.second);
                all += x.second;
            }
            std::printf("; total %.3f, GEMMs (to_bf16 + dequant + gemm) %.3f ms = %.0f TFLOP/s\n", all,
                        PrefillRow::gemm_ms(*st), r.gemm_tflop / (PrefillRow::gemm_ms(*st) * 1e-3));
        }
        out.push_back(r);
    }
}

void print_prefill(const std::vector<PrefillRow>& rows) {
    if (rows.empty()) return;
    std::printf("\n| model | weights | prompt tokens | BF16 ms (GEMM; attention) | tok/s | layer TFLOP/s | last chunk: GEMM stages ms | "
                "GEMM TFLOP/s | BF16, other GEMM ms | its GEMM stages ms | its GEMM TFLOP/s | BF16, split-KV causal attention ms | "
                "TF32 ms | FP32 SGEMM ms |\n");
    std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const PrefillRow& r : rows)
        std::printf("| %s | %s | %ld | %.1f (%s; %s) | %.0f | %.0f | %.3f | %.0f | %.1f | %.3f | %.0f | %.1f | %.1f | %.1f |\n",
                    r.model.c_str(), r.type.c_str(), (long)r.tokens, r.ms_bf16, r.gemm_kernel.c_str(), r.attention.c_str(),
                    r.tokens / (r.ms_bf16 * 1e-3), r.linear_tflop / (r.ms_bf16 * 1e-3), r.gemm_ms(), r.gemm_tflops(),
                    r.ms_bf16_other, PrefillRow::gemm_ms(r.stages_other), r.gemm_tflops_other(), r.ms_bf16_splitkv,
                    r.ms_tf32, r.ms_fp32);
}

// ---- long context: FP16 vs Turbo KV ------------------------------------------------------------

struct LongRow {
    std::string model, kv;
    long ctx = 0;
    double ms = 0, attn_ms = 0, prefill_ms = 0, kv_mib = 0;
};

void run_long(const std::shared_ptr<const Model>& m, const char* name, const SyntheticModelSpec& spec,
              const std::vector<long>& lens, const std::string& kv, int steps, std::vector<LongRow>& out) {
    struct Mode {
        const char* name;
        bool turbo;
        int n2;         // KV heads per layer at 2 bits
        bool segments;  // prefill: the per-segment decode launches (GpuParams::turbo_prefill_kernel off)
    };
    std::vector<Mode> modes;
    if (kv != "turbo") modes.push_back({"fp16", false, 0, false});
    if (kv != "fp16") {
        modes.push_back({"turbo 4-bit", true, 0, false});
        modes.push_back({"turbo 4-bit, segment prefill", true, 0, true});
        modes.push_back({"turbo 2/8 heads 2-bit", true, 2, false});
    }
    for (long len : lens)
        for (const Mode& mode : modes) {
            ContextParams cp;
            cp.turbo_kv = mode.turbo;
            if (mode.n2 > 0) {
                cp.turbo_head_bits.assign((size_t)spec.n_layer, std::vector<uint8_t>((size_t)spec.n_head_kv, 4));
                for (auto& l : cp.turbo_head_bits)
                    for (int i = 0; i < mode.n2; i++) l[(size_t)i] = 2;
            }
            LongRow r;
            r.model = std::string(name) + " " + type_traits(spec.weight_type).name, r.kv = mode.name, r.ctx = len;
            uint64_t bytes = 0, dev = 0, kv_bytes = 0;
            std::vector<std::pair<std::string, double>> stages;
            GpuParams gp;
            gp.turbo_prefill_kernel = !mode.segments;
            r.ms = time_decode(m, gp, steps, &bytes, &stages, cp, len, &r.prefill_ms, &dev, &kv_bytes);
            for (const auto& st : stages)
                if (st.first == "attention" || st.first == "rope+kv") r.attn_ms += st.second;
            // KV bytes on the device: Turbo records + recent buffers (+ prefill copies and
            // workspace) or FP16 K/V
            r.kv_mib = (double)kv_bytes / (1 << 20);
            std::printf("long ctx %ld %s %s: prefill %.0f ms, decode %.3f ms/token (%.1f tok/s), attention+store %.3f ms/token, KV %.1f MiB\n",
                        len, r.model.c_str(), r.kv.c_str(), r.prefill_ms, r.ms, 1000.0 / r.ms, r.attn_ms, r.kv_mib);
            out.push_back(r);
        }
}

void print_long(const std::vector<LongRow>& rows) {
    if (rows.empty()) return;
    std::printf("\n| model | KV cache | tokens in cache | tok/s | ms/token | vs FP16 | attention+KV store ms/token (profiled step) | KV MiB (device) | prefill ms |\n");
    std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const LongRow& r : rows) {
        double base = 0;
        for (const LongRow& b : rows)
            if (b.ctx == r.ctx && b.kv == "fp16" && b.model == r.model) base = b.ms;
        char vs[32] = "-";
        if (base > 0) std::snprintf(vs, sizeof vs, "%.2fx", base / r.ms);
        std::printf("| %s | %s | %ld | %.1f | %.3f | %s | %.3f | %.1f | %.0f |\n", r.model.c_str(), r.kv.c_str(), r.ctx, 1000.0 / r.ms,
                    r.ms, vs, r.attn_ms, r.kv_mib, r.prefill_ms);
    }
}

// "N,N,..." -> the positive values ("0": none).
std::vector<long> parse_lengths(const char* p) {
    std::vector<long> out;
    while (*p) {
        char* e = nullptr;
        const long v = std::strtol(p, &e, 10);
        if (e == p) break;
        if (v > 0) out.push_back(v);
        p = *e == ',' ? e + 1 : e;
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    int steps = 128;
    std::string json_path, only, kv = "both";
    std::vector<long> long_ctx = {4096, 16384}, prefill = {512, 1200, 4096, 16384};
    bool short_rows = true, bf16_only = false;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "--steps" && i + 1 < argc) steps = std::atoi(argv[++i]);
        else if (a == "--json" && i + 1 < argc) json_path = argv[++i];
        else if (a == "--only" && i + 1 < argc) only = argv[++i];
        else if (a == "--kv" && i + 1 < argc) kv = argv[++i];
        else if (a == "--no-short") short_rows = false;
        else if (a == "--bf16-only") bf16_only = true;
        else if (a == "--long-ctx" && i + 1 < argc) long_ctx = parse_lengths(argv[++i]);
        else if (a == "--prefill" && i + 1 < argc) prefill = parse_lengths(argv[++i]);
        else {
            std::fprintf(stderr, "usage: bench-gpu-decode [--steps N] [--json FILE] [--only llama|qwen] [--kv fp16|turbo|both]"
                                 " [--long-ctx N,N,...] [--prefill N,N,...] [--no-short] [--bf16-only]\n");
            return 2;
        }
    }
    if (kv != "fp16" && kv != "turbo" && kv != "both") {
        std::fprintf(stderr, "--kv must be fp16, turbo or both\n");
        return 2;
    }
    const GpuDeviceInfo info = gpu_device_info();
    if (!info.present) {
        std::printf("skipped: %s\n", info.reason.c_str());
        return 0;
    }
    const double copy_gbs = copy_bandwidth();
    std::printf("device: %s, device-to-device copy %.0f GB/s (read + write)\n", info.name.c_str(), copy_gbs);

    struct Shape {
        const char* name;
        SyntheticModelSpec s;
    };
    std::vector<Shape> shapes;
    {
        SyntheticModelSpec s;
        s.architecture = "llama";
        s.n_layer = 16, s.n_embd = 2048, s.n_head = 32, s.n_head_kv = 8, s.n_ff = 8192, s.n_vocab = 128256, s.n_ctx = 4096;
        s.tied_embeddings = true, s.llama3_rope = true, s.rope_freq_base = 500000.0f;
        for (long n : long_ctx) s.n_ctx = std::max<int64_t>(s.n_ctx, n + 1024);
        for (long n : prefill) s.n_ctx = std::max<int64_t>(s.n_ctx, n + 64);
        if (only.empty() || only == "llama") shapes.push_back({"Llama-3.2-1B-shaped", s});
        s.architecture = "qwen2";
        s.n_layer = 24, s.n_embd = 896, s.n_head = 14, s.n_head_kv = 2, s.n_ff = 4864, s.n_vocab = 151936;
        s.llama3_rope = false, s.rope_freq_base = 1000000.0f;
        if (only.empty() || only == "qwen") shapes.push_back({"Qwen2.5-0.5B-shaped", s});
    }
    const char* tmp = std::getenv("TMPDIR");
    const std::string dir = tmp ? tmp : "/tmp";
    // Write every model first, in parallel (the writer is single-threaded and dominates).
    struct Job {
        const char* name;
        SyntheticModelSpec spec;
        std::string path;
    };
    std::vector<Job> jobs;
    for (const Shape& sh : shapes)
        for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q8_0}) {
            SyntheticModelSpec s = sh.s;
            s.weight_type = t, s.embd_type = t;
            jobs.push_back({sh.name, s, dir + "/bench-gpu-decode-" + sh.name + "-" + type_traits(t).name + ".gguf"});
        }
    const auto w0 = std::chrono::steady_clock::now();
    {
        std::vector<std::thread> writers;
        for (const Job& j : jobs) writers.emplace_back([&j] { write_synthetic_model(j.spec, j.path); });
        for (auto& w : writers) w.join();
    }
    std::printf("models written in %.1f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count());
    std::vector<Row> rows;
    std::vector<LongRow> long_rows;
    std::vector<PrefillRow> prefill_rows;
    for (const Job& j : jobs) {
        auto m = Model::load(j.path);
        if (!long_ctx.empty() && j.spec.architecture == "llama" && j.spec.weight_type == GgmlType::Q4_0)
            run_long(m, j.name, j.spec, long_ctx, kv, steps, long_rows);
        run_prefill(m, j.name, j.spec, prefill, bf16_only, prefill_rows);
        if (!short_rows) {
            std::remove(j.path.c_str());
            continue;
        }
        Row r;
        r.model = j.name, r.type = type_traits(j.spec.weight_type).name;
        uint64_t bytes = 0;
        GpuParams g;
        r.ms_graph = time_decode(m, g, steps, &bytes, &r.stages);
        g.use_graph = false;
        r.ms_nograph = time_decode(m, g, steps, &bytes);
        r.weight_mib = (double)bytes / (1 << 20);
        r.gbs = (double)bytes / (r.ms_graph * 1e-3) / 1e9;
        r.pct = 100.0 * r.gbs / copy_gbs;
        std::printf("%s %s: %.3f ms/token (graph), %.3f ms/token (no graph), %.0f GB/s\n", j.name, r.type.c_str(), r.ms_graph,
                    r.ms_nograph, r.gbs);
        std::printf("  stages of one step (device ms, events between stages, no graph):");
        for (const auto& st : r.stages) std::printf(" %s %.3f", st.first.c_str(), st.second);
        std::printf("\n");
        std::remove(j.path.c_str());
        rows.push_back(r);
    }

    std::printf("\n| model | weights | MiB read/token | tok/s (graph) | ms/token | tok/s (no graph) | GB/s | %% of copy BW |\n");
    std::printf("|---|---|---:|---:|---:|---:|---:|---:|\n");
    for (const Row& r : rows)
        std::printf("| %s | %s | %.1f | %.1f | %.3f | %.1f | %.0f | %.1f%% |\n", r.model.c_str(), r.type.c_str(), r.weight_mib,
                    1000.0 / r.ms_graph, r.ms_graph, 1000.0 / r.ms_nograph, r.gbs, r.pct);
    print_long(long_rows);
    print_prefill(prefill_rows);
    std::string json = "{\"device\": \"" + info.name + "\", \"copy_gbs\": " + std::to_string(copy_gbs) +
                       ", \"steps\": " + std::to_string(steps) + ", \"rows\": [";
    for (size_t i = 0; i < rows.size(); i++) {
        const Row& r = rows[i];
        json += std::string(i ? ", " : "") + "{\"model\": \"" + r.model + "\", \"type\": \"" + r.type +
                "\", \"mib_per_token\": " + std::to_string(r.weight_mib) + ", \"ms_per_token\": " + std::to_string(r.ms_graph) +
                ", \"tok_s\": " + std::to_string(1000.0 / r.ms_graph) + ", \"tok_s_no_graph\": " +
                std::to_string(1000.0 / r.ms_nograph) + ", \"gbs\": " + std::to_string(r.gbs) +
                ", \"pct_of_copy\": " + std::to_string(r.pct) + ", \"stages_ms\": {";
        for (size_t k = 0; k < r.stages.size(); k++)
            json += std::string(k ? ", " : "") + "\"" + r.stages[k].first + "\": " + std::to_string(r.stages[k].second);
        json += "}}";
    }
    json += "], \"long\": [";
    for (size_t i = 0; i < long_rows.size(); i++) {
        const LongRow& r = long_rows[i];
        json += std::string(i ? ", " : "") + "{\"model\": \"" + r.model + "\", \"kv\": \"" + r.kv +
                "\", \"ctx\": " + std::to_string(r.ctx) + ", \"ms_per_token\": " + std::to_string(r.ms) +
                ", \"tok_s\": " + std::to_string(1000.0 / r.ms) + ", \"attention_ms\": " + std::to_string(r.attn_ms) +
                ", \"prefill_ms\": " + std::to_string(r.prefill_ms) + ", \"kv_mib\": " + std::to_string(r.kv_mib) + "}";
    }
    json += "], \"prefill\": [";
    for (size_t i = 0; i < prefill_rows.size(); i++) {
        const PrefillRow& r = prefill_rows[i];
        json += std::string(i ? ", " : "") + "{\"model\": \"" + r.model + "\", \"type\": \"" + r.type +
                "\", \"tokens\": " + std::to_string(r.tokens) + ", \"ms_bf16\": " + std::to_string(r.ms_bf16) +
                ", \"ms_bf16_splitkv\": " + std::to_string(r.ms_bf16_splitkv) + ", \"attention\": \"" + r.attention + "\"" +
                ", \"gemm_kernel\": \"" + r.gemm_kernel + "\", \"gemm_kernel_other\": \"" + r.gemm_kernel_other +
                "\", \"ms_bf16_other\": " + std::to_string(r.ms_bf16_other) +
                ", \"ms_tf32\": " + std::to_string(r.ms_tf32) +
                ", \"ms_fp32\": " + std::to_string(r.ms_fp32) + ", \"layer_tflop\": " + std::to_string(r.linear_tflop) +
                ", \"profiled_chunk\": " + std::to_string(r.chunk) + ", \"chunk_stages_ms\": {";
        for (size_t k = 0; k < r.stages.size(); k++)
            json += std::string(k ? ", " : "") + "\"" + r.stages[k].first + "\": " + std::to_string(r.stages[k].second);
        json += "}, \"chunk_stages_ms_other\": {";
        for (size_t k = 0; k < r.stages_other.size(); k++)
            json += std::string(k ? ", " : "") + "\"" + r.stages_other[k].first + "\": " +
                    std::to_string(r.stages_other[k].second);
        json += "}}";
    }
    json += "]}";
    std::printf("\n%s\n", json.c_str());
    if (!json_path.empty()) std::ofstream(json_path) << json << "\n";
    return 0;
}
