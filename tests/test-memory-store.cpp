// memory_store: real SQLite files in temp dirs. Schema migrations, idempotent pages,
// tombstones, cursor atomicity, LRU eviction, bm25 ranking, hostile query text, bad files,
// and crash consistency under SIGKILL.
#include <doctest/doctest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <set>
#include <thread>

#include "tandem/memory_store.h"
#include "test_util.h"

using namespace tandem;
using tandem_test::TempDir;

// ---- helpers ---------------------------------------------------------------------------

static MemoryChange item(const std::string& id, const std::string& text, int64_t created_at = 1000,
                         const std::string& title = "T") {
    MemoryChange c;
    c.item.id = id;
    c.item.request_id = "req-" + id;
    c.item.text = text;
    c.item.doc_id = "doc-" + id;
    c.item.title = title;
    c.item.created_at = created_at;
    return c;
}

static MemoryChange tombstone(const std::string& id) {
    MemoryChange c;
    c.deleted = true;
    c.item.id = id;
    return c;
}

// Runs one SQL statement on a separate raw connection and returns the first column of the
// first row as text ("" when none).
static std::string sql1(const std::string& path, const std::string& sql) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
    INFO(sqlite3_errmsg(db));
    REQUIRE(rc == SQLITE_OK);
    std::string out;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_text(st, 0)) out = (const char*)sqlite3_column_text(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

// Executes SQL on a separate raw connection; returns SQLite's error message, "" on success.
static std::string sql_exec(const std::string& path, const std::string& sql) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    char* err = nullptr;
    sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    std::string out = err ? err : "";
    sqlite3_free(err);
    sqlite3_close(db);
    return out;
}

static MemoryStoreParams params_for(const std::string& path) {
    MemoryStoreParams p;
    p.path = path;
    return p;
}

static std::vector<std::string> ids_of(const std::vector<MemoryItem>& items) {
    std::vector<std::string> v;
    for (const auto& it : items) v.push_back(it.id);
    return v;
}

// ---- schema ----------------------------------------------------------------------------

TEST_CASE("memory_store: a fresh file gets the newest schema, in WAL mode") {
    TempDir tmp;
    MemoryStore s(params_for(tmp.file("m.db")));
    CHECK(s.schema_version() == MemoryStore::latest_schema_version());
    CHECK(sql1(tmp.file("m.db"), "PRAGMA journal_mode") == "wal");
    CHECK(s.cursor() == "");
}

TEST_CASE("memory_store: migrates a version-1 file forward, keeping its items") {
    TempDir tmp;
    std::string path = tmp.file("old.db");
    {
        MemoryStoreParams p = params_for(path);
        p.target_version = 1;
        MemoryStore old(p);
        CHECK(old.schema_version() == 1);
    }
    // Data written by a version-1 client.
    CHECK(sql1(path, "INSERT INTO memory_items(id, request_id, text, doc_id, title, created_at) "
                     "VALUES ('x1', 'r1', 'glaciers are melting fast', 'd1', 'Climate', 5) RETURNING id") == "x1");
    CHECK(sql1(path, "UPDATE sync_state SET cursor = '17' RETURNING cursor") == "17");
    CHECK(sql1(path, "SELECT name FROM sqlite_master WHERE name = 'outbox'") == "");

    MemoryStore s(params_for(path));
    CHECK(s.schema_version() == MemoryStore::latest_schema_version());
    CHECK(s.cursor() == "17");
    MemoryStoreStats st = s.stats();
    CHECK(st.n_items == 1);
    CHECK(st.n_bytes == (int64_t)std::string("glaciers are melting fast").size());
    auto got = s.retrieve("what about the glaciers", {});
    REQUIRE(got.size() == 1);
    CHECK(got[0].id == "x1");
    CHECK(s.outbox_enqueue("r9", "ctx"));
}

