// Server: acceptor thread + one synchronous Beast session per connection (see server.h).
#include "server.h"
#include "../common/http_target.h"

#include <sys/socket.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <random>
#include <set>
#include <thread>

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

struct Server::Impl {
    ServerOptions opt;
    Handler& handler;
    net::io_context ioc{1};
    tcp::acceptor acceptor{ioc};
    uint16_t port = 0;
    std::atomic<bool> stopping{false};
    std::mutex mu;                      // guards sockets, n_sessions
    std::condition_variable sessions_done;
    std::set<tcp::socket*> sockets;     // open connections (for shutdown)
    int n_sessions = 0;

    Impl(ServerOptions o, Handler& h) : opt(std::move(o)), handler(h) {}
    void serve(tcp::socket& socket);
};

// ---- one connection --------------------------------------------------------------------

class SessionReply : public Reply {
public:
    SessionReply(tcp::socket& s, Server::Impl& srv, unsigned version, bool keep_alive)
        : socket_(s), srv_(srv), version_(version), keep_alive_(keep_alive) {}

    void send(int status, const std::string& content_type, std::string body) override {
        http::response<http::string_body> res{(http::status)status, version_};
        res.set(http::field::server, "tandem-compose");
        res.set(http::field::content_type, content_type);
        res.set(http::field::cache_control, "no-store");
        res.set("X-Content-Type-Options", "nosniff");
        res.keep_alive(keep_alive_);
        res.body() = std::move(body);
        res.prepare_payload();
        beast::error_code ec;
        http::write(socket_, res, ec);
        if (ec) keep_alive_ = false;
        answered_ = true;
    }

    // SSE: a raw HTTP/1.1 head without a length, then events; the connection closes after.
    bool sse_begin() override {
        answered_ = true;
        streaming_ = true;
        keep_alive_ = false;
        std::string head =
            "HTTP/1.1 200 OK\r\nServer: tandem-compose\r\nContent-Type: text/event-stream\r\n"
            "Cache-Control: no-store\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\n";
        return write_raw(head);
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
        if (!streaming_ || srv_.stopping || failed_) return false;
        beast::error_code ec;
        net::write(socket_, net::buffer(s), ec);
        if (ec) failed_ = true;
        return !failed_;
    }

    tcp::socket& socket_;
    Server::Impl& srv_;
    unsigned version_;
    bool keep_alive_;
    bool answered_ = false, streaming_ = false, failed_ = false;
};

void Server::Impl::serve(tcp::socket& socket) {
    beast::flat_buffer buffer;
    for (;;) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(16 * 1024);
        parser.body_limit(opt.max_body);
        beast::error_code ec;
        http::read(socket, buffer, parser, ec);
        if (ec == http::error::body_limit) {
            SessionReply r(socket, *this, 11, false);
            r.error(413, "request body larger than " + std::to_string(opt.max_body) + " bytes");
            // Drain what the client still sends (up to 64 MiB), so it reads the 413, not a reset.
            socket.shutdown(tcp::socket::shutdown_send, ec);
            char sink[64 * 1024];
            for (size_t total = 0; total < (64u << 20) && !stopping;) {
                size_t n = socket.read_some(net::buffer(sink), ec);
                if (ec) break;
                total += n;
            }
            break;
        }
        if (ec || stopping) break;  // closed, shut down, or a malformed request
        const auto& msg = parser.get();
        SessionReply reply(socket, *this, msg.version(), msg.keep_alive());
        Request req;
        req.method = std::string(msg.method_string());
        examples::split_target(std::string_view(msg.target().data(), msg.target().size()), req.path, req.query);
        req.body = msg.body();

        auto host = msg[http::field::host];
        auto hdr = msg["X-Tandem-Token"];
        auto q = req.query.find("token");
        std::string_view got = !hdr.empty() ? std::string_view(hdr.data(), hdr.size())
                               : q != req.query.end() ? std::string_view(q->second)
                                                      : std::string_view();
        if (!local_host(std::string_view(host.data(), host.size()), port)) {
            reply.error(403, "Host must be 127.0.0.1 or localhost");
        } else if (!same_secret(got, opt.token)) {
            reply.error(403, got.empty() ? "missing token: open the URL that tandem-compose printed"
                                         : "wrong token: open the URL that tandem-compose printed");
        } else {
            try {
                handler.handle(req, reply);
            } catch (const std::exception& e) {
                if (!reply.answered()) reply.error(500, e.what());
            }
            if (!reply.answered()) reply.error(500, "no response from the handler");
        }
        if (!reply.keep_alive()) break;
    }
    beast::error_code ec;
    socket.shutdown(tcp::socket::shutdown_both, ec);
}

// ---- Server ----------------------------------------------------------------------------

Server::Server(ServerOptions opt, Handler& handler) : impl_(std::make_unique<Impl>(std::move(opt), handler)) {
    if (impl_->opt.token.empty()) throw std::runtime_error("server: the token must not be empty");
}

Server::~Server() { stop(); }

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
    return impl_->port;
}

void Server::run() {
    Impl& s = *impl_;
    for (;;) {
        beast::error_code ec;
        tcp::socket socket(s.ioc);
        s.acceptor.accept(socket, ec);
        if (s.stopping) break;
        if (ec) {
            if (ec == net::error::bad_descriptor) break;
            std::fprintf(stderr, "tandem-compose: accept: %s\n", ec.message().c_str());
            std::this_thread::sleep_for(std::chrono::milliseconds(50));  // e.g. EMFILE: don't spin
            continue;
        }
        std::lock_guard<std::mutex> lock(s.mu);
        s.n_sessions++;
        // The socket must be gone before n_sessions drops: run() may return (and the
        // io_context it belongs to be destroyed) as soon as the count reaches zero.
        auto owned = std::make_unique<tcp::socket>(std::move(socket));
        std::thread([&s, owned = std::move(owned)]() mutable {
            std::unique_ptr<tcp::socket> sock = std::move(owned);
            {
                std::lock_guard<std::mutex> l(s.mu);
                s.sockets.insert(sock.get());
            }
            if (!s.stopping) s.serve(*sock);
            std::lock_guard<std::mutex> l(s.mu);
            s.sockets.erase(sock.get());
            sock.reset();
            if (--s.n_sessions == 0) s.sessions_done.notify_all();
        }).detach();
    }
    std::unique_lock<std::mutex> lock(s.mu);
    s.sessions_done.wait(lock, [&] { return s.n_sessions == 0; });
}

void Server::stop() {
    Impl& s = *impl_;
    if (s.stopping.exchange(true)) return;
    // Wakes the blocking accept() and every blocking read/write (the sockets stay valid:
    // each is closed by its own thread).
    ::shutdown(s.acceptor.native_handle(), SHUT_RDWR);
    {
        std::lock_guard<std::mutex> lock(s.mu);
        for (tcp::socket* sock : s.sockets) ::shutdown(sock->native_handle(), SHUT_RDWR);
    }
    s.handler.on_stop();
}

}  // namespace tandem::compose
