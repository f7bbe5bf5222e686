// cloud_adapter: Tandem's HTTP client for the cloud (docs/protocol.md): OpenAI-compatible chat
// completions (plain and SSE streaming), memory requests and the memory change feed, with
// retries, timeouts, cancellation and online/offline detection.
//
// How it runs: one CloudClient owns ONE background thread running a Boost.Asio io_context that
// drives a libcurl multi handle (curl's socket/timer callbacks become asio descriptor waits and
// a steady_timer; no thread per request, no polling). Every call is a session (one per request,
// Beast style) that may make several attempts. Connections are kept alive and reused.
//
// Wire format used here:
//   endpoint                          request body                      success
//   POST /v1/chat/completions         {model?,messages,max_tokens,      200 {choices[0].message.content,
//                                      temperature,stop?,stream,            finish_reason},usage?} or SSE
//                                      stream_options?}
//   POST /v1/memory/requests          {request_id,context,max_items,    202 (body ignored)
//                                      document?}
//   GET  /v1/memory/changes?since=C&limit=N[&wait=S]                    200 {items,next_cursor,
//                                                                            epoch?,reset?}
//   change item: {id, request_id, document?, text, source{doc_id,title}, created_at(Unix ms)}
//   GET  /v1/sources/DOC_ID?note=TEXT                                   200 {doc_id,title,passage,
//                                                                           index,count}
//   tombstone:   {id, deleted:true}
//   DELETE /v1/memory/items/ID | /v1/memory/documents/DOC | /v1/memory/items (all)
//                                                                       200 {deleted?}
//   every call: "Authorization: Bearer <token>" when a token is configured.
//
// Errors: every callback gets an Outcome whose ec is empty on success, else one of
//   - curl_category(): the libcurl CURLcode of a transport failure (connect, TLS, timeout...),
//   - cloud_category(): a cloud_errc below.
// Compare against cloud_cond (connection, timeout, tls, retryable, cancelled) to classify.
//
// Secrets: the bearer token is sent only in the Authorization header; it never appears in
// debug output (redacted), error messages, or any file.
//
// Thread-safety: all public methods may be called from any thread. Callbacks run on the
// client's loop thread, one at a time; they must not block for long and must not destroy the
// CloudClient (the destructor joins that thread). Calling other methods from a callback is fine.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace tandem {

// ---- errors ----------------------------------------------------------------------------

enum class cloud_errc {
    cancelled = 1,       // RequestHandle::cancel() was called
    shut_down,           // the CloudClient was destroyed before the call finished
    http_error,          // a 4xx status other than 401/403/429 (not retried)
    unauthorized,        // 401 or 403 (bad or missing token; not retried)
    server_error,        // 5xx (retried)
    rate_limited,        // 429 (retried after Retry-After, if within RetryPolicy limits)
    response_too_large,  // the body passed CloudConfig::max_response_bytes (not retried)
    malformed_json,      // the body is not JSON (not retried)
    bad_response,        // JSON, but not the documented shape (not retried)
    stream_error,        // the SSE stream carried an error object (not retried)
    stream_truncated,    // the SSE stream ended without [DONE] or a finish_reason
    invalid_argument,    // the call itself was bad (empty request_id, limit < 1, ...)
};
const std::error_category& cloud_category();
std::error_code make_error_code(cloud_errc e);

// The libcurl category: value() is a CURLcode, message() curl_easy_strerror's text.
const std::error_category& curl_category();
std::error_code make_curl_error(int curl_code);

// Classes of errors, for `ec == cloud_cond::timeout` style tests.
enum class cloud_cond {
    connection = 1,  // could not connect / resolve, connection dropped, nothing received
    timeout,         // connect timeout, whole-request deadline or stream idle timeout
    tls,             // certificate or handshake failure
    retryable,       // connection, timeout, server_error, rate_limited
    cancelled,       // cancelled or shut_down
};
const std::error_category& cloud_cond_category();
std::error_condition make_error_condition(cloud_cond c);

// ---- configuration -----------------------------------------------------------------------

using Millis = std::chrono::milliseconds;

struct RetryPolicy {
    int max_attempts = 4;           // total attempts per call (1 = no retry)
    Millis base_delay{200};         // backoff before retry k (k>=1): base*2^(k-1), capped...
    Millis max_delay{10000};        // ...at max_delay, then "equal jitter": d/2 + rand[0, d/2]
    Millis max_retry_after{60000};  // a Retry-After longer than this is not waited for: the
                                    // call ends with rate_limited / server_error instead
};