TEST_CASE("memory_store: a version-3 file gets documents and the feed epoch, keeping items, cursor and outbox") {
    TempDir tmp;
    std::string path = tmp.file("v3.db");
    {
        MemoryStoreParams p = params_for(path);
        p.target_version = 3;
        MemoryStore old(p);
    }
    // Data written by a version-3 client.
    CHECK(sql1(path, "INSERT INTO memory_items(id, text) VALUES ('a', 'glaciers are melting fast') RETURNING id") == "a");
    CHECK(sql1(path, "UPDATE sync_state SET cursor = 'c-3' RETURNING cursor") == "c-3");
    CHECK(sql1(path, "INSERT INTO outbox(request_id, context) VALUES ('r1', 'ctx') RETURNING request_id") == "r1");
    MemoryStore s(params_for(path));
    CHECK(s.schema_version() == 4);
    CHECK(s.cursor() == "c-3");
    CHECK(s.epoch() == "");
    MemoryItem it;
    REQUIRE(s.get("a", &it));
    CHECK(it.document == "");
    OutboxRequest q;
    REQUIRE(s.outbox_get("r1", &q));
    CHECK(q.document == "");
    CHECK(s.outbox_enqueue("r2", "ctx", "draft.md"));
    REQUIRE(s.outbox_get("r2", &q));
    CHECK(q.document == "draft.md");
    CHECK(s.outbox_due(unix_ms_now() + 1).back().document == "draft.md");
}

TEST_CASE("memory_store: a page from another epoch replaces every item in the same transaction") {
    TempDir tmp;
    MemoryStore s(params_for(tmp.file("m.db")));
    s.apply_changes({item("a", "old glaciers note"), item("b", "old forests note")}, "e1-2-aa", "e1", false);
    CHECK(s.epoch() == "e1");
    s.apply_changes({}, "e1-2-aa");  // no epoch given: the stored one stays
    CHECK(s.epoch() == "e1");
    s.apply_changes({item("x", "new glaciers note")}, "e2-1-bb", "e2", true);
    CHECK(s.epoch() == "e2");
    CHECK(s.cursor() == "e2-1-bb");
    CHECK(s.stats().n_items == 1);
    CHECK(ids_of(s.retrieve("glaciers", {})) == std::vector<std::string>{"x"});
    // A failing reset page keeps everything as it was.
    MemoryChange bad = item("y", "");
    CHECK_THROWS_AS(s.apply_changes({item("z", "z"), bad}, "e3-2-cc", "e3", true), MemoryStoreError);
    CHECK(s.epoch() == "e2");
    CHECK(s.stats().n_items == 1);
    CHECK(s.get("x", nullptr));
}

TEST_CASE("memory_store: retrieval prefers the current document's notes, then the best of the rest") {
    TempDir tmp;
    MemoryStore s(params_for(tmp.file("m.db")));
    MemoryChange a = item("a", "glaciers glaciers glaciers melting"), b = item("b", "glaciers in the alps");
    MemoryChange c = item("c", "glaciers retreat in patagonia");
    b.item.document = "speech.md";
    c.item.document = "speech.md";
    s.apply_changes({a, b, c}, "1");
    MemoryItem got;
    REQUIRE(s.get("b", &got));
    CHECK(got.document == "speech.md");
    RetrieveParams rp;
    CHECK(ids_of(s.retrieve("glaciers", rp)).front() == "a");  // the best match overall
    rp.prefer_document = "speech.md";
    const std::vector<std::string> pref = ids_of(s.retrieve("glaciers", rp));
    REQUIRE(pref.size() == 3);
    CHECK(std::set<std::string>(pref.begin(), pref.begin() + 2) == std::set<std::string>{"b", "c"});
    CHECK(pref[2] == "a");
    rp.max_items = 2;
    const std::vector<std::string> two = ids_of(s.retrieve("glaciers", rp));
    CHECK(std::set<std::string>(two.begin(), two.end()) == std::set<std::string>{"b", "c"});
    rp.prefer_document = "other.md";
    CHECK(ids_of(s.retrieve("glaciers", rp)).front() == "a");
}

TEST_CASE("memory_store: a schema newer than the code is a typed error") {
    TempDir tmp;
    std::string path = tmp.file("new.db");
    { MemoryStore s(params_for(path)); }
    sql1(path, "PRAGMA user_version = 99");
    try {
        MemoryStore s(params_for(path));
        FAIL("opened a version-99 file");
    } catch (const MemoryStoreError& e) {
        CHECK(e.code() == MemoryStoreErrc::schema_too_new);
        CHECK(std::string(e.what()).find(path) != std::string::npos);
    }
}

