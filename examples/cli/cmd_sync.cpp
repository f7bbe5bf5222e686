// `tandem sync`: moves memory between a local store and the cloud.
//
//   tandem sync --db PATH --url URL [--token T] [--once] [--wait S] [--max-items N]
//               [--insecure] [--verbose]
//
// One pass = (1) send every due request of the store's outbox (POST /v1/memory/requests; 202 ->
// 'sent'; a retryable failure -> due again later with backoff; a 4xx -> 'dead'), then (2) pull
// the change feed from the stored cursor until it is drained, applying each page together with
// its next_cursor in one transaction (MemoryStore::apply_changes), so a crash can neither lose
// nor duplicate an item. When the pass sent requests, the first pull long-polls up to --wait
// seconds so their notes usually arrive in the same pass.
//
// --once: one pass, then exit (0 if the pull worked and nothing was left unsent, else 1).
// Otherwise: passes forever, each pull a long poll of --wait seconds, backing off while the
// cloud is offline, until SIGINT/SIGTERM (exit 0). The token may also come from the
// TANDEM_CLOUD_TOKEN environment variable (keeps it out of `ps`); it is never printed.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <mutex>
#include <thread>

#include "commands.h"
#include "tandem/cloud_adapter.h"
#include "tandem/memory_store.h"

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
        else throw UsageError{"unknown option '" + a + "'"};
    }
    if (o.db.empty()) throw UsageError{"--db is required"};
    if (o.url.empty()) throw UsageError{"--url is required"};
    if (o.token.empty())
        if (const char* t = std::getenv("TANDEM_CLOUD_TOKEN")) o.token = t;
    return o;
}

// Runs one call and waits for it; a signal cancels it (the outcome is then `cancelled`).
template <class T, class Start>
Outcome<T> call(Start&& start) {
    auto p = std::make_shared<std::promise<Outcome<T>>>();
    auto f = p->get_future();
    RequestHandle h = start([p](Outcome<T> o) { p->set_value(std::move(o)); });
    while (f.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready)
        if (g_stop) h.cancel();
    return f.get();
}

int64_t now_ms() { return unix_ms_now(); }

// Retry schedule of an unsent outbox request: 2 s after the first failure, doubling, at most 5 min.
int64_t retry_delay_ms(int attempts) {
    int64_t d = 2000ll << std::min(attempts, 8);
    return std::min<int64_t>(d, 300000);
}

struct PassResult {
    int sent = 0, unsent = 0, dead = 0;
    int pages = 0, items = 0, tombstones = 0;
    bool pull_ok = true;
};

// ---- (1) the outbox ----------------------------------------------------------------------

void drain_outbox(MemoryStore& store, CloudClient& cli, const SyncOptions& o, PassResult& r) {
    auto due = store.outbox_due(now_ms(), 1000);
    if (due.empty() && o.verbose) say("outbox: nothing due");
    for (const OutboxRequest& q : due) {
        if (g_stop) return;
        auto res = call<Nothing>([&](auto cb) {
            return cli.post_memory_request({q.request_id, q.context, o.max_items}, cb);
        });
        if (!res.ec) {
            store.outbox_mark_sent(q.request_id);
            ++r.sent;
            say("sent request " + q.request_id + " (HTTP " + std::to_string(res.http_status) + ", " +
                std::to_string(res.attempts) + " attempt(s))");
        } else if (res.ec == cloud_cond::cancelled) {
            return;  // stopping: the request stays pending as it was
        } else if (res.ec == cloud_cond::retryable) {
            int64_t delay = retry_delay_ms(q.attempts);
            store.outbox_mark_failed(q.request_id, now_ms() + delay);
            ++r.unsent;
            say("request " + q.request_id + " not sent: " + res.message + "; next try in " +
                std::to_string(delay / 1000) + " s");
        } else {  // 4xx, bad response...: sending it again will not help
            store.outbox_mark_failed(q.request_id, now_ms(), /*give_up=*/true);
            ++r.dead;
            say("request " + q.request_id + " rejected: " + res.message + "; marked dead");
        }
    }
}

// ---- (2) the change feed -----------------------------------------------------------------

void pull(MemoryStore& store, CloudClient& cli, int first_wait_s, PassResult& r) {
    std::string cursor = store.cursor();
    int wait_s = first_wait_s;
    while (!g_stop) {
        auto res = call<FeedPage>([&](auto cb) { return cli.get_changes(cursor, 100, wait_s, cb); });
        if (res.ec) {
            if (res.ec != cloud_cond::cancelled) say("pull failed: " + res.message);
            r.pull_ok = false;
            return;
        }
        std::vector<MemoryChange> page;
        int items = 0, tombstones = 0;
        for (const FeedItem& f : res.value.items) {
            MemoryChange c;
            c.deleted = f.deleted;
            c.item.id = f.id;
            c.item.request_id = f.request_id;
            c.item.text = f.text;
            c.item.doc_id = f.doc_id;
            c.item.title = f.title;
            c.item.created_at = f.created_at;
            (f.deleted ? tombstones : items)++;
            page.push_back(std::move(c));
        }
        const std::string& next = res.value.next_cursor;
        if (page.empty() && next == cursor) return;  // drained
        store.apply_changes(page, next);  // items + cursor: one transaction
        ++r.pages;
        r.items += items;
        r.tombstones += tombstones;
        say("applied " + std::to_string(items) + " item(s), " + std::to_string(tombstones) +
            " tombstone(s); cursor '" + cursor + "' -> '" + next + "'");
        if (page.empty()) return;
        cursor = next;
        wait_s = 0;  // the rest of a backlog comes at once
    }
}

}  // namespace

// ---- the command -------------------------------------------------------------------------

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

    PassResult total;
    int backoff_s = 1;
    for (int pass = 1; !g_stop; ++pass) {
        PassResult r;
        drain_outbox(store, cli, o, r);
        pull(store, cli, o.once ? (r.sent > 0 ? o.wait_s : 0) : o.wait_s, r);
        total.sent += r.sent;
        total.unsent += r.unsent;
        total.dead += r.dead;
        total.pages += r.pages;
        total.items += r.items;
        total.tombstones += r.tombstones;
        total.pull_ok = r.pull_ok;
        if (o.once) break;
        if (!r.pull_ok && !g_stop) {  // offline or failing: wait, doubling up to 30 s
            say("retrying in " + std::to_string(backoff_s) + " s");
            for (int i = 0; i < backoff_s * 10 && !g_stop; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
            backoff_s = std::min(backoff_s * 2, 30);
        } else {
            backoff_s = 1;
        }
    }
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
