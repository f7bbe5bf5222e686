// The composition assistant's HTTP side: a small Boost.Beast server on 127.0.0.1 for one
// local user (one browser tab), with a per-run token.
//
// Threading: one acceptor thread; each connection gets its own thread doing synchronous Beast
// reads and writes. A suggestion or an answer is a blocking model call that streams pieces
// from the calling thread, so a thread per connection lets the handler write each piece as an
// SSE event as it comes, without handing pieces between threads. A local page opens a handful
// of connections, so the thread count stays small.
//
// Auth: every request (the page included) must carry the token, as `?token=T` or the header
// `X-Tandem-Token: T`; otherwise 403. The Host header must name 127.0.0.1 or localhost (a
// guard against DNS rebinding); otherwise 403.
//
// Shutdown: stop() (thread-safe, e.g. from a signal thread) closes the acceptor, shuts down
// every open socket (which ends blocking reads and fails SSE writes, so streams stop) and
// calls the handler's on_stop(); run() returns once every connection thread has finished.
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

// The application behind the server (api.h). handle() runs on the connection's thread and
// may block (a model call); it must answer through `reply` exactly once (or stream).
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
};

class Server {
public:
    Server(ServerOptions opt, Handler& handler);
    ~Server();  // stops and joins
    // Binds and listens; returns the port. Throws std::runtime_error naming the address.
    uint16_t listen();
    // Accepts and serves until stop(); returns after every connection thread has ended.
    void run();
    void stop();  // thread-safe, idempotent

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

// A random token of 32 hex digits from std::random_device (the OS entropy source on Linux).
std::string random_token();

}  // namespace tandem::compose
