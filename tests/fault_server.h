// FaultServer: a small HTTP/1.1 server for tests that misbehaves on request. It runs in the
// test process (Boost.Beast parses the requests; responses are written by hand so they can be
// broken on purpose), listens on 127.0.0.1 at a random port, and counts connections.
//
// Each request goes to the test's handler, which returns a FaultReply saying what to send and
// how to break it. Every wait inside the server is cut short by stop() / the destructor, so a
// test can never hang on it.
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace tandem_test {

struct FaultRequest {
    std::string method;
    std::string target;         // path and query, e.g. "/v1/memory/changes?since=&limit=5"
    std::string body;
    std::string authorization;  // the Authorization header ("" when absent)
    std::string accept;
    int connection = 0;         // 1-based number of the connection it came on
    int index = 0;              // 1-based number of the request (over all connections)
    double t_ms = 0;            // when it arrived, ms since the server started
};

enum class Fault {
    none,           // a normal response with Content-Length
    drop_mid_body,  // headers announce the whole body, half of it is sent, then the socket closes
    close_at_once,  // the connection is closed without any response
    trickle,        // the body is sent chunk_bytes at a time, gap_ms apart
    sse,            // chunked transfer: each of `chunks` is one HTTP chunk, gap_ms apart
    sse_truncated,  // like sse, but the connection closes before the final 0-length chunk
};

struct FaultReply {
    FaultReply(int status_ = 200, std::string content_type_ = "application/json",
               std::vector<std::pair<std::string, std::string>> headers_ = {}, std::string body_ = "")
        : status(status_), content_type(std::move(content_type_)), headers(std::move(headers_)),
          body(std::move(body_)) {}
    int status;
    std::string content_type;
    std::vector<std::pair<std::string, std::string>> headers;  // extra headers
    std::string body;
    Fault fault = Fault::none;
    int delay_ms = 0;        // wait this long before answering
    int gap_ms = 0;          // trickle / sse: pause between pieces
    size_t chunk_bytes = 1;  // trickle: piece size
    std::vector<std::string> chunks;  // sse: the pieces
    bool keep_alive = true;  // false: "Connection: close" and close after the response
};

// A self-signed certificate for 127.0.0.1 (subjectAltName IP:127.0.0.1), made with OpenSSL at
// run time, PEM encoded; cert_pem doubles as the CA file a client must trust.
struct TlsIdentity {
    std::string cert_pem, key_pem;
    static TlsIdentity self_signed();
};

class FaultServer {
public:
    using Handler = std::function<FaultReply(const FaultRequest&)>;
    // Listens at once (TLS when `tls` is given); throws on failure.
    explicit FaultServer(Handler handler, const TlsIdentity* tls = nullptr);
    ~FaultServer();                          // stop()
    void stop();                             // closes everything, joins all threads

    std::string url() const { return (tls_ ? "https" : "http") + std::string("://127.0.0.1:") + std::to_string(port_); }
    int port() const { return port_; }
    int connections() const { return n_conn_.load(); }
    int requests() const { return n_req_.load(); }
    std::vector<FaultRequest> log() const;  // every request so far, in arrival order

private:
    struct Impl;
    void serve(int conn_id, std::shared_ptr<void> socket);
    template <class Stream, class Buffer>
    bool exchange(Stream& s, Buffer& buf, int conn_id);  // one request/response; false: close the connection
    bool nap(int ms);  // false when stopping

    Handler handler_;
    std::unique_ptr<Impl> impl_;
    int port_ = 0;
    bool tls_ = false;
    std::atomic<int> n_conn_{0}, n_req_{0};
    std::atomic<bool> stopping_{false};
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::vector<FaultRequest> log_;
    std::vector<int> open_fds_;
    std::vector<std::thread> threads_;
    std::thread accept_thread_;
};

}  // namespace tandem_test
