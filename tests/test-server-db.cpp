// The reference cloud's storage (examples/cloud_server/server_db.h): the contract every ServerDb
// backend keeps (the corpus and its search, tenants apart, idempotent requests, the pending cap,
// round-robin work, job claims and leases, per-tenant feed positions, forgetting, concurrent
// workers), run on SQLite files (test suite "sqlite", with the SQLite migrations) and on a
// throwaway PostgreSQL server (suite "postgres", tests/pg_server.h). CTest runs each suite as a
// test of its own; the PostgreSQL one says "skipped: PostgreSQL not installed" without it.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include "pg_server.h"
#include "tandem/cloud/server_db.h"
#include "test_util.h"

using namespace tandem::cloud;
using tandem_test::TempDir;

namespace {

using DbFactory = std::function<std::unique_ptr<ServerDb>()>;

NewRequest req(const std::string& id, const std::string& context, const std::string& document = "", int max_items = 3) {
    NewRequest r;
    r.request_id = id;
    r.context = context;
    r.document = document;
    r.max_items = max_items;
    return r;
}

std::vector<NewNote> notes(std::initializer_list<const char*> texts) {
    std::vector<NewNote> out;
    for (const char* t : texts) out.push_back({t, "doc", "Doc", "extractive"});
    return out;
}

// Claims the next pending request (whichever the round robin gives must be `tenant`'s) and
// completes it with `made`; returns its id.
std::string complete_next(ServerDb& db, const std::string& tenant, const std::vector<NewNote>& made) {
    MemoryRequest r;
    REQUIRE(db.claim_request("w", 60000, "", &r));
    REQUIRE(r.tenant == tenant);
    REQUIRE(db.complete_request(r.tenant, r.request_id, "w", made));
    return r.request_id;
}

std::vector<std::string> texts_of(const std::vector<FeedEntry>& es) {
    std::vector<std::string> out;
    for (const FeedEntry& e : es) out.push_back(e.deleted ? "~" + e.id : e.text);
    return out;
}

// ---- the contract ----------------------------------------------------------------------

void tenants_are_apart(const DbFactory& open) {
    auto db = open();
    CHECK(db->add_request("alice", req("r1", "sea levels"), 100) == ServerDb::AddResult::created);
    CHECK(db->add_request("bob", req("r1", "nuclear weapons"), 100) == ServerDb::AddResult::created);  // two requests
    CHECK(db->add_request("alice", req("r1", "sea levels"), 100) == ServerDb::AddResult::duplicate);
    CHECK(db->add_request("alice", req("r1", "sea levels", "doc-x"), 100) == ServerDb::AddResult::conflict);
    CHECK(db->count_pending("alice") == 1);
    CHECK(db->count_pending("bob") == 1);
    MemoryRequest r;
    REQUIRE(db->get_request("bob", "r1", &r));
    CHECK(r.context == "nuclear weapons");
    CHECK(!db->get_request("carol", "r1", &r));

    complete_next(*db, "alice", notes({"Sea levels rise.", "Islands sink."}));
    complete_next(*db, "bob", notes({"Treaties limit arsenals."}));
    REQUIRE(db->get_request("alice", "r1", &r));
    CHECK(r.state == "done");
    CHECK(r.context.empty());  // a handled request's text is not kept
    CHECK(db->add_request("alice", req("r1", "sea levels"), 100) == ServerDb::AddResult::duplicate);  // still

    const auto a = db->changes("alice", 0, 100), b = db->changes("bob", 0, 100);
    CHECK(texts_of(a) == std::vector<std::string>{"Sea levels rise.", "Islands sink."});
    CHECK(texts_of(b) == std::vector<std::string>{"Treaties limit arsenals."});
    // Each tenant's feed counts from 1, whatever the others do.
    CHECK(a[0].seq == 1);
    CHECK(a[1].seq == 2);
    CHECK(b[0].seq == 1);
    CHECK(db->head("alice").seq == 2);
    CHECK(db->head("carol").seq == 0);
    CHECK(db->changes("carol", 0, 100).empty());
    // Ids are random and unique; another tenant's id names nothing.
    std::set<std::string> ids = {a[0].id, a[1].id, b[0].id};
    CHECK(ids.size() == 3);
    CHECK(a[0].id.size() >= 34);
    CHECK(db->entry_tag("alice", 1) == a[0].tag);
    CHECK(db->entry_tag("bob", 2) == std::nullopt);
    CHECK(db->forget_item("bob", a[0].id) == 0);
    CHECK(texts_of(db->changes("alice", 0, 100)).size() == 2);
    CHECK(db->forget_all("bob") == 1);
    CHECK(texts_of(db->changes("alice", 0, 100)) == std::vector<std::string>{"Sea levels rise.", "Islands sink."});
}

void documents_and_forgetting(const DbFactory& open) {
    auto db = open();
    REQUIRE(db->add_request("t", req("a1", "one", "doc-a"), 100) == ServerDb::AddResult::created);
    complete_next(*db, "t", notes({"A one.", "A two."}));
    REQUIRE(db->add_request("t", req("b1", "two", "doc-b"), 100) == ServerDb::AddResult::created);
    complete_next(*db, "t", notes({"B one."}));
    const auto all = db->changes("t", 0, 100);
    REQUIRE(all.size() == 3);
    CHECK(all[0].document == "doc-a");
    CHECK(all[2].document == "doc-b");

    CHECK(db->forget_document("t", "doc-a") == 2);
    CHECK(db->forget_document("t", "doc-a") == 0);
    const auto after = db->changes("t", 3, 100);  // what a client at the head gets: two tombstones
    CHECK(texts_of(after) == std::vector<std::string>{"~" + all[0].id, "~" + all[1].id});
    // From the start: the retracted items are left out, their text is gone.
    CHECK(texts_of(db->changes("t", 0, 100)) == std::vector<std::string>{"B one.", "~" + all[0].id, "~" + all[1].id});
    CHECK(db->forget_item("t", all[0].id) == 0);  // already retracted
    CHECK(db->forget_item("t", all[2].id) == 1);
    CHECK(db->forget_all("t") == 0);

    // A pending request of a forgotten document is cancelled: its notes never appear.
    REQUIRE(db->add_request("t", req("a2", "three", "doc-a"), 100) == ServerDb::AddResult::created);
    CHECK(db->forget_document("t", "doc-a") == 0);
    MemoryRequest r;
    REQUIRE(db->get_request("t", "a2", &r));
    CHECK(r.state == "forgotten");
    CHECK(r.context.empty());
    CHECK(!db->claim_request("w", 60000, "", &r));
    CHECK(!db->complete_request("t", "a2", "w", notes({"Too late."})));
    REQUIRE(db->add_request("t", req("c1", "four"), 100) == ServerDb::AddResult::created);
    CHECK(db->forget_all("t") == 0);
    CHECK(!db->complete_request("t", "c1", "w", notes({"Too late."})));
    CHECK(db->count_pending("t") == 0);
}

void pending_cap_and_round_robin(const DbFactory& open) {
    auto db = open();
    for (int i = 0; i < 3; i++)
        CHECK(db->add_request("busy", req("r" + std::to_string(i), "x"), 3) == ServerDb::AddResult::created);
    CHECK(db->add_request("busy", req("r9", "x"), 3) == ServerDb::AddResult::too_many);
    CHECK(db->add_request("busy", req("r0", "x"), 3) == ServerDb::AddResult::duplicate);  // a retry is still fine
    CHECK(db->add_request("quiet", req("q0", "y"), 3) == ServerDb::AddResult::created);   // others are not capped
    // The worker alternates tenants: one busy tenant does not starve the others.
    MemoryRequest r;
    std::vector<std::string> order;
    std::string last;
    while (db->claim_request("w", 60000, last, &r)) {
        order.push_back(r.tenant + "/" + r.request_id);
        last = r.tenant;
        REQUIRE(db->complete_request(r.tenant, r.request_id, "w", {}));
    }
    CHECK(order == std::vector<std::string>{"busy/r0", "quiet/q0", "busy/r1", "busy/r2"});
}

std::vector<CorpusDoc> small_corpus() {
    return {{"climate", "Climate", {"Rising sea levels threaten small island states in the Pacific.",
                                    "Adaptation finance for vulnerable island nations must double."}},
            {"nuclear", "Nuclear", {"The Treaty on the Non-Proliferation of Nuclear Weapons entered into force in 1970.",
                                    "Verification of nuclear arsenals requires regular inspections."}}};
}

std::vector<NewNote> numbered_notes(int n, const std::string& tag = "note") {
    std::vector<NewNote> out;
    for (int i = 0; i < n; i++) out.push_back({tag + " " + std::to_string(i), "climate", "Climate", "extractive"});
    return out;
}

void corpus_and_search(const DbFactory& open) {
    auto db = open();
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
    CHECK(open()->corpus_signature() == "sig-2");
}

void epochs(const DbFactory& open, const DbFactory& other) {
    const std::string e = open()->epoch();
    CHECK(e.size() == 16);
    CHECK(open()->epoch() == e);    // stable across connections and reopening
    CHECK(other()->epoch() != e);   // another database, another epoch
}

void claims_and_leases(const DbFactory& open) {
    auto db = open();
    auto db2 = open();
    db->add_request("alice", req("r1", "island sea levels"), 10);
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
    CHECK_FALSE(db->complete_request("alice", "r1", "worker-a", numbered_notes(2)));
    CHECK(db->changes("alice", 0, 10).empty());
    REQUIRE(db2->complete_request("alice", "r1", "worker-b", numbered_notes(2)));
    CHECK(db->changes("alice", 0, 10).size() == 2);
    CHECK_FALSE(db2->complete_request("alice", "r1", "worker-b", numbered_notes(2)));  // exactly once
    CHECK(db->changes("alice", 0, 10).size() == 2);
    MemoryRequest r;
    REQUIRE(db->get_request("alice", "r1", &r));
    CHECK(r.state == "done");
    CHECK(r.context == "");  // forgotten once handled
    CHECK_FALSE(db->claim_request("worker-c", 100, "", &x));
    CHECK(db->count_pending("alice") == 0);
    // A failure is recorded only by the worker that holds the request.
    db->add_request("alice", req("r2", "nuclear"), 10);
    REQUIRE(db->claim_request("worker-c", 60000, "", &x));
    db2->fail_request("alice", "r2", "worker-b", "not mine");
    REQUIRE(db->get_request("alice", "r2", &r));
    CHECK(r.state == "pending");
    db->fail_request("alice", "r2", "worker-c", "no model");
    REQUIRE(db->get_request("alice", "r2", &r));
    CHECK(r.state == "failed");
    CHECK(r.error == "no model");
    CHECK(r.context.empty());
}

void give_up_after_max_claims(const DbFactory& open) {
    auto db = open();
    db->add_request("alice", req("r1", "island sea levels"), 10);
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

// Writers on their own connections (threads here, replicas in production): every note lands
// once, each tenant's feed stays 1..n without gaps, and each request is produced by one worker.
void concurrent_workers(const DbFactory& open) {
    const int kRequests = 24, kWorkers = 4;
    {
        auto db = open();
        for (int i = 0; i < kRequests; i++) db->add_request(i % 2 ? "alice" : "bob", req("r" + std::to_string(i), "island sea levels"), 1000);
    }
    std::atomic<int> produced{0};
    std::vector<std::thread> workers;
    for (int w = 0; w < kWorkers; w++) {
        workers.emplace_back([&, w] {
            auto db = open();
            const std::string name = "worker-" + std::to_string(w);
            MemoryRequest r;
            std::string last;
            while (db->claim_request(name, 60000, last, &r)) {
                last = r.tenant;
                if (db->complete_request(r.tenant, r.request_id, name, numbered_notes(2, r.request_id))) produced++;
            }
        });
    }
    for (auto& t : workers) t.join();
    CHECK(produced == kRequests);
    auto db = open();
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

// `fresh()` gives a new empty database's factory (one factory opens one database, as many
// connections as it is called).
void run_contract(const std::function<DbFactory()>& fresh) {
    SUBCASE("the corpus and its search") { corpus_and_search(fresh()); }
    SUBCASE("epochs") { epochs(fresh(), fresh()); }
    SUBCASE("tenants are apart") { tenants_are_apart(fresh()); }
    SUBCASE("documents and forgetting") { documents_and_forgetting(fresh()); }
    SUBCASE("the pending cap and round-robin work") { pending_cap_and_round_robin(fresh()); }
    SUBCASE("claims and leases") { claims_and_leases(fresh()); }
    SUBCASE("a request is given up after kMaxClaims claims") { give_up_after_max_claims(fresh()); }
    SUBCASE("concurrent workers") { concurrent_workers(fresh()); }
}

std::string sql1(const std::string& path, const std::string& sql) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    INFO(sql);
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
    std::string out;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0)) out = (const char*)sqlite3_column_text(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

void exec(const std::string& path, const std::string& sql) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    char* err = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    INFO((err ? err : ""));
    sqlite3_free(err);
    sqlite3_close(db);
    REQUIRE(rc == SQLITE_OK);
}

}  // namespace

