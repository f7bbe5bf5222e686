// bench-cloud-load: the reference cloud (tandem-cloud, a process on loopback) under many
// keep-alive clients and long-pollers at once, for a fixed time; reports errors, throughput,
// latency per group and the server's RSS every second (is it flat?).
//
//   bench-cloud-load [--cloud-bin PATH] [--seconds 60] [--clients 500] [--pollers 200]
//                    [--wait 10] [--json]
//
// clients: each sends GETs back to back on its own connection, in turn /health, a feed page
//   (/v1/memory/changes?since=<head>&limit=20, no wait) and a request's state.
// pollers: each long-polls /v1/memory/changes?since=<its cursor>&wait=<wait>, following
//   next_cursor, so it waits until a note arrives or the wait ends.
// Meanwhile a memory request is posted about every second (from the load's thread, so fewer
// when it is busy), so the feed grows and wakes the pollers.
// Every response must be a 200 within 40 s; anything else counts as an error.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../tests/chaos/chaos_util.h"
#include "../tests/http_load.h"

using namespace tandem_test;

namespace {

constexpr const char* kToken = "bench-token";

struct Options {
    std::string cloud_bin = TANDEM_CLOUD_BIN;
    int seconds = 60, clients = 500, pollers = 200, wait_s = 10;
    bool json = false;
};

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, (size_t)(p * (double)(v.size() - 1) + 0.5))];
}

