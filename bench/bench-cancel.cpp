// bench-cancel MODEL [--tokens N] [--after-ms D] [--runs R] [--threads T]: how soon Engine::cancel()
// stops a generation that is still evaluating its prompt. Each run generates after a prompt of N
// new tokens (default 1,900; a different one each run, so no prefix is reused) on the CPU
// engine; another thread calls cancel() D ms (default 100) after the call starts. Prints, per
// run, the time from cancel() to generate() returning and how many prompt tokens the KV cache
// kept, then the median and the largest. The Engine uses only its public API, so the source
// also builds against an older tree's libraries for a same-run before/after.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "tandem/engine.h"

using namespace tandem;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
    const char* usage = "usage: bench-cancel MODEL [--tokens N] [--after-ms D] [--runs R] [--threads T]\n";
    if (argc < 2 || argc % 2 != 0) { std::fprintf(stderr, "%s", usage); return 2; }
    int n = 1900, after_ms = 100, runs = 5, threads = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        const int v = std::atoi(argv[i + 1]);
        if (a == "--tokens") n = v;
        else if (a == "--after-ms") after_ms = v;
        else if (a == "--runs") runs = v;
        else if (a == "--threads") threads = v;
        else { std::fprintf(stderr, "%s", usage); return 2; }
    }
    if (n < 2 || after_ms < 0 || runs < 1 || threads < 0) { std::fprintf(stderr, "%s", usage); return 2; }
    try {
        EngineParams ep;
        ep.context.n_ctx = n + 8;
        ep.context.n_threads = threads;
        auto e = Engine::load(argv[1], ep);
        const uint32_t nv = (uint32_t)e->model().config().n_vocab;
        std::vector<double> lat;
        for (int r = 0; r < runs; r++) {
            std::vector<int32_t> prompt((size_t)n);
            for (int i = 0; i < n; i++) prompt[(size_t)i] = (int32_t)((i * 2654435761u + (uint32_t)r * 7919u + 1u) % nv);
            GenerateParams gp;
            gp.max_tokens = 4;
            gp.sampling.temperature = 0;
            Clock::time_point t_cancel;
            std::thread canceller([&] {
                std::this_thread::sleep_for(std::chrono::milliseconds(after_ms));
                t_cancel = Clock::now();
                e->cancel();
            });
            const Generation g = e->generate_tokens(prompt, gp);
            const Clock::time_point t_end = Clock::now();
            canceller.join();
            lat.push_back(std::chrono::duration<double, std::milli>(t_end - t_cancel).count());
            std::printf("run %d: %s, cancel -> return %.1f ms, prompt tokens kept %zu of %d\n", r,
                        g.finish == FinishReason::Cancelled ? "cancelled" : "not cancelled", lat.back(),
                        e->cached_prefix(prompt), n);
        }
        std::sort(lat.begin(), lat.end());
        std::printf("cancel -> return: median %.1f ms, largest %.1f ms (%d runs, %d prompt tokens, cancel after %d ms)\n",
                    lat[lat.size() / 2], lat.back(), runs, n, after_ms);
    } catch (const std::exception& ex) {
        std::fprintf(stderr, "bench-cancel: %s\n", ex.what());
        return 1;
    }
    return 0;
}
