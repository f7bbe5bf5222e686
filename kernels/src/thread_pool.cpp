// ThreadPool: persistent workers, a generation counter to publish jobs, an atomic range counter
// for dynamic scheduling. See thread_pool.h for the contract.
#include "tandem/thread_pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace tandem {

// How long an idle worker (or the waiting caller) polls before it sleeps on the condition
// variable. Long enough to bridge the gap between the matvecs of one decode step (a few
// microseconds), short enough not to burn a core between tokens on a laptop.
static constexpr std::chrono::microseconds kSpinTime{50};

static inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#else
    std::this_thread::yield();
#endif
}

// Polls done() for up to kSpinTime; returns its last value.
template <class Pred>
static bool spin_until(Pred done) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 1;; i++) {
        if (done()) return true;
        cpu_relax();
        if ((i & 63) == 0 && std::chrono::steady_clock::now() - t0 > kSpinTime) return done();
    }
}

// The job word packs (generation << 32 | next index): a worker claims a range with a CAS that
// only succeeds while the generation it joined is current and ranges are left, so a worker that
// wakes late can never run a range of a finished job, and the caller never waits for workers
// that have not woken up: it waits until every item of its job is done. While the caller fills
// in a new job the index reads kClosed, so nobody can claim against half-written fields.
static constexpr int64_t kMaxItemsPerJob = (int64_t)1 << 31;
static constexpr uint32_t kClosed = 0xFFFFFFFFu;  // index value while a job is being set up

struct ThreadPool::Impl {
    int n_threads = 1;
    std::vector<std::thread> workers;

    std::mutex m;                       // guards sleeping/waking (cv, done_cv) and `stop`
    std::condition_variable cv;         // workers wait here for a new generation
    std::condition_variable done_cv;    // the caller waits here for done == n_items
    bool stop = false;

    // The current job. Written by the caller before it publishes the new generation in `job`.
    std::atomic<const std::function<void(int64_t, int64_t)>*> fn{nullptr};
    std::atomic<int64_t> n_items{0}, chunk{1};
    std::atomic<uint64_t> job{0};       // generation << 32 | next index
    std::atomic<int64_t> done{0};       // items finished (or skipped after a failure)
    std::atomic<bool> failed{false};
    std::mutex err_m;
    std::exception_ptr err;

    std::mutex call_m;                  // one parallel_for at a time; others run serially

    static uint32_t gen_of(uint64_t j) { return (uint32_t)(j >> 32); }

    // Claims and runs ranges of generation `gen` until none are left.
    void run_ranges(uint32_t gen) {
        uint64_t j = job.load(std::memory_order_acquire);
        for (;;) {
            if (gen_of(j) != gen) return;
            if ((uint32_t)j == kClosed) {  // the caller is still writing this job's fields
                cpu_relax();
                j = job.load(std::memory_order_acquire);
                continue;
            }
            // Acquire: if these read a later job's fields, the CAS below sees that job's tag.
            const auto* f = fn.load(std::memory_order_acquire);
            const int64_t n = n_items.load(std::memory_order_acquire);
            const int64_t ch = chunk.load(std::memory_order_acquire);
            const int64_t b = (int64_t)(uint32_t)j;
            if (b >= n) return;
            const int64_t e = b + ch < n ? b + ch : n;
            if (!job.compare_exchange_weak(j, ((uint64_t)gen << 32) | (uint64_t)e, std::memory_order_acq_rel,
                                           std::memory_order_acquire))
                continue;
            if (!failed.load(std::memory_order_relaxed)) {
                try {
                    (*f)(b, e);
                } catch (...) {
                    std::lock_guard<std::mutex> lk(err_m);
                    if (!err) err = std::current_exception();
                    failed.store(true, std::memory_order_relaxed);
                }
            }
            if (done.fetch_add(e - b, std::memory_order_acq_rel) + (e - b) == n) {
                std::lock_guard<std::mutex> lk(m);
                done_cv.notify_all();
            }
            j = job.load(std::memory_order_acquire);
        }
    }

