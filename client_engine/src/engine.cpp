// Generation: prefix reuse, the sampling loop, streaming with stop strings, cancellation.
#include "tandem/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "tandem/gguf.h"

namespace tandem {

const char* finish_reason_name(FinishReason r) {
    switch (r) {
        case FinishReason::Length: return "length";
        case FinishReason::Stop: return "stop";
        case FinishReason::EndOfText: return "eos";
        case FinishReason::Cancelled: return "cancelled";
        case FinishReason::ContextFull: return "context_full";
    }
    return "?";
}

using Clock = std::chrono::steady_clock;
static double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// Reads one byte of every page of the weights so the first token does not pay for page
// faults, reporting progress. The mapping stays read-only and shared with the page cache.
static void page_in(const Model& m, const std::function<void(double)>& progress) {
    const auto& ts = m.file().tensors();
    uint64_t total = 0, done = 0;
    for (const auto& t : ts) total += t.n_bytes;
    volatile uint8_t sink = 0;
    uint64_t next_report = 0;
    for (const auto& t : ts) {
        const uint8_t* p = m.file().tensor_data(t);
        for (uint64_t off = 0; off < t.n_bytes; off += 4096) sink ^= p[off];
        done += t.n_bytes;
        if (progress && done >= next_report) {
            progress(total ? (double)done / total : 1.0);
            next_report = done + total / 100;
        }
    }
    if (progress) progress(1.0);
}

Engine::Engine(std::shared_ptr<const Model> m, Tokenizer t, std::unique_ptr<ComputeContext> ctx)
    : model_(std::move(m)), tokenizer_(std::move(t)), ctx_(std::move(ctx)) {}

std::unique_ptr<Engine> Engine::load(const std::string& path, const EngineParams& params) {
    auto model = Model::load(path);
    Tokenizer tok = Tokenizer::from_gguf(model->file());
    if ((int64_t)tok.n_tokens() != model->config().n_vocab)
        throw ModelError(path + ": tokenizer has " + std::to_string(tok.n_tokens()) + " tokens but the model's vocabulary is " +
                         std::to_string(model->config().n_vocab));
    page_in(*model, params.load_progress);
    std::unique_ptr<ComputeContext> ctx = params.make_context ? params.make_context(model, params.context)
                                                              : std::make_unique<InferenceContext>(model, params.context);
    if (!ctx) throw std::invalid_argument(path + ": the context factory made no context");
    return std::unique_ptr<Engine>(new Engine(std::move(model), std::move(tok), std::move(ctx)));
}

int64_t Engine::prefill(const std::vector<int32_t>& prompt) {
    std::lock_guard<std::mutex> lock(mu_);
    return prefill_locked(prompt).reused;
}

size_t Engine::cached_prefix(const std::vector<int32_t>& prompt) {
    std::lock_guard<std::mutex> lock(mu_);
    size_t n = 0;
    while (n < cached_.size() && n < prompt.size() && cached_[n] == prompt[n]) n++;
    return n;
}

Engine::Prefilled Engine::prefill_locked(const std::vector<int32_t>& prompt, const uint64_t* epoch,
                                         const PromptProgress& progress) {
    if (prompt.empty()) throw std::invalid_argument("prompt is empty (no tokens to evaluate)");
    if ((int64_t)prompt.size() > ctx_->n_ctx())
        throw ContextFull("prompt of " + std::to_string(prompt.size()) + " tokens does not fit the context of " +
                          std::to_string(ctx_->n_ctx()) + " tokens");
    size_t common = 0;
    const size_t limit = std::min(cached_.size(), prompt.size() - 1);  // always evaluate the last token
    while (common < limit && cached_[common] == prompt[common]) common++;
    common = (size_t)ctx_->truncate((int64_t)common);  // the Turbo cache may keep fewer
    cached_.resize(common);
    // one forward pass at a time (the context would split the run into the same passes, with the
    // logits of the last only), so that a cancel() lands between them
    const size_t pass = (size_t)std::max<int64_t>(1, ctx_->n_batch());
    const bool report = progress && prompt.size() - common > 1;
    for (size_t at = common; at < prompt.size();) {
        if (epoch && cancel_epoch_.load() != *epoch) return {(int64_t)common, false};
        const size_t end = std::min(prompt.size(), at + pass);
        if (end == prompt.size()) ctx_->eval(prompt.data() + at, (int64_t)(end - at));
        else ctx_->eval_no_logits(prompt.data() + at, (int64_t)(end - at));
        cached_.insert(cached_.end(), prompt.begin() + (long)at, prompt.begin() + (long)end);
        at = end;
        if (report && !progress((int64_t)end, (int64_t)prompt.size())) return {(int64_t)common, false};
    }
    return {(int64_t)common, true};
}

// log-softmax of one logits row at `target`, and the row's entropy, in double.
static void row_stats(const float* l, int64_t nv, int32_t target, double* logprob, double* entropy) {
    double mx = l[0];
    for (int64_t v = 1; v < nv; v++) mx = std::max(mx, (double)l[v]);
    double sum = 0, ex = 0;
    for (int64_t v = 0; v < nv; v++) {
        const double e = std::exp((double)l[v] - mx);
        sum += e;
        ex += e * ((double)l[v] - mx);
    }
    const double lse = std::log(sum);
    if (logprob) *logprob = (double)l[target] - mx - lse;
    if (entropy) *entropy = lse - ex / sum;
}

Engine::Signals Engine::signals(const std::vector<int32_t>& tokens, int k) {
    std::lock_guard<std::mutex> lock(mu_);
    if (tokens.empty()) throw std::invalid_argument("signals need at least one token");
    if ((int64_t)tokens.size() + k > ctx_->n_ctx()) throw ContextFull("query too long for the context");
    const int64_t nv = model_->config().n_vocab;
    ctx_->truncate(0);
    cached_.clear();
    ctx_->eval(tokens.data(), (int64_t)tokens.size(), true);
    Signals s;
    for (size_t i = 1; i < tokens.size(); i++) {
        double lp;
        row_stats(ctx_->logits() + (i - 1) * nv, nv, tokens[i], &lp, nullptr);
        s.logprob_mean += lp;
    }
    if (tokens.size() > 1) s.logprob_mean /= (double)(tokens.size() - 1);
    std::vector<float> last(ctx_->logits() + (tokens.size() - 1) * nv, ctx_->logits() + tokens.size() * nv);
    cached_ = tokens;
    for (int i = 0; i < k; i++) {
        double h;
        row_stats(last.data(), nv, 0, nullptr, &h);
        s.gen_entropy += h;
        if (i + 1 == k) break;
        const int32_t next = (int32_t)(std::max_element(last.begin(), last.end()) - last.begin());
        ctx_->eval(&next, 1);
        cached_.push_back(next);
        last.assign(ctx_->logits(), ctx_->logits() + nv);
    }
    if (k > 0) s.gen_entropy /= k;
    return s;
}

Generation Engine::generate(const std::string& prompt, const GenerateParams& params, const PieceCallback& on_piece) {
    const bool bos = params.add_bos.value_or(tokenizer_.add_bos());
    return generate_tokens(tokenizer_.encode(prompt, bos), params, on_piece);
}

// Holds back streamed text that could still turn into a stop string.
static size_t safe_prefix_len(const std::string& text, const std::vector<std::string>& stops) {
    size_t hold = 0;
    for (const auto& s : stops)
        for (size_t k = std::min(s.size() - 1, text.size()); k > hold; k--)
            if (text.compare(text.size() - k, k, s, 0, k) == 0) { hold = k; break; }
    return text.size() - hold;
}

Generation Engine::generate_tokens(const std::vector<int32_t>& prompt, const GenerateParams& params,
                                   const PieceCallback& on_piece) {
    const uint64_t epoch = cancel_epoch_.load();
    std::lock_guard<std::mutex> lock(mu_);
    if (params.max_tokens < 0) throw std::invalid_argument("max_tokens must be >= 0");
    for (const auto& s : params.stop)
        if (s.empty()) throw std::invalid_argument("stop strings must not be empty");
    Sampler sampler(params.sampling, model_->config().n_vocab);
    // Plain greedy needs only the argmax, which a GPU context computes where the logits are
    // (one id copied back instead of n_vocab floats). The CPU keeps the sampler path.
    const SamplerParams& sp = params.sampling;
    const bool plain_greedy = ctx_->prefers_argmax() && sp.temperature <= 0 && sp.repeat_penalty == 1.0f && sp.frequency_penalty == 0.0f &&
                              sp.presence_penalty == 0.0f && sp.logit_bias.empty() && !params.logit_filter;
    const auto t0 = Clock::now();
    Generation g;
    g.usage.prompt_tokens = (int64_t)prompt.size();
    const Prefilled pre = prefill_locked(prompt, &epoch, params.on_prompt_progress);
    g.usage.reused_tokens = pre.reused;
    g.usage.prompt_ms = ms_since(t0);
    if (!pre.complete) {  // cancelled while evaluating the prompt
        g.finish = FinishReason::Cancelled;
        return g;
    }

    // The text continues the prompt's (an SPM first piece keeps its space) unless the prompt
    // holds only control tokens such as BOS.
    const bool prompt_has_text =
        std::any_of(prompt.begin(), prompt.end(), [&](int32_t id) { return !tokenizer_.token_bytes(id).empty(); });
    StreamDecoder decoder(tokenizer_, /*render_special=*/false, /*at_text_start=*/!prompt_has_text);
    std::vector<int32_t> history = prompt;
    std::vector<float> filtered;  // (n_vocab) this step's logits after params.logit_filter
    std::string pending;  // decoded text not yet streamed (could be the start of a stop string)
    Clock::time_point t_first;
    auto emit = [&](size_t n) -> bool {
        if (n == 0) return true;
        g.text.append(pending, 0, n);
        const bool go_on = !on_piece || on_piece(std::string_view(pending).substr(0, n));
        pending.erase(0, n);
        return go_on;
    };
    g.finish = FinishReason::Length;
    for (int i = 0; i < params.max_tokens; i++) {
        if (cancel_epoch_.load() != epoch) { g.finish = FinishReason::Cancelled; break; }
        if (i > 0) {
            if (ctx_->n_past() >= ctx_->n_ctx()) { g.finish = FinishReason::ContextFull; break; }
            ctx_->eval(&g.tokens.back(), 1);
            cached_.push_back(g.tokens.back());
        }
        const float* logits = plain_greedy ? nullptr : ctx_->logits();
        if (params.logit_filter) {
            filtered.assign(logits, logits + model_->config().n_vocab);
            params.logit_filter(filtered.data(), (int64_t)filtered.size(), g.tokens);
            logits = filtered.data();
        }
        const int32_t tok = plain_greedy ? ctx_->argmax() : sampler.sample(logits, history);
        if (i == 0) t_first = Clock::now(), g.usage.ttft_ms = ms_since(t0);
        if (params.stop_at_eos && tok == tokenizer_.eos()) { g.finish = FinishReason::EndOfText; break; }
        g.tokens.push_back(tok);
        history.push_back(tok);
        decoder.push(tok, pending);
        // a stop string anywhere in the unstreamed text ends generation before it
        size_t cut = std::string::npos;
        for (const auto& s : params.stop) cut = std::min(cut, pending.find(s));
        if (cut != std::string::npos) {
            pending.resize(cut);
            emit(cut);
            g.finish = FinishReason::Stop;
            break;
        }
        if (!emit(safe_prefix_len(pending, params.stop))) { g.finish = FinishReason::Cancelled; break; }
    }
    g.usage.completion_tokens = (int64_t)g.tokens.size();
    if (g.finish != FinishReason::Stop && g.finish != FinishReason::Cancelled) {
        decoder.finish(pending);
        emit(pending.size());
    }
    if (!g.tokens.empty()) g.usage.decode_ms = ms_since(t_first);
    return g;
}

}  // namespace tandem
