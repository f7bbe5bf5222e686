// CloudClient: the endpoints of the cloud protocol on top of Session (request bodies, response
// parsing into typed results, SSE streaming). Wire format: tandem/cloud_adapter.h.
#include <nlohmann/json.hpp>

#include "loop.h"
#include "tandem/sse_parser.h"

namespace tandem {

using json = nlohmann::json;
using detail::HttpSpec;
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

// Reads an OpenAI "usage" object ({prompt_tokens, completion_tokens}) when j has one.
void read_usage(const json& j, ChatResult& out) {
    auto u = j.find("usage");
    if (u == j.end() || !u->is_object()) return;
    auto count = [&](const char* k) {
        auto it = u->find(k);
        return it != u->end() && it->is_number_integer() ? it->get<int64_t>() : int64_t(-1);
    };
    out.prompt_tokens = count("prompt_tokens");
    out.completion_tokens = count("completion_tokens");
}

std::string str_field(const json& o, const char* key) {
    auto it = o.find(key);
    return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Parses a whole (non-streamed) chat completion. Returns an error code and fills msg on bad shape.
std::error_code parse_chat(const std::string& body, ChatResult& out, std::string& msg) {
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded()) {
        msg = "chat completion body is not JSON";
        return make_error_code(cloud_errc::malformed_json);
    }
    if (!j.is_object() || !j.contains("choices") || !j["choices"].is_array() || j["choices"].empty() ||
        !j["choices"][0].is_object()) {
        msg = "chat completion has no choices[0]";
        return make_error_code(cloud_errc::bad_response);
    }
    const json& c0 = j["choices"][0];
    auto m = c0.find("message");
    if (m == c0.end() || !m->is_object()) {
        msg = "chat completion choices[0] has no message object";
        return make_error_code(cloud_errc::bad_response);
    }
    auto content = m->find("content");
    if (content != m->end() && !content->is_string() && !content->is_null()) {
        msg = "chat completion message.content is not a string";
        return make_error_code(cloud_errc::bad_response);
    }
    out.text = content != m->end() && content->is_string() ? content->get<std::string>() : "";
    out.finish_reason = str_field(c0, "finish_reason");
    out.model = str_field(j, "model");
    read_usage(j, out);
    return {};
}

// Parses one change-feed item or tombstone.
bool parse_item(const json& j, FeedItem& it, std::string& msg) {
    if (!j.is_object() || !j.contains("id") || !(j["id"].is_string() || j["id"].is_number_integer())) {
        msg = "change item without a string id";
        return false;
    }
    it.id = j["id"].is_string() ? j["id"].get<std::string>() : std::to_string(j["id"].get<int64_t>());
    if (it.id.empty()) {
        msg = "change item with an empty id";
        return false;
    }
    it.deleted = j.contains("deleted") && j["deleted"].is_boolean() && j["deleted"].get<bool>();
    if (it.deleted) return true;
    if (!j.contains("text") || !j["text"].is_string()) {
        msg = "change item '" + it.id + "' has no string text";
        return false;
    }
    it.text = j["text"].get<std::string>();
    it.request_id = str_field(j, "request_id");
    it.document = str_field(j, "document");
    if (j.contains("source") && j["source"].is_object()) {
        it.doc_id = str_field(j["source"], "doc_id");
        it.title = str_field(j["source"], "title");
    }
    if (j.contains("created_at")) {
        const json& c = j["created_at"];
        if (c.is_number_integer()) it.created_at = c.get<int64_t>();
        else if (c.is_number()) it.created_at = int64_t(c.get<double>());
    }
    return true;
}

std::error_code parse_page(const std::string& body, FeedPage& page, std::string& msg) {
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded()) {
        msg = "change feed body is not JSON";
        return make_error_code(cloud_errc::malformed_json);
    }
    if (!j.is_object() || !j.contains("items") || !j["items"].is_array()) {
        msg = "change feed page has no items array";
        return make_error_code(cloud_errc::bad_response);
    }
    auto nc = j.find("next_cursor");
    if (nc == j.end() || !(nc->is_string() || nc->is_number_integer())) {
        msg = "change feed page has no next_cursor";
        return make_error_code(cloud_errc::bad_response);
    }
    page.next_cursor = nc->is_string() ? nc->get<std::string>() : std::to_string(nc->get<int64_t>());
    page.epoch = str_field(j, "epoch");
    auto reset = j.find("reset");
    page.reset = reset != j.end() && reset->is_boolean() && reset->get<bool>();
    page.items.clear();
    for (const json& e : j["items"]) {
        FeedItem it;
        if (!parse_item(e, it, msg)) return make_error_code(cloud_errc::bad_response);
        page.items.push_back(std::move(it));
    }
    return {};
}

