// The conformance suite of tandem-cloud's storage (examples/cloud_server/server_db.h): the same
// cases against the SQLite backend (test suite "sqlite") and the PostgreSQL one ("postgres", on
// a throwaway server of its own, tests/pg_server.h). CTest runs each suite as its own test.
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include <doctest/doctest.h>
#include <sqlite3.h>

#include "pg_server.h"
#include "tandem/cloud/server_db.h"
#include "test_util.h"

using namespace tandem::cloud;

namespace {

// A fresh database of one backend; open() gives another connection to it.
struct Backend {
    std::function<std::unique_ptr<ServerDb>()> open;
};

tandem_test::TempDir& sqlite_dir() {
    static tandem_test::TempDir dir;
    return dir;
}

Backend fresh_sqlite() {
    static int n = 0;
    std::string path = sqlite_dir().file("store-" + std::to_string(++n) + ".db");
    return {[path] { return open_database(path); }};
}

Backend fresh_pg() {
    static int n = 0;
    const std::string name = "store_" + std::to_string(++n);
    tandem_test::shared_pg_server().create_database(name);
    std::string uri = tandem_test::shared_pg_server().uri(name);
    return {[uri] { return open_database(uri); }};
}

std::vector<CorpusDoc> small_corpus() {
    return {{"climate", "Climate", {"Rising sea levels threaten small island states in the Pacific.",
                                    "Adaptation finance for vulnerable island nations must double."}},
            {"nuclear", "Nuclear", {"The Treaty on the Non-Proliferation of Nuclear Weapons entered into force in 1970.",
                                    "Verification of nuclear arsenals requires regular inspections."}}};
}

NewRequest request(const std::string& id, const std::string& context = "island sea levels", const std::string& doc = "") {
    NewRequest r;
    r.request_id = id;
    r.context = context;
    r.document = doc;
    r.max_items = 3;
    return r;
}

std::vector<NewNote> notes(int n, const std::string& tag = "note") {
    std::vector<NewNote> out;
    for (int i = 0; i < n; i++) out.push_back({tag + " " + std::to_string(i), "climate", "Climate", "extractive"});
    return out;
}

// Claims the next request as `worker` and completes it with n notes; returns its id.
std::string produce(ServerDb& db, const std::string& worker, int n) {
    MemoryRequest req;
    REQUIRE(db.claim_request(worker, 60000, "", &req));
    REQUIRE(db.complete_request(req.tenant, req.request_id, worker, notes(n, req.request_id)));
    return req.request_id;
}

// ---- the cases -----------------------------------------------------------------------------

void corpus_and_search(const Backend& b) {
    auto db = b.open();
    CHECK(db->corpus_signature() == "");
    db->replace_corpus(small_corpus(), "sig-1");
    CHECK(db->corpus_signature() == "sig-1");
    CHECK(db->count_docs() == 2);
    CHECK(db->count_passages() == 4);
    std::vector<Passage> p = db->search("what about the small island states and sea levels?", 3);
    REQUIRE(!p.empty());
    CHECK(p[0].doc_id == "climate");
    CHECK(p[0].text.find("island states") != std::string::npos);
    CHECK(p[0].title == "Climate");
    for (const Passage& x : p) CHECK(x.doc_id == "climate");
    CHECK(db->search("nuclear inspections", 1).at(0).doc_id == "nuclear");
    CHECK(db->search("", 5).empty());
    CHECK(db->search("the and of", 5).empty());
    CHECK(db->search("zebra", 5).empty());
    // no text is syntax to either engine
    for (const char* hostile : {"\"island", "island OR NOT", "sea & | ! ( ) :* <-> 'x'", "NEAR(sea island)",
                                "col:island", "\xff\xfe island", "x\\y", "-- ; DROP TABLE passages"})
        CHECK_NOTHROW(db->search(hostile, 5));
    // a second load replaces, never adds
    db->replace_corpus({{"only", "Only", {"Sea levels."}}}, "sig-2");
    CHECK(db->count_docs() == 1);
    CHECK(db->count_passages() == 1);
    CHECK(b.open()->corpus_signature() == "sig-2");
}

void epochs(const Backend& b, const Backend& other) {
    const std::string e = b.open()->epoch();
    CHECK(e.size() >= 8);
    CHECK(b.open()->epoch() == e);       // stable across connections and reopening
    CHECK(other.open()->epoch() != e);   // another database, another epoch
}

void requests_are_idempotent_per_tenant(const Backend& b) {
    auto db = b.open();
    using R = ServerDb::AddResult;
    CHECK(db->add_request("alice", request("r1"), 10) == R::created);
    CHECK(db->add_request("alice", request("r1"), 10) == R::duplicate);
    CHECK(db->add_request("alice", request("r1", "another context"), 10) == R::conflict);
    CHECK(db->add_request("alice", request("r1", "island sea levels", "doc-2"), 10) == R::conflict);
    CHECK(db->add_request("bob", request("r1", "another context"), 10) == R::created);  // two requests
    CHECK(db->count_pending("alice") == 1);
    CHECK(db->count_pending("bob") == 1);
    CHECK(db->count_pending("carol") == 0);
    CHECK(db->add_request("alice", request("r2"), 2) == R::created);
    CHECK(db->add_request("alice", request("r3"), 2) == R::too_many);
    MemoryRequest r;
    REQUIRE(db->get_request("bob", "r1", &r));
    CHECK(r.tenant == "bob");
    CHECK(r.context == "another context");
    CHECK(r.state == "pending");
    CHECK(r.max_items == 3);
    CHECK(r.created_at > 0);
    CHECK_FALSE(db->get_request("carol", "r1", &r));
    CHECK_FALSE(db->get_request("alice", "r9", &r));
}

void claims_and_leases(const Backend& b) {
    auto db = b.open();
    auto db2 = b.open();
    db->add_request("alice", request("r1"), 10);
    MemoryRequest a, x;
    REQUIRE(db->claim_request("worker-a", 150, "", &a));
    CHECK(a.request_id == "r1");
    CHECK(a.context == "island sea levels");
    CHECK_FALSE(db2->claim_request("worker-b", 150, "", &x));  // leased to worker-a
    CHECK(db->renew_lease("alice", "r1", "worker-a", 150));
    CHECK_FALSE(db2->renew_lease("alice", "r1", "worker-b", 150));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // worker-a stalls: its lease runs out
    MemoryRequest bq;
    REQUIRE(db2->claim_request("worker-b", 60000, "", &bq));
    CHECK(bq.request_id == "r1");
    CHECK_FALSE(db->renew_lease("alice", "r1", "worker-a", 150));
    // worker-a wakes up and tries to finish: refused, nothing appended
    CHECK_FALSE(db->complete_request("alice", "r1", "worker-a", notes(2)));
    CHECK(db->changes("alice", 0, 10).empty());
    REQUIRE(db2->complete_request("alice", "r1", "worker-b", notes(2)));
    CHECK(db->changes("alice", 0, 10).size() == 2);
    CHECK_FALSE(db2->complete_request("alice", "r1", "worker-b", notes(2)));  // exactly once
    CHECK(db->changes("alice", 0, 10).size() == 2);
    MemoryRequest r;
    REQUIRE(db->get_request("alice", "r1", &r));
    CHECK(r.state == "done");
    CHECK(r.context == "");  // forgotten once handled
    CHECK_FALSE(db->claim_request("worker-c", 100, "", &x));
    CHECK(db->count_pending("alice") == 0);
}

void give_up_after_max_claims(const Backend& b) {
    auto db = b.open();
    db->add_request("alice", request("r1"), 10);
    MemoryRequest r;
    for (int i = 0; i < kMaxClaims; i++) {
        REQUIRE(db->claim_request("w" + std::to_string(i), 1, "", &r));
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    CHECK_FALSE(db->claim_request("w-last", 1, "", &r));
    REQUIRE(db->get_request("alice", "r1", &r));
    CHECK(r.state == "failed");
    CHECK(r.error.find("gave up") != std::string::npos);
}

void fail_and_round_robin(const Backend& b) {
    auto db = b.open();
    for (const char* t : {"carol", "alice", "bob"}) {
        db->add_request(t, request("r1"), 10);
        db->add_request(t, request("r2"), 10);
    }
    std::vector<std::string> order;
    std::string last;
    MemoryRequest r;
    while (db->claim_request("w", 60000, last, &r)) {
        order.push_back(r.tenant + "/" + r.request_id);
        last = r.tenant;
        if (r.request_id == "r2" && r.tenant == "bob") db->fail_request(r.tenant, r.request_id, "w", "no model");
        else CHECK(db->complete_request(r.tenant, r.request_id, "w", {}));
    }
    CHECK(order == std::vector<std::string>{"alice/r1", "bob/r1", "carol/r1", "alice/r2", "bob/r2", "carol/r2"});
    REQUIRE(db->get_request("bob", "r2", &r));
    CHECK(r.state == "failed");
    CHECK(r.error == "no model");
    db->fail_request("alice", "r1", "w", "late");  // no longer pending: unchanged
    REQUIRE(db->get_request("alice", "r1", &r));
    CHECK(r.state == "done");
}

void feed_per_tenant(const Backend& b) {
    auto db = b.open();
    CHECK(db->head("alice").seq == 0);
    CHECK(db->head("alice").tag == "");
    db->add_request("alice", request("r1", "island", "doc-1"), 10);
    db->add_request("bob", request("r1"), 10);
    produce(*db, "w", 3);
    produce(*db, "w", 2);
    std::vector<FeedEntry> a = db->changes("alice", 0, 100), bb = db->changes("bob", 0, 100);
    REQUIRE(a.size() == 3);
    REQUIRE(bb.size() == 2);
    std::set<std::string> ids;
    for (size_t i = 0; i < a.size(); i++) {
        CHECK(a[i].seq == (int64_t)i + 1);  // each tenant's feed counts from 1
        CHECK(!a[i].deleted);
        CHECK(a[i].request_id == "r1");
        CHECK(a[i].document == "doc-1");
        CHECK(a[i].text == "r1 " + std::to_string(i));
        CHECK(a[i].doc_id == "climate");
        CHECK(a[i].title == "Climate");
        CHECK(a[i].method == "extractive");
        CHECK(a[i].created_at > 0);
        CHECK(a[i].tag.size() >= 4);
        CHECK(a[i].id.size() >= 16);  // random, not a counter
        ids.insert(a[i].id);
        CHECK(db->entry_tag("alice", a[i].seq) == a[i].tag);
    }
    for (const FeedEntry& e : bb) ids.insert(e.id);
    CHECK(ids.size() == 5);
    CHECK(bb[0].seq == 1);
    CHECK(db->head("alice").seq == 3);
    CHECK(db->head("alice").tag == a[2].tag);
    CHECK(db->changes("alice", 1, 1).at(0).seq == 2);
    CHECK(db->changes("alice", 3, 10).empty());
    CHECK_FALSE(db->entry_tag("alice", 4).has_value());
    CHECK_FALSE(db->entry_tag("carol", 1).has_value());
}

void forgetting(const Backend& b) {
    auto db = b.open();
    db->add_request("alice", request("r1", "x", "doc-1"), 10);
    db->add_request("alice", request("r2", "y", "doc-2"), 10);
    db->add_request("bob", request("r1", "x", "doc-1"), 10);
    produce(*db, "w", 2);  // alice r1: doc-1
    produce(*db, "w", 2);  // alice r2: doc-2
    produce(*db, "w", 1);  // bob r1
    std::vector<FeedEntry> a = db->changes("alice", 0, 100);
    const std::string bob_id = db->changes("bob", 0, 10).at(0).id;
    CHECK(db->forget_item("alice", bob_id) == 0);  // another tenant's id: nothing, no hint
    CHECK(db->forget_item("alice", "m-unknown") == 0);
    CHECK(db->forget_item("alice", a[0].id) == 1);
    CHECK(db->forget_item("alice", a[0].id) == 0);  // already retracted
    std::vector<FeedEntry> after = db->changes("alice", 0, 100);
    REQUIRE(after.size() == 4);  // the retracted item is left out, its tombstone follows
    CHECK(after.back().deleted);
    CHECK(after.back().id == a[0].id);
    CHECK(after.back().seq == 5);
    CHECK(after.back().text == "");
    CHECK(db->forget_document("alice", "doc-2") == 2);
    CHECK(db->changes("alice", 0, 100).size() == 4);  // 1 live + 3 tombstones
    db->add_request("alice", request("r3", "z", "doc-3"), 10);
    CHECK(db->forget_document("alice", "doc-3") == 0);  // nothing live, but its pending request is cancelled
    MemoryRequest r;
    REQUIRE(db->get_request("alice", "r3", &r));
    CHECK(r.state == "forgotten");
    CHECK(r.context == "");
    db->add_request("alice", request("r4"), 10);
    CHECK(db->forget_all("alice") == 1);
    REQUIRE(db->get_request("alice", "r4", &r));
    CHECK(r.state == "forgotten");
    MemoryRequest x;
    CHECK_FALSE(db->claim_request("w", 1000, "", &x));
    for (const FeedEntry& e : db->changes("alice", 0, 100)) CHECK(e.deleted);
    CHECK(db->changes("bob", 0, 10).size() == 1);  // untouched
}

void a_forgotten_request_is_not_completed(const Backend& b) {
    auto db = b.open();
    db->add_request("alice", request("r1", "x", "doc-1"), 10);
    MemoryRequest r;
    REQUIRE(db->claim_request("w", 60000, "", &r));
    db->forget_document("alice", "doc-1");
    CHECK_FALSE(db->complete_request("alice", "r1", "w", notes(2)));
    CHECK(db->changes("alice", 0, 10).empty());
}

// Writers on their own connections (threads here, replicas in production): every note lands
// once, each tenant's feed stays 1..n without gaps, and each request is produced by one worker.
void concurrent_workers(const Backend& b) {
    const int kRequests = 24, kWorkers = 4;
    {
        auto db = b.open();
        for (int i = 0; i < kRequests; i++) db->add_request(i % 2 ? "alice" : "bob", request("r" + std::to_string(i)), 1000);
    }
    std::atomic<int> produced{0};
    std::vector<std::thread> workers;
    for (int w = 0; w < kWorkers; w++) {
        workers.emplace_back([&, w] {
            auto db = b.open();
            const std::string name = "worker-" + std::to_string(w);
            MemoryRequest r;
            std::string last;
            while (db->claim_request(name, 60000, last, &r)) {
                last = r.tenant;
                if (db->complete_request(r.tenant, r.request_id, name, notes(2, r.request_id))) produced++;
            }
        });
    }
    for (auto& t : workers) t.join();
    CHECK(produced == kRequests);
    auto db = b.open();
    for (const char* tenant : {"alice", "bob"}) {
        std::vector<FeedEntry> f = db->changes(tenant, 0, 1000);
        CHECK(f.size() == (size_t)kRequests);
        std::map<std::string, int> per_request;
        for (size_t i = 0; i < f.size(); i++) {
            CHECK(f[i].seq == (int64_t)i + 1);
            per_request[f[i].request_id]++;
        }
        for (auto& [id, n] : per_request) CHECK_MESSAGE(n == 2, id);
    }
}

void run_all(Backend (*fresh)()) {
    SUBCASE("corpus and search") { corpus_and_search(fresh()); }
    SUBCASE("epochs") { epochs(fresh(), fresh()); }
    SUBCASE("requests are idempotent per tenant") { requests_are_idempotent_per_tenant(fresh()); }
    SUBCASE("claims and leases") { claims_and_leases(fresh()); }
    SUBCASE("a request is given up after kMaxClaims claims") { give_up_after_max_claims(fresh()); }
    SUBCASE("fail_request and round robin over tenants") { fail_and_round_robin(fresh()); }
    SUBCASE("one feed per tenant") { feed_per_tenant(fresh()); }
    SUBCASE("forgetting") { forgetting(fresh()); }
    SUBCASE("a forgotten request is not completed") { a_forgotten_request_is_not_completed(fresh()); }
    SUBCASE("concurrent workers") { concurrent_workers(fresh()); }
}

}  // namespace

TEST_SUITE("sqlite") {
    TEST_CASE("storage conformance: SQLite") { run_all(fresh_sqlite); }

    TEST_CASE("SQLite: a file of schema version 1 (no leases) gets them, its pending requests kept") {
        const std::string path = sqlite_dir().file("v1.db");
        open_database(path)->add_request("alice", request("r1"), 10);
        {
            // Back to version 1: the requests table without the lease columns.
            sqlite3* db = nullptr;
            REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
            REQUIRE(sqlite3_exec(db,
                                 "ALTER TABLE requests DROP COLUMN lease_owner; ALTER TABLE requests DROP COLUMN lease_until; "
                                 "ALTER TABLE requests DROP COLUMN claims; PRAGMA user_version = 1;",
                                 nullptr, nullptr, nullptr) == SQLITE_OK);
            sqlite3_close(db);
        }
        auto db = open_database(path);
        MemoryRequest r;
        REQUIRE(db->claim_request("w", 60000, "", &r));
        CHECK(r.request_id == "r1");
        CHECK(db->complete_request("alice", "r1", "w", notes(1)));
        CHECK(db->changes("alice", 0, 10).size() == 1);
    }
}

TEST_SUITE("postgres") {
    TEST_CASE("storage conformance: PostgreSQL") {
        if (tandem_test::skip_without_postgres()) return;
        run_all(fresh_pg);
    }
}
