// Server: asynchronous Beast connections on one I/O thread, handlers on a fixed worker pool
// (see server.h).
#include "server.h"
#include "../common/accept_loop.h"
#include "../common/drain.h"
#include "../common/http_target.h"
#include "../common/read_request.h"

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

namespace tandem::compose {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using json = nlohmann::json;

// ---- small helpers ---------------------------------------------------------------------

// Compares in time independent of where the strings differ.
static bool same_secret(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < a.size(); i++) diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

// "127.0.0.1:PORT", "localhost:PORT" (or without the port).
static bool local_host(std::string_view host, uint16_t port) {
    std::string p = ":" + std::to_string(port);
    for (std::string_view name : {"127.0.0.1", "localhost"}) {
        if (host == name) return true;
        if (host.size() == name.size() + p.size() && host.substr(0, name.size()) == name &&
            host.substr(name.size()) == p)
            return true;
    }
    return false;
}

std::string random_token() {
    std::random_device rd;
    static const char* hex = "0123456789abcdef";
    std::string t;
    for (int i = 0; i < 4; i++) {
        uint32_t v = rd();
        for (int j = 0; j < 8; j++) t += hex[(v >> (4 * j)) & 15];
    }
    return t;
}

void Reply::json(int status, const nlohmann::json& body) {
    send(status, "application/json", body.dump(-1, ' ', false, json::error_handler_t::replace));
}

void Reply::error(int status, const std::string& message) {
    json(status, {{"error", {{"message", message}, {"code", status}}}});
}

// ---- server state ----------------------------------------------------------------------

class Connection;

struct Server::Impl {
    ServerOptions opt;
    Handler& handler;
    std::atomic<bool> stopping{false};
    // Declared before the io_context: a Connection destroyed with its pending handlers (when
    // the io_context goes) still finds these.
    std::mutex conns_mu;  // guards conns
    std::set<Connection*> conns;  // open connections, closed by stop()
    net::io_context ioc{1};
    tcp::acceptor acceptor{ioc};
    uint16_t port = 0;
    std::shared_ptr<examples::AcceptLoop> accept_loop;
    std::optional<net::executor_work_guard<net::io_context::executor_type>> work;  // run() until the workers end

    // The worker pool: requests waiting for a worker, and the workers.
    std::mutex jobs_mu;  // guards jobs, idle_workers, running_workers, jobs_closed
    std::condition_variable jobs_cv;
    std::deque<std::function<void()>> jobs;
    int idle_workers = 0, running_workers = 0;
    bool jobs_closed = false;
    std::vector<std::thread> workers;

    Impl(ServerOptions o, Handler& h) : opt(std::move(o)), handler(h) {}
    bool submit(std::function<void()> job);
    void worker_loop();
    void close_jobs();
};

// Queues a request for the workers; false when every worker is busy and `workers` requests
// already wait, or when stopping.
bool Server::Impl::submit(std::function<void()> job) {
    {
        std::lock_guard<std::mutex> lock(jobs_mu);
        if (jobs_closed || jobs.size() >= (size_t)idle_workers + (size_t)opt.workers) return false;
        jobs.push_back(std::move(job));
    }
    jobs_cv.notify_one();
    return true;
}

void Server::Impl::worker_loop() {
    for (;;) {
        std::function<void()> job;
        {
            std::unique_lock<std::mutex> lock(jobs_mu);
            idle_workers++;
            jobs_cv.wait(lock, [&] { return jobs_closed || !jobs.empty(); });
            idle_workers--;
            if (jobs_closed) break;
            job = std::move(jobs.front());
            jobs.pop_front();
        }
        job();  // never throws (Connection::serve catches)
    }
    std::lock_guard<std::mutex> lock(jobs_mu);
    if (--running_workers == 0) net::post(ioc, [this] { work.reset(); });  // the I/O loop may end now
}

// No job runs after this; queued ones are dropped (their connections close).
void Server::Impl::close_jobs() {
    std::deque<std::function<void()>> dropped;
    {
        std::lock_guard<std::mutex> lock(jobs_mu);
        jobs_closed = true;
        dropped.swap(jobs);
    }
    jobs_cv.notify_all();
}

// ---- one connection (reads on the I/O thread, handler on a worker) ---------------------

class Connection : public std::enable_shared_from_this<Connection> {
public:
    Connection(tcp::socket&& socket, Server::Impl& srv, std::shared_ptr<examples::AcceptLoop::Slot> slot)
        : stream_(std::move(socket)), srv_(srv), slot_(std::move(slot)) {
        std::lock_guard<std::mutex> lock(srv_.conns_mu);
        srv_.conns.insert(this);
    }
    ~Connection() {
        std::lock_guard<std::mutex> lock(srv_.conns_mu);
        srv_.conns.erase(this);
    }
    void start() {
        // Closes the connection for a new client when the accept loop asks and it is still idle.
        slot_->set_closer([weak = weak_from_this(), exec = stream_.get_executor()] {
            net::post(exec, [weak] {
                if (auto c = weak.lock(); c && c->idle_) c->close();
            });
        });
        read_request();
    }

