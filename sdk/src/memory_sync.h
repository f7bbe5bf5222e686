// Background memory sync (internal to the SDK): one thread that sends the SQLite outbox's due
// memory requests and pulls the change feed into the store, page by page, each page applied
// with its cursor in one transaction (MemoryStore::apply_changes).
//
// The thread sleeps while privacy mode is on or there is no work; wake() (a new request)
// interrupts a long poll at once. Failures back off exponentially (1 s .. 30 s); a 4xx on a
// request marks it dead. Events report memory arriving and store problems.
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

class MemorySync {
public:
    struct Hooks {
        std::function<void(int64_t n_items, int64_t n_deleted)> on_changes;  // after a page with changes
        std::function<void(const std::string& message)> on_error;          // store or protocol problems
    };
    // `store_mu` guards `store` (shared with the caller's retrieval). Starts the thread.
    MemorySync(CloudClient& client, MemoryStore& store, std::mutex& store_mu, Hooks hooks, int long_poll_s = 10);
    ~MemorySync();  // stops and joins (cancels an in-flight call)

    void wake();                      // new outbox work: send it now
    void set_paused(bool paused);     // privacy mode: no traffic at all while paused
    // One pass on the caller's thread (for `tandem sync --once` and tests): send due requests,
    // then pull until the feed is drained. Returns false if any call failed.
    bool run_once(int wait_s);

private:
    void loop();
    bool send_due();
    bool pull(int wait_s, bool* got_changes);
    template <class T, class Start> Outcome<T> call(Start&& start);

    CloudClient& client_;
    MemoryStore& store_;
    std::mutex& store_mu_;
    Hooks hooks_;
    int long_poll_s_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false, paused_ = false, woken_ = false;
    RequestHandle in_flight_;
    std::thread thread_;
};

}  // namespace tandem
