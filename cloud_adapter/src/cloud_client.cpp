// CloudClient: the endpoints of the cloud protocol on top of Session (request bodies, response
// parsing into typed results, SSE streaming). Wire format: tandem/cloud_adapter.h.
#include <nlohmann/json.hpp>

#include "loop.h"
#include "responses.h"

namespace tandem {

using json = nlohmann::json;
using detail::HttpSpec;
using detail::StreamState;
using detail::Session;
using detail::SessionHooks;

// ---- handles and config ------------------------------------------------------------------

void RequestHandle::cancel() {
    if (auto s = s_.lock()) s->cancel(make_error_code(cloud_errc::cancelled));
}

namespace {

void validate(CloudConfig& cfg) {
    std::string& u = cfg.base_url;
    if (u.rfind("http://", 0) != 0 && u.rfind("https://", 0) != 0)
        throw std::invalid_argument("cloud_adapter: base_url must start with http:// or https://, got '" + u + "'");
    while (!u.empty() && u.back() == '/') u.pop_back();
    for (char c : u)
        if ((unsigned char)c <= 0x20 || c == 0x7f)
            throw std::invalid_argument("cloud_adapter: base_url contains a space or control character");
    for (char c : cfg.token)  // the token goes into a header line: no CR/LF/space injection
        if ((unsigned char)c <= 0x20 || (unsigned char)c >= 0x7f)
            throw std::invalid_argument("cloud_adapter: token must be printable ASCII without spaces");
    if (cfg.max_response_bytes == 0) throw std::invalid_argument("cloud_adapter: max_response_bytes must be > 0");
    if (cfg.retry.max_attempts < 1) throw std::invalid_argument("cloud_adapter: retry.max_attempts must be >= 1");
}

// JSON text that survives any input bytes (invalid UTF-8 is replaced, never thrown on).
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string url_escape(const std::string& s) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out.push_back(char(c));
        } else {
            out.push_back('%');
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 15]);
        }
    }
    return out;
}

json chat_body(const ChatRequest& req, bool stream) {
    json msgs = json::array();
    for (const auto& m : req.messages) msgs.push_back({{"role", m.role}, {"content", m.content}});
    json body = {{"messages", msgs}, {"max_tokens", req.max_tokens}, {"temperature", req.temperature}, {"stream", stream}};
    if (!req.model.empty()) body["model"] = req.model;
    if (!req.stop.empty()) body["stop"] = req.stop;
    if (req.top_p != 1.0) body["top_p"] = req.top_p;
    if (req.seed) body["seed"] = *req.seed;
    if (req.frequency_penalty != 0) body["frequency_penalty"] = req.frequency_penalty;
    if (req.presence_penalty != 0) body["presence_penalty"] = req.presence_penalty;
    if (stream) body["stream_options"] = {{"include_usage", true}};
    return body;
}

}  // namespace

// ---- CloudClient -------------------------------------------------------------------------

CloudClient::CloudClient(CloudConfig cfg) {
    validate(cfg);
    loop_ = std::make_shared<detail::Loop>(std::move(cfg));
}

CloudClient::~CloudClient() { loop_->shutdown(); }

void CloudClient::set_connectivity_callback(std::function<void(const ConnectivityEvent&)> cb) {
    loop_->set_connectivity_callback(std::move(cb));
}
Connectivity CloudClient::connectivity() const { return loop_->connectivity(); }
CloudStats CloudClient::stats() const {
    return {loop_->n_calls.load(), loop_->n_attempts.load(), loop_->n_connections.load()};
}

// Starts a session whose result is T, produced by `parse` on success.
template <class T>
static RequestHandle launch(detail::Loop& loop, HttpSpec spec, SessionHooks hooks,
                            std::shared_ptr<Outcome<T>> out, std::function<void(Outcome<T>)> done) {
    auto s = std::make_shared<Session>(
        loop, std::move(spec), std::move(hooks),
        [out, done = std::move(done)](std::error_code ec, std::string msg, int status, int attempts) {
            out->ec = ec;
            out->message = std::move(msg);
            out->http_status = status;
            out->attempts = attempts;
            if (done) done(std::move(*out));
        });
    s->start();
    return RequestHandle(s);
}

