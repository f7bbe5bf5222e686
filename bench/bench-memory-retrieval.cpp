// bench-memory-retrieval: MemoryStore::retrieve latency over a large store.
//
// Items are sentences of the UN General Debate speeches (../shared/corpus/ungd.jsonl.xz, read
// with liblzma), speeches up to 2020; query windows are 300-character windows of the 2022
// speeches (held out), so queries and items share vocabulary but not text. Reports p50/p95/p99
// of retrieve() (FTS5 bm25 + LRU touch), against a baseline measured in the same run: a full
// scan that reads every item and scores term overlap in C++ (what a store without an index does).
//
// Latency is wall time per call; CPU time of the calling thread is printed beside it, since on a
// shared, loaded machine the wall time also counts waiting for a core.
//
//   bench-memory-retrieval [--items N] [--queries Q] [--db PATH] [--baseline-queries B] [--corpus XZ]
//                          [--reuse 1]
#include <lzma.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "tandem/memory_store.h"

using namespace tandem;
using Clock = std::chrono::steady_clock;

// ---- corpus ----------------------------------------------------------------------------

struct Speech {
    int year;
    std::string text;
};

// Streams the .xz file and keeps speeches while keep() wants more.
static std::vector<Speech> read_speeches(const std::string& path) {
    std::vector<Speech> out;
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) {
        std::fprintf(stderr, "bench: cannot open %s\n", path.c_str());
        std::exit(1);
    }
    lzma_stream strm = LZMA_STREAM_INIT;
    if (lzma_stream_decoder(&strm, UINT64_MAX, 0) != LZMA_OK) std::exit(1);
    std::vector<uint8_t> in(1 << 16), buf(1 << 18);
    std::string line;
    lzma_action action = LZMA_RUN;
    for (;;) {
        if (strm.avail_in == 0 && action == LZMA_RUN) {
            strm.next_in = in.data();
            strm.avail_in = std::fread(in.data(), 1, in.size(), f);
            if (std::feof(f)) action = LZMA_FINISH;
        }
        strm.next_out = buf.data();
        strm.avail_out = buf.size();
        lzma_ret ret = lzma_code(&strm, action);
        for (size_t i = 0; i < buf.size() - strm.avail_out; i++) {
            if (buf[i] != '\n') {
                line += (char)buf[i];
                continue;
            }
            auto j = nlohmann::json::parse(line, nullptr, false);
            line.clear();
            if (j.is_object() && j.contains("year") && j.contains("text"))
                out.push_back({j["year"].get<int>(), j["text"].get<std::string>()});
        }
        if (ret == LZMA_STREAM_END) break;
        if (ret != LZMA_OK) {
            std::fprintf(stderr, "bench: xz error %d in %s\n", (int)ret, path.c_str());
            std::exit(1);
        }
    }
    lzma_end(&strm);
    std::fclose(f);
    return out;
}

// Sentences of 60..300 bytes: the size of a memory note.
static void add_sentences(const std::string& text, size_t want, std::vector<std::string>& out) {
    size_t start = 0;
    for (size_t i = 0; i + 1 < text.size() && out.size() < want; i++) {
        if ((text[i] == '.' || text[i] == '?' || text[i] == '!') && (text[i + 1] == ' ' || text[i + 1] == '\n')) {
            std::string s = text.substr(start, i + 1 - start);
            s.erase(0, s.find_first_not_of(" \n"));
            if (s.size() >= 60 && s.size() <= 300) out.push_back(s);
            start = i + 1;
        }
    }
}

// ---- measurement -----------------------------------------------------------------------

static double thread_cpu_ms() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double pct(std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, (size_t)(p * (double)v.size()))];
}

// Baseline: score every item by how many query terms it contains (no index).
static size_t full_scan(const std::vector<std::string>& items, const std::vector<std::string>& terms) {
    size_t best = 0, best_score = 0;
    for (size_t i = 0; i < items.size(); i++) {
        size_t score = 0;
        for (const std::string& t : terms)
            if (strcasestr(items[i].c_str(), t.c_str())) score++;
        if (score > best_score) best_score = score, best = i;
    }
    return best;
}

