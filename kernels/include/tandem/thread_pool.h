// A fixed set of worker threads for data-parallel loops (the CPU matmuls, attention heads).
//
// The workers are created once by the constructor and live until the destructor; no thread is
// created per operation. parallel_for() hands out contiguous index ranges from a shared atomic
// counter (dynamic scheduling), and the calling thread works too, so ThreadPool(1) runs
// everything on the caller with no synchronisation at all.
//
// Idle workers poll for about 50 microseconds after each job so that the next small job of a
// decode step starts without a futex wake-up, then sleep on a condition variable; the caller
// waits for stragglers the same way.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>

namespace tandem {

class ThreadPool {
public:
    // Starts n_threads - 1 workers (the thread calling parallel_for is the n-th).
    // Throws std::invalid_argument when n_threads < 1 or n_threads > 1024.
    explicit ThreadPool(int n_threads);
    // Joins the workers. Must not run while a parallel_for on this pool is in progress.
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    // Number of threads that take part in parallel_for (workers + the caller).
    int size() const;

    // Calls fn(begin, end) on disjoint ranges that together cover [0, n) exactly once, split
    // across the workers and the caller; returns when every range has finished. n <= 0 calls
    // nothing. `grain` is the smallest range handed out (0: the pool picks about 4 ranges per
    // thread). Ranges may run in any order on any thread: fn must not depend on either.
    //
    // Exceptions: if fn throws, no further ranges are started, the ranges already running
    // finish, and the first exception is rethrown here in the caller.
    // Re-entrancy: a call made from inside fn (nested), or while another thread's call on the
    // same pool is in progress, runs serially on the calling thread (correct, just not
    // parallel) instead of deadlocking.
    void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn,
                      int64_t grain = 0);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace tandem
