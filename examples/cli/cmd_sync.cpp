// `tandem sync`: moves memory between a local store and the cloud.
//
//   tandem sync --db PATH --url URL [--token T] [--once] [--wait S] [--max-items N]
//               [--insecure] [--verbose]
//
// One pass is the SDK's MemorySync::run_once (tandem/memory_sync.h), the same code the
// Assistant's background sync runs: (1) send every due request of the store's outbox (POST
// /v1/memory/requests; 202 -> 'sent'; a retryable failure -> due again later with backoff; a
// 4xx -> 'dead'), then (2) pull the change feed from the stored cursor until it is drained,
// applying each page together with its next_cursor in one transaction, so a crash can neither
// lose nor duplicate an item. With --once, the first pull long-polls up to --wait seconds
// only when the pass sent requests, so that their notes usually arrive in the same pass.
//
// --once: one pass, then exit (0 if the pull worked and nothing was left unsent, else 1).
// Otherwise: passes forever, each pull a long poll of --wait seconds, backing off while the
// cloud is offline or the store cannot be written (disk full, I/O error, locked: the pass's
// transaction was rolled back, so the same page is applied again later), until SIGINT/SIGTERM
// (exit 0). Other store errors (corrupt, read-only) end it with exit 1. The token may also come from the
// TANDEM_CLOUD_TOKEN environment variable (keeps it out of `ps`); it is never printed.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "commands.h"
#include "tandem/cloud_adapter.h"
#include "tandem/memory_store.h"
#include "tandem/memory_sync.h"

namespace tandem::cli {

namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

std::mutex g_out_mu;  // the connectivity callback prints from the client's thread
void say(const std::string& line) {
    std::lock_guard<std::mutex> lk(g_out_mu);
    std::fprintf(stdout, "%s\n", line.c_str());
    std::fflush(stdout);
}

struct SyncOptions {
    std::string db, url, token;
    bool once = false, insecure = false, verbose = false;
    int wait_s = 20;
    int max_items = 5;
};

int to_int(const std::string& flag, const std::string& v, int lo, int hi) {
    char* end = nullptr;
    long x = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end || x < lo || x > hi)
        throw UsageError{flag + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got '" + v + "'"};
    return int(x);
}

SyncOptions parse(const Args& args) {
    SyncOptions o;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--db") o.db = flag_value(args, i);
        else if (a == "--url") o.url = flag_value(args, i);
        else if (a == "--token") o.token = flag_value(args, i);
        else if (a == "--once") o.once = true;
        else if (a == "--wait") o.wait_s = to_int(a, flag_value(args, i), 0, 30);
        else if (a == "--max-items") o.max_items = to_int(a, flag_value(args, i), 1, 50);
        else if (a == "--insecure") o.insecure = true;
        else if (a == "--verbose") o.verbose = true;
        else unknown_argument(a);
    }
    if (o.db.empty()) throw UsageError{"--db is required"};
    if (o.url.empty()) throw UsageError{"--url is required"};
    if (o.token.empty())
        if (const char* t = std::getenv("TANDEM_CLOUD_TOKEN")) o.token = t;
    return o;
}

}  // namespace

// ---- the command -------------------------------------------------------------------------

std::string help_sync() {
    const SyncOptions o;
    char buf[1280];
    std::snprintf(buf, sizeof buf,
                  "usage: tandem sync --db PATH --url URL [options]\n"
                  "Sends the store's due memory requests to the cloud and pulls the memory change feed into it.\n\n"
                  "      --db PATH        the local memory store (SQLite; required)\n"
                  "      --url URL        the cloud, e.g. http://127.0.0.1:8080 (required)\n"
                  "      --token T        bearer token (default: $TANDEM_CLOUD_TOKEN, else none)\n"
                  "      --once           one pass, then exit 0 if it all worked, else 1 (default: run until Ctrl-C)\n"
                  "      --wait S         long-poll seconds per pull, 0..30 (default: %d)\n"
                  "      --max-items N    items per feed page, 1..50 (default: %d)\n"
                  "      --insecure       do not verify the server's TLS certificate (default: verify)\n"
                  "      --verbose        the cloud adapter's debug log, token redacted (default: off)\n"
                  "  -h, --help           this text\n",
                  o.wait_s, o.max_items);
    return buf;
}

int cmd_sync(const Args& args) {
    SyncOptions o = parse(args);
    MemoryStoreParams sp;
    sp.path = o.db;
    MemoryStore store(sp);  // throws MemoryStoreError with the path and reason

    CloudConfig cfg;
    cfg.base_url = o.url;
    cfg.token = o.token;
    cfg.verify_tls = !o.insecure;
    if (o.verbose) cfg.debug_log = [](const std::string& l) { say("debug: " + l); };  // token redacted
    CloudClient cli(cfg);
    cli.set_connectivity_callback([](const ConnectivityEvent& e) {
        say(std::string("cloud ") + (e.state == Connectivity::online ? "online" : "offline") + " (" + e.reason + ")");
    });

    g_stop = false;
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGXFSZ, SIG_IGN);  // a file size limit becomes a store error (retried), not a kill

    MemorySync::Hooks hooks;
    hooks.on_log = say;
    MemorySync::Options so;
    so.long_poll_s = o.wait_s;
    so.max_items = o.max_items;
    so.page_size = 100;
    so.background = false;
    MemorySync sync(cli, store, hooks, so);
    // a signal cannot call into the sync: this thread turns the flag into stop() (cancels the call)
    std::atomic<bool> done{false};
    std::thread watcher([&] {
        while (!done && !g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (g_stop) sync.stop();
    });

    MemorySync::PassStats total;
    int backoff_s = 1;
    for (int pass = 1; !g_stop; ++pass) {
        if (o.verbose) say("pass " + std::to_string(pass));
        MemorySync::PassStats r;
        bool store_failed = false;
        try {
            r = sync.run_once(o.wait_s, /*wait_only_after_send=*/o.once);
        } catch (const MemoryStoreError& e) {
            const bool transient = e.code() == MemoryStoreErrc::io || e.code() == MemoryStoreErrc::busy;
            if (o.once || !transient) {
                done = true;
                watcher.join();
                throw;
            }
            say(std::string("store error: ") + e.what());
            store_failed = true;
        } catch (...) {
            done = true;
            watcher.join();
            throw;
        }
        total.sent += r.sent;
        total.unsent += r.unsent;
        total.dead += r.dead;
        total.pages += r.pages;
        total.items += r.items;
        total.tombstones += r.tombstones;
        total.pull_ok = r.pull_ok;
        if (o.once) break;
        if ((store_failed || !r.pull_ok) && !g_stop) {  // offline, failing or disk full: wait, doubling up to 30 s
            say("retrying in " + std::to_string(backoff_s) + " s");
            for (int i = 0; i < backoff_s * 10 && !g_stop; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
            backoff_s = std::min(backoff_s * 2, 30);
        } else {
            backoff_s = 1;
        }
    }
    done = true;
    watcher.join();
    auto st = store.stats();
    say("sync done: sent " + std::to_string(total.sent) + ", unsent " + std::to_string(total.unsent) + ", dead " +
        std::to_string(total.dead) + "; applied " + std::to_string(total.items) + " item(s), " +
        std::to_string(total.tombstones) + " tombstone(s) in " + std::to_string(total.pages) + " page(s); store has " +
        std::to_string(st.n_items) + " item(s), " + std::to_string(st.n_outbox_pending) + " pending request(s); cursor '" +
        store.cursor() + "'");
    if (!o.once) return 0;
    return total.pull_ok && total.unsent == 0 ? 0 : 1;
}

}  // namespace tandem::cli
