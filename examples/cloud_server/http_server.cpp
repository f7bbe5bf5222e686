// CloudServer: Beast sessions on one I/O thread; the memory worker on another.
#include "http_server.h"
#include "../common/accept_loop.h"
#include "../common/drain.h"
#include "../common/http_target.h"
#include "../common/read_request.h"

#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <atomic>
#include <chrono>
#include <deque>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "feed_events.h"
#include "tandem/cloud/feed_cursor.h"
#include "tandem/cloud/llm.h"
#include "tandem/cloud/openai_api.h"
#include "tandem/cloud/random_id.h"
#include "tandem/cloud/server_db.h"
#include "worker.h"

namespace tandem::cloud {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using json = nlohmann::json;
using Response = http::response<http::string_body>;

// ---- small helpers ---------------------------------------------------------------------

static bool parse_i64(const std::string& s, int64_t lo, int64_t hi, int64_t* out) {
    if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos) return false;
    int64_t v = std::stoll(s);
    if (v < lo || v > hi) return false;
    *out = v;
    return true;
}

static Response make_json(unsigned version, http::status status, const json& body) {
    Response res{status, version};
    res.set(http::field::server, "tandem-cloud");
    res.set(http::field::content_type, "application/json");
    res.body() = body.dump(-1, ' ', false, json::error_handler_t::replace);
    res.prepare_payload();
    return res;
}

// Every error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
static Response make_error(unsigned version, const ApiError& e) {
    return make_json(version, (http::status)e.status, error_body(e));
}

static Response make_error(unsigned version, http::status status, const std::string& type, const std::string& message,
                           const std::string& code = "") {
    return make_error(version, ApiError{(int)status, type, message, "", code});
}

static int64_t unix_seconds() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

static json entry_json(const FeedEntry& e) {
    if (e.deleted) return {{"id", e.id}, {"deleted", true}};
    return {{"id", e.id},
            {"request_id", e.request_id},
            {"document", e.document},
            {"text", e.text},
            {"source", {{"doc_id", e.doc_id}, {"title", e.title}}},
            {"created_at", e.created_at},
            {"method", e.method}};
}

// ---- server state ----------------------------------------------------------------------

struct CloudServer::Impl {
    ServerConfig cfg;
    // Body bytes reserved by requests being read or handled (max_body_total). Declared before
    // the io_context: a Session destroyed with its pending handlers still finds it.
    std::atomic<size_t> body_bytes{0};
    net::io_context ioc{1};
    tcp::acceptor acceptor{ioc};
    net::signal_set signals{ioc, SIGINT, SIGTERM};
    net::steady_timer stop_timer{ioc};
    std::unique_ptr<ServerDb> db;  // the I/O thread's connection
    std::unique_ptr<MemoryWorker> worker;
    std::unique_ptr<FeedEvents> events;  // other replicas' changes (PostgreSQL); null on SQLite
    std::shared_ptr<ChatBackend> chat;  // null without --model or --llm-url: chat answers 501
    int64_t started_at = unix_seconds();  // "created" of the served model
    FaultQueues faults;
    std::shared_ptr<examples::AcceptLoop> accept_loop;
    // Long polls waiting for new feed entries, by id; each removes itself when its wait ends
    // (touched on the I/O thread only).
    std::map<uint64_t, std::weak_ptr<net::steady_timer>> waiters;
    uint64_t last_waiter_id = 0;
    bool stopping = false;
    int in_flight = 0;  // requests read and not yet answered

    void wake_waiters() {
        for (auto& w : waiters)
            if (auto t = w.second.lock()) t->cancel();
        waiters.clear();
    }
    void accept();
    void begin_shutdown();
};

// ---- a connection ----------------------------------------------------------------------

class Session : public std::enable_shared_from_this<Session> {
public:
    Session(tcp::socket&& socket, CloudServer::Impl& srv, std::shared_ptr<examples::AcceptLoop::Slot> slot)
        : stream_(std::move(socket)), srv_(srv), slot_(std::move(slot)) {}
    ~Session() { release_body(); }
    void start() {
        // Closes the connection for a new client when the accept loop asks and it is still idle.
        slot_->set_closer([weak = weak_from_this(), exec = stream_.get_executor()] {
            net::post(exec, [weak] {
                if (auto s = weak.lock(); s && s->idle_) s->close();
            });
        });
        read_request();
    }

private:
    using Self = std::shared_ptr<Session>;

