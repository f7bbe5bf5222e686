// `tandem bench -m MODEL [--json]` (llama-bench's -p/-n/-r/-t also work): prompt tokens/s at 512 tokens and decode tokens/s over 128
// tokens, the median of 5 runs, with the weight bytes each decoded token reads and the GB/s
// that makes, and the prompt's weight-matmul GOP/s against this CPU's int8 (quantized
// weights) or fp32 (float weights) peak measured in the same run (tandem/cpu_peak.h). Token
// ids are fixed pseudo-random values (speed does not depend on them).
// --kv turbo: the Turbo KV cache (MODEL.heads.json used when present). --kernels NAME: the CPU
// kernel path (cpu_matmul.h: avx2, avx-vnni, avx512-vnni, amx, ...) instead of the best one;
// attention and SwiGLU then run the vector code a CPU with that best path has (avx2: AVX2).
// --cpu-time: one thread, timed by its CPU time (holds while other processes share the machine).
#include <algorithm>
#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "tandem/context.h"
#include "tandem/cpu_matmul.h"
#include "tandem/cpu_peak.h"
#include "tandem/speed.h"
#include "tandem/turbo_heads.h"

namespace tandem::cli {

std::string help_bench() {
    const ContextParams cp;
    char buf[1536];
    std::snprintf(buf, sizeof buf,
                  "usage: tandem bench -m MODEL [options]\n"
                  "Prompt and decode speed of the CPU engine (median of the runs), with the weight bytes read\n"
                  "per decoded token and the GB/s that makes.\n\n"
                  "  -m, --model PATH               GGUF model (required)\n"
                  "  -p, --n-prompt, --prompt-tokens N   prompt tokens (default: 512)\n"
                  "  -n, --n-gen, --decode-tokens N      decoded tokens (default: 128)\n"
                  "  -r, --repetitions, --runs N    runs; the median is reported (default: 5)\n"
                  "  -t, --threads N                CPU threads; 0 = all hardware threads (default: %d)\n"
                  "  --kernels PATH                 CPU kernel path (avx2, avx-vnni, avx512-vnni, amx, ...; default: the best)\n"
                  "  -ngl, --n-gpu-layers N         accepted for llama-bench command lines; this bench measures\n"
                  "                                 the CPU engine only, said on stderr when N != 0 (default: 0)\n"
                  "      --kv f16|turbo             KV cache (default: f16)\n"
                  "      --cpu-time                 one thread, timed by its CPU time (holds on a shared machine)\n"
                  "      --json                     one JSON object on stdout instead of the table\n"
                  "  -h, --help                     this text\n",
                  cp.n_threads);
    return buf;
}

int cmd_bench(const Args& args) {
    std::string model_path;
    bool json = false;
    int n_prompt = 512, n_decode = 128, runs = 5, n_gpu_layers = 0;
    bool cpu_time = false;
    ContextParams cp;
    for (size_t i = 0; i < args.size(); i++) {
        const std::string& a = args[i];
        if (a == "-m" || a == "--model") model_path = flag_value(args, i);
        else if (a == "--json") json = true;
        else if (a == "-t" || a == "--threads") cp.n_threads = parse_int(flag_value(args, i), a);
        else if (a == "-p" || a == "--n-prompt" || a == "--prompt-tokens") n_prompt = parse_int(flag_value(args, i), a);
        else if (a == "-n" || a == "--n-gen" || a == "--decode-tokens") n_decode = parse_int(flag_value(args, i), a);
        else if (a == "-r" || a == "--repetitions" || a == "--runs") runs = parse_int(flag_value(args, i), a);
        else if (a == "-ngl" || a == "--n-gpu-layers" || a == "--gpu-layers") n_gpu_layers = parse_int(flag_value(args, i), a);
        else if (a == "--kernels") cpu::force_kernel_path(flag_value(args, i).c_str());
        else if (a == "--cpu-time") cpu_time = true;
        else if (a == "--kv") {
            const std::string& k = flag_value(args, i);
            if (k == "turbo") cp.turbo_kv = true;
            else if (k != "f16") throw UsageError{"--kv must be f16 or turbo"};
        } else unknown_argument(a);
    }
    if (cp.n_threads < 0) throw UsageError{"-t must be >= 0"};
    if (model_path.empty()) throw UsageError{"-m MODEL is required"};
    if (n_prompt < 1 || n_decode < 1 || runs < 1) throw UsageError{"token counts and runs must be positive"};
    if (n_gpu_layers != 0)
        warn_gpu_not_used("-ngl " + std::to_string(n_gpu_layers) + ": GPU not used: tandem bench measures the CPU engine "
                          "(bench/bench-gpu-decode measures the GPU one)");
    auto model = Model::load(model_path);
    const ModelConfig& c = model->config();
    cp.n_ctx = std::min<int64_t>(c.n_ctx_train, n_prompt + n_decode);
    if (cp.n_ctx < n_prompt + n_decode)
        throw std::runtime_error("the model's context (" + std::to_string(c.n_ctx_train) + ") is shorter than the bench");
    cp.n_batch = n_prompt;
    if (cpu_time) cp.n_threads = 1;
    const std::string heads = apply_turbo_heads_file(*model, cp);
    if (!heads.empty()) std::fprintf(stderr, "bench: turbo KV head bits from %s\n", heads.c_str());
    InferenceContext ctx(model, cp);
    const SpeedResult sr = measure_speed(ctx, n_prompt, n_decode, runs, cpu_time);
    const double pp_med = sr.prompt_tokens_per_s, tg_med = sr.decode_tokens_per_s, gbs = sr.decode_weight_gbs();
    // the roofline of the prompt: its weight matmuls' rate against the peak of the kernels' instruction
    const cpu::ComputePeak peak = cpu::measure_compute_peak(ctx.pool(), cpu_time);
    const bool quant = type_traits(model->layers.empty() ? model->output.type : model->layers[0].wq.type).is_quantized;
    const double peak_gops = quant ? peak.int8_gops : peak.fp32_gflops;
    const double prompt_gops = prompt_matmul_ops(*model, n_prompt) * pp_med / n_prompt / 1e9;
    const std::string peak_name = quant ? std::string("int8 ") + peak.int8_instr : std::string("fp32 fma");
    const uint64_t per_token = sr.weight_bytes_per_token;
    if (json) {
        nlohmann::json j = {{"model", model_path},       {"threads", ctx.pool().size()},
                            {"kernel_path", cpu::kernel_path_name()},
                            {"prompt_tokens", n_prompt}, {"prompt_tokens_per_s", pp_med},
                            {"decode_tokens", n_decode}, {"decode_tokens_per_s", tg_med},
                            {"weight_bytes_per_token", per_token}, {"decode_weight_gb_per_s", gbs},
                            {"prompt_matmul_gops", prompt_gops}, {"peak_gops", peak_gops}, {"peak", peak_name},
                            {"bf16_peak_gflops", peak.bf16_gflops},
                            {"runs", runs}, {"kv", cp.turbo_kv ? "turbo" : "f16"}, {"cpu_time", cpu_time}};
        std::printf("%s\n", j.dump(2).c_str());
    } else {
        std::printf("model: %s  threads: %d  kernels: %s  runs: %d (median)%s\n", model_path.c_str(), ctx.pool().size(),
                    cpu::kernel_path_name(), runs, cpu_time ? "  times: CPU time of the one thread" : "");
        std::printf("%-10s %8s %12s %16s\n", "test", "tokens", "tokens/s", "weights GB/s");
        std::printf("%-10s %8d %12.1f %16s\n", "prompt", n_prompt, pp_med, "-");
        std::printf("%-10s %8d %12.1f %16.2f\n", "decode", n_decode, tg_med, gbs);
        // the weight matmuls' ops over the whole prompt's time (attention and the rest included)
        std::printf("prompt matmul ops / prompt time %.1f GOP/s = %.0f%% of the %s peak (%.1f GOP/s, same run)\n", prompt_gops,
                    peak_gops > 0 ? 100 * prompt_gops / peak_gops : 0.0, peak_name.c_str(), peak_gops);
        if (quant && peak.bf16_gflops > 0)
            std::printf("                                      = %.0f%% of the bf16 %s peak (%.1f GFLOP/s, same run)\n",
                        100 * prompt_gops / peak.bf16_gflops, peak.bf16_instr, peak.bf16_gflops);
    }
    return 0;
}

}  // namespace tandem::cli