// ---- applying pages --------------------------------------------------------------------

TEST_CASE("memory_store: applying a page twice is a no-op; tombstones delete") {
    TempDir tmp;
    MemoryStore s(params_for(tmp.file("m.db")));
    std::vector<MemoryChange> page = {item("a", "alpha note about oceans"), item("b", "beta note about forests")};
    s.apply_changes(page, "2");
    s.apply_changes(page, "2");
    CHECK(s.stats().n_items == 2);
    CHECK(sql1(tmp.file("m.db"), "SELECT count(*) FROM memory_items") == "2");
    CHECK(s.retrieve("oceans", {}).size() == 1);

    // An update of the same id replaces the text (and its index entry).
    s.apply_changes({item("a", "alpha note about deserts")}, "3");
    CHECK(s.retrieve("oceans", {}).empty());
    CHECK(s.retrieve("deserts", {}).size() == 1);

    s.apply_changes({tombstone("a"), tombstone("never-seen")}, "4");
    CHECK_FALSE(s.get("a", nullptr));
    CHECK(s.get("b", nullptr));
    CHECK(s.retrieve("deserts", {}).empty());
    CHECK(s.stats().n_items == 1);
    CHECK(s.cursor() == "4");
    // The external-content index agrees with its table.
    CHECK(sql_exec(tmp.file("m.db"), "INSERT INTO memory_fts(memory_fts) VALUES('integrity-check')") == "");
}

TEST_CASE("memory_store: entries of one page apply in order") {
    TempDir tmp;
    MemoryStore s(params_for(tmp.file("m.db")));
    s.apply_changes({item("x", "first text"), tombstone("x"), item("y", "kept"), tombstone("y"), item("y", "back again")}, "1");
    CHECK_FALSE(s.get("x", nullptr));
    MemoryItem y;
    REQUIRE(s.get("y", &y));
    CHECK(y.text == "back again");
    CHECK(s.stats().n_items == 1);
    CHECK_THROWS_AS(s.apply_changes({tombstone("")}, "2"), MemoryStoreError);
    CHECK(s.cursor() == "1");
}

TEST_CASE("memory_store: a failing page leaves cursor and items unchanged") {
    TempDir tmp;
    MemoryStore s(params_for(tmp.file("m.db")));
    s.apply_changes({item("a", "first page")}, "1");
    std::vector<MemoryChange> bad = {item("b", "second page item"), tombstone("a"), item("c", "")};
    CHECK_THROWS_AS(s.apply_changes(bad, "2"), MemoryStoreError);
    CHECK(s.cursor() == "1");
    CHECK(s.get("a", nullptr));
    CHECK_FALSE(s.get("b", nullptr));
    CHECK(s.stats().n_items == 1);
    // The store is still usable after the rollback.
    s.apply_changes({item("b", "second page item")}, "2");
    CHECK(s.cursor() == "2");
}

// ---- eviction --------------------------------------------------------------------------

TEST_CASE("memory_store: least recently used items are evicted beyond the item cap") {
    TempDir tmp;
    MemoryStoreParams p = params_for(tmp.file("m.db"));
    p.max_items = 5;
    MemoryStore s(p);
    std::vector<MemoryChange> page;
    for (int i = 0; i < 5; i++) page.push_back(item("i" + std::to_string(i), "note number " + std::to_string(i) + " zebra" + std::to_string(i)));
    s.apply_changes(page, "1");
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
    REQUIRE(s.retrieve("zebra0", {}).size() == 1);  // touches i0
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
    s.apply_changes({item("n1", "new one"), item("n2", "new two")}, "2");
    CHECK(s.stats().n_items == 5);
    CHECK(s.stats().n_evicted == 2);
    CHECK(s.get("i0", nullptr));  // recently used: kept
    CHECK_FALSE(s.get("i1", nullptr));
    CHECK_FALSE(s.get("i2", nullptr));
    CHECK(s.get("i3", nullptr));
    CHECK(s.get("n2", nullptr));
}

