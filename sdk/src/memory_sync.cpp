// Background memory sync (see memory_sync.h).
#include "memory_sync.h"

#include <chrono>
#include <future>

namespace tandem {

MemorySync::MemorySync(CloudClient& client, MemoryStore& store, std::mutex& store_mu, Hooks hooks, int long_poll_s)
    : client_(client), store_(store), store_mu_(store_mu), hooks_(std::move(hooks)), long_poll_s_(long_poll_s) {
    thread_ = std::thread([this] { loop(); });
}

MemorySync::~MemorySync() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
        in_flight_.cancel();
    }
    cv_.notify_all();
    thread_.join();
}

void MemorySync::wake() {
    std::lock_guard<std::mutex> lk(mu_);
    woken_ = true;
    in_flight_.cancel();  // a long poll in progress ends now; the loop sends the new request
    cv_.notify_all();
}

void MemorySync::set_paused(bool paused) {
    std::lock_guard<std::mutex> lk(mu_);
    paused_ = paused;
    if (paused) in_flight_.cancel();
    cv_.notify_all();
}

// Starts a call, remembers its handle so stop/wake can cancel it, waits for the outcome.
template <class T, class Start>
Outcome<T> MemorySync::call(Start&& start) {
    auto p = std::make_shared<std::promise<Outcome<T>>>();
    auto f = p->get_future();
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (stop_) {
            Outcome<T> o;
            o.ec = make_error_code(cloud_errc::shut_down);
            return o;
        }
        in_flight_ = start([p](Outcome<T> o) { p->set_value(std::move(o)); });
    }
    return f.get();
}

bool MemorySync::send_due() {
    std::vector<OutboxRequest> due;
    {
        std::lock_guard<std::mutex> lk(store_mu_);
        due = store_.outbox_due(unix_ms_now());
    }
    bool ok = true;
    for (const auto& r : due) {
        MemoryRequestBody body;
        body.request_id = r.request_id;
        body.context = r.context;
        auto o = call<Nothing>([&](auto cb) { return client_.post_memory_request(body, cb); });
        std::lock_guard<std::mutex> lk(store_mu_);
        if (!o.ec) {
            store_.outbox_mark_sent(r.request_id);
            continue;
        }
        ok = false;
        if (o.ec == cloud_cond::cancelled) return false;  // stop/wake/pause: try again later
        const bool give_up = !(o.ec == cloud_cond::retryable);
        const int64_t backoff_ms = std::min<int64_t>(60000, 1000LL << std::min(r.attempts, 6));
        store_.outbox_mark_failed(r.request_id, unix_ms_now() + backoff_ms, give_up);
        if (give_up && hooks_.on_error) hooks_.on_error("memory request " + r.request_id + " rejected: " + o.message);
        if (!give_up) return false;  // the cloud is not answering: no point trying the others now
    }
    return ok;
}

bool MemorySync::pull(int wait_s, bool* got_changes) {
    *got_changes = false;
    for (int pages = 0; pages < 100; pages++) {
        std::string cursor;
        {
            std::lock_guard<std::mutex> lk(store_mu_);
            cursor = store_.cursor();
        }
        auto o = call<FeedPage>([&](auto cb) { return client_.get_changes(cursor, 50, pages == 0 ? wait_s : 0, cb); });
        if (o.ec) return o.ec == cloud_cond::cancelled;  // a cancelled long poll is not a failure
        std::vector<MemoryChange> page;
        int64_t n_items = 0, n_deleted = 0;
        for (const auto& it : o.value.items) {
            MemoryChange c;
            c.deleted = it.deleted;
            c.item.id = it.id;
            c.item.request_id = it.request_id;
            c.item.text = it.text;
            c.item.doc_id = it.doc_id;
            c.item.title = it.title;
            c.item.created_at = it.created_at;
            (it.deleted ? n_deleted : n_items)++;
            page.push_back(std::move(c));
        }
        if (page.empty() && o.value.next_cursor == cursor) return true;  // drained
        try {
            std::lock_guard<std::mutex> lk(store_mu_);
            store_.apply_changes(page, o.value.next_cursor);
        } catch (const std::exception& e) {
            if (hooks_.on_error) hooks_.on_error(std::string("memory store: ") + e.what());
            return false;
        }
        if (!page.empty()) {
            *got_changes = true;
            if (hooks_.on_changes) hooks_.on_changes(n_items, n_deleted);
        }
        if (page.size() < 50) return true;
    }
    return true;
}

bool MemorySync::run_once(int wait_s) {
    const bool sent = send_due();
    bool changes = false;
    const bool pulled = pull(wait_s, &changes);
    return sent && pulled;
}

void MemorySync::loop() {
    int failures = 0;
    for (;;) {
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [&] { return stop_ || !paused_; });
            if (stop_) return;
            woken_ = false;
        }
        bool ok = true, changes = false;
        const auto started = std::chrono::steady_clock::now();
        try {
            ok = send_due();
            ok = pull(long_poll_s_, &changes) && ok;
        } catch (const std::exception& e) {
            ok = false;
            if (hooks_.on_error) hooks_.on_error(std::string("memory sync: ") + e.what());
        }
        failures = ok ? 0 : std::min(failures + 1, 5);
        // after a failure wait 1, 2, 4 .. 30 s (a wake() or stop ends the wait early)
        std::unique_lock<std::mutex> lk(mu_);
        if (failures > 0)
            cv_.wait_for(lk, std::chrono::seconds(std::min(30, 1 << (failures - 1))), [&] { return stop_ || woken_; });
        else if (!changes && std::chrono::steady_clock::now() - started < std::chrono::milliseconds(500))
            // the server answered an empty feed at once (no long poll): do not spin
            cv_.wait_for(lk, std::chrono::seconds(2), [&] { return stop_ || woken_; });
        if (stop_) return;
    }
}

}  // namespace tandem