TEST_SUITE_BEGIN("sqlite");

TEST_CASE("server_db (SQLite): the ServerDb contract") {
    TempDir tmp;
    int n = 0;
    run_contract([&]() -> DbFactory {
        const std::string path = tmp.file("c" + std::to_string(n++) + ".db");
        return [path] { return open_database(path); };
    });
}

TEST_CASE("server_db (SQLite): two connections share the feed; the epoch is kept across opens") {
    TempDir tmp;
    auto a = open_server_db(tmp.file("c.db"));
    auto b = open_server_db(tmp.file("c.db"));
    CHECK(a->epoch().size() == 16);
    CHECK(a->epoch() == b->epoch());
    REQUIRE(a->add_request("t", req("r", "x"), 100) == ServerDb::AddResult::created);
    complete_next(*b, "t", notes({"N."}));
    CHECK(a->changes("t", 0, 10).size() == 1);
    const std::string epoch = a->epoch();
    a.reset();
    b.reset();
    CHECK(open_server_db(tmp.file("c.db"))->epoch() == epoch);
    CHECK(open_server_db(tmp.file("other.db"))->epoch() != epoch);
}

TEST_CASE("server_db (SQLite): a database from before tenants is migrated to tenant 'default'") {
    TempDir tmp;
    const std::string path = tmp.file("old.db");
    // The schema and rows of the tandem-cloud before tenants (user_version 0).
    exec(path, R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('corpus_signature', 'sig-1');
CREATE TABLE docs(doc_id TEXT PRIMARY KEY, title TEXT NOT NULL);
CREATE TABLE passages(pid INTEGER PRIMARY KEY, doc_id TEXT NOT NULL, ord INTEGER NOT NULL, text TEXT NOT NULL);
CREATE VIRTUAL TABLE passages_fts USING fts5(text, content='passages', content_rowid='pid', tokenize='porter unicode61');
INSERT INTO docs VALUES ('d1', 'Climate');
INSERT INTO passages VALUES (1, 'd1', 0, 'Rising sea levels threaten island states.');
INSERT INTO passages_fts(passages_fts) VALUES ('rebuild');
CREATE TABLE requests(request_id TEXT PRIMARY KEY, context TEXT NOT NULL, max_items INTEGER NOT NULL,
  state TEXT NOT NULL, error TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL);
CREATE INDEX idx_requests_state ON requests(state, created_at);
CREATE TABLE feed(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
  request_id TEXT NOT NULL DEFAULT '', text TEXT NOT NULL DEFAULT '', doc_id TEXT NOT NULL DEFAULT '',
  title TEXT NOT NULL DEFAULT '', method TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL);
CREATE INDEX idx_feed_id ON feed(id);
INSERT INTO requests VALUES ('r1', 'sea levels', 3, 'done', '', 5), ('r2', 'islands', 3, 'pending', '', 6);
INSERT INTO feed(id, request_id, text, doc_id, title, method, created_at) VALUES
  ('m-1', 'r1', 'Sea levels rise.', 'd1', 'Climate', 'extractive', 7),
  ('m-2', 'r1', 'Islands sink.', 'd1', 'Climate', 'extractive', 7);
INSERT INTO feed(id, deleted, created_at) VALUES ('m-1', 1, 8);
)sql");
    auto db = open_server_db(path);
    CHECK(sql1(path, "PRAGMA user_version") == "2");
    CHECK(db->corpus_signature() == "sig-1");
    CHECK(db->search("sea levels", 5).size() == 1);
    CHECK(db->epoch().size() == 16);
    // The notes, their positions and ids are tenant default's; the retracted one lost its text.
    const auto es = db->changes("default", 0, 100);
    REQUIRE(es.size() == 2);
    CHECK(es[0].id == "m-2");
    CHECK(es[0].seq == 2);
    CHECK(es[0].text == "Islands sink.");
    CHECK(es[1].id == "m-1");
    CHECK(es[1].deleted);
    CHECK(sql1(path, "SELECT count(*) FROM feed WHERE text = 'Sea levels rise.'") == "0");
    CHECK(db->changes("someone", 0, 100).empty());
    MemoryRequest r;
    REQUIRE(db->get_request("default", "r2", &r));
    CHECK(r.state == "pending");
    CHECK(r.context == "islands");
    REQUIRE(db->get_request("default", "r1", &r));
    CHECK(r.context.empty());
    CHECK(db->add_request("default", req("r1", "sea levels"), 100) == ServerDb::AddResult::duplicate);
    CHECK(db->add_request("default", req("r1", "other"), 100) == ServerDb::AddResult::conflict);
    CHECK(sql1(path, "SELECT count(*) FROM sqlite_master WHERE name IN ('feed_v0', 'requests_v0')") == "0");
    const std::string epoch = db->epoch();
    db.reset();
    CHECK(open_server_db(path)->epoch() == epoch);  // migrated once
}