TEST_CASE("memory_store: the byte cap holds") {
    TempDir tmp;
    MemoryStoreParams p = params_for(tmp.file("m.db"));
    p.max_bytes = 100;
    MemoryStore s(p);
    for (int i = 0; i < 10; i++)
        s.apply_changes({item("b" + std::to_string(i), std::string(30, char('a' + i)))}, std::to_string(i));
    MemoryStoreStats st = s.stats();
    CHECK(st.n_bytes <= 100);
    CHECK(st.n_items == 3);
    CHECK(s.get("b9", nullptr));
    CHECK(s.get("b7", nullptr));
    CHECK_FALSE(s.get("b6", nullptr));
    CHECK(sql1(tmp.file("m.db"), "SELECT sum(length(text)) FROM memory_items") == std::to_string(st.n_bytes));
}

// ---- retrieval -------------------------------------------------------------------------

TEST_CASE("memory_store: bm25 ranking, recent first on ties, budget and max_items") {
    TempDir tmp;
    MemoryStore s(params_for(tmp.file("m.db")));
    s.apply_changes({item("weak", "the agreement in Paris mentions climate once among many other words", 1),
                     item("strong", "climate finance for climate adaptation", 1),
                     item("other", "nuclear disarmament treaty", 1),
                     item("tie_old", "ocean acidification", 10),
                     item("tie_new", "acidification ocean", 20),
                     item("copy_old", "coral reef bleaching in the Pacific", 30),
                     item("copy_new", "coral reef bleaching in the Pacific", 40)},
                    "1");
    CHECK(ids_of(s.retrieve("Tell me about climate.", {})) == std::vector<std::string>{"strong", "weak"});
    CHECK(ids_of(s.retrieve("ocean", {})) == std::vector<std::string>{"tie_new", "tie_old"});
    // The same text under two ids (the cloud made the note twice): once, the newer.
    CHECK(ids_of(s.retrieve("coral", {})) == std::vector<std::string>{"copy_new"});
    CHECK(s.retrieve("volcanic glaciers", {}).empty());

    RetrieveParams one;
    one.max_items = 1;
    CHECK(ids_of(s.retrieve("climate", one)) == std::vector<std::string>{"strong"});
    // Budget: "strong" (38 chars) fits 40, "weak" (68) does not.
    RetrieveParams small;
    small.budget = 40;
    CHECK(ids_of(s.retrieve("climate", small)) == std::vector<std::string>{"strong"});
    // Token budget through the callback: one unit per word.
    RetrieveParams words;
    words.budget = 5;
    words.cost = [](std::string_view t) { return (size_t)std::count(t.begin(), t.end(), ' ') + 1; };
    CHECK(ids_of(s.retrieve("climate", words)) == std::vector<std::string>{"strong"});
    // The stemmer matches inflections.
    CHECK(ids_of(s.retrieve("treaties", {})) == std::vector<std::string>{"other"});
}

TEST_CASE("memory_store: rare words lead the search; new items are found at once") {
    TempDir tmp;
    MemoryStore s(params_for(tmp.file("m.db")));
    std::vector<MemoryChange> page;
    for (int i = 0; i < 200; i++) page.push_back(item("c" + std::to_string(i), "the united nations discussed development " + std::to_string(i), 1));
    page.push_back(item("rare", "the united nations discussed zanzibar cloves", 1));
    s.apply_changes(page, "1");
    RetrieveParams one;
    one.max_items = 1;
    CHECK(ids_of(s.retrieve("What did the united nations say about development in Zanzibar?", one)) ==
          std::vector<std::string>{"rare"});
    // A word unknown to the store, then known: the term statistics follow apply_changes.
    CHECK(s.retrieve("quokka", {}).empty());
    s.apply_changes({item("q", "a quokka smiles")}, "2");
    CHECK(ids_of(s.retrieve("quokka", {})) == std::vector<std::string>{"q"});
    // Only common words: still answered (the rarest of them is searched).
    CHECK(s.retrieve("united nations development", {}).size() == 8);
    // optimize() merges the index; results do not change.
    s.optimize();
    CHECK(ids_of(s.retrieve("What did the united nations say about development in Zanzibar?", one)) ==
          std::vector<std::string>{"rare"});
    CHECK(sql_exec(tmp.file("m.db"), "INSERT INTO memory_fts(memory_fts) VALUES('integrity-check')") == "");
}

