// Internal: the event loop (Loop: libcurl multi driven by Boost.Asio on one thread) and the
// per-request session (Session: one logical call, its attempts, timers and retries).
//
// Threading: everything here runs on Loop::strand() (the one loop thread), except
// Loop::post_*() entry points and Session::start()/cancel(), which only post onto it.
#pragma once
#include <curl/curl.h>

#include <atomic>
#include <boost/asio.hpp>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>

#include "tandem/cloud_adapter.h"

namespace tandem::detail {

namespace asio = boost::asio;
using Strand = asio::strand<asio::io_context::executor_type>;

// ---- Loop --------------------------------------------------------------------------------

// One socket curl asked us to watch. The descriptor never owns the fd (curl closes it, through
// Loop::on_close_socket, after we release it).
struct Watch {
    Watch(const Strand& s, int fd) : sd(s, fd) {}
    asio::posix::stream_descriptor sd;
    int want = 0;  // CURL_POLL_IN / CURL_POLL_OUT bits curl asked for (0 after REMOVE)
    bool reading = false, writing = false, closed = false;
};

class Loop {
public:
    explicit Loop(CloudConfig cfg);  // starts the thread; throws std::runtime_error
    ~Loop();                         // shutdown() if not done yet
    void shutdown();                 // cancels every session, closes connections, joins

    Strand& strand() { return strand_; }
    const CloudConfig& cfg() const { return cfg_; }
    const std::string& auth_header() const { return auth_header_; }

    // -- loop thread only --
    void add_transfer(CURL* easy, std::shared_ptr<Session> s);  // starts it
    void remove_transfer(CURL* easy);                           // drops it (no completion)
    void register_session(const std::shared_ptr<Session>& s) { live_[s.get()] = s; }
    void unregister_session(Session* s) { live_.erase(s); }
    void report_attempt(bool reachable, const std::string& reason);  // connectivity input
    void log(const std::string& line);  // debug_log, token redacted
    bool logging() const { return bool(cfg_.debug_log); }
    double uniform01() { return std::uniform_real_distribution<double>(0, 1)(rng_); }

    // -- any thread --
    void set_connectivity_callback(std::function<void(const ConnectivityEvent&)> cb);
    Connectivity connectivity() const { return state_.load(); }
    std::atomic<uint64_t> n_calls{0}, n_attempts{0}, n_connections{0};

    // curl callbacks (static trampolines; userp/clientp = Loop*)
    static int on_curl_socket(CURL* e, curl_socket_t s, int what, void* userp, void* socketp);
    static int on_curl_timer(CURLM* m, long timeout_ms, void* userp);
    static curl_socket_t on_open_socket(void* clientp, curlsocktype purpose, curl_sockaddr* a);
    static int on_close_socket(void* clientp, curl_socket_t fd);

private:
    void arm(const std::shared_ptr<Watch>& w, curl_socket_t s);
    void on_ready(const std::shared_ptr<Watch>& w, curl_socket_t s, int ev);
    void on_timer(boost::system::error_code ec);
    void socket_action(curl_socket_t s, int ev);
    void drain_done();
    void forget(curl_socket_t fd);
    void on_shutdown();

    CloudConfig cfg_;
    std::string auth_header_;
    asio::io_context ioc_;
    Strand strand_;
    asio::executor_work_guard<asio::io_context::executor_type> work_;
    asio::steady_timer curl_timer_;
    CURLM* multi_ = nullptr;
    std::unordered_map<curl_socket_t, std::shared_ptr<Watch>> watches_;
    std::unordered_map<CURL*, std::shared_ptr<Session>> transfers_;
    std::unordered_map<Session*, std::shared_ptr<Session>> live_;
    std::mt19937_64 rng_;
    // connectivity (counters: loop thread; state: atomic; callback: mutex)
    std::atomic<Connectivity> state_{Connectivity::unknown};
    int fails_ = 0, successes_ = 0;
    std::mutex cb_mu_;
    std::function<void(const ConnectivityEvent&)> conn_cb_;
    std::thread thread_;
    bool shut_ = false;
};

// ---- Session -----------------------------------------------------------------------------

struct HttpSpec {
    std::string what;    // "POST /v1/memory/requests": names the call in messages and logs
    std::string method;  // "GET" | "POST" | "DELETE"
    std::string url;
    std::string body;    // POST body (JSON)
    Millis deadline{0};  // whole-attempt limit
    Millis idle{0};      // longest gap between received bytes (0 = none)
    bool stream = false; // Accept: text/event-stream
};

// Hooks a call sets to turn bytes into its result. All run on the loop thread.
struct SessionHooks {
    // A new attempt starts (reset per-attempt parse state).
    std::function<void()> on_attempt;
    // Body bytes of a 2xx response, as they arrive; when set, they are not buffered. A
    // non-empty return aborts the transfer with that error (msg says why).
    std::function<std::error_code(std::string_view chunk, std::string& msg)> on_chunk;
    // A 2xx response completed: parse `body` (buffered unless on_chunk is set). Non-empty
    // return = the call's error (msg says why).
    std::function<std::error_code(const std::string& body, std::string& msg)> on_complete;
    // Whether a retry is still allowed (streaming: not once text was delivered).
    std::function<bool()> may_retry;
};

// Final result of a session: ec empty = success.
using SessionDone = std::function<void(std::error_code ec, std::string message, int http_status,
                                       int attempts)>;

class Session : public std::enable_shared_from_this<Session> {
public:
    Session(Loop& loop, HttpSpec spec, SessionHooks hooks, SessionDone done);
    ~Session();
    void start();                      // any thread
    void cancel(std::error_code why);  // any thread; why = cancelled or shut_down

    // -- loop thread only --
    void on_cancel(std::error_code why);
    void on_transfer(CURLcode rc);  // the Loop saw the transfer end

    // curl callbacks (userdata = Session*)
    static size_t on_curl_body(char* p, size_t size, size_t n, void* userdata);
    static size_t on_curl_header(char* p, size_t size, size_t n, void* userdata);
    static int on_curl_debug(CURL* e, curl_infotype t, char* p, size_t n, void* userdata);

private:
    void setup_easy();
    void on_attempt();
    void on_deadline(boost::system::error_code ec);
    void on_idle(boost::system::error_code ec);
    void on_backoff(boost::system::error_code ec);
    void fail(std::error_code ec, const char* stage);
    void finish(std::error_code ec, const std::string& message);
    Millis backoff_delay();

    Loop& loop_;
    HttpSpec spec_;
    SessionHooks hooks_;
    SessionDone done_fn_;
    CURL* easy_ = nullptr;
    curl_slist* headers_ = nullptr;
    char errbuf_[CURL_ERROR_SIZE] = {0};
    asio::steady_timer deadline_, idle_, backoff_;
    std::chrono::steady_clock::time_point last_byte_;

    int attempt_ = 0;
    bool in_multi_ = false, done_ = false;
    // per attempt
    long status_ = 0;
    size_t received_ = 0;
    std::string body_;
    std::string content_type_;
    long retry_after_s_ = -1;  // -1 = none
    std::error_code abort_ec_;  // set when we stopped the transfer ourselves
    std::string detail_;        // the reason behind the last error
};

}  // namespace tandem::detail
