// The SQLite ServerDb: the reference cloud's database file. Schema and contract in server_db.h.
#include "tandem/cloud/server_db.h"

#include <sqlite3.h>

#include "pg_conn.h"  // is_postgres_url
#include "tandem/cloud/random_id.h"
#include "tandem/memory_store.h"  // unix_ms_now
#include "tandem/sha256.h"
#include "tandem/sqlite_stmt.h"

namespace tandem::cloud {

namespace {

// ---- schema ----------------------------------------------------------------------------

constexpr int kSchemaVersion = 2;

// user_version 1 had no job leases.
const char* kAddLeasesV1 = R"sql(
ALTER TABLE requests ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN claims INTEGER NOT NULL DEFAULT 0;
)sql";

const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs(doc_id TEXT PRIMARY KEY, title TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS passages(pid INTEGER PRIMARY KEY, doc_id TEXT NOT NULL,
  ord INTEGER NOT NULL, text TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS passages_fts USING fts5(text, content='passages',
  content_rowid='pid', tokenize='porter unicode61');
CREATE TABLE IF NOT EXISTS requests(tenant TEXT NOT NULL, request_id TEXT NOT NULL,
  document TEXT NOT NULL DEFAULT '', context TEXT NOT NULL, body_sha256 TEXT NOT NULL,
  max_items INTEGER NOT NULL, state TEXT NOT NULL, error TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL, lease_owner TEXT NOT NULL DEFAULT '',
  lease_until INTEGER NOT NULL DEFAULT 0, claims INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(tenant, request_id));
CREATE INDEX IF NOT EXISTS idx_requests_pending ON requests(state, tenant, created_at);
CREATE TABLE IF NOT EXISTS feed(tenant TEXT NOT NULL, seq INTEGER NOT NULL, tag TEXT NOT NULL,
  id TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, retracted INTEGER NOT NULL DEFAULT 0,
  request_id TEXT NOT NULL DEFAULT '', document TEXT NOT NULL DEFAULT '',
  text TEXT NOT NULL DEFAULT '', doc_id TEXT NOT NULL DEFAULT '', title TEXT NOT NULL DEFAULT '',
  method TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL, PRIMARY KEY(tenant, seq));
CREATE INDEX IF NOT EXISTS idx_passages_doc ON passages(doc_id, ord);
CREATE INDEX IF NOT EXISTS idx_feed_item ON feed(tenant, id);
CREATE INDEX IF NOT EXISTS idx_feed_document ON feed(tenant, document) WHERE deleted = 0 AND retracted = 0;
)sql";

// The tables of user_version 0 (before tenants) are renamed aside, copied into the new ones
// and dropped; see migrate_v0().
const char* kRenameV0 = R"sql(
DROP INDEX IF EXISTS idx_requests_state;
DROP INDEX IF EXISTS idx_feed_id;
ALTER TABLE requests RENAME TO requests_v0;
ALTER TABLE feed RENAME TO feed_v0;
)sql";

const char* kCopyFeedV0 = R"sql(
INSERT INTO feed(tenant, seq, tag, id, deleted, request_id, text, doc_id, title, method, created_at)
  SELECT 'default', seq, lower(hex(randomblob(4))), id, deleted, request_id, text, doc_id, title,
         method, created_at FROM feed_v0;
UPDATE feed SET retracted = 1, text = '' WHERE deleted = 0 AND EXISTS (
  SELECT 1 FROM feed t WHERE t.tenant = feed.tenant AND t.id = feed.id AND t.deleted = 1 AND t.seq > feed.seq);
DROP TABLE feed_v0;
)sql";

// ---- statements ------------------------------------------------------------------------

class SqliteServerDb;

// A statement prepared for one use (tandem/sqlite_stmt.h); its errors are ServerDbError.
class DbStmt : public SqliteStmt {
public:
    DbStmt(SqliteServerDb& db, const char* sql, const char* op);

private:
    static void fail_of(void* db, int rc, const char* op);
};