std::error_code parse_source(const std::string& body, SourcePassage& out, std::string& msg) {
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded()) {
        msg = "source body is not JSON";
        return make_error_code(cloud_errc::malformed_json);
    }
    if (!j.is_object() || !j.contains("passage") || !j["passage"].is_string()) {
        msg = "source answer has no string passage";
        return make_error_code(cloud_errc::bad_response);
    }
    out.doc_id = str_field(j, "doc_id");
    out.title = str_field(j, "title");
    out.passage = j["passage"].get<std::string>();
    auto num = [&](const char* k) { return j.contains(k) && j[k].is_number_integer() ? j[k].get<int64_t>() : 0; };
    out.index = num("index");
    out.count = num("count");
    return {};
}

// State of one streamed chat completion, shared by its hooks.
struct StreamState {
    CloudClient::DeltaFn on_delta;
    std::unique_ptr<SseParser> parser;
    bool sse = true;          // false: the server answered with plain JSON instead
    std::string plain;        // that JSON
    ChatResult result;
    bool done_marker = false;  // saw data: [DONE]
    bool delivered = false;    // some delta reached on_delta (no retry after that)
    std::error_code err;
    std::string err_msg;

    void on_event(const SseEvent& ev) {
        if (err || done_marker) return;
        if (ev.data == "[DONE]") {
            done_marker = true;
            return;
        }
        json j = json::parse(ev.data, nullptr, false);
        if (j.is_discarded() || !j.is_object()) {
            err = make_error_code(cloud_errc::malformed_json);
            err_msg = "SSE event data is not a JSON object";
            return;
        }
        if (j.contains("error")) {
            const json& e = j["error"];
            err = make_error_code(cloud_errc::stream_error);
            err_msg = e.is_string() ? e.get<std::string>() : e.is_object() ? str_field(e, "message") : "";
            if (err_msg.empty()) err_msg = "error object without a message";
            return;
        }
        if (result.model.empty()) result.model = str_field(j, "model");
        read_usage(j, result);
        if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) return;  // e.g. usage
        const json& c0 = j["choices"][0];
        if (!c0.is_object()) return;
        std::string fr = str_field(c0, "finish_reason");
        if (!fr.empty()) result.finish_reason = fr;
        auto d = c0.find("delta");
        if (d == c0.end() || !d->is_object()) return;
        std::string text = str_field(*d, "content");
        if (text.empty()) return;
        result.text += text;
        delivered = true;
        if (on_delta) on_delta(text);
    }
};

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
        return parse_chat(body, out->value, msg);
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
            std::error_code ec = parse_chat(st->plain, st->result, msg);
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
    hooks.on_complete = [out](const std::string& body, std::string& msg) { return parse_page(body, out->value, msg); };
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
    hooks.on_complete = [out, scope](const std::string& body, std::string& msg) -> std::error_code {
        json j = json::parse(body, nullptr, false);
        if (j.is_discarded() || !j.is_object()) {
            msg = "forget answer is not a JSON object";
            return make_error_code(cloud_errc::malformed_json);
        }
        auto n = j.find("deleted");
        out->value = scope == ForgetScope::item ? 1 : n != j.end() && n->is_number_integer() ? n->get<int64_t>() : 0;
        return {};
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
    hooks.on_complete = [out](const std::string& body, std::string& msg) { return parse_source(body, out->value, msg); };
    return launch<SourcePassage>(*loop_, std::move(spec), std::move(hooks), out, std::move(done));
}

}  // namespace tandem