    void worker_loop() {
        uint32_t seen = 0;
        for (;;) {
            uint32_t g = seen;
            spin_until([&] { return (g = gen_of(job.load(std::memory_order_acquire))) != seen; });
            if (g == seen) {
                std::unique_lock<std::mutex> lk(m);
                cv.wait(lk, [&] { return stop || gen_of(job.load(std::memory_order_acquire)) != seen; });
                if (stop) return;
                g = gen_of(job.load(std::memory_order_acquire));
            }
            seen = g;
            run_ranges(g);
        }
    }

    // One job of n < kMaxItemsPerJob items on all threads; rethrows the first exception.
    void run_job(int64_t n, int64_t ch, const std::function<void(int64_t, int64_t)>& f) {
        // Close the word under the new generation first: from here no claim of the old job can
        // succeed and no claim of the new one can start until the fields below are complete.
        const uint32_t gen = gen_of(job.load(std::memory_order_relaxed)) + 1;
        job.store(((uint64_t)gen << 32) | kClosed, std::memory_order_release);
        fn.store(&f, std::memory_order_release);
        n_items.store(n, std::memory_order_release);
        chunk.store(ch, std::memory_order_release);
        done.store(0, std::memory_order_relaxed);
        failed.store(false, std::memory_order_relaxed);
        err = nullptr;
        {
            std::lock_guard<std::mutex> lk(m);
            job.store((uint64_t)gen << 32, std::memory_order_release);
        }
        cv.notify_all();
        run_ranges(gen);
        if (!spin_until([&] { return done.load(std::memory_order_acquire) == n; })) {
            std::unique_lock<std::mutex> lk(m);
            done_cv.wait(lk, [&] { return done.load(std::memory_order_acquire) == n; });
        }
        if (err) {
            std::exception_ptr e = err;
            err = nullptr;
            std::rethrow_exception(e);
        }
    }
};

ThreadPool::ThreadPool(int n_threads) : impl_(new Impl) {
    if (n_threads < 1 || n_threads > 1024)
        throw std::invalid_argument("ThreadPool: n_threads must be in [1, 1024], got " + std::to_string(n_threads));
    impl_->n_threads = n_threads;
    impl_->workers.reserve((size_t)n_threads - 1);
    for (int i = 1; i < n_threads; i++) impl_->workers.emplace_back([this] { impl_->worker_loop(); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lk(impl_->m);
        impl_->stop = true;
    }
    impl_->cv.notify_all();
    for (auto& t : impl_->workers) t.join();
}

int ThreadPool::size() const { return impl_->n_threads; }

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
    if (n <= 0) return;
    Impl& p = *impl_;
    int64_t chunk = grain > 0 ? grain : (n + 4 * p.n_threads - 1) / (4 * p.n_threads);
    if (chunk < 1) chunk = 1;
    // Serial cases: one thread, a single range, or the pool is busy (nested or concurrent use).
    std::unique_lock<std::mutex> call_lk(p.call_m, std::defer_lock);
    if (p.n_threads == 1 || chunk >= n || !call_lk.try_lock()) {
        for (int64_t b = 0; b < n; b += chunk) fn(b, b + chunk < n ? b + chunk : n);
        return;
    }
    if (chunk >= kMaxItemsPerJob) chunk = kMaxItemsPerJob - 1;
    // Jobs are limited to 2^31 items by the packed job word: larger n runs as several jobs.
    for (int64_t base = 0; base < n; base += kMaxItemsPerJob) {
        const int64_t len = n - base < kMaxItemsPerJob ? n - base : kMaxItemsPerJob;
        if (base == 0 && len == n) {
            p.run_job(n, chunk, fn);
        } else {
            const std::function<void(int64_t, int64_t)> shifted = [&](int64_t b, int64_t e) { fn(base + b, base + e); };
            p.run_job(len, chunk, shifted);
        }
    }
}

}  // namespace tandem
