// `tandem run -m MODEL -p PROMPT [options]`: streams the generated text (not the prompt) to
// stdout; diagnostics, usage and the closing statistics go to stderr, each on its own line.
// The options are llama.cpp's names (-n/--n-predict, -c/--ctx-size, -t/--threads,
// -ngl/--n-gpu-layers, -s/--seed, --temp, ...); help_run() lists them with their defaults.
//
// --kv turbo: the TurboAttention KV cache (INT4/INT2 + INT8 recent buffer, head_dim 64/128);
// MODEL.heads.json (tandem calibrate-heads) is used when present, said on stderr.
//
// --backend (default cpu): cuda runs on the GPU or fails with the reason (no device, too
// little memory, not built with CUDA); auto uses the GPU when there is a device and the model
// fits, else the CPU with a WARNING on stderr saying why. Never a silent fallback. -ngl 0 is
// --backend cpu and any other -ngl is --backend auto (the whole model on the GPU).
#include <chrono>
#include <cstdio>

#include "commands.h"
#include "progress.h"
#include "tandem/cpu_matmul.h"
#include "tandem/backend.h"
#include "tandem/engine.h"
#ifdef TANDEM_HAVE_CUDA_ENGINE
#include "tandem/gpu_context.h"
#endif

namespace tandem::cli {

std::string help_run() {
    const GenerateParams gp;
    const ContextParams cp;
    char buf[2048];
    std::snprintf(buf, sizeof buf,
                  "usage: tandem run -m MODEL -p PROMPT [options]\n"
                  "Continues PROMPT: the generated text goes to stdout, statistics to stderr.\n\n"
                  "  -m, --model PATH            GGUF model (required)\n"
                  "  -p, --prompt TEXT           the text to continue (required)\n"
                  "  -n, --n-predict N           tokens to generate (default: %d)\n"
                  "  -c, --ctx-size N            context size in tokens; 0 = the model's, at most 4096 (default: %lld)\n"
                  "  -t, --threads N             CPU threads; 0 = all hardware threads (default: %d)\n"
                  "  -ngl, --n-gpu-layers N      0 = the CPU; any other value = the GPU when there is one, for\n"
                  "                              all layers, else the CPU with a warning (default: 0)\n"
                  "      --backend B             cpu, cuda or auto; the last of -ngl and --backend wins (default: cpu)\n"
                  "      --temp T                temperature; <= 0 = greedy (default: %.2f)\n"
                  "      --top-k K               <= 0 = off (default: %d)\n"
                  "      --top-p P               >= 1 = off (default: %.2f)\n"
                  "      --min-p P               <= 0 = off (default: %.2f)\n"
                  "      --repeat-penalty R      1 = off (default: %.2f)\n"
                  "  -s, --seed S                sampling seed (default: %llu)\n"
                  "      --stop TEXT             stop before TEXT; may be repeated (default: none)\n"
                  "      --kv f16|turbo          KV cache: FP16, or the TurboAttention INT4/INT2 cache (default: f16)\n"
                  "  -h, --help                  this text\n",
                  gp.max_tokens, (long long)cp.n_ctx, cp.n_threads, gp.sampling.temperature, gp.sampling.top_k,
                  gp.sampling.top_p, gp.sampling.min_p, gp.sampling.repeat_penalty,
                  (unsigned long long)gp.sampling.seed);
    return buf;
}

int cmd_run(const Args& args) {
    std::string model, prompt;
    GenerateParams gp;
    EngineParams ep;
    std::string backend = "cpu";
    for (size_t i = 0; i < args.size(); i++) {
        const std::string& a = args[i];
        if (a == "-m" || a == "--model") model = flag_value(args, i);
        else if (a == "-p" || a == "--prompt") prompt = flag_value(args, i);
        else if (a == "-n" || a == "--n-predict") gp.max_tokens = parse_int(flag_value(args, i), a);
        else if (a == "--temp") gp.sampling.temperature = (float)parse_double(flag_value(args, i), a);
        else if (a == "--top-k") gp.sampling.top_k = parse_int(flag_value(args, i), a);
        else if (a == "--top-p") gp.sampling.top_p = (float)parse_double(flag_value(args, i), a);
        else if (a == "--min-p") gp.sampling.min_p = (float)parse_double(flag_value(args, i), a);
        else if (a == "--repeat-penalty") gp.sampling.repeat_penalty = (float)parse_double(flag_value(args, i), a);
        else if (a == "-s" || a == "--seed") gp.sampling.seed = (uint64_t)parse_int(flag_value(args, i), a);
        else if (a == "-t" || a == "--threads") ep.context.n_threads = parse_int(flag_value(args, i), a);
        else if (a == "-c" || a == "--ctx-size" || a == "--ctx") ep.context.n_ctx = parse_int(flag_value(args, i), a);
        else if (a == "-ngl" || a == "--n-gpu-layers" || a == "--gpu-layers")
            backend = backend_for_gpu_layers(parse_int(flag_value(args, i), a));
        else if (a == "--stop") gp.stop.push_back(flag_value(args, i));
        else if (a == "--backend") {
            backend = flag_value(args, i);
            if (backend != "cpu" && backend != "auto" && backend != "cuda") throw UsageError{"--backend must be cpu, cuda or auto"};
        } else if (a == "--kv") {
            const std::string& k = flag_value(args, i);
            if (k == "turbo") ep.context.turbo_kv = true;
            else if (k != "f16") throw UsageError{"--kv must be f16 or turbo"};
        } else unknown_argument(a);
    }
    if (gp.max_tokens < 0) throw UsageError{"-n must be >= 0"};
    if (ep.context.n_ctx < 0) throw UsageError{"-c must be >= 0"};
    if (ep.context.n_threads < 0) throw UsageError{"-t must be >= 0"};
    if (model.empty()) throw UsageError{"-m MODEL is required"};
    if (prompt.empty()) throw UsageError{"-p PROMPT is required"};

    ep.make_context = make_backend_factory(
        backend, warn_gpu_not_used, [](const std::string& note) { std::fprintf(stderr, "tandem: %s\n", note.c_str()); });
    ProgressBar bar("loading " + model);
    ep.load_progress = [&](double f) { bar.update(f); };
    auto engine = Engine::load(model, ep);
    bar.done();
    ComputeContext& ctx = engine->context();
    if (auto* cpu_ctx = dynamic_cast<InferenceContext*>(&ctx))
        std::fprintf(stderr, "tandem: %s, %lld threads, CPU kernels: %s\n", engine->model().config().architecture.c_str(),
                     (long long)cpu_ctx->pool().size(), cpu::kernel_path_name());
#ifdef TANDEM_HAVE_CUDA_ENGINE
    if (auto* gpu_ctx = dynamic_cast<GpuContext*>(&ctx))
        std::fprintf(stderr, "tandem: %s on %s (CUDA), %.1f MiB on the device\n", engine->model().config().architecture.c_str(),
                     gpu_ctx->device_name().c_str(), (double)gpu_ctx->device_bytes() / (1 << 20));
#endif
    ProgressBar prompt_bar("prompt");  // a long prompt's forward passes, on a terminal after a second
    gp.on_prompt_progress = [&](int64_t cached, int64_t total) {
        prompt_bar.update((double)cached / (double)total);
        if (cached == total) prompt_bar.done();
        return true;
    };
    const Generation g = engine->generate(prompt, gp, [](std::string_view piece) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
        return true;
    });
    // The text ends with a newline, flushed before the statistics so that they start a line of
    // their own also when stdout and stderr go to the same pipe.
    std::fputc('\n', stdout);
    std::fflush(stdout);
    std::fprintf(stderr, "tandem: %lld prompt tokens in %.1f ms, %lld generated, first token %.1f ms, %.1f tok/s, finish: %s\n",
                 (long long)g.usage.prompt_tokens, g.usage.prompt_ms, (long long)g.usage.completion_tokens, g.usage.ttft_ms,
                 g.usage.decode_tokens_per_s(), finish_reason_name(g.finish));
    return 0;
}

}  // namespace tandem::cli
