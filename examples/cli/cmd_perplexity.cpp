// `tandem perplexity -m MODEL -f FILE [-c N]`: llama.cpp's method. The tokenized file is
// split into non-overlapping windows of C tokens (BOS first in each window when the model
// uses BOS); only the second half of each window is scored. Last line:
// `perplexity: <ppl> +/- <stderr>` where stderr = ppl * sqrt(var(nll) / (N - 1)).
// --kv turbo: the Turbo KV cache; head bits from --turbo-2bit FRAC (calibrated on the first
// window) or else from MODEL.heads.json when present (tandem calibrate-heads), else all 4-bit.
// --backend cpu|cuda|auto (default cpu) and -ngl N as in `tandem run`.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "commands.h"
#include "progress.h"
#include "tandem/backend.h"
#include "tandem/context.h"
#include "tandem/cpu_matmul.h"
#include "tandem/tokenizer.h"

namespace tandem::cli {

std::string help_perplexity() {
    const ContextParams cp;
    char buf[1536];
    std::snprintf(buf, sizeof buf,
                  "usage: tandem perplexity -m MODEL -f FILE [options]\n"
                  "Perplexity of MODEL on the text of FILE (llama.cpp's method: windows of -c tokens, the\n"
                  "second half of each scored). Last line on stdout: perplexity: PPL +/- ERR.\n\n"
                  "  -m, --model PATH          GGUF model (required)\n"
                  "  -f, --file PATH           the text (required)\n"
                  "  -c, --ctx-size N          window in tokens (default: 512)\n"
                  "  -t, --threads N           CPU threads; 0 = all hardware threads (default: %d)\n"
                  "  -ngl, --n-gpu-layers N    0 = the CPU; any other value = the GPU when there is one, for all\n"
                  "                            layers, else the CPU with a warning (default: 0)\n"
                  "      --backend B           cpu, cuda or auto; the last of -ngl and --backend wins (default: cpu)\n"
                  "      --max-chunks N        score at most N windows; <= 0 = all (default: all)\n"
                  "      --kernels PATH        CPU kernel path (avx2, avx512-vnni, amx-bf16, ...; default: the best)\n"
                  "      --kv f16|f32|turbo    KV cache type (default: f16)\n"
                  "      --turbo-2bit FRAC     with --kv turbo: this fraction of KV heads at 2 bits, calibrated on\n"
                  "                            the first window (default: MODEL.heads.json if present, else 0)\n"
                  "  -h, --help                this text\n",
                  cp.n_threads);
    return buf;
}

int cmd_perplexity(const Args& args) {
    std::string model_path, file;
    int64_t n_ctx = 512, max_chunks = -1;
    float turbo_frac = 0.0f;  // fraction of KV heads at 2 bits, chosen by calibration
    ContextParams cp;
    std::string backend = "cpu";
    for (size_t i = 0; i < args.size(); i++) {
        const std::string& a = args[i];
        if (a == "-m" || a == "--model") model_path = flag_value(args, i);
        else if (a == "-f" || a == "--file") file = flag_value(args, i);
        else if (a == "-c" || a == "--ctx-size" || a == "--ctx") n_ctx = parse_int(flag_value(args, i), a);
        else if (a == "-t" || a == "--threads") cp.n_threads = parse_int(flag_value(args, i), a);
        else if (a == "-ngl" || a == "--n-gpu-layers" || a == "--gpu-layers")
            backend = backend_for_gpu_layers(parse_int(flag_value(args, i), a));
        else if (a == "--max-chunks") max_chunks = parse_int(flag_value(args, i), a);
        else if (a == "--kv") {
            const std::string& k = flag_value(args, i);
            if (k == "f16") cp.kv_type = GgmlType::F16;
            else if (k == "f32") cp.kv_type = GgmlType::F32;
            else if (k == "turbo") cp.turbo_kv = true;
            else throw UsageError{"--kv must be f16, f32 or turbo"};
        } else if (a == "--turbo-2bit") turbo_frac = (float)parse_double(flag_value(args, i), a);
        else if (a == "--kernels") cpu::force_kernel_path(flag_value(args, i).c_str());
        else if (a == "--backend") {
            backend = flag_value(args, i);
            if (backend != "cpu" && backend != "auto" && backend != "cuda") throw UsageError{"--backend must be cpu, cuda or auto"};
        } else unknown_argument(a);
    }
    if (cp.n_threads < 0) throw UsageError{"-t must be >= 0"};
    if (model_path.empty() || file.empty()) throw UsageError{"-m MODEL and -f FILE are required"};
    if (n_ctx < 4) throw UsageError{"--ctx must be at least 4"};
    std::ifstream in(file, std::ios::binary);
    if (!in) throw std::runtime_error(file + ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();

    auto model = Model::load(model_path);
    const Tokenizer tok = Tokenizer::from_gguf(model->file());
    const bool bos = tok.add_bos() && tok.bos() >= 0;
    std::vector<int32_t> tokens = tok.encode(ss.str(), bos);
    int64_t n_chunk = (int64_t)tokens.size() / n_ctx;
    if (max_chunks > 0) n_chunk = std::min(n_chunk, max_chunks);
    if (n_chunk < 1)
        throw std::runtime_error(file + ": " + std::to_string(tokens.size()) + " tokens is less than one window of " +
                                 std::to_string(n_ctx));
    cp.n_ctx = n_ctx;
    cp.n_batch = n_ctx;
    if (cp.turbo_kv && turbo_frac > 0) {
        // head-wise mixed precision: calibrate on the text's first window (as `tandem
        // calibrate-heads` would on calibration text)
        std::vector<int32_t> calib(tokens.begin(), tokens.begin() + std::min<int64_t>((int64_t)tokens.size(), n_ctx));
        cp.turbo_head_bits = calibrate_turbo_head_bits(model, calib, turbo_frac);
    }
    auto factory = make_backend_factory(
        backend, warn_gpu_not_used, [](const std::string& note) { std::fprintf(stderr, "perplexity: %s\n", note.c_str()); });
    std::unique_ptr<ComputeContext> owned = factory ? factory(model, cp) : std::make_unique<InferenceContext>(model, cp);
    ComputeContext& ctx = *owned;
    if (auto* cpu_ctx = dynamic_cast<InferenceContext*>(&ctx))
        std::fprintf(stderr, "perplexity: KV cache %s, %.0f bytes per token\n",
                     !cp.turbo_kv ? type_traits(cp.kv_type).name
                     : turbo_frac > 0 ? ("turbo (" + std::to_string((int)(turbo_frac * 100)) + "% of heads at 2 bits by --turbo-2bit)").c_str()
                                      : "turbo",
                     cpu_ctx->kv_bytes_per_token());
    std::fprintf(stderr, "perplexity: backend %s\n", ctx.backend_name());
    const int64_t nv = model->config().n_vocab, first = n_ctx / 2;
    std::fprintf(stderr, "perplexity: %zu tokens, %lld windows of %lld, scoring positions %lld..%lld of each\n",
                 tokens.size(), (long long)n_chunk, (long long)n_ctx, (long long)first, (long long)n_ctx - 2);
    double nll = 0, nll2 = 0;
    int64_t count = 0;
    ProgressBar bar("perplexity");
    for (int64_t c = 0; c < n_chunk; c++) {
        std::vector<int32_t> batch(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
        if (bos) batch[0] = tok.bos();
        ctx.truncate(0);
        ctx.eval(batch.data(), n_ctx, true);
        for (int64_t j = first; j < n_ctx - 1; j++) {
            const float* l = ctx.logits() + j * nv;
            double mx = l[0];
            for (int64_t v = 1; v < nv; v++) mx = std::max(mx, (double)l[v]);
            double sum = 0;
            for (int64_t v = 0; v < nv; v++) sum += std::exp((double)l[v] - mx);
            const double nl = -((double)l[tokens[(size_t)(c * n_ctx + j + 1)]] - mx - std::log(sum));
            nll += nl;
            nll2 += nl * nl;
            count++;
        }
        bar.interrupt();
        std::fprintf(stderr, "[%lld] %.4f\n", (long long)(c + 1), std::exp(nll / count));
        bar.update((double)(c + 1) / n_chunk);
    }
    bar.done();
    const double mean = nll / count, var = nll2 / count - mean * mean;
    const double ppl = std::exp(mean), err = count > 1 ? ppl * std::sqrt(std::max(0.0, var) / (count - 1)) : 0;
    std::printf("perplexity: %.4f +/- %.4f\n", ppl, err);
    return 0;
}

}  // namespace tandem::cli