RequestHandle CloudClient::chat(const ChatRequest& req, ChatDone done) {
    const CloudConfig& cfg = loop_->cfg();
    HttpSpec spec{"POST /v1/chat/completions", "POST", cfg.base_url + "/v1/chat/completions",
                  dump(chat_body(req, false)), cfg.request_timeout, Millis(0), false};
    auto out = std::make_shared<Outcome<ChatResult>>();
    SessionHooks hooks;
    hooks.on_complete = [out](const std::string& body, std::string& msg) {
        return detail::parse_chat(body, out->value, msg);
    };
    return launch<ChatResult>(*loop_, std::move(spec), std::move(hooks), out, std::move(done));
}

RequestHandle CloudClient::chat_stream(const ChatRequest& req, DeltaFn on_delta, ChatDone done) {
    const CloudConfig& cfg = loop_->cfg();
    HttpSpec spec{"POST /v1/chat/completions (stream)", "POST", cfg.base_url + "/v1/chat/completions",
                  dump(chat_body(req, true)), cfg.stream_timeout, cfg.stream_idle_timeout, true};
    auto st = std::make_shared<StreamState>();
    st->on_delta = std::move(on_delta);
    auto out = std::make_shared<Outcome<ChatResult>>();
    const size_t max_bytes = cfg.max_response_bytes;
    SessionHooks hooks;
    auto first = std::make_shared<bool>(true);  // per attempt: SSE or plain JSON, by the first bytes
    hooks.on_attempt = [st, first, max_bytes] {  // only reached while nothing was delivered
        StreamState* raw = st.get();
        st->parser = std::make_unique<SseParser>([raw](const SseEvent& ev) { raw->on_event(ev); }, max_bytes);
        *first = true;
        st->sse = true;
        st->plain.clear();
        st->result = ChatResult{};
        st->done_marker = false;
        st->err.clear();
    };
    hooks.on_chunk = [st, first](std::string_view chunk, std::string& msg) -> std::error_code {
        if (*first) {
            *first = false;
            size_t i = chunk.find_first_not_of(" \t\r\n");
            st->sse = !(i != std::string_view::npos && chunk[i] == '{');  // a JSON object, not SSE
        }
        if (!st->sse) {
            st->plain.append(chunk.data(), chunk.size());
            return {};
        }
        if (!st->parser->feed(chunk)) {
            msg = st->parser->error();
            return make_error_code(cloud_errc::bad_response);
        }
        if (st->err) msg = st->err_msg;
        return st->err;
    };
    hooks.on_complete = [st, out](const std::string&, std::string& msg) -> std::error_code {
        if (!st->sse) {  // the server ignored stream=true: one JSON answer, one delta
            std::error_code ec = detail::parse_chat(st->plain, st->result, msg);
            if (!ec && !st->result.text.empty() && st->on_delta) {
                st->delivered = true;
                st->on_delta(st->result.text);
            }
            out->value = st->result;
            return ec;
        }
        st->parser->finish();
        out->value = st->result;
        if (!st->done_marker && st->result.finish_reason.empty()) {
            msg = "the stream ended without [DONE] or a finish_reason";
            return make_error_code(cloud_errc::stream_truncated);
        }
        return {};
    };
    hooks.may_retry = [st] { return !st->delivered; };
    // A transport failure after text was delivered is reported as stream_truncated, with the
    // text received so far kept in the outcome (nothing is lost, nothing repeated).
    auto wrapped = [st, done = std::move(done)](Outcome<ChatResult> o) {
        if (o.ec && st->delivered) {
            o.value = st->result;
            if (o.ec == cloud_cond::connection || o.ec == cloud_cond::timeout) {
                o.message += " [stream_truncated after " + std::to_string(o.value.text.size()) + " bytes]";
                o.ec = make_error_code(cloud_errc::stream_truncated);
            }
        }
        if (done) done(std::move(o));
    };
    return launch<ChatResult>(*loop_, std::move(spec), std::move(hooks), out, std::move(wrapped));
}