// BEGIN IMMEDIATE .. COMMIT, rolled back when left by an exception.
class DbTx {
public:
    explicit DbTx(sqlite3* db) : db_(db) {
        int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
        if (rc != SQLITE_OK) throw ServerDbError(std::string("begin transaction: ") + sqlite3_errmsg(db));
    }
    void commit() {
        int rc = sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
        if (rc != SQLITE_OK) throw ServerDbError(std::string("commit: ") + sqlite3_errmsg(db_));
        done_ = true;
    }
    ~DbTx() {
        if (!done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }

private:
    sqlite3* db_;
    bool done_ = false;
};

// ---- the database ----------------------------------------------------------------------

class SqliteServerDb final : public ServerDb {
public:
    explicit SqliteServerDb(const std::string& path);
    ~SqliteServerDb() override { sqlite3_close(db_); }

    std::string corpus_signature() override { return meta("corpus_signature"); }
    void replace_corpus(const std::vector<CorpusDoc>& docs, const std::string& signature) override;
    int64_t count_docs() override { return count("SELECT count(*) FROM docs", "count docs"); }
    int64_t count_passages() override { return count("SELECT count(*) FROM passages", "count passages"); }
    std::vector<Passage> search(const std::string& text, size_t limit, const std::string& exclude_doc_id) override;
    bool get_document(const std::string& doc_id, CorpusDoc* out) override;
    std::string epoch() override { return epoch_; }

    AddResult add_request(const std::string& tenant, const NewRequest& r, int64_t max_pending) override;
    bool claim_request(const std::string& worker, int64_t lease_ms, const std::string& after_tenant,
                       MemoryRequest* out) override;
    bool renew_lease(const std::string& tenant, const std::string& request_id, const std::string& worker,
                     int64_t lease_ms) override;
    bool get_request(const std::string& tenant, const std::string& request_id, MemoryRequest* out) override;
    bool complete_request(const std::string& tenant, const std::string& request_id, const std::string& worker,
                          const std::vector<NewNote>& notes) override;
    void fail_request(const std::string& tenant, const std::string& request_id, const std::string& worker,
                      const std::string& error) override;
    int64_t count_pending(const std::string& tenant) override;

    std::vector<FeedEntry> changes(const std::string& tenant, int64_t since, size_t limit) override;
    std::optional<std::string> entry_tag(const std::string& tenant, int64_t seq) override;
    FeedEntry head(const std::string& tenant) override;

    int64_t forget_item(const std::string& tenant, const std::string& item_id) override;
    int64_t forget_document(const std::string& tenant, const std::string& document) override;
    int64_t forget_all(const std::string& tenant) override;

    [[noreturn]] void fail(int rc, const std::string& op) {
        throw ServerDbError("server database " + path_ + ": " + op + ": " + sqlite3_errmsg(db_) + " (" +
                            sqlite3_errstr(rc) + ")");
    }
    sqlite3* handle() { return db_; }

private:
    void exec(const char* sql);
    std::string meta(const std::string& key);
    void set_meta(const std::string& key, const std::string& value);
    int64_t count(const char* sql, const char* op);
    int read_user_version();
    void migrate();
    void migrate_from_scratch_or_v0();
    void migrate_v0();
    // Appends entries to the tenant's feed (inside the caller's transaction), numbering them
    // after its last entry; fills in seq and tag.
    void append(const std::string& tenant, std::vector<FeedEntry>& entries);
    // Retracts the live item rows `where` selects (a condition on feed with ?1 = tenant and
    // ?2 = its argument): text erased, one tombstone each. Inside the caller's transaction.
    int64_t retract_where(const std::string& tenant, const char* select_sql, const std::string& arg);
    void cancel_pending(const std::string& tenant, const char* sql, const std::string& arg);

