// Loop: a libcurl multi handle driven by a Boost.Asio io_context on one thread.
//
// curl tells us, per socket, whether it wants to read and/or write (CURLMOPT_SOCKETFUNCTION)
// and when it next needs a timeout call (CURLMOPT_TIMERFUNCTION). We turn the first into
// async_wait()s on a non-owning asio stream_descriptor and the second into a steady_timer; when
// one fires, curl_multi_socket_action() does the I/O and curl_multi_info_read() reports
// finished transfers to their sessions. Sockets are opened and closed through our callbacks,
// so a descriptor is always released before its fd number can be reused.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop.h"

namespace tandem::detail {

// ---- construction and shutdown -----------------------------------------------------------

namespace {
std::once_flag g_curl_once;
}

Loop::Loop(CloudConfig cfg)
    : cfg_(std::move(cfg)),
      strand_(asio::make_strand(ioc_)),
      work_(asio::make_work_guard(ioc_)),
      curl_timer_(strand_),
      rng_(std::random_device{}()) {
    std::call_once(g_curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    if (!cfg_.token.empty()) auth_header_ = "Authorization: Bearer " + cfg_.token;
    multi_ = curl_multi_init();
    if (!multi_) throw std::runtime_error("cloud_adapter: curl_multi_init failed");
    curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &Loop::on_curl_socket);
    curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &Loop::on_curl_timer);
    curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, 16L);  // the keep-alive pool
    thread_ = std::thread([this] { ioc_.run(); });
}

Loop::~Loop() { shutdown(); }

void Loop::shutdown() {
    if (shut_) return;
    shut_ = true;
    asio::post(strand_, [this] { on_shutdown(); });
    thread_.join();
    // Nothing runs any more; handlers still queued are destroyed with ioc_.
}

void Loop::on_shutdown() {
    auto live = live_;  // on_cancel() unregisters
    for (auto& kv : live) kv.second->on_cancel(make_error_code(cloud_errc::shut_down));
    curl_timer_.cancel();
    curl_multi_cleanup(multi_);  // closes the kept-alive connections through on_close_socket
    multi_ = nullptr;
    for (auto& kv : watches_) {
        boost::system::error_code ig;
        kv.second->closed = true;
        kv.second->sd.cancel(ig);
        kv.second->sd.release();
    }
    watches_.clear();
    work_.reset();
    ioc_.stop();
}

// ---- transfers ---------------------------------------------------------------------------

void Loop::add_transfer(CURL* easy, std::shared_ptr<Session> s) {
    transfers_[easy] = std::move(s);
    n_attempts++;
    CURLMcode mc = curl_multi_add_handle(multi_, easy);
    if (mc != CURLM_OK) {  // only on misuse; finish the attempt as a failed one
        auto session = transfers_[easy];
        transfers_.erase(easy);
        asio::post(strand_, [session] { session->on_transfer(CURLE_FAILED_INIT); });
    }
    // curl asks for a timeout callback (usually 0 ms) from add_handle: the timer starts it.
}

void Loop::remove_transfer(CURL* easy) {
    auto it = transfers_.find(easy);
    if (it == transfers_.end()) return;
    auto keep = it->second;  // the session may be referenced only here
    transfers_.erase(it);
    curl_multi_remove_handle(multi_, easy);
}

void Loop::drain_done() {
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
        if (msg->msg != CURLMSG_DONE) continue;
        CURL* easy = msg->easy_handle;  // copy out: msg dies with remove_handle
        CURLcode rc = msg->data.result;
        auto it = transfers_.find(easy);
        if (it == transfers_.end()) {
            curl_multi_remove_handle(multi_, easy);
            continue;
        }
        auto s = it->second;
        transfers_.erase(it);
        curl_multi_remove_handle(multi_, easy);  // the connection goes back to the pool
        s->on_transfer(rc);
    }
}

void Loop::socket_action(curl_socket_t s, int ev) {
    if (!multi_) return;
    int running = 0;
    curl_multi_socket_action(multi_, s, ev, &running);
    drain_done();
}

// ---- curl -> asio: sockets ---------------------------------------------------------------

curl_socket_t Loop::on_open_socket(void* clientp, curlsocktype, curl_sockaddr* a) {
    auto* self = static_cast<Loop*>(clientp);
    int fd = ::socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0) return CURL_SOCKET_BAD;
    self->forget(fd);  // a stale watch with this number (should not exist) must go first
    self->n_connections++;
    return fd;
}

int Loop::on_close_socket(void* clientp, curl_socket_t fd) {
    static_cast<Loop*>(clientp)->forget(fd);
    return ::close(fd);
}

void Loop::forget(curl_socket_t fd) {
    auto it = watches_.find(fd);
    if (it == watches_.end()) return;
    boost::system::error_code ig;
    it->second->closed = true;
    it->second->sd.cancel(ig);  // pending waits complete with operation_aborted
    it->second->sd.release();   // deregister; the fd stays open for curl to close
    watches_.erase(it);
}