TEST_CASE("server_db (SQLite): a newer schema and a file that is not a database are errors naming the file") {
    TempDir tmp;
    { open_server_db(tmp.file("new.db")); }
    exec(tmp.file("new.db"), "PRAGMA user_version = 9");
    CHECK_THROWS_WITH_AS(open_server_db(tmp.file("new.db")), doctest::Contains("new.db: schema version 9 is newer"),
                         ServerDbError);
    tandem_test::write_file(tmp.file("junk.db"), std::string(4096, 'j'));
    CHECK_THROWS_WITH_AS(open_server_db(tmp.file("junk.db")), doctest::Contains("junk.db"), ServerDbError);
}

TEST_CASE("server_db (SQLite): a file of schema version 1 (no leases) gets them, its pending requests kept") {
    TempDir tmp;
    const std::string path = tmp.file("v1.db");
    open_server_db(path)->add_request("alice", req("r1", "sea levels"), 10);
    // Back to version 1: the requests table without the lease columns.
    exec(path,
         "ALTER TABLE requests DROP COLUMN lease_owner; ALTER TABLE requests DROP COLUMN lease_until; "
         "ALTER TABLE requests DROP COLUMN claims; PRAGMA user_version = 1;");
    auto db = open_server_db(path);
    CHECK(sql1(path, "PRAGMA user_version") == "2");
    CHECK(complete_next(*db, "alice", notes({"Sea levels rise."})) == "r1");
    CHECK(db->changes("alice", 0, 10).size() == 1);
}

