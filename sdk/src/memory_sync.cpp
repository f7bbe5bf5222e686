// Background memory sync (see memory_sync.h).
#include "tandem/memory_sync.h"

#include <chrono>
#include <future>

namespace tandem {

MemoryChange memory_change_from(const FeedItem& it) {
    MemoryChange c;
    c.deleted = it.deleted;
    c.item.id = it.id;
    c.item.request_id = it.request_id;
    c.item.document = it.document;
    c.item.text = it.text;
    c.item.doc_id = it.doc_id;
    c.item.title = it.title;
    c.item.created_at = it.created_at;
    return c;
}

MemorySync::MemorySync(CloudClient& client, MemoryStore& store, Hooks hooks, Options options)
    : client_(client), store_(store), hooks_(std::move(hooks)), opt_(options) {
    paused_ = opt_.start_paused;
    if (opt_.background) thread_ = std::thread([this] { loop(); });
}

MemorySync::~MemorySync() {
    stop();
    if (thread_.joinable()) thread_.join();
}

void MemorySync::stop() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
        in_flight_.cancel();
    }
    cv_.notify_all();
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
    OutcomeWait<T> w = outcome_wait<T>();
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (stop_) {
            Outcome<T> o;
            o.ec = make_error_code(cloud_errc::shut_down);
            return o;
        }
        in_flight_ = start(w.callback);
    }
    return w.future.get();
}

// Sends the due requests. With stop_at_retryable (the background loop), the first retryable
// failure ends the round: the cloud is not answering, no point trying the others now.
void MemorySync::send_due(PassStats& st, bool stop_at_retryable) {
    const std::vector<OutboxRequest> due = store_.outbox_due(unix_ms_now());
    for (const auto& r : due) {
        MemoryRequestBody body;
        body.request_id = r.request_id;
        body.context = r.context;
        body.max_items = opt_.max_items;
        body.document = r.document;
        auto o = call<Nothing>([&](auto cb) { return client_.post_memory_request(body, cb); });
        if (!o.ec) {
            store_.outbox_mark_sent(r.request_id);
            st.sent++;
            log("sent request " + r.request_id + " (HTTP " + std::to_string(o.http_status) + ", " + std::to_string(o.attempts) +
                " attempt(s))");
            continue;
        }
        if (o.ec == cloud_cond::cancelled) {  // stop/wake/pause: it stays due as it was
            st.unsent++;
            return;
        }
        const bool give_up = !(o.ec == cloud_cond::retryable);
        const int64_t backoff_ms = std::min<int64_t>(60000, 2000LL << std::min(r.attempts, 5));
        store_.outbox_mark_failed(r.request_id, unix_ms_now() + backoff_ms, give_up);
        if (give_up) {
            st.dead++;
            log("request " + r.request_id + " rejected: " + o.message + "; marked dead");
            if (hooks_.on_error) hooks_.on_error("memory request " + r.request_id + " rejected: " + o.message);
        } else {
            st.unsent++;
            log("request " + r.request_id + " not sent: " + o.message + "; next try in " + std::to_string(backoff_ms / 1000) + " s");
            if (stop_at_retryable) return;
        }
    }
}

// Pulls pages until the feed is drained (at most 100 pages a pass). A failed call sets
// st.pull_ok = false (a cancelled long poll does not). A page from another epoch than the
// stored cursor's starts the feed over (see the header).
void MemorySync::pull(int wait_s, PassStats& st, bool* got_changes) {
    *got_changes = false;
    bool restart = false;  // the server changed epoch without saying reset: read from the start
    for (int pages = 0; pages < 100; pages++) {
        const std::string cursor = restart ? std::string() : store_.cursor();
        const std::string epoch = store_.epoch();
        auto o = call<FeedPage>(
            [&](auto cb) { return client_.get_changes(cursor, opt_.page_size, pages == 0 ? wait_s : 0, cb); });
        if (o.ec) {
            if (o.ec == cloud_cond::cancelled) return;  // a cancelled long poll is not a failure
            st.pull_ok = false;
            log("pull failed: " + o.message);
            return;
        }
        const FeedPage& fp = o.value;
        if (!restart && !fp.reset && !fp.epoch.empty() && !epoch.empty() && fp.epoch != epoch && !cursor.empty()) {
            restart = true;  // this page follows a cursor of the old epoch: worthless
            continue;
        }
        const bool reset = restart || fp.reset;
        restart = false;
        std::vector<MemoryChange> page;
        int64_t n_items = 0, n_deleted = 0;
        for (const auto& it : fp.items) {
            (it.deleted ? n_deleted : n_items)++;
            page.push_back(memory_change_from(it));
        }
        if (page.empty() && fp.next_cursor == cursor && !reset) return;  // drained
        int64_t dropped = 0;
        if (reset) dropped = store_.stats().n_items;
        store_.apply_changes(page, fp.next_cursor, fp.epoch, reset);  // items + cursor: one transaction
        if (reset) {
            st.resets++;
            const std::string msg = "the cloud's memory feed is from another epoch (" + (epoch.empty() ? "none" : epoch) +
                                    " -> " + (fp.epoch.empty() ? "none" : fp.epoch) +
                                    ": its database was reset or restored); dropped " + std::to_string(dropped) +
                                    " local note(s) and resynchronising from the start";
            log(msg);
            if (hooks_.on_reset) hooks_.on_reset(msg);
        }
        st.pages++;
        st.items += (int)n_items;
        st.tombstones += (int)n_deleted;
        log("applied " + std::to_string(n_items) + " item(s), " + std::to_string(n_deleted) + " tombstone(s); cursor '" + cursor +
            "' -> '" + fp.next_cursor + "'");
        if (!page.empty() || reset) {
            *got_changes = true;
            if (hooks_.on_changes) hooks_.on_changes(n_items, n_deleted);
        }
        if ((int)page.size() < opt_.page_size && !reset) return;
    }
}

MemorySync::PassStats MemorySync::run_once(int wait_s, bool wait_only_after_send) {
    PassStats st;
    send_due(st, false);
    bool changes = false;
    pull(wait_only_after_send && st.sent == 0 ? 0 : wait_s, st, &changes);
    return st;
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
            PassStats st;
            send_due(st, true);
            pull(opt_.long_poll_s, st, &changes);
            ok = st.pull_ok && st.unsent == 0 && st.dead == 0;
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