RequestHandle CloudClient::post_memory_request(const MemoryRequestBody& req,
                                               std::function<void(Outcome<Nothing>)> done) {
    const CloudConfig& cfg = loop_->cfg();
    auto out = std::make_shared<Outcome<Nothing>>();
    if (req.request_id.empty() || req.max_items < 1) {
        out->ec = make_error_code(cloud_errc::invalid_argument);
        out->message = "POST /v1/memory/requests: request_id must be non-empty and max_items >= 1";
        detail::asio::post(loop_->strand(), [out, done] { if (done) done(*out); });
        return RequestHandle();
    }
    json body = {{"request_id", req.request_id}, {"context", req.context}, {"max_items", req.max_items}};
    if (!req.document.empty()) body["document"] = req.document;
    HttpSpec spec{"POST /v1/memory/requests", "POST", cfg.base_url + "/v1/memory/requests", dump(body),
                  cfg.request_timeout, Millis(0), false};
    return launch<Nothing>(*loop_, std::move(spec), SessionHooks{}, out, std::move(done));
}

RequestHandle CloudClient::get_changes(const std::string& since, int limit, int wait_s,
                                       std::function<void(Outcome<FeedPage>)> done) {
    const CloudConfig& cfg = loop_->cfg();
    auto out = std::make_shared<Outcome<FeedPage>>();
    if (limit < 1 || wait_s < 0) {
        out->ec = make_error_code(cloud_errc::invalid_argument);
        out->message = "GET /v1/memory/changes: limit must be >= 1 and wait >= 0";
        detail::asio::post(loop_->strand(), [out, done] { if (done) done(*out); });
        return RequestHandle();
    }
    std::string url = cfg.base_url + "/v1/memory/changes?since=" + url_escape(since) + "&limit=" + std::to_string(limit);
    if (wait_s > 0) url += "&wait=" + std::to_string(wait_s);
    HttpSpec spec{"GET /v1/memory/changes", "GET", url, "", cfg.request_timeout + Millis(int64_t(wait_s) * 1000),
                  Millis(0), false};
    SessionHooks hooks;
    hooks.on_complete = [out](const std::string& body, std::string& msg) { return detail::parse_page(body, out->value, msg); };
    return launch<FeedPage>(*loop_, std::move(spec), std::move(hooks), out, std::move(done));
}

RequestHandle CloudClient::forget_memory(ForgetScope scope, const std::string& id,
                                         std::function<void(Outcome<int64_t>)> done) {
    const CloudConfig& cfg = loop_->cfg();
    auto out = std::make_shared<Outcome<int64_t>>();
    if (scope != ForgetScope::all && id.empty()) {
        out->ec = make_error_code(cloud_errc::invalid_argument);
        out->message = "DELETE /v1/memory: an item or document id is required";
        detail::asio::post(loop_->strand(), [out, done] { if (done) done(*out); });
        return RequestHandle();
    }
    const std::string path = scope == ForgetScope::item       ? "/v1/memory/items/" + url_escape(id)
                             : scope == ForgetScope::document ? "/v1/memory/documents/" + url_escape(id)
                                                              : std::string("/v1/memory/items");
    HttpSpec spec{"DELETE " + path, "DELETE", cfg.base_url + path, "", cfg.request_timeout, Millis(0), false};
    SessionHooks hooks;
    hooks.on_complete = [out, scope](const std::string& body, std::string& msg) {
        return detail::parse_forget(body, scope, out->value, msg);
    };
    return launch<int64_t>(*loop_, std::move(spec), std::move(hooks), out, std::move(done));
}

RequestHandle CloudClient::get_source(const std::string& doc_id, const std::string& note,
                                      std::function<void(Outcome<SourcePassage>)> done) {
    const CloudConfig& cfg = loop_->cfg();
    auto out = std::make_shared<Outcome<SourcePassage>>();
    if (doc_id.empty()) {
        out->ec = make_error_code(cloud_errc::invalid_argument);
        out->message = "GET /v1/sources: doc_id must be non-empty";
        detail::asio::post(loop_->strand(), [out, done] { if (done) done(*out); });
        return RequestHandle();
    }
    std::string url = cfg.base_url + "/v1/sources/" + url_escape(doc_id) + "?note=" + url_escape(note);
    HttpSpec spec{"GET /v1/sources", "GET", url, "", cfg.request_timeout, Millis(0), false};
    SessionHooks hooks;
    hooks.on_complete = [out](const std::string& body, std::string& msg) { return detail::parse_source(body, out->value, msg); };
    return launch<SourcePassage>(*loop_, std::move(spec), std::move(hooks), out, std::move(done));
}

}  // namespace tandem
