// engine-cpu-time MODEL [--runs R] [--kernels PATH] [--prompt N] [--kv f16|turbo]: prompt (N
// tokens, default 512) and decode (128 tokens after it) tokens/s of a CPU InferenceContext with
// ONE thread and the F16 or Turbo KV cache, timed by that thread's CPU time (best of R runs), so
// the figures hold while other processes share the machine. --kernels
// forces a CPU kernel path (cpu::force_kernel_path, which in this tree also caps attention and
// SwiGLU at that path's vector code; exits 1 where this tree or CPU has none of that name).
// It uses only Model::load, InferenceContext, eval, truncate and
// force_kernel_path, so bench/cpu-compare.sh also builds it against the base tree's libraries
// for a same-run before/after. Prints one JSON object.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tandem/context.h"
#include "tandem/cpu_matmul.h"

using namespace tandem;

static double cpu_seconds() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char** argv) {
    const char* usage = "usage: engine-cpu-time MODEL [--runs R] [--kernels PATH] [--prompt N] [--kv f16|turbo]\n";
    if (argc < 2 || argc % 2 != 0) { std::fprintf(stderr, "%s", usage); return 2; }
    int runs = 3, n_prompt = 512;
    std::string kernels, kv = "f16";
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--runs") runs = std::max(1, std::atoi(argv[i + 1]));
        else if (a == "--kernels") kernels = argv[i + 1];
        else if (a == "--prompt") n_prompt = std::atoi(argv[i + 1]);
        else if (a == "--kv") kv = argv[i + 1];
        else { std::fprintf(stderr, "%s", usage); return 2; }
    }
    if (n_prompt < 8 || (kv != "f16" && kv != "turbo")) { std::fprintf(stderr, "%s", usage); return 2; }
    const int n_decode = 128;
    try {
        if (!kernels.empty()) cpu::force_kernel_path(kernels.c_str());
        auto model = Model::load(argv[1]);
        ContextParams cp;
        cp.n_ctx = n_prompt + n_decode;
        cp.n_batch = n_prompt;
        cp.n_threads = 1;
        cp.turbo_kv = kv == "turbo";
        InferenceContext ctx(model, cp);
        const int64_t nv = model->config().n_vocab;
        std::vector<int32_t> toks(n_prompt);
        for (int i = 0; i < n_prompt; i++) toks[(size_t)i] = (int32_t)((i * 2654435761u) % (uint32_t)nv);
        ctx.eval(toks.data(), 8);  // warm-up
        double best_p = 1e30, best_d = 1e30;
        for (int r = 0; r < runs; r++) {
            ctx.truncate(0);
            double t0 = cpu_seconds();
            ctx.eval(toks.data(), n_prompt);
            best_p = std::min(best_p, cpu_seconds() - t0);
            ctx.truncate(0);
            int32_t t = toks[0];
            t0 = cpu_seconds();
            for (int i = 0; i < n_decode; i++) {
                ctx.eval(&t, 1);
                t = (int32_t)((t * 31 + 7) % nv);
            }
            best_d = std::min(best_d, cpu_seconds() - t0);
        }
        std::printf("{\"model\": \"%s\", \"threads\": 1, \"kernel_path\": \"%s\", \"kv\": \"%s\", "
                    "\"prompt_tokens\": %d, \"prompt_tokens_per_s\": %.2f, \"decode_tokens_per_s\": %.2f}\n",
                    argv[1], cpu::kernel_path_name(), kv.c_str(), n_prompt, n_prompt / best_p, n_decode / best_d);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "engine-cpu-time: %s\n", e.what());
        return 1;
    }
    return 0;
}