struct CloudConfig {
    std::string base_url;           // "http://127.0.0.1:8080" or "https://host/prefix"
    std::string token;              // bearer token; "" = no Authorization header
    bool verify_tls = true;         // peer and host verification (keep on outside tests)
    std::string ca_file;            // extra CA bundle; "" = system default
    Millis connect_timeout{5000};   // TCP + TLS connect, per attempt
    Millis request_timeout{30000};  // whole attempt (long polls add their wait to it)
    Millis stream_idle_timeout{30000};  // streaming: longest gap between received bytes
    Millis stream_timeout{600000};  // streaming: whole attempt
    size_t max_response_bytes = 8u << 20;  // larger bodies (or SSE totals) fail
    RetryPolicy retry;
    int offline_after_failures = 3;  // consecutive connection-class failures -> offline
    int online_after_successes = 1;  // consecutive answered attempts -> online again
    // Debug lines (curl's request/response headers, retries, state changes), token redacted.
    // Called on the loop thread; empty = no debug output.
    std::function<void(const std::string&)> debug_log;
};

// ---- calls and results -------------------------------------------------------------------

// What every callback gets: ec empty = success. message: a human-readable reason naming the
// endpoint and the cause (never the token). http_status: the last status seen (0 = none).
template <class T>
struct Outcome {
    std::error_code ec;
    std::string message;
    int http_status = 0;
    int attempts = 0;
    T value{};
};
struct Nothing {};

struct ChatMessage {
    std::string role;  // "system" | "user" | "assistant"
    std::string content;
};
struct ChatRequest {
    std::string model;  // "" = not sent (the server picks its default model)
    std::vector<ChatMessage> messages;
    int max_tokens = 256;
    double temperature = 0.7;
    std::vector<std::string> stop;  // sent when non-empty
    double top_p = 1.0;             // sent when not 1
    std::optional<uint64_t> seed;   // sent when set
    double frequency_penalty = 0, presence_penalty = 0;  // sent when not 0
};
struct ChatResult {
    std::string text;           // the whole answer (streaming: all deltas joined)
    std::string finish_reason;  // "stop", "length", ... ("" when the server sent none)
    std::string model;          // as reported by the server
    // The server's "usage" counts; -1 when it sent none (streams ask for them with
    // stream_options.include_usage, which servers may ignore).
    int64_t prompt_tokens = -1, completion_tokens = -1;
};

struct MemoryRequestBody {
    std::string request_id;  // idempotency key: sending it twice creates one request
    std::string context;     // the text window the notes should be about
    int max_items = 8;
    std::string document;    // the app's id of the document it is for ("" = not sent)
};
struct FeedItem {
    std::string id;
    bool deleted = false;  // tombstone: only id is meaningful
    std::string request_id;
    std::string document;    // the document of the request that made it ("" = none)
    std::string text;
    std::string doc_id;
    std::string title;
    int64_t created_at = 0;  // Unix ms (cloud clock)
};
struct SourcePassage {
    std::string doc_id, title;
    std::string passage;       // the corpus passage a note came from (one sentence a line)
    int64_t index = 0, count = 0;  // its place among the document's passages
};
struct FeedPage {
    std::vector<FeedItem> items;
    std::string next_cursor;  // opaque; numbers on the wire become their decimal text
    std::string epoch;        // the feed's epoch ("" when the server sends none)
    bool reset = false;       // `since` was from another epoch: items start from the beginning
};

// What DELETE forgets: one note (by id), a document's notes (by document id), or all notes.
enum class ForgetScope { item, document, all };

// Online/offline as seen from real outcomes (see CloudConfig::offline_after_failures).
enum class Connectivity { unknown, online, offline };
struct ConnectivityEvent {
    Connectivity state = Connectivity::unknown;
    Connectivity previous = Connectivity::unknown;
    int consecutive_failures = 0;
    std::string reason;  // the outcome that caused the change
};

struct CloudStats {
    uint64_t calls = 0;             // sessions started
    uint64_t attempts = 0;          // HTTP attempts (>= calls when retrying)
    uint64_t connections_opened = 0;  // sockets curl opened (keep-alive keeps this low)
};

namespace detail {
class Session;
class Loop;
}  // namespace detail

// Handle to one in-flight call. Copyable; outliving the call is fine.
class RequestHandle {
public:
    RequestHandle() = default;
    // Stops the call soon (the transfer is dropped at once on the loop thread); its callback
    // runs with cloud_errc::cancelled unless it already finished. Safe from any thread and
    // from callbacks; no-op for an empty or finished handle.
    void cancel();
    // Internal (CloudClient makes handles).
    explicit RequestHandle(std::weak_ptr<detail::Session> s) : s_(std::move(s)) {}

private:
    std::weak_ptr<detail::Session> s_;
};