    // -- reading --
    // The next request's head, within the idle and header timeouts (read_request.h).
    void read_request() {
        release_body();
        parser_.emplace();
        parser_->header_limit(16 * 1024);
        parser_->body_limit(srv_.cfg.max_body);
        examples::HeadTimeouts t{std::chrono::seconds(srv_.cfg.idle_timeout_s), std::chrono::seconds(srv_.cfg.header_timeout_s)};
        examples::async_read_request_head(stream_, buffer_, *parser_, *slot_, idle_, t,
                                          [self = shared_from_this()](beast::error_code ec) { self->on_header(ec); });
    }

    // The head is in: size limit, token and body budget are checked before any body byte is read.
    void on_header(beast::error_code ec) {
        // Beast checks Content-Length against body_limit while parsing the header.
        if (ec == http::error::body_limit) return reject_too_large();
        if (ec) return close();  // end of stream, timeout, bad header: nothing to answer
        const auto& req = parser_->get();
        auto len = parser_->content_length();
        if (len && *len > srv_.cfg.max_body) return reject_too_large();
        version_ = req.version();
        examples::split_target(std::string_view(req.target().data(), req.target().size()), path_, query_);
        if (!authorized()) return;
        if (!reserve_body(len)) return;
        if (beast::iequals(req[http::field::expect], "100-continue")) {
            auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_, req.version());
            http::async_write(stream_, *cont, [self = shared_from_this(), cont](beast::error_code ec2, size_t) {
                if (ec2) return self->close();
                self->read_body();
            });
            return;
        }
        read_body();
    }

    void read_body() {
        if (parser_->is_done()) return handle();
        stream_.expires_after(std::chrono::seconds(srv_.cfg.body_timeout_s));
        http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec == http::error::body_limit) return self->reject_too_large();
            if (ec) return self->close();
            self->handle();
        });
    }

    // An answer before the body is read (413, 401, 503), then a lingering close (drain.h).
    void reject(Response res) {
        srv_.in_flight++;
        close_after_ = true;
        drain_after_ = true;
        send(std::move(res));
    }

    void reject_too_large() {
        reject(make_error(11, http::status::payload_too_large, "invalid_request_error",
                          "request body larger than " + std::to_string(srv_.cfg.max_body) + " bytes"));
    }

    // The bearer token names the caller's tenant (tenants.h); checked on the head, so an
    // unauthenticated client cannot make the server buffer a body. /health needs none (with a
    // valid token it also reports the caller's feed). Answers 401 and returns false otherwise.
    bool authorized() {
        const auto& req = parser_->get();
        const auto authorization = req[http::field::authorization];
        tenant_ = srv_.cfg.tenants.authenticate(std::string_view(authorization.data(), authorization.size()));
        if (tenant_ || path_ == "/health") return true;
        Response res = make_error(version_, http::status::unauthorized, "authentication_error",
                                  authorization.empty() ? "missing bearer token: send 'Authorization: Bearer <token>'"
                                                        : "invalid bearer token",
                                  "invalid_api_key");
        res.set(http::field::www_authenticate, "Bearer");
        reject(std::move(res));
        return false;
    }

    // Reserves the body's bytes from max_body_total until the response is sent; answers 503
    // and returns false when that would pass the total.
    bool reserve_body(boost::optional<uint64_t> len) {
        if (parser_->is_done()) return true;  // no body
        const size_t need = len ? (size_t)*len : srv_.cfg.max_body;
        const size_t used = srv_.body_bytes.fetch_add(need);
        if (used + need > srv_.cfg.max_body_total) {
            srv_.body_bytes -= need;
            Response res = make_error(version_, http::status::service_unavailable, "overloaded_error",
                                      "too many request bodies in progress (" + std::to_string(used) +
                                          " bytes); retry later");
            res.set(http::field::retry_after, "1");
            reject(std::move(res));
            return false;
        }
        body_reserved_ = need;
        return true;
    }

    void release_body() {
        if (body_reserved_ > 0) srv_.body_bytes -= body_reserved_;
        body_reserved_ = 0;
    }

    // -- dispatch --
    void handle() {
        srv_.in_flight++;
        const auto& req = parser_->get();
        keep_alive_ = req.keep_alive();
        bool is_admin = path_.rfind("/admin/", 0) == 0;
        if (!is_admin) {
            if (auto f = srv_.faults.pop(path_)) return apply_fault(*f);
        }
        route();
    }

    void apply_fault(const Fault& f) {
        switch (f.mode) {
            case FaultMode::reset:
                srv_.in_flight--;
                return close();
            case FaultMode::status:
                return send(make_error(version_, (http::status)f.status, "injected_fault",
                                       "injected fault: status " + std::to_string(f.status)));
            case FaultMode::too_many: {
                Response res = make_error(version_, http::status::too_many_requests, "rate_limit_error",
                                          "injected fault: rate limited");
                res.set(http::field::retry_after, std::to_string(f.retry_after_s));
                return send(std::move(res));
            }
            case FaultMode::delay: {
                timer_ = std::make_shared<net::steady_timer>(srv_.ioc, std::chrono::milliseconds(f.delay_ms));
                timer_->async_wait([self = shared_from_this()](beast::error_code) { self->route(); });
                return;
            }
            case FaultMode::drop:
            case FaultMode::truncate:
            case FaultMode::bad_json:
                mangle_ = f.mode;
                return route();
        }
    }

    void route() {
        const auto& req = parser_->get();
        auto method = req.method();
        try {
            if (path_ == "/health") {
                if (method != http::verb::get) return method_not_allowed();
                return health();
            }
            if (path_ == "/v1/memory/requests") {
                if (method != http::verb::post) return method_not_allowed();
                return post_request(req.body());
            }
            if (path_.rfind("/v1/memory/requests/", 0) == 0) {
                if (method != http::verb::get) return method_not_allowed();
                return get_request(path_.substr(20));
            }
            if (path_ == "/v1/memory/changes") {
                if (method != http::verb::get) return method_not_allowed();
                return get_changes();
            }
            if (path_ == "/v1/memory/items") {
                if (method != http::verb::delete_) return method_not_allowed();
                return forget("all", "", srv_.db->forget_all(tenant_->name));
            }
            if (path_.rfind("/v1/memory/items/", 0) == 0 && path_.size() > 17) {
                if (method != http::verb::delete_) return method_not_allowed();
                return delete_item(path_.substr(17));
            }
            if (path_.rfind("/v1/memory/documents/", 0) == 0 && path_.size() > 21) {
                if (method != http::verb::delete_) return method_not_allowed();
                const std::string document = path_.substr(21);
                return forget("document", document, srv_.db->forget_document(tenant_->name, document));
            }
            if (path_.rfind("/v1/sources/", 0) == 0) {
                if (method != http::verb::get) return method_not_allowed();
                return get_source(path_.substr(12));
            }
            if (path_ == "/v1/chat/completions") {
                if (method != http::verb::post) return method_not_allowed();
                return chat_completions(req.body());
            }
            if (path_ == "/v1/models" || path_.rfind("/v1/models/", 0) == 0) {
                if (method != http::verb::get) return method_not_allowed();
                return models(path_.size() > 11 ? path_.substr(11) : "");
            }
            if (path_ == "/admin/faults" && srv_.cfg.enable_admin) return admin_faults(method, req.body());
            return send(make_error(version_, http::status::not_found, "not_found",
                                   "no route for " + std::string(req.method_string()) + " " + path_, "unknown_url"));
        } catch (const ApiError& e) {
            return send(make_error(version_, e));
        } catch (const std::exception& e) {
            std::fprintf(stderr, "tandem-cloud: %s %s: %s\n", std::string(req.method_string()).c_str(), path_.c_str(), e.what());
            return send(make_error(version_, http::status::internal_server_error, "server_error",
                                   "the server failed to answer (its log has the details)"));
        }
    }

    void method_not_allowed() {
        send(make_error(version_, http::status::method_not_allowed, "invalid_request_error",
                        "method " + std::string(parser_->get().method_string()) + " is not allowed on " + path_,
                        "method_not_allowed"));
    }

    void bad_request(const std::string& msg, const std::string& param = "") {
        send(make_error(version_, ApiError{400, "invalid_request_error", msg, param, ""}));
    }

    // Parses the body as a JSON object or answers 400; returns false when it answered.
    bool parse_body(const std::string& body, json& out) {
        try {
            out = parse_json_object(body);
        } catch (const ApiError& e) {
            send(make_error(version_, e));
            return false;
        }
        return true;
    }

    // -- endpoints (all but /health and chat act on the caller's tenant only) --
    void health() {
        json h = {{"status", srv_.stopping ? "stopping" : "ok"},
                  {"docs", srv_.db->count_docs()},
                  {"passages", srv_.db->count_passages()}};
        if (tenant_) {  // the caller's own feed, never another tenant's
            const FeedEntry head = srv_.db->head(tenant_->name);
            h["tenant"] = tenant_->name;
            h["epoch"] = srv_.db->epoch();
            h["feed_head"] = format_cursor(srv_.db->epoch(), head.seq, head.tag);
            h["pending"] = srv_.db->count_pending(tenant_->name);
        }
        send(make_json(version_, http::status::ok, h));
    }

    // A short string field: absent -> "", else 0..max_bytes bytes without control characters.
    bool optional_id(const json& j, const char* key, size_t max_bytes, std::string& out) {
        auto it = j.find(key);
        if (it == j.end() || it->is_null()) return true;
        bool ok = it->is_string() && it->get<std::string>().size() <= max_bytes;
        if (ok)
            for (unsigned char c : it->get<std::string>()) ok = ok && c >= 0x20 && c != 0x7f;
        if (!ok) {
            bad_request("'" + std::string(key) + "' must be a string of at most " + std::to_string(max_bytes) +
                            " bytes without control characters",
                        key);
            return false;
        }
        out = it->get<std::string>();
        return true;
    }

    void post_request(const std::string& body) {
        json j;
        if (!parse_body(body, j)) return;
        NewRequest r;
        if (!j.contains("request_id") || !j["request_id"].is_string() || j["request_id"].get<std::string>().empty() ||
            j["request_id"].get<std::string>().size() > 256)
            return bad_request("'request_id' must be a non-empty string of at most 256 bytes", "request_id");
        if (!j.contains("context") || !j["context"].is_string() || j["context"].get<std::string>().empty())
            return bad_request("'context' must be a non-empty string", "context");
        if (j.contains("max_items")) {
            if (!j["max_items"].is_number_integer() || j["max_items"].get<int64_t>() < 1 ||
                j["max_items"].get<int64_t>() > 50)
                return bad_request("'max_items' must be an integer from 1 to 50", "max_items");
            r.max_items = j["max_items"].get<int>();
        }
        if (!optional_id(j, "document", 256, r.document)) return;
        r.request_id = j["request_id"].get<std::string>();
        r.context = j["context"].get<std::string>();
        auto added = srv_.db->add_request(tenant_->name, r, srv_.cfg.max_pending);
        if (added == ServerDb::AddResult::conflict)
            return send(make_error(version_, ApiError{409, "idempotency_conflict",
                                                      "request_id '" + r.request_id +
                                                          "' was already used with a different context or document",
                                                      "request_id", "idempotency_conflict"}));
        if (added == ServerDb::AddResult::too_many) {
            Response res = make_error(version_, http::status::too_many_requests, "rate_limit_error",
                                      "too many memory requests pending (" + std::to_string(srv_.cfg.max_pending) +
                                          "); try again shortly",
                                      "too_many_pending");
            res.set(http::field::retry_after, "5");
            return send(std::move(res));
        }
        if (added == ServerDb::AddResult::created) srv_.worker->wake();
        send(make_json(version_, http::status::accepted,
                       {{"request_id", r.request_id},
                        {"status", added == ServerDb::AddResult::created ? "accepted" : "duplicate"}}));
    }

    void get_request(const std::string& id) {
        MemoryRequest r;
        if (!srv_.db->get_request(tenant_->name, id, &r))
            return send(make_error(version_, http::status::not_found, "not_found", "no request '" + id + "'", "not_found"));
        send(make_json(version_, http::status::ok,
                       {{"request_id", r.request_id}, {"document", r.document}, {"state", r.state}, {"error", r.error}}));
    }

    void delete_item(const std::string& id) {
        if (srv_.db->forget_item(tenant_->name, id) == 0)
            return send(make_error(version_, http::status::not_found, "not_found", "no live item '" + id + "'", "not_found"));
        srv_.wake_waiters();
        send(make_json(version_, http::status::ok, {{"id", id}, {"deleted", true}}));
    }

    // DELETE of a document's notes or of all notes: 200 {scope, document?, deleted: n}.
    void forget(const char* scope, const std::string& document, int64_t n) {
        if (n > 0) srv_.wake_waiters();
        json out = {{"scope", scope}, {"deleted", n}};
        if (!document.empty()) out["document"] = document;
        send(make_json(version_, http::status::ok, out));
    }

    // The passage of a source document that a note came from (passage_of_note), so that an
    // app can show a note's source.
    void get_source(const std::string& doc_id) {
        CorpusDoc d;
        if (doc_id.empty() || !srv_.db->get_document(doc_id, &d) || d.passages.empty())
            return send(make_error(version_, http::status::not_found, "not_found", "no source document '" + doc_id + "'"));
        const size_t i = passage_of_note(d.passages, query_.count("note") ? query_["note"] : std::string());
        send(make_json(version_, http::status::ok,
                       {{"doc_id", d.doc_id},
                        {"title", d.title},
                        {"passage", d.passages[i]},
                        {"index", i},
                        {"count", d.passages.size()}}));
    }

    void get_changes() {
        limit_ = 100;
        double wait_s = 0;
        auto q = [&](const char* k) { return query_.count(k) ? query_[k] : std::string(); };
        const std::optional<FeedCursor> cursor = parse_cursor(q("since"));
        if (!cursor) return bad_request("'since' must be a next_cursor returned by this server", "since");
        if (!q("limit").empty() && !parse_i64(q("limit"), 1, 1000, &limit_))
            return bad_request("'limit' must be an integer from 1 to 1000", "limit");
        if (std::string w = q("wait"); !w.empty()) {
            char* end = nullptr;
            wait_s = std::strtod(w.c_str(), &end);
            if (*end != '\0' || !(wait_s >= 0)) return bad_request("'wait' must be a number of seconds >= 0", "wait");
            wait_s = std::min(wait_s, srv_.cfg.max_wait_s);
        }
        since_text_ = q("since");
        start_ = resolve_cursor(*cursor, *srv_.db, tenant_->name);
        deadline_ = std::chrono::steady_clock::now() + std::chrono::milliseconds((int64_t)(wait_s * 1000));
        poll_changes();
    }

    void poll_changes() {
        const std::string& tenant = tenant_->name;
        std::vector<FeedEntry> entries = srv_.db->changes(tenant, start_.after, (size_t)limit_);
        if (entries.empty() && !start_.reset && !srv_.stopping && std::chrono::steady_clock::now() < deadline_) {
            timer_ = std::make_shared<net::steady_timer>(srv_.ioc, deadline_);
            const uint64_t id = ++srv_.last_waiter_id;
            srv_.waiters.emplace(id, timer_);
            timer_->async_wait([self = shared_from_this(), id](beast::error_code) {
                self->srv_.waiters.erase(id);  // timed out or woken: no longer waiting
                try {
                    self->poll_changes();
                } catch (const std::exception& e) {
                    std::fprintf(stderr, "tandem-cloud: long poll: %s\n", e.what());
                    self->send(make_error(self->version_, http::status::internal_server_error, "server_error",
                                          "the server failed to answer (its log has the details)"));
                }
            });
            return;
        }
        json items = json::array();
        for (const FeedEntry& e : entries) items.push_back(entry_json(e));
        const std::string epoch = srv_.db->epoch();
        std::string next = !entries.empty() ? format_cursor(epoch, entries.back().seq, entries.back().tag)
                           : start_.reset   ? format_cursor(epoch, 0, "")
                                            : since_text_;
        send(make_json(version_, http::status::ok,
                       {{"items", items}, {"next_cursor", next}, {"epoch", epoch}, {"reset", start_.reset}}));
    }

    // GET /v1/models (the served model, or none without --model) and /v1/models/ID.
    void models(const std::string& id) {
        json data = json::array();
        if (srv_.chat) data.push_back(model_json(srv_.chat->model_name(), srv_.started_at));
        if (id.empty()) return send(make_json(version_, http::status::ok, {{"object", "list"}, {"data", data}}));
        for (const json& m : data)
            if (m["id"] == id) return send(make_json(version_, http::status::ok, m));
        send(make_error(version_, ApiError{404, "invalid_request_error", "the model '" + id + "' does not exist", "model",
                                           "model_not_found"}));
    }

    void admin_faults(http::verb method, const std::string& body) {
        if (method == http::verb::delete_) {
            srv_.faults.clear();
        } else if (method == http::verb::post) {
            // {"path": "/v1/memory/changes", "faults": ["500*2", "delay:300"]}
            json j;
            if (!parse_body(body, j)) return;
            if (!j.contains("path") || !j["path"].is_string() || !j.contains("faults") || !j["faults"].is_array())
                return bad_request("want {\"path\": PATH, \"faults\": [TOKEN, ...]}");
            std::vector<Fault> parsed;
            try {
                for (const json& t : j["faults"]) {
                    if (!t.is_string()) return bad_request("fault tokens must be strings");
                    for (const Fault& f : parse_fault_token(t.get<std::string>())) parsed.push_back(f);
                }
            } catch (const FaultSpecError& e) {
                return bad_request(e.what());
            }
            for (const Fault& f : parsed) srv_.faults.push(j["path"].get<std::string>(), f);
        } else if (method != http::verb::get) {
            return method_not_allowed();
        }
        send(make_json(version_, http::status::ok, {{"faults", srv_.faults.list()}}));
    }

    // -- chat completions (OpenAI-compatible, openai_api.h; needs --model) --
    void chat_completions(const std::string& body) {
        if (!srv_.chat)
            return send(make_error(version_, http::status::not_implemented, "not_implemented",
                                   "chat completions need a model: start tandem-cloud with --model or --llm-url",
                                   "no_model"));
        ChatRequest req = parse_chat_request(body);  // throws ApiError: a 400 naming the field
        ChatJob job;
        job.params = std::move(req.params);
        const std::string id = "chatcmpl-" + random_hex(12);
        const std::string model = srv_.chat->model_name();
        const int64_t created = unix_seconds();
        auto self = shared_from_this();
        auto exec = stream_.get_executor();
        if (!req.stream) {
            job.on_piece = [](const std::string&) { return true; };
            job.on_done = [self, exec, id, created, model](const std::string& text, const std::string& finish, int64_t pt,
                                                           int64_t ct, const std::string& err) {
                net::post(exec, [=] {
                    if (finish == "error") {
                        std::fprintf(stderr, "tandem-cloud: chat completion %s: %s\n", id.c_str(), err.c_str());
                        return self->send(make_error(self->version_, http::status::internal_server_error, "server_error",
                                                     "the model failed to answer: " + err));
                    }
                    if (finish == "upstream_error")
                        return self->send(make_error(self->version_, http::status::bad_gateway, "upstream_error", err));
                    self->send(make_json(self->version_, http::status::ok,
                                         completion_json(id, created, model, text, finish == "cancelled" ? "stop" : finish, pt, ct)));
                });
            };
            srv_.chat->submit(std::move(job));
            return;
        }
        // Streaming: headers now, then a chunk with the role, one per piece, one with the
        // finish_reason, with include_usage one with the usage, then [DONE].
        auto gone = client_gone_;
        const bool usage = req.include_usage;
        stream_write("HTTP/1.1 200 OK\r\nServer: tandem-cloud\r\nContent-Type: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n");
        auto event = [](const json& e) { return "data: " + e.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n"; };
        auto chunk = [=](const json& delta, const json& finish) {
            return event(chunk_json(id, created, model, delta, finish, usage));
        };
        stream_chunk(chunk({{"role", "assistant"}, {"content", ""}}, nullptr));
        job.on_piece = [self, exec, gone, chunk](const std::string& piece) {
            if (*gone) return false;  // the client hung up: stop generating
            net::post(exec, [self, data = chunk({{"content", piece}}, nullptr)] { self->stream_chunk(data); });
            return true;
        };
        job.on_done = [self, exec, event, chunk, id, created, model, usage](const std::string&, const std::string& finish,
                                                                          int64_t pt, int64_t ct, const std::string& err) {
            net::post(exec, [=] {
                if (finish == "error") {
                    std::fprintf(stderr, "tandem-cloud: chat completion %s: %s\n", id.c_str(), err.c_str());
                    self->stream_chunk(event(error_body(ApiError{500, "server_error", "the model failed to answer: " + err, "", ""})));
                } else if (finish == "upstream_error") {
                    self->stream_chunk(event(error_body(ApiError{502, "upstream_error", err, "", ""})));
                } else {
                    self->stream_chunk(chunk(json::object(), finish == "cancelled" ? "stop" : finish));
                    if (usage) self->stream_chunk(event(usage_chunk_json(id, created, model, pt, ct)));
                }
                self->stream_chunk("data: [DONE]\n\n");
                self->stream_write("0\r\n\r\n");
                self->stream_done_ = true;
            });
        };
        srv_.chat->submit(std::move(job));
    }

    void stream_chunk(const std::string& data) {
        char head[32];
        std::snprintf(head, sizeof head, "%zx\r\n", data.size());
        stream_write(head + data + "\r\n");
    }

    // Queues raw bytes; writes go out one at a time in order.
    void stream_write(std::string bytes) {
        out_q_.push_back(std::make_shared<std::string>(std::move(bytes)));
        if (!writing_) write_next();
    }

    void write_next() {
        if (out_q_.empty()) {
            writing_ = false;
            if (stream_done_) {  // the last chunk is out: next request on this connection
                stream_done_ = false;
                srv_.in_flight--;
                if (!keep_alive_ || srv_.stopping) return close();
                query_.clear();
                read_request();
            }
            return;
        }
        writing_ = true;
        auto buf = out_q_.front();
        out_q_.pop_front();
        stream_.expires_after(std::chrono::seconds(60));
        net::async_write(stream_, net::buffer(*buf), [self = shared_from_this(), buf](beast::error_code ec, size_t) {
            if (ec) {
                *self->client_gone_ = true;
                self->out_q_.clear();
                if (self->stream_done_) self->srv_.in_flight--;
                self->stream_done_ = false;
                return self->close();
            }
            self->write_next();
        });
    }

    // -- writing --
    void send(Response res) {
        bool close = close_after_ || !keep_alive_ || srv_.stopping;
        res.keep_alive(!close);
        if (mangle_ == FaultMode::truncate) {
            std::string b = res.body();
            res.body() = b.substr(0, b.size() / 2);
            res.prepare_payload();
        } else if (mangle_ == FaultMode::bad_json) {
            res.result(http::status::ok);
            res.body() = "{\"items\": [ this is not JSON";
            res.prepare_payload();
        }
        if (mangle_ == FaultMode::drop) {
            // Headers and half the body, then hang up: the client sees a short body.
            std::ostringstream os;
            os << res;
            auto wire = std::make_shared<std::string>(os.str());
            wire->resize(wire->size() - res.body().size() / 2 - 1);
            net::async_write(stream_, net::buffer(*wire), [self = shared_from_this(), wire](beast::error_code, size_t) {
                self->srv_.in_flight--;
                self->close();
            });
            return;
        }
        auto sp = std::make_shared<Response>(std::move(res));
        stream_.expires_after(std::chrono::seconds(30));
        http::async_write(stream_, *sp, [self = shared_from_this(), sp, close](beast::error_code ec, size_t) {
            self->srv_.in_flight--;
            if (ec) return self->close();
            if (self->drain_after_) return examples::drain_then_close(self->stream_, self);
            if (close) return self->close();
            self->mangle_.reset();
            self->timer_.reset();
            self->query_.clear();
            self->read_request();
        });
    }

    void close() {
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
        stream_.socket().close(ec);
    }

    beast::tcp_stream stream_;
    CloudServer::Impl& srv_;
    std::shared_ptr<examples::AcceptLoop::Slot> slot_;
    bool idle_ = false;        // waiting for a request's first byte
    size_t body_reserved_ = 0;  // of srv_.body_bytes
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    unsigned version_ = 11;
    bool keep_alive_ = true;
    bool close_after_ = false;
    bool drain_after_ = false;
    std::optional<FaultMode> mangle_;
    std::shared_ptr<net::steady_timer> timer_;
    std::string path_;
    std::map<std::string, std::string> query_;
    std::optional<Tenant> tenant_;  // the caller (set before any route runs)
    FeedStart start_;               // GET /v1/memory/changes: where the page starts
    std::string since_text_;
    int64_t limit_ = 100;
    std::chrono::steady_clock::time_point deadline_;
    // streaming chat: raw bytes queued for the socket, and whether the client went away
    std::deque<std::shared_ptr<std::string>> out_q_;
    bool writing_ = false, stream_done_ = false;
    std::shared_ptr<std::atomic<bool>> client_gone_ = std::make_shared<std::atomic<bool>>(false);
};

