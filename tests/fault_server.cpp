// FaultServer: see fault_server.h. One thread accepts, one thread per connection serves
// (fine for tests; the client under test is the one that must not use a thread per request).
#include "fault_server.h"

#include <sys/socket.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <algorithm>
#include <chrono>

namespace tandem_test {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

struct FaultServer::Impl {
    asio::io_context ioc;
    tcp::acceptor acceptor{ioc};
    std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
};

namespace {
const char* reason(int status) {
    switch (status) {
        case 200: return "OK";
        case 202: return "Accepted";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 404: return "Not Found";
        case 429: return "Too Many Requests";
        case 500: return "Internal Server Error";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        default: return "Status";
    }
}

std::string hex(size_t n) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%zx", n);
    return buf;
}
}  // namespace

FaultServer::FaultServer(Handler handler) : handler_(std::move(handler)), impl_(new Impl) {
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    impl_->acceptor.open(ep.protocol());
    impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
    impl_->acceptor.bind(ep);
    impl_->acceptor.listen();
    port_ = impl_->acceptor.local_endpoint().port();
    accept_thread_ = std::thread([this] {
        for (;;) {
            auto sock = std::make_shared<tcp::socket>(impl_->ioc);
            boost::system::error_code ec;
            impl_->acceptor.accept(*sock, ec);
            if (stopping_) return;
            if (ec) continue;
            int id = ++n_conn_;
            std::lock_guard<std::mutex> lk(mu_);
            open_fds_.push_back(sock->native_handle());
            threads_.emplace_back([this, id, sock] { serve(id, sock); });
        }
    });
}

FaultServer::~FaultServer() { stop(); }

void FaultServer::stop() {
    if (stopping_.exchange(true)) return;
    cv_.notify_all();
    ::shutdown(impl_->acceptor.native_handle(), SHUT_RDWR);  // unblocks accept()
    accept_thread_.join();
    std::vector<std::thread> threads;
    {
        std::lock_guard<std::mutex> lk(mu_);
        for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);  // unblocks reads and writes
        threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
    boost::system::error_code ig;
    impl_->acceptor.close(ig);
}

std::vector<FaultRequest> FaultServer::log() const {
    std::lock_guard<std::mutex> lk(mu_);
    return log_;
}

bool FaultServer::nap(int ms) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait_for(lk, std::chrono::milliseconds(ms), [this] { return stopping_.load(); });
    return !stopping_;
}

// ---- one connection ----------------------------------------------------------------------

void FaultServer::serve(int conn_id, std::shared_ptr<void> p) {
    auto sock = std::static_pointer_cast<tcp::socket>(p);
    boost::beast::flat_buffer buf;
    boost::system::error_code ec;
    auto send = [&](const std::string& bytes) {
        asio::write(*sock, asio::buffer(bytes), ec);
        return !ec;
    };
    auto close = [&] {  // under the lock: stop() must never shut down a reused fd number
        std::lock_guard<std::mutex> lk(mu_);
        open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), sock->native_handle()), open_fds_.end());
        sock->shutdown(tcp::socket::shutdown_both, ec);
        sock->close(ec);
    };
    while (!stopping_) {
        http::request_parser<http::string_body> parser;
        parser.body_limit(64u << 20);  // Beast's default (1 MiB) is below what tests send
        http::read(*sock, buf, parser, ec);
        if (ec) break;  // client closed, or stop()
        const auto& req = parser.get();
        FaultRequest fr;
        fr.method = std::string(req.method_string());
        fr.target = std::string(req.target());
        fr.body = req.body();
        fr.authorization = std::string(req[http::field::authorization]);
        fr.accept = std::string(req[http::field::accept]);
        fr.connection = conn_id;
        fr.index = ++n_req_;
        fr.t_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - impl_->t0).count();
        {
            std::lock_guard<std::mutex> lk(mu_);
            log_.push_back(fr);
        }
        FaultReply r = handler_(fr);
        if (r.delay_ms > 0 && !nap(r.delay_ms)) break;
        if (r.fault == Fault::close_at_once) break;

        const bool chunked = r.fault == Fault::sse || r.fault == Fault::sse_truncated;
        std::string head = "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) + "\r\n";
        head += "Content-Type: " + r.content_type + "\r\n";
        head += chunked ? "Transfer-Encoding: chunked\r\n" : "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
        for (auto& h : r.headers) head += h.first + ": " + h.second + "\r\n";
        if (!r.keep_alive) head += "Connection: close\r\n";
        head += "\r\n";
        if (!send(head)) break;

        bool ok = true;
        switch (r.fault) {
            case Fault::drop_mid_body:
                send(r.body.substr(0, r.body.size() / 2));
                ok = false;  // close now
                break;
            case Fault::trickle:
                for (size_t i = 0; ok && i < r.body.size(); i += r.chunk_bytes) {
                    ok = send(r.body.substr(i, r.chunk_bytes)) && (r.gap_ms == 0 || nap(r.gap_ms));
                }
                break;
            case Fault::sse:
            case Fault::sse_truncated:
                for (const std::string& c : r.chunks) {
                    if (c.empty()) continue;  // an empty chunk would end the body
                    ok = send(hex(c.size()) + "\r\n" + c + "\r\n") && (r.gap_ms == 0 || nap(r.gap_ms));
                    if (!ok) break;
                }
                if (ok && r.fault == Fault::sse) ok = send("0\r\n\r\n");
                if (r.fault == Fault::sse_truncated) ok = false;
                break;
            default:
                ok = send(r.body);
        }
        if (!ok || !r.keep_alive) break;
    }
    close();
}

}  // namespace tandem_test