TEST_CASE("memory_store: retrieval updates last_used_at") {
    TempDir tmp;
    MemoryStore s(params_for(tmp.file("m.db")));
    s.apply_changes({item("a", "volcano eruption")}, "1");
    MemoryItem before;
    REQUIRE(s.get("a", &before));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    auto got = s.retrieve("volcano", {});
    REQUIRE(got.size() == 1);
    MemoryItem after;
    REQUIRE(s.get("a", &after));
    CHECK(after.last_used_at > before.last_used_at);
    CHECK(got[0].last_used_at == after.last_used_at);
}

TEST_CASE("memory_store: hostile query text never reaches FTS5 as syntax") {
    TempDir tmp;
    MemoryStore s(params_for(tmp.file("m.db")));
    s.apply_changes({item("a", "climate change and the near future", 1, "NEAR title")}, "1");
    const std::vector<std::string> hostile = {
        "\"", "\"\"\"", "climate\"", "AND", "OR OR OR", "NOT climate", "NEAR(climate change, 2)",
        "title:climate", "text : climate", "*", "climat*", "^climate", "(climate", "climate)",
        "a - b + c", "{text title}: climate", "'; DROP TABLE memory_items; --", "\xE2\x80\x94 \xE2\x80\x9C",
        "\xff\xfe\xfd", std::string("clim\0ate", 8), std::string(20000, '"'), std::string(100000, 'x'),
        "caf\xC3\xA9 na\xC3\xAFve \xE6\x97\xA5\xE6\x9C\xAC", "",
    };
    for (const std::string& h : hostile) {
        INFO("query: " << h.substr(0, 60));
        CHECK_NOTHROW(s.retrieve(h, {}));
    }
    CHECK(s.retrieve("NOT climate", {}).size() == 1);          // "not" is a stop word, climate matches
    CHECK(s.retrieve("NEAR(climate change, 2)", {}).size() == 1);
    CHECK(s.get("a", nullptr));                                // no injected SQL ran
    CHECK(fts5_match_query("Hello, \"World\" AND near(x) title:y*") == "\"hello\" OR \"world\" OR \"near\" OR \"title\"");
    CHECK(fts5_match_query("the of and") == "");
    CHECK(fts5_match_query("a b c d e f", 2) == "");
    CHECK(fts5_match_query("one two three four", 2) == "\"three\" OR \"four\"");
}

// ---- outbox ----------------------------------------------------------------------------

TEST_CASE("memory_store: outbox enqueue is idempotent; due, sent, failed with backoff, dead") {
    TempDir tmp;
    MemoryStore s(params_for(tmp.file("m.db")));
    CHECK(s.outbox_enqueue("r1", "context one"));
    CHECK_FALSE(s.outbox_enqueue("r1", "something else"));
    CHECK(s.outbox_enqueue("r2", "context two"));
    int64_t now = unix_ms_now();
    auto due = s.outbox_due(now + 1);
    REQUIRE(due.size() == 2);
    CHECK(due[0].request_id == "r1");
    CHECK(due[0].context == "context one");
    CHECK(s.stats().n_outbox_pending == 2);

    s.outbox_mark_failed("r1", now + 60000);
    due = s.outbox_due(now + 1);
    REQUIRE(due.size() == 1);
    CHECK(due[0].request_id == "r2");
    due = s.outbox_due(now + 60000);
    REQUIRE(due.size() == 2);
    OutboxRequest r;
    REQUIRE(s.outbox_get("r1", &r));
    CHECK(r.attempts == 1);
    CHECK(r.state == OutboxState::pending);

    s.outbox_mark_sent("r2");
    s.outbox_mark_failed("r1", 0, /*give_up=*/true);
    CHECK(s.outbox_due(now + 1000000).empty());
    REQUIRE(s.outbox_get("r1", &r));
    CHECK(r.state == OutboxState::dead);
    CHECK(r.attempts == 2);
    REQUIRE(s.outbox_get("r2", &r));
    CHECK(r.state == OutboxState::sent);
    CHECK_THROWS_AS(s.outbox_mark_sent("nope"), MemoryStoreError);
}

