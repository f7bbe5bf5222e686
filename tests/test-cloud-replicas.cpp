// Stateless replicas: several tandem-cloud processes on one PostgreSQL (a throwaway server
// started here, tests/pg_server.h) serve the same tenants. A memory request posted to one
// replica is produced exactly once, its notes reach the other replica's feed and wake its long
// polls at once (LISTEN/NOTIFY), and a replica killed with SIGKILL in the middle of a job is
// replaced by another once its lease runs out, with no note lost or written twice.
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "fault_server.h"
#include "http_call.h"
#include "pg_server.h"
#include "server_process.h"
#include "test_util.h"

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using tandem_test::http_call;
using tandem_test::ServerProcess;

namespace {

// A corpus and a fresh database; replica() starts a tandem-cloud on them.
struct Cluster {
    tandem_test::TempDir dir;
    std::string db;
    Cluster() {
        static int n = 0;
        const std::string name = "replicas_" + std::to_string(++n);
        tandem_test::shared_pg_server().create_database(name);
        db = tandem_test::shared_pg_server().uri(name);
        REQUIRE(mkdir(dir.file("corpus").c_str(), 0700) == 0);
        tandem_test::write_file(dir.file("corpus/climate.txt"),
                                "Climate change is the defining challenge of our time.\n"
                                "Rising sea levels threaten small island states in the Pacific. The Paris Agreement "
                                "commits countries to limit warming well below two degrees.\n"
                                "Adaptation finance for vulnerable island nations must double by the end of the decade.\n");
        tandem_test::write_file(dir.file("corpus/islands.txt"),
                                "Small island developing states face rising seas, stronger storms and salt in their "
                                "fresh water; some islands may become uninhabitable within decades.\n");
        tandem_test::write_file(dir.file("corpus/nuclear.txt"),
                                "The Treaty on the Non-Proliferation of Nuclear Weapons entered into force in 1970.\n"
                                "Verification of nuclear arsenals requires trust and regular inspections.\n");
    }
    std::unique_ptr<ServerProcess> replica(std::vector<std::string> extra = {}) {
        std::vector<std::string> a = {"--port", "0", "--corpus", dir.file("corpus"), "--db", db};
        a.insert(a.end(), extra.begin(), extra.end());
        return std::make_unique<ServerProcess>(TANDEM_CLOUD_BIN, a);
    }
};

json post(const ServerProcess& s, const std::string& id, const std::string& context, int max_items = 2) {
    auto r = http_call("POST", s.url() + "/v1/memory/requests",
                       json{{"request_id", id}, {"context", context}, {"max_items", max_items}}.dump());
    REQUIRE_MESSAGE(r.status == 202, r.body);
    return json::parse(r.body);
}

std::string state_of(const ServerProcess& s, const std::string& id) {
    auto r = http_call("GET", s.url() + "/v1/memory/requests/" + id);
    REQUIRE(r.status == 200);
    return json::parse(r.body).value("state", "");
}

void wait_done(const ServerProcess& s, const std::string& id, int seconds = 20) {
    const auto deadline = Clock::now() + std::chrono::seconds(seconds);
    while (Clock::now() < deadline) {
        if (state_of(s, id) == "done") return;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL("request " << id << " not done in " << seconds << " s (state " << state_of(s, id) << ")");
}

// The whole feed as one replica serves it.
std::vector<json> feed(const ServerProcess& s) {
    std::vector<json> out;
    std::string since;
    for (;;) {
        auto r = http_call("GET", s.url() + "/v1/memory/changes?limit=100&since=" + since);
        REQUIRE(r.status == 200);
        const json page = json::parse(r.body);
        for (const json& e : page["items"]) out.push_back(e);
        if (page["items"].empty()) return out;
        since = page["next_cursor"];
    }
}

std::string head_cursor(const ServerProcess& s) {
    auto r = http_call("GET", s.url() + "/v1/memory/changes?limit=1000");
    const json page = json::parse(r.body);
    std::string since = page["next_cursor"];
    return since;
}

}  // namespace

TEST_CASE("replicas: a request posted to A is produced once; its notes are in B's feed") {
    if (tandem_test::skip_without_postgres()) return;
    Cluster c;
    auto a = c.replica(), b = c.replica();
    CHECK(post(*a, "r1", "small island states and rising sea levels")["status"] == "accepted");
    CHECK(post(*b, "r1", "small island states and rising sea levels")["status"] == "duplicate");  // one request
    wait_done(*b, "r1");
    std::vector<json> fa = feed(*a), fb = feed(*b);
    REQUIRE(!fb.empty());
    CHECK(fa == fb);  // one feed, whichever replica serves it
    for (const json& e : fb) CHECK(e["request_id"] == "r1");
    CHECK(fb[0]["text"].get<std::string>().find("island") != std::string::npos);
}

TEST_CASE("replicas: many requests over two replicas, each produced exactly once") {
    if (tandem_test::skip_without_postgres()) return;
    Cluster c;
    auto a = c.replica(), b = c.replica();
    const char* contexts[] = {"island states sea levels", "nuclear weapons inspections", "Paris Agreement warming",
                              "adaptation finance"};
    const int n = 16;
    // Each request is posted to both replicas at once (a client retrying through a load
    // balancer): exactly one of the two posts creates it.
    for (int i = 0; i < n; i++) {
        const std::string id = "r" + std::to_string(i);
        json ra, rb;
        std::thread ta([&] { ra = post(*a, id, contexts[i % 4], 2); });
        rb = post(*b, id, contexts[i % 4], 2);
        ta.join();
        CHECK((ra["status"] == "accepted") != (rb["status"] == "accepted"));
    }
    for (int i = 0; i < n; i++) wait_done(*a, "r" + std::to_string(i));
    std::map<std::string, int> per_request;
    std::set<std::pair<std::string, std::string>> seen;
    for (const json& e : feed(*a)) {
        const std::string request_id = e["request_id"], text = e["text"];
        per_request[request_id]++;
        const bool first = seen.insert({request_id, text}).second;
        CHECK_MESSAGE(first, "note written twice: " << e.dump());
    }
    CHECK(per_request.size() == (size_t)n);
    for (auto& [id, count] : per_request) CHECK_MESSAGE((count >= 1 && count <= 2), id);
}

TEST_CASE("replicas: a long poll on B wakes as soon as A's notes land") {
    if (tandem_test::skip_without_postgres()) return;
    Cluster c;
    auto a = c.replica(), b = c.replica();
    const std::string head = head_cursor(*b);
    std::atomic<double> answered_after{-1};
    json page;
    auto t0 = Clock::now();
    std::thread poll([&] {
        auto r = http_call("GET", b->url() + "/v1/memory/changes?limit=100&wait=20&since=" + head);
        page = json::parse(r.body);
        answered_after = std::chrono::duration<double>(Clock::now() - t0).count();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the poll is waiting on B
    t0 = Clock::now();
    post(*a, "r1", "nuclear weapons inspections");
    poll.join();
    INFO("answered after " << answered_after.load() << " s");
    CHECK(answered_after.load() < 3.0);  // a poll that waited for its deadline would take 20 s
    REQUIRE(page["items"].size() >= 1);
    CHECK(page["items"][0]["request_id"] == "r1");
    // and a deletion through B wakes a poll on A
    const std::string h2 = page["next_cursor"];
    std::thread poll2([&] {
        auto r = http_call("GET", a->url() + "/v1/memory/changes?limit=100&wait=20&since=" + h2);
        page = json::parse(r.body);
        answered_after = std::chrono::duration<double>(Clock::now() - t0).count();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    t0 = Clock::now();
    const std::string id = page["items"][0]["id"];
    CHECK(http_call("DELETE", b->url() + "/v1/memory/items/" + id).status == 200);
    poll2.join();
    CHECK(answered_after.load() < 3.0);
    REQUIRE(page["items"].size() == 1);
    CHECK(page["items"][0]["deleted"] == true);
}

TEST_CASE("replicas: kill -9 mid-job; the lease runs out and another replica finishes it once") {
    if (tandem_test::skip_without_postgres()) return;
    Cluster c;
    // The upstream LLM: what replica A asks is never answered in time (A is killed while it
    // waits); what comes after the kill is answered at once, numbered.
    std::atomic<int> calls{0};
    std::atomic<bool> a_killed{false};
    tandem_test::FaultServer llm([&](const tandem_test::FaultRequest&) {
        const int n = ++calls;
        tandem_test::FaultReply r(200, "application/json", {},
                                  json{{"choices", {{{"index", 0}, {"message", {{"role", "assistant"}, {"content", " answer number " + std::to_string(n) + "."}}}, {"finish_reason", "stop"}}}}}.dump());
        if (!a_killed) r.delay_ms = 60000;
        return r;
    });
    const std::vector<std::string> flags = {"--llm-url", llm.url(), "--lease-seconds", "1"};
    auto a = c.replica(flags);
    post(*a, "r1", "small island states and rising sea levels", 2);
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (calls == 0 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    REQUIRE(calls >= 1);  // A claimed the job and is producing its notes (its passages at once)
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // A's heartbeat keeps the lease meanwhile
    const int asked_by_a = calls;
    auto b = c.replica(flags);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    CHECK(calls == asked_by_a);  // B does not take a job whose worker is alive
    a_killed = true;
    a->kill(SIGKILL);
    wait_done(*b, "r1");
    std::vector<json> f = feed(*b);
    REQUIRE(f.size() == 2);  // max_items notes, each once
    std::set<std::string> texts;
    for (const json& e : f) {
        CHECK(e["request_id"] == "r1");
        texts.insert(e["text"]);
    }
    CHECK(texts.size() == 2);
    CHECK(calls > asked_by_a);  // B asked the upstream itself
}