    // I/O thread.
    void close() {
        closed_ = true;
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
        stream_.socket().close(ec);
    }

    // Worker thread: writes `bytes` through the I/O thread and waits. False once the client
    // is gone, the write timed out, or the server is stopping.
    bool write(const std::string& bytes) {
        if (srv_.stopping) return false;
        std::promise<bool> done;
        std::future<bool> result = done.get_future();
        net::post(stream_.get_executor(), [this, self = shared_from_this(), &bytes, &done] {
            if (closed_ || srv_.stopping) return done.set_value(false);
            stream_.expires_after(std::chrono::milliseconds(srv_.opt.write_timeout_ms));
            net::async_write(stream_, net::buffer(bytes), [self, &done](beast::error_code ec, size_t) {
                if (ec) self->close();
                done.set_value(!ec);
            });
        });
        return result.get();
    }

private:
    // The next request's head, within the idle and header timeouts (read_request.h).
    void read_request() {
        if (srv_.stopping) return close();
        parser_.emplace();
        parser_->header_limit(16 * 1024);
        parser_->body_limit(srv_.opt.max_body);
        examples::HeadTimeouts t{std::chrono::milliseconds(srv_.opt.idle_timeout_ms),
                                 std::chrono::milliseconds(srv_.opt.header_timeout_ms)};
        examples::async_read_request_head(stream_, buffer_, *parser_, *slot_, idle_, t,
                                          [self = shared_from_this()](beast::error_code ec) { self->on_header(ec); });
    }