    sqlite3* db_ = nullptr;
    std::string path_;
    std::string epoch_;
};

DbStmt::DbStmt(SqliteServerDb& db, const char* sql, const char* op)
    : SqliteStmt(db.handle(), sql, op, &fail_of, &db) {}

void DbStmt::fail_of(void* db, int rc, const char* op) { static_cast<SqliteServerDb*>(db)->fail(rc, op); }

// ---- open and migrate ------------------------------------------------------------------

SqliteServerDb::SqliteServerDb(const std::string& path) : path_(path) {
    int rc = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    if (rc != SQLITE_OK) {
        std::string reason = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
        sqlite3_close(db_);
        db_ = nullptr;
        throw ServerDbError("server database " + path + ": open: " + reason);
    }
    try {
        sqlite3_busy_timeout(db_, 5000);
        exec("PRAGMA journal_mode = WAL");
        exec("PRAGMA synchronous = NORMAL");
        migrate();
        epoch_ = meta("epoch");
    } catch (...) {
        sqlite3_close(db_);
        db_ = nullptr;
        throw;
    }
}

void SqliteServerDb::exec(const char* sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
        std::string msg = err ? err : sqlite3_errstr(rc);
        sqlite3_free(err);
        throw ServerDbError("server database " + path_ + ": " + msg);
    }
}

int SqliteServerDb::read_user_version() {
    DbStmt st(*this, "PRAGMA user_version", "read schema version");
    return st.step() ? (int)st.i64(0) : 0;
}

// Brings the file to kSchemaVersion in one transaction: a new file gets the schema and an
// epoch, a file of user_version 0 with tables (before tenants) is migrated by migrate_v0().
// Another process migrating at the same time waits on the write lock, then finds it done.
void SqliteServerDb::migrate() {
    if (read_user_version() == kSchemaVersion) return;
    DbTx tx(db_);
    const int v = read_user_version();
    if (v > kSchemaVersion)
        throw ServerDbError("server database " + path_ + ": schema version " + std::to_string(v) +
                            " is newer than this tandem-cloud knows (" + std::to_string(kSchemaVersion) + ")");
    if (v == kSchemaVersion) return;  // the transaction rolls back: nothing was written
    if (v == 1) {
        exec(kAddLeasesV1);
    } else {
        migrate_from_scratch_or_v0();
    }
    exec(("PRAGMA user_version = " + std::to_string(kSchemaVersion)).c_str());
    tx.commit();
}

