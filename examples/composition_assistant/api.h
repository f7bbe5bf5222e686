// The composition assistant's API over tandem::Assistant (served by server.h). Bodies are JSON;
// streams are server-sent events (event: NAME / data: JSON).
//
//   GET  /                the page (HTML with its CSS and JS inlined; web/)
//   POST /api/suggest     {document, cursor, document_id?}  cursor: byte offset into document
//                         (UTF-8); document_id: the page's stable id of its document
//                         (Assistant::set_document: memory requests carry it, its notes first)
//                         SSE: piece {text}* then done {text, cancelled, memory: [note], stats}
//                         A newer suggest (or /api/cancel) cancels the running one: its stream
//                         ends with done {cancelled: true}.
//   POST /api/cancel      {}                            200 {cancelled: true}
//   POST /api/ask         {instruction, selection?, private?}
//                         SSE: piece {text}* then done {text, answered_by, model, reason, score,
//                         threshold, cancelled, stats}
//   GET  /api/source?doc_id=D&note=TEXT
//                         200 {doc_id, title, passage, index, count}: the passage the note came
//                         from (Assistant::note_source); 503 {error} when the cloud cannot give it
//   GET  /api/state       200 {online, cloud_url, backend, threshold, privacy, usage {...},
//                              memory: [note], events: [event]}   (the last 20 events)
//   POST /api/knob        {threshold?: 0..1, privacy?: bool}   200 {threshold, privacy}
//   POST /api/cloud       {url, token?}          200 {cloud_url}: the memory sync and cloud asks
//                         go to url from now on (Assistant::set_cloud; "" = no cloud), with
//                         token, else the token the app was started with -- which goes only to
//                         the scheme and host it was started for (any port): another site needs
//                         its own token ("" for none); 400 for a malformed URL or token, or a
//                         new site without one (nothing changes)
//   GET  /api/events      SSE: event {seq, kind, message} for each Assistant event (the last
//                         20 first), a ": keepalive" comment every 10 s
//
//   note  = {id, text, doc_id, title}
//   stats = {prompt_tokens, reused_tokens, completion_tokens, ttft_ms, tokens_per_s}
//
// Errors: 400 (bad JSON, missing or mistyped field: the message names it), 404, 405, 413,
// 500, 503 {"error": {"message", "code"}}; an error inside a stream is an `error {message}` event.
#pragma once
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "server.h"
#include "tandem/assistant.h"

namespace tandem::compose {

// Keeps the last Assistant events and wakes /api/events streams. Thread-safe.
class EventHub {
public:
    void push(const AssistantEvent& e);       // from the Assistant's callback thread
    nlohmann::json recent(size_t n) const;    // the last n, oldest first
    // Waits up to `timeout_ms` for events after `after_seq`; returns them (maybe none).
    std::vector<nlohmann::json> wait_after(int64_t after_seq, int timeout_ms);
    void stop();                              // wakes every waiter; wait_after returns at once

private:
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<nlohmann::json> events_;       // {seq, kind, message}, at most 100
    int64_t seq_ = 0;
    bool stopped_ = false;
};

// "scheme://host" of an http(s) URL, the host lower-cased, without user info, port or path
// ("http://a@B.example:8080/x" -> "http://b.example"); "" when there is no "://".
std::string url_site(const std::string& url);
// Whether the app's cloud token, given for the site token_site, may go to `url` (POST
// /api/cloud, the line mode's /cloud): the same site on any port, no cloud (""), or a URL that
// is not http(s) (set_cloud refuses it before any connection).
bool token_may_go_to(const std::string& url, const std::string& token_site);

class Api : public Handler {
public:
    // `assistant` and `events` must outlive the Api. The Assistant's event callback should
    // call events.push(). `privacy` is the mode the Assistant was created with; `cloud_token`
    // the token it was given, kept for POST /api/cloud to the same site as its cloud now.
    Api(Assistant& assistant, EventHub& events, bool privacy = false, std::string cloud_token = "")
        : a_(assistant), events_(events), privacy_(privacy), cloud_token_(std::move(cloud_token)),
          token_site_(url_site(assistant.cloud_url())) {}
    void handle(const Request& req, Reply& reply) override;
    void on_stop() override;

private:
    void suggest(const nlohmann::json& body, Reply& reply);
    void cancel(Reply& reply);
    void ask(const nlohmann::json& body, Reply& reply);
    void state(Reply& reply);
    void knob(const nlohmann::json& body, Reply& reply);
    void cloud(const nlohmann::json& body, Reply& reply);
    void source(const Request& req, Reply& reply);
    void stream_events(Reply& reply);

    Assistant& a_;
    EventHub& events_;
    std::atomic<uint64_t> suggest_gen_{0};  // the newest suggest; older ones stop streaming
    std::atomic<bool> stopping_{false};
    std::atomic<bool> privacy_;
    const std::string cloud_token_;
    const std::string token_site_;  // url_site of the cloud the token was given for
};

// The page with its CSS and JS inlined (from the embedded web/ files).
const std::string& page_html();

// JSON helpers shared with the line mode.
nlohmann::json note_json(const MemoryNote& n);
nlohmann::json stats_json(const GenerationStats& s);
nlohmann::json usage_json(const UsageTotals& u);

}  // namespace tandem::compose
