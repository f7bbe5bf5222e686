// tandem-cloud --llm-url: memory notes and /v1/chat/completions produced by an upstream
// OpenAI-compatible server (vLLM, SGLang, llama.cpp's server, a hosted API, or another
// `tandem-cloud --model`) instead of the built-in GGUF model.
//
// The upstream is reached through cloud_adapter's CloudClient (one background thread, kept-alive
// connections), which brings the failure handling:
//   - retries with exponential backoff and jitter on connection errors, timeouts, 429 and 5xx,
//     waiting the upstream's Retry-After when it sends one (up to 30 s; longer ends the call);
//   - a connect timeout and an idle timeout (no byte for timeout_s ends the attempt), so a hung
//     upstream costs at most max_attempts * timeout_s plus the backoff;
//   - streamed answers are retried only while no text has reached the client (never repeated).
// When every attempt failed, the server's log names the upstream URL and the transport's cause
// ("LLM server http://h:8000: POST /v1/chat/completions (stream): ... Couldn't connect to
// server (4 attempts)"); the client is told the kind of failure without any address of the
// operator's network ("the upstream LLM server failed: tandem-cloud could not connect to it
// (4 attempts)").
//
// Sent upstream: POST <url>/v1/chat/completions {model?, messages, max_tokens, temperature,
// stop?, stream, stream_options: {include_usage: true}}, with "Authorization: Bearer <token>"
// when a token is set (never logged).
#pragma once
#include <memory>
#include <stdexcept>
#include <string>

#include "tandem/cloud/generator.h"
#include "tandem/cloud/llm.h"

namespace tandem {
class CloudClient;
}

namespace tandem::cloud {

struct UpstreamConfig {
    std::string url;        // the server's root, http(s)://host[:port][/prefix]; a final "/v1" is dropped
    std::string token;      // bearer token for the upstream; "" = none
    std::string model;      // "model" of every upstream request; "" = not sent (the server's default)
    double timeout_s = 60;  // connect timeout, and the longest silence within an answer
    int max_attempts = 4;   // per call, the first included
};

// The upstream could not produce an answer (unreachable, timed out, refused the token, or kept
// answering 429/5xx): what() is the message for the client (the log has the URL).
class UpstreamError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The connection to one upstream, shared by UpstreamChat and UpstreamGenerator. Throws
// std::invalid_argument on a URL that is not http(s)://... or a token with spaces.
class Upstream {
public:
    explicit Upstream(UpstreamConfig cfg);
    ~Upstream();
    const UpstreamConfig& config() const { return cfg_; }
    CloudClient& client() { return *client_; }

private:
    UpstreamConfig cfg_;
    std::unique_ptr<CloudClient> client_;
};

// Chat completions served by the upstream, streamed piece by piece to on_piece as they arrive;
// a job whose on_piece returns false (the client hung up) cancels its upstream request. Jobs run
// concurrently (the upstream batches them). A failure ends the job with finish
// "upstream_error" and a message naming the upstream (the client gets 502).
class UpstreamChat : public ChatBackend {
public:
    explicit UpstreamChat(std::shared_ptr<Upstream> upstream);
    void submit(ChatJob job) override;
    const std::string& model_name() const override { return name_; }

private:
    std::shared_ptr<Upstream> up_;
    std::string name_;
};

// Key-takeaway notes (method "llm") written by the upstream, one request per passage with the
// same prompt as the built-in model (llm.h key_takeaway_prompt) as the user message, greedy,
// stopping at a blank line; as many passages at once as notes are still wanted (a batching
// server works on them together), the notes kept in rank order. A passage the upstream rejects (4xx: too long, ...) is skipped
// with a log line; when the upstream cannot be reached at all it throws UpstreamError, so
// the memory request fails with that reason instead of silently producing no notes.
class UpstreamGenerator : public MemoryGenerator {
public:
    explicit UpstreamGenerator(std::shared_ptr<Upstream> upstream, int max_tokens = 64)
        : up_(std::move(upstream)), max_tokens_(max_tokens) {}
    std::vector<NewNote> generate(const std::string& context, const std::vector<Passage>& passages,
                                  size_t max_items) override;
    const char* method() const override { return "llm"; }

private:
    std::shared_ptr<Upstream> up_;
    int max_tokens_;
};

}  // namespace tandem::cloud
