// ThreadPool: persistent workers, a generation counter to publish jobs, an atomic range counter
// for dynamic scheduling. See thread_pool.h for the contract.
#include "tandem/thread_pool.h"

#include <atomic>
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

// About 20-100 microseconds of polling before a worker (or the waiting caller) goes to sleep.
static constexpr int kSpinIterations = 20000;

static inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#else
    std::this_thread::yield();
#endif
}

struct ThreadPool::Impl {
    int n_threads = 1;
    std::vector<std::thread> workers;

    std::mutex m;                       // guards sleeping/waking (cv, done_cv) and `stop`
    std::condition_variable cv;         // workers wait here for a new generation
    std::condition_variable done_cv;    // the caller waits here for pending == 0
    std::atomic<uint64_t> generation{0};
    bool stop = false;

    // The job of the current generation (written by the caller before publishing it).
    const std::function<void(int64_t, int64_t)>* fn = nullptr;
    int64_t n_items = 0, chunk = 1;
    std::atomic<int64_t> next{0};
    std::atomic<int> pending{0};        // workers that have not finished this generation
    std::atomic<bool> failed{false};
    std::mutex err_m;
    std::exception_ptr err;

    std::mutex call_m;                  // one parallel_for at a time; others run serially

    void run_ranges() {
        while (!failed.load(std::memory_order_relaxed)) {
            const int64_t b = next.fetch_add(chunk, std::memory_order_relaxed);
            if (b >= n_items) break;
            const int64_t e = b + chunk < n_items ? b + chunk : n_items;
            try {
                (*fn)(b, e);
            } catch (...) {
                std::lock_guard<std::mutex> lk(err_m);
                if (!err) err = std::current_exception();
                failed.store(true, std::memory_order_relaxed);
            }
        }
    }

    void worker_loop() {
        uint64_t seen = 0;
        for (;;) {
            uint64_t g = generation.load(std::memory_order_acquire);
            for (int i = 0; g == seen && i < kSpinIterations; i++) {
                cpu_relax();
                g = generation.load(std::memory_order_acquire);
            }
            if (g == seen) {
                std::unique_lock<std::mutex> lk(m);
                cv.wait(lk, [&] { return stop || generation.load(std::memory_order_acquire) != seen; });
                if (stop) return;
                g = generation.load(std::memory_order_acquire);
            }
            seen = g;
            run_ranges();
            if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                std::lock_guard<std::mutex> lk(m);
                done_cv.notify_all();
            }
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
    p.fn = &fn;
    p.n_items = n;
    p.chunk = chunk;
    p.next.store(0, std::memory_order_relaxed);
    p.failed.store(false, std::memory_order_relaxed);
    p.err = nullptr;
    p.pending.store(p.n_threads - 1, std::memory_order_relaxed);
    {
        std::lock_guard<std::mutex> lk(p.m);
        p.generation.fetch_add(1, std::memory_order_release);
    }
    p.cv.notify_all();

    p.run_ranges();

    for (int i = 0; p.pending.load(std::memory_order_acquire) != 0 && i < kSpinIterations; i++) cpu_relax();
    if (p.pending.load(std::memory_order_acquire) != 0) {
        std::unique_lock<std::mutex> lk(p.m);
        p.done_cv.wait(lk, [&] { return p.pending.load(std::memory_order_acquire) == 0; });
    }
    p.fn = nullptr;
    if (p.err) {
        std::exception_ptr e = p.err;
        p.err = nullptr;
        std::rethrow_exception(e);
    }
}

}  // namespace tandem
