// `tandem run -m MODEL -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P] [--seed S]
//  [--threads T] [--ctx C] [--backend cpu|cuda|auto] [--kv f16|turbo]`: streams the generated
// text (not the prompt) to stdout; diagnostics and usage go to stderr.
//
// --kv turbo: the TurboAttention KV cache (INT4/INT2 + INT8 recent buffer, head_dim 64/128);
// MODEL.heads.json (tandem calibrate-heads) is used when present, said on stderr.
//
// --backend (default cpu): cuda runs on the GPU or fails with the reason (no device, too
// little memory, not built with CUDA); auto uses the GPU when there is a device and the model
// fits, else the CPU with a warning on stderr saying why. Never a silent fallback.
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

int cmd_run(const Args& args) {
    std::string model, prompt;
    GenerateParams gp;
    EngineParams ep;
    std::string backend = "cpu";
    for (size_t i = 0; i < args.size(); i++) {
        const std::string& a = args[i];
        if (a == "-m" || a == "--model") model = flag_value(args, i);
        else if (a == "-p" || a == "--prompt") prompt = flag_value(args, i);
        else if (a == "-n") gp.max_tokens = parse_int(flag_value(args, i), a);
        else if (a == "--temp") gp.sampling.temperature = (float)parse_double(flag_value(args, i), a);
        else if (a == "--top-k") gp.sampling.top_k = parse_int(flag_value(args, i), a);
        else if (a == "--top-p") gp.sampling.top_p = (float)parse_double(flag_value(args, i), a);
        else if (a == "--min-p") gp.sampling.min_p = (float)parse_double(flag_value(args, i), a);
        else if (a == "--repeat-penalty") gp.sampling.repeat_penalty = (float)parse_double(flag_value(args, i), a);
        else if (a == "--seed") gp.sampling.seed = (uint64_t)parse_int(flag_value(args, i), a);
        else if (a == "--threads") ep.context.n_threads = parse_int(flag_value(args, i), a);
        else if (a == "--ctx") ep.context.n_ctx = parse_int(flag_value(args, i), a);
        else if (a == "--stop") gp.stop.push_back(flag_value(args, i));
        else if (a == "--backend") {
            backend = flag_value(args, i);
            if (backend != "cpu" && backend != "auto" && backend != "cuda") throw UsageError{"--backend must be cpu, cuda or auto"};
        } else if (a == "--kv") {
            const std::string& k = flag_value(args, i);
            if (k == "turbo") ep.context.turbo_kv = true;
            else if (k != "f16") throw UsageError{"--kv must be f16 or turbo"};
        } else throw UsageError{"unknown option " + a};
    }
    if (model.empty()) throw UsageError{"-m MODEL is required"};
    if (prompt.empty()) throw UsageError{"-p PROMPT is required"};

    ep.make_context = make_backend_factory(
        backend, [](const std::string& why) { std::fprintf(stderr, "tandem: warning: %s\n", why.c_str()); },
        [](const std::string& note) { std::fprintf(stderr, "tandem: %s\n", note.c_str()); });
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
    const Generation g = engine->generate(prompt, gp, [](std::string_view piece) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
        return true;
    });
    std::printf("\n");
    std::fprintf(stderr, "tandem: %lld prompt tokens in %.1f ms, %lld generated, first token %.1f ms, %.1f tok/s, finish: %s\n",
                 (long long)g.usage.prompt_tokens, g.usage.prompt_ms, (long long)g.usage.completion_tokens, g.usage.ttft_ms,
                 g.usage.decode_tokens_per_s(), finish_reason_name(g.finish));
    return 0;
}

}  // namespace tandem::cli