int Loop::on_curl_socket(CURL*, curl_socket_t s, int what, void* userp, void*) {
    auto* self = static_cast<Loop*>(userp);
    auto it = self->watches_.find(s);
    if (what == CURL_POLL_REMOVE) {
        // Keep the registration until the socket is closed (it may be reused by keep-alive);
        // waits still pending see want == 0 and stop.
        if (it != self->watches_.end()) it->second->want = 0;
        return 0;
    }
    if (it == self->watches_.end())
        it = self->watches_.emplace(s, std::make_shared<Watch>(self->strand_, s)).first;
    it->second->want = what;
    self->arm(it->second, s);
    return 0;
}

// Starts the waits curl wants that are not pending yet. Epoll in asio is edge-triggered: a wait
// started while bytes are already buffered gets no new edge. curl 7.88 reads/writes until the
// socket would block (the tests pass without the check below), but libcurl does not promise
// that, so on_ready() checks the level with a zero-timeout poll() before waiting again.
void Loop::arm(const std::shared_ptr<Watch>& w, curl_socket_t s) {
    using wt = asio::posix::descriptor_base;
    if ((w->want & CURL_POLL_IN) && !w->reading) {
        w->reading = true;
        w->sd.async_wait(wt::wait_read, [this, w, s](boost::system::error_code ec) {
            w->reading = false;
            if (ec || w->closed) return;  // aborted: released or shut down
            on_ready(w, s, CURL_CSELECT_IN);
        });
    }
    if ((w->want & CURL_POLL_OUT) && !w->writing) {
        w->writing = true;
        w->sd.async_wait(wt::wait_write, [this, w, s](boost::system::error_code ec) {
            w->writing = false;
            if (ec || w->closed) return;
            on_ready(w, s, CURL_CSELECT_OUT);
        });
    }
}

void Loop::on_ready(const std::shared_ptr<Watch>& w, curl_socket_t s, int ev) {
    if (!(w->want & (ev == CURL_CSELECT_IN ? CURL_POLL_IN : CURL_POLL_OUT))) return;
    socket_action(s, ev);
    if (w->closed || w->want == 0) return;
    // Level check: curl may have left bytes unread (or room to write) and no new edge would
    // come for them. If so run it again (posted, so other work interleaves), else wait.
    pollfd p{s, short(((w->want & CURL_POLL_IN) ? POLLIN : 0) | ((w->want & CURL_POLL_OUT) ? POLLOUT : 0)), 0};
    if (::poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLOUT | POLLERR | POLLHUP))) {
        int again = 0;
        if ((p.revents & (POLLIN | POLLERR | POLLHUP)) && (w->want & CURL_POLL_IN)) again |= CURL_CSELECT_IN;
        if ((p.revents & (POLLOUT | POLLERR)) && (w->want & CURL_POLL_OUT)) again |= CURL_CSELECT_OUT;
        if (again) {
            asio::post(strand_, [this, w, s, again] {
                if (!w->closed && w->want) socket_action(s, again);
                if (!w->closed) arm(w, s);
            });
            return;
        }
    }
    arm(w, s);
}

// ---- curl -> asio: timer -----------------------------------------------------------------

int Loop::on_curl_timer(CURLM*, long timeout_ms, void* userp) {
    auto* self = static_cast<Loop*>(userp);
    if (timeout_ms < 0) {
        self->curl_timer_.cancel();
        return 0;
    }
    self->curl_timer_.expires_after(Millis(timeout_ms));  // cancels a pending wait
    self->curl_timer_.async_wait([self](boost::system::error_code ec) { self->on_timer(ec); });
    return 0;
}

void Loop::on_timer(boost::system::error_code ec) {
    if (ec) return;  // replaced or cancelled
    socket_action(CURL_SOCKET_TIMEOUT, 0);
}

// ---- connectivity and logging ------------------------------------------------------------

void Loop::set_connectivity_callback(std::function<void(const ConnectivityEvent&)> cb) {
    std::lock_guard<std::mutex> lk(cb_mu_);
    conn_cb_ = std::move(cb);
}

// Hysteresis: offline only after offline_after_failures consecutive unreachable attempts,
// online only after online_after_successes consecutive answered ones, so one lost packet or
// one lucky answer does not flip the state.
void Loop::report_attempt(bool reachable, const std::string& reason) {
    Connectivity prev = state_.load(), next = prev;
    if (reachable) {
        fails_ = 0;
        ++successes_;
        if (prev != Connectivity::online && successes_ >= std::max(1, cfg_.online_after_successes))
            next = Connectivity::online;
    } else {
        successes_ = 0;
        ++fails_;
        if (prev != Connectivity::offline && fails_ >= std::max(1, cfg_.offline_after_failures))
            next = Connectivity::offline;
    }
    if (next == prev) return;
    state_ = next;
    ConnectivityEvent ev{next, prev, fails_, reason};
    log(std::string("connectivity: ") + (next == Connectivity::online ? "online" : "offline") +
        " (" + reason + ")");
    std::function<void(const ConnectivityEvent&)> cb;
    {
        std::lock_guard<std::mutex> lk(cb_mu_);
        cb = conn_cb_;
    }
    if (cb) cb(ev);
}

void Loop::log(const std::string& line) {
    if (cfg_.debug_log) cfg_.debug_log(redact_secrets(line, cfg_.token));
}

}  // namespace tandem::detail
