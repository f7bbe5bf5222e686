// An upstream OpenAI-compatible server behind tandem-cloud's chat and memory notes (see
// upstream_llm.h).
#include "upstream_llm.h"

#include <algorithm>
#include <future>
#include <cstdio>
#include <mutex>

#include "tandem/cloud_adapter.h"

namespace tandem::cloud {

// ---- the connection ----------------------------------------------------------------------

static std::string server_root(std::string url) {
    while (!url.empty() && url.back() == '/') url.pop_back();
    if (url.size() >= 3 && url.compare(url.size() - 3, 3, "/v1") == 0) url.resize(url.size() - 3);
    return url;
}

Upstream::Upstream(UpstreamConfig cfg) : cfg_(std::move(cfg)) {
    cfg_.url = server_root(cfg_.url);
    const Millis timeout((int64_t)(cfg_.timeout_s * 1000));
    CloudConfig cc;
    cc.base_url = cfg_.url;
    cc.token = cfg_.token;
    cc.connect_timeout = timeout;
    cc.request_timeout = timeout;      // plain answers (memory notes: at most max_tokens each)
    cc.stream_idle_timeout = timeout;  // streamed answers: the longest silence...
    cc.stream_timeout = Millis(30 * 60 * 1000);  // ...and a bound on the whole answer
    cc.retry.max_attempts = std::max(1, cfg_.max_attempts);
    cc.retry.base_delay = Millis(250);
    cc.retry.max_delay = Millis(8000);
    cc.retry.max_retry_after = Millis(30000);
    client_ = std::make_unique<CloudClient>(std::move(cc));
}

Upstream::~Upstream() = default;

// What went wrong, for the operator's log (the URL and the transport's own words) and for the
// client (no URL or address of the operator's network: the kind of failure only).
static std::string log_line(const Upstream& up, const Outcome<ChatResult>& o) {
    return "LLM server " + up.config().url + ": " + o.message + " (" + std::to_string(o.attempts) + " attempt" +
           (o.attempts == 1 ? "" : "s") + ")";
}

static std::string client_message(const Outcome<ChatResult>& o) {
    std::string why;
    if (o.ec == cloud_errc::unauthorized) why = "it refused tandem-cloud's credentials (HTTP " + std::to_string(o.http_status) + ")";
    else if (o.ec == cloud_errc::rate_limited) why = "it kept answering 429 (rate limited)";
    else if (o.ec == cloud_errc::server_error) why = "it kept answering HTTP " + std::to_string(o.http_status);
    else if (o.ec == cloud_cond::timeout) why = "it did not answer in time";
    else if (o.ec == cloud_cond::connection) why = "tandem-cloud could not connect to it";
    else if (o.ec == cloud_errc::http_error || o.ec == cloud_errc::stream_error) why = "it refused the request: " + o.message;
    else why = "its answer was not a chat completion (" + o.ec.message() + ")";
    return "the upstream LLM server failed: " + why + " (" + std::to_string(o.attempts) + " attempt" +
           (o.attempts == 1 ? "" : "s") + ")";
}

static tandem::ChatRequest upstream_request(const Upstream& up, int max_tokens, double temperature) {
    tandem::ChatRequest req;
    req.model = up.config().model;
    req.max_tokens = max_tokens;
    req.temperature = temperature;
    return req;
}

// ---- chat --------------------------------------------------------------------------------

UpstreamChat::UpstreamChat(std::shared_ptr<Upstream> upstream)
    : up_(std::move(upstream)), name_(up_->config().model.empty() ? "upstream" : up_->config().model) {}

void UpstreamChat::submit(ChatJob job) {
    const ChatParams& p = job.params;
    tandem::ChatRequest req = upstream_request(*up_, p.max_tokens, p.temperature);
    for (auto& [role, content] : p.messages) req.messages.push_back({role, content});
    req.stop = p.stop;
    req.top_p = p.top_p;
    req.seed = p.seed;
    req.frequency_penalty = p.frequency_penalty;
    req.presence_penalty = p.presence_penalty;
    // Shared by this thread (which stores the handle) and the client's loop thread (which runs
    // the callbacks and may have to cancel before the handle is stored).
    struct Call {
        ChatJob job;
        std::mutex mu;
        RequestHandle handle;
        bool cancel = false;
    };
    auto call = std::make_shared<Call>();
    call->job = std::move(job);
    std::shared_ptr<Upstream> up = up_;
    RequestHandle h = up_->client().chat_stream(
        req,
        [call](std::string_view piece) {
            if (call->job.on_piece(std::string(piece))) return;
            std::lock_guard<std::mutex> lk(call->mu);  // the client hung up: stop the upstream
            call->cancel = true;
            call->handle.cancel();
        },
        [call, up](Outcome<ChatResult> o) {
            const ChatResult& r = o.value;
            const int64_t pt = std::max<int64_t>(0, r.prompt_tokens), ct = std::max<int64_t>(0, r.completion_tokens);
            if (!o.ec) return call->job.on_done(r.text, r.finish_reason.empty() ? "stop" : r.finish_reason, pt, ct, "");
            if (o.ec == cloud_errc::cancelled) return call->job.on_done(r.text, "cancelled", pt, ct, "");
            std::fprintf(stderr, "tandem-cloud: chat: %s\n", log_line(*up, o).c_str());
            call->job.on_done(r.text, "upstream_error", pt, ct, client_message(o));
        });
    std::lock_guard<std::mutex> lk(call->mu);
    call->handle = h;
    if (call->cancel) h.cancel();
}

// ---- memory notes ------------------------------------------------------------------------

std::vector<NewNote> UpstreamGenerator::generate(const std::string& context, const std::vector<Passage>& passages,
                                                 size_t max_items) {
    std::vector<NewNote> out;
    size_t next = 0;
    // In waves: as many passages at once as notes are still wanted, so that an LLM server that
    // batches works on them together; the notes are kept in rank order, as the built-in model
    // writes them one after another.
    while (out.size() < max_items && next < passages.size()) {
        const size_t wave = std::min(max_items - out.size(), passages.size() - next);
        std::vector<std::future<Outcome<ChatResult>>> answers;
        for (size_t i = 0; i < wave; i++) {
            tandem::ChatRequest req = upstream_request(*up_, max_tokens_, 0);
            req.messages = {{"user", key_takeaway_prompt(passages[next + i])}};
            req.stop = {"\n\n"};
            auto answer = std::make_shared<std::promise<Outcome<ChatResult>>>();
            answers.push_back(answer->get_future());
            up_->client().chat(req, [answer](Outcome<ChatResult> o) { answer->set_value(std::move(o)); });
        }
        for (size_t i = 0; i < wave; i++) {
            const Passage& p = passages[next + i];
            Outcome<ChatResult> o = answers[i].get();
            if (o.ec == cloud_errc::http_error) {
                // The upstream refused this passage (too long for its context, ...): skip it.
                std::fprintf(stderr, "tandem-cloud: memory note for %s skipped: %s\n", p.doc_id.c_str(), log_line(*up_, o).c_str());
                continue;
            }
            if (o.ec) {
                std::fprintf(stderr, "tandem-cloud: memory notes: %s\n", log_line(*up_, o).c_str());
                throw UpstreamError(client_message(o));
            }
            std::string note = key_takeaway_note(o.value.text);
            if (!note.empty()) out.push_back({note, p.doc_id, p.title, method()});
        }
        next += wave;
    }
    (void)context;
    return out;
}

}  // namespace tandem::cloud
