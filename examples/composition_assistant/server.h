// The composition assistant's HTTP side: a small Boost.Beast server on 127.0.0.1 for one
// local user (one browser tab), with a per-run token.
//
// Threading: one I/O thread (the one in run()) accepts connections and does every socket read
// and write asynchronously (Boost.Asio); a fixed pool of `workers` threads, started by run(),
// runs the handlers. A suggestion or an answer is a blocking model call that streams pieces
// from the calling thread: each SSE event is handed to the I/O thread and the worker waits
// until it is written (or the write times out). So an idle or slow connection holds no
// thread, the thread count never grows with connections, and no thread is started after
// listen() (a process short of threads fails there, with a message, not later mid-way).
//
// Limits: at most max_connections are open (examples/common/accept_loop.h: the idle longest
// is closed to make room, accept errors back off). A kept-alive connection waiting for its next
// request is closed after idle_timeout_ms; a request head must be complete header_timeout_ms
// after its first byte, a body within body_timeout_ms; each write gets write_timeout_ms. A
// request that finds every worker busy and `workers` requests already queued gets 503.
//
// Auth: every request (the page included) must carry the token, as `?token=T` or the header
// `X-Tandem-Token: T`; otherwise 403. The Host header must name 127.0.0.1 or localhost (a
// guard against DNS rebinding); otherwise 403. Both are checked on the request head, before
// any body byte is read.
//
// Shutdown: stop() (thread-safe, e.g. from a signal thread) stops accepting, closes every
// open connection (which fails SSE writes, so streams stop) and calls the handler's on_stop();
// run() returns once every worker has finished its request.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace tandem::compose {

struct Request {
    std::string method;                        // "GET", "POST", ...
    std::string path;                          // URL-decoded, without the query
    std::map<std::string, std::string> query;  // URL-decoded
    std::string body;
};

// How a handler answers: either one whole response, or an SSE stream (begin, events, end).
class Reply {
public:
    virtual ~Reply() = default;
    virtual void send(int status, const std::string& content_type, std::string body) = 0;
    void json(int status, const nlohmann::json& body);
    void error(int status, const std::string& message);  // {"error": {"message", "code"}}
    // Starts a text/event-stream response. Returns false if the client is gone.
    virtual bool sse_begin() = 0;
    // Writes "event: NAME\ndata: JSON\n\n". Returns false once the client is gone or the server
    // is stopping: the caller should stop producing.
    virtual bool sse_event(const std::string& name, const nlohmann::json& data) = 0;
    // Writes an SSE comment (": keepalive") to find out whether the client is still there.
    virtual bool sse_ping() = 0;
};

// The application behind the server (api.h). handle() runs on a worker thread and may block
// (a model call); it must answer through `reply` exactly once (or stream).
class Handler {
public:
    virtual ~Handler() = default;
    virtual void handle(const Request& req, Reply& reply) = 0;
    virtual void on_stop() {}  // called once by stop(): cancel model calls, wake event streams
};

struct ServerOptions {
    std::string host = "127.0.0.1";
    uint16_t port = 0;          // 0: a free port
    std::string token;          // required on every request; must not be empty
    size_t max_body = 1 << 20;  // 413 beyond
    size_t max_connections = 64;
    int workers = 16;           // handler threads: requests in progress at once, SSE streams included
    int idle_timeout_ms = 60000;
    int header_timeout_ms = 10000;
    int body_timeout_ms = 30000;
    int write_timeout_ms = 30000;
};

class Server {
public:
    Server(ServerOptions opt, Handler& handler);
    ~Server();  // stops and joins
    // Binds, listens and starts the worker threads; returns the port. Throws std::runtime_error
    // naming the address, or saying that the workers cannot be started.
    uint16_t listen();
    // Accepts and serves until stop(); returns after every worker has ended. Starts no thread.
    void run();
    void stop();  // thread-safe, idempotent

    struct Impl;

private:
    void start_workers();
    std::unique_ptr<Impl> impl_;
};

// A random token of 32 hex digits from std::random_device (the OS entropy source on Linux).
std::string random_token();

}  // namespace tandem::compose
