// Engine speed measurement (see speed.h).
#include "tandem/speed.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <vector>

#include "tandem/cpu_peak.h"

namespace tandem {

uint64_t decode_weight_bytes(const Model& m) {
    uint64_t bytes = 0;
    for (const auto& t : m.file().tensors()) bytes += t.n_bytes;
    const GgufTensorInfo* emb = m.file().find_tensor("token_embd.weight");
    if (emb && m.file().find_tensor("output.weight")) bytes -= emb->n_bytes - emb->n_bytes / (uint64_t)m.config().n_vocab;
    return bytes;
}

double prompt_matmul_ops(const Model& m, int n_prompt) {
    auto params = [](const WeightView& w) { return (double)w.rows * (double)w.cols; };
    double layer = 0;
    for (const LayerWeights& L : m.layers)
        layer += params(L.wq) + params(L.wk) + params(L.wv) + params(L.wo) + params(L.w_gate) + params(L.w_up) +
                 params(L.w_down);
    return 2.0 * (layer * n_prompt + params(m.output));
}

static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

SpeedResult measure_speed(ComputeContext& ctx, int n_prompt, int n_decode, int runs, bool cpu_time) {
    if (n_prompt < 1 || n_decode < 1 || runs < 1) throw std::invalid_argument("token counts and runs must be positive");
    if (ctx.n_ctx() < n_prompt + n_decode) throw std::invalid_argument("the context is shorter than prompt + decode tokens");
    auto now = [cpu_time] {
        if (cpu_time) return cpu::thread_cpu_seconds();
        return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    };
    auto secs = [&](double t) { return now() - t; };
    const int64_t nv = ctx.model().config().n_vocab;
    std::vector<int32_t> toks((size_t)n_prompt);
    for (int i = 0; i < n_prompt; i++) toks[(size_t)i] = (int32_t)((i * 2654435761u) % (uint32_t)nv);
    ctx.truncate(0);
    ctx.eval(toks.data(), std::min(n_prompt, 8));  // warm-up: page in the weights
    std::vector<double> pp, tg;
    for (int r = 0; r < runs; r++) {
        ctx.truncate(0);
        double t0 = now();
        ctx.eval(toks.data(), n_prompt);
        pp.push_back(n_prompt / secs(t0));
        ctx.truncate(0);
        int32_t t = toks[0];
        t0 = now();
        for (int i = 0; i < n_decode; i++) {
            ctx.eval(&t, 1);
            t = (int32_t)((t * 31 + 7) % nv);
        }
        tg.push_back(n_decode / secs(t0));
    }
    ctx.truncate(0);
    SpeedResult r;
    r.prompt_tokens_per_s = median(pp);
    r.decode_tokens_per_s = median(tg);
    r.weight_bytes_per_token = decode_weight_bytes(ctx.model());
    return r;
}

}  // namespace tandem
