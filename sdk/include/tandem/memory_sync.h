// Memory sync: sends the SQLite outbox's due memory requests and pulls the change feed into
// the store, page by page, each page applied with its cursor in one transaction
// (MemoryStore::apply_changes), so a crash can neither lose nor duplicate an item.
//
// Two ways to drive it:
//   background (the Assistant): a thread loops over passes. It sleeps while paused (privacy
//     mode; Options::start_paused pauses it before its first pass) or there is no work; wake() (a new request) interrupts a long poll at once.
//     Failures back off exponentially (1 s .. 30 s).
//   run_once() on the caller's thread (`tandem sync`, tests), with Options::background false.
// A retryable failure leaves a request due again later (2 s doubling, at most 60 s); a 4xx
// marks it dead. Hooks report memory arriving, store problems and (on_log) one line per
// request sent or failed and per page applied.
//
// Feed epochs: when the cloud says the stored cursor is from another epoch (its database was
// reset or restored: the page has reset set, or an epoch other than the stored one), the
// store's notes are dropped and the feed is read again from the start, the drop and the first
// page in one transaction; on_reset and on_log say so. Nothing stalls on a stale cursor.
//
// Thread safety: wake/set_paused/stop may be called from any thread; run_once from one.
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "tandem/cloud_adapter.h"
#include "tandem/memory_store.h"

namespace tandem {

// The store's form of one change-feed entry (an item, or a tombstone when it.deleted).
MemoryChange memory_change_from(const FeedItem& it);

class MemorySync {
public:
    struct Hooks {
        std::function<void(int64_t n_items, int64_t n_deleted)> on_changes;  // after a page with changes
        std::function<void(const std::string& message)> on_error;          // store or protocol problems
        std::function<void(const std::string& line)> on_log;               // requests sent/failed, pages, pull failures
        std::function<void(const std::string& message)> on_reset;          // the feed started over (another epoch)
    };
    struct Options {
        int long_poll_s = 10;    // wait= of the first feed call of a pass
        int max_items = 8;       // notes asked for per memory request
        int page_size = 50;      // feed items per call
        bool background = true;  // start the sync thread
        bool start_paused = false;  // as set_paused(true) before the thread's first pass
    };
    // What one pass did.
    struct PassStats {
        int sent = 0, unsent = 0, dead = 0;     // requests: accepted, to retry later, rejected for good
        int pages = 0, items = 0, tombstones = 0;
        int resets = 0;                         // times the feed started over (another epoch)
        bool pull_ok = true;                    // the feed was read to its end
    };
    // `client` and `store` must outlive the sync; the store may be used by other threads
    // meanwhile (it serializes its calls). Starts the thread when options.background.
    MemorySync(CloudClient& client, MemoryStore& store, Hooks hooks, Options options);
    MemorySync(CloudClient& client, MemoryStore& store, Hooks hooks)
        : MemorySync(client, store, std::move(hooks), Options{}) {}
    ~MemorySync();  // stops and joins (cancels an in-flight call)

    void wake();                      // new outbox work: send it now
    void set_paused(bool paused);     // privacy mode: no traffic at all while paused
    void stop();                      // cancels the in-flight call; later calls fail at once
    // One pass on the caller's thread: send due requests, then pull until the feed is drained.
    // The first feed call long-polls wait_s seconds (only when something was sent, with
    // wait_only_after_send). Store errors while applying a page propagate (MemoryStoreError).
    PassStats run_once(int wait_s, bool wait_only_after_send = false);

private:
    void loop();
    void send_due(PassStats& st, bool stop_at_retryable);
    void pull(int wait_s, PassStats& st, bool* got_changes);
    void log(const std::string& line) {
        if (hooks_.on_log) hooks_.on_log(line);
    }
    template <class T, class Start> Outcome<T> call(Start&& start);

    CloudClient& client_;
    MemoryStore& store_;
    Hooks hooks_;
    Options opt_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false, paused_ = false, woken_ = false;
    RequestHandle in_flight_;
    std::thread thread_;
};

}  // namespace tandem
