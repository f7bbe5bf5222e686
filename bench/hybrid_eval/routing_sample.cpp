// Sampling continuations with one shared prefill, and teacher-forced log-likelihoods.
#include "routing_sample.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "routing_data.h"

namespace tandem::eval {

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

SampleResult sample_continuations(Engine& engine, const std::vector<int32_t>& prompt, const SampleOptions& opt,
                                  uint64_t seed) {
    if (opt.samples < 1) throw std::invalid_argument("samples must be >= 1");
    if (opt.max_tokens < 1) throw std::invalid_argument("max_tokens must be >= 1");
    SampleResult out;
    for (int i = 0; i < opt.samples; i++) {
        GenerateParams gp;
        gp.max_tokens = opt.max_tokens;
        gp.sampling = opt.sampling;
        gp.sampling.seed = splitmix64(seed + (uint64_t)i);
        std::string text;
        // Stop as soon as the first sentence is complete (its end is known one token later,
        // when the whitespace after the terminator arrives).
        Generation g = engine.generate_tokens(prompt, gp, [&](std::string_view piece) {
            text.append(piece);
            return !first_sentence_complete(text);
        });
        out.sentences.push_back(first_sentence(g.text));
        out.generated_tokens += g.usage.completion_tokens;
        out.evaluated_prompt_tokens += g.usage.prompt_tokens - g.usage.reused_tokens;
    }
    // Leave the cache holding exactly the prompt (one token evaluated) for the next user.
    engine.prefill(prompt);
    return out;
}

// log softmax(row)[target], in double.
static double log_prob_at(const float* row, int64_t n_vocab, int32_t target) {
    double mx = row[0];
    for (int64_t v = 1; v < n_vocab; v++) mx = std::max(mx, (double)row[v]);
    double sum = 0;
    for (int64_t v = 0; v < n_vocab; v++) sum += std::exp((double)row[v] - mx);
    return (double)row[target] - mx - std::log(sum);
}

double continuation_logprob_mean(Engine& engine, const std::vector<int32_t>& prompt,
                                 const std::vector<int32_t>& continuation) {
    if (prompt.empty() || continuation.empty()) throw std::invalid_argument("prompt and continuation must be non-empty");
    const int64_t nv = engine.model().config().n_vocab;
    ComputeContext& ctx = engine.context();
    if ((int64_t)(prompt.size() + continuation.size()) > ctx.n_ctx())
        throw ContextFull("prompt + continuation of " + std::to_string(prompt.size() + continuation.size()) +
                          " tokens do not fit the context of " + std::to_string(ctx.n_ctx()));
    for (int32_t t : continuation)
        if (t < 0 || t >= nv) throw std::invalid_argument("continuation token id " + std::to_string(t) + " out of range");
    engine.prefill(prompt);  // reuses the cached prefix; the last row predicts continuation[0]
    double sum = log_prob_at(engine.last_logits(), nv, continuation[0]);
    if (continuation.size() > 1) {
        // Rows j = 0..n-2 of this eval predict continuation[j + 1]. The engine records the
        // cache as holding `prompt`; the truncate below restores exactly that.
        ctx.eval(continuation.data(), (int64_t)continuation.size() - 1, /*all_logits=*/true);
        for (size_t j = 0; j + 1 < continuation.size(); j++)
            sum += log_prob_at(ctx.logits() + j * nv, nv, continuation[j + 1]);
        ctx.truncate((int64_t)prompt.size());
    }
    return sum / (double)continuation.size();
}

PromptTokens tokenize_prompt_and_truth(const Tokenizer& tok, const std::string& prefix, const std::string& gap,
                                       const std::string& truth) {
    if (prefix.empty() || truth.empty()) throw std::invalid_argument("prefix and truth must be non-empty");
    PromptTokens p;
    p.prompt = tok.encode(prefix, tok.add_bos());
    std::vector<int32_t> joined = tok.encode(prefix + gap + truth, tok.add_bos());
    if (joined.size() > p.prompt.size() && std::equal(p.prompt.begin(), p.prompt.end(), joined.begin())) {
        p.truth.assign(joined.begin() + (ptrdiff_t)p.prompt.size(), joined.end());
    } else {
        // The prefix's last token merged with what follows: tokenize the truth on its own.
        p.truth = tok.encode(gap + truth, false);
    }
    return p;
}

}  // namespace tandem::eval