void SqliteServerDb::migrate_from_scratch_or_v0() {
    bool legacy = false;
    {
        DbStmt st(*this, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'feed'", "inspect schema");
        legacy = st.step();
    }
    if (legacy) exec(kRenameV0);
    exec(kSchema);
    if (legacy) migrate_v0();
    set_meta("epoch", random_hex(8));
}

// user_version 0 had one global feed and one token: its requests and notes become tenant
// "default"'s (the tenant of --token and of a server without tokens), with their feed
// positions; retracted items lose their text; contexts of handled requests are dropped.
void SqliteServerDb::migrate_v0() {
    {
        DbStmt old(*this, "SELECT request_id, context, max_items, state, error, created_at FROM requests_v0",
                   "read old requests");
        DbStmt ins(*this,
                   "INSERT INTO requests(tenant, request_id, document, context, body_sha256, max_items, state, "
                   "error, created_at) VALUES ('default', ?1, '', ?2, ?3, ?4, ?5, ?6, ?7)",
                   "copy old request");
        while (old.step()) {
            const std::string context = old.str(1), state = old.str(3);
            ins.bind(1, old.str(0)).bind(2, state == "pending" ? context : std::string());
            ins.bind(3, request_digest("", context)).bind(4, old.i64(2)).bind(5, state).bind(6, old.str(4));
            ins.bind(7, old.i64(5)).run();
            ins.reset();
        }
    }
    exec("DROP TABLE requests_v0");
    exec(kCopyFeedV0);
}

// ---- corpus ----------------------------------------------------------------------------

std::string SqliteServerDb::meta(const std::string& key) {
    DbStmt st(*this, "SELECT value FROM meta WHERE key = ?1", "read meta");
    st.bind(1, key);
    return st.step() ? st.str(0) : std::string();
}

void SqliteServerDb::set_meta(const std::string& key, const std::string& value) {
    DbStmt m(*this, "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)", "write meta");
    m.bind(1, key).bind(2, value).run();
}

int64_t SqliteServerDb::count(const char* sql, const char* op) {
    DbStmt st(*this, sql, op);
    return st.step() ? st.i64(0) : 0;
}

void SqliteServerDb::replace_corpus(const std::vector<CorpusDoc>& docs, const std::string& signature) {
    DbTx tx(db_);
    exec("DELETE FROM docs; DELETE FROM passages;");
    DbStmt doc(*this, "INSERT OR REPLACE INTO docs(doc_id, title) VALUES (?1, ?2)", "insert doc");
    DbStmt pas(*this, "INSERT INTO passages(doc_id, ord, text) VALUES (?1, ?2, ?3)", "insert passage");
    for (const CorpusDoc& d : docs) {
        doc.bind(1, d.doc_id).bind(2, d.title).run();
        doc.reset();
        for (size_t i = 0; i < d.passages.size(); i++) {
            pas.bind(1, d.doc_id).bind(2, (int64_t)i).bind(3, d.passages[i]).run();
            pas.reset();
        }
    }
    exec("INSERT INTO passages_fts(passages_fts) VALUES ('rebuild')");
    set_meta("corpus_signature", signature);
    tx.commit();
}

std::vector<Passage> SqliteServerDb::search(const std::string& text, size_t limit, const std::string& exclude_doc_id) {
    std::vector<Passage> out;
    const std::string match = fts5_match_query(text, 32);  // never raw FTS5 syntax
    if (match.empty() || limit == 0) return out;
    DbStmt st(*this,
              "SELECT p.doc_id, d.title, p.text, bm25(passages_fts) AS score FROM passages_fts f "
              "JOIN passages p ON p.pid = f.rowid JOIN docs d ON d.doc_id = p.doc_id "
              "WHERE passages_fts MATCH ?1 AND p.doc_id <> ?3 ORDER BY score, p.pid LIMIT ?2",
              "search corpus");
    st.bind(1, match).bind(2, (int64_t)limit).bind(3, exclude_doc_id);
    while (st.step()) out.push_back({st.str(0), st.str(1), st.str(2), st.f64(3)});
    return out;
}

bool SqliteServerDb::get_document(const std::string& doc_id, CorpusDoc* out) {
    DbStmt doc(*this, "SELECT title FROM docs WHERE doc_id = ?1", "read document");
    doc.bind(1, doc_id);
    if (!doc.step()) return false;
    out->doc_id = doc_id;
    out->title = doc.str(0);
    out->passages.clear();
    DbStmt st(*this, "SELECT text FROM passages WHERE doc_id = ?1 ORDER BY ord", "read passages");
    st.bind(1, doc_id);
    while (st.step()) out->passages.push_back(st.str(0));
    return true;
}

// ---- requests --------------------------------------------------------------------------

ServerDb::AddResult SqliteServerDb::add_request(const std::string& tenant, const NewRequest& r, int64_t max_pending) {
    const std::string digest = request_digest(r.document, r.context);
    DbTx tx(db_);
    {
        DbStmt st(*this, "SELECT body_sha256 FROM requests WHERE tenant = ?1 AND request_id = ?2", "find request");
        st.bind(1, tenant).bind(2, r.request_id);
        if (st.step()) return st.str(0) == digest ? AddResult::duplicate : AddResult::conflict;
    }
    if (count_pending(tenant) >= max_pending) return AddResult::too_many;
    DbStmt ins(*this,
               "INSERT INTO requests(tenant, request_id, document, context, body_sha256, max_items, state, "
               "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7)",
               "add request");
    ins.bind(1, tenant).bind(2, r.request_id).bind(3, r.document).bind(4, r.context).bind(5, digest);
    ins.bind(6, (int64_t)r.max_items).bind(7, unix_ms_now()).run();
    tx.commit();
    return AddResult::created;
}

static void read_request(DbStmt& st, MemoryRequest* out) {
    out->tenant = st.str(0);
    out->request_id = st.str(1);
    out->document = st.str(2);
    out->context = st.str(3);
    out->max_items = (int)st.i64(4);
    out->state = st.str(5);
    out->error = st.str(6);
    out->created_at = st.i64(7);
}

#define REQUEST_COLUMNS "tenant, request_id, document, context, max_items, state, error, created_at"

bool SqliteServerDb::claim_request(const std::string& worker, int64_t lease_ms, const std::string& after_tenant,
                                   MemoryRequest* out) {
    DbTx tx(db_);  // BEGIN IMMEDIATE: one claimer at a time, across processes too
    const int64_t now = unix_ms_now();
    {
        DbStmt give_up(*this,
                       "UPDATE requests SET state = 'failed', context = '', error = 'gave up after ' || claims || "
                       "' attempts: the workers producing it stopped (crashed or lost their lease)' "
                       "WHERE state = 'pending' AND claims >= ?1 AND lease_until < ?2",
                       "give up requests");
        give_up.bind(1, (int64_t)kMaxClaims).bind(2, now).run();
    }
    DbStmt next(*this,
                "SELECT " REQUEST_COLUMNS " FROM requests WHERE state = 'pending' AND lease_until < ?2 "
                "ORDER BY tenant <= ?1, tenant, created_at, request_id LIMIT 1",
                "next request");
    next.bind(1, after_tenant).bind(2, now);
    if (!next.step()) {
        tx.commit();
        return false;
    }
    read_request(next, out);
    DbStmt lease(*this,
                 "UPDATE requests SET lease_owner = ?3, lease_until = ?4, claims = claims + 1 "
                 "WHERE tenant = ?1 AND request_id = ?2",
                 "claim request");
    lease.bind(1, out->tenant).bind(2, out->request_id).bind(3, worker).bind(4, now + lease_ms).run();
    tx.commit();
    return true;
}

bool SqliteServerDb::renew_lease(const std::string& tenant, const std::string& request_id, const std::string& worker,
                                 int64_t lease_ms) {
    DbStmt st(*this,
              "UPDATE requests SET lease_until = ?4 WHERE tenant = ?1 AND request_id = ?2 AND lease_owner = ?3 "
              "AND state = 'pending'",
              "renew lease");
    st.bind(1, tenant).bind(2, request_id).bind(3, worker).bind(4, unix_ms_now() + lease_ms).run();
    return sqlite3_changes(db_) == 1;
}

bool SqliteServerDb::get_request(const std::string& tenant, const std::string& request_id, MemoryRequest* out) {
    DbStmt st(*this, "SELECT " REQUEST_COLUMNS " FROM requests WHERE tenant = ?1 AND request_id = ?2", "get request");
    st.bind(1, tenant).bind(2, request_id);
    if (!st.step()) return false;
    read_request(st, out);
    return true;
}

bool SqliteServerDb::complete_request(const std::string& tenant, const std::string& request_id, const std::string& worker,
                                      const std::vector<NewNote>& notes) {
    DbTx tx(db_);
    std::string document;
    {
        DbStmt st(*this,
                  "SELECT document FROM requests WHERE tenant = ?1 AND request_id = ?2 AND state = 'pending' "
                  "AND lease_owner = ?3",
                  "find claimed request");
        st.bind(1, tenant).bind(2, request_id).bind(3, worker);
        if (!st.step()) return false;
        document = st.str(0);
    }
    std::vector<FeedEntry> entries = note_entries(request_id, document, notes);
    append(tenant, entries);
    DbStmt done(*this,
                "UPDATE requests SET state = 'done', context = '', lease_owner = '' WHERE tenant = ?1 AND request_id = ?2",
                "finish request");
    done.bind(1, tenant).bind(2, request_id).run();
    tx.commit();
    return true;
}

void SqliteServerDb::fail_request(const std::string& tenant, const std::string& request_id, const std::string& worker,
                                  const std::string& error) {
    DbStmt st(*this,
              "UPDATE requests SET state = 'failed', error = ?3, context = '', lease_owner = '' "
              "WHERE tenant = ?1 AND request_id = ?2 AND state = 'pending' AND lease_owner = ?4",
              "fail request");
    st.bind(1, tenant).bind(2, request_id).bind(3, error).bind(4, worker).run();
}

int64_t SqliteServerDb::count_pending(const std::string& tenant) {
    DbStmt st(*this, "SELECT count(*) FROM requests WHERE state = 'pending' AND tenant = ?1", "count pending");
    st.bind(1, tenant);
    return st.step() ? st.i64(0) : 0;
}

// ---- feed ------------------------------------------------------------------------------

void SqliteServerDb::append(const std::string& tenant, std::vector<FeedEntry>& entries) {
    int64_t seq = head(tenant).seq;
    DbStmt ins(*this,
               "INSERT INTO feed(tenant, seq, tag, id, deleted, request_id, document, text, doc_id, title, "
               "method, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
               "append to feed");
    for (FeedEntry& e : entries) {
        e.seq = ++seq;
        e.tag = new_feed_tag();
        ins.bind(1, tenant).bind(2, e.seq).bind(3, e.tag).bind(4, e.id).bind(5, (int64_t)e.deleted);
        ins.bind(6, e.request_id).bind(7, e.document).bind(8, e.text).bind(9, e.doc_id).bind(10, e.title);
        ins.bind(11, e.method).bind(12, e.created_at).run();
        ins.reset();
    }
}

std::vector<FeedEntry> SqliteServerDb::changes(const std::string& tenant, int64_t since, size_t limit) {
    DbStmt st(*this,
              "SELECT seq, tag, id, deleted, request_id, document, text, doc_id, title, method, created_at "
              "FROM feed WHERE tenant = ?1 AND seq > ?2 AND retracted = 0 ORDER BY seq LIMIT ?3",
              "read feed");
    st.bind(1, tenant).bind(2, since).bind(3, (int64_t)limit);
    std::vector<FeedEntry> out;
    while (st.step()) {
        FeedEntry e;
        e.seq = st.i64(0);
        e.tag = st.str(1);
        e.id = st.str(2);
        e.deleted = st.i64(3) != 0;
        e.request_id = st.str(4);
        e.document = st.str(5);
        e.text = st.str(6);
        e.doc_id = st.str(7);
        e.title = st.str(8);
        e.method = st.str(9);
        e.created_at = st.i64(10);
        out.push_back(std::move(e));
    }
    return out;
}

std::optional<std::string> SqliteServerDb::entry_tag(const std::string& tenant, int64_t seq) {
    DbStmt st(*this, "SELECT tag FROM feed WHERE tenant = ?1 AND seq = ?2", "read feed entry");
    st.bind(1, tenant).bind(2, seq);
    if (!st.step()) return std::nullopt;
    return st.str(0);
}

FeedEntry SqliteServerDb::head(const std::string& tenant) {
    DbStmt st(*this, "SELECT seq, tag FROM feed WHERE tenant = ?1 ORDER BY seq DESC LIMIT 1", "read feed head");
    st.bind(1, tenant);
    FeedEntry e;
    if (st.step()) {
        e.seq = st.i64(0);
        e.tag = st.str(1);
    }
    return e;
}

// ---- forgetting ------------------------------------------------------------------------

int64_t SqliteServerDb::retract_where(const std::string& tenant, const char* select_sql, const std::string& arg) {
    std::vector<std::pair<int64_t, std::string>> live;  // (seq, id)
    {
        DbStmt st(*this, select_sql, "find live items");
        st.bind(1, tenant).bind(2, arg);
        while (st.step()) live.emplace_back(st.i64(0), st.str(1));
    }
    if (live.empty()) return 0;
    DbStmt erase(*this, "UPDATE feed SET retracted = 1, text = '' WHERE tenant = ?1 AND seq = ?2", "erase item");
    std::vector<FeedEntry> tombstones;
    const int64_t now = unix_ms_now();
    for (const auto& [seq, id] : live) {
        erase.bind(1, tenant).bind(2, seq).run();
        erase.reset();
        tombstones.push_back(tombstone_entry(id, now));
    }
    append(tenant, tombstones);
    return (int64_t)live.size();
}

void SqliteServerDb::cancel_pending(const std::string& tenant, const char* sql, const std::string& arg) {
    DbStmt st(*this, sql, "cancel pending requests");
    st.bind(1, tenant).bind(2, arg).run();
}

#define LIVE_ITEMS "SELECT seq, id FROM feed WHERE tenant = ?1 AND deleted = 0 AND retracted = 0 "

int64_t SqliteServerDb::forget_item(const std::string& tenant, const std::string& item_id) {
    DbTx tx(db_);
    const int64_t n = retract_where(tenant, LIVE_ITEMS "AND id = ?2", item_id);
    tx.commit();
    return n;
}

int64_t SqliteServerDb::forget_document(const std::string& tenant, const std::string& document) {
    DbTx tx(db_);
    const int64_t n = retract_where(tenant, LIVE_ITEMS "AND document = ?2 ORDER BY seq", document);
    cancel_pending(tenant,
                   "UPDATE requests SET state = 'forgotten', context = '' "
                   "WHERE tenant = ?1 AND document = ?2 AND state = 'pending'",
                   document);
    tx.commit();
    return n;
}

int64_t SqliteServerDb::forget_all(const std::string& tenant) {
    DbTx tx(db_);
    const int64_t n = retract_where(tenant, LIVE_ITEMS "AND ?2 = '' ORDER BY seq", "");
    cancel_pending(tenant,
                   "UPDATE requests SET state = CASE state WHEN 'pending' THEN 'forgotten' ELSE state END, "
                   "context = '' WHERE tenant = ?1 AND ?2 = ''",
                   "");
    tx.commit();
    return n;
}

}  // namespace

