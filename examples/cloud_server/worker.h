// The memory worker: one background thread that turns pending memory requests into feed
// notes (retrieve passages for the context, then MemoryGenerator), one request at a time.
// Requests live in the database, so pending ones survive a restart and are picked up again.
//
// Any number of workers, in any number of tandem-cloud processes on one database, share the
// requests: a worker claims one with a lease (ServerDb::claim_request), a second thread renews
// the lease every lease/3 while the notes are being written, and the notes are committed only
// if the worker still holds it. A worker that dies (kill -9, a lost machine) stops renewing;
// once its lease runs out another worker claims the request and produces it, once.
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "tandem/cloud/generator.h"

namespace tandem::cloud {

struct WorkerConfig {
    std::string db;             // a --db value (server_db.h open_database)
    int64_t lease_ms = 30000;   // how long a claimed request stays this worker's without a renewal
    int64_t poll_ms = 1000;     // how often an idle worker looks for requests whose lease ran out
};

class MemoryWorker {
public:
    // on_notes runs on the worker thread after a request's notes were committed to the feed.
    MemoryWorker(WorkerConfig cfg, std::unique_ptr<MemoryGenerator> gen, std::function<void()> on_notes);
    ~MemoryWorker();  // stop() + join
    void start();
    void wake();  // a request was added (here or, through feed_events.h, in another process)
    void stop();  // finishes the request in progress, then returns
    const std::string& name() const { return name_; }  // the lease owner: host, pid and a random part

private:
    void run();
    void renew_leases();
    WorkerConfig cfg_;
    std::string name_;
    std::unique_ptr<MemoryGenerator> gen_;
    std::function<void()> on_notes_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool woken_ = false;
    std::atomic<bool> stop_{false};
    // The request being produced ("" tenant: none), for the lease keeper thread.
    std::string job_tenant_, job_id_;
    std::thread thread_, keeper_;
};

}  // namespace tandem::cloud
