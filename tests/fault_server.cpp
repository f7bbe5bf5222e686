// FaultServer: see fault_server.h. One thread accepts, one thread per connection serves
// (fine for tests; the client under test is the one that must not use a thread per request).
#include "fault_server.h"

#include <sys/socket.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
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
    asio::ssl::context tls{asio::ssl::context::tls_server};
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

FaultServer::FaultServer(Handler handler, const TlsIdentity* tls) : handler_(std::move(handler)), impl_(new Impl) {
    if (tls) {
        tls_ = true;
        impl_->tls.use_certificate_chain(asio::buffer(tls->cert_pem));
        impl_->tls.use_private_key(asio::buffer(tls->key_pem), asio::ssl::context::pem);
    }
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
    boost::system::error_code ec;
    boost::beast::flat_buffer buf;  // bytes read past one request stay for the next
    if (tls_) {
        asio::ssl::stream<tcp::socket&> s(*sock, impl_->tls);
        s.handshake(asio::ssl::stream_base::server, ec);  // a client that rejects us ends here
        if (!ec)
            while (!stopping_ && exchange(s, buf, conn_id)) {
            }
    } else {
        while (!stopping_ && exchange(*sock, buf, conn_id)) {
        }
    }
    // Under the lock: stop() must never shut down a reused fd number.
    std::lock_guard<std::mutex> lk(mu_);
    open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), sock->native_handle()), open_fds_.end());
    sock->shutdown(tcp::socket::shutdown_both, ec);
    sock->close(ec);
}

template <class Stream, class Buffer>
bool FaultServer::exchange(Stream& stream, Buffer& buf, int conn_id) {
    boost::system::error_code ec;
    auto send = [&](const std::string& bytes) {
        asio::write(stream, asio::buffer(bytes), ec);
        return !ec;
    };
    http::request_parser<http::string_body> parser;
    parser.body_limit(64u << 20);  // Beast's default (1 MiB) is below what tests send
    http::read(stream, buf, parser, ec);
    if (ec) return false;  // client closed, or stop()
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
    if (r.delay_ms > 0 && !nap(r.delay_ms)) return false;
    if (r.fault == Fault::close_at_once) return false;

    const bool chunked = r.fault == Fault::sse || r.fault == Fault::sse_truncated;
    std::string head = "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) + "\r\n";
    head += "Content-Type: " + r.content_type + "\r\n";
    head += chunked ? "Transfer-Encoding: chunked\r\n" : "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
    for (auto& h : r.headers) head += h.first + ": " + h.second + "\r\n";
    if (!r.keep_alive) head += "Connection: close\r\n";
    head += "\r\n";
    if (!send(head)) return false;

    bool ok = true;
    switch (r.fault) {
        case Fault::drop_mid_body:
            send(r.body.substr(0, r.body.size() / 2));
            return false;  // close now
        case Fault::trickle:
            for (size_t i = 0; ok && i < r.body.size(); i += r.chunk_bytes)
                ok = send(r.body.substr(i, r.chunk_bytes)) && (r.gap_ms == 0 || nap(r.gap_ms));
            break;
        case Fault::sse:
        case Fault::sse_truncated:
            for (const std::string& c : r.chunks) {
                if (c.empty()) continue;  // an empty chunk would end the body
                ok = send(hex(c.size()) + "\r\n" + c + "\r\n") && (r.gap_ms == 0 || nap(r.gap_ms));
                if (!ok) break;
            }
            if (r.fault == Fault::sse_truncated) return false;
            if (ok) ok = send("0\r\n\r\n");
            break;
        default:
            ok = send(r.body);
    }
    return ok && r.keep_alive;
}

// ---- a self-signed certificate -----------------------------------------------------------

TlsIdentity TlsIdentity::self_signed() {
    EVP_PKEY* key = EVP_RSA_gen(2048);
    X509* x = X509_new();
    if (!key || !x) throw std::runtime_error("OpenSSL: cannot make a key/certificate");
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char*)"127.0.0.1", -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
    for (auto [nid, value] : {std::pair<int, const char*>{NID_subject_alt_name, "IP:127.0.0.1"},
                              {NID_basic_constraints, "critical,CA:TRUE"}}) {
        X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    X509_sign(x, key, EVP_sha256());
    auto pem = [](auto write) {
        BIO* b = BIO_new(BIO_s_mem());
        write(b);
        char* data = nullptr;
        long n = BIO_get_mem_data(b, &data);
        std::string s(data, size_t(n));
        BIO_free(b);
        return s;
    };
    TlsIdentity id;
    id.cert_pem = pem([&](BIO* b) { PEM_write_bio_X509(b, x); });
    id.key_pem = pem([&](BIO* b) { PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr); });
    X509_free(x);
    EVP_PKEY_free(key);
    return id;
}

}  // namespace tandem_test