int int_arg(const char* flag, const char* v, int lo, int hi) {
    char* end = nullptr;
    const long x = std::strtol(v, &end, 10);
    if (*end || x < lo || x > hi) {
        std::fprintf(stderr, "bench-cloud-load: %s must be in [%d, %d], got '%s'\n", flag, lo, hi, v);
        std::exit(2);
    }
    return (int)x;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "bench-cloud-load: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--cloud-bin") o.cloud_bin = value();
        else if (a == "--seconds") o.seconds = int_arg("--seconds", value(), 1, 3600);
        else if (a == "--clients") o.clients = int_arg("--clients", value(), 0, 5000);
        else if (a == "--pollers") o.pollers = int_arg("--pollers", value(), 0, 5000);
        else if (a == "--wait") o.wait_s = int_arg("--wait", value(), 0, 30);
        else if (a == "--json") o.json = true;
        else {
            std::fprintf(stderr, "usage: bench-cloud-load [--cloud-bin PATH] [--seconds S] [--clients N] [--pollers N] [--wait S] [--json]\n");
            return 2;
        }
    }
    raise_fd_limit();
    TempDir tmp;
    CloudProcess cloud(o.cloud_bin, tmp.path, {"--token", kToken});
    const pid_t pid = cloud.pid();
    const int port = cloud.port();

    // A first request, so that the state lookups have something to find.
    auto post = [&](int n) {
        const std::string body = "{\"request_id\": \"bench-" + std::to_string(n) + "\", \"context\": \"sea levels island states " +
                                 std::to_string(n) + "\", \"max_items\": 2}";
        return http_status(http_exchange(port, "POST /v1/memory/requests HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                                               "Authorization: Bearer " + std::string(kToken) + "\r\nContent-Type: application/json\r\n"
                                               "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body));
    };
    int posted = 0, post_errors = 0;
    post_errors += post(posted++) != 202;

    HttpLoad load(port, kToken);
    auto& clients = load.group("keep-alive", o.clients, [](HttpLoad::Client& c) {
        static const char* targets[] = {"/health", "/v1/memory/changes?limit=20&since=", "/v1/memory/requests/bench-0"};
        if (c.cursor.size() >= 3) c.cursor.clear();  // the turn: 0, 1, 2
        const std::string t = targets[c.cursor.size()];
        c.cursor += "x";
        return t;
    });
    const std::string wait = "&wait=" + std::to_string(o.wait_s);
    auto& pollers = load.group(
        "long-poll", o.pollers, [wait](HttpLoad::Client& c) { return "/v1/memory/changes?limit=100&since=" + c.cursor + wait; },
        [](HttpLoad::Client& c, int status, const std::string& body) {
            if (status != 200) return;
            const size_t at = body.find("\"next_cursor\":\"");
            if (at != std::string::npos) c.cursor = body.substr(at + 15, body.find('"', at + 15) - at - 15);
        });

    // The server's RSS and CPU time, sampled on a thread of their own every second (the load's
    // thread may be late when busy).
    std::vector<long> rss;    // KiB
    std::vector<double> cpu;  // server CPU seconds so far
    std::atomic<bool> sampling{true};
    std::thread sampler([&] {
        auto next = std::chrono::steady_clock::now();
        while (sampling) {
            rss.push_back(proc_status_kib(pid, "VmRSS"));
            cpu.push_back(cpu_seconds(pid));
            next += std::chrono::seconds(1);
            std::this_thread::sleep_until(next);
        }
    });
    const auto t0 = std::chrono::steady_clock::now();
    load.run(std::chrono::seconds(o.seconds), [&](double) { post_errors += post(posted++) != 202; });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    sampling = false;
    sampler.join();
    const bool alive = cloud.proc->alive();

    auto errors = [](const HttpLoad::Stats& s) {
        uint64_t n = s.errors;
        for (const auto& [status, count] : s.by_status)
            if (status != 200) n += count;
        return n;
    };
    const long rss_first = rss.size() > 5 ? rss[5] : (rss.empty() ? 0 : rss.front());
    const long rss_last = rss.empty() ? 0 : rss.back();
    const long rss_max = rss.empty() ? 0 : *std::max_element(rss.begin(), rss.end());
    const double server_cpu = cpu.size() >= 2 ? (cpu.back() - cpu.front()) / (double)(cpu.size() - 1) : 0;
    if (o.json) {
        std::printf("{\"seconds\": %.1f, \"clients\": %d, \"pollers\": %d, \"keepalive_responses\": %llu, \"keepalive_errors\": %llu, "
                    "\"keepalive_p50_ms\": %.2f, \"keepalive_p99_ms\": %.2f, \"poll_responses\": %llu, \"poll_errors\": %llu, "
                    "\"posts\": %d, \"post_errors\": %d, \"rss_kib_5s\": %ld, \"rss_kib_end\": %ld, \"rss_kib_max\": %ld, "
                    "\"server_cpu\": %.2f, \"server_alive\": %s}\n",
                    seconds, o.clients, o.pollers, (unsigned long long)clients.stats.responses,
                    (unsigned long long)errors(clients.stats), percentile(clients.stats.latency_ms, 0.5),
                    percentile(clients.stats.latency_ms, 0.99), (unsigned long long)pollers.stats.responses,
                    (unsigned long long)errors(pollers.stats), posted, post_errors, rss_first, rss_last, rss_max, server_cpu,
                    alive ? "true" : "false");
    } else {
        std::printf("tandem-cloud %s, %d s: %d keep-alive clients, %d long-pollers (wait=%d s), 1 memory request/s\n",
                    o.cloud_bin.c_str(), o.seconds, o.clients, o.pollers, o.wait_s);
        for (auto* g : {&clients, &pollers}) {
            std::printf("  %-10s %9llu responses (%7.0f/s), %llu errors, latency p50 %.2f ms, p99 %.2f ms, %llu connects\n",
                        g->name.c_str(), (unsigned long long)g->stats.responses, (double)g->stats.responses / seconds,
                        (unsigned long long)errors(g->stats), percentile(g->stats.latency_ms, 0.5),
                        percentile(g->stats.latency_ms, 0.99), (unsigned long long)g->stats.connects);
            for (const std::string& e : g->stats.error_samples) std::printf("    error: %s\n", e.c_str());
        }
        std::printf("  posts      %d, %d errors\n", posted, post_errors);
        std::printf("  server     RSS %ld KiB at 5 s, %ld KiB at the end, %ld KiB max; %.2f cores; %s\n", rss_first, rss_last, rss_max,
                    server_cpu, alive ? "alive" : "DEAD");
        std::printf("  RSS each 10 s (KiB):");
        for (size_t i = 9; i < rss.size(); i += 10) std::printf(" %ld", rss[i]);
        std::printf("\n");
    }
    return errors(clients.stats) + errors(pollers.stats) + (uint64_t)post_errors == 0 && alive ? 0 : 1;
}
