// The memory worker: one background thread that turns pending memory requests into feed
// notes (retrieve passages for the context, then MemoryGenerator), one request at a time.
// Requests live in the database, so pending ones survive a restart and are picked up again.
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

class MemoryWorker {
public:
    // on_notes runs on the worker thread after a request's notes were committed to the feed.
    MemoryWorker(std::string db_path, std::unique_ptr<MemoryGenerator> gen, std::function<void()> on_notes);
    ~MemoryWorker();  // stop() + join
    void start();
    void wake();  // a request was added
    void stop();  // finishes the request in progress, then returns

private:
    void run();
    std::string db_path_;
    std::unique_ptr<MemoryGenerator> gen_;
    std::function<void()> on_notes_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool woken_ = false;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

}  // namespace tandem::cloud
