// CloudServer: Beast sessions on one I/O thread; the memory worker on another.
#include "http_server.h"
#include "../common/http_target.h"

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

#include "tandem/cloud/server_db.h"
#include "tandem/cloud/llm.h"
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

static Response make_error(unsigned version, http::status status, const std::string& type,
                           const std::string& message) {
    return make_json(version, status, {{"error", {{"message", message}, {"type", type}, {"code", (int)status}}}});
}

static json entry_json(const FeedEntry& e) {
    if (e.deleted) return {{"id", e.id}, {"deleted", true}};
    return {{"id", e.id},
            {"request_id", e.request_id},
            {"text", e.text},
            {"source", {{"doc_id", e.doc_id}, {"title", e.title}}},
            {"created_at", e.created_at},
            {"method", e.method}};
}

// ---- server state ----------------------------------------------------------------------

struct CloudServer::Impl {
    ServerConfig cfg;
    net::io_context ioc{1};
    tcp::acceptor acceptor{ioc};
    net::signal_set signals{ioc, SIGINT, SIGTERM};
    net::steady_timer stop_timer{ioc};
    std::unique_ptr<ServerDb> db;  // the I/O thread's connection
    std::unique_ptr<MemoryWorker> worker;
    std::shared_ptr<ChatWorker> chat;  // null without --model: chat answers 501
    uint64_t chat_seq = 0;
    FaultQueues faults;
    // Long polls waiting for new feed entries (touched on the I/O thread only).
    std::vector<std::weak_ptr<net::steady_timer>> waiters;
    bool stopping = false;
    int in_flight = 0;  // requests read and not yet answered

    void wake_waiters() {
        for (auto& w : waiters)
            if (auto t = w.lock()) t->cancel();
        waiters.clear();
    }
    void accept();
    void begin_shutdown();
};

// ---- a connection ----------------------------------------------------------------------

class Session : public std::enable_shared_from_this<Session> {
public:
    Session(tcp::socket&& socket, CloudServer::Impl& srv) : stream_(std::move(socket)), srv_(srv) {}
    void start() { read_header(); }

private:
    using Self = std::shared_ptr<Session>;