int main(int argc, char** argv) {
    size_t n_items = 100000, n_queries = 2000, n_base = 20;
    bool reuse = false;  // --reuse 1: keep a filled --db from an earlier run (profiling)
    std::string db_path = "/tmp/tandem-bench-memory.db";
    std::string corpus = std::string(TANDEM_SHARED_DIR) + "/corpus/ungd.jsonl.xz";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--items")) n_items = std::stoul(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--queries")) n_queries = std::stoul(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--baseline-queries")) n_base = std::stoul(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--db")) db_path = argv[i + 1];
        else if (!std::strcmp(argv[i], "--corpus")) corpus = argv[i + 1];
        else if (!std::strcmp(argv[i], "--reuse")) reuse = std::atoi(argv[i + 1]) != 0;
        else {
            std::fprintf(stderr, "usage: bench-memory-retrieval [--items N] [--queries Q] [--db PATH] [--baseline-queries B] [--corpus XZ] [--reuse 0|1]\n");
            return 2;
        }
    }
    auto t0 = Clock::now();
    std::vector<Speech> speeches = read_speeches(corpus);
    std::vector<std::string> items, windows;
    for (const Speech& s : speeches)
        if (s.year <= 2020) add_sentences(s.text, n_items, items);
    for (const Speech& s : speeches) {
        if (s.year != 2022) continue;
        for (size_t off = 1000; off + 300 < s.text.size() && windows.size() < n_queries; off += 7919)
            windows.push_back(s.text.substr(off, 300));
    }
    std::printf("corpus: %zu speeches read in %.1f s; %zu items, %zu query windows\n", speeches.size(),
                std::chrono::duration<double>(Clock::now() - t0).count(), items.size(), windows.size());
    speeches.clear();

    if (!reuse)
        for (const char* suffix : {"", "-wal", "-shm"}) std::remove((db_path + suffix).c_str());
    MemoryStoreParams p;
    p.path = db_path;
    p.max_items = (int64_t)items.size() + 1;
    p.max_bytes = int64_t(1) << 31;
    MemoryStore store(p);

    // Fill in pages of 500, as the sync loop would.
    t0 = Clock::now();
    for (size_t i = reuse && store.stats().n_items == (int64_t)items.size() ? items.size() : 0; i < items.size(); i += 500) {
        std::vector<MemoryChange> page;
        for (size_t j = i; j < std::min(items.size(), i + 500); j++) {
            MemoryChange c;
            c.item.id = "m-" + std::to_string(j);
            c.item.request_id = "r-" + std::to_string(j / 5);
            c.item.text = items[j];
            c.item.doc_id = "d-" + std::to_string(j / 40);
            c.item.title = "UNGD";
            c.item.created_at = (int64_t)j;
            page.push_back(std::move(c));
        }
        store.apply_changes(page, std::to_string(i + page.size()));
    }
    double fill_s = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("apply_changes: %zu items in %.2f s (%.0f items/s, pages of 500)\n", items.size(), fill_s,
                (double)items.size() / fill_s);

    t0 = Clock::now();
    store.optimize();  // what the SDK does when idle after a large sync
    std::printf("optimize: %.2f s\n", std::chrono::duration<double>(Clock::now() - t0).count());

    RetrieveParams rp;  // defaults: 8 items, 2000 characters
    for (size_t i = 0; i < std::min<size_t>(50, windows.size()); i++) store.retrieve(windows[i], rp);  // warm up
    // Warm: the store's term-frequency cache as it is between sync pages. Cold: the cache is
    // emptied before every query (an empty apply_changes, not timed), the worst case.
    std::vector<double> ms, cpu_ms, cold_ms, cold_cpu_ms;
    size_t returned = 0;
    for (int cold = 0; cold < 2; cold++) {
        for (const std::string& w : windows) {
            if (cold) store.apply_changes({}, std::to_string(items.size()));
            auto a = Clock::now();
            double c = thread_cpu_ms();
            size_t n = store.retrieve(w, rp).size();
            (cold ? cold_cpu_ms : cpu_ms).push_back(thread_cpu_ms() - c);
            (cold ? cold_ms : ms).push_back(std::chrono::duration<double, std::milli>(Clock::now() - a).count());
            if (!cold) returned += n;
        }
    }
    std::vector<double> base_ms;
    for (size_t i = 0; i < std::min(n_base, windows.size()); i++) {
        std::vector<std::string> terms = fts5_terms(windows[i]);
        auto a = Clock::now();
        volatile size_t sink = full_scan(items, terms);
        (void)sink;
        base_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - a).count());
    }
    std::printf("retrieve (FTS5 bm25, %zu queries): p50 %.3f ms  p95 %.3f ms  p99 %.3f ms  max %.3f ms; "
                "%.2f items/query\n",
                ms.size(), pct(ms, 0.50), pct(ms, 0.95), pct(ms, 0.99), pct(ms, 1.0),
                (double)returned / (double)ms.size());
    std::printf("retrieve thread CPU time: p50 %.3f ms  p95 %.3f ms\n", pct(cpu_ms, 0.50), pct(cpu_ms, 0.95));
    std::printf("retrieve, cold term cache: p50 %.3f ms  p95 %.3f ms (CPU p50 %.3f ms  p95 %.3f ms)\n",
                pct(cold_ms, 0.50), pct(cold_ms, 0.95), pct(cold_cpu_ms, 0.50), pct(cold_cpu_ms, 0.95));
    std::printf("baseline full scan (%zu queries): p50 %.3f ms  p95 %.3f ms\n", base_ms.size(), pct(base_ms, 0.5),
                pct(base_ms, 0.95));
    std::printf("speedup vs full scan (p50): %.0fx; goal p95 <= 5 ms: %s\n", pct(base_ms, 0.5) / pct(ms, 0.5),
                pct(ms, 0.95) <= 5.0 ? "met" : "NOT met");
    return 0;
}
