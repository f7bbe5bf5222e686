// ServerDb: the reference cloud's SQLite file. Schema in server_db.h.
#include "tandem/cloud/server_db.h"

#include <sqlite3.h>

#include "tandem/memory_store.h"  // unix_ms_now
#include "tandem/sqlite_stmt.h"

namespace tandem::cloud {

// ---- statements ------------------------------------------------------------------------

// A statement prepared for one use (tandem/sqlite_stmt.h); its errors are ServerDbError.
class DbStmt : public SqliteStmt {
public:
    DbStmt(ServerDb& db, const char* sql, const char* op) : SqliteStmt(db.db_, sql, op, &fail_of, &db) {}

private:
    static void fail_of(void* db, int rc, const char* op) { static_cast<ServerDb*>(db)->fail(rc, op); }
};

// ---- open ------------------------------------------------------------------------------

static const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs(doc_id TEXT PRIMARY KEY, title TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS passages(pid INTEGER PRIMARY KEY, doc_id TEXT NOT NULL,
  ord INTEGER NOT NULL, text TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS passages_fts USING fts5(text, content='passages',
  content_rowid='pid', tokenize='porter unicode61');
CREATE INDEX IF NOT EXISTS idx_passages_doc ON passages(doc_id, ord);
CREATE TABLE IF NOT EXISTS requests(request_id TEXT PRIMARY KEY, context TEXT NOT NULL,
  max_items INTEGER NOT NULL, state TEXT NOT NULL, error TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS idx_requests_state ON requests(state, created_at);
CREATE TABLE IF NOT EXISTS feed(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0, request_id TEXT NOT NULL DEFAULT '',
  text TEXT NOT NULL DEFAULT '', doc_id TEXT NOT NULL DEFAULT '', title TEXT NOT NULL DEFAULT '',
  method TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS idx_feed_id ON feed(id);
)sql";

ServerDb::ServerDb(const std::string& path) : path_(path) {
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
        exec(kSchema);
    } catch (...) {
        sqlite3_close(db_);
        db_ = nullptr;
        throw;
    }
}

ServerDb::~ServerDb() { sqlite3_close(db_); }

void ServerDb::fail(int rc, const std::string& op) {
    throw ServerDbError("server database " + path_ + ": " + op + ": " + sqlite3_errmsg(db_) + " (" +
                        sqlite3_errstr(rc) + ")");
}

void ServerDb::exec(const char* sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
        std::string msg = err ? err : sqlite3_errstr(rc);
        sqlite3_free(err);
        throw ServerDbError("server database " + path_ + ": " + msg);
    }
}

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

// ---- corpus ----------------------------------------------------------------------------

std::string ServerDb::meta(const std::string& key) {
    DbStmt st(*this, "SELECT value FROM meta WHERE key = ?1", "read meta");
    st.bind(1, key);
    return st.step() ? st.str(0) : std::string();
}

void ServerDb::replace_corpus(const std::vector<CorpusDoc>& docs, const std::string& signature) {
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
    DbStmt m(*this, "INSERT OR REPLACE INTO meta(key, value) VALUES ('corpus_signature', ?1)", "write meta");
    m.bind(1, signature).run();
    tx.commit();
}

int64_t ServerDb::count_docs() {
    DbStmt st(*this, "SELECT count(*) FROM docs", "count docs");
    return st.step() ? st.i64(0) : 0;
}

int64_t ServerDb::count_passages() {
    DbStmt st(*this, "SELECT count(*) FROM passages", "count passages");
    return st.step() ? st.i64(0) : 0;
}

std::vector<Passage> ServerDb::search(const std::string& match_query, size_t limit) {
    std::vector<Passage> out;
    if (match_query.empty() || limit == 0) return out;
    DbStmt st(*this,
              "SELECT p.doc_id, d.title, p.text, bm25(passages_fts) AS score FROM passages_fts f "
              "JOIN passages p ON p.pid = f.rowid JOIN docs d ON d.doc_id = p.doc_id "
              "WHERE passages_fts MATCH ?1 ORDER BY score, p.pid LIMIT ?2",
              "search corpus");
    st.bind(1, match_query).bind(2, (int64_t)limit);
    while (st.step()) out.push_back({st.str(0), st.str(1), st.str(2), st.f64(3)});
    return out;
}

bool ServerDb::get_document(const std::string& doc_id, CorpusDoc* out) {
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

ServerDb::AddResult ServerDb::add_request(const std::string& request_id, const std::string& context,
                                          int max_items) {
    DbTx tx(db_);
    {
        DbStmt st(*this, "SELECT context FROM requests WHERE request_id = ?1", "find request");
        st.bind(1, request_id);
        if (st.step()) return st.str(0) == context ? AddResult::duplicate : AddResult::conflict;
    }
    DbStmt ins(*this,
               "INSERT INTO requests(request_id, context, max_items, state, created_at) "
               "VALUES (?1, ?2, ?3, 'pending', ?4)",
               "add request");
    ins.bind(1, request_id).bind(2, context).bind(3, (int64_t)max_items).bind(4, unix_ms_now()).run();
    tx.commit();
    return AddResult::created;
}

static void read_request(DbStmt& st, MemoryRequest* out) {
    out->request_id = st.str(0);
    out->context = st.str(1);
    out->max_items = (int)st.i64(2);
    out->state = st.str(3);
    out->error = st.str(4);
    out->created_at = st.i64(5);
}

bool ServerDb::next_pending(MemoryRequest* out) {
    DbStmt st(*this,
              "SELECT request_id, context, max_items, state, error, created_at FROM requests "
              "WHERE state = 'pending' ORDER BY created_at, request_id LIMIT 1",
              "next request");
    if (!st.step()) return false;
    read_request(st, out);
    return true;
}

bool ServerDb::get_request(const std::string& request_id, MemoryRequest* out) {
    DbStmt st(*this,
              "SELECT request_id, context, max_items, state, error, created_at FROM requests "
              "WHERE request_id = ?1",
              "get request");
    st.bind(1, request_id);
    if (!st.step()) return false;
    read_request(st, out);
    return true;
}

void ServerDb::complete_request(const std::string& request_id, const std::vector<NewNote>& notes) {
    DbTx tx(db_);
    int64_t now = unix_ms_now();
    DbStmt ins(*this,
               "INSERT INTO feed(id, request_id, text, doc_id, title, method, created_at) "
               "VALUES ('', ?1, ?2, ?3, ?4, ?5, ?6)",
               "append note");
    DbStmt name(*this, "UPDATE feed SET id = 'm-' || seq WHERE seq = last_insert_rowid()", "name note");
    for (const NewNote& n : notes) {
        ins.bind(1, request_id).bind(2, n.text).bind(3, n.doc_id).bind(4, n.title).bind(5, n.method);
        ins.bind(6, now).run();
        ins.reset();
        name.run();
        name.reset();
    }
    DbStmt done(*this, "UPDATE requests SET state = 'done' WHERE request_id = ?1", "finish request");
    done.bind(1, request_id).run();
    tx.commit();
}

void ServerDb::fail_request(const std::string& request_id, const std::string& error) {
    DbStmt st(*this, "UPDATE requests SET state = 'failed', error = ?2 WHERE request_id = ?1", "fail request");
    st.bind(1, request_id).bind(2, error).run();
}

int64_t ServerDb::count_pending() {
    DbStmt st(*this, "SELECT count(*) FROM requests WHERE state = 'pending'", "count pending");
    return st.step() ? st.i64(0) : 0;
}

// ---- feed ------------------------------------------------------------------------------

std::vector<FeedEntry> ServerDb::changes(int64_t since, size_t limit) {
    DbStmt st(*this,
              "SELECT seq, id, deleted, request_id, text, doc_id, title, method, created_at FROM feed "
              "WHERE seq > ?1 ORDER BY seq LIMIT ?2",
              "read feed");
    st.bind(1, since).bind(2, (int64_t)limit);
    std::vector<FeedEntry> out;
    while (st.step()) {
        FeedEntry e;
        e.seq = st.i64(0);
        e.id = st.str(1);
        e.deleted = st.i64(2) != 0;
        e.request_id = st.str(3);
        e.text = st.str(4);
        e.doc_id = st.str(5);
        e.title = st.str(6);
        e.method = st.str(7);
        e.created_at = st.i64(8);
        out.push_back(std::move(e));
    }
    return out;
}

int64_t ServerDb::head() {
    DbStmt st(*this, "SELECT coalesce(max(seq), 0) FROM feed", "read feed head");
    return st.step() ? st.i64(0) : 0;
}

int64_t ServerDb::retract(const std::string& item_id) {
    DbTx tx(db_);
    {
        // Live = the id's latest feed row is an item, not a tombstone.
        DbStmt st(*this, "SELECT deleted FROM feed WHERE id = ?1 ORDER BY seq DESC LIMIT 1", "find item");
        st.bind(1, item_id);
        if (!st.step() || st.i64(0) != 0) return 0;
    }
    DbStmt ins(*this, "INSERT INTO feed(id, deleted, created_at) VALUES (?1, 1, ?2)", "append tombstone");
    ins.bind(1, item_id).bind(2, unix_ms_now()).run();
    int64_t seq = sqlite3_last_insert_rowid(db_);
    tx.commit();
    return seq;
}

}  // namespace tandem::cloud