    // The head is in: limits, Host and token are checked before any body byte is read.
    void on_header(beast::error_code ec) {
        const std::string too_large = "request body larger than " + std::to_string(srv_.opt.max_body) + " bytes";
        if (ec == http::error::body_limit) return reject(413, too_large);
        if (ec) return close();  // closed, timed out, or a malformed head
        const auto& msg = parser_->get();
        auto len = parser_->content_length();
        if (len && *len > srv_.opt.max_body) return reject(413, too_large);
        examples::split_target(std::string_view(msg.target().data(), msg.target().size()), req_.path, req_.query);
        auto host = msg[http::field::host];
        auto hdr = msg["X-Tandem-Token"];
        auto q = req_.query.find("token");
        std::string_view got = !hdr.empty() ? std::string_view(hdr.data(), hdr.size())
                               : q != req_.query.end() ? std::string_view(q->second)
                                                       : std::string_view();
        if (!local_host(std::string_view(host.data(), host.size()), srv_.port))
            return reject(403, "Host must be 127.0.0.1 or localhost");
        if (!same_secret(got, srv_.opt.token))
            return reject(403, got.empty() ? "missing token: open the URL that tandem-compose printed"
                                           : "wrong token: open the URL that tandem-compose printed");
        if (parser_->is_done()) return dispatch();
        stream_.expires_after(std::chrono::milliseconds(srv_.opt.body_timeout_ms));
        http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code e, size_t) {
            if (e == http::error::body_limit) return self->reject(413, "request body larger than " + std::to_string(self->srv_.opt.max_body) + " bytes");
            if (e) return self->close();
            self->dispatch();
        });
    }

    // I/O thread: an error answer without the handler, then a lingering close.
    void reject(int status, const std::string& message) {
        json body = {{"error", {{"message", message}, {"code", status}}}};
        http::response<http::string_body> res{(http::status)status, 11};
        res.set(http::field::server, "tandem-compose");
        res.set(http::field::content_type, "application/json");
        res.set(http::field::cache_control, "no-store");
        res.keep_alive(false);
        res.body() = body.dump();
        res.prepare_payload();
        auto sp = std::make_shared<http::response<http::string_body>>(std::move(res));
        stream_.expires_after(std::chrono::milliseconds(srv_.opt.write_timeout_ms));
        http::async_write(stream_, *sp, [self = shared_from_this(), sp](beast::error_code ec, size_t) {
            if (ec) return self->close();
            examples::drain_then_close(self->stream_, self);
        });
    }

    void dispatch() {
        const auto& msg = parser_->get();
        req_.method = std::string(msg.method_string());
        req_.body = std::move(parser_->get().body());
        if (!srv_.submit([self = shared_from_this()] { self->serve(); }))
            reject(503, "busy: " + std::to_string(srv_.opt.workers) + " requests in progress; try again");
    }

    // Worker thread: runs the handler, then hands the connection back to the I/O thread.
    void serve();

    beast::tcp_stream stream_;
    Server::Impl& srv_;
    std::shared_ptr<examples::AcceptLoop::Slot> slot_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    Request req_;
    bool idle_ = false;    // waiting for a request's first byte (I/O thread)
    bool closed_ = false;  // (I/O thread)

    friend class ConnectionReply;
};

// How a handler answers on a worker thread: every write goes through Connection::write.
class ConnectionReply : public Reply {
public:
    ConnectionReply(Connection& c, unsigned version, bool keep_alive) : conn_(c), version_(version), keep_alive_(keep_alive) {}

    void send(int status, const std::string& content_type, std::string body) override {
        http::response<http::string_body> res{(http::status)status, version_};
        res.set(http::field::server, "tandem-compose");
        res.set(http::field::content_type, content_type);
        res.set(http::field::cache_control, "no-store");
        res.set("X-Content-Type-Options", "nosniff");
        res.keep_alive(keep_alive_);
        res.body() = std::move(body);
        res.prepare_payload();
        std::ostringstream wire;
        wire << res;
        answered_ = true;
        if (!conn_.write(wire.str())) keep_alive_ = false;
    }

    // SSE: a raw HTTP/1.1 head without a length, then events; the connection closes after.
    bool sse_begin() override {
        answered_ = true;
        streaming_ = true;
        keep_alive_ = false;
        return write_raw(
            "HTTP/1.1 200 OK\r\nServer: tandem-compose\r\nContent-Type: text/event-stream\r\n"
            "Cache-Control: no-store\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\n");
    }

    bool sse_event(const std::string& name, const nlohmann::json& data) override {
        return write_raw("event: " + name + "\ndata: " + data.dump(-1, ' ', false, json::error_handler_t::replace) +
                         "\n\n");
    }

    bool sse_ping() override { return write_raw(": keepalive\n\n"); }

    bool answered() const { return answered_; }
    bool keep_alive() const { return keep_alive_; }

private:
    bool write_raw(const std::string& s) {
        if (!streaming_ || failed_) return false;
        if (!conn_.write(s)) failed_ = true;
        return !failed_;
    }

    Connection& conn_;
    unsigned version_;
    bool keep_alive_;
    bool answered_ = false, streaming_ = false, failed_ = false;
};