// ---- the client --------------------------------------------------------------------------

class CloudClient {
public:
    // Validates cfg (base_url must be http(s)://..., the token printable ASCII without spaces)
    // and starts the loop thread. Throws std::invalid_argument on a bad config and
    // std::runtime_error if curl cannot be initialised.
    explicit CloudClient(CloudConfig cfg);
    // Ends every pending call (their callbacks run with cloud_errc::shut_down), closes the
    // connections and joins the loop thread. Must not be called from a callback.
    ~CloudClient();
    CloudClient(const CloudClient&) = delete;
    CloudClient& operator=(const CloudClient&) = delete;

    using ChatDone = std::function<void(Outcome<ChatResult>)>;
    using DeltaFn = std::function<void(std::string_view delta)>;

    // POST /v1/chat/completions with stream=false. Retried on retryable errors.
    RequestHandle chat(const ChatRequest& req, ChatDone done);
    // The same with stream=true: each text delta goes to on_delta (loop thread) as it arrives,
    // then done gets the joined text. Retried only while no delta has been delivered (so no
    // text is ever repeated); a drop after that is stream_truncated / a connection error.
    RequestHandle chat_stream(const ChatRequest& req, DeltaFn on_delta, ChatDone done);

    // POST /v1/memory/requests; success = 202 (any 2xx is accepted). Retried (idempotent).
    RequestHandle post_memory_request(const MemoryRequestBody& req,
                                      std::function<void(Outcome<Nothing>)> done);
    // GET /v1/memory/changes?since=..&limit=..[&wait=..]; wait_s > 0 asks for a long poll
    // (the attempt deadline grows by wait_s). limit >= 1. Retried.
    RequestHandle get_changes(const std::string& since, int limit, int wait_s,
                              std::function<void(Outcome<FeedPage>)> done);
    // DELETE /v1/memory/items/ID, /v1/memory/documents/ID or /v1/memory/items (scope all; id
    // ignored): the tenant's notes in scope are retracted, and the tombstones reach every
    // client through the feed. value: the number of notes retracted (a 404 for an unknown
    // item is http_error). Retried (deleting again retracts nothing more).
    RequestHandle forget_memory(ForgetScope scope, const std::string& id, std::function<void(Outcome<int64_t>)> done);

    // GET /v1/sources/<doc_id>?note=<text>: the passage of a source document that a note came
    // from (docs/protocol.md). doc_id non-empty. Retried. A service without the document (or
    // without this endpoint) answers 404: cloud_errc::http_error.
    RequestHandle get_source(const std::string& doc_id, const std::string& note,
                             std::function<void(Outcome<SourcePassage>)> done);

    // The callback gets every state change (loop thread). Replaces any previous callback.
    void set_connectivity_callback(std::function<void(const ConnectivityEvent&)> cb);
    Connectivity connectivity() const;
    CloudStats stats() const;

private:
    std::shared_ptr<detail::Loop> loop_;
};

// A completion callback and the future it fulfils with the call's Outcome: the one promise
// behind every synchronous wait on a cloud call (wait_for, MemorySync, tests). The callback
// may be called once.
template <class T>
struct OutcomeWait {
    std::function<void(Outcome<T>)> callback;
    std::future<Outcome<T>> future;
};
template <class T>
OutcomeWait<T> outcome_wait();

// Runs `start(callback)` and waits for the callback's Outcome. For tools and tests; never call
// it from a CloudClient callback (that would wait on its own thread).
template <class T, class Start>
Outcome<T> wait_for(Start&& start);

// Replaces the value of every "Authorization:" header and every occurrence of `secret` in
// `text` with "<redacted>". Used on all debug output.
std::string redact_secrets(std::string_view text, std::string_view secret);

}  // namespace tandem

namespace std {
template <>
struct is_error_code_enum<tandem::cloud_errc> : true_type {};
template <>
struct is_error_condition_enum<tandem::cloud_cond> : true_type {};
}  // namespace std

// ---- outcome_wait, wait_for (template bodies) -----------------------------------------------
template <class T>
tandem::OutcomeWait<T> tandem::outcome_wait() {
    auto p = std::make_shared<std::promise<Outcome<T>>>();
    std::future<Outcome<T>> f = p->get_future();
    return {[p](Outcome<T> o) { p->set_value(std::move(o)); }, std::move(f)};
}

template <class T, class Start>
tandem::Outcome<T> tandem::wait_for(Start&& start) {
    OutcomeWait<T> w = outcome_wait<T>();
    start(w.callback);
    return w.future.get();
}
