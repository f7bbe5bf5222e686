// AcceptLoop: see accept_loop.h.
#include "accept_loop.h"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

namespace tandem::examples {

namespace net = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::chrono::milliseconds kBackoffMin{50}, kBackoffMax{1000};
constexpr std::chrono::seconds kLogInterval{10};

size_t connection_cap(const AcceptLoop::Limits& limits) {
    size_t cap = limits.max_connections;
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        const size_t fds = (size_t)rl.rlim_cur;
        cap = std::min(cap, fds > limits.fd_reserve ? fds - limits.fd_reserve : 1);
    }
    return std::max<size_t>(cap, 1);
}

}  // namespace

std::shared_ptr<AcceptLoop> AcceptLoop::create(tcp::acceptor& acceptor, Limits limits, std::string name,
                                               Handler on_accept) {
    return std::shared_ptr<AcceptLoop>(
        new AcceptLoop(acceptor, connection_cap(limits), std::move(name), std::move(on_accept)));
}

AcceptLoop::AcceptLoop(tcp::acceptor& acceptor, size_t cap, std::string name, Handler on_accept)
    : acceptor_(acceptor), cap_(cap), name_(std::move(name)), handler_(std::move(on_accept)),
      backoff_timer_(acceptor.get_executor()) {}

size_t AcceptLoop::open_connections() const {
    std::lock_guard<std::mutex> lk(mu_);
    return open_;
}

void AcceptLoop::start() { resume(); }

void AcceptLoop::stop() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stopped_ = true;
    }
    backoff_timer_.cancel();
    boost::system::error_code ec;
    acceptor_.cancel(ec);
}

void AcceptLoop::resume() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (armed_ || stopped_) return;
        armed_ = true;
    }
    arm();
}

// ---- the accept / backlog-wait / backoff cycle (armed_ is true throughout) -------------------

void AcceptLoop::arm() {
    bool full;
    {
        std::lock_guard<std::mutex> lk(mu_);
        full = open_ >= cap_;
    }
    auto self = shared_from_this();
    if (full)
        acceptor_.async_wait(tcp::acceptor::wait_read, [self](const boost::system::error_code& ec) { self->on_backlog(ec); });
    else
        acceptor_.async_accept(net::make_strand(acceptor_.get_executor()),
                               [self](const boost::system::error_code& ec, tcp::socket s) { self->on_accept(ec, std::move(s)); });
}

void AcceptLoop::on_accept(const boost::system::error_code& ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted) {
        std::lock_guard<std::mutex> lk(mu_);
        armed_ = false;
        return;
    }
    if (ec) return on_error(ec);
    backoff_ = std::chrono::milliseconds(0);
    std::shared_ptr<Slot> slot(new Slot(shared_from_this()));
    {
        std::lock_guard<std::mutex> lk(mu_);
        open_++;
    }
    try {
        handler_(std::move(socket), std::move(slot));
    } catch (const std::exception& e) {  // e.g. out of memory for the session: drop this one
        std::fprintf(stderr, "%s: cannot start a connection: %s\n", name_.c_str(), e.what());
    }
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (stopped_) {
            armed_ = false;
            return;
        }
    }
    arm();
}

// At the cap, the listening socket became readable: a client waits in the backlog.
void AcceptLoop::on_backlog(const boost::system::error_code& ec) {
    std::function<void()> closer;
    bool room = false;
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (ec == net::error::operation_aborted || stopped_) {
            armed_ = false;
            return;
        }
        room = open_ < cap_;
        if (!room) {
            armed_ = false;  // the slot released next arms again
            closer = take_oldest_idle_locked();
        }
    }
    if (room) return arm();
    if (closer) closer();  // with nothing idle: new clients wait until a connection ends
}

void AcceptLoop::on_error(const boost::system::error_code& ec) {
    const auto now = Clock::now();
    if (last_log_ == Clock::time_point{} || now - last_log_ >= kLogInterval) {
        std::string more;
        if (unlogged_errors_ > 0) more = " (" + std::to_string(unlogged_errors_) + " more accept errors since the last report)";
        std::fprintf(stderr, "%s: accept: %s; pausing new connections%s\n", name_.c_str(), ec.message().c_str(), more.c_str());
        last_log_ = now;
        unlogged_errors_ = 0;
    } else {
        unlogged_errors_++;
    }
    if (ec.value() == EMFILE || ec.value() == ENFILE) {  // out of descriptors: free one
        std::function<void()> closer;
        {
            std::lock_guard<std::mutex> lk(mu_);
            closer = take_oldest_idle_locked();
        }
        if (closer) closer();
    }
    backoff_ = backoff_.count() == 0 ? kBackoffMin : std::min(backoff_ * 2, kBackoffMax);
    backoff_timer_.expires_after(backoff_);
    backoff_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
        {
            std::lock_guard<std::mutex> lk(self->mu_);
            if (e == net::error::operation_aborted || self->stopped_) {
                self->armed_ = false;
                return;
            }
        }
        self->arm();
    });
}

// ---- slots -----------------------------------------------------------------------------------

void AcceptLoop::unlink_locked(Slot& slot) {
    if (!slot.idle_) return;
    (slot.prev_ ? slot.prev_->next_ : idle_head_) = slot.next_;
    (slot.next_ ? slot.next_->prev_ : idle_tail_) = slot.prev_;
    slot.prev_ = slot.next_ = nullptr;
    slot.idle_ = false;
}

std::function<void()> AcceptLoop::take_oldest_idle_locked() {
    if (!idle_head_) return {};
    Slot& s = *idle_head_;
    unlink_locked(s);
    return s.closer_;
}

void AcceptLoop::mark_idle(Slot& slot) {
    bool wake = false;
    {
        std::lock_guard<std::mutex> lk(mu_);
        unlink_locked(slot);
        slot.idle_ = true;
        slot.prev_ = idle_tail_;
        (idle_tail_ ? idle_tail_->next_ : idle_head_) = &slot;
        idle_tail_ = &slot;
        // at the cap and not waiting for the backlog: a waiting client may now take this place
        wake = !armed_ && !stopped_ && open_ >= cap_;
    }
    if (wake) net::post(acceptor_.get_executor(), [self = shared_from_this()] { self->resume(); });
}

void AcceptLoop::mark_busy(Slot& slot) {
    std::lock_guard<std::mutex> lk(mu_);
    unlink_locked(slot);
}

void AcceptLoop::release(Slot& slot) {
    bool wake = false;
    {
        std::lock_guard<std::mutex> lk(mu_);
        unlink_locked(slot);
        open_--;
        wake = !armed_ && !stopped_;
    }
    if (wake) net::post(acceptor_.get_executor(), [self = shared_from_this()] { self->resume(); });
}

AcceptLoop::Slot::~Slot() { loop_->release(*this); }
void AcceptLoop::Slot::set_closer(std::function<void()> closer) { closer_ = std::move(closer); }
void AcceptLoop::Slot::set_idle() { loop_->mark_idle(*this); }
void AcceptLoop::Slot::set_busy() { loop_->mark_busy(*this); }

}  // namespace tandem::examples