void Connection::serve() {
    const auto& msg = parser_->get();
    ConnectionReply reply(*this, msg.version(), msg.keep_alive());
    try {
        srv_.handler.handle(req_, reply);
    } catch (const std::exception& e) {
        if (!reply.answered()) reply.error(500, e.what());
    }
    if (!reply.answered()) reply.error(500, "no response from the handler");
    const bool again = reply.keep_alive();
    net::post(stream_.get_executor(), [self = shared_from_this(), again] {
        self->req_ = Request();
        if (again && !self->closed_) return self->read_request();
        self->close();
    });
}

// ---- Server ----------------------------------------------------------------------------

Server::Server(ServerOptions opt, Handler& handler) : impl_(std::make_unique<Impl>(std::move(opt), handler)) {
    if (impl_->opt.token.empty()) throw std::runtime_error("server: the token must not be empty");
    if (impl_->opt.workers < 1) throw std::runtime_error("server: workers must be >= 1");
}

Server::~Server() {
    stop();
    for (auto& t : impl_->workers) t.join();  // when run() was never called
}

uint16_t Server::listen() {
    auto& a = impl_->acceptor;
    beast::error_code ec;
    auto addr = net::ip::make_address(impl_->opt.host, ec);
    if (ec) throw std::runtime_error("server: bad address '" + impl_->opt.host + "': " + ec.message());
    tcp::endpoint ep{addr, impl_->opt.port};
    std::string where = impl_->opt.host + ":" + std::to_string(impl_->opt.port);
    a.open(ep.protocol(), ec);
    if (!ec) a.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) a.bind(ep, ec);
    if (!ec) a.listen(net::socket_base::max_listen_connections, ec);
    if (ec) throw std::runtime_error("server: cannot listen on " + where + ": " + ec.message());
    impl_->port = a.local_endpoint().port();
    start_workers();
    return impl_->port;
}

// Every thread the server uses is started here, before it serves anything.
void Server::start_workers() {
    Impl& s = *impl_;
    s.work.emplace(net::make_work_guard(s.ioc));
    try {
        for (int i = 0; i < s.opt.workers; i++) {
            {
                std::lock_guard<std::mutex> lock(s.jobs_mu);
                s.running_workers++;
            }
            try {
                s.workers.emplace_back([&s] { s.worker_loop(); });
            } catch (...) {
                std::lock_guard<std::mutex> lock(s.jobs_mu);
                s.running_workers--;
                throw;
            }
        }
    } catch (const std::system_error& e) {
        s.close_jobs();
        for (auto& t : s.workers) t.join();
        s.workers.clear();
        throw std::runtime_error("server: cannot start " + std::to_string(s.opt.workers) + " worker threads: " + e.what());
    }
}

void Server::run() {
    Impl& s = *impl_;
    if (s.stopping || s.workers.empty()) return;
    s.accept_loop = examples::AcceptLoop::create(
        s.acceptor, {s.opt.max_connections, 32}, "tandem-compose",
        [&s](tcp::socket socket, std::shared_ptr<examples::AcceptLoop::Slot> slot) {
            std::make_shared<Connection>(std::move(socket), s, std::move(slot))->start();
        });
    net::post(s.ioc, [&s] {
        if (!s.stopping) s.accept_loop->start();
    });
    s.ioc.run();
    for (auto& t : s.workers) t.join();
    s.workers.clear();
}

void Server::stop() {
    Impl& s = *impl_;
    if (s.stopping.exchange(true)) return;
    net::post(s.ioc, [&s] {
        if (s.accept_loop) s.accept_loop->stop();
        beast::error_code ec;
        s.acceptor.close(ec);
        std::lock_guard<std::mutex> lock(s.conns_mu);
        for (Connection* c : s.conns) c->close();
    });
    s.handler.on_stop();
    s.close_jobs();
}

}  // namespace tandem::compose