std::unique_ptr<ServerDb> open_server_db(const std::string& path) { return std::make_unique<SqliteServerDb>(path); }

std::unique_ptr<ServerDb> open_database(const std::string& db) {
    return is_postgres_url(db) ? open_pg_server_db(db) : open_server_db(db);
}

std::string new_item_id() { return "m-" + random_hex(16); }

std::vector<FeedEntry> note_entries(const std::string& request_id, const std::string& document,
                                    const std::vector<NewNote>& notes) {
    const int64_t now = unix_ms_now();
    std::vector<FeedEntry> entries;
    for (const NewNote& n : notes) {
        FeedEntry e;
        e.id = new_item_id();
        e.request_id = request_id;
        e.document = document;
        e.text = n.text;
        e.doc_id = n.doc_id;
        e.title = n.title;
        e.method = n.method;
        e.created_at = now;
        entries.push_back(std::move(e));
    }
    return entries;
}

FeedEntry tombstone_entry(const std::string& item_id, int64_t now) {
    FeedEntry t;
    t.id = item_id;
    t.deleted = true;
    t.created_at = now;
    return t;
}
std::string new_feed_tag() { return random_hex(4); }

// What makes two memory requests with one request_id the same request.
std::string request_digest(const std::string& document, const std::string& context) {
    return sha256_hex(document + '\n' + context);
}

}  // namespace tandem::cloud
