// The reference cloud's storage (examples/cloud_server/server_db.h) on real SQLite files: the
// contract every ServerDb backend keeps (tenants apart, idempotent requests, the pending cap,
// round-robin work, per-tenant feed positions, forgetting), and the migration of a database
// from before tenants. The contract cases take any ServerDb: a second backend runs them too.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <functional>
#include <set>

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

// Runs the next pending request of `tenant` (whichever the round robin gives must be it).
void complete_next(ServerDb& db, const std::string& tenant, const std::vector<NewNote>& made) {
    MemoryRequest r;
    REQUIRE(db.next_pending("", &r));
    REQUIRE(r.tenant == tenant);
    REQUIRE(db.complete_request(r.tenant, r.request_id, made));
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

    REQUIRE(db->complete_request("alice", "r1", notes({"Sea levels rise.", "Islands sink."})));
    REQUIRE(db->complete_request("bob", "r1", notes({"Treaties limit arsenals."})));
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
    CHECK(!db->next_pending("", &r));
    CHECK(!db->complete_request("t", "a2", notes({"Too late."})));
    REQUIRE(db->add_request("t", req("c1", "four"), 100) == ServerDb::AddResult::created);
    CHECK(db->forget_all("t") == 0);
    CHECK(!db->complete_request("t", "c1", notes({"Too late."})));
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
    while (db->next_pending(last, &r)) {
        order.push_back(r.tenant + "/" + r.request_id);
        last = r.tenant;
        REQUIRE(db->complete_request(r.tenant, r.request_id, {}));
    }
    CHECK(order == std::vector<std::string>{"busy/r0", "quiet/q0", "busy/r1", "busy/r2"});
}

void run_contract(const DbFactory& open) {
    SUBCASE("tenants are apart") { tenants_are_apart(open); }
    SUBCASE("documents and forgetting") { documents_and_forgetting(open); }
    SUBCASE("the pending cap and round-robin work") { pending_cap_and_round_robin(open); }
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

TEST_CASE("server_db (SQLite): the ServerDb contract") {
    TempDir tmp;
    int n = 0;
    run_contract([&] { return open_server_db(tmp.file("c" + std::to_string(n++) + ".db")); });
}

TEST_CASE("server_db (SQLite): two connections share the feed; the epoch is kept across opens") {
    TempDir tmp;
    auto a = open_server_db(tmp.file("c.db"));
    auto b = open_server_db(tmp.file("c.db"));
    CHECK(a->epoch().size() == 16);
    CHECK(a->epoch() == b->epoch());
    REQUIRE(a->add_request("t", req("r", "x"), 100) == ServerDb::AddResult::created);
    REQUIRE(b->complete_request("t", "r", notes({"N."})));
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
    CHECK(sql1(path, "PRAGMA user_version") == "1");
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