// ---- bad files -------------------------------------------------------------------------

static void expect_error(const std::function<void()>& f, MemoryStoreErrc code, const std::string& path) {
    try {
        f();
        FAIL("no error");
    } catch (const MemoryStoreError& e) {
        INFO(e.what());
        CHECK(e.code() == code);
        CHECK(e.path() == path);
        CHECK(std::string(e.what()).find(path) != std::string::npos);
    }
}

TEST_CASE("memory_store: a garbage file is a corrupt error naming the path") {
    TempDir tmp;
    std::string path = tmp.file("garbage.db");
    std::string junk(65536, '\0');
    std::mt19937 rng(7);
    for (char& c : junk) c = char(rng());
    tandem_test::write_file(path, junk);
    expect_error([&] { MemoryStore s(params_for(path)); }, MemoryStoreErrc::corrupt, path);
}

TEST_CASE("memory_store: damaged pages inside a valid file give errors, not crashes") {
    TempDir tmp;
    std::string path = tmp.file("damaged.db");
    {
        MemoryStore s(params_for(path));
        std::vector<MemoryChange> page;
        for (int i = 0; i < 300; i++) page.push_back(item("d" + std::to_string(i), "some text about topic " + std::to_string(i) + std::string(200, 'q')));
        s.apply_changes(page, "1");
    }
    std::string bytes = tandem_test::read_file(path);
    REQUIRE(bytes.size() > 8 * 4096);
    std::mt19937 rng(11);
    for (size_t i = 4096; i < bytes.size(); i++) bytes[i] = char(rng());
    tandem_test::write_file(path, bytes);
    bool threw = false;
    try {
        MemoryStore s(params_for(path));
        s.retrieve("topic", {});
        s.apply_changes({item("z", "more topic text")}, "2");
        s.stats();
    } catch (const MemoryStoreError& e) {
        threw = true;
        CHECK(e.code() == MemoryStoreErrc::corrupt);
        CHECK(std::string(e.what()).find(path) != std::string::npos);
    }
    CHECK(threw);
}

TEST_CASE("memory_store: a locked database is a busy error; reads still work") {
    TempDir tmp;
    std::string path = tmp.file("locked.db");
    MemoryStoreParams p = params_for(path);
    p.busy_timeout_ms = 100;
    MemoryStore s(p);
    s.apply_changes({item("a", "lighthouse keeper")}, "1");
    sqlite3* other = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &other) == SQLITE_OK);
    REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
    expect_error([&] { s.apply_changes({item("b", "x")}, "2"); }, MemoryStoreErrc::busy, path);
    CHECK(s.retrieve("lighthouse", {}).size() == 1);  // WAL reader; the LRU touch is skipped
    sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(other);
    s.apply_changes({item("b", "x")}, "2");
    CHECK(s.cursor() == "2");
}

