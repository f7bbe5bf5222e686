// The local text generator: a model, its tokenizer and one inference context, with prefix
// reuse, streaming, stop strings and cancellation.
//
// Thread safety: generate()/prefill() calls are serialized by an internal mutex; cancel() may
// be called from any thread at any time and stops the generation in progress within one token,
// or within one forward pass of the prompt (ComputeContext::n_batch tokens: 256 on the CPU,
// 512 on the GPU by default) while it is still evaluating the prompt.
// Context overflow policy: a prompt longer than n_ctx throws ContextFull; generation that
// fills the context stops with FinishReason::ContextFull (no sliding, no garbage).
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/context.h"
#include "tandem/sampler.h"
#include "tandem/tokenizer.h"

namespace tandem {

// Makes the compute context for a loaded model (the backend choice). Empty: the CPU
// InferenceContext. tandem run uses it to pick the CUDA GpuContext.
using ContextFactory =
    std::function<std::unique_ptr<ComputeContext>(std::shared_ptr<const Model>, const ContextParams&)>;

struct EngineParams {
    ContextParams context;
    ContextFactory make_context;
    // Called with a fraction in [0, 1] while the weights are paged in; may be empty.
    std::function<void(double)> load_progress;
};

// Called before each token is chosen, with that step's logits (n_vocab floats, a copy the
// callback may change: -INFINITY bans a token) and the tokens generated so far. Runs on the
// generating thread; with it, a GPU context copies the logits back instead of taking its
// on-device argmax.
using LogitFilter = std::function<void(float* logits, int64_t n_vocab, const std::vector<int32_t>& generated)>;

// Called on the generating thread after each forward pass of the prompt (n_batch tokens),
// with the prompt tokens the KV cache holds so far (reused ones included) and the prompt's
// length; the last call has cached == total. Not called when one token is all there is to
// evaluate (a fully reused prompt's last token). Return false to stop: the call then ends with
// FinishReason::Cancelled, and the passes done stay cached for the next call.
using PromptProgress = std::function<bool(int64_t cached, int64_t total)>;

struct GenerateParams {
    int max_tokens = 128;
    SamplerParams sampling;
    std::vector<std::string> stop;   // generation ends before the first occurrence of any
    std::optional<bool> add_bos;     // default: the model's tokenizer.ggml.add_bos_token
    bool stop_at_eos = true;
    LogitFilter logit_filter;        // empty: none
    PromptProgress on_prompt_progress;  // empty: none
};

enum class FinishReason { Length, Stop, EndOfText, Cancelled, ContextFull };
const char* finish_reason_name(FinishReason r);

struct Usage {
    int64_t prompt_tokens = 0;      // tokens in the prompt
    int64_t reused_tokens = 0;      // of those, taken from the KV cache (prefix reuse)
    int64_t completion_tokens = 0;  // tokens generated
    double prompt_ms = 0;           // prefill time
    double ttft_ms = 0;             // call start to the first generated token
    double decode_ms = 0;           // after the first token to the end
    double decode_tokens_per_s() const { return completion_tokens > 1 && decode_ms > 0 ? (completion_tokens - 1) * 1000.0 / decode_ms : 0; }
};

struct Generation {
    std::string text;              // what was streamed (stop string excluded)
    std::vector<int32_t> tokens;   // generated ids
    FinishReason finish = FinishReason::Length;
    Usage usage;
};

// Receives each new piece of text (always whole UTF-8 sequences). Return false to stop
// (FinishReason::Cancelled).
using PieceCallback = std::function<bool(std::string_view piece)>;

class Engine {
public:
    // Loads the model and tokenizer and allocates the context. Throws GgufError, ModelError,
    // TokenizerError or std::invalid_argument with the file and reason.
    static std::unique_ptr<Engine> load(const std::string& model_path, const EngineParams& params = {});

    // Tokenizes `prompt` (user text: control tokens are never parsed from it) and generates.
    Generation generate(const std::string& prompt, const GenerateParams& params, const PieceCallback& on_piece = {});
    Generation generate_tokens(const std::vector<int32_t>& prompt, const GenerateParams& params,
                               const PieceCallback& on_piece = {});

    // Makes the KV cache hold exactly `prompt`, evaluating only what differs from what it held
    // (at least the last token, so that last_logits() is fresh). Returns the reused count.
    int64_t prefill(const std::vector<int32_t>& prompt);
    // How many leading tokens of `prompt` the KV cache holds now: what prefill() or
    // generate_tokens() would reuse (they evaluate at least the last token even when all are
    // cached). Waits for a running generation.
    size_t cached_prefix(const std::vector<int32_t>& prompt);
    const float* last_logits() const { return ctx_->logits(); }

    void cancel() { cancel_epoch_.fetch_add(1); }

    // The small model's own view of a query (router features): the mean log-probability of
    // each token of `tokens` after its predecessors (tokens[0] is not scored), and the mean
    // entropy (nats) of the next-token distribution over k greedy steps after them. Evaluates
    // from position 0: the KV cache then holds `tokens` and k - 1 greedy tokens.
    struct Signals {
        double logprob_mean = 0;
        double gen_entropy = 0;
    };
    Signals signals(const std::vector<int32_t>& tokens, int k);

    const Tokenizer& tokenizer() const { return tokenizer_; }
    const Model& model() const { return *model_; }
    ComputeContext& context() { return *ctx_; }

private:
    Engine(std::shared_ptr<const Model> m, Tokenizer t, std::unique_ptr<ComputeContext> ctx);
    // prefill() with mu_ held. With `epoch`, it stops before the next forward pass once
    // cancel() has been called since that epoch was read, or once `progress` returned false:
    // the cache then holds the passes evaluated (later calls reuse them) and `complete` is false.
    struct Prefilled {
        int64_t reused = 0;
        bool complete = true;
    };
    Prefilled prefill_locked(const std::vector<int32_t>& prompt, const uint64_t* epoch = nullptr,
                             const PromptProgress& progress = {});

    std::shared_ptr<const Model> model_;
    Tokenizer tokenizer_;
    std::unique_ptr<ComputeContext> ctx_;
    std::vector<int32_t> cached_;  // the tokens whose K/V the context holds, in order
    std::mutex mu_;
    std::atomic<uint64_t> cancel_epoch_{0};
};

}  // namespace tandem