    // -- reading --
    void read_header() {
        parser_.emplace();
        parser_->header_limit(16 * 1024);
        parser_->body_limit(srv_.cfg.max_body);
        stream_.expires_after(std::chrono::seconds(60));
        http::async_read_header(stream_, buffer_, *parser_,
                                [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
    }

    void on_header(beast::error_code ec) {
        // Beast checks Content-Length against body_limit while parsing the header.
        if (ec == http::error::body_limit) return reject_too_large();
        if (ec) return close();  // end of stream, timeout, bad header: nothing to answer
        const auto& req = parser_->get();
        auto len = parser_->content_length();
        if (len && *len > srv_.cfg.max_body) return reject_too_large();
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
        stream_.expires_after(std::chrono::seconds(60));
        http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec == http::error::body_limit) return self->reject_too_large();
            if (ec) return self->close();
            self->handle();
        });
    }

    // 413, then drain what the client still sends (so it reads the answer, not a reset).
    void reject_too_large() {
        srv_.in_flight++;
        close_after_ = true;
        drain_after_ = true;
        send(make_error(11, http::status::payload_too_large, "invalid_request_error",
                        "request body larger than " + std::to_string(srv_.cfg.max_body) + " bytes"));
    }

    void drain() {
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
        stream_.expires_after(std::chrono::seconds(2));
        auto buf = std::make_shared<std::vector<char>>(64 * 1024);
        stream_.async_read_some(net::buffer(*buf), [self = shared_from_this(), buf](beast::error_code e, size_t) {
            if (e) return self->close();
            self->drain();
        });
    }

    // -- dispatch --
    void handle() {
        srv_.in_flight++;
        const auto& req = parser_->get();
        version_ = req.version();
        keep_alive_ = req.keep_alive();
        examples::split_target(std::string_view(req.target().data(), req.target().size()), path_, query_);
        bool is_admin = path_.rfind("/admin/", 0) == 0;
        if (path_ != "/health" && !srv_.cfg.token.empty()) {
            std::string want = "Bearer " + srv_.cfg.token;
            auto got = req[http::field::authorization];
            if (got.size() != want.size() || !std::equal(want.begin(), want.end(), got.begin())) {
                Response res = make_error(version_, http::status::unauthorized, "authentication_error",
                                          got.empty() ? "missing bearer token" : "invalid bearer token");
                res.set(http::field::www_authenticate, "Bearer");
                return send(std::move(res));
            }
        }
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
                return send(make_json(version_, http::status::ok,
                                      {{"status", srv_.stopping ? "stopping" : "ok"},
                                       {"docs", srv_.db->count_docs()},
                                       {"passages", srv_.db->count_passages()},
                                       {"feed_head", std::to_string(srv_.db->head())},
                                       {"pending", srv_.db->count_pending()}}));
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
            if (path_.rfind("/v1/memory/items/", 0) == 0) {
                if (method != http::verb::delete_) return method_not_allowed();
                return delete_item(path_.substr(17));
            }
            if (path_.rfind("/v1/sources/", 0) == 0) {
                if (method != http::verb::get) return method_not_allowed();
                return get_source(path_.substr(12));
            }
            if (path_ == "/v1/chat/completions") {
                if (method != http::verb::post) return method_not_allowed();
                return chat_completions(req.body());
            }
            if (path_ == "/admin/faults" && srv_.cfg.enable_admin) return admin_faults(method, req.body());
            return send(make_error(version_, http::status::not_found, "not_found", "no route for " + path_));
        } catch (const std::exception& e) {
            return send(make_error(version_, http::status::internal_server_error, "server_error", e.what()));
        }
    }

    void method_not_allowed() {
        send(make_error(version_, http::status::method_not_allowed, "invalid_request_error",
                        "method not allowed on " + path_));
    }

    void bad_request(const std::string& msg) {
        send(make_error(version_, http::status::bad_request, "invalid_request_error", msg));
    }

    // Parses the body as a JSON object or answers 400; returns false when it answered.
    bool parse_body(const std::string& body, json& out) {
        try {
            out = json::parse(body);
        } catch (const json::exception& e) {
            bad_request(std::string("malformed JSON body: ") + e.what());
            return false;
        }
        if (!out.is_object()) {
            bad_request("the JSON body must be an object");
            return false;
        }
        return true;
    }

    // -- endpoints --
    void post_request(const std::string& body) {
        json j;
        if (!parse_body(body, j)) return;
        if (!j.contains("request_id") || !j["request_id"].is_string() || j["request_id"].get<std::string>().empty() ||
            j["request_id"].get<std::string>().size() > 256)
            return bad_request("'request_id' must be a non-empty string of at most 256 bytes");
        if (!j.contains("context") || !j["context"].is_string() || j["context"].get<std::string>().empty())
            return bad_request("'context' must be a non-empty string");
        int max_items = 5;
        if (j.contains("max_items")) {
            if (!j["max_items"].is_number_integer() || j["max_items"].get<int64_t>() < 1 ||
                j["max_items"].get<int64_t>() > 50)
                return bad_request("'max_items' must be an integer in [1, 50]");
            max_items = j["max_items"].get<int>();
        }
        std::string id = j["request_id"].get<std::string>();
        auto r = srv_.db->add_request(id, j["context"].get<std::string>(), max_items);
        if (r == ServerDb::AddResult::conflict)
            return send(make_error(version_, http::status::conflict, "idempotency_conflict",
                                   "request_id '" + id + "' was already used with a different context"));
        if (r == ServerDb::AddResult::created) srv_.worker->wake();
        send(make_json(version_, http::status::accepted,
                       {{"request_id", id}, {"status", r == ServerDb::AddResult::created ? "accepted" : "duplicate"}}));
    }

    void get_request(const std::string& id) {
        MemoryRequest r;
        if (!srv_.db->get_request(id, &r))
            return send(make_error(version_, http::status::not_found, "not_found", "no request '" + id + "'"));
        send(make_json(version_, http::status::ok, {{"request_id", r.request_id}, {"state", r.state}, {"error", r.error}}));
    }

    void delete_item(const std::string& id) {
        int64_t seq = srv_.db->retract(id);
        if (seq == 0)
            return send(make_error(version_, http::status::not_found, "not_found", "no live item '" + id + "'"));
        srv_.wake_waiters();
        send(make_json(version_, http::status::ok, {{"id", id}, {"deleted", true}, {"seq", std::to_string(seq)}}));
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
        since_ = 0;
        limit_ = 100;
        double wait_s = 0;
        auto q = [&](const char* k) { return query_.count(k) ? query_[k] : std::string(); };
        if (!q("since").empty() && !parse_i64(q("since"), 0, INT64_MAX / 2, &since_))
            return bad_request("'since' must be a cursor returned by this server (a decimal number)");
        if (!q("limit").empty() && !parse_i64(q("limit"), 1, 1000, &limit_))
            return bad_request("'limit' must be an integer in [1, 1000]");
        if (std::string w = q("wait"); !w.empty()) {
            char* end = nullptr;
            wait_s = std::strtod(w.c_str(), &end);
            if (*end != '\0' || !(wait_s >= 0)) return bad_request("'wait' must be a number of seconds >= 0");
            wait_s = std::min(wait_s, srv_.cfg.max_wait_s);
        }
        deadline_ = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds((int64_t)(wait_s * 1000));
        poll_changes();
    }

    void poll_changes() {
        std::vector<FeedEntry> entries = srv_.db->changes(since_, (size_t)limit_);
        if (entries.empty() && !srv_.stopping && std::chrono::steady_clock::now() < deadline_) {
            timer_ = std::make_shared<net::steady_timer>(srv_.ioc, deadline_);
            srv_.waiters.push_back(timer_);
            timer_->async_wait([self = shared_from_this()](beast::error_code) {
                try {
                    self->poll_changes();
                } catch (const std::exception& e) {
                    self->send(make_error(self->version_, http::status::internal_server_error, "server_error", e.what()));
                }
            });
            return;
        }
        json items = json::array();
        for (const FeedEntry& e : entries) items.push_back(entry_json(e));
        int64_t next = entries.empty() ? since_ : entries.back().seq;
        send(make_json(version_, http::status::ok, {{"items", items}, {"next_cursor", std::to_string(next)}}));
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

    // -- chat completions (OpenAI-compatible; needs --model) --
    void chat_completions(const std::string& body) {
        if (!srv_.chat)
            return send(make_error(version_, http::status::not_implemented, "not_implemented",
                                   "chat completions need a model: start tandem-cloud with --model"));
        json j;
        if (!parse_body(body, j)) return;
        ChatJob job;
        bool stream = false;
        try {
            const json& msgs = j.at("messages");
            if (!msgs.is_array() || msgs.empty()) return bad_request("'messages' must be a non-empty array");
            for (const json& m : msgs) {
                const std::string role = m.at("role").get<std::string>();
                if (role != "system" && role != "user" && role != "assistant")
                    return bad_request("message role '" + role + "' is not system, user or assistant");
                job.messages.emplace_back(role, m.at("content").get<std::string>());
            }
            job.max_tokens = j.value("max_tokens", 256);
            job.temperature = j.value("temperature", 0.7);
            stream = j.value("stream", false);
        } catch (const json::exception& e) {
            return bad_request(std::string("bad chat request: ") + e.what());
        }
        if (job.max_tokens < 1 || job.max_tokens > 4096) return bad_request("'max_tokens' must be in [1, 4096]");
        if (!(job.temperature >= 0 && job.temperature <= 2)) return bad_request("'temperature' must be in [0, 2]");
        const std::string id = "chatcmpl-" + std::to_string(++srv_.chat_seq);
        const std::string model = srv_.chat->model_name();
        auto self = shared_from_this();
        auto exec = stream_.get_executor();
        if (!stream) {
            job.on_piece = [](const std::string&) { return true; };
            job.on_done = [self, exec, id, model](const std::string& text, const std::string& finish, int64_t pt, int64_t ct,
                                                  const std::string& err) {
                net::post(exec, [=] {
                    if (finish == "error")
                        return self->send(make_error(self->version_, http::status::internal_server_error, "server_error", err));
                    self->send(make_json(self->version_, http::status::ok,
                                         {{"id", id}, {"object", "chat.completion"}, {"model", model},
                                          {"choices", {{{"index", 0}, {"message", {{"role", "assistant"}, {"content", text}}},
                                                        {"finish_reason", finish}}}},
                                          {"usage", {{"prompt_tokens", pt}, {"completion_tokens", ct}, {"total_tokens", pt + ct}}}}));
                });
            };
            srv_.chat->submit(std::move(job));
            return;
        }
        // Streaming: headers now, then one SSE event per piece as a chunk, then [DONE].
        auto gone = client_gone_;
        stream_write("HTTP/1.1 200 OK\r\nServer: tandem-cloud\r\nContent-Type: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n");
        auto event = [id, model](const json& delta, const json& finish) {
            json e = {{"id", id}, {"object", "chat.completion.chunk"}, {"model", model},
                      {"choices", {{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}}}};
            return "data: " + e.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
        };
        job.on_piece = [self, exec, gone, event](const std::string& piece) {
            if (*gone) return false;  // the client hung up: stop generating
            net::post(exec, [self, data = event({{"content", piece}}, nullptr)] { self->stream_chunk(data); });
            return true;
        };
        job.on_done = [self, exec, event](const std::string&, const std::string& finish, int64_t, int64_t, const std::string& err) {
            net::post(exec, [=] {
                if (finish == "error")
                    self->stream_chunk("data: " + json{{"error", {{"message", err}, {"type", "server_error"}}}}.dump() + "\n\n");
                else
                    self->stream_chunk(event(json::object(), finish == "cancelled" ? "stop" : finish));
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
                read_header();
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
            if (self->drain_after_) return self->drain();
            if (close) return self->close();
            self->mangle_.reset();
            self->timer_.reset();
            self->query_.clear();
            self->read_header();
        });
    }

    void close() {
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
        stream_.socket().close(ec);
    }

    beast::tcp_stream stream_;
    CloudServer::Impl& srv_;
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
    int64_t since_ = 0, limit_ = 100;
    std::chrono::steady_clock::time_point deadline_;
    // streaming chat: raw bytes queued for the socket, and whether the client went away
    std::deque<std::shared_ptr<std::string>> out_q_;
    bool writing_ = false, stream_done_ = false;
    std::shared_ptr<std::atomic<bool>> client_gone_ = std::make_shared<std::atomic<bool>>(false);
};

// ---- accept loop and shutdown ----------------------------------------------------------

void CloudServer::Impl::accept() {
    acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
        if (ec) {
            if (ec != net::error::operation_aborted) std::fprintf(stderr, "tandem-cloud: accept: %s\n", ec.message().c_str());
            if (!stopping && ec != net::error::operation_aborted) accept();
            return;
        }
        std::make_shared<Session>(std::move(socket), *this)->start();
        if (!stopping) accept();
    });
}

void CloudServer::Impl::begin_shutdown() {
    if (stopping) return;
    stopping = true;
    std::fprintf(stderr, "tandem-cloud: shutting down\n");
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

CloudServer::CloudServer(ServerConfig cfg, std::unique_ptr<MemoryGenerator> gen, std::shared_ptr<ChatWorker> chat)
    : impl_(new Impl) {
    impl_->chat = std::move(chat);
    impl_->cfg = std::move(cfg);
    impl_->db = std::make_unique<ServerDb>(impl_->cfg.db_path);
    if (!impl_->cfg.faults.empty()) impl_->faults.push_spec(impl_->cfg.faults);
    Impl* s = impl_.get();
    impl_->worker = std::make_unique<MemoryWorker>(impl_->cfg.db_path, std::move(gen), [s] {
        net::post(s->ioc, [s] { s->wake_waiters(); });
    });
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
    s.accept();
    s.ioc.run();
    s.worker->stop();
}

}  // namespace tandem::cloud
