// The accept side shared by the example servers (tandem-cloud, tandem-compose): Boost.Asio
// asynchronous accept with a connection cap, room made by closing idle connections, and
// backoff on accept errors.
//
//   cap         min(Limits::max_connections, RLIMIT_NOFILE soft limit - Limits::fd_reserve), at
//               least 1, read once at create(): connections never take the descriptors that the
//               server needs for its own files (database, model, logs).
//   at the cap  no accept is made. When a client waits in the listen backlog, the connection
//               idle longest (waiting for its next request with nothing received) is closed to
//               make room; with none idle, new clients wait in the backlog until one ends.
//   errors      an accept error (EMFILE, ENFILE, ENOBUFS, ...) pauses accepting for 50 ms,
//               doubling up to 1 s while errors go on; EMFILE and ENFILE also close the oldest
//               idle connection. An error is logged at most once per 10 s (with how many more
//               came), so a descriptor shortage cannot turn into a busy loop or a flood of logs.
//
// Each accepted socket comes with a Slot, which the connection holds until it ends; the
// Slot's destructor frees the place (and resumes accepting when the loop was at the cap).
// Threading: create/start/stop run on the acceptor's executor's thread (or before it runs);
// a Slot may be marked idle/busy or destroyed on any thread.
#pragma once
#include <boost/asio.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace tandem::examples {

class AcceptLoop : public std::enable_shared_from_this<AcceptLoop> {
public:
    struct Limits {
        size_t max_connections = 1024;
        size_t fd_reserve = 32;  // descriptors left for everything that is not a connection
    };
    class Slot;
    using tcp = boost::asio::ip::tcp;
    // Receives each accepted socket (its executor: a new strand of the acceptor's context).
    using Handler = std::function<void(tcp::socket socket, std::shared_ptr<Slot> slot)>;

    // `acceptor` must be open and listening, and outlive the loop. `name` prefixes log lines.
    static std::shared_ptr<AcceptLoop> create(tcp::acceptor& acceptor, Limits limits, std::string name,
                                              Handler on_accept);
    void start();
    void stop();  // no accept after this; the acceptor itself is left to its owner
    size_t cap() const { return cap_; }
    size_t open_connections() const;

private:
    AcceptLoop(tcp::acceptor& acceptor, size_t cap, std::string name, Handler on_accept);
    void arm();  // the next accept, or a wait for a client while at the cap
    void on_accept(const boost::system::error_code& ec, tcp::socket socket);
    void on_backlog(const boost::system::error_code& ec);
    void on_error(const boost::system::error_code& ec);
    bool close_oldest_idle();
    void resume();  // arm() unless armed or stopped
    std::function<void()> take_oldest_idle_locked();
    void release(Slot& slot);
    void mark_idle(Slot& slot);
    void mark_busy(Slot& slot);
    void unlink_locked(Slot& slot);

    tcp::acceptor& acceptor_;
    const size_t cap_;
    const std::string name_;
    Handler handler_;
    boost::asio::steady_timer backoff_timer_;
    std::chrono::milliseconds backoff_{0};
    std::chrono::steady_clock::time_point last_log_{};
    uint64_t unlogged_errors_ = 0;

    mutable std::mutex mu_;  // guards what Slots touch from other threads
    size_t open_ = 0;
    bool armed_ = false;    // an accept, a backlog wait or a backoff timer is pending
    bool stopped_ = false;
    // Idle connections, longest idle first: an intrusive list through the Slots (no allocation
    // per request).
    Slot* idle_head_ = nullptr;
    Slot* idle_tail_ = nullptr;
};

// A connection's place in the loop. While idle, the loop may call the closer (on the
// acceptor's thread) to make room for a new client; the closer should post the close to the
// connection's own executor and close only if the connection is still idle.
class AcceptLoop::Slot {
public:
    ~Slot();
    void set_closer(std::function<void()> closer);  // once, before the first set_idle()
    void set_idle();
    void set_busy();

private:
    friend class AcceptLoop;
    explicit Slot(std::shared_ptr<AcceptLoop> loop) : loop_(std::move(loop)) {}
    std::shared_ptr<AcceptLoop> loop_;
    std::function<void()> closer_;
    // guarded by the loop's mutex:
    bool idle_ = false;
    Slot* prev_ = nullptr;
    Slot* next_ = nullptr;
};

}  // namespace tandem::examples
