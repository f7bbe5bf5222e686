// The `tandem` tool (the real binary) under faults of its machine: the model file truncated
// while `tandem run` reads it, and the store's disk refusing writes while `tandem sync` runs
// in continuous mode.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "chaos_util.h"
#include "tandem/memory_store.h"

using namespace tandem_test;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kToken = "chaos-token";

bool requests_done(int port, int n) {
    for (int i = 0; i < n; i++) {
        nlohmann::json r = get_json(port, kToken, "/v1/memory/requests/req-" + std::to_string(i));
        if (r.is_null() || r.value("state", "") != "done") return false;
    }
    return true;
}

}  // namespace

TEST_CASE("chaos: the model file truncated while `tandem run` generates: exit 1 naming the file, not SIGBUS") {
    TempDir tmp;
    const std::string model = tmp.file("model.gguf");
    write_file(model, read_file(shared_path("models/tandem-demo-client-q8_0.gguf")));
    Child run({TANDEM_BIN, "run", "-m", model, "-p", "The", "-n", "100000", "--temp", "0"}, tmp.file("run.log"));
    REQUIRE(run.wait_for("tandem: llama", 20000));  // loaded, generating
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    REQUIRE(::truncate(model.c_str(), 65536) == 0);
    const int st = run.wait(20000);
    INFO("output: " << run.output().substr(0, 2000));
    REQUIRE(st != -1);
    CHECK_FALSE(WIFSIGNALED(st));
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 1);
    CHECK(run.output().find("tandem: model file " + model + " changed on disk while in use") != std::string::npos);
}

TEST_CASE("chaos: `tandem sync` (continuous) with its store's writes refused retries with backoff, then gets every note once") {
    TempDir tmp;
    CloudProcess cloud(TANDEM_CLOUD_BIN, tmp.path, {"--token", kToken});
    const std::string db = tmp.file("client.db");
    const char* topics[] = {"sea levels island states", "nuclear treaty inspections", "tariffs exports poverty",
                            "Paris Agreement warming", "adaptation finance decade", "verification arsenals trust"};
    {
        tandem::MemoryStoreParams p;
        p.path = db;
        tandem::MemoryStore store(p);
        for (int i = 0; i < 6; i++) REQUIRE(store.outbox_enqueue("req-" + std::to_string(i), topics[i]));
    }
    // A file size limit of 40 KiB: the store's WAL cannot grow, every write past it fails
    // (SQLite: disk I/O error). The limit is soft, so it can be lifted while sync runs.
    Child sync({TANDEM_BIN, "sync", "--db", db, "--url", "http://127.0.0.1:" + std::to_string(cloud.port()), "--token",
                kToken, "--wait", "1"},
               tmp.file("sync.log"), {{RLIMIT_FSIZE, 40 * 1024}});
    REQUIRE_MESSAGE(sync.wait_for("store error", 20000), sync.output());
    CHECK(sync.wait_for("retrying in 2 s", 10000));  // a second failure, still running
    CHECK(sync.wait(0) == -1);
    const rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
    REQUIRE(::prlimit(sync.pid, RLIMIT_FSIZE, &unlimited, nullptr) == 0);  // the disk has room again

    // Every request reaches the cloud, and every note arrives.
    FeedMirror feed;
    std::map<std::string, std::string> want, have;
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    while (Clock::now() < deadline) {
        if (requests_done(cloud.port(), 6)) {
            nlohmann::json health = get_json(cloud.port(), kToken, "/health");
            const std::string head = health["feed_head"].get<std::string>();
            if (feed.read_to(cloud.port(), kToken, head)) want = feed.live_at(head);
            have = store_items(SqliteReader(db));
            if (!want.empty() && have == want) break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    INFO("sync output:\n" << sync.output());
    CHECK(!want.empty());
    CHECK(have == want);
    ::kill(sync.pid, SIGTERM);
    const int st = sync.wait(10000);
    CHECK((WIFEXITED(st) && WEXITSTATUS(st) == 0));
    SqliteReader r(db);
    CHECK(r.integrity() == "ok");
    CHECK(r.rows("SELECT count(*) FROM outbox WHERE state = 'pending'") == std::vector<std::string>{"0"});
}
