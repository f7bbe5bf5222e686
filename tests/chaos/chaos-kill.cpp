// kill -9 at random points: tandem-cloud and `tandem sync` (continuous) run side by side on
// loopback while this test kills one of them every 20-250 ms, 60 times, and meanwhile queues
// memory requests in the client's store and deletes notes on the cloud. After each kill of
// sync, and at the end: both SQLite files pass PRAGMA integrity_check, the store holds exactly
// the feed's items up to its own cursor (cursor = contents), and in the end it holds every note
// exactly once with the cursor at the feed's head. TANDEM_TEST_SEED replays a run.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <random>
#include <set>
#include <thread>

#include "chaos_util.h"
#include "tandem/memory_store.h"

using namespace tandem_test;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kToken = "chaos-token";
constexpr int kCycles = 60;

const char* kTopics[] = {"sea levels island states",  "nuclear treaty inspections", "tariffs exports poverty",
                         "Paris Agreement warming",   "adaptation finance decade",  "verification arsenals trust",
                         "climate challenge of our time", "developing economies agricultural exports"};

struct Cloud {
    std::string dir;
    int port = 0;
    std::unique_ptr<ServerProcess> proc;
    explicit Cloud(const std::string& d) : dir(d) { write_test_corpus(dir + "/corpus"); }
    void start() {
        ServerProcess::Options opt;
        opt.stderr_path = dir + "/cloud.err";
        proc = std::make_unique<ServerProcess>(
            TANDEM_CLOUD_BIN,
            std::vector<std::string>{"--port", std::to_string(port), "--corpus", dir + "/corpus", "--db", dir + "/cloud.db",
                                     "--token", kToken},
            opt);
        port = proc->port();  // the first start picks a free port, the later ones reuse it
    }
    void kill9() { proc->kill(SIGKILL); }
};

std::unique_ptr<Child> start_sync(const std::string& dir, const std::string& db, int port, int n) {
    return std::make_unique<Child>(
        std::vector<std::string>{TANDEM_BIN, "sync", "--db", db, "--url", "http://127.0.0.1:" + std::to_string(port),
                                 "--token", kToken, "--wait", "1"},
        dir + "/sync-" + std::to_string(n) + ".log");
}

// Integrity, and cursor = contents: the store holds what the feed holds up to its cursor.
void check_store(const std::string& db, FeedMirror& feed, int port, const std::string& when) {
    SqliteReader r(db);
    INFO(when);
    REQUIRE(r.integrity() == "ok");
    const std::string cursor = store_cursor(r);
    REQUIRE_MESSAGE(feed.read_to(port, kToken, cursor), "the store's cursor '" << cursor << "' is not in the feed");
    CHECK(store_items(r) == feed.live_at(cursor));
}

}  // namespace

TEST_CASE("chaos: kill -9 of tandem-cloud and tandem sync at random points, 60 times: integrity, exactly once, cursor = contents") {
    const uint32_t seed = test_seed();
    INFO("seed " << seed << " (TANDEM_TEST_SEED to replay)");
    std::mt19937 rng(seed);
    TempDir tmp;
    Cloud cloud(tmp.path);
    cloud.start();
    const std::string db = tmp.file("client.db");
    tandem::MemoryStoreParams sp;
    sp.path = db;
    int n_requests = 0;
    auto enqueue = [&] {
        tandem::MemoryStore store(sp);
        REQUIRE(store.outbox_enqueue("req-" + std::to_string(n_requests), kTopics[n_requests % 8]));
        n_requests++;
    };
    for (int i = 0; i < 4; i++) enqueue();

    FeedMirror feed;
    int n_sync = 0, cloud_kills = 0, sync_kills = 0, deletes = 0;
    auto sync = start_sync(tmp.path, db, cloud.port, n_sync++);
    for (int cycle = 0; cycle < kCycles; cycle++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 230));
        if (rng() % 2) {
            cloud.kill9();
            cloud_kills++;
            cloud.start();
        } else {
            sync->kill(SIGKILL);
            sync_kills++;
            check_store(db, feed, cloud.port, "after kill -9 of sync in cycle " + std::to_string(cycle));
            sync = start_sync(tmp.path, db, cloud.port, n_sync++);
        }
        if (rng() % 2) enqueue();
        if (rng() % 4 == 0) {  // a tombstone: delete a note the feed has
            nlohmann::json h = get_json(cloud.port, kToken, "/health");
            if (!h.is_null() && feed.read_to(cloud.port, kToken, h["feed_head"].get<std::string>())) {
                auto live = feed.live_at(h["feed_head"].get<std::string>());
                if (!live.empty()) {
                    auto it = std::next(live.begin(), (long)(rng() % live.size()));
                    const std::string raw = http_exchange(cloud.port, "DELETE /v1/memory/items/" + it->first +
                                                                          " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                                                                          "Authorization: Bearer " + std::string(kToken) + "\r\n\r\n");
                    deletes += http_status(raw) == 200;
                }
            }
        }
    }
    MESSAGE(cloud_kills << " kills of tandem-cloud, " << sync_kills << " of tandem sync, " << n_requests << " requests, "
                        << deletes << " deletions");
    CHECK(cloud_kills + sync_kills == kCycles);

    // The end: sync drains everything once the cloud has done every request.
    sync->kill(SIGTERM);
    std::map<std::string, std::string> want;
    std::string head;
    bool drained = false;
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    for (int run = 0; !drained && Clock::now() < deadline; run++) {
        Child once({TANDEM_BIN, "sync", "--db", db, "--url", "http://127.0.0.1:" + std::to_string(cloud.port), "--token", kToken,
                    "--once", "--wait", "1"},
                   tmp.file("final-" + std::to_string(run) + ".log"));
        const int st = once.wait(30000);
        bool all_done = true;
        for (int i = 0; i < n_requests && all_done; i++) {
            nlohmann::json r = get_json(cloud.port, kToken, "/v1/memory/requests/req-" + std::to_string(i));
            all_done = !r.is_null() && r.value("state", "") == "done";
        }
        nlohmann::json h = get_json(cloud.port, kToken, "/health");
        REQUIRE(!h.is_null());
        head = h["feed_head"].get<std::string>();
        SqliteReader r(db);
        drained = WIFEXITED(st) && WEXITSTATUS(st) == 0 && all_done && store_cursor(r) == head;
        if (!drained) std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    REQUIRE(drained);
    check_store(db, feed, cloud.port, "at the end");
    REQUIRE(feed.read_to(cloud.port, kToken, head));
    want = feed.live_at(head);
    SqliteReader client(db), server(tmp.file("cloud.db"));
    CHECK(server.integrity() == "ok");
    CHECK(store_items(client) == want);
    CHECK(client.rows("SELECT count(*) FROM outbox WHERE state != 'sent'") == std::vector<std::string>{"0"});
    // Exactly once on the cloud side too: no request's note was written twice by a worker
    // killed mid-request and run again.
    std::set<std::pair<std::string, std::string>> seen;
    for (const auto& e : feed.entries) {
        if (e.item.value("deleted", false)) continue;
        CHECK_MESSAGE(seen.insert({e.item["request_id"].get<std::string>(), e.item["text"].get<std::string>()}).second,
                      "note written twice: " << e.item.dump());
    }
    std::set<std::string> with_notes;
    for (const auto& e : feed.entries)
        if (!e.item.value("deleted", false)) with_notes.insert(e.item["request_id"].get<std::string>());
    CHECK((int)with_notes.size() == n_requests);
}