TEST_SUITE_END();

TEST_SUITE("postgres") {
    TEST_CASE("server_db (PostgreSQL): the ServerDb contract") {
        if (tandem_test::skip_without_postgres()) return;
        static int n = 0;
        run_contract([]() -> DbFactory {
            const std::string name = "contract_" + std::to_string(++n);
            tandem_test::shared_pg_server().create_database(name);
            const std::string uri = tandem_test::shared_pg_server().uri(name);
            return [uri] { return open_database(uri); };
        });
    }

    TEST_CASE("server_db (PostgreSQL): a newer schema and an unreachable server are errors without the password") {
        if (tandem_test::skip_without_postgres()) return;
        tandem_test::shared_pg_server().create_database("newer");
        const std::string uri = tandem_test::shared_pg_server().uri("newer");
        { open_database(uri); }
        tandem_test::shared_pg_server().sql("newer", "UPDATE meta SET value = '9' WHERE key = 'schema_version'");
        CHECK_THROWS_WITH_AS(open_database(uri), doctest::Contains("schema version 9 is newer"), ServerDbError);
        CHECK_THROWS_WITH_AS(open_database("postgresql://tandem:s3cret@127.0.0.1:1/x?connect_timeout=2"),
                             doctest::Contains("cannot connect"), ServerDbError);
        try {
            open_database("postgresql://tandem:s3cret@127.0.0.1:1/x?connect_timeout=2");
        } catch (const ServerDbError& e) {
            CHECK(std::string(e.what()).find("s3cret") == std::string::npos);
            CHECK(std::string(e.what()).find("tandem:***@127.0.0.1:1") != std::string::npos);
        }
    }
}