// ---- accept loop and shutdown ----------------------------------------------------------

void CloudServer::Impl::accept() {
    accept_loop = examples::AcceptLoop::create(
        acceptor, {cfg.max_connections, 32}, "tandem-cloud",
        [this](tcp::socket socket, std::shared_ptr<examples::AcceptLoop::Slot> slot) {
            std::make_shared<Session>(std::move(socket), *this, std::move(slot))->start();
        });
    accept_loop->start();
}

void CloudServer::Impl::begin_shutdown() {
    if (stopping) return;
    stopping = true;
    std::fprintf(stderr, "tandem-cloud: shutting down\n");
    if (accept_loop) accept_loop->stop();
    beast::error_code ec;
    acceptor.close(ec);
    wake_waiters();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    // Poll until the requests in flight are answered (or the deadline), then stop the loop.
    struct Poll {
        static void arm(Impl* s, std::chrono::steady_clock::time_point dl) {
            s->stop_timer.expires_after(std::chrono::milliseconds(20));
            s->stop_timer.async_wait([s, dl](beast::error_code) {
                if (s->in_flight <= 0 || std::chrono::steady_clock::now() >= dl) return s->ioc.stop();
                arm(s, dl);
            });
        }
    };
    Poll::arm(this, deadline);
}

CloudServer::CloudServer(ServerConfig cfg, std::unique_ptr<MemoryGenerator> gen, std::shared_ptr<ChatBackend> chat)
    : impl_(new Impl) {
    impl_->chat = std::move(chat);
    impl_->cfg = std::move(cfg);
    impl_->db = open_database(impl_->cfg.db_path);
    if (!impl_->cfg.faults.empty()) impl_->faults.push_spec(impl_->cfg.faults);
    Impl* s = impl_.get();
    impl_->worker = std::make_unique<MemoryWorker>(WorkerConfig{impl_->cfg.db_path, impl_->cfg.lease_ms}, std::move(gen), [s] {
        net::post(s->ioc, [s] { s->wake_waiters(); });
    });
    impl_->events = open_feed_events(impl_->cfg.db_path);
}