TEST_CASE("memory_store: a read-only file is a read_only error") {
    TempDir tmp;
    std::string path = tmp.file("ro.db");
    { MemoryStore s(params_for(path)); }
    REQUIRE(chmod(path.c_str(), 0444) == 0);
    if (geteuid() != 0) {
        expect_error([&] { MemoryStore s(params_for(path)); }, MemoryStoreErrc::read_only, path);
        return;
    }
    // root ignores file modes: check as an unprivileged user in a child process.
    REQUIRE(chmod(tmp.path.c_str(), 0755) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
        try {
            MemoryStore s(params_for(path));
            _exit(1);
        } catch (const MemoryStoreError& e) {
            bool ok = e.code() == MemoryStoreErrc::read_only && std::string(e.what()).find(path) != std::string::npos;
            _exit(ok ? 0 : 2);
        } catch (...) {
            _exit(4);
        }
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

// ---- crash consistency -----------------------------------------------------------------
// A child applies the pages of a deterministic feed in a loop and is SIGKILLed at random
// moments. Page k holds items k-0..k-7 and, for k >= 3, a tombstone for item (k-3)-0; the
// cursor after page k is "k+1". After each kill the file must be sound and hold exactly the
// items of pages < cursor.

static std::vector<MemoryChange> feed_page(int k) {
    std::vector<MemoryChange> page;
    for (int j = 0; j < 8; j++) {
        std::string id = std::to_string(k) + "-" + std::to_string(j);
        page.push_back(item(id, "crash test note " + id + " about harbours and " + std::string(j * 20, 'w'), k));
    }
    if (k >= 3) page.push_back(tombstone(std::to_string(k - 3) + "-0"));
    return page;
}

static std::set<std::string> expected_ids(int n_pages) {
    std::set<std::string> ids;
    for (int k = 0; k < n_pages; k++)
        for (const MemoryChange& c : feed_page(k)) {
            if (c.deleted) ids.erase(c.item.id);
            else ids.insert(c.item.id);
        }
    return ids;
}

TEST_CASE("memory_store: SIGKILL at random moments never loses or duplicates an item") {
    TempDir tmp;
    std::string path = tmp.file("crash.db");
    std::mt19937 rng(1234);
    int last_cursor = 0;
    for (int iter = 0; iter < 50; iter++) {
        int ready[2];
        REQUIRE(pipe(ready) == 0);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            close(ready[0]);
            try {
                MemoryStore s(params_for(path));
                for (bool first = true;; first = false) {
                    std::string c = s.cursor();
                    int k = c.empty() ? 0 : std::stoi(c);
                    s.apply_changes(feed_page(k), std::to_string(k + 1));
                    if (first && write(ready[1], "r", 1) != 1) _exit(8);
                }
            } catch (...) {
                _exit(9);
            }
        }
        // Kill at a random moment after the child's first page (so each round makes progress,
        // even on a loaded machine), 0..20 ms into its apply loop.
        close(ready[1]);
        char byte = 0;
        CHECK(read(ready[0], &byte, 1) == 1);
        close(ready[0]);
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));
        kill(pid, SIGKILL);
        int status = 0;
        REQUIRE(waitpid(pid, &status, 0) == pid);
        REQUIRE(WIFSIGNALED(status));  // it did not die on its own (exit 9 = a store error)

        CHECK(sql1(path, "PRAGMA integrity_check") == "ok");
        MemoryStore s(params_for(path));
        std::string c = s.cursor();
        int k = c.empty() ? 0 : std::stoi(c);
        CHECK(k >= last_cursor);
        last_cursor = k;
        std::set<std::string> want = expected_ids(k);
        CHECK(sql1(path, "SELECT count(*) FROM memory_items") == std::to_string(want.size()));
        CHECK(sql1(path, "SELECT count(DISTINCT id) FROM memory_items") == std::to_string(want.size()));
        CHECK(s.stats().n_items == (int64_t)want.size());
        for (const std::string& id : want) {
            if (!s.get(id, nullptr)) FAIL_CHECK("missing item " << id << " at cursor " << k);
        }
        CHECK(sql1(path, "SELECT count(*) FROM memory_items WHERE created_at >= " + std::to_string(k)) == "0");
        CHECK(sql_exec(path, "INSERT INTO memory_fts(memory_fts) VALUES('integrity-check')") == "");
    }
    MESSAGE("crash test reached cursor " << last_cursor << " over 50 kills");
    CHECK(last_cursor >= 50);
}

TEST_CASE("retrieval before any note arrived, then after: the query scratch tables survive") {
    tandem_test::TempDir dir;
    tandem::MemoryStoreParams p;
    p.path = dir.file("m.db");
    tandem::MemoryStore s(p);
    tandem::RetrieveParams rp;
    rp.max_items = 5;
    CHECK(s.retrieve("the red dragon guards the castle", rp).empty());
    tandem::MemoryChange c;
    c.item.id = "a";
    c.item.text = "The red dragon guards the golden castle.";
    c.item.doc_id = "d";
    s.apply_changes({c}, "1");
    const auto got = s.retrieve("the red dragon guards the castle", rp);
    REQUIRE(got.size() == 1);
    CHECK(got[0].id == "a");
    CHECK(s.coverage("red dragon") > 0);
    CHECK(s.coverage("tomatoes") == 0);
}