CloudServer::~CloudServer() {
    if (impl_->worker) impl_->worker->stop();
}

uint16_t CloudServer::listen() {
    Impl& s = *impl_;
    beast::error_code ec;
    auto addr = net::ip::make_address(s.cfg.host, ec);
    if (ec) throw std::runtime_error("bad --host '" + s.cfg.host + "': " + ec.message());
    tcp::endpoint ep(addr, s.cfg.port);
    s.acceptor.open(ep.protocol(), ec);
    if (!ec) s.acceptor.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) s.acceptor.bind(ep, ec);
    if (!ec) s.acceptor.listen(net::socket_base::max_listen_connections, ec);
    if (ec)
        throw std::runtime_error("cannot listen on " + s.cfg.host + ":" + std::to_string(s.cfg.port) + ": " +
                                 ec.message());
    return s.acceptor.local_endpoint().port();
}

void CloudServer::run() {
    Impl& s = *impl_;
    s.signals.async_wait([&s](beast::error_code ec, int) {
        if (!ec) s.begin_shutdown();
    });
    s.worker->start();
    // Other processes on the same database (replicas): their notes wake our long polls, their
    // new requests our worker.
    if (s.events)
        s.events->start([&s](const std::string&) { net::post(s.ioc, [&s] { s.wake_waiters(); }); },
                        [&s] { s.worker->wake(); });
    s.accept();
    s.ioc.run();
    s.events.reset();
    s.worker->stop();
}

}  // namespace tandem::cloud
